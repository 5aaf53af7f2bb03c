//! The channel-vectorised depthwise engine ([`DwCvBand`], [`depthwise_channels`]) for
//! small maps: bands of `LANES` channels transposed into `[row][column][channel]`,
//! pixels accumulated as channel vectors in sliding groups ([`dw3_slide`],
//! [`dw5_slide`]; rows of up to 16 pixels in groups of their own: [`slide_rows`]), and
//! transposed back.

#[allow(unused_imports)]
use super::*;

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
        let ohw = d.oh * d.ow;
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
            // Rows narrower than a vector (7x7, 14x14 maps) are transposed flat: `l`
            // consecutive pixels of the band's input rows at a time, across rows (a 7x7
            // map's 7 rows in 4 transposes, not 7), each pixel stored at its row and
            // column of the band.
            let flat = d.w < l;
            let (mut lo, mut hi) = (usize::MAX, 0);
            for r in 0..nrows {
                let row = a.scratch.add(r * a.wp * l);
                let iy = (prow0 + r).wrapping_sub(d.ph);
                if iy >= d.h {
                    zero_floats(s, row, a.wp * l);
                    continue;
                }
                (lo, hi) = (lo.min(iy), iy + 1);
                zero_floats(s, row, left * l);
                zero_floats(s, row.add((left + n_in) * l), (a.wp - left - n_in) * l);
                let mut x0 = 0;
                while x0 < n_in && !flat {
                    let n = l.min(n_in - x0);
                    load_transposed(s, &a, &mut m, iy * d.w + x0, n);
                    for (j, &v) in m[..n].iter().enumerate() {
                        s.store(row.add((left + x0 + j) * l), v);
                    }
                    x0 += n;
                }
            }
            if flat && lo < hi {
                // Input pixels `lo * W .. hi * W`, the band's rows `iy + PH - prow0`.
                let (f0, f1) = (lo * d.w, hi * d.w);
                let mut f = f0;
                while f < f1 {
                    let n = l.min(f1 - f);
                    load_transposed(s, &a, &mut m, f, n);
                    let (mut iy, mut ix) = (f / d.w, f % d.w);
                    for &v in &m[..n] {
                        if ix < n_in {
                            let r = iy + d.ph - prow0;
                            s.store(a.scratch.add((r * a.wp + left + ix) * l), v);
                        }
                        ix += 1;
                        if ix == d.w {
                            (iy, ix) = (iy + 1, 0);
                        }
                    }
                    f += n;
                }
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
            // Rows of up to 16 pixels: each row in groups of its own (`slide_rows`), not
            // split at the 16-pixel blocks of the transpose back (1152x7x7 0.81x of the
            // time, 672x14x14 stride 2 0.85x, stride 1 0.97x; AVX2 0.77x, 0.85x, 0.97x).
            // Wider rows keep the blocks' groups of `G` (4 groups of 7 on 28-pixel rows
            // were 1.02-1.08x).
            let by_rows = (five || (three && d.dw == 1 && d.sw <= 2)) && d.ow <= 16;
            if by_rows {
                slide_rows(s, &a, prow0, (bias, piece), three.then_some(&w9), &mut m);
            } else {
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
                    dw_cv_store(s, &a, &mut m, n, q);
                    q += n;
                }
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

/// Loads floats `f..f + n` of each of the band's `nch` input planes (zeros for the lanes
/// past `nch`) into `m` and transposes them: `m[j]` is pixel `f + j`'s channel vector.
///
/// # Safety
///
/// Floats `f..f + n` of the `nch` input planes are readable (`n <= LANES`).
#[inline(always)]
unsafe fn load_transposed<S: Simd>(s: S, a: &DwCvArgs<'_>, m: &mut [S::V; 16], f: usize, n: usize) {
    let l = S::LANES;
    let hw = a.d.h * a.d.w;
    for (c, v) in m[..l].iter_mut().enumerate() {
        *v = if c < a.nch {
            // SAFETY: floats f..f + n of plane c (the caller's contract).
            unsafe {
                let p = a.input.add(c * hw + f);
                if n == l {
                    s.load(p)
                } else {
                    s.load_n(p, n)
                }
            }
        } else {
            s.zero()
        };
    }
    s.transpose(&mut m[..l]);
}

/// Stores the block of `n` pixel vectors in `m` (channel vectors of the band's `LANES`
/// channels, pixels `q..q + n`) transposed back into the `nch` channel-major output
/// planes. A function, not a closure: a closure would not inherit the caller's target
/// features.
///
/// # Safety
///
/// Pixels `q..q + n` of the `nch` output planes are writable (`n <= LANES`).
#[inline(always)]
unsafe fn dw_cv_store<S: Simd>(s: S, a: &DwCvArgs<'_>, m: &mut [S::V; 16], n: usize, q: usize) {
    let l = S::LANES;
    let ohw = a.d.oh * a.d.ow;
    for v in m[n..l].iter_mut() {
        *v = s.zero();
    }
    s.transpose(&mut m[..l]);
    for (c, &v) in m[..a.nch].iter().enumerate() {
        // SAFETY: pixels q..q + n of plane c (the caller's contract).
        unsafe {
            let p = a.out.add(c * ohw + q);
            if n == l {
                s.store(p, v);
            } else {
                s.store_n(p, v, n);
            }
        }
    }
}

/// The 3x3 and 5x5 layers of [`DwCvBand`] on rows of up to 16 pixels (unit column
/// dilation, column stride 1 or 2): each output row of the band in groups of up to
/// eight pixels sliding over the band columns ([`dw3_slide`] with the weights `w9`, else
/// [`dw5_slide`]: a row of 7 pixels one group, 14 two of 7), never split at the
/// 16-pixel blocks of the transpose back: each group's pixels join the block under way,
/// which is stored (transposed back, channel-major) when full and at the band's end.
///
/// # Safety
///
/// As [`DwCvBand::new`], with the band transposed into the scratch buffer.
#[inline(always)]
unsafe fn slide_rows<S: Simd>(
    s: S,
    a: &DwCvArgs<'_>,
    prow0: usize,
    (bias, piece): (S::V, Act),
    w9: Option<&[S::V; 9]>,
    m: &mut [S::V; 16],
) {
    let d = a.d;
    let l = S::LANES;
    let rs = d.dh * a.wp * l;
    // Pixels of the block under way (in `m`) and the first one's index.
    let (mut k, mut q) = (0, a.y0 * d.ow);
    // SAFETY: (whole body) group reads inside the transposed band (`new`'s contract:
    // every tap of every band pixel lands in it); stores of `n <= LANES` pixels to the
    // `nch` output planes at pixels of the band's rows.
    unsafe {
        for y in a.y0..a.y1 {
            let (mut x, mut groups) = (0, d.ow.div_ceil(8));
            while x < d.ow {
                // The row in `ceil(OW / 8)` groups as even as can be.
                let g = (d.ow - x).div_ceil(groups);
                groups -= 1;
                let p = a.scratch.add(((y * d.sh - prow0) * a.wp + x * d.sw) * l);
                let mut acc = [s.zero(); 8];
                macro_rules! slide {
                    ($g:literal) => {
                        acc[..$g].copy_from_slice(&match (w9, d.sw) {
                            (Some(w9), 1) => dw3_slide::<S, $g, 1>(s, p, w9, rs),
                            (Some(w9), _) => dw3_slide::<S, $g, 2>(s, p, w9, rs),
                            (None, 1) => dw5_slide::<S, $g, 1>(s, p, a.w, rs),
                            (None, _) => dw5_slide::<S, $g, 2>(s, p, a.w, rs),
                        })
                    };
                }
                match g {
                    1 => slide!(1),
                    2 => slide!(2),
                    3 => slide!(3),
                    4 => slide!(4),
                    5 => slide!(5),
                    6 => slide!(6),
                    7 => slide!(7),
                    _ => slide!(8),
                }
                for &v in &acc[..g] {
                    m[k] = s.act_piecewise(s.add(v, bias), piece);
                    k += 1;
                    if k == l {
                        dw_cv_store(s, a, m, l, q);
                        q += l;
                        k = 0;
                    }
                }
                x += g;
            }
        }
        if k > 0 {
            dw_cv_store(s, a, m, k, q);
        }
    }
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
