//! Stage 3, check: the rules a description must follow whatever the shapes are.
//!
//! Sizes at least 1, `eps > 0`, `0 <= p < 1`, `same` only with stride 1, pool padding at
//! most half the kernel, `groups` dividing `out`, names well formed and unique (counting
//! the implicit index names). Every problem is reported, not just the first; rules that
//! need the input shape of a layer live in [`crate::shape`].

use std::collections::HashMap;

use crate::ir::{Conv, Diag, Layer, Model, Op, Padding, Pool, PoolKind};

/// Checks a lowered model; returns every problem found.
pub fn check(model: &Model) -> Vec<Diag> {
    let mut diags = Vec::new();
    if let Some(input) = model.input {
        for (value, axis) in input.iter().zip(["channels", "height", "width"]) {
            if *value < 1 {
                diags.push(Diag::new(
                    model.input_loc,
                    format!(
                        "layer `input`: input {axis} is {value}; every size must be at least 1 (input = [{}, {}, {}])",
                        input[0], input[1], input[2]
                    ),
                ));
            }
        }
    }
    check_names(model, &mut diags);
    for layer in &model.layers {
        let mut found = Vec::new();
        check_layer(layer, &mut found);
        diags.extend(found.into_iter().map(|d| d.for_layer(layer.index)));
    }
    diags
}

fn check_names(model: &Model, diags: &mut Vec<Diag>) {
    let mut seen: HashMap<&str, &Layer> = HashMap::new();
    for layer in &model.layers {
        if layer.named
            && (layer.name.is_empty()
                || !layer
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            diags.push(
                Diag::new(
                    layer.loc,
                    format!(
                        "layer `{}` ({}): a name is made of ASCII letters, digits and `_`",
                        layer.name,
                        layer.op.keyword()
                    ),
                )
                .for_layer(layer.index),
            );
        }
        if let Some(first) = seen.get(layer.name.as_str()) {
            let how = |l: &Layer| {
                if l.named {
                    format!("layer {} is named `{}`", l.index, l.name)
                } else {
                    format!("layer {} is unnamed, so named by its index", l.index)
                }
            };
            diags.push(
                Diag::new(
                    layer.loc,
                    format!(
                        "layer `{}` ({}): duplicate layer name: {} and {}; names must be unique",
                        layer.name,
                        layer.op.keyword(),
                        how(first),
                        how(layer)
                    ),
                )
                .for_layer(layer.index),
            );
        } else {
            seen.insert(&layer.name, layer);
        }
    }
}

/// Largest size accepted for any argument; keeps all shape arithmetic far from overflow.
pub const MAX_SIZE: i64 = 1 << 24;

fn too_large(layer: &Layer, key: &str, values: &[i64], diags: &mut Vec<Diag>) -> bool {
    if let Some(v) = values.iter().find(|v| **v > MAX_SIZE) {
        diags.push(Diag::new(
            layer.arg_loc(key),
            format!(
                "layer `{}` ({}): {key} = {v} is too large (at most {MAX_SIZE})",
                layer.name,
                layer.op.keyword()
            ),
        ));
        return true;
    }
    false
}

fn at_least_one(layer: &Layer, key: &str, values: &[i64], diags: &mut Vec<Diag>) {
    if too_large(layer, key, values, diags) {
        return;
    }
    if values.iter().any(|v| *v < 1) {
        let shown = if values.len() == 2 && values[0] != values[1] {
            format!("({}, {})", values[0], values[1])
        } else {
            values[0].to_string()
        };
        diags.push(Diag::new(
            layer.arg_loc(key),
            format!(
                "layer `{}` ({}): {key} = {shown}, but {key} must be at least 1",
                layer.name,
                layer.op.keyword()
            ),
        ));
    }
}

fn check_layer(layer: &Layer, diags: &mut Vec<Diag>) {
    let prefix = format!("layer `{}` ({})", layer.name, layer.op.keyword());
    match &layer.op {
        Op::Conv(Conv {
            out,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            ..
        }) => {
            if too_large(layer, "out", &[*out], diags) {
            } else if *out < 1 {
                diags.push(Diag::new(
                    layer.arg_loc("out"),
                    format!("{prefix}: conv with out = {out} channels; a conv needs at least 1 output channel"),
                ));
            }
            at_least_one(layer, "kernel", &[kernel.0, kernel.1], diags);
            at_least_one(layer, "stride", &[stride.0, stride.1], diags);
            at_least_one(layer, "dilation", &[dilation.0, dilation.1], diags);
            at_least_one(layer, "groups", &[*groups], diags);
            if let Padding::Explicit((ph, pw)) = padding {
                too_large(layer, "padding", &[*ph, *pw], diags);
            }
            match padding {
                Padding::Explicit((ph, pw)) if *ph < 0 || *pw < 0 => diags.push(Diag::new(
                    layer.arg_loc("padding"),
                    format!("{prefix}: padding = ({ph}, {pw}) is negative"),
                )),
                Padding::Same if *stride != (1, 1) => diags.push(Diag::new(
                    layer.arg_loc("padding"),
                    format!(
                        "{prefix}: padding `same` needs stride 1, but stride = ({}, {}); give explicit padding for a strided conv",
                        stride.0, stride.1
                    ),
                )),
                _ => {}
            }
            if *groups >= 1 && *out >= 1 && out % groups != 0 {
                diags.push(Diag::new(
                    layer.arg_loc("groups"),
                    format!("{prefix}: groups = {groups} does not divide out = {out} channels"),
                ));
            }
        }
        Op::Pool(Pool {
            kind,
            kernel,
            stride,
            padding,
            dilation,
            ..
        }) => {
            at_least_one(layer, "kernel", &[kernel.0, kernel.1], diags);
            at_least_one(layer, "stride", &[stride.0, stride.1], diags);
            if *kind == PoolKind::Max {
                at_least_one(layer, "dilation", &[dilation.0, dilation.1], diags);
            }
            if too_large(layer, "padding", &[padding.0, padding.1], diags) {
            } else if padding.0 < 0 || padding.1 < 0 {
                diags.push(Diag::new(
                    layer.arg_loc("padding"),
                    format!(
                        "{prefix}: padding = ({}, {}) is negative",
                        padding.0, padding.1
                    ),
                ));
            } else if kernel.0 >= 1
                && kernel.1 >= 1
                && (padding.0 > kernel.0 / 2 || padding.1 > kernel.1 / 2)
            {
                let (p, k) = if padding.0 > kernel.0 / 2 {
                    (padding.0, kernel.0)
                } else {
                    (padding.1, kernel.1)
                };
                diags.push(Diag::new(
                    layer.arg_loc("padding"),
                    format!(
                        "{prefix}: padding {p} is larger than half of kernel {k}; pool padding may be at most kernel / 2 = {}",
                        k / 2
                    ),
                ));
            }
        }
        Op::Linear { out, .. } => {
            if too_large(layer, "out", &[*out], diags) {
            } else if *out < 1 {
                diags.push(Diag::new(
                    layer.arg_loc("out"),
                    format!("{prefix}: out = {out} features; a linear layer needs at least 1"),
                ));
            }
        }
        Op::BatchNorm { eps } => {
            if !(*eps > 0.0 && eps.is_finite()) {
                diags.push(Diag::new(
                    layer.arg_loc("eps"),
                    format!("{prefix}: eps = {eps} must be > 0 (and finite)"),
                ));
            }
        }
        Op::Dropout { p } => {
            if !(0.0..1.0).contains(p) {
                diags.push(Diag::new(
                    layer.arg_loc("p"),
                    format!("{prefix}: p = {p} must be in [0, 1)"),
                ));
            }
        }
        Op::Act(crate::ir::Activation::LeakyRelu(slope)) => {
            if !slope.is_finite() {
                diags.push(Diag::new(
                    layer.arg_loc("slope"),
                    format!("{prefix}: slope = {slope} must be a finite number"),
                ));
            }
        }
        Op::GlobalAvgPool | Op::GlobalMaxPool | Op::Flatten | Op::Act(_) | Op::Softmax => {}
    }
}
