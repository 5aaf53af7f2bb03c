//! Batch norm (inference mode) as a per-channel affine map, applied on its own by
//! [`channel_affine`] or folded into the weights of the conv/linear before it.

use super::activation::{gelu, hardsigmoid, hardswish, silu, Act, ActKind};
use crate::buf::Buf;
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};

/// A per-channel affine map `y = x * scale[c] + shift[c]`: an inference-mode batch norm.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    /// Per-channel factor.
    pub scale: Buf<f32>,
    /// Per-channel offset, added after scaling.
    pub shift: Buf<f32>,
}

#[cfg(feature = "alloc")]
impl crate::buf::Embed for Affine {
    fn parts(&self) -> crate::buf::Parts {
        use crate::buf::float_bytes;
        crate::buf::Parts {
            dims: alloc::vec![],
            bufs: alloc::vec![
                (false, float_bytes(&self.scale)),
                (false, float_bytes(&self.shift))
            ],
        }
    }
}

impl Affine {
    #[cfg(feature = "alloc")]
    /// The affine map of an inference-mode batch norm,
    /// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`:
    /// `scale = weight / sqrt(running_var + eps)`, `shift = bias - running_mean * scale`,
    /// computed in f64 and then rounded to f32.
    ///
    /// # Panics
    ///
    /// If the four slices do not have the same length (the caller has checked them).
    pub fn from_batch_norm(
        weight: &[f32],
        bias: &[f32],
        running_mean: &[f32],
        running_var: &[f32],
        eps: f64,
    ) -> Affine {
        let n = weight.len();
        assert!(
            bias.len() == n && running_mean.len() == n && running_var.len() == n,
            "batch norm: weight, bias, running_mean, running_var have lengths {n}, {}, {}, {}",
            bias.len(),
            running_mean.len(),
            running_var.len()
        );
        let mut scale = Vec::with_capacity(n);
        let mut shift = Vec::with_capacity(n);
        for (((&w, &b), &m), &v) in weight.iter().zip(bias).zip(running_mean).zip(running_var) {
            let s = f64::from(w) / crate::math::sqrt(f64::from(v) + eps);
            scale.push(s as f32);
            shift.push((f64::from(b) - f64::from(m) * s) as f32);
        }
        Affine {
            scale: scale.into(),
            shift: shift.into(),
        }
    }

    /// A map computed at compile time ([`crate::buf::Embed`]): no dims, scale and shift.
    #[doc(hidden)]
    pub const fn from_static(
        _dims: [usize; 0],
        scale: &'static [f32],
        shift: &'static [f32],
    ) -> Affine {
        Affine {
            scale: Buf::Static(scale),
            shift: Buf::Static(shift),
        }
    }
}

#[cfg(feature = "alloc")]
/// Copies a PyTorch weight (`out` rows of `per_out` values) and bias (zeros when absent),
/// folding in the batch norm `bn` that follows the layer: `w'[o] = w[o] * scale[o]`,
/// `b'[o] = b[o] * scale[o] + shift[o]`, computed in f64. Shared by conv, depthwise
/// conv and linear.
///
/// # Panics
///
/// If a length does not match `out` and `per_out`.
pub(crate) fn fold_bn(
    out: usize,
    per_out: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    bn: Option<&Affine>,
) -> (Box<[f32]>, Box<[f32]>) {
    assert_eq!(
        weight.len(),
        out * per_out,
        "weight length for [{out}, {per_out}]"
    );
    let mut w = weight.to_vec();
    let mut b = match bias {
        Some(b) => {
            assert_eq!(b.len(), out, "bias length");
            b.to_vec()
        }
        None => vec![0.0; out],
    };
    if let Some(bn) = bn {
        assert!(
            bn.scale.len() == out && bn.shift.len() == out,
            "batch norm of {} channels after a layer of {out}",
            bn.scale.len()
        );
        if per_out > 0 {
            for (row, &s) in w.chunks_exact_mut(per_out).zip(bn.scale.iter()) {
                for x in row {
                    *x = (f64::from(*x) * f64::from(s)) as f32;
                }
            }
        }
        for ((x, &s), &t) in b.iter_mut().zip(bn.scale.iter()).zip(bn.shift.iter()) {
            *x = (f64::from(*x) * f64::from(s) + f64::from(t)) as f32;
        }
    }
    (w.into_boxed_slice(), b.into_boxed_slice())
}

/// `$f`, the map `x -> act(x * s + t)` for `$act`'s kind, bound in `$body`: one tight
/// loop per activation wherever `$body` loops.
macro_rules! with_affine {
    ($act:expr, $s:expr, $t:expr, $f:ident => $body:expr) => {{
        let (act, s, t): (Act, f32, f32) = ($act, $s, $t);
        match act.kind() {
            ActKind::Identity => {
                let $f = |x: f32| x * s + t;
                $body
            }
            ActKind::Relu => {
                let $f = |x: f32| (x * s + t).max(0.0);
                $body
            }
            ActKind::Relu6 => {
                let $f = |x: f32| (x * s + t).clamp(0.0, 6.0);
                $body
            }
            ActKind::Silu => {
                let $f = |x: f32| silu(x * s + t);
                $body
            }
            ActKind::HardSwish => {
                let $f = |x: f32| hardswish(x * s + t);
                $body
            }
            ActKind::HardSigmoid => {
                let $f = |x: f32| hardsigmoid(x * s + t);
                $body
            }
            ActKind::Gelu => {
                let $f = |x: f32| gelu(x * s + t);
                $body
            }
            _ => {
                let $f = |x: f32| act.apply(x * s + t);
                $body
            }
        }
    }};
}

/// `buf[i] = act(buf[i] * s + t)`.
#[inline(always)]
fn affine_act(buf: &mut [f32], s: f32, t: f32, act: Act) {
    with_affine!(act, s, t, f => buf.iter_mut().for_each(|x| *x = f(*x)))
}

/// `dst[i] = act(src[i] * s + t)`.
#[inline(always)]
fn affine_act_into(src: &[f32], dst: &mut [f32], s: f32, t: f32, act: Act) {
    with_affine!(act, s, t, f => dst.iter_mut().zip(src).for_each(|(y, &x)| *y = f(x)))
}

/// [`channel_affine_into`] with its dimensions as runtime values.
#[inline(always)]
fn channel_affine_into_dyn(
    c: usize,
    hw: usize,
    src: &[f32],
    dst: &mut [f32],
    affine: &Affine,
    act: Act,
) {
    let (src, dst) = (&src[..c * hw], &mut dst[..c * hw]);
    let (scale, shift) = (&affine.scale[..c], &affine.shift[..c]);
    #[cfg(feature = "parallel")]
    if super::split_planes(c, hw, dst, &|first, out| {
        let src = &src[first * hw..];
        for (k, (y, x)) in out
            .chunks_exact_mut(hw)
            .zip(src.chunks_exact(hw))
            .enumerate()
        {
            affine_act_into(x, y, scale[first + k], shift[first + k], act);
        }
    }) {
        return;
    }
    for (((y, x), &s), &t) in dst
        .chunks_exact_mut(hw)
        .zip(src.chunks_exact(hw))
        .zip(scale)
        .zip(shift)
    {
        affine_act_into(x, y, s, t, act);
    }
}

/// [`channel_affine`] from `src` into `dst` (a batch norm whose input is still needed
/// afterwards): `dst[c*HW + i] = act(src[c*HW + i] * scale[c] + shift[c])`, the same
/// values as copying `src` into `dst` and running [`channel_affine`] there, in one pass.
///
/// # Panics
///
/// If `src` or `dst` is shorter than `C*HW` or `affine` has fewer than `C` channels.
pub fn channel_affine_into<const C: usize, const HW: usize>(
    src: &[f32],
    dst: &mut [f32],
    affine: &Affine,
    act: Act,
) {
    const { assert!(C > 0 && HW > 0) }
    channel_affine_into_dyn(C, HW, src, dst, affine, act);
}

/// [`channel_affine`] with its dimensions as runtime values.
#[inline(always)]
fn channel_affine_dyn(c: usize, hw: usize, buf: &mut [f32], affine: &Affine, act: Act) {
    let buf = &mut buf[..c * hw];
    let (scale, shift) = (&affine.scale[..c], &affine.shift[..c]);
    // Large maps (DenseNet's batch norms before its convolutions, on 56x56 and 28x28
    // concatenations) by ranges of planes over the threads: the same values.
    #[cfg(feature = "parallel")]
    if super::split_planes(c, hw, buf, &|first, out| {
        for (k, plane) in out.chunks_exact_mut(hw).enumerate() {
            affine_act(plane, scale[first + k], shift[first + k], act);
        }
    }) {
        return;
    }
    for ((plane, &s), &t) in buf.chunks_exact_mut(hw).zip(scale).zip(shift) {
        affine_act(plane, s, t, act);
    }
}

/// In place: `buf[c*HW + i] = act(buf[c*HW + i] * scale[c] + shift[c])` for the first
/// `C*HW` values of `buf` (C, H, W order). `HW = 1` for a vector of `C` features.
///
/// # Panics
///
/// If `buf` is shorter than `C*HW` or `affine` has fewer than `C` channels.
pub fn channel_affine<const C: usize, const HW: usize>(buf: &mut [f32], affine: &Affine, act: Act) {
    const { assert!(C > 0 && HW > 0) }
    channel_affine_dyn(C, HW, buf, affine, act);
}

/// A team member's part of [`channel_affine`] on a `[C, H, W]` tensor (`plan::team`):
/// rows `rows.0..rows.1` of every plane, the same values as the whole map's there; the
/// other rows are left as they are.
///
/// # Panics
///
/// If `buf` is shorter than `C*H*W` or `affine` has fewer than `C` channels.
pub fn channel_affine_rows<const C: usize, const H: usize, const W: usize>(
    buf: &mut [f32],
    affine: &Affine,
    act: Act,
    rows: (usize, usize),
) {
    const { assert!(C > 0 && H > 0 && W > 0) }
    let (a, b) = super::row_span(rows, H, W);
    let (scale, shift) = (&affine.scale[..C], &affine.shift[..C]);
    for ((plane, &s), &t) in buf[..C * H * W]
        .chunks_exact_mut(H * W)
        .zip(scale)
        .zip(shift)
    {
        affine_act(&mut plane[a..b], s, t, act);
    }
}

/// A team member's part of [`channel_affine_into`] on a `[C, H, W]` tensor: rows
/// `rows.0..rows.1` of every plane of `dst` (see [`channel_affine_rows`]).
///
/// # Panics
///
/// If `src` or `dst` is shorter than `C*H*W` or `affine` has fewer than `C` channels.
pub fn channel_affine_into_rows<const C: usize, const H: usize, const W: usize>(
    src: &[f32],
    dst: &mut [f32],
    affine: &Affine,
    act: Act,
    rows: (usize, usize),
) {
    const { assert!(C > 0 && H > 0 && W > 0) }
    let ((a, b), p) = (super::row_span(rows, H, W), H * W);
    let (scale, shift) = (&affine.scale[..C], &affine.shift[..C]);
    for (((y, x), &s), &t) in dst[..C * p]
        .chunks_exact_mut(p)
        .zip(src[..C * p].chunks_exact(p))
        .zip(scale)
        .zip(shift)
    {
        affine_act_into(&x[a..b], &mut y[a..b], s, t, act);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Rng};

    const ACTS: [Act; 10] = [
        Act::IDENTITY,
        Act::RELU,
        Act::RELU6,
        Act::TANH,
        Act::SIGMOID,
        Act::leaky_relu(0.01),
        Act::SILU,
        Act::HARD_SWISH,
        Act::HARD_SIGMOID,
        Act::GELU,
    ];

    /// Two members' rows (any split, an empty part included) give the whole map's
    /// values bit for bit, in place and out of place, and a member writes only its rows.
    #[test]
    fn rows_make_the_whole_map() {
        let mut rng = Rng::new(48);
        let (c, h, w) = (5, 7, 3);
        let p = h * w;
        let affine = Affine {
            scale: rng.vec(c, -2.0, 2.0).into(),
            shift: rng.vec(c, -1.0, 1.0).into(),
        };
        let x = rng.vec(c * p, -3.0, 3.0);
        for act in ACTS {
            let mut want = x.clone();
            channel_affine::<5, 21>(&mut want, &affine, act);
            for mid in 0..=h {
                let mut y = x.clone();
                channel_affine_rows::<5, 7, 3>(&mut y, &affine, act, (0, mid));
                channel_affine_rows::<5, 7, 3>(&mut y, &affine, act, (mid, h));
                assert_eq!(y, want, "{act:?} mid={mid}");
                let mut y = vec![f32::NAN; c * p + 1];
                channel_affine_into_rows::<5, 7, 3>(&x, &mut y, &affine, act, (mid, h));
                for (k, v) in y[..c * p].iter().enumerate() {
                    assert_eq!(v.is_nan(), k % p < mid * w, "{act:?} mid={mid} at {k}");
                }
                channel_affine_into_rows::<5, 7, 3>(&x, &mut y, &affine, act, (0, mid));
                assert_eq!(y[..c * p], want[..], "{act:?} mid={mid}");
                assert!(y[c * p].is_nan(), "wrote past the tensor");
            }
        }
    }

    /// The out-of-place map gives the in-place one's values, bit for bit, and writes
    /// nothing past the tensor (split over the pool's threads where `parallel` is on:
    /// the large shapes).
    #[test]
    fn affine_into_matches_in_place() {
        let mut rng = Rng::new(47);
        for (c, hw) in [(1, 1), (3, 1), (4, 25), (7, 300), (64, 3136)] {
            for act in ACTS {
                let x = rng.vec(c * hw, -3.0, 3.0);
                let a = Affine {
                    scale: rng.vec(c, -1.5, 1.5).into(),
                    shift: rng.vec(c, -0.5, 0.5).into(),
                };
                let mut want = x.clone();
                channel_affine_dyn(c, hw, &mut want, &a, act);
                let mut got = vec![7.0; c * hw + 1];
                channel_affine_into_dyn(c, hw, &x, &mut got, &a, act);
                assert_eq!(got[c * hw], 7.0, "wrote past the tensor");
                let same = got[..c * hw]
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(same, "{c}x{hw} {act:?}");
            }
        }
    }

    #[test]
    fn from_batch_norm_known_values() {
        // scale = 2 / sqrt(3 + 1) = 1, shift = 0.5 - 1.5 * 1 = -1.
        let a = Affine::from_batch_norm(&[2.0, 1.0], &[0.5, 0.0], &[1.5, 0.0], &[3.0, 1.0], 1.0);
        assert_eq!(&*a.scale, &[1.0, (1.0f64 / 2f64.sqrt()) as f32]);
        assert_eq!(&*a.shift, &[-1.0, 0.0]);
        // Computed in f64: scale and shift are the f64 values rounded once.
        let (w, b, m, v, eps) = (0.7f32, -0.2f32, 0.3f32, 0.9f32, 1e-5);
        let a = Affine::from_batch_norm(&[w], &[b], &[m], &[v], eps);
        let s = f64::from(w) / (f64::from(v) + eps).sqrt();
        assert_eq!(a.scale[0], s as f32);
        assert_eq!(a.shift[0], (f64::from(b) - f64::from(m) * s) as f32);
    }

    /// channel_affine with a batch norm's affine equals the batch norm formula, spatial
    /// and vector, every activation.
    #[test]
    fn batch_norm_against_reference() {
        let mut rng = Rng::new(31);
        for (c, hw) in [(1, 1), (3, 1), (1, 9), (4, 25), (7, 300), (16, 1)] {
            for act in ACTS {
                for eps in [1e-5, 1e-3, 1.0] {
                    let x = rng.vec(c * hw, -3.0, 3.0);
                    let (w, b) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5));
                    let (m, v) = (rng.vec(c, -1.0, 1.0), rng.vec(c, 0.5, 2.0));
                    let a = Affine::from_batch_norm(&w, &b, &m, &v, eps);
                    let mut got = x.clone();
                    got.push(42.0);
                    channel_affine_dyn(c, hw, &mut got, &a, act);
                    assert_eq!(got[c * hw], 42.0, "wrote past the tensor");
                    let want = r::batch_norm(c, hw, &x, &w, &b, &m, &v, eps, act);
                    r::assert_close(&got[..c * hw], &want, &(c, hw, act, eps));
                }
            }
        }
    }

    #[test]
    fn const_generic_instance() {
        let a = Affine {
            scale: vec![1.0, -2.0].into(),
            shift: vec![0.5, 1.0].into(),
        };
        let mut buf = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
        channel_affine::<2, 3>(&mut buf, &a, Act::RELU);
        assert_eq!(buf, [1.5, 2.5, 3.5, 0.0, 0.0, 0.0]);
        let mut v = [1.0, 1.0];
        channel_affine::<2, 1>(&mut v, &a, Act::IDENTITY);
        assert_eq!(v, [1.5, -1.0]);
    }

    /// Sigmoid and tanh at their edges: saturate without NaN or overflow, exact at 0.
    #[test]
    fn sigmoid_tanh_edge_values() {
        let xs = [
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            20.0,
            -20.0,
            88.0,
            -88.0,
            100.0,
            -100.0,
            1000.0,
            -1000.0,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let id = Affine {
            scale: vec![1.0].into(),
            shift: vec![0.0].into(),
        };
        for act in [Act::SIGMOID, Act::TANH] {
            let mut got = xs;
            channel_affine::<1, 16>(&mut got, &id, act);
            for (&x, &y) in xs.iter().zip(&got) {
                let want = r::act(act, f64::from(x));
                assert!(y.is_finite(), "{act:?}({x}) = {y}");
                assert!(
                    (f64::from(y) - want).abs() <= 1e-7 + 1e-6 * want.abs(),
                    "{act:?}({x}) = {y}, want {want}"
                );
            }
        }
        assert_eq!(Act::SIGMOID.apply(0.0), 0.5);
        assert_eq!(Act::SIGMOID.apply(1000.0), 1.0);
        assert!(Act::SIGMOID.apply(-1000.0) < 1e-37);
        assert!(Act::SIGMOID.apply(-100.0) > 0.0);
        assert_eq!(Act::TANH.apply(0.0), 0.0);
        assert_eq!(Act::TANH.apply(1000.0), 1.0);
        assert_eq!(Act::TANH.apply(-1000.0), -1.0);
        assert_eq!(Act::RELU6.apply(7.0), 6.0);
        assert_eq!(Act::leaky_relu(0.01).apply(-2.0), -0.02);
    }

    #[test]
    fn fold_bn_without_bias_uses_shift() {
        let a = Affine {
            scale: vec![2.0, 3.0].into(),
            shift: vec![0.25, -1.0].into(),
        };
        let (w, b) = fold_bn(2, 2, &[1.0, 2.0, 3.0, 4.0], None, Some(&a));
        assert_eq!(&*w, &[2.0, 4.0, 9.0, 12.0]);
        assert_eq!(&*b, &[0.25, -1.0]);
        let (w, b) = fold_bn(2, 2, &[1.0, 2.0, 3.0, 4.0], Some(&[1.0, 1.0]), Some(&a));
        assert_eq!(&*w, &[2.0, 4.0, 9.0, 12.0]);
        assert_eq!(&*b, &[2.25, 2.0]);
        let (w, b) = fold_bn(2, 2, &[1.0, 2.0, 3.0, 4.0], None, None);
        assert_eq!(&*w, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(&*b, &[0.0, 0.0]);
    }

    /// With the `parallel` feature, large maps split by ranges of planes over 2 and 3
    /// threads give the one-thread values bit for bit (DenseNet's 64x56x56 batch norm,
    /// 5 planes over 3 threads, a curved activation).
    #[cfg(feature = "parallel")]
    #[test]
    fn channel_affine_threads_equal_one_thread() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(61);
        for (c, hw, act) in [(64, 56 * 56, Act::RELU), (5, 7001, Act::SILU)] {
            let x = rng.vec(c * hw, -2.0, 2.0);
            let w = rng.vec(c, 0.5, 1.5);
            let b = rng.vec(c, -0.2, 0.2);
            let m = rng.vec(c, -0.1, 0.1);
            let v = rng.vec(c, 0.5, 1.5);
            let a = Affine::from_batch_norm(&w, &b, &m, &v, 1e-5);
            r::assert_threads_match_one(c * hw, &(c, hw), |out| {
                out[..c * hw].copy_from_slice(&x);
                channel_affine_dyn(c, hw, out, &a, act);
            });
        }
    }
}
