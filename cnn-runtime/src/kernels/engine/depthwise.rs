//! The depthwise engine of per-channel row tiles ([`DwBand`]); the channel-vectorised
//! bands are `dw_channels.rs`.

#[allow(unused_imports)]
use super::*;

/// One band of one depthwise channel: where it reads and writes.
#[derive(Clone, Copy)]
pub(super) struct DwArgs<'a> {
    /// Tap offsets in the source.
    pub(super) taps: &'a [isize],
    /// The channel's `taps.len()` weights.
    pub(super) w: *const f32,
    /// The band's first output row's first pixel at tap 0.
    pub(super) src: *const f32,
    /// Distance in the source between consecutive output rows.
    pub(super) src_row: usize,
    /// The band's first output.
    pub(super) out: *mut f32,
    /// Output rows and columns of the band.
    pub(super) rows: usize,
    pub(super) ow: usize,
    pub(super) bias: f32,
    pub(super) act: Act,
}

/// A band of output rows of one depthwise channel, run as one isolated function
/// ([`Simd::vectorize`]): each row in tiles of four vectors, then what is left.
pub(super) struct DwBand<'a>(pub(super) DwArgs<'a>);

impl<'a> DwBand<'a> {
    /// # Safety
    ///
    /// For every output row `y < rows`, column `x < ow` and tap offset `off`,
    /// `src + y * src_row + x + off` must be readable; `w` readable for `taps.len()`
    /// floats; `out .. out + rows * ow` writable.
    #[inline(always)]
    unsafe fn new(a: DwArgs<'a>) -> Self {
        DwBand(a)
    }
}

/// `R` rows by `NV` vectors of consecutive outputs of one depthwise channel (the last
/// vector of each row `n_last` lanes when `PARTIAL`): `R * NV` independent chains, each
/// in tap order.
///
/// # Safety
///
/// As [`DwBand::new`] for these pixels (rows `0..R` from `src`/`out`).
#[inline(always)]
pub(super) unsafe fn dw_tile<S: Simd, const R: usize, const NV: usize, const PARTIAL: bool>(
    s: S,
    a: &DwArgs<'_>,
    src: *const f32,
    out: *mut f32,
    n_last: usize,
) {
    let l = S::LANES;
    let mut acc = [[s.zero(); NV]; R];
    // SAFETY: (whole body) within the ranges the caller guarantees.
    unsafe {
        for (t, &off) in a.taps.iter().enumerate() {
            let wt = s.bcast(a.w.add(t));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let sp = src.add(r * a.src_row).offset(off);
                for (v, x) in acc_r.iter_mut().enumerate() {
                    let xin = if PARTIAL && v == NV - 1 {
                        s.load_n(sp.add(v * l), n_last)
                    } else {
                        s.load(sp.add(v * l))
                    };
                    *x = s.mul_add(wt, xin, *x);
                }
            }
        }
        let b = s.splat(a.bias);
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &x) in acc_r.iter().enumerate() {
                let y = s.act(s.add(x, b), a.act);
                let p = out.add(r * a.ow + v * l);
                if PARTIAL && v == NV - 1 {
                    s.store_n(p, y, n_last);
                } else {
                    s.store(p, y);
                }
            }
        }
    }
}

/// Rows `y..` of a band in tiles of `R` rows (while they last, then single rows) by up
/// to `NV` vectors.
///
/// # Safety
///
/// As [`DwBand::new`].
#[inline(always)]
pub(super) unsafe fn dw_rows<S: Simd, const R: usize, const NV: usize>(s: S, a: &DwArgs<'_>) {
    let l = S::LANES;
    let mut y = 0;
    while y < a.rows {
        let r = if y + R <= a.rows { R } else { 1 };
        // SAFETY: rows y..y + r of the band, columns below `ow` (`new`'s contract).
        unsafe {
            let src = a.src.add(y * a.src_row);
            let out = a.out.add(y * a.ow);
            let mut x0 = 0;
            while x0 + NV * l <= a.ow {
                if r == R {
                    dw_tile::<S, R, NV, false>(s, a, src.add(x0), out.add(x0), l);
                } else {
                    dw_tile::<S, 1, NV, false>(s, a, src.add(x0), out.add(x0), l);
                }
                x0 += NV * l;
            }
            let left = a.ow - x0;
            if left > 0 {
                let (src, out) = (src.add(x0), out.add(x0));
                let nv = left.div_ceil(l);
                let n_last = left - (nv - 1) * l;
                macro_rules! tail {
                    ($nv:literal) => {
                        if r == R {
                            dw_tile::<S, R, $nv, true>(s, a, src, out, n_last)
                        } else {
                            dw_tile::<S, 1, $nv, true>(s, a, src, out, n_last)
                        }
                    };
                }
                match nv {
                    1 => tail!(1),
                    2 => tail!(2),
                    3 => tail!(3),
                    _ => tail!(4),
                }
            }
        }
        y += r;
    }
}

impl WithSimd for DwBand<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        // A piecewise-linear activation in the tiles; a curved one over the band once
        // stored (`Simd::curved_slice`, out of line).
        let (piece, post) = self.0.act.split_curved();
        let a = DwArgs {
            act: piece,
            ..self.0
        };
        // About twelve independent chains per tile: rows of one to four vectors.
        // SAFETY: `new`'s contract; the band's `rows * ow` outputs, just stored.
        unsafe {
            match a.ow.div_ceil(l) {
                1 => dw_rows::<S, 8, 1>(s, &a),
                2 => dw_rows::<S, 6, 2>(s, &a),
                3 => dw_rows::<S, 4, 3>(s, &a),
                _ => dw_rows::<S, 3, 4>(s, &a),
            }
            if post != Act::IDENTITY {
                s.curved_slice(core::slice::from_raw_parts_mut(a.out, a.rows * a.ow), post);
            }
        }
    }
}

/// Depthwise convolution (`d.g == d.c == d.o`) with weights `[C][KH*KW]` and bias `[C]`:
/// per channel, pixel-vectorised rows of up to four vectors, reading the input directly
/// or a padded, phase-split band as [`conv`] does; output rows `r0..r1` of every channel
/// (each value computed as by the whole call: its chain does not depend on the bands).
/// `false` (nothing written) when it needs the fallback.
///
/// # Safety
///
/// `output` is valid for writes of `d.c * OH * OW` floats, and rows `r0..r1` of its
/// planes are accessed by no one else during the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: *mut f32,
    (r0, r1): (usize, usize),
    act: Act,
    cap: usize,
) -> bool {
    let kk = d.kh * d.kw;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    assert!(input.len() >= d.c * hw && r0 <= r1 && r1 <= d.oh);
    assert!(weight.len() == d.c * kk && bias.len() == d.c);
    if kk > MAX_TAPS {
        return false;
    }
    let direct = d.ph == 0
        && d.pw == 0
        && d.sw == 1
        && (d.oh - 1) * d.sh + (d.kh - 1) * d.dh < d.h
        && d.cols_in() <= d.w;
    let wp = d.cols_in();
    let wq = wp.div_ceil(d.sw);
    let rowpitch = if direct { d.w } else { d.sw * wq };
    let band_rows = if direct {
        d.oh
    } else {
        let Some(r) = band_rows_in(&d, rowpitch, cap) else {
            return false;
        };
        r
    };
    let mut taps_buf = [0isize; MAX_TAPS];
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            let (col, phase) = ((kx * d.dw) / d.sw, (kx * d.dw) % d.sw);
            taps_buf[ky * d.kw + kx] = (ky * d.dh * rowpitch + phase * wq + col) as isize;
        }
    }
    let taps = &taps_buf[..kk];
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let scratch = scratch.as_mut_ptr().cast::<f32>();
    for c in 0..d.c {
        let plane = &input[c * hw..(c + 1) * hw];
        let w = weight[c * kk..].as_ptr();
        // SAFETY: channel c's plane of the output (the caller's contract).
        let out = unsafe { output.add(c * ohw) };
        for y0 in (r0..r1).step_by(band_rows) {
            let y1 = (y0 + band_rows).min(r1);
            let (base, prow0) = if direct {
                (plane.as_ptr(), 0)
            } else {
                let prow0 = y0 * d.sh;
                // SAFETY: `rows_in(y1 - y0) * rowpitch <= cap <= SCRATCH`.
                unsafe { copy_band(s, &d, plane, 1, prow0, d.rows_in(y1 - y0), wq, scratch, 0.0) };
                (scratch.cast_const(), prow0)
            };
            // SAFETY: rows y0..y1 of the channel with every tap inside the input
            // (`direct`) or the copied band (rows_in rows of wq columns per phase), `kk`
            // weights of channel c, rows y0..y1 of its output plane.
            unsafe {
                let a = DwArgs {
                    taps,
                    w,
                    src: base.add((y0 * d.sh - prow0) * rowpitch),
                    src_row: d.sh * rowpitch,
                    out: out.add(y0 * d.ow),
                    rows: y1 - y0,
                    ow: d.ow,
                    bias: bias[c],
                    act,
                };
                s.vectorize(DwBand::new(a));
            }
        }
    }
    true
}
