//! 3x3 stride-1 depthwise convolution with one pixel of padding on every side (the
//! output as large as the input: MobileNet's and EfficientNet's stride-1 layers), per
//! channel on the flat plane.
//!
//! The output pixels of a plane are taken as one long row, `LANES` consecutive pixels a
//! vector whatever the rows they span. Tap `(ky, kx)` of the vector at flat position `q`
//! is the vector at `q + (ky - 1) * W + kx - 1` of the input plane, the lanes whose
//! column is off the map (the first column for `kx = 0`, the last for `kx = 2`) left out
//! of the multiply-add by a lane mask ([`Simd::mul_add_keep`]: on AVX-512 a masked FMA,
//! no extra instruction; six masked loads per vector instead cost the 128x24x24 layer
//! 27.5 µs against 24.4 on the Intel Xeon); rows above and below the map read the
//! zeros around the plane's copy in the band buffer. No padded row copy, no transpose:
//! nine loads and nine multiply-adds per vector, and vectors full even on 12x12 or 7x7
//! maps, where per-channel rows would leave most lanes empty.
//!
//! Each output is one chain in tap order (the product for tap 0, then fused
//! multiply-adds), a padded tap multiplying a zero, as in the channel-vectorised path
//! ([`dw3_slide`](super::depthwise::dw3_slide)), so the two give the same values.

#[allow(unused_imports)]
use super::*;

/// Whether the depthwise convolution `d` (`c == o == g`) is one [`depthwise_flat`] runs:
/// 3x3, stride 1, no dilation, one pixel of padding, output as large as the input.
pub(crate) fn flat3_fits(d: &Dims2d) -> bool {
    (d.kh, d.kw, d.sh, d.sw, d.dh, d.dw, d.ph, d.pw) == (3, 3, 1, 1, 1, 1, 1, 1)
        && (d.oh, d.ow) == (d.h, d.w)
}

/// Most vectors before a plane's column pattern repeats (`W / gcd(W, LANES)`: 3 for
/// widths 6 to 96 at 16 lanes, 7 for 7 to 112, 15 for 15 to 120) that this path takes.
const MAX_PERIOD: usize = 32;

/// Vectors of a tile: four independent chains.
const TILE: usize = 4;

/// Vectors of `lanes` pixels before the column pattern of rows of `w` repeats.
fn period(w: usize, lanes: usize) -> usize {
    let (mut g, mut m) = (w, lanes);
    while m != 0 {
        (g, m) = (m, g % m);
    }
    w / g
}

/// The whole call as one isolated function ([`Simd::vectorize`]).
struct Flat3Run<'a> {
    job: Dw3<'a>,
    /// Input rows per band (those of the band's output rows).
    band: usize,
    /// Zero floats before and after a band's copy in the buffer.
    apron: usize,
    scratch: *mut f32,
}

impl WithSimd for Flat3Run<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Flat3Run {
            job,
            band,
            apron,
            scratch,
        } = self;
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
        let (w, hw) = (d.w, d.h * d.w);
        // A piecewise-linear activation in the store; a curved one over each channel's
        // band once stored (`Simd::curved_slice`, out of line).
        let (piece, post) = act.split_curved();
        // Lane masks: vector `j` of a band (its first pixel in column 0) holds columns
        // `(j * LANES + i) % W`, a pattern of period `W / gcd(W, LANES)` vectors.
        let period = period(w, l);
        debug_assert!(period <= MAX_PERIOD);
        // One period and the `TILE - 1` vectors after it, so that a tile starting in the
        // period finds its masks without wrapping.
        // As lanes (all-ones bits) and as bit masks.
        let mut bits = [[0u32; 16]; 2 * (MAX_PERIOD + TILE)];
        let mut keep = [[0u32; 2]; MAX_PERIOD + TILE];
        for (j, pair) in bits.chunks_exact_mut(2).take(period + TILE).enumerate() {
            let (left, right) = pair.split_at_mut(1);
            for (i, (lb, rb)) in left[0].iter_mut().zip(&mut right[0]).take(l).enumerate() {
                let x = (j * l + i) % w;
                *lb = if x != 0 { !0 } else { 0 };
                *rb = if x != w - 1 { !0 } else { 0 };
                keep[j][0] |= u32::from(x != 0) << i;
                keep[j][1] |= u32::from(x != w - 1) << i;
            }
        }
        // Masks of vector `j` (below `period + TILE`) for kx = 0 and kx = 2 (a macro: a
        // closure would not inherit the level's target features).
        macro_rules! mask {
            // `bits` rows hold 16 >= LANES values each (used inside the unsafe body).
            ($j:expr, $right:expr) => {
                s.load(bits[2 * $j + $right as usize].as_ptr().cast::<f32>())
            };
        }
        // SAFETY: (whole body) the scratch holds `3 * apron + 2 * band * W` floats (the
        // caller's contract, `depthwise_flat`): an apron, copy A, an apron, copy B, an
        // apron; every load below is inside it (see the bounds at each), the input
        // reads are rows of channel `c`'s plane, and the stores are output rows `r0..r1`
        // of channel `c`'s plane.
        unsafe {
            for y0 in (r0..r1).step_by(band - 2) {
                let y1 = (y0 + band - 2).min(r1);
                let (lo, hi) = (y0.saturating_sub(1), (y1 + 1).min(d.h));
                // Two copies (channels alternate: a channel is copied while the one
                // before is computed from the other copy, so that its loads never wait
                // for the stores just made), zeros around each: rows -1 and H, and the
                // over-read of the last vector (at most `W + LANES + 1` floats past).
                let data = |set: usize| scratch.wrapping_add(apron + set * (band * w + apron));
                for set in 0..2 {
                    zero_floats(s, data(set).sub(apron), apron);
                    zero_floats(s, data(set).add((hi - lo) * w), apron);
                }
                macro_rules! copy {
                    ($c:expr) => {{
                        let c: usize = $c;
                        let plane = input.as_ptr().add(c * hw);
                        copy_floats(s, plane.add(lo * w), data(c % 2), (hi - lo) * w);
                    }};
                }
                copy!(0);
                for (c, &bc) in bias.iter().enumerate().take(d.c) {
                    if c + 1 < d.c {
                        copy!(c + 1);
                    }
                    // Flat position `k` of the plane at `at(k)`.
                    let base = data(c % 2);
                    let at = |k: isize| base.offset(k - (lo * w) as isize);
                    let wt = dw3_weights(s, weight, c);
                    let b = s.splat(bc);
                    let oc = out.add(c * d.oh * d.ow);
                    let (q0, q1) = (y0 * w, y1 * w);
                    // `R` vectors from flat position `q` (vector `j` of the band).
                    macro_rules! tile {
                        ($r:literal, $q:expr, $j:expr, $n:expr) => {{
                            let (q, j, n): (usize, usize, usize) = ($q, $j, $n);
                            let mut left = [s.zero(); $r];
                            let mut right = [s.zero(); $r];
                            for r in 0..$r {
                                left[r] = mask!(j + r, false);
                                right[r] = mask!(j + r, true);
                            }
                            let kl: [u32; $r] = core::array::from_fn(|r| keep[j + r][0]);
                            let kr: [u32; $r] = core::array::from_fn(|r| keep[j + r][1]);
                            let mut acc = [s.zero(); $r];
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let t = ky * 3 + kx;
                                    let off = (ky as isize - 1) * w as isize + kx as isize - 1;
                                    for r in 0..$r {
                                        // From `q - W - 1 >= lo * W - W - 1` (inside the
                                        // apron before the copy) to `q + R * LANES + W`
                                        // (at most `W + LANES` past the copy, when the
                                        // band ends the map).
                                        let p = at((q + r * l) as isize + off);
                                        let v = s.load(p);
                                        acc[r] = match (t, kx) {
                                            (0, _) => s.mul_keep(wt[0], v, kl[r], left[r]),
                                            (_, 0) => {
                                                s.mul_add_keep(wt[t], v, acc[r], kl[r], left[r])
                                            }
                                            (_, 1) => s.mul_add(wt[t], v, acc[r]),
                                            _ => s.mul_add_keep(wt[t], v, acc[r], kr[r], right[r]),
                                        };
                                    }
                                }
                            }
                            for r in 0..$r {
                                let y = s.act_piecewise(s.add(acc[r], b), piece);
                                let p = oc.add(q + r * l);
                                let left = n - r * l;
                                if left >= l {
                                    s.store(p, y);
                                } else {
                                    s.store_n(p, y, left);
                                }
                            }
                        }};
                    }
                    // `j`: the vector's place in the column pattern.
                    let (mut q, mut j) = (q0, 0);
                    while q + TILE * l <= q1 {
                        tile!(4, q, j, TILE * l);
                        q += TILE * l;
                        j += TILE;
                        while j >= period {
                            j -= period;
                        }
                    }
                    while q < q1 {
                        tile!(1, q, j, (q1 - q).min(l));
                        q += l;
                        j += 1;
                        if j == period {
                            j = 0;
                        }
                    }
                    if post != Act::IDENTITY {
                        // SAFETY: output rows `y0..y1` of channel `c`, just stored.
                        let band = core::slice::from_raw_parts_mut(oc.add(q0), q1 - q0);
                        s.curved_slice(band, post);
                    }
                }
            }
        }
    }
}

/// The depthwise convolution `d` ([`flat3_fits`]) with weights `[C][9]` and bias `[C]`,
/// output rows `r0..r1` of every channel, through a band buffer of `cap` floats:
/// `false` (nothing written) when not even one output row's band fits, or the width's
/// column pattern repeats only after more than `MAX_PERIOD` vectors.
///
/// # Safety
///
/// As [`depthwise`](super::depthwise::depthwise): `output` valid for writes of
/// `d.c * OH * OW` floats, rows `r0..r1` of its planes accessed by no one else during
/// the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise_flat<S: Simd>(
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
    assert!(flat3_fits(&d));
    let job = Dw3::new(d, input, weight, bias, output, (r0, r1), act);
    let l = S::LANES;
    if period(d.w, l) > MAX_PERIOD {
        return false;
    }
    let apron = (d.w + l + 1).next_multiple_of(16);
    let cap = cap.min(SCRATCH);
    // Input rows of a band (its output rows and one above and below), twice.
    let Some(band) = cap
        .checked_sub(3 * apron)
        .map(|f| (f / (2 * d.w)).min(d.h + 2))
        .filter(|&b| b >= 3)
    else {
        return false;
    };
    if r0 == r1 {
        return true;
    }
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let run = Flat3Run {
        job,
        band,
        apron,
        scratch: scratch.as_mut_ptr().cast::<f32>(),
    };
    s.vectorize(run);
    true
}
