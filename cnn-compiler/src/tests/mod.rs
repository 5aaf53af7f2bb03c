//! Unit tests of the front end, run without a proc-macro context.

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use proptest::prelude::*;

use crate::ir::{Model, Shape};
use crate::parse::inline::Header;
use crate::shape::{conv_out, pool_out, Axis, AxisError};
use crate::{expand_in as expand, front_end, front_end_with, parse, Compiled};

mod concat;
mod fusion;
mod slice;
mod team;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compile_toml(text: &str) -> Result<Compiled, Vec<crate::ir::Diag>> {
    let raw = parse::toml::parse(text).map_err(|d| vec![d])?;
    front_end(&raw)
}

fn compile_inline(tokens: TokenStream) -> Result<Compiled, Vec<crate::ir::Diag>> {
    let header: Header = syn::parse2(tokens).expect("header parses");
    let opts = crate::plan::Options {
        winograd: header.allows_winograd(),
    };
    let (body, span) = header.body.expect("inline body");
    let raw = parse::inline::parse_body(body, span).map_err(|d| vec![d])?;
    front_end_with(&raw, opts)
}

fn lowered_inline(tokens: TokenStream) -> Model {
    let header: Header = syn::parse2(tokens).expect("header parses");
    let (body, span) = header.body.expect("inline body");
    let raw = parse::inline::parse_body(body, span).expect("inline parses");
    let (model, diags) = crate::lower::lower(&raw);
    assert!(diags.is_empty(), "{diags:?}");
    model
}

/// The PyTorch conformance cases and the exporter's fixtures.
fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    for dir in ["tests/conformance/cases", "tests/exported", "tests/cases"] {
        let dir = repo().join(dir);
        v.extend(
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| p.join("model.toml").is_file()),
        );
    }
    v.sort();
    assert!(
        v.len() >= 55,
        "expected 49 cases + 6 fixtures, found {}",
        v.len()
    );
    v
}

/// Per-layer output shapes and parameter counts match PyTorch's (case.json), for every case.
#[test]
fn shapes_and_params_match_torch_for_every_case() {
    for case in cases() {
        let text = std::fs::read_to_string(case.join("model.toml")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("case.json")).unwrap())
                .unwrap();
        let c =
            compile_toml(&text).unwrap_or_else(|d| panic!("{}: rejected: {d:?}", case.display()));
        let layers = json["layers"].as_array().unwrap();
        assert_eq!(layers.len(), c.model.layers.len(), "{}", case.display());
        for ((want, layer), shape) in layers.iter().zip(&c.model.layers).zip(&c.shapes) {
            assert_eq!(
                want["name"].as_str().unwrap(),
                layer.name,
                "{}",
                case.display()
            );
            assert_eq!(want["op"].as_str().unwrap(), layer.op.keyword());
            let dims: Vec<usize> = want["output_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(
                dims,
                shape.output.dims(),
                "{} layer {}",
                case.display(),
                layer.name
            );
            assert_eq!(
                want["params"].as_u64().unwrap() as usize,
                shape.params,
                "{} layer {}",
                case.display(),
                layer.name
            );
        }
        let total: usize = c.shapes.iter().map(|s| s.params).sum();
        assert_eq!(json["params"].as_u64().unwrap() as usize, total);
    }
}

/// The generated inline spelling of every case lowers to the same IR as its TOML file.
#[test]
fn inline_and_toml_spellings_give_identical_ir() {
    let path = repo().join("tests/generated/conformance_models.rs");
    let file = syn::parse_file(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut compared = 0;
    for item in file.items {
        let syn::Item::Mod(m) = item else { continue };
        let mut toml_model = None;
        let mut inline_model = None;
        for inner in m.content.unwrap().1 {
            let syn::Item::Macro(mac) = inner else {
                continue;
            };
            let header: Header = syn::parse2(mac.mac.tokens.clone()).unwrap();
            match (&header.file, header.body.is_some()) {
                (Some(lit), false) => {
                    let text = std::fs::read_to_string(repo().join(lit.value())).unwrap();
                    let raw = parse::toml::parse(&text).unwrap();
                    let (model, diags) = crate::lower::lower(&raw);
                    assert!(diags.is_empty());
                    toml_model = Some(model);
                }
                _ => inline_model = Some(lowered_inline(mac.mac.tokens.clone())),
            }
        }
        let (t, i) = (toml_model.unwrap(), inline_model.unwrap());
        assert!(t.same_as(&i), "case {}:\n{t:#?}\n{i:#?}", m.ident);
        compared += 1;
    }
    assert!(compared >= 49, "compared {compared}");
}

/// The LeNet-5 of docs/LANGUAGE.md, both spellings, side by side.
#[test]
fn lenet5_spec_spellings_match() {
    let inline = lowered_inline(quote::quote! {
        /// LeNet-5 (LeCun et al., 1998).
        pub struct LeNet5 {
            input: [1, 32, 32],
            conv1: conv(6, kernel = 5),
            tanh,
            pool1: avg_pool(2),
            conv2: conv(16, kernel = 5),
            tanh,
            avg_pool(2),
            flatten,
            fc1: linear(120),
            tanh,
            fc2: linear(84),
            tanh,
            fc3: linear(10),
        }
    });
    let text = std::fs::read_to_string(
        repo().join("tests/conformance/cases/lenet5_spec_example/model.toml"),
    )
    .unwrap();
    let (toml, _) = crate::lower::lower(&parse::toml::parse(&text).unwrap());
    assert!(inline.same_as(&toml));
}

/// Expands every `*.toml` of `dir` (relative to the repository) through the whole macro,
/// as a user would see it, and checks that it is rejected with a message that names the
/// file and the layer its first line (`# expect: <layer> ...`) names. `skip` files are
/// returned unexpanded. Returns how many were checked.
fn check_rejected(dir: &str, skip: &[&str]) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.extension().is_none_or(|e| e != "toml") || skip.contains(&file.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text.lines().next().unwrap();
        let layer = expect
            .strip_prefix("# expect: ")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let rel = format!("{dir}/{file}");
        let out = expand(quote::quote!(#[file = #rel] pub struct Bad;), &repo()).to_string();
        assert!(out.contains("compile_error"), "{rel} was accepted");
        assert!(out.contains(&rel), "{rel}: message lacks the file: {out}");
        assert!(
            out.contains(&format!("layer `{layer}`")),
            "{rel}: message does not name layer `{layer}`: {out}"
        );
        n += 1;
    }
    n
}

/// Every invalid description of the conformance suite is rejected, naming the file and
/// its layer — but the one that the format's §7 made valid, which now compiles.
#[test]
fn every_invalid_description_is_rejected_naming_the_layer() {
    assert_eq!(
        check_rejected("tests/conformance/invalid", &[SUPERSEDED]),
        19
    );
    let text =
        std::fs::read_to_string(repo().join("tests/conformance/invalid").join(SUPERSEDED)).unwrap();
    assert!(
        compile_toml(&text).is_ok(),
        "{SUPERSEDED} is valid since §7"
    );
}

/// Every invalid graph / §7 / §8 description (`tests/cases_invalid`) is rejected, naming
/// its layer.
#[test]
fn every_invalid_graph_description_is_rejected_naming_the_layer() {
    let n = check_rejected("tests/cases_invalid", &[]);
    assert!(n >= 20, "only {n} invalid graph descriptions");
}

/// The shared suite's one invalid description that the format's §7 made valid (softmax
/// over the channels of a [C, H, W] tensor).
const SUPERSEDED: &str = "softmax_on_spatial.toml";

/// Messages carry the numbers a user needs.
#[test]
fn messages_name_layer_op_and_numbers() {
    let err = |tokens: TokenStream| -> String {
        match compile_inline(tokens) {
            Ok(_) => panic!("accepted"),
            Err(d) => d
                .iter()
                .map(|d| d.msg.clone())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    let m = err(
        quote::quote!(struct M { input: [1, 8, 8], conv1: conv(4, kernel = 5), conv3: conv(4, kernel = 5) }),
    );
    assert!(
        m.contains("layer `conv3` (conv): a 5x5 kernel (dilation 1) does not fit the 4x4 input padded by 0"),
        "{m}"
    );
    let m = err(quote::quote!(struct M { input: [16, 5, 5], fc1: linear(120) }));
    assert!(
        m.contains("layer `fc1` (linear): needs a vector input but gets [16, 5, 5]; add `flatten` before it"),
        "{m}"
    );
    let m = err(quote::quote!(struct M { input: [1, 8, 8], c: conv(4, kernel = 3, strides = 2) }));
    assert!(
        m.contains("unknown argument `strides` (did you mean `stride`?)"),
        "{m}"
    );
    let m = err(quote::quote!(struct M { input: [1, 8, 8], c: conv2d(4, kernel = 3) }));
    assert!(
        m.contains("unknown op `conv2d` (did you mean `conv`?)"),
        "{m}"
    );
}

/// All independent problems are reported in one go.
#[test]
fn independent_errors_are_all_reported() {
    let diags = compile_inline(quote::quote!(struct M {
        input: [1, 8, 8],
        a: conv(0, kernel = 3),
        b: max_pool(2, ceil_mode = 3),
        c: batch_norm(eps = 0),
        d: dropout(p = 1.5),
        a: relu,
    }))
    .err()
    .expect("rejected");
    let text: Vec<String> = diags.iter().map(|d| d.msg.clone()).collect();
    for layer in [
        "`a` (conv)",
        "`b` (max_pool)",
        "`c` (batch_norm)",
        "`d` (dropout)",
        "`a` (relu)",
    ] {
        assert!(
            text.iter().any(|m| m.contains(layer)),
            "{layer} missing from {text:?}"
        );
    }
}

/// Output sizes against a table produced by PyTorch 2.15 (`nn.Conv2d`, `nn.MaxPool2d`),
/// including ceil-mode windows that are added and dropped again.
#[test]
fn axis_arithmetic_matches_torch() {
    // (kind, size, kernel, stride, padding, dilation, ceil_mode, torch's output size)
    type Row = (&'static str, i64, i64, i64, i64, i64, bool, i64);
    let table: &[Row] = &[
        ("conv", 32, 5, 1, 0, 1, false, 28),
        ("conv", 28, 3, 2, 1, 1, false, 14),
        ("conv", 7, 3, 2, 0, 1, false, 3),
        ("conv", 8, 3, 3, 1, 2, false, 2),
        ("conv", 5, 5, 1, 0, 1, false, 1),
        ("conv", 9, 8, 1, 1, 1, false, 4),
        ("conv", 17, 4, 3, 2, 1, false, 6),
        ("conv", 10, 2, 5, 0, 3, false, 2),
        ("conv", 1, 1, 1, 0, 1, false, 1),
        ("conv", 12, 3, 1, 1, 4, false, 6),
        ("pool", 28, 2, 2, 0, 1, false, 14),
        ("pool", 7, 2, 2, 0, 1, true, 4),
        ("pool", 7, 3, 2, 1, 1, true, 4),
        ("pool", 6, 3, 2, 1, 1, true, 4),
        ("pool", 5, 3, 3, 1, 1, true, 2),
        ("pool", 8, 2, 3, 1, 1, true, 3),
        ("pool", 10, 3, 2, 1, 1, true, 6),
        ("pool", 13, 4, 2, 2, 1, true, 8),
        ("pool", 9, 3, 2, 0, 2, true, 3),
        ("pool", 9, 3, 2, 1, 2, false, 4),
        ("pool", 1, 1, 2, 0, 1, true, 1),
        ("pool", 4, 2, 3, 1, 1, true, 2),
        ("pool", 3, 2, 2, 1, 1, true, 2),
        ("pool", 11, 3, 4, 1, 1, true, 3),
        ("pool", 5, 2, 2, 1, 1, true, 3),
        ("pool", 6, 2, 4, 1, 1, true, 2),
    ];
    for &(kind, size, kernel, stride, pad, dilation, ceil, want) in table {
        let a = Axis {
            size,
            kernel,
            stride,
            pad_before: pad,
            pad_after: pad,
            dilation,
        };
        let got = if kind == "conv" {
            conv_out(a)
        } else {
            pool_out(a, ceil)
        };
        assert_eq!(got, Ok(want), "{kind} {a:?} ceil={ceil}");
    }
    // Negative numerators are a true floor: the kernel does not fit.
    let a = Axis {
        size: 4,
        kernel: 5,
        stride: 3,
        pad_before: 0,
        pad_after: 0,
        dilation: 1,
    };
    assert_eq!(conv_out(a), Err(AxisError::DoesNotFit));
    assert_eq!(pool_out(a, true), Err(AxisError::DoesNotFit));
}

/// `same` padding splits the total with the extra cell bottom/right, as PyTorch does.
#[test]
fn same_padding_split() {
    let c = compile_inline(quote::quote!(struct M {
        input: [1, 9, 10],
        c: conv(2, kernel = (4, 2), padding = same, dilation = (1, 3)),
    }))
    .ok()
    .unwrap();
    assert_eq!(c.shapes[0].output, Shape::Chw(2, 9, 10));
    // kernel 4, dilation 1: total 3 -> top 1, bottom 2; kernel 2, dilation 3: total 3 -> 1, 2
    assert_eq!(c.shapes[0].pads, (1, 2, 1, 2));
}

/// The expansion of LeNet-5, so changes to generated code show up in review.
#[test]
fn lenet5_expansion_snapshot() {
    let tokens = expand(
        quote::quote!(
            /// LeNet-5.
            pub struct LeNet5;
        ),
        &repo(),
    );
    // Without a body or file it is an error; with the file it is the model.
    assert!(tokens.to_string().contains("compile_error"));
    let tokens = expand(
        quote::quote!(
            /// LeNet-5.
            #[file = "models/lenet5.toml"]
            pub struct LeNet5;
        ),
        &repo(),
    );
    let file: syn::File = syn::parse2(tokens).expect("expansion parses as items");
    let mut text = prettyplease::unparse(&file);
    // The tracked path is absolute; keep the snapshot machine-independent.
    let root = repo().canonicalize().unwrap_or_else(|_| repo());
    text = text.replace(&root.to_string_lossy().to_string(), "$ROOT");
    text = text.replace(&repo().to_string_lossy().to_string(), "$ROOT");
    insta::assert_snapshot!("lenet5_expansion", text);
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..40).prop_map(|v| v.to_string()),
        (0i64..6, 0i64..6).prop_map(|(a, b)| format!("[{a}, {b}]")),
        Just("\"same\"".to_string()),
        Just("\"valid\"".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        (-1.0f64..2.0).prop_map(|f| format!("{f:?}")),
    ]
}

fn arb_layer() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec![
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
        "slice",
        "channel_shuffle",
        "conv2d",
    ]);
    let keys = prop::sample::select(vec![
        "out",
        "kernel",
        "stride",
        "padding",
        "dilation",
        "groups",
        "bias",
        "ceil_mode",
        "count_include_pad",
        "eps",
        "slope",
        "p",
        "start",
        "end",
        "strides",
    ]);
    (
        ops,
        prop::option::of(prop::sample::select(vec!["a", "b", "c", "1", "x_y"])),
        prop::collection::vec((keys, arb_value()), 0..5),
    )
        .prop_map(|(op, name, args)| {
            let mut s = String::from("[[layers]]\n");
            if let Some(n) = name {
                s += &format!("name = \"{n}\"\n");
            }
            s += &format!("op = \"{op}\"\n");
            let mut seen = std::collections::HashSet::new();
            for (k, v) in args {
                if seen.insert(k) {
                    s += &format!("{k} = {v}\n");
                }
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Random descriptions never panic the front end: each is accepted with consistent
    /// shapes, or rejected with messages that name a layer.
    #[test]
    fn front_end_never_panics(
        input in prop::option::of((0i64..5, 0i64..40, 0i64..40)),
        layers in prop::collection::vec(arb_layer(), 0..8),
        garbage in prop::option::of("[a-z=\\[\\]\"0-9 \n]{0,20}"),
    ) {
        let mut text = String::new();
        if let Some((c, h, w)) = input {
            text += &format!("input = [{c}, {h}, {w}]\n");
        }
        for l in &layers {
            text += l;
        }
        if let Some(g) = garbage {
            text += &g;
        }
        match parse::toml::parse(&text) {
            Err(d) => prop_assert!(d.msg.contains("TOML"), "{}", d.msg),
            Ok(raw) => match front_end(&raw) {
                Ok(c) => {
                    prop_assert_eq!(c.shapes.len(), c.model.layers.len());
                    for pair in c.shapes.windows(2) {
                        prop_assert_eq!(pair[0].output, pair[1].input);
                    }
                    for s in &c.shapes {
                        prop_assert!(s.output.len() >= 1);
                    }
                    // Codegen works on anything accepted.
                    let item_ident = syn::Ident::new("M", proc_macro2::Span::call_site());
                    let vis = syn::Visibility::Inherited;
                    let item = crate::codegen::Item { attrs: &[], vis: &vis, ident: &item_ident };
                    let steps = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
                    let summary = crate::summary::render("M", &c.model, &c.shapes, &c.plan, steps.1.bytes());
                    let infos = crate::summary::step_infos(&c.model, &c.shapes, &c.plan);
                    let tokens = crate::codegen::generate(&item, &c.shapes, &c.plan, (&summary, &infos), steps, None, None);
                    prop_assert!(syn::parse2::<syn::File>(tokens).is_ok());
                }
                Err(diags) => {
                    prop_assert!(!diags.is_empty());
                    for d in diags {
                        prop_assert!(
                            d.msg.contains("layer `") || d.msg.contains("no layers") || d.msg.contains("top-level key") || d.msg.contains("must hold tables"),
                            "{}", d.msg
                        );
                    }
                }
            },
        }
    }

    /// Mutating one token of a valid inline model never panics either.
    #[test]
    fn inline_mutations_never_panic(pos in 0usize..200, replacement in prop::sample::select(vec![",", "(", "0", "-1", "same", ":", "=", "[1]", "1.5", "r#type"])) {
        let base = "input: [1, 32, 32], conv1: conv(6, kernel = 5), tanh, pool1: avg_pool(2), conv2: conv(16, kernel = 5, padding = (1, 2)), tanh, avg_pool(2, ceil_mode = true), flatten, fc1: linear(120), fc3: linear(10), softmax";
        let mut text = base.to_string();
        let pos = pos.min(text.len());
        if text.is_char_boundary(pos) {
            text.insert_str(pos, replacement);
        }
        if let Ok(body) = text.parse::<TokenStream>() {
            let tokens = quote::quote!(struct M { #body });
            let _ = expand(tokens, &repo());
        }
    }
}

#[test]
fn stack_limit_matches_the_runtime() {
    assert_eq!(
        crate::codegen::STACK_ARENA_LIMIT,
        cnn_runtime::scratch::STACK_LIMIT
    );
}

/// The language reference in the repository (`docs/LANGUAGE.md`) documents every op the
/// compiler knows, each under a heading of its own.
#[test]
fn language_reference_documents_every_op() {
    let path = repo().join("docs/LANGUAGE.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the language reference {} is missing: {e}", path.display()));
    let headings: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    let missing: Vec<&&str> = crate::lower::OPS
        .iter()
        .filter(|op| !headings.iter().any(|h| h.contains(&format!("`{op}`"))))
        .collect();
    assert!(
        missing.is_empty(),
        "ops without a section in docs/LANGUAGE.md: {missing:?}"
    );
    for word in ["from", "concat", "ARENA_BYTES", "[C, L]", "state_dict"] {
        assert!(
            text.contains(word),
            "docs/LANGUAGE.md never mentions {word}"
        );
    }
}

/// The exported torchvision models (`tests/torchvision/`) compile, with PyTorch's
/// parameter count; their arena is smaller than the sum of all activations.
#[test]
fn torchvision_models_compile_with_torch_params() {
    let dir = repo().join("tests/torchvision");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        if !case.join("model.toml").is_file() {
            continue;
        }
        let text = std::fs::read_to_string(case.join("model.toml")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("case.json")).unwrap())
                .unwrap();
        let c =
            compile_toml(&text).unwrap_or_else(|d| panic!("{}: rejected: {d:?}", case.display()));
        let params: usize = c.shapes.iter().map(|s| s.params).sum();
        assert_eq!(
            json["params"].as_u64().unwrap() as usize,
            params,
            "{}",
            case.display()
        );
        assert!(c.plan.arena < c.plan.unshared, "{}", case.display());
        println!(
            "{}: {} layers, {} steps, arena {} floats, unshared {} floats",
            case.file_name().unwrap().to_string_lossy(),
            c.model.layers.len(),
            c.plan.steps.len(),
            c.plan.arena,
            c.plan.unshared
        );
        n += 1;
    }
    assert!(n >= 7, "found {n} torchvision models");
}

/// One layer of a random graph over channels `4`: mostly shape-preserving ops, merges
/// reading the previous and an earlier layer, occasional `from` and shape changes.
fn graph_layer(i: usize, pick: u32, r1: u32, r2: u32) -> String {
    let earlier = |r: u32| {
        if i == 0 || r.is_multiple_of(5) {
            "input".to_string()
        } else {
            format!("l{}", r as usize % i)
        }
    };
    let prev = if i == 0 {
        "input".to_string()
    } else {
        format!("l{}", i - 1)
    };
    let body = match pick % 18 {
        0 | 1 => "op = \"conv\"\nout = 4\nkernel = 3\npadding = \"same\"".to_string(),
        2 => "op = \"relu\"".to_string(),
        3 => "op = \"batch_norm\"".to_string(),
        4 => "op = \"gelu\"".to_string(),
        5 => "op = \"identity\"".to_string(),
        6 | 7 => format!("op = \"add\"\nfrom = [\"{prev}\", \"{}\"]", earlier(r1)),
        8 => format!("op = \"mul\"\nfrom = [\"{}\", \"{prev}\"]", earlier(r1)),
        9 => format!(
            "op = \"concat\"\nfrom = [\"{prev}\", \"{}\", \"{}\"]",
            earlier(r1),
            earlier(r2)
        ),
        10 => "op = \"conv\"\nout = 4\nkernel = 1".to_string(),
        11 => format!("op = \"relu\"\nfrom = \"{}\"", earlier(r1)),
        12 => "op = \"softmax\"".to_string(),
        13 => "op = \"max_pool\"\nkernel = 2".to_string(),
        14 => "op = \"upsample\"\nscale = 2".to_string(),
        // A view of the previous or an earlier layer's channels (a concat of two gives
        // back four channels), or a shuffle.
        16 => format!(
            "op = \"slice\"\nfrom = \"{}\"\nstart = {}\nend = {}",
            earlier(r1),
            r2 % 2 * 2,
            r2 % 2 * 2 + 2
        ),
        17 => "op = \"channel_shuffle\"\ngroups = 2".to_string(),
        _ => "op = \"dropout\"".to_string(),
    };
    format!("[[layers]]\nname = \"l{i}\"\n{body}\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    /// Random graphs (references, merges, the §7 ops, slices and shuffles, inputs of rank 1
    /// to 3) never panic
    /// the front end; every accepted one gets a plan whose regions stay inside their
    /// buffers, never write over what the same step reads (but in place), and whose code
    /// parses.
    #[test]
    fn graphs_never_panic_and_plans_are_sound(
        input in prop::sample::select(vec!["[4, 8, 8]", "[4, 16]", "[4]", "[4, 6, 5]"]),
        layers in prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 1..12),
    ) {
        let mut text = format!("input = {input}\n");
        for (i, (pick, r1, r2)) in layers.iter().enumerate() {
            text += &graph_layer(i, *pick, *r1, *r2);
        }
        let raw = parse::toml::parse(&text).expect("generated TOML parses");
        match front_end(&raw) {
            Ok(c) => {
                let in_len = c.shapes[0].input.len();
                let out_len = c.shapes.last().unwrap().output.len();
                let limit = |b: crate::plan::Buf| match b {
                    crate::plan::Buf::Input => in_len,
                    crate::plan::Buf::Output => out_len,
                    crate::plan::Buf::Arena => c.plan.arena,
                };
                for step in &c.plan.steps {
                    prop_assert!(step.dst.buf != crate::plan::Buf::Input, "{text}\n{step:?}");
                    let dst = (step.dst.offset, step.dst.offset + step.output.len());
                    prop_assert!(dst.1 <= limit(step.dst.buf), "{text}\n{step:?}");
                    for (k, (r, s)) in step.srcs.iter().zip(&step.inputs).enumerate() {
                        let src = (r.offset, r.offset + s.len());
                        prop_assert!(src.1 <= limit(r.buf), "{text}\n{step:?}");
                        let in_place = k == 0 && *r == step.dst;
                        if r.buf == step.dst.buf && !in_place {
                            prop_assert!(src.1 <= dst.0 || dst.1 <= src.0, "{text}\n{step:?}");
                        }
                    }
                    // A kernel's working memory: in the arena, apart from what it reads
                    // and writes.
                    if let Some((r, len)) = step.scratch {
                        prop_assert!(r.buf == crate::plan::Buf::Arena, "{text}\n{step:?}");
                        let sc = (r.offset, r.offset + len);
                        prop_assert!(sc.1 <= c.plan.arena, "{text}\n{step:?}");
                        let uses = step.srcs.iter().zip(step.inputs.iter().map(|s| s.len()));
                        for (u, l) in uses.chain([(&step.dst, step.output.len())]) {
                            if u.buf == r.buf {
                                prop_assert!(sc.1 <= u.offset || u.offset + l <= sc.0, "{text}\n{step:?}");
                            }
                        }
                    }
                }
                let item_ident = syn::Ident::new("M", proc_macro2::Span::call_site());
                let vis = syn::Visibility::Inherited;
                let item = crate::codegen::Item { attrs: &[], vis: &vis, ident: &item_ident };
                let steps = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
                let summary = crate::summary::render("M", &c.model, &c.shapes, &c.plan, steps.1.bytes());
                let infos = crate::summary::step_infos(&c.model, &c.shapes, &c.plan);
                let tokens = crate::codegen::generate(&item, &c.shapes, &c.plan, (&summary, &infos), steps, None, None);
                prop_assert!(syn::parse2::<syn::File>(tokens).is_ok());
            }
            Err(diags) => {
                prop_assert!(!diags.is_empty());
                for d in diags {
                    prop_assert!(d.msg.starts_with("layer `"), "{}", d.msg);
                }
            }
        }
    }
}

/// Transposed convolutions take the convolution engine where they can: strides dividing
/// the kernel, one convolution over every phase (`[gemm]`); otherwise, with a tap for
/// every phase, one convolution per phase (`[gemm xN]`, dilated ones too, each phase's
/// convolution at its dilation); groups, a phase without taps (also by a dilation
/// sharing a factor with the stride), the phase kernel. The scratch holds every phase's
/// planes, and the code calls one `conv2d` per phase and `phases_to_space`.
#[test]
fn conv_transposes_pick_their_path() {
    use crate::plan::{CtPath, Kernel};
    let c = compile_inline(quote::quote!(struct M {
        input: [8, 10, 12],
        a: conv_transpose(6, kernel = 4, stride = 2, padding = 1),
        a_bn: batch_norm,
        relu,
        b: conv_transpose(5, kernel = 3, stride = 2, padding = 1, output_padding = 1),
        b_bn: batch_norm,
        relu,
        c: conv_transpose(4, kernel = [3, 5], stride = [2, 3], padding = 1),
        d: conv_transpose(4, kernel = 3, stride = 2, groups = 2),
        e: conv_transpose(3, kernel = 3, dilation = 2),
        f: conv_transpose(2, kernel = 1, stride = 2),
        g: conv_transpose(2, kernel = 3, stride = 2, padding = 1, dilation = 2),
        h: conv_transpose(2, kernel = 3, stride = 2, dilation = 3),
    }))
    .unwrap();
    let paths: Vec<_> = c
        .plan
        .steps
        .iter()
        .map(|s| match s.kernel {
            Kernel::ConvTranspose { path, .. } => (path, crate::plan::describe(s, &c.model)),
            k => panic!("{k:?}"),
        })
        .collect();
    let want = [
        (CtPath::Phases, "conv_transpose2d[gemm]+bn+relu"),
        (CtPath::Split, "conv_transpose2d[gemm x4]+bn+relu"),
        (CtPath::Split, "conv_transpose2d[gemm x6]"),
        (CtPath::Kernel, "conv_transpose2d"),
        (CtPath::Split, "conv_transpose2d[gemm x1]"),
        (CtPath::Kernel, "conv_transpose2d"),
        (CtPath::Kernel, "conv_transpose2d"),
        (CtPath::Split, "conv_transpose2d[gemm x4]"),
    ];
    let got: Vec<_> = paths.iter().map(|(p, d)| (*p, d.as_str())).collect();
    assert_eq!(got, want);
    // Step b: 20x24 -> 40x48, four phases of 20x24 planes, 5 channels each.
    let b = &c.plan.steps[1];
    assert_eq!(b.output, Shape::Chw(5, 40, 48));
    assert_eq!(b.scratch.map(|s| s.1), Some(4 * 5 * 20 * 24));
    // Step c: 40x48 -> 79x144 (k3 s2 p1, k5 s3 p1): 40x48 planes, six phases.
    assert_eq!(c.plan.steps[2].output, Shape::Chw(4, 79, 144));
    assert_eq!(c.plan.steps[2].scratch.map(|s| s.1), Some(6 * 4 * 40 * 48));
    let steps = crate::codegen::steps(&c.model, &c.shapes, &c.plan);
    let code = steps.0.steps[1].to_string();
    assert_eq!(code.matches("conv2d ::").count(), 4, "{code}");
    assert!(code.contains("phases_to_space"), "{code}");
    // Step e: one phase, the flipped 3x3 kernel at dilation 2, padded by 4 (the
    // const arguments end with stride, padding, dilation, groups).
    let code = steps.0.steps[4].to_string().replace(' ', "");
    assert!(code.contains("3,3,1,1,4,4,2,2,1>"), "{code}");
    // Step h (k3 s2 d3): phase (0, 0) taps {0, 2} at dilation 3, padded by 3.
    let code = steps.0.steps[7].to_string().replace(' ', "");
    assert!(code.contains("2,2,1,1,3,3,3,3,1>"), "{code}");
}

/// The macro's own attributes: a path string for `#[file]` and `#[weights]`, each at most
/// once, the error on the value or on the whole attribute.
#[test]
fn header_attribute_errors() {
    let err = |tokens: TokenStream| match syn::parse2::<Header>(tokens) {
        Ok(_) => panic!("parsed"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err(quote::quote!(
            #[file = 3]
            struct M;
        )),
        "expected a path string: #[file = \"path/to/file\"]"
    );
    assert_eq!(
        err(quote::quote!(
            #[weights]
            struct M;
        )),
        "expected #[weights = \"path/to/file\"]"
    );
    assert_eq!(
        err(quote::quote!(
            #[file = "a.toml"]
            #[file = "b.toml"]
            struct M;
        )),
        "#[file = ..] is given twice"
    );
    let h: Header = syn::parse2(quote::quote!(
        /// doc
        #[file = "a.toml"]
        #[weights = "w.safetensors"]
        #[derive(Debug)]
        pub struct M;
    ))
    .expect("parses");
    assert_eq!(
        h.file.as_ref().map(|l| l.value()).as_deref(),
        Some("a.toml")
    );
    assert_eq!(
        h.weights.as_ref().map(|l| l.value()).as_deref(),
        Some("w.safetensors")
    );
    assert!(h.allows_winograd());
    assert_eq!(
        h.attrs.len(),
        2,
        "the doc comment and the derive pass through"
    );
}
