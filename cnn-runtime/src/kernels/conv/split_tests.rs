//! Tests of how the convolution divides its work and picks its paths: panel and pixel
//! ranges, threads, packed channel tiles, the planned scratch, the tile plan, gathered
//! stride-2 1x1 layers and big-weight bands (each against the whole or the reference).

use super::run::*;
use super::tests::*;
use super::*;
use crate::kernels::engine::Plan;
use crate::kernels::reference::{self as r, Axis, Rng};
use crate::kernels::simd;

/// Layers for the split tests `(c, o, g, height axis, width axis)`: 1x1 (one row of
/// 784 pixels), 3x3 pad 1, strided, O not a multiple of 16, a small map (channel
/// tiles, pairs of panels on AVX-512), a grouped layer (split by pixels only), one
/// panel (split by pixels only), a 2x2 map (split by panels), a 1x1 strided one and a
/// long 1-D one (split by columns). All above `PAR_MACS`.
fn split_layers() -> Vec<(usize, usize, usize, Axis, Axis)> {
    let ax = |n, k, s, p| Axis::conv(n, k, s, p, 1).unwrap();
    vec![
        (16, 16, 1, ax(64, 3, 1, 1), ax(64, 3, 1, 1)),
        (256, 64, 1, ax(2, 3, 1, 1), ax(2, 3, 1, 1)),
        (128, 72, 1, ax(15, 1, 2, 0), ax(15, 1, 2, 0)),
        (32, 32, 1, ax(1, 1, 1, 0), ax(1000, 5, 1, 2)),
        (64, 72, 1, ax(28, 1, 1, 0), ax(28, 1, 1, 0)),
        (32, 64, 1, ax(16, 3, 1, 1), ax(16, 3, 1, 1)),
        (32, 48, 1, ax(32, 3, 2, 1), ax(32, 3, 2, 1)),
        (24, 40, 1, ax(20, 3, 1, 1), ax(20, 3, 1, 1)),
        (16, 33, 1, ax(40, 3, 1, 0), ax(40, 3, 1, 0)),
        (128, 96, 1, ax(8, 3, 1, 1), ax(8, 3, 1, 1)),
        (64, 64, 2, ax(16, 3, 1, 1), ax(16, 3, 1, 1)),
        (64, 80, 1, ax(14, 3, 1, 1), ax(14, 3, 1, 1)),
        (64, 16, 1, ax(9, 3, 1, 1), ax(9, 3, 1, 1)),
        (4, 16, 1, ax(28, 5, 1, 2), ax(28, 5, 1, 2)),
        // Padded 1-D signals past the band buffer (interior read directly, ends tiled).
        (64, 64, 1, ax(1, 1, 1, 0), ax(1500, 3, 1, 1)),
        (16, 96, 1, ax(1, 1, 1, 0), ax(3000, 3, 2, 2)),
    ]
}

/// Pixel splits: ranges balanced within 5% (rows, or runs of a cache line, half or a
/// quarter of one); taken when the input lines another core wrote outnumber eight times
/// the output lines both parts would write, else panels.
#[test]
fn pixel_splits_weigh_shared_lines_against_remote_input() {
    let ax = |n, k, s, p| Axis::conv(n, k, s, p, 1).unwrap();
    let ranges = |d: &Dims2d| [pixel_range(d, 2, 0), pixel_range(d, 2, 1)];
    // 784-float planes and a boundary at 384: no line shared, unless the output is off
    // a line (then 143 boundaries inside lines, still fewer than the input's 1568 / 8).
    let pw28 = dims(64, 72, 1, ax(28, 1, 1, 0), ax(28, 1, 1, 0));
    assert_eq!(ranges(&pw28), [(0, 384), (384, 784)]);
    assert_eq!(shared_lines(&pw28, 2, 0), 0);
    assert_eq!(shared_lines(&pw28, 2, 3), 72 + 71);
    assert_eq!(conv_split(&pw28, 2, 0), Split::Pixels(2));
    assert_eq!(conv_split(&pw28, 2, 3), Split::Pixels(2));
    // MobileNetV2's 14x14 projection: 144 boundaries inside lines, 3528 input lines
    // from the other core: pixels. Its expansion (576 planes): panels.
    let pj14 = dims(576, 96, 1, ax(14, 1, 1, 0), ax(14, 1, 1, 0));
    assert_eq!(ranges(&pj14), [(0, 96), (96, 196)]);
    assert_eq!(shared_lines(&pj14, 2, 0), 144);
    assert_eq!(conv_split(&pj14, 2, 0), Split::Pixels(2));
    let pw14 = dims(96, 576, 1, ax(14, 1, 1, 0), ax(14, 1, 1, 0));
    assert_eq!(conv_split(&pw14, 2, 0), Split::Panels(2));
    // 144 pixels: lines would give 64 + 80, half lines 72 + 72, mid-line in all 256
    // planes: panels.
    let pw12 = dims(256, 256, 1, ax(12, 1, 1, 0), ax(12, 1, 1, 0));
    assert_eq!(ranges(&pw12), [(0, 72), (72, 144)]);
    assert_eq!(shared_lines(&pw12, 2, 0), 256);
    assert_eq!(conv_split(&pw12, 2, 0), Split::Panels(2));
    // 49 pixels: 24 + 25 (whole lines: 32 + 17).
    let pw7 = dims(256, 96, 1, ax(7, 1, 1, 0), ax(7, 1, 1, 0));
    assert_eq!(ranges(&pw7), [(0, 24), (24, 49)]);
    assert_eq!(conv_split(&pw7, 2, 0), Split::Panels(2));
    // Rows of a 3x3 layer: 7 + 7 rows; 7 rows are off balance (3 + 4).
    let c14 = dims(64, 80, 1, ax(14, 3, 1, 1), ax(14, 3, 1, 1));
    assert_eq!(ranges(&c14), [(0, 98), (98, 196)]);
    let c7 = dims(256, 256, 1, ax(7, 3, 1, 1), ax(7, 3, 1, 1));
    assert_eq!(conv_split(&c7, 2, 0), Split::Panels(2));
    // Few panels: pixels all the same; too little work: one part.
    let stem = dims(3, 32, 1, ax(96, 3, 2, 1), ax(96, 3, 2, 1));
    assert_eq!(conv_split(&stem, 2, 5), Split::Pixels(2));
    let small = dims(16, 16, 1, ax(7, 1, 1, 0), ax(7, 1, 1, 0));
    assert_eq!(conv_split(&small, 2, 0), Split::Panels(1));
}

/// `shared_lines` counts exactly the places where the part writing the output changes
/// inside a cache line, walking the output float by float.
#[test]
fn shared_lines_counts_part_changes_inside_lines() {
    let ax = |n, k, s, p| Axis::conv(n, k, s, p, 1).unwrap();
    for (o, h, w, k) in [
        (96, 14, 14, 1),
        (40, 7, 7, 1),
        (33, 12, 12, 1),
        (20, 9, 5, 3),
    ] {
        let d = dims(8, o, 1, ax(h, k, 1, k / 2), ax(w, k, 1, k / 2));
        let ohw = d.oh * d.ow;
        for parts in 2..=4 {
            let f = engine::flat(d);
            if parts > (f.oh * f.ow).div_ceil(pixel_unit(&f, parts)) {
                continue;
            }
            let part = |q: usize| (0..parts).position(|i| q < pixel_range(&d, parts, i).1);
            for off in [0, 1, 8, 15] {
                let changes = (1..d.o * ohw)
                    .filter(|&i| {
                        part(i % ohw) != part((i - 1) % ohw) && !(i + off).is_multiple_of(16)
                    })
                    .count();
                assert_eq!(shared_lines(&d, parts, off), changes, "{d:?} {parts} {off}");
            }
        }
    }
}

/// Every split of the output panels into contiguous ranges, computed range by range,
/// gives exactly (bit for bit) the one-range result, at every level, micro-kernel and
/// band size. Runs without the `parallel` feature too (no threads involved).
#[test]
fn panel_ranges_equal_the_whole_bit_for_bit() {
    let mut rng = Rng::new(29);
    for (c, o, g, ah, aw) in split_layers() {
        if g != 1 {
            continue;
        }
        let d = dims(c, o, g, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight = rng.vec(o * (c / g) * ah.k * aw.k, -1.0, 1.0);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c / g, ah.k, aw.k, &weight, Some(&bias), None);
        let n = d.o * d.oh * d.ow;
        let panels = o.div_ceil(engine::PANEL);
        for level in simd::test_levels() {
            for force in [None, Some(Plan::Pixels), Some(Plan::Channels)] {
                for cap in [engine::SCRATCH, 64] {
                    let mut whole = vec![0.0; n];
                    let run = |out: &mut [f32], range| ConvRun {
                        d,
                        input: &input,
                        params: params.packed(),
                        out: out.as_mut_ptr(),
                        act: Act::RELU,
                        res: core::ptr::null(),
                        cap,
                        force,
                        panels: range,
                        pixels: (0, n / d.o),
                        pack: engine::PackBuf::NONE,
                    };
                    // The engine declines some layers at the small band size (the
                    // fallback's business), for every range alike.
                    let engine = simd::run(level, run(&mut whole, (0, panels)));
                    for parts in 2..=panels.min(4) {
                        let mut split = vec![f32::NAN; n];
                        for i in 0..parts {
                            let range = panel_range(panels, parts, i);
                            assert_eq!(simd::run(level, run(&mut split, range)), engine);
                        }
                        if !engine {
                            continue;
                        }
                        let ctx = (d, level, force, cap, parts);
                        assert!(whole == split, "split differs: {ctx:?}");
                    }
                }
            }
        }
    }
}

/// Every split of the output pixels into ranges (rows, or columns of a one-row
/// layer), computed range by range, gives exactly (bit for bit) the one-range result,
/// at every level, micro-kernel and band size. Runs without the `parallel` feature
/// too (no threads involved).
#[test]
fn pixel_ranges_equal_the_whole_bit_for_bit() {
    let mut rng = Rng::new(37);
    for (c, o, g, ah, aw) in split_layers() {
        let d = dims(c, o, g, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight = rng.vec(o * (c / g) * ah.k * aw.k, -1.0, 1.0);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c / g, ah.k, aw.k, &weight, Some(&bias), None);
        let n = d.o * d.oh * d.ow;
        let panels = o.div_ceil(engine::PANEL);
        let f = engine::flat(d);
        let units = |parts| (f.oh * f.ow).div_ceil(pixel_unit(&f, parts));
        for level in simd::test_levels() {
            for force in [None, Some(Plan::Pixels), Some(Plan::Channels)] {
                for cap in [engine::SCRATCH, 64 * 9] {
                    let mut whole = vec![0.0; n];
                    let run = |out: &mut [f32], range| ConvRun {
                        d,
                        input: &input,
                        params: params.packed(),
                        out: out.as_mut_ptr(),
                        act: Act::RELU,
                        res: core::ptr::null(),
                        cap,
                        force,
                        panels: (0, panels),
                        pixels: range,
                        pack: engine::PackBuf::NONE,
                    };
                    let engine = simd::run(level, run(&mut whole, (0, n / d.o)));
                    for parts in (2..=5).filter(|&p| p <= units(p)) {
                        let mut split = vec![f32::NAN; n];
                        for i in 0..parts {
                            let range = pixel_range(&d, parts, i);
                            assert_eq!(simd::run(level, run(&mut split, range)), engine);
                        }
                        if !engine {
                            continue;
                        }
                        let ctx = (d, level, force, cap, parts);
                        assert!(whole == split, "split differs: {ctx:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn pixel_ranges_cover_the_pixels_in_whole_units() {
    let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
    for (ah, aw) in [
        (
            Axis::conv(9, 3, 1, 1, 1).unwrap(),
            Axis::conv(7, 3, 2, 1, 1).unwrap(),
        ),
        (
            Axis::conv(6, 1, 1, 0, 1).unwrap(),
            Axis::conv(50, 1, 1, 0, 1).unwrap(),
        ),
        (one, Axis::conv(700, 3, 1, 1, 1).unwrap()),
    ] {
        let d = dims(4, 4, 1, ah, aw);
        let f = engine::flat(d);
        let n = d.oh * d.ow;
        for parts in 1..=9 {
            let unit = pixel_unit(&f, parts);
            if parts > n.div_ceil(unit) {
                continue;
            }
            let r: Vec<_> = (0..parts).map(|i| pixel_range(&d, parts, i)).collect();
            assert_eq!((r[0].0, r[parts - 1].1), (0, n), "{r:?}");
            for (i, &(q0, q1)) in r.iter().enumerate() {
                assert!(q0 < q1 && q0 % unit == 0, "{r:?}");
                if i > 0 {
                    assert_eq!(r[i - 1].1, q0);
                }
            }
        }
    }
}

#[test]
fn panel_ranges_cover_the_panels_in_order() {
    for panels in 1..40 {
        for parts in 1..=panels.min(9) {
            let ranges: Vec<_> = (0..parts).map(|i| panel_range(panels, parts, i)).collect();
            // As balanced as single panels allow: the longest range at most one panel
            // above the shortest possible.
            let longest = ranges.iter().map(|r| r.1 - r.0).max().unwrap();
            assert!(
                longest <= panels.div_ceil(parts) + 1,
                "{panels} {parts} {ranges:?}"
            );
            let pairs = ranges.iter().all(|r| r.0 % 2 == 0);
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges[parts - 1].1, panels);
            for (i, r) in ranges.iter().enumerate() {
                assert!(r.0 < r.1, "{panels} {parts} {ranges:?}");
                if i > 0 {
                    assert_eq!(ranges[i - 1].1, r.0);
                }
                // Whole pairs when there are enough panels (AVX-512 pairs them) and
                // they balance the ranges as well as single panels.
                if panels >= 2 * parts && longest > panels.div_ceil(parts) {
                    assert!(pairs, "{panels} {parts} {ranges:?}");
                }
            }
        }
    }
    let two = |panels| [panel_range(panels, 2, 0), panel_range(panels, 2, 1)];
    // Singles where pairs would split 2 + 4 or 4 + 6; pairs where they balance as well.
    assert_eq!(two(6), [(0, 3), (3, 6)]);
    assert_eq!(two(10), [(0, 5), (5, 10)]);
    assert_eq!(two(8), [(0, 4), (4, 8)]);
    assert_eq!(two(9), [(0, 4), (4, 9)]);
}

/// Through the pool: the result with 2 and 3 threads equals the one-thread result
/// bit for bit, at every level (`set_num_threads(1)` is the sequential path).
#[cfg(feature = "parallel")]
#[test]
fn threads_give_the_one_thread_result_bit_for_bit() {
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(31);
    for (c, o, g, ah, aw) in split_layers() {
        let d = dims(c, o, g, ah, aw);
        assert!(conv_split(&d, 2, 0).parts() > 1, "{d:?}");
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight = rng.vec(o * (c / g) * ah.k * aw.k, -1.0, 1.0);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c / g, ah.k, aw.k, &weight, Some(&bias), None);
        let n = d.o * d.oh * d.ow;
        for level in simd::test_levels() {
            r::assert_threads_match_one(n, &(d, level), |out| {
                let sc = engine::SCRATCH;
                conv2d_with(
                    level,
                    d,
                    &input,
                    &params,
                    out,
                    Act::RELU6,
                    None,
                    sc,
                    None,
                    &mut [],
                )
            });
        }
        // A layer the engine declines (cap 1: padded layers fall back) is still right
        // (checked for sums short enough that the scalar loop's f32 rounding stays
        // within the test tolerance on this data).
        if (c / g) * ah.k * aw.k > 600 {
            continue;
        }
        crate::pool::set_num_threads(2);
        let mut fb = vec![0.0; n];
        conv2d_with(
            cpu::level(),
            d,
            &input,
            &params,
            &mut fb,
            Act::RELU6,
            None,
            1,
            None,
            &mut [],
        );
        let want = r::conv2d(c, o, g, ah, aw, &input, &weight, Some(&bias), Act::RELU6);
        r::assert_close(&fb, &want, &d);
    }
    crate::pool::set_num_threads(2);
}

/// Curved activations are a post-pass over each block of output the tiles stored:
/// with blocks a few pixels (or rows) small, every block boundary, the channel tiles'
/// short last tile that moves back into the block before (its pixels stored again, the
/// post-pass must cover them), the pixel tiles' row blocks and one-row column blocks.
/// The block sizes only reorder the loops (every other test also passes under them).
#[test]
fn curved_activations_on_small_blocks() {
    use crate::kernels::engine::BLOCK_OVERRIDE;
    use core::sync::atomic::Ordering;
    let mut rng = Rng::new(23);
    let ax = |n, k, s, p| Axis::conv(n, k, s, p, 1).unwrap();
    let cases = [
        // Channel tiles: 63 and 25 pixels (a short last tile), 20 channels.
        (3, 20, ax(7, 3, 1, 1), ax(9, 3, 1, 1), Act::TANH),
        (16, 33, ax(5, 1, 1, 0), ax(5, 1, 1, 0), Act::SIGMOID),
        // Pixel tiles: LeNet-5's conv1, a strided map.
        (1, 6, ax(32, 5, 1, 0), ax(32, 5, 1, 0), Act::TANH),
        (4, 5, ax(13, 3, 2, 1), ax(21, 3, 2, 1), Act::SILU),
        // One long row (1-D): column blocks.
        (2, 3, ax(1, 1, 1, 0), ax(301, 5, 1, 2), Act::GELU),
    ];
    for bytes in [4, 256, 2048] {
        for o in &BLOCK_OVERRIDE {
            o.store(bytes, Ordering::Relaxed);
        }
        for &(c, o, ah, aw, act) in &cases {
            check(&mut rng, (c, o, 1), ah, aw, act, true);
        }
    }
    for o in &BLOCK_OVERRIDE {
        o.store(0, Ordering::Relaxed);
    }
}

/// Direct 1x1 layers on one row run by channel tiles pack each block's input tile by
/// tile where the level packs (`Tuning::cv_pack`): the same bits as the unpacked tiles,
/// with blocks of many sizes (one tile, a block shorter than a tile, every tile in one
/// block), groups, pixel counts with a short last tile, MobileNets' 7x7 and 14x14 shapes.
#[test]
fn packed_channel_tiles_equal_unpacked_bit_for_bit() {
    use crate::kernels::engine::{BLOCK_OVERRIDE, NO_PACK};
    use core::sync::atomic::Ordering;
    let mut rng = Rng::new(29);
    let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
    // (C, pixels, O, groups)
    for (c, px, o, g) in [
        (960, 49, 160, 1),
        (320, 49, 40, 1),
        (64, 196, 96, 1),
        (7, 13, 33, 1),
        (48, 36, 48, 3),
        (3, 5, 20, 1),
        (300, 6, 16, 1),
    ] {
        let aw = Axis::conv(px, 1, 1, 0, 1).unwrap();
        let d = dims(c, o, g, one, aw);
        let input = rng.vec(c * px, -1.0, 1.0);
        let weight = rng.vec(o * (c / g), -0.3, 0.3);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c / g, 1, 1, &weight, Some(&bias), None);
        let want = r::conv2d(c, o, g, one, aw, &input, &weight, Some(&bias), Act::RELU6);
        for bytes in [0, 4, 6 * 4 * c, 2048, 64 << 10] {
            BLOCK_OVERRIDE[Plan::Channels as usize].store(bytes, Ordering::Relaxed);
            for level in simd::test_levels() {
                let run = |no_pack: bool| {
                    NO_PACK.store(no_pack, Ordering::Relaxed);
                    let mut y = vec![0.0; o * px];
                    let force = Some(Plan::Channels);
                    conv2d_with(
                        level,
                        d,
                        &input,
                        &params,
                        &mut y,
                        Act::RELU6,
                        None,
                        engine::SCRATCH,
                        force,
                        &mut [],
                    );
                    y
                };
                let (packed, plain) = (run(false), run(true));
                let ctx = (c, px, o, g, bytes, level);
                r::assert_close(&packed, &want, &ctx);
                assert!(
                    packed
                        .iter()
                        .zip(&plain)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "packed and unpacked tiles differ: {ctx:?}"
                );
            }
        }
    }
    BLOCK_OVERRIDE[Plan::Channels as usize].store(0, Ordering::Relaxed);
    NO_PACK.store(false, Ordering::Relaxed);
}

/// Whether a level packs channel tiles' input (`Tuning::cv_pack`).
struct LevelPacks;

impl simd::WithSimd for LevelPacks {
    type Output = bool;
    fn with_simd<S: simd::Simd>(self, _: S) -> bool {
        S::TUNING.cv_pack
    }
}

/// The working memory `conv_scratch_len` asks for lets 1x1 layers whose blocks do not
/// fit the band buffer pack (MobileNetV2's 576- and 960-channel 7x7 layers,
/// MobileNet-96's 512 -> 512 on 6x6): on the levels that pack, the scratch is written;
/// on every level, with that scratch, a shorter one or none, the results are the same
/// bits; layers that never pack ask for none.
#[test]
fn planned_scratch_packs_blocks_beyond_the_band_buffer() {
    let mut rng = Rng::new(31);
    // (C, map side, O)
    for (c, side, o) in [(960, 7, 320), (576, 7, 160), (512, 6, 512), (160, 7, 960)] {
        let ax = Axis::conv(side, 1, 1, 0, 1).unwrap();
        let d = dims(c, o, 1, ax, ax);
        let px = side * side;
        let len = conv_scratch_len(
            (c, side, side),
            (o, side, side),
            (1, 1),
            (1, 1),
            (0, 0),
            (1, 1),
            1,
        );
        // Every part's share holds a block (the whole input or the band buffer's worth).
        let least = engine::PACK_PARTS * (c * px).min(engine::SCRATCH);
        assert!(len >= least, "{c} x {side}: {len}");
        let input = rng.vec(c * px, -1.0, 1.0);
        let weight = rng.vec(o * c, -0.3, 0.3);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c, 1, 1, &weight, Some(&bias), None);
        let want = r::conv2d(c, o, 1, ax, ax, &input, &weight, Some(&bias), Act::RELU6);
        for level in simd::test_levels() {
            let run = |scratch: &mut [f32]| {
                let mut y = vec![0.0; o * px];
                let sc = engine::SCRATCH;
                conv2d_with(
                    level,
                    d,
                    &input,
                    &params,
                    &mut y,
                    Act::RELU6,
                    None,
                    sc,
                    None,
                    scratch,
                );
                y
            };
            let plain = run(&mut []);
            r::assert_close(&plain, &want, &(c, side, o, level));
            for n in [len, len / 2, 100] {
                let mut scratch = vec![f32::NAN; n];
                let got = run(&mut scratch);
                let ctx = (c, side, o, level, n);
                assert!(
                    got.iter()
                        .zip(&plain)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "with a scratch of {n} floats the results differ: {ctx:?}"
                );
                let used = scratch.iter().any(|v| !v.is_nan());
                // Each part's share is at least `len / PACK_PARTS`, used when larger
                // than the band buffer.
                let beyond = len / engine::PACK_PARTS > engine::SCRATCH;
                if n == len && beyond && simd::run(level, LevelPacks) {
                    assert!(used, "the planned scratch was not used: {ctx:?}");
                }
            }
        }
    }
    let mut levels = simd::test_levels();
    levels.retain(|&l| simd::run(l, LevelPacks));
    if levels.is_empty() {
        eprintln!(
            "note: no level of this CPU packs (AVX2): the planned scratch's use NOT exercised"
        );
    }
    // Layers that never pack: padded, 3x3, pixel tiles (a wide 1x1 layer, few channels).
    let none = [
        ((64, 28, 28), (64, 28, 28), (3, 3), (1, 1)),
        ((64, 14, 14), (64, 14, 14), (1, 1), (1, 1)),
        ((16, 56, 56), (8, 56, 56), (1, 1), (1, 1)),
    ];
    for ((c, h, w), (o, oh, ow), k, p) in none {
        let len = conv_scratch_len((c, h, w), (o, oh, ow), k, (1, 1), p, (1, 1), 1);
        assert_eq!(len, 0, "{c}x{h}x{w} -> {o}, kernel {k:?}, padding {p:?}");
    }
}

/// The automatic plan: pixel tiles where they fill more lanes, channel tiles where those
/// do; on AVX-512, 1x1 layers with at least `Tuning::cv_long_1x1` input channels take
/// channel tiles on a tie on maps of up to `LONG_1X1_MAX_PIXELS` pixels (MobileNets'
/// projections), shorter ones keep pixel tiles.
#[test]
#[cfg(target_arch = "x86_64")]
fn auto_plan_takes_channel_tiles_for_long_1x1_reductions() {
    use crate::kernels::engine::{auto_plan, flat};
    use simd::{Avx2, Avx512, Tuned};
    // The plan of the flat convolution the engine runs (1x1 maps as one row of pixels).
    // On a core with a 48 KiB L1d (the limit `LONG_1X1_MAX_PIXELS` applies) or 32 KiB.
    let plan_at = |c: usize, side: usize, o: usize, lanes: usize, t: &simd::Tuning, k, l1d| {
        let ax = Axis::conv(side, k, 1, k / 2, 1).unwrap();
        auto_plan(&flat(dims(c, o, 1, ax, ax)), lanes, t, l1d)
    };
    let plan = |c, side, k, o, lanes, t| plan_at(c, side, o, lanes, t, k, 48 * 1024);
    let (t512, t2) = (&Avx512::TUNING, &Avx2::TUNING);
    // Ties on small maps (12x12, 14x14, 24x24): long reductions -> channels; on 28x28
    // and larger maps, pixels (`LONG_1X1_MAX_PIXELS`).
    assert_eq!(plan(512, 12, 1, 512, 16, t512), Plan::Channels);
    assert_eq!(plan(1024, 14, 1, 256, 16, t512), Plan::Channels);
    assert_eq!(plan(256, 24, 1, 256, 16, t512), Plan::Channels);
    assert_eq!(plan(144, 28, 1, 32, 16, t512), Plan::Pixels);
    assert_eq!(plan(256, 56, 1, 64, 16, t512), Plan::Pixels);
    // With less L1d (or unknown: 0, the limit kept), on any map.
    assert_eq!(plan_at(256, 56, 64, 16, t512, 1, 32 * 1024), Plan::Channels);
    assert_eq!(plan_at(144, 28, 32, 16, t512, 1, 32 * 1024), Plan::Channels);
    assert_eq!(
        plan_at(512, 28, 128, 16, t512, 1, 32 * 1024),
        Plan::Channels
    );
    assert_eq!(plan_at(256, 56, 64, 16, t512, 1, 0), Plan::Pixels);
    // ... but not below the threshold, where pixel tiles fill more, or on AVX2.
    assert_eq!(plan_at(128, 56, 128, 16, t512, 1, 32 * 1024), Plan::Pixels);
    assert_eq!(plan_at(144, 56, 24, 16, t512, 1, 32 * 1024), Plan::Pixels);
    assert_eq!(plan_at(256, 56, 64, 8, t2, 1, 32 * 1024), Plan::Pixels);
    // Below the threshold, a 3x3 kernel, or AVX2: pixels.
    assert_eq!(plan(128, 24, 1, 128, 16, t512), Plan::Pixels);
    assert_eq!(plan(256, 16, 3, 256, 16, t512), Plan::Pixels);
    assert_eq!(plan(192, 28, 1, 32, 8, t2), Plan::Pixels);
    // 1x1 on large maps that are not whole vectors of pixels (SqueezeNet's 55x55, 27x27:
    // 0.99 of the pixel lanes): pixel tiles; on 17x17 (289 pixels) the channel tiles.
    assert_eq!(plan(128, 55, 1, 16, 16, t512), Plan::Pixels);
    assert_eq!(plan(512, 27, 1, 128, 16, t512), Plan::Pixels);
    assert_eq!(plan(768, 17, 1, 192, 16, t512), Plan::Channels);
    assert_eq!(plan_at(128, 55, 16, 16, t512, 1, 32 * 1024), Plan::Channels);
    // Pixel tiles filling more lanes keep them (24 outputs pad to 32 channel lanes).
    assert_eq!(plan(144, 56, 1, 24, 16, t512), Plan::Pixels);
    // Short reductions on 14x14 maps (0.94 of the pixel lanes): pixels up to
    // `Tuning::pv_short_k`.
    assert_eq!(plan(64, 14, 1, 384, 16, t512), Plan::Pixels);
    assert_eq!(plan(96, 14, 1, 576, 16, t512), Plan::Channels);
    // Channel tiles filling more lanes keep them (7x7: 49 of 64 pixel lanes).
    assert_eq!(plan(960, 7, 1, 320, 16, t512), Plan::Channels);
    // 1-D rows from 384 samples with taps along them: up to 96 input channels, pixel
    // tiles within 5% of the channel tiles' fill (1000 samples: 0.99); more channels,
    // channel tiles at equal fill or better (the pixel tiles' strip leaves L1), pixel
    // tiles where they fill more (24 outputs: 0.75 of the channel lanes); shorter rows
    // the fill decides; 1x1 on more than `LONG_1X1_MAX_PIXELS` samples, pixel tiles
    // within 5% of the channel tiles' fill (as on large maps).
    let row = |c: usize, l: usize, k: usize, o: usize| {
        let (one, ax) = (
            Axis::conv(1, 1, 1, 0, 1).unwrap(),
            Axis::conv(l, k, 1, k / 2, 1).unwrap(),
        );
        auto_plan(&flat(dims(c, o, 1, one, ax)), 16, t512, 48 * 1024)
    };
    assert_eq!(row(64, 1000, 3, 64), Plan::Pixels);
    assert_eq!(row(128, 1000, 3, 128), Plan::Channels);
    assert_eq!(row(128, 2000, 3, 128), Plan::Channels);
    assert_eq!(row(256, 500, 3, 24), Plan::Pixels);
    assert_eq!(row(64, 500, 5, 64), Plan::Pixels);
    assert_eq!(row(128, 250, 5, 128), Plan::Channels);
    assert_eq!(row(96, 1000, 1, 128), Plan::Pixels);
    assert_eq!(row(96, 500, 1, 128), Plan::Channels);
    assert_eq!(row(96, 1000, 3, 128), Plan::Pixels);
}

/// Convolutions with taps whose groups have one panel of outputs (RegNetX's groups of
/// 16): pixel tiles on AVX-512 where they fill at least 0.85 of the channel tiles' lanes
/// and the reduction is at most `Tuning::pv_one_panel_k` steps; channel tiles on AVX2.
#[test]
#[cfg(target_arch = "x86_64")]
fn auto_plan_takes_pixel_tiles_for_one_panel_groups() {
    use crate::kernels::engine::{auto_plan, flat};
    use simd::{Avx2, Avx512, Tuned};
    let plan = |c: usize, o: usize, g: usize, side: usize, s: usize, lanes, t| {
        let ax = Axis::conv(side, 3, s, 1, 1).unwrap();
        auto_plan(&flat(dims(c, o, g, ax, ax)), lanes, t, 48 * 1024)
    };
    let (t512, t2) = (&Avx512::TUNING, &Avx2::TUNING);
    // 14, 28 and 56 output columns (0.875 of the pixel lanes), 144 and 288 steps.
    assert_eq!(plan(32, 32, 2, 56, 1, 16, t512), Plan::Pixels);
    assert_eq!(plan(32, 32, 2, 112, 2, 16, t512), Plan::Pixels);
    assert_eq!(plan(160, 160, 10, 14, 1, 16, t512), Plan::Pixels);
    assert_eq!(plan(32, 16, 1, 14, 1, 16, t512), Plan::Pixels);
    // More steps (576), or less of the lanes (24 and 7 columns: 0.75, 0.44): channels.
    assert_eq!(plan(64, 16, 1, 28, 1, 16, t512), Plan::Channels);
    assert_eq!(plan(48, 48, 3, 24, 1, 16, t512), Plan::Channels);
    assert_eq!(plan(384, 384, 24, 7, 1, 16, t512), Plan::Channels);
    // Two panels a group: the channel tiles' panel pairs.
    assert_eq!(plan(64, 64, 2, 28, 1, 16, t512), Plan::Channels);
    // AVX2 (8-lane pixel vectors, its own short-reduction rule): channels here.
    assert_eq!(plan(160, 160, 10, 14, 1, 8, t2), Plan::Channels);
}

/// Runs `d` at `level` without working memory and with `len` floats of it (NaN-filled):
/// the first within tolerance of `want`, the second the same bits, and (`parallel`) the
/// same bits at 2 and 3 threads with the memory. Returns the memory as the run left it.
#[allow(clippy::too_many_arguments)]
fn check_with_scratch(
    level: cpu::Level,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    act: Act,
    want: &[f64],
    len: usize,
    ctx: &dyn core::fmt::Debug,
) -> Vec<f32> {
    let n = d.o * d.oh * d.ow;
    let run = |y: &mut [f32], scratch: &mut [f32]| {
        let sc = engine::SCRATCH;
        conv2d_with(level, d, input, params, y, act, None, sc, None, scratch)
    };
    let mut plain = vec![0.0; n];
    run(&mut plain, &mut []);
    r::assert_close(&plain, want, ctx);
    let mut scratch = vec![f32::NAN; len];
    let mut got = vec![0.0; n];
    run(&mut got, &mut scratch);
    assert!(
        got.iter()
            .zip(&plain)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "with the working memory the results differ: {ctx:?}"
    );
    #[cfg(feature = "parallel")]
    r::assert_threads_match_one(n, ctx, |out| run(out, &mut vec![0.0; len]));
    scratch
}

/// Strided 1x1 layers (ResNets' downsampling) with the working memory
/// `conv_scratch_len` asks for run on their gathered pixels: the same bits as without
/// it (the band copy's path), on every level and thread count, and within tolerance of
/// the reference; where the band copy would split the channels, no gathering is planned.
#[test]
fn strided_1x1_layers_gather_their_pixels() {
    #[cfg(feature = "parallel")]
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(41);
    // (C, H, W, stride h, stride w, O)
    for (c, h, w, sh, sw, o) in [
        (64, 14, 14, 2, 2, 128),
        (32, 9, 11, 2, 2, 48),
        (16, 7, 10, 3, 2, 20),
        (24, 8, 5, 2, 1, 40),
        (256, 14, 14, 2, 2, 512),
        (1024, 14, 14, 2, 2, 32),
        // Rows of whole vectors and a tail (35 pixels), whole vectors only (32; the
        // last one's second load short of a vector), an odd row (33), and enough
        // planes to split over threads (`parallel`).
        (8, 6, 70, 2, 2, 24),
        (4, 5, 64, 2, 2, 8),
        (6, 4, 65, 2, 2, 16),
        (32, 40, 130, 2, 2, 16),
    ] {
        let (ah, aw) = (
            Axis::conv(h, 1, sh, 0, 1).unwrap(),
            Axis::conv(w, 1, sw, 0, 1).unwrap(),
        );
        let d = dims(c, o, 1, ah, aw);
        let n = d.oh * d.ow;
        let len = conv_scratch_len(
            (c, h, w),
            (o, d.oh, d.ow),
            (1, 1),
            (sh, sw),
            (0, 0),
            (1, 1),
            1,
        );
        assert!(len >= c * n, "{c}x{h}x{w}: {len}");
        let input = rng.vec(c * h * w, -1.0, 1.0);
        let weight = rng.vec(o * c, -0.3, 0.3);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c, 1, 1, &weight, Some(&bias), None);
        let want = r::conv2d(c, o, 1, ah, aw, &input, &weight, Some(&bias), Act::RELU);
        for level in simd::test_levels() {
            let ctx = (c, h, w, o, level);
            let scratch =
                check_with_scratch(level, d, &input, &params, Act::RELU, &want, len, &ctx);
            assert!(
                scratch[..c * n].iter().all(|v| !v.is_nan()),
                "not gathered: {ctx:?}"
            );
        }
    }
    // One input row of all channels beyond the band buffer: the band copy splits the
    // channels (another order of sums), so nothing is gathered.
    let c = engine::SCRATCH / 14 + 16;
    let len = conv_scratch_len((c, 14, 14), (8, 7, 7), (1, 1), (2, 2), (0, 0), (1, 1), 1);
    assert!(len < c * 49, "{len}");
}

/// Layers with big weights that copy bands take bands of more rows in the working
/// memory `conv_scratch_len` asks for (weights streamed once a band): the same bits as
/// with the band buffer alone, whole channels or chunks of them, on every level and
/// thread count.
#[test]
fn big_weight_layers_copy_taller_bands() {
    #[cfg(feature = "parallel")]
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(43);
    // (C, side, kernel, stride, padding, O): one band of all channels per output row,
    // and chunks of the channels (512 x 3 rows x 16 columns beyond the band buffer).
    for (c, side, k, s, p, o) in [(256, 14, 3, 2, 1, 128), (512, 14, 3, 2, 1, 128)] {
        let ax = Axis::conv(side, k, s, p, 1).unwrap();
        let d = dims(c, o, 1, ax, ax);
        let len = conv_scratch_len(
            (c, side, side),
            (o, d.oh, d.ow),
            (k, k),
            (s, s),
            (p, p),
            (1, 1),
            1,
        );
        assert!(
            len > engine::SCRATCH * engine::PACK_PARTS,
            "{c}x{side}: {len}"
        );
        let input = rng.vec(c * side * side, -1.0, 1.0);
        let weight = rng.vec(o * c * k * k, -0.1, 0.1);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c, k, k, &weight, Some(&bias), None);
        let act = Act::IDENTITY;
        let want = r::conv2d(c, o, 1, ax, ax, &input, &weight, Some(&bias), act);
        for level in simd::test_levels() {
            let ctx = (c, side, o, level);
            let scratch = check_with_scratch(level, d, &input, &params, act, &want, len, &ctx);
            assert!(
                scratch.iter().any(|v| !v.is_nan()),
                "no band in the scratch: {ctx:?}"
            );
        }
    }
}
