//! Pooling windows of any size, stride, padding and dilation, maxima or averages.
//! Windows undilated across run separably ([`sep_rows`]): each output row's window rows
//! combined column by column into one padded row, then each output's columns from that
//! row (one, two or any number of columns a step). Dilated ones run over the engine's
//! padded, phase-split bands ([`copy_band`], padded with -inf for max, 0 for sums):
//! every tap of the window is then a contiguous run of one phase row, so each output row
//! is whole vectors of NaN-propagating maxima or of sums, with no per-element bounds or
//! branches. Averages are divided in vectors as PyTorch divides them
//! ([`window_count`]).

#[allow(unused_imports)]
use super::*;

/// What a pooling computes of each window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolOp {
    /// The maximum, NaN if the window holds one (PyTorch's max pool).
    Max,
    /// The mean: the sum divided by the window's cells inside the padded input
    /// (`include_pad`, PyTorch's `count_include_pad=True`) or inside the input.
    Avg {
        /// Whether padding cells count in the divisor.
        include_pad: bool,
    },
}

/// Number of cells of the window starting at `start` (in padded coordinates, so the
/// input is `[p, p + n)` and the padded input `[0, n + 2p)`) of `k` cells that count in
/// an average's divisor: those inside the padded input, or only the real ones.
#[inline(always)]
pub(crate) fn window_count(start: usize, k: usize, n: usize, p: usize, include_pad: bool) -> usize {
    let end = start + k;
    if include_pad {
        end.min(n + 2 * p) - start
    } else {
        end.min(n + p).saturating_sub(start.max(p))
    }
}

/// Floats the divisors of an average's output columns take at the end of the band
/// buffer (none for a max).
#[inline(always)]
fn divisor_floats(d: &Dims2d, op: PoolOp) -> usize {
    match op {
        PoolOp::Max => 0,
        PoolOp::Avg { .. } => d.ow.next_multiple_of(16),
    }
}

/// The pooling `op` of `d` per channel (`d.o` and `d.g` ignored): `output[c][y][x]`
/// combines `input[c][y*SH + ky*DH - PH][x*SW + kx*DW - PW]` over the taps, taps outside
/// the input reading -inf (max) or 0 (sums); an average divides as PyTorch does. NaN
/// propagates through the maxima (and the sums). `false` (nothing written) when the band
/// of one output row does not fit the engine's band buffer. Only output rows
/// `rows.0..rows.1` of every plane are computed and written (a part of a split over
/// threads; `(0, d.oh)`: all).
///
/// # Safety
///
/// `output` must be valid for writes of `d.c * d.oh * d.ow` floats, and no other thread
/// may access rows `rows.0..rows.1` of its planes during the call; `rows.1 <= d.oh`.
#[inline(always)]
pub(crate) unsafe fn pool<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    output: *mut f32,
    rows: (usize, usize),
    op: PoolOp,
) -> bool {
    let l = S::LANES;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    if d.oh == 0 || d.ow == 0 || d.kh == 0 || d.kw == 0 {
        return false;
    }
    if d.kh * d.kw > MAX_TAPS || divisor_floats(&d, op) > SCRATCH / 2 {
        return false;
    }
    if separable_fits(&d, l) {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            if op == PoolOp::Max {
                sep_rows::<S, true>(s, d, input, output, rows, op)
            } else {
                sep_rows::<S, false>(s, d, input, output, rows, op)
            }
        };
        return true;
    }
    let max = op == PoolOp::Max;
    let wp = d.cols_in();
    let wq = wp.div_ceil(d.sw);
    let rowpitch = d.sw * wq;
    let divs = divisor_floats(&d, op);
    let Some(band_rows) = band_rows_in(&d, rowpitch, SCRATCH - divs) else {
        return false;
    };
    // Each tap's offset in the band from its output row's first pixel: kernel row `ky`
    // rows down, phase `t % SW` of the row, column `t / SW` (`t = kx * DW`).
    let mut taps_buf = [0usize; MAX_TAPS];
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            let t = kx * d.dw;
            taps_buf[ky * d.kw + kx] = ky * d.dh * rowpitch + (t % d.sw) * wq + t / d.sw;
        }
    }
    let taps = &taps_buf[..d.kh * d.kw];
    let pad = if max { f32::NEG_INFINITY } else { 0.0 };
    let init = s.splat(pad);
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let scratch = scratch.as_mut_ptr().cast::<f32>();
    // SAFETY: the last `divs` floats of the buffer, after every band
    // (`band_rows_in(.., SCRATCH - divs)`).
    let cols = unsafe { column_divisors(&d, op, scratch.add(SCRATCH - divs)) };
    for (c, plane) in input.chunks_exact(hw).enumerate() {
        // SAFETY: plane `c < d.c` of the output, inside its `d.c * ohw` floats.
        let out = unsafe { output.add(c * ohw) };
        for y0 in (rows.0..rows.1).step_by(band_rows) {
            let y1 = (y0 + band_rows).min(rows.1);
            let prow0 = y0 * d.sh;
            // SAFETY: `rows_in(y1 - y0) * rowpitch <= SCRATCH - divs` by the choice of
            // `band_rows`, so the copy stays in `scratch`, before the divisors.
            unsafe { copy_band(s, &d, plane, 1, prow0, d.rows_in(y1 - y0), wq, scratch, pad) };
            for oy in y0..y1 {
                // SAFETY: output row `oy < rows.1 <= OH` of this plane, this call's
                // alone (the caller's contract).
                let row = unsafe { core::slice::from_raw_parts_mut(out.add(oy * d.ow), d.ow) };
                let base = (oy * d.sh - prow0) * rowpitch;
                let rdiv = row_divisor(s, &d, op, oy);
                let mut x0 = 0;
                while x0 < d.ow {
                    let n = l.min(d.ow - x0);
                    let mut acc = init;
                    for &off in taps {
                        // SAFETY: band row `oy * SH - prow0 + ky * DH < d.rows_in(y1 - y0)`
                        // (output row `oy < y1`, `ky < KH`); in it phase `t % SW`,
                        // columns `x0 + t / SW ..` + n, below `wq` since their padded
                        // columns `x * SW + t <= (OW - 1) * SW + (KW - 1) * DW < wq * SW`;
                        // all written by `copy_band`.
                        let v = unsafe {
                            let p = scratch.add(base + off + x0);
                            if n == l {
                                s.load(p)
                            } else {
                                s.load_n(p, n)
                            }
                        };
                        acc = if max {
                            s.max_nan(acc, v)
                        } else {
                            s.add(acc, v)
                        };
                    }
                    // SAFETY: divisors `x0..x0 + n` of the `ow` written.
                    let acc = unsafe { divide(s, acc, op, rdiv, cols, (x0, n)) };
                    // SAFETY: outputs x0 .. x0 + n of `row` (n <= OW - x0).
                    unsafe {
                        let y = row.as_mut_ptr().add(x0);
                        if n == l {
                            s.store(y, acc);
                        } else {
                            s.store_n(y, acc, n);
                        }
                    }
                    x0 += n;
                }
            }
        }
    }
    true
}

/// The divisors of an average's output columns (the cells of column `x`'s window that
/// count, as f32) written at `buf` (`divisor_floats` floats); null for a max.
///
/// # Safety
///
/// For an average, `buf` must be valid for writes of `d.ow` floats.
#[inline(always)]
unsafe fn column_divisors(d: &Dims2d, op: PoolOp, buf: *mut f32) -> *const f32 {
    match op {
        PoolOp::Max => core::ptr::null(),
        PoolOp::Avg { include_pad } => {
            for x in 0..d.ow {
                let n = window_count(x * d.sw, d.kw, d.w, d.pw, include_pad);
                // SAFETY: `x < d.ow` (the caller's contract).
                unsafe { buf.add(x).write(n as f32) };
            }
            buf
        }
    }
}

/// The row divisor of output row `oy` of an average (the rows of its windows that
/// count, in every lane), once per row; unused (zero) for a max.
#[inline(always)]
fn row_divisor<S: Simd>(s: S, d: &Dims2d, op: PoolOp, oy: usize) -> S::V {
    match op {
        PoolOp::Max => s.zero(),
        PoolOp::Avg { include_pad } => {
            s.splat(window_count(oy * d.sh, d.kh, d.h, d.ph, include_pad) as f32)
        }
    }
}

/// `acc` (the sums of outputs `x0..x0 + n` of a row whose [`row_divisor`] is `rows`)
/// divided by their windows' cell counts as PyTorch divides (`sum / (rows * cols)`, the
/// count an exact integer); `acc` itself for a max.
///
/// # Safety
///
/// For an average, `cols` holds the `d.ow` column divisors (`column_divisors`) and
/// `x0 + n <= d.ow`.
#[inline(always)]
unsafe fn divide<S: Simd>(
    s: S,
    acc: S::V,
    op: PoolOp,
    rows: S::V,
    cols: *const f32,
    (x0, n): (usize, usize),
) -> S::V {
    match op {
        PoolOp::Max => acc,
        PoolOp::Avg { .. } => {
            // SAFETY: divisors `x0..x0 + n` (the caller's contract). Lanes past `n`
            // (zero) divide into lanes that are never stored.
            let c = unsafe {
                if n == S::LANES {
                    s.load(cols.add(x0))
                } else {
                    s.load_n(cols.add(x0), n)
                }
            };
            s.div(acc, s.mul(rows, c))
        }
    }
}

/// `a` combined with `b`: the NaN-propagating maximum (`MAX`), or the sum.
#[inline(always)]
fn comb<S: Simd, const MAX: bool>(s: S, a: S::V, b: S::V) -> S::V {
    if MAX {
        s.max_nan(a, b)
    } else {
        s.add(a, b)
    }
}

/// `n <= LANES` floats at `p`: a whole vector, or the first `n` lanes.
///
/// # Safety
///
/// `p..p + n` readable.
#[inline(always)]
unsafe fn load_upto<S: Simd>(s: S, p: *const f32, n: usize) -> S::V {
    // SAFETY: the caller's contract.
    unsafe {
        if n == S::LANES {
            s.load(p)
        } else {
            s.load_n(p, n)
        }
    }
}

/// Output vector `x0..x0 + n` of row `oy` of the plane at `out` (whose
/// [`row_divisor`] is `rdiv`): divided (an average, [`divide`]) and stored.
///
/// # Safety
///
/// As [`divide`], and `out + oy * d.ow + x0 ..` + `n` writable.
#[inline(always)]
unsafe fn put<S: Simd>(
    s: S,
    acc: S::V,
    d: &Dims2d,
    (op, rdiv, cols): (PoolOp, S::V, *const f32),
    out: *mut f32,
    (oy, x0, n): (usize, usize, usize),
) {
    // SAFETY: the caller's contract.
    unsafe {
        let acc = divide(s, acc, op, rdiv, cols, (x0, n));
        let y = out.add(oy * d.ow + x0);
        if n == S::LANES {
            s.store(y, acc);
        } else {
            s.store_n(y, acc, n);
        }
    }
}

/// Whether the pool `d` runs separably ([`sep_rows`]) on a level of `lanes` lanes:
/// windows undilated across, padded by at most a vector, on rows whose padded copy (two
/// of them, and an average's column divisors) fits the band buffer.
#[inline(always)]
pub(crate) fn separable_fits(d: &Dims2d, lanes: usize) -> bool {
    // The end of the last output vector's last load, from the buffer's start.
    let reach = |extent: usize| lanes - d.pw + d.sw * (d.ow - 1) + extent;
    d.dw == 1
        && d.ow > 0
        && d.kw > 0
        && d.sw > 0
        && d.pw <= lanes
        && 2 * row_floats(d, lanes) + d.ow.next_multiple_of(16) <= SCRATCH
        && reach(if d.sw == 2 && d.kw >= 2 {
            (d.kw - 1) / 2 * 2 + 2 * lanes
        } else {
            d.kw - 1 + lanes
        }) <= row_floats(d, lanes)
}

/// Floats of [`sep_rows`]' padded row: `lanes` of padding before the `W` columns, and
/// after them room for every vector an output row's last vector reads (to padded
/// column `SW * x0 + (KW - 1) / 2 * 2 + 2 * lanes - 1` at most, `x0 <= OW - 1`, `SW *
/// (OW - 1) <= W + 2 * PW - 1`).
#[inline(always)]
fn row_floats(d: &Dims2d, lanes: usize) -> usize {
    d.w + d.pw + d.kw + 4 * lanes
}

/// The pooling `op` of `d` (see [`pool`]; `separable_fits(d, S::LANES)`) on output rows
/// `rows.0..rows.1` of every plane, separably, a band of output rows at a time: first,
/// for each row of the band, the window's input rows inside the map combined column by
/// column (NaN-propagating maxima, or sums) into a row of the band buffer padded on both
/// sides (-inf for a max, 0 for a sum: the padding, and ceil-mode windows reaching past
/// it); then each output vector combines its window's columns of its buffer row:
/// shifted loads (stride 1), the even and odd lanes of pairs of loads at offsets `0, 2,
/// ..` (stride 2), or, for other strides, the windows of every column (shifted loads
/// into a second row) of which each output takes every `SW`-th; an average is then
/// divided ([`divide`]). A maximum is the same whatever the order: the values of
/// [`pool`]'s banded path, NaN wherever a window holds one, from fewer loads and no band
/// copy; a sum adds the window's rows first, then its columns (PyTorch adds row by row:
/// the same within rounding). A column vector's rows are combined in registers and the
/// band's rows all stored before any is read back: a row read straight after being
/// stored (masked, at its end) stalled on store forwarding, which made SqueezeNet's
/// 256x27x27 pool slower than the banded path. `pool::tests::speed` (Intel Xeon, one
/// core, µs, banded / separable): 64x112x112 3x3 stride 2 280 / 203, SqueezeNet's
/// ceil-mode 64x111x111 250 / 198, 128x55x55 123 / 102, 256x27x27 79 / 68. The pool is
/// bound by its instructions, not by memory (an 8-channel 111x111 map in L2 takes an
/// eighth of the 64-channel one's time): each maximum starts from its first operand
/// instead of -inf (`max_nan` is three operations), the stride-2 columns take one
/// permute each (the even or odd lanes of a pair of loads) where pairwise maxima took
/// two and a maximum per pair, and the common window heights and widths (2, 3) get loops
/// of their own, unrolled: the same shapes 1.2x faster (258-264 -> 210-217, 120 -> 98, 65
/// -> 52-55; the L2 map 27 -> 20.5-22; AVX2 1.2-1.3x), SqueezeNet's three pools
/// 1.15-1.21x inside the model at one thread, 1.12-1.25x at two. Averages and strides
/// of three or more took the banded path before, whose band copy splits strided rows
/// into phases one float at a time, and averages divided one float at a time after it
/// (`pool::tests::window_speed`, one core, µs before / after): average 3x3 stride 3 on
/// 160x40x40 240 / 71-75, stride 2 on 96x64x64 316 / 79-81, stride 3 padding 1 on
/// 160x32x32 185 / 51-52; max 3x3 stride 3 168 / 66-67 and 131 / 42-43.
///
/// # Safety
///
/// As [`pool`].
#[inline(always)]
unsafe fn sep_rows<S: Simd, const MAX: bool>(
    s: S,
    d: Dims2d,
    input: &[f32],
    output: *mut f32,
    rows: (usize, usize),
    op: PoolOp,
) {
    let l = S::LANES;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let pad_value = if MAX { f32::NEG_INFINITY } else { 0.0 };
    let pad = s.splat(pad_value);
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let buf = scratch.as_mut_ptr().cast::<f32>();
    let pitch = row_floats(&d, l);
    let divs = divisor_floats(&d, op);
    // The buffer: a band of rows, then the stride-1 windows of one row (other strides),
    // then an average's column divisors (`separable_fits`: all fit).
    let band = ((SCRATCH - divs - pitch) / pitch)
        .min(rows.1.saturating_sub(rows.0))
        .max(1);
    // SAFETY: `band * pitch + pitch + divs <= SCRATCH` by the choice of `band` (at least
    // one row: `2 * pitch + divs <= SCRATCH`).
    let (hrow, cols) = unsafe {
        let hrow = buf.add(band * pitch);
        (hrow, column_divisors(&d, op, hrow.add(pitch)))
    };
    // Each buffer row's padding on both sides, written once: the rows are written in
    // columns `l..l + W` only.
    for r in 0..band {
        for i in (0..l).chain(l + d.w..pitch) {
            // SAFETY: `r * pitch + i < band * pitch <= SCRATCH` (`separable_fits`).
            unsafe { buf.add(r * pitch + i).write(pad_value) };
        }
    }
    for (c, plane) in input[..d.c * hw].chunks_exact(hw).enumerate() {
        // SAFETY: plane `c < d.c` of the output, inside its `d.c * ohw` floats.
        let out = unsafe { output.add(c * ohw) };
        for y0 in (rows.0..rows.1).step_by(band) {
            let y1 = (y0 + band).min(rows.1);
            for oy in y0..y1 {
                // SAFETY: column 0 of buffer row `oy - y0 < band`.
                let row = unsafe { buf.add((oy - y0) * pitch + l) };
                // The window's rows inside the map (consecutive taps: rows `first`,
                // `first + DH`, ..; `nr` of them), combined column by column in registers
                // (a masked store read back straight away does not forward). (An array
                // of row pointers, `MAX_TAPS` long, cost a kilobyte of zeroing a row.)
                let (mut first, mut nr) = (0, 0);
                for ky in 0..d.kh {
                    let iy = (oy * d.sh + ky * d.dh).wrapping_sub(d.ph);
                    if iy < d.h {
                        if nr == 0 {
                            first = iy;
                        }
                        nr += 1;
                    }
                }
                let (src0, step) = (plane[first * d.w..].as_ptr(), d.dh * d.w);
                // The rows combined over columns `x..x + n` into the buffer row, for `nr`
                // rows (a macro, instantiated with the common counts so that the loop
                // over the rows unrolls).
                macro_rules! combine {
                    ($nr:expr) => {{
                        let nr: usize = $nr;
                        let mut x = 0;
                        while x < d.w {
                            let n = l.min(d.w - x);
                            // The first row as it is (`max_nan(-inf, v)` is `v`, NaN or
                            // not; `0 + v` is `v`).
                            // SAFETY: columns `x..x + n` of input rows `first + i DH < H`
                            // (`i < nr`) of the plane.
                            let mut acc = if nr == 0 {
                                pad
                            } else {
                                unsafe { load_upto(s, src0.add(x), n) }
                            };
                            for i in 1..nr {
                                // SAFETY: as above.
                                let v = unsafe { load_upto(s, src0.add(i * step + x), n) };
                                acc = comb::<S, MAX>(s, acc, v);
                            }
                            // SAFETY: columns `x..x + n` of the buffer row (`l + W <=
                            // pitch`). A window without a row inside the map (not a
                            // PyTorch window) leaves the padding value.
                            unsafe {
                                if n == l {
                                    s.store(row.add(x), acc);
                                } else {
                                    s.store_n(row.add(x), acc, n);
                                }
                            }
                            x += n;
                        }
                    }};
                }
                match nr {
                    3 => combine!(3),
                    2 => combine!(2),
                    _ => combine!(nr),
                }
            }
            for oy in y0..y1 {
                // Output `x` reads padded columns `SW * x + kx` (`kx < KW`) of its
                // buffer row, at `row - PW + SW * x + kx`.
                // SAFETY: `PW <= l`: inside buffer row `oy - y0`.
                let base = unsafe { buf.add((oy - y0) * pitch + l - d.pw) };
                let rdiv = row_divisor(s, &d, op, oy);
                // Each output vector from its window's `kw` columns (a macro,
                // instantiated with the common widths so that the loops unroll).
                macro_rules! columns {
                    ($sw:expr, $kw:expr) => {{
                        let (sw, kw): (usize, usize) = ($sw, $kw);
                        let mut x0 = 0;
                        while x0 < d.ow {
                            let n = l.min(d.ow - x0);
                            // SAFETY: every load lies within the buffer row's `pitch`
                            // floats (`separable_fits`, `row_floats`).
                            let acc = unsafe {
                                let p = base.add(sw * x0);
                                let mut acc;
                                if sw == 1 {
                                    acc = s.load(p);
                                    for kx in 1..kw {
                                        acc = comb::<S, MAX>(s, acc, s.load(p.add(kx)));
                                    }
                                } else {
                                    // Column `2x + kx` of output `x`'s window: lane `x` of
                                    // the even (`kx` even) or odd lanes of the two vectors
                                    // at `kx - kx % 2`, one permute each (`KW >= 2`).
                                    let (e, o) = s.deinterleave(s.load(p), s.load(p.add(l)));
                                    acc = comb::<S, MAX>(s, e, o);
                                    let mut kx = 2;
                                    while kx < kw {
                                        let (e, o) = s
                                            .deinterleave(s.load(p.add(kx)), s.load(p.add(kx + l)));
                                        acc = comb::<S, MAX>(s, acc, e);
                                        if kx + 1 < kw {
                                            acc = comb::<S, MAX>(s, acc, o);
                                        }
                                        kx += 2;
                                    }
                                }
                                acc
                            };
                            // SAFETY: divisors and outputs `x0..x0 + n <= OW`; output row
                            // `oy < rows.1 <= OH`, this call's alone (the caller's contract).
                            unsafe { put(s, acc, &d, (op, rdiv, cols), out, (oy, x0, n)) };
                            x0 += n;
                        }
                    }};
                }
                match (d.sw, d.kw) {
                    (2, 3) => columns!(2, 3),
                    (2, 2) => columns!(2, 2),
                    (1, 3) => columns!(1, 3),
                    (1, kw) => columns!(1, kw),
                    (2, kw) if kw >= 2 => columns!(2, kw),
                    (sw, kw) => {
                        // Any other step: the windows of every padded column `x <= SW *
                        // (OW - 1)` (shifted loads) into `hrow`, then every `SW`-th of
                        // them, gathered into a vector through a small array.
                        let last = d.sw * (d.ow - 1);
                        let mut x = 0;
                        while x <= last {
                            // SAFETY: columns `x..x + l + kw - 1` of the buffer row
                            // (`separable_fits`), and `x..x + l` of `hrow` (`pitch` floats:
                            // `last + l <= pitch`).
                            unsafe {
                                let p = base.add(x);
                                let mut acc = s.load(p);
                                for kx in 1..kw {
                                    acc = comb::<S, MAX>(s, acc, s.load(p.add(kx)));
                                }
                                s.store(hrow.add(x), acc);
                            }
                            x += l;
                        }
                        let mut lanes = [0.0f32; 16];
                        let mut x0 = 0;
                        while x0 < d.ow {
                            let n = l.min(d.ow - x0);
                            for (i, v) in lanes.iter_mut().enumerate().take(n) {
                                // SAFETY: `sw * (x0 + i) <= last`, written above.
                                *v = unsafe { hrow.add(sw * (x0 + i)).read() };
                            }
                            // SAFETY: `n <= l <= 16` floats of `lanes`.
                            let acc = unsafe { s.load_n(lanes.as_ptr(), n) };
                            // SAFETY: divisors and outputs `x0..x0 + n <= OW`; output row
                            // `oy < rows.1 <= OH`, this call's alone (the caller's contract).
                            unsafe { put(s, acc, &d, (op, rdiv, cols), out, (oy, x0, n)) };
                            x0 += n;
                        }
                    }
                }
            }
        }
    }
}
