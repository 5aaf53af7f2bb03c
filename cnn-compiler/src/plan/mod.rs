//! Stage 5, plan: which kernel runs each layer, what is fused, where each tensor lives.
//!
//! * `flatten`, `dropout` and `identity` emit nothing: their output *is* their input (a
//!   view of the same memory, CHW order). Nor does `slice`: its output is the channel
//!   range of its input's memory (a view at an offset); where that memory must not be
//!   written (the caller's input) or must be whole (the caller's output), a copy.
//! * A `batch_norm` whose input is read by nothing else, produced by a conv, transposed
//!   conv or linear (no-ops between that keep the shape), is folded into its weights at
//!   load time; a standalone one becomes a per-channel affine kernel.
//! * An activation whose input is read by nothing else runs in the epilogue of the
//!   kernel that produces it (conv, transposed conv, linear, affine, add/mul).
//! * An `add` of two same-shape tensors, one of them produced by a (not depthwise)
//!   convolution without activation and read by the add alone, the other written before
//!   that convolution: the convolution adds the other one in its epilogue (a residual
//!   connection, as ResNet's blocks end), and an activation after the add fuses too.
//! * Activations, standalone batch norms, softmax and `add`/`mul` run in place when the
//!   tensor they overwrite is read by nothing later (and is not the caller's input).
//! * `concat` has its operands written straight into their channel range of its output
//!   when each is produced by a kernel and read by the concat alone; others are copied.
//!   A concat read only by the `channel_shuffle` right after it (ShuffleNet's units) is
//!   not stored: the shuffle reads its operands where they are.
//!   A concat whose operands begin with all of an earlier one's (DenseNet's blocks)
//!   takes that one's memory as its prefix, and an operand read later only by such
//!   extensions is written once, into the chain's buffer; nothing runs in place over
//!   memory a later step still reads.
//! * Memory: every tensor that needs storage belongs to a *group* (a tensor and those
//!   written in place over it or into it); each group lives from its first write to its
//!   last read and gets an offset in one arena, largest groups first, lowest free offset
//!   (live ranges, not alternation), its length rounded up to whole 64-byte lines so
//!   that every tensor starts a line. The final tensor's group is the caller's output.

use std::collections::HashMap;

use crate::ir::{Activation, Merge, Model, Op, Shape, Src};
use crate::shape::LayerShape;

mod arena;
mod describe;
mod fuse;
mod layers;
mod team;
pub(crate) use layers::{phase_geometry, split_geometry};

#[cfg(test)]
pub(crate) use arena::OPTIONAL_OFF;
pub use describe::describe;
pub use team::{Part, Rows, Team};

/// Floats in a 64-byte cache line: arena blocks are placed in whole lines.
const LINE_FLOATS: usize = 16;

/// Which memory a region is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    /// The caller's input (read only).
    Input,
    /// The caller's output.
    Output,
    /// The activation arena.
    Arena,
}

/// Where a tensor lives: a buffer and the offset of its first value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// The buffer.
    pub buf: Buf,
    /// Offset in values.
    pub offset: usize,
}

/// How a transposed convolution runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtPath {
    /// The phase kernel, `conv_transpose2d`: groups, and the geometries the others do
    /// not take.
    Kernel,
    /// One stride-1 convolution over every phase (one group, dilation 1, strides
    /// dividing the kernel) into scratch memory, then `phase_to_space`.
    Phases,
    /// One convolution per phase (one group, every phase with taps: `k3 s2 p1`, dilated
    /// ones) into scratch memory, then `phases_to_space`.
    Split,
}

/// What a step computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kernel {
    /// Convolution of layer `layer`, with an optional folded batch norm (its layer index).
    Conv {
        /// The conv layer.
        layer: usize,
        /// Groups == in == out channels: the depthwise kernel.
        depthwise: bool,
        /// A 3x3 stride-1 dense convolution run as Winograd F(t x t, 3x3) with this
        /// output tile side `t` (4 or 2), where the runtime's rule
        /// (`winograd_tile`) says that is faster.
        winograd: Option<usize>,
        /// A batch norm folded in.
        bn: Option<usize>,
        /// A 2x2 max pool of stride 2 (this layer index) that alone reads the (activated)
        /// output, run in the Winograd kernel's output transform: only the pooled values
        /// are stored.
        pool: Option<usize>,
        /// An `add` fused in: the step's second source is added to the output before
        /// its activation (`act(conv + residual)`), by the kernel's epilogue.
        residual: bool,
        /// A `mul` by a per-channel scale (a `[C, 1, 1]` tensor: a squeeze-and-excitation
        /// block's) folded in: the step's second source is the scale, its input the
        /// unscaled tensor, and the kernel runs on a copy of the weights scaled per
        /// input channel (its working memory), where the runtime's rule
        /// (`conv_scale_fold_len`) says that costs less than the `mul`.
        scale: bool,
    },
    /// A 1x1 convolution (with its batch norm and activation) and the depthwise
    /// convolution that alone reads it, run together band by band where the runtime's
    /// rule (`expand_depthwise_scratch_len`) says that pays: the expansion's output is
    /// never stored whole.
    ExpandDepthwise {
        /// The 1x1 conv layer.
        expand: usize,
        /// A batch norm folded into it.
        expand_bn: Option<usize>,
        /// Its activation (the step's `act` is the depthwise layer's).
        expand_act: Option<Activation>,
        /// The depthwise conv layer.
        dw: usize,
        /// A batch norm folded into that.
        bn: Option<usize>,
    },
    /// Transposed convolution with an optional folded batch norm.
    ConvTranspose {
        /// The layer.
        layer: usize,
        /// How it runs: the phase kernel or the convolution engine.
        path: CtPath,
        /// A batch norm folded in.
        bn: Option<usize>,
    },
    /// Fully connected layer with an optional folded batch norm.
    Linear {
        /// The linear layer.
        layer: usize,
        /// A batch norm folded in.
        bn: Option<usize>,
    },
    /// Max or average pool.
    Pool {
        /// The pool layer.
        layer: usize,
    },
    /// Adaptive max or average pool.
    AdaptivePool {
        /// The layer.
        layer: usize,
    },
    /// Nearest or (bi)linear upsampling.
    Upsample {
        /// The layer.
        layer: usize,
    },
    /// Global average pool.
    GlobalAvg,
    /// Global max pool.
    GlobalMax,
    /// A standalone batch norm (in place on its destination).
    Affine {
        /// The batch-norm layer.
        layer: usize,
    },
    /// A standalone activation (in place on its destination).
    Activation,
    /// Softmax over a vector, or over the channels at every position (in place).
    Softmax,
    /// `add` / `mul` of two tensors with broadcasting; `in_place` when the destination
    /// is the first operand's memory.
    Binary {
        /// Add or multiply.
        op: Merge,
        /// Whether the destination already holds the first operand.
        in_place: bool,
    },
    /// A copy of `len` values (into a concat's channel range, or the input to the output).
    Copy,
    /// A channel shuffle of `groups` groups (a permutation of whole planes).
    ChannelShuffle {
        /// The number of groups.
        groups: usize,
    },
}

/// Bytes of stack buffers the kernels of `plan` reserve: the convolution engine's band
/// buffer, if any step runs through it (direct and depthwise convolutions, transposed
/// convolutions run as a 1x1 convolution, max and average pools: every window but the
/// 2x2 one runs on padded bands; counted for every pool, an upper bound).
pub fn stack_bytes(plan: &Plan) -> usize {
    let engine = plan.steps.iter().any(|s| {
        matches!(
            s.kernel,
            Kernel::Conv { winograd: None, .. }
                | Kernel::ExpandDepthwise { .. }
                | Kernel::ConvTranspose {
                    path: CtPath::Phases | CtPath::Split,
                    ..
                }
                | Kernel::Pool { .. }
        )
    });
    if engine {
        // The host's (std) runtime: 64 KiB. Generated code names the target's constant,
        // 16 KiB without std.
        cnn_runtime::kernels::ENGINE_STACK_BYTES
    } else {
        0
    }
}

/// One kernel call of `forward`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What it computes.
    pub kernel: Kernel,
    /// The activation in its epilogue (or the activation itself, for `Kernel::Activation`).
    pub act: Option<Activation>,
    /// The layers it covers, by index (for the summary); empty for helper copies.
    pub layers: Vec<usize>,
    /// Shapes of what it reads.
    pub inputs: Vec<Shape>,
    /// Shape of what it writes.
    pub output: Shape,
    /// Where it reads.
    pub srcs: Vec<Region>,
    /// Where it writes.
    pub dst: Region,
    /// The kernel's working memory in the arena and its length, if it needs any.
    pub scratch: Option<(Region, usize)>,
}

/// The plan of a whole forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The kernel calls in order.
    pub steps: Vec<Step>,
    /// Values (f32) of the arena.
    pub arena: usize,
    /// The step at which the arena's high-water mark is reached (index into `steps`).
    pub peak_step: Option<usize>,
    /// Values of every tensor stored in the arena, added up (what no sharing would cost;
    /// kernels' scratch not included).
    pub unshared: usize,
    /// Concat layers whose operands were all written in place (no copy).
    pub free_concats: Vec<usize>,
    /// The first steps run by a team of two threads as two half images, if worth it.
    pub team: Option<Team>,
}

/// A tensor during planning: its shape and the storage group it belongs to.
#[derive(Clone, Debug)]
struct Value {
    shape: Shape,
    /// The step that writes it (`None` for the input).
    def: Option<usize>,
    /// The group whose memory it uses and its offset in it.
    group: usize,
    offset: usize,
}

/// A storage group: one block of memory.
#[derive(Clone, Debug)]
struct Group {
    len: usize,
    buf: Buf,
    /// A kernel's working memory, not a tensor.
    scratch: bool,
    /// Working memory the kernel can do without (its use is only faster), planned only
    /// where it does not raise the arena's size.
    optional: bool,
    /// Set when the group is placed inside another (a concat's output).
    parent: Option<(usize, usize)>,
}

/// A step under construction: value ids instead of regions.
struct Pending {
    kernel: Kernel,
    act: Option<Activation>,
    layers: Vec<usize>,
    srcs: Vec<usize>,
    /// The shapes the step reads them as (a `flatten` view reads `[C, H, W]` as `[N]`).
    inputs: Vec<Shape>,
    dst: usize,
    /// Working memory of the kernel (Winograd's transformed tiles), live during the step.
    scratch: Option<usize>,
}

/// The choices a model's author makes about how it runs (the macro's attributes).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Whether 3x3 stride-1 convolutions may run as Winograd where the runtime's rule
    /// says it is faster (`#[winograd = false]`: never; every convolution direct).
    pub winograd: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { winograd: true }
    }
}

struct Planner<'a> {
    model: &'a Model,
    opts: Options,
    shapes: &'a [LayerShape],
    values: Vec<Value>,
    groups: Vec<Group>,
    steps: Vec<Pending>,
    /// Reads left of each value (by layers not yet planned), through views.
    reads_left: Vec<usize>,
    /// The value of each layer's output.
    value_of: Vec<usize>,
    /// The step that produced each value, while its epilogue is still open for fusion.
    open: HashMap<usize, usize>,
    free_concats: Vec<usize>,
    /// Concat chains (DenseNet's blocks): for each concat layer, the later concat whose
    /// operands start with all of its own, in order (its storage becomes that one's
    /// prefix), if any.
    extended_by: Vec<Option<usize>>,
    /// The operands of each concat layer, through views.
    concat_operands: HashMap<usize, Vec<Src>>,
    /// The layers reading each layer's output (and the input), through views, once per
    /// read.
    readers: HashMap<Src, Vec<usize>>,
    /// The concat layer whose output each value is.
    concat_of_value: HashMap<usize, usize>,
    /// Values that are a channel range of another's memory, written by no step of
    /// their own (`slice`).
    views: std::collections::HashSet<usize>,
    /// Concatenations never stored, by their (unwritten) value: the operands of each,
    /// which the channel shuffle right after reads where they are.
    shuffled_concats: HashMap<usize, Vec<usize>>,
}

/// A (height, width) pair of the IR (kernel, stride, dilation) as the runtime's sizes.
fn pair((a, b): (i64, i64)) -> (usize, usize) {
    (a as usize, b as usize)
}

/// Whether a layer is a view of its input (no kernel, same memory).
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Flatten | Op::Dropout { .. } | Op::Identity)
}

/// Plans a model whose every layer has a shape, as `opts` allow.
pub fn plan(model: &Model, shapes: &[LayerShape], opts: Options) -> Plan {
    let n = model.layers.len();
    let input_shape = shapes.first().map_or(Shape::Vec(0), |s| s.input);
    let mut p = Planner {
        model,
        opts,
        shapes,
        values: Vec::new(),
        groups: Vec::new(),
        steps: Vec::new(),
        reads_left: Vec::new(),
        value_of: vec![0; n],
        open: HashMap::new(),
        free_concats: Vec::new(),
        extended_by: vec![None; n],
        concat_operands: HashMap::new(),
        readers: HashMap::new(),
        concat_of_value: HashMap::new(),
        views: std::collections::HashSet::new(),
        shuffled_concats: HashMap::new(),
    };
    // Value 0: the caller's input.
    let g = p.new_group(input_shape.len(), Buf::Input);
    p.values.push(Value {
        shape: input_shape,
        def: None,
        group: g,
        offset: 0,
    });
    p.reads_left.push(0);
    // Reads of each layer's output, through views (a view's readers read its input).
    let mut base = vec![Src::Input; n];
    let mut reads: HashMap<Src, usize> = HashMap::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let resolve = |s: Src, base: &[Src]| match s {
            Src::Input => Src::Input,
            Src::Layer(j) => base[j],
        };
        if is_view(&layer.op) {
            base[i] = resolve(layer.inputs[0], &base);
        } else {
            base[i] = Src::Layer(i);
            for s in &layer.inputs {
                *reads.entry(resolve(*s, &base)).or_default() += 1;
                p.readers.entry(resolve(*s, &base)).or_default().push(i);
            }
            if matches!(layer.op, Op::Merge(Merge::Concat)) {
                let ops = layer.inputs.iter().map(|s| resolve(*s, &base)).collect();
                p.concat_operands.insert(i, ops);
            }
        }
    }
    p.chain_concats(base.last().copied());
    // Planning consumes reads layer by layer: each layer's output value is seeded with
    // its readers once the layer is planned (a fused layer's value is its producer's,
    // whose only reader it was).
    p.reads_left[0] = reads.get(&Src::Input).copied().unwrap_or(0);
    for i in 0..n {
        p.plan_layer(i);
        if !is_view(&model.layers[i].op) {
            let v = p.value_of[i];
            p.reads_left[v] = reads.get(&Src::Layer(i)).copied().unwrap_or(0);
        }
    }
    let mut plan = arena::finish(p, model, shapes);
    plan.team = team::team(&plan, model, shapes);
    plan
}
