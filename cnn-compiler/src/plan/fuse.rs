//! Planning, the fusions: a layer run in the epilogue or as the input transform of the
//! step before it (a depthwise layer with the 1x1 expansion before it, a
//! squeeze-and-excitation scale folded into the projection, a 2x2 max pool in a
//! Winograd output transform, a residual add in the convolution that produces one of
//! its operands), and the Winograd tile a layer gets. Each fusion returns `None` where
//! the layer runs as a step of its own ([`layers`](super::layers) then plans it); the
//! tile is `None` where the layer runs direct.

use super::{pair, Kernel, Planner};
use crate::ir::{Merge, Op, PoolKind, Shape};

impl Planner<'_> {
    /// Runs depthwise layer `i` together with the 1x1 convolution that produced its
    /// input `v0` (`Kernel::ExpandDepthwise`), where that convolution is the last step,
    /// nothing else reads its output and the runtime's rule takes the pair: the step
    /// becomes the pair's, its output the depthwise layer's (the expansion's output is
    /// never stored), its working memory the bands'. Returns the new output value.
    pub(super) fn fuse_expand_depthwise(&mut self, i: usize, v0: usize) -> Option<usize> {
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
    pub(super) fn winograd_tile(&self, i: usize) -> Option<usize> {
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
    pub(super) fn fuse_scale(&mut self, i: usize, v0: usize) -> Option<usize> {
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
    pub(super) fn fuse_max_pool(&mut self, i: usize, v0: usize) -> Option<usize> {
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
    pub(super) fn fuse_residual(&mut self, i: usize, srcs: &[usize]) -> Option<usize> {
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
}
