//! Dilated 3x3 stride-1 convolutions as one dilation-1 Winograd convolution of a mosaic
//! of the input's polyphase components.
//!
//! Output pixel `(y, x)` of a 3x3 convolution with dilation `(DH, DW)` reads input rows
//! `y - PH + DH ky` and columns `x - PW + DW kx`: all congruent to `y - PH` modulo `DH`
//! (`x - PW` modulo `DW`). So the outputs of phase `(a, b)` (rows `a + DH j`, columns
//! `b + DW i`) read only the input phase plane `(a', b')` with `a - PH = DH q + a'`
//! (`0 <= a' < DH`, floor division): output phase row `j` reads plane row `j + ky + q`,
//! a dilation-1 3x3 convolution of the plane with top padding `-q` (`q <= 0`, as
//! `a < DH` and `PH >= 0`).
//!
//! Rather than `DH * DW` small convolutions (on AVX-512 a 32-wide phase fills only half
//! of the input transform's vectors of tiles), the phases are gathered into one mosaic:
//! phase `(a, b)` with its own zero padding in a block of `outs + 2` rows by `outs + 2`
//! columns, row blocks by `a`, column blocks by `b`. The unpadded dilation-1 Winograd of
//! the mosaic (same transformed weights) computes every phase's outputs, plus two rows
//! and columns of discarded ones between blocks; they are scattered back with stride
//! `(DH, DW)`. Bias and activation are applied by the inner convolution: every output
//! pixel belongs to exactly one phase.
//!
//! A phase plane may be empty (all its taps in the padding): its block is zeros and its
//! outputs `act(bias)`. Phases without output pixels (`OH < DH`) get no block.

use super::*;

/// The geometry of one phase along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AxisPhase {
    /// First output index of the phase (`a`).
    out0: usize,
    /// Output indices of the phase (`ceil((OH - a) / DH)`).
    outs: usize,
    /// First input index of the phase plane (`a'`).
    in0: usize,
    /// Input indices of the phase plane (`ceil((H - a') / DH)`, 0 if `a' >= H`).
    ins: usize,
    /// Leading padding of the phase's dilation-1 convolution (`-q`).
    pad: usize,
}

impl AxisPhase {
    /// Phase `a` of an axis of `n` inputs, `out` outputs, leading padding `p`, dilation
    /// `d`.
    fn new(a: usize, n: usize, out: usize, p: usize, d: usize) -> AxisPhase {
        // a - p = d q + a', q <= 0: -q = ceil((p - a) / d) when p >= a, else 0 (a < d).
        let pad = p.saturating_sub(a).div_ceil(d);
        let in0 = a + d * pad - p;
        AxisPhase {
            out0: a,
            outs: out.saturating_sub(a).div_ceil(d),
            in0,
            ins: n.saturating_sub(in0).div_ceil(d),
            pad,
        }
    }
}

/// The phases of an axis with output (`outs > 0`), each a block of `outs + 2` rows (or
/// columns) of the mosaic, in order.
fn blocks(n: usize, out: usize, p: usize, d: usize) -> impl Iterator<Item = AxisPhase> {
    (0..d)
        .map(move |a| AxisPhase::new(a, n, out, p, d))
        .filter(|ph| ph.outs > 0)
}

/// Rows (or columns) of the mosaic along an axis: `outs + 2` per phase with output.
fn mosaic_len(n: usize, out: usize, p: usize, d: usize) -> usize {
    blocks(n, out, p, d).map(|ph| ph.outs + 2).sum()
}

/// The dilation-1, unpadded convolution of the mosaic of `d`: the phase planes, each
/// with its own zero padding, side by side (phase `(a, b)` in row block `a`, column
/// block `b`), so that its valid outputs are the phases' outputs (plus two rows and
/// columns of discarded ones between blocks).
fn mosaic_dims(d: &WgDims) -> WgDims {
    let mh = mosaic_len(d.h, d.oh, d.ph, d.dh);
    let mw = mosaic_len(d.w, d.ow, d.pw, d.dw);
    WgDims {
        c: d.c,
        h: mh,
        w: mw,
        o: d.o,
        oh: mh - 2,
        ow: mw - 2,
        ph: 0,
        pw: 0,
        dh: 1,
        dw: 1,
        m: d.m,
        pool: false,
    }
}

/// Where the buffers of a polyphase convolution start in its scratch.
struct PolyLayout {
    /// The mosaic's convolution.
    md: WgDims,
    /// Offset of the mosaic (`C * MH * MW`), after the inner convolution's scratch.
    pin: usize,
    /// Offset of the mosaic's output (`O * (MH - 2) * (MW - 2)`).
    pout: usize,
    /// Total floats.
    len: usize,
}

impl PolyLayout {
    fn new(d: &WgDims) -> PolyLayout {
        let md = mosaic_dims(d);
        let pin = plain_scratch_len(&md);
        let pout = pin + md.c * md.h * md.w;
        let len = pout + md.o * md.oh * md.ow;
        PolyLayout { md, pin, pout, len }
    }
}

/// Floats of scratch a dilated convolution needs.
pub(super) fn polyphase_scratch_len(d: &WgDims) -> usize {
    PolyLayout::new(d).len
}

/// `dst[S i] = src[i]` for `i < src.len()`.
#[inline(always)]
fn store_by<const S: usize>(dst: &mut [f32], src: &[f32]) {
    let n = src.len().min(dst.len().div_ceil(S));
    if n == 0 {
        return;
    }
    let (dst, src) = (&mut dst[..S * (n - 1) + 1], &src[..n]);
    for i in 0..n {
        dst[S * i] = src[i];
    }
}

/// `dst[stride i] = src[i]` for `i < src.len()` (`dst` long enough).
fn strided_store(dst: &mut [f32], src: &[f32], stride: usize) {
    match stride {
        1 => dst[..src.len()].copy_from_slice(src),
        2 => store_by::<2>(dst, src),
        3 => store_by::<3>(dst, src),
        4 => store_by::<4>(dst, src),
        _ => {
            for (x, &v) in dst.iter_mut().step_by(stride).zip(src) {
                *x = v;
            }
        }
    }
}

/// Writes the mosaic's row `dst` (`MW` floats) from input row `src` (all zeros when
/// `None`): each column block its plane's columns between its zero padding.
#[inline(always)]
fn gather_row<S: Simd>(s: S, d: &WgDims, src: Option<&[f32]>, dst: &mut [f32]) {
    let mut k = 0;
    for ph in blocks(d.w, d.ow, d.pw, d.dw) {
        let block = &mut dst[k..k + ph.outs + 2];
        k += ph.outs + 2;
        match src {
            Some(src) if ph.ins > 0 => {
                let lead = ph.pad.min(block.len());
                let n = ph.ins.min(block.len() - lead);
                let (zl, rest) = block.split_at_mut(lead);
                let (mid, zr) = rest.split_at_mut(n);
                zl.fill(0.0);
                // `src[in0..]` holds `DW (ins - 1) + 1` floats or more.
                strided_load(s, mid, &src[ph.in0..], d.dw);
                zr.fill(0.0);
            }
            _ => block.fill(0.0),
        }
    }
}

/// The dilated convolution `d` (`DH` or `DW` above 1) as one dilation-1 convolution of
/// its phase mosaic; `scratch` holds at least [`polyphase_scratch_len`] floats.
pub(super) fn polyphase(
    level: Level,
    d: WgDims,
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let PolyLayout { md, pin, pout, len } = PolyLayout::new(&d);
    assert!(scratch.len() >= len);
    let (inner, rest) = scratch.split_at_mut(pin);
    let (mosaic, rest) = rest.split_at_mut(pout - pin);
    let mout = &mut rest[..len - pout];
    let (ohw, mhw) = (d.oh * d.ow, md.h * md.w);
    // Gather and scatter split by channels over the pool's threads (`parallel`), each
    // part whole planes: with one thread doing them, the dilated layers ran slower on two
    // threads than on one.
    let threads = crate::pool::num_threads();
    // Gather: row block by row block, each row from its input row (or zeros).
    let per = d.c.div_ceil(threads);
    crate::pool::run_chunks_mut(mosaic, per * mhw, &|i, part| {
        simd::run(
            level,
            PolyGather {
                d: &d,
                md: &md,
                input,
                part,
                first: i * per,
            },
        );
    });
    plain(level, md, mosaic, params, mout, inner, act, None, None);
    // Scatter the valid outputs with stride (DH, DW).
    let mout = &*mout;
    let per = d.o.div_ceil(threads);
    crate::pool::run_chunks_mut(&mut output[..d.o * ohw], per * ohw, &|i, part| {
        simd::run(
            level,
            PolyScatter {
                d: &d,
                md: &md,
                mout,
                part,
                first: i * per,
            },
        );
    });
}

/// The gather of [`polyphase`] for the mosaic planes in `part` (channels from `first`),
/// as one isolated function ([`Simd::vectorize`]).
struct PolyGather<'a> {
    d: &'a WgDims,
    md: &'a WgDims,
    input: &'a [f32],
    part: &'a mut [f32],
    first: usize,
}

impl WithSimd for PolyGather<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let PolyGather {
            d,
            md,
            input,
            part,
            first,
        } = self;
        let (hw, mhw) = (d.h * d.w, md.h * md.w);
        for (ch, dst) in (first..).zip(part.chunks_exact_mut(mhw)) {
            let plane = &input[ch * hw..(ch + 1) * hw];
            let mut rows = dst.chunks_exact_mut(md.w);
            for ph in blocks(d.h, d.oh, d.ph, d.dh) {
                for (j, row) in rows.by_ref().take(ph.outs + 2).enumerate() {
                    let r = j.wrapping_sub(ph.pad);
                    let src = (r < ph.ins).then(|| {
                        let y = ph.in0 + d.dh * r;
                        &plane[y * d.w..(y + 1) * d.w]
                    });
                    gather_row(s, d, src, row);
                }
            }
        }
    }
}

/// The scatter of [`polyphase`] for the output planes in `part` (channels from
/// `first`): the valid outputs of the mosaic with stride `(DH, DW)`, as one isolated
/// function ([`Simd::vectorize`]).
struct PolyScatter<'a> {
    d: &'a WgDims,
    md: &'a WgDims,
    mout: &'a [f32],
    part: &'a mut [f32],
    first: usize,
}

impl WithSimd for PolyScatter<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let PolyScatter {
            d,
            md,
            mout,
            part,
            first,
        } = self;
        let (ohw, mohw) = (d.oh * d.ow, md.oh * md.ow);
        // Column dilation 2 with both column phases: each output row is their blocks'
        // outputs interleaved.
        let cols: [Option<AxisPhase>; 2] = {
            let mut it = blocks(d.w, d.ow, d.pw, d.dw);
            [it.next(), it.next()]
        };
        let pair = match cols {
            [Some(a), Some(b)] if d.dw == 2 && (a.out0, b.out0) == (0, 1) => Some((a, b)),
            _ => None,
        };
        for (o, plane) in (first..).zip(part.chunks_exact_mut(ohw)) {
            let src = &mout[o * mohw..(o + 1) * mohw];
            let mut r0 = 0;
            for rp in blocks(d.h, d.oh, d.ph, d.dh) {
                for j in 0..rp.outs {
                    let srow = &src[(r0 + j) * md.ow..(r0 + j + 1) * md.ow];
                    let drow = &mut plane[(rp.out0 + d.dh * j) * d.ow..][..d.ow];
                    if let Some((a, b)) = pair {
                        let (even, odd) = (&srow[..a.outs], &srow[a.outs + 2..][..b.outs]);
                        interleave_into(s, even, odd, drow);
                        continue;
                    }
                    let mut c0 = 0;
                    for cp in blocks(d.w, d.ow, d.pw, d.dw) {
                        let vals = &srow[c0..c0 + cp.outs];
                        strided_store(&mut drow[cp.out0..], vals, d.dw);
                        c0 += cp.outs + 2;
                    }
                }
                r0 += rp.outs + 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input index belongs to one phase plane, every output index to one output
    /// phase, and each phase's taps are the dilated convolution's.
    #[test]
    fn phases_partition_the_axis() {
        for d in 1..=4usize {
            for n in 1..=12 {
                for p in 0..=2 * d + 1 {
                    for pe in 0..=2 * d + 1 {
                        let Some(out) = (n + p + pe).checked_sub(2 * d) else {
                            continue;
                        };
                        let mut seen_out = vec![0; out];
                        for a in 0..d {
                            let ph = AxisPhase::new(a, n, out, p, d);
                            assert!(ph.in0 < d);
                            for j in 0..ph.outs {
                                let y = ph.out0 + d * j;
                                seen_out[y] += 1;
                                for k in 0..3 {
                                    // Plane row j + k - pad is input row y + d k - p.
                                    let want = (y + d * k) as isize - p as isize;
                                    let r = (j + k) as isize - ph.pad as isize;
                                    let got = ph.in0 as isize + d as isize * r;
                                    assert_eq!(got, want);
                                    let inside = (0..n as isize).contains(&want);
                                    assert_eq!(inside, (0..ph.ins as isize).contains(&r));
                                }
                            }
                        }
                        assert!(seen_out.iter().all(|&s| s == 1), "{d} {n} {p} {pe}");
                    }
                }
            }
        }
    }
}
