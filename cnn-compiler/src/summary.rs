//! The `summary()` table, computed while the macro expands.

use crate::ir::Model;
use crate::plan::{describe, Plan};
use crate::shape::LayerShape;

/// `1234567` -> `1,234,567`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// One entry per planned step, in order (the generated `Model::STEPS`): the name of its
/// first layer (empty for a helper copy), its kernel as the table shows it, and the
/// multiply-accumulates of its layers.
pub fn step_infos(
    model: &Model,
    shapes: &[LayerShape],
    plan: &Plan,
) -> Vec<(String, String, usize)> {
    plan.steps
        .iter()
        .map(|step| {
            let layer = step
                .layers
                .first()
                .map_or_else(String::new, |&l| model.layers[l].name.clone());
            let macs = step.layers.iter().map(|&l| shapes[l].macs).sum();
            (layer, describe(step, model), macs)
        })
        .collect()
}

/// Renders the per-layer table: name, op, output shape, parameters, MACs and the kernel
/// that runs the layer; then totals, weights and activation memory.
pub fn render(
    name: &str,
    model: &Model,
    shapes: &[LayerShape],
    plan: &Plan,
    weight_bytes: usize,
) -> String {
    let mut kernel_of = vec![String::new(); model.layers.len()];
    for step in &plan.steps {
        for (k, &layer) in step.layers.iter().enumerate() {
            if !kernel_of[layer].is_empty() {
                // A layer of several steps (a concat's copies, a 3-operand add).
                if !kernel_of[layer].ends_with("...") && k == 0 {
                    kernel_of[layer].push_str(" ...");
                }
                continue;
            }
            kernel_of[layer] = if k == 0 {
                describe(step, model)
            } else {
                format!("(fused into `{}`)", model.layers[step.layers[0]].name)
            };
        }
    }
    for (i, layer) in model.layers.iter().enumerate() {
        if plan.free_concats.contains(&i) {
            kernel_of[i] = "(no copy: operands written in place)".to_string();
        } else if kernel_of[i].is_empty() {
            kernel_of[i] = match layer.op {
                crate::ir::Op::Flatten => "(no-op: CHW order)".to_string(),
                crate::ir::Op::Identity => "(no-op)".to_string(),
                crate::ir::Op::Slice { .. } => "(no copy: a view of its input)".to_string(),
                _ => "(no-op at inference)".to_string(),
            };
        }
    }
    let header = ["layer", "op", "output shape", "params", "MACs", "runs as"];
    let rows: Vec<[String; 6]> = model
        .layers
        .iter()
        .zip(shapes)
        .zip(&kernel_of)
        .map(|((layer, s), kernel)| {
            [
                layer.name.clone(),
                layer.op.keyword().to_string(),
                s.output.to_string(),
                thousands(s.params),
                thousands(s.macs),
                kernel.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 6]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        )
        .trim_end()
        .to_string()
    };
    let total_width = widths.iter().sum::<usize>() + 2 * 5;
    let rule = "-".repeat(total_width);
    let params: usize = shapes.iter().map(|s| s.params).sum();
    let macs: usize = shapes.iter().map(|s| s.macs).sum();
    let input = shapes
        .first()
        .map(|s| s.input.to_string())
        .unwrap_or_default();
    let output = shapes
        .last()
        .map(|s| s.output.to_string())
        .unwrap_or_default();
    let calls = plan
        .steps
        .iter()
        .filter(|s| s.kernel != crate::plan::Kernel::Copy)
        .count();
    let arena_bytes = plan.arena * 4;

    let mut out = String::new();
    out.push_str(&format!(
        "Model `{name}`: input {input} -> output {output}\n"
    ));
    out.push_str(&rule);
    out.push('\n');
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&rule);
    out.push('\n');
    out.push_str(&format!(
        "total params: {} ({} bytes as f32)\n",
        thousands(params),
        thousands(params * 4)
    ));
    out.push_str(&format!("total MACs:   {}\n", thousands(macs)));
    out.push_str(&format!(
        "forward:      {calls} kernel calls, {} layers\n",
        model.layers.len()
    ));
    out.push_str(&format!(
        "weights:      {} bytes packed (WEIGHT_BYTES; read-only data when embedded)\n",
        thousands(weight_bytes)
    ));
    let place = if arena_bytes <= crate::codegen::STACK_ARENA_LIMIT {
        "on the stack"
    } else {
        "in a per-thread buffer (with std; allocated on a thread's first call)"
    };
    out.push_str(&format!(
        "activations:  {} bytes (ARENA_BYTES: one arena of {} floats; `forward_in` uses the caller's, `forward` keeps it {place})",
        thousands(arena_bytes),
        thousands(plan.arena),
    ));
    if let Some(s) = plan.peak_step {
        let step = &plan.steps[s];
        let at = step.layers.first().map_or_else(
            || "the output copy".to_string(),
            |l| format!("`{}`", model.layers[*l].name),
        );
        out.push_str(&format!(
            "\n              peak at {at}; {} bytes if no two tensors shared memory",
            thousands(plan.unshared * 4)
        ));
    }
    if let Some(team) = &plan.team {
        // The worker's copy of the output, when the team writes it.
        let worker_output = if team.merge_buf == crate::plan::Buf::Output {
            shapes.last().map_or(0, |s| s.output.len())
        } else {
            0
        };
        let name = |i: usize| {
            plan.steps[i]
                .layers
                .first()
                .map_or_else(String::new, |l| model.layers[*l].name.clone())
        };
        out.push_str(&format!(
            "\ntwo threads:  `{}` to `{}` ({} steps, {}% of the MACs) as two half images, {} row exchanges{} (with the `parallel` feature on two threads; the worker's own arena{} of {} bytes and an exchange buffer of {} bytes per thread, allocated on first use)",
            name(0),
            name(team.steps - 1),
            team.steps,
            team.share,
            team.exchanges.len(),
            match team.reduces.len() {
                0 => String::new(),
                n => format!(" and {n} pools' sums exchanged"),
            },
            if team.merge_buf == crate::plan::Buf::Output {
                " and output"
            } else {
                ""
            },
            thousands((plan.arena + worker_output) * 4),
            thousands(team.halo * 2 * 4),
        ));
    }
    let stack = crate::plan::stack_bytes(plan);
    if stack > 0 {
        out.push_str(&format!(
            "\nstack:        {} bytes of kernel buffers (STACK_BYTES: the convolution band buffer; 16,384 without std)",
            thousands(stack)
        ));
    }
    out
}
