//! General 2-D convolution, as PyTorch's `Conv2d`: cross-correlation (no kernel flip),
//! stride, dilation, groups, zero padding.
//!
//! [`ConvParams::from_torch`] packs the weights for the convolution engine
//! (`kernels/engine/`): panels of 16 output channels, `[ceil(O/16)][KH*KW][C/G][16]`.
//! [`conv2d`] runs the engine on the instruction set [`cpu::level`] selects (AVX-512,
//! AVX2 + FMA or the portable baseline), falling back to a scalar loop over the packed
//! weights for the shapes the engine does not take.
//!
//! Files: `mod.rs` the parameters (packing at load time) and the public kernel, `run.rs`
//! the engine runs (the instruction set picked once per call, the split over the pool's
//! threads, the column tiles of long 1-D signals), `scaled.rs` the convolution of an
//! input scaled per channel (a squeeze-and-excitation `mul` folded into the weights),
//! `tests.rs`. The geometry (`Dims2d`,
//! the tap arithmetic) is `kernels/geometry.rs`, shared with the engine and the pools.

use super::activation::Act;
use super::engine::{self, Packed, Row16};
use super::geometry::Dims2d;
#[cfg(feature = "alloc")]
use super::norm::fold_bn;
use super::norm::Affine;
use crate::buf::Buf;
use crate::cpu::{self, Level};

#[cfg(test)]
mod chunked_tests;
#[cfg(test)]
mod fuse_speed;
#[cfg(test)]
mod kchunk_tests;
#[cfg(test)]
mod residual_tests;
mod run;
mod scaled;
#[cfg(test)]
mod scaled_tests;
#[cfg(test)]
mod speed;
#[cfg(test)]
mod split_tests;
#[cfg(test)]
mod tests;

#[cfg_attr(not(feature = "parallel"), allow(unused_imports))]
pub(crate) use self::run::balanced;
pub(crate) use self::run::conv2d_with;
pub use self::scaled::{
    conv2d_scaled, conv2d_scaled_residual, conv2d_scaled_residual_rows, conv2d_scaled_rows,
    conv_scale_fold_len,
};
#[cfg(feature = "parallel")]
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};

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
    /// Panels of 16 output channels: `[ceil(out/16)][kh*kw][in_per_group][16]`, batch
    /// norm folded in, zeros past `out`.
    weight: Buf<Row16>,
    /// `[ceil(out/16)][16]`, zeros when the layer has no bias, batch norm folded in.
    bias: Buf<Row16>,
}

#[cfg(feature = "alloc")]
impl crate::buf::Embed for ConvParams {
    fn parts(&self) -> crate::buf::Parts {
        use crate::buf::row_bytes;
        crate::buf::Parts {
            dims: alloc::vec![self.out, self.in_per_group, self.kh, self.kw],
            bufs: alloc::vec![
                (true, row_bytes(&self.weight)),
                (true, row_bytes(&self.bias))
            ],
        }
    }
}

impl ConvParams {
    #[cfg(feature = "alloc")]
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
        let (weight, bias) = engine::pack_conv(out, in_per_group, kh * kw, &weight, &bias);
        ConvParams {
            out,
            in_per_group,
            kh,
            kw,
            weight: weight.into(),
            bias: bias.into(),
        }
    }

    /// Parameters computed at compile time ([`crate::buf::Embed`]): dims
    /// `[out, in_per_group, kh, kw]`, the weight and bias panels.
    #[doc(hidden)]
    pub const fn from_static(
        dims: [usize; 4],
        weight: &'static [Row16],
        bias: &'static [Row16],
    ) -> ConvParams {
        let [out, in_per_group, kh, kw] = dims;
        ConvParams {
            out,
            in_per_group,
            kh,
            kw,
            weight: Buf::Static(weight),
            bias: Buf::Static(bias),
        }
    }

    /// `[out, in_per_group, kh, kw]`.
    pub(crate) fn dims(&self) -> [usize; 4] {
        [self.out, self.in_per_group, self.kh, self.kw]
    }

    fn packed(&self) -> Packed<'_> {
        Packed {
            weight: &self.weight,
            bias: &self.bias,
        }
    }
}

/// The convolution with its dimensions as runtime values; see [`conv2d_scratch`].
#[inline]
pub(crate) fn conv2d_dyn(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    conv2d_with(
        level,
        d,
        input,
        params,
        output,
        act,
        None,
        engine::SCRATCH,
        None,
        scratch,
    );
}

/// Floats of working memory [`conv2d_scratch`] can use for a convolution of these
/// dimensions (arguments as [`conv2d`]'s parameters: input `C x H x W`, output `O x OH x
/// OW`, kernel, stride, top/left padding, dilation, groups), 0 when it uses none:
/// - an unpadded strided 1x1 convolution (downsampling) gathers the input pixels it
///   reads there first, then runs as a 1x1 convolution on them;
/// - a 1x1 convolution on a small map run by channel tiles packs each block of its input
///   there, tile after tile, on the levels that pack (AVX2), a share per thread part for
///   up to four parts;
/// - a layer with big weights (1 MB per band) copies its input bands there, taller than
///   the kernel's stack buffer holds, so that its weights stream past fewer bands.
///
/// Fewer floats work too (blocks that do not fit are read unpacked, bands stay short,
/// nothing is gathered), with the same results; the compiler plans this memory in a
/// model's arena where it does not raise the arena's size.
#[allow(clippy::too_many_arguments)]
pub fn conv_scratch_len(
    (c, h, w): (usize, usize, usize),
    (o, oh, ow): (usize, usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    (dh, dw): (usize, usize),
    g: usize,
) -> usize {
    let ok = [c, h, w, o, oh, ow, kh, kw, sh, sw, dh, dw, g]
        .iter()
        .all(|&n| n > 0)
        && c.is_multiple_of(g)
        && o.is_multiple_of(g);
    if !ok {
        return 0;
    }
    let d = Dims2d {
        c,
        h,
        w,
        o,
        oh,
        ow,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        g,
    };
    // A strided 1x1 layer: its gathered input, then the 1x1 layer's on it.
    let (gathered, d) = match run::subsampled_1x1(&d) {
        Some(dd) => ((c * oh * ow).next_multiple_of(16), dd),
        None => (0, d),
    };
    // Whole lines per part.
    gathered + engine::pack_floats(d).next_multiple_of(16) * engine::PACK_PARTS
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
    conv2d_scratch::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(
        input,
        params,
        output,
        &mut [],
        act,
    );
}

/// [`conv2d`] with working memory: `scratch` (any length; [`conv_scratch_len`] floats
/// are all it can use) lets a strided 1x1 layer gather its pixels, a 1x1 layer on a
/// small map pack its input for its channel tiles where the block would not fit the
/// kernel's stack buffer, and a layer with big weights copy taller bands. The results are the
/// same bits as [`conv2d`]'s; `scratch`'s contents before and after mean nothing.
///
/// # Panics
///
/// As [`conv2d`].
pub fn conv2d_scratch<
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
    scratch: &mut [f32],
    act: Act,
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(params);
    conv2d_dyn(cpu::level(), d, input, params, output, scratch, act);
}

/// [`conv2d_scratch`] on output rows `rows.0..rows.1` only (of every output plane), on
/// this thread: the rows one member of a [`team`](crate::team) owns. The other rows of
/// `output` are left as they were; every value written is the one [`conv2d`] gives.
///
/// # Panics
///
/// As [`conv2d`].
pub fn conv2d_rows<
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
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(params);
    run::conv2d_rows_with(
        cpu::level(),
        d,
        input,
        params,
        output,
        act,
        None,
        scratch,
        rows,
    );
}

/// [`conv2d_scratch`] with a residual added before the activation (a fused `add`, as
/// ResNet's blocks end): `output = act(conv(input) + residual)`, `residual` laid out as
/// the output (`O*OH*OW` values, C, H, W order). The sum is added to each block of
/// output as soon as the convolution has stored it (while it is in cache), with the
/// bits of the convolution stored and then added by
/// [`binary_into`](crate::kernels::binary::binary_into).
///
/// # Panics
///
/// As [`conv2d`], or if `residual` holds fewer than `O*OH*OW` values.
pub fn conv2d_residual<
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
    residual: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(params);
    check_residual("conv2d_residual", residual, O * OH * OW);
    conv2d_with(
        cpu::level(),
        d,
        input,
        params,
        output,
        act,
        Some(residual),
        engine::SCRATCH,
        None,
        scratch,
    );
}

/// [`conv2d_residual`] on output rows `rows.0..rows.1` only (of every output plane), on
/// this thread: the rows one member of a [`team`](crate::team) owns, which read the
/// same rows of `residual`. The other rows of `output` are left as they were; every
/// value written is the one [`conv2d_residual`] gives.
///
/// # Panics
///
/// As [`conv2d_residual`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_residual_rows<
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
    residual: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(params);
    check_residual("conv2d_residual", residual, O * OH * OW);
    let res = Some(residual);
    run::conv2d_rows_with(
        cpu::level(),
        d,
        input,
        params,
        output,
        act,
        res,
        scratch,
        rows,
    );
}

/// Panics unless `residual` holds the output's `n` values (`what`: the kernel's name).
pub(crate) fn check_residual(what: &str, residual: &[f32], n: usize) {
    assert!(
        residual.len() >= n,
        "{what}: the residual holds {} values, the output {n}",
        residual.len(),
    );
}

/// The dimensions of the convolution the const parameters describe, checked against
/// `params` (panics as [`conv2d`]).
fn checked_dims<
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
    params: &ConvParams,
) -> Dims2d {
    const {
        assert!(C > 0 && H > 0 && W > 0 && O > 0 && OH > 0 && OW > 0);
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0);
        assert!(G > 0 && C.is_multiple_of(G) && O.is_multiple_of(G));
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
    Dims2d {
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
    }
}
