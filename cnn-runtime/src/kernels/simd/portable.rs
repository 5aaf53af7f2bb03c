//! The portable level: the target's baseline, four lanes. On x86-64 that is SSE2
//! (`__m128`, always available there); elsewhere a plain array whose element-wise loops
//! LLVM maps to the target's vectors. No fused multiply-add (the baseline has none, and a
//! software `fmaf` is slow): `mul_add` rounds twice. The activations perform exactly the
//! operations of the scalar functions of [`activation`](crate::kernels::activation), in
//! the same order, so they give the same bits.

/// Token of the portable level; always available.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::x86_64::*;

    use super::Portable;
    use crate::kernels::activation::Act;
    use crate::kernels::simd::{Simd, WithSimd};

    /// `mask ? a : b` lane-wise (SSE2 has no blend).
    #[inline(always)]
    fn select(mask: __m128, a: __m128, b: __m128) -> __m128 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_or_ps(_mm_and_ps(mask, a), _mm_andnot_ps(mask, b)) }
    }

    /// [`activation::exp`](crate::kernels::activation::exp) lane-wise, the same
    /// operations in the same order (NaN lanes give a number; callers replace them).
    #[inline(always)]
    fn exp(x: __m128) -> __m128 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let s = _mm_set1_ps;
            let x = _mm_min_ps(_mm_max_ps(x, s(-87.0)), s(88.0));
            let round = s(12_582_912.0);
            let t = _mm_add_ps(_mm_mul_ps(x, s(core::f32::consts::LOG2_E)), round);
            let n = _mm_sub_ps(t, round);
            let r = _mm_sub_ps(
                _mm_sub_ps(x, _mm_mul_ps(n, s(0.693_359_4))),
                _mm_mul_ps(n, s(-2.121_944_4e-4)),
            );
            let mut p = s(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                5e-1,
            ] {
                p = _mm_add_ps(_mm_mul_ps(p, r), s(c));
            }
            let p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(p, r), r), r), s(1.0));
            let n_int = _mm_sub_epi32(_mm_castps_si128(t), _mm_set1_epi32(0x4B40_0000));
            let pow = _mm_slli_epi32::<23>(_mm_add_epi32(n_int, _mm_set1_epi32(127)));
            _mm_mul_ps(p, _mm_castsi128_ps(pow))
        }
    }

    /// [`activation::tanh`](crate::kernels::activation::tanh) lane-wise, same bits.
    #[inline(always)]
    fn tanh(x: __m128) -> __m128 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let s = _mm_set1_ps;
            let sign = s(-0.0);
            let a = _mm_andnot_ps(sign, x);
            let z = _mm_mul_ps(x, x);
            let mut q = s(-5.704_988_7e-3);
            for c in [2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
                q = _mm_add_ps(_mm_mul_ps(q, z), s(c));
            }
            let small = _mm_add_ps(_mm_mul_ps(_mm_mul_ps(q, z), a), a);
            let e = exp(_mm_mul_ps(s(2.0), _mm_min_ps(a, s(10.0))));
            let big = _mm_sub_ps(s(1.0), _mm_div_ps(s(2.0), _mm_add_ps(e, s(1.0))));
            let r = select(_mm_cmplt_ps(a, s(0.625)), small, big);
            let r = _mm_or_ps(_mm_andnot_ps(sign, r), _mm_and_ps(x, sign));
            select(_mm_cmpunord_ps(x, x), x, r)
        }
    }

    /// [`activation::sigmoid`](crate::kernels::activation::sigmoid) lane-wise, same bits.
    #[inline(always)]
    fn sigmoid(x: __m128) -> __m128 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let s = _mm_set1_ps;
            let e = exp(_mm_or_ps(x, s(-0.0)));
            let pos = _mm_div_ps(s(1.0), _mm_add_ps(s(1.0), e));
            let r = select(_mm_cmpge_ps(x, _mm_setzero_ps()), pos, _mm_mul_ps(e, pos));
            select(_mm_cmpunord_ps(x, x), x, r)
        }
    }

    /// `c[0] * x^(n-1) + ... + c[n-1]` by Horner's rule without fused multiply-adds, as
    /// the scalar functions evaluate their polynomials.
    #[inline(always)]
    fn horner(x: __m128, c: &[f32]) -> __m128 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let mut p = _mm_set1_ps(c[0]);
            for &k in &c[1..] {
                p = _mm_add_ps(_mm_mul_ps(p, x), _mm_set1_ps(k));
            }
            p
        }
    }

    /// `relu6(x + 3)`, NaN propagated as by `clamp`.
    #[inline(always)]
    fn relu6_shift3(x: __m128) -> __m128 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let v = _mm_add_ps(x, _mm_set1_ps(3.0));
            _mm_min_ps(_mm_set1_ps(6.0), _mm_max_ps(_mm_setzero_ps(), v))
        }
    }

    /// [`activation::gelu`](crate::kernels::activation::gelu) lane-wise, same bits.
    #[inline(always)]
    fn gelu(x: __m128) -> __m128 {
        use crate::kernels::activation::{ERFC_P, ERFC_R, ERF_T};
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let s = _mm_set1_ps;
            let sign = s(-0.0);
            let u = _mm_mul_ps(x, s(core::f32::consts::FRAC_1_SQRT_2));
            let a = _mm_andnot_ps(sign, u);
            let z = _mm_mul_ps(a, a);
            let erf = _mm_mul_ps(horner(z, &ERF_T), a);
            let erf = _mm_or_ps(_mm_andnot_ps(sign, erf), _mm_and_ps(u, sign));
            let small = _mm_add_ps(s(0.5), _mm_mul_ps(s(0.5), erf));
            // `maxps` returns its second operand for NaN, like `f32::max` here.
            let b = _mm_max_ps(a, s(1.0));
            let q = _mm_div_ps(s(1.0), b);
            let y = _mm_mul_ps(q, q);
            let e = exp(_mm_xor_ps(_mm_mul_ps(b, b), sign));
            let poly = select(
                _mm_cmplt_ps(b, s(2.0)),
                horner(y, &ERFC_P),
                horner(y, &ERFC_R),
            );
            let half = _mm_mul_ps(s(0.5), _mm_mul_ps(_mm_mul_ps(e, q), poly));
            let big = select(
                _mm_cmpge_ps(u, _mm_setzero_ps()),
                _mm_sub_ps(s(1.0), half),
                half,
            );
            _mm_mul_ps(x, select(_mm_cmplt_ps(a, s(1.0)), small, big))
        }
    }

    /// Every method wraps SSE2 intrinsics, part of the x86-64 baseline, in `unsafe`;
    /// pointer arguments obey the `Simd` method's documented contract.
    impl Simd for Portable {
        const LANES: usize = 4;
        type V = __m128;

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
        fn add(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_add_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m128, b: __m128) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_mul_ps(a, b) }
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
        fn act(self, v: __m128, act: Act) -> __m128 {
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                match act {
                    Act::Identity => v,
                    // `v > 0 ? v : 0`: NaN gives 0, as `f32::max`.
                    Act::Relu => _mm_max_ps(v, _mm_setzero_ps()),
                    // NaN propagates through both (second operand returned), as `clamp`.
                    Act::Relu6 => _mm_min_ps(_mm_set1_ps(6.0), _mm_max_ps(_mm_setzero_ps(), v)),
                    Act::Tanh => tanh(v),
                    Act::Sigmoid => sigmoid(v),
                    Act::LeakyRelu(slope) => select(
                        _mm_cmpge_ps(v, _mm_setzero_ps()),
                        v,
                        _mm_mul_ps(v, _mm_set1_ps(slope)),
                    ),
                    Act::Silu => _mm_mul_ps(v, sigmoid(v)),
                    Act::HardSigmoid => _mm_div_ps(relu6_shift3(v), _mm_set1_ps(6.0)),
                    Act::HardSwish => _mm_div_ps(_mm_mul_ps(v, relu6_shift3(v)), _mm_set1_ps(6.0)),
                    Act::Gelu => gelu(v),
                }
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
        type V = F32x4;

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
        fn add(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| a.0[i] + b.0[i])
        }
        #[inline(always)]
        fn mul(self, a: F32x4, b: F32x4) -> F32x4 {
            lanes(|i| a.0[i] * b.0[i])
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
