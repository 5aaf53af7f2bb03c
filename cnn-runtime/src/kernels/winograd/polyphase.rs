//! Dilated 3x3 stride-1 convolutions as `DH * DW` dilation-1 Winograd convolutions on
//! the polyphase components of the input.
//!
//! Output pixel `(y, x)` of a 3x3 convolution with dilation `(DH, DW)` reads input rows
//! `y - PH + DH ky` and columns `x - PW + DW kx`: all congruent to `y - PH` modulo `DH`
//! (`x - PW` modulo `DW`). So the outputs of phase `(a, b)` (rows `a + DH j`, columns
//! `b + DW i`) read only the input phase plane `(a', b')` with `a - PH = DH q + a'`
//! (`0 <= a' < DH`, floor division): output phase row `j` reads plane row `j + ky + q`,
//! a dilation-1 3x3 convolution of the plane with top padding `-q` (`q <= 0`, as
//! `a < DH` and `PH >= 0`). Each phase is gathered into a buffer (all channels), run
//! through the dilation-1 Winograd (the same transformed weights), and its output
//! scattered back with stride `(DH, DW)`. Bias and activation are applied by the inner
//! convolution: every output pixel belongs to exactly one phase.
//!
//! A phase plane may be empty (all its taps in the padding): the inner convolution then
//! reads only zeros and writes `act(bias)`. Phases without output pixels (`OH < DH`)
//! are skipped.

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

/// The dilation-1 dimensions of phase `(a, b)` of `d`, and its row and column geometry.
fn phase_dims(d: &WgDims, a: usize, b: usize) -> (WgDims, AxisPhase, AxisPhase) {
    let r = AxisPhase::new(a, d.h, d.oh, d.ph, d.dh);
    let c = AxisPhase::new(b, d.w, d.ow, d.pw, d.dw);
    let pd = WgDims {
        c: d.c,
        h: r.ins,
        w: c.ins,
        o: d.o,
        oh: r.outs,
        ow: c.outs,
        ph: r.pad,
        pw: c.pad,
        dh: 1,
        dw: 1,
    };
    (pd, r, c)
}

/// Where the buffers of a polyphase convolution start in its scratch.
struct PolyLayout {
    /// Floats of the inner convolution's scratch (the largest phase's), first.
    inner: usize,
    /// Offset of the gathered input phase planes (`C * ceil(H/DH) * ceil(W/DW)`).
    pin: usize,
    /// Offset of a phase's output (`O * ceil(OH/DH) * ceil(OW/DW)`).
    pout: usize,
    /// Total floats.
    len: usize,
}

impl PolyLayout {
    fn new(d: &WgDims) -> PolyLayout {
        let mut inner = 0;
        for a in 0..d.dh {
            for b in 0..d.dw {
                let (pd, ..) = phase_dims(d, a, b);
                if pd.oh > 0 && pd.ow > 0 {
                    inner = inner.max(plain_scratch_len(&pd));
                }
            }
        }
        let pin = inner;
        let pout = pin + d.c * d.h.div_ceil(d.dh) * d.w.div_ceil(d.dw);
        let len = pout + d.o * d.oh.div_ceil(d.dh) * d.ow.div_ceil(d.dw);
        PolyLayout {
            inner,
            pin,
            pout,
            len,
        }
    }
}

/// Floats of scratch a dilated convolution needs.
pub(super) fn polyphase_scratch_len(d: &WgDims) -> usize {
    PolyLayout::new(d).len
}

/// The dilated convolution `d` (`DH` or `DW` above 1) phase by phase; `scratch` holds at
/// least [`polyphase_scratch_len`] floats.
pub(super) fn polyphase(
    level: Level,
    d: WgDims,
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let lay = PolyLayout::new(&d);
    assert!(scratch.len() >= lay.len);
    let (inner, rest) = scratch.split_at_mut(lay.pin);
    let (pin, pout) = rest.split_at_mut(lay.pout - lay.pin);
    debug_assert_eq!(inner.len(), lay.inner);
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    for a in 0..d.dh {
        for b in 0..d.dw {
            let (pd, r, c) = phase_dims(&d, a, b);
            if pd.oh == 0 || pd.ow == 0 {
                continue;
            }
            // Gather the input phase planes of all channels.
            let pin = &mut pin[..pd.c * pd.h * pd.w];
            if !pin.is_empty() {
                for (ch, dst) in pin.chunks_exact_mut(pd.h * pd.w).enumerate() {
                    let plane = &input[ch * hw..(ch + 1) * hw];
                    for (i, row) in dst.chunks_exact_mut(pd.w).enumerate() {
                        let src = &plane[(r.in0 + d.dh * i) * d.w..][c.in0..];
                        for (j, x) in row.iter_mut().enumerate() {
                            *x = src[d.dw * j];
                        }
                    }
                }
            }
            let pout = &mut pout[..pd.o * pd.oh * pd.ow];
            plain(level, pd, pin, params, pout, inner, act);
            // Scatter the phase's output with stride (DH, DW).
            for (o, src) in pout.chunks_exact(pd.oh * pd.ow).enumerate() {
                let plane = &mut output[o * ohw..(o + 1) * ohw];
                for (i, row) in src.chunks_exact(pd.ow).enumerate() {
                    let dst = &mut plane[(r.out0 + d.dh * i) * d.ow..][c.out0..];
                    for (j, &x) in row.iter().enumerate() {
                        dst[d.dw * j] = x;
                    }
                }
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
