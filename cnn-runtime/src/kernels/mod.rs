//! Kernels: the loops the generated `forward` calls, one file per kind of computation.
//!
//! Every kernel takes its dimensions as const generics (the signature the generated code
//! calls). Tensors are flat `f32` slices in C, H, W order. Weights are repacked once at
//! load time into the layout the kernel wants (`*Params::from_torch`), with batch norm
//! folded in and the activation applied in the kernel's epilogue.
//!
//! The heavy kernels (convolution, depthwise, linear, pools) are written once over a
//! small SIMD trait (`simd/`: one file per instruction set: portable SSE2, AVX2 + FMA,
//! AVX-512) and run on the level [`cpu::level`](crate::cpu::level) selects; the
//! convolution engine (`engine/`: `mod.rs` the packing, band copies and per-layer plan,
//! `tiles.rs` the register-blocked micro-kernels, `panels.rs` the direct convolution's
//! loops and pixel tiles, `cv_rows.rs` its channel-tile pass, `rules.rs` its per-layer
//! choices (tile kind, blocks, bands, packing, reduction steps), `depthwise.rs` the depthwise engines, `dw_flat.rs` the 3x3 stride-1 depthwise
//! layers on flat planes, `dw_rows3.rs` the wide stride-1 and the stride-2 ones row by
//! row with their taps formed in registers, `pool/` pooling windows other
//! than 2x2 on the same padded bands). 3x3 stride-1 convolutions can also run as Winograd
//! F(4x4, 3x3) or F(2x2, 3x3) (`winograd/`: `params.rs` the weight transform,
//! `transform.rs` the input and output transforms, `gemm.rs` the batched matrix products,
//! `api.rs` the entry points, with [`winograd::winograd_tile`] telling which is faster). Each kernel is tested against the f64 reference at every level the CPU
//! supports.
//!
//! Files: `activation.rs` (the fused activations, `Act`), `conv/` and `engine/`
//! (convolution), `geometry.rs` (the dimensions and tap arithmetic shared by the
//! convolutions and the pools), `depthwise/`, `conv_transpose.rs` (transposed convolution by phase
//! decomposition), `linear.rs`, `norm.rs` (batch norm as a channel affine map),
//! `pool/` (windowed and global pools), `adaptive.rs` (adaptive average/max pools),
//! `binary.rs` (broadcast element-wise add/mul), `shuffle.rs` (channel shuffle), `softmax.rs` (vector and channel
//! softmax), `upsample.rs` (nearest and bilinear upsampling), `expand_depthwise.rs` (a
//! 1x1 expansion and the depthwise layer reading it, run together band by band), `simd/`
//! (the SIMD layer)
//! and, for tests, `reference/` (f64 references: utilities in `mod.rs`, the layers in `ops.rs`). A 1-D signal `[C, L]` runs through
//! the 2-D kernels as `H = 1`.

pub mod activation;
pub mod adaptive;
pub mod binary;
pub mod conv;
pub mod conv_transpose;
pub mod depthwise;
pub(crate) mod engine;
pub mod expand_depthwise;
pub(crate) mod geometry;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod shuffle;
pub(crate) mod simd;
pub mod softmax;
pub mod upsample;
pub mod winograd;

#[doc(hidden)]
pub use engine::{Row16, ENGINE_STACK_BYTES};

#[cfg(test)]
mod reference;

/// `dst = src` (a concatenation's operand copied into its channel range): with the
/// `parallel` feature, from 32K floats (`PLANES_PAR_FLOATS`), in ranges of whole 16-float
/// runs over the pool's threads (DenseNet copies every earlier map into each layer's
/// concatenation).
///
/// # Panics
///
/// If the lengths differ.
pub fn copy_floats(src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "cnn: copy between different lengths");
    #[cfg(feature = "parallel")]
    {
        let (n, parts) = (dst.len(), crate::pool::num_threads());
        if parts > 1 && n >= PLANES_PAR_FLOATS {
            let per = n.div_ceil(parts).next_multiple_of(16);
            crate::pool::run_chunks_mut(dst, per, &|i, out| {
                out.copy_from_slice(&src[i * per..i * per + out.len()]);
            });
            return;
        }
    }
    dst.copy_from_slice(src);
}

/// Output floats from which a copy-like kernel (upsampling, the phase placement of
/// transposed convolutions) splits by channels over the pool's threads (`parallel`).
#[cfg(feature = "parallel")]
pub(crate) const PLANES_PAR_FLOATS: usize = 32 * 1024;

/// A team member's rows `rows.0..rows.1` of a plane of `h` rows of `w` values, as the
/// range of values it covers: both ends clamped to the plane, empty (`a == b`) when the
/// rows are (what every kernel's `_rows` form computes on).
pub(crate) fn row_span(rows: (usize, usize), h: usize, w: usize) -> (usize, usize) {
    let b = rows.1.min(h) * w;
    ((rows.0.min(h) * w).min(b), b)
}

/// With the `parallel` feature, more than one thread and at least
/// [`PLANES_PAR_FLOATS`] output floats, splits the `planes` output planes of `plane`
/// floats each into one range of planes per thread and calls `f(first, out)` for each
/// range (`first` its first plane, `out` its planes), returning `true`; else `false`,
/// nothing called.
#[cfg(feature = "parallel")]
pub(crate) fn split_planes(
    planes: usize,
    plane: usize,
    output: &mut [f32],
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) -> bool {
    let parts = crate::pool::num_threads().min(planes);
    if parts <= 1 || planes * plane < PLANES_PAR_FLOATS {
        return false;
    }
    let per = planes.div_ceil(parts);
    crate::pool::run_chunks_mut(&mut output[..planes * plane], per * plane, &|i, out| {
        f(i * per, out)
    });
    true
}

/// A raw pointer shared by the parts of one kernel call split over the pool's threads
/// ([`crate::pool::run`]): each part reads, or writes, only its own ranges through it
/// (disjoint output rows, channels or panels, its own share of a scratch buffer; inputs
/// and parameters read by all).
#[derive(Clone, Copy)]
pub(crate) struct SharedPtr(pub(crate) *mut f32);
// SAFETY: the parts of one call write disjoint ranges through it (and only read what no
// part writes), and the call returns only after all of them (`pool::run`), while the
// borrow the pointer came from is still alive.
unsafe impl Sync for SharedPtr {}
// SAFETY: as for `Sync`.
unsafe impl Send for SharedPtr {}

impl SharedPtr {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod copy_tests {
    use super::copy_floats;
    #[cfg(feature = "parallel")]
    use crate::kernels::reference as r;
    use crate::kernels::reference::Rng;

    /// Copies below and above the split size, of lengths off whole 16-float runs, give
    /// the source at 1, 2 and 3 threads (with `parallel`), writing nothing past the end.
    #[test]
    fn copies_equal_their_source_at_any_thread_count() {
        #[cfg(feature = "parallel")]
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(71);
        for n in [1, 17, 32 * 1024 - 1, 32 * 1024 + 5, 100_003] {
            let src = rng.vec(n, -1.0, 1.0);
            let run = |out: &mut [f32]| {
                copy_floats(&src, &mut out[..n]);
                assert!(out[..n] == src[..], "copy of {n}");
            };
            #[cfg(feature = "parallel")]
            r::assert_threads_match_one(n, &n, run);
            #[cfg(not(feature = "parallel"))]
            run(&mut vec![0.0; n]);
        }
    }
}
