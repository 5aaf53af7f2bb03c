//! The reference layers: convolution, pooling, linear, normalisation, elementwise,
//! resampling, transposed convolution and softmax, in f64 by direct loops over
//! PyTorch's definitions (weights in its layout, windows cell by cell, padding
//! recognised by coordinates).

use super::*;

/// `act(conv + residual)` per value: a reference convolution's output (`conv`, no
/// activation) with a fused residual add (if any) and then the activation, in f32 as
/// the kernels' epilogue rounds it.
pub fn add_act(conv: &[f64], residual: Option<&[f32]>, act: Act) -> Vec<f64> {
    conv.iter()
        .enumerate()
        .map(|(i, &v)| {
            let r = residual.map_or(0.0, |r| f64::from(r[i]));
            f64::from(act.apply((v + r) as f32))
        })
        .collect()
}

/// PyTorch `Conv2d` (cross-correlation, groups, zero padding) with `act` after the bias.
/// `weight` is `[o, c/g, kh, kw]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    c: usize,
    o: usize,
    g: usize,
    ah: Axis,
    aw: Axis,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    a: Act,
) -> Vec<f64> {
    let (cg, og) = (c / g, o / g);
    assert_eq!(input.len(), c * ah.n * aw.n);
    assert_eq!(weight.len(), o * cg * ah.k * aw.k);
    let mut out = Vec::with_capacity(o * ah.out * aw.out);
    for oc in 0..o {
        let group = oc / og;
        for oy in 0..ah.out {
            for ox in 0..aw.out {
                let mut acc = bias.map_or(0.0, |b| f64::from(b[oc]));
                for ci in 0..cg {
                    let ic = group * cg + ci;
                    for ky in 0..ah.k {
                        for kx in 0..aw.k {
                            let (iy, ix) = (ah.tap(oy, ky), aw.tap(ox, kx));
                            if ah.inside(iy) && aw.inside(ix) {
                                let x = input[(ic * ah.n + iy as usize) * aw.n + ix as usize];
                                let w = weight[((oc * cg + ci) * ah.k + ky) * aw.k + kx];
                                acc += f64::from(w) * f64::from(x);
                            }
                        }
                    }
                }
                out.push(act(a, acc));
            }
        }
    }
    out
}

/// PyTorch `MaxPool2d`: maximum over the window's taps inside the input (-inf padding).
pub fn max_pool2d(c: usize, ah: Axis, aw: Axis, input: &[f32]) -> Vec<f64> {
    assert_eq!(input.len(), c * ah.n * aw.n);
    let mut out = Vec::new();
    for ch in 0..c {
        for oy in 0..ah.out {
            for ox in 0..aw.out {
                let mut m = f64::NEG_INFINITY;
                for ky in 0..ah.k {
                    for kx in 0..aw.k {
                        let (iy, ix) = (ah.tap(oy, ky), aw.tap(ox, kx));
                        if ah.inside(iy) && aw.inside(ix) {
                            m = m.max(f64::from(
                                input[(ch * ah.n + iy as usize) * aw.n + ix as usize],
                            ));
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

/// PyTorch `AvgPool2d`: the sum over the window's input cells, divided by the number of
/// window cells inside the padded input (`[-p, n + pe)` per axis) when
/// `count_include_pad`, else by the number of input cells. Every cell of the window is
/// classified one by one.
pub fn avg_pool2d(
    c: usize,
    ah: Axis,
    aw: Axis,
    count_include_pad: bool,
    input: &[f32],
) -> Vec<f64> {
    assert_eq!(input.len(), c * ah.n * aw.n);
    assert_eq!((ah.d, aw.d), (1, 1));
    let in_padded = |a: &Axis, i: isize| -(a.p as isize) <= i && i < (a.n + a.pe) as isize;
    let mut out = Vec::new();
    for ch in 0..c {
        for oy in 0..ah.out {
            for ox in 0..aw.out {
                let (mut sum, mut real, mut padded) = (0.0, 0usize, 0usize);
                for ky in 0..ah.k {
                    for kx in 0..aw.k {
                        let (iy, ix) = (ah.tap(oy, ky), aw.tap(ox, kx));
                        if in_padded(&ah, iy) && in_padded(&aw, ix) {
                            padded += 1;
                        }
                        if ah.inside(iy) && aw.inside(ix) {
                            real += 1;
                            sum += f64::from(input[(ch * ah.n + iy as usize) * aw.n + ix as usize]);
                        }
                    }
                }
                let div = if count_include_pad { padded } else { real };
                out.push(sum / div as f64);
            }
        }
    }
    out
}

/// Mean of each channel.
pub fn global_avg_pool(c: usize, hw: usize, input: &[f32]) -> Vec<f64> {
    (0..c)
        .map(|ch| {
            input[ch * hw..(ch + 1) * hw]
                .iter()
                .map(|&x| f64::from(x))
                .sum::<f64>()
                / hw as f64
        })
        .collect()
}

/// Maximum of each channel.
pub fn global_max_pool(c: usize, hw: usize, input: &[f32]) -> Vec<f64> {
    (0..c)
        .map(|ch| {
            input[ch * hw..(ch + 1) * hw]
                .iter()
                .map(|&x| f64::from(x))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect()
}

/// PyTorch `Linear`, weight `[out, inp]`, with `act` after the bias.
pub fn linear(
    inp: usize,
    out: usize,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    a: Act,
) -> Vec<f64> {
    (0..out)
        .map(|o| {
            let dot: f64 = (0..inp)
                .map(|i| f64::from(weight[o * inp + i]) * f64::from(input[i]))
                .sum();
            act(a, dot + bias.map_or(0.0, |b| f64::from(b[o])))
        })
        .collect()
}

/// Inference-mode batch norm, `(x - mean) / sqrt(var + eps) * weight + bias`, per
/// channel of `hw` values, then `act`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    c: usize,
    hw: usize,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    a: Act,
) -> Vec<f64> {
    (0..c * hw)
        .map(|i| {
            let ch = i / hw;
            let y = (f64::from(x[i]) - f64::from(mean[ch])) / (f64::from(var[ch]) + eps).sqrt()
                * f64::from(weight[ch])
                + f64::from(bias[ch]);
            act(a, y)
        })
        .collect()
}

/// Broadcast element-wise `act(a + b)` (or `act(a * b)` when `mul`) on `[c, h, w]`
/// tensors, operand shapes `sa`, `sb` (axes 1 or the output's), index by index.
pub fn binary(
    shape: [usize; 3],
    sa: [usize; 3],
    sb: [usize; 3],
    a: &[f32],
    b: &[f32],
    mul: bool,
    act_: Act,
) -> Vec<f64> {
    let at = |x: &[f32], s: [usize; 3], c: usize, h: usize, w: usize| {
        let (c, h, w) = (c.min(s[0] - 1), h.min(s[1] - 1), w.min(s[2] - 1));
        f64::from(x[(c * s[1] + h) * s[2] + w])
    };
    let mut out = Vec::new();
    for c in 0..shape[0] {
        for h in 0..shape[1] {
            for w in 0..shape[2] {
                let (x, y) = (at(a, sa, c, h, w), at(b, sb, c, h, w));
                out.push(act(act_, if mul { x * y } else { x + y }));
            }
        }
    }
    out
}

/// PyTorch's adaptive pools: output `(i, j)` pools rows `[floor(i*h/oh),
/// ceil((i+1)*h/oh))` and the columns likewise; the mean, or the maximum.
pub fn adaptive_pool2d(
    c: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    max: bool,
    input: &[f32],
) -> Vec<f64> {
    let win = |i: usize, n: usize, o: usize| {
        let start = (i as f64 * n as f64 / o as f64).floor() as usize;
        let end = ((i + 1) as f64 * n as f64 / o as f64).ceil() as usize;
        start..end
    };
    let mut out = Vec::new();
    for ch in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                let (mut s, mut m, mut k) = (0.0, f64::NEG_INFINITY, 0);
                for y in win(i, h, oh) {
                    for x in win(j, w, ow) {
                        let v = f64::from(input[(ch * h + y) * w + x]);
                        s += v;
                        m = m.max(v);
                        k += 1;
                    }
                }
                out.push(if max { m } else { s / k as f64 });
            }
        }
    }
    out
}

/// Softmax over the channels of `[c, hw]` at every position, in f64.
pub fn softmax_channels(c: usize, hw: usize, x: &[f32]) -> Vec<f64> {
    let mut out = vec![0.0; c * hw];
    for p in 0..hw {
        let col: Vec<f32> = (0..c).map(|ch| x[ch * hw + p]).collect();
        for (ch, v) in softmax(&col).into_iter().enumerate() {
            out[ch * hw + p] = v;
        }
    }
    out
}

/// Source coordinate of output `dst` of `out` over an axis of `n` cells for bilinear
/// upsampling (PyTorch `interpolate(mode='bilinear')`): the lower neighbour, the upper
/// one and the weight of the upper.
pub fn bilinear_coord(
    dst: usize,
    n: usize,
    out: usize,
    align_corners: bool,
) -> (usize, usize, f64) {
    let src = if align_corners {
        if out == 1 {
            0.0
        } else {
            dst as f64 * (n - 1) as f64 / (out - 1) as f64
        }
    } else {
        ((dst as f64 + 0.5) * n as f64 / out as f64 - 0.5).max(0.0)
    };
    let lo = (src.floor() as usize).min(n - 1);
    ((lo), (lo + 1).min(n - 1), src - lo as f64)
}

/// Bilinear upsampling of `[c, h, w]` to `[c, oh, ow]`.
pub fn upsample_bilinear(
    c: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    align_corners: bool,
    x: &[f32],
) -> Vec<f64> {
    let mut out = Vec::new();
    for ch in 0..c {
        for i in 0..oh {
            let (y0, y1, fy) = bilinear_coord(i, h, oh, align_corners);
            for j in 0..ow {
                let (x0, x1, fx) = bilinear_coord(j, w, ow, align_corners);
                let at = |y: usize, xx: usize| f64::from(x[(ch * h + y) * w + xx]);
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bot = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                out.push(top * (1.0 - fy) + bot * fy);
            }
        }
    }
    out
}

/// Nearest upsampling of `[c, h, w]` to `[c, oh, ow]`: source `floor(dst * n / out)`.
pub fn upsample_nearest(
    c: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    x: &[f32],
) -> Vec<f64> {
    let mut out = Vec::new();
    for ch in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                out.push(f64::from(x[(ch * h + i * h / oh) * w + j * w / ow]));
            }
        }
    }
    out
}

/// Dimensions of a transposed convolution for [`conv_transpose2d`]: per axis (input,
/// output, kernel, stride, padding, dilation).
pub struct CtDims {
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub o: usize,
    /// Groups.
    pub g: usize,
    /// Height axis.
    pub h: (usize, usize, usize, usize, usize, usize),
    /// Width axis.
    pub w: (usize, usize, usize, usize, usize, usize),
}

/// PyTorch `ConvTranspose2d` as a scatter: every input cell adds `x * w` to the outputs
/// `(iy*sh - ph + ky*dh, ix*sw - pw + kx*dw)` that exist; weight `[c, o/g, kh, kw]`;
/// then bias and `act`.
pub fn conv_transpose2d(
    d: &CtDims,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    a: Act,
) -> Vec<f64> {
    let (h, oh, kh, sh, ph, dh) = d.h;
    let (w, ow, kw, sw, pw, dw) = d.w;
    let (cg, og) = (d.c / d.g, d.o / d.g);
    assert_eq!(input.len(), d.c * h * w);
    assert_eq!(weight.len(), d.c * og * kh * kw);
    let mut out = vec![0.0f64; d.o * oh * ow];
    for ci in 0..d.c {
        let g = ci / cg;
        for iy in 0..h {
            for ix in 0..w {
                let x = f64::from(input[(ci * h + iy) * w + ix]);
                for oo in 0..og {
                    let o = g * og + oo;
                    for ky in 0..kh {
                        let y = (iy * sh + ky * dh) as isize - ph as isize;
                        if y < 0 || y >= oh as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let xx = (ix * sw + kx * dw) as isize - pw as isize;
                            if xx < 0 || xx >= ow as isize {
                                continue;
                            }
                            let wv = f64::from(weight[((ci * og + oo) * kh + ky) * kw + kx]);
                            out[(o * oh + y as usize) * ow + xx as usize] += x * wv;
                        }
                    }
                }
            }
        }
    }
    for o in 0..d.o {
        let b = bias.map_or(0.0, |b| f64::from(b[o]));
        for v in &mut out[o * oh * ow..(o + 1) * oh * ow] {
            *v = act(a, *v + b);
        }
    }
    out
}

/// Softmax in f64, the textbook formula with the maximum subtracted.
pub fn softmax(x: &[f32]) -> Vec<f64> {
    let m = x
        .iter()
        .map(|&v| f64::from(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|&v| (f64::from(v) - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}
