//! 3x3 stride-2 depthwise convolutions with one pixel of padding on maps narrower than a
//! vector (`W < LANES`: MobileNetV2's 14x14 -> 7x7, MobileNet-96's 12x12 -> 6x6), two
//! output rows per vector.
//!
//! Row by row ([`depthwise_rows3`](super::depthwise_rows3)) such a map fills under half
//! of each vector, and the channel-vectorised path pays two transposes. Here output row
//! `y` takes the lower half of a vector and row `y + 1` the upper (`OW <= LANES / 2`):
//! for each tap row, the two input rows (`2y + ky - 1` and the one two below) are
//! [`deinterleave`](Simd::deinterleave)d together into their even columns (`kx = 1`) and
//! odd ones (`kx = 2`), side by side, and the odd ones shifted in by one lane
//! ([`shift_in`](Simd::shift_in): `kx = 0`, column `2x - 1`; lane 0 zero, and lane
//! `LANES / 2` the first row's column `LANES - 1`, past its end, so zero too).
//!
//! Each channel's rows are first copied, one aligned vector each, into a buffer with
//! zero rows above and below, so that every load is a whole aligned vector at a fixed
//! offset (no branches for the rows off the map, and each load takes its data straight
//! from the store that wrote it). Four pairs of rows are computed at once: four
//! independent chains, which the nine dependent multiply-adds of one need to keep the
//! FMA units busy.
//!
//! Each output is one chain in tap order (the product for tap 0, then fused
//! multiply-adds), padded taps multiplying zeros, as in the other depthwise paths, so
//! all give the same values.

use super::dw_rows3::phase3_fits;
#[allow(unused_imports)]
use super::*;

/// Pairs of output rows computed at once.
const PAIRS: usize = 4;

/// Whether [`depthwise_narrow2`] takes the depthwise convolution `d` at `lanes` lanes:
/// [`phase3_fits`], the input narrower than a vector, and its rows' buffer within
/// [`SCRATCH`].
pub(crate) fn narrow2_fits(d: &Dims2d, lanes: usize) -> bool {
    phase3_fits(d) && d.w < lanes && buffer_rows(d) * lanes <= SCRATCH
}

/// Rows of the buffer: a zero row, the `H` input rows, zero rows down to the last row a
/// group of [`PAIRS`] pairs from output row `OH - 1` at most reads (`2 (OH - 1 + 2
/// (PAIRS - 1)) + 4`).
fn buffer_rows(d: &Dims2d) -> usize {
    (2 * d.oh + 4 * PAIRS + 1).max(d.h + 1)
}

/// The whole call as one isolated function ([`Simd::vectorize`]).
struct Narrow2Run<'a> {
    job: Dw3<'a>,
    /// `buffer_rows(d) * LANES` floats, 64-byte aligned.
    buf: *mut f32,
}

impl WithSimd for Narrow2Run<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Narrow2Run { job, buf } = self;
        let Dw3 {
            d,
            input,
            weight,
            bias,
            out,
            plane: _,
            rows: (r0, r1),
            act,
        } = job;
        let l = S::LANES;
        let (w, ow, hw) = (d.w, d.ow, d.h * d.w);
        // A piecewise-linear activation in the store; a curved one over each channel's
        // rows once stored (`Simd::curved_slice`, out of line).
        let (piece, post) = act.split_curved();
        // SAFETY: (whole body) `buf` holds `buffer_rows(d)` rows of `LANES` floats (the
        // caller's contract); row `1 + iy` is input row `iy`, every other row zero, all
        // written before they are read. Input reads are the `W` floats of the rows of
        // channel `c`'s plane; stores are rows `r0..r1` of channel `c`'s output plane.
        unsafe {
            zero_floats(s, buf, buffer_rows(&d) * l);
            for (c, &bc) in bias.iter().enumerate().take(d.c) {
                let plane = input.as_ptr().add(c * hw);
                for iy in 0..d.h {
                    s.store(buf.add((1 + iy) * l), s.load_n(plane.add(iy * w), w));
                }
                let wt = dw3_weights(s, weight, c);
                let b = s.splat(bc);
                let mut y = r0;
                while y < r1 {
                    // Pairs `(y + 2p, y + 2p + 1)`: tap row `ky` reads buffer rows `2(y +
                    // 2p) + ky` and two below, at most row `2 (OH - 1 + 2 (PAIRS - 1)) +
                    // 4` (`y < OH`), inside the buffer.
                    let mut acc = [s.zero(); PAIRS];
                    for ky in 0..3 {
                        for (p, a) in acc.iter_mut().enumerate() {
                            let top = buf.add((2 * (y + 2 * p) + ky) * l);
                            let (ev, od) = s.deinterleave(s.load(top), s.load(top.add(2 * l)));
                            let taps = [s.shift_in(s.zero(), od), ev, od];
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
                    for (p, &a) in acc.iter().enumerate() {
                        let ya = y + 2 * p;
                        if ya >= r1 {
                            break;
                        }
                        let v = s.act_piecewise(s.add(a, b), piece);
                        let o = out.add((c * d.oh + ya) * ow);
                        s.store_n(o, v, ow);
                        if ya + 1 < r1 {
                            s.store_n(o.add(ow), s.upper_half(v), ow);
                        }
                    }
                    y += 2 * PAIRS;
                }
                if post != Act::IDENTITY {
                    // SAFETY: output rows `r0..r1` of channel `c`, just stored.
                    let rows = out.add((c * d.oh + r0) * ow);
                    s.curved_slice(core::slice::from_raw_parts_mut(rows, (r1 - r0) * ow), post);
                }
            }
        }
    }
}

/// A 64-byte aligned buffer of [`SCRATCH`] floats.
#[repr(C, align(64))]
struct Buffer([f32; SCRATCH]);

/// The stride-2 depthwise convolution `d` ([`narrow2_fits`]) with weights `[C][9]` and
/// bias `[C]`, output rows `r0..r1` of every channel.
///
/// # Safety
///
/// As [`depthwise`](super::depthwise::depthwise): `output` valid for writes of
/// `d.c * OH * OW` floats, rows `r0..r1` of its planes accessed by no one else during
/// the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise_narrow2<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: *mut f32,
    (r0, r1): (usize, usize),
    act: Act,
) {
    assert!(narrow2_fits(&d, S::LANES));
    let job = Dw3::new(d, input, weight, bias, output, (r0, r1), act);
    if r0 == r1 {
        return;
    }
    let mut buf = MaybeUninit::<Buffer>::uninit();
    let run = Narrow2Run {
        job,
        buf: buf.as_mut_ptr().cast::<f32>(),
    };
    s.vectorize(run);
}
