//! Stage 5, plan: which kernel runs each layer, what is fused, where each tensor lives.
//!
//! * A `batch_norm` right after a conv or linear (only shape-preserving no-ops between)
//!   is folded into its weights at load time; a standalone one becomes a per-channel
//!   affine kernel.
//! * An activation right after a conv, linear or standalone batch norm runs in that
//!   kernel's epilogue; any other activation, and softmax, run in place.
//! * `flatten` and `dropout` emit nothing: flatten is a reinterpretation of CHW memory.
//! * Tensors live in two stack arenas `A` and `B` used in turn (ping-pong), except the
//!   first kernel reads the caller's input and the last producing kernel writes the
//!   caller's output directly. The macro sizes the arenas to the largest tensor each holds.

use crate::ir::{Activation, Model, Op, PoolKind, Shape};
use crate::shape::LayerShape;

/// Where a tensor lives during `forward`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    /// The caller's input slice.
    Input,
    /// Arena A.
    A,
    /// Arena B.
    B,
    /// The caller's output slice.
    Output,
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
    /// Global average pool.
    GlobalAvg,
    /// Global max pool.
    GlobalMax,
    /// A standalone batch norm, in place.
    Affine {
        /// The batch-norm layer.
        layer: usize,
    },
    /// A standalone activation, in place.
    Activation,
    /// Softmax, in place.
    Softmax,
    /// A copy (the input to an arena when the first kernel works in place, or the last
    /// tensor to the output when no kernel writes it).
    Copy,
}

/// One kernel call of `forward`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What it computes.
    pub kernel: Kernel,
    /// The activation in its epilogue (or the activation itself, for `Kernel::Activation`).
    pub act: Option<Activation>,
    /// The layers it covers, by index (for comments and the summary).
    pub layers: Vec<usize>,
    /// Input shape.
    pub input: Shape,
    /// Output shape.
    pub output: Shape,
    /// Where it reads.
    pub src: Buf,
    /// Where it writes (equal to `src` for in-place steps).
    pub dst: Buf,
}

impl Step {
    /// Whether the step modifies its tensor in place.
    pub fn in_place(&self) -> bool {
        matches!(
            self.kernel,
            Kernel::Affine { .. } | Kernel::Activation | Kernel::Softmax
        )
    }
}

/// The plan of a whole forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The kernel calls in order.
    pub steps: Vec<Step>,
    /// Values of arena A.
    pub arena_a: usize,
    /// Values of arena B.
    pub arena_b: usize,
}

/// Whether layer `i` is a no-op whose output equals its input shape (dropout, flatten on
/// a vector): a batch norm or activation after it may still fuse.
fn transparent(model: &Model, shapes: &[LayerShape], i: usize) -> bool {
    matches!(model.layers[i].op, Op::Dropout { .. } | Op::Flatten)
        && shapes[i].input == shapes[i].output
}

/// Plans a model whose every layer has a shape.
pub fn plan(model: &Model, shapes: &[LayerShape]) -> Plan {
    let n = model.layers.len();
    let mut steps: Vec<Step> = Vec::new();
    let mut i = 0;
    // Index of the next layer after `j` that is not transparent.
    let next = |j: usize| {
        let mut k = j + 1;
        while k < n && transparent(model, shapes, k) {
            k += 1;
        }
        k
    };
    while i < n {
        let layer = &model.layers[i];
        let mut covered = vec![i];
        let mut last = i;
        let kernel = match layer.op {
            Op::Conv(conv) => {
                let (c, _) = shapes[i].input.channels_and_plane();
                let depthwise = conv.groups as usize == c && conv.out as usize == c && c > 1;
                Some(Kernel::Conv {
                    layer: i,
                    depthwise,
                    bn: None,
                })
            }
            Op::Linear { .. } => Some(Kernel::Linear { layer: i, bn: None }),
            Op::Pool(_) => Some(Kernel::Pool { layer: i }),
            Op::GlobalAvgPool => Some(Kernel::GlobalAvg),
            Op::GlobalMaxPool => Some(Kernel::GlobalMax),
            Op::BatchNorm { .. } => Some(Kernel::Affine { layer: i }),
            Op::Act(_) => Some(Kernel::Activation),
            Op::Softmax => Some(Kernel::Softmax),
            Op::Flatten | Op::Dropout { .. } => None,
        };
        let Some(mut kernel) = kernel else {
            i += 1;
            continue;
        };
        // Fold a following batch norm into conv / linear.
        if let Kernel::Conv { bn, .. } | Kernel::Linear { bn, .. } = &mut kernel {
            let j = next(last);
            if j < n && matches!(model.layers[j].op, Op::BatchNorm { .. }) {
                *bn = Some(j);
                covered.extend(last + 1..=j);
                last = j;
            }
        }
        // Fuse a following activation into the epilogue.
        let mut act = None;
        if let Op::Act(a) = layer.op {
            act = Some(a);
        } else if matches!(
            kernel,
            Kernel::Conv { .. } | Kernel::Linear { .. } | Kernel::Affine { .. }
        ) {
            let j = next(last);
            if j < n {
                if let Op::Act(a) = model.layers[j].op {
                    act = Some(a);
                    covered.extend(last + 1..=j);
                    last = j;
                }
            }
        }
        steps.push(Step {
            kernel,
            act,
            layers: covered,
            input: shapes[i].input,
            output: shapes[last].output,
            src: Buf::Input,
            dst: Buf::Input,
        });
        i = last + 1;
    }
    assign_buffers(steps, shapes)
}

fn assign_buffers(steps: Vec<Step>, shapes: &[LayerShape]) -> Plan {
    let last_producer = steps.iter().rposition(|s| !s.in_place());
    let mut out = Vec::with_capacity(steps.len() + 2);
    let (mut arena_a, mut arena_b) = (0usize, 0usize);
    let mut grow = |buf: Buf, len: usize| match buf {
        Buf::A => arena_a = arena_a.max(len),
        Buf::B => arena_b = arena_b.max(len),
        _ => {}
    };
    let input_shape = shapes.first().map(|s| s.input).unwrap_or(Shape::Vec(0));
    let final_shape = shapes.last().map(|s| s.output).unwrap_or(input_shape);
    let mut cur = Buf::Input;
    for (k, mut step) in steps.into_iter().enumerate() {
        if step.in_place() {
            if cur == Buf::Input {
                // Never write the caller's input: copy it first.
                let dst = if last_producer.is_some() {
                    Buf::A
                } else {
                    Buf::Output
                };
                grow(dst, step.input.len());
                out.push(Step {
                    kernel: Kernel::Copy,
                    act: None,
                    layers: Vec::new(),
                    input: step.input,
                    output: step.input,
                    src: Buf::Input,
                    dst,
                });
                cur = dst;
            }
            step.src = cur;
            step.dst = cur;
        } else {
            let dst = if Some(k) == last_producer {
                Buf::Output
            } else if cur == Buf::A {
                Buf::B
            } else {
                Buf::A
            };
            grow(dst, step.output.len());
            step.src = cur;
            step.dst = dst;
            cur = dst;
        }
        out.push(step);
    }
    if cur != Buf::Output {
        out.push(Step {
            kernel: Kernel::Copy,
            act: None,
            layers: Vec::new(),
            input: final_shape,
            output: final_shape,
            src: cur,
            dst: Buf::Output,
        });
    }
    Plan {
        steps: out,
        arena_a,
        arena_b,
    }
}

/// The kernel's name as shown in the summary, e.g. `conv2d+bn+relu`.
pub fn describe(step: &Step, model: &Model) -> String {
    let mut s = match step.kernel {
        Kernel::Conv {
            depthwise: true, ..
        } => "depthwise_conv2d".to_string(),
        Kernel::Conv { .. } => "conv2d".to_string(),
        Kernel::Linear { .. } => "linear".to_string(),
        Kernel::Pool { layer } => match model.layers[layer].op {
            Op::Pool(p) if p.kind == PoolKind::Max => "max_pool2d".to_string(),
            _ => "avg_pool2d".to_string(),
        },
        Kernel::GlobalAvg => "global_avg_pool".to_string(),
        Kernel::GlobalMax => "global_max_pool".to_string(),
        Kernel::Affine { .. } => "channel_affine".to_string(),
        Kernel::Activation => "activate".to_string(),
        Kernel::Softmax => "softmax".to_string(),
        Kernel::Copy => "copy".to_string(),
    };
    if let Kernel::Conv { bn: Some(_), .. } | Kernel::Linear { bn: Some(_), .. } = step.kernel {
        s.push_str("+bn");
    }
    if step.kernel != Kernel::Activation {
        if let Some(a) = step.act {
            s.push('+');
            s.push_str(act_name(a));
        }
    }
    s
}

/// The activation's op name.
pub fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Relu6 => "relu6",
        Activation::Tanh => "tanh",
        Activation::Sigmoid => "sigmoid",
        Activation::LeakyRelu(_) => "leaky_relu",
    }
}
