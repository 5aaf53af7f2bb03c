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
//! The input language is described in `docs/LANGUAGE.md`; the runtime (the [`Model`]
//! trait, errors, kernels) is re-exported from `cnn-runtime`.

pub use cnn_macros::cnn_model;
pub use cnn_runtime::{cpu, kernels, load, pool, Act, LoadError, Model, ShapeError};

/// Items the generated code names; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use cnn_runtime as rt;
}
