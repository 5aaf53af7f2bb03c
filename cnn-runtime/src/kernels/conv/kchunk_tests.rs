//! 1x1 layers on pixel tiles sum their reduction in steps of input channels over each
//! block (`engine::rules::pv_k_chunk`), the partial sums through the output: the same
//! bits as one pass over all channels and as steps of a single channel, at every level,
//! with a residual and a curved activation (applied once, after the last step), through
//! band copies split into channel chunks, on 2 and 3 threads; and close to the reference.

use super::run::*;
use super::*;
use crate::kernels::engine::{Plan, PV_K_CHUNK_OVERRIDE};
use crate::kernels::reference::{self as r, Axis, Rng};
use crate::kernels::simd;
use core::sync::atomic::Ordering;

/// `(C, H, W, O, stride, padding, band buffer)`.
const LAYERS: [(usize, usize, usize, usize, usize, usize, usize); 8] = [
    (256, 28, 28, 64, 1, 0, engine::SCRATCH),
    (144, 28, 28, 32, 1, 0, engine::SCRATCH),
    (65, 9, 7, 40, 1, 0, engine::SCRATCH),
    (64, 12, 12, 16, 1, 0, engine::SCRATCH),
    (130, 6, 11, 5, 1, 0, engine::SCRATCH),
    (200, 10, 10, 24, 1, 1, engine::SCRATCH),
    (200, 10, 10, 24, 1, 1, 512),
    (96, 15, 15, 20, 2, 1, engine::SCRATCH),
];

#[test]
fn reduction_steps_give_the_same_bits() {
    #[cfg(feature = "parallel")]
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(59);
    for (c, h, w, o, s, p, cap) in LAYERS {
        let ah = Axis::conv(h, 1, s, p, 1).unwrap();
        let aw = Axis::conv(w, 1, s, p, 1).unwrap();
        let d = r::dims2d(c, o, 1, ah, aw);
        let n = o * d.oh * d.ow;
        let input = rng.vec(c * h * w, -1.0, 1.0);
        let weight = rng.vec(o * c, -0.2, 0.2);
        let bias = rng.vec(o, -0.5, 0.5);
        let res = rng.vec(n, -1.0, 1.0);
        let params = ConvParams::from_torch(o, c, 1, 1, &weight, Some(&bias), None);
        for level in simd::test_levels() {
            for (act, residual) in [(Act::RELU, None), (Act::SILU, Some(&res[..]))] {
                let ctx = (c, h, w, o, s, p, cap, level, act.kind(), residual.is_some());
                let run = |y: &mut [f32]| {
                    let force = Some(Plan::Pixels);
                    conv2d_with(
                        level,
                        d,
                        &input,
                        &params,
                        y,
                        act,
                        residual,
                        cap,
                        force,
                        &mut [],
                    )
                };
                let mut outs = Vec::new();
                for step in [0, 1, usize::MAX] {
                    PV_K_CHUNK_OVERRIDE.store(step, Ordering::Relaxed);
                    let mut y = vec![0.0; n];
                    run(&mut y);
                    outs.push(y);
                }
                PV_K_CHUNK_OVERRIDE.store(0, Ordering::Relaxed);
                for y in &outs[1..] {
                    let same = y
                        .iter()
                        .zip(&outs[0])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "reduction steps change the bits: {ctx:?}");
                }
                let conv = r::conv2d(c, o, 1, ah, aw, &input, &weight, Some(&bias), Act::IDENTITY);
                let want = r::add_act(&conv, residual, act);
                r::assert_close(&outs[0], &want, &ctx);
                #[cfg(feature = "parallel")]
                r::assert_threads_match_one(n, &ctx, run);
            }
        }
    }
}
