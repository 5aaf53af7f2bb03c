//! The steps a team of two threads runs as two half images (`cnn_runtime::team`): the
//! longest chain of steps from the model's input on whose tensors each thread can keep
//! its own rows, and the rows they exchange.
//!
//! A step joins the chain when it is a direct or depthwise convolution (with or without
//! a fused residual; no scale, not a strided 1x1 layer, which gathers its input whole),
//! a 1x1 expansion fused with its depthwise layer, or a Winograd convolution (with or
//! without its fused max pool; not dilated, no residual) whose two halves of tile rows
//! meet at the team's boundary; reads only the model's input and tensors earlier steps
//! of the chain wrote (a graph: a residual block's input read again by its last
//! layer's fused add); and writes a `[C, H, W]` tensor of at least two rows into the
//! arena, or the model's output (which ends the chain: the team then computes the whole
//! model). Every tensor of the chain but the last is read by steps of the chain alone.
//! Each member owns rows `0..H/2` or `H/2..H` of every tensor, which each step computes
//! through its kernel's `_rows` form (`conv2d_rows`, `conv2d_residual_rows`,
//! `depthwise_conv2d_rows`, `expand_depthwise_rows`, `winograd_conv3x3_rows`, ...); the
//! rows of the other half any reader's window reaches over the boundary (one row for a
//! 3x3 layer at stride 1 or 2) are exchanged right after the step that wrote them. A
//! chain is worth a team when it holds most of the model's work (`MIN_SHARE`) over at
//! least two steps, and enough of it per float that the worker hands over at its end
//! (`MIN_MACS_PER_MERGED`).

use super::{Buf, Kernel, Plan};
use crate::ir::{Model, Op, Shape, Src};
use crate::shape::LayerShape;

/// Part of the model's multiply-accumulates the chain must hold, in percent: the steps
/// after it run on the split plan, whose tensors the team's last step hands over whole.
const MIN_SHARE: usize = 60;

/// Multiply-accumulates of the chain per float of the last tensor's half that goes from
/// the worker to the caller at its end (through the worker's buffer, at about 7 GB/s
/// between this VM's cores): fcn_seg's chain without its 1x1 head, 891 per float (32 x
/// 32 x 64 floats merged), ran 1.12-1.17x slower as a team (with the head, which writes
/// the output, 7,192: 1.03x faster than the split plan); MobileNet-96's (4,560) 1.15x
/// faster, cifar_vgg's (37,700) 1.25x.
const MIN_MACS_PER_MERGED: usize = 2000;

/// A tensor's place and size: arena offset and `(C, H, W)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    /// Arena offset of its first value.
    pub offset: usize,
    /// Channels, rows, columns.
    pub chw: (usize, usize, usize),
}

/// Rows moved after a step: member 1 gets `above` rows before `H/2` from member 0,
/// member 0 gets `below` rows from `H/2` on from member 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The step after which it runs.
    pub after: usize,
    /// The tensor that step wrote.
    pub tensor: Rows,
    /// Rows member 1 needs before the boundary.
    pub above: usize,
    /// Rows member 0 needs from the boundary on.
    pub below: usize,
}

/// The team's part of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Team {
    /// Steps `0..steps` run as the team.
    pub steps: usize,
    /// The row exchanges, in step order.
    pub exchanges: Vec<Exchange>,
    /// The last step's tensor, whose bottom half goes to member 0 at the end.
    pub merge: Rows,
    /// Where that tensor is: the arena, or the model's output.
    pub merge_buf: Buf,
    /// Floats of each half of a member's exchange buffer (the runtime uses two in turn).
    pub halo: usize,
    /// Multiply-accumulates of the team's steps, in percent of the model's.
    pub share: usize,
}

/// A step the team may run, by the rows of its output: a convolution (direct, depthwise
/// or Winograd, with a fused residual but no scale) or a 1x1 expansion with its
/// depthwise layer. Returns the geometry of its window over its first source: `[kernel
/// height, stride, dilation, top padding, the row of its convolution's output where
/// member 1 starts]`.
fn team_step(plan: &Plan, i: usize, model: &Model, shapes: &[LayerShape]) -> Option<[usize; 5]> {
    let step = &plan.steps[i];
    let (layer, winograd, pool, residual) = match step.kernel {
        Kernel::Conv {
            layer,
            winograd,
            pool,
            residual,
            scale: false,
            ..
        } => (layer, winograd, pool, residual),
        Kernel::ExpandDepthwise { dw, .. } => (dw, None, None, false),
        _ => return None,
    };
    let Op::Conv(conv) = model.layers[layer].op else {
        return None;
    };
    let (kh, sh, dh) = (
        conv.kernel.0 as usize,
        conv.stride.0 as usize,
        conv.dilation.0 as usize,
    );
    let pt = shapes[layer].pads.0;
    let sources = if residual { 2 } else { 1 };
    if (kh == 1 && sh > 1) || step.srcs.len() != sources || step.dst.buf == Buf::Input {
        return None;
    }
    let Shape::Chw(_, h, _) = step.output else {
        return None;
    };
    if h < 2 {
        return None;
    }
    // Member 1's first row of the convolution's own output (before a fused pool).
    let start = if pool.is_some() { 2 * (h / 2) } else { h / 2 };
    if let Some(t) = winograd {
        // The runtime splits a Winograd layer by tile rows: their halves must meet at
        // that row (an even count of tile rows of `t`); not over polyphase components,
        // and without a residual (no row form).
        let tiles = shapes[layer].output.as_chw().1.div_ceil(t);
        if residual || dh != 1 || !tiles.is_multiple_of(2) || tiles / 2 * t != start {
            return None;
        }
    } else if pool.is_some() {
        return None;
    }
    Some([kh, sh, dh, pt, start])
}

/// The chain of steps `0..` the team may run (at most `limit`): each a [`team_step`]
/// whose sources are the model's input or tensors earlier steps of the chain wrote
/// (by index; `None`: the input), writing the arena or, ending the chain, the model's
/// output. Returns each step's window geometry and its first source's producer.
fn chain(
    plan: &Plan,
    model: &Model,
    shapes: &[LayerShape],
    limit: usize,
) -> Vec<([usize; 5], Option<usize>)> {
    let mut steps = Vec::new();
    for (i, step) in plan.steps.iter().enumerate().take(limit) {
        let Some(g) = team_step(plan, i, model, shapes) else {
            break;
        };
        let mut producers = Vec::new();
        for (src, &shape) in step.srcs.iter().zip(&step.inputs) {
            let producer = match src.buf {
                // (Each member has all of the input, in any shape.)
                Buf::Input => None,
                // The tensor in that region now: the last chain step that wrote it (the
                // plan keeps a region from being written while it is read).
                Buf::Arena => match (0..i).rev().find(|&k| plan.steps[k].dst == *src) {
                    Some(k) if plan.steps[k].output == shape => Some(k),
                    _ => return steps,
                },
                _ => return steps,
            };
            producers.push(producer);
        }
        steps.push((g, producers[0]));
        if step.dst.buf != Buf::Arena {
            break;
        }
    }
    steps
}

/// The team for `plan`, if a chain worth one starts the model.
pub fn team(plan: &Plan, model: &Model, shapes: &[LayerShape]) -> Option<Team> {
    if model.is_1d() {
        return None;
    }
    // Readers of each layer's output (views are not looked through: a tensor read
    // through a view ends the chain there).
    let mut readers = vec![Vec::new(); model.layers.len()];
    for (i, l) in model.layers.iter().enumerate() {
        for s in &l.inputs {
            if let Src::Layer(j) = *s {
                readers[j].push(i);
            }
        }
    }
    // Every tensor of the chain but its last is read by chain steps alone (the steps
    // after the team see the worker's rows of the last one only): cut the chain after
    // the first that is not, until none is.
    let mut geo = chain(plan, model, shapes, plan.steps.len());
    loop {
        let inside: Vec<usize> = plan.steps[..geo.len()]
            .iter()
            .flat_map(|s| s.layers.iter().copied())
            .collect();
        let leaks = |k: usize| {
            plan.steps[k]
                .layers
                .last()
                .is_none_or(|&l| readers[l].iter().any(|r| !inside.contains(r)))
        };
        match (0..geo.len().saturating_sub(1)).find(|&k| leaks(k)) {
            Some(k) => geo = chain(plan, model, shapes, k + 1),
            None => break,
        }
    }
    let steps = geo.len();
    let macs = |range: core::ops::Range<usize>| -> usize {
        plan.steps[range]
            .iter()
            .flat_map(|s| &s.layers)
            .map(|&l| shapes[l].macs)
            .sum()
    };
    let total: usize = shapes.iter().map(|s| s.macs).sum();
    let share = (macs(0..steps) * 100).checked_div(total).unwrap_or(0);
    if steps < 2 || share < MIN_SHARE {
        return None;
    }
    let rows = |i: usize| {
        let (c, h, w) = plan.steps[i].output.as_chw();
        Rows {
            offset: plan.steps[i].dst.offset,
            chw: (c, h, w),
        }
    };
    let mut exchanges = Vec::new();
    for k in 0..steps - 1 {
        let t = rows(k);
        let h = t.chw.1;
        let b = h / 2;
        // Member 0 computes output rows 0..ob of each reader, member 1 ob..: the rows of
        // this tensor each reads beyond its own.
        let (mut above, mut below) = (0, 0);
        for &([kh, sh, dh, pt, ob], _) in geo.iter().filter(|(_, from)| *from == Some(k)) {
            let end0 = ((ob - 1) * sh + (kh - 1) * dh + 1)
                .saturating_sub(pt)
                .min(h);
            let start1 = (ob * sh).saturating_sub(pt);
            above = above.max(b.saturating_sub(start1));
            below = below.max(end0.saturating_sub(b));
        }
        if above > 0 || below > 0 {
            exchanges.push(Exchange {
                after: k,
                tensor: t,
                above,
                below,
            });
        }
    }
    let merge = rows(steps - 1);
    let (c, h, w) = merge.chw;
    if macs(0..steps) < MIN_MACS_PER_MERGED * c * (h - h / 2) * w {
        return None;
    }
    let halo = exchanges
        .iter()
        .map(|e| e.tensor.chw.0 * e.tensor.chw.2 * e.above.max(e.below))
        .chain([c * (h - h / 2) * w])
        .max()
        .unwrap_or(0);
    Some(Team {
        steps,
        exchanges,
        merge,
        merge_buf: plan.steps[steps - 1].dst.buf,
        halo,
        share,
    })
}
