//! Planning layer by layer: the kernel of each layer, fusions into the producer's
//! epilogue, in-place writes, concat operands written into their output, and the storage
//! group of every value.

use super::{is_view, pair, Buf, CtPath, Group, Kernel, Pending, Planner, Value};
use crate::ir::{Merge, Op, PoolKind, Shape, Src};

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

    fn src_value(&self, src: Src) -> usize {
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
    fn take_over(&mut self, s: usize, v0: usize, out: Shape, len: usize) -> (usize, usize) {
        let dst = self.new_value(out);
        let scratch = self.new_value(Shape::Vec(len));
        let g = self.values[scratch].group;
        self.groups[g].scratch = true;
        self.values[dst].def = Some(s);
        self.values[scratch].def = Some(s);
        self.values[v0].def = None;
        (dst, scratch)
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
            pool: None,
            residual: false,
            scale: false,
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
        // The expansion's output (and any packing room it had) is never used.
        let (dst, scratch) = self.take_over(s, v0, shape.output, len);
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

    /// The Winograd output tile conv layer `i` runs with, if any: a 3x3 stride-1 one-group
    /// layer of a 2-D model where the runtime's rule (`winograd_tile`) says it is faster
    /// (a dilated layer runs through its polyphase components); none with
    /// `#[winograd = false]`.
    fn winograd_tile(&self, i: usize) -> Option<usize> {
        let Op::Conv(conv) = self.model.layers[i].op else {
            return None;
        };
        if !self.opts.winograd {
            return None;
        }
        let three_by_three = !self.model.is_1d()
            && conv.kernel == (3, 3)
            && conv.stride == (1, 1)
            && conv.groups == 1;
        let (c, h, w) = self.shapes[i].input.as_chw();
        let (dh, dw) = (conv.dilation.0 as usize, conv.dilation.1 as usize);
        three_by_three
            .then(|| {
                cnn_runtime::kernels::winograd::winograd_tile(c, h, w, conv.out as usize, dh, dw)
            })
            .flatten()
    }

    /// Folds the `mul` that produced conv layer `i`'s input `v0` into the convolution
    /// (`Kernel::Conv { scale }`), where that `mul` is the last step, multiplies a tensor
    /// of the input's shape by a `[C, 1, 1]` scale (a squeeze-and-excitation block), has
    /// no activation, nothing else reads its output, the convolution has one group and
    /// is not run as Winograd, and the runtime's rule (`conv_scale_fold_len`) says the
    /// scaled copy of the weights costs less than the `mul`: the step becomes the
    /// convolution's, reading the unscaled tensor and the scale, its working memory the
    /// scaled weights. Returns the convolution's output value.
    fn fuse_scale(&mut self, i: usize, v0: usize) -> Option<usize> {
        let layer = &self.model.layers[i];
        let shape = &self.shapes[i];
        let Op::Conv(conv) = layer.op else {
            return None;
        };
        if self.model.is_1d() || conv.groups != 1 || !self.dies_here(v0) {
            return None;
        }
        let (c, h, w) = shape.input.as_chw();
        let winograd = self.winograd_tile(i).is_some();
        let s = self.steps.len().checked_sub(1)?;
        let step = &self.steps[s];
        let mul = matches!(step.kernel, Kernel::Binary { op: Merge::Mul, .. });
        if !mul || winograd || step.act.is_some() || step.dst != v0 || step.layers.len() != 1 {
            return None;
        }
        let &[a, b] = &step.srcs[..] else {
            return None;
        };
        let per_channel =
            |v: usize| matches!(self.values[v].shape, Shape::Chw(sc, 1, 1) if sc == c);
        let (x, sc) = if self.values[a].shape == shape.input && per_channel(b) {
            (a, b)
        } else if self.values[b].shape == shape.input && per_channel(a) {
            (b, a)
        } else {
            return None;
        };
        let len = cnn_runtime::kernels::conv::conv_scale_fold_len(
            (c, h, w),
            conv.out as usize,
            pair(conv.kernel),
            conv.groups as usize,
        )?;
        let (x_shape, sc_shape) = (self.values[x].shape, self.values[sc].shape);
        // The scaled tensor is never stored.
        let (dst, scratch) = self.take_over(s, v0, shape.output, len);
        let step = &mut self.steps[s];
        step.kernel = Kernel::Conv {
            layer: i,
            depthwise: false,
            winograd: None,
            bn: None,
            pool: None,
            residual: false,
            scale: true,
        };
        // The convolution names the step; the `mul` it covers follows.
        step.layers.insert(0, i);
        step.srcs = vec![x, sc];
        step.inputs = vec![x_shape, sc_shape];
        step.dst = dst;
        step.scratch = Some(scratch);
        self.open.remove(&v0);
        self.open.insert(dst, s);
        Some(dst)
    }

    /// Runs max-pool layer `i` in the output transform of the Winograd convolution that
    /// produced its input `v0` (`Kernel::Conv { pool }`), where the pool is 2x2 with
    /// stride 2, no padding and no dilation, its output is the floor of half the
    /// convolution's (PyTorch's floor mode, or ceil mode on even sizes), the convolution
    /// has dilation 1 and its output has no other reader: the step's output becomes the
    /// pooled tensor and the convolution's own output is never stored (nor planned in
    /// the arena). The step's activation, if any, stays before the pool. Returns the new
    /// output value.
    fn fuse_max_pool(&mut self, i: usize, v0: usize) -> Option<usize> {
        let Op::Pool(p) = self.model.layers[i].op else {
            return None;
        };
        let out_shape = self.shapes[i].output;
        let window = p.kind == PoolKind::Max
            && p.kernel == (2, 2)
            && p.stride == (2, 2)
            && p.padding == (0, 0)
            && p.dilation == (1, 1);
        if self.model.is_1d() || !window || !self.dies_here(v0) {
            return None;
        }
        let s = self.values[v0].def?;
        let Kernel::Conv {
            layer: c,
            winograd: Some(_),
            pool: None,
            residual: false,
            ..
        } = self.steps.get(s)?.kernel
        else {
            return None;
        };
        let Op::Conv(conv) = self.model.layers[c].op else {
            return None;
        };
        let (o, oh, ow) = self.values[v0].shape.as_chw();
        if self.steps[s].dst != v0
            || conv.dilation != (1, 1)
            || oh < 2
            || ow < 2
            || out_shape.as_chw() != (o, oh / 2, ow / 2)
        {
            return None;
        }
        let dst = self.new_value(out_shape);
        self.values[dst].def = Some(s);
        self.values[v0].def = None;
        let step = &mut self.steps[s];
        if let Kernel::Conv { pool, .. } = &mut step.kernel {
            *pool = Some(i);
        }
        step.layers.push(i);
        step.dst = dst;
        // A later batch norm or activation applies to the pooled values: not fused.
        self.open.remove(&v0);
        Some(dst)
    }

    /// Runs add layer `i` (operands `srcs`) in the epilogue of the convolution that
    /// produced one operand (`Kernel::Conv { residual }`), where the add has two operands
    /// of its output's shape, that convolution is not depthwise, has no activation yet
    /// (the add comes first: a later activation fuses after it) and no fused pool, its
    /// output is read by the add alone, and the other operand was written before it
    /// (the convolution reads it as its second source). Of two such operands, the later
    /// convolution's. Returns the add's value: the convolution's output.
    fn fuse_residual(&mut self, i: usize, srcs: &[usize]) -> Option<usize> {
        let (&[a, b], Op::Merge(Merge::Add)) = (srcs, &self.model.layers[i].op) else {
            return None;
        };
        let shape = &self.shapes[i];
        if a == b || shape.inputs.iter().any(|s| *s != shape.output) {
            return None;
        }
        let fusable = |p: &Self, x: usize, r: usize| {
            let s = *p.open.get(&x)?;
            let step = &p.steps[s];
            let conv = matches!(
                step.kernel,
                Kernel::Conv {
                    depthwise: false,
                    pool: None,
                    residual: false,
                    ..
                }
            );
            let before = p.values[r].def.is_none_or(|d| d < s);
            (conv && step.act.is_none() && step.dst == x && p.dies_here(x) && before).then_some(s)
        };
        let (s, x, r) = [(a, b), (b, a)]
            .into_iter()
            .filter_map(|(x, r)| Some((fusable(self, x, r)?, x, r)))
            .max_by_key(|&(s, ..)| s)?;
        let r_shape = self.values[r].shape;
        let step = &mut self.steps[s];
        if let Kernel::Conv { residual, .. } = &mut step.kernel {
            *residual = true;
        }
        step.srcs.push(r);
        step.inputs.push(r_shape);
        step.layers.push(i);
        // The epilogue stays open for an activation (after the add), not for a batch
        // norm (which would fold into the weights, before it).
        Some(x)
    }

    /// Whether value `v` may be overwritten by the layer being planned (whose reads are
    /// already served): nothing later reads it and it is not the caller's input.
    /// A concat's output that a later concat extends (`extended_by`) is never
    /// overwritten: it becomes that concat's prefix; nor is a value whose memory holds
    /// another that is still to be read (a concat chain's earlier concats and operands).
    fn dies_here(&self, v: usize) -> bool {
        v != 0
            && self.reads_left[v] == 0
            && self
                .concat_of_value
                .get(&v)
                .is_none_or(|&j| self.extended_by[j].is_none())
            && !self.holds_live(v)
    }

    /// Whether another value still to be read lives in memory that `v`'s overlaps.
    fn holds_live(&self, v: usize) -> bool {
        let span = |x: usize| {
            let (root, off) = self.root(self.values[x].group);
            let start = off + self.values[x].offset;
            (root, start, start + self.values[x].shape.len())
        };
        let (root, start, end) = span(v);
        (1..self.values.len()).any(|w| {
            if w == v || self.reads_left[w] == 0 {
                return false;
            }
            let (r, s, e) = span(w);
            r == root && s < end && start < e
        })
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
                        // One group and dilation 1: the convolution engine, over every
                        // phase at once where the strides divide the kernel, else one
                        // convolution per phase, then a copy into place.
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
            if v != 0 && once && last && own_group {
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
/// (`cnn_runtime::kernels::conv_transpose::phase_split_axis`: dilation 1, a tap and a
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
