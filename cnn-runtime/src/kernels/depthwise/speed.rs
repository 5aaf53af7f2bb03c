//! Timing of the depthwise plans on the depthwise layers of the benchmark models
//! (`cargo test -p cnn-runtime --release depthwise::speed -- --ignored --nocapture`;
//! `CNN_SIMD=avx2` for the AVX2 level, `DW_ONLY=128x24s1` for one shape,
//! `DW_PLAN='Some(Flat)'` for one plan, `DW_SHAPES="c,h,s;..."` for other shapes, `DW_ACT=silu` (`hardswish`, `tanh`) for a curved
//! activation instead of ReLU6, `DW_K=5` for 5x5 kernels (padding 2) on EfficientNet-B0's
//! 5x5 shapes).

use super::*;
use crate::kernels::reference::{best_time_us as time, dims2d, Axis, Lined, Rng};
use std::hint::black_box;

/// `DW_SHAPES="c,h,s;..."`, if set: the shapes to time instead of a test's list
/// (channels, side, stride).
fn env_shapes() -> Option<Vec<(usize, usize, usize)>> {
    std::env::var("DW_SHAPES").ok().map(|v| {
        v.split(';')
            .map(|t| {
                let n: Vec<usize> = t.split(',').map(|x| x.trim().parse().unwrap()).collect();
                (n[0], n[1], n[2])
            })
            .collect()
    })
}

#[test]
#[ignore]
fn speed() {
    let level = cpu::level();
    let act = match std::env::var("DW_ACT").as_deref() {
        Ok("silu") => Act::SILU,
        Ok("hardswish") => Act::HARD_SWISH,
        Ok("tanh") => Act::TANH,
        _ => Act::RELU6,
    };
    eprintln!("level {level:?}, {act:?}");
    let mut rng = Rng::new(5);
    let k: usize = std::env::var("DW_K").map_or(3, |v| v.parse().unwrap());
    let shapes_5x5 = [
        (144, 56, 2),
        (240, 28, 1),
        (672, 14, 1),
        (672, 14, 2),
        (1152, 7, 1),
    ];
    let shapes_3x3 = [
        (64, 32, 1),
        (64, 40, 1),
        (64, 64, 2),
        (32, 48, 1),
        (64, 48, 2),
        (128, 24, 1),
        (128, 24, 2),
        (256, 12, 1),
        (256, 12, 2),
        (32, 112, 1),
        (96, 112, 2),
        (144, 56, 2),
        (192, 28, 2),
        (576, 14, 2),
        (320, 7, 2),
        (144, 56, 1),
        (192, 28, 1),
        (384, 14, 1),
        (960, 7, 1),
    ];
    let custom = env_shapes();
    let shapes: &[(usize, usize, usize)] = match &custom {
        Some(v) => v,
        None if k == 5 => &shapes_5x5,
        None => &shapes_3x3,
    };
    for &(c, h, s) in shapes {
        if let Ok(only) = std::env::var("DW_ONLY") {
            if only != format!("{c}x{h}s{s}") {
                continue;
            }
        }
        let ax = Axis::conv(h, k, s, k / 2, 1).expect("a kernel that fits the padded input");
        let d = dims2d(c, c, c, ax, ax);
        let oh = d.oh;
        let x = Lined::new(&rng.vec(c * h * h, -1.0, 1.0));
        let w = rng.vec(c * k * k, -0.3, 0.3);
        let b = rng.vec(c, -0.1, 0.1);
        let params = DepthwiseParams::from_torch(c, 1, k, k, &w, Some(&b), None);
        // Line-aligned like a model's arena (a split's parts must not share lines).
        let mut ybuf = Lined::zeros(c * oh * oh);
        let y: &mut [f32] = &mut ybuf;
        let mut t = Vec::new();
        for force in [
            None,
            Some(DwPlan::Rows),
            Some(DwPlan::Channels),
            Some(DwPlan::Flat),
            Some(DwPlan::Shift),
        ] {
            if std::env::var("DW_PLAN").is_ok_and(|p| p != format!("{force:?}")) {
                t.push(f64::NAN);
                continue;
            }
            t.push(time(|| {
                depthwise_with(
                    level,
                    d,
                    black_box(&x),
                    &params,
                    black_box(&mut *y),
                    act,
                    engine::SCRATCH,
                    force,
                )
            }));
        }
        // A team member's part (`depthwise_conv2d_rows`): the top and the bottom half of
        // the output rows, each alone, the automatic plan (ideally half of `auto`).
        let halves: Vec<f64> = [(0, oh / 2), (oh / 2, oh)]
            .into_iter()
            .map(|rows| {
                time(|| {
                    simd::run(
                        level,
                        DwEntry {
                            d,
                            input: black_box(&x),
                            params: &params,
                            output: black_box(&mut *y),
                            act,
                            cap: engine::SCRATCH,
                            force: None,
                            rows: Some(rows),
                        },
                    )
                })
            })
            .collect();
        let macs = (c * oh * oh * k * k) as f64;
        eprintln!("{c:>4}x{h:>3}x{h:<3} s{s} | auto {:>8.1} µs ({:>5.1} GF/s) | rows {:>8.1} | channels {:>8.1} | flat {:>8.1} | shift {:>8.1} | halves {:>6.1} {:>6.1}", t[0], 2.0 * macs / t[0] / 1e3, t[1], t[2], t[3], t[4], halves[0], halves[1]);
    }
}

/// A depthwise layer with its input, output or weights in cache (the same buffers every
/// run) and each of them cold in turn (a new copy each run, 192 MiB of copies), runs
/// alternated: what a model's cache state costs it (`DW_SHAPES` as [`speed`]).
#[test]
#[ignore]
fn speed_cold() {
    let level = cpu::level();
    eprintln!("level {level:?}");
    let mut rng = Rng::new(5);
    let k: usize = std::env::var("DW_K").map_or(3, |v| v.parse().unwrap());
    let shapes =
        env_shapes().unwrap_or_else(|| vec![(960, 7, 1), (576, 14, 2), (384, 14, 1), (144, 56, 1)]);
    for (c, h, s) in shapes {
        let ax = Axis::conv(h, k, s, k / 2, 1).expect("a kernel that fits the padded input");
        let d = dims2d(c, c, c, ax, ax);
        let (nin, nout) = (c * h * h, c * d.oh * d.ow);
        let copies = (192 << 20) / ((nin + nout + c * k * k) * 4) + 5;
        let xs: Vec<Vec<f32>> = (0..copies).map(|_| rng.vec(nin, -1.0, 1.0)).collect();
        // Written once, so that no run pays for first touches of its pages.
        let mut ys: Vec<Vec<f32>> = (0..copies).map(|_| vec![1.0f32; nout]).collect();
        let ps: Vec<DepthwiseParams> = (0..copies)
            .map(|_| {
                let w = rng.vec(c * k * k, -0.3, 0.3);
                let b = rng.vec(c, -0.1, 0.1);
                DepthwiseParams::from_torch(c, 1, k, k, &w, Some(&b), None)
            })
            .collect();
        // Warm; input cold; output cold; weights cold; all cold.
        let mut times = [(); 5].map(|_| Vec::new());
        for r in 0..copies * 10 {
            let v = r % 5;
            // A copy no run touched since the whole set went round.
            let fresh = 1 + (r / 5 * 4 + v.max(1) - 1) % (copies - 1);
            let (xi, yi, pi) = match v {
                0 => (0, 0, 0),
                1 => (fresh, 0, 0),
                2 => (0, fresh, 0),
                3 => (0, 0, fresh),
                _ => (fresh, fresh, fresh),
            };
            let t0 = std::time::Instant::now();
            depthwise_with(
                level,
                d,
                black_box(&xs[xi]),
                &ps[pi],
                black_box(&mut ys[yi]),
                Act::RELU6,
                engine::SCRATCH,
                None,
            );
            times[v].push(t0.elapsed().as_secs_f64() * 1e6);
        }
        let t: Vec<f64> = times
            .iter_mut()
            .map(|v| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            })
            .collect();
        eprintln!(
            "{c:>4}x{h:>3}x{h:<3} s{s}: warm {:.1}, input cold {:.1}, output cold {:.1}, weights cold {:.1}, all cold {:.1} µs",
            t[0], t[1], t[2], t[3], t[4]
        );
    }
}
