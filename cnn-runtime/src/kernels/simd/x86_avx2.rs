//! The AVX2 + FMA level: `__m256` vectors of eight `f32`s.
//!
//! Every method is `#[inline(always)]` and is only ever inlined into code compiled with
//! `#[target_feature(enable = "avx2,fma")]` (see [`run`](super::run)), where the
//! intrinsics become single instructions. The activations are the generic ones of
//! `act.rs` (the algorithms of [`activation`](crate::kernels::activation) with fused
//! multiply-adds, tested against f64 like the scalar versions), except `exp`
//! ([`Simd::exp_n`]): a table of `2^(j/8)` in a register and a quartic.

use core::arch::x86_64::*;

use super::{Simd, WithSimd};
use crate::kernels::activation::Act;

/// `2^(j/8)` for `j` in `0..8`, each rounded to the nearest `f32` ([`Avx2`]'s `exp`).
#[allow(clippy::excessive_precision)]
const EXP2_EIGHTHS: [f32; 8] = [
    1.0,
    1.090_507_732_665_257_7,
    1.189_207_115_002_721,
    1.296_839_554_651_009_6,
    core::f32::consts::SQRT_2,
    1.542_210_825_407_940_7,
    1.681_792_830_507_429,
    1.834_008_086_409_342_4,
];

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
    const FMA: bool = true;
    type V = __m256;
    type M = __m256;

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
    fn neg_mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA is available (token).
        unsafe { _mm256_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn div_approx(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX and FMA are available (token).
        unsafe {
            // 1/b within 1.5 * 2^-12; one Newton step r + r (1 - b r) squares the error.
            let r = _mm256_rcp_ps(b);
            let e = _mm256_fnmadd_ps(b, r, _mm256_set1_ps(1.0));
            _mm256_mul_ps(a, _mm256_fmadd_ps(r, e, r))
        }
    }
    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn abs(self, a: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }
    #[inline(always)]
    fn and(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_and_ps(a, b) }
    }
    #[inline(always)]
    fn or(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_or_ps(a, b) }
    }
    #[inline(always)]
    fn xor(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_xor_ps(a, b) }
    }
    #[inline(always)]
    fn exp_n<const N: usize>(self, x: [__m256; N]) -> [__m256; N] {
        // e^x = 2^n 2^(j/8) e^r: x = (8 n + j) ln2 / 8 + r with |r| <= ln2 / 16, so a
        // quartic gives e^r within 1.3e-9 (r^5 / 120) where Cephes' needs a quintic over
        // |r| <= ln2 / 2; 2^(j/8) from a register by `vpermps` (a shuffle port), 2^n added
        // to its exponent field by integer operations (2^(j/8) 2^n is normal for x in
        // [-87, 88]; a NaN x makes the product with e^r NaN whatever the integers): 8
        // operations on the multiply-add ports instead of Cephes' 11.
        // SAFETY: AVX2 and FMA are available (token).
        unsafe {
            let table = _mm256_loadu_ps(EXP2_EIGHTHS.as_ptr());
            // 1.5 * 2^20: adding it rounds to the nearest eighth; the sum's mantissa is
            // then 2^22 + k (k = 8 n + j), its low three bits j.
            let round = 1_572_864.0;
            let quartic = [1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
            let e = super::act::exp_table_reduce_n(self, x, round, &quartic);
            let (t, mut p) = (e.t, e.exp_r);
            let (round_bits, exp_field) = (
                _mm256_castps_si256(_mm256_set1_ps(round)),
                _mm256_set1_epi32(!0x7f_ffff),
            );
            for i in 0..N {
                let tb = _mm256_castps_si256(t[i]);
                let tj = _mm256_castps_si256(_mm256_permutevar8x32_ps(table, tb));
                // n << 23: k << 20 with j's three bits cleared.
                let k = _mm256_sub_epi32(tb, round_bits);
                let n = _mm256_and_si256(_mm256_slli_epi32::<20>(k), exp_field);
                p[i] = _mm256_mul_ps(p[i], _mm256_castsi256_ps(_mm256_add_epi32(tj, n)));
            }
            p
        }
    }
    #[inline(always)]
    fn mul_pow2(self, a: __m256, n: __m256) -> __m256 {
        // SAFETY: AVX and AVX2 are available (token).
        unsafe {
            // 2^n from the exponent field: (n + 127) << 23, n in [-126, 127].
            let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_mul_ps(a, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e)))
        }
    }
    #[inline(always)]
    fn lt(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn ge(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_cmp_ps::<_CMP_GE_OQ>(a, b) }
    }
    #[inline(always)]
    fn select(self, m: __m256, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        unsafe { _mm256_blendv_ps(b, a, m) }
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
    fn interleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
        // SAFETY: AVX is available (token).
        unsafe {
            // [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7], then their
            // low halves and their high halves.
            let (l, h) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            (
                _mm256_permute2f128_ps::<0x20>(l, h),
                _mm256_permute2f128_ps::<0x31>(l, h),
            )
        }
    }
    #[inline(always)]
    fn deinterleave_unordered(self, a: __m256, b: __m256) -> (__m256, __m256) {
        // SAFETY: AVX is available (token).
        unsafe {
            // Per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6], the 64-bit quarters of the
            // ordered result as 0, 2, 1, 3 (`unorder` swaps the middle two back).
            (
                _mm256_shuffle_ps::<0x88>(a, b),
                _mm256_shuffle_ps::<0xDD>(a, b),
            )
        }
    }
    #[inline(always)]
    fn unorder(self, v: __m256) -> __m256 {
        // SAFETY: AVX2 is available (token).
        unsafe { _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v))) }
    }
    #[inline(always)]
    fn shift_in(self, prev: __m256, v: __m256) -> __m256 {
        // SAFETY: AVX and AVX2 are available (token).
        unsafe {
            // t = [prev[4..8], v[0..4]]; per 128-bit half, (v ++ t) shifted down 12
            // bytes: [prev[7], v[0], v[1], v[2] | v[3], v[4], v[5], v[6]].
            let t = _mm256_permute2f128_ps::<0x21>(prev, v);
            _mm256_castsi256_ps(_mm256_alignr_epi8::<12>(
                _mm256_castps_si256(v),
                _mm256_castps_si256(t),
            ))
        }
    }
    #[inline(always)]
    fn shift_out(self, v: __m256, next: __m256) -> __m256 {
        // SAFETY: AVX and AVX2 are available (token).
        unsafe {
            // t = [v[4..8], next[0..4]]; per 128-bit half, (t ++ v) shifted down 4
            // bytes: [v[1], v[2], v[3], v[4] | v[5], v[6], v[7], next[0]].
            let t = _mm256_permute2f128_ps::<0x21>(v, next);
            _mm256_castsi256_ps(_mm256_alignr_epi8::<4>(
                _mm256_castps_si256(t),
                _mm256_castps_si256(v),
            ))
        }
    }
    #[inline(always)]
    fn upper_half(self, v: __m256) -> __m256 {
        // SAFETY: AVX is available (token).
        // The upper 128 bits in both halves.
        unsafe { _mm256_permute2f128_ps::<0x11>(v, v) }
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
    fn act_curved(self, v: __m256, act: Act) -> __m256 {
        /// The curved activations, out of line (see [`Simd::act_curved`]): one call per
        /// vector of a fused epilogue.
        ///
        /// # Safety
        ///
        /// The CPU must support AVX2 and FMA (owning `token` proves it).
        #[target_feature(enable = "avx2,fma")]
        #[inline(never)]
        unsafe fn one(token: Avx2, v: __m256, act: Act) -> __m256 {
            super::act::curved(token, v, act)
        }
        // SAFETY: the token proves the features are available.
        unsafe { one(self, v, act) }
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
