//! The portable level: the target's baseline, four lanes. On x86-64 that is SSE2
//! (`__m128`, always available there); elsewhere a plain array whose element-wise loops
//! LLVM maps to the target's vectors. No fused multiply-add (the baseline has none, and a
//! software `fmaf` is slow): `mul_add` rounds twice. The activations (`act.rs`, over these
//! operations) then perform exactly the operations of the scalar functions of
//! [`activation`](crate::kernels::activation), in the same order, so they give the same
//! bits; elsewhere they are those scalar functions lane by lane.

/// Token of the portable level; always available.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::x86_64::*;

    use super::Portable;
    use crate::kernels::simd::{Simd, WithSimd};

    /// `mask ? a : b` lane-wise (SSE2 has no blend).
    #[inline(always)]
    fn select(mask: __m128, a: __m128, b: __m128) -> __m128 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_or_ps(_mm_and_ps(mask, a), _mm_andnot_ps(mask, b)) }
    }

    /// Every method wraps SSE2 intrinsics, part of the x86-64 baseline, in `unsafe`;
    /// pointer arguments obey the `Simd` method's documented contract.
    impl Simd for Portable {
        const LANES: usize = 4;
        const FMA: bool = false;
        type V = __m128;
        type M = __m128;

        #[inline(always)]
        fn zero(self) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_setzero_ps() }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> __m128 {
            // SAFETY: the caller guarantees `p..p + 4` is readable.
            unsafe { _mm_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_n(self, p: *const f32, n: usize) -> __m128 {
            // SAFETY: the caller guarantees `p..p + n` is readable; each load reads lanes
            // below `n` only.
            unsafe {
                match n {
                    0 => _mm_setzero_ps(),
                    1 => _mm_load_ss(p),
                    2 => _mm_castpd_ps(_mm_load_sd(p.cast())),
                    3 => _mm_movelh_ps(_mm_castpd_ps(_mm_load_sd(p.cast())), _mm_load_ss(p.add(2))),
                    _ => _mm_loadu_ps(p),
                }
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m128) {
            // SAFETY: the caller guarantees `p..p + 4` is writable.
            unsafe { _mm_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_n(self, p: *mut f32, v: __m128, n: usize) {
            // SAFETY: the caller guarantees `p..p + n` is writable; each store writes lanes
            // below `n` only.
            unsafe {
                match n {
                    0 => {}
                    1 => _mm_store_ss(p, v),
                    2 => _mm_store_sd(p.cast(), _mm_castps_pd(v)),
                    3 => {
                        _mm_store_sd(p.cast(), _mm_castps_pd(v));
                        _mm_store_ss(p.add(2), _mm_movehl_ps(v, v));
                    }
                    _ => _mm_storeu_ps(p, v),
                }
            }
        }
        #[inline(always)]
        fn mul_add(self, a: __m128, b: __m128, c: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_add_ps(_mm_mul_ps(a, b), c) }
        }
        #[inline(always)]
        fn neg_mul_add(self, a: __m128, b: __m128, c: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_sub_ps(c, _mm_mul_ps(a, b)) }
        }
        #[inline(always)]
        fn add(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_mul_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_div_ps(a, b) }
        }
        #[inline(always)]
        fn min(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_min_ps(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_max_ps(a, b) }
        }
        #[inline(always)]
        fn abs(self, a: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_andnot_ps(_mm_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        fn and(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_and_ps(a, b) }
        }
        #[inline(always)]
        fn or(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_or_ps(a, b) }
        }
        #[inline(always)]
        fn xor(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_xor_ps(a, b) }
        }
        #[inline(always)]
        fn mul_pow2(self, a: __m128, n: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                // 2^n from the exponent field: (n + 127) << 23, n in [-126, 127].
                let e = _mm_add_epi32(_mm_cvtps_epi32(n), _mm_set1_epi32(127));
                _mm_mul_ps(a, _mm_castsi128_ps(_mm_slli_epi32::<23>(e)))
            }
        }
        #[inline(always)]
        fn lt(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_cmplt_ps(a, b) }
        }
        #[inline(always)]
        fn ge(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_cmpge_ps(a, b) }
        }
        #[inline(always)]
        fn select(self, m: __m128, a: __m128, b: __m128) -> __m128 {
            select(m, a, b)
        }
        #[inline(always)]
        fn max_nan(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                // `b > a ? b : a` keeps `a` when either is NaN; then take `b` where NaN.
                select(_mm_cmpunord_ps(b, b), b, _mm_max_ps(b, a))
            }
        }
        #[inline(always)]
        fn deinterleave(self, a: __m128, b: __m128) -> (__m128, __m128) {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { (_mm_shuffle_ps::<0x88>(a, b), _mm_shuffle_ps::<0xDD>(a, b)) }
        }
        #[inline(always)]
        fn interleave(self, a: __m128, b: __m128) -> (__m128, __m128) {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { (_mm_unpacklo_ps(a, b), _mm_unpackhi_ps(a, b)) }
        }
        #[inline(always)]
        fn shift_in(self, prev: __m128, v: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                // t = [prev[3], prev[3], v[0], v[0]], then [t[0], t[2], v[1], v[2]].
                let t = _mm_shuffle_ps::<0x0F>(prev, v);
                _mm_shuffle_ps::<0x98>(t, v)
            }
        }
        #[inline(always)]
        fn shift_out(self, v: __m128, next: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                // t = [v[3], v[0], next[0], next[0]], then [v[1], v[2], t[0], t[2]].
                let t = _mm_shuffle_ps::<0x03>(v, next);
                _mm_shuffle_ps::<0x89>(v, t)
            }
        }
        #[inline(always)]
        fn upper_half(self, v: __m128) -> __m128 {
            // SAFETY: SSE is part of x86-64.
            // [v[2], v[3], v[2], v[3]].
            unsafe { _mm_movehl_ps(v, v) }
        }
        #[inline(always)]
        fn pair_add(self, a: __m128, b: __m128) -> __m128 {
            let (even, odd) = self.deinterleave(a, b);
            self.add(even, odd)
        }
        #[inline(always)]
        fn pair_max(self, a: __m128, b: __m128) -> __m128 {
            let (even, odd) = self.deinterleave(a, b);
            self.max_nan(even, odd)
        }
        #[inline(always)]
        fn transpose(self, m: &mut [__m128]) {
            let m: &mut [__m128; 4] = m.try_into().expect("4 rows");
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                let t0 = _mm_unpacklo_ps(m[0], m[1]);
                let t1 = _mm_unpacklo_ps(m[2], m[3]);
                let t2 = _mm_unpackhi_ps(m[0], m[1]);
                let t3 = _mm_unpackhi_ps(m[2], m[3]);
                m[0] = _mm_movelh_ps(t0, t1);
                m[1] = _mm_movehl_ps(t1, t0);
                m[2] = _mm_movelh_ps(t2, t3);
                m[3] = _mm_movehl_ps(t3, t2);
            }
        }
        #[inline(always)]
        fn vectorize<K: WithSimd>(self, k: K) -> K::Output {
            #[inline(never)]
            fn isolated<K: WithSimd>(k: K) -> K::Output {
                k.with_simd(Portable)
            }
            isolated(k)
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::Portable;
    use crate::kernels::activation::Act;
    use crate::kernels::simd::{Simd, WithSimd};

    /// Four `f32` lanes, 16-byte aligned like a vector register.
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C, align(16))]
    pub(crate) struct F32x4(pub(crate) [f32; 4]);

    /// `F32x4` from a function of the lane index.
    #[inline(always)]
    fn lanes(f: impl Fn(usize) -> f32) -> F32x4 {
        F32x4([f(0), f(1), f(2), f(3)])
    }

    /// NaN-propagating maximum of two floats (the first NaN met wins).
    #[inline(always)]
    fn max_nan(a: f32, b: f32) -> f32 {
        if b > a || b.is_nan() {
            b
        } else {
            a
        }
    }

    impl Simd for Portable {
        const LANES: usize = 4;
        const FMA: bool = false;
        type V = F32x4;
        type M = [bool; 4];

        #[inline(always)]
        fn zero(self) -> F32x4 {
            F32x4([0.0; 4])
        }
        #[inline(always)]
        fn splat(self, x: f32) -> F32x4 {
            F32x4([x; 4])
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> F32x4 {
            // SAFETY: the caller guarantees `p..p + 4` is readable; no alignment needed.
            F32x4(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
        }
        #[inline(always)]
        unsafe fn load_n(self, p: *const f32, n: usize) -> F32x4 {
            let mut v = [0.0; 4];
            for (i, x) in v.iter_mut().enumerate().take(n) {
                // SAFETY: `i < n` and the caller guarantees `p..p + n` is readable.
                *x = unsafe { *p.add(i) };
            }
            F32x4(v)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: F32x4) {
            // SAFETY: the caller guarantees `p..p + 4` is writable; no alignment needed.
            unsafe { p.cast::<[f32; 4]>().write_unaligned(v.0) }
        }
        #[inline(always)]
        unsafe fn store_n(self, p: *mut f32, v: F32x4, n: usize) {
            for (i, &x) in v.0.iter().enumerate().take(n) {
                // SAFETY: `i < n` and the caller guarantees `p..p + n` is writable.
                unsafe { *p.add(i) = x };
            }
        }
        #[inline(always)]
        fn mul_add(self, a: F32x4, b: F32x4, c: F32x4) -> F32x4 {
            lanes(|i| a.0[i] * b.0[i] + c.0[i])
        }
        #[inline(always)]
        fn neg_mul_add(self, a: F32x4, b: F32x4, c: F32x4) -> F32x4 {
            lanes(|i| c.0[i] - a.0[i] * b.0[i])
        }
        #[inline(always)]
        fn add(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| a.0[i] + b.0[i])
        }
        #[inline(always)]
        fn sub(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| a.0[i] - b.0[i])
        }
        #[inline(always)]
        fn mul(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| a.0[i] * b.0[i])
        }
        #[inline(always)]
        fn div(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| a.0[i] / b.0[i])
        }
        #[inline(always)]
        fn min(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| if a.0[i] < b.0[i] { a.0[i] } else { b.0[i] })
        }
        #[inline(always)]
        fn max(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| if a.0[i] > b.0[i] { a.0[i] } else { b.0[i] })
        }
        #[inline(always)]
        fn abs(self, a: F32x4) -> F32x4 {
            lanes(|i| a.0[i].abs())
        }
        #[inline(always)]
        fn and(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| f32::from_bits(a.0[i].to_bits() & b.0[i].to_bits()))
        }
        #[inline(always)]
        fn or(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| f32::from_bits(a.0[i].to_bits() | b.0[i].to_bits()))
        }
        #[inline(always)]
        fn xor(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| f32::from_bits(a.0[i].to_bits() ^ b.0[i].to_bits()))
        }
        #[inline(always)]
        fn mul_pow2(self, a: F32x4, n: F32x4) -> F32x4 {
            // 2^n from the exponent field: (n + 127) << 23, n in [-126, 127].
            lanes(|i| a.0[i] * f32::from_bits(((n.0[i] as i32 + 127) as u32) << 23))
        }
        #[inline(always)]
        fn lt(self, a: F32x4, b: F32x4) -> [bool; 4] {
            [0, 1, 2, 3].map(|i| a.0[i] < b.0[i])
        }
        #[inline(always)]
        fn ge(self, a: F32x4, b: F32x4) -> [bool; 4] {
            [0, 1, 2, 3].map(|i| a.0[i] >= b.0[i])
        }
        #[inline(always)]
        fn select(self, m: [bool; 4], a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| if m[i] { a.0[i] } else { b.0[i] })
        }
        #[inline(always)]
        fn max_nan(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| max_nan(a.0[i], b.0[i]))
        }
        #[inline(always)]
        fn deinterleave(self, a: F32x4, b: F32x4) -> (F32x4, F32x4) {
            let (a, b) = (a.0, b.0);
            (
                F32x4([a[0], a[2], b[0], b[2]]),
                F32x4([a[1], a[3], b[1], b[3]]),
            )
        }
        #[inline(always)]
        fn interleave(self, a: F32x4, b: F32x4) -> (F32x4, F32x4) {
            let (a, b) = (a.0, b.0);
            (
                F32x4([a[0], b[0], a[1], b[1]]),
                F32x4([a[2], b[2], a[3], b[3]]),
            )
        }
        #[inline(always)]
        fn shift_in(self, prev: F32x4, v: F32x4) -> F32x4 {
            let (p, v) = (prev.0, v.0);
            F32x4([p[3], v[0], v[1], v[2]])
        }
        #[inline(always)]
        fn shift_out(self, v: F32x4, next: F32x4) -> F32x4 {
            let (v, n) = (v.0, next.0);
            F32x4([v[1], v[2], v[3], n[0]])
        }
        #[inline(always)]
        fn upper_half(self, v: F32x4) -> F32x4 {
            let v = v.0;
            F32x4([v[2], v[3], v[2], v[3]])
        }
        #[inline(always)]
        fn pair_add(self, a: F32x4, b: F32x4) -> F32x4 {
            let (even, odd) = self.deinterleave(a, b);
            self.add(even, odd)
        }
        #[inline(always)]
        fn pair_max(self, a: F32x4, b: F32x4) -> F32x4 {
            let (even, odd) = self.deinterleave(a, b);
            self.max_nan(even, odd)
        }
        #[inline(always)]
        fn transpose(self, m: &mut [F32x4]) {
            let r: [F32x4; 4] = [m[0], m[1], m[2], m[3]];
            for (i, row) in m.iter_mut().enumerate().take(4) {
                *row = lanes(|j| r[j].0[i]);
            }
        }
        /// The scalar functions lane by lane (the generic activations would compute the
        /// same bits; these need no vector unit).
        #[inline(always)]
        fn act(self, v: F32x4, act: Act) -> F32x4 {
            lanes(|i| act.apply(v.0[i]))
        }
        #[inline(always)]
        fn vectorize<K: WithSimd>(self, k: K) -> K::Output {
            #[inline(never)]
            fn isolated<K: WithSimd>(k: K) -> K::Output {
                k.with_simd(Portable)
            }
            isolated(k)
        }
    }
}
