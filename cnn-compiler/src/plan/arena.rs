//! The plan's last step: live ranges of the storage groups, their places in the arena
//! (`crate::place`), optional working memory where it costs no arena bytes, and the
//! steps with regions instead of value ids.

use super::{Buf, Kernel, Pending, Plan, Planner, Region, Step, LINE_FLOATS};
use crate::ir::{Model, Shape};
use crate::shape::LayerShape;

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

pub(super) fn finish(mut p: Planner<'_>, model: &Model, shapes: &[LayerShape]) -> Plan {
    let n = model.layers.len();
    let final_value = p.value_of[n - 1];
    let out_shape = shapes[n - 1].output;
    let (final_root, at) = p.root(p.values[final_value].group);
    let whole =
        at + p.values[final_value].offset == 0 && p.groups[final_root].len == out_shape.len();
    if p.groups[final_root].buf == Buf::Input || !whole {
        // The model is views of its input only, or its output is a slice of a larger
        // tensor (or written in place over one): copy it out.
        let dst = p.new_value(out_shape);
        // A slice that is the output runs as this copy.
        let layers = if matches!(model.layers[n - 1].op, crate::ir::Op::Slice { .. }) {
            vec![n - 1]
        } else {
            Vec::new()
        };
        p.push(Pending {
            kernel: Kernel::Copy,
            act: None,
            layers,
            srcs: vec![final_value],
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
    let placement = crate::place::warm(&blocks, steps, placement);
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
        team: None,
    }
}
