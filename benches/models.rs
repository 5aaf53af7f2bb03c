//! Batch-1 latency (or, with `--batch N`, batch throughput) of the thirteen benchmark
//! models (`models/*.toml`: four sequential ones, the example's U-Net and eight
//! torchvision networks at 224x224: ResNet-18 and -50, MobileNetV2, V3 large and small,
//! EfficientNet-B0, DenseNet-121, SqueezeNet 1.1), one thread by default.
//!
//! ```sh
//! cargo bench --bench models                                   # table on stdout
//! cargo bench --bench models -- --json target/bench/cnn.json   # and a JSON file
//! cargo bench --bench models -- lenet5 --time 5                # one model, 5 s
//! cargo bench --features parallel --bench models -- --batch 64  # images/s at batch 64
//! cargo bench --bench models -- --serve lenet5 mobilenet_96   # JSON commands on stdin
//! cargo bench --features profile --bench models -- --profile mobilenet_v2_224  # per step
//! ```
//!
//! For each model this loads `target/bench/<model>/weights.safetensors` (written by
//! `tools/bench/make_weights.py`; the same file `tools/bench/export_onnx.py` turns into the
//! ONNX model the reference engines run), or, when it is missing, seeded random weights
//! (so `cargo bench` always works, but the numbers are then not comparable with the
//! reference engines' and there is no output check). When
//! `target/bench/<model>/data.safetensors` exists, the output of `forward` on its `input`
//! is checked against its `output` (PyTorch in float64) with the conformance tolerance,
//! its absolute part scaled by the largest output (`|got - want| <= 1e-4 max(1,
//! max|want|) + 1e-4 |want|`), and the maximum absolute difference is printed.
//!
//! Then `forward` is timed at batch 1 (with `--batch N`: `forward_batch_into` on N copies
//! of the input, after checking that each result is `forward`'s, bit for bit): a warm-up (at least 0.3 s and 10 runs), then each
//! of N runs timed on its own, N chosen so that the runs take about `--time` seconds
//! (default 2). Reported: median, p10 and p90 in µs (linear interpolation between order
//! statistics, as numpy's default `percentile`), and GFLOP/s = 2 * MACS / median. The
//! network runs on the calling thread only, unless built with `--features parallel`:
//! then its kernels also use `CNN_NUM_THREADS` threads (default: all cores).
//! `tools/bench/compare.py` drives the `--serve` mode (below) to put the numbers next to
//! ONNX Runtime's and OpenVINO's, timed the same way (with `--blocks`, it runs this with
//! `--json`).
//!
//! Relative paths given to `--json` are taken from the workspace root, whatever the
//! directory cargo runs the bench in.
//!
//! With `--serve` the bench answers JSON commands on stdin (`info`, `time MODEL SECONDS`,
//! `profile MODEL SECONDS`, `quit`): see `benches/common/serve.rs`.

use std::fmt::Write as _;
use std::hint::black_box;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cnn::{cnn_model, Model};

#[path = "../tests/support/mod.rs"]
mod support;

cnn_model! {
    /// LeNet-5: 1x32x32 -> 10.
    #[file = "models/lenet5.toml"]
    struct LeNet5;
}

cnn_model! {
    /// VGG-style CIFAR classifier with batch norm: 3x32x32 -> 10.
    #[file = "models/cifar_vgg.toml"]
    struct CifarVgg;
}

cnn_model! {
    /// MobileNet-v1-style depthwise-separable network: 3x96x96 -> 100.
    #[file = "models/mobilenet_96.toml"]
    struct MobileNet96;
}

cnn_model! {
    /// Fully convolutional per-pixel classifier: 3x64x64 -> 4x64x64.
    #[file = "models/fcn_seg.toml"]
    struct FcnSeg;
}

cnn_model! {
    /// torchvision's `resnet18()`: 3x224x224 -> 1000 (residual adds, 69 layers).
    #[file = "models/resnet18_224.toml"]
    struct ResNet18_224;
}

cnn_model! {
    /// torchvision's `mobilenet_v2()`: 3x224x224 -> 1000 (inverted residuals, 153 layers).
    #[file = "models/mobilenet_v2_224.toml"]
    struct MobileNetV2_224;
}

cnn_model! {
    /// torchvision's `efficientnet_b0()`: 3x224x224 -> 1000 (SiLU, squeeze-and-excitation,
    /// 5x5 depthwise layers).
    #[file = "models/efficientnet_b0_224.toml"]
    struct EfficientNetB0_224;
}

cnn_model! {
    /// torchvision's `mobilenet_v3_large()`: 3x224x224 -> 1000 (hard swish,
    /// squeeze-and-excitation with hard sigmoid, 5x5 depthwise layers).
    #[file = "models/mobilenet_v3_large_224.toml"]
    struct MobileNetV3Large224;
}

cnn_model! {
    /// torchvision's `mobilenet_v3_small()`: 3x224x224 -> 1000.
    #[file = "models/mobilenet_v3_small_224.toml"]
    struct MobileNetV3Small224;
}

cnn_model! {
    /// torchvision's `densenet121()`: 3x224x224 -> 1000 (58 concatenations, batch norms
    /// before their convolutions).
    #[file = "models/densenet121_224.toml"]
    struct DenseNet121_224;
}

cnn_model! {
    /// torchvision's `resnet50()`: 3x224x224 -> 1000 (bottleneck blocks: 1x1 layers on
    /// up to 2048 channels, strided 1x1 downsampling).
    #[file = "models/resnet50_224.toml"]
    struct ResNet50_224;
}

cnn_model! {
    /// torchvision's `squeezenet1_1()`: 3x224x224 -> 1000 (fire modules: concatenated
    /// 1x1 and 3x3 expansions, ceil-mode max pools).
    #[file = "models/squeezenet1_1_224.toml"]
    struct SqueezeNet11_224;
}

cnn_model! {
    /// torchvision's `shufflenet_v2_x1_0()`: 3x224x224 -> 1000 (channel slices, depthwise
    /// branches, concatenations and channel shuffles).
    #[file = "models/shufflenet_v2_x1_0_224.toml"]
    struct ShuffleNetV2_224;
}

cnn_model! {
    /// The U-Net of `examples/unet_shapes.rs`: 3x64x64 -> 4x64x64 (transposed convolution,
    /// bilinear upsampling, concatenations, channel softmax).
    #[file = "models/unet_shapes.toml"]
    struct UNetShapes;
}

#[path = "common/harness.rs"]
mod harness;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/steps.rs"]
mod steps;

/// Absolute tolerance of the output check per unit of the reference's largest magnitude
/// (at least 1), as `tests/torchvision.rs`: a 50-layer network's float32 error grows
/// with its outputs (ResNet-50's, up to 5.7: PyTorch's own float32 run is 6.6e-5 off).
const ATOL: f32 = 1e-4;
/// Relative tolerance of the output check (as the conformance suite).
const RTOL: f32 = 1e-4;
/// Seed of the fallback random weights.
const WEIGHT_SEED: u64 = 0x5EED_BE4C;
/// Seed of the fallback random input.
const INPUT_SEED: u64 = 0x0001_A9E7;

const USAGE: &str = "\
usage: cargo bench --bench models -- [MODEL ...] [--json PATH] [--time SECONDS] [--batch N]
       cargo bench --bench models -- --serve [--batch N] [MODEL ...]
       cargo bench --features profile --bench models -- --profile [--time SECONDS] [MODEL ...]

  MODEL           only these models (lenet5, cifar_vgg, mobilenet_96, fcn_seg,
                  resnet18_224, mobilenet_v2_224, unet_shapes,
                  efficientnet_b0_224, mobilenet_v3_large_224,
                  mobilenet_v3_small_224, densenet121_224, resnet50_224,
                  squeezenet1_1_224, shufflenet_v2_x1_0_224); default all
  --json PATH     also write the results as JSON (relative to the workspace root)
  --time SECONDS  measuring time per model, after the warm-up (default 2)
  --batch N       time `forward_batch_into` on N images per call instead of `forward`
                  on one (default 1); with `--features parallel` the images are spread
                  over CNN_NUM_THREADS threads
  --serve         load, check and warm up the models, then answer commands from stdin,
                  one JSON line on stdout each (everything else goes to stderr):
                    info                   versions, threads, batch, per-model checks
                    time MODEL SECONDS     time MODEL for about SECONDS (one block)
                    profile MODEL SECONDS  per-step medians of MODEL's batch-1 forward
                                           passes (needs `--features profile`)
                    quit                   exit
  --profile       per-step table of each model's batch-1 forward pass instead of the
                  timing: layer, kernel, MACs, median µs, share, GFLOP/s (needs
                  `--features profile`; the marks add ~30 ns a step), and with
                  `parallel` the step's split kernel calls and the calling thread's
                  and the workers' µs in their parts
";

/// The workspace root (where `Cargo.toml`, `models/` and `target/bench/` are).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Command-line options.
struct Options {
    /// Models to run (empty: all).
    models: Vec<String>,
    /// Where to write the JSON results, if anywhere.
    json: Option<PathBuf>,
    /// Target measuring time per model.
    time: Duration,
    /// Images per timed call (1: `forward`, else `forward_batch_into`).
    batch: usize,
    /// Answer commands from stdin instead of timing once (`--serve`).
    serve: bool,
    /// Print per-step tables instead of timing (`--profile`).
    profile: bool,
}

impl Options {
    /// Parses the arguments (ignoring the `--bench` flag cargo adds).
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut opts = Options {
            models: Vec::new(),
            json: None,
            time: Duration::from_secs(2),
            batch: 1,
            serve: false,
            profile: false,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "-h" | "--help" => return Err(String::new()),
                "--serve" => opts.serve = true,
                "--profile" => opts.profile = true,
                "--json" => {
                    let path = args
                        .next_if(|a| !a.starts_with("--"))
                        .ok_or("--json needs a path")?;
                    let path = PathBuf::from(path);
                    opts.json = Some(if path.is_absolute() {
                        path
                    } else {
                        root().join(path)
                    });
                }
                "--time" => {
                    let v = args
                        .next_if(|a| !a.starts_with("--"))
                        .ok_or("--time needs a number of seconds")?;
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0)
                        .ok_or_else(|| format!("--time: `{v}` is not a positive number"))?;
                    opts.time = Duration::from_secs_f64(secs);
                }
                "--batch" => {
                    let v = args
                        .next_if(|a| !a.starts_with("--"))
                        .ok_or("--batch needs a number of images")?;
                    opts.batch = v
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or_else(|| format!("--batch: `{v}` is not a positive integer"))?;
                }
                flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
                name => {
                    if !MODELS.contains(&name) {
                        return Err(format!(
                            "unknown model `{name}` (models: {})",
                            MODELS.join(", ")
                        ));
                    }
                    opts.models.push(name.to_string());
                }
            }
        }
        if opts.serve && opts.json.is_some() {
            return Err("--serve writes no JSON file (its answers are JSON)".into());
        }
        if opts.profile && (opts.serve || opts.json.is_some() || opts.batch != 1) {
            return Err("--profile profiles batch-1 passes and prints a table: \
                 no --serve, --json or --batch with it (the serve mode has a `profile` command)"
                .into());
        }
        Ok(opts)
    }

    /// Whether `name` is selected.
    fn wants(&self, name: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == name)
    }
}

/// The benchmark models, in table order.
const MODELS: [&str; 14] = [
    "lenet5",
    "cifar_vgg",
    "mobilenet_96",
    "fcn_seg",
    "resnet18_224",
    "mobilenet_v2_224",
    "unet_shapes",
    "efficientnet_b0_224",
    "mobilenet_v3_large_224",
    "mobilenet_v3_small_224",
    "densenet121_224",
    "resnet50_224",
    "squeezenet1_1_224",
    "shufflenet_v2_x1_0_224",
];

/// Nested-array inputs and outputs, built from and flattened to CHW order.
trait Nested: Sized {
    /// The value holding `v` (exactly as many values as the type has).
    fn boxed_from_flat(v: &[f32]) -> Box<Self>;
    /// The values in CHW order.
    fn flat(&self) -> &[f32];
}

impl<const N: usize> Nested for [f32; N] {
    fn boxed_from_flat(v: &[f32]) -> Box<Self> {
        let mut a = Box::new([0.0; N]);
        a.copy_from_slice(v);
        a
    }
    fn flat(&self) -> &[f32] {
        self
    }
}

impl<const C: usize, const H: usize, const W: usize> Nested for [[[f32; W]; H]; C] {
    fn boxed_from_flat(v: &[f32]) -> Box<Self> {
        let mut a = Box::new([[[0.0; W]; H]; C]);
        a.as_flattened_mut().as_flattened_mut().copy_from_slice(v);
        a
    }
    fn flat(&self) -> &[f32] {
        self.as_flattened().as_flattened()
    }
}

/// Where the weights came from.
#[derive(Clone, Copy, PartialEq)]
enum WeightsSource {
    /// `target/bench/<model>/weights.safetensors`.
    File,
    /// Seeded random weights (the file was missing).
    Random,
}

/// The output check.
enum Check {
    /// Compared with `data.safetensors`: max abs diff, worst diff / tolerance (<= 1 passes).
    Compared { max_abs: f32, worst_ratio: f32 },
    /// No reference (no data file, or random weights).
    Skipped(&'static str),
}

impl Check {
    fn passed(&self) -> bool {
        match self {
            Check::Compared { worst_ratio, .. } => *worst_ratio <= 1.0,
            Check::Skipped(_) => true,
        }
    }
}

/// What is known of a loaded model besides its times.
struct Meta {
    name: &'static str,
    input_shape: &'static [usize],
    output_shape: &'static [usize],
    macs: usize,
    params: usize,
    weights: WeightsSource,
    check: Check,
    /// Images per timed call.
    batch: usize,
}

/// One model's results.
struct Report {
    meta: Meta,
    runs: usize,
    /// Run times in seconds, sorted.
    samples: Vec<f64>,
}

impl Report {
    fn quantile_us(&self, q: f64) -> f64 {
        harness::quantile(&self.samples, q) * 1e6
    }
    fn gflops(&self) -> f64 {
        2.0 * (self.meta.macs * self.meta.batch) as f64 / (self.quantile_us(0.5) * 1e-6) / 1e9
    }
    fn images_per_s(&self) -> f64 {
        self.meta.batch as f64 / (self.quantile_us(0.5) * 1e-6)
    }
}

/// A model loaded and checked, with its input: ready to time.
struct Loaded<M: Model> {
    model: Box<M>,
    input: Box<M::Input>,
    /// With `--batch N` (N > 1): N copies of the input, and room for the N outputs.
    batch: Option<(Vec<f32>, Vec<f32>)>,
    meta: Meta,
}

/// A loaded model of any type: the serve mode holds several.
trait Bench {
    fn meta(&self) -> &Meta;
    fn into_meta(self: Box<Self>) -> Meta;
    /// The timing of the one-shot mode ([`harness::time_runs`]); sorted seconds.
    fn time_runs(&mut self, time: Duration) -> Vec<f64>;
    /// One block of the serve mode ([`serve::time_block`]); sorted seconds.
    fn time_block(&mut self, secs: f64) -> Vec<f64>;
    /// The model's steps (`Model::STEPS`).
    fn steps(&self) -> &'static [cnn::StepInfo];
    /// Per-step medians (µs) of about `secs` seconds of batch-1 forward passes, and the
    /// number of passes ([`steps::profile`]).
    fn profile(&mut self, secs: f64) -> Result<(Vec<steps::StepStat>, usize), String>;
}

impl<M: Model> Loaded<M> {
    /// The timed call: `forward` on the input, or `forward_batch_into` on the batch.
    #[inline]
    fn call(&mut self) {
        match &mut self.batch {
            None => {
                let y = self.model.forward(black_box(&self.input));
                black_box(&y);
            }
            Some((inputs, outputs)) => {
                self.model
                    .forward_batch_into(black_box(inputs), black_box(outputs))
                    .expect("checked when loaded");
            }
        }
    }
}

impl<M: Model> Bench for Loaded<M> {
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn into_meta(self: Box<Self>) -> Meta {
        self.meta
    }
    fn time_runs(&mut self, time: Duration) -> Vec<f64> {
        harness::time_runs(time, || self.call())
    }
    fn time_block(&mut self, secs: f64) -> Vec<f64> {
        serve::time_block(secs, || self.call())
    }
    fn steps(&self) -> &'static [cnn::StepInfo] {
        M::STEPS
    }
    fn profile(&mut self, secs: f64) -> Result<(Vec<steps::StepStat>, usize), String> {
        let (model, input) = (&self.model, &self.input);
        steps::profile(M::STEPS, secs, || {
            black_box(model.forward(black_box(input)));
        })
    }
}

/// Reads an F32 tensor from a safetensors file: (shape, values).
fn read_f32(bytes: &[u8], key: &str, path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("{}: not a safetensors file: {e}", path.display()))?;
    let t = file
        .tensor(key)
        .map_err(|_| format!("{}: no tensor `{key}`", path.display()))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!(
            "{}: `{key}` is {:?}, expected F32",
            path.display(),
            t.dtype()
        ));
    }
    let values = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((t.shape().to_vec(), values))
}

/// Loads the model, checks its output (and with `--batch`, that `forward_batch_into`
/// gives `forward`'s results).
fn load<M: Model + 'static>(name: &'static str, opts: &Options) -> Result<Box<dyn Bench>, String>
where
    M::Input: Nested,
    M::Output: Nested,
{
    let dir = root().join("target/bench").join(name);
    let weights_path = dir.join("weights.safetensors");
    let (model, weights) = if weights_path.exists() {
        let model = M::load(&weights_path)
            .map_err(|e| format!("loading {}: {e}", weights_path.display()))?;
        (model, WeightsSource::File)
    } else {
        eprintln!(
            "note: {} is missing (run `python3 tools/bench/make_weights.py`); \
             {name} uses seeded random weights and its output is not checked",
            weights_path.display()
        );
        let bytes = support::random_weights::<M>(WEIGHT_SEED);
        let model = M::from_safetensors(&bytes)
            .map_err(|e| format!("{name}: random weights rejected: {e}"))?;
        (model, WeightsSource::Random)
    };

    let data_path = dir.join("data.safetensors");
    let (input, check) = match (weights, data_path.exists()) {
        (WeightsSource::File, true) => {
            let bytes = std::fs::read(&data_path)
                .map_err(|e| format!("reading {}: {e}", data_path.display()))?;
            let (in_shape, x) = read_f32(&bytes, "input", &data_path)?;
            let (out_shape, want) = read_f32(&bytes, "output", &data_path)?;
            if in_shape.len() != 4 || in_shape[0] != 1 || in_shape[1..] != *M::INPUT_SHAPE {
                return Err(format!(
                    "{}: input is {in_shape:?}, {name} needs [1, {:?}]",
                    data_path.display(),
                    M::INPUT_SHAPE
                ));
            }
            if out_shape.iter().product::<usize>() != M::OUTPUT_LEN {
                return Err(format!(
                    "{}: output is {out_shape:?}, {name} gives {:?}",
                    data_path.display(),
                    M::OUTPUT_SHAPE
                ));
            }
            let input = M::Input::boxed_from_flat(&x);
            let got = model.forward(&input);
            let (mut max_abs, mut worst_ratio) = (0.0f32, 0.0f32);
            let atol = ATOL * want.iter().fold(1.0f32, |m, w| m.max(w.abs()));
            for (g, w) in got.flat().iter().zip(&want) {
                let d = (g - w).abs();
                max_abs = max_abs.max(d);
                // NaN-safe: a NaN difference must fail.
                let r = d / (atol + RTOL * w.abs());
                worst_ratio = if r.is_nan() {
                    f32::INFINITY
                } else {
                    worst_ratio.max(r)
                };
            }
            (
                input,
                Check::Compared {
                    max_abs,
                    worst_ratio,
                },
            )
        }
        (WeightsSource::File, false) => {
            eprintln!(
                "note: {} is missing (run `python3 tools/bench/export_onnx.py`); \
                 {name}'s output is not checked",
                data_path.display()
            );
            let x = support::random_input::<M>(INPUT_SEED);
            (
                M::Input::boxed_from_flat(&x),
                Check::Skipped("no data file"),
            )
        }
        (WeightsSource::Random, _) => {
            let x = support::random_input::<M>(INPUT_SEED);
            (
                M::Input::boxed_from_flat(&x),
                Check::Skipped("random weights"),
            )
        }
    };

    let batch = if opts.batch == 1 {
        None
    } else {
        // The same image `batch` times; every result must be `forward`'s, bit for bit.
        let single = model.forward(&input);
        let inputs: Vec<f32> = input.flat().repeat(opts.batch);
        let mut outputs = vec![f32::NAN; opts.batch * M::OUTPUT_LEN];
        model
            .forward_batch_into(&inputs, &mut outputs)
            .map_err(|e| format!("{name}: forward_batch_into: {e}"))?;
        if let Some(i) = outputs
            .chunks_exact(M::OUTPUT_LEN)
            .position(|y| y != single.flat())
        {
            return Err(format!(
                "{name}: image {i} of a batch of {} differs from `forward`",
                opts.batch
            ));
        }
        Some((inputs, outputs))
    };

    Ok(Box::new(Loaded {
        model,
        input,
        batch,
        meta: Meta {
            name,
            input_shape: M::INPUT_SHAPE,
            output_shape: M::OUTPUT_SHAPE,
            macs: M::MACS,
            params: M::PARAMS,
            weights,
            check,
            batch: opts.batch,
        },
    }))
}

/// The results as a text table.
fn table(reports: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:>10} {:>12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8}  check (max |diff| vs torch f64)",
        "model", "MACs", "runs", "p10 µs", "median µs", "p90 µs", "images/s", "GFLOP/s", "weights"
    );
    for r in reports {
        let m = &r.meta;
        let check = match &m.check {
            Check::Compared {
                max_abs,
                worst_ratio,
            } => format!(
                "{} ({max_abs:.1e}, {:.2} of tol)",
                if m.check.passed() { "ok" } else { "FAIL" },
                worst_ratio
            ),
            Check::Skipped(why) => format!("skipped ({why})"),
        };
        let _ = writeln!(
            s,
            "{:<16} {:>10} {:>12} {:>9.1} {:>10.1} {:>10.1} {:>10.0} {:>10.2} {:>8}  {check}",
            m.name,
            m.macs,
            r.runs,
            r.quantile_us(0.1),
            r.quantile_us(0.5),
            r.quantile_us(0.9),
            r.images_per_s(),
            r.gflops(),
            weights_name(m.weights),
        );
    }
    s
}

fn weights_name(w: WeightsSource) -> &'static str {
    match w {
        WeightsSource::File => "file",
        WeightsSource::Random => "random",
    }
}

/// A model's entry in the JSON results without its times: name, shapes, size, weights
/// and output check.
fn meta_json(m: &Meta) -> serde_json::Map<String, serde_json::Value> {
    let (checked, max_abs, worst_ratio) = match &m.check {
        Check::Compared {
            max_abs,
            worst_ratio,
        } => (true, Some(*max_abs), Some(*worst_ratio)),
        Check::Skipped(_) => (false, None, None),
    };
    let serde_json::Value::Object(map) = serde_json::json!({
        "model": m.name,
        "input_shape": m.input_shape,
        "output_shape": m.output_shape,
        "macs": m.macs,
        "params": m.params,
        "weights": weights_name(m.weights),
        "checked": checked,
        "check_passed": m.check.passed(),
        "max_abs_diff": max_abs,
        "worst_diff_over_tolerance": worst_ratio,
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// Quantiles of sorted samples (seconds) in µs: the timing fields of the JSON results.
fn times_json(samples: &[f64]) -> serde_json::Map<String, serde_json::Value> {
    let q = |p| harness::quantile(samples, p) * 1e6;
    let serde_json::Value::Object(map) = serde_json::json!({
        "runs": samples.len(),
        "p10_us": q(0.1),
        "median_us": q(0.5),
        "p90_us": q(0.9),
        "min_us": q(0.0),
        "mean_us": samples.iter().sum::<f64>() / samples.len() as f64 * 1e6,
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// The JSON results around `models`: engine, version, SIMD level, threads, batch.
fn results_json(batch: usize, timing: &str, models: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "engine": "cnn",
        "version": env!("CARGO_PKG_VERSION"),
        "simd_level": format!("{:?}", cnn::simd_level()),
        "threads": cnn::num_threads(),
        "batch": batch,
        "timing": timing,
        "tolerance": { "atol_per_max_abs": ATOL, "rtol": RTOL },
        "models": models,
    })
}

/// The results as JSON.
fn json(reports: &[Report]) -> serde_json::Value {
    let models: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let mut m = meta_json(&r.meta);
            m.extend(times_json(&r.samples));
            m.insert("gflops".into(), r.gflops().into());
            m.insert("images_per_s".into(), r.images_per_s().into());
            m.into()
        })
        .collect();
    results_json(
        reports.first().map_or(1, |r| r.meta.batch),
        "warm-up >= 0.3 s and 10 runs; each run timed alone; \
         quantiles by linear interpolation",
        models,
    )
}

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(msg) if msg.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let header = format!(
        "cnn {} {}, {} thread(s), SIMD level {:?}",
        env!("CARGO_PKG_VERSION"),
        if opts.batch == 1 {
            "forward, batch 1".to_string()
        } else {
            format!("forward_batch_into, batch {}", opts.batch)
        },
        cnn::num_threads(),
        cnn::simd_level()
    );
    if opts.serve {
        // stdout carries only the answers.
        eprintln!("{header}");
    } else {
        println!("{header}");
    }
    let mut reports = Vec::new();
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    let mut failed = false;
    type LoadFn = fn(&'static str, &Options) -> Result<Box<dyn Bench>, String>;
    let benches: [(&'static str, LoadFn); MODELS.len()] = [
        ("lenet5", load::<LeNet5>),
        ("cifar_vgg", load::<CifarVgg>),
        ("mobilenet_96", load::<MobileNet96>),
        ("fcn_seg", load::<FcnSeg>),
        ("resnet18_224", load::<ResNet18_224>),
        ("mobilenet_v2_224", load::<MobileNetV2_224>),
        ("unet_shapes", load::<UNetShapes>),
        ("efficientnet_b0_224", load::<EfficientNetB0_224>),
        ("mobilenet_v3_large_224", load::<MobileNetV3Large224>),
        ("mobilenet_v3_small_224", load::<MobileNetV3Small224>),
        ("densenet121_224", load::<DenseNet121_224>),
        ("resnet50_224", load::<ResNet50_224>),
        ("squeezenet1_1_224", load::<SqueezeNet11_224>),
        ("shufflenet_v2_x1_0_224", load::<ShuffleNetV2_224>),
    ];
    for (name, f) in benches {
        if !opts.wants(name) {
            continue;
        }
        match f(name, &opts) {
            Ok(b) if opts.serve => loaded.push(b),
            Ok(mut b) if opts.profile => match b.profile(opts.time.as_secs_f64()) {
                Ok((medians, runs)) => {
                    print!("{}", steps::table(name, b.steps(), &medians, runs));
                    failed |= !b.meta().check.passed();
                }
                Err(e) => {
                    eprintln!("error: {name}: {e}");
                    failed = true;
                }
            },
            Ok(mut b) => {
                let samples = b.time_runs(opts.time);
                let meta = b.into_meta();
                failed |= !meta.check.passed();
                reports.push(Report {
                    meta,
                    runs: samples.len(),
                    samples,
                });
            }
            Err(e) => {
                eprintln!("error: {name}: {e}");
                errors.push((name, e));
                failed = true;
            }
        }
    }
    if opts.serve {
        return serve::serve(loaded, &errors, opts.batch);
    }
    if !opts.profile {
        print!("{}", table(&reports));
    }

    if let Some(path) = &opts.json {
        if let Err(e) = harness::write_json(path, &json(&reports)) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    if failed {
        eprintln!("error: a model failed to load or its output differs from the reference");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
