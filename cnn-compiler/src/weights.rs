//! The weights of a model: which tensors the file must hold, and how each layer's packed
//! parameters are built from them ([`Build`]).
//!
//! One description serves three consumers: codegen emits `from_safetensors` (the
//! `*Params::from_torch` calls, run when the user loads a file); the summary and
//! `WEIGHT_BYTES` count the packed bytes ([`Build::bytes`]); and for `#[weights = ..]` the
//! macro itself runs the runtime's packing on the file's tensors ([`Build::eval`]) and
//! emits the packed bytes as aligned `static`s, so an embedded model needs neither a heap
//! nor run-time repacking ([`embedded_init`]).

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

use crate::codegen::{lit, rt};
use crate::ir::{Model, Op};
use crate::shape::LayerShape;

use cnn_runtime::buf::{Embed, Parts};
use cnn_runtime::kernels as k;

/// An inference-mode batch norm folded into (or applied by) a layer: the indices of its
/// four tensors in the spec list, and its `eps`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bn {
    w: usize,
    b: usize,
    m: usize,
    v: usize,
    eps: f64,
}

/// Which packed-parameter type a layer with weights gets, and its dimensions (the
/// leading arguments of that type's `from_torch`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// `ConvParams::from_torch(out, cg, kh, kw, ..)`.
    Conv {
        out: usize,
        cg: usize,
        kh: usize,
        kw: usize,
    },
    /// `DepthwiseParams::from_torch(out, 1, kh, kw, ..)`.
    Depthwise { out: usize, kh: usize, kw: usize },
    /// `WinogradParams::with_tile(tile, out, c, ..)`.
    Winograd { out: usize, c: usize, tile: usize },
    /// `phase_kernel_params(ci, out, kh, kw, sh, sw, ph, pw, ..)`: a `ConvParams` (the
    /// phase convolution of a transposed convolution: `out * sh * sw` channels of `kh / sh`
    /// by `kw / sw` taps).
    PhaseKernel {
        ci: usize,
        out: usize,
        kh: usize,
        kw: usize,
        sh: usize,
        sw: usize,
        ph: usize,
        pw: usize,
    },
    /// `phase_params(ci, out, kh, kw, sh, sw, ph, pw, dh, dw, ry, rx, ..)`: a `ConvParams` (the
    /// convolution of phase `(ry, rx)` of a transposed convolution: `out` channels of its
    /// own taps).
    Phase {
        ci: usize,
        out: usize,
        kh: usize,
        kw: usize,
        sh: usize,
        sw: usize,
        ph: usize,
        pw: usize,
        dh: usize,
        dw: usize,
        ry: usize,
        rx: usize,
    },
    /// `ConvTransposeParams::from_torch(ci, opg, kh, kw, groups, ..)`.
    ConvTranspose {
        ci: usize,
        opg: usize,
        kh: usize,
        kw: usize,
        groups: usize,
    },
    /// `LinearParams::from_torch(out, inp, ..)`.
    Linear { out: usize, inp: usize },
}

impl Kind {
    /// The packed-parameter type.
    fn ty(self) -> TokenStream {
        let rt = rt();
        match self {
            Kind::Conv { .. } | Kind::PhaseKernel { .. } | Kind::Phase { .. } => {
                quote!(#rt::kernels::conv::ConvParams)
            }
            Kind::Depthwise { .. } => quote!(#rt::kernels::depthwise::DepthwiseParams),
            Kind::Winograd { .. } => quote!(#rt::kernels::winograd::WinogradParams),
            Kind::ConvTranspose { .. } => quote!(#rt::kernels::conv_transpose::ConvTransposeParams),
            Kind::Linear { .. } => quote!(#rt::kernels::linear::LinearParams),
        }
    }

    /// The constructor's path and its leading dimension arguments.
    fn ctor(self) -> (TokenStream, Vec<usize>) {
        let rt = rt();
        match self {
            Kind::Conv { out, cg, kh, kw } => (
                quote!(#rt::kernels::conv::ConvParams::from_torch),
                vec![out, cg, kh, kw],
            ),
            Kind::Depthwise { out, kh, kw } => (
                quote!(#rt::kernels::depthwise::DepthwiseParams::from_torch),
                vec![out, 1, kh, kw],
            ),
            Kind::Winograd { out, c, tile } => (
                quote!(#rt::kernels::winograd::WinogradParams::with_tile),
                vec![tile, out, c],
            ),
            Kind::PhaseKernel {
                ci,
                out,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
            } => (
                quote!(#rt::kernels::conv_transpose::phase_kernel_params),
                vec![ci, out, kh, kw, sh, sw, ph, pw],
            ),
            Kind::Phase {
                ci,
                out,
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
            } => (
                quote!(#rt::kernels::conv_transpose::phase_params),
                vec![ci, out, kh, kw, sh, sw, ph, pw, dh, dw, ry, rx],
            ),
            Kind::ConvTranspose {
                ci,
                opg,
                kh,
                kw,
                groups,
            } => (
                quote!(#rt::kernels::conv_transpose::ConvTransposeParams::from_torch),
                vec![ci, opg, kh, kw, groups],
            ),
            Kind::Linear { out, inp } => (
                quote!(#rt::kernels::linear::LinearParams::from_torch),
                vec![out, inp],
            ),
        }
    }

    /// Bytes of the packed parameters: 64-byte panel rows of 16 output channels, zeros
    /// past the last channel.
    fn bytes(self) -> usize {
        let panels = |out: usize| out.div_ceil(16);
        match self {
            Kind::Conv { out, cg, kh, kw } => ROW * panels(out) * (kh * kw * cg + 1),
            Kind::Linear { out, inp } => ROW * panels(out) * (inp + 1),
            Kind::Depthwise { out, kh, kw } => {
                4 * out * (kh * kw + 1) + ROW * panels(out) * (kh * kw + 1)
            }
            Kind::Winograd { out, c, tile } => ROW * panels(out) * ((tile + 2).pow(2) * c + 1),
            Kind::PhaseKernel {
                ci,
                out,
                kh,
                kw,
                sh,
                sw,
                ..
            } => ROW * panels(out * sh * sw) * ((kh / sh) * (kw / sw) * ci + 1),
            Kind::Phase {
                ci,
                out,
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
            } => {
                let taps = |k, s, p, d, r| {
                    k::conv_transpose::phase_taps(k, s, p, d, r).map_or(0, |t| t.taps)
                };
                ROW * panels(out) * (taps(kh, sh, ph, dh, ry) * taps(kw, sw, pw, dw, rx) * ci + 1)
            }
            Kind::ConvTranspose {
                ci,
                opg,
                kh,
                kw,
                groups,
            } => 4 * (ci * opg * kh * kw + opg * groups),
        }
    }

    /// The runtime's own `from_torch` (what `from_safetensors` runs) on `weight`.
    fn pack(
        self,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&k::norm::Affine>,
    ) -> Box<dyn Embed> {
        match self {
            Kind::Conv { out, cg, kh, kw } => Box::new(k::conv::ConvParams::from_torch(
                out, cg, kh, kw, weight, bias, bn,
            )),
            Kind::Depthwise { out, kh, kw } => Box::new(k::depthwise::DepthwiseParams::from_torch(
                out, 1, kh, kw, weight, bias, bn,
            )),
            Kind::Winograd { out, c, tile } => Box::new(k::winograd::WinogradParams::with_tile(
                tile, out, c, weight, bias, bn,
            )),
            Kind::PhaseKernel {
                ci,
                out,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
            } => Box::new(k::conv_transpose::phase_kernel_params(
                ci, out, kh, kw, sh, sw, ph, pw, weight, bias, bn,
            )),
            Kind::Phase {
                ci,
                out,
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
            } => Box::new(k::conv_transpose::phase_params(
                ci, out, kh, kw, sh, sw, ph, pw, dh, dw, ry, rx, weight, bias, bn,
            )),
            Kind::ConvTranspose {
                ci,
                opg,
                kh,
                kw,
                groups,
            } => Box::new(k::conv_transpose::ConvTransposeParams::from_torch(
                ci, opg, kh, kw, groups, weight, bias, bn,
            )),
            Kind::Linear { out, inp } => Box::new(k::linear::LinearParams::from_torch(
                out, inp, weight, bias, bn,
            )),
        }
    }
}

/// How one struct field (a layer's packed parameters) is built from the loaded tensors
/// (`weight`, `bias`, the batch norm's: indices in the spec list).
#[derive(Clone, Debug)]
pub(crate) enum Build {
    /// A layer with weights, an optional bias and an optional folded batch norm.
    Layer {
        kind: Kind,
        weight: usize,
        bias: Option<usize>,
        bn: Option<Bn>,
    },
    /// `Affine::from_batch_norm(..)` of `channels` channels: a standalone batch norm.
    Affine { channels: usize, bn: Bn },
}

/// Floats in `n` rows of 16 (one 64-byte panel row each).
const ROW: usize = 64;

impl Build {
    /// A layer of `kind` with its weight tensor and `(bias, bn)` from
    /// [`Weights::bias_and_bn`].
    pub(crate) fn layer(
        kind: Kind,
        weight: usize,
        (bias, bn): (Option<usize>, Option<Bn>),
    ) -> Build {
        Build::Layer {
            kind,
            weight,
            bias,
            bn,
        }
    }

    /// The field's type.
    pub(crate) fn ty(&self) -> TokenStream {
        match self {
            Build::Layer { kind, .. } => kind.ty(),
            Build::Affine { .. } => {
                let rt = rt();
                quote!(#rt::kernels::norm::Affine)
            }
        }
    }

    /// The expression building the field from the loaded tensors `t` (in
    /// `from_safetensors`).
    pub(crate) fn init(&self) -> TokenStream {
        let rt = rt();
        let t = |i: usize| {
            let i = lit(i);
            quote!(&t[#i])
        };
        let affine = |bn: &Bn| {
            let (w, b, m, v) = (t(bn.w), t(bn.b), t(bn.m), t(bn.v));
            let eps = Literal::f64_suffixed(bn.eps);
            quote!(#rt::kernels::norm::Affine::from_batch_norm(#w, #b, #m, #v, #eps))
        };
        match self {
            Build::Layer {
                kind,
                weight,
                bias,
                bn,
            } => {
                let (path, dims) = kind.ctor();
                let dims = dims.into_iter().map(lit);
                let x = t(*weight);
                let b = match bias {
                    Some(i) => {
                        let x = t(*i);
                        quote!(::core::option::Option::Some(#x))
                    }
                    None => quote!(::core::option::Option::None),
                };
                let n = match bn {
                    Some(bn) => {
                        let a = affine(bn);
                        quote!(::core::option::Option::Some(&#a))
                    }
                    None => quote!(::core::option::Option::None),
                };
                quote!(#path(#(#dims,)* #x, #b, #n))
            }
            Build::Affine { bn, .. } => affine(bn),
        }
    }

    /// Bytes of the packed parameters (what [`Build::eval`]'s buffers hold), without the
    /// weights.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Build::Layer { kind, .. } => kind.bytes(),
            Build::Affine { channels, .. } => 4 * 2 * channels,
        }
    }

    /// Runs the runtime's own packing on the loaded tensors `t`: exactly what
    /// `from_safetensors` computes at run time.
    pub(crate) fn eval(&self, t: &[Vec<f32>]) -> Box<dyn Embed> {
        let affine = |bn: &Bn| {
            k::norm::Affine::from_batch_norm(&t[bn.w], &t[bn.b], &t[bn.m], &t[bn.v], bn.eps)
        };
        match self {
            Build::Layer {
                kind,
                weight,
                bias,
                bn,
            } => kind.pack(
                &t[*weight],
                bias.map(|i| t[i].as_slice()),
                bn.as_ref().map(affine).as_ref(),
            ),
            Build::Affine { bn, .. } => Box::new(affine(bn)),
        }
    }
}

/// The tensors a weight file must hold (in load order), the keys it may also hold, and
/// the struct's fields with how each is built.
#[derive(Clone)]
pub(crate) struct Weights {
    /// `(key, shape)` of every tensor, in load order.
    pub(crate) specs: Vec<(String, Vec<usize>)>,
    /// Keys that may be present and are ignored (`num_batches_tracked`).
    pub(crate) ignored: Vec<String>,
    /// The struct's fields.
    pub(crate) fields: Vec<(Ident, Build)>,
}

impl Weights {
    /// No tensors, no fields.
    pub(crate) fn new() -> Weights {
        Weights {
            specs: Vec::new(),
            ignored: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Adds a tensor to the spec list; returns its index.
    pub(crate) fn tensor(&mut self, key: String, shape: Vec<usize>) -> usize {
        self.specs.push((key, shape));
        self.specs.len() - 1
    }

    /// The bias (`bias_len` values, if the layer has one) and the batch norm `bn` folded
    /// into layer `name`.
    pub(crate) fn bias_and_bn(
        &mut self,
        model: &Model,
        shapes: &[LayerShape],
        name: &str,
        bias_len: Option<usize>,
        bn: Option<usize>,
    ) -> (Option<usize>, Option<Bn>) {
        let bias = bias_len.map(|n| self.tensor(format!("{name}.bias"), vec![n]));
        let bn = bn.map(|j| self.batch_norm(model, shapes, j));
        (bias, bn)
    }

    /// The four tensors of batch norm layer `layer`.
    pub(crate) fn batch_norm(&mut self, model: &Model, shapes: &[LayerShape], layer: usize) -> Bn {
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
        Bn { w, b, m, v, eps }
    }

    /// Bytes of all packed parameters: the model's `WEIGHT_BYTES`.
    pub(crate) fn bytes(&self) -> usize {
        self.fields.iter().map(|(_, b)| b.bytes()).sum()
    }
}

/// The packed parameters of every field, computed from the loaded tensors `t`.
pub(crate) fn pack_all(weights: &Weights, t: &[Vec<f32>]) -> Vec<Parts> {
    weights
        .fields
        .iter()
        .map(|(_, build)| build.eval(t).parts())
        .collect()
}

/// The struct initialiser of an embedded model whose packed parameters are `parts` (one
/// per field of `weights`), with the `static`s holding the bytes: `(statics, init)`.
/// Each buffer is one 64-byte aligned `static` of a byte-string literal (one token, no
/// per-element code), read back as floats or panel rows in const context.
pub(crate) fn embedded_init(weights: &Weights, parts: &[Parts]) -> (TokenStream, TokenStream) {
    let rt = rt();
    let mut statics = Vec::new();
    let mut inits = Vec::new();
    for (f, ((field, build), part)) in weights.fields.iter().zip(parts).enumerate() {
        let ty = build.ty();
        let dims = part.dims.iter().map(|d| lit(*d));
        let mut args = Vec::new();
        for (b, (rows, bytes)) in part.bufs.iter().enumerate() {
            let name = format_ident!("W{}_{}", f, b);
            let n = lit(bytes.len());
            let data = Literal::byte_string(bytes);
            statics.push(quote!(
                static #name: #rt::buf::Aligned<#n> = #rt::buf::Aligned(*#data);
            ));
            args.push(if *rows {
                quote!(#name.rows())
            } else {
                quote!(#name.floats())
            });
        }
        inits.push(quote!(#field: #ty::from_static([#(#dims),*], #(#args),*)));
    }
    let init = if inits.is_empty() {
        quote!({ _weights: () })
    } else {
        quote!({ #(#inits,)* })
    };
    (quote!(#(#statics)*), init)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `Build::bytes` (what the summary and WEIGHT_BYTES say) equals the bytes the
    /// runtime's packing really produces, for every kind of field and awkward sizes.
    #[test]
    fn bytes_match_the_packed_parameters() {
        let bn = Bn {
            w: 2,
            b: 3,
            m: 4,
            v: 5,
            eps: 1e-5,
        };
        for (out, cg, kh, kw) in [(1, 1, 1, 1), (6, 1, 5, 5), (17, 3, 3, 3), (33, 8, 1, 7)] {
            let n = out.max(cg * 8);
            let mut t = vec![
                values(out * cg * kh * kw * 64, 1),
                values(n * 4, 2),
                values(n * 4, 3),
                values(n * 4, 4),
                values(n * 4, 5),
                values(n * 4, 6).iter().map(|v| v.abs() + 0.1).collect(),
            ];
            let layer = |kind, bias| Build::layer(kind, 0, (bias, None));
            let builds = [
                layer(Kind::Conv { out, cg, kh, kw }, Some(1)),
                layer(Kind::Depthwise { out, kh, kw }, None),
                layer(
                    Kind::Winograd {
                        out,
                        c: cg,
                        tile: 4,
                    },
                    Some(1),
                ),
                layer(
                    Kind::Winograd {
                        out,
                        c: cg,
                        tile: 2,
                    },
                    Some(1),
                ),
                layer(
                    Kind::PhaseKernel {
                        ci: cg,
                        out,
                        kh,
                        kw,
                        sh: kh,
                        sw: kw,
                        ph: 0,
                        pw: 0,
                    },
                    Some(1),
                ),
                layer(
                    Kind::PhaseKernel {
                        ci: cg,
                        out,
                        kh: 2 * kh,
                        kw: 2 * kw,
                        sh: 2,
                        sw: 2,
                        ph: 1,
                        pw: 1,
                    },
                    Some(1),
                ),
                layer(
                    Kind::Phase {
                        ci: cg,
                        out,
                        kh: 2 * kh + 1,
                        kw: 2 * kw + 1,
                        sh: 2,
                        sw: 2,
                        ph: 1,
                        pw: 1,
                        dh: 1,
                        dw: 1,
                        ry: 1,
                        rx: 0,
                    },
                    Some(1),
                ),
                // Dilated: k s2 p1 d3 (phase 0: every other tap from 1) by k s1 d2.
                layer(
                    Kind::Phase {
                        ci: cg,
                        out,
                        kh: 2 * kh + 1,
                        kw: 2 * kw + 1,
                        sh: 2,
                        sw: 1,
                        ph: 1,
                        pw: 0,
                        dh: 3,
                        dw: 2,
                        ry: 0,
                        rx: 0,
                    },
                    Some(1),
                ),
                layer(
                    Kind::ConvTranspose {
                        ci: cg * 2,
                        opg: out,
                        kh,
                        kw,
                        groups: 2,
                    },
                    Some(1),
                ),
                layer(Kind::Linear { out, inp: cg * kh }, None),
            ];
            for build in builds {
                // Exact tensor lengths for this build.
                let Build::Layer { kind, .. } = build else {
                    unreachable!()
                };
                let (wlen, blen) = match kind {
                    Kind::Conv { .. } => (out * cg * kh * kw, out),
                    Kind::Depthwise { .. } => (out * kh * kw, out),
                    Kind::Winograd { .. } => (out * cg * 9, out),
                    Kind::PhaseKernel { kh, kw, .. } | Kind::Phase { kh, kw, .. } => {
                        (cg * out * kh * kw, out)
                    }
                    Kind::ConvTranspose { .. } => (cg * 2 * out * kh * kw, out * 2),
                    Kind::Linear { .. } => (out * cg * kh, out),
                };
                t[0] = values(wlen, 7);
                t[1] = values(blen, 8);
                let parts = build.eval(&t).parts();
                let got: usize = parts.bufs.iter().map(|(_, b)| b.len()).sum();
                assert_eq!(build.bytes(), got, "{build:?}");
                for (rows, b) in &parts.bufs {
                    assert_eq!(b.len() % if *rows { 64 } else { 4 }, 0, "{build:?}");
                }
            }
            for v in &mut t[2..] {
                v.truncate(out);
            }
            let affine = Build::Affine { channels: out, bn };
            let got: usize = affine
                .eval(&t)
                .parts()
                .bufs
                .iter()
                .map(|(_, b)| b.len())
                .sum();
            assert_eq!(affine.bytes(), got);
        }
    }
}
