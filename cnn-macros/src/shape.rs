//! Stage 4, shape inference: every tensor's shape, with PyTorch's arithmetic.
//!
//! Output size per axis `floor((H + 2p - d*(k-1) - 1) / s) + 1` with a true floor (a
//! negative numerator means the kernel does not fit); pools' `ceil_mode` with PyTorch's
//! rule that drops a last window starting at or past the end of input plus left padding;
//! `same` padding split with the extra cell bottom/right. Also counts parameters and MACs.

use crate::ir::{Conv, Diag, Layer, Model, Op, Padding, Pool, PoolKind, Shape};

/// Largest number of values one tensor may have (keeps every product far from overflow).
const MAX_TENSOR: u128 = 1 << 31;

/// What inference learned about one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerShape {
    /// Shape of the layer's input.
    pub input: Shape,
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

/// Infers the shapes of every layer. Stops at the first layer that has a problem (or
/// that failed an earlier stage, `blocked`), since everything after it would only
/// repeat that problem. Returns the shapes of the layers before it, and its diagnostic.
pub fn infer(model: &Model, blocked: &[usize]) -> (Vec<LayerShape>, Option<Diag>) {
    let mut shapes = Vec::new();
    let Some([c, h, w]) = model.input else {
        return (shapes, None);
    };
    if c < 1 || h < 1 || w < 1 {
        return (shapes, None);
    }
    if (c as u128) * (h as u128) * (w as u128) > MAX_TENSOR {
        return (
            shapes,
            Some(Diag::new(
                model.input_loc,
                format!("layer `input`: the input [{c}, {h}, {w}] has more than 2^31 values"),
            )),
        );
    }
    let mut shape = Shape::Chw(c as usize, h as usize, w as usize);
    for (position, layer) in model.layers.iter().enumerate() {
        if layer.index != position || blocked.contains(&layer.index) {
            break;
        }
        match layer_shape(layer, shape) {
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
                shape = s.output;
                shapes.push(s);
            }
            Err(d) => return (shapes, Some(d.for_layer(layer.index))),
        }
    }
    (shapes, None)
}

fn fmt_pair(a: i64, b: i64) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("({a}, {b})")
    }
}

fn layer_shape(layer: &Layer, input: Shape) -> Result<LayerShape, Diag> {
    let prefix = format!("layer `{}` ({})", layer.name, layer.op.keyword());
    let err = |msg: String| Diag::new(layer.loc, format!("{prefix}: {msg}"));
    let same = |params: usize| LayerShape {
        input,
        output: input,
        params,
        macs: 0,
        pads: (0, 0, 0, 0),
    };
    match &layer.op {
        Op::Conv(conv) => {
            let Shape::Chw(c, h, w) = input else {
                return Err(err(format!(
                    "needs a [C, H, W] input but gets {input}; a conv cannot follow `flatten`, `linear` or a global pool"
                )));
            };
            conv_shape(conv, c, h, w, input).map_err(err)
        }
        Op::Pool(pool) => {
            let Shape::Chw(c, h, w) = input else {
                return Err(err(format!("needs a [C, H, W] input but gets {input}")));
            };
            pool_shape(pool, c, h, w, input).map_err(err)
        }
        Op::GlobalAvgPool | Op::GlobalMaxPool => match input {
            Shape::Chw(c, _, _) => Ok(LayerShape {
                output: Shape::Vec(c),
                ..same(0)
            }),
            Shape::Vec(_) => Err(err(format!(
                "needs a [C, H, W] input but gets the vector {input}"
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
            Shape::Chw(..) => Err(err(format!(
                "needs a vector input but gets {input}; add `flatten` before it"
            ))),
        },
        Op::BatchNorm { .. } => {
            let (channels, _) = input.channels_and_plane();
            Ok(same(2 * channels))
        }
        Op::Act(_) | Op::Dropout { .. } => Ok(same(0)),
        Op::Softmax => match input {
            Shape::Vec(_) => Ok(same(0)),
            Shape::Chw(..) => Err(err(format!(
                "needs a vector input but gets {input}; add `flatten` or a global pool before it"
            ))),
        },
    }
}

fn conv_shape(
    conv: &Conv,
    c: usize,
    h: usize,
    w: usize,
    input: Shape,
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
        let pad = if (pt, pb, pl, pr) == (pt, pt, pt, pt) {
            pt.to_string()
        } else {
            format!("(top {pt}, bottom {pb}, left {pl}, right {pr})")
        };
        let dilation = if (dh, dw) == (1, 1) {
            "dilation 1".to_string()
        } else {
            format!(
                "dilation {}, spanning {}x{}",
                fmt_pair(dh, dw),
                dh * (kh - 1) + 1,
                dw * (kw - 1) + 1
            )
        };
        return Err(format!(
            "{} {kh}x{kw} kernel ({dilation}) does not fit the {h}x{w} input padded by {pad}",
            article(kh)
        ));
    };
    let out = conv.out as usize;
    let (oh, ow) = (oh as usize, ow as usize);
    let per_out = (c / groups) as u128 * kh as u128 * kw as u128;
    let params = out as u128 * per_out + if conv.bias { out as u128 } else { 0 };
    Ok(LayerShape {
        input,
        output: Shape::Chw(out, oh, ow),
        params: to_usize(params),
        macs: to_usize(out as u128 * oh as u128 * ow as u128 * per_out),
        pads: (pt as usize, pb as usize, pl as usize, pr as usize),
    })
}

fn pool_shape(
    pool: &Pool,
    c: usize,
    h: usize,
    w: usize,
    input: Shape,
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
            output: Shape::Chw(c, oh as usize, ow as usize),
            params: 0,
            macs: 0,
            pads: (ph as usize, ph as usize, pw as usize, pw as usize),
        }),
        (Err(AxisError::PaddingOnly { index }), _) | (_, Err(AxisError::PaddingOnly { index })) => {
            Err(format!(
                "with ceil_mode, output window {index} of a {kh}x{kw} pool on the {h}x{w} input (padding {}) covers padding only",
                fmt_pair(ph, pw)
            ))
        }
        _ => {
            let dil = if (dh, dw) == (1, 1) {
                String::new()
            } else {
                format!(" (dilation {}, spanning {}x{})", fmt_pair(dh, dw), dh * (kh - 1) + 1, dw * (kw - 1) + 1)
            };
            Err(format!(
                "{} {kh}x{kw} window{dil} does not fit the {h}x{w} input padded by {}: the output would be empty",
                article(kh),
                fmt_pair(ph, pw)
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
