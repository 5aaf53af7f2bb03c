//! Stage 5, plan: which kernel runs each layer, what is fused, where each tensor lives.
//!
//! * `flatten`, `dropout` and `identity` emit nothing: their output *is* their input (a
//!   view of the same memory, CHW order).
//! * A `batch_norm` whose input is read by nothing else, produced by a conv, transposed
//!   conv or linear (no-ops between that keep the shape), is folded into its weights at
//!   load time; a standalone one becomes a per-channel affine kernel.
//! * An activation whose input is read by nothing else runs in the epilogue of the
//!   kernel that produces it (conv, transposed conv, linear, affine, add/mul).
//! * Activations, standalone batch norms, softmax and `add`/`mul` run in place when the
//!   tensor they overwrite is read by nothing later (and is not the caller's input).
//! * `concat` has its operands written straight into their channel range of its output
//!   when each is produced by a kernel and read by the concat alone; others are copied.
//! * Memory: every tensor that needs storage belongs to a *group* (a tensor and those
//!   written in place over it or into it); each group lives from its first write to its
//!   last read and gets an offset in one arena, largest groups first, lowest free offset
//!   (live ranges, not alternation), its length rounded up to whole 64-byte lines so
//!   that every tensor starts a line. The final tensor's group is the caller's output.

use std::collections::HashMap;

use crate::ir::{Activation, Merge, Model, Op, PoolKind, Shape, Src};
use crate::shape::LayerShape;

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
        /// Windows that do not overlap (`stride = kernel`, no padding, one group): run as
        /// a 1x1 convolution into scratch memory and a depth-to-space copy.
        gemm: bool,
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
                | Kernel::ConvTranspose { gemm: true, .. }
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

struct Planner<'a> {
    model: &'a Model,
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
}

/// A (height, width) pair of the IR (kernel, stride, dilation) as the runtime's sizes.
fn pair((a, b): (i64, i64)) -> (usize, usize) {
    (a as usize, b as usize)
}

/// Whether a layer is a view of its input (no kernel, same memory).
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Flatten | Op::Dropout { .. } | Op::Identity)
}

impl<'a> Planner<'a> {
    fn new_group(&mut self, len: usize, buf: Buf) -> usize {
        self.groups.push(Group {
            len,
            buf,
            scratch: false,
            optional: false,
            parent: None,
        });
        self.groups.len() - 1
    }

    fn new_value(&mut self, shape: Shape) -> usize {
        let g = self.new_group(shape.len(), Buf::Arena);
        self.values.push(Value {
            shape,
            def: Some(self.steps.len()),
            group: g,
            offset: 0,
        });
        self.reads_left.push(0);
        self.values.len() - 1
    }

    fn src_value(&self, src: Src) -> usize {
        match src {
            Src::Input => 0,
            Src::Layer(j) => self.value_of[j],
        }
    }

    fn push(&mut self, p: Pending) -> usize {
        self.steps.push(p);
        self.steps.len() - 1
    }

    /// Runs depthwise layer `i` together with the 1x1 convolution that produced its
    /// input `v0` (`Kernel::ExpandDepthwise`), where that convolution is the last step,
    /// nothing else reads its output and the runtime's rule takes the pair: the step
    /// becomes the pair's, its output the depthwise layer's (the expansion's output is
    /// never stored), its working memory the bands'. Returns the new output value.
    fn fuse_expand_depthwise(&mut self, i: usize, v0: usize) -> Option<usize> {
        let layer = &self.model.layers[i];
        let shape = &self.shapes[i];
        let Op::Conv(conv) = layer.op else {
            return None;
        };
        let (c, h, w) = shape.input.as_chw();
        let depthwise = conv.groups as usize == c && conv.out as usize == c && c > 1;
        if self.model.is_1d() || !depthwise || !self.dies_here(v0) {
            return None;
        }
        let s = self.steps.len().checked_sub(1)?;
        let Kernel::Conv {
            layer: e,
            depthwise: false,
            winograd: None,
            bn: expand_bn,
        } = self.steps[s].kernel
        else {
            return None;
        };
        let Op::Conv(ec) = self.model.layers[e].op else {
            return None;
        };
        let plain_1x1 = ec.kernel == (1, 1)
            && ec.stride == (1, 1)
            && ec.dilation == (1, 1)
            && ec.groups == 1
            && self.shapes[e].pads == (0, 0, 0, 0);
        if self.steps[s].dst != v0 || !plain_1x1 {
            return None;
        }
        let (ci, _, _) = self.shapes[e].input.as_chw();
        let (_, oh, ow) = shape.output.as_chw();
        let (pt, _, pl, _) = shape.pads;
        let len = cnn_runtime::kernels::expand_depthwise::expand_depthwise_scratch_len(
            (ci, h, w),
            c,
            (oh, ow),
            pair(conv.kernel),
            pair(conv.stride),
            (pt, pl),
            pair(conv.dilation),
        )?;
        let dst = self.new_value(shape.output);
        let scratch = self.new_value(Shape::Vec(len));
        let g = self.values[scratch].group;
        self.groups[g].scratch = true;
        // Both written by step `s`; the expansion's output (and any packing room it
        // had) is never used.
        self.values[dst].def = Some(s);
        self.values[scratch].def = Some(s);
        self.values[v0].def = None;
        let step = &mut self.steps[s];
        if let Some(old) = step.scratch.replace(scratch) {
            self.values[old].def = None;
        }
        step.kernel = Kernel::ExpandDepthwise {
            expand: e,
            expand_bn,
            expand_act: step.act.take(),
            dw: i,
            bn: None,
        };
        step.layers.push(i);
        step.dst = dst;
        self.open.remove(&v0);
        self.open.insert(dst, s);
        Some(dst)
    }

    /// Whether value `v` may be overwritten by the layer being planned (whose reads are
    /// already served): nothing later reads it and it is not the caller's input.
    fn dies_here(&self, v: usize) -> bool {
        v != 0 && self.reads_left[v] == 0
    }

    fn plan_layer(&mut self, i: usize) {
        let layer = &self.model.layers[i];
        let shape = &self.shapes[i];
        let srcs: Vec<usize> = layer.inputs.iter().map(|s| self.src_value(*s)).collect();
        let v0 = srcs[0];
        if is_view(&layer.op) {
            // Its readers were counted as readers of its input.
            self.value_of[i] = v0;
            return;
        }
        // Reads of this layer are now being served.
        for &v in &srcs {
            self.reads_left[v] -= 1;
        }
        // Fusion into the open epilogue of the step that produced the input.
        let sole_reader = srcs.len() == 1 && self.reads_left[v0] == 0 && v0 != 0;
        if sole_reader {
            if let Some(&s) = self.open.get(&v0) {
                let step = &mut self.steps[s];
                match (&layer.op, &mut step.kernel) {
                    (
                        Op::BatchNorm { .. },
                        Kernel::Conv { bn, .. }
                        | Kernel::ExpandDepthwise { bn, .. }
                        | Kernel::Linear { bn, .. }
                        | Kernel::ConvTranspose { bn, .. },
                    ) if bn.is_none()
                        && step.act.is_none()
                        && self.values[v0].shape == shape.input =>
                    {
                        *bn = Some(i);
                        step.layers.push(i);
                        self.value_of[i] = v0;
                        return;
                    }
                    (
                        Op::Act(a),
                        Kernel::Conv { .. }
                        | Kernel::ExpandDepthwise { .. }
                        | Kernel::Linear { .. }
                        | Kernel::ConvTranspose { .. }
                        | Kernel::Affine { .. }
                        | Kernel::Binary { .. },
                    ) if step.act.is_none() => {
                        step.act = Some(*a);
                        step.layers.push(i);
                        self.value_of[i] = v0;
                        self.open.remove(&v0);
                        return;
                    }
                    _ => {}
                }
            }
        }
        // Anything else reading a value closes its producer's epilogue: a later batch
        // norm or activation must not change what this layer read.
        for v in &srcs {
            self.open.remove(v);
        }
        let out = match layer.op {
            Op::Merge(Merge::Concat) => self.plan_concat(i, &srcs),
            Op::Merge(m) => self.plan_binary(i, m, &srcs),
            Op::BatchNorm { .. } | Op::Act(_) | Op::Softmax => {
                let kernel = match layer.op {
                    Op::BatchNorm { .. } => Kernel::Affine { layer: i },
                    Op::Act(_) => Kernel::Activation,
                    _ => Kernel::Softmax,
                };
                let act = match layer.op {
                    Op::Act(a) => Some(a),
                    _ => None,
                };
                // In place over the input when nothing later reads it; else a fresh
                // tensor (the input is copied there first).
                let dst = if self.dies_here(v0) {
                    self.in_place_value(v0, shape.output)
                } else {
                    self.new_value(shape.output)
                };
                let s = self.push(Pending {
                    kernel,
                    act,
                    layers: vec![i],
                    srcs: vec![v0],
                    inputs: vec![shape.input],
                    dst,
                    scratch: None,
                });
                if matches!(kernel, Kernel::Affine { .. }) {
                    self.open.insert(dst, s);
                }
                dst
            }
            _ => {
                if let Some(dst) = self.fuse_expand_depthwise(i, v0) {
                    self.value_of[i] = dst;
                    return;
                }
                let kernel = match layer.op {
                    Op::Conv(conv) => {
                        let (c, h, w) = shape.input.as_chw();
                        let depthwise =
                            conv.groups as usize == c && conv.out as usize == c && c > 1;
                        // A dilated layer runs through its polyphase components.
                        let (dh, dw) = (conv.dilation.0 as usize, conv.dilation.1 as usize);
                        let three_by_three = !self.model.is_1d()
                            && conv.kernel == (3, 3)
                            && conv.stride == (1, 1)
                            && conv.groups == 1;
                        let winograd = if three_by_three {
                            cnn_runtime::kernels::winograd::winograd_tile(
                                c,
                                h,
                                w,
                                conv.out as usize,
                                dh,
                                dw,
                            )
                        } else {
                            None
                        };
                        Kernel::Conv {
                            layer: i,
                            depthwise,
                            winograd,
                            bn: None,
                        }
                    }
                    Op::ConvTranspose(_) => {
                        let Op::ConvTranspose(ct) =
                            crate::shape::kernel_op(&layer.op, self.model.is_1d())
                        else {
                            unreachable!("kernel_op keeps the op")
                        };
                        let (_, h, w) = shape.input.as_chw();
                        let (_, oh, ow) = shape.output.as_chw();
                        let gemm = ct.stride == ct.kernel
                            && ct.padding == (0, 0)
                            && ct.dilation == (1, 1)
                            && ct.groups == 1
                            && oh == h * ct.kernel.0 as usize
                            && ow == w * ct.kernel.1 as usize;
                        Kernel::ConvTranspose {
                            layer: i,
                            gemm,
                            bn: None,
                        }
                    }
                    Op::Linear { .. } => Kernel::Linear { layer: i, bn: None },
                    Op::Pool(_) => Kernel::Pool { layer: i },
                    Op::AdaptivePool { .. } => Kernel::AdaptivePool { layer: i },
                    Op::Upsample(_) => Kernel::Upsample { layer: i },
                    Op::GlobalAvgPool => Kernel::GlobalAvg,
                    Op::GlobalMaxPool => Kernel::GlobalMax,
                    _ => unreachable!("every other op is handled above"),
                };
                let dst = self.new_value(shape.output);
                let scratch_len = match kernel {
                    Kernel::Conv {
                        winograd: Some(tile),
                        ..
                    } => {
                        let (c, h, w) = shape.input.as_chw();
                        let (o, oh, ow) = shape.output.as_chw();
                        let Op::Conv(conv) = layer.op else {
                            unreachable!("Winograd is planned for conv layers")
                        };
                        let (dh, dw) = (conv.dilation.0 as usize, conv.dilation.1 as usize);
                        Some(cnn_runtime::kernels::winograd::winograd_scratch_len(
                            tile, c, h, w, o, oh, ow, dh, dw,
                        ))
                    }
                    // The 1x1 convolution's output before depth-to-space.
                    Kernel::ConvTranspose { gemm: true, .. } => Some(shape.output.len()),
                    _ => None,
                };
                // Where the runtime packs a 1x1 layer's input for its channel tiles
                // (small maps, AVX2): optional.
                let pack_len = match (
                    kernel,
                    crate::shape::kernel_op(&layer.op, self.model.is_1d()),
                ) {
                    (
                        Kernel::Conv {
                            depthwise: false,
                            winograd: None,
                            ..
                        },
                        Op::Conv(conv),
                    ) => {
                        let (pt, _, pl, _) = shape.pads;
                        let len = cnn_runtime::kernels::conv::conv_scratch_len(
                            shape.input.as_chw(),
                            shape.output.as_chw(),
                            pair(conv.kernel),
                            pair(conv.stride),
                            (pt, pl),
                            pair(conv.dilation),
                            conv.groups as usize,
                        );
                        (len > 0).then_some(len)
                    }
                    _ => None,
                };
                let scratch = match (scratch_len, pack_len) {
                    (Some(len), _) | (None, Some(len)) => {
                        let v = self.new_value(Shape::Vec(len));
                        let g = self.values[v].group;
                        self.groups[g].scratch = true;
                        self.groups[g].optional = scratch_len.is_none();
                        Some(v)
                    }
                    _ => None,
                };
                let s = self.push(Pending {
                    kernel,
                    act: None,
                    layers: vec![i],
                    srcs: vec![v0],
                    inputs: vec![shape.input],
                    dst,
                    scratch,
                });
                if matches!(
                    kernel,
                    Kernel::Conv { .. } | Kernel::Linear { .. } | Kernel::ConvTranspose { .. }
                ) {
                    self.open.insert(dst, s);
                }
                dst
            }
        };
        self.value_of[i] = out;
    }

    /// A new value of `shape` that shares `v`'s memory (written in place over it).
    fn in_place_value(&mut self, v: usize, shape: Shape) -> usize {
        let (group, offset) = {
            let x = &self.values[v];
            (x.group, x.offset)
        };
        self.values.push(Value {
            shape,
            def: Some(self.steps.len()),
            group,
            offset,
        });
        self.reads_left.push(0);
        self.values.len() - 1
    }

    fn plan_binary(&mut self, i: usize, op: Merge, srcs: &[usize]) -> usize {
        let out_shape = self.shapes[i].output;
        let in_shapes = self.shapes[i].inputs.clone();
        let mut acc = srcs[0];
        let mut acc_shape = in_shapes[0];
        let mut first = true;
        for (k, &b) in srcs[1..].iter().enumerate() {
            let b_shape = in_shapes[k + 1];
            // The shape after folding in operand k + 1.
            let dims: Vec<usize> = acc_shape
                .dims()
                .iter()
                .zip(b_shape.dims())
                .map(|(a, b)| (*a).max(b))
                .collect();
            let step_shape = acc_shape.with(
                dims[0],
                dims.get(dims.len().saturating_sub(2)).copied().unwrap_or(1),
                *dims.last().unwrap_or(&1),
            );
            let step_shape = if k + 2 == srcs.len() {
                out_shape
            } else {
                step_shape
            };
            // Later operands of this layer still to be read count as reads.
            let later = |v: usize| srcs[k + 2..].iter().filter(|s| **s == v).count();
            // An operand may be overwritten when it has the result's shape, is not the
            // other operand, and nothing reads it later (nor a later operand of this
            // layer); after the first step only the running result is.
            let can_overwrite = |p: &Self, v: usize, v_shape: Shape, other: usize| {
                v_shape == step_shape
                    && v != other
                    && p.dies_here(v)
                    && later(v) == 0
                    && (first || v == acc)
            };
            let (a, b, a_shape, b_shape, dst, in_place) = if can_overwrite(self, acc, acc_shape, b)
            {
                let dst = self.in_place_value(acc, step_shape);
                (acc, b, acc_shape, b_shape, dst, true)
            } else if can_overwrite(self, b, b_shape, acc) && first {
                // Both ops commute: overwrite the second operand instead.
                let dst = self.in_place_value(b, step_shape);
                (b, acc, b_shape, acc_shape, dst, true)
            } else {
                let dst = self.new_value(step_shape);
                (acc, b, acc_shape, b_shape, dst, false)
            };
            let s = self.push(Pending {
                kernel: Kernel::Binary { op, in_place },
                act: None,
                layers: if first { vec![i] } else { Vec::new() },
                srcs: vec![a, b],
                inputs: vec![a_shape, b_shape],
                dst,
                scratch: None,
            });
            self.open.remove(&acc);
            acc = dst;
            acc_shape = step_shape;
            first = false;
            if k + 2 == srcs.len() {
                self.open.insert(dst, s);
            }
        }
        acc
    }

    fn plan_concat(&mut self, i: usize, srcs: &[usize]) -> usize {
        let out_shape = self.shapes[i].output;
        let out = self.new_value(out_shape);
        let out_group = self.values[out].group;
        let mut offset = 0;
        let mut copies = false;
        let mut aliased: Vec<usize> = Vec::new();
        for &v in srcs {
            let len = self.values[v].shape.len();
            let g = self.values[v].group;
            let once = srcs.iter().filter(|s| **s == v).count() == 1;
            let own_group = self.groups[g].parent.is_none()
                && g != out_group
                && self.values[v].offset == 0
                && self.groups[g].len == len
                && !aliased.contains(&g);
            if v != 0 && once && self.reads_left[v] == 0 && own_group {
                // The producer writes straight into the concat's channel range.
                self.groups[g].parent = Some((out_group, offset));
                aliased.push(g);
            } else {
                copies = true;
                let part = self.values.len();
                self.values.push(Value {
                    shape: Shape::Vec(len),
                    def: Some(self.steps.len()),
                    group: out_group,
                    offset,
                });
                self.reads_left.push(0);
                self.push(Pending {
                    kernel: Kernel::Copy,
                    act: None,
                    layers: vec![i],
                    srcs: vec![v],
                    inputs: vec![Shape::Vec(len)],
                    dst: part,
                    scratch: None,
                });
            }
            self.open.remove(&v);
            offset += len;
        }
        if !copies {
            self.free_concats.push(i);
        }
        // The concat's value is defined where its last part is written.
        self.values[out].def = Some(self.steps.len().saturating_sub(1));
        out
    }

    /// The root group of `g` and the offset of `g` inside it.
    fn root(&self, mut g: usize) -> (usize, usize) {
        let mut offset = 0;
        while let Some((p, o)) = self.groups[g].parent {
            offset += o;
            g = p;
        }
        (g, offset)
    }
}

/// Plans a model whose every layer has a shape.
pub fn plan(model: &Model, shapes: &[LayerShape]) -> Plan {
    let n = model.layers.len();
    let input_shape = shapes.first().map_or(Shape::Vec(0), |s| s.input);
    let mut p = Planner {
        model,
        shapes,
        values: Vec::new(),
        groups: Vec::new(),
        steps: Vec::new(),
        reads_left: Vec::new(),
        value_of: vec![0; n],
        open: HashMap::new(),
        free_concats: Vec::new(),
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
            }
        }
    }
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
    finish(p, model, shapes)
}

#[cfg(test)]
thread_local! {
    /// Plans no optional working memory on this thread when set (tests).
    pub(crate) static OPTIONAL_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether optional working memory is switched off (tests).
fn optional_off() -> bool {
    #[cfg(test)]
    {
        OPTIONAL_OFF.with(|o| o.get())
    }
    #[cfg(not(test))]
    {
        false
    }
}

fn finish(mut p: Planner<'_>, model: &Model, shapes: &[LayerShape]) -> Plan {
    let n = model.layers.len();
    let final_value = p.value_of[n - 1];
    let out_shape = shapes[n - 1].output;
    if final_value == 0 {
        // The model is views of its input only: copy it out.
        let dst = p.new_value(out_shape);
        p.push(Pending {
            kernel: Kernel::Copy,
            act: None,
            layers: Vec::new(),
            srcs: vec![0],
            inputs: vec![Shape::Vec(out_shape.len())],
            dst,
            scratch: None,
        });
        let g = p.values[dst].group;
        p.groups[g].buf = Buf::Output;
    } else {
        let (root, _) = p.root(p.values[final_value].group);
        p.groups[root].buf = Buf::Output;
    }
    // Live ranges of root groups: from the first write to the last read of any value
    // stored in them.
    let steps = p.steps.len();
    let mut first = vec![usize::MAX; p.groups.len()];
    let mut last = vec![0usize; p.groups.len()];
    for value in &p.values {
        let (root, _) = p.root(value.group);
        if let Some(d) = value.def {
            first[root] = first[root].min(d);
            last[root] = last[root].max(d);
        }
    }
    for (s, step) in p.steps.iter().enumerate() {
        for &v in step.srcs.iter().chain([&step.dst]).chain(&step.scratch) {
            let (root, _) = p.root(p.values[v].group);
            first[root] = first[root].min(s);
            last[root] = last[root].max(s);
        }
    }
    // Place the arena's blocks by live range.
    let all: Vec<crate::place::Block> = (0..p.groups.len())
        .filter(|&g| p.groups[g].parent.is_none() && p.groups[g].buf == Buf::Arena)
        .filter(|&g| first[g] != usize::MAX)
        .map(|g| crate::place::Block {
            id: g,
            // Whole 64-byte lines (the arena starts one): every tensor starts a line, so
            // the threads of a split kernel never write the same line at a plane start.
            len: p.groups[g].len.next_multiple_of(LINE_FLOATS),
            first: first[g],
            last: last[g],
        })
        .collect();
    // Optional working memory only where it leaves the arena's size as it is without:
    // added one block at a time, in step order.
    let (mut blocks, optional): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|b| !p.groups[b.id].optional);
    let mut placement = crate::place::place(&blocks, steps);
    let base = placement.size;
    let mut dropped = vec![false; p.groups.len()];
    for b in optional {
        if optional_off() {
            dropped[b.id] = true;
            continue;
        }
        blocks.push(b);
        let trial = crate::place::place(&blocks, steps);
        if trial.size <= base {
            placement = trial;
        } else {
            dropped[b.id] = true;
            blocks.pop();
        }
    }
    let unshared = blocks
        .iter()
        .filter(|b| !p.groups[b.id].scratch)
        .map(|b| b.len)
        .sum();
    let mut offset_of = vec![0usize; p.groups.len()];
    for (b, o) in blocks.iter().zip(&placement.offsets) {
        offset_of[b.id] = *o;
    }
    let (arena, peak_step) = (placement.size, placement.peak_step);
    let region = |v: usize| {
        let (root, off) = p.root(p.values[v].group);
        let group = &p.groups[root];
        let base = if group.buf == Buf::Arena {
            offset_of[root]
        } else {
            0
        };
        Region {
            buf: group.buf,
            offset: base + off + p.values[v].offset,
        }
    };
    let out_steps = p
        .steps
        .iter()
        .map(|s| Step {
            kernel: s.kernel,
            act: s.act,
            layers: s.layers.clone(),
            inputs: s.inputs.clone(),
            output: p.values[s.dst].shape,
            srcs: s.srcs.iter().map(|v| region(*v)).collect(),
            dst: region(s.dst),
            scratch: s
                .scratch
                .filter(|&v| !dropped[p.root(p.values[v].group).0])
                .map(|v| (region(v), p.values[v].shape.len())),
        })
        .collect();
    Plan {
        steps: out_steps,
        arena,
        peak_step,
        unshared,
        free_concats: p.free_concats,
    }
}

/// The kernel's name as shown in the summary, e.g. `conv2d+bn+relu`.
pub fn describe(step: &Step, model: &Model) -> String {
    let one_d = model.is_1d();
    let d = if one_d { "1d" } else { "2d" };
    let mut s = match step.kernel {
        Kernel::Conv {
            depthwise: true, ..
        } => format!("depthwise_conv{d}"),
        Kernel::Conv {
            winograd: Some(tile),
            ..
        } => format!("winograd3x3[f{tile}x{tile}]"),
        Kernel::Conv { .. } => format!("conv{d}"),
        Kernel::ExpandDepthwise {
            expand_bn,
            expand_act,
            ..
        } => {
            // The expansion's name, then the depthwise layer's (its batch norm and
            // activation appended below).
            let mut e = format!("conv{d}");
            push_epilogue(&mut e, expand_bn.is_some(), expand_act);
            format!("{e} > depthwise_conv{d}")
        }
        Kernel::ConvTranspose { gemm: true, .. } => {
            format!("conv_transpose{d}[gemm]")
        }
        Kernel::ConvTranspose { .. } => format!("conv_transpose{d}"),
        Kernel::Linear { .. } => "linear".to_string(),
        Kernel::Pool { layer } => match model.layers[layer].op {
            Op::Pool(p) if p.kind == PoolKind::Max => format!("max_pool{d}"),
            _ => format!("avg_pool{d}"),
        },
        Kernel::AdaptivePool { layer } => match model.layers[layer].op {
            Op::AdaptivePool {
                kind: PoolKind::Max,
                ..
            } => format!("adaptive_max_pool{d}"),
            _ => format!("adaptive_avg_pool{d}"),
        },
        Kernel::Upsample { layer } => match model.layers[layer].op {
            Op::Upsample(u) if u.mode != crate::ir::UpMode::Nearest => {
                if one_d {
                    "upsample_linear".to_string()
                } else {
                    "upsample_bilinear".to_string()
                }
            }
            _ => "upsample_nearest".to_string(),
        },
        Kernel::GlobalAvg => "global_avg_pool".to_string(),
        Kernel::GlobalMax => "global_max_pool".to_string(),
        Kernel::Affine { .. } => "channel_affine".to_string(),
        Kernel::Activation => "activate".to_string(),
        Kernel::Softmax => {
            if step.output.rank() == 1 {
                "softmax".to_string()
            } else {
                "softmax_channels".to_string()
            }
        }
        Kernel::Binary { op, in_place } => {
            let name = if op == Merge::Add { "add" } else { "mul" };
            if in_place {
                format!("{name} (in place)")
            } else {
                name.to_string()
            }
        }
        Kernel::Copy => "copy".to_string(),
    };
    let bn = matches!(
        step.kernel,
        Kernel::Conv { bn: Some(_), .. }
            | Kernel::ExpandDepthwise { bn: Some(_), .. }
            | Kernel::Linear { bn: Some(_), .. }
            | Kernel::ConvTranspose { bn: Some(_), .. }
    );
    let act = if step.kernel == Kernel::Activation {
        None
    } else {
        step.act
    };
    push_epilogue(&mut s, bn, act);
    s
}

/// Appends a kernel's folded batch norm and fused activation to its name: `+bn+relu`.
fn push_epilogue(name: &mut String, bn: bool, act: Option<Activation>) {
    if bn {
        name.push_str("+bn");
    }
    if let Some(a) = act {
        name.push('+');
        name.push_str(act_name(a));
    }
}

/// The activation's op name.
pub fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Relu6 => "relu6",
        Activation::Tanh => "tanh",
        Activation::Sigmoid => "sigmoid",
        Activation::LeakyRelu(_) => "leaky_relu",
        Activation::Silu => "silu",
        Activation::HardSwish => "hardswish",
        Activation::HardSigmoid => "hardsigmoid",
        Activation::Gelu => "gelu",
    }
}
