//! Timing of the direct convolution on the benchmark models' large-map layers, with the
//! pixel-block size swept, both tile kinds forced and packed against unpacked 1x1 channel
//! tiles (`cargo test -p cnn-runtime --release conv::speed -- --ignored
//! --nocapture`; `CONV_ONLY=16x112k1o96` for one shape). The variants alternate round
//! by round, each the fastest of its rounds: on a VM whose speed drifts within minutes,
//! only variants timed side by side compare.

use super::*;
use crate::kernels::engine::Plan;
use crate::kernels::engine::BLOCK_OVERRIDE;
use crate::kernels::reference::{best_time_us as time, dims2d, paired_times, Axis, Lined, Rng};
use core::sync::atomic::Ordering;
use std::hint::black_box;

/// `(C, H, K, stride, O, padding, groups)`.
type Shape = (usize, usize, usize, usize, usize, usize, usize);

/// `CONV_SHAPES="c,h,k,s,o[,p[,g]];..."` (padding `p`, default `k / 2`; groups `g`,
/// default 1), if set.
fn env_shapes() -> Option<Vec<Shape>> {
    std::env::var("CONV_SHAPES").ok().map(|v| {
        v.split(';')
            .map(|t| {
                let n: Vec<usize> = t.split(',').map(|x| x.trim().parse().unwrap()).collect();
                (
                    n[0],
                    n[1],
                    n[2],
                    n[3],
                    n[4],
                    *n.get(5).unwrap_or(&(n[2] / 2)),
                    *n.get(6).unwrap_or(&1),
                )
            })
            .collect()
    })
}

/// A square `C x H x H` input, a square `K x K` kernel: the layer's dimensions
/// (`reference::dims2d`).
fn square(c: usize, h: usize, k: usize, s: usize, o: usize, p: usize, g: usize) -> Dims2d {
    let ax = Axis::conv(h, k, s, p, 1).expect("a kernel that fits the padded input");
    dims2d(c, o, g, ax, ax)
}

/// A square layer of one group (`square`'s arguments), its random input and parameters.
fn random_layer(
    rng: &mut Rng,
    (c, h, k, s, o, p): (usize, usize, usize, usize, usize, usize),
) -> (Dims2d, Lined, ConvParams) {
    let d = square(c, h, k, s, o, p, 1);
    let x = Lined::new(&rng.vec(c * h * h, -1.0, 1.0));
    let w = rng.vec(o * c * k * k, -0.3, 0.3);
    let b = rng.vec(o, -0.1, 0.1);
    (d, x, ConvParams::from_torch(o, c, k, k, &w, Some(&b), None))
}

/// The median of run times.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The working memory a model plans for the layer [`square`] gives (`conv_scratch_len`).
fn square_scratch(d: &Dims2d) -> usize {
    conv_scratch_len(
        (d.c, d.h, d.w),
        (d.o, d.oh, d.ow),
        (d.kh, d.kw),
        (d.sh, d.sw),
        (d.ph, d.pw),
        (1, 1),
        d.g,
    )
}

#[test]
#[ignore]
fn speed() {
    let level = cpu::level();
    eprintln!("level {level:?}");
    let mut rng = Rng::new(7);
    // (C, H, K, stride, O): MobileNetV2's stem and large 1x1 layers, its 7x7 ones and
    // MobileNet-96's 6x6 one (packed channel tiles), fcn_seg's.
    // `CONV_SHAPES="c,h,k,s,o[,p[,g]];..."` replaces the list (padding `p`, default `k /
    // 2`; groups `g`, default 1);
    // `CONV_ACT=tanh` times the layers with tanh instead of ReLU.
    let act = match std::env::var("CONV_ACT").as_deref() {
        Ok("tanh") => Act::TANH,
        _ => Act::RELU,
    };
    let custom = env_shapes();
    let shapes = custom.unwrap_or(vec![
        (3, 224, 3, 2, 32, 1, 1),
        (32, 112, 1, 1, 16, 0, 1),
        (16, 112, 1, 1, 96, 0, 1),
        (96, 56, 1, 1, 24, 0, 1),
        (24, 56, 1, 1, 144, 0, 1),
        (144, 56, 1, 1, 24, 0, 1),
        (32, 28, 1, 1, 192, 0, 1),
        (192, 28, 1, 1, 32, 0, 1),
        (16, 64, 3, 1, 16, 1, 1),
        (384, 14, 1, 1, 96, 0, 1),
        (96, 14, 1, 1, 576, 0, 1),
        (576, 14, 1, 1, 96, 0, 1),
        (960, 7, 1, 1, 160, 0, 1),
        (160, 7, 1, 1, 960, 0, 1),
        (960, 7, 1, 1, 320, 0, 1),
        (320, 7, 1, 1, 1280, 0, 1),
        (512, 6, 1, 1, 512, 0, 1),
    ]);
    for (c, h, k, s, o, p, g) in shapes {
        let name = if g == 1 {
            format!("{c}x{h}k{k}o{o}")
        } else {
            format!("{c}x{h}k{k}o{o}g{g}")
        };
        if std::env::var("CONV_ONLY").is_ok_and(|only| only != name) {
            continue;
        }
        let d = square(c, h, k, s, o, p, g);
        let oh = d.oh;
        let x = Lined::new(&rng.vec(c * h * h, -1.0, 1.0));
        let w = rng.vec(o * (c / g) * k * k, -0.3, 0.3);
        let b = rng.vec(o, -0.1, 0.1);
        let params = ConvParams::from_torch(o, c / g, k, k, &w, Some(&b), None);
        let mut ybuf = Lined::zeros(o * oh * oh);
        let y: &mut [f32] = &mut ybuf;
        // The working memory a model plans for the layer (packing beyond the band
        // buffer), on a line.
        let mut sbuf = Lined::zeros(square_scratch(&d));
        let scratch: &mut [f32] = &mut sbuf;
        let blocks: &[usize] = if std::env::var("CONV_SWEEP").is_ok() {
            &[4, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 1 << 40]
        } else {
            &[0]
        };
        let mut best = vec![f64::INFINITY; blocks.len()];
        for _ in 0..5 {
            for (i, &bytes) in blocks.iter().enumerate() {
                for o in &BLOCK_OVERRIDE {
                    o.store(bytes, Ordering::Relaxed);
                }
                let t = time(|| {
                    conv2d_dyn(level, d, black_box(&x), &params, y, scratch, act);
                    black_box(&*y);
                });
                best[i] = best[i].min(t);
            }
        }
        for o in &BLOCK_OVERRIDE {
            o.store(0, Ordering::Relaxed);
        }
        // Direct 1x1 layers on one row by channel tiles: packed input (where the level
        // packs) against unpacked, side by side.
        let mut packs = [f64::INFINITY; 2];
        for _ in 0..5 {
            for (i, off) in [true, false].into_iter().enumerate() {
                crate::kernels::engine::NO_PACK.store(off, Ordering::Relaxed);
                let t = time(|| {
                    conv2d_dyn(level, d, black_box(&x), &params, y, scratch, act);
                    black_box(&*y);
                });
                packs[i] = packs[i].min(t);
            }
        }
        crate::kernels::engine::NO_PACK.store(false, Ordering::Relaxed);
        // A team member's part (`conv2d_rows`): the top and the bottom half of the
        // output rows, each alone (best of 5; ideally half the whole layer's time).
        let mut halves = [f64::INFINITY; 2];
        for _ in 0..5 {
            for (i, rows) in [(0, oh / 2), (oh / 2, oh)].into_iter().enumerate() {
                let t = time(|| {
                    run::conv2d_rows_with(
                        level,
                        d,
                        black_box(&x),
                        &params,
                        y,
                        act,
                        None,
                        scratch,
                        rows,
                    );
                    black_box(&*y);
                });
                halves[i] = halves[i].min(t);
            }
        }
        // The automatic plan and both tile kinds forced, paired round by round.
        let run = |force: Option<Plan>, y: &mut [f32]| {
            conv2d_with(
                level,
                d,
                black_box(&x),
                &params,
                y,
                act,
                None,
                engine::SCRATCH,
                force,
                &mut [],
            );
            black_box(&*y);
        };
        let mut y2 = y.to_vec();
        let mut y3 = y.to_vec();
        let (plans, ratios) = paired_times(
            31,
            &mut [
                &mut || run(None, y),
                &mut || run(Some(Plan::Pixels), &mut y2),
                &mut || run(Some(Plan::Channels), &mut y3),
            ],
        );
        let cols: Vec<String> = blocks
            .iter()
            .zip(&best)
            .map(|(b, t)| format!("{}K {t:.1}", b >> 10))
            .collect();
        eprintln!(
            "{name:>14}: {} | auto {:.1} pixels {:.1} ({:.2}) channels {:.1} ({:.2}) | unpacked {:.1} packed {:.1} | halves {:.1} {:.1}",
            cols.join("  "),
            plans[0],
            plans[1],
            ratios[1],
            plans[2],
            ratios[2],
            packs[0],
            packs[1],
            halves[0],
            halves[1]
        );
    }
}

/// Layers whose weights come from memory, as in a model whose weights exceed the caches
/// (ResNet-50's last stage: 4-9 MiB a layer): each run takes another copy of the
/// weights (96 MiB in all), with the tiles' prefetches for later tiles (`engine::prefetch`)
/// on and off in alternate runs of the copies, medians of each
/// (`CONV_SHAPES="c,h,k,s,o[,p];..."` as in [`speed`]; default ResNet-50's 7x7 layers).
#[test]
#[ignore]
fn speed_cold() {
    let level = cpu::level();
    eprintln!("level {level:?}");
    let mut rng = Rng::new(7);
    let shapes = env_shapes().unwrap_or(vec![
        (2048, 7, 1, 1, 512, 0, 1),
        (512, 7, 1, 1, 2048, 0, 1),
        (512, 14, 3, 2, 512, 1, 1),
    ]);
    for (c, h, k, s, o, p, _) in shapes {
        let d = square(c, h, k, s, o, p, 1);
        let oh = d.oh;
        let x = Lined::new(&rng.vec(c * h * h, -1.0, 1.0));
        let copies = (96 << 20) / (o * c * k * k * 4) + 1;
        let params: Vec<ConvParams> = (0..copies)
            .map(|_| {
                let w = rng.vec(o * c * k * k, -0.3, 0.3);
                let b = rng.vec(o, -0.1, 0.1);
                ConvParams::from_torch(o, c, k, k, &w, Some(&b), None)
            })
            .collect();
        let mut y = vec![0.0f32; o * oh * oh];
        let len = square_scratch(&d);
        let mut scratch = vec![0.0f32; len];
        let mut times = [Vec::new(), Vec::new()];
        for r in 0..copies * 12 {
            let off = (r / copies) % 2;
            crate::kernels::engine::NO_PREFETCH.store(off == 1, Ordering::Relaxed);
            let t0 = std::time::Instant::now();
            conv2d_dyn(
                level,
                d,
                black_box(&x),
                &params[r % copies],
                &mut y,
                &mut scratch,
                Act::RELU,
            );
            black_box(&y);
            times[off].push(t0.elapsed().as_secs_f64() * 1e6);
        }
        crate::kernels::engine::NO_PREFETCH.store(false, Ordering::Relaxed);
        let (on, off) = (median(&mut times[0]), median(&mut times[1]));
        eprintln!(
            "{:>14}: cold weights, prefetch on {on:.1} off {off:.1} ({:.2}) ({copies} copies)",
            format!("{c}x{h}k{k}s{s}o{o}"),
            off / on
        );
    }
}

/// A fused residual read from memory, as in a model (ResNets add the block's input,
/// written three layers earlier): each run takes another copy of the residual (192 MiB
/// in all), against the same layer without a residual and with the residual warm, and
/// with the tiles' prefetches for later tiles on and off, alternated run by run
/// (`CONV_SHAPES` as in [`speed`]; default ResNet-50's 14x14, 28x28 and 56x56 layers
/// that add one). Intel Xeon, one core, 2026-12-05, µs none / warm / cold with / cold
/// without: 256x14x14 -> 1024 633 / 689 / 770 / 768, 128x28x28 -> 512 635 / 725 / 821 /
/// 873, 64x56x56 -> 256 657 / 830 / 948 / 1055 (docs/PERFORMANCE.md, "The fused
/// residual's memory").
#[test]
#[ignore]
fn speed_residual() {
    let level = cpu::level();
    eprintln!("level {level:?}");
    let mut rng = Rng::new(7);
    let shapes = env_shapes().unwrap_or(vec![
        (256, 14, 1, 1, 1024, 0, 1),
        (128, 28, 1, 1, 512, 0, 1),
        (64, 56, 1, 1, 256, 0, 1),
    ]);
    for (c, h, k, s, o, p, _) in shapes {
        let (d, x, params) = random_layer(&mut rng, (c, h, k, s, o, p));
        let n = o * d.oh * d.ow;
        let copies = (192 << 20) / (n * 4) + 1;
        let res: Vec<Vec<f32>> = (0..copies).map(|_| rng.vec(n, -1.0, 1.0)).collect();
        let mut y = vec![0.0f32; n];
        let len = square_scratch(&d);
        let mut scratch = vec![0.0f32; len];
        // No residual; warm; cold with prefetches; cold without.
        let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for r in 0..copies * 16 {
            let v = r % 4;
            crate::kernels::engine::NO_PREFETCH.store(v == 3, Ordering::Relaxed);
            let rr = match v {
                0 => None,
                1 => Some(&res[0][..]),
                // Each cold run its own copy.
                _ => Some(&res[(r / 4 * 2 + v - 2) % copies][..]),
            };
            let t0 = std::time::Instant::now();
            conv2d_with(
                level,
                d,
                black_box(&x),
                &params,
                &mut y,
                Act::RELU,
                rr,
                engine::SCRATCH,
                None,
                &mut scratch,
            );
            black_box(&y);
            times[v].push(t0.elapsed().as_secs_f64() * 1e6);
        }
        crate::kernels::engine::NO_PREFETCH.store(false, Ordering::Relaxed);
        let t: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
        eprintln!(
            "{:>14}: none {:.1}, residual warm {:.1}, cold {:.1} with prefetches, {:.1} without ({copies} copies)",
            format!("{c}x{h}k{k}s{s}o{o}"),
            t[0],
            t[1],
            t[2],
            t[3]
        );
    }
}

/// A layer writing its output into the same (warm) buffer every run, and into a new
/// (cold) one each run, as a model's arena often is: what the output's first writes
/// cost when its lines come from memory (`CONV_SHAPES` as [`speed`]).
#[test]
#[ignore]
fn speed_cold_output() {
    let level = cpu::level();
    eprintln!("level {level:?}");
    let mut rng = Rng::new(7);
    let shapes = env_shapes().unwrap_or(vec![
        (96, 14, 1, 1, 576, 0, 1),
        (576, 14, 1, 1, 96, 0, 1),
        (960, 7, 1, 1, 160, 0, 1),
    ]);
    for (c, h, k, s, o, p, _) in shapes {
        let (d, x, params) = random_layer(&mut rng, (c, h, k, s, o, p));
        let n = o * d.oh * d.ow;
        let copies = (192 << 20) / (n * 4) + 1;
        // Written once, so that no run pays for first touches of its pages.
        let mut ys: Vec<Vec<f32>> = (0..copies).map(|_| vec![1.0f32; n + 16]).collect();
        let len = square_scratch(&d);
        let mut scratch = vec![0.0f32; len];
        let mut times = [Vec::new(), Vec::new()];
        for r in 0..copies * 8 {
            let v = r % 2;
            let i = if v == 0 {
                0
            } else {
                1 + (r / 2) % (copies - 1)
            };
            let y = &mut ys[i];
            let off = y.as_ptr().align_offset(64);
            let t0 = std::time::Instant::now();
            conv2d_with(
                level,
                d,
                black_box(&x),
                &params,
                &mut y[off..off + n],
                Act::RELU,
                None,
                engine::SCRATCH,
                None,
                &mut scratch,
            );
            black_box(&y);
            times[v].push(t0.elapsed().as_secs_f64() * 1e6);
        }
        let t: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
        eprintln!(
            "{:>14}: output warm {:.1}, cold {:.1} ({copies} copies)",
            format!("{c}x{h}k{k}s{s}o{o}"),
            t[0],
            t[1],
        );
    }
}
