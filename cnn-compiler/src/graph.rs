//! Part of stage 2, lower: the graph. Each layer's references (`from = ..`, the operands
//! of `add`/`mul`/`concat`) are resolved to the tensors it reads once every layer's name
//! is known, with the §6 rules: earlier layers or `input` only (did-you-mean on a typo),
//! one name on a merge means the previous layer and that name, and every layer but the
//! last is read by a later one.

use std::collections::HashMap;

use crate::ir::{Diag, Layer, Loc, Src};
use crate::parse::RawValue;
use crate::suggest::did_you_mean;

/// The references a layer wrote (`from = ..`, or a merge's operands), resolved once
/// every layer's name is known.
pub(crate) struct Refs {
    /// The names as written, with where.
    pub(crate) names: Vec<(String, Loc)>,
    /// Whether the layer is `add`/`mul`/`concat`.
    pub(crate) merge: bool,
    /// Where the layer is.
    pub(crate) loc: Loc,
}

/// A layer name as written in a reference: a word, a dotted path, or an index.
pub(crate) fn ref_name(v: &RawValue) -> Option<String> {
    match v {
        RawValue::Word(w) => Some(w.strip_prefix("r#").unwrap_or(w).to_string()),
        RawValue::Int(i) if *i >= 0 => Some(i.to_string()),
        _ => None,
    }
}

/// Resolves a layer's references to the tensors it reads (§6 of the format).
pub(crate) fn resolve(layer: &Layer, refs: &Refs, names: &[String]) -> Result<Vec<Src>, Vec<Diag>> {
    let index = layer.index;
    let prefix = format!("layer `{}` ({})", layer.name, layer.op.keyword());
    let previous = if index == 0 {
        Src::Input
    } else {
        Src::Layer(index - 1)
    };
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        by_name.entry(n.as_str()).or_insert(i);
    }
    let mut diags = Vec::new();
    let mut found = Vec::new();
    for (name, loc) in &refs.names {
        if name == "input" {
            found.push(Src::Input);
            continue;
        }
        match by_name.get(name.as_str()) {
            Some(&j) if j < index => found.push(Src::Layer(j)),
            Some(&j) if j == index => diags.push(Diag::new(
                *loc,
                format!("{prefix}: reads itself (`{name}`); a layer reads earlier layers or `input`"),
            )),
            Some(&j) => diags.push(Diag::new(
                *loc,
                format!(
                    "{prefix}: `{name}` is a later layer (layer {j}); a layer reads only earlier layers or `input`"
                ),
            )),
            None => {
                let earlier: Vec<&str> = names[..index]
                    .iter()
                    .map(String::as_str)
                    .chain(["input"])
                    .collect();
                diags.push(Diag::new(
                    *loc,
                    format!(
                        "{prefix}: no layer is named `{name}`{}",
                        did_you_mean(name, &earlier)
                    ),
                ));
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    if !refs.merge {
        return Ok(vec![found.first().copied().unwrap_or(previous)]);
    }
    match found.len() {
        0 => Err(vec![Diag::new(
            refs.loc,
            format!(
                "{prefix}: needs at least one operand: `{op}(x)` combines the previous layer's output with `x`, `{op}(a, b, ..)` exactly the named tensors (TOML: `from = [\"x\"]`)",
                op = layer.op.keyword()
            ),
        )]),
        1 => Ok(vec![previous, found[0]]),
        _ => Ok(found),
    }
}

/// Every layer but the last must be read by a later one (§6).
pub(crate) fn unread(layers: &[Layer], diags: &mut Vec<Diag>) {
    let mut read = vec![false; layers.len()];
    for layer in layers {
        for src in &layer.inputs {
            if let Src::Layer(j) = src {
                read[*j] = true;
            }
        }
    }
    for layer in layers.iter().take(layers.len().saturating_sub(1)) {
        if !read[layer.index] {
            let next = &layers[layer.index + 1];
            let hint = if next.op.is_merge() {
                format!(
                    " (`{}` names all its operands, so it does not read the layer before it)",
                    next.name
                )
            } else {
                format!(" (`{}` reads another layer through `from`)", next.name)
            };
            diags.push(
                Diag::new(
                    layer.loc,
                    format!(
                        "layer `{}` ({}): its output is never read{hint}; every layer but the last must feed a later one",
                        layer.name,
                        layer.op.keyword()
                    ),
                )
                .for_layer(layer.index),
            );
        }
    }
}
