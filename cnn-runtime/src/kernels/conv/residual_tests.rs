//! A residual added in the convolution's epilogue ([`conv2d_residual`]): on every path
//! of the engine (pixel and channel tiles, channel chunks, gathered strided 1x1 layers,
//! taller big-weight bands, a 1-D signal's interior and column tiles, the scalar
//! fallback) and every level, the bits of the convolution stored and then added by the
//! add kernel with the activation; the same bits on 2 and 3 threads.

use super::run::*;
use super::*;
use crate::kernels::binary::{binary_assign_dyn, BinOp};
use crate::kernels::reference::{self as r, Axis, Rng};
use crate::kernels::simd;

/// `(C, H, W, O, kernel (h, w), stride, padding (h, w), band buffer, what it exercises)`.
type Case = (
    (usize, usize, usize, usize),
    (usize, usize),
    (usize, usize),
    (usize, usize),
    usize,
    &'static str,
);

const CASES: [Case; 15] = [
    (
        (64, 14, 14, 96),
        (1, 1),
        (1, 1),
        (0, 0),
        engine::SCRATCH,
        "channel tiles",
    ),
    (
        (16, 28, 28, 24),
        (3, 3),
        (1, 1),
        (1, 1),
        engine::SCRATCH,
        "pixel tiles",
    ),
    (
        (5, 7, 9, 7),
        (3, 3),
        (1, 1),
        (1, 1),
        engine::SCRATCH,
        "partial vectors",
    ),
    (
        (256, 14, 14, 64),
        (1, 1),
        (1, 1),
        (0, 0),
        engine::SCRATCH,
        "long reduction",
    ),
    (
        (96, 12, 12, 40),
        (3, 3),
        (1, 1),
        (1, 1),
        64,
        "channel chunks",
    ),
    (
        (64, 16, 16, 128),
        (1, 1),
        (2, 2),
        (0, 0),
        engine::SCRATCH,
        "gathered stride 2",
    ),
    (
        (256, 14, 14, 128),
        (3, 3),
        (2, 2),
        (1, 1),
        engine::SCRATCH,
        "big weights",
    ),
    (
        (64, 1, 4000, 64),
        (1, 3),
        (1, 1),
        (0, 1),
        engine::SCRATCH,
        "1-D interior and ends",
    ),
    (
        (48, 1, 3000, 40),
        (1, 4),
        (1, 3),
        (0, 2),
        engine::SCRATCH,
        "1-D column tiles",
    ),
    ((3, 9, 8, 5), (3, 3), (1, 1), (1, 1), 1, "fallback (cap 1)"),
    (
        (2, 14, 13, 3),
        (12, 11),
        (1, 1),
        (1, 0),
        engine::SCRATCH,
        "fallback (taps)",
    ),
    // A 1x1 layer whose input and residual exceed `PF_INPUT_FLOATS`: its pixel tiles
    // prefetch the next block's input, then (last chunk) the residual.
    (
        (64, 40, 52, 96),
        (1, 1),
        (1, 1),
        (0, 0),
        engine::SCRATCH,
        "1x1 prefetching input and residual",
    ),
    // Chunked channel tiles (AVX-512), whose post-pass adds the residual to a block of
    // every output channel: a 1x1 layer on 14x14 (runs of 4, 4 and 2 panels, the last
    // 12 channels wide), a strided 3x3 one (runs of 4 and 1), and the same with band
    // chunks of fewer channels (sums resumed from the output).
    (
        (256, 14, 14, 156),
        (1, 1),
        (1, 1),
        (0, 0),
        engine::SCRATCH,
        "chunked 1x1",
    ),
    (
        (64, 30, 30, 76),
        (3, 3),
        (2, 2),
        (1, 1),
        engine::SCRATCH,
        "chunked stride 2",
    ),
    (
        (64, 30, 30, 76),
        (3, 3),
        (2, 2),
        (1, 1),
        engine::SCRATCH / 2,
        "chunked stride 2, band chunks",
    ),
];

const ACTS: [Act; 5] = [
    Act::IDENTITY,
    Act::RELU,
    Act::leaky_relu(0.1),
    Act::SILU,
    Act::TANH,
];

#[test]
fn residual_equals_conv_then_add_bit_for_bit() {
    #[cfg(feature = "parallel")]
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(47);
    for ((c, h, w, o), (kh, kw), (sh, sw), (ph, pw), cap, what) in CASES {
        let ah = Axis::conv(h, kh, sh, ph, 1).unwrap();
        let aw = Axis::conv(w, kw, sw, pw, 1).unwrap();
        let d = r::dims2d(c, o, 1, ah, aw);
        let n = o * d.oh * d.ow;
        let len = conv_scratch_len(
            (c, h, w),
            (o, d.oh, d.ow),
            (kh, kw),
            (sh, sw),
            (ph, pw),
            (1, 1),
            1,
        );
        let input = rng.vec(c * h * w, -1.0, 1.0);
        let weight = rng.vec(o * c * kh * kw, -0.2, 0.2);
        let bias = rng.vec(o, -0.5, 0.5);
        let res = rng.vec(n, -2.0, 2.0);
        let params = ConvParams::from_torch(o, c, kh, kw, &weight, Some(&bias), None);
        for level in simd::test_levels() {
            if what.starts_with("chunked") && level == crate::cpu::Level::Avx512 {
                assert!(
                    super::chunked_tests::chunked(level, d),
                    "not chunked: {what}"
                );
            }
            for act in ACTS {
                let ctx = (what, level, act.kind());
                let run = |y: &mut [f32], res: Option<&[f32]>, act: Act| {
                    let mut scratch = vec![f32::NAN; len];
                    conv2d_with(
                        level,
                        d,
                        &input,
                        &params,
                        y,
                        act,
                        res,
                        cap,
                        None,
                        &mut scratch,
                    );
                };
                // Unfused: the convolution stored, then the add kernel with the activation.
                let mut want = vec![0.0; n];
                run(&mut want, None, Act::IDENTITY);
                let shape = [o, d.oh, d.ow];
                binary_assign_dyn(level, shape, shape, &mut want, &res, BinOp::Add, act);
                let mut got = vec![0.0; n + 3];
                got[n..].fill(7.0);
                run(&mut got, Some(&res), act);
                assert_eq!(&got[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
                let diff = got[..n]
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(diff, None, "fused residual differs: {ctx:?}");
                // And against the f64 reference plus the residual.
                let conv = r::conv2d(c, o, 1, ah, aw, &input, &weight, Some(&bias), Act::IDENTITY);
                let expect = r::add_act(&conv, Some(&res), act);
                r::assert_close(&got[..n], &expect, &ctx);
                #[cfg(feature = "parallel")]
                r::assert_threads_match_one(n, &ctx, |out| run(out, Some(&res), act));
            }
        }
    }
}
