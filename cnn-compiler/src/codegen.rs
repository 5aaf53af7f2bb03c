//! Stage 6, codegen: the struct, its weight loading and `forward` as Rust tokens.
//!
//! Generated code is O(layers): one kernel call per planned step, every dimension a
//! literal const-generic argument, weights never emitted as tokens. Runtime items are
//! named through the facade (`::cnn::__private::rt`), so a user crate needs `cnn` only.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use syn::{Attribute, Ident, Visibility};

use crate::ir::{Activation, Model, Shape};
use crate::plan::{Buf, Part, Plan};
use crate::shape::LayerShape;
use crate::weights::Weights;
use cnn_runtime::buf::Parts;

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
pub const STACK_ARENA_LIMIT: usize = 4 << 10;

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
        None => quote!(#rt::Act::IDENTITY),
        Some(Activation::Relu) => quote!(#rt::Act::RELU),
        Some(Activation::Relu6) => quote!(#rt::Act::RELU6),
        Some(Activation::Tanh) => quote!(#rt::Act::TANH),
        Some(Activation::Sigmoid) => quote!(#rt::Act::SIGMOID),
        Some(Activation::LeakyRelu(s)) => {
            let s = Literal::f32_suffixed(s as f32);
            quote!(#rt::Act::leaky_relu(#s))
        }
        Some(Activation::Silu) => quote!(#rt::Act::SILU),
        Some(Activation::HardSwish) => quote!(#rt::Act::HARD_SWISH),
        Some(Activation::HardSigmoid) => quote!(#rt::Act::HARD_SIGMOID),
        Some(Activation::Gelu) => quote!(#rt::Act::GELU),
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

/// The kernel calls of `forward_body`.
pub struct Calls {
    /// One per planned step.
    pub steps: Vec<TokenStream>,
    /// With a team, one per team step: the call in the member's closure (on its rows).
    pub members: Vec<TokenStream>,
}

/// The kernel calls of `forward_body` and the weights they use.
pub fn steps(model: &Model, shapes: &[LayerShape], plan: &Plan) -> (Calls, Weights) {
    let mut weights = Weights::new();
    let (mut steps, mut members) = (Vec::new(), Vec::new());
    for (i, step) in plan.steps.iter().enumerate() {
        if let Some(part) = plan.team.as_ref().and_then(|t| t.parts.get(i)) {
            let (call, member) = crate::emit::step_and_member(step, model, shapes, &mut weights);
            // A step both members run whole makes its usual call.
            members.push(if *part == Part::Whole {
                call.clone()
            } else {
                member
            });
            steps.push(call);
        } else {
            steps.push(crate::emit::step(step, model, shapes, &mut weights));
        }
    }
    (Calls { steps, members }, weights)
}

/// The steps of `forward_body` after its timing mark: with a team (`plan.team`), its
/// steps as the team's closure (each member its rows, the exchanges between) and, when
/// no team can be formed, the same steps on this thread; then the rest.
fn forward_steps(plan: &Plan, calls: &Calls) -> TokenStream {
    let rt = rt();
    let Some(team) = &plan.team else {
        let calls = &calls.steps;
        return quote!(#(#calls #rt::profile::step();)*);
    };
    let (first, rest) = calls.steps.split_at(team.steps);
    let arena_len = lit(plan.arena);
    let halo = lit(team.halo);
    let rows = |r: &crate::plan::Rows| {
        let (c, h, w) = r.chw;
        let [off, c, h, w] = [r.offset, c, h, w].map(lit);
        quote!(#off, (#c, #h, #w))
    };
    let members = calls.members.iter().enumerate().map(|(i, call)| {
        let exchange = team.exchanges.iter().find(|e| e.after == i).map(|e| {
            let t = rows(&e.tensor);
            let (above, below) = (lit(e.above), lit(e.below));
            quote!(m.exchange(arena, #t, #above, #below);)
        });
        let reduce = team.reduces.iter().find(|r| r.after == i).map(|r| {
            let [off, c, hw] = [r.offset, r.c, r.hw].map(lit);
            quote!(m.reduce_mean(arena, #off, #c, #hw);)
        });
        quote! {
            #call
            if m.index() == 0 {
                #rt::profile::step();
            }
            #exchange
            #reduce
        }
    });
    // The buffer of the last step's tensor, and the output each member gets: the
    // model's (member 1 its own copy) when the team writes it, else none.
    let (merge_buf, team_output) = if team.merge_buf == Buf::Output {
        (quote!(output), quote!(output))
    } else {
        (quote!(arena), quote!(&mut []))
    };
    // (A team ending with a reduction leaves its means with both members: no merge.)
    let merge = team.merge.as_ref().map(|r| {
        let r = rows(r);
        quote!(m.merge(#merge_buf, #r);)
    });
    quote! {
        // Two threads: the first steps as two half images (`team`), else on this one.
        let team = #rt::team::run(#halo, arena, #team_output, &|m: &#rt::team::Member, arena: &mut [f32], output: &mut [f32]| {
            let arena = &mut arena[..#arena_len];
            let _ = &output;
            #(#members)*
            #merge
        });
        if !team {
            #(#first #rt::profile::step();)*
        }
        #(#rest #rt::profile::step();)*
    }
}

/// A `#[weights = ..]` file: its absolute path, the path as written, and the packed
/// parameters the macro computed from it (one [`Parts`] per field).
pub struct Embedded<'a> {
    /// Absolute path (tracked with `include_bytes!`).
    pub path: &'a str,
    /// The path as the user wrote it.
    pub shown: &'a str,
    /// Packed parameters per field.
    pub parts: &'a [Parts],
}

/// Generates the struct and its impls from the `summary()` text, the steps' infos
/// ([`crate::summary::step_infos`], the generated `STEPS`), their `calls` and `weights`.
/// `tracked` is the model file to track for rebuilds; `embedded` the checked and packed
/// `#[weights = ..]` file.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    item: &Item<'_>,
    shapes: &[LayerShape],
    plan: &Plan,
    (summary, steps): (&str, &[(String, String, usize)]),
    (calls, weights): (Calls, Weights),
    tracked: Option<&str>,
    embedded: Option<Embedded<'_>>,
) -> TokenStream {
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

    let arena_len = lit(plan.arena);
    let body = forward_steps(plan, &calls);
    let weight_bytes = lit(weights.bytes());
    // The target's band buffer (smaller without std), not the host's.
    let stack_bytes = if crate::plan::stack_bytes(plan) > 0 {
        quote!(#rt::kernels::ENGINE_STACK_BYTES)
    } else {
        quote!(0)
    };
    let field_defs = weights.fields.iter().map(|(f, b)| {
        let ty = b.ty();
        quote!(#f: #ty)
    });
    let field_inits = weights.fields.iter().map(|(f, b)| {
        let init = b.init();
        quote!(#f: #init)
    });
    let no_weights = weights.fields.is_empty();
    let (struct_body, struct_init) = if no_weights {
        (quote!({ _weights: () }), quote!({ _weights: () }))
    } else {
        (quote!({ #(#field_defs,)* }), quote!({ #(#field_inits,)* }))
    };
    let spec_items = weights.specs.iter().map(|(key, shape)| {
        let dims = shape.iter().map(|d| lit(*d));
        quote!(#rt::TensorSpec { key: #key, shape: &[#(#dims),*] })
    });
    let ignored = &weights.ignored;
    let step_items = steps.iter().map(|(layer, kernel, macs)| {
        let macs = lit(*macs);
        quote!(#rt::StepInfo { layer: #layer, kernel: #kernel, macs: #macs })
    });
    let track = tracked.map(|path| {
        quote!(
            const _: &[u8] = ::core::include_bytes!(#path);
        )
    });
    let name_str = ident.to_string();
    let embedded = embedded.map(|Embedded { path, shown, parts }| {
        let doc = format!(
            "The weights embedded at compile time from `{shown}` (checked against the architecture when the macro expanded), as the file holds them."
        );
        let (statics, init) = crate::weights::embedded_init(&weights, parts);
        quote! {
            impl #ident {
                #[doc = #doc]
                pub const EMBEDDED_WEIGHTS: &'static [u8] = ::core::include_bytes!(#path);

                /// The model with the weights embedded at compile time: packed (batch norm
                /// folded, panels laid out) when the macro expanded and stored in `static`s
                /// (`WEIGHT_BYTES` of read-only data), so this needs no heap, no file
                /// and no work at run time.
                pub fn embedded() -> &'static #ident {
                    #statics
                    static MODEL: #ident = #ident #init;
                    &MODEL
                }
            }
        }
    });

    // Loading from bytes exists when the runtime has `alloc` (decided by the `cnn`
    // crate's features, which the facade's `if_alloc!` knows and this macro does not).
    let load = quote! {
        ::cnn::__private::if_alloc! {
            fn from_safetensors(
                bytes: &[u8],
            ) -> ::core::result::Result<::cnn::__private::Box<Self>, #rt::LoadError> {
                const IGNORED: &[&str] = &[#(#ignored),*];
                let t = #rt::load::load_tensors(bytes, <Self as #rt::Model>::WEIGHTS, IGNORED)?;
                let _ = &t;
                ::core::result::Result::Ok(::cnn::__private::Box::new(Self #struct_init))
            }
        }
    };
    let tokens = quote! {
        #(#attrs)*
        #vis struct #ident #struct_body

        #track

        impl #ident {
            /// The per-layer table (name, op, output shape, parameters, MACs, kernel),
            /// computed when the macro expanded.
            pub const SUMMARY: &'static str = #summary;

            /// Floats of the activation arena (the model's `Arena` type is `Arena<ARENA_LEN>`):
            /// `static ARENA: cnn::ArenaCell<{ Net::ARENA_LEN }> = cnn::ArenaCell::new();`
            pub const ARENA_LEN: usize = #arena_len;

            /// The per-layer table: name, op, output shape, parameters, MACs, and the
            /// kernel that runs the layer; totals, weight and activation memory.
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
            type Arena = #rt::Arena<#arena_len>;
            const ARENA_BYTES: usize = #arena_bytes;
            const WEIGHT_BYTES: usize = #weight_bytes;
            const STACK_BYTES: usize = #stack_bytes;
            const WEIGHTS: &'static [#rt::TensorSpec] = &[#(#spec_items),*];
            const STEPS: &'static [#rt::StepInfo] = &[#(#step_items),*];

            #load

            fn forward(&self, input: &Self::Input) -> Self::Output {
                let mut output = #output_zero;
                <Self as #rt::Model>::forward_raw(self, #flat_in, #flat_out);
                output
            }

            fn forward_in(&self, input: &Self::Input, output: &mut Self::Output, arena: &mut Self::Arena) {
                let output = #flat_out;
                #rt::cpu::dispatch(self, #flat_in, output, arena.as_mut_slice());
            }

            #[inline]
            fn forward_raw(&self, input: &[f32], output: &mut [f32]) {
                #rt::arena::with_arena::<#arena_len, ()>(|arena| #rt::cpu::dispatch(self, input, output, arena));
            }

            #[inline(always)]
            fn forward_body(&self, input: &[f32], output: &mut [f32], arena: &mut [f32]) {
                let input = &input[..#in_len];
                let output = &mut output[..#out_len];
                let arena = &mut arena[..#arena_len];
                let _ = &arena;
                // Timing marks: nothing unless the runtime has the `profile` feature.
                #rt::profile::begin();
                #body
            }

            fn summary() -> &'static str {
                Self::SUMMARY
            }
        }

        #embedded
    };
    tokens
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
            pub const ARENA_LEN: usize = 0;
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
            type Arena = #rt::Arena<0>;
            const ARENA_BYTES: usize = 0;
            const WEIGHT_BYTES: usize = 0;
            const STACK_BYTES: usize = 0;
            const WEIGHTS: &'static [#rt::TensorSpec] = &[];
            ::cnn::__private::if_alloc! {
                fn from_safetensors(
                    _: &[u8],
                ) -> ::core::result::Result<::cnn::__private::Box<Self>, #rt::LoadError> {
                    ::core::unreachable!()
                }
            }
            fn forward(&self, _: &Self::Input) -> Self::Output {
                ::core::unreachable!()
            }
            fn forward_in(&self, _: &Self::Input, _: &mut Self::Output, _: &mut Self::Arena) {
                ::core::unreachable!()
            }
            fn forward_raw(&self, _: &[f32], _: &mut [f32]) {
                ::core::unreachable!()
            }
            fn forward_body(&self, _: &[f32], _: &mut [f32], _: &mut [f32]) {
                ::core::unreachable!()
            }
            fn summary() -> &'static str {
                ""
            }
        }
    }
}
