//! Batch-1 latency of single ops -- `conv_transpose2d`, `upsample_nearest2d`,
//! `upsample_bilinear2d` -- on the U-Net decoder layers of `models/unet_shapes.toml` and
//! on larger decoder-sized shapes, single thread, for the side-by-side comparison with
//! ONNX Runtime in `tools/bench/ops.py`.
//!
//! ```sh
//! cargo bench -p cnn-runtime --bench ops                                   # table
//! cargo bench -p cnn-runtime --bench ops -- --write-inputs                 # data files only
//! cargo bench -p cnn-runtime --bench ops -- --json target/bench/ops/cnn.json --time 2
//! cargo bench -p cnn-runtime --bench ops -- unet_up2 unet_up1 --time 0.3  # some ops
//! ```
//!
//! Every op's input, weight and bias are deterministic: xorshift64 (shifts 13, 7, 17)
//! seeded with the FNV-1a 64 hash of the op's name (then of `name/input`, `name/weight`,
//! `name/bias`), each value `u = (state >> 40) / 2^24 * 2 - 1` in [-1, 1); inputs are
//! `u`, conv_transpose weights `u / sqrt(in_channels/groups * kh * kw)`, biases `0.1 u`.
//! `--write-inputs` writes them to `target/bench/ops/<name>.safetensors` (`input`
//! `[1, C, H, W]`, `weight` `[C, O/G, KH, KW]`, `bias` `[O]`, and the op's attributes as
//! string metadata), which is what `tools/bench/ops.py` builds its one-node ONNX models
//! from (and `target/bench/ops/ops.json`, the names written, in table order); `ops.py`
//! then adds ONNX Runtime's output to the same file as `ort_output`.
//!
//! When that file exists, its tensors must equal the generated ones bit for bit (else it
//! is stale: an error), and when it has `ort_output`, the op's output is checked against
//! it with `|got - want| <= 1e-4 + 1e-4 |want|` (so both sides do the same work); the
//! maximum absolute difference is reported. Without the file the check is skipped.
//!
//! Timing is that of `benches/models.rs` (and `tools/bench/compare.py`): a warm-up (at
//! least 0.3 s and 10 runs), then N runs each timed alone, N for about `--time` seconds
//! (default 2); median, p10 and p90 in µs (linear interpolation, numpy's default
//! `percentile`). One run is one kernel call on pre-allocated input and output slices
//! (activation identity), on the calling thread only.
//!
//! Relative paths given to `--json` are taken from the workspace root.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cnn_runtime::cpu;
use cnn_runtime::kernels::conv::conv2d;
use cnn_runtime::kernels::conv_transpose::{
    conv_transpose2d, depth_to_space, phase_kernel_params, phase_params, phase_to_space,
    phases_to_space, stride_kernel_params, ConvTransposeParams,
};
use cnn_runtime::kernels::upsample::{upsample_bilinear2d, upsample_nearest2d};
use cnn_runtime::Act;

/// Absolute tolerance of the output check (as the conformance suite).
#[path = "../../benches/common/harness.rs"]
mod harness;

const ATOL: f32 = 1e-4;
/// Relative tolerance of the output check (as the conformance suite).
const RTOL: f32 = 1e-4;

const USAGE: &str = "\
usage: cargo bench -p cnn-runtime --bench ops -- [OP ...] [--json PATH] [--time SECONDS]
                                                  [--write-inputs]

  OP              only these ops (see the list below); default all
  --json PATH     also write the results as JSON (relative to the workspace root)
  --time SECONDS  measuring time per op, after the warm-up (default 2)
  --write-inputs  write target/bench/ops/<op>.safetensors (input, weight, bias,
                  attributes) for tools/bench/ops.py and exit without timing
";

/// The workspace root (where `target/bench/` is).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cnn-runtime sits in the workspace")
        .to_path_buf()
}

/// Where the per-op data files are.
fn data_dir() -> PathBuf {
    root().join("target/bench/ops")
}

// ---------------------------------------------------------------------------------------
// Deterministic values
// ---------------------------------------------------------------------------------------

/// FNV-1a 64 of a string.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// xorshift64 (13, 7, 17), values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn new(key: &str) -> Rng {
        Rng(fnv1a(key).max(1))
    }
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

// ---------------------------------------------------------------------------------------
// The ops
// ---------------------------------------------------------------------------------------

type Run = Box<dyn Fn(&[f32], &mut [f32])>;

/// A named tensor: key, shape, values.
type Tensor = (&'static str, Vec<usize>, Vec<f32>);

/// One op instance: its data, attributes and the kernel call.
struct Op {
    name: &'static str,
    /// `conv_transpose` or `upsample`.
    kind: &'static str,
    /// Short human description of the shapes and attributes.
    desc: String,
    in_shape: [usize; 3],
    out_shape: [usize; 3],
    /// Multiply-accumulates (0 for upsampling).
    macs: usize,
    /// `input`, and `weight`, `bias` for a conv_transpose.
    tensors: Vec<Tensor>,
    /// Attributes for the ONNX model (strings, stored as safetensors metadata).
    attrs: Vec<(&'static str, String)>,
    run: Run,
}

fn csv(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// A conv_transpose op (bias, identity activation) with deterministic values.
fn conv_transpose<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
    const G: usize,
>(
    name: &'static str,
) -> Op {
    let input = Rng::new(&format!("{name}/input")).vec(C * H * W, 1.0);
    let fan_in = (C / G * KH * KW) as f32;
    let weight =
        Rng::new(&format!("{name}/weight")).vec(C * (O / G) * KH * KW, fan_in.sqrt().recip());
    let bias = Rng::new(&format!("{name}/bias")).vec(O, 0.1);
    let p = ConvTransposeParams::from_torch(C, O / G, KH, KW, G, &weight, Some(&bias), None);
    // PyTorch's output_padding: what the output size adds to the formula's.
    let base =
        |n: usize, k: usize, s: usize, p: usize, d: usize| (n - 1) * s + d * (k - 1) + 1 - 2 * p;
    let (oph, opw) = (OH - base(H, KH, SH, PH, DH), OW - base(W, KW, SW, PW, DW));
    let mut desc = format!("{C}x{H}x{W} -> {O}x{OH}x{OW}, k{KH}");
    if KW != KH {
        let _ = write!(desc, "x{KW}");
    }
    let _ = write!(desc, " s{SH}");
    if SW != SH {
        let _ = write!(desc, "x{SW}");
    }
    if PH + PW > 0 {
        let _ = write!(desc, " p{PH}");
        if PW != PH {
            let _ = write!(desc, "x{PW}");
        }
    }
    if DH * DW > 1 {
        let _ = write!(desc, " d{DH}x{DW}");
    }
    if G > 1 {
        let _ = write!(desc, " g{G}");
    }
    Op {
        name,
        kind: "conv_transpose",
        desc,
        in_shape: [C, H, W],
        out_shape: [O, OH, OW],
        macs: C * H * W * (O / G) * KH * KW,
        tensors: vec![
            ("input", vec![1, C, H, W], input),
            ("weight", vec![C, O / G, KH, KW], weight),
            ("bias", vec![O], bias),
        ],
        attrs: vec![
            ("kernel", csv(&[KH, KW])),
            ("stride", csv(&[SH, SW])),
            ("padding", csv(&[PH, PW])),
            ("dilation", csv(&[DH, DW])),
            ("output_padding", csv(&[oph, opw])),
            ("groups", G.to_string()),
        ],
        run: Box::new(move |x, y| {
            conv_transpose2d::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(
                x,
                &p,
                y,
                Act::IDENTITY,
            )
        }),
    }
}

/// A transposed convolution with `stride = kernel` as the compiler runs it: a 1x1
/// convolution to `O*K*K` channels (`OKK`) into scratch memory, then depth to space.
fn conv_transpose_gemm<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const K: usize,
    const OKK: usize,
>(
    name: &'static str,
) -> Op {
    let mut op = conv_transpose::<C, H, W, O, OH, OW, K, K, K, K, 0, 0, 1, 1, 1>(name);
    let weight = &op.tensors[1].2;
    let bias = &op.tensors[2].2;
    let p = stride_kernel_params(C, O, K, K, weight, Some(bias), None);
    let scratch = std::cell::RefCell::new(vec![0.0f32; OKK * H * W]);
    op.desc.push_str(" [1x1 conv + depth to space]");
    op.run = Box::new(move |x, y| {
        let mut scratch = scratch.borrow_mut();
        conv2d::<C, H, W, OKK, H, W, 1, 1, 1, 1, 0, 0, 1, 1, 1>(x, &p, &mut scratch, Act::IDENTITY);
        depth_to_space::<O, K, K, H, W>(&scratch, y);
    });
    op
}

/// A transposed convolution whose strides divide its kernel (`K = S * T`), padding `P`,
/// as the compiler runs it: one stride-1 convolution of `T x T` taps over every phase
/// (`OSS = O * S * S` channels, `M x M` outputs, padding `PAD`) into scratch memory,
/// then the phases put in place.
fn conv_transpose_phases<
    const C: usize,
    const H: usize,
    const O: usize,
    const OH: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const T: usize,
    const PAD: usize,
    const M: usize,
    const OSS: usize,
>(
    name: &'static str,
) -> Op {
    let mut op = conv_transpose::<C, H, H, O, OH, OH, K, K, S, S, P, P, 1, 1, 1>(name);
    let weight = &op.tensors[1].2;
    let bias = &op.tensors[2].2;
    let p = phase_kernel_params(C, O, K, K, S, S, P, P, weight, Some(bias), None);
    let scratch = std::cell::RefCell::new(vec![0.0f32; OSS * M * M]);
    op.desc.push_str(" [phase conv + placement]");
    op.run = Box::new(move |x, y| {
        let mut scratch = scratch.borrow_mut();
        conv2d::<C, H, H, OSS, M, M, T, T, 1, 1, PAD, PAD, 1, 1, 1>(
            x,
            &p,
            &mut scratch,
            Act::IDENTITY,
        );
        phase_to_space::<O, S, S, M, M, OH, OH, P, P>(&scratch, y);
    });
    op
}

/// A `k3 s2 p1` transposed convolution with output padding 1 (`OH = 2 H`) as the compiler
/// runs it: one convolution per phase (1x1, 1x2, 2x1 and 2x2 taps, no padding, `H x H`
/// outputs each) into scratch memory, then the phases put in place.
fn conv_transpose_split<const C: usize, const H: usize, const O: usize, const OH: usize>(
    name: &'static str,
) -> Op {
    let mut op = conv_transpose::<C, H, H, O, OH, OH, 3, 3, 2, 2, 1, 1, 1, 1, 1>(name);
    let weight = &op.tensors[1].2;
    let bias = &op.tensors[2].2;
    let p = |ry, rx| {
        phase_params(
            C,
            O,
            3,
            3,
            2,
            2,
            1,
            1,
            1,
            1,
            ry,
            rx,
            weight,
            Some(bias),
            None,
        )
    };
    let ps = [p(0, 0), p(0, 1), p(1, 0), p(1, 1)];
    let scratch = std::cell::RefCell::new(vec![0.0f32; 4 * O * H * H]);
    op.desc.push_str(" [4 phase convs + placement]");
    op.run = Box::new(move |x, y| {
        let mut scratch = scratch.borrow_mut();
        let mut b = scratch.chunks_exact_mut(O * H * H);
        let a = Act::IDENTITY;
        conv2d::<C, H, H, O, H, H, 1, 1, 1, 1, 0, 0, 1, 1, 1>(x, &ps[0], b.next().unwrap(), a);
        conv2d::<C, H, H, O, H, H, 1, 2, 1, 1, 0, 0, 1, 1, 1>(x, &ps[1], b.next().unwrap(), a);
        conv2d::<C, H, H, O, H, H, 2, 1, 1, 1, 0, 0, 1, 1, 1>(x, &ps[2], b.next().unwrap(), a);
        conv2d::<C, H, H, O, H, H, 2, 2, 1, 1, 0, 0, 1, 1, 1>(x, &ps[3], b.next().unwrap(), a);
        phases_to_space::<O, 2, 2, H, H, OH, OH>(&scratch, y);
    });
    op
}

/// A nearest upsampling op.
fn nearest<const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize>(
    name: &'static str,
) -> Op {
    upsample(
        name,
        [C, H, W],
        [C, OH, OW],
        "nearest",
        None,
        Box::new(upsample_nearest2d::<C, H, W, OH, OW>),
    )
}

/// A bilinear upsampling op.
fn bilinear<
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
    const ALIGN_CORNERS: bool,
>(
    name: &'static str,
) -> Op {
    upsample(
        name,
        [C, H, W],
        [C, OH, OW],
        "bilinear",
        Some(ALIGN_CORNERS),
        Box::new(upsample_bilinear2d::<C, H, W, OH, OW, ALIGN_CORNERS>),
    )
}

fn upsample(
    name: &'static str,
    in_shape: [usize; 3],
    out_shape: [usize; 3],
    mode: &'static str,
    align_corners: Option<bool>,
    run: Run,
) -> Op {
    let [c, h, w] = in_shape;
    let input = Rng::new(&format!("{name}/input")).vec(c * h * w, 1.0);
    let mut desc = format!(
        "{c}x{h}x{w} -> {}x{}x{}, {mode}",
        out_shape[0], out_shape[1], out_shape[2]
    );
    let mut attrs = vec![("mode", mode.to_string())];
    if let Some(ac) = align_corners {
        desc += if ac { ", align_corners" } else { "" };
        attrs.push(("align_corners", ac.to_string()));
    }
    Op {
        name,
        kind: "upsample",
        desc,
        in_shape,
        out_shape,
        macs: 0,
        tensors: vec![("input", vec![1, c, h, w], input)],
        attrs,
        run,
    }
}

/// The op names, in table order.
const OPS: [&str; 9] = [
    "unet_up2",
    "unet_up1",
    "ct_k2s2_128x56",
    "ct_k4s2p1_64x64",
    "ct_k3s2p1_64x64",
    "ct_k3s2p1_128x32",
    "bilinear_x2_64x56",
    "bilinear_ac_x2_64x56",
    "nearest_x2_64x56",
];

/// Builds op `name` (one of [`OPS`]).
fn build(name: &'static str) -> Op {
    match name {
        // models/unet_shapes.toml `up2`: the 64x16x16 bottleneck back to 32x32.
        // (stride = kernel: run as the compiler does, a 1x1 conv and depth to space)
        "unet_up2" => conv_transpose_gemm::<64, 16, 16, 32, 32, 32, 2, 128>(name),
        // models/unet_shapes.toml `up1`: `d2` (32x32x32) to 64x64, bilinear, no align_corners.
        "unet_up1" => bilinear::<32, 32, 32, 64, 64, false>(name),
        // Decoder-sized: 128 -> 64 channels, 56x56 -> 112x112.
        "ct_k2s2_128x56" => conv_transpose_gemm::<128, 56, 56, 64, 112, 112, 2, 256>(name),
        // Decoder-sized, overlapping taps (DCGAN-style): 64 -> 32, 64x64 -> 128x128.
        // (run as the compiler does: one 2x2 convolution over the four phases)
        "ct_k4s2p1_64x64" => conv_transpose_phases::<64, 64, 32, 128, 4, 2, 1, 2, 1, 65, 128>(name),
        // Decoder-sized, a kernel the stride does not divide (CycleGAN, autoencoders):
        // 64 -> 32, 64x64 -> 128x128 (output padding 1); and 128 -> 64 on 32x32.
        // (run as the compiler does: one convolution per phase)
        "ct_k3s2p1_64x64" => conv_transpose_split::<64, 64, 32, 128>(name),
        "ct_k3s2p1_128x32" => conv_transpose_split::<128, 32, 64, 64>(name),
        "bilinear_x2_64x56" => bilinear::<64, 56, 56, 112, 112, false>(name),
        "bilinear_ac_x2_64x56" => bilinear::<64, 56, 56, 112, 112, true>(name),
        "nearest_x2_64x56" => nearest::<64, 56, 56, 112, 112>(name),
        _ => unreachable!("unknown op {name}"),
    }
}

// ---------------------------------------------------------------------------------------
// Data files
// ---------------------------------------------------------------------------------------

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `<name>.safetensors`: the op's tensors and its attributes as metadata.
fn write_data(op: &Op) -> Result<PathBuf, String> {
    let dir = data_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.safetensors", op.name));
    let bytes: Vec<(&str, Vec<usize>, Vec<u8>)> = op
        .tensors
        .iter()
        .map(|(k, shape, v)| (*k, shape.clone(), f32_bytes(v)))
        .collect();
    let views = bytes
        .iter()
        .map(|(k, shape, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (*k, v))
                .map_err(|e| format!("{}: {k}: {e}", op.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut meta: HashMap<String, String> = op
        .attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    meta.insert("op".into(), op.kind.into());
    meta.insert("desc".into(), op.desc.clone());
    meta.insert(
        "out_shape".into(),
        csv(&[1, op.out_shape[0], op.out_shape[1], op.out_shape[2]]),
    );
    meta.insert("macs".into(), op.macs.to_string());
    let data = safetensors::serialize(views, Some(meta))
        .map_err(|e| format!("{}: serializing: {e}", op.name))?;
    std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// Reads an F32 tensor: (shape, values).
fn read_f32(
    file: &safetensors::SafeTensors<'_>,
    key: &str,
    path: &Path,
) -> Result<(Vec<usize>, Vec<f32>), String> {
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

/// The output check.
enum Check {
    /// Compared with ORT's output: max abs diff, worst diff / tolerance (<= 1 passes).
    Compared { max_abs: f32, worst_ratio: f32 },
    /// No reference.
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

/// Checks `got` against the `ort_output` of the op's data file, after making sure the
/// file holds this op's values.
fn check(op: &Op, got: &[f32]) -> Result<Check, String> {
    let path = data_dir().join(format!("{}.safetensors", op.name));
    if !path.exists() {
        return Ok(Check::Skipped("no data file"));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: not a safetensors file: {e}", path.display()))?;
    for (key, shape, values) in &op.tensors {
        let (s, v) = read_f32(&file, key, &path)?;
        if s != *shape
            || v.iter()
                .zip(values)
                .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(format!(
                "{}: `{key}` is not this op's (stale file?): rerun `--write-inputs` and \
                 tools/bench/ops.py",
                path.display()
            ));
        }
    }
    if file.tensor("ort_output").is_err() {
        return Ok(Check::Skipped("no ort_output"));
    }
    let (shape, want) = read_f32(&file, "ort_output", &path)?;
    if want.len() != got.len() {
        return Err(format!(
            "{}: ort_output is {shape:?}, the op gives {:?}",
            path.display(),
            op.out_shape
        ));
    }
    let (mut max_abs, mut worst_ratio) = (0.0f32, 0.0f32);
    for (g, w) in got.iter().zip(&want) {
        let d = (g - w).abs();
        max_abs = max_abs.max(d);
        // NaN-safe: a NaN difference must fail.
        let r = d / (ATOL + RTOL * w.abs());
        worst_ratio = if r.is_nan() {
            f32::INFINITY
        } else {
            worst_ratio.max(r)
        };
    }
    Ok(Check::Compared {
        max_abs,
        worst_ratio,
    })
}

// ---------------------------------------------------------------------------------------
// Timing and reports
// ---------------------------------------------------------------------------------------

/// Command-line options.
struct Options {
    ops: Vec<&'static str>,
    json: Option<PathBuf>,
    time: Duration,
    write_inputs: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut opts = Options {
            ops: Vec::new(),
            json: None,
            time: Duration::from_secs(2),
            write_inputs: false,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "-h" | "--help" => return Err(String::new()),
                "--write-inputs" => opts.write_inputs = true,
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
                flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
                name => match OPS.iter().find(|o| **o == name) {
                    Some(o) => opts.ops.push(o),
                    None => return Err(format!("unknown op `{name}` (ops: {})", OPS.join(", "))),
                },
            }
        }
        if opts.ops.is_empty() {
            opts.ops = OPS.to_vec();
        }
        Ok(opts)
    }
}

/// One op's results.
struct Report {
    op: Op,
    check: Check,
    runs: usize,
    /// Run times in seconds, sorted.
    samples: Vec<f64>,
}

impl Report {
    fn quantile_us(&self, q: f64) -> f64 {
        harness::quantile(&self.samples, q) * 1e6
    }
    fn gflops(&self) -> Option<f64> {
        (self.op.macs > 0).then(|| 2.0 * self.op.macs as f64 / (self.quantile_us(0.5) * 1e-6) / 1e9)
    }
}

/// Checks the op's output, then times it.
fn bench(op: Op, opts: &Options) -> Result<Report, String> {
    let input = &op.tensors[0].2;
    let [o, oh, ow] = op.out_shape;
    let mut output = vec![0.0f32; o * oh * ow];
    (op.run)(input, &mut output);
    let check = check(&op, &output)?;

    let run = || {
        (op.run)(black_box(input), black_box(&mut output));
        black_box(&output);
    };
    let samples = harness::time_runs(opts.time, run);
    let runs = samples.len();
    Ok(Report {
        op,
        check,
        runs,
        samples,
    })
}

fn table(reports: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<21} {:<48} {:>9} {:>9} {:>10} {:>9} {:>8}  check (max |diff| vs ORT)",
        "op", "shape", "runs", "p10 µs", "median µs", "p90 µs", "GFLOP/s"
    );
    for r in reports {
        let check = match &r.check {
            Check::Compared {
                max_abs,
                worst_ratio,
            } => format!(
                "{} ({max_abs:.1e}, {worst_ratio:.2} of tol)",
                if r.check.passed() { "ok" } else { "FAIL" }
            ),
            Check::Skipped(why) => format!("skipped ({why})"),
        };
        let _ = writeln!(
            s,
            "{:<21} {:<48} {:>9} {:>9.1} {:>10.1} {:>9.1} {:>8}  {check}",
            r.op.name,
            r.op.desc,
            r.runs,
            r.quantile_us(0.1),
            r.quantile_us(0.5),
            r.quantile_us(0.9),
            r.gflops().map_or("-".into(), |g| format!("{g:.2}")),
        );
    }
    s
}

fn json(reports: &[Report]) -> serde_json::Value {
    let ops: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let (checked, max_abs, worst_ratio) = match &r.check {
                Check::Compared {
                    max_abs,
                    worst_ratio,
                } => (true, Some(*max_abs), Some(*worst_ratio)),
                Check::Skipped(_) => (false, None, None),
            };
            serde_json::json!({
                "op": r.op.name,
                "kind": r.op.kind,
                "desc": r.op.desc,
                "input_shape": r.op.in_shape,
                "output_shape": r.op.out_shape,
                "macs": r.op.macs,
                "checked": checked,
                "check_passed": r.check.passed(),
                "max_abs_diff": max_abs,
                "worst_diff_over_tolerance": worst_ratio,
                "runs": r.runs,
                "p10_us": r.quantile_us(0.1),
                "median_us": r.quantile_us(0.5),
                "p90_us": r.quantile_us(0.9),
                "min_us": r.quantile_us(0.0),
                "mean_us": r.samples.iter().sum::<f64>() / r.samples.len() as f64 * 1e6,
                "gflops": r.gflops(),
            })
        })
        .collect();
    serde_json::json!({
        "engine": "cnn",
        "version": env!("CARGO_PKG_VERSION"),
        "simd_level": format!("{:?}", cpu::level()),
        "threads": 1,
        "batch": 1,
        "timing": "warm-up >= 0.3 s and 10 runs; each run timed alone; \
                   quantiles by linear interpolation",
        "tolerance": { "atol": ATOL, "rtol": RTOL },
        "ops": ops,
    })
}

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(msg) if msg.is_empty() => {
            print!("{USAGE}\nops: {}\n", OPS.join(", "));
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    if opts.write_inputs {
        for name in &opts.ops {
            match write_data(&build(name)) {
                Ok(path) => println!("wrote {}", path.display()),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        // The ops written, in table order, for tools/bench/ops.py.
        let index = data_dir().join("ops.json");
        if let Err(e) = std::fs::write(&index, serde_json::json!(opts.ops).to_string() + "\n") {
            eprintln!("error: writing {}: {e}", index.display());
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }

    println!(
        "cnn {} single ops, batch 1, one thread, SIMD level {:?}",
        env!("CARGO_PKG_VERSION"),
        cpu::level()
    );
    let mut reports = Vec::new();
    let mut failed = false;
    for name in &opts.ops {
        match bench(build(name), &opts) {
            Ok(r) => {
                failed |= !r.check.passed();
                reports.push(r);
            }
            Err(e) => {
                eprintln!("error: {name}: {e}");
                failed = true;
            }
        }
    }
    print!("{}", table(&reports));

    if let Some(path) = &opts.json {
        if let Err(e) = harness::write_json(path, &json(&reports)) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    if failed {
        eprintln!("error: an op failed or its output differs from ONNX Runtime's");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
