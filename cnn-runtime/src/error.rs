//! Errors of weight loading ([`LoadError`]) and of wrongly sized inputs ([`ShapeError`]).

use core::fmt;

#[cfg(feature = "alloc")]
use alloc::{
    format,
    string::{String, ToString},
    vec::Vec,
};

/// Shape as printed in messages: `[6, 1, 5, 5]`.
/// `"{n} x "` before the shape of a batch buffer.
struct BatchFmt(Option<usize>);

impl fmt::Display for BatchFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n} x "),
            None => Ok(()),
        }
    }
}

pub(crate) struct ShapeFmt<'a>(pub &'a [usize]);

impl fmt::Display for ShapeFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

#[cfg(feature = "alloc")]
/// Why weights could not be loaded. Every message names the key (and shapes) involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The weight file could not be read.
    #[error("cannot read weights from `{path}`: {source}")]
    #[cfg(feature = "std")]
    Io {
        /// The path that was read.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file.
    #[error("not a valid safetensors file: {0}")]
    Format(String),
    /// A tensor the model needs is not in the file.
    #[error("missing key `{key}` (expected shape {}){}", ShapeFmt(.expected), suggestion(.did_you_mean))]
    MissingKey {
        /// The key the model needs.
        key: String,
        /// The shape the model expects for it.
        expected: Vec<usize>,
        /// A key of the file with a similar name, if any.
        did_you_mean: Option<String>,
    },
    /// The file holds a tensor the model has no use for.
    #[error("unexpected key `{key}` with shape {} in the weight file{}", ShapeFmt(.shape), suggestion(.did_you_mean))]
    UnexpectedKey {
        /// The key in the file.
        key: String,
        /// Its shape in the file.
        shape: Vec<usize>,
        /// A key the model expects with a similar name, if any.
        did_you_mean: Option<String>,
    },
    /// A tensor has the wrong shape.
    #[error("key `{key}`: expected shape {}, the file has {}", ShapeFmt(.expected), ShapeFmt(.actual))]
    ShapeMismatch {
        /// The key.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },
    /// A tensor has a dtype that cannot be converted to f32.
    #[error("key `{key}` (shape {}): unsupported dtype {dtype}; expected F32, F16, BF16 or F64", ShapeFmt(.shape))]
    UnsupportedDtype {
        /// The key.
        key: String,
        /// The tensor's shape.
        shape: Vec<usize>,
        /// The dtype found, as safetensors names it.
        dtype: String,
    },
    /// Several of the problems above at once (all of them are listed).
    #[error("{} problems loading the weights:{}", .0.len(), list(.0))]
    Many(Vec<LoadError>),
}

#[cfg(feature = "alloc")]
fn suggestion(s: &Option<String>) -> String {
    match s {
        Some(k) => format!("; did you mean `{k}`?"),
        None => String::new(),
    }
}

#[cfg(feature = "alloc")]
fn list(errors: &[LoadError]) -> String {
    errors.iter().map(|e| format!("\n  - {e}")).collect()
}

/// An input or output of the wrong size was passed to a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// A flat buffer has the wrong number of values.
    #[error("{what} has {got} values, expected {expected} (shape {}{})", BatchFmt(*.batch), ShapeFmt(.shape))]
    Length {
        /// Which buffer (`input`, `output`, ...).
        what: &'static str,
        /// The number of items of a batch buffer (`None` for one item).
        batch: Option<usize>,
        /// The expected shape of one item.
        shape: &'static [usize],
        /// The expected number of values.
        expected: usize,
        /// The number of values given.
        got: usize,
    },
    /// A batch buffer is not a whole number of items.
    #[error("{what} has {got} values, which is not a multiple of {item} (one item)")]
    BatchLength {
        /// Which buffer.
        what: &'static str,
        /// The length of one item.
        item: usize,
        /// The number of values given.
        got: usize,
    },
    /// An NCHW batch whose C, H, W differ from the model's input shape.
    #[error("batch has shape {}, expected [N, {}]", ShapeFmt(.got), ShapeFmt(.expected).to_string().trim_start_matches('[').trim_end_matches(']'))]
    #[cfg(feature = "alloc")]
    Batch {
        /// The model's input shape `[C, H, W]`.
        expected: Vec<usize>,
        /// The shape given, `[N, C, H, W]`.
        got: Vec<usize>,
    },
    /// The output asked for has a different rank from the model's output.
    #[error("the model's output has shape {}, not a {wanted}-D shape per item", ShapeFmt(.shape))]
    #[cfg(feature = "alloc")]
    OutputRank {
        /// Rank per item asked for (1 for vectors, 3 for `[C, H, W]`).
        wanted: usize,
        /// The model's output shape.
        shape: Vec<usize>,
    },
}

impl ShapeError {
    /// `Ok` when `got == expected`, else a [`ShapeError::Length`] naming `what` and `shape`.
    pub fn check(
        what: &'static str,
        shape: &'static [usize],
        expected: usize,
        got: usize,
    ) -> Result<(), ShapeError> {
        if got == expected {
            Ok(())
        } else {
            Err(ShapeError::Length {
                what,
                batch: None,
                shape,
                expected,
                got,
            })
        }
    }
}
