//! Pooling: max and average over windows (PyTorch `MaxPool2d`, `AvgPool2d`, including
//! `ceil_mode` windows that reach past the padding), and the global pools.
//!
//! The common 2x2 stride-2 window (LeNet, VGG) has a vectorised path on the level
//! [`cpu::level`] selects. Every other window runs row-stationary
//! loops: each output row is combined in place over the kernel taps, each tap over the
//! range of output columns that it sees inside the input, so padding is never read.

use super::engine;
use super::geometry::{combine_taps, tap_range, Dims2d};
use super::simd::{self, Simd, WithSimd};
use crate::cpu::{self, Level};

/// Combines every in-input tap of the window of output row `oy` into `out_row` with `f`
/// (`out_row` holds the initial value); the same tap order as the convolution.
#[inline(always)]
fn pool_row(
    d: &Dims2d,
    out_row: &mut [f32],
    in_plane: &[f32],
    oy: usize,
    f: impl Fn(&mut f32, f32) + Copy,
) {
    for ky in 0..d.kh {
        let iy = (oy * d.sh + ky * d.dh).wrapping_sub(d.ph);
        if iy >= d.h {
            continue;
        }
        let in_row = &in_plane[iy * d.w..(iy + 1) * d.w];
        for kx in 0..d.kw {
            let (lo, hi, start) = tap_range(kx * d.dw, d.pw, d.sw, d.w, d.ow);
            combine_taps(&mut out_row[lo..hi], in_row, start, d.sw, f);
        }
    }
}

/// `max` that propagates NaN, as PyTorch's max pool does.
#[inline(always)]
fn max_nan(y: &mut f32, x: f32) {
    if x > *y || x.is_nan() {
        *y = x;
    }
}

/// Whether `d` is a 2x2, stride-2, unpadded, undilated window whose outputs all lie
/// inside the input (so average pools divide by 4): the vectorised fast path.
#[inline(always)]
fn is_2x2(d: &Dims2d) -> bool {
    d.kh == 2
        && d.kw == 2
        && d.sh == 2
        && d.sw == 2
        && d.ph == 0
        && d.pw == 0
        && d.dh == 1
        && d.dw == 1
        && 2 * d.oh <= d.h
        && 2 * d.ow <= d.w
}

/// Whether `d` is a 1x2, stride-2 window over single rows (a 1-D `MaxPool1d(2)` /
/// `AvgPool1d(2)` run with `H = 1`), unpadded, with its outputs inside the input: the
/// vectorised path with one input row per output row.
#[inline(always)]
fn is_1x2(d: &Dims2d) -> bool {
    d.kh == 1
        && d.kw == 2
        && d.sh == 1
        && d.sw == 2
        && d.ph == 0
        && d.pw == 0
        && d.dh == 1
        && d.dw == 1
        && d.oh == d.h
        && 2 * d.ow <= d.w
}

/// The 2x2 stride-2 pool (see [`is_2x2`]) as a kernel for [`simd::run`]: each output
/// vector from two vectors of each of the two input rows, combined vertically then
/// pairwise. With `one_row` the 1x2 window of [`is_1x2`]: input row `oy` only. Writes
/// output rows `rows` of every plane of `out` (valid for `C * OH * OW` floats, those
/// rows this run's alone). Raw pointers, no per-row slices; a row's last vector
/// overlaps the one before instead of masked loads and stores when the row holds a
/// vector, and loads reach into the next row where the input goes on (LeNet-5's two
/// pools: 18.7k -> 12.4k instructions per image, cachegrind).
struct Pool2x2<'a> {
    d: Dims2d,
    max: bool,
    one_row: bool,
    input: &'a [f32],
    out: *mut f32,
    rows: (usize, usize),
}

impl WithSimd for Pool2x2<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let d = self.d;
        let l = S::LANES;
        let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
        let input = &self.input[..d.c * hw];
        let end = input.as_ptr_range().end;
        let w = Window {
            one_row: self.one_row,
            max: self.max,
            end,
        };
        let (r0, r1) = self.rows;
        for c in 0..d.c {
            for oy in r0..r1 {
                let (y0, y1) = if w.one_row {
                    (oy, oy)
                } else {
                    (2 * oy, 2 * oy + 1)
                };
                // SAFETY: rows `y0, y1 < H` of plane `c < C` (2 * OH <= H, or OH == H
                // for 1x2), each at least `2 * OW` long (`2 * OW <= W`); output row `oy`
                // of plane `c` of `out` (this struct's contract: valid, these rows this
                // run's alone).
                let (a, b, y) = unsafe {
                    (
                        input.as_ptr().add(c * hw + y0 * d.w),
                        input.as_ptr().add(c * hw + y1 * d.w),
                        self.out.add(c * ohw + oy * d.ow),
                    )
                };
                // Whole vectors; a row of at least one vector ends on a whole vector
                // overlapping the one before (recomputing its outputs identically)
                // instead of masked loads and stores; a shorter one is stored masked.
                let mut x0 = 0;
                // SAFETY: columns `2 * x0 .. 2 * (x0 + n)` of the rows, outputs
                // `x0 .. x0 + n` of row `oy`, all inside (`x0 + n <= OW`).
                unsafe {
                    while x0 + l <= d.ow {
                        s.store(y.add(x0), pool_at(s, a.add(2 * x0), b.add(2 * x0), l, w));
                        x0 += l;
                    }
                    if d.ow < l {
                        // (x0 == 0: no whole vector.)
                        s.store_n(y, pool_at(s, a, b, d.ow, w), d.ow);
                    } else if x0 < d.ow {
                        let x = d.ow - l;
                        s.store(y.add(x), pool_at(s, a.add(2 * x), b.add(2 * x), l, w));
                    }
                }
            }
        }
    }
}

/// What [`pool_at`] combines: one row or two, maxima or averages, and the end of the
/// input (past which no vector is read whole).
#[derive(Clone, Copy)]
struct Window {
    one_row: bool,
    max: bool,
    end: *const f32,
}

/// One output vector of [`Pool2x2`] from the pairs of input columns at `a` (and `b`, the
/// row below), each pair's combination in lane order. `n` lanes of output are
/// meaningful; a vector holding some of their `2n` inputs is read whole when it ends
/// inside the input (its other lanes feed only output lanes past `n`), else masked.
///
/// # Safety
///
/// The first `2n` floats from `a` (and `b` unless `w.one_row`) are readable, and so is
/// everything from there to `w.end`.
#[inline(always)]
unsafe fn pool_at<S: Simd>(s: S, a: *const f32, b: *const f32, n: usize, w: Window) -> S::V {
    // SAFETY: `2n` floats from `a`, and everything up to `w.end` (the contract).
    let (a0, a1) = unsafe { load2(s, a, n, w.end) };
    if w.one_row {
        if w.max {
            s.pair_max(a0, a1)
        } else {
            s.mul(s.pair_add(a0, a1), s.splat(0.5))
        }
    } else {
        // SAFETY: the same from `b` (two rows: the contract covers `b`).
        let (b0, b1) = unsafe { load2(s, b, n, w.end) };
        if w.max {
            s.pair_max(s.max_nan(a0, b0), s.max_nan(a1, b1))
        } else {
            // Columns summed first: one pairwise add (a shuffle) per output vector,
            // not two.
            s.mul(s.pair_add(s.add(a0, b0), s.add(a1, b1)), s.splat(0.25))
        }
    }
}

/// The two vectors from `p` holding `2n` floats of a row (see [`pool_at`]).
///
/// # Safety
///
/// The first `2n` floats from `p` are readable, and so is everything from there to `end`.
#[inline(always)]
unsafe fn load2<S: Simd>(s: S, p: *const f32, n: usize, end: *const f32) -> (S::V, S::V) {
    let l = S::LANES;
    // SAFETY: `2n` floats from `p`, a whole vector only when it ends before `end`.
    unsafe {
        let first = if 2 * n >= l || p.add(l) <= end {
            s.load(p)
        } else {
            s.load_n(p, 2 * n)
        };
        let second = if p.add(2 * l) <= end {
            s.load(p.add(l))
        } else if 2 * n > l {
            s.load_n(p.add(l), 2 * n - l)
        } else {
            s.zero()
        };
        (first, second)
    }
}

/// Input floats from which a 2x2 pool splits over the pool's threads (`parallel`): the
/// 32x32x32 and 64x16x16 maps of a VGG-style network, not LeNet-5's 6x28x28.
#[cfg(feature = "parallel")]
const POOL_PAR_FLOATS: usize = 8192;

/// The 2x2 (or 1x2) pool `d` at `level`: with the `parallel` feature and a large map, in
/// bands of output rows over the threads (on cache-line boundaries of the output, as the
/// Winograd and depthwise row splits cut the map the pool reads: each part pools rows its
/// core wrote; every value computed as on one thread), else on this thread.
fn pool2x2(level: Level, d: Dims2d, max: bool, input: &[f32], output: &mut [f32]) {
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    let output = &mut output[..d.c * ohw];
    let one_row = is_1x2(&d);
    #[cfg(feature = "parallel")]
    {
        // Rows whose outputs fill whole 64-byte lines.
        let unit = super::depthwise::line_rows(d.ow);
        let units = d.oh / unit;
        let threads = crate::pool::num_threads().min(units);
        if threads > 1
            && d.c * hw >= POOL_PAR_FLOATS
            && ohw.is_multiple_of(16)
            && output.as_ptr().align_offset(64) == 0
        {
            let out = super::conv::OutPtr(output.as_mut_ptr());
            crate::pool::run(threads, &|i| {
                let at = |k: usize| {
                    if k == threads {
                        d.oh
                    } else {
                        k * units / threads * unit
                    }
                };
                let run = Pool2x2 {
                    d,
                    max,
                    one_row,
                    input,
                    out: out.get(),
                    rows: (at(i), at(i + 1)),
                };
                simd::run(level, run);
            });
            return;
        }
    }
    let run = Pool2x2 {
        d,
        max,
        one_row,
        input,
        out: output.as_mut_ptr(),
        rows: (0, d.oh),
    };
    simd::run(level, run);
}

/// Max pool with its dimensions as runtime values (`d.o`, `d.g` ignored), at `level`; see
/// [`max_pool2d`].
fn max_pool_dyn(level: Level, d: Dims2d, input: &[f32], output: &mut [f32]) {
    if is_2x2(&d) || is_1x2(&d) {
        return pool2x2(level, d, true, input, output);
    }
    let run = PoolBands {
        d,
        max: true,
        input,
        output: &mut *output,
    };
    if !simd::run(level, run) {
        max_pool_generic(d, input, output);
    }
}

/// Any other window as a kernel for [`simd::run`]: the engine's banded pooling
/// ([`engine::pool`]: maxima, or sums for `max == false`); `false` when it declines.
/// One thread: splitting ResNet-18's max pool by channels over two threads made the
/// network slower (the map arrives split by rows from the convolution before it).
struct PoolBands<'a> {
    d: Dims2d,
    max: bool,
    input: &'a [f32],
    output: &'a mut [f32],
}

impl WithSimd for PoolBands<'_> {
    type Output = bool;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> bool {
        engine::pool(s, self.d, self.input, self.output, self.max)
    }
}

/// The max pool's general loops (any window, padding, dilation, ceil mode).
#[inline(always)]
fn max_pool_generic(d: Dims2d, input: &[f32], output: &mut [f32]) {
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    let output = &mut output[..d.c * ohw];
    for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
        for (oy, out_row) in out_plane.chunks_exact_mut(d.ow).enumerate() {
            out_row.fill(f32::NEG_INFINITY);
            pool_row(&d, out_row, in_plane, oy, max_nan);
        }
    }
}

/// Number of cells of the window starting at `start` (in padded coordinates, so the
/// input is `[p, p + n)` and the padded input `[0, n + 2p)`) of `k` cells that count in
/// an average's divisor: those inside the padded input, or only the real ones.
#[inline(always)]
fn window_count(start: usize, k: usize, n: usize, p: usize, include_pad: bool) -> usize {
    let end = start + k;
    if include_pad {
        end.min(n + 2 * p) - start
    } else {
        end.min(n + p).saturating_sub(start.max(p))
    }
}

/// Average pool with its dimensions as runtime values (`d.o`, `d.g`, `d.dh`, `d.dw`
/// ignored: no dilation), at `level`; see [`avg_pool2d`].
fn avg_pool_dyn(level: Level, d: Dims2d, include_pad: bool, input: &[f32], output: &mut [f32]) {
    let d = Dims2d { dh: 1, dw: 1, ..d };
    if is_2x2(&d) || is_1x2(&d) {
        return pool2x2(level, d, false, input, output);
    }
    let run = PoolBands {
        d,
        max: false,
        input,
        output: &mut *output,
    };
    if !simd::run(level, run) {
        return avg_pool_generic(d, include_pad, input, output);
    }
    // The window sums, divided as PyTorch does.
    let ohw = d.oh * d.ow;
    for plane in output[..d.c * ohw].chunks_exact_mut(ohw) {
        for (oy, out_row) in plane.chunks_exact_mut(d.ow).enumerate() {
            let rows = window_count(oy * d.sh, d.kh, d.h, d.ph, include_pad);
            for (ox, y) in out_row.iter_mut().enumerate() {
                let cols = window_count(ox * d.sw, d.kw, d.w, d.pw, include_pad);
                *y /= (rows * cols) as f32;
            }
        }
    }
}

/// The average pool's general loops (any window, padding, ceil mode, divisor rule).
#[inline(always)]
fn avg_pool_generic(d: Dims2d, include_pad: bool, input: &[f32], output: &mut [f32]) {
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    let output = &mut output[..d.c * ohw];
    for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
        for (oy, out_row) in out_plane.chunks_exact_mut(d.ow).enumerate() {
            out_row.fill(0.0);
            pool_row(&d, out_row, in_plane, oy, |y, x| *y += x);
            let rows = window_count(oy * d.sh, d.kh, d.h, d.ph, include_pad);
            for (ox, y) in out_row.iter_mut().enumerate() {
                let cols = window_count(ox * d.sw, d.kw, d.w, d.pw, include_pad);
                *y /= (rows * cols) as f32;
            }
        }
    }
}

/// Max pool, PyTorch `MaxPool2d`: `output[c][y][x]` is the maximum of
/// `input[c][y*SH + ky*DH - PH][x*SW + kx*DW - PW]` over `ky < KH`, `kx < KW`, taps
/// outside the input ignored (-inf padding, also past the padding in ceil mode). Taps are
/// `DH`/`DW` apart. A NaN in the window gives NaN.
///
/// `input` holds at least `C*H*W` values and `output` at least `C*OH*OW`. `PH`/`PW` are
/// the top/left padding; every window must hold at least one input cell.
///
/// # Panics
///
/// If a slice is too short.
pub fn max_pool2d<
    const C: usize,
    const H: usize,
    const W: usize,
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
    output: &mut [f32],
) {
    const {
        assert!(C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0);
    }
    let d = Dims2d {
        c: C,
        h: H,
        w: W,
        o: C,
        oh: OH,
        ow: OW,
        kh: KH,
        kw: KW,
        sh: SH,
        sw: SW,
        ph: PH,
        pw: PW,
        dh: DH,
        dw: DW,
        g: C,
    };
    max_pool_dyn(cpu::level(), d, input, output);
}

/// Average pool, PyTorch `AvgPool2d`: the window of `output[c][y][x]` is rows
/// `[y*SH - PH, y*SH - PH + KH)` and columns `[x*SW - PW, x*SW - PW + KW)`; its sum over
/// the input cells inside it is divided, when `COUNT_INCLUDE_PAD`, by the number of window
/// cells inside the padded input (rows clipped to `[-PH, H + PH)` times columns clipped to
/// `[-PW, W + PW)`, so a ceil-mode window reaching past the padding counts fewer cells),
/// otherwise by the number of input cells in the window.
///
/// `input` holds at least `C*H*W` values and `output` at least `C*OH*OW`. Every window
/// must hold at least one input cell.
///
/// # Panics
///
/// If a slice is too short.
pub fn avg_pool2d<
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const COUNT_INCLUDE_PAD: bool,
>(
    input: &[f32],
    output: &mut [f32],
) {
    const {
        assert!(C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0);
    }
    let d = Dims2d {
        c: C,
        h: H,
        w: W,
        o: C,
        oh: OH,
        ow: OW,
        kh: KH,
        kw: KW,
        sh: SH,
        sw: SW,
        ph: PH,
        pw: PW,
        dh: 1,
        dw: 1,
        g: C,
    };
    avg_pool_dyn(cpu::level(), d, COUNT_INCLUDE_PAD, input, output);
}

/// Lanes of the global sums: independent accumulators, so the loop vectorises.
const LANES: usize = 8;

/// Sum of `xs` in [`LANES`] interleaved partial sums.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut acc = [0.0f32; LANES];
    for chunk in chunks {
        for (s, &x) in acc.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}

/// Global average pool with its dimensions as runtime values.
#[inline(always)]
fn global_avg_dyn(c: usize, hw: usize, input: &[f32], output: &mut [f32]) {
    let input = &input[..c * hw];
    let output = &mut output[..c];
    for (y, plane) in output.iter_mut().zip(input.chunks_exact(hw)) {
        *y = sum(plane) / hw as f32;
    }
}

/// Global max pool with its dimensions as runtime values.
#[inline(always)]
fn global_max_dyn(c: usize, hw: usize, input: &[f32], output: &mut [f32]) {
    let input = &input[..c * hw];
    let output = &mut output[..c];
    for (y, plane) in output.iter_mut().zip(input.chunks_exact(hw)) {
        let mut m = f32::NEG_INFINITY;
        for &x in plane {
            max_nan(&mut m, x);
        }
        *y = m;
    }
}

/// Global average pool: `[C, H, W] -> [C]`, `output[c]` the mean of the `HW = H*W`
/// values of channel `c`.
///
/// # Panics
///
/// If `input` is shorter than `C*HW` or `output` than `C`.
pub fn global_avg_pool<const C: usize, const HW: usize>(input: &[f32], output: &mut [f32]) {
    const { assert!(C > 0 && HW > 0) }
    global_avg_dyn(C, HW, input, output);
}

/// Global max pool: `[C, H, W] -> [C]`, `output[c]` the maximum of the `HW = H*W`
/// values of channel `c` (NaN if one of them is).
///
/// # Panics
///
/// If `input` is shorter than `C*HW` or `output` than `C`.
pub fn global_max_pool<const C: usize, const HW: usize>(input: &[f32], output: &mut [f32]) {
    const { assert!(C > 0 && HW > 0) }
    global_max_dyn(C, HW, input, output);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Axis, Rng};
    use crate::kernels::simd;

    fn dims(c: usize, ah: Axis, aw: Axis) -> Dims2d {
        Dims2d {
            c,
            h: ah.n,
            w: aw.n,
            o: c,
            oh: ah.out,
            ow: aw.out,
            kh: ah.k,
            kw: aw.k,
            sh: ah.s,
            sw: aw.s,
            ph: ah.p,
            pw: aw.p,
            dh: ah.d,
            dw: aw.d,
            g: c,
        }
    }

    /// Runs both pools (average only without dilation) against the reference on data
    /// that is all negative half of the time, so that zero padding would show.
    fn check(rng: &mut Rng, c: usize, ah: Axis, aw: Axis) {
        let d = dims(c, ah, aw);
        let (lo, hi) = if rng.below(2) == 0 {
            (-1.0, 1.0)
        } else {
            (-3.0, -1.0)
        };
        let input = rng.vec(c * ah.n * aw.n, lo, hi);
        let mut inp = input.clone();
        inp.extend([f32::NAN; 2]);
        let n = c * ah.out * aw.out;
        for level in simd::test_levels() {
            let mut got = vec![7.0; n + 2];
            max_pool_dyn(level, d, &inp, &mut got);
            assert_eq!(&got[n..], &[7.0; 2], "{d:?} wrote past its output");
            let want = r::max_pool2d(c, ah, aw, &input);
            assert!(
                got[..n].iter().zip(&want).all(|(&g, &w)| f64::from(g) == w),
                "max pool {d:?} {level:?}\n got {:?}\nwant {want:?}",
                &got[..n]
            );
            if ah.d == 1 && aw.d == 1 {
                for include_pad in [true, false] {
                    avg_pool_dyn(level, d, include_pad, &inp, &mut got);
                    assert_eq!(&got[n..], &[7.0; 2], "{d:?} wrote past its output");
                    let want = r::avg_pool2d(c, ah, aw, include_pad, &input);
                    r::assert_close(&got[..n], &want, &(d, include_pad, level));
                }
            }
        }
    }

    /// 1-D signals run as H = 1: long rows, every window/stride/dilation/padding, the
    /// 1x2 fast path among them.
    #[test]
    fn one_d_against_reference() {
        let mut rng = Rng::new(52);
        let one = Axis::pool(1, 1, 1, 0, 1, false).unwrap();
        let mut n = 0;
        for w in [2, 3, 17, 33, 784, 1001] {
            for k in [1, 2, 3, 5] {
                for s in [1, 2, 3] {
                    for d in [1, 2, 4, 8] {
                        for p in 0..=k / 2 {
                            for ceil in [false, true] {
                                if let Some(aw) = Axis::pool(w, k, s, p, d, ceil) {
                                    check(&mut rng, 1 + n % 3, one, aw);
                                    n += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(n > 300, "{n}");
        let aw = Axis::pool(784, 2, 2, 0, 1, false).unwrap();
        assert!(is_1x2(&dims(3, one, aw)));
    }

    /// Every pool axis geometry (sizes, kernels, strides larger than the kernel, padding up
    /// to half the kernel, dilation, ceil mode with extra and dropped windows) on each axis,
    /// paired with a random one.
    #[test]
    fn sweep_axes_against_reference() {
        let axes = r::pool_axes();
        assert!(axes.len() > 300, "{}", axes.len());
        assert!(
            axes.iter().any(|a| a.past_padding()),
            "no ceil window reaching past the padding"
        );
        let mut rng = Rng::new(51);
        for (i, &a) in axes.iter().enumerate() {
            let b = axes[rng.below(axes.len())];
            check(&mut rng, 1 + i % 4, a, b);
            check(&mut rng, 1 + i % 3, b, a);
        }
    }

    /// The vectorised 2x2 stride-2 path: widths around the vector lengths (tails), odd
    /// sizes (a dropped last row/column), NaN propagation.
    #[test]
    fn two_by_two_fast_path() {
        let mut rng = Rng::new(54);
        for h in [2, 3, 4, 7] {
            for w in [2, 3, 6, 8, 9, 15, 16, 17, 28, 33, 65] {
                let a = Axis::pool(h, 2, 2, 0, 1, false).unwrap();
                let b = Axis::pool(w, 2, 2, 0, 1, false).unwrap();
                assert!(is_2x2(&dims(3, a, b)));
                check(&mut rng, 3, a, b);
            }
        }
        let mut x = rng.vec(2 * 4 * 18, -1.0, 1.0);
        x[5] = f32::NAN;
        x[4 * 18 + 18 + 17] = f32::NAN;
        let (a, b) = (
            Axis::pool(4, 2, 2, 0, 1, false).unwrap(),
            Axis::pool(18, 2, 2, 0, 1, false).unwrap(),
        );
        for level in simd::test_levels() {
            let mut y = vec![0.0; 2 * 2 * 9];
            max_pool_dyn(level, dims(2, a, b), &x, &mut y);
            let nans: Vec<usize> = (0..y.len()).filter(|&i| y[i].is_nan()).collect();
            assert_eq!(nans, [2, 18 + 8], "{level:?}");
            let want = r::max_pool2d(2, a, b, &x);
            for (g, w) in y.iter().zip(&want) {
                assert!(g.is_nan() || f64::from(*g) == *w);
            }
        }
    }

    /// With the `parallel` feature, 2x2 pools large enough to split by output rows over
    /// 2 and 3 threads give the one-thread result bit for bit (max and average, every
    /// level, outputs on a line and off it, rows of 16, 8, 4 and 32 outputs, an odd
    /// height), and match the reference.
    #[cfg(feature = "parallel")]
    #[test]
    fn two_by_two_row_split_equals_one_thread() {
        let _g = crate::pool::TEST_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut rng = Rng::new(56);
        for (c, h, w) in [
            (32, 32, 32),
            (64, 16, 16),
            (128, 8, 8),
            (8, 64, 64),
            (40, 22, 33),
        ] {
            let (a, b) = (
                Axis::pool(h, 2, 2, 0, 1, false).unwrap(),
                Axis::pool(w, 2, 2, 0, 1, false).unwrap(),
            );
            let d = dims(c, a, b);
            assert!(is_2x2(&d) && c * h * w >= POOL_PAR_FLOATS);
            let x = rng.vec(c * h * w, -1.0, 1.0);
            let n = c * d.oh * d.ow;
            let want = r::max_pool2d(c, a, b, &x);
            for level in simd::test_levels() {
                r::assert_threads_match_one(n, &(c, h, w, level), |out| {
                    max_pool_dyn(level, d, &x, out);
                    let got: Vec<f64> = out[..n].iter().map(|&v| f64::from(v)).collect();
                    assert!(got == want, "{:?}", (c, h, w, level));
                });
                r::assert_threads_match_one(n, &(c, h, w, level, "avg"), |out| {
                    avg_pool_dyn(level, d, false, &x, out);
                });
            }
        }
        crate::pool::set_num_threads(2);
    }

    /// The banded path (every other window): ResNet's 3x3 stride-2 padding-1 max pool on
    /// a map taller than one band, NaN propagated from any tap, at every level.
    #[test]
    fn banded_windows_propagate_nan_and_span_bands() {
        let mut rng = Rng::new(55);
        let a = Axis::pool(112, 3, 2, 1, 1, false).unwrap();
        let b = Axis::pool(118, 3, 2, 1, 1, false).unwrap();
        check(&mut rng, 2, a, b);
        let d = dims(2, a, b);
        let mut x = rng.vec(2 * 112 * 118, -1.0, 1.0);
        // Row 0 column 0 (a corner, next to the padding) and an interior cell of plane 1.
        x[0] = f32::NAN;
        x[112 * 118 + 51 * 118 + 77] = f32::NAN;
        let want = r::max_pool2d(2, a, b, &x);
        // Output (0, 0) of plane 0; rows 25, 26 by columns 38, 39 of plane 1 (input row
        // 51 = 2 * 25 + 1 = 2 * 26 - 1, column 77 likewise).
        let (oh, ow) = (a.out, b.out);
        assert_eq!((oh, ow), (56, 59));
        let at = |y: usize, x: usize| oh * ow + y * ow + x;
        let want_nans = vec![0, at(25, 38), at(25, 39), at(26, 38), at(26, 39)];
        for level in simd::test_levels() {
            let mut y = vec![0.0; 2 * a.out * b.out];
            max_pool_dyn(level, d, &x, &mut y);
            let nans: Vec<usize> = (0..y.len()).filter(|&i| y[i].is_nan()).collect();
            assert_eq!(nans, want_nans, "{level:?}");
            for (g, w) in y.iter().zip(&want) {
                assert!(g.is_nan() || f64::from(*g) == *w, "{level:?}");
            }
        }
    }

    /// Named cases with hand-computed outputs: PyTorch's divisors in ceil mode.
    #[test]
    fn ceil_mode_divisors_by_hand() {
        // H = W = 3, k = 2, s = 2, p = 0, ceil: out 2x2, last window covers one real row
        // and one cell past the input (no padding): divisor 1 either way.
        let a = Axis::pool(3, 2, 2, 0, 1, true).unwrap();
        assert_eq!(a.out, 2);
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut y = [0.0; 4];
        avg_pool2d::<1, 3, 3, 2, 2, 2, 2, 2, 2, 0, 0, true>(&x, &mut y);
        assert_eq!(y, [3.0, 4.5, 7.5, 9.0]);
        // H = W = 4, k = 3, s = 2, p = 1, ceil: out = ceil(3/2)+1 = 3, last window starts at
        // padded 4 (< H + p = 5, kept), covers padded [4, 7): real 3 (index 3 -> padded 4),
        // padding 5, past-padding 6. Divisor with padding: 2 per axis.
        let a = Axis::pool(4, 3, 2, 1, 1, true).unwrap();
        assert_eq!(a.out, 3);
        let x = [1.0f32; 16];
        let mut y = [0.0; 9];
        avg_pool2d::<1, 4, 4, 3, 3, 3, 3, 2, 2, 1, 1, true>(&x, &mut y);
        // Corner (0,0): window padded [0,3)x[0,3): 4 real of 9.
        assert_eq!(y[0], 4.0 / 9.0);
        // (0,2): rows padded [0,3) count 3, cols padded [4,6) count 2: 6 cells, 2 real.
        assert_eq!(y[2], 2.0 / 6.0);
        // (2,2): 2x2 cells counted, 1 real.
        assert_eq!(y[8], 1.0 / 4.0);
        avg_pool2d::<1, 4, 4, 3, 3, 3, 3, 2, 2, 1, 1, false>(&x, &mut y);
        assert_eq!(y, [1.0; 9]);
    }

    #[test]
    fn max_pool_pads_with_minus_infinity_and_propagates_nan() {
        let x = [-5.0f32, -4.0, -3.0, -2.0];
        let mut y = [0.0; 9];
        // 2x2 input, kernel 2, stride 1, padding 1: 3x3 output, every window real values only.
        max_pool2d::<1, 2, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1>(&x, &mut y);
        assert_eq!(y, [-5.0, -4.0, -4.0, -3.0, -2.0, -2.0, -3.0, -2.0, -2.0]);
        let x = [1.0f32, f32::NAN, 3.0, 2.0];
        let mut y = [0.0; 1];
        max_pool2d::<1, 2, 2, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1>(&x, &mut y);
        assert!(y[0].is_nan());
        global_max_pool::<1, 4>(&x, &mut y);
        assert!(y[0].is_nan());
    }

    /// Const-generic shells on a few layers.
    #[test]
    fn const_generic_instances() {
        let mut rng = Rng::new(52);
        // LeNet avg_pool(2) on 6x28x28.
        let x = rng.vec(6 * 28 * 28, -1.0, 1.0);
        let a = Axis::pool(28, 2, 2, 0, 1, false).unwrap();
        let mut y = vec![0.0; 6 * 14 * 14];
        avg_pool2d::<6, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, true>(&x, &mut y);
        r::assert_close(&y, &r::avg_pool2d(6, a, a, true, &x), &"lenet avg pool");
        // Max pool 3x3 stride 2 pad 1 (ResNet stem), ceil mode on a 7x9 map.
        let x = rng.vec(2 * 7 * 9, -2.0, -1.0);
        let (ah, aw) = (
            Axis::pool(7, 3, 2, 1, 1, true).unwrap(),
            Axis::pool(9, 3, 2, 1, 1, true).unwrap(),
        );
        assert_eq!((ah.out, aw.out), (4, 5));
        let mut y = vec![0.0; 2 * 4 * 5];
        max_pool2d::<2, 7, 9, 4, 5, 3, 3, 2, 2, 1, 1, 1, 1>(&x, &mut y);
        r::assert_close(&y, &r::max_pool2d(2, ah, aw, &x), &"max pool ceil");
        // Dilated, non-square.
        let (ah, aw) = (
            Axis::pool(8, 2, 1, 1, 3, false).unwrap(),
            Axis::pool(6, 3, 2, 0, 2, true).unwrap(),
        );
        let x = rng.vec(3 * 8 * 6, -1.0, 1.0);
        let mut y = vec![0.0; 3 * ah.out * aw.out];
        max_pool2d::<3, 8, 6, 7, 2, 2, 3, 1, 2, 1, 0, 3, 2>(&x, &mut y);
        assert_eq!((ah.out, aw.out), (7, 2));
        r::assert_close(&y, &r::max_pool2d(3, ah, aw, &x), &"max pool dilated");
        // Avg pool, exclude pad, ceil, non-square.
        let (ah, aw) = (
            Axis::pool(5, 3, 2, 1, 1, true).unwrap(),
            Axis::pool(6, 2, 3, 1, 1, true).unwrap(),
        );
        assert_eq!((ah.out, aw.out), (3, 3));
        let x = rng.vec(2 * 5 * 6, -1.0, 1.0);
        let mut y = vec![0.0; 2 * 3 * 3];
        avg_pool2d::<2, 5, 6, 3, 3, 3, 2, 2, 3, 1, 1, false>(&x, &mut y);
        r::assert_close(
            &y,
            &r::avg_pool2d(2, ah, aw, false, &x),
            &"avg pool exclude pad",
        );
    }

    #[test]
    fn global_pools_against_reference() {
        let mut rng = Rng::new(53);
        for c in [1, 3, 16] {
            for hw in [1, 2, 7, 8, 9, 49, 3136] {
                let x = rng.vec(c * hw, -2.0, 1.0);
                let mut xin = x.clone();
                xin.push(f32::NAN);
                let mut y = vec![7.0; c + 1];
                global_avg_dyn(c, hw, &xin, &mut y);
                assert_eq!(y[c], 7.0);
                r::assert_close(
                    &y[..c],
                    &r::global_avg_pool(c, hw, &x),
                    &("global avg", c, hw),
                );
                global_max_dyn(c, hw, &xin, &mut y);
                assert_eq!(y[c], 7.0);
                r::assert_close(
                    &y[..c],
                    &r::global_max_pool(c, hw, &x),
                    &("global max", c, hw),
                );
            }
        }
        let x = [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0];
        let mut y = [0.0; 2];
        global_avg_pool::<2, 4>(&x, &mut y);
        assert_eq!(y, [2.5, -2.5]);
        global_max_pool::<2, 4>(&x, &mut y);
        assert_eq!(y, [4.0, -1.0]);
    }
}
