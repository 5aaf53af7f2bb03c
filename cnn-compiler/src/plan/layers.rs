//! Planning layer by layer: the kernel of each layer, in-place writes, concat operands
//! written into their output, and the storage group of every value; the fusions into
//! the producer's step are [`fuse`](super::fuse)'s.

use super::{is_view, pair, Buf, CtPath, Group, Kernel, Pending, Planner, Value};
use crate::ir::{Merge, Op, Shape, Src};

impl<'a> Planner<'a> {
    pub(super) fn new_group(&mut self, len: usize, buf: Buf) -> usize {
        self.groups.push(Group {
            len,
            buf,
            scratch: false,
            optional: false,
            parent: None,
        });
        self.groups.len() - 1
    }

    pub(super) fn new_value(&mut self, shape: Shape) -> usize {
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

    pub(super) fn src_value(&self, src: Src) -> usize {
        match src {
            Src::Input => 0,
            Src::Layer(j) => self.value_of[j],
        }
    }

    pub(super) fn push(&mut self, p: Pending) -> usize {
        self.steps.push(p);
        self.steps.len() - 1
    }

    /// For a step `s` that now computes a later layer too: a new output value of shape
    /// `out` and working memory of `len` floats, both written by step `s`, and `v0`
    /// (what the step wrote before) never written.
    pub(super) fn take_over(
        &mut self,
        s: usize,
        v0: usize,
        out: Shape,
        len: usize,
    ) -> (usize, usize) {
        let dst = self.new_value(out);
        let scratch = self.new_value(Shape::Vec(len));
        let g = self.values[scratch].group;
        self.groups[g].scratch = true;
        self.values[dst].def = Some(s);
        self.values[scratch].def = Some(s);
        self.values[v0].def = None;
        (dst, scratch)
    }

    /// Whether value `v` may be overwritten by the layer being planned (whose reads are
    /// already served): nothing later reads it and it is not the caller's input.
    /// A concat's output that a later concat extends (`extended_by`) is never
    /// overwritten: it becomes that concat's prefix; nor is a value whose memory holds
    /// another that is still to be read (a concat chain's earlier concats and operands).
    pub(super) fn dies_here(&self, v: usize) -> bool {
        v != 0
            && self.reads_left[v] == 0
            && self.groups[self.root(self.values[v].group).0].buf != Buf::Input
            && self
                .concat_of_value
                .get(&v)
                .is_none_or(|&j| self.extended_by[j].is_none())
            && !self.holds_live(v)
    }

    /// Whether another value still to be read lives in memory that `v`'s overlaps.
    pub(super) fn holds_live(&self, v: usize) -> bool {
        (1..self.values.len()).any(|w| w != v && self.reads_left[w] > 0 && self.overlap(v, w))
    }

    /// Whether the memory of values `a` and `b` overlaps (a slice and its source, or
    /// two slices of one tensor, are different values in the same memory).
    pub(super) fn overlap(&self, a: usize, b: usize) -> bool {
        let span = |x: usize| {
            let (root, off) = self.root(self.values[x].group);
            let start = off + self.values[x].offset;
            (root, start, start + self.values[x].shape.len())
        };
        let ((ra, sa, ea), (rb, sb, eb)) = (span(a), span(b));
        ra == rb && sa < eb && sb < ea
    }

    /// Links each concat layer to the later concat that extends it, if any: the one
    /// whose operands start with all of its own, in order (DenseNet's blocks, where
    /// layer `k` reads the concatenation of the block's input and every earlier layer's
    /// output), the longest such prefix first; never the model's output (`output`, the
    /// last layer through views).
    pub(super) fn chain_concats(&mut self, output: Option<Src>) {
        let mut layers: Vec<usize> = self.concat_operands.keys().copied().collect();
        layers.sort_unstable();
        for (k, &i) in layers.iter().enumerate() {
            let ops = &self.concat_operands[&i];
            let prefix = layers[..k]
                .iter()
                .copied()
                .filter(|&j| self.extended_by[j].is_none() && output != Some(Src::Layer(j)))
                .filter(|j| {
                    let pj = &self.concat_operands[j];
                    pj.len() < ops.len() && ops.starts_with(pj)
                })
                .max_by_key(|j| (self.concat_operands[j].len(), *j));
            if let Some(j) = prefix {
                self.extended_by[j] = Some(i);
            }
        }
    }

    /// Whether every layer after concat `i` reading `s` is a concat of `i`'s chain (one
    /// that extends `i`, or extends one that does): those hold `s` at the same channel
    /// offset as `i`, so `s` can be written there once for all of them.
    fn read_by_chain_only(&self, i: usize, s: Src) -> bool {
        let mut chain = Vec::new();
        let mut next = self.extended_by[i];
        while let Some(j) = next {
            chain.push(j);
            next = self.extended_by[j];
        }
        !chain.is_empty()
            && self
                .readers
                .get(&s)
                .is_some_and(|rs| rs.iter().all(|&r| r <= i || chain.contains(&r)))
    }

    pub(super) fn plan_layer(&mut self, i: usize) {
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
        if let Op::Slice { start, .. } = layer.op {
            self.value_of[i] = self.plan_slice(i, v0, start as usize);
            return;
        }
        // Fusion into the open epilogue of the step that produced the input.
        let sole_reader = srcs.len() == 1 && self.reads_left[v0] == 0 && v0 != 0;
        if sole_reader {
            if let Some(dst) = self.fuse_max_pool(i, v0) {
                self.value_of[i] = dst;
                return;
            }
            if let Some(&s) = self.open.get(&v0) {
                let step = &mut self.steps[s];
                // A folded scale is a second source the batch norm may follow (a
                // residual is not).
                let scaled = matches!(
                    step.kernel,
                    Kernel::Conv {
                        scale: true,
                        residual: false,
                        ..
                    }
                );
                match (&layer.op, &mut step.kernel) {
                    (
                        Op::BatchNorm { .. },
                        Kernel::Conv { bn, .. }
                        | Kernel::ExpandDepthwise { bn, .. }
                        | Kernel::Linear { bn, .. }
                        | Kernel::ConvTranspose { bn, .. },
                    ) if bn.is_none()
                        && step.act.is_none()
                        && (step.srcs.len() == 1 || scaled)
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
        if let Some(dst) = self.fuse_residual(i, &srcs) {
            self.value_of[i] = dst;
            return;
        }
        // Anything else reading a value closes its producer's epilogue: a later batch
        // norm or activation must not change what this layer read.
        for v in &srcs {
            self.open.remove(v);
        }
        let out = match layer.op {
            Op::Merge(Merge::Concat) if self.shuffled_next(i) => {
                // Never stored: the shuffle reads the operands (nothing is planned in
                // between that could write over them).
                let v = self.new_value(shape.output);
                self.values[v].def = None;
                self.shuffled_concats.insert(v, srcs.clone());
                v
            }
            Op::Merge(Merge::Concat) => self.plan_concat(i, &srcs),
            Op::ChannelShuffle { groups } => {
                // Of a concatenation never stored: its operands, where they are.
                let (layers, srcs, inputs) = match self.shuffled_concats.get(&v0) {
                    Some(operands) => (
                        vec![i - 1, i],
                        operands.clone(),
                        self.shapes[i - 1].inputs.clone(),
                    ),
                    None => (vec![i], vec![v0], vec![shape.input]),
                };
                let dst = self.new_value(shape.output);
                self.push(Pending {
                    kernel: Kernel::ChannelShuffle {
                        groups: groups as usize,
                    },
                    act: None,
                    layers,
                    srcs,
                    inputs,
                    dst,
                    scratch: None,
                });
                dst
            }
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
                if let Some(dst) = self.fuse_scale(i, v0) {
                    self.value_of[i] = dst;
                    return;
                }
                if let Some(dst) = self.fuse_expand_depthwise(i, v0) {
                    self.value_of[i] = dst;
                    return;
                }
                let kernel = match layer.op {
                    Op::Conv(conv) => {
                        let c = shape.input.as_chw().0;
                        let depthwise =
                            conv.groups as usize == c && conv.out as usize == c && c > 1;
                        let winograd = self.winograd_tile(i);
                        Kernel::Conv {
                            layer: i,
                            depthwise,
                            winograd,
                            bn: None,
                            pool: None,
                            residual: false,
                            scale: false,
                        }
                    }
                    Op::ConvTranspose(_) => {
                        let Op::ConvTranspose(ct) =
                            crate::shape::kernel_op(&layer.op, self.model.is_1d())
                        else {
                            unreachable!("kernel_op keeps the op")
                        };
                        // One group: the convolution engine, over every phase at once
                        // where the strides divide the kernel (dilation 1), else one
                        // convolution per phase (dilated too), then a copy into place.
                        let path = if ct.groups != 1 {
                            CtPath::Kernel
                        } else if phase_geometry(&ct, shape).is_some() {
                            CtPath::Phases
                        } else if split_geometry(&ct, shape).is_some() {
                            CtPath::Split
                        } else {
                            CtPath::Kernel
                        };
                        Kernel::ConvTranspose {
                            layer: i,
                            path,
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
                    // The phase convolutions' output before it is put in place.
                    Kernel::ConvTranspose { path, .. } if path != CtPath::Kernel => {
                        let Op::ConvTranspose(ct) =
                            crate::shape::kernel_op(&layer.op, self.model.is_1d())
                        else {
                            unreachable!("planned transposed convs are conv_transpose layers")
                        };
                        let (mh, mw) = if path == CtPath::Phases {
                            let (gh, gw) = phase_geometry(&ct, shape)
                                .expect("the plan checked the phase geometry");
                            (gh.size, gw.size)
                        } else {
                            split_geometry(&ct, shape).expect("the plan checked the phases")
                        };
                        let o = shape.output.as_chw().0;
                        Some(o * (ct.stride.0 * ct.stride.1) as usize * mh * mw)
                    }
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

    /// Whether concat layer `i` is read by the `channel_shuffle` right after it alone, and
    /// no concat chain holds it (then the shuffle reads its operands, and it is never
    /// stored).
    fn shuffled_next(&self, i: usize) -> bool {
        let next = self.model.layers.get(i + 1);
        next.is_some_and(|l| {
            matches!(l.op, Op::ChannelShuffle { .. }) && l.inputs == [Src::Layer(i)]
        }) && self.readers.get(&Src::Layer(i)).map(Vec::as_slice) == Some(&[i + 1])
            && self.extended_by[i].is_none()
            && !self.extended_by.contains(&Some(i))
    }

    /// Slice layer `i` of value `v0` from channel `start`: a view of the channel range in
    /// `v0`'s memory (no step), defined where `v0` is. A later batch norm or activation
    /// of `v0` must not change what the view reads: `v0`'s epilogue closes.
    fn plan_slice(&mut self, i: usize, v0: usize, start: usize) -> usize {
        let shape = &self.shapes[i];
        // Through a `flatten` the value keeps its `[C, H, W]` shape: the layer's input
        // shape gives the unit of `start` (a feature of a vector, or a plane).
        let (_, plane) = shape.input.channels_and_plane();
        let (group, offset, def) = {
            let x = &self.values[v0];
            (x.group, x.offset, x.def)
        };
        self.values.push(Value {
            shape: shape.output,
            def,
            group,
            offset: offset + start * plane,
        });
        self.reads_left.push(0);
        self.open.remove(&v0);
        let v = self.values.len() - 1;
        self.views.insert(v);
        v
    }

    /// A new value of `shape` that shares `v`'s memory (written in place over it).
    pub(super) fn in_place_value(&mut self, v: usize, shape: Shape) -> usize {
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
            // Later operands of this layer still to be read count as reads (in memory:
            // a slice of an operand is that operand's memory).
            let later =
                |p: &Self, v: usize| srcs[k + 2..].iter().filter(|s| p.overlap(**s, v)).count();
            // An operand may be overwritten when it has the result's shape, is not (in
            // memory) the other operand, and nothing reads it later (nor a later operand of this
            // layer); after the first step only the running result is.
            let can_overwrite = |p: &Self, v: usize, v_shape: Shape, other: usize| {
                v_shape == step_shape
                    && !p.overlap(v, other)
                    && p.dies_here(v)
                    && later(p, v) == 0
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
        self.concat_of_value.insert(out, i);
        let mut offset = 0;
        let mut start = 0;
        let mut copies = false;
        let mut aliased: Vec<usize> = Vec::new();
        // The concat this one extends (`extended_by`) becomes its prefix: its operands
        // are in place already (written there, or copied by it), and nothing overwrote
        // it since (`dies_here`).
        if let Some(j) = self.extended_by.iter().position(|&e| e == Some(i)) {
            let p = self.value_of[j];
            let g = self.values[p].group;
            let len = self.values[p].shape.len();
            if self.groups[g].parent.is_none()
                && self.groups[g].buf == Buf::Arena
                && g != out_group
                && self.values[p].offset == 0
                && self.groups[g].len == len
            {
                self.groups[g].parent = Some((out_group, 0));
                start = self.concat_operands[&j].len();
                offset = len;
            }
        }
        let operands = self.concat_operands[&i].clone();
        for (k, &v) in srcs.iter().enumerate().skip(start) {
            let len = self.values[v].shape.len();
            let g = self.values[v].group;
            let once = srcs.iter().filter(|s| **s == v).count() == 1;
            let own_group = self.groups[g].parent.is_none()
                && g != out_group
                && self.values[v].offset == 0
                && self.groups[g].len == len
                && !aliased.contains(&g);
            // Read last here, or later only by concats that extend this one (where it
            // stays at this offset).
            let last = self.reads_left[v] == 0 || self.read_by_chain_only(i, operands[k]);
            if v != 0 && once && last && own_group && !self.views.contains(&v) {
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
    pub(super) fn root(&self, mut g: usize) -> (usize, usize) {
        let mut offset = 0;
        while let Some((p, o)) = self.groups[g].parent {
            offset += o;
            g = p;
        }
        (g, offset)
    }
}

/// The phase convolution of a transposed convolution (its `kernel_op`, 2-D) on both
/// axes, when it has one (`cnn_runtime::kernels::conv_transpose::phase_axis`: dilation 1,
/// strides dividing the kernel, every output inside); groups are the caller's test.
pub(crate) fn phase_geometry(
    ct: &crate::ir::ConvTranspose,
    shape: &crate::shape::LayerShape,
) -> Option<(
    cnn_runtime::kernels::conv_transpose::PhaseAxis,
    cnn_runtime::kernels::conv_transpose::PhaseAxis,
)> {
    use cnn_runtime::kernels::conv_transpose::phase_axis;
    let (_, h, w) = shape.input.as_chw();
    let (_, oh, ow) = shape.output.as_chw();
    let u = |v: i64| usize::try_from(v).ok();
    let axis = |n: usize, out: usize, k: i64, s: i64, p: i64, d: i64| {
        phase_axis(n, out, u(k)?, u(s)?, u(p)?, u(d)?)
    };
    Some((
        axis(h, oh, ct.kernel.0, ct.stride.0, ct.padding.0, ct.dilation.0)?,
        axis(w, ow, ct.kernel.1, ct.stride.1, ct.padding.1, ct.dilation.1)?,
    ))
}

/// The rows and columns of each phase's own convolution of a transposed convolution (its
/// `kernel_op`, 2-D), when every phase has one
/// (`cnn_runtime::kernels::conv_transpose::phase_split_axis`: a tap and a
/// padding that is not negative for every phase); groups are the caller's test.
pub(crate) fn split_geometry(
    ct: &crate::ir::ConvTranspose,
    shape: &crate::shape::LayerShape,
) -> Option<(usize, usize)> {
    use cnn_runtime::kernels::conv_transpose::phase_split_axis;
    let (_, h, w) = shape.input.as_chw();
    let (_, oh, ow) = shape.output.as_chw();
    let u = |v: i64| usize::try_from(v).ok();
    let axis = |n: usize, out: usize, k: i64, s: i64, p: i64, d: i64| {
        phase_split_axis(n, out, u(k)?, u(s)?, u(p)?, u(d)?)
    };
    Some((
        axis(h, oh, ct.kernel.0, ct.stride.0, ct.padding.0, ct.dilation.0)?,
        axis(w, ow, ct.kernel.1, ct.stride.1, ct.padding.1, ct.dilation.1)?,
    ))
}
