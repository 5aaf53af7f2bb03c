//! A convolution whose input is first scaled channel by channel: a squeeze-and-excitation
//! block's `x * s` (`s` of shape `[C, 1, 1]`, EfficientNet's and MobileNetV3's) followed by
//! its projection. The multiplication folds into the weights: `sum w[o][c][t] * (s[c] *
//! x[c][p]) = sum (w[o][c][t] * s[c]) * x[c][p]` (one rounding per product moves from
//! the input to the weight), so the convolution reads `x` as it is, with a copy of its
//! weights scaled per input channel in working memory, and the `mul` pass over the
//! whole `C x H x W` tensor (a read and a write of it) is gone.
//!
//! The copy costs a read and a write of the weights, so it pays where they are fewer
//! than the input's values: [`conv_scale_fold_len`] is the compiler's rule.

use super::engine::{Packed, Row16, PANEL};
use super::run::conv2d_packed;
use super::{checked_dims, ConvParams};
use crate::cpu::{self, Level};
use crate::kernels::activation::Act;
use crate::kernels::engine;
use crate::kernels::geometry::Dims2d;
use crate::kernels::simd::{self, Simd, WithSimd};

/// Floats of working memory [`conv2d_scaled`] needs for a convolution of input `C x H x
/// W` into `O` channels with a `KH x KW` kernel and `G` groups, where folding the
/// per-channel scale into a copy of its weights pays (one group, its packed weights no
/// more per input channel than the input has pixels: `ceil(O/16)*16 * KH*KW <= H*W`),
/// else `None` (the compiler then keeps the `mul`).
pub fn conv_scale_fold_len(
    (c, h, w): (usize, usize, usize),
    o: usize,
    (kh, kw): (usize, usize),
    g: usize,
) -> Option<usize> {
    let panels = o.div_ceil(PANEL);
    let per_channel = panels * PANEL * kh * kw;
    let ok = c > 0 && o > 0 && kh * kw > 0 && g == 1 && per_channel <= h * w;
    // A 64-byte boundary can be up to 15 floats into the memory.
    ok.then(|| per_channel * c + PANEL)
}

/// [`conv2d_scratch`](super::conv2d_scratch) of `input` scaled by `scale[c]` channel by
/// channel (`scale` holds `C` values, a `[C, 1, 1]` tensor): `output = act(conv(input *
/// scale))`, computed as the convolution of `input` with the weights scaled per input
/// channel, copied into `scratch` (the results differ from scaling the input first by
/// one rounding per product). `scratch` holds at least [`conv_scale_fold_len`]'s floats
/// (what the rule would give for any shape: `ceil(O/16)*16 * KH*KW * C + 16`).
///
/// # Panics
///
/// As [`conv2d`](super::conv2d); if the layer has more than one group, `scale` holds
/// fewer than `C` values or `scratch` fewer than the weights' floats.
pub fn conv2d_scaled<
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
>(
    input: &[f32],
    params: &ConvParams,
    scale: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, 1>(params);
    scaled_in(
        cpu::level(),
        d,
        input,
        params,
        scale,
        None,
        output,
        scratch,
        act,
        None,
    );
}

/// [`conv2d_scaled`] with a residual added before the activation (see
/// [`conv2d_residual`](super::conv2d_residual)): `output = act(conv(input * scale) +
/// residual)`.
///
/// # Panics
///
/// As [`conv2d_scaled`], or if `residual` holds fewer than `O*OH*OW` values.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_scaled_residual<
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
>(
    input: &[f32],
    params: &ConvParams,
    scale: &[f32],
    residual: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, 1>(params);
    super::check_residual("conv2d_scaled_residual", residual, O * OH * OW);
    scaled_in(
        cpu::level(),
        d,
        input,
        params,
        scale,
        Some(residual),
        output,
        scratch,
        act,
        None,
    );
}

/// [`conv2d_scaled`] on output rows `rows.0..rows.1` only (of every output plane), on
/// this thread: the rows one member of a [`team`](crate::team) owns (each member scales
/// its own copy of the weights). The other rows of `output` are left as they were;
/// every value written is the one [`conv2d_scaled`] gives.
///
/// # Panics
///
/// As [`conv2d_scaled`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_scaled_rows<
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
>(
    input: &[f32],
    params: &ConvParams,
    scale: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, 1>(params);
    let level = cpu::level();
    scaled_in(
        level,
        d,
        input,
        params,
        scale,
        None,
        output,
        scratch,
        act,
        Some(rows),
    );
}

/// [`conv2d_scaled_residual`] on output rows `rows.0..rows.1` only, on this thread (as
/// [`conv2d_scaled_rows`]), which read the same rows of `residual`.
///
/// # Panics
///
/// As [`conv2d_scaled_residual`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_scaled_residual_rows<
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
>(
    input: &[f32],
    params: &ConvParams,
    scale: &[f32],
    residual: &[f32],
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: (usize, usize),
) {
    let d = checked_dims::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, 1>(params);
    super::check_residual("conv2d_scaled_residual", residual, O * OH * OW);
    let (level, res) = (cpu::level(), Some(residual));
    scaled_in(
        level,
        d,
        input,
        params,
        scale,
        res,
        output,
        scratch,
        act,
        Some(rows),
    );
}

/// The scaled convolution at `level` (the tests' entry): the weights scaled into the
/// first 64-byte boundary of `scratch`, then the engine on them (with `rows`, only those
/// output rows, on this thread), the rest of `scratch` its packing room.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scaled_in(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    scale: &[f32],
    res: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    rows: Option<(usize, usize)>,
) {
    assert!(
        d.g == 1,
        "conv2d_scaled: one group only, the layer has {}",
        d.g
    );
    assert!(
        scale.len() >= d.c,
        "conv2d_scaled: the scale holds {} values, the input {} channels",
        scale.len(),
        d.c
    );
    let packed = params.packed();
    let wrows = packed.weight.len();
    // The scaled rows from the first 64-byte boundary, the floats after them packing
    // room for the engine.
    let skip = scratch
        .as_ptr()
        .align_offset(core::mem::align_of::<Row16>());
    assert!(
        skip < PANEL && scratch.len() >= skip + wrows * PANEL,
        "conv2d_scaled: working memory of {} floats, the scaled weights need {}",
        scratch.len(),
        wrows * PANEL + PANEL
    );
    let (wbuf, rest) = scratch[skip..].split_at_mut(wrows * PANEL);
    // SAFETY: `Row16` is 16 `f32`s (`repr(C)`, no padding, every bit pattern valid) and
    // `wbuf` starts on its alignment, so its middle is all of it, as rows.
    let (head, scaled, _) = unsafe { wbuf.align_to_mut::<Row16>() };
    debug_assert!(head.is_empty() && scaled.len() == wrows);
    // On this thread, even with others in the pool: split over two threads (one more
    // fork and join per layer, each half read by the other core) EfficientNet-B0 was
    // 0.93-1.00x at two threads against 1.00x this way.
    simd::run(
        level,
        ScaleRows {
            src: packed.weight,
            dst: &mut *scaled,
            scale: &scale[..d.c],
        },
    );
    let weights = Packed {
        weight: scaled,
        bias: packed.bias,
    };
    conv2d_packed(
        level,
        d,
        input,
        weights,
        output,
        act,
        res,
        (engine::SCRATCH, None),
        rest,
        rows,
    );
}

/// Rows of packed weights (`[panel][tap][C][16]`) times their input channel's scale:
/// `dst[r] = src[r] * scale[r % C]`.
struct ScaleRows<'a> {
    src: &'a [Row16],
    dst: &'a mut [Row16],
    /// One value per input channel (the rows' innermost index).
    scale: &'a [f32],
}

impl WithSimd for ScaleRows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let c = self.scale.len();
        for (r, (src, dst)) in self.src.iter().zip(self.dst.iter_mut()).enumerate() {
            let k = s.splat(self.scale[r % c]);
            for j in (0..PANEL).step_by(l) {
                // SAFETY: lanes `j .. j + l` of one 16-float row (`l` divides 16).
                unsafe {
                    let v = s.load(src.0.as_ptr().add(j));
                    s.store(dst.0.as_mut_ptr().add(j), s.mul(v, k));
                }
            }
        }
    }
}
