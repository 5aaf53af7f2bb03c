//! Stage 1, parse: the two spellings of a model, each into the same raw form.
//!
//! [`inline`] reads `cnn_model! { .. }` tokens with `syn`; [`toml`] reads a TOML file with
//! the `toml` crate's spanned parser. Both produce a [`RawModel`]: syntax only, no meaning
//! attached to op or argument names yet. [`crate::lower`] turns it into the IR, the same
//! function for both spellings, so they cannot drift apart.

pub mod inline;
pub mod toml;

use crate::ir::{Diag, Loc};

/// A value as written: the spellings' common ground.
#[derive(Clone, Debug)]
pub enum RawValue {
    /// An integer (negative allowed).
    Int(i64),
    /// A float.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A bare word inline (`same`), a string in TOML (`"same"`).
    Word(String),
    /// `(h, w)` inline, `[h, w]` in TOML; also the input's `[C, H, W]`.
    List(Vec<(RawValue, Loc)>),
    /// Anything else (a TOML table, a date, ...), by the name of its kind.
    Other(&'static str),
}

impl RawValue {
    /// How the value reads in a message.
    pub fn describe(&self) -> String {
        match self {
            RawValue::Int(i) => i.to_string(),
            RawValue::Float(f) => format!("{f:?}"),
            RawValue::Bool(b) => b.to_string(),
            RawValue::Word(w) => format!("\"{w}\""),
            RawValue::List(items) => {
                let inner: Vec<String> = items.iter().map(|(v, _)| v.describe()).collect();
                format!("[{}]", inner.join(", "))
            }
            RawValue::Other(kind) => format!("a {kind}"),
        }
    }
}

/// `key = value` as written.
#[derive(Clone, Debug)]
pub struct RawArg {
    /// The key.
    pub key: String,
    /// Where the key is written.
    pub key_loc: Loc,
    /// The value.
    pub value: RawValue,
    /// Where the value is written.
    pub loc: Loc,
}

/// One layer as written.
#[derive(Clone, Debug)]
pub struct RawLayer {
    /// `name:` inline, `name = ".."` in TOML.
    pub name: Option<(RawValue, Loc)>,
    /// The op's name (absent only in a TOML table without `op`).
    pub op: Option<(String, Loc)>,
    /// Positional arguments (inline only).
    pub positional: Vec<(RawValue, Loc)>,
    /// Keyword arguments in the order written.
    pub args: Vec<RawArg>,
    /// The whole layer.
    pub loc: Loc,
}

/// A model description as written.
#[derive(Clone, Debug)]
pub struct RawModel {
    /// `input` and where it is written.
    pub input: Option<(RawValue, Loc)>,
    /// The layers.
    pub layers: Vec<RawLayer>,
    /// Where the description is (for problems of the whole, like a missing `input`).
    pub body_loc: Loc,
    /// Problems found while reading (unknown top-level keys, ...), reported with the rest.
    pub diags: Vec<Diag>,
}
