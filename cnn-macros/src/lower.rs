//! Stage 2, lower: the raw form of either spelling into the IR.
//!
//! Resolves layer names (an unnamed layer is named by its 0-based index), looks ops up,
//! types each argument and fills in defaults. One function for both spellings, so the
//! inline and TOML forms of one model produce the identical IR. Range rules (stride ≥ 1,
//! eps > 0, ...) are the business of [`crate::check`]; shapes of [`crate::shape`].

use crate::ir::{Activation, Conv, Diag, Layer, Loc, Model, Op, Padding, Pair, Pool, PoolKind};
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
];

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
            Some(v) if v.len() == 3 => Some([v[0], v[1], v[2]]),
            _ => {
                diags.push(Diag::new(
                    *loc,
                    format!(
                        "layer `input`: `input` must be [C, H, W], three integers (channels, height, width), not {}",
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
    for (index, raw_layer) in raw.layers.iter().enumerate() {
        match lower_layer(raw_layer, index) {
            Ok(layer) => layers.push(layer),
            Err(d) => diags.extend(d.into_iter().map(|d| d.for_layer(index))),
        }
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
                Some(p) if p.len() == 2 && items.len() == 2 => Some((p[0], p[1])),
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

fn lower_layer(raw: &RawLayer, index: usize) -> Result<Layer, Vec<Diag>> {
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
    let (known, positional_key) = op_args(op_name);
    let mut args = Args {
        layer: &name,
        layer_loc: raw.loc,
        op: op_name,
        given: Vec::new(),
        diags: Vec::new(),
    };
    // Positional arguments.
    for (i, (value, loc)) in raw.positional.iter().enumerate() {
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
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!("; name it, one of: {}", known.join(", "))
                    }
                ),
            )),
        }
    }
    // Keyword arguments.
    for arg in &raw.args {
        if !known.contains(&arg.key.as_str()) {
            let hint = if known.is_empty() {
                format!("; {op_name} takes no arguments")
            } else {
                format!(
                    "{}; {op_name} takes {}",
                    did_you_mean(&arg.key, known),
                    known.join(", ")
                )
            };
            let also = match (arg.key.as_str(), op_name) {
                ("count_include_pad", "max_pool") => " (only avg_pool has it)",
                ("dilation", "avg_pool") => " (only max_pool and conv have it)",
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
        _ => unreachable!("op names are checked against OPS above"),
    };
    let arg_locs = args.given.iter().map(|(k, _, l)| (k.clone(), *l)).collect();
    diags.extend(args.diags);
    if diags.is_empty() {
        Ok(Layer {
            name,
            named,
            index,
            op,
            loc: raw.loc,
            arg_locs,
        })
    } else {
        Err(diags)
    }
}
