//! Stage 2, lower: the raw form of either spelling into the IR.
//!
//! Resolves layer names (an unnamed layer is named by its 0-based index), looks ops up,
//! types each argument and fills in defaults. One function for both spellings, so the
//! inline and TOML forms of one model produce the identical IR. Range rules (stride ≥ 1,
//! eps > 0, ...) are the business of [`crate::check`]; shapes of [`crate::shape`].

use crate::graph::{ref_name, resolve, unread, Refs};
use crate::ir::{
    Activation, Conv, ConvTranspose, Diag, Layer, Loc, Merge, Model, Op, Padding, Pair, Pool,
    PoolKind, UpMode, UpSize, Upsample,
};
use crate::parse::{RawLayer, RawModel, RawValue};
use crate::suggest::did_you_mean;

/// The ops of the language, for lookups and suggestions.
pub const OPS: &[&str] = &[
    "conv",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "global_max_pool",
    "flatten",
    "linear",
    "batch_norm",
    "relu",
    "relu6",
    "tanh",
    "sigmoid",
    "leaky_relu",
    "softmax",
    "dropout",
    "identity",
    "silu",
    "hardswish",
    "hardsigmoid",
    "gelu",
    "add",
    "mul",
    "concat",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "upsample",
    "conv_transpose",
    "slice",
    "channel_shuffle",
];

/// The ops that combine several tensors; their operands are positional inline and
/// `from = [..]` in TOML.
const MERGES: &[&str] = &["add", "mul", "concat"];

/// The arguments each op takes; the first one listed is the positional one, if any.
fn op_args(op: &str) -> (&'static [&'static str], Option<&'static str>) {
    match op {
        "conv" => (
            &[
                "out", "kernel", "stride", "padding", "dilation", "groups", "bias",
            ],
            Some("out"),
        ),
        "max_pool" => (
            &["kernel", "stride", "padding", "dilation", "ceil_mode"],
            Some("kernel"),
        ),
        "avg_pool" => (
            &[
                "kernel",
                "stride",
                "padding",
                "ceil_mode",
                "count_include_pad",
            ],
            Some("kernel"),
        ),
        "linear" => (&["out", "bias"], Some("out")),
        "batch_norm" => (&["eps"], None),
        "leaky_relu" => (&["slope"], None),
        "dropout" => (&["p"], None),
        "adaptive_avg_pool" | "adaptive_max_pool" => (&["out"], Some("out")),
        "upsample" => (&["scale", "size", "mode", "align_corners"], None),
        "conv_transpose" => (
            &[
                "out",
                "kernel",
                "stride",
                "padding",
                "output_padding",
                "dilation",
                "groups",
                "bias",
            ],
            Some("out"),
        ),
        "slice" => (&["start", "end"], None),
        "channel_shuffle" => (&["groups"], Some("groups")),
        _ => (&[], None),
    }
}

/// Lowers a raw model. Layers that cannot be lowered are left out of `Model::layers`
/// (their `index` leaves a gap) and reported in the returned diagnostics.
pub fn lower(raw: &RawModel) -> (Model, Vec<Diag>) {
    let mut diags = raw.diags.clone();
    let input = match &raw.input {
        None => {
            diags.push(Diag::new(
                raw.body_loc,
                "layer `input`: the `input` key is missing; describe the input as `input = [C, H, W]` (inline: `input: [C, H, W]`)",
            ));
            None
        }
        Some((value, loc)) => match ints(value) {
            Some(v) if (1..=3).contains(&v.len()) => Some(v),
            _ => {
                diags.push(Diag::new(
                    *loc,
                    format!(
                        "layer `input`: `input` must be [C, H, W] (an image), [C, L] (a 1-D signal) or [N] (a vector) of integers, not {}",
                        value.describe()
                    ),
                ));
                None
            }
        },
    };
    if raw.layers.is_empty() {
        diags.push(Diag::new(
            raw.body_loc,
            "the model has no layers; a description needs at least one",
        ));
    }
    let mut layers = Vec::new();
    let mut refs = Vec::new();
    for (index, raw_layer) in raw.layers.iter().enumerate() {
        match lower_layer(raw_layer, index) {
            Ok((layer, r)) => {
                layers.push(layer);
                refs.push(r);
            }
            Err(d) => diags.extend(d.into_iter().map(|d| d.for_layer(index))),
        }
    }
    let names: Vec<String> = raw
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| match &l.name {
            Some((RawValue::Word(w), _)) => w.strip_prefix("r#").unwrap_or(w).to_string(),
            _ => i.to_string(),
        })
        .collect();
    let complete = layers.len() == raw.layers.len();
    let mut resolved_all = true;
    for (layer, r) in layers.iter_mut().zip(&refs) {
        match resolve(layer, r, &names) {
            Ok(inputs) => layer.inputs = inputs,
            Err(d) => {
                resolved_all = false;
                diags.extend(d.into_iter().map(|d| d.for_layer(layer.index)));
            }
        }
    }
    if complete && resolved_all {
        unread(&layers, &mut diags);
    }
    let model = Model {
        input,
        input_loc: raw.input.as_ref().map_or(raw.body_loc, |(_, l)| *l),
        layers,
        body_loc: raw.body_loc,
    };
    (model, diags)
}

fn ints(value: &RawValue) -> Option<Vec<i64>> {
    match value {
        RawValue::List(items) => items
            .iter()
            .map(|(v, _)| match v {
                RawValue::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Typed access to one layer's arguments, collecting every problem.
struct Args<'a> {
    layer: &'a str,
    layer_loc: Loc,
    op: &'a str,
    given: Vec<(String, &'a RawValue, Loc)>,
    diags: Vec<Diag>,
    /// The keys given as a pair.
    pairs: Vec<String>,
}

impl<'a> Args<'a> {
    fn prefix(&self) -> String {
        format!("layer `{}` ({})", self.layer, self.op)
    }

    fn find(&self, key: &str) -> Option<(&'a RawValue, Loc)> {
        self.given
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, l)| (*v, *l))
    }

    fn type_error(&mut self, key: &str, loc: Loc, wanted: &str, got: &RawValue) {
        let msg = format!(
            "{}: `{key}` must be {wanted}, not {}",
            self.prefix(),
            got.describe()
        );
        self.diags.push(Diag::new(loc, msg));
    }

    fn missing(&mut self, key: &str) {
        let msg = format!(
            "{}: the required argument `{key}` is missing",
            self.prefix()
        );
        self.diags.push(Diag::new(self.layer_loc, msg));
    }

    fn required_int(&mut self, key: &str) -> i64 {
        match self.find(key) {
            None => {
                self.missing(key);
                1
            }
            Some((v, loc)) => self.int_value(key, v, loc).unwrap_or(1),
        }
    }

    fn required_pair(&mut self, key: &str) -> Pair {
        match self.find(key) {
            None => {
                self.missing(key);
                (1, 1)
            }
            Some((v, loc)) => self.pair_value(key, v, loc).unwrap_or((1, 1)),
        }
    }

    fn int_value(&mut self, key: &str, v: &RawValue, loc: Loc) -> Option<i64> {
        match v {
            RawValue::Int(i) => Some(*i),
            other => {
                self.type_error(key, loc, "an integer", other);
                None
            }
        }
    }

    fn pair_value(&mut self, key: &str, v: &RawValue, loc: Loc) -> Option<Pair> {
        match v {
            RawValue::Int(i) => Some((*i, *i)),
            RawValue::List(items) => match ints(v) {
                Some(p) if p.len() == 2 && items.len() == 2 => {
                    self.pairs.push(key.to_string());
                    Some((p[0], p[1]))
                }
                _ => {
                    self.type_error(key, loc, "an integer or a pair of integers (h, w)", v);
                    None
                }
            },
            other => {
                self.type_error(key, loc, "an integer or a pair of integers (h, w)", other);
                None
            }
        }
    }

    fn pair(&mut self, key: &str, default: Pair) -> Pair {
        match self.find(key) {
            None => default,
            Some((v, loc)) => self.pair_value(key, v, loc).unwrap_or(default),
        }
    }

    fn int(&mut self, key: &str, default: i64) -> i64 {
        match self.find(key) {
            None => default,
            Some((v, loc)) => self.int_value(key, v, loc).unwrap_or(default),
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.find(key) {
            None => default,
            Some((RawValue::Bool(b), _)) => *b,
            Some((v, loc)) => {
                self.type_error(key, loc, "a boolean (true or false)", v);
                default
            }
        }
    }

    fn float(&mut self, key: &str, default: f64) -> f64 {
        match self.find(key) {
            None => default,
            Some((RawValue::Float(f), _)) => *f,
            Some((RawValue::Int(i), _)) => *i as f64,
            Some((v, loc)) => {
                self.type_error(key, loc, "a number", v);
                default
            }
        }
    }
}

fn lower_layer(raw: &RawLayer, index: usize) -> Result<(Layer, Refs), Vec<Diag>> {
    let mut diags = Vec::new();
    let (name, named) = match &raw.name {
        None => (index.to_string(), false),
        // A name equal to the layer's index is the name it would have anyway.
        Some((RawValue::Word(w), _)) => {
            let w = w.strip_prefix("r#").unwrap_or(w).to_string();
            let named = w != index.to_string();
            (w, named)
        }
        Some((other, loc)) => {
            diags.push(Diag::new(
                *loc,
                format!(
                    "layer {index}: `name` must be a string of ASCII letters, digits and `_`, not {}",
                    other.describe()
                ),
            ));
            (index.to_string(), false)
        }
    };
    let (op_name, op_loc) = match &raw.op {
        Some((op, loc)) => (op.as_str(), *loc),
        None => {
            diags.push(Diag::new(
                raw.loc,
                format!(
                    "layer `{name}`: the `op` key is missing; one of {}",
                    OPS.join(", ")
                ),
            ));
            return Err(diags);
        }
    };
    if !OPS.contains(&op_name) {
        diags.push(Diag::new(
            op_loc,
            format!(
                "layer `{name}`: unknown op `{op_name}`{}; the ops are {}",
                did_you_mean(op_name, OPS),
                OPS.join(", ")
            ),
        ));
        return Err(diags);
    }
    let (own, positional_key) = op_args(op_name);
    let merge = MERGES.contains(&op_name);
    let inline = matches!(raw.loc, Loc::Span(..));
    // Every op but the merges reads one tensor, `from = name` naming it; a merge's
    // operands are `from = [..]` in TOML and positional inline.
    let mut known: Vec<&str> = own.to_vec();
    if !(merge && inline) {
        known.push("from");
    }
    let known = known.as_slice();
    let mut args = Args {
        layer: &name,
        layer_loc: raw.loc,
        op: op_name,
        given: Vec::new(),
        diags: Vec::new(),
        pairs: Vec::new(),
    };
    let mut refs = Refs {
        names: Vec::new(),
        merge,
        loc: raw.loc,
    };
    // Positional arguments.
    for (i, (value, loc)) in raw.positional.iter().enumerate() {
        if merge {
            match ref_name(value) {
                Some(n) => refs.names.push((n, *loc)),
                None => args.diags.push(Diag::new(
                    *loc,
                    format!(
                        "{}: operands are layer names (or `input`), not {}",
                        args.prefix(),
                        value.describe()
                    ),
                )),
            }
            continue;
        }
        match (i, positional_key) {
            (0, Some(key)) => args.given.push((key.to_string(), value, *loc)),
            (_, Some(key)) => args.diags.push(Diag::new(
                *loc,
                format!(
                    "{}: only one argument (`{key}`) may be positional; name this one, like `stride = 2`",
                    args.prefix()
                ),
            )),
            (_, None) => args.diags.push(Diag::new(
                *loc,
                format!(
                    "{}: takes no positional argument{}",
                    args.prefix(),
                    if own.is_empty() {
                        String::new()
                    } else {
                        format!("; name it, one of: {}", own.join(", "))
                    }
                ),
            )),
        }
    }
    // Keyword arguments.
    for arg in &raw.args {
        if !known.contains(&arg.key.as_str()) {
            let hint = if merge && inline {
                String::new()
            } else if own.is_empty() {
                format!("; {op_name} takes no arguments")
            } else {
                format!(
                    "{}; {op_name} takes {}",
                    did_you_mean(&arg.key, known),
                    own.join(", ")
                )
            };
            let also = match (arg.key.as_str(), op_name) {
                ("count_include_pad", "max_pool") => " (only avg_pool has it)",
                ("dilation", "avg_pool") => " (only max_pool and conv have it)",
                ("from", _) if merge => {
                    " (inline, the operands of add/mul/concat are positional: `add(a, b)`)"
                }
                _ => "",
            };
            args.diags.push(Diag::new(
                arg.key_loc,
                format!(
                    "{}: unknown argument `{}`{also}{hint}",
                    args.prefix(),
                    arg.key
                ),
            ));
            continue;
        }
        if args.given.iter().any(|(k, _, _)| *k == arg.key) {
            args.diags.push(Diag::new(
                arg.key_loc,
                format!("{}: `{}` is given twice", args.prefix(), arg.key),
            ));
            continue;
        }
        args.given.push((arg.key.clone(), &arg.value, arg.loc));
    }

    if let Some((v, loc)) = args.find("from") {
        match (v, merge) {
            (RawValue::List(items), true) => {
                for (item, item_loc) in items {
                    match ref_name(item) {
                        Some(n) => refs.names.push((n, *item_loc)),
                        None => args.diags.push(Diag::new(
                            *item_loc,
                            format!(
                                "{}: `from` lists layer names (or \"input\"), not {}",
                                args.prefix(),
                                item.describe()
                            ),
                        )),
                    }
                }
            }
            (v, true) => {
                let msg = format!(
                    "{}: `from` of add/mul/concat is an array of names, like `from = [{}]`, not {}",
                    args.prefix(),
                    v.describe(),
                    v.describe()
                );
                args.diags.push(Diag::new(loc, msg));
            }
            (RawValue::List(_), false) => {
                let msg = format!(
                    "{}: `from` is one name here, not the list {}; only add, mul and concat read several tensors",
                    args.prefix(),
                    v.describe()
                );
                args.diags.push(Diag::new(loc, msg));
            }
            (v, false) => match ref_name(v) {
                Some(n) => refs.names.push((n, loc)),
                None => args.type_error("from", loc, "a layer name or `input`", v),
            },
        }
    }
    let op = match op_name {
        "conv" => {
            let out = args.required_int("out");
            let kernel = args.required_pair("kernel");
            let padding = match args.find("padding") {
                None => Padding::Explicit((0, 0)),
                Some((RawValue::Word(w), loc)) => match w.as_str() {
                    "same" => Padding::Same,
                    "valid" => Padding::Valid,
                    other => {
                        let msg = format!(
                            "{}: `padding` must be an integer, a pair (h, w), `same` or `valid`, not \"{other}\"{}",
                            args.prefix(),
                            did_you_mean(other, &["same", "valid"])
                        );
                        args.diags.push(Diag::new(loc, msg));
                        Padding::Explicit((0, 0))
                    }
                },
                Some((v, loc)) => {
                    Padding::Explicit(args.pair_value("padding", v, loc).unwrap_or((0, 0)))
                }
            };
            Op::Conv(Conv {
                out,
                kernel,
                stride: args.pair("stride", (1, 1)),
                padding,
                dilation: args.pair("dilation", (1, 1)),
                groups: args.int("groups", 1),
                bias: args.boolean("bias", true),
            })
        }
        "max_pool" | "avg_pool" => {
            let kind = if op_name == "max_pool" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            };
            let kernel = args.required_pair("kernel");
            let padding = match args.find("padding") {
                Some((v @ RawValue::Word(_), loc)) => {
                    let msg = format!(
                        "{}: pools take an integer or a pair (h, w) as `padding`, not {}; `same`/`valid` are for conv",
                        args.prefix(),
                        v.describe()
                    );
                    args.diags.push(Diag::new(loc, msg));
                    (0, 0)
                }
                _ => args.pair("padding", (0, 0)),
            };
            Op::Pool(Pool {
                kind,
                kernel,
                stride: args.pair("stride", kernel),
                padding,
                dilation: args.pair("dilation", (1, 1)),
                ceil_mode: args.boolean("ceil_mode", false),
                count_include_pad: args.boolean("count_include_pad", true),
            })
        }
        "global_avg_pool" => Op::GlobalAvgPool,
        "global_max_pool" => Op::GlobalMaxPool,
        "flatten" => Op::Flatten,
        "linear" => Op::Linear {
            out: args.required_int("out"),
            bias: args.boolean("bias", true),
        },
        "batch_norm" => Op::BatchNorm {
            eps: args.float("eps", 1e-5),
        },
        "relu" => Op::Act(Activation::Relu),
        "relu6" => Op::Act(Activation::Relu6),
        "tanh" => Op::Act(Activation::Tanh),
        "sigmoid" => Op::Act(Activation::Sigmoid),
        "leaky_relu" => Op::Act(Activation::LeakyRelu(args.float("slope", 0.01))),
        "softmax" => Op::Softmax,
        "dropout" => Op::Dropout {
            p: args.float("p", 0.5),
        },
        "identity" => Op::Identity,
        "silu" => Op::Act(Activation::Silu),
        "hardswish" => Op::Act(Activation::HardSwish),
        "hardsigmoid" => Op::Act(Activation::HardSigmoid),
        "gelu" => Op::Act(Activation::Gelu),
        "add" => Op::Merge(Merge::Add),
        "mul" => Op::Merge(Merge::Mul),
        "concat" => Op::Merge(Merge::Concat),
        "adaptive_avg_pool" | "adaptive_max_pool" => Op::AdaptivePool {
            kind: if op_name == "adaptive_max_pool" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            },
            out: args.required_pair("out"),
        },
        "upsample" => lower_upsample(&mut args),
        "conv_transpose" => {
            let out = args.required_int("out");
            let kernel = args.required_pair("kernel");
            let padding = match args.find("padding") {
                Some((v @ RawValue::Word(_), loc)) => {
                    let msg = format!(
                        "{}: conv_transpose takes an integer or a pair (h, w) as `padding`, not {}",
                        args.prefix(),
                        v.describe()
                    );
                    args.diags.push(Diag::new(loc, msg));
                    (0, 0)
                }
                _ => args.pair("padding", (0, 0)),
            };
            Op::ConvTranspose(ConvTranspose {
                out,
                kernel,
                stride: args.pair("stride", (1, 1)),
                padding,
                output_padding: args.pair("output_padding", (0, 0)),
                dilation: args.pair("dilation", (1, 1)),
                groups: args.int("groups", 1),
                bias: args.boolean("bias", true),
            })
        }
        "slice" => Op::Slice {
            start: args.required_int("start"),
            end: args.required_int("end"),
        },
        "channel_shuffle" => Op::ChannelShuffle {
            groups: args.required_int("groups"),
        },
        _ => unreachable!("op names are checked against OPS above"),
    };
    let mut arg_locs: Vec<(String, Loc)> =
        args.given.iter().map(|(k, _, l)| (k.clone(), *l)).collect();
    if merge && inline && !refs.names.is_empty() {
        arg_locs.push(("from".to_string(), refs.names[0].1));
    }
    let pair_args = args.pairs.clone();
    diags.extend(args.diags);
    if diags.is_empty() {
        Ok((
            Layer {
                name,
                named,
                index,
                op,
                loc: raw.loc,
                arg_locs,
                pair_args,
                inputs: Vec::new(),
            },
            refs,
        ))
    } else {
        Err(diags)
    }
}

fn lower_upsample(args: &mut Args<'_>) -> Op {
    let size = match (args.find("scale"), args.find("size")) {
        (Some(_), Some((_, loc))) => {
            let msg = format!("{}: give `scale` or `size`, not both", args.prefix());
            args.diags.push(Diag::new(loc, msg));
            UpSize::Scale((1, 1))
        }
        (None, None) => {
            let msg = format!(
                "{}: needs `scale` (an integer factor) or `size` (the output size)",
                args.prefix()
            );
            args.diags.push(Diag::new(args.layer_loc, msg));
            UpSize::Scale((1, 1))
        }
        (Some(_), None) => UpSize::Scale(args.pair("scale", (1, 1))),
        (None, Some(_)) => UpSize::Size(args.pair("size", (1, 1))),
    };
    let modes = ["nearest", "bilinear", "linear"];
    let mode = match args.find("mode") {
        None => UpMode::Nearest,
        Some((RawValue::Word(w), loc)) => match w.as_str() {
            "nearest" => UpMode::Nearest,
            "bilinear" => UpMode::Bilinear,
            "linear" => UpMode::Linear,
            other => {
                let msg = format!(
                    "{}: `mode` must be nearest, bilinear or linear, not \"{other}\"{}",
                    args.prefix(),
                    did_you_mean(other, &modes)
                );
                args.diags.push(Diag::new(loc, msg));
                UpMode::Nearest
            }
        },
        Some((v, loc)) => {
            args.type_error("mode", loc, "nearest, bilinear or linear", v);
            UpMode::Nearest
        }
    };
    let align_corners = args.boolean("align_corners", false);
    if mode == UpMode::Nearest {
        if let Some((_, loc)) = args.find("align_corners") {
            let msg = format!(
                "{}: `align_corners` only applies to bilinear and linear modes, not nearest (leave it out)",
                args.prefix()
            );
            args.diags.push(Diag::new(loc, msg));
        }
    }
    Op::Upsample(Upsample {
        size,
        mode,
        align_corners,
    })
}
