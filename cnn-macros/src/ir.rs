//! The IR: one model description, as both spellings (inline tokens, TOML) lower to it.
//!
//! Every later stage (checks, shape inference, planning, codegen) reads this and nothing
//! else. Locations ([`Loc`]) ride along so any stage can point at the layer it rejects;
//! they are not part of a model's identity (two spellings of one model compare equal).

use proc_macro2::Span;

/// Where something was written: a token span (inline) or a line/column of the TOML file.
#[derive(Clone, Copy, Debug)]
pub enum Loc {
    /// Inline: the first and last token of the layer or argument.
    Span(Span, Span),
    /// TOML: 1-based line and column in the file.
    File { line: usize, col: usize },
}

impl PartialEq for Loc {
    /// Locations never distinguish two models: the inline and TOML spellings of one model
    /// must compare equal.
    fn eq(&self, _other: &Loc) -> bool {
        true
    }
}

/// One diagnostic: a location and a message that names the layer, the op and the numbers.
#[derive(Clone, Debug)]
pub struct Diag {
    /// Where it points.
    pub loc: Loc,
    /// What is wrong, written for the user.
    pub msg: String,
    /// The 0-based index of the layer it is about, if it is about one.
    pub layer: Option<usize>,
}

impl Diag {
    /// A diagnostic at `loc`.
    pub fn new(loc: Loc, msg: impl Into<String>) -> Diag {
        Diag {
            loc,
            msg: msg.into(),
            layer: None,
        }
    }

    /// The same diagnostic, marked as being about layer `index`.
    pub fn for_layer(mut self, index: usize) -> Diag {
        self.layer = Some(index);
        self
    }
}

/// A whole model description.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The input shape `[C, H, W]` (each at least 1 once checked); `None` when missing
    /// or malformed (already reported).
    pub input: Option<[i64; 3]>,
    /// Where `input` was written.
    pub input_loc: Loc,
    /// The layers in order.
    pub layers: Vec<Layer>,
    /// Where the layer list is (for an empty one).
    pub body_loc: Loc,
}

/// One layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Its name: the explicit one, or its 0-based index among all layers.
    pub name: String,
    /// Whether the name was written (false: the index name).
    pub named: bool,
    /// Its 0-based position in the description.
    pub index: usize,
    /// What it computes.
    pub op: Op,
    /// Where the layer is written.
    pub loc: Loc,
    /// Where each argument's value is written, by key, for messages about one argument.
    pub arg_locs: Vec<(String, Loc)>,
}

impl Layer {
    /// The location of argument `key`, or of the layer when it was not written.
    pub fn arg_loc(&self, key: &str) -> Loc {
        self.arg_locs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, l)| *l)
            .unwrap_or(self.loc)
    }
}

/// A pair of per-axis values `(h, w)`. Values are kept signed so that a negative number
/// written by the user reaches the checks and gets a message instead of wrapping.
pub type Pair = (i64, i64);

/// Padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Explicit padding per axis, the same on both sides.
    Explicit(Pair),
    /// `same`: total `dilation*(kernel-1)` per axis, the extra cell bottom/right.
    Same,
    /// `valid`: no padding.
    Valid,
}

/// A convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    /// Output channels.
    pub out: i64,
    /// Kernel size.
    pub kernel: Pair,
    /// Stride.
    pub stride: Pair,
    /// Padding.
    pub padding: Padding,
    /// Dilation.
    pub dilation: Pair,
    /// Groups.
    pub groups: i64,
    /// Whether there is a bias.
    pub bias: bool,
}

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// `max_pool`, padding with -inf.
    Max,
    /// `avg_pool`.
    Avg,
}

/// A max or average pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window size.
    pub kernel: Pair,
    /// Stride (defaults to the kernel).
    pub stride: Pair,
    /// Padding on each side.
    pub padding: Pair,
    /// Dilation (max pool only; 1 for avg).
    pub dilation: Pair,
    /// PyTorch's `ceil_mode`.
    pub ceil_mode: bool,
    /// PyTorch's `count_include_pad` (avg pool only; true for max).
    pub count_include_pad: bool,
}

/// An element-wise activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `relu`.
    Relu,
    /// `relu6`.
    Relu6,
    /// `tanh`.
    Tanh,
    /// `sigmoid`.
    Sigmoid,
    /// `leaky_relu` with its slope.
    LeakyRelu(f64),
}

/// What a layer computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `conv`.
    Conv(Conv),
    /// `max_pool` / `avg_pool`.
    Pool(Pool),
    /// `global_avg_pool`.
    GlobalAvgPool,
    /// `global_max_pool`.
    GlobalMaxPool,
    /// `flatten`.
    Flatten,
    /// `linear`.
    Linear {
        /// Output features.
        out: i64,
        /// Whether there is a bias.
        bias: bool,
    },
    /// `batch_norm` (inference mode).
    BatchNorm {
        /// Epsilon added to the variance.
        eps: f64,
    },
    /// An element-wise activation.
    Act(Activation),
    /// `softmax` over a vector.
    Softmax,
    /// `dropout`: identity at inference.
    Dropout {
        /// The drop probability (checked, then ignored).
        p: f64,
    },
}

impl Op {
    /// The op's name as written in a description.
    pub fn keyword(&self) -> &'static str {
        match self {
            Op::Conv(_) => "conv",
            Op::Pool(Pool {
                kind: PoolKind::Max,
                ..
            }) => "max_pool",
            Op::Pool(Pool {
                kind: PoolKind::Avg,
                ..
            }) => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::GlobalMaxPool => "global_max_pool",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Act(Activation::Relu) => "relu",
            Op::Act(Activation::Relu6) => "relu6",
            Op::Act(Activation::Tanh) => "tanh",
            Op::Act(Activation::Sigmoid) => "sigmoid",
            Op::Act(Activation::LeakyRelu(_)) => "leaky_relu",
            Op::Softmax => "softmax",
            Op::Dropout { .. } => "dropout",
        }
    }
}

/// A tensor shape: `[C, H, W]` or a vector `[N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[C, H, W]`.
    Chw(usize, usize, usize),
    /// `[N]`.
    Vec(usize),
}

impl Shape {
    /// Number of values.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Chw(c, h, w) => c * h * w,
            Shape::Vec(n) => n,
        }
    }

    /// The dimensions as a list.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Chw(c, h, w) => vec![c, h, w],
            Shape::Vec(n) => vec![n],
        }
    }

    /// Channels (or features) and values per channel.
    pub fn channels_and_plane(&self) -> (usize, usize) {
        match *self {
            Shape::Chw(c, h, w) => (c, h * w),
            Shape::Vec(n) => (n, 1),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Shape::Chw(c, h, w) => write!(f, "[{c}, {h}, {w}]"),
            Shape::Vec(n) => write!(f, "[{n}]"),
        }
    }
}
