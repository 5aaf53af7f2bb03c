//! Kernel benchmark: every layer of the four shared models (LeNet-5, VGG-CIFAR,
//! MobileNet-96, FCN-seg), and one layer of each shape of MobileNetV2 at 224x224
//! (`mobilenet_v2_head`: the 112x112 to 28x28 stages, `mobilenet_v2_tail`: 14x14, 7x7
//! and the classifier), timed on its own with its real const-generic instance, then each model's
//! straight line of kernel calls end to end ("in the chain": each layer reading what
//! the one before wrote), at every level the machine has (portable, AVX2 + FMA,
//! AVX-512); plus the machine's measured FMA peak for reference.
//!
//! ```text
//! cargo bench -p cnn-runtime --bench kernels                 # everything
//! cargo bench -p cnn-runtime --bench kernels -- lenet5 avx2  # models / levels by name
//! cargo bench -p cnn-runtime --bench kernels -- cifar_vgg avx2 layer=conv5  # one layer
//! ```
//!
//! Times are medians over 31 samples of about 2 ms each (batch 1; one thread, or with
//! `--features parallel` the `CNN_NUM_THREADS` threads of the pool, default all cores);
//! GFLOP/s counts 2 FLOPs per multiply-accumulate.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cnn_runtime::cpu::{self, Level};
use cnn_runtime::kernels::conv::{conv2d, ConvParams};
use cnn_runtime::kernels::depthwise::{depthwise_conv2d, DepthwiseParams};
use cnn_runtime::kernels::linear::{linear, LinearParams};
use cnn_runtime::kernels::pool::{avg_pool2d, global_avg_pool, max_pool2d};
use cnn_runtime::kernels::winograd::{
    winograd_conv3x3, winograd_scratch_len, winograd_tile, WinogradParams,
};
use cnn_runtime::Act;

/// A small deterministic generator for weights and inputs.
struct Rng(u64);

impl Rng {
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

type Run = Box<dyn Fn(&[f32], &mut [f32])>;

/// One kernel call of a model: what it is, its MACs, input/output lengths, the call.
struct Layer {
    name: String,
    macs: usize,
    inp: usize,
    out: usize,
    run: Run,
}

/// A conv (or depthwise when `G == C == O`) layer with random weights.
macro_rules! conv {
    ($rng:expr, $name:expr, $c:literal, $h:literal, $w:literal, $o:literal, $oh:literal,
     $ow:literal, $kh:literal, $kw:literal, $sh:literal, $sw:literal, $ph:literal,
     $pw:literal, $dh:literal, $dw:literal, $g:literal, $act:expr) => {{
        let fan_in = ($c / $g * $kh * $kw) as f32;
        let w = $rng.vec($o * ($c / $g) * $kh * $kw, 1.0 / fan_in.sqrt());
        let b = $rng.vec($o, 0.1);
        let macs = $o * $oh * $ow * ($c / $g) * $kh * $kw;
        // 3x3 stride-1 dense layers where the compiler picks Winograd run it here too
        // (dilated ones by their rule).
        // (`WG_TILE=4` or `2`: that tile wherever Winograd runs, for comparisons.)
        let tile = if $kh == 3 && $kw == 3 && $sh == 1 && $sw == 1 && $g == 1 {
            winograd_tile($c, $h, $w, $o, $dh, $dw).map(|t| {
                std::env::var("WG_TILE")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(t)
            })
        } else {
            None
        };
        let wino = tile.is_some();
        let run: Run = if let Some(tile) = tile {
            let p = WinogradParams::with_tile(tile, $o, $c, &w, Some(&b), None);
            let scratch =
                vec![0.0f32; winograd_scratch_len(tile, $c, $h, $w, $o, $oh, $ow, $dh, $dw)];
            let scratch = std::cell::RefCell::new(scratch);
            Box::new(move |x: &[f32], y: &mut [f32]| {
                winograd_conv3x3::<$c, $h, $w, $o, $oh, $ow, $ph, $pw, $dh, $dw>(
                    x,
                    &p,
                    y,
                    &mut scratch.borrow_mut(),
                    $act,
                )
            })
        } else if $g == $c && $g == $o && $g > 1 {
            let p = DepthwiseParams::from_torch($o, 1, $kh, $kw, &w, Some(&b), None);
            Box::new(move |x: &[f32], y: &mut [f32]| {
                depthwise_conv2d::<$c, $h, $w, $oh, $ow, $kh, $kw, $sh, $sw, $ph, $pw, $dh, $dw>(
                    x, &p, y, $act,
                )
            })
        } else {
            let p = ConvParams::from_torch($o, $c / $g, $kh, $kw, &w, Some(&b), None);
            Box::new(move |x: &[f32], y: &mut [f32]| {
                conv2d::<$c, $h, $w, $o, $oh, $ow, $kh, $kw, $sh, $sw, $ph, $pw, $dh, $dw, $g>(
                    x, &p, y, $act,
                )
            })
        };
        let kind = if tile == Some(2) {
            "wino2"
        } else if wino {
            "wino4"
        } else if $g == $c && $g > 1 {
            "dw"
        } else {
            "conv"
        };
        Layer {
            name: format!(
                "{:<7} {kind} {}x{}x{} -> {}x{}x{}, k{}x{} s{} p{} d{}",
                $name, $c, $h, $w, $o, $oh, $ow, $kh, $kw, $sh, $ph, $dh
            ),
            macs,
            inp: $c * $h * $w,
            out: $o * $oh * $ow,
            run,
        }
    }};
}

/// A linear layer with random weights.
fn linear_layer<const IN: usize, const OUT: usize>(rng: &mut Rng, name: &str, act: Act) -> Layer {
    let w = rng.vec(IN * OUT, 1.0 / (IN as f32).sqrt());
    let b = rng.vec(OUT, 0.1);
    let p = LinearParams::from_torch(OUT, IN, &w, Some(&b), None);
    Layer {
        name: format!("{name:<7} linear {IN} -> {OUT}"),
        macs: IN * OUT,
        inp: IN,
        out: OUT,
        run: Box::new(move |x, y| linear::<IN, OUT>(x, &p, y, act)),
    }
}

/// Global average pooling of `C` planes of `HW` pixels (`map`: their `HxW`).
fn global_pool<const C: usize, const HW: usize>(map: &str) -> Layer {
    plain(
        format!("gap     global avg {C}x{map}"),
        C * HW,
        C,
        Box::new(global_avg_pool::<C, HW>),
    )
}

/// A layer without weights.
fn plain(name: String, inp: usize, out: usize, run: Run) -> Layer {
    Layer {
        name,
        macs: 0,
        inp,
        out,
        run,
    }
}

fn lenet(rng: &mut Rng) -> Vec<Layer> {
    vec![
        conv!(
            rng,
            "conv1",
            1,
            32,
            32,
            6,
            28,
            28,
            5,
            5,
            1,
            1,
            0,
            0,
            1,
            1,
            1,
            Act::TANH
        ),
        plain(
            "pool1   avg 2x2 6x28x28".into(),
            6 * 28 * 28,
            6 * 14 * 14,
            Box::new(avg_pool2d::<6, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, true>),
        ),
        conv!(
            rng,
            "conv2",
            6,
            14,
            14,
            16,
            10,
            10,
            5,
            5,
            1,
            1,
            0,
            0,
            1,
            1,
            1,
            Act::TANH
        ),
        plain(
            "pool2   avg 2x2 16x10x10".into(),
            16 * 10 * 10,
            16 * 5 * 5,
            Box::new(avg_pool2d::<16, 10, 10, 5, 5, 2, 2, 2, 2, 0, 0, true>),
        ),
        linear_layer::<400, 120>(rng, "fc1", Act::TANH),
        linear_layer::<120, 84>(rng, "fc2", Act::TANH),
        linear_layer::<84, 10>(rng, "fc3", Act::IDENTITY),
    ]
}

fn cifar_vgg(rng: &mut Rng) -> Vec<Layer> {
    let r = Act::RELU;
    vec![
        conv!(rng, "conv1", 3, 32, 32, 32, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        conv!(rng, "conv2", 32, 32, 32, 32, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        plain(
            "pool    max 2x2 32x32x32".into(),
            32 * 32 * 32,
            32 * 16 * 16,
            Box::new(max_pool2d::<32, 32, 32, 16, 16, 2, 2, 2, 2, 0, 0, 1, 1>),
        ),
        conv!(rng, "conv3", 32, 16, 16, 64, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        conv!(rng, "conv4", 64, 16, 16, 64, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        plain(
            "pool    max 2x2 64x16x16".into(),
            64 * 16 * 16,
            64 * 8 * 8,
            Box::new(max_pool2d::<64, 16, 16, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1>),
        ),
        conv!(rng, "conv5", 64, 8, 8, 128, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        conv!(rng, "conv6", 128, 8, 8, 128, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        plain(
            "pool    max 2x2 128x8x8".into(),
            128 * 8 * 8,
            128 * 4 * 4,
            Box::new(max_pool2d::<128, 8, 8, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1>),
        ),
        global_pool::<128, 16>("4x4"),
        linear_layer::<128, 10>(rng, "fc", Act::IDENTITY),
    ]
}

fn mobilenet_96(rng: &mut Rng) -> Vec<Layer> {
    let r = Act::RELU6;
    vec![
        conv!(rng, "stem", 3, 96, 96, 32, 48, 48, 3, 3, 2, 2, 1, 1, 1, 1, 1, r),
        conv!(rng, "dw1", 32, 48, 48, 32, 48, 48, 3, 3, 1, 1, 1, 1, 1, 1, 32, r),
        conv!(rng, "pw1", 32, 48, 48, 64, 48, 48, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw2", 64, 48, 48, 64, 24, 24, 3, 3, 2, 2, 1, 1, 1, 1, 64, r),
        conv!(rng, "pw2", 64, 24, 24, 128, 24, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw3", 128, 24, 24, 128, 24, 24, 3, 3, 1, 1, 1, 1, 1, 1, 128, r),
        conv!(rng, "pw3", 128, 24, 24, 128, 24, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw4", 128, 24, 24, 128, 12, 12, 3, 3, 2, 2, 1, 1, 1, 1, 128, r),
        conv!(rng, "pw4", 128, 12, 12, 256, 12, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw5", 256, 12, 12, 256, 12, 12, 3, 3, 1, 1, 1, 1, 1, 1, 256, r),
        conv!(rng, "pw5", 256, 12, 12, 256, 12, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw6", 256, 12, 12, 256, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 256, r),
        conv!(rng, "pw6", 256, 6, 6, 512, 6, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        global_pool::<512, 36>("6x6"),
        linear_layer::<512, 100>(rng, "fc", Act::IDENTITY),
    ]
}

/// The 112x112, 56x56 and 28x28 stages of MobileNet v2 at 224x224 (one layer of each
/// shape, in order; the residual additions left out): large maps, where the
/// activations rather than the weights fill the caches.
fn mobilenet_v2_head(rng: &mut Rng) -> Vec<Layer> {
    let (r, i) = (Act::RELU6, Act::IDENTITY);
    vec![
        conv!(rng, "stem", 3, 224, 224, 32, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 1, r),
        conv!(rng, "dw32", 32, 112, 112, 32, 112, 112, 3, 3, 1, 1, 1, 1, 1, 1, 32, r),
        conv!(rng, "pj32", 32, 112, 112, 16, 112, 112, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw16", 16, 112, 112, 96, 112, 112, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw96s2", 96, 112, 112, 96, 56, 56, 3, 3, 2, 2, 1, 1, 1, 1, 96, r),
        conv!(rng, "pj96", 96, 56, 56, 24, 56, 56, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw24", 24, 56, 56, 144, 56, 56, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw144", 144, 56, 56, 144, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 144, r),
        conv!(rng, "pj144", 144, 56, 56, 24, 56, 56, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw24", 24, 56, 56, 144, 56, 56, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw144s2", 144, 56, 56, 144, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1, 144, r),
        conv!(rng, "pj144", 144, 28, 28, 32, 28, 28, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw32", 32, 28, 28, 192, 28, 28, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw192", 192, 28, 28, 192, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 192, r),
        conv!(rng, "pj192", 192, 28, 28, 32, 28, 28, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw32", 32, 28, 28, 192, 28, 28, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw192s2", 192, 28, 28, 192, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1, 192, r),
        conv!(rng, "pj192", 192, 14, 14, 64, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
    ]
}

/// The 14x14 and 7x7 stages of MobileNet v2 at 224x224 and its classifier (one layer of
/// each shape, in order; the residual additions left out): 1x1 convolutions on small
/// maps with many channels, where the weights rather than the activations fill the
/// caches, then global pooling and the 1280 -> 1000 linear layer (5 MB of weights).
fn mobilenet_v2_tail(rng: &mut Rng) -> Vec<Layer> {
    let (r, i) = (Act::RELU6, Act::IDENTITY);
    vec![
        conv!(rng, "pw64", 64, 14, 14, 384, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw384", 384, 14, 14, 384, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 384, r),
        conv!(rng, "pj384", 384, 14, 14, 64, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw64", 64, 14, 14, 384, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw384", 384, 14, 14, 384, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 384, r),
        conv!(rng, "pj384", 384, 14, 14, 96, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw96", 96, 14, 14, 576, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw576", 576, 14, 14, 576, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 576, r),
        conv!(rng, "pj576", 576, 14, 14, 96, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw96", 96, 14, 14, 576, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw576s2", 576, 14, 14, 576, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1, 576, r),
        conv!(rng, "pj576", 576, 7, 7, 160, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw160", 160, 7, 7, 960, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw960", 960, 7, 7, 960, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 960, r),
        conv!(rng, "pj960", 960, 7, 7, 160, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw160", 160, 7, 7, 960, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        conv!(rng, "dw960", 960, 7, 7, 960, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 960, r),
        conv!(rng, "pj960", 960, 7, 7, 320, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, i),
        conv!(rng, "pw320", 320, 7, 7, 1280, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, r),
        global_pool::<1280, 49>("7x7"),
        linear_layer::<1280, 1000>(rng, "fc", Act::IDENTITY),
    ]
}

fn fcn_seg(rng: &mut Rng) -> Vec<Layer> {
    let r = Act::RELU;
    vec![
        conv!(rng, "enc1", 3, 64, 64, 16, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        conv!(rng, "enc2", 16, 64, 64, 32, 64, 64, 3, 3, 1, 1, 2, 2, 2, 2, 1, r),
        conv!(rng, "enc3", 32, 64, 64, 32, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, r),
        conv!(
            rng,
            "head",
            32,
            64,
            64,
            4,
            64,
            64,
            1,
            1,
            1,
            1,
            0,
            0,
            1,
            1,
            1,
            Act::IDENTITY
        ),
    ]
}

/// Median time of one call of `f`, from 31 samples of about 2 ms each.
fn median_time(mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_millis(20) || calls < 3 {
        f();
        calls += 1;
    }
    let per_call = start.elapsed() / calls;
    let reps = (Duration::from_millis(2).as_nanos() / per_call.as_nanos().max(1)).max(1) as u32;
    let mut samples: Vec<Duration> = (0..31)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed() / reps
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn gflops(macs: usize, t: Duration) -> f64 {
    2.0 * macs as f64 / t.as_secs_f64() / 1e9
}

fn fmt_us(t: Duration) -> String {
    format!("{:.2}", t.as_secs_f64() * 1e6)
}

/// Times each layer alone (only those whose name starts with `only`, if given), then the
/// model's straight line of calls.
fn bench_model(name: &str, layers: &[Layer], rng: &mut Rng, level: Level, only: Option<&str>) {
    assert_eq!(cpu::set_level(level), level);
    println!(
        "\n{name} [{level:?}, {} thread(s)]",
        cnn_runtime::pool::num_threads()
    );
    println!(
        "{:<48} {:>12} {:>10} {:>9}",
        "layer", "MACs", "µs", "GFLOP/s"
    );
    let mut sum = Duration::ZERO;
    let mut alone = Vec::with_capacity(layers.len());
    let biggest = layers.iter().map(|l| l.inp.max(l.out)).max().unwrap();
    for l in layers {
        if only.is_some_and(|o| !l.name.starts_with(o)) {
            continue;
        }
        let mut xb = Aligned::new(l.inp);
        xb.get().copy_from_slice(&rng.vec(l.inp, 1.0));
        let mut yb = Aligned::new(l.out);
        let y = yb.get();
        let x = &*xb.get();
        let t = median_time(|| (l.run)(black_box(x), black_box(&mut *y)));
        sum += t;
        alone.push(t);
        let gf = if l.macs > 0 {
            format!("{:>9.1}", gflops(l.macs, t))
        } else {
            String::new()
        };
        println!("{:<48} {:>12} {:>10} {gf}", l.name, l.macs, fmt_us(t));
    }
    if only.is_some() {
        return;
    }
    let macs: usize = layers.iter().map(|l| l.macs).sum();
    println!(
        "{:<48} {:>12} {:>10} {:>9.1}",
        "sum of layers",
        macs,
        fmt_us(sum),
        gflops(macs, sum)
    );
    let input = rng.vec(layers[0].inp, 1.0);
    let (mut ab, mut bb) = (Aligned::new(biggest), Aligned::new(biggest));
    let (a, b) = (ab.get(), bb.get());
    let mut chain = |mut lap: Option<&mut [Duration]>| {
        a[..input.len()].copy_from_slice(black_box(&input));
        let mut t = Instant::now();
        for (i, l) in layers.iter().enumerate() {
            if i % 2 == 0 {
                (l.run)(a, b);
            } else {
                (l.run)(b, a);
            }
            if let Some(lap) = lap.as_deref_mut() {
                let now = Instant::now();
                lap[i] = now - t;
                t = now;
            }
        }
        black_box(&a);
    };
    let t = median_time(|| chain(None));
    // Each layer's time inside the chain (input written by the layer before, on whichever
    // cores that layer used): median of 101 timed forwards.
    let mut laps = vec![vec![Duration::ZERO; layers.len()]; 101];
    for lap in &mut laps {
        chain(Some(lap));
    }
    println!(
        "{:<48} {:>12} {:>10} {:>10}",
        "in the chain", "", "alone µs", "chained µs"
    );
    for (i, (l, alone)) in layers.iter().zip(&alone).enumerate() {
        let mut col: Vec<Duration> = laps.iter().map(|lap| lap[i]).collect();
        col.sort();
        println!(
            "{:<48} {:>12} {:>10} {:>10}",
            l.name,
            "",
            fmt_us(*alone),
            fmt_us(col[col.len() / 2])
        );
    }
    println!(
        "{:<48} {:>12} {:>10} {:>9.1}",
        "forward (layers chained)",
        macs,
        fmt_us(t),
        gflops(macs, t)
    );
}

/// A buffer of floats whose first value starts a 64-byte cache line, as the tensors of a
/// compiled model's arena do (a `Vec<f32>` from the allocator is only 16-byte aligned, and
/// a split layer's parts would share the lines at their boundaries).
struct Aligned {
    buf: Vec<f32>,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        Aligned {
            buf: vec![0.0; len + 16],
            len,
        }
    }
    fn get(&mut self) -> &mut [f32] {
        let off = self.buf.as_ptr().align_offset(64);
        &mut self.buf[off..off + self.len]
    }
}

/// FMA throughput of this core: 12 independent chains of vector FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(n: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(1.0); 12];
    let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..n {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    _mm256_cvtss_f32(s)
}

/// AVX-512 FMA throughput of this core: 12 independent chains of 512-bit FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_512(n: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(1.0); 12];
    let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..n {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    _mm512_reduce_add_ps(s)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    // `layer=NAME`: time only that layer (for profiling).
    let only = args
        .iter()
        .find_map(|a| a.strip_prefix("layer=").map(str::to_string));

    #[cfg(target_arch = "x86_64")]
    if cpu::detected() >= Level::Avx2Fma {
        let n = 1_000_000;
        let t = median_time(|| {
            // SAFETY: AVX2 and FMA were detected.
            black_box(unsafe { fma_loop(black_box(n)) });
        });
        let peak = (n * 12 * 16) as f64 / t.as_secs_f64() / 1e9;
        println!("AVX2 FMA peak of this core (measured): {peak:.1} GFLOP/s");
    }
    #[cfg(target_arch = "x86_64")]
    if cpu::detected() == Level::Avx512 {
        let n = 1_000_000;
        let t = median_time(|| {
            // SAFETY: AVX-512F was detected.
            black_box(unsafe { fma_loop_512(black_box(n)) });
        });
        let peak = (n * 12 * 32) as f64 / t.as_secs_f64() / 1e9;
        println!("AVX-512 FMA peak of this core (measured): {peak:.1} GFLOP/s");
    }

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    type Build = fn(&mut Rng) -> Vec<Layer>;
    let models: [(&str, Build); 6] = [
        ("lenet5", lenet),
        ("cifar_vgg", cifar_vgg),
        ("mobilenet_96", mobilenet_96),
        ("fcn_seg", fcn_seg),
        ("mobilenet_v2_head", mobilenet_v2_head),
        ("mobilenet_v2_tail", mobilenet_v2_tail),
    ];
    let tag = |level| match level {
        Level::Portable => "portable",
        Level::Avx2Fma => "avx2",
        Level::Avx512 => "avx512",
    };
    let levels = cpu::supported();
    let level_args = levels.iter().any(|&l| args.iter().any(|a| a == tag(l)));
    let model_args = models.iter().any(|(m, _)| args.iter().any(|a| a == m));
    for (name, build) in models {
        if model_args && !args.iter().any(|a| a == name) {
            continue;
        }
        let layers = build(&mut rng);
        for &level in levels {
            if level_args && !args.iter().any(|a| a == tag(level)) {
                continue;
            }
            bench_model(name, &layers, &mut rng, level, only.as_deref());
        }
    }
}
