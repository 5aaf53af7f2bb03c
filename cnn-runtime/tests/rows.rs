//! The kernels' `_rows` forms, which a team member calls on its rows of a layer
//! (`cnn_runtime::team`): the rows of the band are the whole layer's bit for bit, and
//! the rows outside it are left as they were (for Winograd: outside the tile rows that
//! cover the band; the rows beside the band inside them are the whole layer's too).

use cnn_runtime::kernels::adaptive::{adaptive_avg_pool2d, adaptive_avg_pool2d_part};
use cnn_runtime::kernels::conv::{
    conv2d_residual, conv2d_residual_rows, conv2d_rows, conv2d_scaled, conv2d_scaled_residual,
    conv2d_scaled_residual_rows, conv2d_scaled_rows, conv2d_scratch, conv_scale_fold_len,
    conv_scratch_len, ConvParams,
};
use cnn_runtime::kernels::depthwise::{depthwise_conv2d, depthwise_conv2d_rows, DepthwiseParams};
use cnn_runtime::kernels::expand_depthwise::{
    expand_depthwise, expand_depthwise_rows, expand_depthwise_scratch_len,
};
use cnn_runtime::kernels::pool::{avg_pool2d, avg_pool2d_rows, max_pool2d, max_pool2d_rows};
use cnn_runtime::kernels::winograd::{
    winograd_conv3x3, winograd_conv3x3_maxpool2, winograd_conv3x3_maxpool2_rows,
    winograd_conv3x3_residual, winograd_conv3x3_residual_rows, winograd_conv3x3_rows,
    winograd_scratch_len, WinogradParams,
};
use cnn_runtime::Act;

/// Deterministic values in `[-1, 1)`.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Checks `got` (a band's call into NaNs) against `whole`, `planes` planes of `h` rows
/// by `w`: rows `band` equal, rows outside `written` still NaN, the rest NaN or equal.
fn check(
    got: &[f32],
    whole: &[f32],
    (planes, h, w): (usize, usize, usize),
    band: (usize, usize),
    written: (usize, usize),
    what: &str,
) {
    for p in 0..planes {
        for y in 0..h {
            for x in 0..w {
                let i = (p * h + y) * w + x;
                let (g, want) = (got[i], whole[i]);
                let at = format!("{what}, band {band:?}: plane {p}, row {y}, column {x}");
                if (band.0..band.1).contains(&y) {
                    assert_eq!(g.to_bits(), want.to_bits(), "{at}");
                } else if !(written.0..written.1).contains(&y) {
                    assert!(g.is_nan(), "{at}: written ({g})");
                } else {
                    assert!(g.is_nan() || g.to_bits() == want.to_bits(), "{at}");
                }
            }
        }
    }
}

#[test]
fn conv_rows_equal_the_whole_layer() {
    // 5 x 13 x 11 -> 7 x 7 x 6: 3x3, stride 2, padding 1.
    const OH: usize = 7;
    let (c, o) = (5, 7);
    let input = values(c * 13 * 11, 1);
    let params =
        ConvParams::from_torch(o, c, 3, 3, &values(o * c * 9, 2), Some(&values(o, 3)), None);
    let mut whole = vec![0.0; o * OH * 6];
    conv2d_scratch::<5, 13, 11, 7, OH, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1>(
        &input,
        &params,
        &mut whole,
        &mut [],
        Act::RELU,
    );
    for band in [(0, OH / 2), (OH / 2, OH), (2, 5), (0, OH), (4, 4)] {
        let mut got = vec![f32::NAN; whole.len()];
        conv2d_rows::<5, 13, 11, 7, OH, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1>(
            &input,
            &params,
            &mut got,
            &mut [],
            Act::RELU,
            band,
        );
        check(&got, &whole, (o, OH, 6), band, band, "conv");
    }
}

#[test]
fn residual_conv_rows_equal_the_whole_layer() {
    // 6 x 9 x 10 -> 24 x 9 x 10 (1x1, as MobileNetV2's projections) and 3x3 (ResNet's),
    // each adding a residual of the output's shape before the activation.
    const OH: usize = 9;
    let (c, o) = (6, 24);
    let input = values(c * OH * 10, 13);
    let residual = values(o * OH * 10, 14);
    let bands = [(0, 4), (4, OH), (3, 8), (0, OH), (2, 2)];
    let p1 = ConvParams::from_torch(o, c, 1, 1, &values(o * c, 15), Some(&values(o, 16)), None);
    let mut whole = vec![0.0; o * OH * 10];
    conv2d_residual::<6, OH, 10, 24, OH, 10, 1, 1, 1, 1, 0, 0, 1, 1, 1>(
        &input,
        &p1,
        &residual,
        &mut whole,
        &mut [],
        Act::RELU6,
    );
    for band in bands {
        let mut got = vec![f32::NAN; whole.len()];
        conv2d_residual_rows::<6, OH, 10, 24, OH, 10, 1, 1, 1, 1, 0, 0, 1, 1, 1>(
            &input,
            &p1,
            &residual,
            &mut got,
            &mut [],
            Act::RELU6,
            band,
        );
        check(
            &got,
            &whole,
            (o, OH, 10),
            band,
            band,
            "1x1 conv with a residual",
        );
    }
    let p3 = ConvParams::from_torch(o, c, 3, 3, &values(o * c * 9, 17), None, None);
    conv2d_residual::<6, OH, 10, 24, OH, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
        &input,
        &p3,
        &residual,
        &mut whole,
        &mut [],
        Act::RELU,
    );
    for band in bands {
        let mut got = vec![f32::NAN; whole.len()];
        conv2d_residual_rows::<6, OH, 10, 24, OH, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
            &input,
            &p3,
            &residual,
            &mut got,
            &mut [],
            Act::RELU,
            band,
        );
        check(
            &got,
            &whole,
            (o, OH, 10),
            band,
            band,
            "3x3 conv with a residual",
        );
    }
}

#[test]
fn scaled_conv_rows_equal_the_whole_layer() {
    // A squeeze-and-excitation projection: 40 x 9 x 12 scaled per channel, 1x1 -> 24,
    // without and with a residual.
    const OH: usize = 9;
    let (c, o) = (40, 24);
    let input = values(c * OH * 12, 23);
    let scale = values(c, 24);
    let residual = values(o * OH * 12, 25);
    let params = ConvParams::from_torch(o, c, 1, 1, &values(o * c, 26), Some(&values(o, 27)), None);
    let len = conv_scale_fold_len((c, OH, 12), o, (1, 1), 1).expect("the scale folds");
    let mut scratch = vec![0.0; len];
    let (mut plain, mut added) = (vec![0.0; o * OH * 12], vec![0.0; o * OH * 12]);
    conv2d_scaled::<40, OH, 12, 24, OH, 12, 1, 1, 1, 1, 0, 0, 1, 1>(
        &input,
        &params,
        &scale,
        &mut plain,
        &mut scratch,
        Act::IDENTITY,
    );
    conv2d_scaled_residual::<40, OH, 12, 24, OH, 12, 1, 1, 1, 1, 0, 0, 1, 1>(
        &input,
        &params,
        &scale,
        &residual,
        &mut added,
        &mut scratch,
        Act::RELU,
    );
    for band in [(0, 4), (4, OH), (2, 7), (0, OH), (3, 3)] {
        let mut got = vec![f32::NAN; plain.len()];
        conv2d_scaled_rows::<40, OH, 12, 24, OH, 12, 1, 1, 1, 1, 0, 0, 1, 1>(
            &input,
            &params,
            &scale,
            &mut got,
            &mut scratch,
            Act::IDENTITY,
            band,
        );
        check(&got, &plain, (o, OH, 12), band, band, "scaled conv");
        let mut got = vec![f32::NAN; plain.len()];
        conv2d_scaled_residual_rows::<40, OH, 12, 24, OH, 12, 1, 1, 1, 1, 0, 0, 1, 1>(
            &input,
            &params,
            &scale,
            &residual,
            &mut got,
            &mut scratch,
            Act::RELU,
            band,
        );
        check(
            &got,
            &added,
            (o, OH, 12),
            band,
            band,
            "scaled conv with a residual",
        );
    }
}

#[test]
fn pool_parts_add_up_to_the_pool() {
    // Two members' sums of their rows, added and divided as `Member::reduce_mean` does,
    // are the one-thread pool's means bit for bit (odd and even heights).
    fn check_pool<const C: usize, const H: usize, const W: usize>(seed: u64) {
        let input = values(C * H * W, seed);
        let mut want = vec![0.0; C];
        adaptive_avg_pool2d::<C, H, W, 1, 1>(&input, &mut want);
        let (mut top, mut bottom) = (vec![0.0; C], vec![0.0; C]);
        adaptive_avg_pool2d_part::<C, H, W>(&input, &mut top, (0, H / 2));
        adaptive_avg_pool2d_part::<C, H, W>(&input, &mut bottom, (H / 2, H));
        for i in 0..C {
            let mean = (top[i] + bottom[i]) / (H * W) as f32;
            assert_eq!(
                mean.to_bits(),
                want[i].to_bits(),
                "{C}x{H}x{W}, channel {i}"
            );
        }
    }
    check_pool::<72, 28, 28>(28);
    check_pool::<960, 7, 7>(29);
    check_pool::<17, 3, 5>(30);
}

#[test]
fn expand_depthwise_rows_equal_the_whole_pair() {
    // 8 x 64 x 128 -> 128 (1x1) then 3x3 stride 2, padding 1 -> 128 x 32 x 64: the
    // smallest map the pair runs in bands (1M floats of expansion).
    const OH: usize = 32;
    let (c, e) = (8, 128);
    let input = values(c * 64 * 128, 18);
    let pe = ConvParams::from_torch(e, c, 1, 1, &values(e * c, 19), Some(&values(e, 20)), None);
    let pd =
        DepthwiseParams::from_torch(e, 1, 3, 3, &values(e * 9, 21), Some(&values(e, 22)), None);
    let len =
        expand_depthwise_scratch_len((c, 64, 128), e, (OH, 64), (3, 3), (2, 2), (1, 1), (1, 1))
            .expect("runs in bands");
    let mut scratch = vec![0.0; len];
    let mut whole = vec![0.0; e * OH * 64];
    expand_depthwise::<8, 64, 128, 128, OH, 64, 3, 3, 2, 2, 1, 1, 1, 1>(
        &input,
        &pe,
        Act::RELU6,
        &pd,
        &mut whole,
        &mut scratch,
        Act::RELU6,
    );
    for band in [
        (0, OH / 2),
        (OH / 2, OH),
        (5, 27),
        (31, 32),
        (0, OH),
        (9, 9),
    ] {
        let mut got = vec![f32::NAN; whole.len()];
        expand_depthwise_rows::<8, 64, 128, 128, OH, 64, 3, 3, 2, 2, 1, 1, 1, 1>(
            &input,
            &pe,
            Act::RELU6,
            &pd,
            &mut got,
            &mut scratch,
            Act::RELU6,
            band,
        );
        check(&got, &whole, (e, OH, 64), band, band, "expand + depthwise");
    }
}

#[test]
fn depthwise_rows_equal_the_whole_layer() {
    // 20 x 13 x 11 -> 20 x 13 x 11: 3x3, padding 1.
    const C: usize = 20;
    let input = values(C * 13 * 11, 4);
    let params =
        DepthwiseParams::from_torch(C, 1, 3, 3, &values(C * 9, 5), Some(&values(C, 6)), None);
    let mut whole = vec![0.0; C * 13 * 11];
    depthwise_conv2d::<C, 13, 11, 13, 11, 3, 3, 1, 1, 1, 1, 1, 1>(
        &input,
        &params,
        &mut whole,
        Act::RELU6,
    );
    for band in [(0, 6), (6, 13), (1, 12), (12, 13), (5, 5)] {
        let mut got = vec![f32::NAN; whole.len()];
        depthwise_conv2d_rows::<C, 13, 11, 13, 11, 3, 3, 1, 1, 1, 1, 1, 1>(
            &input,
            &params,
            &mut got,
            Act::RELU6,
            band,
        );
        check(&got, &whole, (C, 13, 11), band, band, "depthwise");
    }
}

#[test]
fn winograd_rows_equal_the_whole_layer() {
    // 8 x 16 x 13 -> 20 x 16 x 13, padding 1, tiles of 4 and of 2.
    let (c, o) = (8, 20);
    let input = values(c * 16 * 13, 7);
    let (weight, bias) = (values(o * c * 9, 8), values(o, 9));
    for tile in [4, 2] {
        let params = WinogradParams::with_tile(tile, o, c, &weight, Some(&bias), None);
        let mut scratch = vec![0.0; winograd_scratch_len(tile, c, 16, 13, o, 16, 13, 1, 1)];
        let mut whole = vec![0.0; o * 16 * 13];
        winograd_conv3x3::<8, 16, 13, 20, 16, 13, 1, 1, 1, 1>(
            &input,
            &params,
            &mut whole,
            &mut scratch,
            Act::RELU,
        );
        for band in [(0, 8), (8, 16), (3, 10), (5, 6), (5, 5)] {
            let mut got = vec![f32::NAN; whole.len()];
            winograd_conv3x3_rows::<8, 16, 13, 20, 16, 13, 1, 1, 1, 1>(
                &input,
                &params,
                &mut got,
                &mut scratch,
                Act::RELU,
                band,
            );
            // Whole tiles: the tile rows that cover the band.
            let written = (band.0 / tile * tile, band.1.div_ceil(tile) * tile);
            let what = format!("winograd F({tile}x{tile})");
            check(&got, &whole, (o, 16, 13), band, written, &what);
        }
    }
}

#[test]
fn winograd_maxpool_rows_equal_the_whole_layer() {
    // 8 x 15 x 14 -> 20 x 15 x 14, padding 1, pooled 20 x 7 x 7 (the convolution's last
    // row, odd, dropped by the pool).
    let (c, o) = (8, 20);
    let input = values(c * 15 * 14, 10);
    let params =
        WinogradParams::with_tile(4, o, c, &values(o * c * 9, 11), Some(&values(o, 12)), None);
    let mut scratch = vec![0.0; winograd_scratch_len(4, c, 15, 14, o, 15, 14, 1, 1)];
    let mut whole = vec![0.0; o * 7 * 7];
    winograd_conv3x3_maxpool2::<8, 15, 14, 20, 15, 14, 1, 1>(
        &input,
        &params,
        &mut whole,
        &mut scratch,
        Act::RELU,
    );
    for band in [(0, 4), (4, 7), (1, 3), (6, 7), (3, 3)] {
        let mut got = vec![f32::NAN; whole.len()];
        winograd_conv3x3_maxpool2_rows::<8, 15, 14, 20, 15, 14, 1, 1>(
            &input,
            &params,
            &mut got,
            &mut scratch,
            Act::RELU,
            band,
        );
        // Tiles of 4 convolution rows: 2 pooled rows each.
        let written = (band.0 / 2 * 2, band.1.div_ceil(2) * 2);
        check(
            &got,
            &whole,
            (o, 7, 7),
            band,
            written,
            "winograd with max pool",
        );
    }
}

/// A pool's geometry for [`check_pool`]: `(C, H, W)`, `(OH, OW)`, and the window's rows
/// `[kernel, stride, padding, dilation]`.
type PoolDims = ((usize, usize, usize), (usize, usize), [usize; 4]);

/// Checks a pool's row form against the whole pool on the bands `0..OH/2`, `OH/2..OH`
/// and a middle one: on the input, the rows outside the band stay as they were; with
/// every input row outside the band's windows NaN (which max and average pools both
/// propagate, so a row read that should not be fails), the band is the whole pool's.
fn check_pool(
    what: &str,
    ((c, h, w), (oh, ow), [k, s, p, d]): PoolDims,
    whole: impl Fn(&[f32], &mut [f32]),
    rows: impl Fn(&[f32], &mut [f32], (usize, usize)),
) {
    let input = values(c * h * w, 11);
    let mut want = vec![0.0; c * oh * ow];
    whole(&input, &mut want);
    for band in [(0, oh / 2), (oh / 2, oh), (1, oh - 1)] {
        // The input rows the band's windows reach; the others NaN.
        let first = (band.0 * s).saturating_sub(p);
        let end = ((band.1.max(1) - 1) * s + (k - 1) * d + 1)
            .saturating_sub(p)
            .min(h);
        let mut poisoned = input.clone();
        for (i, v) in poisoned.iter_mut().enumerate() {
            let y = i / w % h;
            if y < first || y >= end {
                *v = f32::NAN;
            }
        }
        for input in [&input, &poisoned] {
            let mut got = vec![f32::NAN; want.len()];
            rows(input, &mut got, band);
            check(&got, &want, (c, oh, ow), band, band, what);
        }
    }
}

#[test]
fn pool_rows_equal_the_whole_pool() {
    // LeNet-5's 2x2 average pools and VGG's 2x2 max pool (the vector path).
    check_pool(
        "2x2 max",
        ((6, 28, 28), (14, 14), [2, 2, 0, 1]),
        max_pool2d::<6, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, 1, 1>,
        max_pool2d_rows::<6, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, 1, 1>,
    );
    check_pool(
        "2x2 avg, odd input",
        ((16, 11, 10), (5, 5), [2, 2, 0, 1]),
        avg_pool2d::<16, 11, 10, 5, 5, 2, 2, 2, 2, 0, 0, true>,
        avg_pool2d_rows::<16, 11, 10, 5, 5, 2, 2, 2, 2, 0, 0, true>,
    );
    // ResNet's stem pool (separable maxima), SqueezeNet's ceil-mode pool, a dilated one.
    check_pool(
        "3x3/2 max, padding 1",
        ((8, 17, 19), (9, 10), [3, 2, 1, 1]),
        max_pool2d::<8, 17, 19, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1>,
        max_pool2d_rows::<8, 17, 19, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1>,
    );
    check_pool(
        "3x3/2 max, ceil mode",
        ((5, 14, 14), (7, 7), [3, 2, 0, 1]),
        max_pool2d::<5, 14, 14, 7, 7, 3, 3, 2, 2, 0, 0, 1, 1>,
        max_pool2d_rows::<5, 14, 14, 7, 7, 3, 3, 2, 2, 0, 0, 1, 1>,
    );
    check_pool(
        "3x3 max, dilation 2",
        ((3, 12, 12), (8, 8), [3, 1, 0, 2]),
        max_pool2d::<3, 12, 12, 8, 8, 3, 3, 1, 1, 0, 0, 2, 2>,
        max_pool2d_rows::<3, 12, 12, 8, 8, 3, 3, 1, 1, 0, 0, 2, 2>,
    );
    // Average pools dividing by the cells inside (or with) the padding.
    check_pool(
        "3x3 avg, padding 1, padding not counted",
        ((4, 9, 7), (9, 7), [3, 1, 1, 1]),
        avg_pool2d::<4, 9, 7, 9, 7, 3, 3, 1, 1, 1, 1, false>,
        avg_pool2d_rows::<4, 9, 7, 9, 7, 3, 3, 1, 1, 1, 1, false>,
    );
    check_pool(
        "5x5/3 avg, padding 2, ceil mode",
        ((3, 11, 11), (5, 5), [5, 3, 2, 1]),
        avg_pool2d::<3, 11, 11, 5, 5, 5, 5, 3, 3, 2, 2, true>,
        avg_pool2d_rows::<3, 11, 11, 5, 5, 5, 5, 3, 3, 2, 2, true>,
    );
}

#[test]
fn strided_1x1_rows_equal_the_whole_layer() {
    // ResNet's downsampling: 24 x 15 x 13 -> 32 x 8 x 7, 1x1, stride 2, its input pixels
    // gathered (a band's rows alone) into the planned scratch. Input rows no band row
    // reads are NaN.
    const OH: usize = 8;
    let (c, o) = (24, 32);
    let input = values(c * 15 * 13, 16);
    let params = ConvParams::from_torch(o, c, 1, 1, &values(o * c, 17), Some(&values(o, 18)), None);
    let len = conv_scratch_len((c, 15, 13), (o, OH, 7), (1, 1), (2, 2), (0, 0), (1, 1), 1);
    assert!(len >= c * OH * 7, "the gather's room is planned");
    let mut scratch = vec![0.0; len];
    let mut whole = vec![0.0; o * OH * 7];
    conv2d_scratch::<24, 15, 13, 32, OH, 7, 1, 1, 2, 2, 0, 0, 1, 1, 1>(
        &input,
        &params,
        &mut whole,
        &mut scratch,
        Act::RELU,
    );
    for band in [(0, OH / 2), (OH / 2, OH), (3, 6)] {
        let mut poisoned = input.clone();
        for (i, v) in poisoned.iter_mut().enumerate() {
            let y = i / 13 % 15;
            if y < 2 * band.0 || y > 2 * (band.1 - 1) {
                *v = f32::NAN;
            }
        }
        scratch.fill(f32::NAN);
        let mut got = vec![f32::NAN; whole.len()];
        conv2d_rows::<24, 15, 13, 32, OH, 7, 1, 1, 2, 2, 0, 0, 1, 1, 1>(
            &poisoned,
            &params,
            &mut got,
            &mut scratch,
            Act::RELU,
            band,
        );
        check(&got, &whole, (o, OH, 7), band, band, "strided 1x1");
    }
}

#[test]
fn winograd_residual_rows_equal_the_whole_layer() {
    // 8 x 14 x 11 -> 16 x 14 x 11 plus a residual (ResNet's basic block), padding 1,
    // tiles of 4 (the middle tile row, rows 4..8 or 12..16, straddles 7 and 14) and 2.
    let (c, o) = (8, 16);
    let input = values(c * 14 * 11, 19);
    let residual = values(o * 14 * 11, 20);
    let (weight, bias) = (values(o * c * 9, 21), values(o, 22));
    for tile in [4, 2] {
        let params = WinogradParams::with_tile(tile, o, c, &weight, Some(&bias), None);
        let mut scratch = vec![0.0; winograd_scratch_len(tile, c, 14, 11, o, 14, 11, 1, 1)];
        let mut whole = vec![0.0; o * 14 * 11];
        winograd_conv3x3_residual::<8, 14, 11, 16, 14, 11, 1, 1, 1, 1>(
            &input,
            &params,
            &residual,
            &mut whole,
            &mut scratch,
            Act::RELU,
        );
        for band in [(0, 7), (7, 14), (3, 10)] {
            let mut got = vec![f32::NAN; whole.len()];
            winograd_conv3x3_residual_rows::<8, 14, 11, 16, 14, 11, 1, 1, 1, 1>(
                &input,
                &params,
                &residual,
                &mut got,
                &mut scratch,
                Act::RELU,
                band,
            );
            let written = (band.0 / tile * tile, (band.1.div_ceil(tile) * tile).min(14));
            let what = format!("winograd F({tile}x{tile}) with a residual");
            check(&got, &whole, (o, 14, 11), band, written, &what);
        }
    }
}
