//! The SIMD layer the fast kernels are written against.
//!
//! Every fast kernel is an `#[inline(always)]` function generic over [`Simd`], a small
//! trait of 4-, 8- or 16-lane `f32` vector operations implemented once per instruction
//! set, one file each (the structure of `matrixmultiply`/`gemm`):
//!
//! * `x86_avx512.rs`: `Avx512`, `__m512` with AVX-512F/DQ intrinsics (masked loads
//!   and stores through mask registers; stable since Rust 1.89, the workspace's minimum);
//! * `x86_avx2.rs`: [`Avx2`], `__m256` with AVX2 + FMA intrinsics (fused multiply-add,
//!   masked loads);
//! * `portable.rs`: [`Portable`], four lanes in a plain array that LLVM maps to SSE2 (or
//!   any target's baseline).
//!
//! The activations (`exp`, `tanh`, `sigmoid`, GELU, ...) are written once over the
//! trait's operations in `act.rs`; on the portable level they give the bits of the scalar
//! functions of [`activation`](super::activation).
//!
//! The tile shapes each level's kernels use (register budgets, measured choices) are not
//! part of [`Simd`] but of `tuning.rs`: one [`Tuning`](tuning::Tuning) per level.
//!
//! A kernel is a value implementing [`WithSimd`]; [`run`] hands it the token of the level
//! chosen by [`cpu::level`](crate::cpu::level) (or the one a test asks for). The AVX2
//! instantiation happens inside a `#[target_feature(enable = "avx2,fma")]` function, so
//! the inlined kernel and every intrinsic in it are compiled for AVX2 and FMA (likewise
//! for AVX-512). Register-blocked micro-kernels additionally run through
//! [`Simd::vectorize`], a non-inlined function of their own.

use crate::cpu::Level;
use crate::kernels::activation::Act;

mod act;
pub(crate) use act::CurvedSlice;
mod portable;
mod tuning;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

pub(crate) use portable::Portable;
pub(crate) use tuning::{Tuned, Tuning};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_avx512::Avx512;

/// Operations on vectors of [`Simd::LANES`] `f32`s, implemented once per instruction set.
///
/// The token value (`self`) proves that the CPU supports the instruction set: it can only
/// be created after detection, so the methods are safe to call. A kernel entry obtains it
/// once ([`run`]) and passes it down to its helpers and threads (a zero-sized value), so
/// that nothing below re-reads the level or re-detects the CPU. Methods reading or writing
/// memory through raw pointers are `unsafe`: the caller guarantees the lanes touched are
/// in bounds (the `_n` variants touch only the first `n` lanes).
///
/// The level's tile shapes are not part of this trait but of its supertrait [`Tuned`]
/// (`S::TUNING`, in `tuning.rs`).
pub(crate) trait Simd: Copy + Send + Sync + Tuned {
    /// Lanes per vector.
    const LANES: usize;
    /// Whether [`mul_add`](Simd::mul_add) and [`neg_mul_add`](Simd::neg_mul_add) are
    /// fused (one rounding).
    const FMA: bool;
    /// A vector of `LANES` floats.
    type V: Copy;
    /// A lane mask, the result of a comparison.
    type M: Copy;

    /// All lanes zero.
    fn zero(self) -> Self::V;
    /// All lanes `x`.
    fn splat(self, x: f32) -> Self::V;
    /// Loads `LANES` floats from `p` (no alignment needed).
    ///
    /// # Safety
    ///
    /// `p..p + LANES` must be readable.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// Loads the first `n` lanes from `p` (`n <= LANES`), the others zero; reads nothing
    /// past `p + n`.
    ///
    /// # Safety
    ///
    /// `p..p + n` must be readable.
    unsafe fn load_n(self, p: *const f32, n: usize) -> Self::V;
    /// `a * b + c` in the lanes whose bit of `keep` is set, `c` in the others; `keep_v`
    /// is the same mask as a vector (all-ones bits in the lanes kept, zero elsewhere):
    /// `a * (b & keep_v) + c` by default (a lane left out adds `a * +0.0`), a masked
    /// multiply-add where the level has mask registers (AVX-512: no extra instruction,
    /// and a lane left out is never computed, so it may hold anything, NaN included).
    #[inline(always)]
    fn mul_add_keep(
        self,
        a: Self::V,
        b: Self::V,
        c: Self::V,
        keep: u32,
        keep_v: Self::V,
    ) -> Self::V {
        let _ = keep;
        self.mul_add(a, self.and(b, keep_v), c)
    }
    /// `a * b` in the lanes whose bit of `keep` is set, zero in the others (`keep_v` as
    /// in [`mul_add_keep`](Simd::mul_add_keep)): `a * (b & keep_v)` by default, a
    /// zero-masked multiplication where the level has mask registers.
    #[inline(always)]
    fn mul_keep(self, a: Self::V, b: Self::V, keep: u32, keep_v: Self::V) -> Self::V {
        let _ = keep;
        self.mul(a, self.and(b, keep_v))
    }
    /// Stores `LANES` floats at `p`.
    ///
    /// # Safety
    ///
    /// `p..p + LANES` must be writable.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// Stores the first `n` lanes at `p` (`n <= LANES`); writes nothing past `p + n`.
    ///
    /// # Safety
    ///
    /// `p..p + n` must be writable.
    unsafe fn store_n(self, p: *mut f32, v: Self::V, n: usize);
    /// All lanes `*p`.
    ///
    /// # Safety
    ///
    /// `p` must be readable.
    #[inline(always)]
    unsafe fn bcast(self, p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees `p` is readable.
        self.splat(unsafe { *p })
    }
    /// Asks for the cache line holding `p` to be brought into L2 (a hint: `prefetcht1` on
    /// x86, nothing elsewhere). Any address is allowed: a prefetch never faults and reads
    /// nothing the program sees.
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of x86-64; a prefetch is a hint that never faults, whatever
        // the address, and changes no memory.
        unsafe {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
            _mm_prefetch::<_MM_HINT_T1>(p.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }
    /// As [`prefetch`](Simd::prefetch), into the first-level cache (`prefetcht0`).
    #[inline(always)]
    fn prefetch_l1(self, p: *const f32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `prefetch`.
        unsafe {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }
    /// `a * b + c`, fused (one rounding) where the instruction set has FMA.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c - a * b`, fused (one rounding) where the instruction set has FMA.
    fn neg_mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a / b`.
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a / b` within a few ulp, for `b` finite and of magnitude in [2^-126, 2^126]
    /// (callers guarantee it): where the level has a reciprocal estimate, the estimate
    /// refined by one Newton step and multiplied by `a`, several times the throughput of
    /// a vector division (a 512-bit one issues every 10-16 cycles); otherwise
    /// [`div`](Simd::div), exactly.
    #[inline(always)]
    fn div_approx(self, a: Self::V, b: Self::V) -> Self::V {
        self.div(a, b)
    }
    /// `a < b ? a : b` (x86's `min`: `b` when either is NaN).
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a > b ? a : b` (x86's `max`: `b` when either is NaN).
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `|a|` (the sign bit cleared).
    fn abs(self, a: Self::V) -> Self::V;
    /// Bitwise `a & b`.
    fn and(self, a: Self::V, b: Self::V) -> Self::V;
    /// Bitwise `a | b`.
    fn or(self, a: Self::V, b: Self::V) -> Self::V;
    /// Bitwise `a ^ b`.
    fn xor(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * 2^n` for `n` holding integers in [-126, 127] (the multiplication by an exact
    /// power of two, rounded once).
    fn mul_pow2(self, a: Self::V, n: Self::V) -> Self::V;
    /// `e^x` lane-wise on `N` vectors, interleaved, for `x` in [-87, 88] or NaN (which
    /// propagates): by default Cephes' algorithm of [`activation::exp`](
    /// crate::kernels::activation::exp) (on the portable level its exact bits); a level
    /// may have a faster one within 2 ulp (AVX-512 and AVX2: a table of `2^(j/16)` or
    /// `2^(j/8)` in a register and a short polynomial).
    #[inline(always)]
    fn exp_n<const N: usize>(self, x: [Self::V; N]) -> [Self::V; N] {
        act::exp_cephes_n(self, x)
    }
    /// The lanes where `a < b` (false where either is NaN).
    fn lt(self, a: Self::V, b: Self::V) -> Self::M;
    /// The lanes where `a >= b` (false where either is NaN).
    fn ge(self, a: Self::V, b: Self::V) -> Self::M;
    /// `m ? a : b` lane-wise.
    fn select(self, m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    /// `max(a, b)` with NaN propagated from either side (PyTorch's max pool).
    fn max_nan(self, a: Self::V, b: Self::V) -> Self::V;
    /// The even and the odd lanes of the concatenation `a ++ b`: lane `i` of the first is
    /// `x[2i]`, of the second `x[2i + 1]`.
    fn deinterleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V);
    /// The lanes of `a` and `b` alternated, [`deinterleave`](Simd::deinterleave)'s
    /// inverse: `x = [a0, b0, a1, b1, ..]` as its first and its second `LANES` lanes.
    fn interleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V);
    /// [`deinterleave`](Simd::deinterleave) with the lanes of both results in a
    /// level-specific order (the same for every call), which [`unorder`](Simd::unorder)
    /// undoes: lane-wise arithmetic on such vectors can run in that order and restore
    /// it once at the end (AVX2 saves two cross-lane permutes per call).
    #[inline(always)]
    fn deinterleave_unordered(self, a: Self::V, b: Self::V) -> (Self::V, Self::V) {
        self.deinterleave(a, b)
    }
    /// Puts the lanes of a vector in the order of [`deinterleave_unordered`](
    /// Simd::deinterleave_unordered) back in place (the identity where that order is
    /// the natural one).
    #[inline(always)]
    fn unorder(self, v: Self::V) -> Self::V {
        v
    }
    /// `v` moved up one lane, the last lane of `prev` shifted in: lane 0 is
    /// `prev[LANES - 1]`, lane `i > 0` is `v[i - 1]` (the vector one element before `v`
    /// when `prev` is the vector before it).
    fn shift_in(self, prev: Self::V, v: Self::V) -> Self::V;
    /// `v` moved down one lane, the first lane of `next` shifted in: lane `i < LANES - 1`
    /// is `v[i + 1]`, the last is `next[0]` (the vector one element after `v` when `next`
    /// is the vector after it).
    fn shift_out(self, v: Self::V, next: Self::V) -> Self::V;
    /// The upper half of `v` moved down: lane `i < LANES / 2` is `v[LANES / 2 + i]` (the
    /// upper lanes of the result are unspecified).
    fn upper_half(self, v: Self::V) -> Self::V;
    /// Pairwise sums of the concatenation `a ++ b`: lane `i` is `x[2i] + x[2i + 1]`.
    fn pair_add(self, a: Self::V, b: Self::V) -> Self::V;
    /// Pairwise NaN-propagating maxima of `a ++ b`: lane `i` is `max(x[2i], x[2i + 1])`.
    fn pair_max(self, a: Self::V, b: Self::V) -> Self::V;
    /// Transposes the `LANES x LANES` matrix whose rows are `m` (`m.len() == LANES`):
    /// afterwards `m[i]` lane `j` is the old `m[j]` lane `i`.
    fn transpose(self, m: &mut [Self::V]);
    /// `act` applied to every lane, with the accuracy of [`Act::apply`]: the
    /// activations of `act.rs`, written once over these operations.
    #[inline(always)]
    fn act(self, v: Self::V, act: Act) -> Self::V {
        act::act(self, v, act)
    }
    /// The piecewise-linear activations of `act` (Identity, ReLU, ReLU6, leaky ReLU)
    /// applied to every lane, in registers; `v` unchanged for the curved ones. For
    /// micro-kernels whose curved activation is a post-pass ([`curved_slice`](
    /// Simd::curved_slice)): no call at all in their epilogue.
    #[inline(always)]
    fn act_piecewise(self, v: Self::V, act: Act) -> Self::V {
        act::piecewise(self, v, act)
    }
    /// `act` on every float of `x` in place (meant for the curved activations: not
    /// piecewise linear, exponentials and divisions), run as one out-of-line loop
    /// ([`vectorize`](Simd::vectorize)): the direct convolution's post-pass over each block of output
    /// it has just stored (`engine/panels.rs`), so that no micro-kernel carries curved
    /// code. Inlined into the pixel tiles' epilogue, `tanh` on twelve accumulators took
    /// 70% of LeNet-5's conv1 on AVX2 (its constants and temporaries pushed the
    /// accumulators onto the stack and the tile to 20 KB of code); and passing a tile's
    /// accumulators to an out-of-line call, even on a branch not taken, made LLVM keep
    /// the channel tiles' accumulators on the stack (2.5-3x slower, in ReLU layers too).
    #[inline(always)]
    fn curved_slice(self, x: &mut [f32], act: Act) {
        act::CurvedSlice { x, act }.with_simd(self);
    }
    /// `x[i] = act(x[i] + r[i])` for every float of `x` (`r` at least as long): a
    /// residual add fused into the convolution that produces `x`, applied by its
    /// post-pass to each block of output just stored (`engine/panels.rs`), or over the
    /// whole output where a path has no post-pass. The add kernel's own row loop
    /// ([`AddAssignRow`](crate::kernels::binary::AddAssignRow)), out of line
    /// ([`vectorize`](Simd::vectorize)): the bits of the unfused add with its activation.
    #[inline(always)]
    fn residual_slice(self, x: &mut [f32], r: &[f32], act: Act) {
        self.vectorize(crate::kernels::binary::AddAssignRow { x, r, act });
    }
    /// The activations that are not piecewise linear (tanh, sigmoid, SiLU, hard
    /// sigmoid, hard swish, GELU), which [`act`](Simd::act) hands over to this method.
    /// The x86 levels run them out of line: inlined into every fused epilogue, their
    /// code crowded the convolution micro-kernels' registers (fcn_seg, which uses none
    /// of them, ran 2.2x slower).
    #[inline(always)]
    fn act_curved(self, v: Self::V, act: Act) -> Self::V {
        act::curved(self, v, act)
    }
    /// Runs `k` in a function of its own (not inlined into the caller) compiled for this
    /// level: register-blocked micro-kernels get a register allocation of their own
    /// instead of competing with the code around them.
    fn vectorize<K: WithSimd>(self, k: K) -> K::Output;
}

/// A kernel written once for every instruction set: [`run`] calls `with_simd` with the
/// token of the chosen level. Implementations are `#[inline(always)]`, so the body is
/// compiled inside the caller's target features.
pub(crate) trait WithSimd {
    /// What the kernel returns.
    type Output;
    /// Runs the kernel with the vector operations of `s`.
    fn with_simd<S: Simd>(self, s: S) -> Self::Output;
}

/// Runs `kernel` at `level` (the portable path if the CPU lacks it).
#[inline(always)]
pub(crate) fn run<K: WithSimd>(level: Level, kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if level == Level::Avx512 {
            if let Some(token) = Avx512::try_new() {
                // SAFETY: `try_new` returned a token, so the CPU supports the features
                // `run_avx512` is compiled for.
                return unsafe { run_avx512(token, kernel) };
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if level == Level::Avx2Fma || level == Level::Avx512 {
            if let Some(token) = Avx2::try_new() {
                // SAFETY: `try_new` returned a token, so the CPU supports AVX2 and FMA,
                // the only requirement of `run_avx2`.
                return unsafe { run_avx2(token, kernel) };
            }
        }
    }
    let _ = level;
    run_portable(kernel)
}

/// `kernel` at the portable level, in a function of its own like the other levels' (so
/// that its stack buffers never share a frame with theirs).
#[inline(never)]
fn run_portable<K: WithSimd>(kernel: K) -> K::Output {
    kernel.with_simd(Portable)
}

/// `kernel` compiled for AVX-512.
///
/// # Safety
///
/// The CPU must support AVX-512F, AVX-512DQ, AVX2 and FMA (which owning `token` proves).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn run_avx512<K: WithSimd>(token: Avx512, kernel: K) -> K::Output {
    kernel.with_simd(token)
}

/// `kernel` compiled for AVX2 and FMA.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA (which owning `token` proves).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: WithSimd>(token: Avx2, kernel: K) -> K::Output {
    kernel.with_simd(token)
}

/// The levels a test should check: every one this CPU supports.
#[cfg(test)]
pub(crate) fn test_levels() -> Vec<Level> {
    let levels = crate::cpu::supported();
    if levels.len() < 3 {
        eprintln!("note: this CPU only supports {levels:?}; the other paths are not tested");
    }
    levels.to_vec()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every level's vector operations against the scalar definitions.
    struct Ops;

    impl WithSimd for Ops {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let l = S::LANES;
            // Transpose.
            let src: Vec<f32> = (0..l * l).map(|i| i as f32).collect();
            let mut m: Vec<S::V> = (0..l)
                // SAFETY: row i of `src` has `l` floats.
                .map(|i| unsafe { s.load(src[i * l..].as_ptr()) })
                .collect();
            s.transpose(&mut m);
            let mut dst = vec![0.0f32; l * l];
            for (i, &v) in m.iter().enumerate() {
                // SAFETY: row i of `dst` has `l` floats.
                unsafe { s.store(dst[i * l..].as_mut_ptr(), v) };
            }
            for i in 0..l {
                for j in 0..l {
                    assert_eq!(dst[i * l + j], src[j * l + i], "transpose ({i}, {j})");
                }
            }
            // Masked loads and stores touch exactly n lanes.
            for n in 0..=l {
                let x: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
                // SAFETY: `x` has n floats, `y` n + 1.
                let v = unsafe { s.load_n(x.as_ptr(), n) };
                let mut y = vec![-1.0f32; n + 1];
                // SAFETY: `y` has n + 1 floats.
                unsafe { s.store_n(y.as_mut_ptr(), v, n) };
                assert_eq!(&y[..n], &x[..], "n = {n}");
                assert_eq!(y[n], -1.0, "store_n({n}) wrote past n");
                let mut full = vec![-1.0f32; l];
                // SAFETY: `full` has l floats.
                unsafe { s.store(full.as_mut_ptr(), v) };
                assert!(full[n..].iter().all(|&z| z == 0.0), "load_n({n}) lanes");
            }
            // Masked multiply(-add)s on every mask shape: the kept lanes `a * b (+ c)`, the
            // others `c` (zero). Finite inputs: the default's `b & keep_v` turns a NaN left
            // out into `+0.0` too, but `a` NaN would still leak there.
            let (a, b, c) = (s.splat(1.5), s.splat(2.0), s.splat(-0.25));
            for keep in [0u32, 1, 0b1010_0110, (1 << l) - 1, (1 << l) - 2] {
                let bits: Vec<f32> = (0..l)
                    .map(|i| f32::from_bits(if keep >> i & 1 == 1 { !0 } else { 0 }))
                    .collect();
                // SAFETY: `bits` has l floats.
                let keep_v = unsafe { s.load(bits.as_ptr()) };
                let mut got = vec![0.0f32; l];
                // SAFETY: `got` has l floats.
                unsafe { s.store(got.as_mut_ptr(), s.mul_add_keep(a, b, c, keep, keep_v)) };
                for (i, &g) in got.iter().enumerate() {
                    let want = if keep >> i & 1 == 1 { 2.75 } else { -0.25 };
                    assert_eq!(g, want, "mul_add_keep {keep:#b} lane {i}");
                }
                // SAFETY: `got` has l floats.
                unsafe { s.store(got.as_mut_ptr(), s.mul_keep(a, b, keep, keep_v)) };
                for (i, &g) in got.iter().enumerate() {
                    let want = if keep >> i & 1 == 1 { 3.0 } else { 0.0 };
                    assert_eq!(g, want, "mul_keep {keep:#b} lane {i}");
                }
            }
            // Deinterleave.
            let xs: Vec<f32> = (0..2 * l).map(|i| i as f32).collect();
            // SAFETY: `xs` has 2 * l floats, `e` and `o` l each.
            let (ev, od) = unsafe { s.deinterleave(s.load(xs.as_ptr()), s.load(xs[l..].as_ptr())) };
            let (mut e, mut o) = (vec![0.0f32; l], vec![0.0f32; l]);
            // SAFETY: `e` and `o` have l floats.
            unsafe { s.store(e.as_mut_ptr(), ev) };
            // SAFETY: as above.
            unsafe { s.store(o.as_mut_ptr(), od) };
            for i in 0..l {
                assert_eq!((e[i], o[i]), (xs[2 * i], xs[2 * i + 1]), "deinterleave {i}");
            }
            // Interleave, the inverse: `e` and `o` back into `xs`'s order.
            // SAFETY: `e` and `o` have l floats, `back` 2 * l.
            let (lo, hi) = unsafe { s.interleave(s.load(e.as_ptr()), s.load(o.as_ptr())) };
            let mut back = vec![0.0f32; 2 * l];
            // SAFETY: `back` has 2 * l floats.
            unsafe { s.store(back.as_mut_ptr(), lo) };
            // SAFETY: as above.
            unsafe { s.store(back[l..].as_mut_ptr(), hi) };
            assert_eq!(back, xs, "interleave");
            // The unordered form, after `unorder`: the same lanes.
            // SAFETY: `xs` has 2 * l floats.
            let (eu, ou) =
                unsafe { s.deinterleave_unordered(s.load(xs.as_ptr()), s.load(xs[l..].as_ptr())) };
            // SAFETY: `e` and `o` have l floats.
            unsafe { s.store(e.as_mut_ptr(), s.unorder(eu)) };
            // SAFETY: as above.
            unsafe { s.store(o.as_mut_ptr(), s.unorder(ou)) };
            for i in 0..l {
                assert_eq!((e[i], o[i]), (xs[2 * i], xs[2 * i + 1]), "unordered {i}");
            }
            // Shift in: the vector one element before `xs[l..]`.
            // SAFETY: `xs` has 2 * l floats, `e` l.
            let sh = unsafe { s.shift_in(s.load(xs.as_ptr()), s.load(xs[l..].as_ptr())) };
            // SAFETY: `e` has l floats.
            unsafe { s.store(e.as_mut_ptr(), sh) };
            assert_eq!(e, xs[l - 1..2 * l - 1], "shift_in");
            // Shift out: the vector one element after `xs[..l]`.
            // SAFETY: `xs` has 2 * l floats, `e` l.
            let sh = unsafe { s.shift_out(s.load(xs.as_ptr()), s.load(xs[l..].as_ptr())) };
            // SAFETY: `e` has l floats.
            unsafe { s.store(e.as_mut_ptr(), sh) };
            assert_eq!(e, xs[1..l + 1], "shift_out");
            // Upper half: lanes l/2.. moved down.
            // SAFETY: `xs` has 2 * l floats, `e` l.
            unsafe { s.store(e.as_mut_ptr(), s.upper_half(s.load(xs.as_ptr()))) };
            assert_eq!(e[..l / 2], xs[l / 2..l], "upper_half");
            // Pairwise operations and the NaN-propagating maximum.
            let a: Vec<f32> = (0..2 * l).map(|i| (i as f32 * 0.7).sin()).collect();
            let mut b = a.clone();
            b[3] = f32::NAN;
            for (xs, name) in [(&a, "plain"), (&b, "nan")] {
                // SAFETY: `xs` has 2 * l floats.
                let (v0, v1) = unsafe { (s.load(xs.as_ptr()), s.load(xs[l..].as_ptr())) };
                let mut out = vec![0.0f32; l];
                // SAFETY: `out` has l floats.
                unsafe { s.store(out.as_mut_ptr(), s.pair_add(v0, v1)) };
                for i in 0..l {
                    let want = xs[2 * i] + xs[2 * i + 1];
                    assert!(
                        out[i] == want || (out[i].is_nan() && want.is_nan()),
                        "{name}"
                    );
                }
                // SAFETY: `out` has l floats.
                unsafe { s.store(out.as_mut_ptr(), s.pair_max(v0, v1)) };
                for i in 0..l {
                    let (x, y) = (xs[2 * i], xs[2 * i + 1]);
                    let nan = x.is_nan() || y.is_nan();
                    assert!(
                        if nan {
                            out[i].is_nan()
                        } else {
                            out[i] == x.max(y)
                        },
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn vector_ops_match_scalar_definitions() {
        for level in test_levels() {
            run(level, Ops);
        }
    }

    /// Applies `act` through the vector path of `level` to `xs`.
    struct Apply<'a> {
        xs: &'a [f32],
        out: &'a mut [f32],
        act: Act,
    }

    impl WithSimd for Apply<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let l = S::LANES;
            for (x, y) in self.xs.chunks(l).zip(self.out.chunks_mut(l)) {
                // SAFETY: the chunks hold `x.len()` floats.
                unsafe {
                    let v = s.load_n(x.as_ptr(), x.len());
                    s.store_n(y.as_mut_ptr(), s.act(v, self.act), y.len());
                }
            }
        }
    }

    /// `act` on each float of `xs` through [`Simd::act`] (one vector at a time, as the
    /// kernels' epilogues apply it) at `level`.
    pub(crate) fn apply(level: Level, act: Act, xs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; xs.len()];
        run(
            level,
            Apply {
                xs,
                out: &mut out,
                act,
            },
        );
        out
    }

    /// `e^x` of each float of `xs` by the level's [`Simd::exp_n`], two vectors at a time
    /// (the rest one lane at a time).
    struct ExpOf<'a> {
        xs: &'a [f32],
    }

    impl WithSimd for ExpOf<'_> {
        type Output = Vec<f32>;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> Vec<f32> {
            let (l, xs) = (S::LANES, self.xs);
            let mut out = vec![0.0; xs.len()];
            let pairs = xs.len() - xs.len() % (2 * l);
            // SAFETY: pairs of whole vectors below `pairs`, then one float at a time.
            unsafe {
                for i in (0..pairs).step_by(2 * l) {
                    let p = xs.as_ptr().add(i);
                    let [a, b] = s.exp_n([s.load(p), s.load(p.add(l))]);
                    s.store(out.as_mut_ptr().add(i), a);
                    s.store(out.as_mut_ptr().add(i + l), b);
                }
                for i in pairs..xs.len() {
                    let [e] = s.exp_n([s.load_n(xs.as_ptr().add(i), 1)]);
                    s.store_n(out.as_mut_ptr().add(i), e, 1);
                }
            }
            out
        }
    }

    /// Every level's `exp_n` over its whole domain [-87, 88] (four million points and
    /// the ends) within 2 ulp of f64's, exact at 0, and NaN propagated (AVX-512's table
    /// algorithm, the others Cephes').
    #[test]
    fn vector_exp_is_accurate_over_its_domain() {
        let n = 4_000_000;
        let mut xs: Vec<f32> = (0..=n)
            .map(|i| -87.0 + 175.0 * i as f32 / n as f32)
            .collect();
        xs.extend([-87.0, 88.0, 0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5]);
        for level in test_levels() {
            let got = run(level, ExpOf { xs: &xs });
            for (&x, &g) in xs.iter().zip(&got) {
                let want = f64::from(x).exp();
                let err = (f64::from(g) - want).abs() / want;
                assert!(
                    err <= 2.4e-7,
                    "{level:?} exp({x}) = {g}, want {want} (rel {err:e})"
                );
            }
            assert_eq!(run(level, ExpOf { xs: &[0.0] })[0], 1.0, "{level:?}");
            assert!(
                run(level, ExpOf { xs: &[f32::NAN] })[0].is_nan(),
                "{level:?}"
            );
        }
    }

    /// Applies `act` in place to `xs` through [`Simd::curved_slice`].
    struct ApplySlice<'a> {
        xs: &'a mut [f32],
        act: Act,
    }

    impl WithSimd for ApplySlice<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            s.curved_slice(self.xs, self.act);
        }
    }

    /// The out-of-line slice path (the direct convolution's post-pass) gives the
    /// per-vector activation's bits, on every level, for every activation and slice
    /// length (blocks of `Tuning::act_vectors` vectors, whole vectors and the short rest,
    /// from any start).
    #[test]
    fn slice_activations_match_vector_ones() {
        let mut rng = crate::kernels::reference::Rng::new(11);
        for level in test_levels() {
            // Two blocks of four 16-lane vectors, one vector and a rest of 5.
            let mut xs = rng.vec(9 * 16 + 5, -9.0, 9.0);
            xs[..6].copy_from_slice(&[0.0, -0.0, f32::NAN, f32::INFINITY, -1e4, 1e-30]);
            xs[70..76].copy_from_slice(&[0.0, -0.0, f32::NAN, f32::INFINITY, -1e4, 1e-30]);
            for act in crate::kernels::reference::ACTS {
                let ranges = [
                    (0, xs.len()),
                    (1, 8),
                    (3, 3 + 16),
                    (5, 6),
                    (2, 2),
                    (7, 7 + 64 + 16 + 9),
                    (1, 1 + 3 * 16 + 5),
                ];
                for (start, end) in ranges {
                    let mut got = xs[start..end].to_vec();
                    run(level, ApplySlice { xs: &mut got, act });
                    let want = apply(level, act, &xs[start..end]);
                    for ((&x, &g), &w) in xs[start..].iter().zip(&got).zip(&want) {
                        assert!(
                            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                            "{level:?} {act:?}({x}): slice {g}, vector {w}"
                        );
                    }
                    assert_eq!(got.len(), want.len());
                }
            }
        }
    }

    /// The portable level computes the scalar functions' exact operations: same bits.
    #[test]
    fn portable_activations_are_the_scalar_ones() {
        let mut xs: Vec<f32> = (-400_000..=400_000).map(|i| i as f32 * 3e-5).collect();
        xs.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            88.5,
            -88.5,
            1e4,
            -1e4,
            f32::MAX,
            f32::MIN,
        ]);
        xs.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
        ]);
        for act in crate::kernels::reference::ACTS {
            let got = apply(Level::Portable, act, &xs);
            for (&x, &g) in xs.iter().zip(&got) {
                let want = act.apply(x);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()) || g == want,
                    "{act:?}({x}) = {g}, scalar {want}"
                );
            }
        }
    }

    /// The vector activations of every level over the scalar tests' dense sweeps,
    /// against f64 with the scalar tests' tolerances, and their special values.
    #[test]
    fn vector_activations_are_accurate() {
        let sweep = |lo: f32, hi: f32| -> Vec<f32> {
            let n = 2_000_000;
            (0..=n)
                .map(|i| lo + (hi - lo) * i as f32 / n as f32)
                .collect()
        };
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        // (activation, exact, sweep from, sweep to, absolute and relative tolerance)
        type Case = (Act, fn(f64) -> f64, f32, f32, f64, f64);
        let silu = |x: f64| x / (1.0 + (-x).exp());
        let hs = |x: f64| (x + 3.0).clamp(0.0, 6.0) / 6.0;
        let hswish = |x: f64| x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
        let gelu = crate::kernels::reference::gelu;
        let cases: [Case; 9] = [
            (Act::TANH, f64::tanh, -12.0, 12.0, 4e-7, 2e-7),
            (Act::TANH, f64::tanh, -1e-3, 1e-3, 0.0, 3e-7),
            (Act::SIGMOID, sigmoid, -30.0, 30.0, 1e-7, 3e-7),
            (Act::SILU, silu, -30.0, 30.0, 1e-7, 4e-7),
            (Act::HARD_SIGMOID, hs, -8.0, 8.0, 0.0, 1.2e-7),
            (Act::HARD_SWISH, hswish, -8.0, 8.0, 0.0, 2.4e-7),
            (Act::GELU, gelu, -12.0, 12.0, 1e-7, 3e-7),
            (Act::GELU, gelu, -3.0, -2.6, 1e-7, 3e-7),
            (Act::GELU, gelu, -1e-3, 1e-3, 0.0, 3e-7),
        ];
        for level in test_levels() {
            for (act, exact, lo, hi, abs, rel) in cases {
                let xs = sweep(lo, hi);
                let got = apply(level, act, &xs);
                for (&x, &g) in xs.iter().zip(&got) {
                    let want = exact(f64::from(x));
                    let err = (f64::from(g) - want).abs();
                    assert!(
                        err <= abs + rel * want.abs(),
                        "{level:?} {act:?}({x}) = {g}, want {want} (err {err:e})"
                    );
                }
            }
            let special = [
                0.0,
                -0.0,
                1000.0,
                -1000.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                1e-30,
                -3.5,
                6.5,
            ];
            for act in crate::kernels::reference::ACTS {
                let got = apply(level, act, &special);
                for (&x, &g) in special.iter().zip(&got) {
                    let want = act.apply(x);
                    // Within 2 ulp: the FMA levels divide by a refined reciprocal
                    // estimate (`Simd::div_approx`), so SiLU(1000) may be 1000 (1 - 2^-24).
                    let ok = (g.is_nan() && want.is_nan())
                        || g == want
                        || (f64::from(g) - f64::from(want)).abs()
                            <= 1e-7 + 2.4e-7 * f64::from(want).abs();
                    assert!(ok, "{level:?} {act:?}({x}) = {g}, scalar {want}");
                }
            }
        }
    }
}
