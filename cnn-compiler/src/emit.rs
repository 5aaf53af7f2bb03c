//! Stage 6b, emit: one planned step as Rust tokens — the slices it reads and writes,
//! and its kernel call. One emitter function per kind of step; [`step`] dispatches.
//!
//! Regions in the same buffer as the destination are borrowed together with
//! `arena::split` (disjoint by construction of the plan; checked by the runtime, a
//! handful of comparisons of constants per step); other buffers are borrowed directly.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::codegen::{act_tokens, field_name, lit, rt};
use crate::ir::{Activation, Merge, Model, Op, PoolKind, Shape, UpMode};
use crate::plan::{Buf, CtPath, Kernel, Step};
use crate::shape::{kernel_op, LayerShape};
use crate::weights::{Build, Kind, Weights};

/// The buffer's name in `forward_body`.
fn buf_name(buf: Buf) -> TokenStream {
    match buf {
        Buf::Input => quote!(input),
        Buf::Output => quote!(output),
        Buf::Arena => quote!(arena),
    }
}

/// A read bound by name: the slice's name, offset and length.
type NamedRead = (proc_macro2::Ident, usize, usize);

/// Binds `r0, r1, ..` (the step's reads), `w` (its destination) and, for a kernel with
/// working memory, `scratch`, then runs `body`. `skip_first` leaves the first read out
/// (it is the destination itself).
fn bind(step: &Step, skip_first: bool, body: TokenStream) -> TokenStream {
    let rt = rt();
    // The writes: the destination, and the scratch (always in the arena).
    let mut writes: Vec<(TokenStream, Buf, usize, usize)> =
        vec![(quote!(w), step.dst.buf, step.dst.offset, step.output.len())];
    if let Some((region, len)) = step.scratch {
        writes.push((quote!(scratch), region.buf, region.offset, len));
    }
    let mut lets = Vec::new();
    let mut reads_by_buf: Vec<(Buf, Vec<NamedRead>)> = Vec::new();
    for (k, (region, shape)) in step.srcs.iter().zip(&step.inputs).enumerate() {
        if k == 0 && skip_first {
            continue;
        }
        let name = format_ident!("r{}", k);
        let (o, l) = (region.offset, shape.len());
        if writes.iter().any(|(_, b, _, _)| *b == region.buf) {
            match reads_by_buf.iter_mut().find(|(b, _)| *b == region.buf) {
                Some((_, v)) => v.push((name, o, l)),
                None => reads_by_buf.push((region.buf, vec![(name, o, l)])),
            }
        } else {
            let b = buf_name(region.buf);
            let (o, e) = (lit(o), lit(o + l));
            lets.push(quote!(let #name: &[f32] = &#b[#o..#e];));
        }
    }
    // One borrow per written buffer, handing out its reads and writes together.
    let mut bufs: Vec<Buf> = Vec::new();
    for (_, b, _, _) in &writes {
        if !bufs.contains(b) {
            bufs.push(*b);
        }
    }
    for buf in bufs {
        let b = buf_name(buf);
        let here: Vec<&(TokenStream, Buf, usize, usize)> =
            writes.iter().filter(|(_, wb, _, _)| *wb == buf).collect();
        let reads = reads_by_buf
            .iter()
            .find(|(rb, _)| *rb == buf)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[]);
        let names = reads.iter().map(|(n, _, _)| n);
        let ranges = reads.iter().map(|(_, o, l)| {
            let (o, l) = (lit(*o), lit(*l));
            quote!((#o, #l))
        });
        let range = |o: usize, l: usize| {
            let (o, l) = (lit(o), lit(l));
            quote!((#o, #l))
        };
        match here.as_slice() {
            [(w0, _, o0, l0)] if reads.is_empty() => {
                let (o, e) = (lit(*o0), lit(*o0 + *l0));
                lets.push(quote!(let #w0: &mut [f32] = &mut #b[#o..#e];));
            }
            [(w0, _, o0, l0)] => {
                let r0 = range(*o0, *l0);
                lets.push(quote!(let ([#(#names),*], #w0) = #rt::arena::split(&mut #b[..], [#(#ranges),*], #r0);));
            }
            [(w0, _, o0, l0), (w1, _, o1, l1)] => {
                let (r0, r1) = (range(*o0, *l0), range(*o1, *l1));
                lets.push(quote!(let ([#(#names),*], #w0, #w1) = #rt::arena::split2(&mut #b[..], [#(#ranges),*], #r0, #r1);));
            }
            _ => unreachable!("a step writes at most two regions"),
        }
    }
    quote! {
        {
            #(#lets)*
            #body
        }
    }
}

/// The tokens of one step.
pub fn step(step: &Step, model: &Model, shapes: &[LayerShape], w: &mut Weights) -> TokenStream {
    step_and_member(step, model, shapes, w).0
}

/// The tokens of one step, and those of the same step in a team (`plan::team`), inside
/// the member's closure: the kernel's `_rows` form on the member's rows of the step's
/// output (`m.rows(H)`). Only the team's kinds of step have a row form; for the others
/// both are the same call. The step's weights are registered once.
pub fn step_and_member(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    w: &mut Weights,
) -> (TokenStream, TokenStream) {
    let both = |t: TokenStream| (t.clone(), t);
    match step.kernel {
        Kernel::Conv {
            layer,
            depthwise,
            winograd,
            bn,
            pool,
            residual,
            scale,
        } => conv(
            step,
            model,
            shapes,
            w,
            layer,
            (depthwise, winograd, pool.is_some(), residual, scale),
            bn,
        ),
        Kernel::ExpandDepthwise {
            expand,
            expand_bn,
            expand_act,
            dw,
            bn,
        } => expand_depthwise(
            step,
            model,
            shapes,
            w,
            (expand, expand_bn, expand_act),
            (dw, bn),
        ),
        Kernel::ConvTranspose { layer, path, bn } => {
            both(conv_transpose(step, model, shapes, w, layer, path, bn))
        }
        Kernel::Linear { layer, bn } => both(linear(step, model, shapes, w, layer, bn)),
        Kernel::Pool { layer } => pool(step, model, shapes, layer),
        Kernel::AdaptivePool { layer } => adaptive_pool(step, model, shapes, layer),
        Kernel::Upsample { layer } => both(upsample(step, model, shapes, layer)),
        Kernel::GlobalAvg | Kernel::GlobalMax => global_pool(step),
        Kernel::Affine { layer } => affine(step, model, shapes, w, layer),
        Kernel::Activation | Kernel::Softmax => both(elementwise(step)),
        Kernel::Binary { op, in_place } => both(binary(step, op, in_place)),
        Kernel::Copy => both(copy(step)),
        Kernel::ChannelShuffle { groups } => channel_shuffle(step, groups),
    }
}

/// The arguments a team member's call adds to a kernel's (`, m.rows(H)` with the
/// step's output rows `H`), and the kernel's name with `_rows` for it: `band` picks the
/// member's form.
fn row_form(step: &Step, name: &str, band: bool) -> (proc_macro2::Ident, TokenStream) {
    if band {
        let rows = lit(step.output.as_chw().1);
        (format_ident!("{name}_rows"), quote!(, m.rows(#rows)))
    } else {
        (format_ident!("{name}"), quote!())
    }
}

/// `(C, H, W)` of a shape as the kernels see it, as literals.
fn chw(shape: Shape) -> [proc_macro2::Literal; 3] {
    let (c, h, w) = shape.as_chw();
    [lit(c), lit(h), lit(w)]
}

#[allow(clippy::too_many_arguments)]
fn conv(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    w: &mut Weights,
    layer: usize,
    (depthwise, winograd, pool, residual, scale): (bool, Option<usize>, bool, bool, bool),
    bn: Option<usize>,
) -> (TokenStream, TokenStream) {
    let rt = rt();
    let l = &model.layers[layer];
    let Op::Conv(conv) = kernel_op(&l.op, model.is_1d()) else {
        unreachable!("planned convs are conv layers")
    };
    let (ci, h, wd) = shapes[layer].input.as_chw();
    let (o, oh, ow) = shapes[layer].output.as_chw();
    let (kh, kw) = (conv.kernel.0 as usize, conv.kernel.1 as usize);
    let (sh, sw) = (conv.stride.0 as usize, conv.stride.1 as usize);
    let (dh, dw) = (conv.dilation.0 as usize, conv.dilation.1 as usize);
    let g = conv.groups as usize;
    let (pt, _, pl, _) = shapes[layer].pads;
    let field = field_name(&l.name);
    let wshape = if model.is_1d() {
        vec![o, ci / g, kw]
    } else {
        vec![o, ci / g, kh, kw]
    };
    let weight = w.tensor(format!("{}.weight", l.name), wshape);
    let bias_bn = w.bias_and_bn(model, shapes, &l.name, conv.bias.then_some(o), bn);
    let act = act_tokens(step.act);
    let (cg, out, kh_, kw_) = (ci / g, o, kh, kw);
    let [ci, h, wd, o, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, g] =
        [ci, h, wd, o, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, g].map(lit);
    let kind = match winograd {
        Some(tile) => Kind::Winograd { out, c: cg, tile },
        None if depthwise => Kind::Depthwise {
            out,
            kh: kh_,
            kw: kw_,
        },
        None => Kind::Conv {
            out,
            cg,
            kh: kh_,
            kw: kw_,
        },
    };
    w.fields
        .push((field.clone(), Build::layer(kind, weight, bias_bn)));
    // Working memory where the plan has it (the direct convolutions' packing room).
    let scratch = if step.scratch.is_some() {
        quote!(scratch)
    } else {
        quote!(&mut [])
    };
    // The call, or with `band` a team member's: the kernel's `_rows` form on the
    // member's rows of the step's output (after a fused pool).
    let call = |band: bool| {
        let rows_of = |name: &str| row_form(step, name, band);
        let call = if winograd.is_some() {
            if residual {
                // The step's second source added before the activation.
                let (f, rows) = rows_of("winograd_conv3x3_residual");
                quote!(#rt::kernels::winograd::#f::<#ci, #h, #wd, #o, #oh, #ow, #pt, #pl, #dh, #dw>(r0, &self.#field, r1, w, scratch, #act #rows);)
            } else if pool {
                // The step's output is the pooled tensor (`Kernel::Conv { pool }`).
                let (f, rows) = rows_of("winograd_conv3x3_maxpool2");
                quote!(#rt::kernels::winograd::#f::<#ci, #h, #wd, #o, #oh, #ow, #pt, #pl>(r0, &self.#field, w, scratch, #act #rows);)
            } else {
                let (f, rows) = rows_of("winograd_conv3x3");
                quote!(#rt::kernels::winograd::#f::<#ci, #h, #wd, #o, #oh, #ow, #pt, #pl, #dh, #dw>(r0, &self.#field, w, scratch, #act #rows);)
            }
        } else if depthwise {
            let (f, rows) = rows_of("depthwise_conv2d");
            quote!(#rt::kernels::depthwise::#f::<#ci, #h, #wd, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dw>(r0, &self.#field, w, #act #rows);)
        } else if scale {
            // The step's second source is the per-channel scale, a third the residual;
            // the scaled weights in the working memory.
            if residual {
                let (f, rows) = rows_of("conv2d_scaled_residual");
                quote!(#rt::kernels::conv::#f::<#ci, #h, #wd, #o, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dw>(r0, &self.#field, r1, r2, w, scratch, #act #rows);)
            } else {
                let (f, rows) = rows_of("conv2d_scaled");
                quote!(#rt::kernels::conv::#f::<#ci, #h, #wd, #o, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dw>(r0, &self.#field, r1, w, scratch, #act #rows);)
            }
        } else if residual {
            // The step's second source added before the activation.
            let (f, rows) = rows_of("conv2d_residual");
            quote!(#rt::kernels::conv::#f::<#ci, #h, #wd, #o, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dw, #g>(r0, &self.#field, r1, w, #scratch, #act #rows);)
        } else if band {
            // A team member's rows (`conv2d_scratch`'s row form).
            let (_, rows) = rows_of("conv2d");
            quote!(#rt::kernels::conv::conv2d_rows::<#ci, #h, #wd, #o, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dw, #g>(r0, &self.#field, w, #scratch, #act #rows);)
        } else if step.scratch.is_some() {
            // Packing room for the channel tiles (`plan`: where it is free).
            quote!(#rt::kernels::conv::conv2d_scratch::<#ci, #h, #wd, #o, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dw, #g>(r0, &self.#field, w, scratch, #act);)
        } else {
            quote!(#rt::kernels::conv::conv2d::<#ci, #h, #wd, #o, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dw, #g>(r0, &self.#field, w, #act);)
        };
        bind(step, false, call)
    };
    (call(false), call(true))
}

/// A 1x1 convolution and the depthwise layer reading it, run band by band
/// (`Kernel::ExpandDepthwise`): both layers' weights, one call.
fn expand_depthwise(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    w: &mut Weights,
    (expand, expand_bn, expand_act): (usize, Option<usize>, Option<Activation>),
    (dw, bn): (usize, Option<usize>),
) -> (TokenStream, TokenStream) {
    let rt = rt();
    let (le, ld) = (&model.layers[expand], &model.layers[dw]);
    let (Op::Conv(ec), Op::Conv(dc)) = (&le.op, &ld.op) else {
        unreachable!("a fused pair is two conv layers")
    };
    let (c, h, wd) = shapes[expand].input.as_chw();
    let (e, oh, ow) = shapes[dw].output.as_chw();
    let (kh, kw) = (dc.kernel.0 as usize, dc.kernel.1 as usize);
    let (sh, sw) = (dc.stride.0 as usize, dc.stride.1 as usize);
    let (dh, dwl) = (dc.dilation.0 as usize, dc.dilation.1 as usize);
    let (pt, _, pl, _) = shapes[dw].pads;
    let (fe, fd) = (field_name(&le.name), field_name(&ld.name));
    let weight = w.tensor(format!("{}.weight", le.name), vec![e, c, 1, 1]);
    let bias_bn = w.bias_and_bn(model, shapes, &le.name, ec.bias.then_some(e), expand_bn);
    w.fields.push((
        fe.clone(),
        Build::layer(
            Kind::Conv {
                out: e,
                cg: c,
                kh: 1,
                kw: 1,
            },
            weight,
            bias_bn,
        ),
    ));
    let weight = w.tensor(format!("{}.weight", ld.name), vec![e, 1, kh, kw]);
    let bias_bn = w.bias_and_bn(model, shapes, &ld.name, dc.bias.then_some(e), bn);
    w.fields.push((
        fd.clone(),
        Build::layer(Kind::Depthwise { out: e, kh, kw }, weight, bias_bn),
    ));
    let (act1, act2) = (act_tokens(expand_act), act_tokens(step.act));
    let [c, h, wd, e, oh, ow, kh, kw, sh, sw, pt, pl, dh, dwl] =
        [c, h, wd, e, oh, ow, kh, kw, sh, sw, pt, pl, dh, dwl].map(lit);
    // The call, or with `band` a team member's: the row form, on its rows of the output.
    let call = |band: bool| {
        let (f, rows) = row_form(step, "expand_depthwise", band);
        let call = quote!(#rt::kernels::expand_depthwise::#f::<#c, #h, #wd, #e, #oh, #ow, #kh, #kw, #sh, #sw, #pt, #pl, #dh, #dwl>(r0, &self.#fe, #act1, &self.#fd, w, scratch, #act2 #rows););
        bind(step, false, call)
    };
    (call(false), call(true))
}

fn conv_transpose(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    w: &mut Weights,
    layer: usize,
    path: CtPath,
    bn: Option<usize>,
) -> TokenStream {
    let rt = rt();
    let l = &model.layers[layer];
    let Op::ConvTranspose(ct) = kernel_op(&l.op, model.is_1d()) else {
        unreachable!("planned transposed convs are conv_transpose layers")
    };
    let (ci, h, wd) = shapes[layer].input.as_chw();
    let (o, oh, ow) = shapes[layer].output.as_chw();
    let (kh, kw) = (ct.kernel.0 as usize, ct.kernel.1 as usize);
    let (sh, sw) = (ct.stride.0 as usize, ct.stride.1 as usize);
    let (dh, dw) = (ct.dilation.0 as usize, ct.dilation.1 as usize);
    let (ph, pw) = (ct.padding.0 as usize, ct.padding.1 as usize);
    let g = ct.groups as usize;
    let field = field_name(&l.name);
    let wshape = if model.is_1d() {
        vec![ci, o / g, kw]
    } else {
        vec![ci, o / g, kh, kw]
    };
    let weight = w.tensor(format!("{}.weight", l.name), wshape);
    let bias_bn = w.bias_and_bn(model, shapes, &l.name, ct.bias.then_some(o), bn);
    let act = act_tokens(step.act);
    if path == CtPath::Split {
        // One convolution per phase, each into its block of the scratch, then every
        // output put in place.
        let (mh, mw) =
            crate::plan::split_geometry(&ct, &shapes[layer]).expect("the plan checked the phases");
        let block = o * mh * mw;
        let mut calls = Vec::new();
        for ry in 0..sh {
            for rx in 0..sw {
                let taps = |k, s, p, d, r| {
                    cnn_runtime::kernels::conv_transpose::phase_taps(k, s, p, d, r)
                        .expect("the plan checked the phases")
                };
                let (ty, tx) = (taps(kh, sh, ph, dh, ry), taps(kw, sw, pw, dw, rx));
                let pfield = format_ident!("{}_phase{}_{}", field, ry, rx);
                w.fields.push((
                    pfield.clone(),
                    Build::layer(
                        Kind::Phase {
                            ci,
                            out: o,
                            kh,
                            kw,
                            sh,
                            sw,
                            ph,
                            pw,
                            dh,
                            dw,
                            ry,
                            rx,
                        },
                        weight,
                        bias_bn,
                    ),
                ));
                let at = lit((ry * sw + rx) * block);
                let (th, tw, pth, ptw) = (ty.taps, tx.taps, ty.pad, tx.pad);
                let (pdh, pdw) = (ty.dilation, tx.dilation);
                let [cil, h, wd, ol, mh, mw, th, tw, pth, ptw, pdh, pdw, block] =
                    [ci, h, wd, o, mh, mw, th, tw, pth, ptw, pdh, pdw, block].map(lit);
                calls.push(quote! {
                    #rt::kernels::conv::conv2d::<#cil, #h, #wd, #ol, #mh, #mw, #th, #tw, 1, 1, #pth, #ptw, #pdh, #pdw, 1>(r0, &self.#pfield, &mut scratch[#at..][..#block], #act);
                });
            }
        }
        let [ol, sh, sw, mh, mw, oh, ow] = [o, sh, sw, mh, mw, oh, ow].map(lit);
        return bind(
            step,
            false,
            quote! {
                #(#calls)*
                #rt::kernels::conv_transpose::phases_to_space::<#ol, #sh, #sw, #mh, #mw, #oh, #ow>(scratch, w);
            },
        );
    }
    if path == CtPath::Phases {
        // One stride-1 convolution over every phase (into the scratch), then the
        // phases' outputs put in place.
        let (gh, gw) = crate::plan::phase_geometry(&ct, &shapes[layer])
            .expect("the plan checked the phase geometry");
        w.fields.push((
            field.clone(),
            Build::layer(
                Kind::PhaseKernel {
                    ci,
                    out: o,
                    kh,
                    kw,
                    sh,
                    sw,
                    ph,
                    pw,
                },
                weight,
                bias_bn,
            ),
        ));
        let outs = lit(o * sh * sw);
        let [cil, h, wd, ol, oh, ow, sh, sw, ph, pw] =
            [ci, h, wd, o, oh, ow, sh, sw, ph, pw].map(lit);
        let [mh, mw, th, tw, pth, ptw] =
            [gh.size, gw.size, gh.taps, gw.taps, gh.pad, gw.pad].map(lit);
        return bind(
            step,
            false,
            quote! {
                #rt::kernels::conv::conv2d::<#cil, #h, #wd, #outs, #mh, #mw, #th, #tw, 1, 1, #pth, #ptw, 1, 1, 1>(r0, &self.#field, scratch, #act);
                #rt::kernels::conv_transpose::phase_to_space::<#ol, #sh, #sw, #mh, #mw, #oh, #ow, #ph, #pw>(scratch, w);
            },
        );
    }
    w.fields.push((
        field.clone(),
        Build::layer(
            Kind::ConvTranspose {
                ci,
                opg: o / g,
                kh,
                kw,
                groups: g,
            },
            weight,
            bias_bn,
        ),
    ));
    let [ci, h, wd, o, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, g] =
        [ci, h, wd, o, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, g].map(lit);
    bind(
        step,
        false,
        quote!(#rt::kernels::conv_transpose::conv_transpose2d::<#ci, #h, #wd, #o, #oh, #ow, #kh, #kw, #sh, #sw, #ph, #pw, #dh, #dw, #g>(r0, &self.#field, w, #act);),
    )
}

fn linear(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    w: &mut Weights,
    layer: usize,
    bn: Option<usize>,
) -> TokenStream {
    let rt = rt();
    let l = &model.layers[layer];
    let Op::Linear { bias, .. } = l.op else {
        unreachable!("planned linears are linear layers")
    };
    let n_in = shapes[layer].input.len();
    let n_out = shapes[layer].output.len();
    let field = field_name(&l.name);
    let weight = w.tensor(format!("{}.weight", l.name), vec![n_out, n_in]);
    let bias_bn = w.bias_and_bn(model, shapes, &l.name, bias.then_some(n_out), bn);
    let (i, o) = (lit(n_in), lit(n_out));
    let act = act_tokens(step.act);
    w.fields.push((
        field.clone(),
        Build::layer(
            Kind::Linear {
                out: n_out,
                inp: n_in,
            },
            weight,
            bias_bn,
        ),
    ));
    bind(
        step,
        false,
        quote!(#rt::kernels::linear::linear::<#i, #o>(r0, &self.#field, w, #act);),
    )
}

fn pool(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    layer: usize,
) -> (TokenStream, TokenStream) {
    let rt = rt();
    let Op::Pool(pool) = kernel_op(&model.layers[layer].op, model.is_1d()) else {
        unreachable!("planned pools are pool layers")
    };
    let (ci, h, wd) = shapes[layer].input.as_chw();
    let (_, oh, ow) = shapes[layer].output.as_chw();
    let (kh, kw) = (pool.kernel.0 as usize, pool.kernel.1 as usize);
    let (sh, sw) = (pool.stride.0 as usize, pool.stride.1 as usize);
    let (ph, pw) = (pool.padding.0 as usize, pool.padding.1 as usize);
    let (dh, dw) = (pool.dilation.0 as usize, pool.dilation.1 as usize);
    let [ci, h, wd, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw] =
        [ci, h, wd, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw].map(lit);
    // The call, or with `band` a team member's on its rows.
    let call = |band: bool| {
        let call = match pool.kind {
            PoolKind::Max => {
                let (f, rows) = row_form(step, "max_pool2d", band);
                quote!(#rt::kernels::pool::#f::<#ci, #h, #wd, #oh, #ow, #kh, #kw, #sh, #sw, #ph, #pw, #dh, #dw>(r0, w #rows);)
            }
            PoolKind::Avg => {
                let cip = pool.count_include_pad;
                let (f, rows) = row_form(step, "avg_pool2d", band);
                quote!(#rt::kernels::pool::#f::<#ci, #h, #wd, #oh, #ow, #kh, #kw, #sh, #sw, #ph, #pw, #cip>(r0, w #rows);)
            }
        };
        bind(step, false, call)
    };
    (call(false), call(true))
}

fn adaptive_pool(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    layer: usize,
) -> (TokenStream, TokenStream) {
    let rt = rt();
    let Op::AdaptivePool { kind, .. } = model.layers[layer].op else {
        unreachable!("planned adaptive pools are adaptive pool layers")
    };
    let channels = shapes[layer].input.as_chw().0;
    let [c, h, wd] = chw(shapes[layer].input);
    let [_, oh, ow] = chw(shapes[layer].output);
    let f = if kind == PoolKind::Max {
        quote!(adaptive_max_pool2d)
    } else {
        quote!(adaptive_avg_pool2d)
    };
    let call = bind(
        step,
        false,
        quote!(#rt::kernels::adaptive::#f::<#c, #h, #wd, #oh, #ow>(r0, w);),
    );
    if kind == PoolKind::Max || shapes[layer].output.as_chw() != (channels, 1, 1) {
        return (call.clone(), call);
    }
    // A team member's part of an average pool to one value a plane (`plan::team`'s
    // reduction): the sums of its rows of the input, which `Member::reduce_mean` turns
    // into the means.
    let member = bind(
        step,
        false,
        quote!(#rt::kernels::adaptive::adaptive_avg_pool2d_part::<#c, #h, #wd>(r0, w, m.rows(#h));),
    );
    (call, member)
}

fn upsample(step: &Step, model: &Model, shapes: &[LayerShape], layer: usize) -> TokenStream {
    let rt = rt();
    let Op::Upsample(up) = model.layers[layer].op else {
        unreachable!("planned upsamplings are upsample layers")
    };
    let [c, h, wd] = chw(shapes[layer].input);
    let [_, oh, ow] = chw(shapes[layer].output);
    let call = match up.mode {
        UpMode::Nearest => {
            quote!(#rt::kernels::upsample::upsample_nearest2d::<#c, #h, #wd, #oh, #ow>(r0, w);)
        }
        UpMode::Bilinear | UpMode::Linear => {
            let align = up.align_corners;
            quote!(#rt::kernels::upsample::upsample_bilinear2d::<#c, #h, #wd, #oh, #ow, #align>(r0, w);)
        }
    };
    bind(step, false, call)
}

fn global_pool(step: &Step) -> (TokenStream, TokenStream) {
    let rt = rt();
    if let (Kernel::GlobalAvg, Shape::Chw(..)) = (step.kernel, step.inputs[0]) {
        // The 1x1 adaptive pool's kernel: each plane summed in two halves of rows, as a
        // team's members sum theirs (`plan::team`'s reduction, `Member::reduce_mean`).
        let [c, h, wd] = chw(step.inputs[0]);
        let call = bind(
            step,
            false,
            quote!(#rt::kernels::adaptive::adaptive_avg_pool2d::<#c, #h, #wd, 1, 1>(r0, w);),
        );
        let member = bind(
            step,
            false,
            quote!(#rt::kernels::adaptive::adaptive_avg_pool2d_part::<#c, #h, #wd>(r0, w, m.rows(#h));),
        );
        return (call, member);
    }
    let f = if step.kernel == Kernel::GlobalAvg {
        quote!(global_avg_pool)
    } else {
        quote!(global_max_pool)
    };
    let (c, plane) = step.inputs[0].channels_and_plane();
    let (c, plane) = (lit(c), lit(plane));
    let call = bind(
        step,
        false,
        quote!(#rt::kernels::pool::#f::<#c, #plane>(r0, w);),
    );
    (call.clone(), call)
}

/// The copy that puts an in-place kernel's input into its destination, if elsewhere.
fn copy_in(step: &Step) -> (bool, TokenStream) {
    let moved = step.srcs[0] != step.dst;
    let t = if moved {
        quote!(w.copy_from_slice(r0);)
    } else {
        quote!()
    };
    (!moved, t)
}

fn affine(
    step: &Step,
    model: &Model,
    shapes: &[LayerShape],
    w: &mut Weights,
    layer: usize,
) -> (TokenStream, TokenStream) {
    let rt = rt();
    let field = field_name(&model.layers[layer].name);
    let bn = w.batch_norm(model, shapes, layer);
    let (channels, _) = shapes[layer].input.channels_and_plane();
    w.fields
        .push((field.clone(), Build::Affine { channels, bn }));
    let (c, plane) = step.output.channels_and_plane();
    let [_, h, wd] = chw(step.output);
    let (c, plane) = (lit(c), lit(plane));
    let act = act_tokens(step.act);
    // In place, or from the input straight into a fresh tensor (one pass, no copy); with
    // `band` a team member's on its rows (`[C, H, W]` only).
    let in_place = step.srcs[0] == step.dst;
    let call = |band: bool| {
        let name = if in_place {
            "channel_affine"
        } else {
            "channel_affine_into"
        };
        let (f, rows) = row_form(step, name, band);
        let dims = if band {
            quote!(#c, #h, #wd)
        } else {
            quote!(#c, #plane)
        };
        let args = if in_place { quote!(w) } else { quote!(r0, w) };
        bind(
            step,
            in_place,
            quote!(#rt::kernels::norm::#f::<#dims>(#args, &self.#field, #act #rows);),
        )
    };
    (call(false), call(true))
}

fn elementwise(step: &Step) -> TokenStream {
    let rt = rt();
    if step.kernel == Kernel::Activation && step.srcs[0] != step.dst {
        // From the input into a fresh tensor, in one pass.
        let act = act_tokens(step.act);
        return bind(
            step,
            false,
            quote!(#rt::kernels::activation::activate_into(r0, w, #act);),
        );
    }
    let (skip, copy) = copy_in(step);
    let call = if step.kernel == Kernel::Activation {
        let act = act_tokens(step.act);
        quote!(#rt::kernels::activation::activate(w, #act);)
    } else if step.output.rank() == 1 {
        quote!(#rt::kernels::softmax::softmax(w);)
    } else {
        let (c, plane) = step.output.channels_and_plane();
        let (c, plane) = (lit(c), lit(plane));
        quote!(#rt::kernels::softmax::softmax_channels::<#c, #plane>(w);)
    };
    bind(step, skip, quote!(#copy #call))
}

fn binary(step: &Step, op: Merge, in_place: bool) -> TokenStream {
    let rt = rt();
    let op_t = if op == Merge::Add {
        quote!(#rt::kernels::binary::BinOp::Add)
    } else {
        quote!(#rt::kernels::binary::BinOp::Mul)
    };
    let act = act_tokens(step.act);
    let [c, h, wd] = chw(step.output);
    let [bc, bh, bw] = chw(step.inputs[1]);
    if in_place {
        bind(
            step,
            true,
            quote!(#rt::kernels::binary::binary_assign::<#c, #h, #wd, #bc, #bh, #bw>(w, r1, #op_t, #act);),
        )
    } else {
        let [ac, ah, aw] = chw(step.inputs[0]);
        bind(
            step,
            false,
            quote!(#rt::kernels::binary::binary_into::<#c, #h, #wd, #ac, #ah, #aw, #bc, #bh, #bw>(r0, r1, w, #op_t, #act);),
        )
    }
}

fn channel_shuffle(step: &Step, groups: usize) -> (TokenStream, TokenStream) {
    let rt = rt();
    let (c, plane) = step.output.channels_and_plane();
    let [_, h, wd] = chw(step.output);
    let (c, plane, g) = (lit(c), lit(plane), lit(groups));
    // Of a tensor, or of the operands of a concatenation never stored.
    let (name, parts) = if step.srcs.len() == 1 {
        ("channel_shuffle", quote!(r0))
    } else {
        let parts = (0..step.srcs.len()).map(|k| format_ident!("r{}", k));
        ("concat_channel_shuffle", quote!(&[#(#parts),*]))
    };
    // The call, or with `band` a team member's on its rows (`[C, H, W]` only).
    let call = |band: bool| {
        let (f, rows) = row_form(step, name, band);
        let dims = if band {
            quote!(#c, #h, #wd, #g)
        } else {
            quote!(#c, #plane, #g)
        };
        bind(
            step,
            false,
            quote!(#rt::kernels::shuffle::#f::<#dims>(#parts, w #rows);),
        )
    };
    (call(false), call(true))
}

fn copy(step: &Step) -> TokenStream {
    let rt = rt();
    bind(step, false, quote!(#rt::kernels::copy_floats(r0, w);))
}
