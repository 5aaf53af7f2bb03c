//! The steps a team of two threads runs as two half images (`cnn_runtime::team`): the
//! longest chain of convolutions from the model's input on whose tensors each thread
//! can keep its own rows, and the rows they exchange.
//!
//! A step joins the chain when it is a direct or depthwise convolution (no residual or
//! scale, not a strided 1x1 layer, which gathers its input whole) or a Winograd one
//! (with or without its fused max pool; not dilated) whose two halves of tile rows meet
//! at the team's boundary, reads the step before it (the first: the model's input) and nothing else,
//! writes a `[C, H, W]` tensor of at least two rows into the arena, and that tensor is
//! read by the next step alone (the last one's by anything), or writes the model's
//! output (and ends the chain: the team then computes the whole model). Each member owns rows
//! `0..H/2` or `H/2..H` of every tensor, which each step computes through its kernel's
//! `_rows` form (`conv2d_rows`, `depthwise_conv2d_rows`, `winograd_conv3x3_rows`, ...); the rows of the other half a step reads (its window's reach over the
//! boundary: one row for a 3x3 layer at stride 1 or 2) are exchanged after the step
//! that wrote them. A chain is worth a team when it holds most of the model's work
//! (`MIN_SHARE`) over at least two steps, and enough of it per float that the worker
//! hands over at its end (`MIN_MACS_PER_MERGED`).

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

/// The conv layer a step runs, if the team may run it: `(layer, [kernel height, stride,
/// dilation, top padding, the row of its convolution's output where member 1 starts])`.
fn team_conv(
    plan: &Plan,
    i: usize,
    model: &Model,
    shapes: &[LayerShape],
) -> Option<(usize, [usize; 5])> {
    let step = &plan.steps[i];
    let Kernel::Conv {
        layer,
        winograd,
        pool,
        residual: false,
        scale: false,
        ..
    } = step.kernel
    else {
        return None;
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
    if (kh == 1 && sh > 1) || step.srcs.len() != 1 || step.dst.buf == Buf::Input {
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
        // that row (an even count of tile rows of `t`); not over polyphase components.
        let tiles = shapes[layer].output.as_chw().1.div_ceil(t);
        if dh != 1 || !tiles.is_multiple_of(2) || tiles / 2 * t != start {
            return None;
        }
    } else if pool.is_some() {
        return None;
    }
    Some((layer, [kh, sh, dh, pt, start]))
}

/// The team for `plan`, if a chain worth one starts the model.
pub fn team(plan: &Plan, model: &Model, shapes: &[LayerShape]) -> Option<Team> {
    if model.is_1d() {
        return None;
    }
    // Readers of each layer's output (views are not looked through: a chain through a
    // view stops there).
    let mut readers = vec![Vec::new(); model.layers.len()];
    for (i, l) in model.layers.iter().enumerate() {
        for s in &l.inputs {
            if let Src::Layer(j) = *s {
                readers[j].push(i);
            }
        }
    }
    let mut geo = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let Some((layer, g)) = team_conv(plan, i, model, shapes) else {
            break;
        };
        let chained = if i == 0 {
            step.srcs[0].buf == Buf::Input && model.layers[layer].inputs == [Src::Input]
        } else {
            let prev = &plan.steps[i - 1];
            // (A step writing the output is read by none: the chain ends with it.)
            let last = *prev.layers.last()?;
            prev.dst.buf == Buf::Arena
                && step.srcs[0] == prev.dst
                && step.inputs[0] == prev.output
                && model.layers[layer].inputs == [Src::Layer(last)]
                && readers[last] == [layer]
        };
        if !chained {
            break;
        }
        geo.push(g);
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
    for i in 0..steps - 1 {
        let t = rows(i);
        let h = t.chw.1;
        let [kh, sh, dh, pt, ob] = geo[i + 1];
        let b = h / 2;
        // Member 0 computes output rows 0..ob, member 1 ob..: the input rows each reads.
        let end0 = ((ob - 1) * sh + (kh - 1) * dh + 1)
            .saturating_sub(pt)
            .min(h);
        let start1 = (ob * sh).saturating_sub(pt);
        let (above, below) = (b.saturating_sub(start1), end0.saturating_sub(b));
        if above > 0 || below > 0 {
            exchanges.push(Exchange {
                after: i,
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
