//! The `cnn` model compiler as a plain library: it reads a network description, infers
//! every shape, rejects impossible architectures with errors that name the layer and the
//! numbers, and generates a struct whose `forward` is a straight line of kernel calls into
//! `cnn-runtime`. The `cnn_model!` macro (crate `cnn-macros`) is [`expand`] and nothing
//! else; [`check_toml`] runs the front end on a TOML description without any proc-macro
//! context (tools, tests, fuzzing).
//!
//! The stages, one module each, with one IR (`ir`) between them:
//!
//! | stage | module | knows |
//! |---|---|---|
//! | parse | `parse::inline`, `parse::toml` | syntax only: tokens or TOML into a raw form |
//! | lower | `lower` | op and argument names, types, defaults, index naming → IR |
//! | check | `check` | rules that need no shapes (sizes ≥ 1, eps > 0, unique names) |
//! | infer | `shape` | PyTorch's shape arithmetic, params and MACs |
//! | plan | `plan` | kernel choice, fusion, arena assignment |
//! | emit | `codegen`, `summary` | Rust tokens and the summary table |
//!
//! Every stage is a plain function, unit-tested without a proc-macro context; all
//! problems of a description are collected and reported in one compile, beside stub
//! items so the user sees our messages and no cascade. See `README.md` in this crate for
//! how to add an op.
//!
//! The public API is these two functions; the stages are private.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::quote;

mod check;
mod codegen;
mod emit;
mod graph;
mod ir;
mod lower;
mod parse;
mod place;
mod plan;
mod shape;
mod suggest;
mod summary;
mod weights;

#[cfg(test)]
mod tests;

use ir::{Diag, Loc};
use parse::inline::Header;

/// Where a description came from: how its locations turn into `syn::Error`s.
enum Source {
    Inline,
    File { display: String, lit: syn::LitStr },
}

fn to_error(diag: &Diag, source: &Source) -> syn::Error {
    match (&diag.loc, source) {
        (Loc::Span(start, end), _) => {
            let mut tokens = quote::quote_spanned!(*start=> a);
            tokens.extend(quote::quote_spanned!(*end=> b));
            syn::Error::new_spanned(tokens, &diag.msg)
        }
        (Loc::File { line, col }, Source::File { display, lit }) => {
            syn::Error::new(lit.span(), format!("{display}:{line}:{col}: {}", diag.msg))
        }
        (Loc::File { line, col }, Source::Inline) => {
            syn::Error::new(Span::call_site(), format!("{line}:{col}: {}", diag.msg))
        }
    }
}

/// Everything the front end learned about a valid description.
struct Compiled {
    model: ir::Model,
    shapes: Vec<shape::LayerShape>,
    plan: plan::Plan,
}

/// [`front_end_with`] with the default options.
fn front_end(raw: &parse::RawModel) -> Result<Compiled, Vec<Diag>> {
    front_end_with(raw, plan::Options::default())
}

/// Parse → lower → check → infer → plan (with `opts`), collecting every diagnostic.
fn front_end_with(raw: &parse::RawModel, opts: plan::Options) -> Result<Compiled, Vec<Diag>> {
    let (model, mut diags) = lower::lower(raw);
    diags.extend(check::check(&model));
    // A layer with a problem stops shape inference there (what follows would only echo it).
    let blocked: Vec<usize> = diags.iter().filter_map(|d| d.layer).collect();
    let input_ok = model
        .input
        .as_ref()
        .is_some_and(|i| i.iter().all(|v| *v >= 1));
    let (shapes, shape_diag) = if input_ok {
        shape::infer(&model, &blocked)
    } else {
        (Vec::new(), None)
    };
    diags.extend(shape_diag);
    if !diags.is_empty() {
        // Report in the order of the description: the whole and `input` first.
        diags.sort_by_key(|d| d.layer.map_or(0, |i| i + 1));
        return Err(diags);
    }
    if shapes.len() != model.layers.len() || model.layers.is_empty() {
        return Err(vec![Diag::new(
            model.body_loc,
            "internal error: shapes were not inferred for every layer",
        )]);
    }
    let plan = plan::plan(&model, &shapes, opts);
    Ok(Compiled {
        model,
        shapes,
        plan,
    })
}

fn read_file(lit: &syn::LitStr, base: &Path) -> Result<(String, PathBuf), syn::Error> {
    let rel = lit.value();
    let path = base.join(&rel);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((text, path.canonicalize().unwrap_or(path))),
        Err(e) => Err(syn::Error::new(
            lit.span(),
            format!(
                "cannot read the model file `{rel}` ({}): {e}; paths are relative to the crate's CARGO_MANIFEST_DIR",
                path.display()
            ),
        )),
    }
}

/// Resolves a `#[weights = ..]` path (relative to `CARGO_MANIFEST_DIR`) to an absolute one.
fn read_weights(lit: &syn::LitStr, base: &Path) -> Result<String, syn::Error> {
    let path = base.join(lit.value());
    match path.canonicalize() {
        Ok(p) if p.is_file() => Ok(p.to_string_lossy().into_owned()),
        _ => Err(syn::Error::new(
            lit.span(),
            format!(
                "cannot read the weight file `{}` ({}); paths are relative to the crate's CARGO_MANIFEST_DIR",
                lit.value(),
                path.display()
            ),
        )),
    }
}

/// Checks an embedded weight file as strictly as `from_safetensors` will load it, with
/// the runtime's own loader, so a mismatch is a compile error naming the key; returns
/// the tensors.
fn check_weights(
    lit: &syn::LitStr,
    path: &str,
    generated: &weights::Weights,
) -> Result<Vec<Vec<f32>>, syn::Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| syn::Error::new(lit.span(), format!("cannot read `{}`: {e}", lit.value())))?;
    // The loader wants `'static` specs, as generated code has them; these few strings
    // live for the rest of this compiler invocation.
    let specs: Vec<cnn_runtime::load::TensorSpec> = generated
        .specs
        .iter()
        .map(|(key, shape)| cnn_runtime::load::TensorSpec {
            key: Box::leak(key.clone().into_boxed_str()),
            shape: Box::leak(shape.clone().into_boxed_slice()),
        })
        .collect();
    let ignored: Vec<&str> = generated.ignored.iter().map(String::as_str).collect();
    match cnn_runtime::load::load_tensors(&bytes, &specs, &ignored) {
        Ok(t) => Ok(t),
        Err(e) => Err(syn::Error::new(
            lit.span(),
            format!("weights `{}` do not fit the model: {e}", lit.value()),
        )),
    }
}

/// The whole `cnn_model!` macro: the tokens inside `cnn_model! { .. }` in, the generated
/// items (or `compile_error!`s beside stub items) out.
///
/// `#[file = ..]` and `#[weights = ..]` paths resolve against the `CARGO_MANIFEST_DIR`
/// environment variable (the invoking crate's directory while a macro expands; the
/// current directory when it is unset). Outside a proc-macro context the result's spans
/// are `proc_macro2`'s fallback spans.
pub fn expand(input: TokenStream) -> TokenStream {
    let base = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    expand_in(input, &base)
}

/// Checks a model description in the TOML format (`docs/LANGUAGE.md`) as `cnn_model!`
/// with `#[file = ..]` would: parse, lower, check, shape inference and planning, with no
/// proc-macro context. It never panics, whatever the text.
///
/// Returns the `summary()` table the model would have (named `Model`), or every problem
/// found, each as `line:col: message` (`message` alone when it has no position) in the
/// order of the description; the list is never empty.
///
/// ```
/// let toml = "input = [1, 8, 8]\n\
///             [[layers]]\nname = \"c\"\nop = \"conv\"\nout = 2\nkernel = 3\n";
/// let table = cnn_compiler::check_toml(toml).unwrap();
/// assert!(table.contains("[2, 6, 6]"));
///
/// let errors = cnn_compiler::check_toml(&toml.replace("kernel = 3", "kernel = 9")).unwrap_err();
/// assert!(errors[0].contains("layer `c` (conv)"), "{errors:?}");
/// ```
pub fn check_toml(text: &str) -> Result<String, Vec<String>> {
    let message = |d: &Diag| match d.loc {
        Loc::File { line, col } => format!("{line}:{col}: {}", d.msg),
        Loc::Span(..) => d.msg.clone(),
    };
    let raw = parse::toml::parse(text).map_err(|d| vec![message(&d)])?;
    match front_end(&raw) {
        Ok(c) => {
            let (_, weights) = codegen::steps(&c.model, &c.shapes, &c.plan);
            Ok(summary::render(
                "Model",
                &c.model,
                &c.shapes,
                &c.plan,
                weights.bytes(),
            ))
        }
        Err(diags) => Err(diags.iter().map(message).collect()),
    }
}

/// The whole macro as a plain function of tokens and the directory files resolve from.
fn expand_in(input: TokenStream, base: &Path) -> TokenStream {
    let header: Header = match syn::parse2(input) {
        Ok(h) => h,
        Err(e) => return e.to_compile_error(),
    };
    let item = codegen::Item {
        attrs: &header.attrs,
        vis: &header.vis,
        ident: &header.ident,
    };
    let fail = |errors: Vec<syn::Error>, item: &codegen::Item<'_>| {
        let mut iter = errors.into_iter();
        let mut combined = iter.next().expect("fail is called with at least one error");
        for e in iter {
            combined.combine(e);
        }
        let errors = combined.to_compile_error();
        let stub = codegen::fallback(item);
        quote!(#errors #stub)
    };
    let (raw, source, tracked) = match (&header.file, &header.body) {
        (Some(lit), None) => {
            let (text, path) = match read_file(lit, base) {
                Ok(x) => x,
                Err(e) => return fail(vec![e], &item),
            };
            let source = Source::File {
                display: lit.value(),
                lit: lit.clone(),
            };
            let tracked = path.to_string_lossy().into_owned();
            match parse::toml::parse(&text) {
                Ok(raw) => (raw, source, Some(tracked)),
                Err(d) => return fail(vec![to_error(&d, &source)], &item),
            }
        }
        (None, Some((body, span))) => match parse::inline::parse_body(body.clone(), *span) {
            Ok(raw) => (raw, Source::Inline, None),
            Err(d) => return fail(vec![to_error(&d, &Source::Inline)], &item),
        },
        (Some(lit), Some(_)) => {
            return fail(
                vec![syn::Error::new(
                    lit.span(),
                    "give the model either inline `{ .. }` or with #[file = ..] and `struct Name;`, not both",
                )],
                &item,
            )
        }
        (None, None) => {
            return fail(
                vec![syn::Error::new(
                    header.ident.span(),
                    "no model: write the layers inline `struct Name { input: [C, H, W], .. }` or add #[file = \"model.toml\"]",
                )],
                &item,
            )
        }
    };
    let opts = plan::Options {
        winograd: header.allows_winograd(),
    };
    match front_end_with(&raw, opts) {
        Ok(c) => {
            let (calls, weights) = codegen::steps(&c.model, &c.shapes, &c.plan);
            let text = summary::render(
                &header.ident.to_string(),
                &c.model,
                &c.shapes,
                &c.plan,
                weights.bytes(),
            );
            // `#[weights = ..]`: checked by the runtime's loader, then packed here.
            let mut packed = None;
            if let Some(lit) = &header.weights {
                let path = match read_weights(lit, base) {
                    Ok(path) => path,
                    Err(e) => return fail(vec![e], &item),
                };
                match check_weights(lit, &path, &weights) {
                    Ok(t) => packed = Some((path, lit.value(), weights::pack_all(&weights, &t))),
                    Err(e) => {
                        let mut out = fail(vec![e], &item);
                        out.extend(quote!(
                            const _: &[u8] = ::core::include_bytes!(#path);
                        ));
                        return out;
                    }
                }
            }
            codegen::generate(
                &item,
                &c.shapes,
                &c.plan,
                (&text, &summary::step_infos(&c.model, &c.shapes, &c.plan)),
                (calls, weights),
                tracked.as_deref(),
                packed
                    .as_ref()
                    .map(|(path, shown, parts)| codegen::Embedded { path, shown, parts }),
            )
        }
        Err(diags) => {
            let errors = diags.iter().map(|d| to_error(d, &source)).collect();
            let mut out = fail(errors, &item);
            if let Some(path) = tracked {
                // Still track the file, so fixing it triggers a rebuild.
                out.extend(quote!(
                    const _: &[u8] = ::core::include_bytes!(#path);
                ));
            }
            out
        }
    }
}
