//! 3x3 stride-2 depthwise convolution with one pixel of padding (MobileNet's
//! downsampling layers), per channel as one long row of output pixel vectors over the
//! phase planes of a band copy.
//!
//! A band of output rows `y0..y1` reads input rows `2 y0 - 1 ..= 2 y1 - 1`. They are
//! copied into planes `OW` columns wide, split by row and column parity, rows off the
//! map as zeros: `EE[k][x] = in[2 (y0 + k)][2x]`, `EO` (column `2x + 1`, zero past an
//! odd-width row's end), `EOs` (`EO` shifted one column right: column `2x - 1`, zero in
//! column 0), and `OE`, `OO`, `OOs` likewise from the odd rows `2 (y0 + k) - 1`, one
//! row more. The nine taps of output `(y0 + k, x)`, at flat position `q = k OW + x` of
//! the band, are then `OOs[q], OE[q], OO[q]` (kernel row 0), `EOs[q], EE[q], EO[q]`
//! (row 1), `OOs[q + OW], OE[q + OW], OO[q + OW]` (row 2).
//!
//! So the output is one long row, its vectors full across output rows even on 12x12 or
//! 6x6 maps, each nine plain loads and nine multiply-adds: no mask, no shuffle, no
//! branch. The copy reads each input row once: per two input vectors two loads, one
//! deinterleave, three stores. Channels alternate between two copies (a channel is
//! copied while the one before is computed from the other copy, so that its loads do
//! not wait for the stores just made). Measured against the row-by-row path
//! (`dw_rows3.rs`), which splits the phases in registers: see
//! `Tuning::dw_phase_max_width`. The same scheme at stride 1 (planes of columns `x - 1`,
//! `x`, `x + 1`: no masks) ran no faster than the masked flat plane (`dw_flat.rs`) and
//! slower on small maps (AVX2: 256x12x12 47 against 32 µs, 192x28x28 145 / 110): three
//! stores per input vector there, against one.
//!
//! Each output is one chain in tap order (the product for tap 0, then fused
//! multiply-adds), a padded tap multiplying a zero, as in the other depthwise paths,
//! so all give the same values.

#[allow(unused_imports)]
use super::*;

/// Floats (zeroed once) before, between and after the planes of a copy: at least the
/// vector stores' overhang past a row's end (`LANES` for the shifted planes) and the
/// loads' over-read past a band's last output (`LANES - 1`).
const APRON: usize = 16;

/// Floats of the two copies the band buffer keeps at most (16 KiB: the copies and the
/// rows read from them stay in L1 next to the input and output streams).
const BAND_FLOATS: usize = 4 * 1024;

/// Rows of the planes of a copy for bands of `rows` output rows: `OE`, `OO`, `OOs`,
/// `EE`, `EO`, `EOs`.
fn plane_rows(rows: usize) -> [usize; 6] {
    [rows + 1, rows + 1, rows + 1, rows, rows, rows]
}

/// Offsets of the planes in a copy (planes `OW` wide, an apron before each), and the
/// copy's length (an apron after the last).
fn plane_offsets(rows: usize, ow: usize) -> ([usize; 6], usize) {
    let mut at = [0; 6];
    let mut end = 0;
    for (a, r) in at.iter_mut().zip(plane_rows(rows)) {
        *a = end + APRON;
        end = *a + r * ow;
    }
    (at, end + APRON)
}

/// The whole call as one isolated function ([`Simd::vectorize`]).
struct Phase2Run<'a> {
    job: Dw3<'a>,
    /// Output rows per band.
    band: usize,
    /// `2 * plane_offsets(band, OW).1` floats.
    scratch: *mut f32,
}

impl WithSimd for Phase2Run<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Phase2Run { job, band, scratch } = self;
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
        let (w, ow, hw, ohw) = (d.w, d.ow, d.h * d.w, d.oh * d.ow);
        let (piece, post) = act.split_curved();
        let (at, len) = plane_offsets(band, ow);
        // The nine taps in tap order: plane (`OE OO OOs EE EO EOs`), whole rows further.
        #[rustfmt::skip]
        let taps = [(2, 0), (0, 0), (1, 0), (5, 0), (3, 0), (4, 0), (2, 1), (0, 1), (1, 1)];
        // Whole pairs of input vectors of a row and what is left, the same for every row.
        let (full, tail) = (w / (2 * l), w % (2 * l));
        // SAFETY: (whole body) the scratch holds `2 * len` floats (the caller's
        // contract, `depthwise_phase2`); every access below is inside one copy (see the
        // bounds at each); input reads are rows of channel `c`'s plane; the stores are
        // output rows `r0..r1` of channel `c`'s plane.
        unsafe {
            // The aprons: zero once; later only the copy's overhang (input values or
            // zeros) lands there, read by the over-reading loads into lanes never stored.
            for set in 0..2 {
                let base = scratch.add(set * len);
                zero_floats(s, base, APRON);
                for (&a, r) in at.iter().zip(plane_rows(band)) {
                    zero_floats(s, base.add(a + r * ow), APRON);
                }
            }
            // Input row `$row` (`None`: off the map) into plane rows `$p` (`OW` floats
            // each; vector stores overhang by up to `LANES` floats into the next row,
            // written after, or the apron).
            macro_rules! split_row {
                ($row:expr, $p:expr) => {{
                    let p: [*mut f32; 3] = $p;
                    match $row {
                        None => {
                            for q in p {
                                zero_floats(s, q, ow);
                            }
                        }
                        // `[E, O, Os]`.
                        Some(src) => {
                            let src: *const f32 = src;
                            let [e, o, os] = p;
                            *os = 0.0;
                            for i in 0..full {
                                let q = src.add(2 * l * i);
                                let (ev, od) = s.deinterleave(s.load(q), s.load(q.add(l)));
                                s.store(e.add(l * i), ev);
                                s.store(o.add(l * i), od);
                                s.store(os.add(l * i + 1), od);
                            }
                            if tail > 0 {
                                // Columns `2 x0 ..`: `ceil(tail / 2)` outputs left.
                                let (x0, q) = (l * full, src.add(2 * l * full));
                                let (a, b) = if tail > l {
                                    (s.load(q), s.load_n(q.add(l), tail - l))
                                } else {
                                    (s.load_n(q, tail), s.zero())
                                };
                                let (ev, od) = s.deinterleave(a, b);
                                s.store(e.add(x0), ev);
                                s.store(o.add(x0), od);
                                s.store(os.add(x0 + 1), od);
                            }
                        }
                    }
                }};
            }
            for y0 in (r0..r1).step_by(band) {
                let y1 = (y0 + band).min(r1);
                let nb = y1 - y0;
                // Channel `c`'s band into copy `c % 2`.
                macro_rules! copy {
                    ($c:expr) => {{
                        let c: usize = $c;
                        let plane = input.as_ptr().add(c * hw);
                        let base = scratch.add((c % 2) * len);
                        let row = |r: usize| (r < d.h).then(|| plane.add(r * w));
                        let pl = |i: usize, k: usize| base.add(at[i] + k * ow);
                        // Input rows `2 y0 - 1 ..= 2 y1 - 1` in order (row -1:
                        // padding): odd rows to the `O*` planes, even ones (all on
                        // the map) to the `E*` planes.
                        for k in 0..=nb {
                            let r = (2 * (y0 + k)).wrapping_sub(1);
                            split_row!(row(r), [pl(0, k), pl(1, k), pl(2, k)]);
                            if k < nb {
                                let r = r.wrapping_add(1);
                                split_row!(Some(plane.add(r * w)), [pl(3, k), pl(4, k), pl(5, k)]);
                            }
                        }
                    }};
                }
                copy!(0);
                for (c, &bc) in bias.iter().enumerate().take(d.c) {
                    if c + 1 < d.c {
                        copy!(c + 1);
                    }
                    let base = scratch.add((c % 2) * len).cast_const();
                    let tap: [*const f32; 9] = taps.map(|(i, k)| base.add(at[i] + k * ow));
                    let wt = dw3_weights(s, weight, c);
                    let b = s.splat(bc);
                    let oc = out.add(c * ohw + y0 * ow);
                    let n_out = nb * ow;
                    // `R` vectors from flat position `q`, `n` outputs left from `q`. The
                    // loads read at most `LANES - 1` floats past the band's last output
                    // position in a plane (plus the tap's whole rows): the plane's rows
                    // or its apron.
                    macro_rules! tile {
                        ($r:literal, $q:expr, $n:expr) => {{
                            let (q, n): (usize, usize) = ($q, $n);
                            let mut acc = [s.zero(); $r];
                            for (t, &p) in tap.iter().enumerate() {
                                for (r, a) in acc.iter_mut().enumerate() {
                                    let v = s.load(p.add(q + r * l));
                                    *a = if t == 0 {
                                        s.mul(wt[0], v)
                                    } else {
                                        s.mul_add(wt[t], v, *a)
                                    };
                                }
                            }
                            for (r, &a) in acc.iter().enumerate() {
                                let y = s.act_piecewise(s.add(a, b), piece);
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
                    let mut q = 0;
                    while q + 4 * l <= n_out {
                        tile!(4, q, 4 * l);
                        q += 4 * l;
                    }
                    while q < n_out {
                        tile!(1, q, n_out - q);
                        q += l;
                    }
                    if post != Act::IDENTITY {
                        // SAFETY: output rows `y0..y1` of channel `c`, just stored.
                        s.curved_slice(core::slice::from_raw_parts_mut(oc, n_out), post);
                    }
                }
            }
        }
    }
}

/// The depthwise convolution `d` ([`phase3_fits`]: 3x3, stride 2, one pixel of padding)
/// with weights `[C][9]` and bias `[C]`, output rows `r0..r1` of
/// every channel, through a band buffer of at most `cap` floats: `false` (nothing
/// written) when not even a one-row band fits.
///
/// # Safety
///
/// As [`depthwise`](super::depthwise::depthwise): `output` valid for writes of
/// `d.c * OH * OW` floats, rows `r0..r1` of its planes accessed by no one else during
/// the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise_phase2<S: Simd>(
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
    assert!(phase3_fits(&d));
    let job = Dw3::new(d, input, weight, bias, output, (r0, r1), act);
    // The vector stores of a row's last columns overhang by up to `LANES` floats.
    debug_assert!(S::LANES <= APRON);
    let two = |rows: usize| 2 * plane_offsets(rows, d.ow).1;
    let cap = cap.min(SCRATCH).min(BAND_FLOATS.max(two(1)));
    if two(1) > cap {
        return false;
    }
    if r0 == r1 {
        return true;
    }
    let mut band = 1;
    while band < r1 - r0 && two(band + 1) <= cap {
        band += 1;
    }
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let run = Phase2Run {
        job,
        band,
        scratch: scratch.as_mut_ptr().cast::<f32>(),
    };
    s.vectorize(run);
    true
}
