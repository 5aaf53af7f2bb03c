//! The AVX-512 level: `__m512` vectors of sixteen `f32`s (AVX-512F and DQ, plus the AVX2
//! and FMA every such CPU has), masked loads and stores through `__mmask16`.
//!
//! Same structure as [`x86_avx2`](super::x86_avx2): every method is `#[inline(always)]`
//! and only ever inlined into code compiled with `#[target_feature(enable =
//! "avx512f,avx512dq,avx2,fma")]`. The activations are the generic ones of `act.rs` (the
//! algorithms of [`activation`](crate::kernels::activation) with fused multiply-adds),
//! `2^n` applied by `vscalefps`, except `exp` ([`Simd::exp_n`]): a table of `2^(j/16)` in
//! a register and a cubic.
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

/// `2^(j/16)` for `j` in `0..16`, each rounded to the nearest `f32` ([`Avx512`]'s `exp`).
#[allow(clippy::excessive_precision)]
const EXP2_SIXTEENTHS: [f32; 16] = [
    1.0,
    1.044_273_782_427_413_8,
    1.090_507_732_665_257_7,
    1.138_788_634_756_691_6,
    1.189_207_115_002_721,
    1.241_857_812_073_484,
    1.296_839_554_651_009_6,
    1.354_255_546_936_892_7,
    core::f32::consts::SQRT_2,
    1.476_826_145_939_499_3,
    1.542_210_825_407_940_7,
    1.610_490_331_949_254_3,
    1.681_792_830_507_429,
    1.756_252_160_373_299_5,
    1.834_008_086_409_342_4,
    1.915_206_561_397_147_4,
];

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
    const FMA: bool = true;
    type V = __m512;
    type M = __mmask16;

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
    fn mul_add_keep(self, a: __m512, b: __m512, c: __m512, keep: u32, _keep_v: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_mask3_fmadd_ps(a, b, c, keep as __mmask16) }
    }
    #[inline(always)]
    fn mul_keep(self, a: __m512, b: __m512, keep: u32, _keep_v: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_maskz_mul_ps(keep as __mmask16, a, b) }
    }
    #[inline(always)]
    fn neg_mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn div_approx(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe {
            // 1/b within 2^-14; one Newton step r + r (1 - b r) squares the error.
            let r = _mm512_rcp14_ps(b);
            let e = _mm512_fnmadd_ps(b, r, _mm512_set1_ps(1.0));
            _mm512_mul_ps(a, _mm512_fmadd_ps(r, e, r))
        }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn abs(self, a: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_abs_ps(a) }
    }
    #[inline(always)]
    fn and(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512DQ is available (token).
        unsafe { _mm512_and_ps(a, b) }
    }
    #[inline(always)]
    fn or(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512DQ is available (token).
        unsafe { _mm512_or_ps(a, b) }
    }
    #[inline(always)]
    fn xor(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512DQ is available (token).
        unsafe { _mm512_xor_ps(a, b) }
    }
    #[inline(always)]
    fn mul_pow2(self, a: __m512, n: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_scalef_ps(a, n) }
    }
    #[inline(always)]
    fn exp_n<const N: usize>(self, x: [__m512; N]) -> [__m512; N] {
        // e^x = 2^n 2^(j/16) e^r: x = (16 n + j) ln2 / 16 + r with |r| <= ln2 / 32, so a
        // cubic gives e^r within 9.2e-9 (r^4 / 24, a sixth of an ulp) where Cephes' needs
        // a quintic over |r| <= ln2 / 2; 2^(j/16) from a register by `vpermps` (a shuffle
        // port, not the multiply-adds'), 2^n by `vscalefps`: 10 operations, 7 of them on
        // the multiply-add ports, against Cephes' 13 and 11.
        // SAFETY: AVX-512F is available (token).
        unsafe {
            let table = _mm512_loadu_ps(EXP2_SIXTEENTHS.as_ptr());
            // 1.5 * 2^19: adding it rounds to the nearest sixteenth; the low four bits
            // of the sum's mantissa are then j (k = 16 n + j, j in 0..16).
            let cubic = [1.0 / 6.0, 0.5, 1.0, 1.0];
            let e = super::act::exp_table_reduce_n(self, x, 786_432.0, &cubic);
            let (t, kq, mut p) = (e.t, e.kq, e.exp_r);
            for i in 0..N {
                let tj = _mm512_permutexvar_ps(_mm512_castps_si512(t[i]), table);
                // 2^floor(kq) = 2^n.
                p[i] = _mm512_scalef_ps(_mm512_mul_ps(p[i], tj), kq[i]);
            }
            p
        }
    }
    #[inline(always)]
    fn lt(self, a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn ge(self, a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, b) }
    }
    #[inline(always)]
    fn select(self, m: __mmask16, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe { _mm512_mask_blend_ps(m, b, a) }
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
    fn interleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        // SAFETY: AVX-512F is available (token).
        unsafe {
            let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            (
                _mm512_permutex2var_ps(a, lo, b),
                _mm512_permutex2var_ps(a, hi, b),
            )
        }
    }
    #[inline(always)]
    fn shift_in(self, prev: __m512, v: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe {
            // (v ++ prev) shifted down 15 elements: prev[15], v[0], ..., v[14].
            _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                _mm512_castps_si512(v),
                _mm512_castps_si512(prev),
            ))
        }
    }
    #[inline(always)]
    fn shift_out(self, v: __m512, next: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        unsafe {
            // (next ++ v) shifted down one element: v[1], ..., v[15], next[0].
            _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                _mm512_castps_si512(next),
                _mm512_castps_si512(v),
            ))
        }
    }
    #[inline(always)]
    fn upper_half(self, v: __m512) -> __m512 {
        // SAFETY: AVX-512F is available (token).
        // 128-bit blocks [2, 3, 2, 3] of `v`.
        unsafe { _mm512_shuffle_f32x4::<0xEE>(v, v) }
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
    fn act_curved(self, v: __m512, act: Act) -> __m512 {
        /// The curved activations, out of line (see [`Simd::act_curved`]): one call per
        /// vector of a fused epilogue.
        ///
        /// # Safety
        ///
        /// The CPU must support AVX-512F, AVX-512DQ, AVX2 and FMA (owning `token`
        /// proves it).
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        #[inline(never)]
        unsafe fn one(token: Avx512, v: __m512, act: Act) -> __m512 {
            super::act::curved(token, v, act)
        }
        // SAFETY: the token proves the features are available.
        unsafe { one(self, v, act) }
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
