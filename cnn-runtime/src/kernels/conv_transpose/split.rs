//! Transposed convolutions as one convolution per phase, for the kernels the stride does
//! not divide (`k3 s2 p1` with output padding 1: CycleGAN's and most autoencoders'
//! upsampling) and dilated ones.
//!
//! Along one axis (kernel `k`, stride `s`, padding `p`, dilation 1), the outputs
//! `y = s*t + r` of phase `r < s` receive the taps `ky = (r + p) % s + s*j` below `k`,
//! each from input `t + e_r - j` (`e_r = (r + p) / s`): `m_r = ceil((k - (r + p) % s) /
//! s)` taps, a count that differs between phases when `s` does not divide `k` (`k3 s2`:
//! 1 and 2). The one convolution over every phase (`phases.rs`) would need zero taps
//! there, 1.78x the multiplications for `k3 s2` and `0 * inf = NaN` where PyTorch gives
//! `inf`; so each phase gets its own stride-1 convolution of `m_r` taps (only the
//! layer's own weights) and top padding `m_r - 1 - e_r`, so that its output `t` is row
//! `t`, computing `ceil(out / s)` rows (phase 0's count; a later phase's extra row is
//! never read). The convolutions write their planes phase after phase into scratch
//! memory ([`phase_params`] builds their weights, [`phase_split_axis`] and
//! [`phase_taps`] give their geometry); [`phases_to_space`] then puts each output in its
//! place, as the one convolution's outputs are.
//!
//! With a dilation `d` the kernel indices reaching a phase are `step = s / gcd(s, d)`
//! apart and their inputs `d / gcd(s, d)` apart: the phase's convolution has that
//! dilation ([`phase_taps`]; a stride-1 transposed convolution is one convolution of
//! the flipped kernel at the same dilation). Where `gcd(s, d) > 1` some phases get no
//! tap and the split does not apply.

use super::phases::{phase_to_space_split, Axis, Order};
#[cfg(feature = "alloc")]
use crate::kernels::norm::Affine;
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{vec, vec::Vec};

/// Phase `r`'s convolution along one axis of a transposed convolution (see
/// [`phase_taps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseTaps {
    /// Its taps (kernel size along the axis).
    pub taps: usize,
    /// Its top (left) padding.
    pub pad: usize,
    /// Its dilation: `d / gcd(s, d)`.
    pub dilation: usize,
    /// The first kernel index that reaches the phase.
    pub first: usize,
    /// The distance between the kernel indices that reach it: `s / gcd(s, d)`. Tap `a`
    /// of the phase's convolution is kernel index `first + step * (taps - 1 - a)`.
    pub step: usize,
}

/// The greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Phase `r`'s convolution along one axis of a transposed convolution (kernel `k`, stride
/// `s`, padding `p`, dilation `d`), if it has taps and its padding is not negative (a
/// padding past the kernel's reach).
///
/// Output `y = s*t + r` receives kernel index `j` from input `(y + p - j*d) / s` where
/// that divides: `j = first, first + step, ..` (`step = s / gcd(s, d)`), from inputs `t +
/// e, t + e - d/g, ..` (`e = (r + p - first*d) / s`, `g = gcd(s, d)`): a stride-1
/// convolution of dilation `d/g` over the taps in reverse order, padded by `(taps - 1)
/// * d/g - e`. A phase with `(r + p) % g != 0` receives no tap.
pub fn phase_taps(k: usize, s: usize, p: usize, d: usize, r: usize) -> Option<PhaseTaps> {
    if s == 0 || d == 0 || k == 0 {
        return None;
    }
    let g = gcd(s, d);
    let (step, dilation) = (s / g, d / g);
    // The first kernel index whose tap lands on the phase: `(r + p - j*d) % s == 0`.
    let first = (0..step.min(k)).find(|&j| (r + p + j * (s - d % s)).is_multiple_of(s))?;
    let taps = (k - first).div_ceil(step);
    // `e = (r + p - first*d) / s`, possibly negative (exact: `first` solves it).
    let e = (r + p) as i128 - (first * d) as i128;
    let e = e.div_euclid(s as i128);
    let pad = ((taps - 1) as i128 * dilation as i128 - e)
        .try_into()
        .ok()?;
    Some(PhaseTaps {
        taps,
        pad,
        dilation,
        first,
        step,
    })
}

/// The rows (or columns) of every phase's convolution along one axis of a transposed
/// convolution (input `n`, output `out`, kernel `k`, stride `s`, padding `p`, dilation
/// `d`): `ceil(out / s)`, if every phase has one ([`phase_taps`]).
pub fn phase_split_axis(
    n: usize,
    out: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
) -> Option<usize> {
    let ok = n > 0 && out > 0 && s > 0 && (0..s).all(|r| phase_taps(k, s, p, d, r).is_some());
    ok.then(|| out.div_ceil(s))
}

#[cfg(feature = "alloc")]
/// The parameters of phase `(ry, rx)`'s convolution of a transposed convolution (one
/// group, [`phase_split_axis`] accepting both axes) from the PyTorch weight `[in, out,
/// kh, kw]` (kernel `kh x kw`, strides, paddings, dilations, phase `(ry, rx)`): `out`
/// channels of `mh x mw` taps ([`phase_taps`] along each axis), tap `(a, b)` the weight
/// `[.][o][first_y + step_y*(mh - 1 - a)][first_x + step_x*(mw - 1 - b)]`, the bias and
/// the batch norm `bn` (which follows the transposed convolution) folded in as
/// [`ConvParams::from_torch`](crate::kernels::conv::ConvParams::from_torch) folds them.
///
/// The compiler runs each phase as [`conv2d`](crate::kernels::conv::conv2d) (stride 1,
/// the [`phase_taps`] padding and dilation) into its share of the scratch memory, then
/// [`phases_to_space`].
///
/// # Panics
///
/// If a length does not match the dimensions or the phase has no convolution (the caller
/// has checked them).
#[allow(clippy::too_many_arguments)]
pub fn phase_params(
    in_channels: usize,
    out: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    ry: usize,
    rx: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&Affine>,
) -> crate::kernels::conv::ConvParams {
    assert_eq!(weight.len(), in_channels * out * kh * kw, "weight length");
    let (Some(ty), Some(tx)) = (
        phase_taps(kh, sh, ph, dh, ry),
        phase_taps(kw, sw, pw, dw, rx),
    ) else {
        panic!(
            "phase ({ry}, {rx}) of k{kh}x{kw} s{sh}x{sw} p{ph}x{pw} d{dh}x{dw} has no convolution"
        );
    };
    let (mh, mw) = (ty.taps, tx.taps);
    let mut w = vec![0.0f32; out * in_channels * mh * mw];
    for o in 0..out {
        for c in 0..in_channels {
            for a in 0..mh {
                let ky = ty.first + ty.step * (mh - 1 - a);
                for b in 0..mw {
                    let kx = tx.first + tx.step * (mw - 1 - b);
                    w[((o * in_channels + c) * mh + a) * mw + b] =
                        weight[((c * out + o) * kh + ky) * kw + kx];
                }
            }
        }
    }
    crate::kernels::conv::ConvParams::from_torch(out, in_channels, mh, mw, &w, bias, bn)
}

/// Places the outputs of the per-phase convolutions of a transposed convolution (see the
/// module docs): `input` holds `SH*SW` blocks of `O` planes of `MH x MW` (the
/// [`phase_split_axis`] sizes), block `ry*SW + rx` phase `(ry, rx)`'s; output `(y, x)` of
/// channel `o` is plane `o` of block `(y % SH)*SW + x % SW` at `(y / SH, x / SW)`.
///
/// # Panics
///
/// If a slice is too short, or `MH`, `MW` are fewer than `ceil(OH / SH)`, `ceil(OW / SW)`.
pub fn phases_to_space<
    const O: usize,
    const SH: usize,
    const SW: usize,
    const MH: usize,
    const MW: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &[f32],
    output: &mut [f32],
) {
    const { assert!(O > 0 && SH > 0 && SW > 0 && MH > 0 && MW > 0 && OH > 0 && OW > 0) }
    assert!(
        OH.div_ceil(SH) <= MH && OW.div_ceil(SW) <= MW,
        "phases_to_space: {OH}x{OW} outputs do not come from {MH}x{MW} phase planes"
    );
    assert!(
        input.len() >= O * SH * SW * MH * MW,
        "phases_to_space: input too short"
    );
    let axis = |s, m, out| Axis { s, m, out, p: 0 };
    phase_to_space_split(
        O,
        axis(SH, MH, OH),
        axis(SW, MW, OW),
        Order::Phases(O),
        input,
        output,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::activation::Act;
    use crate::kernels::conv::conv2d_dyn;
    use crate::kernels::conv_transpose::phases::tests::{axes, sweep, Ax};
    use crate::kernels::geometry::Dims2d;
    use crate::kernels::reference::{self as r, Rng};
    use crate::kernels::simd;

    /// [`phase_taps`]' taps and padding, at dilation `d`.
    fn tp(k: usize, s: usize, p: usize, d: usize, r: usize) -> Option<(usize, usize)> {
        phase_taps(k, s, p, d, r).map(|t| (t.taps, t.pad))
    }

    #[test]
    fn taps_and_padding() {
        // k3 s2 p1: phase 0 the centre tap alone, phase 1 the outer two.
        assert_eq!(tp(3, 2, 1, 1, 0), Some((1, 0)));
        assert_eq!(tp(3, 2, 1, 1, 1), Some((2, 0)));
        // k3 s2 p0: phase 0 taps 0 and 2 reading t and t - 1, phase 1 tap 1.
        assert_eq!(tp(3, 2, 0, 1, 0), Some((2, 1)));
        assert_eq!(tp(3, 2, 0, 1, 1), Some((1, 0)));
        // k5 s3 p1: taps {1, 4}, {2}, {0, 3}.
        assert_eq!(tp(5, 3, 1, 1, 0), Some((2, 1)));
        assert_eq!(tp(5, 3, 1, 1, 1), Some((1, 0)));
        assert_eq!(tp(5, 3, 1, 1, 2), Some((2, 0)));
        // k1 s2: phase 1 gets no tap (its outputs are the bias alone).
        assert_eq!(tp(1, 2, 0, 1, 1), None);
        assert_eq!(phase_split_axis(4, 7, 1, 2, 0, 1), None);
        // Padding past the kernel's reach: a negative convolution padding.
        assert_eq!(tp(3, 1, 3, 1, 0), None);
        assert_eq!(phase_split_axis(4, 8, 3, 2, 1, 1), Some(4));
        assert_eq!(phase_split_axis(4, 7, 3, 2, 1, 1), Some(4));
        // k3 s2 p1 d2: outputs 2t + r read inputs (2t + r + 1 - 2j) / 2, whole for odd
        // r only: phase 0 gets no tap.
        assert_eq!(tp(3, 2, 1, 2, 0), None);
        assert_eq!(phase_split_axis(4, 8, 3, 2, 1, 2), None);
        // k4 s1 d2 (p0): one phase, the flipped kernel at dilation 2 padded by 6.
        let t = phase_taps(4, 1, 0, 2, 0).unwrap();
        assert_eq!(
            (t.taps, t.pad, t.dilation, t.first, t.step),
            (4, 6, 2, 0, 1)
        );
        // k3 s2 p0 d3: phase 0 taps {0, 2} from t, t - 3; phase 1 tap 1 from t - 1.
        let t = phase_taps(3, 2, 0, 3, 0).unwrap();
        assert_eq!(
            (t.taps, t.pad, t.dilation, t.first, t.step),
            (2, 3, 3, 0, 2)
        );
        let t = phase_taps(3, 2, 0, 3, 1).unwrap();
        assert_eq!(
            (t.taps, t.pad, t.dilation, t.first, t.step),
            (1, 1, 3, 1, 2)
        );
        // k3 s2 p1 d3: phase 0 tap 1 from t - 1, phase 1 taps {0, 2} from t + 1, t - 2.
        assert_eq!(tp(3, 2, 1, 3, 0), Some((1, 1)));
        let t = phase_taps(3, 2, 1, 3, 1).unwrap();
        assert_eq!((t.taps, t.pad, t.first), (2, 2, 0));
        // s2 d2 (g = 2) on odd r + p: every kernel index reaches the phase, dilation 1.
        let t = phase_taps(3, 2, 1, 2, 1).unwrap();
        assert_eq!(
            (t.taps, t.pad, t.dilation, t.first, t.step),
            (3, 1, 1, 0, 1)
        );
        // A padding past the reach at a dilation: k2 s1 d3 p4 (reach 3).
        assert_eq!(tp(2, 1, 4, 3, 0), None);
        assert_eq!(tp(2, 1, 3, 3, 0), Some((2, 0)));
    }

    /// One axis of a transposed convolution: input, output, kernel, stride, padding,
    /// dilation.
    type AxD = (usize, usize, usize, usize, usize, usize);

    /// The per-phase convolutions and [`phases_to_space`] against the f64 reference of
    /// the transposed convolution, at every SIMD level.
    fn check(rng: &mut Rng, (c, o): (usize, usize), ah: AxD, aw: AxD, act: Act, bias: bool) {
        let mh = phase_split_axis(ah.0, ah.1, ah.2, ah.3, ah.4, ah.5).unwrap();
        let mw = phase_split_axis(aw.0, aw.1, aw.2, aw.3, aw.4, aw.5).unwrap();
        let x = rng.vec(c * ah.0 * aw.0, -1.0, 1.0);
        let w = rng.vec(c * o * ah.2 * aw.2, -1.0, 1.0);
        let b = rng.vec(o, -0.5, 0.5);
        let b = bias.then_some(&b[..]);
        let ct = r::CtDims {
            c,
            o,
            g: 1,
            h: ah,
            w: aw,
        };
        let want = r::conv_transpose2d(&ct, &x, &w, b, act);
        let block = o * mh * mw;
        let n = o * ah.1 * aw.1;
        for level in simd::test_levels() {
            let mut mid = vec![f32::NAN; ah.3 * aw.3 * block];
            for ry in 0..ah.3 {
                for rx in 0..aw.3 {
                    let ty = phase_taps(ah.2, ah.3, ah.4, ah.5, ry).unwrap();
                    let tx = phase_taps(aw.2, aw.3, aw.4, aw.5, rx).unwrap();
                    let p = phase_params(
                        c, o, ah.2, aw.2, ah.3, aw.3, ah.4, aw.4, ah.5, aw.5, ry, rx, &w, b, None,
                    );
                    let d = Dims2d {
                        c,
                        h: ah.0,
                        w: aw.0,
                        o,
                        oh: mh,
                        ow: mw,
                        kh: ty.taps,
                        kw: tx.taps,
                        sh: 1,
                        sw: 1,
                        ph: ty.pad,
                        pw: tx.pad,
                        dh: ty.dilation,
                        dw: tx.dilation,
                        g: 1,
                    };
                    let q = ry * aw.3 + rx;
                    conv2d_dyn(
                        level,
                        d,
                        &x,
                        &p,
                        &mut mid[q * block..][..block],
                        &mut [],
                        act,
                    );
                }
            }
            let mut got = vec![7.0; n + 1];
            let axis = |a: AxD, m| Axis {
                s: a.3,
                m,
                out: a.1,
                p: 0,
            };
            phase_to_space_split(
                o,
                axis(ah, mh),
                axis(aw, mw),
                Order::Phases(o),
                &mid,
                &mut got,
            );
            assert_eq!(got[n], 7.0, "wrote past the output: {ah:?} {aw:?}");
            r::assert_close(&got[..n], &want, &(ah, aw, c, o, act, level));
        }
    }

    /// `check` at dilation 1 (the shared sweep's axes).
    fn check1(rng: &mut Rng, ch: (usize, usize), ah: Ax, aw: Ax, act: Act, bias: bool) {
        let d1 = |a: Ax| (a.0, a.1, a.2, a.3, a.4, 1);
        check(rng, ch, d1(ah), d1(aw), act, bias);
    }

    /// Every axis geometry with a convolution for every phase (kernels 1..9) on each
    /// axis, paired with a random one on the other, random channels and activation.
    #[test]
    fn sweep_axes_against_reference() {
        let axes = axes(
            |_| (1..=9).collect(),
            |(n, out, k, s, p)| phase_split_axis(n, out, k, s, p, 1).is_some(),
        );
        assert!(axes.len() > 300, "{}", axes.len());
        sweep(&axes, 221, check1);
    }

    /// Dilated axes (dilation 2 and 3, strides 1 to 3, kernels 1 to 4, every padding
    /// and output padding PyTorch allows) with a convolution for every phase, each paired
    /// with a random one on the other axis, against the reference; and the geometries
    /// the split refuses are those where a phase lacks a tap or a padding.
    #[test]
    fn dilated_axes_against_reference() {
        let mut axes = Vec::new();
        let mut refused = 0;
        for n in [1, 2, 3, 5, 7] {
            for s in 1..=3 {
                for d in 2..=3 {
                    for k in 1..=4 {
                        for p in 0..=d * (k - 1) {
                            for op in 0..s.max(d) {
                                let Some(out) =
                                    ((n - 1) * s + d * (k - 1) + op + 1usize).checked_sub(2 * p)
                                else {
                                    continue;
                                };
                                if out == 0 {
                                    continue;
                                }
                                let all = (0..s).all(|r| phase_taps(k, s, p, d, r).is_some());
                                match phase_split_axis(n, out, k, s, p, d) {
                                    Some(m) => {
                                        assert!(all && m == out.div_ceil(s));
                                        axes.push((n, out, k, s, p, d));
                                    }
                                    None => {
                                        assert!(!all);
                                        refused += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(axes.len() > 400 && refused > 50, "{} {refused}", axes.len());
        let mut rng = Rng::new(225);
        for &a in &axes {
            let b = axes[rng.below(axes.len())];
            let ch = [(1, 1), (3, 2), (4, 5), (17, 3)][rng.below(4)];
            let act = [Act::IDENTITY, Act::RELU, Act::TANH][rng.below(3)];
            let bias = rng.below(4) != 0;
            check(&mut rng, ch, a, b, act, bias);
        }
        // Layer-sized ones (whole panels): 24 -> 32, k4 s1 d2 on 8x8 (14x14 out); k3 s2
        // d3 p1 (the absolute tolerance caps the reduction length).
        for (ch, ah, aw) in [
            ((24, 32), (8, 14, 4, 1, 0, 2), (8, 14, 4, 1, 0, 2)),
            ((40, 24), (9, 22, 3, 2, 1, 3), (10, 24, 3, 2, 1, 3)),
        ] {
            check(&mut rng, ch, ah, aw, Act::RELU, true);
        }
    }

    /// Decoder-sized layers: k3 s2 p1 with and without output padding, channels enough
    /// for whole panels and the engine's splits, k5 s2 p2, 1-D (H = 1).
    #[test]
    fn layers_against_reference() {
        let mut rng = Rng::new(222);
        let one = (1, 1, 1, 1, 0);
        for (ch, ah, aw) in [
            ((32, 16), (12, 24, 3, 2, 1), (12, 24, 3, 2, 1)),
            ((40, 24), (9, 17, 3, 2, 1), (10, 20, 3, 2, 1)),
            ((8, 20), (6, 12, 5, 2, 2), (7, 13, 5, 2, 2)),
            ((6, 20), one, (100, 200, 3, 2, 1)),
            ((16, 8), one, (50, 151, 5, 3, 1)),
        ] {
            check1(&mut rng, ch, ah, aw, Act::RELU, true);
        }
    }

    /// The const-generic [`phases_to_space`] places what the runtime-sized one does, and a
    /// folded batch norm gives the transposed convolution's outputs.
    #[test]
    fn folded_bn_and_const_instance() {
        use crate::kernels::conv::conv2d;
        use crate::kernels::conv_transpose::{conv_transpose2d, ConvTransposeParams};
        let mut rng = Rng::new(223);
        const C: usize = 6;
        const O: usize = 5;
        let x = rng.vec(C * 5 * 6, -1.0, 1.0);
        let w = rng.vec(C * O * 9, -0.5, 0.5);
        let b = rng.vec(O, -0.5, 0.5);
        let bn = Affine {
            scale: rng.vec(O, 0.5, 1.5).into(),
            shift: rng.vec(O, -0.2, 0.2).into(),
        };
        // 5x6 -> k3 s2 p1 op1: 10x12, four 5x6 phase convolutions.
        let folded = ConvTransposeParams::from_torch(C, O, 3, 3, 1, &w, Some(&b), Some(&bn));
        let mut want = vec![0.0; O * 120];
        conv_transpose2d::<C, 5, 6, O, 10, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1>(
            &x,
            &folded,
            &mut want,
            Act::TANH,
        );
        let mut mid = vec![0.0; 4 * O * 30];
        let mut blocks = mid.chunks_exact_mut(O * 30);
        let mut phase = |ry, rx| {
            let p = phase_params(
                C,
                O,
                3,
                3,
                2,
                2,
                1,
                1,
                1,
                1,
                ry,
                rx,
                &w,
                Some(&b),
                Some(&bn),
            );
            (p, blocks.next().unwrap())
        };
        let (p, m) = phase(0, 0);
        conv2d::<C, 5, 6, O, 5, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1>(&x, &p, m, Act::TANH);
        let (p, m) = phase(0, 1);
        conv2d::<C, 5, 6, O, 5, 6, 1, 2, 1, 1, 0, 0, 1, 1, 1>(&x, &p, m, Act::TANH);
        let (p, m) = phase(1, 0);
        conv2d::<C, 5, 6, O, 5, 6, 2, 1, 1, 1, 0, 0, 1, 1, 1>(&x, &p, m, Act::TANH);
        let (p, m) = phase(1, 1);
        conv2d::<C, 5, 6, O, 5, 6, 2, 2, 1, 1, 0, 0, 1, 1, 1>(&x, &p, m, Act::TANH);
        let mut got = vec![0.0; O * 120];
        phases_to_space::<O, 2, 2, 5, 6, 10, 12>(&mid, &mut got);
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        r::assert_close(&got, &want, &"k3 s2 p1 op1, folded bn");
    }

    /// Split by channels over 2 and 3 threads, the placement moves every value as on one
    /// thread.
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_place_as_one() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(224);
        for (o, s, out) in [(32, 2, 64usize), (17, 2, 79), (5, 3, 200)] {
            let m = out.div_ceil(s);
            let ax = Axis { s, m, out, p: 0 };
            let mid = rng.vec(o * s * s * m * m, -1.0, 1.0);
            r::assert_threads_match_one(o * out * out, &(o, s, m, out), |y| {
                phase_to_space_split(o, ax, ax, Order::Phases(o), &mid, y)
            });
        }
    }
}
