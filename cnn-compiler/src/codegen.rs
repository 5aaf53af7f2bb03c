//! Stage 6, codegen: the struct, its weight loading and `forward` as Rust tokens.
//!
//! Generated code is O(layers): one kernel call per planned step, every dimension a
//! literal const-generic argument, weights never emitted as tokens. Runtime items are
//! named through the facade (`::cnn::__private::rt`), so a user crate needs `cnn` only.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use syn::{Attribute, Ident, Visibility};

use crate::ir::{Activation, Model, Op, Shape};
use crate::plan::Plan;
use crate::shape::LayerShape;

/// What codegen needs besides the model: the struct's name, visibility, attributes.
pub struct Item<'a> {
    /// Attributes passed through (doc comments, ...).
    pub attrs: &'a [Attribute],
    /// Visibility.
    pub vis: &'a Visibility,
    /// Name.
    pub ident: &'a Ident,
}

/// Total arena bytes kept on the stack; must equal `cnn_runtime::scratch::STACK_LIMIT`
/// (a unit test checks).
pub const STACK_ARENA_LIMIT: usize = 1 << 20;

pub(crate) fn rt() -> TokenStream {
    quote!(::cnn::__private::rt)
}

pub(crate) fn lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

/// The struct field of a layer's weights: `p_` and the name, a `.` written `__` and a
/// `-` written `_h_` (`layer1.0.conv1` -> `p_layer1__0__conv1`).
pub(crate) fn field_name(name: &str) -> Ident {
    let mut s = String::from("p_");
    for ch in name.chars() {
        match ch {
            '.' => s.push_str("__"),
            '-' => s.push_str("_h_"),
            c => s.push(c),
        }
    }
    format_ident!("{}", s)
}

pub(crate) fn act_tokens(act: Option<Activation>) -> TokenStream {
    let rt = rt();
    match act {
        None => quote!(#rt::Act::Identity),
        Some(Activation::Relu) => quote!(#rt::Act::Relu),
        Some(Activation::Relu6) => quote!(#rt::Act::Relu6),
        Some(Activation::Tanh) => quote!(#rt::Act::Tanh),
        Some(Activation::Sigmoid) => quote!(#rt::Act::Sigmoid),
        Some(Activation::LeakyRelu(s)) => {
            let s = Literal::f32_suffixed(s as f32);
            quote!(#rt::Act::LeakyRelu(#s))
        }
        Some(Activation::Silu) => quote!(#rt::Act::Silu),
        Some(Activation::HardSwish) => quote!(#rt::Act::HardSwish),
        Some(Activation::HardSigmoid) => quote!(#rt::Act::HardSigmoid),
        Some(Activation::Gelu) => quote!(#rt::Act::Gelu),
    }
}

fn nested_type(shape: Shape) -> TokenStream {
    match shape {
        Shape::Chw(c, h, w) => {
            let (c, h, w) = (lit(c), lit(h), lit(w));
            quote!([[[f32; #w]; #h]; #c])
        }
        Shape::Cl(c, l) => {
            let (c, l) = (lit(c), lit(l));
            quote!([[f32; #l]; #c])
        }
        Shape::Vec(n) => {
            let n = lit(n);
            quote!([f32; #n])
        }
    }
}

fn nested_zero(shape: Shape) -> TokenStream {
    match shape {
        Shape::Chw(c, h, w) => {
            let (c, h, w) = (lit(c), lit(h), lit(w));
            quote!([[[0.0f32; #w]; #h]; #c])
        }
        Shape::Cl(c, l) => {
            let (c, l) = (lit(c), lit(l));
            quote!([[0.0f32; #l]; #c])
        }
        Shape::Vec(n) => {
            let n = lit(n);
            quote!([0.0f32; #n])
        }
    }
}

fn flat(shape: Shape, value: TokenStream, mutable: bool) -> TokenStream {
    match (shape, mutable) {
        (Shape::Chw(..), false) => quote!(#value.as_flattened().as_flattened()),
        (Shape::Chw(..), true) => quote!(#value.as_flattened_mut().as_flattened_mut()),
        (Shape::Cl(..), false) => quote!(#value.as_flattened()),
        (Shape::Cl(..), true) => quote!(#value.as_flattened_mut()),
        (Shape::Vec(_), false) => quote!(&#value[..]),
        (Shape::Vec(_), true) => quote!(&mut #value[..]),
    }
}

/// The weights one step needs, its struct field, and how to build it from the loaded
/// tensors (`t[i]` in the order of the spec list).
pub(crate) struct Weights {
    specs: Vec<(String, Vec<usize>)>,
    ignored: Vec<String>,
    pub(crate) fields: Vec<(Ident, TokenStream, TokenStream)>,
}

impl Weights {
    pub(crate) fn tensor(&mut self, key: String, shape: Vec<usize>) -> TokenStream {
        let i = lit(self.specs.len());
        self.specs.push((key, shape));
        quote!(&t[#i])
    }

    /// The `bias` and folded `bn` arguments of a `*Params::from_torch` call: `Some(&t[i])`
    /// for a bias of `bias_len` values, `Some(&Affine::from_batch_norm(..))` for layer `bn`.
    pub(crate) fn bias_and_bn(
        &mut self,
        model: &Model,
        shapes: &[LayerShape],
        name: &str,
        bias_len: Option<usize>,
        bn: Option<usize>,
    ) -> (TokenStream, TokenStream) {
        let bias = match bias_len {
            Some(n) => {
                let b = self.tensor(format!("{name}.bias"), vec![n]);
                quote!(::core::option::Option::Some(#b))
            }
            None => quote!(::core::option::Option::None),
        };
        let bn = match bn {
            Some(j) => {
                let a = self.batch_norm(model, shapes, j);
                quote!(::core::option::Option::Some(&#a))
            }
            None => quote!(::core::option::Option::None),
        };
        (bias, bn)
    }

    pub(crate) fn batch_norm(
        &mut self,
        model: &Model,
        shapes: &[LayerShape],
        layer: usize,
    ) -> TokenStream {
        let rt = rt();
        let name = &model.layers[layer].name;
        let (c, _) = shapes[layer].input.channels_and_plane();
        let Op::BatchNorm { eps } = model.layers[layer].op else {
            unreachable!("planned batch norms are batch_norm layers")
        };
        let w = self.tensor(format!("{name}.weight"), vec![c]);
        let b = self.tensor(format!("{name}.bias"), vec![c]);
        let m = self.tensor(format!("{name}.running_mean"), vec![c]);
        let v = self.tensor(format!("{name}.running_var"), vec![c]);
        self.ignored.push(format!("{name}.num_batches_tracked"));
        let eps = Literal::f64_suffixed(eps);
        quote!(#rt::kernels::norm::Affine::from_batch_norm(#w, #b, #m, #v, #eps))
    }
}

/// What codegen produced: the tokens, and the weight file's expected contents.
pub struct Generated {
    /// The struct and its impls.
    pub tokens: TokenStream,
    /// `(key, shape)` of every tensor the weight file must hold, in load order.
    pub specs: Vec<(String, Vec<usize>)>,
    /// Keys that may be present and are ignored (`num_batches_tracked`).
    pub ignored: Vec<String>,
}

/// Generates the struct and its impls. `tracked` is the model file to track for rebuilds;
/// `embedded` the absolute path of a `#[weights = ..]` file (already checked).
pub fn generate(
    item: &Item<'_>,
    model: &Model,
    shapes: &[LayerShape],
    plan: &Plan,
    summary: &str,
    tracked: Option<&str>,
    embedded: Option<(&str, &str)>,
) -> Generated {
    let rt = rt();
    let Item { attrs, vis, ident } = item;
    let input_shape = shapes[0].input;
    let output_shape = shapes.last().expect("a checked model has a layer").output;
    let in_len = lit(input_shape.len());
    let out_len = lit(output_shape.len());
    let params: usize = shapes.iter().map(|s| s.params).sum();
    let macs: usize = shapes.iter().map(|s| s.macs).sum();
    let params = lit(params);
    let macs = lit(macs);
    let arena_bytes = lit(plan.arena * 4);
    let in_dims = input_shape.dims().into_iter().map(lit);
    let out_dims = output_shape.dims().into_iter().map(lit);
    let input_ty = nested_type(input_shape);
    let output_ty = nested_type(output_shape);
    let output_zero = nested_zero(output_shape);
    let flat_in = flat(input_shape, quote!(input), false);
    let flat_out = flat(output_shape, quote!(output), true);

    let mut weights = Weights {
        specs: Vec::new(),
        ignored: Vec::new(),
        fields: Vec::new(),
    };
    let mut calls = Vec::new();
    for step in &plan.steps {
        calls.push(crate::emit::step(step, model, shapes, &mut weights));
    }

    // Activations: a stack arena up to the runtime's limit, else this thread's scratch.
    let on_stack = plan.arena * 4 <= STACK_ARENA_LIMIT;
    let mut arenas = Vec::new();
    if plan.arena > 0 {
        let n = lit(plan.arena);
        if on_stack {
            arenas.push(quote!(let mut arena = [0.0f32; #n];));
        } else {
            arenas.push(quote! {
                let mut scratch = #rt::scratch::Scratch::take(#n);
                let arena = scratch.as_mut_slice();
            });
        }
    }

    let field_defs = weights.fields.iter().map(|(f, ty, _)| quote!(#f: #ty));
    let field_inits = weights.fields.iter().map(|(f, _, init)| quote!(#f: #init));
    let no_weights = weights.fields.is_empty();
    let (struct_body, struct_init) = if no_weights {
        (quote!({ _weights: () }), quote!({ _weights: () }))
    } else {
        (quote!({ #(#field_defs,)* }), quote!({ #(#field_inits,)* }))
    };
    let spec_items = weights.specs.iter().map(|(key, shape)| {
        let dims = shape.iter().map(|d| lit(*d));
        quote!(#rt::load::TensorSpec { key: #key, shape: &[#(#dims),*] })
    });
    let ignored = &weights.ignored;
    let track = tracked.map(|path| {
        quote!(
            const _: &[u8] = ::core::include_bytes!(#path);
        )
    });
    let name_str = ident.to_string();
    let embedded = embedded.map(|(path, shown)| {
        let doc = format!(
            "The weights embedded at compile time from `{shown}` (checked against the architecture when the macro expanded)."
        );
        quote! {
            impl #ident {
                #[doc = #doc]
                pub const EMBEDDED_WEIGHTS: &'static [u8] = ::core::include_bytes!(#path);

                /// The model with the weights embedded at compile time, built on first use
                /// (weights repacked once) and shared by every caller and thread.
                pub fn embedded() -> &'static #ident {
                    static MODEL: ::std::sync::OnceLock<::std::boxed::Box<#ident>> =
                        ::std::sync::OnceLock::new();
                    MODEL.get_or_init(|| {
                        match <#ident as #rt::Model>::from_safetensors(#ident::EMBEDDED_WEIGHTS) {
                            ::core::result::Result::Ok(model) => model,
                            // The macro ran this very check on these very bytes.
                            ::core::result::Result::Err(e) => ::core::panic!("embedded weights: {e}"),
                        }
                    })
                }
            }
        }
    });

    let tokens = quote! {
        #(#attrs)*
        #vis struct #ident #struct_body

        #track

        impl #ident {
            /// The per-layer table (name, op, output shape, parameters, MACs, kernel),
            /// computed when the macro expanded.
            pub const SUMMARY: &'static str = #summary;

            /// The per-layer table: name, op, output shape, parameters, MACs, and the
            /// kernel that runs the layer; totals and activation memory.
            pub fn summary() -> &'static str {
                Self::SUMMARY
            }
        }

        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name_str)
                    .field("input", &<Self as #rt::Model>::INPUT_SHAPE)
                    .field("output", &<Self as #rt::Model>::OUTPUT_SHAPE)
                    .field("params", &<Self as #rt::Model>::PARAMS)
                    .finish_non_exhaustive()
            }
        }

        impl #rt::Model for #ident {
            type Input = #input_ty;
            type Output = #output_ty;
            const INPUT_SHAPE: &'static [usize] = &[#(#in_dims),*];
            const OUTPUT_SHAPE: &'static [usize] = &[#(#out_dims),*];
            const INPUT_LEN: usize = #in_len;
            const OUTPUT_LEN: usize = #out_len;
            const PARAMS: usize = #params;
            const MACS: usize = #macs;
            const ARENA_BYTES: usize = #arena_bytes;
            const WEIGHTS: &'static [#rt::load::TensorSpec] = &[#(#spec_items),*];

            fn from_safetensors(
                bytes: &[u8],
            ) -> ::core::result::Result<::std::boxed::Box<Self>, #rt::LoadError> {
                const IGNORED: &[&str] = &[#(#ignored),*];
                let t = #rt::load::load_tensors(bytes, <Self as #rt::Model>::WEIGHTS, IGNORED)?;
                let _ = &t;
                ::core::result::Result::Ok(::std::boxed::Box::new(Self #struct_init))
            }

            fn forward(&self, input: &Self::Input) -> Self::Output {
                let mut output = #output_zero;
                <Self as #rt::Model>::forward_raw(self, #flat_in, #flat_out);
                output
            }

            #[inline(always)]
            fn forward_body(&self, input: &[f32], output: &mut [f32]) {
                let input = &input[..#in_len];
                let output = &mut output[..#out_len];
                #(#arenas)*
                #(#calls)*
            }

            fn summary() -> &'static str {
                Self::SUMMARY
            }
        }

        #embedded
    };
    Generated {
        tokens,
        specs: weights.specs,
        ignored: weights.ignored,
    }
}

/// Stub items emitted beside the errors of a rejected description, so the user sees our
/// messages rather than a cascade of "cannot find type".
pub fn fallback(item: &Item<'_>) -> TokenStream {
    let rt = rt();
    let Item { attrs, vis, ident } = item;
    quote! {
        #(#attrs)*
        #vis struct #ident { _invalid: () }

        impl #ident {
            /// Unavailable: the description has errors.
            pub const SUMMARY: &'static str = "";
            /// Unavailable: the description has errors.
            pub fn summary() -> &'static str { "" }
        }

        impl #rt::Model for #ident {
            type Input = [[[f32; 1]; 1]; 1];
            type Output = [f32; 1];
            const INPUT_SHAPE: &'static [usize] = &[];
            const OUTPUT_SHAPE: &'static [usize] = &[];
            const INPUT_LEN: usize = 0;
            const OUTPUT_LEN: usize = 0;
            const PARAMS: usize = 0;
            const MACS: usize = 0;
            const ARENA_BYTES: usize = 0;
            const WEIGHTS: &'static [#rt::load::TensorSpec] = &[];
            fn from_safetensors(
                _: &[u8],
            ) -> ::core::result::Result<::std::boxed::Box<Self>, #rt::LoadError> {
                ::core::unreachable!()
            }
            fn forward(&self, _: &Self::Input) -> Self::Output {
                ::core::unreachable!()
            }
            fn forward_body(&self, _: &[f32], _: &mut [f32]) {
                ::core::unreachable!()
            }
            fn summary() -> &'static str {
                ""
            }
        }
    }
}
