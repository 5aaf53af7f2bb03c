//! The AVX-512 level: `__m512` vectors of sixteen `f32`s (AVX-512F and DQ, plus the AVX2
//! and FMA every such CPU has), masked loads and stores through `__mmask16`.
//!
//! Same structure as [`x86_avx2`](super::x86_avx2): every method is `#[inline(always)]`
//! and only ever inlined into code compiled with `#[target_feature(enable =
//! "avx512f,avx512dq,avx2,fma")]`. `exp`, `tanh` and `sigmoid` are the Cephes algorithms
//! of [`activation`](crate::kernels::activation) with fused multiply-adds, `2^n` applied
//! by `vscalefps`.
//!
//! These intrinsics and target features are stable since Rust 1.89, the workspace's
//! minimum Rust version.

use core::arch::x86_64::*;

use super::{Simd, WithSimd};
use crate::kernels::activation::Act;

/// Token of the AVX-512 level: owning one proves the CPU supports AVX-512F, AVX-512DQ,
/// AVX2 and FMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512 {
    _private: (),
}

impl Avx512 {
    /// The token, if the CPU supports AVX-512F, AVX-512DQ, AVX2 and FMA
    /// ([`crate::cpu::detected`]).
    #[inline(always)]
    pub(crate) fn try_new() -> Option<Avx512> {
        (crate::cpu::detected() >= crate::cpu::Level::Avx512).then_some(Avx512 { _private: () })
    }
}

/// Mask of the first `n` lanes (`n <= 16`).
#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as __mmask16
}

/// Every method below wraps intrinsics in `unsafe`: the single safety argument is that an
/// `Avx512` value exists only if `try_new` saw AVX-512F, AVX-512DQ, AVX2 and FMA on this
/// CPU, and that pointer arguments obey the `Simd` method's documented contract.
impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;

    #[inline(always)]
    fn zero(self) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F is available (token); the caller guarantees `p..p + 16` is
        // readable.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_n(self, p: *const f32, n: usize) -> __m512 {
        // SAFETY: AVX-512F is available (token); masked-off lanes are not accessed (no
        // fault), the caller guarantees the first `n` are readable.
        unsafe { _mm512_maskz_loadu_ps(mask(n), p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        // SAFETY: AVX-512F is available (token); the caller guarantees `p..p + 16` is
        // writable.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, v: __m512, n: usize) {
        // SAFETY: AVX-512F is available (token); masked-off lanes are not accessed, the
        // caller guarantees the first `n` are writable.
        unsafe { _mm512_mask_storeu_ps(p, mask(n), v) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn max_nan(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe {
            // `b > a ? b : a` keeps `a` when either is NaN; then take `b` where it is NaN.
            let m = _mm512_max_ps(b, a);
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b, b), m, b)
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        // SAFETY: AVX-512F is available (token).
        unsafe { deinterleave(a, b) }
    }
    #[inline(always)]
    fn pair_add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe {
            let (even, odd) = deinterleave(a, b);
            _mm512_add_ps(even, odd)
        }
    }
    #[inline(always)]
    fn pair_max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        let (even, odd) = unsafe { deinterleave(a, b) };
        self.max_nan(even, odd)
    }
    #[inline(always)]
    fn transpose(self, m: &mut [__m512]) {
        let m: &mut [__m512; 16] = m.try_into().expect("16 rows");
        // SAFETY: AVX-512F is available (token).
        unsafe {
            // Within 128-bit lanes: u[4g + j] lane k holds column 4k + j of rows
            // 4g..4g+4; then two rounds of 128-bit lane shuffles.
            let mut u = [_mm512_setzero_ps(); 16];
            for g in 0..4 {
                let r = &m[4 * g..4 * g + 4];
                let t0 = _mm512_unpacklo_ps(r[0], r[1]);
                let t1 = _mm512_unpackhi_ps(r[0], r[1]);
                let t2 = _mm512_unpacklo_ps(r[2], r[3]);
                let t3 = _mm512_unpackhi_ps(r[2], r[3]);
                u[4 * g] = _mm512_shuffle_ps::<0x44>(t0, t2);
                u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t0, t2);
                u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t1, t3);
                u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t1, t3);
            }
            for j in 0..4 {
                // v: lanes (0, 2) of rows 0-3 and 4-7; v1: lanes (1, 3). w likewise for
                // rows 8-15.
                let v0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
                let v1 = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
                let w0 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
                let w1 = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
                m[j] = _mm512_shuffle_f32x4::<0x88>(v0, w0);
                m[8 + j] = _mm512_shuffle_f32x4::<0xDD>(v0, w0);
                m[4 + j] = _mm512_shuffle_f32x4::<0x88>(v1, w1);
                m[12 + j] = _mm512_shuffle_f32x4::<0xDD>(v1, w1);
            }
        }
    }
    #[inline(always)]
    fn act(self, v: __m512, act: Act) -> __m512 {
        // SAFETY: AVX-512F and DQ are available (token).
        unsafe {
            match act {
                Act::Identity => v,
                // `v > 0 ? v : 0`: NaN gives 0, as `f32::max`.
                Act::Relu => _mm512_max_ps(v, _mm512_setzero_ps()),
                // NaN propagates through both (second operand returned), as `clamp`.
                Act::Relu6 => {
                    _mm512_min_ps(_mm512_set1_ps(6.0), _mm512_max_ps(_mm512_setzero_ps(), v))
                }
                Act::Tanh => tanh(v),
                Act::Sigmoid => sigmoid(v),
                Act::LeakyRelu(slope) => {
                    let neg = _mm512_mul_ps(v, _mm512_set1_ps(slope));
                    let pos = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, _mm512_setzero_ps());
                    _mm512_mask_blend_ps(pos, neg, v)
                }
                Act::Silu | Act::HardSigmoid | Act::HardSwish | Act::Gelu => act_ext(v, act),
            }
        }
    }
    #[inline(always)]
    fn vectorize<K: WithSimd>(self, k: K) -> K::Output {
        /// `k` compiled for AVX-512, not inlined into its caller.
        ///
        /// # Safety
        ///
        /// The CPU must support AVX-512F, AVX-512DQ, AVX2 and FMA (owning `token` proves
        /// it).
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        #[inline(never)]
        unsafe fn isolated<K: WithSimd>(token: Avx512, k: K) -> K::Output {
            k.with_simd(token)
        }
        // SAFETY: the token proves the features are available.
        unsafe { isolated(self, k) }
    }
}

/// The even and the odd lanes of the concatenation `a ++ b`.
///
/// # Safety
///
/// AVX-512F must be available.
#[inline(always)]
unsafe fn deinterleave(a: __m512, b: __m512) -> (__m512, __m512) {
    // SAFETY: AVX-512F is available per this function's contract.
    unsafe {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        (
            _mm512_permutex2var_ps(a, even, b),
            _mm512_permutex2var_ps(a, odd, b),
        )
    }
}

/// `e^x` for `x` already in [-87, 88] (or NaN, which propagates): the Cephes polynomial
/// with fused multiply-adds, `2^n` by `vscalefps`.
///
/// # Safety
///
/// AVX-512F must be available.
#[inline(always)]
unsafe fn exp_in_range(x: __m512) -> __m512 {
    // SAFETY: AVX-512F is available per this function's contract.
    unsafe {
        let round = _mm512_set1_ps(12_582_912.0);
        let t = _mm512_fmadd_ps(x, _mm512_set1_ps(core::f32::consts::LOG2_E), round);
        let n = _mm512_sub_ps(t, round);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            5e-1,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let p = _mm512_add_ps(
            _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
            _mm512_set1_ps(1.0),
        );
        _mm512_scalef_ps(p, n)
    }
}

/// `tanh` lane-wise: [`activation::tanh`](crate::kernels::activation::tanh) (polynomial
/// below 0.625, `1 - 2 / (e^{2|x|} + 1)` above) with fused multiply-adds. A NaN lane
/// takes the polynomial branch (the comparison is unordered-true) and stays NaN.
///
/// # Safety
///
/// AVX-512F and AVX-512DQ must be available.
#[inline(always)]
pub(crate) unsafe fn tanh(x: __m512) -> __m512 {
    // SAFETY: AVX-512F and DQ are available per this function's contract.
    unsafe {
        let a = _mm512_abs_ps(x);
        let z = _mm512_mul_ps(x, x);
        let mut q = _mm512_set1_ps(-5.704_988_7e-3);
        for c in [2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
            q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(c));
        }
        let small = _mm512_fmadd_ps(_mm512_mul_ps(q, z), a, a);
        // 2 * min(a, 10) is in [0, 20]: no clamp needed.
        let e = exp_in_range(_mm512_min_ps(_mm512_add_ps(a, a), _mm512_set1_ps(20.0)));
        let one = _mm512_set1_ps(1.0);
        let big = _mm512_sub_ps(
            one,
            _mm512_div_ps(_mm512_set1_ps(2.0), _mm512_add_ps(e, one)),
        );
        let is_small = _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(a, _mm512_set1_ps(0.625));
        let r = _mm512_mask_blend_ps(is_small, big, small);
        // Both branches are >= 0: copy the sign of x in.
        _mm512_or_ps(r, _mm512_and_ps(x, _mm512_set1_ps(-0.0)))
    }
}

/// `1 / (1 + e^-x)` lane-wise: [`activation::sigmoid`](crate::kernels::activation::sigmoid)
/// with the vector `exp`; NaN propagates through every step.
///
/// # Safety
///
/// AVX-512F and AVX-512DQ must be available.
#[inline(always)]
pub(crate) unsafe fn sigmoid(x: __m512) -> __m512 {
    // SAFETY: AVX-512F and DQ are available per this function's contract.
    unsafe {
        // -|x| clamped below at -87 (`max` returns its second operand, so NaN stays).
        let m = _mm512_max_ps(_mm512_set1_ps(-87.0), _mm512_or_ps(x, _mm512_set1_ps(-0.0)));
        let e = exp_in_range(m);
        let one = _mm512_set1_ps(1.0);
        let pos = _mm512_div_ps(one, _mm512_add_ps(one, e));
        let nonneg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_setzero_ps());
        _mm512_mask_blend_ps(nonneg, _mm512_mul_ps(e, pos), pos)
    }
}

/// `c[0] * x^(n-1) + ... + c[n-1]` by Horner's rule with fused multiply-adds.
///
/// # Safety
///
/// AVX-512F must be available.
#[inline(always)]
unsafe fn horner(x: __m512, c: &[f32]) -> __m512 {
    // SAFETY: AVX-512F is available per this function's contract.
    unsafe {
        let mut p = _mm512_set1_ps(c[0]);
        for &k in &c[1..] {
            p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(k));
        }
        p
    }
}

/// `relu6(x + 3)` lane-wise, NaN propagated.
///
/// # Safety
///
/// AVX-512F must be available.
#[inline(always)]
unsafe fn relu6_shift3(x: __m512) -> __m512 {
    // SAFETY: AVX-512F is available per this function's contract.
    unsafe {
        let v = _mm512_add_ps(x, _mm512_set1_ps(3.0));
        _mm512_min_ps(_mm512_set1_ps(6.0), _mm512_max_ps(_mm512_setzero_ps(), v))
    }
}

/// The exact GELU lane-wise: [`activation::gelu`](crate::kernels::activation::gelu)
/// (Cephes' `erff` below `|x / sqrt 2| = 1`, `erfcf` above) with fused multiply-adds.
/// A NaN lane takes the `erfc` branch, which stays finite, and the final product with
/// `x` makes it NaN.
///
/// # Safety
///
/// AVX-512F and AVX-512DQ must be available.
#[inline(always)]
pub(crate) unsafe fn gelu(x: __m512) -> __m512 {
    use crate::kernels::activation::{ERFC_P, ERFC_R, ERF_T};
    // SAFETY: AVX-512F and DQ are available per this function's contract.
    unsafe {
        let sign = _mm512_set1_ps(-0.0);
        let one = _mm512_set1_ps(1.0);
        let half = _mm512_set1_ps(0.5);
        let u = _mm512_mul_ps(x, _mm512_set1_ps(core::f32::consts::FRAC_1_SQRT_2));
        let a = _mm512_abs_ps(u);
        let erf = _mm512_mul_ps(horner(_mm512_mul_ps(a, a), &ERF_T), a);
        let erf = _mm512_or_ps(_mm512_abs_ps(erf), _mm512_and_ps(u, sign));
        let small = _mm512_fmadd_ps(half, erf, half);
        // `max` returns its second operand for NaN: b is in [1, inf].
        let b = _mm512_max_ps(a, one);
        let q = _mm512_div_ps(one, b);
        let y = _mm512_mul_ps(q, q);
        // -b^2 <= -1: only the lower clamp matters.
        let e = exp_in_range(_mm512_max_ps(
            _mm512_set1_ps(-87.0),
            _mm512_xor_ps(_mm512_mul_ps(b, b), sign),
        ));
        let mid = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(b, _mm512_set1_ps(2.0));
        let poly = _mm512_mask_blend_ps(mid, horner(y, &ERFC_R), horner(y, &ERFC_P));
        let h = _mm512_mul_ps(half, _mm512_mul_ps(_mm512_mul_ps(e, q), poly));
        let nonneg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(u, _mm512_setzero_ps());
        let big = _mm512_mask_blend_ps(nonneg, h, _mm512_sub_ps(one, h));
        let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, one);
        _mm512_mul_ps(x, _mm512_mask_blend_ps(is_small, big, small))
    }
}

/// The activations added with the graph ops, out of line: their code inlined into every
/// fused epilogue crowded the convolution micro-kernels' registers (fcn_seg, which uses
/// none of them, ran 2.2x slower). One call per vector of the epilogue.
///
/// # Safety
///
/// AVX-512F and AVX-512DQ must be available.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn act_ext(v: __m512, act: Act) -> __m512 {
    // SAFETY: AVX-512F and DQ are available per this function's contract.
    unsafe {
        match act {
            Act::Silu => _mm512_mul_ps(v, sigmoid(v)),
            Act::HardSigmoid => _mm512_div_ps(relu6_shift3(v), _mm512_set1_ps(6.0)),
            Act::HardSwish => _mm512_div_ps(_mm512_mul_ps(v, relu6_shift3(v)), _mm512_set1_ps(6.0)),
            Act::Gelu => gelu(v),
            _ => v,
        }
    }
}
