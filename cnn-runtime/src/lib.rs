//! Runtime of the `cnn` model compiler.
//!
//! The `cnn_model!` macro (crate `cnn-macros`, the compiler `cnn-compiler`) turns a network description into a struct
//! whose `forward` is one straight line of calls into the kernels of this crate, every
//! dimension a compile-time constant. This crate holds what that code links against:
//!
//! * the [`Model`] trait every generated struct implements, with its errors
//!   [`LoadError`] and [`ShapeError`];
//! * strict weight loading from a PyTorch `state_dict()` safetensors file ([`load`]);
//! * the kernels ([`kernels`]), one file per kind of computation;
//! * with the `parallel` feature, the thread pool that splits one image's big
//!   convolutions over the cores ([`pool`]).
//!
//! Users depend on the facade crate `cnn` only, which re-exports what they name. This
//! crate's own API (the kernels and their many const parameters, the loader's internals,
//! the CPU dispatch) exists for the generated code and is not covered by semantic
//! versioning.

//!
//! # Features
//!
//! * `std` (default): loading from files, `std::error::Error`, run-time CPU feature
//!   detection, per-thread scratch for arenas too big for the stack. Implies `alloc`.
//! * `alloc`: loading weights from bytes at run time ([`Model::from_safetensors`]) and
//!   the `Vec`/`Box` APIs. Without it (`default-features = false`) the crate is
//!   `#![no_std]` and uses no allocator: models embed their weights at compile time
//!   (`#[weights = ..]`) and run with [`Model::forward_in`] on a caller-owned arena.
//! * `ndarray` (default): the ndarray batch API.
//! * `parallel`: the intra-op thread pool ([`pool`]) and batch splitting over the cores.
//! * `profile`: per-step timing of forward passes ([`profile`]; implies `std`). Off, the
//!   generated code's timing marks compile to nothing.

#![cfg_attr(not(feature = "std"), no_std)]
// Without `alloc` the load-time code (packing, folding, the loader) is compiled out.
#![cfg_attr(not(feature = "alloc"), allow(unused_imports, dead_code))]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod arena;
pub mod buf;
pub mod cpu;
pub mod error;
pub mod kernels;
#[cfg(feature = "alloc")]
pub mod load;
pub(crate) mod math;
mod model;
pub mod pool;
pub mod profile;
#[cfg(feature = "std")]
pub mod scratch;
pub mod team;

pub use arena::Arena;
#[cfg(target_has_atomic = "8")]
pub use arena::ArenaCell;
pub use buf::Buf;
#[cfg(feature = "alloc")]
pub use error::LoadError;
pub use error::ShapeError;
pub use kernels::activation::{Act, ActKind};
pub use model::{Model, TensorSpec};
pub use profile::StepInfo;
