//! Pooling: max and average over windows (PyTorch `MaxPool2d`, `AvgPool2d`, including
//! `ceil_mode` windows that reach past the padding), and the global pools.
//!
//! The common 2x2 stride-2 window (LeNet, VGG) has a vectorised path on the level
//! [`cpu::level`] selects. Every other window runs on the engine's pooling
//! (`engine::pool`): windows undilated across separably, max or average, any stride (the
//! window's rows combined, then its columns: ResNet's, DenseNet's and SqueezeNet's 3x3
//! stride-2 pools among them; averages divided in vectors), dilated ones on padded,
//! phase-split bands. Where the engine declines (a row too wide for its buffer, more
//! than `MAX_TAPS` taps), row-stationary loops: each output row is combined in place
//! over the kernel taps, each tap over the range of output columns that it sees inside
//! the input, so padding is never read. The global max pool runs in vectors of running
//! maxima, the global average pool in vectors of channels.

use super::engine::{self, window_count, PoolOp};
use super::geometry::{combine_taps, tap_range, Dims2d};
use super::simd::{self, Simd, WithSimd};
use crate::cpu::{self, Level};

mod global;
pub(crate) use global::{gap_part_dyn, global_avg_dyn};
pub use global::{global_avg_pool, global_max_pool};

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

/// First output row of band `k` of `parts` over `oh` rows cut in units of `unit` rows
/// (the last band ends at `oh`).
#[cfg(feature = "parallel")]
fn band_start(oh: usize, unit: usize, parts: usize, k: usize) -> usize {
    if k == parts {
        oh
    } else {
        k * (oh / unit) / parts * unit
    }
}

/// The 2x2 (or 1x2) pool `d` at `level`: output rows `band` of every plane on this
/// thread (a team member's rows), or with `None` all of them: with the `parallel`
/// feature and a large map, in bands of output rows over the threads (on cache-line
/// boundaries of the output, as the Winograd and depthwise row splits cut the map the
/// pool reads: each part pools rows its core wrote; every value computed as on one
/// thread), else on this thread.
fn pool2x2(
    level: Level,
    d: Dims2d,
    max: bool,
    input: &[f32],
    output: &mut [f32],
    band: Option<(usize, usize)>,
) {
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    let output = &mut output[..d.c * ohw];
    let one_row = is_1x2(&d);
    #[cfg(feature = "parallel")]
    if band.is_none() {
        // Rows whose outputs fill whole 64-byte lines.
        let unit = super::depthwise::line_rows(d.ow);
        let units = d.oh / unit;
        let threads = crate::pool::num_threads().min(units);
        if threads > 1
            && d.c * hw >= POOL_PAR_FLOATS
            && ohw.is_multiple_of(16)
            && output.as_ptr().align_offset(64) == 0
        {
            let out = super::SharedPtr(output.as_mut_ptr());
            crate::pool::run(threads, &|i| {
                let at = |k| band_start(d.oh, unit, threads, k);
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
        // Planes that do not fill whole lines: by channels (see `by_channels`).
        let done = by_channels(&d, input, output, &|d, input, out| {
            let rows = (0, d.oh);
            simd::run(
                level,
                Pool2x2 {
                    d,
                    max,
                    one_row,
                    input,
                    out,
                    rows,
                },
            );
            true
        });
        if done.is_some() {
            return;
        }
    }
    let run = Pool2x2 {
        d,
        max,
        one_row,
        input,
        out: output.as_mut_ptr(),
        rows: band.unwrap_or((0, d.oh)),
    };
    simd::run(level, run);
}

/// Max pool with its dimensions as runtime values (`d.o`, `d.g` ignored), at `level`; see
/// [`max_pool2d`].
fn max_pool_dyn(level: Level, d: Dims2d, input: &[f32], output: &mut [f32]) {
    max_pool_band(level, d, input, output, None);
}

/// [`max_pool_dyn`] on output rows `band` of every plane alone, on this thread (`None`:
/// all rows, split over the threads where that pays).
fn max_pool_band(
    level: Level,
    d: Dims2d,
    input: &[f32],
    output: &mut [f32],
    band: Option<(usize, usize)>,
) {
    if is_2x2(&d) || is_1x2(&d) {
        return pool2x2(level, d, true, input, output, band);
    }
    if !pool_banded(level, d, PoolOp::Max, input, output, band) {
        max_pool_generic(d, input, output, band.unwrap_or((0, d.oh)));
    }
}

/// Any other window by the engine's banded pooling ([`engine::pool`]: maxima, or sums
/// for `max == false`) at `level`; `false` (nothing written) when it declines. Output
/// rows `band` of every plane on this thread, or with `None` all of them: with the
/// `parallel` feature and a large map, in bands of output rows over the threads, as
/// [`pool2x2`] splits (on cache-line boundaries of the output; each part pools the rows
/// its core wrote when the convolution before split by rows, as ResNet's stem does: by
/// channels, the split had made ResNet-18 slower); every value computed as on one thread.
fn pool_banded(
    level: Level,
    d: Dims2d,
    op: PoolOp,
    input: &[f32],
    output: &mut [f32],
    band: Option<(usize, usize)>,
) -> bool {
    let output = &mut output[..d.c * d.oh * d.ow];
    #[cfg(feature = "parallel")]
    if band.is_none() {
        let unit = super::depthwise::line_rows(d.ow);
        let units = d.oh / unit;
        let threads = crate::pool::num_threads().min(units);
        if threads > 1
            && d.c * d.h * d.w >= POOL_PAR_FLOATS
            && (d.oh * d.ow).is_multiple_of(16)
            && output.as_ptr().align_offset(64) == 0
        {
            let out = super::SharedPtr(output.as_mut_ptr());
            let ok = core::sync::atomic::AtomicBool::new(true);
            crate::pool::run(threads, &|i| {
                let at = |k| band_start(d.oh, unit, threads, k);
                let run = PoolBands {
                    d,
                    op,
                    input,
                    out: out.get(),
                    rows: (at(i), at(i + 1)),
                };
                // Every part declines alike (the same `d`), before writing.
                if !simd::run(level, run) {
                    ok.store(false, core::sync::atomic::Ordering::Relaxed);
                }
            });
            return ok.into_inner();
        }
        // Planes that do not fill whole lines: by channels (see `by_channels`).
        if let Some(ok) = by_channels(&d, input, output, &|d, input, out| {
            let rows = (0, d.oh);
            simd::run(
                level,
                PoolBands {
                    d,
                    op,
                    input,
                    out,
                    rows,
                },
            )
        }) {
            return ok;
        }
    }
    let run = PoolBands {
        d,
        op,
        input,
        out: output.as_mut_ptr(),
        rows: band.unwrap_or((0, d.oh)),
    };
    simd::run(level, run)
}

/// A large pool `d` whose output planes do not fill whole 64-byte lines (SqueezeNet's
/// 55x55, 27x27, 13x13 ceil-mode pools, DenseNet's 14x14 and 7x7 ones), where a band of
/// rows would share lines with the other parts at every plane: split by contiguous
/// ranges of channels over the pool's threads, `run(d', input', out')` pooling each
/// range's planes (one shared line at each boundary). `Some(every part's result)`, or
/// `None` (nothing run) for other pools.
#[cfg(feature = "parallel")]
fn by_channels(
    d: &Dims2d,
    input: &[f32],
    output: &mut [f32],
    run: &(dyn Fn(Dims2d, &[f32], *mut f32) -> bool + Sync),
) -> Option<bool> {
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let threads = crate::pool::num_threads().min(d.c);
    if threads < 2 || d.c * hw < POOL_PAR_FLOATS || ohw.is_multiple_of(16) {
        return None;
    }
    let out = super::SharedPtr(output.as_mut_ptr());
    let ok = core::sync::atomic::AtomicBool::new(true);
    crate::pool::run(threads, &|i| {
        let (c0, c1) = (i * d.c / threads, (i + 1) * d.c / threads);
        // SAFETY: planes `c0..c1` of the output, this part's alone.
        let part_out = unsafe { out.get().add(c0 * ohw) };
        let part = Dims2d { c: c1 - c0, ..*d };
        if !run(part, &input[c0 * hw..c1 * hw], part_out) {
            ok.store(false, core::sync::atomic::Ordering::Relaxed);
        }
    });
    Some(ok.into_inner())
}

/// Output rows `rows` of every plane of a banded pooling ([`pool_banded`]), as a kernel
/// for [`simd::run`]; `false` when the engine declines.
struct PoolBands<'a> {
    d: Dims2d,
    op: PoolOp,
    input: &'a [f32],
    /// The output's `d.c * d.oh * d.ow` floats, of which this part writes `rows` of each
    /// plane.
    out: *mut f32,
    rows: (usize, usize),
}

impl WithSimd for PoolBands<'_> {
    type Output = bool;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> bool {
        // SAFETY: `out` holds the whole output (`pool_banded` took it from a slice of
        // `d.c * d.oh * d.ow` floats that outlives the call), and the parts of a split
        // have disjoint row ranges `rows.1 <= d.oh`.
        unsafe { engine::pool(s, self.d, self.input, self.out, self.rows, self.op) }
    }
}

/// The max pool's general loops (any window, padding, dilation, ceil mode), on output
/// rows `rows` of every plane.
#[inline(always)]
fn max_pool_generic(d: Dims2d, input: &[f32], output: &mut [f32], rows: (usize, usize)) {
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    let output = &mut output[..d.c * ohw];
    for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
        let band = out_plane[rows.0 * d.ow..rows.1 * d.ow].chunks_exact_mut(d.ow);
        for (oy, out_row) in (rows.0..).zip(band) {
            out_row.fill(f32::NEG_INFINITY);
            pool_row(&d, out_row, in_plane, oy, max_nan);
        }
    }
}

/// Average pool with its dimensions as runtime values (`d.o`, `d.g`, `d.dh`, `d.dw`
/// ignored: no dilation), at `level`; see [`avg_pool2d`].
fn avg_pool_dyn(level: Level, d: Dims2d, include_pad: bool, input: &[f32], output: &mut [f32]) {
    avg_pool_band(level, d, include_pad, input, output, None);
}

/// [`avg_pool_dyn`] on output rows `band` of every plane alone, on this thread (`None`:
/// all rows, split over the threads where that pays).
fn avg_pool_band(
    level: Level,
    d: Dims2d,
    include_pad: bool,
    input: &[f32],
    output: &mut [f32],
    band: Option<(usize, usize)>,
) {
    let d = Dims2d { dh: 1, dw: 1, ..d };
    if is_2x2(&d) || is_1x2(&d) {
        return pool2x2(level, d, false, input, output, band);
    }
    let rows = band.unwrap_or((0, d.oh));
    if !pool_banded(level, d, PoolOp::Avg { include_pad }, input, output, band) {
        avg_pool_generic(d, include_pad, input, output, rows);
    }
}

/// The average pool's general loops (any window, padding, ceil mode, divisor rule), on
/// output rows `rows` of every plane.
#[inline(always)]
fn avg_pool_generic(
    d: Dims2d,
    include_pad: bool,
    input: &[f32],
    output: &mut [f32],
    rows: (usize, usize),
) {
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    let output = &mut output[..d.c * ohw];
    for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
        let band = out_plane[rows.0 * d.ow..rows.1 * d.ow].chunks_exact_mut(d.ow);
        for (oy, out_row) in (rows.0..).zip(band) {
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
    let d = pool_dims::<C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW>();
    max_pool_dyn(cpu::level(), d, input, output);
}

/// [`max_pool2d`] on output rows `rows.0..rows.1` of every plane alone, on the calling
/// thread (a [`team`](crate::team) member's rows): each value written is the one
/// [`max_pool2d`] gives, the other rows are left as they were, and no input row outside
/// their windows is used.
///
/// # Panics
///
/// As [`max_pool2d`], and if `rows` is not a range of `0..OH`.
pub fn max_pool2d_rows<
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
    rows: (usize, usize),
) {
    let d = pool_dims::<C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW>();
    assert!(
        rows.0 <= rows.1 && rows.1 <= OH,
        "max_pool2d_rows: rows {rows:?} of {OH}"
    );
    max_pool_band(cpu::level(), d, input, output, Some(rows));
}

/// The pool's dimensions from its constants (output planes as many as the input's),
/// each checked positive at compile time.
#[inline(always)]
const fn pool_dims<
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
>() -> Dims2d {
    const {
        assert!(C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0);
    }
    Dims2d {
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
    }
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
    let d = pool_dims::<C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, 1, 1>();
    avg_pool_dyn(cpu::level(), d, COUNT_INCLUDE_PAD, input, output);
}

/// [`avg_pool2d`] on output rows `rows.0..rows.1` of every plane alone, on the calling
/// thread (a [`team`](crate::team) member's rows): each value written is the one
/// [`avg_pool2d`] gives, the other rows are left as they were, and no input row outside
/// their windows is used.
///
/// # Panics
///
/// As [`avg_pool2d`], and if `rows` is not a range of `0..OH`.
pub fn avg_pool2d_rows<
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
    rows: (usize, usize),
) {
    let d = pool_dims::<C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, 1, 1>();
    assert!(
        rows.0 <= rows.1 && rows.1 <= OH,
        "avg_pool2d_rows: rows {rows:?} of {OH}"
    );
    avg_pool_band(
        cpu::level(),
        d,
        COUNT_INCLUDE_PAD,
        input,
        output,
        Some(rows),
    );
}

#[cfg(test)]
mod tests;
