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
//! Users normally depend on the facade crate `cnn` only, which re-exports this crate.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod arena;
pub mod cpu;
pub mod error;
pub mod kernels;
pub mod load;
mod model;
pub mod pool;
pub mod scratch;

pub use error::{LoadError, ShapeError};
pub use kernels::activation::Act;
pub use model::Model;
