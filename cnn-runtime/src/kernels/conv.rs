//! General 2-D convolution, as PyTorch's `Conv2d`: cross-correlation (no kernel flip),
//! stride, dilation, groups, zero padding.
//!
//! The loops are output-row stationary: for each output channel and output row, the row
//! is accumulated in place over every (input channel, kernel row, kernel column) tap, each
//! tap adding `weight * input row` over the range of output columns whose input cell is
//! inside the image (computed once per tap, so padding costs no branch in the inner loop,
//! which is contiguous when the stride is 1). Bias and activation are applied once per
//! output row, after accumulation. A 1x1, stride-1, unpadded convolution is a matrix
//! product and has its own path.
//!
//! The geometry helpers here (`Dims2d`, `tap_range`, `combine_taps`, `bias_act`)
//! are shared with the depthwise convolution and the pools.

use super::activation::Act;
use super::norm::{fold_bn, Affine};

/// Weights and bias of a convolution, repacked for [`conv2d`] at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// Output channels.
    out: usize,
    /// Input channels per group.
    in_per_group: usize,
    /// Kernel height.
    kh: usize,
    /// Kernel width.
    kw: usize,
    /// `[out][in_per_group][kh][kw]` (PyTorch's layout), batch norm folded in.
    weight: Box<[f32]>,
    /// `[out]`, zeros when the layer has no bias, batch norm folded in.
    bias: Box<[f32]>,
}

impl ConvParams {
    /// Builds the parameters from a PyTorch `Conv2d` weight, layout
    /// `[out, in_per_group, kh, kw]`, and its optional bias `[out]`.
    ///
    /// `bn` is a batch norm that follows the convolution, folded in here:
    /// `w'[o] = w[o] * scale[o]`, `b'[o] = b[o] * scale[o] + shift[o]`, computed in f64.
    ///
    /// # Panics
    ///
    /// If a length does not match the dimensions (the caller has checked them).
    pub fn from_torch(
        out: usize,
        in_per_group: usize,
        kh: usize,
        kw: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&Affine>,
    ) -> ConvParams {
        let (weight, bias) = fold_bn(out, in_per_group * kh * kw, weight, bias, bn);
        ConvParams {
            out,
            in_per_group,
            kh,
            kw,
            weight,
            bias,
        }
    }
}

/// Dimensions of a windowed 2-D operation (convolution or pool) as runtime values.
///
/// The public kernels fill it with their const generics and call an `#[inline(always)]`
/// worker, so LLVM sees constants; tests call the workers directly to sweep shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims2d {
    /// Input channels.
    pub(crate) c: usize,
    /// Input height.
    pub(crate) h: usize,
    /// Input width.
    pub(crate) w: usize,
    /// Output channels (`c` for depthwise convolutions and pools).
    pub(crate) o: usize,
    /// Output height.
    pub(crate) oh: usize,
    /// Output width.
    pub(crate) ow: usize,
    /// Kernel height.
    pub(crate) kh: usize,
    /// Kernel width.
    pub(crate) kw: usize,
    /// Vertical stride.
    pub(crate) sh: usize,
    /// Horizontal stride.
    pub(crate) sw: usize,
    /// Top padding (the bottom padding is implied by `oh`).
    pub(crate) ph: usize,
    /// Left padding (the right padding is implied by `ow`).
    pub(crate) pw: usize,
    /// Vertical dilation.
    pub(crate) dh: usize,
    /// Horizontal dilation.
    pub(crate) dw: usize,
    /// Groups (`c` for depthwise convolutions and pools).
    pub(crate) g: usize,
}

/// For a kernel tap at offset `off` (`k * dilation`) along one axis of an input of `n`
/// cells with leading padding `p`, stride `s` and `out` outputs: the output positions
/// `[lo, hi)` whose tap lands inside the input, and the input index of position `lo`
/// (meaningful only when `lo < hi`).
#[inline(always)]
pub(crate) fn tap_range(
    off: usize,
    p: usize,
    s: usize,
    n: usize,
    out: usize,
) -> (usize, usize, usize) {
    // Output x reads input x*s + off - p, valid when 0 <= x*s + off - p <= n - 1.
    if n + p <= off {
        return (0, 0, 0);
    }
    let hi = ((n - 1 + p - off) / s + 1).min(out);
    let lo = if off >= p { 0 } else { (p - off).div_ceil(s) };
    if lo >= hi {
        (0, 0, 0)
    } else {
        (lo, hi, lo * s + off - p)
    }
}

/// `f(&mut out[i], src[start + i * s])` for every `i` in `0..out.len()`: one kernel tap
/// applied to a run of output cells. Contiguous (vectorisable) when `s == 1`.
#[inline(always)]
pub(crate) fn combine_taps(
    out: &mut [f32],
    src: &[f32],
    start: usize,
    s: usize,
    f: impl Fn(&mut f32, f32),
) {
    if out.is_empty() {
        return;
    }
    if s == 1 {
        let src = &src[start..start + out.len()];
        for (y, &x) in out.iter_mut().zip(src) {
            f(y, x);
        }
    } else {
        let src = &src[start..start + (out.len() - 1) * s + 1];
        for (y, &x) in out.iter_mut().zip(src.iter().step_by(s)) {
            f(y, x);
        }
    }
}

/// Epilogue: `buf[i] = act(buf[i] + b)`, one tight loop per activation.
#[inline(always)]
pub(crate) fn bias_act(buf: &mut [f32], b: f32, act: Act) {
    match act {
        Act::Identity => buf.iter_mut().for_each(|x| *x += b),
        Act::Relu => buf.iter_mut().for_each(|x| *x = (*x + b).max(0.0)),
        Act::Relu6 => buf.iter_mut().for_each(|x| *x = (*x + b).clamp(0.0, 6.0)),
        _ => buf.iter_mut().for_each(|x| *x = act.apply(*x + b)),
    }
}

/// Adds one input channel's contribution to output row `oy`:
/// `out_row[x] += sum over (ky, kx) of wk[ky][kx] * in_plane[iy][ix]`, taps outside the
/// input skipped (zero padding). `wk` is the `kh * kw` kernel of this channel.
#[inline(always)]
pub(crate) fn accumulate_row(
    d: &Dims2d,
    out_row: &mut [f32],
    in_plane: &[f32],
    wk: &[f32],
    oy: usize,
) {
    let wk = &wk[..d.kh * d.kw];
    for (ky, wrow) in wk.chunks_exact(d.kw).enumerate() {
        // Wraps to a huge value (so fails the test) when the tap is in the top padding.
        let iy = (oy * d.sh + ky * d.dh).wrapping_sub(d.ph);
        if iy >= d.h {
            continue;
        }
        let in_row = &in_plane[iy * d.w..(iy + 1) * d.w];
        for (kx, &wv) in wrow.iter().enumerate() {
            let (lo, hi, start) = tap_range(kx * d.dw, d.pw, d.sw, d.w, d.ow);
            combine_taps(&mut out_row[lo..hi], in_row, start, d.sw, |y, x| {
                *y += wv * x
            });
        }
    }
}

/// Output positions per block of the 1x1 path: 1 KiB of output, hot in L1 while every
/// input channel is added to it.
const POINTWISE_BLOCK: usize = 256;

/// The convolution with its dimensions as runtime values; see [`conv2d`].
#[inline(always)]
fn conv2d_dyn(d: Dims2d, input: &[f32], params: &ConvParams, output: &mut [f32], act: Act) {
    let cg = d.c / d.g;
    let og = d.o / d.g;
    let (hw, ohw, kk) = (d.h * d.w, d.oh * d.ow, d.kh * d.kw);
    let input = &input[..d.c * hw];
    let output = &mut output[..d.o * ohw];
    let weight = &params.weight[..d.o * cg * kk];
    let bias = &params.bias[..d.o];

    let pointwise =
        kk == 1 && d.sh == 1 && d.sw == 1 && d.ph == 0 && d.pw == 0 && d.oh == d.h && d.ow == d.w;
    if pointwise {
        // A matrix product per group: out[o][p] = sum_ci w[o][ci] * in[ci][p].
        for (o, out_plane) in output.chunks_exact_mut(hw).enumerate() {
            let in_group = &input[(o / og) * cg * hw..][..cg * hw];
            let w_o = &weight[o * cg..][..cg];
            for (blk, out_blk) in out_plane.chunks_mut(POINTWISE_BLOCK).enumerate() {
                let p0 = blk * POINTWISE_BLOCK;
                out_blk.fill(0.0);
                for (&wv, in_plane) in w_o.iter().zip(in_group.chunks_exact(hw)) {
                    let in_blk = &in_plane[p0..p0 + out_blk.len()];
                    for (y, &x) in out_blk.iter_mut().zip(in_blk) {
                        *y += wv * x;
                    }
                }
                bias_act(out_blk, bias[o], act);
            }
        }
        return;
    }

    for (o, out_plane) in output.chunks_exact_mut(ohw).enumerate() {
        let in_group = &input[(o / og) * cg * hw..][..cg * hw];
        let w_o = &weight[o * cg * kk..][..cg * kk];
        for (oy, out_row) in out_plane.chunks_exact_mut(d.ow).enumerate() {
            out_row.fill(0.0);
            for (in_plane, wk) in in_group.chunks_exact(hw).zip(w_o.chunks_exact(kk)) {
                accumulate_row(&d, out_row, in_plane, wk, oy);
            }
            bias_act(out_row, bias[o], act);
        }
    }
}

/// 2-D convolution, PyTorch `Conv2d` semantics, fused with its activation:
/// `output[o][y][x] = act(bias[o] + sum over ci, ky, kx of
/// w[o][ci][ky][kx] * input[g*C/G + ci][y*SH + ky*DH - PH][x*SW + kx*DW - PW])`
/// where `g = o / (O/G)`, and taps outside the input read zero.
///
/// `input` holds at least `C*H*W` values and `output` at least `O*OH*OW`, both C, H, W
/// order. `PH`/`PW` are the top/left padding; the bottom/right padding is whatever `OH`/`OW`
/// imply (PyTorch's `padding='same'` with an even kernel pads one more cell there).
///
/// # Panics
///
/// If `params` was built for other dimensions, or a slice is too short.
pub fn conv2d<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
    const G: usize,
>(
    input: &[f32],
    params: &ConvParams,
    output: &mut [f32],
    act: Act,
) {
    const {
        assert!(C > 0 && H > 0 && W > 0 && O > 0 && OH > 0 && OW > 0);
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0);
        assert!(G > 0 && C % G == 0 && O % G == 0);
    }
    assert!(
        params.out == O && params.in_per_group == C / G && params.kh == KH && params.kw == KW,
        "conv2d: parameters are [{}, {}, {}, {}], the layer wants [{O}, {}, {KH}, {KW}]",
        params.out,
        params.in_per_group,
        params.kh,
        params.kw,
        C / G
    );
    let d = Dims2d {
        c: C,
        h: H,
        w: W,
        o: O,
        oh: OH,
        ow: OW,
        kh: KH,
        kw: KW,
        sh: SH,
        sw: SW,
        ph: PH,
        pw: PW,
        dh: DH,
        dw: DW,
        g: G,
    };
    conv2d_dyn(d, input, params, output, act);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::norm::channel_affine;
    use crate::kernels::reference::{self as r, Axis, Rng};

    const ACTS: [Act; 6] = [
        Act::Identity,
        Act::Relu,
        Act::Relu6,
        Act::Tanh,
        Act::Sigmoid,
        Act::LeakyRelu(0.1),
    ];

    /// Channel configurations `(c, o, groups)`: groups 1, 2, C, and in != out.
    const CHANNELS: [(usize, usize, usize); 10] = [
        (1, 1, 1),
        (1, 3, 1),
        (3, 2, 1),
        (2, 4, 2),
        (4, 2, 2),
        (3, 3, 3),
        (4, 8, 4),
        (6, 6, 3),
        (5, 5, 5),
        (8, 4, 1),
    ];

    fn dims(c: usize, o: usize, g: usize, ah: Axis, aw: Axis) -> Dims2d {
        Dims2d {
            c,
            h: ah.n,
            w: aw.n,
            o,
            oh: ah.out,
            ow: aw.out,
            kh: ah.k,
            kw: aw.k,
            sh: ah.s,
            sw: aw.s,
            ph: ah.p,
            pw: aw.p,
            dh: ah.d,
            dw: aw.d,
            g,
        }
    }

    /// Runs the fast convolution and the f64 reference on random data, channels
    /// `(c, o, g)`.
    fn check(
        rng: &mut Rng,
        (c, o, g): (usize, usize, usize),
        ah: Axis,
        aw: Axis,
        act: Act,
        with_bias: bool,
    ) {
        let d = dims(c, o, g, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight = rng.vec(o * (c / g) * ah.k * aw.k, -1.0, 1.0);
        let bias = rng.vec(o, -0.5, 0.5);
        let bias = with_bias.then_some(&bias[..]);
        let params = ConvParams::from_torch(o, c / g, ah.k, aw.k, &weight, bias, None);
        // Slices longer than needed: the tail of the output must stay untouched.
        let mut inp = input.clone();
        inp.extend([f32::NAN; 3]);
        let n = o * ah.out * aw.out;
        let mut got = vec![7.0; n + 3];
        conv2d_dyn(d, &inp, &params, &mut got, act);
        assert_eq!(&got[n..], &[7.0; 3], "{d:?} wrote past its output");
        let want = r::conv2d(c, o, g, ah, aw, &input, &weight, bias, act);
        r::assert_close(&got[..n], &want, &(d, act));
    }

    /// Every conv axis geometry (input size, kernel, stride, dilation, padding including
    /// asymmetric 'same') on the height axis and on the width axis, paired with a random
    /// geometry on the other axis, random channels/groups and activation.
    #[test]
    fn sweep_axes_against_reference() {
        let axes = r::conv_axes();
        assert!(axes.len() > 300, "{}", axes.len());
        let mut rng = Rng::new(11);
        let mut cases = 0;
        for (i, &a) in axes.iter().enumerate() {
            let b = axes[rng.below(axes.len())];
            for (ah, aw) in [(a, b), (b, a)] {
                let (c, o, g) = CHANNELS[(i + cases) % CHANNELS.len()];
                let act = ACTS[rng.below(ACTS.len())];
                let with_bias = rng.below(4) != 0;
                check(&mut rng, (c, o, g), ah, aw, act, with_bias);
                cases += 1;
            }
        }
        assert_eq!(cases, 2 * axes.len());
    }

    /// Every channel configuration with a set of geometries chosen at random.
    #[test]
    fn sweep_channels_against_reference() {
        let axes = r::conv_axes();
        let mut rng = Rng::new(12);
        for &(c, o, g) in &CHANNELS {
            for _ in 0..40 {
                let (ah, aw) = (axes[rng.below(axes.len())], axes[rng.below(axes.len())]);
                check(&mut rng, (c, o, g), ah, aw, Act::Identity, true);
            }
        }
    }

    /// The named edge shapes: 1x1 input, kernel equal to the input, stride larger than the
    /// kernel, non-square everything, dilation 2/3, windows in the padding only.
    #[test]
    fn edge_shapes_against_reference() {
        let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
        let mut rng = Rng::new(13);
        let cases = [
            // 1x1 input, 1x1 kernel; and 1x1 input with a padded 3x3 kernel.
            (ax(1, 1, 1, 0, 1), ax(1, 1, 1, 0, 1)),
            (ax(1, 3, 1, 1, 1), ax(1, 3, 1, 1, 1)),
            // Kernel equal to the input (one output).
            (ax(5, 5, 1, 0, 1), ax(3, 3, 1, 0, 1)),
            // Stride larger than the kernel.
            (ax(9, 2, 4, 0, 1), ax(10, 1, 3, 0, 1)),
            // Non-square kernel, stride, padding, dilation.
            (ax(7, 3, 2, 1, 2), ax(6, 2, 1, 0, 3)),
            // 'same' with even kernels and odd dilation: extra padding at the bottom/right.
            (Axis::same(6, 2, 3), Axis::same(5, 4, 1)),
            (Axis::same(4, 3, 2), Axis::same(7, 2, 1)),
            // Padding larger than the kernel: windows over padding only give act(bias).
            (ax(3, 1, 1, 2, 1), ax(2, 2, 2, 2, 1)),
            // 1x1 stride 2 (not the pointwise path), 1x1 with padding.
            (ax(7, 1, 2, 0, 1), ax(8, 1, 2, 0, 1)),
            (ax(4, 1, 1, 1, 1), ax(4, 1, 1, 0, 1)),
        ];
        for (ah, aw) in cases {
            for &(c, o, g) in &CHANNELS {
                for act in ACTS {
                    check(&mut rng, (c, o, g), ah, aw, act, true);
                }
            }
        }
    }

    /// The 1x1 path: sizes around its block boundary, groups.
    #[test]
    fn pointwise_against_reference() {
        let mut rng = Rng::new(14);
        for (h, w) in [(1, 1), (1, 7), (16, 16), (1, 256), (257, 1), (13, 41)] {
            let (ah, aw) = (
                Axis::conv(h, 1, 1, 0, 1).unwrap(),
                Axis::conv(w, 1, 1, 0, 1).unwrap(),
            );
            for &(c, o, g) in &CHANNELS {
                check(&mut rng, (c, o, g), ah, aw, Act::Relu, true);
            }
            check(&mut rng, (32, 16, 1), ah, aw, Act::Identity, false);
        }
    }

    fn shell_check<
        const C: usize,
        const H: usize,
        const W: usize,
        const O: usize,
        const OH: usize,
        const OW: usize,
        const KH: usize,
        const KW: usize,
        const SH: usize,
        const SW: usize,
        const PH: usize,
        const PW: usize,
        const DH: usize,
        const DW: usize,
        const G: usize,
    >(
        ah: Axis,
        aw: Axis,
        act: Act,
    ) {
        assert_eq!(
            (ah.n, ah.out, ah.k, ah.s, ah.p, ah.d),
            (H, OH, KH, SH, PH, DH)
        );
        assert_eq!(
            (aw.n, aw.out, aw.k, aw.s, aw.p, aw.d),
            (W, OW, KW, SW, PW, DW)
        );
        let mut rng = Rng::new(15);
        let input = rng.vec(C * H * W, -1.0, 1.0);
        let weight = rng.vec(O * (C / G) * KH * KW, -1.0, 1.0);
        let bias = rng.vec(O, -0.5, 0.5);
        let params = ConvParams::from_torch(O, C / G, KH, KW, &weight, Some(&bias), None);
        let mut got = vec![0.0; O * OH * OW];
        conv2d::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(
            &input, &params, &mut got, act,
        );
        let want = r::conv2d(C, O, G, ah, aw, &input, &weight, Some(&bias), act);
        r::assert_close(&got, &want, &"const-generic conv2d");
    }

    /// The const-generic shell, instantiated on a few layers.
    #[test]
    fn const_generic_instances() {
        // LeNet-5 conv1.
        let a = Axis::conv(32, 5, 1, 0, 1).unwrap();
        shell_check::<1, 32, 32, 6, 28, 28, 5, 5, 1, 1, 0, 0, 1, 1, 1>(a, a, Act::Tanh);
        // Grouped, 'same' with kernel (2, 3) and dilation (3, 1).
        let (ah, aw) = (Axis::same(7, 2, 3), Axis::same(6, 3, 1));
        shell_check::<4, 7, 6, 6, 7, 6, 2, 3, 1, 1, 1, 1, 3, 1, 2>(ah, aw, Act::Relu6);
        // Strided, padded, non-square, 1x1 map out.
        let (ah, aw) = (
            Axis::conv(5, 3, 2, 1, 1).unwrap(),
            Axis::conv(2, 2, 3, 0, 1).unwrap(),
        );
        shell_check::<3, 5, 2, 4, 3, 1, 3, 2, 2, 3, 1, 0, 1, 1, 1>(ah, aw, Act::Sigmoid);
        // Pointwise.
        let a = Axis::conv(9, 1, 1, 0, 1).unwrap();
        shell_check::<8, 9, 9, 12, 9, 9, 1, 1, 1, 1, 0, 0, 1, 1, 4>(a, a, Act::LeakyRelu(0.2));
    }

    #[test]
    #[should_panic(expected = "conv2d: parameters")]
    fn mismatched_params_panic() {
        // Built for groups = 1, called with groups = 2.
        let params = ConvParams::from_torch(2, 2, 3, 3, &[0.0; 36], None, None);
        conv2d::<2, 4, 4, 2, 2, 2, 3, 3, 1, 1, 0, 0, 1, 1, 2>(
            &[0.0; 32],
            &params,
            &mut [0.0; 8],
            Act::Identity,
        );
    }

    /// A conv with a batch norm folded in equals the conv followed by the batch norm.
    #[test]
    fn folded_batch_norm_equals_conv_then_affine() {
        let mut rng = Rng::new(16);
        const C: usize = 3;
        const O: usize = 4;
        let input = rng.vec(C * 6 * 5, -1.0, 1.0);
        let weight = rng.vec(O * C * 9, -1.0, 1.0);
        let bias = rng.vec(O, -0.5, 0.5);
        let bn = Affine::from_batch_norm(
            &rng.vec(O, 0.5, 1.5),
            &rng.vec(O, -0.3, 0.3),
            &rng.vec(O, -0.5, 0.5),
            &rng.vec(O, 0.5, 2.0),
            1e-5,
        );
        for bias in [Some(&bias[..]), None] {
            for act in ACTS {
                let plain = ConvParams::from_torch(O, C, 3, 3, &weight, bias, None);
                let folded = ConvParams::from_torch(O, C, 3, 3, &weight, bias, Some(&bn));
                let mut want = [0.0; O * 6 * 5];
                conv2d::<C, 6, 5, O, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
                    &input,
                    &plain,
                    &mut want,
                    Act::Identity,
                );
                channel_affine::<O, 30>(&mut want, &bn, act);
                let mut got = [0.0; O * 6 * 5];
                conv2d::<C, 6, 5, O, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
                    &input, &folded, &mut got, act,
                );
                let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
                r::assert_close(&got, &want, &("folded bn", act));
            }
        }
    }

    #[test]
    fn tap_range_matches_brute_force() {
        for n in 1usize..7 {
            for out in 1..9 {
                for s in 1..4 {
                    for p in 0..4 {
                        for off in 0..10 {
                            let valid: Vec<usize> = (0..out)
                                .filter(|&x: &usize| (x * s + off).wrapping_sub(p) < n)
                                .collect();
                            let (lo, hi, start) = tap_range(off, p, s, n, out);
                            assert_eq!(
                                (lo..hi).collect::<Vec<_>>(),
                                valid,
                                "{n} {out} {s} {p} {off}"
                            );
                            if lo < hi {
                                assert_eq!(start, lo * s + off - p);
                            }
                        }
                    }
                }
            }
        }
    }
}
