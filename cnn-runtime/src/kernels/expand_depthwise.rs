//! A 1x1 convolution (an inverted residual block's expansion, with its batch norm and
//! activation) and the depthwise convolution that alone reads it, run together band by
//! band: for each band of the depthwise layer's output rows, the input rows it needs
//! are expanded into a buffer of a few rows, and the depthwise layer runs on that
//! buffer, its rows written straight into their place in the output (row by row, where
//! that path takes the band; else into a buffer, then copied). The expansion's output,
//! the largest tensor of a MobileNet (96 x 112 x 112 floats, 4.8 MB, in MobileNetV2), is
//! never stored whole: written to memory and read back, it made the two layers 1.4-2.5x
//! slower inside the model than alone.
//!
//! The compiler fuses a pair where [`expand_depthwise_scratch_len`] says it pays and
//! plans that working memory in the model's arena. Both halves run the ordinary
//! kernels ([`conv2d`](super::conv::conv2d)'s engine and the depthwise kernel), so the
//! expansion's values are the same bits as unfused; the depthwise layer runs on bands
//! (its path chosen for the band's shape), equal to the unfused layer within rounding.
//! With `parallel`, runs of consecutive bands go to up to two threads, each with its own
//! buffers (the same bits as one thread).

use super::activation::Act;
use super::conv::{conv2d_with, ConvParams};
use super::depthwise::{depthwise_rows_into, depthwise_with, DepthwiseParams};
use super::engine;
use super::geometry::Dims2d;
use super::SharedPtr;
use crate::cpu::{self, Level};

/// Floats of the expansion's output from which a pair is fused (4 MiB, more than the
/// L2 cache of the cores seen: 512 KB on Zen 3, 1 MB on Zen 4 and 5, 2 MB on the Intel
/// Xeon with AVX-512 measured here): below, the intermediate stays in cache and the
/// per-band calls and row copies cost about what they save, or more. Measured with
/// `conv::fuse_speed` (medians of 21 alternated runs, unfused / fused, µs): on AVX2
/// (Zen 3) 32x28x28 -> 192 then a stride-2 depthwise layer 280 / 323, 32x48x48 -> 64
/// 306 / 328, 128x24x24 -> 128 416 / 426, 96x14x14 -> 576 569 / 515, 24x56x56 -> 144
/// (451k floats) 714 / 657; on AVX-512 (Intel Xeon, 2 MB L2) that 24x56x56 pair 418 /
/// 527, 96x14x14 -> 576 212 / 221, while 16x112x112 -> 96 (1.2M floats) still gains,
/// 1303 / 1084. Raising the rule from 256k floats to 1M made the whole MobileNetV2
/// 1-3% faster there at one thread and 3-5% at two (alternated runs), its arena
/// unchanged (the 56x56 expansion is not its largest tensor).
/// Later (2026-12-03, the same Xeon) the unfused pair had become faster (16x112x112 ->
/// 96: 626 / 695 µs; MobileNetV2 unfused 1.01x / 1.05x faster at one / two threads):
/// the bands' depthwise half ran the generic per-channel path (a band's rows have no
/// padding above, which the row-by-row 3x3 path did not take: 323 µs of the bands'
/// depthwise work against 127 on that path). With band rows taken by that path
/// (`engine::rows3_fits`): 587 / 516 at one thread, 325 / 305-332 at two (8 rows a band);
/// 16x160x160 -> 96 1367 / 1228 and 799 / 636; 16x224x224 -> 96 3688 / 2490 and 2006 /
/// 1291; 24x56x56 -> 144 (451k floats) still 210 / 258 and 152 / 169: the rule stays.
/// Stride-1 depthwise layers are not fused: their bands share two rows of the
/// expansion, computed twice (24x56x56 -> 144: 1360 / 1442-1569 µs on Zen 3, 520 / 780
/// on the Xeon).
/// Not lower (Intel Xeon, 2026-12-06): MobileNetV3-Large's 16x112x112 -> 64 then
/// stride 2 (802k floats) ran fused 1.24x faster alone (`conv::fuse_speed`: 355-360
/// against 440-446 µs), but the model at 640k floats was 1.00x at one thread and 0.98x
/// at two (six alternated rounds each; the fused step 350 µs against 358 for the two
/// layers in the model, whose 3.2 MB intermediate stays partly in the 2 MB L2 and in L3).
const MIN_FLOATS: usize = 1024 * 1024;

/// Floats of the expanded band buffer (768 KB): at most 8 output rows a band for
/// MobileNetV2's 112x112 pair (7 once the bands are evened over the parts), 11 for a
/// 56x56 one (16x112x112 -> 96 then 3x3 stride 2, µs,
/// medians of 21 alternated runs: unfused 2987, bands of 4 rows 2305, 8 rows 2189-2433,
/// 16 rows 2298; 24x56x56 -> 144: unfused 714, 11 rows 657).
const BAND_FLOATS: usize = 192 * 1024;

/// The pair's geometry: the expansion `C x H x W -> E x H x W`, the depthwise layer `E x
/// H x W -> E x OH x OW` (kernel, stride, top/left padding, dilation in `dd`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair {
    /// Input channels of the expansion.
    pub(crate) c: usize,
    /// The depthwise layer.
    pub(crate) dd: Dims2d,
    /// Depthwise output rows per band.
    pub(crate) rows: usize,
}

impl Pair {
    /// Input rows of the depthwise layer that output rows `y0..y1` read, clipped to the
    /// map, and the padding rows above them: `(lo, hi, top)`.
    fn band_rows(&self, y0: usize, y1: usize) -> (usize, usize, usize) {
        let d = &self.dd;
        let start = (y0 * d.sh) as isize - d.ph as isize;
        let end = (y0 * d.sh + d.rows_in(y1 - y0)) as isize - d.ph as isize;
        let lo = start.max(0) as usize;
        let hi = (end.max(0) as usize).min(d.h);
        (lo, hi.max(lo), (lo as isize - start) as usize)
    }

    /// Input rows of the largest band.
    fn max_rows_in(&self) -> usize {
        let d = &self.dd;
        d.rows_in(self.rows).min(d.h)
    }

    /// Floats of one part's working memory, in whole lines: the input band, the
    /// expanded band, the output band.
    fn part_len(&self) -> usize {
        let (d, n) = (&self.dd, self.max_rows_in());
        ((self.c + d.c) * n * d.w + d.c * self.rows * d.ow).next_multiple_of(16)
    }

    /// Floats of working memory: [`PARTS`] parts.
    pub(crate) fn scratch_len(&self) -> usize {
        PARTS * self.part_len()
    }
}

/// Thread parts the bands are split into (`parallel`), each with its own buffers:
/// bands split inside (each band's expansion and depthwise layer over the threads) gained
/// only 1.24x from a second thread, where the unfused layers gain 1.6x (Zen 3, 16x112x112
/// -> 96 then 3x3 stride 2: 1286 µs on one thread, 1038 on two; unfused 1252 and 778).
/// Two parts keep the buffers at twice one band's (MobileNetV2's arena: 4.2 MB, 4.0
/// with one part's buffers, 6.0 unfused); further threads sit this step out.
const PARTS: usize = 2;

/// The pair, if fusing pays: the expansion's output holds at least [`MIN_FLOATS`] and
/// the pair runs in [`bands`].
pub(crate) fn pair(c: usize, dd: Dims2d) -> Option<Pair> {
    if dd.c * dd.h * dd.w < MIN_FLOATS {
        return None;
    }
    bands(c, dd)
}

/// The pair's bands, if it can run in them: the depthwise layer strides rows (its bands
/// then share at most a row of the expansion, which both compute), more than one band,
/// and every band reads a row of the map. Any size (the tests run small maps).
pub(crate) fn bands(c: usize, dd: Dims2d) -> Option<Pair> {
    let ok = [
        c, dd.c, dd.h, dd.w, dd.oh, dd.ow, dd.kh, dd.kw, dd.sh, dd.sw, dd.dh, dd.dw,
    ]
    .iter()
    .all(|&n| n > 0);
    if !ok || dd.sh < 2 {
        return None;
    }
    let mut rows = 1;
    while rows < dd.oh && dd.c * dd.rows_in(rows + 1) * dd.w <= BAND_FLOATS {
        rows += 1;
    }
    if rows >= dd.oh {
        return None;
    }
    // As many bands as a whole number of parts takes, the rows spread evenly over them:
    // MobileNetV2's 56 output rows ran 7 bands of 8, 3 on one thread and 4 on the other
    // (208 and 289 µs at two threads); 8 of 7 balance them. The same bands on any
    // number of threads.
    let rows = dd.oh.div_ceil(dd.oh.div_ceil(rows).next_multiple_of(PARTS));
    let p = Pair { c, dd, rows };
    let mut y0 = 0;
    while y0 < dd.oh {
        let y1 = (y0 + rows).min(dd.oh);
        let (lo, hi, _) = p.band_rows(y0, y1);
        if hi <= lo {
            return None;
        }
        y0 = y1;
    }
    Some(p)
}

/// Floats of working memory [`expand_depthwise`] needs for a 1x1 convolution `C x H x W
/// -> E x H x W` (stride 1, unpadded) followed by a depthwise convolution `E x H x W -> E
/// x OH x OW` with this kernel, stride, top/left padding and dilation, or `None` when
/// running them together does not pay (the compiler then plans two layers). It pays
/// with a row stride of 2 or more and an expansion output of at least 1M floats (4
/// MiB): MobileNetV2's 112x112 stride-2 block.
#[allow(clippy::too_many_arguments)]
pub fn expand_depthwise_scratch_len(
    (c, h, w): (usize, usize, usize),
    e: usize,
    (oh, ow): (usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    (dh, dw): (usize, usize),
) -> Option<usize> {
    let dd = Dims2d {
        c: e,
        h,
        w,
        o: e,
        oh,
        ow,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        g: e,
    };
    pair(c, dd).map(|p| p.scratch_len())
}

/// A 1x1 convolution `C x H x W -> E x H x W` (stride 1, unpadded, one group, weights
/// `expand`, fused activation `expand_act`) followed by a depthwise convolution `E x H x
/// W -> E x OH x OW` (`KH x KW`, stride, top/left padding, dilation; weights `dw`,
/// activation `act`), run band by band through `scratch` (at least
/// [`expand_depthwise_scratch_len`] floats): the results of
/// [`conv2d`](super::conv::conv2d) then
/// [`depthwise_conv2d`](super::depthwise::depthwise_conv2d) within rounding, without
/// the `E x H x W` intermediate.
///
/// # Panics
///
/// If the parameters were built for other dimensions, a slice is too short, or running
/// the pair together does not pay ([`expand_depthwise_scratch_len`] is `None`).
#[allow(clippy::too_many_arguments)]
pub fn expand_depthwise<
    const C: usize,
    const H: usize,
    const W: usize,
    const E: usize,
    const OH: usize,
    const OW: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    input: &[f32],
    expand: &ConvParams,
    expand_act: Act,
    dw: &DepthwiseParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let p = checked(
        [C, H, W, E, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW],
        expand,
        dw,
    );
    run(
        cpu::level(),
        p,
        input,
        expand,
        expand_act,
        dw,
        output,
        scratch,
        act,
    );
}

/// [`expand_depthwise`] on output rows `rows.0..rows.1` only (of every output plane),
/// on this thread, in bands of at most the whole call's band rows spread evenly over
/// them: the rows one member of a [`team`](crate::team) owns. It reads the input rows
/// those output rows need (the member's own and the halo the team exchanged); the other
/// rows of `output` are left as they were, every value written is the one
/// [`expand_depthwise`] gives. `scratch` needs [`expand_depthwise_scratch_len`] floats,
/// of which it uses the first part's.
///
/// # Panics
///
/// As [`expand_depthwise`].
#[allow(clippy::too_many_arguments)]
pub fn expand_depthwise_rows<
    const C: usize,
    const H: usize,
    const W: usize,
    const E: usize,
    const OH: usize,
    const OW: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    input: &[f32],
    expand: &ConvParams,
    expand_act: Act,
    dw: &DepthwiseParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    let p = checked(
        [C, H, W, E, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW],
        expand,
        dw,
    );
    let input = &input[..C * H * W];
    let output = &mut output[..E * OH * OW];
    let part_len = p.part_len();
    assert!(
        scratch.len() >= p.scratch_len(),
        "expand_depthwise: scratch of {} floats, needs {}",
        scratch.len(),
        p.scratch_len()
    );
    let (from, to) = (rows.0.min(OH), rows.1.min(OH));
    if from >= to {
        return;
    }
    let n = to - from;
    let step = n.div_ceil(n.div_ceil(p.rows));
    let job = Bands {
        level: cpu::level(),
        p,
        input,
        expand,
        expand_act,
        dw,
        act,
    };
    // SAFETY: `output` is borrowed mutably for the call, which writes only rows
    // `from..to <= OH` of its `E*OH*OW` floats (checked above), on this thread.
    unsafe {
        job.run(
            from,
            to,
            step,
            output.as_mut_ptr(),
            &mut scratch[..part_len],
        )
    };
}

/// The pair that dimensions `[C, H, W, E, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW]`
/// describe, checked against the parameters (panics as [`expand_depthwise`]).
fn checked(dims: [usize; 14], expand: &ConvParams, dw: &DepthwiseParams) -> Pair {
    let [c, h, w, e, oh, ow, kh, kw, sh, sw, ph, pw, dh, dwl] = dims;
    assert!(
        expand.dims() == [e, c, 1, 1] && dw.dims() == [e, kh, kw],
        "expand_depthwise: parameters are {:?} and {:?}, the layers want [{e}, {c}, 1, 1] and [{e}, 1, {kh}, {kw}]",
        expand.dims(),
        dw.dims()
    );
    let dd = Dims2d {
        c: e,
        h,
        w,
        o: e,
        oh,
        ow,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw: dwl,
        g: e,
    };
    let Some(p) = pair(c, dd) else {
        panic!("expand_depthwise: {c}x{h}x{w} -> {e} then {kh}x{kw} stride {sh}: not a pair that runs in bands");
    };
    p
}

/// [`expand_depthwise`] at `level` with its geometry as values: the bands split into up
/// to [`PARTS`] runs of consecutive bands over the pool's threads, each with its own
/// buffers (every band is computed the same way whichever thread runs it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    level: Level,
    p: Pair,
    input: &[f32],
    expand: &ConvParams,
    expand_act: Act,
    dw: &DepthwiseParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let dd = p.dd;
    let input = &input[..p.c * dd.h * dd.w];
    let output = &mut output[..dd.c * dd.oh * dd.ow];
    let need = p.scratch_len();
    assert!(
        scratch.len() >= need,
        "expand_depthwise: scratch of {} floats, needs {need}",
        scratch.len()
    );
    let bands = dd.oh.div_ceil(p.rows);
    let parts = crate::pool::num_threads().min(PARTS).min(bands);
    let (out, buf) = (
        SharedPtr(output.as_mut_ptr()),
        SharedPtr(scratch.as_mut_ptr()),
    );
    let part_len = p.part_len();
    let job = Bands {
        level,
        p,
        input,
        expand,
        expand_act,
        dw,
        act,
    };
    crate::pool::run(parts, &|i| {
        let (b0, b1) = (i * bands / parts, (i + 1) * bands / parts);
        // SAFETY: part `i < parts <= PARTS` owns floats `i * part_len..(i + 1) *
        // part_len` of the scratch (`scratch_len` = `PARTS * part_len` checked above)
        // and the output rows of bands `b0..b1` of every plane: disjoint from every other
        // part's, and the borrows of `output` and `scratch` outlive `pool::run`.
        unsafe {
            let mine = core::slice::from_raw_parts_mut(buf.get().add(i * part_len), part_len);
            let (y0, y1) = (b0 * p.rows, (b1 * p.rows).min(dd.oh));
            job.run(y0, y1, p.rows, out.get(), mine);
        }
    });
}

/// One call's arguments, shared by its parts.
struct Bands<'a> {
    level: Level,
    p: Pair,
    input: &'a [f32],
    expand: &'a ConvParams,
    expand_act: Act,
    dw: &'a DepthwiseParams,
    act: Act,
}

impl Bands<'_> {
    /// Output rows `from..to` in bands of `step <= p.rows` rows, in `buffers` (one
    /// part's [`Pair::part_len`] floats), written into their rows of the output planes
    /// at `output`.
    ///
    /// # Safety
    ///
    /// `output` points to the pair's `E*OH*OW` output floats, of which this call may write
    /// rows `from..to` (no other thread accesses them during the call).
    unsafe fn run(
        &self,
        from: usize,
        to: usize,
        step: usize,
        output: *mut f32,
        buffers: &mut [f32],
    ) {
        let Pair { c, dd, rows } = self.p;
        debug_assert!(0 < step && step <= rows && to <= dd.oh);
        let (h, w) = (dd.h, dd.w);
        let n_max = self.p.max_rows_in();
        let (band_in, rest) = buffers.split_at_mut(c * n_max * w);
        let (band_mid, rest) = rest.split_at_mut(dd.c * n_max * w);
        let band_out = &mut rest[..dd.c * rows * dd.ow];
        let cap = engine::SCRATCH;
        for y0 in (from..to).step_by(step) {
            let y1 = (y0 + step).min(to);
            let (lo, hi, top) = self.p.band_rows(y0, y1);
            let n = hi - lo;
            // The expansion's input rows, channel by channel.
            for ch in 0..c {
                band_in[ch * n * w..(ch + 1) * n * w]
                    .copy_from_slice(&self.input[(ch * h + lo) * w..(ch * h + hi) * w]);
            }
            let de = Dims2d {
                c,
                h: n,
                w,
                o: dd.c,
                oh: n,
                ow: w,
                kh: 1,
                kw: 1,
                sh: 1,
                sw: 1,
                ph: 0,
                pw: 0,
                dh: 1,
                dw: 1,
                g: 1,
            };
            let mid = &mut band_mid[..dd.c * n * w];
            conv2d_with(
                self.level,
                de,
                &band_in[..c * n * w],
                self.expand,
                mid,
                self.expand_act,
                None,
                cap,
                None,
                &mut [],
            );
            // The band's depthwise rows: padding above only for the first band, below
            // whatever the band's output rows imply.
            let db = Dims2d {
                h: n,
                oh: y1 - y0,
                ph: top,
                ..dd
            };
            // Row by row straight into rows `y0..y1` of the output planes where that
            // path takes the band, else into the band buffer and copied.
            // SAFETY: rows `y0..y1` of every plane: inside the output, this call's.
            let direct = unsafe {
                depthwise_rows_into(
                    self.level,
                    db,
                    mid,
                    self.dw,
                    output.add(y0 * dd.ow),
                    dd.oh * dd.ow,
                    self.act,
                )
            };
            if direct {
                continue;
            }
            let m = (y1 - y0) * dd.ow;
            let out = &mut band_out[..dd.c * m];
            depthwise_with(self.level, db, mid, self.dw, out, self.act, cap, None);
            for ch in 0..dd.c {
                // SAFETY: rows `y0..y1` of plane `ch`: inside the output, this call's.
                unsafe {
                    let dst = output.add(ch * dd.oh * dd.ow + y0 * dd.ow);
                    core::ptr::copy_nonoverlapping(out[ch * m..].as_ptr(), dst, m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Axis, Rng};
    use crate::kernels::simd;

    /// The pair against the f64 reference of the two layers, on every level, for
    /// geometries that run in bands, whatever their size (MobileNetV2's, odd sizes, a
    /// 5x5 kernel, dilation, a stride of 3, padding 0 and 2, activations curved and
    /// not), with band counts from two to many; and the size rule's refusals.
    #[test]
    fn bands_equal_the_two_layers() {
        let mut rng = Rng::new(41);
        // (C, H, W, E, k, stride, padding, dilation, expand act, act)
        let cases = [
            (16, 112, 112, 96, 3, 2, 1, 1, Act::RELU6, Act::RELU6),
            (24, 56, 56, 144, 3, 2, 1, 1, Act::RELU6, Act::IDENTITY),
            (5, 97, 45, 64, 3, 2, 1, 1, Act::SILU, Act::HARD_SWISH),
            (3, 61, 70, 80, 5, 2, 2, 1, Act::RELU, Act::RELU6),
            (4, 75, 64, 64, 3, 3, 0, 1, Act::IDENTITY, Act::TANH),
            (6, 66, 66, 72, 3, 2, 2, 2, Act::RELU6, Act::RELU),
        ];
        for (c, h, w, e, k, s, pad, dil, act1, act2) in cases {
            let ah = Axis::conv(h, k, s, pad, dil).unwrap();
            let aw = Axis::conv(w, k, s, pad, dil).unwrap();
            let x = rng.vec(c * h * w, -1.0, 1.0);
            let we = rng.vec(e * c, -0.5, 0.5);
            let be = rng.vec(e, -0.2, 0.2);
            let wd = rng.vec(e * k * k, -0.5, 0.5);
            let bd = rng.vec(e, -0.2, 0.2);
            let one = Axis::conv(h, 1, 1, 0, 1).unwrap();
            let one_w = Axis::conv(w, 1, 1, 0, 1).unwrap();
            let mid = r::conv2d(c, e, 1, one, one_w, &x, &we, Some(&be), act1);
            let mid32: Vec<f32> = mid.iter().map(|&v| v as f32).collect();
            let want = r::conv2d(e, e, e, ah, aw, &mid32, &wd, Some(&bd), act2);
            let pe = ConvParams::from_torch(e, c, 1, 1, &we, Some(&be), None);
            let pd = DepthwiseParams::from_torch(e, 1, k, k, &wd, Some(&bd), None);
            let dd = Dims2d {
                c: e,
                h,
                w,
                o: e,
                oh: ah.out,
                ow: aw.out,
                kh: k,
                kw: k,
                sh: s,
                sw: s,
                ph: pad,
                pw: pad,
                dh: dil,
                dw: dil,
                g: e,
            };
            let p = bands(c, dd).expect("runs in bands");
            assert!(p.rows < ah.out, "one band: {p:?}");
            let len = p.scratch_len();
            for level in simd::test_levels() {
                // A longer output and scratch: the tail stays untouched.
                let n = e * ah.out * aw.out;
                let mut got = vec![7.0f32; n + 3];
                let mut scratch = vec![f32::NAN; len + 5];
                run(level, p, &x, &pe, act1, &pd, &mut got, &mut scratch, act2);
                assert_eq!(&got[n..], &[7.0; 3], "wrote past its output");
                r::assert_close(&got[..n], &want, &(c, h, w, e, k, s, pad, dil, level));
            }
        }
        // Refused: stride 1, a small intermediate, no input channels.
        let geometry = |c: usize, e: usize, hw: usize, s: usize| {
            let a = Axis::conv(hw, 3, s, 1, 1).unwrap();
            expand_depthwise_scratch_len(
                (c, hw, hw),
                e,
                (a.out, a.out),
                (3, 3),
                (s, s),
                (1, 1),
                (1, 1),
            )
        };
        assert_eq!(geometry(16, 96, 112, 1), None, "stride 1");
        assert_eq!(geometry(16, 192, 28, 2), None, "150k floats");
        assert_eq!(geometry(24, 144, 56, 2), None, "451k floats");
        assert_eq!(geometry(0, 96, 112, 2), None, "no channels");
        assert_eq!(geometry(16, 64, 127, 2), None, "just under 1M floats");
        assert!(geometry(16, 64, 128, 2).is_some(), "1M floats");
        assert!(geometry(16, 96, 112, 2).is_some());
    }

    /// Split over threads (runs of bands, each part its own buffers), the pair gives the
    /// one-thread result bit for bit, with an odd band count and more threads than parts.
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_give_the_one_thread_result_bit_for_bit() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(43);
        for (c, hw, e) in [(16, 112, 96), (5, 97, 64)] {
            let a = Axis::conv(hw, 3, 2, 1, 1).unwrap();
            let dd = Dims2d {
                c: e,
                h: hw,
                w: hw,
                o: e,
                oh: a.out,
                ow: a.out,
                kh: 3,
                kw: 3,
                sh: 2,
                sw: 2,
                ph: 1,
                pw: 1,
                dh: 1,
                dw: 1,
                g: e,
            };
            let p = bands(c, dd).unwrap();
            assert!(a.out.div_ceil(p.rows) >= 2, "{p:?}");
            let x = rng.vec(c * hw * hw, -1.0, 1.0);
            let pe = ConvParams::from_torch(e, c, 1, 1, &rng.vec(e * c, -0.5, 0.5), None, None);
            let pd =
                DepthwiseParams::from_torch(e, 1, 3, 3, &rng.vec(e * 9, -0.5, 0.5), None, None);
            let mut scratch = vec![0.0; p.scratch_len()];
            for level in simd::test_levels() {
                r::assert_threads_match_one(e * a.out * a.out, &(c, hw, e, level), |out| {
                    run(
                        level,
                        p,
                        &x,
                        &pe,
                        Act::RELU6,
                        &pd,
                        out,
                        &mut scratch,
                        Act::SILU,
                    )
                });
            }
        }
    }

    /// A scratch shorter than the rule's length is refused before anything is written.
    #[test]
    #[should_panic(expected = "scratch of")]
    fn short_scratch_panics() {
        let (c, e, hw) = (16, 96, 112);
        let a = Axis::conv(hw, 3, 2, 1, 1).unwrap();
        let len = expand_depthwise_scratch_len(
            (c, hw, hw),
            e,
            (a.out, a.out),
            (3, 3),
            (2, 2),
            (1, 1),
            (1, 1),
        )
        .unwrap();
        let pe = ConvParams::from_torch(e, c, 1, 1, &vec![0.1; e * c], None, None);
        let pd = DepthwiseParams::from_torch(e, 1, 3, 3, &vec![0.1; e * 9], None, None);
        let x = vec![1.0; c * hw * hw];
        let mut y = vec![0.0; e * a.out * a.out];
        let mut scratch = vec![0.0; len - 1];
        expand_depthwise::<16, 112, 112, 96, 56, 56, 3, 3, 2, 2, 1, 1, 1, 1>(
            &x,
            &pe,
            Act::RELU6,
            &pd,
            &mut y,
            &mut scratch,
            Act::RELU6,
        );
    }
}
