//! Stage 3, check: the rules a description must follow whatever the shapes are.
//!
//! Sizes at least 1, `eps > 0`, `0 <= p < 1`, `same` only with stride 1, pool padding at
//! most half the kernel, `groups` dividing `out`, names well formed and unique (counting
//! the implicit index names). Every problem is reported, not just the first; rules that
//! need the input shape of a layer live in [`crate::shape`].

use std::collections::HashMap;

use crate::ir::{
    Activation, Conv, ConvTranspose, Diag, Layer, Model, Op, Padding, Pool, PoolKind, UpMode,
    UpSize, Upsample,
};

/// Checks a lowered model; returns every problem found.
pub fn check(model: &Model) -> Vec<Diag> {
    let mut diags = Vec::new();
    if let Some(input) = &model.input {
        let axes: &[&str] = match input.len() {
            3 => &["channels", "height", "width"],
            2 => &["channels", "length"],
            _ => &["features"],
        };
        let shown: Vec<String> = input.iter().map(i64::to_string).collect();
        for (value, axis) in input.iter().zip(axes) {
            if *value < 1 {
                diags.push(Diag::new(
                    model.input_loc,
                    format!(
                        "layer `input`: input {axis} is {value}; every size must be at least 1 (input = [{}])",
                        shown.join(", ")
                    ),
                ));
            }
        }
    }
    check_names(model, &mut diags);
    let one_d = model.is_1d();
    for layer in &model.layers {
        let mut found = Vec::new();
        check_layer(layer, &mut found);
        check_rank(layer, one_d, &mut found);
        diags.extend(found.into_iter().map(|d| d.for_layer(layer.index)));
    }
    diags
}

/// A 1-D model (`input = [C, L]`) takes integers, not pairs, and `linear` upsampling; a
/// 2-D one `bilinear`.
fn check_rank(layer: &Layer, one_d: bool, diags: &mut Vec<Diag>) {
    let prefix = format!("layer `{}` ({})", layer.name, layer.op.keyword());
    if one_d {
        for key in &layer.pair_args {
            diags.push(Diag::new(
                layer.arg_loc(key),
                format!(
                    "{prefix}: `{key}` is a pair, but the model is 1-D (input [C, L]); give one integer"
                ),
            ));
        }
    }
    if let Op::Upsample(Upsample { mode, .. }) = layer.op {
        match (mode, one_d) {
            (UpMode::Bilinear, true) => diags.push(Diag::new(
                layer.arg_loc("mode"),
                format!("{prefix}: `bilinear` needs a [C, H, W] input, but the model is 1-D (input [C, L]); use `mode = linear`"),
            )),
            (UpMode::Linear, false) => diags.push(Diag::new(
                layer.arg_loc("mode"),
                format!("{prefix}: `linear` is for 1-D signals [C, L]; on a [C, H, W] model use `mode = bilinear`"),
            )),
            _ => {}
        }
    }
}

fn check_names(model: &Model, diags: &mut Vec<Diag>) {
    let mut seen: HashMap<&str, &Layer> = HashMap::new();
    for layer in &model.layers {
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if layer.named && !layer.name.split('.').all(segment_ok) {
            diags.push(
                Diag::new(
                    layer.loc,
                    format!(
                        "layer `{}` ({}): a name is a path of segments joined by `.`, each made of ASCII letters, digits, `_` and `-`",
                        layer.name,
                        layer.op.keyword()
                    ),
                )
                .for_layer(layer.index),
            );
        }
        if layer.name == "input" {
            diags.push(
                Diag::new(
                    layer.loc,
                    format!(
                        "layer `input` ({}): `input` names the model's input; choose another name",
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
        Op::ConvTranspose(ConvTranspose {
            out,
            kernel,
            stride,
            padding,
            output_padding,
            dilation,
            groups,
            ..
        }) => {
            if too_large(layer, "out", &[*out], diags) {
            } else if *out < 1 {
                diags.push(Diag::new(
                    layer.arg_loc("out"),
                    format!("{prefix}: out = {out} channels; a transposed conv needs at least 1 output channel"),
                ));
            }
            at_least_one(layer, "kernel", &[kernel.0, kernel.1], diags);
            at_least_one(layer, "stride", &[stride.0, stride.1], diags);
            at_least_one(layer, "dilation", &[dilation.0, dilation.1], diags);
            at_least_one(layer, "groups", &[*groups], diags);
            for (key, p) in [("padding", padding), ("output_padding", output_padding)] {
                if too_large(layer, key, &[p.0, p.1], diags) {
                } else if p.0 < 0 || p.1 < 0 {
                    diags.push(Diag::new(
                        layer.arg_loc(key),
                        format!("{prefix}: {key} = ({}, {}) is negative", p.0, p.1),
                    ));
                }
            }
            for (axis, op, s, d) in [
                ("height", output_padding.0, stride.0, dilation.0),
                ("width", output_padding.1, stride.1, dilation.1),
            ] {
                if op >= 0 && s >= 1 && d >= 1 && op >= s && op >= d {
                    diags.push(Diag::new(
                        layer.arg_loc("output_padding"),
                        format!(
                            "{prefix}: output_padding {op} (along {axis}) must be smaller than the stride ({s}) or the dilation ({d})"
                        ),
                    ));
                    break;
                }
            }
            if *groups >= 1 && *out >= 1 && out % groups != 0 {
                diags.push(Diag::new(
                    layer.arg_loc("groups"),
                    format!("{prefix}: groups = {groups} does not divide out = {out} channels"),
                ));
            }
        }
        Op::AdaptivePool { out, .. } => {
            at_least_one(layer, "out", &[out.0, out.1], diags);
        }
        Op::Upsample(Upsample { size, .. }) => match size {
            UpSize::Scale(s) => at_least_one(layer, "scale", &[s.0, s.1], diags),
            UpSize::Size(s) => at_least_one(layer, "size", &[s.0, s.1], diags),
        },
        Op::Act(Activation::LeakyRelu(slope)) => {
            if !slope.is_finite() {
                diags.push(Diag::new(
                    layer.arg_loc("slope"),
                    format!("{prefix}: slope = {slope} must be a finite number"),
                ));
            }
        }
        Op::Slice { start, end } => {
            if too_large(layer, "start", &[*start], diags)
                || too_large(layer, "end", &[*end], diags)
            {
            } else if *start < 0 {
                diags.push(Diag::new(
                    layer.arg_loc("start"),
                    format!("{prefix}: start = {start} is negative; channels count from 0"),
                ));
            } else if end <= start {
                diags.push(Diag::new(
                    layer.arg_loc("end"),
                    format!(
                        "{prefix}: end = {end} must be greater than start = {start} (the slice keeps channels start..end, end excluded)"
                    ),
                ));
            }
        }
        Op::ChannelShuffle { groups } => at_least_one(layer, "groups", &[*groups], diags),
        Op::GlobalAvgPool
        | Op::GlobalMaxPool
        | Op::Flatten
        | Op::Act(_)
        | Op::Softmax
        | Op::Identity
        | Op::Merge(_) => {}
    }
}
