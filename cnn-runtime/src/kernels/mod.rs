//! Kernels: the loops the generated `forward` calls, one file per kind of computation.
//!
//! Every kernel takes its dimensions as const generics, so each layer of a compiled
//! model gets a monomorphised copy with fixed trip counts (layers of equal signature
//! share one). Tensors are flat `f32` slices in C, H, W order. Weights are repacked once
//! at load time into the layout the kernel wants (`*Params::from_torch`), with batch
//! norm folded in and the activation applied in the kernel's epilogue.

pub mod activation;
pub mod conv;
pub mod depthwise;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod softmax;

#[cfg(test)]
mod reference;
