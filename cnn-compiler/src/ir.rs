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

// `Loc` has no `PartialEq` on purpose: two spellings of one model differ in every
// location, so IR comparisons ([`Model::same_as`]) leave locations out explicitly.

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
#[derive(Clone, Debug)]
pub struct Model {
    /// The input shape: `[C, H, W]`, `[C, L]` (a 1-D signal) or `[N]` (a vector), each
    /// at least 1 once checked; `None` when missing or malformed (already reported).
    pub input: Option<Vec<i64>>,
    /// Where `input` was written.
    pub input_loc: Loc,
    /// The layers in order.
    pub layers: Vec<Layer>,
    /// Where the layer list is (for an empty one).
    pub body_loc: Loc,
}

impl Model {
    /// Whether two models are the same description, locations aside (the inline and
    /// TOML spellings of one model are).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn same_as(&self, other: &Model) -> bool {
        self.input == other.input
            && self.layers.len() == other.layers.len()
            && self
                .layers
                .iter()
                .zip(&other.layers)
                .all(|(a, b)| a.same_as(b))
    }

    /// Whether the model works on 1-D signals (`input` is `[C, L]`).
    pub fn is_1d(&self) -> bool {
        self.input.as_ref().is_some_and(|i| i.len() == 2)
    }
}

/// Which tensor a layer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Src {
    /// The model's input.
    Input,
    /// The output of the layer with this index.
    Layer(usize),
}

/// One layer.
#[derive(Clone, Debug)]
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
    /// The arguments written as a pair `(h, w)` (an error on a 1-D model).
    pub pair_args: Vec<String>,
    /// The tensors it reads, in order: one for a single-input op (the previous layer's
    /// output unless `from` says otherwise), the operands of `add`/`mul`/`concat`.
    pub inputs: Vec<Src>,
}

impl Layer {
    /// Whether two layers are the same, locations aside.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn same_as(&self, other: &Layer) -> bool {
        self.name == other.name
            && self.named == other.named
            && self.index == other.index
            && self.op == other.op
            && self.inputs == other.inputs
            && {
                let keys = |l: &Layer| {
                    let mut k: Vec<String> = l.arg_locs.iter().map(|(k, _)| k.clone()).collect();
                    k.sort();
                    k
                };
                keys(self) == keys(other)
            }
    }

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
    /// `silu`: `x * sigmoid(x)`.
    Silu,
    /// `hardswish`: `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `hardsigmoid`: `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `gelu`: `x * (1 + erf(x / sqrt 2)) / 2`.
    Gelu,
}

/// How `add`, `mul` and `concat` combine their operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Element-wise sum, with broadcasting.
    Add,
    /// Element-wise product, with broadcasting.
    Mul,
    /// Along axis 0 (channels, or features of a vector).
    Concat,
}

/// A transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose {
    /// Output channels.
    pub out: i64,
    /// Kernel size.
    pub kernel: Pair,
    /// Stride.
    pub stride: Pair,
    /// Padding (taken off each side of the output).
    pub padding: Pair,
    /// Extra cells on the bottom/right of the output.
    pub output_padding: Pair,
    /// Dilation.
    pub dilation: Pair,
    /// Groups.
    pub groups: i64,
    /// Whether there is a bias.
    pub bias: bool,
}

/// How `upsample` picks its output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpSize {
    /// An integer factor per axis.
    Scale(Pair),
    /// The output size per axis.
    Size(Pair),
}

/// `upsample`'s interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpMode {
    /// Nearest neighbour (`floor(dst * in / out)`).
    Nearest,
    /// Bilinear, on `[C, H, W]`.
    Bilinear,
    /// Linear, on `[C, L]`.
    Linear,
}

/// An `upsample` layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample {
    /// Scale or size.
    pub size: UpSize,
    /// Interpolation.
    pub mode: UpMode,
    /// PyTorch's `align_corners` (interpolating modes only).
    pub align_corners: bool,
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
    /// `identity`.
    Identity,
    /// `add`, `mul`, `concat`.
    Merge(Merge),
    /// `adaptive_avg_pool` / `adaptive_max_pool` to the output size `out`.
    AdaptivePool {
        /// Max or average.
        kind: PoolKind,
        /// Output size per axis.
        out: Pair,
    },
    /// `upsample`.
    Upsample(Upsample),
    /// `conv_transpose`.
    ConvTranspose(ConvTranspose),
    /// `slice`: channels (features of a vector) `start..end` of the input.
    Slice {
        /// The first channel kept.
        start: i64,
        /// One past the last channel kept.
        end: i64,
    },
    /// `channel_shuffle`: output channel `j * groups + i` is input channel
    /// `i * (C / groups) + j` (PyTorch's `nn.ChannelShuffle`).
    ChannelShuffle {
        /// The number of groups.
        groups: i64,
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
            Op::Act(Activation::Silu) => "silu",
            Op::Act(Activation::HardSwish) => "hardswish",
            Op::Act(Activation::HardSigmoid) => "hardsigmoid",
            Op::Act(Activation::Gelu) => "gelu",
            Op::Softmax => "softmax",
            Op::Dropout { .. } => "dropout",
            Op::Identity => "identity",
            Op::Merge(Merge::Add) => "add",
            Op::Merge(Merge::Mul) => "mul",
            Op::Merge(Merge::Concat) => "concat",
            Op::AdaptivePool {
                kind: PoolKind::Avg,
                ..
            } => "adaptive_avg_pool",
            Op::AdaptivePool {
                kind: PoolKind::Max,
                ..
            } => "adaptive_max_pool",
            Op::Upsample(_) => "upsample",
            Op::ConvTranspose(_) => "conv_transpose",
            Op::Slice { .. } => "slice",
            Op::ChannelShuffle { .. } => "channel_shuffle",
        }
    }

    /// Whether the op combines several tensors (`add`, `mul`, `concat`).
    pub fn is_merge(&self) -> bool {
        matches!(self, Op::Merge(_))
    }
}

/// A tensor shape: `[C, H, W]`, a 1-D signal `[C, L]` or a vector `[N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[C, H, W]`.
    Chw(usize, usize, usize),
    /// `[C, L]`: kernels run it as `[C, 1, L]`.
    Cl(usize, usize),
    /// `[N]`.
    Vec(usize),
}

impl Shape {
    /// Number of values.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Chw(c, h, w) => c * h * w,
            Shape::Cl(c, l) => c * l,
            Shape::Vec(n) => n,
        }
    }

    /// The shape as kernels see it, `[C, H, W]`: `[C, 1, L]` for a signal, `[N, 1, 1]`
    /// for a vector.
    pub fn as_chw(&self) -> (usize, usize, usize) {
        match *self {
            Shape::Chw(c, h, w) => (c, h, w),
            Shape::Cl(c, l) => (c, 1, l),
            Shape::Vec(n) => (n, 1, 1),
        }
    }

    /// The spatial dimensions as `(C, H, W)` (`H = 1` for a signal); `None` for a vector.
    pub fn spatial(&self) -> Option<(usize, usize, usize)> {
        match self {
            Shape::Vec(_) => None,
            s => Some(s.as_chw()),
        }
    }

    /// The same rank as `self` with other dimensions (`h` is ignored for a signal).
    pub fn with(&self, c: usize, h: usize, w: usize) -> Shape {
        match self {
            Shape::Chw(..) => Shape::Chw(c, h, w),
            Shape::Cl(..) => Shape::Cl(c, w),
            Shape::Vec(_) => Shape::Vec(c),
        }
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        match self {
            Shape::Chw(..) => 3,
            Shape::Cl(..) => 2,
            Shape::Vec(_) => 1,
        }
    }

    /// The dimensions as a list.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Chw(c, h, w) => vec![c, h, w],
            Shape::Cl(c, l) => vec![c, l],
            Shape::Vec(n) => vec![n],
        }
    }

    /// Channels (or features) and values per channel.
    pub fn channels_and_plane(&self) -> (usize, usize) {
        let (c, h, w) = self.as_chw();
        (c, h * w)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Shape::Chw(c, h, w) => write!(f, "[{c}, {h}, {w}]"),
            Shape::Cl(c, l) => write!(f, "[{c}, {l}]"),
            Shape::Vec(n) => write!(f, "[{n}]"),
        }
    }
}
