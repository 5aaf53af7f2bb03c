//! 3x3 stride-2 depthwise convolution with one pixel of padding (MobileNet's downsampling
//! layers), per channel and output row, the column phases split in registers.
//!
//! Output pixel `(y, x)` reads input rows `2y - 1, 2y, 2y + 1` and columns `2x - 1, 2x,
//! 2x + 1`. For `LANES` outputs `x0..x0 + LANES` of a row, each of the three input rows
//! gives two loads (columns `2 x0 .. 2 x0 + 2 LANES`, masked at the end of the row), one
//! [`deinterleave`](Simd::deinterleave) into the even columns (tap `kx = 1`) and the odd
//! ones (`kx = 2`), and one [`shift_in`](Simd::shift_in) of the odd columns behind the
//! previous vector's (`kx = 0`: column `2x - 1`, zero before the row). No copy, no
//! scratch, no per-row masks but the last vector's: rows above or below the map are zero
//! vectors, columns past the row's end zero lanes. Two output rows per pass share their
//! middle input row, each input row feeding the chains of the output rows it is a tap
//! row of. Narrow maps (7 or 6 output columns)
//! leave lanes empty, which costs less than splitting the rows into phase planes did (a
//! store per phase and row, each with its own mask).
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

/// Output rows per pass (their `2 RPASS + 1` input rows in flight, `RPASS` independent
/// chains): two measured fastest on AVX-512 (96x112x112 -> 56x56: 82 µs, three 83, four
/// 160: spilled registers).
const RPASS: usize = 2;

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
        } = self;
        let l = S::LANES;
        let (w, ow, hw) = (d.w, d.ow, d.h * d.w);
        for c in 0..d.c {
            let src = &input[c * hw..(c + 1) * hw];
            let wc = &weight[c * 9..c * 9 + 9];
            let mut wt = [s.zero(); 9];
            for (v, x) in wt.iter_mut().zip(wc) {
                *v = s.splat(*x);
            }
            let b = s.splat(bias[c]);
            // Input row `iy` (None: off the map, zeros).
            let row = |iy: usize| (iy < d.h).then(|| &src[iy * w..(iy + 1) * w]);
            // Output rows `y .. y + R` from input rows `2y - 1 .. 2y + 2R` (`R` two: the
            // middle row shared, two independent chains; a macro, not a closure: a closure
            // would not inherit the level's target features).
            macro_rules! pass {
                ($r:expr, $y:expr) => {{
                    const R: usize = $r;
                    const NR: usize = 2 * R + 1;
                    let y: usize = $y;
                    let in_rows: [Option<&[f32]>; NR] =
                        core::array::from_fn(|k| row((2 * y + k).wrapping_sub(1)));
                    // SAFETY: output rows `y .. y + R` of channel `c` lie in `out` (the
                    // caller's contract); the stores below write their columns `x0..x0 +
                    // n`, `n <= OW - x0`.
                    let orow = unsafe { out.add((c * d.oh + y) * ow) };
                    let mut prev = [s.zero(); NR];
                    let mut x0 = 0;
                    while x0 < ow {
                        // Per input row: columns 2x - 1 (kx = 0: the odd columns one
                        // position later, the vector before's last shifted in), 2x (kx =
                        // 1: even) and 2x + 1 (kx = 2: odd) of x0 .. x0 + LANES, zero
                        // past the row's end.
                        // Input row by input row, each into the chains of the output
                        // rows it is a tap row of (`ky = k - 2r`, increasing: every
                        // chain keeps the tap order).
                        let mut acc = [s.zero(); R];
                        for k in 0..NR {
                            let (ev, od) = match in_rows[k] {
                                Some(r) => {
                                    let n = w - 2 * x0;
                                    // SAFETY: the loads read `r[2 x0 .. 2 x0 + min(n, 2
                                    // LANES)]` only (`2 x0 < W`, as `x0 < OW`).
                                    let (a, bb) = unsafe {
                                        let p = r.as_ptr().add(2 * x0);
                                        if n >= 2 * l {
                                            (s.load(p), s.load(p.add(l)))
                                        } else if n > l {
                                            (s.load(p), s.load_n(p.add(l), n - l))
                                        } else {
                                            (s.load_n(p, n), s.zero())
                                        }
                                    };
                                    s.deinterleave(a, bb)
                                }
                                None => (s.zero(), s.zero()),
                            };
                            let taps = [s.shift_in(prev[k], od), ev, od];
                            prev[k] = od;
                            for (r, a) in acc.iter_mut().enumerate() {
                                let Some(ky) = k.checked_sub(2 * r).filter(|&ky| ky < 3) else {
                                    continue;
                                };
                                for (kx, &v) in taps.iter().enumerate() {
                                    let t = ky * 3 + kx;
                                    *a = if t == 0 {
                                        s.mul(wt[0], v)
                                    } else {
                                        s.mul_add(wt[t], v, *a)
                                    };
                                }
                            }
                        }
                        let n = (ow - x0).min(l);
                        for (r, &a) in acc.iter().enumerate() {
                            let v = s.act(s.add(a, b), act);
                            // SAFETY: columns `x0..x0 + n` of output row `y + r` (above).
                            unsafe {
                                let o = orow.add(r * ow + x0);
                                if n == l {
                                    s.store(o, v);
                                } else {
                                    s.store_n(o, v, n);
                                }
                            }
                        }
                        x0 += l;
                    }
                }};
            }
            let mut y = r0;
            while y + RPASS <= r1 {
                pass!(RPASS, y);
                y += RPASS;
            }
            while y < r1 {
                pass!(1, y);
                y += 1;
            }
        }
    }
}

/// The depthwise convolution `d` ([`phase3_fits`]) with weights `[C][9]` and bias `[C]`,
/// output rows `r0..r1` of every channel. Needs no band buffer (`cap` is not used):
/// always `true`.
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
    let _ = cap;
    assert!(phase3_fits(&d) && d.c == d.o);
    assert!(input.len() >= d.c * d.h * d.w && r0 <= r1 && r1 <= d.oh);
    assert!(weight.len() == d.c * 9 && bias.len() == d.c);
    if r0 == r1 {
        return true;
    }
    let run = PhaseRun {
        d,
        input,
        weight,
        bias,
        out: output,
        rows: (r0, r1),
        act,
    };
    s.vectorize(run);
    true
}
