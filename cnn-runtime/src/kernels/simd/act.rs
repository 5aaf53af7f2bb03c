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
//! once, `exp` is the level's own ([`Simd::exp_n`]: a table of `2^(j/16)` or `2^(j/8)`
//! and a short polynomial), sigmoid and SiLU divide by `1 + e^-x` without a branch
//! select, the divisions of tanh and sigmoid are [`Simd::div_approx`] (a reciprocal
//! estimate and one Newton step, within 2 ulp) and the hard ones' `/ 6` a multiplication;
//! without them (the portable level) every operation is the scalar functions' own, in
//! their order, so that level gives their exact bits (tested in `simd/mod.rs`).

use super::Simd;
use crate::kernels::activation::{Act, ActKind, ERFC_P, ERFC_R, ERF_T, TANH_CLAMP, TANH_P, TANH_Q};

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
    match act.kind() {
        // `v > 0 ? v : 0`: NaN gives 0, as `f32::max`.
        ActKind::Relu => s.max(v, s.zero()),
        // NaN propagates through both (second operand returned), as `clamp`.
        ActKind::Relu6 => s.min(s.splat(6.0), s.max(s.zero(), v)),
        ActKind::LeakyRelu => s.select(s.ge(v, s.zero()), v, s.mul(v, s.splat(act.slope()))),
        _ => v,
    }
}

/// The activations that are not piecewise linear (tanh, sigmoid, SiLU, hard sigmoid,
/// hard swish, GELU) applied to every lane of `v`; `v` unchanged for the others.
#[inline(always)]
pub(crate) fn curved<S: Simd>(s: S, v: S::V, act: Act) -> S::V {
    match act.kind() {
        ActKind::Tanh => tanh(s, v),
        ActKind::Sigmoid => sigmoid(s, v),
        ActKind::Silu => silu_n(s, [v])[0],
        ActKind::HardSigmoid => sixth(s, relu6_shift3(s, v)),
        ActKind::HardSwish => sixth(s, s.mul(v, relu6_shift3(s, v))),
        ActKind::Gelu => gelu(s, v),
        _ => v,
    }
}

/// `act` on every float of a slice (see [`Simd::curved_slice`]) as a kernel for
/// [`Simd::run`](super::run) or a level's `with_simd`: one out-of-line loop
/// ([`Simd::vectorize`]) per kind of activation.
pub(crate) struct CurvedSlice<'a> {
    pub(crate) x: &'a mut [f32],
    pub(crate) act: Act,
}

impl super::WithSimd for CurvedSlice<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (x, act) = (self.x, self.act);
        match act.kind() {
            ActKind::Identity => {}
            ActKind::Tanh => s.vectorize(KindSlice::<TANH> { x, act }),
            ActKind::Sigmoid => s.vectorize(KindSlice::<SIGMOID> { x, act }),
            ActKind::Silu => s.vectorize(KindSlice::<SILU> { x, act }),
            ActKind::HardSigmoid | ActKind::HardSwish | ActKind::Gelu => {
                s.vectorize(KindSlice::<OTHER> { x, act })
            }
            ActKind::Relu | ActKind::Relu6 | ActKind::LeakyRelu => {
                s.vectorize(KindSlice::<PIECEWISE> { x, act })
            }
        }
    }
}

/// [`KindSlice`]'s kinds.
const TANH: u8 = 0;
const SIGMOID: u8 = 1;
const SILU: u8 = 2;
const OTHER: u8 = 3;
const PIECEWISE: u8 = 4;

/// One kind of activation over a slice, a function of its own per kind (the const
/// parameter). In one function LLVM merged the activations' loops into a single loop
/// with a jump table per vector and every constant reloaded from memory.
struct KindSlice<'a, const K: u8> {
    x: &'a mut [f32],
    act: Act,
}

impl<const K: u8> super::WithSimd for KindSlice<'_, K> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        match S::TUNING.act_vectors {
            4 => curved_slice::<S, 4, K>(s, self.x, self.act),
            2 => curved_slice::<S, 2, K>(s, self.x, self.act),
            _ => curved_slice::<S, 1, K>(s, self.x, self.act),
        }
    }
}

/// Activation `act` (of kind `K`) on every float of `x` in place: blocks of `N` whole
/// vectors, their dependency chains interleaved step by step (a tanh is some 20
/// dependent operations, more than the out-of-order window overlaps from consecutive
/// vectors: on AVX-512 one vector at a time took 2.41 µs for 4704 floats, four 1.87),
/// then whole vectors
/// one at a time, then the short rest. No closures: a closure would not inherit the
/// caller's target features, and its vector operations would become calls.
#[inline(always)]
fn curved_slice<S: Simd, const N: usize, const K: u8>(s: S, x: &mut [f32], act: Act) {
    #[inline(always)]
    fn apply<S: Simd, const M: usize, const K: u8>(s: S, v: [S::V; M], act: Act) -> [S::V; M] {
        match K {
            TANH => tanh_n(s, v),
            SIGMOID => sigmoid_n(s, v),
            SILU => silu_n(s, v),
            OTHER => lanes!(s, M, i => curved(s, v[i], act)),
            _ => lanes!(s, M, i => piecewise(s, v[i], act)),
        }
    }
    let l = S::LANES;
    let (n, p) = (x.len(), x.as_mut_ptr());
    let whole = n - n % l;
    let blocks = n - n % (N * l);
    // SAFETY: blocks of `N` vectors below `blocks`, vectors below `whole` (whole vectors
    // of `x`), then the `n - whole` floats left: inside `x`.
    unsafe {
        for i in (0..blocks).step_by(N * l) {
            let v = lanes!(s, N, j => s.load(p.add(i + j * l)));
            let y = apply::<S, N, K>(s, v, act);
            for (j, &y) in y.iter().enumerate() {
                s.store(p.add(i + j * l), y);
            }
        }
        for i in (blocks..whole).step_by(l) {
            let [y] = apply::<S, 1, K>(s, [s.load(p.add(i))], act);
            s.store(p.add(i), y);
        }
        if whole < n {
            let [y] = apply::<S, 1, K>(s, [s.load_n(p.add(whole), n - whole)], act);
            s.store_n(p.add(whole), y, n - whole);
        }
    }
}

/// `[f(0), f(1), ..., f(N - 1)]` for the expression `f(i)` in `i`, each an operation on
/// one vector: `N` independent chains written step by step, interleaved in program
/// order (a plain loop, fully unrolled for the small constant `N`).
macro_rules! lanes {
    ($s:ident, $n:ident, $i:ident => $e:expr) => {{
        let mut r = [$s.zero(); $n];
        for ($i, r) in r.iter_mut().enumerate() {
            *r = $e;
        }
        r
    }};
}
use lanes;

/// The steps the table-driven `exp_n` of the FMA levels share, for `x` in [-87, 88] (or
/// NaN) on `N` vectors: with `round` = 1.5 * 2^(23 - b) for a table of `2^b` entries `2^(j
/// / 2^b)`, `t = x log2(e) + round` (the low `b` bits of its mantissa are the table index
/// `j`), `kq = t - round` (`x log2(e)` to the nearest `2^-b`), and `e^r` for `r = x - kq
/// ln2` (`|r| <= ln2 / 2^(b+1)`, `ln2` split so that `kq * high` is exact) by the
/// polynomial `poly` (highest coefficient first). The level multiplies `e^r` by its
/// table's entry and by `2^n`.
#[inline(always)]
pub(crate) fn exp_table_reduce_n<S: Simd, const N: usize>(
    s: S,
    x: [S::V; N],
    round: f32,
    poly: &[f32],
) -> ExpReduced<S::V, N> {
    let (round, log2e) = (s.splat(round), s.splat(core::f32::consts::LOG2_E));
    let t = lanes!(s, N, i => s.mul_add(x[i], log2e, round));
    let kq = lanes!(s, N, i => s.sub(t[i], round));
    let (hi, lo) = (s.splat(0.693_359_4), s.splat(-2.121_944_4e-4));
    let r = lanes!(s, N, i => s.neg_mul_add(kq[i], hi, x[i]));
    let r = lanes!(s, N, i => s.neg_mul_add(kq[i], lo, r[i]));
    ExpReduced {
        t,
        kq,
        exp_r: horner_n(s, r, poly),
    }
}

/// What [`exp_table_reduce_n`] leaves the level: per vector `t`, `kq` and `e^r`.
pub(crate) struct ExpReduced<V, const N: usize> {
    /// `x log2(e) + round`: the table index in its mantissa's low bits.
    pub(crate) t: [V; N],
    /// `x log2(e)` to the nearest step of the table, `n + j / 2^b`.
    pub(crate) kq: [V; N],
    /// `e^r`, the polynomial's value.
    pub(crate) exp_r: [V; N],
}

/// Cephes' `e^x` for `x` in [-87, 88] on `N` vectors, interleaved (the default
/// [`Simd::exp_n`]): the polynomial of [`activation::exp`](crate::kernels::activation::exp),
/// `2^n` by [`Simd::mul_pow2`] (`n` is in [-126, 127]).
#[inline(always)]
pub(crate) fn exp_cephes_n<S: Simd, const N: usize>(s: S, x: [S::V; N]) -> [S::V; N] {
    // 1.5 * 2^23: adding it rounds to the nearest integer.
    let round = s.splat(12_582_912.0);
    let log2e = s.splat(core::f32::consts::LOG2_E);
    let t = lanes!(s, N, i => s.mul_add(x[i], log2e, round));
    let n = lanes!(s, N, i => s.sub(t[i], round));
    // x - n ln 2, with ln 2 split in two so that n * high is exact.
    let r = lanes!(s, N, i => s.neg_mul_add(n[i], s.splat(0.693_359_4), x[i]));
    let r = lanes!(s, N, i => s.neg_mul_add(n[i], s.splat(-2.121_944_4e-4), r[i]));
    let mut p = [s.splat(1.987_569_1e-4); N];
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1,
    ] {
        p = lanes!(s, N, i => s.mul_add(p[i], r[i], s.splat(c)));
    }
    // p r^2 + r: fused, with r^2 formed first; unfused, the scalar function's
    // (p r) r + r, so that the portable level keeps its bits.
    let p = if S::FMA {
        lanes!(s, N, i => s.mul_add(p[i], s.mul(r[i], r[i]), r[i]))
    } else {
        lanes!(s, N, i => s.mul_add(s.mul(p[i], r[i]), r[i], r[i]))
    };
    lanes!(s, N, i => s.mul_pow2(s.add(p[i], s.splat(1.0)), n[i]))
}

/// `tanh` lane-wise: [`activation::tanh`](crate::kernels::activation::tanh) (`x P(x^2) /
/// Q(x^2)` on the clamped argument, clamped to [-1, 1]). `max` and `min` return their
/// second operand for a NaN, so a NaN lane stays NaN.
#[inline(always)]
pub(crate) fn tanh<S: Simd>(s: S, x: S::V) -> S::V {
    tanh_n(s, [x])[0]
}

/// [`tanh`] on `N` vectors, interleaved.
#[inline(always)]
fn tanh_n<S: Simd, const N: usize>(s: S, x: [S::V; N]) -> [S::V; N] {
    let (lo, hi) = (s.splat(-TANH_CLAMP), s.splat(TANH_CLAMP));
    let c = lanes!(s, N, i => s.min(hi, s.max(lo, x[i])));
    let z = lanes!(s, N, i => s.mul(c[i], c[i]));
    let p = horner_n(s, z, &TANH_P);
    let q = horner_n(s, z, &TANH_Q);
    let (one, minus_one) = (s.splat(1.0), s.splat(-1.0));
    // Q(z) is at least its constant term (positive coefficients, z >= 0) and finite on
    // the clamped argument: in `div_approx`'s range.
    lanes!(s, N, i => s.min(one, s.max(minus_one, s.div_approx(s.mul(c[i], p[i]), q[i]))))
}

/// `1 / (1 + e^-x)` lane-wise: [`activation::sigmoid`](crate::kernels::activation::sigmoid)
/// with the vector `exp` (on the levels with fused multiply-adds as [`one_plus_exp_neg`]
/// and one division); NaN propagates through every step.
#[inline(always)]
pub(crate) fn sigmoid<S: Simd>(s: S, x: S::V) -> S::V {
    sigmoid_n(s, [x])[0]
}

/// [`sigmoid`] on `N` vectors, interleaved.
#[inline(always)]
fn sigmoid_n<S: Simd, const N: usize>(s: S, x: [S::V; N]) -> [S::V; N] {
    let one = s.splat(1.0);
    if S::FMA {
        let b = one_plus_exp_neg(s, x);
        return lanes!(s, N, i => s.div_approx(one, b[i]));
    }
    // The scalar function's steps: e^-|x| (-|x| clamped below at -87; `max` returns
    // its second operand, so NaN stays), then 1 / (1 + e), times e below 0.
    let m = lanes!(s, N, i => s.max(s.splat(-87.0), s.or(x[i], s.splat(-0.0))));
    let e = s.exp_n(m);
    // 1 + e is in [1, 2] (or NaN, which propagates).
    let pos = lanes!(s, N, i => s.div_approx(one, s.add(one, e[i])));
    lanes!(s, N, i => s.select(s.ge(x[i], s.zero()), pos[i], s.mul(e[i], pos[i])))
}

/// `x * sigmoid(x)` lane-wise on `N` vectors, interleaved: on the levels with fused
/// multiply-adds `x / (1 + e^-x)` ([`one_plus_exp_neg`], one division), without them
/// `x` times [`sigmoid`], the scalar function's operations.
#[inline(always)]
fn silu_n<S: Simd, const N: usize>(s: S, x: [S::V; N]) -> [S::V; N] {
    if S::FMA {
        let b = one_plus_exp_neg(s, x);
        return lanes!(s, N, i => s.div_approx(x[i], b[i]));
    }
    let g = sigmoid_n(s, x);
    lanes!(s, N, i => s.mul(x[i], g[i]))
}

/// `1 + e^-x` lane-wise with `-x` clamped to [-87, 87]: within [1, 6.1e37], the range of
/// [`Simd::div_approx`], so that sigmoid and SiLU take one exponential and one division
/// a lane and no select between the signs (the scalar function's `e^-|x|` and `e / (1 +
/// e)` below 0: 4 more operations a vector; SiLU 1.67 -> 1.47 µs and sigmoid 1.54 ->
/// 1.38 on 6x28x28 floats, AVX-512 on AMD Zen 4; AVX2 SiLU 2.50 -> 2.35). Below -87 the
/// sigmoid stays at `e^-87` (1.6e-38), as the scalar function's (whose `e^-|x|` is
/// clamped there too); NaN stays NaN (`min` and `max` return their second operand for
/// it).
#[inline(always)]
fn one_plus_exp_neg<S: Simd, const N: usize>(s: S, x: [S::V; N]) -> [S::V; N] {
    let (lo, hi, one) = (s.splat(-87.0), s.splat(87.0), s.splat(1.0));
    let z = lanes!(s, N, i => s.max(lo, s.min(hi, s.xor(x[i], s.splat(-0.0)))));
    let e = s.exp_n(z);
    lanes!(s, N, i => s.add(one, e[i]))
}

/// `c[0] * x^(n-1) + ... + c[n-1]` by Horner's rule.
#[inline(always)]
fn horner<S: Simd>(s: S, x: S::V, c: &[f32]) -> S::V {
    horner_n(s, [x], c)[0]
}

/// [`horner`] on `N` vectors, interleaved.
#[inline(always)]
fn horner_n<S: Simd, const N: usize>(s: S, x: [S::V; N], c: &[f32]) -> [S::V; N] {
    let mut p = [s.splat(c[0]); N];
    for &k in &c[1..] {
        p = lanes!(s, N, i => s.mul_add(p[i], x[i], s.splat(k)));
    }
    p
}

/// `x / 6`: on the levels with fused multiply-adds as `x * (1/6)` (within an ulp, at a
/// fraction of a division's cost); on the portable level the scalar functions' division.
#[inline(always)]
fn sixth<S: Simd>(s: S, x: S::V) -> S::V {
    if S::FMA {
        s.mul(x, s.splat(1.0 / 6.0))
    } else {
        s.div(x, s.splat(6.0))
    }
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
    let [e] = s.exp_n([s.max(s.splat(-87.0), s.xor(s.mul(b, b), sign))]);
    let poly = s.select(
        s.lt(b, s.splat(2.0)),
        horner(s, y, &ERFC_P),
        horner(s, y, &ERFC_R),
    );
    let h = s.mul(half, s.mul(s.mul(e, q), poly));
    let big = s.select(s.ge(u, s.zero()), s.sub(one, h), h);
    s.mul(x, s.select(s.lt(a, one), small, big))
}
