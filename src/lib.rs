//! # cnn — a model compiler for convolutional neural networks
//!
//! `cnn_model!` reads a declarative network description (inline or from a TOML file),
//! infers every tensor shape while the macro expands, rejects impossible architectures
//! with a compile error that names the layer and the numbers, and generates a struct
//! whose `forward` is one straight line of kernel calls with every dimension a constant.
//! Weights load from the safetensors file of the equivalent PyTorch module's
//! `state_dict()`.
//!
//! ```ignore
//! use cnn::{cnn_model, Model};
//!
//! cnn_model! {
//!     /// LeNet-5 (LeCun et al., 1998).
//!     pub struct LeNet5 {
//!         input: [1, 32, 32],
//!         conv1: conv(6, kernel = 5),
//!         tanh,
//!         pool1: avg_pool(2),
//!         conv2: conv(16, kernel = 5),
//!         tanh,
//!         avg_pool(2),
//!         flatten,
//!         fc1: linear(120),
//!         tanh,
//!         fc2: linear(84),
//!         tanh,
//!         fc3: linear(10),
//!     }
//! }
//!
//! let model = LeNet5::load("lenet5.safetensors")?;
//! let logits: [f32; 10] = model.forward(&[[[0.0; 32]; 32]; 1]);
//! ```
//!
//! The input language is described in `docs/LANGUAGE.md`.
//!
//! # Features
//!
//! * `std` (default): [`Model::load`] from a file, `std::error::Error`, run-time CPU
//!   feature detection, per-thread scratch for arenas above 4 KiB. Implies `alloc`.
//! * `alloc`: [`Model::from_safetensors`] and the `Vec`/`Box` APIs.
//! * `ndarray` (default): the ndarray batch API.
//! * `parallel`: one image's large layers and batches split over the cores
//!   ([`set_num_threads`]).
//! * `profile`: per-step timing of forward passes (`profile::last_steps`, labelled by
//!   [`Model::STEPS`]). Off (the default), the generated timing marks compile to nothing.
//!
//! With `default-features = false` this crate, the runtime and the generated code are
//! `#![no_std]` and use no allocator: embed the weights (`#[weights = "..."]`, then
//! `Name::embedded()`, packed at compile time into read-only data) and run with
//! [`Model::forward_in`] on an [`Arena`] you own (e.g. in a `static` [`ArenaCell`]).
//! `Name::ARENA_BYTES` and `Name::WEIGHT_BYTES` are the RAM and flash bill, as
//! constants a build can assert on.
//!
//! # Stability
//!
//! The public API is what this page lists: [`cnn_model!`] and the language it reads,
//! the [`Model`] trait and the items generated for a model, the errors, [`Arena`] and
//! [`ArenaCell`], and the settings ([`set_num_threads`], [`set_simd_level`], ...). It
//! follows semantic versioning. The kernels, the loader's internals and the CPU
//! dispatch are reachable only through `__private`, for the generated code: their
//! signatures change whenever the compiler needs them to.

#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub use cnn_macros::cnn_model;
/// An [`Arena`] in a `static`, lent to one caller at a time.
#[cfg(target_has_atomic = "8")]
pub use cnn_runtime::ArenaCell;
#[cfg(feature = "alloc")]
pub use cnn_runtime::LoadError;
pub use cnn_runtime::{Arena, Model, ShapeError, StepInfo, TensorSpec};

/// The borrow of an [`ArenaCell`]'s arena, returned by [`ArenaCell::lock`].
#[cfg(target_has_atomic = "8")]
pub use cnn_runtime::arena::ArenaGuard;

/// The instruction sets a model can run on, in increasing order.
pub use cnn_runtime::cpu::Level;

/// Caps the instruction set every model uses from now on (at most what the CPU has;
/// returns the level in effect). The environment variable `CNN_SIMD` (`portable`,
/// `avx2`, `avx512`) does the same at the first forward pass. Every level gives the same
/// results within the conformance tolerance; this is for testing and benchmarking.
pub fn set_simd_level(level: Level) -> Level {
    cnn_runtime::cpu::set_level(level)
}

/// The instruction set models run on now.
pub fn simd_level() -> Level {
    cnn_runtime::cpu::level()
}

/// The levels this CPU supports, [`Level::Portable`] first. Without `std`, the levels
/// the target was compiled for.
pub fn supported_simd_levels() -> &'static [Level] {
    cnn_runtime::cpu::supported()
}

/// Sets the threads one forward pass may use (the calling thread included), capped to
/// 1..=64; the default is `CNN_NUM_THREADS` or the available cores. Without the
/// `parallel` feature everything runs on the calling thread and this does nothing.
pub fn set_num_threads(n: usize) {
    cnn_runtime::pool::set_num_threads(n);
}

/// The threads one forward pass may use (1 without the `parallel` feature).
pub fn num_threads() -> usize {
    cnn_runtime::pool::num_threads()
}

/// Per-step timing of forward passes (feature `profile`): which layer takes the time.
///
/// ```ignore
/// let y = net.forward(&x);
/// for (info, t) in Net::STEPS.iter().zip(cnn::profile::last_steps()) {
///     println!("{:<24} {:<32} {:>8.1} µs", info.layer, info.kernel, t.as_secs_f64() * 1e6);
/// }
/// ```
///
/// With `parallel` too, `last_step_work` tells how each step's split kernel calls kept
/// the threads busy (the calling thread's and the workers' time in their parts).
#[cfg(feature = "profile")]
pub mod profile {
    pub use cnn_runtime::profile::{last_step_work, last_steps, StepWork};
}

/// Items the generated code names; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use cnn_runtime as rt;

    #[cfg(feature = "alloc")]
    pub use alloc::boxed::Box;

    /// Its tokens when `cnn` has the `alloc` feature (loading from bytes), nothing
    /// otherwise: generated code is the same either way, this decides.
    #[cfg(feature = "alloc")]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __cnn_if_alloc {
        ($($t:tt)*) => { $($t)* };
    }

    /// Its tokens when `cnn` has the `alloc` feature (loading from bytes), nothing
    /// otherwise: generated code is the same either way, this decides.
    #[cfg(not(feature = "alloc"))]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __cnn_if_alloc {
        ($($t:tt)*) => {};
    }

    pub use crate::__cnn_if_alloc as if_alloc;
}
