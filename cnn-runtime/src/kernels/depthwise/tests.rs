//! Tests of the depthwise convolution: every plan and level against the f64 reference,
//! band sizes, row and channel splits, threads.

use super::split::*;
use super::*;
use crate::kernels::conv::{conv2d, ConvParams};
use crate::kernels::norm::channel_affine;
use crate::kernels::reference::{self as r, Axis, Rng, ACTS};
use crate::kernels::simd;

/// The depthwise layer of `c` channels with axes `ah`, `aw`.
fn dims(c: usize, ah: Axis, aw: Axis) -> Dims2d {
    r::dims2d(c, c, c, ah, aw)
}

fn check(rng: &mut Rng, c: usize, ah: Axis, aw: Axis, act: Act, with_bias: bool) {
    let d = dims(c, ah, aw);
    let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
    let weight = rng.vec(c * ah.k * aw.k, -1.0, 1.0);
    let bias = rng.vec(c, -0.5, 0.5);
    let bias = with_bias.then_some(&bias[..]);
    let params = DepthwiseParams::from_torch(c, 1, ah.k, aw.k, &weight, bias, None);
    let mut inp = input.clone();
    inp.extend([f32::NAN; 2]);
    let n = c * ah.out * aw.out;
    let want = r::conv2d(c, c, c, ah, aw, &input, &weight, bias, act);
    // Every level and plan; the real band buffer, small ones (bands; the channel
    // path falls back to rows; 1200 and 3000 floats: bands of a few rows of 7- and
    // 14-pixel maps, whose first input rows are inside the map), one too small (scalar
    // fallback).
    for level in simd::test_levels() {
        for force in [
            None,
            Some(DwPlan::Rows),
            Some(DwPlan::Channels),
            Some(DwPlan::Flat),
        ] {
            for cap in [engine::SCRATCH, 24, 400, 1200, 3000, 1] {
                let mut got = vec![7.0; n + 2];
                depthwise_with(level, d, &inp, &params, &mut got, act, cap, force);
                let ctx = (d, act, level, force, cap);
                assert_eq!(&got[n..], &[7.0; 2], "wrote past its output: {ctx:?}");
                r::assert_close(&got[..n], &want, &ctx);
            }
        }
    }
}

/// Bands of a 3x3 layer's rows with one column of padding on the left (stride 1 or 2,
/// no padding above or one row, any number of output rows, those past the map reading
/// zeros: `kernels::expand_depthwise`'s bands) on every level, against the reference of
/// the same rows, curved activations included, nothing written past the output.
#[test]
fn row_bands_against_reference() {
    let mut rng = Rng::new(31);
    for (k, wd) in (14..=40).chain([48, 56, 75, 112]).enumerate() {
        for stride in [1, 2] {
            for top in [0, 1] {
                let h = [1, 2, 3, 5, 17][k % 5];
                // Output rows: one, every row whose first tap row lies in the band (its
                // lower taps may read zeros below it), or one fewer.
                let most: usize = (h + top - 1) / stride + 1;
                let oh = [1, most, most.saturating_sub(1).max(1)][k % 3];
                let ah = Axis {
                    n: h,
                    out: oh,
                    k: 3,
                    s: stride,
                    p: top,
                    pe: 1,
                    d: 1,
                };
                let aw = Axis::conv(wd, 3, stride, 1, 1).unwrap();
                let c = [1, 3, 17][k % 3];
                let d = dims(c, ah, aw);
                assert!(engine::rows3_fits(&d), "{d:?}");
                let act = [Act::RELU6, Act::SILU, Act::IDENTITY][(k + top) % 3];
                let x = rng.vec(c * h * wd, -1.0, 1.0);
                let w = rng.vec(c * 9, -1.0, 1.0);
                let b = rng.vec(c, -0.5, 0.5);
                let params = DepthwiseParams::from_torch(c, 1, 3, 3, &w, Some(&b), None);
                let want = r::conv2d(c, c, c, ah, aw, &x, &w, Some(&b), act);
                let n = c * oh * aw.out;
                for level in simd::test_levels() {
                    let mut got = vec![7.0; n + 2];
                    depthwise_with(level, d, &x, &params, &mut got, act, engine::SCRATCH, None);
                    let ctx = (d, act, level);
                    assert_eq!(&got[n..], &[7.0; 2], "wrote past its output: {ctx:?}");
                    r::assert_close(&got[..n], &want, &ctx);
                }
            }
        }
    }
}

/// Every conv axis geometry on each axis, paired with a random one, channels 1..=8.
#[test]
fn sweep_axes_against_reference() {
    let axes = r::conv_axes();
    let mut rng = Rng::new(21);
    for (i, &a) in axes.iter().enumerate() {
        let b = axes[rng.below(axes.len())];
        for (ah, aw) in [(a, b), (b, a)] {
            let act = ACTS[rng.below(ACTS.len())];
            let with_bias = rng.below(4) != 0;
            check(&mut rng, 1 + i % 8, ah, aw, act, with_bias);
        }
    }
}

/// 5x5 layers (EfficientNet's) on the channel path's sliding groups (rows of up to 16
/// pixels in even groups of their own, 1 to 8 pixels, their input transposed flat
/// across rows below 16 columns; wider rows in groups of 8, 4 and 2 pixels of the
/// 16-pixel blocks, the rest pixel by pixel; stride 1 and 2): output widths 1 to 17, 28
/// and 30, row dilation 2, every level, band sizes and plans (`check`).
#[test]
fn five_by_five_slides_against_reference() {
    let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
    let mut rng = Rng::new(28);
    let mut cases = Vec::new();
    for w in (1..=17).chain([28, 30]) {
        cases.push((ax(6, 5, 1, 2, 1), ax(w, 5, 1, 2, 1)));
        cases.push((ax(9, 5, 2, 2, 1), ax(2 * w + 1, 5, 2, 2, 1)));
    }
    cases.push((ax(12, 5, 1, 4, 2), ax(14, 5, 1, 2, 1)));
    cases.push((ax(7, 5, 1, 0, 1), ax(20, 5, 2, 1, 1)));
    for (ah, aw) in cases {
        let c = [3, 16, 17, 40][rng.below(4)];
        let act = ACTS[rng.below(ACTS.len())];
        check(&mut rng, c, ah, aw, act, true);
    }
}

/// Stride 2 (MobileNet style), dilation 2/3, 1x1 input, 'same' with even kernels.
#[test]
fn edge_shapes_against_reference() {
    let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
    let mut rng = Rng::new(22);
    let cases = [
        (ax(8, 3, 2, 1, 1), ax(8, 3, 2, 1, 1)),
        (ax(7, 3, 2, 1, 1), ax(9, 3, 2, 1, 1)),
        (ax(7, 5, 2, 2, 1), ax(6, 5, 2, 2, 1)),
        (ax(9, 3, 1, 2, 2), ax(9, 3, 1, 3, 3)),
        (ax(1, 3, 1, 1, 1), ax(1, 1, 1, 0, 1)),
        (ax(4, 4, 1, 0, 1), ax(3, 3, 3, 0, 1)),
        (Axis::same(6, 2, 1), Axis::same(5, 4, 3)),
        (ax(3, 1, 2, 1, 1), ax(3, 3, 1, 3, 1)),
        // MobileNet-like rows: wide (tails of the 4-vector tiles), stride 2.
        (ax(5, 3, 1, 1, 1), ax(48, 3, 1, 1, 1)),
        (ax(6, 3, 2, 1, 1), ax(75, 3, 2, 1, 1)),
        (ax(4, 3, 1, 0, 1), ax(71, 3, 1, 0, 1)),
        (ax(7, 3, 3, 1, 2), ax(40, 3, 3, 2, 2)),
        // Tall maps: the multi-row tiles of the rows path (8, 6, 4, 3 rows by 1 to
        // 4 vectors, then single rows) and whole sliding groups of the channel path.
        (ax(20, 3, 1, 1, 1), ax(10, 3, 1, 1, 1)),
        (ax(19, 3, 1, 1, 1), ax(30, 3, 1, 1, 1)),
        (ax(17, 3, 1, 1, 1), ax(40, 3, 1, 1, 1)),
        (ax(13, 3, 1, 1, 1), ax(70, 3, 1, 1, 1)),
        (ax(25, 3, 2, 1, 1), ax(48, 3, 2, 1, 1)),
        (ax(18, 3, 1, 0, 1), ax(26, 3, 1, 0, 1)),
    ];
    for (ah, aw) in cases {
        for c in [1, 2, 3, 8, 17, 32] {
            for act in ACTS {
                check(&mut rng, c, ah, aw, act, true);
            }
        }
    }
}

/// The flat 3x3 paths (`engine::depthwise_flat` and, row by row,
/// `engine::depthwise_rows3`, stride 1; `engine::depthwise_rows3`, stride 2) on every
/// width up to 40 and some MobileNet ones, short and tall maps, bands
/// down to one output row, row ranges: stride 1 runs where the column pattern repeats
/// within 32 vectors (and reports `false` elsewhere), stride 1 reports `false` for a
/// buffer too small for one output row (stride 2 needs none), and both match the
/// reference; NaNs at the ends of rows
/// (which stride 1 reads into masked lanes of the next row) reach only the outputs whose
/// window holds them.
#[test]
fn flat_paths_against_reference() {
    struct Flat<'a>(
        Dims2d,
        &'a [f32],
        &'a [f32],
        &'a [f32],
        &'a mut [f32],
        usize,
        (usize, usize),
    );
    impl WithSimd for Flat<'_> {
        type Output = bool;
        fn with_simd<S: Simd>(self, s: S) -> bool {
            let Flat(d, x, w, b, y, cap, rows) = self;
            let (y, act) = (y.as_mut_ptr(), Act::IDENTITY);
            // SAFETY: `y` holds the whole output.
            unsafe {
                if d.sh == 2 && cap == NARROW {
                    // Two output rows a vector (maps narrower than one).
                    if !engine::narrow2_fits(&d, S::LANES) {
                        return false;
                    }
                    engine::depthwise_narrow2(s, d, x, w, b, y, rows, act);
                    true
                } else if d.sh == 1 && cap != usize::MAX {
                    engine::depthwise_flat(s, d, x, w, b, y, rows, act, cap)
                } else if cap != usize::MAX {
                    // The phase planes of a band copy.
                    engine::depthwise_phase2(s, d, x, w, b, y, rows, act, cap)
                } else {
                    // Row by row (no band buffer: `cap` unused).
                    engine::depthwise_rows3(s, d, x, w, b, y, rows, act);
                    true
                }
            }
        }
    }
    /// `cap` for `engine::depthwise_narrow2` (stride 2).
    const NARROW: usize = usize::MAX - 1;
    let mut rng = Rng::new(29);
    let widths = (1..=40).chain([48, 56, 75, 112]);
    for (k, wd) in widths.enumerate() {
        for stride in [1, 2] {
            let ax = |n| Axis::conv(n, 3, stride, 1, 1).unwrap();
            let h = [1, 2, 3, 5, 12][k % 5];
            let c = [1, 3, 17][k % 3];
            let d = dims(c, ax(h), ax(wd));
            assert!(engine::flat3_fits(&d) == (stride == 1));
            assert!(engine::phase3_fits(&d) == (stride == 2));
            let mut x = rng.vec(c * h * wd, -1.0, 1.0);
            for row in x.chunks_mut(wd).step_by(3) {
                row[wd - 1] = f32::NAN;
            }
            let weight = rng.vec(c * 9, -1.0, 1.0);
            let bias = rng.vec(c, -0.5, 0.5);
            let (ah, aw) = (ax(h), ax(wd));
            let want = r::conv2d(c, c, c, ah, aw, &x, &weight, Some(&bias), Act::IDENTITY);
            let (oh, ow) = (d.oh, d.ow);
            for level in simd::test_levels() {
                let l = match level {
                    Level::Portable => 4,
                    Level::Avx2Fma => 8,
                    Level::Avx512 => 16,
                };
                let gcd = {
                    let (mut g, mut m) = (wd, l);
                    while m != 0 {
                        (g, m) = (m, g % m);
                    }
                    g
                };
                let runs = stride == 2 || wd / gcd <= 32;
                // The buffer for a band of one output row (two copies; stride 1: of
                // three input rows, an apron before, between and after; stride 2: six
                // phase planes of one or two rows, an apron of 16 before each and after
                // the last).
                let one_row = if stride == 1 {
                    (wd + l + 1).next_multiple_of(16) * 3 + 6 * wd
                } else {
                    2 * (7 * 16 + 9 * ow)
                };
                // `got` (output rows `rows`) equals the row-by-row path's, bit for bit.
                let same_as_rows3 = |got: &[f32], rows, ctx: &dyn core::fmt::Debug| {
                    let mut rows3 = vec![7.0; c * oh * ow];
                    let run = Flat(d, &x, &weight, &bias, &mut rows3, usize::MAX, rows);
                    assert!(simd::run(level, run));
                    let same = got.iter().zip(&rows3);
                    assert!(
                        same.into_iter()
                            .all(|(a, b)| a == b || a.is_nan() && b.is_nan()),
                        "{ctx:?}"
                    );
                };
                // Two output rows a band: stride 1 one more input row a copy, stride 2
                // six more plane rows a copy.
                let two_rows = one_row + if stride == 1 { 2 * wd } else { 12 * ow };
                // `usize::MAX`: row by row (`engine::depthwise_rows3`), which runs at
                // every width.
                for cap in [engine::SCRATCH, one_row, two_rows, usize::MAX] {
                    for rows in [(0, oh), (0, oh / 2), (oh / 2, oh)] {
                        let mut got = vec![7.0; c * oh * ow];
                        let run = Flat(d, &x, &weight, &bias, &mut got, cap, rows);
                        let ran = simd::run(level, run);
                        let ctx = (wd, h, stride, c, level, cap, rows);
                        assert_eq!(ran, runs || cap == usize::MAX, "{ctx:?}");
                        if !ran {
                            continue;
                        }
                        for ch in 0..c {
                            let plane = ch * oh * ow;
                            let (a, b) = (plane + rows.0 * ow, plane + rows.1 * ow);
                            r::assert_close(&got[a..b], &want[a..b], &ctx);
                            let rest = got[plane..a].iter().chain(&got[b..plane + oh * ow]);
                            assert!(rest.into_iter().all(|&v| v == 7.0), "{ctx:?}");
                        }
                        // Both flat paths give the row-by-row path's values, bit for
                        // bit.
                        if cap != usize::MAX {
                            same_as_rows3(&got, rows, &ctx);
                        }
                    }
                }
                // Stride 2 on maps narrower than a vector, two rows a vector: the
                // values of the row-by-row path, bit for bit.
                if stride == 2 {
                    let narrow = wd < l;
                    for rows in [(0, oh), (0, oh / 2), (oh / 2, oh), (1.min(oh), oh)] {
                        let mut got = vec![7.0; c * oh * ow];
                        let run = Flat(d, &x, &weight, &bias, &mut got, NARROW, rows);
                        let ran = simd::run(level, run);
                        let ctx = (wd, h, c, level, rows, "narrow");
                        assert_eq!(ran, narrow, "{ctx:?}");
                        if !ran {
                            continue;
                        }
                        same_as_rows3(&got, rows, &ctx);
                    }
                }
                // A band buffer too small for one output row's band.
                let mut got = vec![7.0; c * oh * ow];
                let run = Flat(d, &x, &weight, &bias, &mut got, one_row - 1, (0, oh));
                assert!(!simd::run(level, run) && got.iter().all(|&v| v == 7.0));
            }
        }
    }
}

/// 1-D signals run as H = 1, KH = 1: long rows, TCN dilations 1..8, padding,
/// strides.
#[test]
fn one_d_against_reference() {
    let mut rng = Rng::new(24);
    let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
    for w in [1, 5, 31, 100, 784] {
        for k in [1, 2, 3, 5] {
            for d in [1, 2, 4, 8] {
                if k == 1 && d > 1 {
                    continue;
                }
                let mut aws: Vec<Axis> = vec![Axis::same(w, k, d)];
                for s in [1, 2] {
                    for p in [0, d * (k - 1) / 2, d * (k - 1)] {
                        aws.extend(Axis::conv(w, k, s, p, d));
                    }
                }
                for aw in aws {
                    let c = [1, 3, 16, 17, 40][rng.below(5)];
                    let act = ACTS[rng.below(ACTS.len())];
                    check(&mut rng, c, one, aw, act, true);
                }
            }
        }
    }
}

/// The const-generic shell equals the general conv with groups == C, and folding a
/// batch norm equals applying it after.
#[test]
fn const_generic_matches_grouped_conv_and_folds_bn() {
    const C: usize = 5;
    let mut rng = Rng::new(23);
    let input = rng.vec(C * 9 * 8, -1.0, 1.0);
    let weight = rng.vec(C * 9, -1.0, 1.0);
    let bias = rng.vec(C, -0.5, 0.5);
    let bn = Affine::from_batch_norm(
        &rng.vec(C, 0.5, 1.5),
        &rng.vec(C, -0.3, 0.3),
        &rng.vec(C, -0.5, 0.5),
        &rng.vec(C, 0.5, 2.0),
        1e-3,
    );
    let dw = DepthwiseParams::from_torch(C, 1, 3, 3, &weight, Some(&bias), None);
    let conv = ConvParams::from_torch(C, 1, 3, 3, &weight, Some(&bias), None);
    let mut got = [0.0; C * 5 * 4];
    depthwise_conv2d::<C, 9, 8, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1>(&input, &dw, &mut got, Act::RELU);
    let mut want = [0.0; C * 5 * 4];
    conv2d::<C, 9, 8, C, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1, C>(&input, &conv, &mut want, Act::RELU);
    assert_eq!(got, want);

    let folded = DepthwiseParams::from_torch(C, 1, 3, 3, &weight, Some(&bias), Some(&bn));
    depthwise_conv2d::<C, 9, 8, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1>(&input, &folded, &mut got, Act::TANH);
    depthwise_conv2d::<C, 9, 8, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1>(
        &input,
        &dw,
        &mut want,
        Act::IDENTITY,
    );
    channel_affine::<C, 20>(&mut want, &bn, Act::TANH);
    let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    r::assert_close(&got, &want, &"folded bn");
}

/// Depthwise layers for the split tests `(c, height axis, width axis)`:
/// MobileNet-like 3x3 (stride 1 and 2, wide and short rows: both plans), a channel
/// count not a multiple of 16, a 5x5 dilated one, a 1-D one. All above `PAR_MACS`.
fn split_layers() -> Vec<(usize, Axis, Axis)> {
    let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
    vec![
        (32, ax(48, 3, 1, 1, 1), ax(48, 3, 1, 1, 1)),
        (64, ax(48, 3, 2, 1, 1), ax(48, 3, 2, 1, 1)),
        (128, ax(12, 3, 1, 1, 1), ax(12, 3, 1, 1, 1)),
        (512, ax(6, 3, 1, 1, 1), ax(6, 3, 1, 1, 1)),
        (40, ax(20, 3, 1, 1, 1), ax(70, 3, 1, 1, 1)),
        (48, ax(17, 5, 1, 4, 2), ax(23, 5, 1, 4, 2)),
        // Three panels (uneven on two threads), line-aligned planes: by rows when
        // the output starts a line.
        (48, ax(32, 3, 1, 1, 1), ax(32, 3, 1, 1, 1)),
        // One panel, a wide map: split by rows.
        (16, ax(40, 3, 1, 1, 1), ax(60, 3, 1, 1, 1)),
        // A 1-D signal: one row, split by channels.
        (64, ax(1, 1, 1, 0, 1), ax(2000, 3, 1, 1, 1)),
    ]
}

fn split_case(rng: &mut Rng, c: usize, ah: Axis, aw: Axis) -> (Dims2d, Vec<f32>, DepthwiseParams) {
    let d = dims(c, ah, aw);
    let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
    let weight = rng.vec(c * ah.k * aw.k, -1.0, 1.0);
    let bias = rng.vec(c, -0.5, 0.5);
    let params = DepthwiseParams::from_torch(c, 1, ah.k, aw.k, &weight, Some(&bias), None);
    (d, input, params)
}

/// Every split of the channels into ranges of whole panels, and of the output rows
/// into bands, computed part by part, gives exactly (bit for bit) the whole result, at
/// every level, plan and band size. Runs without the `parallel` feature too (no
/// threads involved).
#[test]
fn channel_and_row_ranges_equal_the_whole_bit_for_bit() {
    /// [`depthwise_part`] at `level`, into `output` (all channels' planes).
    #[allow(clippy::too_many_arguments)]
    fn part_at(
        level: Level,
        d: Dims2d,
        input: &[f32],
        params: &DepthwiseParams,
        chans: (usize, usize),
        rows: (usize, usize),
        output: &mut [f32],
        force: Option<DwPlan>,
        cap: usize,
    ) {
        struct Part<'a>(
            Dims2d,
            &'a [f32],
            &'a DepthwiseParams,
            (usize, usize),
            (usize, usize),
            &'a mut [f32],
            usize,
            Option<DwPlan>,
        );
        impl WithSimd for Part<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, s: S) {
                let Part(d, input, params, chans, rows, output, cap, force) = self;
                let ohw = d.oh * d.ow;
                assert!(output.len() >= d.c * ohw && rows.1 <= d.oh);
                // SAFETY: the output holds every plane and is borrowed for the call.
                unsafe {
                    let out = output.as_mut_ptr().add(chans.0 * ohw);
                    let act = Act::RELU;
                    depthwise_part(s, d, input, params, chans, rows, out, act, cap, force);
                }
            }
        }
        let run = Part(d, input, params, chans, rows, output, cap, force);
        simd::run(level, run);
    }
    let mut rng = Rng::new(25);
    for (c, ah, aw) in split_layers() {
        let (d, input, params) = split_case(&mut rng, c, ah, aw);
        let n = c * d.oh * d.ow;
        for level in simd::test_levels() {
            for force in [
                None,
                Some(DwPlan::Rows),
                Some(DwPlan::Channels),
                Some(DwPlan::Flat),
            ] {
                for cap in [engine::SCRATCH, 400, 1] {
                    let mut whole = vec![0.0; n + 2];
                    let (all_c, all_r) = ((0, c), (0, d.oh));
                    part_at(
                        level, d, &input, &params, all_c, all_r, &mut whole, force, cap,
                    );
                    let mut splits = Vec::new();
                    for parts in 2..=c.div_ceil(PANEL).min(4) {
                        let chans: Vec<_> = (0..parts)
                            .map(|i| (channel_range(c, parts, i), all_r))
                            .collect();
                        splits.push(chans);
                    }
                    for (parts, step) in [(2, 1), (3, 1), (5, 1), (d.oh, 1), (2, 4), (3, 2)] {
                        let parts = parts.min(d.oh.div_ceil(step));
                        let rows: Vec<_> = (0..parts)
                            .map(|i| (all_c, row_range(d.oh, step, parts, i)))
                            .collect();
                        splits.push(rows);
                    }
                    for split in splits {
                        let mut got = vec![f32::NAN; n + 2];
                        got[n..].fill(7.0);
                        for &(chans, rows) in &split {
                            part_at(level, d, &input, &params, chans, rows, &mut got, force, cap);
                        }
                        let ctx = (d, level, force, cap, &split);
                        assert_eq!(&got[n..], &[7.0; 2], "wrote past its output: {ctx:?}");
                        assert!(whole[..n] == got[..n], "split differs: {ctx:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn row_ranges_cover_the_rows_in_whole_units() {
    for oh in 1usize..40 {
        for step in [1, 2, 4, 8, 16] {
            for parts in 1..=oh.div_ceil(step).min(9) {
                let r: Vec<_> = (0..parts).map(|i| row_range(oh, step, parts, i)).collect();
                let ctx = (oh, step, parts, &r);
                assert_eq!((r[0].0, r[parts - 1].1), (0, oh), "{ctx:?}");
                for (i, &(r0, r1)) in r.iter().enumerate() {
                    assert!(r0 < r1 && r0 % step == 0, "{ctx:?}");
                    if i > 0 {
                        assert_eq!(r[i - 1].1, r0);
                    }
                }
            }
        }
    }
}

/// Row bands on cache lines when the output and its planes allow and they balance the
/// parts, then panels.
#[cfg(feature = "parallel")]
#[test]
fn splits_prefer_line_aligned_rows_then_panels() {
    let ax = |n, k, s, p| Axis::conv(n, k, s, p, 1).unwrap();
    let rows = |step| DwSplit::Rows { parts: 2, step };
    // Outputs of at most 576 pixels (24x24) by panels whatever their lines.
    let mid = dims(128, ax(24, 3, 1, 1), ax(24, 3, 1, 1));
    assert_eq!(dw_split(&mid, 2, true), DwSplit::Channels(2));
    assert_eq!(dw_split(&mid, 2, false), DwSplit::Channels(2));
    // 28x28: line-aligned bands of 4 rows split 12 + 16 (unbalanced): panels, unless
    // there are too few of them.
    let m28 = dims(192, ax(28, 3, 1, 1), ax(28, 3, 1, 1));
    assert_eq!(dw_split(&m28, 2, true), DwSplit::Channels(2));
    assert_eq!(dw_split(&m28, 2, false), DwSplit::Channels(2));
    assert_eq!(dw_split(&m28, 3, true), DwSplit::Channels(3));
    let few28 = dims(16, ax(28, 3, 1, 1), ax(28, 3, 1, 1));
    assert_eq!(dw_split(&few28, 2, true), rows(4));
    // 32x32: bands of 1 row (whole lines), 16 + 16.
    let m32 = dims(192, ax(32, 3, 1, 1), ax(32, 3, 1, 1));
    assert_eq!(dw_split(&m32, 2, true), rows(1));
    // 12x12 planes: a band boundary on a line leaves 4 + 8 rows (too few units).
    let twelve = dims(256, ax(12, 3, 1, 1), ax(12, 3, 1, 1));
    assert_eq!(dw_split(&twelve, 2, true), DwSplit::Channels(2));
    let wide = dims(16, ax(40, 3, 1, 1), ax(60, 3, 1, 1));
    assert_eq!(dw_split(&wide, 2, true), rows(4));
    assert_eq!(dw_split(&wide, 2, false), rows(1));
    // MobileNetV2's 144 channels: 9 panels split 5 + 4, 56 rows 28 + 28.
    let uneven = dims(144, ax(56, 3, 1, 1), ax(56, 3, 1, 1));
    assert_eq!(dw_split(&uneven, 2, true), rows(2));
    assert_eq!(dw_split(&uneven, 2, false), DwSplit::Channels(2));
    // Over three threads 18 + 18 + 20 rows (7% over the mean): 3 + 3 + 3 panels.
    assert_eq!(dw_split(&uneven, 3, true), DwSplit::Channels(3));
    let small = dims(16, ax(12, 3, 1, 1), ax(12, 3, 1, 1));
    assert_eq!(dw_split(&small, 2, true), DwSplit::Channels(1));
    // Small but split: its input arrives split over the cores (MobileNet-96's last
    // depthwise layer, 83K MACs: 10.4 -> 6.4 us alone, 24 -> 12 us in the chain).
    let last = dims(256, ax(12, 3, 2, 1), ax(12, 3, 2, 1));
    assert_eq!(dw_split(&last, 2, true), DwSplit::Channels(2));
}

#[test]
fn line_rows_fill_whole_lines() {
    for ow in 1..100 {
        let step = line_rows(ow);
        assert!((step * ow).is_multiple_of(LINE), "{ow} {step}");
        assert!(
            (1..step).all(|k| !(k * ow).is_multiple_of(LINE)),
            "{ow} {step}"
        );
    }
    assert_eq!(
        (line_rows(48), line_rows(24), line_rows(12), line_rows(7)),
        (1, 2, 4, 16)
    );
}

#[test]
fn channel_ranges_cover_the_channels_in_whole_panels() {
    for c in 1usize..100 {
        let panels = c.div_ceil(PANEL);
        for parts in 1..=panels.min(9) {
            let r: Vec<_> = (0..parts).map(|i| channel_range(c, parts, i)).collect();
            assert_eq!((r[0].0, r[parts - 1].1), (0, c), "{c} {parts} {r:?}");
            for (i, &(c0, c1)) in r.iter().enumerate() {
                assert!(c0 < c1 && c0 % PANEL == 0, "{c} {parts} {r:?}");
                if i > 0 {
                    assert_eq!(r[i - 1].1, c0);
                }
            }
        }
    }
}

/// Through the pool: 2 and 3 threads give the one-thread result bit for bit, at every
/// level (`set_num_threads(1)` is the sequential path), and never write past the
/// output.
#[cfg(feature = "parallel")]
#[test]
fn threads_give_the_one_thread_result_bit_for_bit() {
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(26);
    for (c, ah, aw) in split_layers() {
        let (d, input, params) = split_case(&mut rng, c, ah, aw);
        assert!(dw_split(&d, 2, true).parts() > 1, "{d:?}");
        let n = c * d.oh * d.ow;
        for level in simd::test_levels() {
            // An output on a cache line (row bands on line boundaries where the planes
            // allow) and one off it (split on any row).
            for cap in [engine::SCRATCH, 1] {
                // A curved activation too: its pass over each part's rows.
                for act in [Act::RELU6, Act::SILU] {
                    r::assert_threads_match_one(n, &(d, level, cap, act), |out| {
                        depthwise_with(level, d, &input, &params, out, act, cap, None)
                    });
                }
            }
        }
    }
    crate::pool::set_num_threads(2);
}

/// A curved activation runs over blocks of whole panels once each is stored: several
/// blocks (64x64 maps: 16 channels a block), a short last block (40 channels), bands of
/// rows, equal to the reference at every level.
#[test]
fn curved_activations_over_blocks() {
    let mut rng = Rng::new(27);
    let ax = |n, k, s, p| Axis::conv(n, k, s, p, 1).unwrap();
    for (c, ah, aw) in [
        (40, ax(64, 3, 1, 1), ax(64, 3, 1, 1)),
        (48, ax(66, 5, 1, 2), ax(64, 5, 1, 2)),
        (33, ax(130, 3, 2, 1), ax(128, 3, 2, 1)),
    ] {
        for act in [Act::SILU, Act::TANH, Act::SIGMOID] {
            let d = dims(c, ah, aw);
            let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
            let weight = rng.vec(c * ah.k * aw.k, -1.0, 1.0);
            let bias = rng.vec(c, -0.5, 0.5);
            let params = DepthwiseParams::from_torch(c, 1, ah.k, aw.k, &weight, Some(&bias), None);
            let n = c * ah.out * aw.out;
            assert!(n > 2 * super::POST_BLOCK_FLOATS, "{n}");
            let want = r::conv2d(c, c, c, ah, aw, &input, &weight, Some(&bias), act);
            for level in simd::test_levels() {
                let mut got = vec![7.0; n + 1];
                depthwise_with(
                    level,
                    d,
                    &input,
                    &params,
                    &mut got,
                    act,
                    engine::SCRATCH,
                    None,
                );
                assert_eq!(got[n], 7.0, "wrote past its output");
                r::assert_close(&got[..n], &want, &(c, ah, aw, act, level));
            }
        }
    }
}

#[test]
#[should_panic(expected = "one input channel per group")]
fn rejects_multiplier() {
    DepthwiseParams::from_torch(4, 2, 1, 1, &[0.0; 8], None, None);
}
