//! Transposed convolutions through the convolution engine: one stride-1 convolution over
//! all the phases, then a rearrangement.
//!
//! Along one axis (input size `n`, kernel `k`, stride `s`, padding `p`, dilation 1), the
//! outputs `y = s*t + r` of phase `r < s` receive the taps `ky = (r + p) % s + s*j`, each
//! from input `t + (r + p) / s - j`. When `s` divides `k`, every phase has the same
//! `m = k / s` taps, at the input offsets `e_r - m + 1 ..= e_r` (`e_r = (r + p) / s`),
//! which differ between phases only by a shift of `e_r - e_0` (0 or 1). So one stride-1
//! convolution with an `m`-tap kernel and `m - 1 - e_0` zeros of padding on both sides
//! computes every phase at once, `s` output channels per transposed-conv channel and
//! axis: its output `u = t + e_r - e_0` is phase `r`'s output `t`. The phase of output
//! channel `(o * SH + ry) * SW + rx` uses the taps `ky(ry, a) = (ry + PH) % SH + SH*(MH - 1
//! - a)` (and the same along the width): [`phase_kernel_params`] builds its weights from
//! PyTorch's, [`phase_axis`] gives the convolution's geometry and
//! [`phase_to_space`] puts each phase's outputs in their place (a copy).
//!
//! That runs the multiplications at the convolution engine's speed (register-blocked
//! tiles over packed weights, the `parallel` splits) where the phase kernel of
//! [`conv_transpose2d`](super::conv_transpose2d) runs a few channels a vector; the price
//! is the convolution's output in scratch memory (`O*SH*SW` planes of the phase
//! geometry) and the copy. Every tap is one of the layer's own (no zero weights), each
//! output one sum of the same products as PyTorch's. `k2 s2` (U-Net's upsampling) is the
//! special case `m = 1`: a 1x1 convolution and a depth-to-space copy.

#[cfg(feature = "alloc")]
use crate::kernels::norm::Affine;
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{vec, vec::Vec};

/// One axis of a transposed convolution run as a stride-1 convolution over its phases
/// (see the module docs): what [`phase_axis`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseAxis {
    /// Taps of the convolution (and of each phase): kernel / stride.
    pub taps: usize,
    /// The convolution's padding, on both sides: `taps - 1 - padding / stride`.
    pub pad: usize,
    /// The convolution's output size: `input + 2 pad - taps + 1`.
    pub size: usize,
}

/// The phase convolution of one transposed-conv axis (input size `n`, output size `out`,
/// kernel `k`, stride `s`, padding `p`, dilation `d`), if there is one: dilation 1, `s`
/// divides `k`, and every phase's outputs lie inside the convolution's output (an output
/// padding can ask for a row past it: then `None`, and the phase kernel runs the layer).
pub fn phase_axis(
    n: usize,
    out: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
) -> Option<PhaseAxis> {
    if n == 0 || k == 0 || s == 0 || d != 1 || !k.is_multiple_of(s) {
        return None;
    }
    let taps = k / s;
    let e0 = p / s;
    let pad = (taps - 1).checked_sub(e0)?;
    let size = (n + 2 * pad + 1).checked_sub(taps).filter(|&u| u > 0)?;
    fits(s, size, out, p).then_some(PhaseAxis { taps, pad, size })
}

/// Whether every phase `r` of an axis of stride `s` and padding `p` finds its `out`
/// outputs in the `m` rows of the phase convolution, from its shift `(r + p) / s - p / s`.
fn fits(s: usize, m: usize, out: usize, p: usize) -> bool {
    (0..s.min(out)).all(|r| (out - r).div_ceil(s) + (r + p) / s - p / s <= m)
}

#[cfg(feature = "alloc")]
/// The parameters of the stride-1 convolution that computes every phase of a
/// transposed convolution (see the module docs; [`phase_axis`] must accept both axes),
/// from the PyTorch weight `[in, out, kh, kw]` (one group, dilation 1): `out * sh * sw`
/// output channels of `kh / sh` by `kw / sw` taps, channel `(o * sh + ry) * sw + rx` with
/// the taps of phase `(ry, rx)` of `o` and bias `bias[o]` (batch norm `bn`, which follows
/// the transposed conv, folded in per `o`, in f64).
///
/// The compiler runs it as [`conv2d`](crate::kernels::conv::conv2d) into scratch memory,
/// then [`phase_to_space`].
///
/// # Panics
///
/// If a length does not match the dimensions, or a stride does not divide its kernel
/// (the caller has checked them).
#[allow(clippy::too_many_arguments)]
pub fn phase_kernel_params(
    in_channels: usize,
    out: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&Affine>,
) -> crate::kernels::conv::ConvParams {
    assert!(
        sh > 0 && sw > 0 && kh.is_multiple_of(sh) && kw.is_multiple_of(sw),
        "phase convolution: strides {sh}x{sw} must divide the kernel {kh}x{kw}"
    );
    assert_eq!(weight.len(), in_channels * out * kh * kw, "weight length");
    let (mh, mw) = (kh / sh, kw / sw);
    let taps = mh * mw;
    let outs = out * sh * sw;
    let mut w = vec![0.0f32; outs * in_channels * taps];
    let mut b = vec![0.0f32; outs];
    for o in 0..out {
        let (scale, shift) = match bn {
            Some(bn) => (f64::from(bn.scale[o]), f64::from(bn.shift[o])),
            None => (1.0, 0.0),
        };
        let bias_o = bias.map_or(0.0, |b| f64::from(b[o]));
        for ry in 0..sh {
            for rx in 0..sw {
                let q = (o * sh + ry) * sw + rx;
                b[q] = (bias_o * scale + shift) as f32;
                for c in 0..in_channels {
                    for a in 0..mh {
                        let ky = (ry + ph) % sh + sh * (mh - 1 - a);
                        for bx in 0..mw {
                            let kx = (rx + pw) % sw + sw * (mw - 1 - bx);
                            let v = weight[((c * out + o) * kh + ky) * kw + kx];
                            w[(q * in_channels + c) * taps + a * mw + bx] =
                                (f64::from(v) * scale) as f32;
                        }
                    }
                }
            }
        }
    }
    crate::kernels::conv::ConvParams::from_torch(outs, in_channels, mh, mw, &w, Some(&b), None)
}

#[cfg(feature = "alloc")]
/// [`phase_kernel_params`] of a transposed convolution whose windows do not overlap
/// (`stride = kernel`, no padding: U-Net's and FCN's `k2 s2` upsampling): a 1x1
/// convolution to `out * kh * kw` channels, channel `(o * kh + ky) * kw + kx` with the
/// weights `w[.][o][ky][kx]`; [`depth_to_space`] then places its outputs.
///
/// # Panics
///
/// If a length does not match the dimensions (the caller has checked them).
pub fn stride_kernel_params(
    in_channels: usize,
    out: usize,
    kh: usize,
    kw: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&Affine>,
) -> crate::kernels::conv::ConvParams {
    phase_kernel_params(in_channels, out, kh, kw, kh, kw, 0, 0, weight, bias, bn)
}

/// One axis of [`phase_to_space`]: stride, phase-convolution size, output size, padding
/// (0 when each phase's output `t` is its convolution's row `t`).
#[derive(Clone, Copy)]
pub(super) struct Axis {
    /// Stride.
    pub(super) s: usize,
    /// Rows (or columns) of a phase plane.
    pub(super) m: usize,
    /// Output rows (or columns).
    pub(super) out: usize,
    /// The transposed convolution's padding.
    pub(super) p: usize,
}

impl Axis {
    /// Where output `y` comes from: its phase and the convolution's row or column.
    #[inline(always)]
    fn source(self, y: usize) -> (usize, usize) {
        let r = y % self.s;
        (r, y / self.s + (r + self.p) / self.s - self.p / self.s)
    }
}

/// How the phase planes lie in the scratch memory: by channel, then phase (the one
/// convolution over every phase: plane `(o * SH + ry) * SW + rx`), or by phase, then
/// channel (one convolution per phase, `split.rs`: plane `(ry * SW + rx) * O + o`).
#[derive(Clone, Copy)]
pub(super) enum Order {
    /// Plane `(o * SH + ry) * SW + rx`.
    Channels,
    /// Plane `(ry * SW + rx) * O + o` of `O` channels in all.
    Phases(usize),
}

/// [`phase_to_space_dyn`] of `o` channels, with the `parallel` feature and a large output
/// by channels over the threads (each part reads the phase planes of its channels: in
/// channel order, those the convolution before wrote on the same core when it split by
/// output channels).
pub(super) fn phase_to_space_split(
    o: usize,
    ah: Axis,
    aw: Axis,
    order: Order,
    input: &[f32],
    output: &mut [f32],
) {
    #[cfg(feature = "parallel")]
    {
        let out_plane = ah.out * aw.out;
        let split = crate::kernels::split_planes(o, out_plane, output, &|first, out| {
            let planes = out.len() / out_plane;
            phase_to_space_dyn(first..first + planes, ah, aw, order, input, out);
        });
        if split {
            return;
        }
    }
    phase_to_space_dyn(0..o, ah, aw, order, input, output);
}

/// [`phase_to_space`] of the channels `chans` (into `output`, from its start) with the
/// dimensions as runtime values; `input` holds every channel's planes.
fn phase_to_space_dyn(
    chans: core::ops::Range<usize>,
    ah: Axis,
    aw: Axis,
    order: Order,
    input: &[f32],
    output: &mut [f32],
) {
    let (sh, sw) = (ah.s, aw.s);
    let output = &mut output[..chans.len() * ah.out * aw.out];
    // Where each phase column's row starts (its shift) and how many outputs it gives.
    let first = |rx: usize| aw.source(rx).1;
    for (oc, out_plane) in chans.zip(output.chunks_exact_mut(ah.out * aw.out)) {
        for (y, dst) in out_plane.chunks_exact_mut(aw.out).enumerate() {
            let (ry, sy) = ah.source(y);
            // Row `sy` of phase `(ry, rx)`'s plane, from the phase's first column on.
            let src = |rx: usize| {
                let q = match order {
                    Order::Channels => (oc * sh + ry) * sw + rx,
                    Order::Phases(o) => (ry * sw + rx) * o + oc,
                };
                let at = (q * ah.m + sy) * aw.m;
                &input[at + first(rx)..at + aw.m]
            };
            match sw {
                1 => dst.copy_from_slice(&src(0)[..aw.out]),
                2 => {
                    let (a, b) = (src(0), src(1));
                    let mut pairs = dst.chunks_exact_mut(2);
                    for ((pair, &x0), &x1) in (&mut pairs).zip(a).zip(b) {
                        pair[0] = x0;
                        pair[1] = x1;
                    }
                    if let [last] = pairs.into_remainder() {
                        *last = a[aw.out / 2];
                    }
                }
                _ => {
                    for rx in 0..sw.min(aw.out) {
                        let row = src(rx);
                        for (d, &v) in dst[rx..].iter_mut().step_by(sw).zip(row) {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// Places the outputs of the phase convolution of a transposed convolution (see the
/// module docs and [`phase_kernel_params`]): `input` holds `O*SH*SW` planes of `MH x MW`
/// (the [`phase_axis`] sizes), `output` gets `O` planes of `OH x OW`, output `(y, x)` of
/// channel `o` from plane `(o*SH + y % SH)*SW + x % SW` at row `y / SH + (y % SH + PH) /
/// SH - PH / SH` and the column likewise.
///
/// # Panics
///
/// If a slice is too short, or [`phase_axis`] does not accept these sizes.
pub fn phase_to_space<
    const O: usize,
    const SH: usize,
    const SW: usize,
    const MH: usize,
    const MW: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &[f32],
    output: &mut [f32],
) {
    const { assert!(O > 0 && SH > 0 && SW > 0 && MH > 0 && MW > 0 && OH > 0 && OW > 0) }
    assert!(
        fits(SH, MH, OH, PH) && fits(SW, MW, OW, PW),
        "phase_to_space: {OH}x{OW} outputs do not come from {MH}x{MW} phase planes"
    );
    let ah = Axis {
        s: SH,
        m: MH,
        out: OH,
        p: PH,
    };
    let aw = Axis {
        s: SW,
        m: MW,
        out: OW,
        p: PW,
    };
    phase_to_space_split(O, ah, aw, Order::Channels, input, output);
}

/// Depth to space: `output[o][y*KH + ky][x*KW + kx] = input[(o*KH + ky)*KW + kx][y][x]`,
/// the second half of a non-overlapping transposed convolution (see
/// [`stride_kernel_params`]): [`phase_to_space`] without padding. `input` holds
/// `O*KH*KW*H*W` values, `output` `O*H*KH*W*KW`.
///
/// # Panics
///
/// If a slice is too short.
pub fn depth_to_space<
    const O: usize,
    const KH: usize,
    const KW: usize,
    const H: usize,
    const W: usize,
>(
    input: &[f32],
    output: &mut [f32],
) {
    const { assert!(O > 0 && KH > 0 && KW > 0 && H > 0 && W > 0) }
    let ah = Axis {
        s: KH,
        m: H,
        out: H * KH,
        p: 0,
    };
    let aw = Axis {
        s: KW,
        m: W,
        out: W * KW,
        p: 0,
    };
    phase_to_space_split(O, ah, aw, Order::Channels, input, output);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kernels::activation::Act;
    use crate::kernels::conv::{conv2d_dyn, ConvParams};
    use crate::kernels::geometry::Dims2d;
    use crate::kernels::reference::{self as r, Rng, ACTS};
    use crate::kernels::simd;

    #[test]
    fn axis_geometry() {
        // k4 s2 p1 (DCGAN, U-Net): 2 taps, padding 1, one row more than the input.
        assert_eq!(
            phase_axis(64, 128, 4, 2, 1, 1),
            Some(PhaseAxis {
                taps: 2,
                pad: 1,
                size: 65
            })
        );
        // k2 s2: a 1x1 convolution.
        let one = PhaseAxis {
            taps: 1,
            pad: 0,
            size: 7,
        };
        assert_eq!(phase_axis(7, 14, 2, 2, 0, 1), Some(one));
        // Its output padding asks for row 7 of a 7-row convolution.
        assert_eq!(phase_axis(7, 15, 2, 2, 0, 1), None);
        // k4 s2 p1 with output padding 1: phase 0's 65th row is the convolution's last.
        assert_eq!(phase_axis(8, 17, 4, 2, 1, 1).map(|a| a.size), Some(9));
        // k16 s8 p4 (FCN's x8): 2 taps, padding 1.
        assert_eq!(
            phase_axis(5, 40, 16, 8, 4, 1).map(|a| (a.taps, a.pad)),
            Some((2, 1))
        );
        // Stride 1: an ordinary convolution with the kernel flipped.
        assert_eq!(
            phase_axis(5, 5, 3, 1, 1, 1).map(|a| (a.taps, a.pad, a.size)),
            Some((3, 1, 5))
        );
        // Not divisible, dilated: the phase kernel.
        assert_eq!(phase_axis(5, 10, 3, 2, 1, 1), None);
        assert_eq!(phase_axis(5, 12, 2, 2, 0, 2), None);
    }

    /// One axis: (input, output, kernel, stride, padding).
    pub(in crate::kernels::conv_transpose) type Ax = (usize, usize, usize, usize, usize);

    /// The axis geometries `takes` accepts (input, output, kernel, stride, padding):
    /// sizes 1..7, strides 1..4, the kernels `kernels(stride)`, every padding and output
    /// padding PyTorch allows.
    pub(in crate::kernels::conv_transpose) fn axes(
        kernels: impl Fn(usize) -> Vec<usize>,
        takes: impl Fn(Ax) -> bool,
    ) -> Vec<Ax> {
        let mut v = Vec::new();
        for n in [1, 2, 3, 5, 7] {
            for s in 1..=4 {
                for k in kernels(s) {
                    for p in 0..k {
                        for op in 0..s {
                            let full = (n - 1) * s + k + op;
                            if full > 2 * p && takes((n, full - 2 * p, k, s, p)) {
                                v.push((n, full - 2 * p, k, s, p));
                            }
                        }
                    }
                }
            }
        }
        v
    }

    /// `check` on every geometry of `axes` on each axis, paired with a random one on the
    /// other, random channels, activation and bias.
    pub(in crate::kernels::conv_transpose) fn sweep(
        axes: &[Ax],
        seed: u64,
        check: impl Fn(&mut Rng, (usize, usize), Ax, Ax, Act, bool),
    ) {
        let mut rng = Rng::new(seed);
        for &a in axes {
            let b = axes[rng.below(axes.len())];
            for (ah, aw) in [(a, b), (b, a)] {
                let ch = [(1, 1), (3, 2), (4, 5), (17, 3)][rng.below(4)];
                let act = ACTS[rng.below(ACTS.len())];
                let bias = rng.below(4) != 0;
                check(&mut rng, ch, ah, aw, act, bias);
            }
        }
    }

    /// The phase convolution and [`phase_to_space`] against the f64 reference of the
    /// transposed convolution, at every SIMD level.
    fn check(rng: &mut Rng, (c, o): (usize, usize), ah: Ax, aw: Ax, act: Act, bias: bool) {
        let (gh, gw) = (
            phase_axis(ah.0, ah.1, ah.2, ah.3, ah.4, 1).unwrap(),
            phase_axis(aw.0, aw.1, aw.2, aw.3, aw.4, 1).unwrap(),
        );
        let x = rng.vec(c * ah.0 * aw.0, -1.0, 1.0);
        let w = rng.vec(c * o * ah.2 * aw.2, -1.0, 1.0);
        let b = rng.vec(o, -0.5, 0.5);
        let b = bias.then_some(&b[..]);
        let ct = r::CtDims {
            c,
            o,
            g: 1,
            h: (ah.0, ah.1, ah.2, ah.3, ah.4, 1),
            w: (aw.0, aw.1, aw.2, aw.3, aw.4, 1),
        };
        let want = r::conv_transpose2d(&ct, &x, &w, b, act);
        let p: ConvParams =
            phase_kernel_params(c, o, ah.2, aw.2, ah.3, aw.3, ah.4, aw.4, &w, b, None);
        let outs = o * ah.3 * aw.3;
        let d = Dims2d {
            c,
            h: ah.0,
            w: aw.0,
            o: outs,
            oh: gh.size,
            ow: gw.size,
            kh: gh.taps,
            kw: gw.taps,
            sh: 1,
            sw: 1,
            ph: gh.pad,
            pw: gw.pad,
            dh: 1,
            dw: 1,
            g: 1,
        };
        let n = o * ah.1 * aw.1;
        let (axh, axw) = (
            Axis {
                s: ah.3,
                m: gh.size,
                out: ah.1,
                p: ah.4,
            },
            Axis {
                s: aw.3,
                m: gw.size,
                out: aw.1,
                p: aw.4,
            },
        );
        for level in simd::test_levels() {
            let mut mid = vec![f32::NAN; outs * gh.size * gw.size];
            conv2d_dyn(level, d, &x, &p, &mut mid, &mut [], act);
            let mut got = vec![7.0; n + 1];
            phase_to_space_split(o, axh, axw, Order::Channels, &mid, &mut got);
            assert_eq!(got[n], 7.0, "wrote past the output: {ah:?} {aw:?}");
            r::assert_close(&got[..n], &want, &(ah, aw, c, o, act, level));
        }
    }

    /// Every axis geometry on each axis, paired with a random one on the other, random
    /// channels and activation.
    #[test]
    fn sweep_axes_against_reference() {
        // Kernels of 1..3 times the stride.
        let axes = axes(
            |s| (1..=3).map(|m| m * s).collect(),
            |(n, out, k, s, p)| phase_axis(n, out, k, s, p, 1).is_some(),
        );
        assert!(axes.len() > 150, "{}", axes.len());
        sweep(&axes, 211, check);
    }

    /// Decoder-sized layers: k4 s2 p1 with enough channels for whole panels and the
    /// engine's splits, k2 s2, FCN's x8 (k16 s8 p4), 1-D (H = 1).
    #[test]
    fn layers_against_reference() {
        let mut rng = Rng::new(212);
        let one = (1, 1, 1, 1, 0);
        for (ch, ah, aw) in [
            ((32, 16), (12, 24, 4, 2, 1), (12, 24, 4, 2, 1)),
            ((8, 40), (9, 19, 4, 2, 1), (10, 20, 4, 2, 1)),
            ((24, 16), (6, 12, 2, 2, 0), (7, 14, 2, 2, 0)),
            ((5, 3), (3, 24, 16, 8, 4), (4, 32, 16, 8, 4)),
            ((6, 20), one, (100, 200, 4, 2, 1)),
            ((16, 8), one, (50, 150, 3, 3, 0)),
        ] {
            check(&mut rng, ch, ah, aw, Act::RELU, true);
        }
    }

    /// Split by channels over 2 and 3 threads, the placement moves every value as on one
    /// thread (k4 s2 p1 and k2 s2 shapes large enough to split).
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_place_as_one() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(214);
        for (o, s, m, out, p) in [(32, 2, 33, 64, 1), (17, 2, 40, 80, 0), (5, 4, 51, 200, 2)] {
            let ax = Axis { s, m, out, p };
            let mid = rng.vec(o * s * s * m * m, -1.0, 1.0);
            r::assert_threads_match_one(o * out * out, &(o, s, m, out, p), |y| {
                phase_to_space_split(o, ax, ax, Order::Channels, &mid, y)
            });
        }
    }

    /// The phase convolution folds a batch norm like the phase kernel's parameters, and
    /// the const-generic [`phase_to_space`] and [`depth_to_space`] place what the
    /// runtime-sized one does.
    #[test]
    fn folded_bn_and_const_instances() {
        use crate::kernels::conv::conv2d;
        use crate::kernels::conv_transpose::{conv_transpose2d, ConvTransposeParams};
        let mut rng = Rng::new(213);
        const C: usize = 6;
        const O: usize = 5;
        let x = rng.vec(C * 5 * 6, -1.0, 1.0);
        let w = rng.vec(C * O * 16, -0.5, 0.5);
        let b = rng.vec(O, -0.5, 0.5);
        let bn = Affine {
            scale: rng.vec(O, 0.5, 1.5).into(),
            shift: rng.vec(O, -0.2, 0.2).into(),
        };
        // 5x6 -> k4 s2 p1: 10x12, through a 6x7 phase convolution of 2x2 taps.
        let folded = ConvTransposeParams::from_torch(C, O, 4, 4, 1, &w, Some(&b), Some(&bn));
        let mut want = vec![0.0; O * 120];
        conv_transpose2d::<C, 5, 6, O, 10, 12, 4, 4, 2, 2, 1, 1, 1, 1, 1>(
            &x,
            &folded,
            &mut want,
            Act::TANH,
        );
        let p = phase_kernel_params(C, O, 4, 4, 2, 2, 1, 1, &w, Some(&b), Some(&bn));
        let mut mid = vec![0.0; O * 4 * 42];
        conv2d::<C, 5, 6, { O * 4 }, 6, 7, 2, 2, 1, 1, 1, 1, 1, 1, 1>(&x, &p, &mut mid, Act::TANH);
        let mut got = vec![0.0; O * 120];
        phase_to_space::<O, 2, 2, 6, 7, 10, 12, 1, 1>(&mid, &mut got);
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        r::assert_close(&got, &want, &"k4 s2 p1, folded bn");

        // k3 s3 (no overlap): depth to space.
        let w = rng.vec(C * O * 9, -0.5, 0.5);
        let folded = ConvTransposeParams::from_torch(C, O, 3, 3, 1, &w, Some(&b), Some(&bn));
        let mut want = vec![0.0; O * 270];
        conv_transpose2d::<C, 5, 6, O, 15, 18, 3, 3, 3, 3, 0, 0, 1, 1, 1>(
            &x,
            &folded,
            &mut want,
            Act::SILU,
        );
        let p = stride_kernel_params(C, O, 3, 3, &w, Some(&b), Some(&bn));
        let mut mid = vec![0.0; O * 9 * 30];
        conv2d::<C, 5, 6, { O * 9 }, 5, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1>(&x, &p, &mut mid, Act::SILU);
        let mut got = vec![0.0; O * 270];
        depth_to_space::<O, 3, 3, 5, 6>(&mid, &mut got);
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        r::assert_close(&got, &want, &"k3 s3, folded bn");
    }
}
