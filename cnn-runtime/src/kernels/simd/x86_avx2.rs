//! The AVX2 + FMA level: `__m256` vectors of eight `f32`s.
//!
//! Every method is `#[inline(always)]` and is only ever inlined into code compiled with
//! `#[target_feature(enable = "avx2,fma")]` (see [`run`](super::run)), where the
//! intrinsics become single instructions. `exp`, `tanh` and `sigmoid` are the algorithms
//! of [`activation`](crate::kernels::activation) (Cephes), evaluated with fused
//! multiply-adds: same accuracy, tested against f64 like the scalar versions.

use core::arch::x86_64::*;

use super::{Simd, WithSimd};
use crate::kernels::activation::Act;

/// Token of the AVX2 + FMA level: owning one proves the CPU supports both.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2 {
    _private: (),
}

impl Avx2 {
    /// The token, if the CPU supports AVX2 and FMA ([`crate::cpu::detected`]: std caches
    /// the run-time detection; without std, what the target was compiled for).
    #[inline(always)]
    pub(crate) fn try_new() -> Option<Avx2> {
        (crate::cpu::detected() >= crate::cpu::Level::Avx2Fma).then_some(Avx2 { _private: () })
    }
}

/// `[-1; 8]` then `[0; 8]`: the eight `i32`s at `8 - n` are a mask of the first `n` lanes.
static MASKS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Mask of the first `n` lanes (`n <= 8`).
///
/// # Safety
///
/// AVX must be available (the `Avx2` token proves it).
#[inline(always)]
unsafe fn mask(n: usize) -> __m256i {
    debug_assert!(n <= 8);
    // SAFETY: `8 - n` is in 0..=8, so the eight i32s read are inside `MASKS`; AVX is
    // available per this function's contract.
    unsafe { _mm256_loadu_si256(MASKS.as_ptr().add(8 - n).cast()) }
}

/// Every method below wraps intrinsics in `unsafe`: the single safety argument is that an
/// `Avx2` value exists only if `try_new` saw AVX2 and FMA on this CPU, and that pointer
/// arguments obey the `Simd` method's documented contract.
impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;

    #[inline(always)]
    fn zero(self) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        // SAFETY: AVX is available (token); the caller guarantees `p..p + 8` is readable.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_n(self, p: *const f32, n: usize) -> __m256 {
        // SAFETY: AVX is available (token); masked-off lanes are not accessed, the caller
        // guarantees the first `n` are readable.
        unsafe { _mm256_maskload_ps(p, mask(n)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        // SAFETY: AVX is available (token); the caller guarantees `p..p + 8` is writable.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, v: __m256, n: usize) {
        // Piecewise (4, 2, 1 lanes): `vmaskmovps` stores are microcoded and slow on AMD.
        debug_assert!(n <= 8);
        // SAFETY: AVX is available (token); each store writes lanes below `n`, which the
        // caller guarantees are writable.
        unsafe {
            if n == 8 {
                return _mm256_storeu_ps(p, v);
            }
            let mut x = _mm256_castps256_ps128(v);
            let mut p = p;
            if n & 4 != 0 {
                _mm_storeu_ps(p, x);
                x = _mm256_extractf128_ps::<1>(v);
                p = p.add(4);
            }
            if n & 2 != 0 {
                _mm_store_sd(p.cast(), _mm_castps_pd(x));
                x = _mm_movehl_ps(x, x);
                p = p.add(2);
            }
            if n & 1 != 0 {
                _mm_store_ss(p, x);
            }
        }
    }
    #[inline(always)]
    unsafe fn bcast(self, p: *const f32) -> __m256 {
        // SAFETY: AVX is available (token); the caller guarantees `p` is readable.
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA is available (token).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn max_nan(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe {
            // `b > a ? b : a` keeps `a` when either is NaN; then take `b` where it is NaN.
            let m = _mm256_max_ps(b, a);
            _mm256_blendv_ps(m, b, _mm256_cmp_ps::<_CMP_UNORD_Q>(b, b))
        }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        // SAFETY: AVX and AVX2 are available (token).
        unsafe {
            // Per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6]; reorder the 64-bit quarters.
            let even = _mm256_shuffle_ps::<0x88>(a, b);
            let odd = _mm256_shuffle_ps::<0xDD>(a, b);
            let fix =
                |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
            (fix(even), fix(odd))
        }
    }
    #[inline(always)]
    fn pair_add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX and AVX2 are available (token).
        unsafe {
            // hadd: [a01 a23 b01 b23 | a45 a67 b45 b67]; reorder the 64-bit halves.
            let h = _mm256_hadd_ps(a, b);
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(h)))
        }
    }
    #[inline(always)]
    fn pair_max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX and AVX2 are available (token).
        unsafe {
            let even = _mm256_shuffle_ps::<0x88>(a, b);
            let odd = _mm256_shuffle_ps::<0xDD>(a, b);
            let m = self.max_nan(even, odd);
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(m)))
        }
    }
    #[inline(always)]
    fn transpose(self, m: &mut [__m256]) {
        let m: &mut [__m256; 8] = m.try_into().expect("8 rows");
        // SAFETY: AVX is available (token).
        unsafe {
            // Within 128-bit halves: u[4h + j] half k holds column 4k + j of rows
            // 4h..4h+4; then swap halves.
            let mut u = [_mm256_setzero_ps(); 8];
            for h in 0..2 {
                let r = &m[4 * h..4 * h + 4];
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                u[4 * h] = _mm256_shuffle_ps::<0x44>(t0, t2);
                u[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(t0, t2);
                u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(t1, t3);
                u[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(t1, t3);
            }
            for j in 0..4 {
                m[j] = _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]);
                m[4 + j] = _mm256_permute2f128_ps::<0x31>(u[j], u[4 + j]);
            }
        }
    }
    #[inline(always)]
    fn act(self, v: __m256, act: Act) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe {
            match act {
                Act::Identity => v,
                // `v > 0 ? v : 0`: NaN gives 0, as `f32::max`.
                Act::Relu => _mm256_max_ps(v, _mm256_setzero_ps()),
                // NaN propagates through both (second operand returned), as `clamp`.
                Act::Relu6 => {
                    _mm256_min_ps(_mm256_set1_ps(6.0), _mm256_max_ps(_mm256_setzero_ps(), v))
                }
                Act::Tanh => tanh(v),
                Act::Sigmoid => sigmoid(v),
                Act::LeakyRelu(slope) => {
                    let neg = _mm256_mul_ps(v, _mm256_set1_ps(slope));
                    let pos = _mm256_cmp_ps::<_CMP_GE_OQ>(v, _mm256_setzero_ps());
                    _mm256_blendv_ps(neg, v, pos)
                }
                Act::Silu | Act::HardSigmoid | Act::HardSwish | Act::Gelu => act_ext(v, act),
            }
        }
    }
    #[inline(always)]
    fn vectorize<K: WithSimd>(self, k: K) -> K::Output {
        /// `k` compiled for AVX2 and FMA, not inlined into its caller.
        ///
        /// # Safety
        ///
        /// The CPU must support AVX2 and FMA (owning `token` proves it).
        #[target_feature(enable = "avx2,fma")]
        #[inline(never)]
        unsafe fn isolated<K: WithSimd>(token: Avx2, k: K) -> K::Output {
            k.with_simd(token)
        }
        // SAFETY: the token proves AVX2 and FMA are available.
        unsafe { isolated(self, k) }
    }
}

/// `e^x` for `x` already in [-87, 88] (or NaN, which propagates): the Cephes polynomial
/// of [`activation::exp`](crate::kernels::activation::exp) with fused multiply-adds, `2^n`
/// built in the exponent field (`n` in [-126, 127]).
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[inline(always)]
unsafe fn exp_in_range(x: __m256) -> __m256 {
    // SAFETY: AVX2 and FMA are available per this function's contract.
    unsafe {
        let round = _mm256_set1_ps(12_582_912.0);
        let t = _mm256_fmadd_ps(x, _mm256_set1_ps(core::f32::consts::LOG2_E), round);
        let n = _mm256_sub_ps(t, round);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            5e-1,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let p = _mm256_add_ps(
            _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        // t holds n + 1.5 * 2^23 in its low mantissa bits: (n + 127) << 23 is 2^n.
        let bias = _mm256_set1_epi32(127 - 0x4B40_0000);
        let pow = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_castps_si256(t), bias));
        _mm256_mul_ps(p, _mm256_castsi256_ps(pow))
    }
}

/// `tanh` lane-wise: [`activation::tanh`](crate::kernels::activation::tanh) (polynomial
/// below 0.625, `1 - 2 / (e^{2|x|} + 1)` above) with fused multiply-adds. A NaN lane
/// takes the polynomial branch (the comparison is unordered-true) and stays NaN.
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[inline(always)]
pub(crate) unsafe fn tanh(x: __m256) -> __m256 {
    // SAFETY: AVX2 and FMA are available per this function's contract.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        let a = _mm256_andnot_ps(sign, x);
        let z = _mm256_mul_ps(x, x);
        let mut q = _mm256_set1_ps(-5.704_988_7e-3);
        for c in [2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
            q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(c));
        }
        let small = _mm256_fmadd_ps(_mm256_mul_ps(q, z), a, a);
        // 2 * min(a, 10) is in [0, 20]: no clamp needed.
        let e = exp_in_range(_mm256_min_ps(_mm256_add_ps(a, a), _mm256_set1_ps(20.0)));
        let one = _mm256_set1_ps(1.0);
        let big = _mm256_sub_ps(
            one,
            _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)),
        );
        let is_small = _mm256_cmp_ps::<_CMP_NGE_UQ>(a, _mm256_set1_ps(0.625));
        let r = _mm256_blendv_ps(big, small, is_small);
        // Both branches are >= 0: copy the sign of x in.
        _mm256_or_ps(r, _mm256_and_ps(x, sign))
    }
}

/// `1 / (1 + e^-x)` lane-wise: [`activation::sigmoid`](crate::kernels::activation::sigmoid)
/// with the vector `exp`; NaN propagates through every step.
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[inline(always)]
pub(crate) unsafe fn sigmoid(x: __m256) -> __m256 {
    // SAFETY: AVX2 and FMA are available per this function's contract.
    unsafe {
        // -|x| clamped below at -87 (`max` returns its second operand, so NaN stays).
        let m = _mm256_max_ps(_mm256_set1_ps(-87.0), _mm256_or_ps(x, _mm256_set1_ps(-0.0)));
        let e = exp_in_range(m);
        let one = _mm256_set1_ps(1.0);
        let pos = _mm256_div_ps(one, _mm256_add_ps(one, e));
        let nonneg = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_setzero_ps());
        _mm256_blendv_ps(_mm256_mul_ps(e, pos), pos, nonneg)
    }
}

/// `c[0] * x^(n-1) + ... + c[n-1]` by Horner's rule with fused multiply-adds.
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[inline(always)]
unsafe fn horner(x: __m256, c: &[f32]) -> __m256 {
    // SAFETY: AVX2 and FMA are available per this function's contract.
    unsafe {
        let mut p = _mm256_set1_ps(c[0]);
        for &k in &c[1..] {
            p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(k));
        }
        p
    }
}

/// `relu6(x + 3)` lane-wise, NaN propagated.
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[inline(always)]
unsafe fn relu6_shift3(x: __m256) -> __m256 {
    // SAFETY: AVX2 is available per this function's contract.
    unsafe {
        let v = _mm256_add_ps(x, _mm256_set1_ps(3.0));
        _mm256_min_ps(_mm256_set1_ps(6.0), _mm256_max_ps(_mm256_setzero_ps(), v))
    }
}

/// The exact GELU lane-wise: [`activation::gelu`](crate::kernels::activation::gelu)
/// (Cephes' `erff` below `|x / sqrt 2| = 1`, `erfcf` above) with fused multiply-adds.
/// A NaN lane takes the `erfc` branch, which stays finite, and the final product with
/// `x` makes it NaN.
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[inline(always)]
pub(crate) unsafe fn gelu(x: __m256) -> __m256 {
    use crate::kernels::activation::{ERFC_P, ERFC_R, ERF_T};
    // SAFETY: AVX2 and FMA are available per this function's contract.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        let one = _mm256_set1_ps(1.0);
        let half = _mm256_set1_ps(0.5);
        let u = _mm256_mul_ps(x, _mm256_set1_ps(core::f32::consts::FRAC_1_SQRT_2));
        let a = _mm256_andnot_ps(sign, u);
        let erf = _mm256_mul_ps(horner(_mm256_mul_ps(a, a), &ERF_T), a);
        let erf = _mm256_or_ps(_mm256_andnot_ps(sign, erf), _mm256_and_ps(u, sign));
        let small = _mm256_fmadd_ps(half, erf, half);
        // `max` returns its second operand for NaN: b is in [1, inf].
        let b = _mm256_max_ps(a, one);
        let q = _mm256_div_ps(one, b);
        let y = _mm256_mul_ps(q, q);
        // -b^2 <= -1: only the lower clamp matters.
        let e = exp_in_range(_mm256_max_ps(
            _mm256_set1_ps(-87.0),
            _mm256_xor_ps(_mm256_mul_ps(b, b), sign),
        ));
        let mid = _mm256_cmp_ps::<_CMP_LT_OQ>(b, _mm256_set1_ps(2.0));
        let poly = _mm256_blendv_ps(horner(y, &ERFC_R), horner(y, &ERFC_P), mid);
        let h = _mm256_mul_ps(half, _mm256_mul_ps(_mm256_mul_ps(e, q), poly));
        let nonneg = _mm256_cmp_ps::<_CMP_GE_OQ>(u, _mm256_setzero_ps());
        let big = _mm256_blendv_ps(h, _mm256_sub_ps(one, h), nonneg);
        let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(a, one);
        _mm256_mul_ps(x, _mm256_blendv_ps(big, small, is_small))
    }
}

/// The activations added with the graph ops, out of line (see the AVX-512 file): one
/// call per vector of a fused epilogue, keeping the micro-kernels' code as it was.
///
/// # Safety
///
/// AVX2 and FMA must be available.
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
unsafe fn act_ext(v: __m256, act: Act) -> __m256 {
    // SAFETY: AVX2 and FMA are available per this function's contract.
    unsafe {
        match act {
            Act::Silu => _mm256_mul_ps(v, sigmoid(v)),
            Act::HardSigmoid => _mm256_div_ps(relu6_shift3(v), _mm256_set1_ps(6.0)),
            Act::HardSwish => _mm256_div_ps(_mm256_mul_ps(v, relu6_shift3(v)), _mm256_set1_ps(6.0)),
            Act::Gelu => gelu(v),
            _ => v,
        }
    }
}
