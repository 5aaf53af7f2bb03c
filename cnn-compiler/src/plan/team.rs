//! The steps a team of two threads runs as two half images (`cnn_runtime::team`): the
//! longest chain of steps from the model's input on whose tensors each thread can keep
//! its own rows, and the rows they exchange.
//!
//! A step joins the chain ([`Part`]) by its rows when it is a direct or depthwise
//! convolution (with or without a fused residual or a folded squeeze-and-excitation
//! scale; a strided 1x1 layer gathers its rows' pixels alone), a 1x1 expansion fused
//! with its depthwise layer, a Winograd convolution (not dilated; with or without a
//! fused residual, each member computing the tile rows that cover its rows, both the
//! one across the middle; with its fused max pool only when the two halves of tile rows
//! meet at the team's boundary), or a max or average pool (any window, padding,
//! dilation, ceil mode), a standalone batch norm (DenseNet's), or a channel shuffle (of
//! a tensor, or of a concatenation never stored: ShuffleNet's units; whole planes move,
//! so each member shuffles its rows), writing a `[C, H, W]` tensor of at least two rows;
//! as a reduction when it is an average pool to `[C, 1, 1]` (or a global one to `[C]`)
//! of such a tensor; whole when it is a convolution writing `[C, 1, 1]` from tensors
//! both members hold whole (a squeeze-and-excitation block's). It reads only the
//! model's input and tensors earlier steps of the chain wrote (a graph: a residual
//! block's input read again by its last layer's fused add; a slice: a channel range of
//! such a tensor, where it is, which a member holds by rows as it holds the tensor; a
//! concatenation its operands' steps wrote in place, each its channels), and writes the
//! arena, or the model's output (which ends the chain: the team then computes the whole
//! model). The chain ends with a step by rows (whose tensor member 1 hands its rows of
//! to member 0) or a reduction (whose means both members hold), and every tensor of the
//! chain but the last is read by steps of the chain alone. Each member owns rows
//! `0..H/2` or `H/2..H` of every `[C, H, W]` tensor, which each step computes through its
//! kernel's `_rows` form (`conv2d_rows`, `conv2d_residual_rows`, `conv2d_scaled_rows`,
//! `depthwise_conv2d_rows`, `expand_depthwise_rows`, `winograd_conv3x3_rows`,
//! `max_pool2d_rows`, ...); the
//! rows of the other half any reader's window reaches over the boundary (one row for a
//! 3x3 layer at stride 1 or 2) are exchanged right after the step that wrote them; a
//! reduction's members sum their rows (`adaptive_avg_pool2d_part`) and exchange the sums
//! (`Member::reduce_mean`). A step whose weights pass `MAX_WEIGHT_BYTES` ends the chain
//! (each member reads them all). A chain is worth a team when it holds most of the model's
//! work (`MIN_SHARE`) over at least two steps, and, unless that is a few lines
//! (`MERGE_FREE`), enough of it per float that the worker hands over at its end
//! (`MIN_MACS_PER_MERGED`).

use super::{Buf, Kernel, Plan};
use crate::ir::{Model, Op, PoolKind, Shape, Src};
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

/// Floats of the merge below which [`MIN_MACS_PER_MERGED`] does not apply: a merge of a
/// few lines costs what the barrier before it costs. LeNet-5's chain (`conv1` to
/// `pool2`, 357,600 multiply-accumulates, 1,490 per float of its 240 merged) ran 1.05x
/// faster as a team than on the split plan, which runs its small layers on one thread
/// (1.10x once a team call lost its starting barrier).
const MERGE_FREE: usize = 1024;

/// Bytes of weights (as its kernel reads them: a Winograd layer's transformed ones) above
/// which a step ends the chain: each member would read all of them for half the work,
/// where the split plan divides them between the threads. ResNet-18 at 224 as a team
/// through its 14x14 and 7x7 stages (F(2x2) weights of 4 and 16 MB a layer) ran 13.3 ->
/// 21.9 ms at two threads, ResNet-50 38.5 -> 44.6; cifar_vgg's (at most 1 MB, conv6)
/// gains as a team, MobileNetV2's (its last 1x1 layer 1.6 MB) too.
const MAX_WEIGHT_BYTES: usize = 2 << 20;

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

/// How a member runs a step of the team.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Its rows of the step's `[C, H, W]` output (`H >= 2`), through the kernel's `_rows`
    /// form: each member holds its rows of that tensor.
    Rows,
    /// The whole step (a squeeze-and-excitation block's 1x1 layers on `[C, 1, 1]`
    /// tensors), on both members, from tensors both hold whole.
    Whole,
    /// A 1x1 average pool of a tensor whose rows the members hold: each sums its rows of
    /// each plane, then the two exchange the sums ([`Reduce`]): both hold the means.
    Reduce,
}

/// The sums exchanged after a [`Part::Reduce`] step (`Member::reduce_mean`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reduce {
    /// The step after which it runs.
    pub after: usize,
    /// Arena offset of the `c` sums (the pool's output).
    pub offset: usize,
    /// Channels.
    pub c: usize,
    /// Values each mean divides (the pool's input plane).
    pub hw: usize,
}

/// The team's part of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Team {
    /// Steps `0..steps` run as the team.
    pub steps: usize,
    /// How each of them runs.
    pub parts: Vec<Part>,
    /// The pool sums exchanged, in step order.
    pub reduces: Vec<Reduce>,
    /// The row exchanges, in step order.
    pub exchanges: Vec<Exchange>,
    /// The last step's tensor, whose bottom half goes to member 0 at the end; `None` when
    /// that step is a reduction (both members hold its means).
    pub merge: Option<Rows>,
    /// Where that tensor is: the arena, or the model's output.
    pub merge_buf: Buf,
    /// Floats of each half of a member's exchange buffer (the runtime uses two in turn).
    pub halo: usize,
    /// Multiply-accumulates of the team's steps, in percent of the model's.
    pub share: usize,
}

/// A step the team may run, and how: by the rows of its output (a convolution: direct,
/// depthwise or Winograd, with a fused residual or scale; a 1x1 expansion with its
/// depthwise layer; a max or average pool), whole (a convolution writing a `[C, 1, 1]`
/// tensor), or as a reduction (an average pool to `[C, 1, 1]`). For a step by rows, the
/// geometry of its window over its first source: `[kernel height, stride, dilation, top
/// padding, the end of the rows of its convolution's (or pool's) output member 0
/// computes, the row where member 1's rows start]` (the two differ where a Winograd layer's
/// tile row straddles the middle: both compute it).
fn team_step(
    plan: &Plan,
    i: usize,
    model: &Model,
    shapes: &[LayerShape],
) -> Option<(Part, Option<[usize; 6]>)> {
    let step = &plan.steps[i];
    // (A reduction's sums are exchanged in the arena: never the model's output.)
    let reduces = matches!(step.kernel, Kernel::GlobalAvg | Kernel::AdaptivePool { .. });
    if step.dst.buf == Buf::Input || (reduces && step.dst.buf != Buf::Arena) {
        return None;
    }
    let (layer, winograd, pool, residual, scale) = match step.kernel {
        Kernel::Conv {
            layer,
            winograd,
            pool,
            residual,
            scale,
            ..
        } => (layer, winograd, pool, residual, scale),
        Kernel::ExpandDepthwise { dw, .. } => (dw, None, None, false, false),
        Kernel::Pool { layer } => {
            let Op::Pool(pool) = model.layers[layer].op else {
                return None;
            };
            let (Shape::Chw(..), Shape::Chw(_, h, _)) = (step.inputs[0], step.output) else {
                return None;
            };
            let [k, s, p, d] =
                [pool.kernel, pool.stride, pool.padding, pool.dilation].map(|pair| pair.0 as usize);
            return (h >= 2).then_some((Part::Rows, Some([k, s, d, p, h / 2, h / 2])));
        }
        // A standalone batch norm (DenseNet's, before each layer's convolution, on the
        // concatenation): value by value, so a member's rows of its output are those of
        // its input.
        Kernel::Affine { .. } => {
            let (Shape::Chw(_, h, w), Shape::Chw(_, ih, iw)) = (step.output, step.inputs[0]) else {
                return None;
            };
            let ok = h >= 2 && (ih, iw) == (h, w);
            return ok.then_some((Part::Rows, Some([1, 1, 1, 0, h / 2, h / 2])));
        }
        Kernel::ChannelShuffle { .. } => {
            // Whole planes moved: a member's rows of the output are the same rows of the
            // input planes (its own, of every source), no window across the boundary.
            let Shape::Chw(_, h, w) = step.output else {
                return None;
            };
            let rows = |s: &Shape| matches!(*s, Shape::Chw(_, sh, sw) if (sh, sw) == (h, w));
            let ok = h >= 2 && step.inputs.iter().all(rows);
            return ok.then_some((Part::Rows, Some([1, 1, 1, 0, h / 2, h / 2])));
        }
        // A global average pool reads a `[C, H, W]` tensor by rows as a 1x1 adaptive one
        // does (its one-thread kernel sums each plane's two halves the same way).
        Kernel::GlobalAvg => {
            let Shape::Chw(_, h, _) = step.inputs[0] else {
                return None;
            };
            return (h >= 2).then_some((Part::Reduce, None));
        }
        Kernel::AdaptivePool { layer } => {
            let avg = matches!(
                model.layers[layer].op,
                Op::AdaptivePool {
                    kind: PoolKind::Avg,
                    ..
                }
            );
            let (Shape::Chw(_, h, _), Shape::Chw(_, 1, 1)) = (step.inputs[0], step.output) else {
                return None;
            };
            return (avg && h >= 2).then_some((Part::Reduce, None));
        }
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
    let sources = 1 + usize::from(residual) + usize::from(scale);
    if step.srcs.len() != sources {
        return None;
    }
    let Shape::Chw(_, h, w) = step.output else {
        return None;
    };
    if h == 1 && w == 1 && winograd.is_none() && pool.is_none() {
        return Some((Part::Whole, None));
    }
    if h < 2 {
        return None;
    }
    // Member 1's first row of the convolution's own output (before a fused pool).
    let start = if pool.is_some() { 2 * (h / 2) } else { h / 2 };
    if let Some(t) = winograd {
        // A member computes the whole tile rows that cover its rows: with a fused pool
        // their halves must meet at the middle (an even count of tile rows of `t`; no
        // residual there), else the tile row across the middle, if any, is computed by
        // both (from the rows of its input window, which the exchange before brings).
        // Not over polyphase components.
        let tiles = shapes[layer].output.as_chw().1.div_ceil(t);
        if dh != 1 {
            return None;
        }
        if pool.is_some() {
            if residual || !tiles.is_multiple_of(2) || tiles / 2 * t != start {
                return None;
            }
        } else {
            // Both compute the tile row across the middle: not where that leaves a member
            // more than two thirds of the tile rows (DenseNet-121's 128 -> 32 layers on
            // 14x14 maps, F(4x4): 3 of 4, 68 -> 122 µs at two threads; on 7x7, all).
            let (mine0, first1) = (start.div_ceil(t), start / t);
            if 3 * mine0.max(tiles - first1) > 2 * tiles {
                return None;
            }
            let end0 = (mine0 * t).min(h);
            return Some((Part::Rows, Some([kh, sh, dh, pt, end0, first1 * t])));
        }
    } else if pool.is_some() {
        return None;
    }
    Some((Part::Rows, Some([kh, sh, dh, pt, start, start])))
}

/// A step of the chain: how it runs, its window's geometry (steps by rows), and the
/// chain steps whose rows its first source holds (several for a concatenation written
/// in place; none for a tensor both members hold whole, such as the model's input).
#[derive(Clone, Debug)]
struct Link {
    part: Part,
    geo: Option<[usize; 6]>,
    from: Vec<usize>,
}

/// The chain of steps `0..` the team may run (at most `limit`): each a [`team_step`]
/// whose sources are the model's input or tensors earlier steps of the chain wrote, as
/// its part needs them (by rows: its residual by rows, a scale whole; whole: all whole;
/// a reduction: by rows), writing the arena or, ending the chain, the model's output;
/// ending with a step by rows or a reduction.
fn chain(plan: &Plan, model: &Model, shapes: &[LayerShape], limit: usize) -> Vec<Link> {
    let mut links: Vec<Link> = Vec::new();
    'steps: for (i, step) in plan.steps.iter().enumerate().take(limit) {
        let Some((part, geo)) = team_step(plan, i, model, shapes) else {
            break;
        };
        if weight_bytes(step, shapes) > MAX_WEIGHT_BYTES {
            break;
        }
        // Each source's producers in the chain and whether the members hold its rows.
        let mut sources = Vec::new();
        for (src, &shape) in step.srcs.iter().zip(&step.inputs) {
            let source = match src.buf {
                // (Each member has all of the input, in any shape.)
                Buf::Input => (Vec::new(), false),
                Buf::Arena => match producers(plan, i, src, shape) {
                    Some(ks) if ks.iter().all(|&k| links[k].part == Part::Rows) => (ks, true),
                    Some(ks) if ks.len() == 1 => (ks, false),
                    _ => break 'steps,
                },
                Buf::Output => break 'steps,
            };
            sources.push(source);
        }
        let split: Vec<bool> = sources.iter().map(|s| s.1).collect();
        let ok = match (part, &step.kernel) {
            (Part::Whole, _) => split.iter().all(|&s| !s),
            (Part::Reduce, _) => split == [true],
            // A scale is whole, a residual (the last source) by rows.
            (
                Part::Rows,
                Kernel::Conv {
                    scale, residual, ..
                },
            ) => (!*scale || !split[1]) && (!*residual || split[split.len() - 1]),
            (Part::Rows, _) => true,
        };
        if !ok {
            break;
        }
        let (first, split0) = sources.swap_remove(0);
        links.push(Link {
            part,
            geo,
            from: if split0 { first } else { Vec::new() },
        });
        if step.dst.buf != Buf::Arena {
            break;
        }
    }
    while links.last().is_some_and(|l| l.part == Part::Whole) {
        links.pop();
    }
    links
}

/// The steps before step `i` whose outputs the tensor of `shape` at arena region `src`
/// holds now: for each of its values, the last step that wrote it (the plan keeps a
/// region from being written while it is read). One step (the tensor itself, or a
/// channel range of it: a slice's view), or several that wrote its channel ranges (a
/// concatenation written in place: SqueezeNet's fire modules, DenseNet's blocks), each
/// in whole planes of the same size, so that a member's rows of each are its rows of
/// the tensor. `None` if a value was written otherwise, or by no step.
fn producers(plan: &Plan, i: usize, src: &super::Region, shape: Shape) -> Option<Vec<usize>> {
    let overlaps = |k: usize| {
        let (at, len) = (plan.steps[k].dst.offset, plan.steps[k].output.len());
        plan.steps[k].dst.buf == Buf::Arena
            && at < src.offset + shape.len()
            && src.offset < at + len
    };
    let Shape::Chw(sc, h, w) = shape else {
        // (Vectors and signals: the one step that wrote the whole tensor.)
        let k = (0..i).rev().find(|&k| overlaps(k))?;
        let step = &plan.steps[k];
        return (step.dst == *src && step.output == shape).then(|| vec![k]);
    };
    // Which of the tensor's planes a later step has already been found to write.
    let plane = h * w;
    let mut left = vec![true; sc];
    let mut found = Vec::new();
    for k in (0..i).rev() {
        if !overlaps(k) {
            continue;
        }
        let step = &plan.steps[k];
        let (at, len) = (step.dst.offset, step.output.len());
        // The planes of the tensor it covers (partly, where misaligned).
        let lo = at.saturating_sub(src.offset) / plane;
        let hi = ((at + len).min(src.offset + shape.len()) - src.offset).div_ceil(plane);
        if !left[lo..hi].iter().any(|&l| l) {
            continue;
        }
        let aligned = matches!(step.output, Shape::Chw(_, oh, ow) if (oh, ow) == (h, w))
            && at.abs_diff(src.offset).is_multiple_of(plane);
        if !aligned {
            return None;
        }
        left[lo..hi].iter_mut().for_each(|l| *l = false);
        found.push(k);
        if !left.contains(&true) {
            return Some(found);
        }
    }
    None
}

/// Bytes of weights `step` reads: its layers' parameters, a Winograd layer's transformed
/// for its tiles (`(t + 2)^2` values for each 3x3 kernel's 9).
fn weight_bytes(step: &super::Step, shapes: &[LayerShape]) -> usize {
    let tile = match step.kernel {
        Kernel::Conv { winograd, .. } => winograd,
        _ => None,
    };
    let params: usize = step.layers.iter().map(|&l| shapes[l].params).sum();
    match tile {
        Some(t) => params * 4 * (t + 2) * (t + 2) / 9,
        None => params * 4,
    }
}

/// The team for `plan`, if a chain worth one starts the model.
pub fn team(plan: &Plan, model: &Model, shapes: &[LayerShape]) -> Option<Team> {
    if model.is_1d() {
        return None;
    }
    // Readers of each layer's output, looking through the layers no step runs (views:
    // a slice, a flatten): their readers read the same memory.
    let mut readers = vec![Vec::new(); model.layers.len()];
    for (i, l) in model.layers.iter().enumerate() {
        for s in &l.inputs {
            if let Src::Layer(j) = *s {
                readers[j].push(i);
            }
        }
    }
    let stepped: Vec<bool> = {
        let mut v = vec![false; model.layers.len()];
        for &l in plan.steps.iter().flat_map(|s| &s.layers) {
            v[l] = true;
        }
        v
    };
    // (Layers come in order: a view's readers are later layers, expanded first.)
    for j in (0..model.layers.len()).rev() {
        let expanded: Vec<usize> = readers[j]
            .iter()
            .flat_map(|&r| {
                // (A view nothing reads is the model's output: kept, never inside.)
                if stepped[r] || readers[r].is_empty() {
                    vec![r]
                } else {
                    readers[r].clone()
                }
            })
            .collect();
        readers[j] = expanded;
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
    for k in (0..steps - 1).filter(|&k| geo[k].part == Part::Rows) {
        let t = rows(k);
        let h = t.chw.1;
        let b = h / 2;
        // Member 0 computes output rows 0..e0 of each reader, member 1 s1..: the rows of
        // this tensor each reads beyond its own (a reduction reads its own rows).
        let (mut above, mut below) = (0, 0);
        let windows = geo
            .iter()
            .filter(|l| l.from.contains(&k))
            .filter_map(|l| l.geo);
        for [kh, sh, dh, pt, e0, s1] in windows {
            let end0 = ((e0 - 1) * sh + (kh - 1) * dh + 1)
                .saturating_sub(pt)
                .min(h);
            let start1 = (s1 * sh).saturating_sub(pt);
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
    let merge = (geo[steps - 1].part == Part::Rows).then(|| rows(steps - 1));
    let merged = merge.map_or(0, |m| {
        let (c, h, w) = m.chw;
        c * (h - h / 2) * w
    });
    if merged > MERGE_FREE && macs(0..steps) < MIN_MACS_PER_MERGED * merged {
        return None;
    }
    let reduces: Vec<Reduce> = (0..steps)
        .filter(|&i| geo[i].part == Part::Reduce)
        .map(|i| {
            let (c, h, w) = plan.steps[i].inputs[0].as_chw();
            Reduce {
                after: i,
                offset: plan.steps[i].dst.offset,
                c,
                hw: h * w,
            }
        })
        .collect();
    let halo = exchanges
        .iter()
        .map(|e| e.tensor.chw.0 * e.tensor.chw.2 * e.above.max(e.below))
        .chain(reduces.iter().map(|r| r.c))
        .chain([merged])
        .max()
        .unwrap_or(0);
    Some(Team {
        steps,
        parts: geo.iter().map(|l| l.part).collect(),
        reduces,
        exchanges,
        merge,
        merge_buf: plan.steps[steps - 1].dst.buf,
        halo,
        share,
    })
}
