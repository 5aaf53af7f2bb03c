//! 3x3 stride-1 depthwise convolution with one pixel of padding on every side (the
//! output as large as the input), per channel and output row, the column taps shifted in
//! registers: for wide maps.
//!
//! For `LANES` outputs `x0..x0 + LANES` of a row, each of the three input rows gives one
//! vector of columns `x0..x0 + LANES` (tap `kx = 1`, loaded once per row as the vector
//! after the previous one) and two shifts of it: [`shift_in`](Simd::shift_in) of the
//! vector before's last lane (`kx = 0`: column `x - 1`, zero before the row) and
//! [`shift_out`](Simd::shift_out) of the next vector's first (`kx = 2`: column `x + 1`,
//! zero after the row). One load and two shuffles per input row and vector, no copy, no
//! masks but the last vector's; three output rows per pass share their input rows, each
//! input row feeding the chains of the output rows it is a tap row of, three independent
//! chains. A row narrower than a vector leaves lanes
//! empty, where [`depthwise_flat`](super::depthwise_flat) (the output as one long row)
//! fills them.
//!
//! Each output is one chain in tap order (the product for tap 0, then fused
//! multiply-adds), padded taps multiplying zeros, as in the channel-vectorised path.

#[allow(unused_imports)]
use super::*;

/// Output rows per pass (their `RPASS + 2` input rows in flight, `RPASS` independent
/// chains): three measured fastest on AVX-512 (112x112x32: 59 µs with two, 68 with four).
const RPASS: usize = 3;

/// The whole call as one isolated function ([`Simd::vectorize`]).
struct Rows3Run<'a> {
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

impl WithSimd for Rows3Run<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Rows3Run {
            d,
            input,
            weight,
            bias,
            out,
            rows: (r0, r1),
            act,
        } = self;
        let l = S::LANES;
        let (w, hw) = (d.w, d.h * d.w);
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
            // Columns `x..x + LANES` of a row, zero past its end (`x <= W`).
            macro_rules! load {
                ($r:expr, $x:expr) => {{
                    let x: usize = $x;
                    match $r {
                        Some(r) => {
                            let n = w - x;
                            // SAFETY: reads `r[x .. x + min(n, LANES)]` only.
                            unsafe {
                                let p = r.as_ptr().add(x);
                                if n >= l {
                                    s.load(p)
                                } else if n > 0 {
                                    s.load_n(p, n)
                                } else {
                                    s.zero()
                                }
                            }
                        }
                        None => s.zero(),
                    }
                }};
            }
            // Output rows `y .. y + R` from input rows `y - 1 .. y + R + 1` (a macro,
            // not a closure: a closure would not inherit the level's target features).
            macro_rules! pass {
                ($r:expr, $y:expr) => {{
                    const R: usize = $r;
                    const NR: usize = R + 2;
                    let y: usize = $y;
                    let in_rows: [Option<&[f32]>; NR] =
                        core::array::from_fn(|k| row((y + k).wrapping_sub(1)));
                    // SAFETY: output rows `y .. y + R` of channel `c` lie in `out` (the
                    // caller's contract); the stores below write their columns `x0..x0 +
                    // n`, `n <= W - x0`.
                    let orow = unsafe { out.add((c * d.oh + y) * w) };
                    let mut prev = [s.zero(); NR];
                    let mut cur = [s.zero(); NR];
                    for k in 0..NR {
                        cur[k] = load!(in_rows[k], 0);
                    }
                    let mut x0 = 0;
                    while x0 < w {
                        // Input row by input row, each into the chains of the output
                        // rows it is a tap row of (`ky = k - r`, increasing: every
                        // chain keeps the tap order).
                        let mut acc = [s.zero(); R];
                        for k in 0..NR {
                            let next = load!(in_rows[k], (x0 + l).min(w));
                            let taps = [
                                s.shift_in(prev[k], cur[k]),
                                cur[k],
                                s.shift_out(cur[k], next),
                            ];
                            prev[k] = cur[k];
                            cur[k] = next;
                            for (r, a) in acc.iter_mut().enumerate() {
                                let Some(ky) = k.checked_sub(r).filter(|&ky| ky < 3) else {
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
                        let n = (w - x0).min(l);
                        for (r, &a) in acc.iter().enumerate() {
                            let v = s.act(s.add(a, b), act);
                            // SAFETY: columns `x0..x0 + n` of output row `y + r` (above).
                            unsafe {
                                let o = orow.add(r * w + x0);
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

/// The depthwise convolution `d` ([`flat3_fits`]) with weights `[C][9]` and bias `[C]`,
/// output rows `r0..r1` of every channel, row by row. Needs no band buffer.
///
/// # Safety
///
/// As [`depthwise`](super::depthwise::depthwise): `output` valid for writes of
/// `d.c * OH * OW` floats, rows `r0..r1` of its planes accessed by no one else during
/// the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise_rows3<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: *mut f32,
    (r0, r1): (usize, usize),
    act: Act,
) {
    assert!(flat3_fits(&d) && d.c == d.o);
    assert!(input.len() >= d.c * d.h * d.w && r0 <= r1 && r1 <= d.oh);
    assert!(weight.len() == d.c * 9 && bias.len() == d.c);
    if r0 == r1 {
        return;
    }
    let run = Rows3Run {
        d,
        input,
        weight,
        bias,
        out: output,
        rows: (r0, r1),
        act,
    };
    s.vectorize(run);
}
