//! 3x3 stride-2 depthwise convolution with one pixel of padding (MobileNet's downsampling
//! layers), per channel on phase planes.
//!
//! Output pixel `(y, x)` reads input rows `2y - 1, 2y, 2y + 1` and columns `2x - 1, 2x,
//! 2x + 1`. Each input row of a band is split once into three column phases of `OW`
//! values (`x -> 2x - 1`, `2x`, `2x + 1`, zero off the map), even rows and odd rows in
//! planes of their own with the output's row pitch. Then tap `(ky, kx)` of output pixel
//! `q = y * OW + x` is the value at `q` (or `q + OW`) of one plane: the output runs as
//! one long row, `LANES` consecutive pixels a vector across rows, nine contiguous loads
//! and multiply-adds per vector, no masks and no transposes.
//!
//! Each output is one chain in tap order (the product for tap 0, then fused
//! multiply-adds), padded taps multiplying zeros, as in the channel-vectorised path.

#[allow(unused_imports)]
use super::*;

/// Whether the depthwise convolution `d` (`c == o == g`) is one [`depthwise_phase`]
/// runs: 3x3, stride 2, no dilation, one pixel of padding, the output PyTorch gives.
pub(crate) fn phase3_fits(d: &Dims2d) -> bool {
    (d.kh, d.kw, d.sh, d.sw, d.dh, d.dw, d.ph, d.pw) == (3, 3, 2, 2, 1, 1, 1, 1)
        && d.h > 0
        && d.w > 0
        && (d.oh, d.ow) == ((d.h - 1) / 2 + 1, (d.w - 1) / 2 + 1)
}

/// Floats after each plane's rows: the over-read of a band's last vector.
const SLACK: usize = 16;

/// The whole call as one isolated function ([`Simd::vectorize`]).
struct PhaseRun<'a> {
    d: Dims2d,
    input: &'a [f32],
    /// `[C][9]`.
    weight: &'a [f32],
    /// `[C]`.
    bias: &'a [f32],
    out: *mut f32,
    rows: (usize, usize),
    act: Act,
    /// Output rows per band.
    band: usize,
    /// Floats per plane (`(band + 1) * OW + SLACK`, a multiple of 16).
    plane: usize,
    scratch: *mut f32,
}

impl WithSimd for PhaseRun<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let PhaseRun {
            d,
            input,
            weight,
            bias,
            out,
            rows: (r0, r1),
            act,
            band,
            plane,
            scratch,
        } = self;
        let l = S::LANES;
        let (w, ow, hw) = (d.w, d.ow, d.h * d.w);
        // Two sets (channels alternate) of six planes: odd input rows for kx = 0, 1, 2,
        // then even rows for kx = 0, 1, 2. A channel's planes are written while the
        // channel before is computed from the other set: its loads never wait for the
        // stores just made (a load spanning several recent stores is not forwarded).
        let odd = |set: usize, kx: usize| scratch.wrapping_add((set * 6 + kx) * plane);
        let even = |set: usize, kx: usize| scratch.wrapping_add((set * 6 + 3 + kx) * plane);
        // SAFETY: (whole body) the scratch holds twelve planes of `plane` floats (the
        // caller's contract), `(band + 1) * OW` of them rows and `SLACK` after; the split
        // writes rows below `band + 1` (odd) or `band` (even) with at most `OW` values
        // each; the loads read local positions below `nb * OW + LANES` (even) or
        // `(nb + 1) * OW + LANES` (odd planes, `ky == 2` at `+ OW`), inside the plane
        // with its slack; input reads are inside row `iy` of channel `c`'s plane; the
        // stores are output rows `y0..y1` of channel `c`.
        unsafe {
            for y0 in (r0..r1).step_by(band) {
                let y1 = (y0 + band).min(r1);
                let nb = y1 - y0;
                // Zeros after the rows: the last vector's lanes past the band.
                for set in 0..2 {
                    for kx in 0..3 {
                        zero_floats(s, odd(set, kx).add((nb + 1) * ow), SLACK);
                        zero_floats(s, even(set, kx).add(nb * ow), SLACK);
                    }
                }
                // Channel `c`'s input rows of the band into plane set `set` (macros, not
                // closures: a closure would not inherit the level's target features).
                macro_rules! split {
                    ($c:expr, $set:expr) => {{
                        let (c, set): (usize, usize) = ($c, $set);
                        let src = input.as_ptr().add(c * hw);
                        // Input row `2 * y0 - 1 + i` into row `i / 2` of the odd (`i` even)
                        // or even planes.
                        for i in 0..2 * nb + 1 {
                            let iy = (2 * y0 + i).wrapping_sub(1);
                            let at = |kx: usize| {
                                if i % 2 == 0 {
                                    odd(set, kx).add((i / 2) * ow)
                                } else {
                                    even(set, kx).add((i / 2) * ow)
                                }
                            };
                            let (pm, pe, po) = (at(0), at(1), at(2));
                            if iy >= d.h {
                                zero_floats(s, pm, ow);
                                zero_floats(s, pe, ow);
                                zero_floats(s, po, ow);
                                continue;
                            }
                            let inrow = src.add(iy * w);
                            *pm = 0.0;
                            let mut x0 = 0;
                            // Whole vectors: both loads, the three stores full.
                            while x0 + l < ow && 2 * (x0 + l) <= w {
                                let p = inrow.add(2 * x0);
                                let (ev, od) = s.deinterleave(s.load(p), s.load(p.add(l)));
                                s.store(pe.add(x0), ev);
                                s.store(po.add(x0), od);
                                s.store(pm.add(x0 + 1), od);
                                x0 += l;
                            }
                            // An even width with a vector or more left over: the last
                            // vector recomputed whole, overlapping the one before (the
                            // same values stored twice; the `x0 - 1` store reaches column
                            // `OW` of `pm`, the next row's first, zeroed after).
                            if x0 < ow && w == 2 * ow && ow >= l {
                                let x1 = ow - l;
                                let p = inrow.add(2 * x1);
                                let (ev, od) = s.deinterleave(s.load(p), s.load(p.add(l)));
                                s.store(pe.add(x1), ev);
                                s.store(po.add(x1), od);
                                s.store(pm.add(x1 + 1), od);
                                x0 = ow;
                            }
                            while x0 < ow {
                                // Input columns 2 * x0 .. 2 * x0 + 2 * LANES.
                                let ca = (w - 2 * x0).min(l);
                                let cb = (w - 2 * x0 - ca).min(l);
                                let a = if ca == l {
                                    s.load(inrow.add(2 * x0))
                                } else {
                                    s.load_n(inrow.add(2 * x0), ca)
                                };
                                let b = if cb == l {
                                    s.load(inrow.add(2 * x0 + l))
                                } else if cb > 0 {
                                    s.load_n(inrow.add(2 * x0 + l), cb)
                                } else {
                                    s.zero()
                                };
                                let (ev, od) = s.deinterleave(a, b);
                                let n = (ow - x0).min(l);
                                if n == l {
                                    s.store(pe.add(x0), ev);
                                    s.store(po.add(x0), od);
                                } else {
                                    s.store_n(pe.add(x0), ev, n);
                                    s.store_n(po.add(x0), od, n);
                                }
                                // Column 2x - 1 is column 2(x - 1) + 1.
                                let m = (ow - x0 - 1).min(l);
                                if m == l {
                                    s.store(pm.add(x0 + 1), od);
                                } else if m > 0 {
                                    s.store_n(pm.add(x0 + 1), od, m);
                                }
                                x0 += l;
                            }
                        }
                    }};
                }
                // Channel `c`'s output rows of the band from plane set `set`.
                macro_rules! compute {
                    ($c:expr, $set:expr) => {{
                        let (c, set): (usize, usize) = ($c, $set);
                        let wc = weight.as_ptr().add(c * 9);
                        let mut wt = [s.zero(); 9];
                        for (t, v) in wt.iter_mut().enumerate() {
                            *v = s.bcast(wc.add(t));
                        }
                        let b = s.splat(bias[c]);
                        let oc = out.add(c * d.oh * ow + y0 * ow);
                        let n_out = nb * ow;
                        macro_rules! tile {
                            ($r:literal, $q:expr) => {{
                                let q: usize = $q;
                                let mut acc = [s.zero(); $r];
                                for ky in 0..3 {
                                    for kx in 0..3 {
                                        let t = ky * 3 + kx;
                                        let p = match ky {
                                            0 => odd(set, kx).add(q),
                                            1 => even(set, kx).add(q),
                                            _ => odd(set, kx).add(q + ow),
                                        };
                                        for (r, a) in acc.iter_mut().enumerate() {
                                            let v = s.load(p.add(r * l));
                                            *a = if t == 0 {
                                                s.mul(wt[0], v)
                                            } else {
                                                s.mul_add(wt[t], v, *a)
                                            };
                                        }
                                    }
                                }
                                for (r, &a) in acc.iter().enumerate() {
                                    let y = s.act(s.add(a, b), act);
                                    let left = n_out - q - r * l;
                                    if left >= l {
                                        s.store(oc.add(q + r * l), y);
                                    } else {
                                        s.store_n(oc.add(q + r * l), y, left);
                                    }
                                }
                            }};
                        }
                        let mut q = 0;
                        while q + 4 * l <= n_out {
                            tile!(4, q);
                            q += 4 * l;
                        }
                        while q < n_out {
                            tile!(1, q);
                            q += l;
                        }
                    }};
                }
                split!(0, 0);
                for c in 0..d.c {
                    if c + 1 < d.c {
                        split!(c + 1, (c + 1) % 2);
                    }
                    compute!(c, c % 2);
                }
            }
        }
    }
}

/// The depthwise convolution `d` ([`phase3_fits`]) with weights `[C][9]` and bias `[C]`,
/// output rows `r0..r1` of every channel, through a band buffer of `cap` floats:
/// `false` (nothing written) when not even one output row's planes fit.
///
/// # Safety
///
/// As [`depthwise`](super::depthwise::depthwise): `output` valid for writes of
/// `d.c * OH * OW` floats, rows `r0..r1` of its planes accessed by no one else during
/// the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise_phase<S: Simd>(
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
    assert!(phase3_fits(&d) && d.c == d.o);
    assert!(input.len() >= d.c * d.h * d.w && r0 <= r1 && r1 <= d.oh);
    assert!(weight.len() == d.c * 9 && bias.len() == d.c);
    debug_assert!(S::LANES <= SLACK);
    // Twelve planes of `(band + 1) * OW + SLACK` floats, whole lines each.
    let per_plane = (cap.min(SCRATCH) / 12) & !15;
    let Some(band) = per_plane
        .checked_sub(SLACK)
        .map(|f| (f / d.ow).saturating_sub(1).min(d.oh))
        .filter(|&b| b >= 1)
    else {
        return false;
    };
    if r0 == r1 {
        return true;
    }
    let plane = ((band + 1) * d.ow + SLACK).next_multiple_of(16);
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let run = PhaseRun {
        d,
        input,
        weight,
        bias,
        out: output,
        rows: (r0, r1),
        act,
        band,
        plane,
        scratch: scratch.as_mut_ptr().cast::<f32>(),
    };
    s.vectorize(run);
    true
}
