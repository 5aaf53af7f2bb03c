//! Pooling windows of any size, stride, padding and dilation over the engine's padded,
//! phase-split bands ([`copy_band`], padded with -inf for max, 0 for sums): every tap of
//! the window is then a contiguous run of one phase row, so each output row is whole
//! vectors of NaN-propagating maxima or of sums, with no per-element bounds or branches.
//! Max pools whose windows step one or two columns at a time (ResNet's, DenseNet's and
//! SqueezeNet's 3x3 stride-2 ones) run separably instead ([`max_rows`]): the window's
//! rows combined into one padded row, then each output's columns from that row.

#[allow(unused_imports)]
use super::*;

/// Max pooling (`max`), or the window sums of an average pooling (else; the caller
/// divides), of `d` per channel (`d.o` and `d.g` ignored): `output[c][y][x]` combines
/// `input[c][y*SH + ky*DH - PH][x*SW + kx*DW - PW]` over the taps in order (`ky` outer,
/// `kx` inner), taps outside the input reading -inf (max) or 0 (sums). NaN propagates
/// through the maxima. `false` (nothing written) when the band of one output row does
/// not fit the engine's band buffer. Only output rows `rows.0..rows.1` of every plane
/// are computed and written (a part of a split over threads; `(0, d.oh)`: all).
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
    max: bool,
) -> bool {
    let l = S::LANES;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    if d.oh == 0 || d.ow == 0 || d.kh == 0 || d.kw == 0 {
        return false;
    }
    if d.kh * d.kw > MAX_TAPS {
        return false;
    }
    if max && separable_fits(&d, l) {
        // SAFETY: the caller's contract, passed on.
        unsafe { max_rows(s, d, input, output, rows) };
        return true;
    }
    let wp = d.cols_in();
    let wq = wp.div_ceil(d.sw);
    let rowpitch = d.sw * wq;
    let Some(band_rows) = band_rows_in(&d, rowpitch, SCRATCH) else {
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
    for (c, plane) in input.chunks_exact(hw).enumerate() {
        // SAFETY: plane `c < d.c` of the output, inside its `d.c * ohw` floats.
        let out = unsafe { output.add(c * ohw) };
        for y0 in (rows.0..rows.1).step_by(band_rows) {
            let y1 = (y0 + band_rows).min(rows.1);
            let prow0 = y0 * d.sh;
            // SAFETY: `rows_in(y1 - y0) * rowpitch <= SCRATCH` by the choice of
            // `band_rows`, so the copy stays in `scratch`.
            unsafe { copy_band(s, &d, plane, 1, prow0, d.rows_in(y1 - y0), wq, scratch, pad) };
            for oy in y0..y1 {
                // SAFETY: output row `oy < rows.1 <= OH` of this plane, this call's
                // alone (the caller's contract).
                let row = unsafe { core::slice::from_raw_parts_mut(out.add(oy * d.ow), d.ow) };
                let base = (oy * d.sh - prow0) * rowpitch;
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

/// Whether the max pool `d` runs separably ([`max_rows`]) on a level of `lanes` lanes:
/// windows stepping one column (any width) or two (at least two wide), undilated
/// across, padded by at most a vector, on rows whose padded copy fits the band buffer.
#[inline(always)]
pub(crate) fn separable_fits(d: &Dims2d, lanes: usize) -> bool {
    // The end of the last output vector's last load, from the buffer's start.
    let reach = |extent: usize| lanes - d.pw + d.sw * (d.ow - 1) + extent;
    d.dw == 1
        && d.ow > 0
        && (d.sw == 1 || (d.sw == 2 && d.kw >= 2))
        && d.pw <= lanes
        && row_floats(d, lanes) <= SCRATCH
        && reach(if d.sw == 1 {
            d.kw - 1 + lanes
        } else {
            (d.kw - 1) / 2 * 2 + 2 * lanes
        }) <= row_floats(d, lanes)
}

/// Floats of [`max_rows`]' padded row: `lanes` of -inf before the `W` columns, and
/// after them room for every vector an output row's last vector reads (to padded
/// column `SW * x0 + (KW - 1) / 2 * 2 + 2 * lanes - 1` at most, `x0 <= OW - 1`, `SW *
/// (OW - 1) <= W + 2 * PW - 1`).
#[inline(always)]
fn row_floats(d: &Dims2d, lanes: usize) -> usize {
    d.w + d.pw + d.kw + 4 * lanes
}

/// Max pooling of `d` (see [`pool`]; `separable_fits(d, S::LANES)`) on output rows
/// `rows.0..rows.1` of every plane, separably, a band of output rows at a time: first,
/// for each row of the band, the NaN-propagating maximum of the window's input rows
/// inside the map, column by column, into a row of the band buffer with -inf on both
/// sides (the padding, and ceil-mode windows reaching past it); then each output vector
/// the maximum of its window's columns of its buffer row: shifted loads (stride 1), or
/// the even and odd lanes of pairs of loads at offsets `0, 2, ..` (stride 2). A
/// maximum is the same whatever the order: the values of [`pool`]'s banded path, NaN
/// wherever a window holds one, from fewer loads and no band copy. A column vector's
/// rows are combined in registers and the band's rows all stored before any is read
/// back: a row read straight after being stored (masked, at its end) stalled on store
/// forwarding, which made SqueezeNet's 256x27x27 pool slower than the banded path.
/// `pool::tests::speed` (Intel Xeon, one core, µs, banded / separable): 64x112x112 3x3
/// stride 2 280 / 203, SqueezeNet's ceil-mode 64x111x111 250 / 198, 128x55x55 123 /
/// 102, 256x27x27 79 / 68. The pool is bound by its instructions, not by memory (an
/// 8-channel 111x111 map in L2 takes an eighth of the 64-channel one's time): each
/// maximum starts from its first operand instead of -inf (`max_nan` is three
/// operations), the stride-2 columns take one permute each (the even or odd lanes of a
/// pair of loads) where pairwise maxima took two and a maximum per pair, and the common
/// window heights and widths (2, 3) get loops of their own, unrolled: the same shapes
/// 1.2x faster (258-264 -> 210-217, 120 -> 98, 65 -> 52-55; the L2 map 27 -> 20.5-22;
/// AVX2 1.2-1.3x), SqueezeNet's three pools 1.15-1.21x inside the model at one thread,
/// 1.12-1.25x at two.
///
/// # Safety
///
/// As [`pool`].
#[inline(always)]
unsafe fn max_rows<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    output: *mut f32,
    rows: (usize, usize),
) {
    let l = S::LANES;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let ninf = s.splat(f32::NEG_INFINITY);
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let buf = scratch.as_mut_ptr().cast::<f32>();
    let pitch = row_floats(&d, l);
    // Rows of a band: as many as the buffer holds, no more than the call's.
    let band = (SCRATCH / pitch).min(rows.1.saturating_sub(rows.0)).max(1);
    // Each buffer row's padding on both sides, written once: the rows are written in
    // columns `l..l + W` only.
    for r in 0..band {
        for i in (0..l).chain(l + d.w..pitch) {
            // SAFETY: `r * pitch + i < band * pitch <= SCRATCH` (`separable_fits`).
            unsafe { buf.add(r * pitch + i).write(f32::NEG_INFINITY) };
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
                // The window's rows inside the map, combined column by column in
                // registers (a masked store read back straight away does not forward).
                let mut srcs = [core::ptr::null::<f32>(); MAX_TAPS];
                let mut nr = 0;
                for ky in 0..d.kh {
                    let iy = (oy * d.sh + ky * d.dh).wrapping_sub(d.ph);
                    if iy < d.h {
                        srcs[nr] = plane[iy * d.w..].as_ptr();
                        nr += 1;
                    }
                }
                let srcs = &srcs[..nr];
                // The rows' maxima over columns `x..x + n` into the buffer row, for `nr`
                // rows (a macro, instantiated with the common counts so that the loop
                // over the rows unrolls).
                macro_rules! combine {
                    ($nr:expr) => {{
                        let nr: usize = $nr;
                        let mut x = 0;
                        while x < d.w {
                            let n = l.min(d.w - x);
                            // SAFETY: columns `x..x + n` of an input row inside the plane.
                            let load = |src: *const f32| unsafe {
                                if n == l {
                                    s.load(src.add(x))
                                } else {
                                    s.load_n(src.add(x), n)
                                }
                            };
                            // The first row as it is (`max_nan(-inf, v)` is `v`, NaN or
                            // not).
                            let mut acc = if nr == 0 { ninf } else { load(srcs[0]) };
                            for &src in &srcs[1.min(nr)..nr] {
                                acc = s.max_nan(acc, load(src));
                            }
                            // SAFETY: columns `x..x + n` of the buffer row (`l + W <=
                            // pitch`). A window without a row inside the map (not a
                            // PyTorch window) leaves -inf.
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
                // Each output vector from its window's `kw` columns (a macro,
                // instantiated with the common widths so that the loops unroll).
                macro_rules! columns {
                    ($sw:expr, $kw:expr) => {{
                        let (sw, kw): (usize, usize) = ($sw, $kw);
                        let mut x0 = 0;
                        while x0 < d.ow {
                            let n = l.min(d.ow - x0);
                            // SAFETY: every load lies within the buffer row's `pitch`
                            // floats (`separable_fits`, `row_floats`); output row `oy <
                            // rows.1 <= OH`, columns `x0..x0 + n`, this call's alone (the
                            // caller's contract).
                            unsafe {
                                let p = base.add(sw * x0);
                                let mut acc;
                                if sw == 1 {
                                    acc = s.load(p);
                                    for kx in 1..kw {
                                        acc = s.max_nan(acc, s.load(p.add(kx)));
                                    }
                                } else {
                                    // Column `2x + kx` of output `x`'s window: lane `x` of
                                    // the even (`kx` even) or odd lanes of the two vectors
                                    // at `kx - kx % 2`, one permute each (`KW >= 2`).
                                    let (e, o) = s.deinterleave(s.load(p), s.load(p.add(l)));
                                    acc = s.max_nan(e, o);
                                    let mut kx = 2;
                                    while kx < kw {
                                        let (e, o) = s
                                            .deinterleave(s.load(p.add(kx)), s.load(p.add(kx + l)));
                                        acc = s.max_nan(acc, e);
                                        if kx + 1 < kw {
                                            acc = s.max_nan(acc, o);
                                        }
                                        kx += 2;
                                    }
                                }
                                let y = out.add(oy * d.ow + x0);
                                if n == l {
                                    s.store(y, acc);
                                } else {
                                    s.store_n(y, acc, n);
                                }
                            }
                            x0 += n;
                        }
                    }};
                }
                match (d.sw, d.kw) {
                    (2, 3) => columns!(2, 3),
                    (2, 2) => columns!(2, 2),
                    (1, 3) => columns!(1, 3),
                    (sw, kw) => columns!(sw, kw),
                }
            }
        }
    }
}
