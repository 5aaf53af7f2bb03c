//! The convolution of an input scaled per channel ([`conv2d_scaled`]): against the f64
//! reference of the convolution of the scaled input, with and without a residual, on
//! every level and on the engine's paths (pixel and channel tiles, a gathered strided
//! 1x1 layer in the working memory after the weights, partial panels), the same bits on
//! 2 and 3 threads; and the rule of when the fold pays.

use super::scaled::scaled_in;
use super::*;
use crate::kernels::reference::{self as r, Axis, Rng};
use crate::kernels::simd;

/// `(C, H, W, O, kernel, stride, padding, what it exercises)`.
type Case = (
    (usize, usize, usize, usize),
    usize,
    usize,
    usize,
    &'static str,
);

const CASES: [Case; 6] = [
    (
        (96, 28, 28, 24),
        1,
        1,
        0,
        "pixel tiles (EfficientNet's 28x28 projection)",
    ),
    ((672, 14, 14, 112), 1, 1, 0, "channel tiles, long reduction"),
    ((40, 7, 9, 19), 1, 1, 0, "partial panel, odd map"),
    ((5, 9, 8, 7), 3, 1, 1, "3x3, partial vectors"),
    (
        (64, 16, 16, 40),
        1,
        2,
        0,
        "gathered stride 2 after the weights",
    ),
    (
        (32, 112, 112, 16),
        1,
        1,
        0,
        "EfficientNet's first projection",
    ),
];

#[test]
fn scaled_conv_is_the_conv_of_the_scaled_input() {
    #[cfg(feature = "parallel")]
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(53);
    for ((c, h, w, o), k, s, p, what) in CASES {
        let (ah, aw) = (
            Axis::conv(h, k, s, p, 1).unwrap(),
            Axis::conv(w, k, s, p, 1).unwrap(),
        );
        let d = r::dims2d(c, o, 1, ah, aw);
        let n = o * d.oh * d.ow;
        let input = rng.vec(c * h * w, -1.0, 1.0);
        let scale = rng.vec(c, 0.0, 1.0);
        let weight = rng.vec(o * c * k * k, -0.2, 0.2);
        let bias = rng.vec(o, -0.5, 0.5);
        let res = rng.vec(n, -2.0, 2.0);
        let params = ConvParams::from_torch(o, c, k, k, &weight, Some(&bias), None);
        // What the compiler plans: the rule's length where it pays, else the weights
        // alone (the kernel takes any shape), plus the engine's packing room.
        let wlen = o.div_ceil(16) * 16 * k * k * c + 16;
        let fold = conv_scale_fold_len((c, h, w), o, (k, k), 1);
        assert!(fold.is_none_or(|l| l == wlen), "{what}: {fold:?} / {wlen}");
        let len = wlen
            + conv_scratch_len(
                (c, h, w),
                (o, d.oh, d.ow),
                (k, k),
                (s, s),
                (p, p),
                (1, 1),
                1,
            );
        let scaled: Vec<f32> = input
            .iter()
            .enumerate()
            .map(|(i, x)| x * scale[i / (h * w)])
            .collect();
        let conv = r::conv2d(
            c,
            o,
            1,
            ah,
            aw,
            &scaled,
            &weight,
            Some(&bias),
            Act::IDENTITY,
        );
        for level in simd::test_levels() {
            for (act, residual) in [
                (Act::IDENTITY, false),
                (Act::SILU, false),
                (Act::RELU, true),
            ] {
                let ctx = (what, level, act.kind(), residual);
                let res = residual.then_some(&res[..]);
                let run = |y: &mut [f32]| {
                    // Working memory off a 64-byte boundary, its old contents garbage.
                    let mut scratch = vec![f32::NAN; len + 3];
                    scaled_in(
                        level,
                        d,
                        &input,
                        &params,
                        &scale,
                        res,
                        y,
                        &mut scratch[3..],
                        act,
                        None,
                    );
                };
                let mut got = vec![0.0; n + 3];
                got[n..].fill(7.0);
                run(&mut got);
                assert_eq!(&got[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
                r::assert_close(&got[..n], &r::add_act(&conv, res, act), &ctx);
                #[cfg(feature = "parallel")]
                r::assert_threads_match_one(n, &ctx, |out| run(out));
            }
        }
    }
}

#[test]
fn the_fold_pays_where_the_weights_are_fewer_than_the_pixels() {
    // EfficientNet-B0's projections after its squeeze-and-excitation blocks: folded on
    // 112x112 to 14x14 maps, kept as a `mul` on 7x7 (192 or 320 outputs > 49 pixels).
    assert_eq!(
        conv_scale_fold_len((32, 112, 112), 16, (1, 1), 1),
        Some(32 * 16 + 16)
    );
    assert_eq!(
        conv_scale_fold_len((672, 14, 14), 112, (1, 1), 1),
        Some(672 * 112 + 16)
    );
    assert_eq!(conv_scale_fold_len((672, 14, 14), 200, (1, 1), 1), None);
    assert_eq!(conv_scale_fold_len((1152, 7, 7), 192, (1, 1), 1), None);
    // Outputs rounded up to whole panels; a kernel's taps count.
    assert_eq!(conv_scale_fold_len((8, 4, 4), 17, (1, 1), 1), None);
    assert_eq!(conv_scale_fold_len((8, 8, 8), 16, (3, 3), 1), None);
    assert_eq!(
        conv_scale_fold_len((8, 12, 12), 16, (3, 3), 1),
        Some(8 * 144 + 16)
    );
    // Groups never (the scale would cross the groups' weights).
    assert_eq!(conv_scale_fold_len((32, 56, 56), 32, (1, 1), 2), None);
}

#[test]
#[should_panic(expected = "the scaled weights need")]
fn too_little_working_memory_is_a_clear_panic() {
    let params = ConvParams::from_torch(16, 8, 1, 1, &[0.5; 128], None, None);
    let (input, scale) = ([1.0; 8 * 16], [1.0; 8]);
    let mut out = [0.0; 16 * 16];
    conv2d_scaled::<8, 4, 4, 16, 4, 4, 1, 1, 1, 1, 0, 0, 1, 1>(
        &input,
        &params,
        &scale,
        &mut out,
        &mut [0.0; 64],
        Act::IDENTITY,
    );
}
