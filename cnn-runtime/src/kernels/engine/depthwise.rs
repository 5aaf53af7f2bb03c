//! The depthwise engines: per-channel row tiles ([`DwBand`]) and channel-vectorised
//! bands ([`DwCvBand`], with the 3x3 stride-1 sliding window [`dw3_slide`]).

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

/// One band of one block of `LANES` depthwise channels in channel-vectorised form:
/// where it reads and writes.
#[derive(Clone, Copy)]
pub(super) struct DwCvArgs<'a> {
    pub(super) d: &'a Dims2d,
    /// The block's first input channel plane.
    pub(super) input: *const f32,
    /// Channels in the block (`<= LANES`).
    pub(super) nch: usize,
    /// The block's weights: tap `t` at `w + 16 * t` (`nch` lanes, zero padded to LANES).
    pub(super) w: *const f32,
    /// The block's bias (`LANES` floats, zero padded).
    pub(super) bias: *const f32,
    /// The block's first output channel plane.
    pub(super) out: *mut f32,
    /// Output rows `y0..y1` of this band.
    pub(super) y0: usize,
    pub(super) y1: usize,
    /// Padded columns of the band (`(OW-1)*SW + (KW-1)*DW + 1`).
    pub(super) wp: usize,
    /// Tap offsets in the transposed band (in floats).
    pub(super) taps: &'a [isize],
    /// `rows_in(y1 - y0) * wp * LANES` writable floats.
    pub(super) scratch: *mut f32,
    pub(super) act: Act,
}

/// A band of depthwise output rows for `LANES` channels at once, run as one isolated
/// function ([`Simd::vectorize`]): the padded input band is transposed into
/// `[row][column][channel]` in the scratch buffer, `LANES` output pixels accumulate a
/// channel vector each (tap weights are channel vectors too), and the tile is transposed
/// back on the way to the channel-major output. Suits small maps, where per-channel rows
/// are too short to fill vectors.
pub(super) struct DwCvBand<'a, const G: usize>(pub(super) DwCvArgs<'a>);

impl<'a, const G: usize> DwCvBand<'a, G> {
    /// # Safety
    ///
    /// `input` holds `nch` planes of `H*W`, `out` `nch` planes of `OH*OW`; `w` holds
    /// `16 * taps.len()` floats, `bias` `LANES`; `scratch` is writable for
    /// `rows_in(y1 - y0) * wp * LANES` floats and every tap offset of every output pixel
    /// of the band lands inside it.
    #[inline(always)]
    unsafe fn new(a: DwCvArgs<'a>) -> Self {
        DwCvBand(a)
    }
}

impl<const G: usize> WithSimd for DwCvBand<'_, G> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let d = a.d;
        let l = S::LANES;
        let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
        let prow0 = a.y0 * d.sh;
        let nrows = (a.y1 - a.y0 - 1) * d.sh + (d.kh - 1) * d.dh + 1;
        let mut m = [s.zero(); 16];
        // A piecewise-linear activation before the transpose back; a curved one over
        // each channel's band once stored (`Simd::curved_slice`, out of line).
        let (piece, post) = a.act.split_curved();
        // SAFETY: (whole body) reads of `nch` input planes inside their rows, writes of
        // `nrows * wp * l` scratch floats, reads of the scratch at tap offsets of band
        // pixels (inside it by `new`'s contract), `LANES`-float weight and bias loads,
        // `n`-pixel stores to the `nch` output planes.
        unsafe {
            // Transposed, zero-padded band: pixel (r, col) at scratch + (r * wp + col) * l.
            let left = d.pw.min(a.wp);
            let n_in = d.w.min(a.wp - left);
            for r in 0..nrows {
                let row = a.scratch.add(r * a.wp * l);
                let iy = (prow0 + r).wrapping_sub(d.ph);
                if iy >= d.h {
                    zero_floats(s, row, a.wp * l);
                    continue;
                }
                zero_floats(s, row, left * l);
                let mut x0 = 0;
                while x0 < n_in {
                    let n = l.min(n_in - x0);
                    for (c, v) in m[..l].iter_mut().enumerate() {
                        *v = if c < a.nch {
                            let p = a.input.add(c * hw + iy * d.w + x0);
                            if n == l {
                                s.load(p)
                            } else {
                                s.load_n(p, n)
                            }
                        } else {
                            s.zero()
                        };
                    }
                    s.transpose(&mut m[..l]);
                    for (j, &v) in m[..n].iter().enumerate() {
                        s.store(row.add((left + x0 + j) * l), v);
                    }
                    x0 += n;
                }
                zero_floats(s, row.add((left + n_in) * l), (a.wp - left - n_in) * l);
            }
            // Output pixels `l` at a time (flat, across rows), in groups of `G` pixels
            // accumulated side by side (taps outer, 3x3 weights in registers; each pixel
            // one chain in tap order: the same sums as the convolution engine), then bias,
            // activation, and the transpose back.
            let bias = s.load(a.bias);
            let three = d.kh == 3 && d.kw == 3;
            let mut w9 = [s.zero(); 9];
            if three {
                for (t, wt) in w9.iter_mut().enumerate() {
                    *wt = s.load(a.w.add(PANEL * t));
                }
            }
            let (rs, cs) = (d.dh * a.wp * l, d.dw * l);
            // 5x5 (EfficientNet's), unit column dilation, column stride 1 or 2: groups
            // in one output row slide over the band columns (`dw5_slide`).
            let five = d.kh == 5 && d.kw == 5 && d.dw == 1 && d.sw <= 2;
            let (q0, q1) = (a.y0 * d.ow, a.y1 * d.ow);
            let (mut y, mut x) = (a.y0, 0);
            let mut q = q0;
            while q < q1 {
                let n = l.min(q1 - q);
                let mut j = 0;
                while j < n {
                    let g = G.min(n - j);
                    // Groups sliding over the band columns of one output row, each column
                    // loaded once per kernel row. 3x3 (unit column dilation and stride):
                    // a whole group. 5x5: a whole group, or four, two or one of its
                    // pixels (7- and 14-pixel rows: 4 + 2 + 1, 8 + 4 + 2), never a group
                    // of `G` computed for fewer pixels (AVX-512, one thread: 240x28x28
                    // 124 -> 96 µs, 672x14x14 85 -> 72, 144x56x56 stride 2 142 -> 124;
                    // AVX2 211 -> 162, 154 -> 121, 203 -> 168).
                    let slide = if three && d.dw == 1 && d.sw == 1 && g == G && x + G <= d.ow {
                        G
                    } else if !five {
                        0
                    } else if g == G && x + G <= d.ow {
                        G
                    } else if G > 4 && g >= 4 && x + 4 <= d.ow {
                        4
                    } else if g >= 2 && x + 2 <= d.ow {
                        2
                    } else {
                        1
                    };
                    if slide > 0 {
                        let p = a.scratch.add(((y * d.sh - prow0) * a.wp + x * d.sw) * l);
                        let m = &mut m[j..j + slide];
                        let one = d.sw == 1;
                        if three {
                            m.copy_from_slice(&dw3_slide::<S, G, 1>(s, p, &w9, rs));
                        } else if slide == G && one {
                            m.copy_from_slice(&dw5_slide::<S, G, 1>(s, p, a.w, rs));
                        } else if slide == G {
                            m.copy_from_slice(&dw5_slide::<S, G, 2>(s, p, a.w, rs));
                        } else if slide == 4 && one {
                            m.copy_from_slice(&dw5_slide::<S, 4, 1>(s, p, a.w, rs));
                        } else if slide == 4 {
                            m.copy_from_slice(&dw5_slide::<S, 4, 2>(s, p, a.w, rs));
                        } else if slide == 2 && one {
                            m.copy_from_slice(&dw5_slide::<S, 2, 1>(s, p, a.w, rs));
                        } else if slide == 2 {
                            m.copy_from_slice(&dw5_slide::<S, 2, 2>(s, p, a.w, rs));
                        } else if one {
                            m.copy_from_slice(&dw5_slide::<S, 1, 1>(s, p, a.w, rs));
                        } else {
                            m.copy_from_slice(&dw5_slide::<S, 1, 2>(s, p, a.w, rs));
                        }
                        x += slide;
                        if x == d.ow {
                            x = 0;
                            y += 1;
                        }
                        j += slide;
                        continue;
                    }
                    // A short group repeats its last pixel (computed, never kept).
                    let mut ps = [a.scratch.cast_const(); G];
                    for k in 0..G {
                        if k >= g {
                            ps[k] = ps[g - 1];
                            continue;
                        }
                        ps[k] = a.scratch.add(((y * d.sh - prow0) * a.wp + x * d.sw) * l);
                        x += 1;
                        if x == d.ow {
                            x = 0;
                            y += 1;
                        }
                    }
                    let mut acc = [s.zero(); G];
                    if three {
                        for (v, &p) in acc.iter_mut().zip(&ps) {
                            *v = s.mul(w9[0], s.load(p));
                        }
                        for (t, &wt) in w9.iter().enumerate().skip(1) {
                            let off = (t / 3) * rs + (t % 3) * cs;
                            for (v, &p) in acc.iter_mut().zip(&ps) {
                                *v = s.mul_add(wt, s.load(p.add(off)), *v);
                            }
                        }
                    } else {
                        for (t, &off) in a.taps.iter().enumerate() {
                            let wt = s.load(a.w.add(PANEL * t));
                            for (v, &p) in acc.iter_mut().zip(&ps) {
                                *v = s.mul_add(wt, s.load(p.offset(off)), *v);
                            }
                        }
                    }
                    m[j..j + g].copy_from_slice(&acc[..g]);
                    j += g;
                }
                for v in m[..n].iter_mut() {
                    *v = s.act_piecewise(s.add(*v, bias), piece);
                }
                for v in m[n..l].iter_mut() {
                    *v = s.zero();
                }
                s.transpose(&mut m[..l]);
                for (c, &v) in m[..a.nch].iter().enumerate() {
                    let p = a.out.add(c * ohw + q);
                    if n == l {
                        s.store(p, v);
                    } else {
                        s.store_n(p, v, n);
                    }
                }
                q += n;
            }
            if post != Act::IDENTITY {
                for c in 0..a.nch {
                    let band = a.out.add(c * ohw + q0);
                    s.curved_slice(core::slice::from_raw_parts_mut(band, q1 - q0), post);
                }
            }
        }
    }
}

/// `G` consecutive output pixels of one row of a 3x3 depthwise convolution with unit
/// column dilation and column stride `SW`, in the transposed band (pixel vectors `LANES`
/// floats apart): for each kernel row, the `(G-1)*SW + 3` band columns the group covers are
/// loaded once and each multiplied into the pixels it is a tap of. Every pixel's sum is
/// one chain in tap order (the product for tap 0, then fused multiply-adds), as in the
/// per-pixel path.
///
/// # Safety
///
/// `p + ky * rs + c * LANES .. + LANES` readable for `ky < 3`, `c < (G-1)*SW + 3`.
#[inline(always)]
pub(super) unsafe fn dw3_slide<S: Simd, const G: usize, const SW: usize>(
    s: S,
    p: *const f32,
    w9: &[S::V; 9],
    rs: usize,
) -> [S::V; G] {
    let l = S::LANES;
    let mut acc = [s.zero(); G];
    for ky in 0..3 {
        for c in 0..(G - 1) * SW + 3 {
            // SAFETY: kernel row `ky`, column `c` of the group (the caller's contract).
            let v = unsafe { s.load(p.add(ky * rs + c * l)) };
            for (k, x) in acc.iter_mut().enumerate() {
                let kx = c.wrapping_sub(k * SW);
                if kx < 3 {
                    *x = if ky == 0 && kx == 0 {
                        s.mul(w9[0], v)
                    } else {
                        s.mul_add(w9[ky * 3 + kx], v, *x)
                    };
                }
            }
        }
    }
    acc
}

/// [`dw3_slide`] for a 5x5 kernel, column stride `SW` (`(G-1)*SW + 5 <= 19`): for each
/// kernel row the `(G-1)*SW + 5` band columns the group covers and the five weight vectors
/// (from `w`, one 16-float panel row per tap) are loaded once (`(G-1)*SW + 10` loads for
/// `5*G` FMAs, where each pixel on its own loads an input and a weight per tap). Every pixel's sum is one
/// chain in tap order, as in the per-pixel path.
///
/// # Safety
///
/// `p + ky * rs + c * LANES .. + LANES` readable for `ky < 5`, `c < (G-1)*SW + 5`;
/// `w + 16 * t .. + LANES` for `t < 25`.
#[inline(always)]
pub(super) unsafe fn dw5_slide<S: Simd, const G: usize, const SW: usize>(
    s: S,
    p: *const f32,
    w: *const f32,
    rs: usize,
) -> [S::V; G] {
    let l = S::LANES;
    let mut acc = [s.zero(); G];
    // The band columns of one kernel row: `(G-1)*SW + 5`, at most 19 (G = 8, SW = 2).
    let mut cols = [s.zero(); 19];
    let nc = (G - 1) * SW + 5;
    for ky in 0..5 {
        for (c, v) in cols.iter_mut().enumerate().take(nc) {
            // SAFETY: kernel row `ky`, column `c` of the group (the caller's contract).
            *v = unsafe { s.load(p.add(ky * rs + c * l)) };
        }
        for kx in 0..5 {
            // SAFETY: tap `ky * 5 + kx < 25` (the caller's contract).
            let wt = unsafe { s.load(w.add(PANEL * (ky * 5 + kx))) };
            for (k, x) in acc.iter_mut().enumerate() {
                let v = cols[k * SW + kx];
                *x = if ky == 0 && kx == 0 {
                    s.mul(wt, v)
                } else {
                    s.mul_add(wt, v, *x)
                };
            }
        }
    }
    acc
}

/// Depthwise convolution in channel-vectorised form (see [`DwCvBand`]) with weights
/// `[ceil(C/16)][KH*KW][16]` and bias `[ceil(C/16)][16]`, output rows `r0..r1` of every
/// channel (each pixel one chain in tap order, whatever the bands): `false` (nothing
/// written) when a one-row band of `LANES` channels does not fit `cap`.
///
/// # Safety
///
/// As [`depthwise`]: `output` valid for writes of `d.c * OH * OW` floats, rows `r0..r1`
/// of its planes accessed by no one else during the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise_channels<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    weight: &[Row16],
    bias: &[Row16],
    output: *mut f32,
    (r0, r1): (usize, usize),
    act: Act,
    cap: usize,
) -> bool {
    let l = S::LANES;
    let kk = d.kh * d.kw;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    assert!(input.len() >= d.c * hw && r0 <= r1 && r1 <= d.oh);
    assert!(weight.len() == d.c.div_ceil(PANEL) * kk && bias.len() == d.c.div_ceil(PANEL));
    if kk > MAX_TAPS {
        return false;
    }
    let wp = d.cols_in();
    let Some(band_rows) = band_rows_in(&d, wp * l, cap) else {
        return false;
    };
    let mut taps_buf = [0isize; MAX_TAPS];
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            taps_buf[ky * d.kw + kx] = ((ky * d.dh * wp + kx * d.dw) * l) as isize;
        }
    }
    let taps = &taps_buf[..kk];
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let scratch = scratch.as_mut_ptr().cast::<f32>();
    let weight = weight.as_ptr().cast::<f32>();
    let bias = bias.as_ptr().cast::<f32>();
    for c0 in (0..d.c).step_by(l) {
        let nch = l.min(d.c - c0);
        for y0 in (r0..r1).step_by(band_rows) {
            let y1 = (y0 + band_rows).min(r1);
            // SAFETY: channels c0..c0+nch of the input and output; the block's weights
            // (lanes c0 % 16.. of its panel's tap rows) and bias; the band needs
            // `rows_in(y1 - y0) * wp * l <= cap <= SCRATCH` floats, and every tap of every
            // output pixel of the band lands in it (rows below rows_in, columns below wp).
            unsafe {
                let a = DwCvArgs {
                    d: &d,
                    input: input.as_ptr().add(c0 * hw),
                    nch,
                    w: weight.add((c0 / PANEL) * kk * PANEL + c0 % PANEL),
                    bias: bias.add(c0),
                    out: output.add(c0 * ohw),
                    y0,
                    y1,
                    wp,
                    taps,
                    scratch,
                    act,
                };
                // Groups of 8 pixels (4 on the 4-lane level) keep 8 chains in flight.
                if l >= 8 {
                    s.vectorize(DwCvBand::<8>::new(a));
                } else {
                    s.vectorize(DwCvBand::<4>::new(a));
                }
            }
        }
    }
    true
}
