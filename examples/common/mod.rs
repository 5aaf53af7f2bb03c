//! Helpers shared by the examples: a tiny seeded PRNG, a builder for PyTorch-style
//! `state_dict()` safetensors files with random weights, command-line parsing, timing
//! and result printing. Each example includes this file with `mod common;` and uses only
//! part of it.

#![allow(dead_code)]

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use safetensors::{Dtype, View};

pub mod mnist;

/// Seed used by every example, so runs are reproducible.
pub const SEED: u64 = 0x5EED_CAFE_F00D_0001;

// ---------------------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------------------

/// SplitMix64: a tiny, fast, seedable PRNG (good enough for test weights; no `rand` crate).
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform() as f32
    }

    /// Standard normal, by the Box-Muller transform (one value per call).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: keeps ln() finite
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// `n` values drawn from N(0, std^2).
    pub fn normals(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| std * self.normal()).collect()
    }
}

// ---------------------------------------------------------------------------------------
// A state_dict with random weights, serialized as safetensors
// ---------------------------------------------------------------------------------------

/// One tensor of the state dict: dtype, shape and little-endian bytes.
pub struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Tensor {
    fn f32(shape: &[usize], values: &[f32]) -> Self {
        Tensor {
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn i64_scalar(value: i64) -> Self {
        Tensor {
            dtype: Dtype::I64,
            shape: Vec::new(),
            bytes: value.to_le_bytes().to_vec(),
        }
    }
}

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Builds the `state_dict()` of a PyTorch `nn.Sequential` layer by layer, with seeded
/// random weights: conv/linear weights ~ N(0, 1/fan_in), small biases, plausible
/// batch-norm statistics. Keys and shapes are exactly PyTorch's.
pub struct StateDict {
    rng: Rng,
    tensors: Vec<(String, Tensor)>,
    params: usize,
}

impl StateDict {
    /// An empty state dict whose random values are determined by `seed`.
    pub fn new(seed: u64) -> Self {
        StateDict {
            rng: Rng::new(seed),
            tensors: Vec::new(),
            params: 0,
        }
    }

    fn push_f32(&mut self, key: String, shape: &[usize], values: &[f32], learned: bool) {
        if learned {
            self.params += values.len();
        }
        self.tensors.push((key, Tensor::f32(shape, values)));
    }

    /// `nn.Conv2d(c_in, out, kernel, groups=groups, bias=bias)`: `{name}.weight`
    /// `[out, c_in/groups, k, k]` and, with a bias, `{name}.bias` `[out]`.
    pub fn conv(
        &mut self,
        name: &str,
        c_in: usize,
        out: usize,
        kernel: usize,
        groups: usize,
        bias: bool,
    ) -> &mut Self {
        let shape = [out, c_in / groups, kernel, kernel];
        let fan_in = shape[1] * kernel * kernel;
        let w = self
            .rng
            .normals(shape.iter().product(), (1.0 / fan_in as f32).sqrt());
        self.push_f32(format!("{name}.weight"), &shape, &w, true);
        if bias {
            let b = self.rng.normals(out, 0.05);
            self.push_f32(format!("{name}.bias"), &[out], &b, true);
        }
        self
    }

    /// `nn.Linear(c_in, out, bias=bias)`: `{name}.weight` `[out, c_in]`, `{name}.bias` `[out]`.
    pub fn linear(&mut self, name: &str, c_in: usize, out: usize, bias: bool) -> &mut Self {
        let w = self.rng.normals(out * c_in, (1.0 / c_in as f32).sqrt());
        self.push_f32(format!("{name}.weight"), &[out, c_in], &w, true);
        if bias {
            let b = self.rng.normals(out, 0.05);
            self.push_f32(format!("{name}.bias"), &[out], &b, true);
        }
        self
    }

    /// `nn.BatchNorm2d(c)` / `nn.BatchNorm1d(c)`: weight, bias, running mean and variance
    /// `[c]`, and `num_batches_tracked` as an I64 scalar, as PyTorch saves it.
    pub fn batch_norm(&mut self, name: &str, c: usize) -> &mut Self {
        let weight: Vec<f32> = (0..c).map(|_| self.rng.range(0.5, 1.5)).collect();
        let bias: Vec<f32> = (0..c).map(|_| self.rng.range(-0.1, 0.1)).collect();
        let mean = self.rng.normals(c, 0.1);
        let var: Vec<f32> = (0..c).map(|_| self.rng.range(0.5, 2.0)).collect();
        self.push_f32(format!("{name}.weight"), &[c], &weight, true);
        self.push_f32(format!("{name}.bias"), &[c], &bias, true);
        self.push_f32(format!("{name}.running_mean"), &[c], &mean, false);
        self.push_f32(format!("{name}.running_var"), &[c], &var, false);
        self.tensors.push((
            format!("{name}.num_batches_tracked"),
            Tensor::i64_scalar(1000),
        ));
        self
    }

    /// Every tensor a compiled model expects (its `Model::WEIGHTS`: keys and shapes of the
    /// PyTorch `state_dict()`), with seeded values of the right kind. A batch norm is
    /// recognised by its `running_mean` key and gets plausible statistics and an I64
    /// `num_batches_tracked`, as PyTorch saves it.
    pub fn for_model(specs: &[cnn::TensorSpec], seed: u64) -> Self {
        let mut sd = StateDict::new(seed);
        for spec in specs {
            let (layer, what) = spec.key.rsplit_once('.').unwrap_or(("", spec.key));
            let running_mean = format!("{layer}.running_mean");
            if specs.iter().any(|s| s.key == running_mean) {
                if what == "weight" {
                    sd.batch_norm(layer, spec.shape[0]);
                }
                continue;
            }
            let n: usize = spec.shape.iter().product();
            let values = if spec.shape.len() > 1 {
                let fan_in: usize = spec.shape[1..].iter().product();
                sd.rng.normals(n, (1.0 / fan_in as f32).sqrt())
            } else {
                sd.rng.normals(n, 0.05)
            };
            sd.push_f32(spec.key.to_string(), spec.shape, &values, true);
        }
        sd
    }

    /// Replaces tensor `key` by random values of another shape (to provoke a load error).
    pub fn reshape(&mut self, key: &str, shape: &[usize]) -> Result<(), String> {
        let values = self.rng.normals(shape.iter().product(), 0.1);
        let slot = self
            .tensors
            .iter_mut()
            .find(|(k, _)| k == key)
            .ok_or_else(|| format!("no tensor `{key}` in the state dict"))?;
        slot.1 = Tensor::f32(shape, &values);
        Ok(())
    }

    /// Renames tensor `from` to `to` (to provoke a missing/unexpected key error).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), String> {
        let slot = self
            .tensors
            .iter_mut()
            .find(|(k, _)| k == from)
            .ok_or_else(|| format!("no tensor `{from}` in the state dict"))?;
        slot.0 = to.to_string();
        Ok(())
    }

    /// Number of tensors (keys).
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Learned parameters, counted like torch's `parameters()` (BN running stats excluded).
    pub fn params(&self) -> usize {
        self.params
    }

    /// The bytes of a safetensors file holding every tensor.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, safetensors::SafeTensorError> {
        safetensors::serialize(self.tensors.iter().map(|(k, t)| (k.as_str(), t)), None)
    }
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

/// `n` values ~ N(0, 1): a stand-in for normalized images.
pub fn random_input(rng: &mut Rng, n: usize) -> Vec<f32> {
    rng.normals(n, 1.0)
}

/// A CHW-ordered flat buffer as the nested array `forward` takes.
pub fn to_chw<const C: usize, const H: usize, const W: usize>(
    flat: &[f32],
) -> Result<Box<[[[f32; W]; H]; C]>, String> {
    if flat.len() != C * H * W {
        return Err(format!(
            "{} values cannot fill a [{C}, {H}, {W}] input",
            flat.len()
        ));
    }
    let mut a = Box::new([[[0.0f32; W]; H]; C]);
    a.as_flattened_mut()
        .as_flattened_mut()
        .copy_from_slice(flat);
    Ok(a)
}

/// A model's nested-array input or output seen as flat CHW values.
pub trait Flat {
    /// The values in C, H, W order.
    fn flat(&self) -> &[f32];
}

impl<const N: usize> Flat for [f32; N] {
    fn flat(&self) -> &[f32] {
        self
    }
}

impl<const C: usize, const H: usize, const W: usize> Flat for [[[f32; W]; H]; C] {
    fn flat(&self) -> &[f32] {
        self.as_flattened().as_flattened()
    }
}

/// Builds a nested `[[[f32; W]; H]; C]` input from flat values.
pub trait FromFlat: Sized {
    /// `flat` in C, H, W order (its length must be the input's).
    fn from_flat(flat: &[f32]) -> Result<Box<Self>, String>;
}

impl<const C: usize, const H: usize, const W: usize> FromFlat for [[[f32; W]; H]; C] {
    fn from_flat(flat: &[f32]) -> Result<Box<Self>, String> {
        to_chw::<C, H, W>(flat)
    }
}

/// The common body of the model examples: seeded weights for every tensor `M` expects
/// (`Model::WEIGHTS`), the summary, a check that `forward`, `forward_flat` and
/// `forward_batch_into` agree, and the timing table at batch 1 and batch `BATCH`.
/// Returns the model's output on the first image, in CHW order.
pub fn demo<M: cnn::Model>(example: &str) -> Result<Vec<f32>, Box<dyn std::error::Error>>
where
    M::Input: FromFlat,
    M::Output: Flat,
{
    const BATCH: usize = 16;
    let opts = parse_args(example);

    let sd = StateDict::for_model(M::WEIGHTS, SEED);
    let bytes = sd.to_safetensors()?;
    println!(
        "weights: {} tensors, {} parameters (model: {}), {:.1} KiB of safetensors",
        sd.len(),
        sd.params(),
        M::PARAMS,
        bytes.len() as f64 / 1024.0
    );
    let model = M::from_safetensors(&bytes)?;
    println!("{}", M::summary());

    // One seeded random image (flat CHW and nested), and a batch starting with it.
    let mut rng = Rng::new(SEED ^ 0x1234);
    let flat = random_input(&mut rng, M::INPUT_LEN);
    let input = M::Input::from_flat(&flat)?;
    let mut batch_in = random_input(&mut rng, BATCH * M::INPUT_LEN);
    batch_in[..M::INPUT_LEN].copy_from_slice(&flat);
    let mut batch_out = vec![0.0f32; BATCH * M::OUTPUT_LEN];

    // The three entry points compute the same thing.
    let output = model.forward(&input);
    let via_flat = model.forward_flat(&flat)?;
    model.forward_batch_into(&batch_in, &mut batch_out)?;
    println!(
        "max |forward - forward_flat| = {:e}, max |forward - batch[0]| = {:e}\n",
        max_abs_diff(output.flat(), &via_flat),
        max_abs_diff(output.flat(), &batch_out[..M::OUTPUT_LEN]),
    );

    bench_report(
        &opts,
        BATCH,
        M::MACS,
        || model.forward(black_box(&input)),
        || model.forward_batch_into(black_box(&batch_in), &mut batch_out),
    )?;
    Ok(output.flat().to_vec())
}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

/// Options every benchmarking example accepts.
pub struct Options {
    /// `--iters N`: measure exactly N single-image passes (and about N images in batches)
    /// instead of running for a fixed time.
    pub iters: Option<usize>,
}

/// Parses `--iters N` (or `--iters=N`). `--help` prints the usage and exits; a bad
/// argument prints what is wrong and the usage, and exits with status 2.
pub fn parse_args(example: &str) -> Options {
    let usage = format!(
        "usage: cargo run --release --example {example} [-- --iters N]\n\
         \n  --iters N   time exactly N single-image forward passes (default: ~1.5 s of them)"
    );
    match parse(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{usage}");
            std::process::exit(0);
        }
        Err(msg) => {
            eprintln!("error: {msg}\n{usage}");
            std::process::exit(2);
        }
    }
}

/// The options, or `None` for `--help`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut opts = Options { iters: None };
    while let Some(arg) = args.next() {
        let value = if arg == "--iters" {
            args.next().ok_or("`--iters` needs a value")?
        } else if let Some(v) = arg.strip_prefix("--iters=") {
            v.to_string()
        } else if arg == "--help" || arg == "-h" {
            return Ok(None);
        } else {
            return Err(format!("unknown argument `{arg}`"));
        };
        let n: usize = value
            .parse()
            .map_err(|e| format!("`--iters {value}`: {e}"))?;
        if n == 0 {
            return Err("`--iters` must be at least 1".to_string());
        }
        opts.iters = Some(n);
    }
    Ok(Some(opts))
}

// ---------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------

/// How long to measure when no `--iters` is given.
const BUDGET: Duration = Duration::from_millis(1500);
/// How long to warm up when no `--iters` is given.
const WARMUP: Duration = Duration::from_millis(300);

/// Sorted durations of the measured calls.
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Number of measured calls.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q`-quantile (nearest rank), `q` in `(0, 1]`.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.0.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.0[rank - 1]
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// Mean duration.
    pub fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

/// Times `f`: warms up, then calls it `iters` times, or for about 1.5 s if `iters` is
/// `None`. Each call is timed separately; the first error stops the measurement.
pub fn measure<E>(
    iters: Option<usize>,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Samples, E> {
    match iters {
        Some(n) => {
            for _ in 0..n.min(10) {
                f()?;
            }
        }
        None => {
            let start = Instant::now();
            while start.elapsed() < WARMUP {
                f()?;
            }
        }
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    loop {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed());
        let done = match iters {
            Some(n) => samples.len() >= n,
            None => samples.len() >= 5 && start.elapsed() >= BUDGET,
        };
        if done {
            break;
        }
    }
    samples.sort_unstable();
    Ok(Samples(samples))
}

/// A duration in µs, or in ms from 1 ms on.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.3} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// Benchmarks one image per call (`run_one`, e.g. `forward`) and a batch of `batch`
/// images per call (`run_batch`, e.g. `forward_batch_into`), printing median and p90
/// latency per image, throughput and the multiply-accumulate rate (`macs` per image).
/// The closures' results go through `black_box` so the work cannot be optimized away.
pub fn bench_report<A, E>(
    opts: &Options,
    batch: usize,
    macs: usize,
    mut run_one: impl FnMut() -> A,
    mut run_batch: impl FnMut() -> Result<(), E>,
) -> Result<(), E> {
    let single = measure(opts.iters, || {
        black_box(run_one());
        Ok(())
    })?;
    // With --iters N, time about N images in batches too.
    let batch_iters = opts.iters.map(|n| n.div_ceil(batch).max(3));
    let batched = measure(batch_iters, || black_box(run_batch()))?;

    println!(
        "{:<30} {:>6} {:>10} {:>10} {:>10} {:>9}",
        "latency per image", "runs", "median", "p90", "images/s", "GMAC/s"
    );
    let rows = [
        ("forward, batch 1".to_string(), &single, 1),
        (
            format!("forward_batch_into, batch {batch}"),
            &batched,
            batch,
        ),
    ];
    for (label, samples, n) in rows {
        let per_image = |d: std::time::Duration| d / n as u32;
        let med = per_image(samples.median()).as_secs_f64();
        println!(
            "{label:<30} {:>6} {:>10} {:>10} {:>10.0} {:>9.2}",
            samples.len(),
            fmt_duration(per_image(samples.median())),
            fmt_duration(per_image(samples.quantile(0.9))),
            1.0 / med,
            macs as f64 / med / 1e9,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

/// Indices and values of the `k` largest values, largest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    idx.truncate(k);
    idx
}

/// Softmax of logits (for printing classifier outputs as probabilities).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Prints the top-5 classes of a logit vector with their softmax probabilities.
pub fn print_top5(logits: &[f32]) {
    let probs = softmax(logits);
    println!("top-5 (random weights, so the classes mean nothing):");
    for (rank, (class, logit)) in top_k(logits, 5).into_iter().enumerate() {
        println!(
            "  {}. class {class:>3}  logit {logit:>8.4}  p = {:.4}",
            rank + 1,
            probs[class]
        );
    }
}

/// Largest `|a - b|` of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
