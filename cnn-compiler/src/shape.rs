//! Stage 4, shape inference: every tensor's shape, with PyTorch's arithmetic.
//!
//! Output size per axis `floor((H + 2p - d*(k-1) - 1) / s) + 1` with a true floor (a
//! negative numerator means the kernel does not fit); pools' `ceil_mode` with PyTorch's
//! rule that drops a last window starting at or past the end of input plus left padding;
//! `same` padding split with the extra cell bottom/right. Also counts parameters and MACs.

use crate::ir::{
    Conv, ConvTranspose, Diag, Layer, Merge, Model, Op, Padding, Pool, PoolKind, Shape, Src,
    UpSize, Upsample,
};

/// Largest number of values one tensor may have (keeps every product far from overflow).
const MAX_TENSOR: u128 = 1 << 31;

/// What inference learned about one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerShape {
    /// Shape of the layer's (first) input.
    pub input: Shape,
    /// Shapes of all the tensors it reads, in order.
    pub inputs: Vec<Shape>,
    /// Shape of its output.
    pub output: Shape,
    /// Learned parameters (torch `parameters()`).
    pub params: usize,
    /// Multiply-accumulates (conv and linear only).
    pub macs: usize,
    /// Resolved padding `(top, bottom, left, right)` for conv and pools.
    pub pads: (usize, usize, usize, usize),
}

/// One axis of a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Input size.
    pub size: i64,
    /// Kernel size.
    pub kernel: i64,
    /// Stride.
    pub stride: i64,
    /// Padding before (top/left).
    pub pad_before: i64,
    /// Padding after (bottom/right).
    pub pad_after: i64,
    /// Dilation.
    pub dilation: i64,
}

/// Why a window does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AxisError {
    /// The dilated kernel is larger than the padded input.
    DoesNotFit,
    /// A ceil-mode window covers padding only (`index` is the output position).
    PaddingOnly {
        /// The output position of the window.
        index: i64,
    },
}

/// Output size of a convolution along one axis (floor rule). Sizes are at least 1.
pub fn conv_out(a: Axis) -> Result<i64, AxisError> {
    let num = a.size + a.pad_before + a.pad_after - a.dilation * (a.kernel - 1) - 1;
    if num < 0 {
        return Err(AxisError::DoesNotFit);
    }
    Ok(num / a.stride + 1)
}

/// Output size of a pool along one axis (symmetric padding), with PyTorch's `ceil_mode`
/// rule, and the check that every window holds at least one input cell.
pub fn pool_out(a: Axis, ceil_mode: bool) -> Result<i64, AxisError> {
    let num = a.size + a.pad_before + a.pad_after - a.dilation * (a.kernel - 1) - 1;
    if num < 0 {
        return Err(AxisError::DoesNotFit);
    }
    let mut out = if ceil_mode {
        (num + a.stride - 1) / a.stride + 1
    } else {
        num / a.stride + 1
    };
    // PyTorch: the last window must start inside the input or the left padding.
    if ceil_mode && (out - 1) * a.stride >= a.size + a.pad_before {
        out -= 1;
    }
    // Only windows that start in the padding can miss the input: the first few and the
    // last one or two. (A window starting inside the input has its first tap there.)
    let touches_input = |index: i64| {
        let start = index * a.stride - a.pad_before;
        (0..a.kernel)
            .map(|j| start + j * a.dilation)
            .any(|t| (0..a.size).contains(&t))
    };
    let starts_outside = |index: i64| {
        let start = index * a.stride - a.pad_before;
        start < 0 || start >= a.size
    };
    let head = (0..out).take_while(|i| starts_outside(*i));
    let tail = (0..out).rev().take_while(|i| starts_outside(*i));
    for index in head.chain(tail) {
        if !touches_input(index) {
            return Err(AxisError::PaddingOnly { index });
        }
    }
    Ok(out)
}

fn to_usize(v: u128) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The op as the 2-D kernels run it: on a 1-D model every height parameter becomes the
/// identity (kernel, stride, dilation, scale and output size 1; padding 0), since a
/// signal `[C, L]` runs as `[C, 1, L]`.
pub fn kernel_op(op: &Op, one_d: bool) -> Op {
    if !one_d {
        return *op;
    }
    let w = |p: (i64, i64), h: i64| (h, p.1);
    match *op {
        Op::Conv(c) => Op::Conv(Conv {
            kernel: w(c.kernel, 1),
            stride: w(c.stride, 1),
            dilation: w(c.dilation, 1),
            padding: match c.padding {
                Padding::Explicit(p) => Padding::Explicit(w(p, 0)),
                other => other,
            },
            ..c
        }),
        Op::Pool(p) => Op::Pool(Pool {
            kernel: w(p.kernel, 1),
            stride: w(p.stride, 1),
            padding: w(p.padding, 0),
            dilation: w(p.dilation, 1),
            ..p
        }),
        Op::ConvTranspose(c) => Op::ConvTranspose(ConvTranspose {
            kernel: w(c.kernel, 1),
            stride: w(c.stride, 1),
            padding: w(c.padding, 0),
            output_padding: w(c.output_padding, 0),
            dilation: w(c.dilation, 1),
            ..c
        }),
        Op::AdaptivePool { kind, out } => Op::AdaptivePool {
            kind,
            out: w(out, 1),
        },
        Op::Upsample(u) => Op::Upsample(Upsample {
            size: match u.size {
                UpSize::Scale(s) => UpSize::Scale(w(s, 1)),
                UpSize::Size(s) => UpSize::Size(w(s, 1)),
            },
            ..u
        }),
        other => other,
    }
}

/// The input shape of a model, `None` if it is missing or not positive (reported).
pub fn input_shape(model: &Model) -> Option<Shape> {
    let dims = model.input.as_ref()?;
    if dims.iter().any(|d| *d < 1) {
        return None;
    }
    let d: Vec<usize> = dims.iter().map(|d| *d as usize).collect();
    match d.as_slice() {
        [c, h, w] => Some(Shape::Chw(*c, *h, *w)),
        [c, l] => Some(Shape::Cl(*c, *l)),
        [n] => Some(Shape::Vec(*n)),
        _ => None,
    }
}

/// Infers the shapes of every layer. Stops at the first layer that has a problem (or
/// that failed an earlier stage, `blocked`), since everything after it would only
/// repeat that problem. Returns the shapes of the layers before it, and its diagnostic.
pub fn infer(model: &Model, blocked: &[usize]) -> (Vec<LayerShape>, Option<Diag>) {
    let mut shapes: Vec<LayerShape> = Vec::new();
    let Some(input) = input_shape(model) else {
        return (shapes, None);
    };
    let dims = input.dims();
    if dims.iter().map(|d| *d as u128).product::<u128>() > MAX_TENSOR {
        return (
            shapes,
            Some(Diag::new(
                model.input_loc,
                format!("layer `input`: the input {input} has more than 2^31 values"),
            )),
        );
    }
    let one_d = model.is_1d();
    for (position, layer) in model.layers.iter().enumerate() {
        if layer.index != position || blocked.contains(&layer.index) {
            break;
        }
        let inputs: Vec<Shape> = layer
            .inputs
            .iter()
            .map(|src| match src {
                Src::Input => input,
                Src::Layer(j) => shapes[*j].output,
            })
            .collect();
        if inputs.is_empty() {
            break;
        }
        let names: Vec<String> = layer
            .inputs
            .iter()
            .map(|src| match src {
                Src::Input => "input".to_string(),
                Src::Layer(j) => model.layers[*j].name.clone(),
            })
            .collect();
        match layer_shape(layer, &inputs, &names, one_d) {
            Ok(s) => {
                if (s.output.len() as u128) > MAX_TENSOR {
                    let d = Diag::new(
                        layer.loc,
                        format!(
                            "layer `{}` ({}): the output {} has more than 2^31 values",
                            layer.name,
                            layer.op.keyword(),
                            s.output
                        ),
                    );
                    return (shapes, Some(d.for_layer(layer.index)));
                }
                shapes.push(s);
            }
            Err(d) => return (shapes, Some(d.for_layer(layer.index))),
        }
    }
    (shapes, None)
}

/// The output shape of `add`/`mul` (broadcasting) or `concat` (axis 0).
fn merge_shape(merge: Merge, inputs: &[Shape], names: &[String]) -> Result<Shape, String> {
    let first = inputs[0];
    let listed = || {
        inputs
            .iter()
            .zip(names)
            .map(|(s, n)| format!("`{n}` {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(k) = inputs.iter().position(|s| s.rank() != first.rank()) {
        return Err(format!(
            "operands of different rank: `{}` is {} but `{}` is {} ({})",
            names[0],
            first,
            names[k],
            inputs[k],
            listed()
        ));
    }
    match merge {
        Merge::Concat => {
            let (_, h, w) = first.as_chw();
            if inputs.iter().any(|s| {
                let (_, h2, w2) = s.as_chw();
                (h2, w2) != (h, w)
            }) {
                return Err(format!(
                    "operands must agree on every axis but the first (channels) to be concatenated: {}",
                    listed()
                ));
            }
            let c: usize = inputs.iter().map(|s| s.as_chw().0).sum();
            Ok(first.with(c, h, w))
        }
        Merge::Add | Merge::Mul => {
            let mut out = first.dims();
            for s in &inputs[1..] {
                for (o, d) in out.iter_mut().zip(s.dims()) {
                    if *o == d || d == 1 {
                    } else if *o == 1 {
                        *o = d;
                    } else {
                        return Err(format!(
                            "operands do not broadcast (each axis needs equal sizes or a 1): {}",
                            listed()
                        ));
                    }
                }
            }
            Ok(match out.as_slice() {
                [c, h, w] => Shape::Chw(*c, *h, *w),
                [c, l] => Shape::Cl(*c, *l),
                [n] => Shape::Vec(*n),
                _ => first,
            })
        }
    }
}

fn fmt_pair(a: i64, b: i64) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("({a}, {b})")
    }
}

fn layer_shape(
    layer: &Layer,
    inputs: &[Shape],
    names: &[String],
    one_d: bool,
) -> Result<LayerShape, Diag> {
    let input = inputs[0];
    let prefix = format!("layer `{}` ({})", layer.name, layer.op.keyword());
    let err = |msg: String| Diag::new(layer.loc, format!("{prefix}: {msg}"));
    let same = |params: usize| LayerShape {
        input,
        inputs: inputs.to_vec(),
        output: input,
        params,
        macs: 0,
        pads: (0, 0, 0, 0),
    };
    let spatial_kind = if one_d { "[C, L]" } else { "[C, H, W]" };
    let with_inputs = |mut s: LayerShape| {
        s.inputs = inputs.to_vec();
        s
    };
    match &kernel_op(&layer.op, one_d) {
        Op::Conv(conv) => {
            let Some((c, h, w)) = input.spatial() else {
                return Err(err(format!(
                    "needs a {spatial_kind} input but gets {input}; a conv cannot follow `flatten`, `linear` or a global pool"
                )));
            };
            conv_shape(conv, c, h, w, input, one_d)
                .map(with_inputs)
                .map_err(err)
        }
        Op::Pool(pool) => {
            let Some((c, h, w)) = input.spatial() else {
                return Err(err(format!(
                    "needs a {spatial_kind} input but gets {input}"
                )));
            };
            pool_shape(pool, c, h, w, input, one_d)
                .map(with_inputs)
                .map_err(err)
        }
        Op::ConvTranspose(ct) => {
            let Some((c, h, w)) = input.spatial() else {
                return Err(err(format!(
                    "needs a {spatial_kind} input but gets {input}"
                )));
            };
            conv_transpose_shape(ct, c, h, w, input, one_d)
                .map(with_inputs)
                .map_err(err)
        }
        Op::AdaptivePool { out, .. } => {
            let Some((c, _, _)) = input.spatial() else {
                return Err(err(format!(
                    "needs a {spatial_kind} input but gets {input}"
                )));
            };
            Ok(LayerShape {
                output: input.with(c, out.0 as usize, out.1 as usize),
                ..same(0)
            })
        }
        Op::Upsample(up) => {
            let Some((c, h, w)) = input.spatial() else {
                return Err(err(format!(
                    "needs a {spatial_kind} input but gets {input}"
                )));
            };
            let (oh, ow) = match up.size {
                UpSize::Scale((sh, sw)) => (h as u128 * sh as u128, w as u128 * sw as u128),
                UpSize::Size((sh, sw)) => (sh as u128, sw as u128),
            };
            if oh * ow * c as u128 > MAX_TENSOR {
                return Err(err(format!(
                    "the output [{c}, {oh}, {ow}] has more than 2^31 values"
                )));
            }
            Ok(LayerShape {
                output: input.with(c, oh as usize, ow as usize),
                ..same(0)
            })
        }
        Op::Merge(m) => merge_shape(*m, inputs, names)
            .map(|output| LayerShape { output, ..same(0) })
            .map_err(err),
        Op::Identity => Ok(same(0)),
        Op::GlobalAvgPool | Op::GlobalMaxPool => match input.spatial() {
            Some((c, _, _)) => Ok(LayerShape {
                output: Shape::Vec(c),
                ..same(0)
            }),
            None => Err(err(format!(
                "needs a {spatial_kind} input but gets the vector {input}"
            ))),
        },
        Op::Flatten => Ok(LayerShape {
            output: Shape::Vec(input.len()),
            ..same(0)
        }),
        Op::Linear { out, bias } => match input {
            Shape::Vec(n) => {
                let out = *out as usize;
                let params = (n as u128) * (out as u128) + if *bias { out as u128 } else { 0 };
                Ok(LayerShape {
                    output: Shape::Vec(out),
                    params: to_usize(params),
                    macs: to_usize((n as u128) * (out as u128)),
                    ..same(0)
                })
            }
            _ => Err(err(format!(
                "needs a vector input but gets {input}; add `flatten` before it"
            ))),
        },
        Op::BatchNorm { .. } => {
            let (channels, _) = input.channels_and_plane();
            Ok(same(2 * channels))
        }
        Op::Act(_) | Op::Dropout { .. } => Ok(same(0)),
        Op::Softmax => Ok(same(0)),
        Op::Slice { start, end } => {
            let (c, h, w) = input.as_chw();
            let what = if input.rank() == 1 {
                "features"
            } else {
                "channels"
            };
            if *end as usize > c {
                return Err(err(format!(
                    "end = {end} is beyond the input's {c} {what} ({input}); the slice keeps {what} start..end, end excluded"
                )));
            }
            Ok(LayerShape {
                output: input.with((end - start) as usize, h, w),
                ..same(0)
            })
        }
        Op::ChannelShuffle { groups } => {
            let Some((c, _, _)) = input.spatial() else {
                return Err(err(format!(
                    "needs a {spatial_kind} input but gets the vector {input}"
                )));
            };
            if !c.is_multiple_of(*groups as usize) {
                return Err(err(format!(
                    "groups = {groups} does not divide the {c} input channels"
                )));
            }
            Ok(same(0))
        }
    }
}

/// `KxK` (or `K` on a 1-D model).
fn area(h: impl std::fmt::Display, w: impl std::fmt::Display, one_d: bool) -> String {
    if one_d {
        w.to_string()
    } else {
        format!("{h}x{w}")
    }
}

fn conv_shape(
    conv: &Conv,
    c: usize,
    h: usize,
    w: usize,
    input: Shape,
    one_d: bool,
) -> Result<LayerShape, String> {
    let (kh, kw) = conv.kernel;
    let (dh, dw) = conv.dilation;
    let (sh, sw) = conv.stride;
    let groups = conv.groups as usize;
    if !c.is_multiple_of(groups) {
        return Err(format!(
            "groups = {groups} does not divide the {c} input channels"
        ));
    }
    let (pt, pb, pl, pr) = match conv.padding {
        Padding::Explicit((ph, pw)) => (ph, ph, pw, pw),
        Padding::Valid => (0, 0, 0, 0),
        Padding::Same => {
            let th = dh * (kh - 1);
            let tw = dw * (kw - 1);
            (th / 2, th - th / 2, tw / 2, tw - tw / 2)
        }
    };
    let ax = |size: usize, kernel, stride, before, after, dilation| Axis {
        size: size as i64,
        kernel,
        stride,
        pad_before: before,
        pad_after: after,
        dilation,
    };
    let oh = conv_out(ax(h, kh, sh, pt, pb, dh));
    let ow = conv_out(ax(w, kw, sw, pl, pr, dw));
    let (Ok(oh), Ok(ow)) = (oh, ow) else {
        let pad = if (pt, pb, pl, pr) == (pt, pt, pt, pt) || (one_d && pl == pr) {
            pl.to_string()
        } else if one_d {
            format!("(left {pl}, right {pr})")
        } else {
            format!("(top {pt}, bottom {pb}, left {pl}, right {pr})")
        };
        let dilation = if (dh, dw) == (1, 1) {
            "dilation 1".to_string()
        } else if one_d {
            format!("dilation {dw}, spanning {}", dw * (kw - 1) + 1)
        } else {
            format!(
                "dilation {}, spanning {}x{}",
                fmt_pair(dh, dw),
                dh * (kh - 1) + 1,
                dw * (kw - 1) + 1
            )
        };
        return Err(format!(
            "{} {} kernel ({dilation}) does not fit the {} input padded by {pad}",
            article(if one_d { kw } else { kh }),
            area(kh, kw, one_d),
            area(h, w, one_d)
        ));
    };
    let out = conv.out as usize;
    let (oh, ow) = (oh as usize, ow as usize);
    let per_out = (c / groups) as u128 * kh as u128 * kw as u128;
    let params = out as u128 * per_out + if conv.bias { out as u128 } else { 0 };
    Ok(LayerShape {
        input,
        inputs: vec![input],
        output: input.with(out, oh, ow),
        params: to_usize(params),
        macs: to_usize(out as u128 * oh as u128 * ow as u128 * per_out),
        pads: (pt as usize, pb as usize, pl as usize, pr as usize),
    })
}

fn conv_transpose_shape(
    ct: &ConvTranspose,
    c: usize,
    h: usize,
    w: usize,
    input: Shape,
    one_d: bool,
) -> Result<LayerShape, String> {
    let groups = ct.groups as usize;
    if !c.is_multiple_of(groups) {
        return Err(format!(
            "groups = {groups} does not divide the {c} input channels"
        ));
    }
    let axis = |n: usize, k: i64, s: i64, p: i64, op: i64, d: i64| {
        (n as i64 - 1) * s - 2 * p + d * (k - 1) + op + 1
    };
    let oh = axis(
        h,
        ct.kernel.0,
        ct.stride.0,
        ct.padding.0,
        ct.output_padding.0,
        ct.dilation.0,
    );
    let ow = axis(
        w,
        ct.kernel.1,
        ct.stride.1,
        ct.padding.1,
        ct.output_padding.1,
        ct.dilation.1,
    );
    if oh < 1 || ow < 1 {
        return Err(format!(
            "the output would be {} (size = (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1 on the {} input); every size must be at least 1",
            area(oh, ow, one_d),
            area(h, w, one_d)
        ));
    }
    let out = ct.out as usize;
    let (kh, kw) = (ct.kernel.0 as u128, ct.kernel.1 as u128);
    let per_in = (out / groups) as u128 * kh * kw;
    let params = c as u128 * per_in + if ct.bias { out as u128 } else { 0 };
    Ok(LayerShape {
        input,
        inputs: vec![input],
        output: input.with(out, oh as usize, ow as usize),
        params: to_usize(params),
        macs: to_usize(c as u128 * h as u128 * w as u128 * per_in),
        pads: (
            ct.padding.0 as usize,
            ct.padding.0 as usize,
            ct.padding.1 as usize,
            ct.padding.1 as usize,
        ),
    })
}

fn pool_shape(
    pool: &Pool,
    c: usize,
    h: usize,
    w: usize,
    input: Shape,
    one_d: bool,
) -> Result<LayerShape, String> {
    let (kh, kw) = pool.kernel;
    let (dh, dw) = if pool.kind == PoolKind::Max {
        pool.dilation
    } else {
        (1, 1)
    };
    let (ph, pw) = pool.padding;
    let ax = |size: usize, kernel, stride, pad, dilation| Axis {
        size: size as i64,
        kernel,
        stride,
        pad_before: pad,
        pad_after: pad,
        dilation,
    };
    let oh = pool_out(ax(h, kh, pool.stride.0, ph, dh), pool.ceil_mode);
    let ow = pool_out(ax(w, kw, pool.stride.1, pw, dw), pool.ceil_mode);
    match (oh, ow) {
        (Ok(oh), Ok(ow)) => Ok(LayerShape {
            input,
            inputs: vec![input],
            output: input.with(c, oh as usize, ow as usize),
            params: 0,
            macs: 0,
            pads: (ph as usize, ph as usize, pw as usize, pw as usize),
        }),
        (Err(AxisError::PaddingOnly { index }), _) | (_, Err(AxisError::PaddingOnly { index })) => {
            Err(format!(
                "with ceil_mode, output window {index} of a {} pool on the {} input (padding {}) covers padding only",
                area(kh, kw, one_d),
                area(h, w, one_d),
                if one_d { pw.to_string() } else { fmt_pair(ph, pw) }
            ))
        }
        _ => {
            let dil = if (dh, dw) == (1, 1) {
                String::new()
            } else if one_d {
                format!(" (dilation {dw}, spanning {})", dw * (kw - 1) + 1)
            } else {
                format!(" (dilation {}, spanning {}x{})", fmt_pair(dh, dw), dh * (kh - 1) + 1, dw * (kw - 1) + 1)
            };
            Err(format!(
                "{} {} window{dil} does not fit the {} input padded by {}: the output would be empty",
                article(if one_d { kw } else { kh }),
                area(kh, kw, one_d),
                area(h, w, one_d),
                if one_d { pw.to_string() } else { fmt_pair(ph, pw) }
            ))
        }
    }
}

/// "a" or "an" before a number read aloud ("an 8x8 kernel", "an 11x11 kernel").
fn article(n: i64) -> &'static str {
    let s = n.to_string();
    let eleven_or_eighteen = (s.len() % 3 == 2) && (s.starts_with("11") || s.starts_with("18"));
    if s.starts_with('8') || eleven_or_eighteen {
        "an"
    } else {
        "a"
    }
}
