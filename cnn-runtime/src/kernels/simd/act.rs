//! The vector activations, written once over [`Simd`] from its primitive operations:
//! the algorithms of [`activation`](crate::kernels::activation) (`exp` by range
//! reduction with a split `ln 2`, a degree-5 polynomial and `2^n` built in the exponent,
//! Cephes'; `tanh` as the rational `x P(x^2) / Q(x^2)`; a stable `sigmoid`; the exact
//! GELU from Cephes' `erff`/`erfcf`), plus the piecewise-linear ones.
//!
//! The piecewise-linear activations ([`Act::is_piecewise_linear`]) are applied in
//! registers by every kernel ([`act`]); the curved ones go through [`Simd::act_curved`]
//! (one vector) or [`Simd::curved_slice`] (a block of output just stored: the direct
//! and depthwise convolutions' post-pass), which the x86 levels run out of line: inlined into a
//! tile's epilogue, their constants and temporaries crowded out its accumulators.
//!
//! Where the level has fused multiply-adds (AVX2, AVX-512) each `a * b + c` is rounded
//! once; without them (the portable level) every operation is the scalar functions' own,
//! in their order, so that level gives their exact bits (tested in `simd/mod.rs`).

use super::Simd;
use crate::kernels::activation::{Act, ERFC_P, ERFC_R, ERF_T, TANH_CLAMP, TANH_P, TANH_Q};

/// `act` applied to every lane of `v` (see [`Simd::act`]): the piecewise-linear ones
/// here, the others by [`Simd::act_curved`], which a level may run out of line.
#[inline(always)]
pub(crate) fn act<S: Simd>(s: S, v: S::V, act: Act) -> S::V {
    if act.is_piecewise_linear() {
        piecewise(s, v, act)
    } else {
        s.act_curved(v, act)
    }
}

/// The piecewise-linear activations; `v` unchanged for the others.
#[inline(always)]
pub(crate) fn piecewise<S: Simd>(s: S, v: S::V, act: Act) -> S::V {
    match act {
        // `v > 0 ? v : 0`: NaN gives 0, as `f32::max`.
        Act::Relu => s.max(v, s.zero()),
        // NaN propagates through both (second operand returned), as `clamp`.
        Act::Relu6 => s.min(s.splat(6.0), s.max(s.zero(), v)),
        Act::LeakyRelu(slope) => s.select(s.ge(v, s.zero()), v, s.mul(v, s.splat(slope))),
        _ => v,
    }
}

/// The activations that are not piecewise linear (tanh, sigmoid, SiLU, hard sigmoid,
/// hard swish, GELU) applied to every lane of `v`; `v` unchanged for the others.
#[inline(always)]
pub(crate) fn curved<S: Simd>(s: S, v: S::V, act: Act) -> S::V {
    match act {
        Act::Tanh => tanh(s, v),
        Act::Sigmoid => sigmoid(s, v),
        Act::Silu => s.mul(v, sigmoid(s, v)),
        Act::HardSigmoid => s.div(relu6_shift3(s, v), s.splat(6.0)),
        Act::HardSwish => s.div(s.mul(v, relu6_shift3(s, v)), s.splat(6.0)),
        Act::Gelu => gelu(s, v),
        _ => v,
    }
}

/// [`curved_slice`] as a kernel for [`Simd::vectorize`] (its own function, compiled for
/// the level: [`Simd::curved_slice`]).
pub(crate) struct CurvedSlice<'a> {
    pub(crate) x: &'a mut [f32],
    pub(crate) act: Act,
}

impl super::WithSimd for CurvedSlice<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        curved_slice(s, self.x, self.act);
    }
}

/// `act` on every float of `x` in place (meant for the curved ones): whole vectors, then
/// the short rest, one loop per activation (the match outside the loops). No closures:
/// a closure would not inherit the caller's target features, and its vector operations
/// would become calls.
#[inline(always)]
pub(crate) fn curved_slice<S: Simd>(s: S, x: &mut [f32], act: Act) {
    let l = S::LANES;
    let (n, p) = (x.len(), x.as_mut_ptr());
    let whole = n - n % l;
    macro_rules! each {
        ($v:ident => $e:expr) => {{
            // SAFETY: vectors at `i < whole` (whole vectors of `x`), then the `n - whole`
            // floats left: inside `x`.
            unsafe {
                for i in (0..whole).step_by(l) {
                    let $v = s.load(p.add(i));
                    s.store(p.add(i), $e);
                }
                if whole < n {
                    let $v = s.load_n(p.add(whole), n - whole);
                    s.store_n(p.add(whole), $e, n - whole);
                }
            }
        }};
    }
    match act {
        Act::Tanh => each!(v => tanh(s, v)),
        Act::Sigmoid => each!(v => sigmoid(s, v)),
        Act::Silu => each!(v => s.mul(v, sigmoid(s, v))),
        Act::HardSigmoid | Act::HardSwish | Act::Gelu => each!(v => curved(s, v, act)),
        Act::Identity => {}
        Act::Relu | Act::Relu6 | Act::LeakyRelu(_) => each!(v => piecewise(s, v, act)),
    }
}

/// `e^x` for `x` already in [-87, 88] (or NaN, which propagates): the Cephes polynomial
/// of [`activation::exp`](crate::kernels::activation::exp), `2^n` by
/// [`Simd::mul_pow2`] (`n` is in [-126, 127]).
#[inline(always)]
pub(crate) fn exp_in_range<S: Simd>(s: S, x: S::V) -> S::V {
    // 1.5 * 2^23: adding it rounds to the nearest integer.
    let round = s.splat(12_582_912.0);
    let t = s.mul_add(x, s.splat(core::f32::consts::LOG2_E), round);
    let n = s.sub(t, round);
    // x - n ln 2, with ln 2 split in two so that n * high is exact.
    let r = s.neg_mul_add(n, s.splat(0.693_359_4), x);
    let r = s.neg_mul_add(n, s.splat(-2.121_944_4e-4), r);
    let mut p = s.splat(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1,
    ] {
        p = s.mul_add(p, r, s.splat(c));
    }
    // p r^2 + r: fused, with r^2 formed first; unfused, the scalar function's
    // (p r) r + r, so that the portable level keeps its bits.
    let p = if S::FMA {
        s.mul_add(p, s.mul(r, r), r)
    } else {
        s.mul_add(s.mul(p, r), r, r)
    };
    s.mul_pow2(s.add(p, s.splat(1.0)), n)
}

/// `tanh` lane-wise: [`activation::tanh`](crate::kernels::activation::tanh) (`x P(x^2) /
/// Q(x^2)` on the clamped argument, clamped to [-1, 1]). `max` and `min` return their
/// second operand for a NaN, so a NaN lane stays NaN.
#[inline(always)]
pub(crate) fn tanh<S: Simd>(s: S, x: S::V) -> S::V {
    let c = s.min(s.splat(TANH_CLAMP), s.max(s.splat(-TANH_CLAMP), x));
    let z = s.mul(c, c);
    let p = horner(s, z, &TANH_P);
    let q = horner(s, z, &TANH_Q);
    let one = s.splat(1.0);
    s.min(one, s.max(s.splat(-1.0), s.div(s.mul(c, p), q)))
}

/// `1 / (1 + e^-x)` lane-wise: [`activation::sigmoid`](crate::kernels::activation::sigmoid)
/// with the vector `exp`; NaN propagates through every step.
#[inline(always)]
pub(crate) fn sigmoid<S: Simd>(s: S, x: S::V) -> S::V {
    // -|x| clamped below at -87 (`max` returns its second operand, so NaN stays).
    let m = s.max(s.splat(-87.0), s.or(x, s.splat(-0.0)));
    let e = exp_in_range(s, m);
    let one = s.splat(1.0);
    let pos = s.div(one, s.add(one, e));
    s.select(s.ge(x, s.zero()), pos, s.mul(e, pos))
}

/// `c[0] * x^(n-1) + ... + c[n-1]` by Horner's rule.
#[inline(always)]
fn horner<S: Simd>(s: S, x: S::V, c: &[f32]) -> S::V {
    let mut p = s.splat(c[0]);
    for &k in &c[1..] {
        p = s.mul_add(p, x, s.splat(k));
    }
    p
}

/// `relu6(x + 3)` lane-wise, NaN propagated as by `clamp`.
#[inline(always)]
fn relu6_shift3<S: Simd>(s: S, x: S::V) -> S::V {
    let v = s.add(x, s.splat(3.0));
    s.min(s.splat(6.0), s.max(s.zero(), v))
}

/// The exact GELU lane-wise: [`activation::gelu`](crate::kernels::activation::gelu)
/// (Cephes' `erff` below `|x / sqrt 2| = 1`, `erfcf` above). A NaN lane takes the `erfc`
/// branch, which stays finite, and the final product with `x` makes it NaN.
#[inline(always)]
pub(crate) fn gelu<S: Simd>(s: S, x: S::V) -> S::V {
    let sign = s.splat(-0.0);
    let one = s.splat(1.0);
    let half = s.splat(0.5);
    let u = s.mul(x, s.splat(core::f32::consts::FRAC_1_SQRT_2));
    let a = s.abs(u);
    let erf = s.mul(horner(s, s.mul(a, a), &ERF_T), a);
    let erf = s.or(s.abs(erf), s.and(u, sign));
    let small = s.mul_add(half, erf, half);
    // `max` returns its second operand for NaN: b is in [1, inf].
    let b = s.max(a, one);
    let q = s.div(one, b);
    let y = s.mul(q, q);
    // -b^2 <= -1: only the lower clamp matters.
    let e = exp_in_range(s, s.max(s.splat(-87.0), s.xor(s.mul(b, b), sign)));
    let poly = s.select(
        s.lt(b, s.splat(2.0)),
        horner(s, y, &ERFC_P),
        horner(s, y, &ERFC_R),
    );
    let h = s.mul(half, s.mul(s.mul(e, q), poly));
    let big = s.select(s.ge(u, s.zero()), s.sub(one, h), h);
    s.mul(x, s.select(s.lt(a, one), small, big))
}
