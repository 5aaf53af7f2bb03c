//! 3x3 depthwise convolutions with one pixel of padding (MobileNet's), per channel and
//! output row, their column taps formed in registers: stride 1 on wide maps ("same": the
//! output as large as the input), stride 2 (the downsampling layers).
//!
//! For `LANES` outputs `x0..x0 + LANES` of a row, each input row gives the three tap
//! vectors of columns `SH x - 1`, `SH x`, `SH x + 1`:
//! * stride 1: one vector of columns `x0..` (tap `kx = 1`, loaded once per row as the
//!   vector after the previous one) and two shifts of it: [`shift_in`](Simd::shift_in) of
//!   the vector before's last lane (`kx = 0`, zero before the row) and
//!   [`shift_out`](Simd::shift_out) of the next vector's first (`kx = 2`, zero after it);
//! * stride 2: two vectors of columns `2 x0..` [`deinterleave`](Simd::deinterleave)d
//!   into the even columns (`kx = 1`) and the odd ones (`kx = 2`), and the odd ones
//!   shifted in behind the vector before's (`kx = 0`: column `2x - 1`). The interior
//!   vectors of a pass (every input row on the map, whole vectors, not the first of a
//!   row) run without a branch and take column `2x - 1` as the even columns of the two
//!   vectors one column earlier, all three deinterleaved in the level's own lane order
//!   ([`deinterleave_unordered`](Simd::deinterleave_unordered)): the taps, the chains
//!   and the activation run in that order, and each output vector is put back in order
//!   once before its store. On AVX2 that is three in-lane shuffles per input row and
//!   vector, where the ordered deinterleave and the shift take six, four of them across
//!   the 128-bit halves. Either way each output is the same chain (same values).
//!
//! No copy, no scratch, no masks but at the end of a row: rows above or below the map
//! are zero vectors, columns past a row's end zero lanes. Several output rows per pass
//! share their input rows, each input row feeding the chains of the output rows it is a
//! tap row of (independent chains, the tap order kept). A row narrower than a vector
//! leaves lanes empty: there stride 1 takes [`depthwise_flat`](super::depthwise_flat)
//! (the output as one long row) and stride 2 the channel-vectorised path.
//!
//! Each output is one chain in tap order (the product for tap 0, then fused
//! multiply-adds), padded taps multiplying zeros, as in the channel-vectorised path.

#[allow(unused_imports)]
use super::*;

/// Whether the depthwise convolution `d` (`c == o == g`) is a stride-2 one
/// [`depthwise_rows3`] runs: 3x3, no dilation, one pixel of padding, the output PyTorch
/// gives.
pub(crate) fn phase3_fits(d: &Dims2d) -> bool {
    (d.kh, d.kw, d.sh, d.sw, d.dh, d.dw, d.ph, d.pw) == (3, 3, 2, 2, 1, 1, 1, 1)
        && d.h > 0
        && d.w > 0
        && (d.oh, d.ow) == ((d.h - 1) / 2 + 1, (d.w - 1) / 2 + 1)
}

/// Whether [`depthwise_rows3`] runs the depthwise convolution `d` (`c == o == g`): a 3x3
/// layer of stride 1 or 2 (both ways), no dilation, one column of padding on the left
/// and the output width that gives (the right padding 1 at stride 1, what the width
/// implies at stride 2), and at most one row of padding above; the output rows are any
/// number, input rows past the map reading zero. Besides the layers of [`phase3_fits`]
/// and the stride-1 ones of [`flat3_fits`](super::flat3_fits) that is a band of their
/// output rows over a band of their input rows (no padding above but at the map's top:
/// the bands of `kernels::expand_depthwise`).
pub(crate) fn rows3_fits(d: &Dims2d) -> bool {
    let s = d.sh;
    (d.kh, d.kw, d.sw, d.dh, d.dw, d.pw) == (3, 3, s, 1, 1, 1)
        && (s == 1 || s == 2)
        && d.ph <= 1
        && d.h > 0
        && d.w > 0
        && d.oh > 0
        && d.ow == (d.w - 1) / s + 1
}

/// The whole call as one isolated function ([`Simd::vectorize`]).
struct Rows3Run<'a> {
    job: Dw3<'a>,
}

impl WithSimd for Rows3Run<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Rows3Run { job } = self;
        let Dw3 {
            d,
            input,
            weight,
            bias,
            out,
            plane,
            rows: (r0, r1),
            act,
        } = job;
        let l = S::LANES;
        let (w, ow, hw) = (d.w, d.ow, d.h * d.w);
        // A piecewise-linear activation in the store; a curved one over each pass's
        // output rows once stored (`Simd::curved_slice`, out of line): its code in the
        // loop kept the accumulators on the stack and the epilogue rolled up.
        let (piece, post) = act.split_curved();
        for c in 0..d.c {
            let src = &input[c * hw..(c + 1) * hw];
            let wt = dw3_weights(s, weight, c);
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
            // Output rows `y .. y + R` at stride `SD` from input rows `SD y - PH .. SD (y
            // + R - 1) + 3 - PH` (a macro, not a closure: a closure would not inherit the
            // level's target features).
            macro_rules! pass {
                ($sd:literal, $r:literal, $y:expr) => {{
                    const SD: usize = $sd;
                    const R: usize = $r;
                    const NR: usize = SD * (R - 1) + 3;
                    let y: usize = $y;
                    let in_rows: [Option<&[f32]>; NR] =
                        core::array::from_fn(|k| row((SD * y + k).wrapping_sub(d.ph)));
                    // SAFETY: output rows `y .. y + R` of channel `c` lie in `out` (the
                    // caller's contract); the stores below write their columns `x0..x0 +
                    // n`, `n <= OW - x0`.
                    let orow = unsafe { out.add(c * plane + y * ow) };
                    // Per input row: the vector before's (the shift-in source) and,
                    // at stride 1, the current one.
                    let mut prev = [s.zero(); NR];
                    let mut cur = [s.zero(); NR];
                    if SD == 1 {
                        for k in 0..NR {
                            cur[k] = load!(in_rows[k], 0);
                        }
                    }
                    // Stride 2: the vectors between the first and the row's tail
                    // branch-free when the pass has all its input rows.
                    let all = in_rows.iter().all(Option::is_some);
                    let rp: [*const f32; NR] = core::array::from_fn(|k| {
                        in_rows[k].map_or(core::ptr::null(), <[f32]>::as_ptr)
                    });
                    let mut x0 = 0;
                    // One vector of outputs at `x0` (a macro, not a closure, as
                    // `pass`).
                    macro_rules! step {
                        ($fast:literal) => {{
                            // Input row by input row, each into the chains of the output
                            // rows it is a tap row of (`ky = k - SD r`, increasing: every
                            // chain keeps the tap order).
                            let mut acc = [s.zero(); R];
                            for k in 0..NR {
                                let taps = if SD == 1 {
                                    let next = load!(in_rows[k], (x0 + l).min(w));
                                    let t = [
                                        s.shift_in(prev[k], cur[k]),
                                        cur[k],
                                        s.shift_out(cur[k], next),
                                    ];
                                    prev[k] = cur[k];
                                    cur[k] = next;
                                    t
                                } else {
                                    if $fast {
                                        // An interior vector (`fast`: every input row on the
                                        // map, `0 < 2 x0`, `2 x0 + 2 LANES <= W`): whole
                                        // vectors, no branch.
                                        // SAFETY: reads `r[2 x0 - 1 .. 2 x0 + 2 LANES]` of the
                                        // row `rp[k]` points to (W floats; the bounds above).
                                        let (a, bb, a1, b1) = unsafe {
                                            let p = rp[k].add(2 * x0);
                                            (
                                                s.load(p),
                                                s.load(p.add(l)),
                                                s.load(p.sub(1)),
                                                s.load(p.add(l - 1)),
                                            )
                                        };
                                        let (ev, od) = s.deinterleave_unordered(a, bb);
                                        let (left, _) = s.deinterleave_unordered(a1, b1);
                                        [left, ev, od]
                                    } else {
                                        let (ev, od) = match in_rows[k] {
                                            Some(r) => {
                                                let n = w - 2 * x0;
                                                // SAFETY: the loads read `r[2 x0 .. 2 x0 +
                                                // min(n, 2 LANES)]` only (`2 x0 < W`, as
                                                // `x0 < OW`).
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
                                        let t = [s.shift_in(prev[k], od), ev, od];
                                        prev[k] = od;
                                        t
                                    }
                                };
                                for (r, a) in acc.iter_mut().enumerate() {
                                    let Some(ky) = k.checked_sub(SD * r).filter(|&ky| ky < 3)
                                    else {
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
                                let v = s.act_piecewise(s.add(a, b), piece);
                                let v = if SD == 2 && $fast { s.unorder(v) } else { v };
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
                        }};
                    }
                    while x0 < ow {
                        step!(false);
                        x0 += l;
                        if SD == 2 && all && x0 < ow && 2 * x0 + 2 * l <= w {
                            while x0 < ow && 2 * x0 + 2 * l <= w {
                                step!(true);
                                x0 += l;
                            }
                            // The shift-in source of the vector after: column
                            // `2 x0 - 1` in its last lane.
                            for k in 0..NR {
                                // SAFETY: `r[2 x0 - LANES .. 2 x0]` of row `rp[k]`
                                // (`2 x0 >= 4 LANES` after a fast vector, `2 x0 <= W`).
                                prev[k] = unsafe { s.load(rp[k].add(2 * x0 - l)) };
                            }
                        }
                    }
                    if post != Act::IDENTITY {
                        // SAFETY: output rows `y .. y + R` of channel `c` (above), just
                        // stored.
                        let rows = unsafe { core::slice::from_raw_parts_mut(orow, R * ow) };
                        s.curved_slice(rows, post);
                    }
                }};
            }
            // Output rows per pass: three at stride 1 (five input rows in flight; two
            // and four measured slower on AVX-512: 112x112x32 59 and 68 against 53 µs),
            // two at stride 2 (five input rows; three 83, four 160 µs against 82 on
            // 96x112x112 -> 56x56: spilled registers); the rest one at a time.
            let mut y = r0;
            if d.sh == 1 {
                while y + 3 <= r1 {
                    pass!(1, 3, y);
                    y += 3;
                }
                while y < r1 {
                    pass!(1, 1, y);
                    y += 1;
                }
            } else {
                while y + 2 <= r1 {
                    pass!(2, 2, y);
                    y += 2;
                }
                while y < r1 {
                    pass!(2, 1, y);
                    y += 1;
                }
            }
        }
    }
}

/// The depthwise convolution `d` ([`rows3_fits`]: stride 1 or 2, the whole layer or a
/// band of its rows) with weights `[C][9]` and bias `[C]`, output rows `r0..r1` of every
/// channel, row by row. Needs no band buffer.
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
    assert!(rows3_fits(&d));
    let job = Dw3::new(d, input, weight, bias, output, (r0, r1), act);
    if r0 == r1 {
        return;
    }
    let run = Rows3Run { job };
    s.vectorize(run);
}

/// [`depthwise_rows3`] on every output row of `d` (a band of a layer's rows, or a whole
/// layer), each plane written `plane >= OH * OW` floats after the one before: a band's
/// rows straight into their place in the planes of the whole layer's output.
///
/// # Safety
///
/// `output + c * plane` is valid for writes of `OH * OW` floats for every channel
/// `c < C`, accessed by no one else during the call.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise_rows3_into<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: *mut f32,
    plane: usize,
    act: Act,
) {
    assert!(rows3_fits(&d) && plane >= d.oh * d.ow);
    let mut job = Dw3::new(d, input, weight, bias, output, (0, d.oh), act);
    job.plane = plane;
    s.vectorize(Rows3Run { job });
}
