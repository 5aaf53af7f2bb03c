//! Transposed convolutions as one convolution per phase, for the kernels the stride does
//! not divide (`k3 s2 p1` with output padding 1: CycleGAN's and most autoencoders'
//! upsampling).
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

use super::phases::{phase_to_space_split, Axis, Order};
#[cfg(feature = "alloc")]
use crate::kernels::norm::Affine;
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{vec, vec::Vec};

/// Phase `r`'s convolution along one axis of a transposed convolution (kernel `k`, stride
/// `s`, padding `p`, dilation 1): its taps and its top padding, if it has taps and the
/// padding is not negative (a padding past the kernel's reach).
pub fn phase_taps(k: usize, s: usize, p: usize, r: usize) -> Option<(usize, usize)> {
    if s == 0 {
        return None;
    }
    let first = (r + p) % s;
    if first >= k {
        return None;
    }
    let taps = (k - first).div_ceil(s);
    let pad = (taps - 1).checked_sub((r + p) / s)?;
    Some((taps, pad))
}

/// The rows (or columns) of every phase's convolution along one axis of a transposed
/// convolution (input `n`, output `out`, kernel `k`, stride `s`, padding `p`, dilation
/// `d`): `ceil(out / s)`, if every phase has one ([`phase_taps`]) and `d == 1`.
pub fn phase_split_axis(
    n: usize,
    out: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
) -> Option<usize> {
    let ok =
        n > 0 && out > 0 && s > 0 && d == 1 && (0..s).all(|r| phase_taps(k, s, p, r).is_some());
    ok.then(|| out.div_ceil(s))
}

#[cfg(feature = "alloc")]
/// The parameters of phase `(ry, rx)`'s convolution of a transposed convolution (one
/// group, dilation 1, [`phase_split_axis`] accepting both axes) from the PyTorch weight
/// `[in, out, kh, kw]` (kernel `kh x kw`, strides, paddings, phase `(ry, rx)`): `out` channels of `mh x mw` taps ([`phase_taps`]), tap `(a, b)`
/// the weight `[.][o][(ry + ph) % sh + sh*(mh - 1 - a)][(rx + pw) % sw + sw*(mw - 1 -
/// b)]`, the bias and the batch norm `bn` (which follows the transposed convolution)
/// folded in as [`ConvParams::from_torch`](crate::kernels::conv::ConvParams::from_torch)
/// folds them.
///
/// The compiler runs each phase as [`conv2d`](crate::kernels::conv::conv2d) into its
/// share of the scratch memory, then [`phases_to_space`].
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
    ry: usize,
    rx: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&Affine>,
) -> crate::kernels::conv::ConvParams {
    assert_eq!(weight.len(), in_channels * out * kh * kw, "weight length");
    let (Some((mh, _)), Some((mw, _))) = (phase_taps(kh, sh, ph, ry), phase_taps(kw, sw, pw, rx))
    else {
        panic!("phase ({ry}, {rx}) of k{kh}x{kw} s{sh}x{sw} p{ph}x{pw} has no convolution");
    };
    let mut w = vec![0.0f32; out * in_channels * mh * mw];
    for o in 0..out {
        for c in 0..in_channels {
            for a in 0..mh {
                let ky = (ry + ph) % sh + sh * (mh - 1 - a);
                for b in 0..mw {
                    let kx = (rx + pw) % sw + sw * (mw - 1 - b);
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

    #[test]
    fn taps_and_padding() {
        // k3 s2 p1: phase 0 the centre tap alone, phase 1 the outer two.
        assert_eq!(phase_taps(3, 2, 1, 0), Some((1, 0)));
        assert_eq!(phase_taps(3, 2, 1, 1), Some((2, 0)));
        // k3 s2 p0: phase 0 taps 0 and 2 reading t and t - 1, phase 1 tap 1.
        assert_eq!(phase_taps(3, 2, 0, 0), Some((2, 1)));
        assert_eq!(phase_taps(3, 2, 0, 1), Some((1, 0)));
        // k5 s3 p1: taps {1, 4}, {2}, {0, 3}.
        assert_eq!(phase_taps(5, 3, 1, 0), Some((2, 1)));
        assert_eq!(phase_taps(5, 3, 1, 1), Some((1, 0)));
        assert_eq!(phase_taps(5, 3, 1, 2), Some((2, 0)));
        // k1 s2: phase 1 gets no tap (its outputs are the bias alone).
        assert_eq!(phase_taps(1, 2, 0, 1), None);
        assert_eq!(phase_split_axis(4, 7, 1, 2, 0, 1), None);
        // Padding past the kernel's reach: a negative convolution padding.
        assert_eq!(phase_taps(3, 1, 3, 0), None);
        assert_eq!(phase_split_axis(4, 8, 3, 2, 1, 1), Some(4));
        assert_eq!(phase_split_axis(4, 7, 3, 2, 1, 1), Some(4));
        assert_eq!(phase_split_axis(4, 8, 3, 2, 1, 2), None);
    }

    /// The per-phase convolutions and [`phases_to_space`] against the f64 reference of
    /// the transposed convolution, at every SIMD level.
    fn check(rng: &mut Rng, (c, o): (usize, usize), ah: Ax, aw: Ax, act: Act, bias: bool) {
        let mh = phase_split_axis(ah.0, ah.1, ah.2, ah.3, ah.4, 1).unwrap();
        let mw = phase_split_axis(aw.0, aw.1, aw.2, aw.3, aw.4, 1).unwrap();
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
        let block = o * mh * mw;
        let n = o * ah.1 * aw.1;
        for level in simd::test_levels() {
            let mut mid = vec![f32::NAN; ah.3 * aw.3 * block];
            for ry in 0..ah.3 {
                for rx in 0..aw.3 {
                    let (th, pth) = phase_taps(ah.2, ah.3, ah.4, ry).unwrap();
                    let (tw, ptw) = phase_taps(aw.2, aw.3, aw.4, rx).unwrap();
                    let p = phase_params(
                        c, o, ah.2, aw.2, ah.3, aw.3, ah.4, aw.4, ry, rx, &w, b, None,
                    );
                    let d = Dims2d {
                        c,
                        h: ah.0,
                        w: aw.0,
                        o,
                        oh: mh,
                        ow: mw,
                        kh: th,
                        kw: tw,
                        sh: 1,
                        sw: 1,
                        ph: pth,
                        pw: ptw,
                        dh: 1,
                        dw: 1,
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
            let axis = |a: Ax, m| Axis {
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

    /// Every axis geometry with a convolution for every phase (kernels 1..9) on each
    /// axis, paired with a random one on the other, random channels and activation.
    #[test]
    fn sweep_axes_against_reference() {
        let axes = axes(
            |_| (1..=9).collect(),
            |(n, out, k, s, p)| phase_split_axis(n, out, k, s, p, 1).is_some(),
        );
        assert!(axes.len() > 300, "{}", axes.len());
        sweep(&axes, 221, check);
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
            check(&mut rng, ch, ah, aw, Act::RELU, true);
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
            let p = phase_params(C, O, 3, 3, 2, 2, 1, 1, ry, rx, &w, Some(&b), Some(&bn));
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
