//! The kernels' `_rows` forms, which a team member calls on its rows of a layer
//! (`cnn_runtime::team`): the rows of the band are the whole layer's bit for bit, and
//! the rows outside it are left as they were (for Winograd: outside the tile rows that
//! cover the band; the rows beside the band inside them are the whole layer's too).

use cnn_runtime::kernels::conv::{conv2d_rows, conv2d_scratch, ConvParams};
use cnn_runtime::kernels::depthwise::{depthwise_conv2d, depthwise_conv2d_rows, DepthwiseParams};
use cnn_runtime::kernels::winograd::{
    winograd_conv3x3, winograd_conv3x3_maxpool2, winograd_conv3x3_maxpool2_rows,
    winograd_conv3x3_rows, winograd_scratch_len, WinogradParams,
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
