//! Kernels: the loops the generated `forward` calls, one file per kind of computation.
//!
//! Every kernel takes its dimensions as const generics (the signature the generated code
//! calls). Tensors are flat `f32` slices in C, H, W order. Weights are repacked once at
//! load time into the layout the kernel wants (`*Params::from_torch`), with batch norm
//! folded in and the activation applied in the kernel's epilogue.
//!
//! The heavy kernels (convolution, depthwise, linear, 2x2 pools) are written once over a
//! small SIMD trait (`simd/`: one file per instruction set: portable SSE2, AVX2 + FMA,
//! AVX-512) and run on the level [`cpu::level`](crate::cpu::level) selects; the
//! convolution engine (`engine.rs`) holds the packing, the band copies and the
//! register-blocked micro-kernels. 3x3 stride-1 convolutions can also run as Winograd
//! F(4x4, 3x3) (`winograd.rs`, with [`winograd::winograd_pays`] telling when it is
//! faster). Each kernel is tested against the f64 reference at every level the CPU
//! supports.

pub mod activation;
pub mod conv;
pub mod depthwise;
pub(crate) mod engine;
pub mod linear;
pub mod norm;
pub mod pool;
pub(crate) mod simd;
pub mod softmax;
pub mod winograd;

#[cfg(test)]
mod reference;
