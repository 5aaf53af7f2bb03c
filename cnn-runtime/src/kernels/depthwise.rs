//! Depthwise 2-D convolution: a `Conv2d` with `groups == in == out`, each channel
//! convolved with its own `KH x KW` kernel. Runs the convolution engine's depthwise
//! kernels (`kernels/engine/depthwise.rs`) on the level [`cpu::level`] picks: long rows per
//! channel, rows of pixel vectors over the input or a padded, phase-split band copy
//! (strides); short rows `LANES` channels at a time through in-register transposes.

use super::activation::Act;
use super::engine::{self, Row16, PANEL};
use super::geometry::Dims2d;
#[cfg(feature = "alloc")]
use super::norm::fold_bn;
use super::norm::Affine;
use super::simd::{self, Simd, WithSimd};
use crate::buf::Buf;
use crate::cpu::{self, Level};
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};

/// Weights and bias of a depthwise convolution, repacked for [`depthwise_conv2d`].
#[derive(Clone, Debug, PartialEq)]
pub struct DepthwiseParams {
    /// Channels (in = out).
    channels: usize,
    /// Kernel height.
    kh: usize,
    /// Kernel width.
    kw: usize,
    /// `[channels][kh][kw]`, batch norm folded in (the per-channel rows path).
    weight: Buf<f32>,
    /// `[channels]`, zeros when the layer has no bias, batch norm folded in.
    bias: Buf<f32>,
    /// The same weights as panels of 16 channels, `[ceil(channels/16)][kh*kw][16]` (the
    /// channel-vectorised path).
    panels: Buf<Row16>,
    /// The bias as `[ceil(channels/16)][16]`.
    panel_bias: Buf<Row16>,
}

#[cfg(feature = "alloc")]
impl crate::buf::Embed for DepthwiseParams {
    fn parts(&self) -> crate::buf::Parts {
        use crate::buf::{float_bytes, row_bytes};
        crate::buf::Parts {
            dims: alloc::vec![self.channels, self.kh, self.kw],
            bufs: alloc::vec![
                (false, float_bytes(&self.weight)),
                (false, float_bytes(&self.bias)),
                (true, row_bytes(&self.panels)),
                (true, row_bytes(&self.panel_bias)),
            ],
        }
    }
}

impl DepthwiseParams {
    #[cfg(feature = "alloc")]
    /// Builds the parameters from a PyTorch `Conv2d` weight `[out, in_per_group, kh, kw]`
    /// (here `in_per_group == 1`) and its optional bias `[out]`.
    ///
    /// `bn` is a batch norm that follows the convolution, folded in here:
    /// `w'[o] = w[o] * scale[o]`, `b'[o] = b[o] * scale[o] + shift[o]`, computed in f64.
    ///
    /// # Panics
    ///
    /// If `in_per_group != 1` or a length does not match the dimensions.
    pub fn from_torch(
        out: usize,
        in_per_group: usize,
        kh: usize,
        kw: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&Affine>,
    ) -> DepthwiseParams {
        assert_eq!(
            in_per_group, 1,
            "a depthwise convolution has one input channel per group"
        );
        let (weight, bias) = fold_bn(out, kh * kw, weight, bias, bn);
        let kk = kh * kw;
        let mut panels = vec![Row16([0.0; PANEL]); out.div_ceil(PANEL) * kk];
        for (ch, w) in weight.chunks_exact(kk.max(1)).enumerate().take(out) {
            for (t, &v) in w.iter().enumerate() {
                panels[(ch / PANEL) * kk + t].0[ch % PANEL] = v;
            }
        }
        DepthwiseParams {
            channels: out,
            kh,
            kw,
            panel_bias: engine::pack_bias(out, &bias).into(),
            panels: panels.into(),
            weight: weight.into(),
            bias: bias.into(),
        }
    }

    /// Parameters computed at compile time ([`crate::buf::Embed`]): dims
    /// `[channels, kh, kw]`, the weight and bias rows, then as panels.
    #[doc(hidden)]
    pub const fn from_static(
        dims: [usize; 3],
        weight: &'static [f32],
        bias: &'static [f32],
        panels: &'static [Row16],
        panel_bias: &'static [Row16],
    ) -> DepthwiseParams {
        let [channels, kh, kw] = dims;
        DepthwiseParams {
            channels,
            kh,
            kw,
            weight: Buf::Static(weight),
            bias: Buf::Static(bias),
            panels: Buf::Static(panels),
            panel_bias: Buf::Static(panel_bias),
        }
    }
}

/// How the engine runs a depthwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DwPlan {
    /// Per channel, rows of pixel vectors: long rows.
    Rows,
    /// `LANES` channels at once through transposes: short rows.
    Channels,
}

/// The weights of a range of channels (all of them, or whole 16-channel panels).
#[derive(Clone, Copy)]
struct DwWeights<'a> {
    /// `[C][KH*KW]`.
    weight: &'a [f32],
    /// `[C]`.
    bias: &'a [f32],
    /// `[ceil(C/16)][KH*KW][16]`.
    panels: &'a [Row16],
    /// `[ceil(C/16)][16]`.
    panel_bias: &'a [Row16],
}

impl DepthwiseParams {
    /// The weights of channels `c0..c1` (`c0` a multiple of 16).
    fn range(&self, c0: usize, c1: usize) -> DwWeights<'_> {
        debug_assert!(c0.is_multiple_of(PANEL) && c0 < c1 && c1 <= self.channels);
        let kk = self.kh * self.kw;
        let (p0, p1) = (c0 / PANEL, c1.div_ceil(PANEL));
        DwWeights {
            weight: &self.weight[c0 * kk..c1 * kk],
            bias: &self.bias[c0..c1],
            panels: &self.panels[p0 * kk..p1 * kk],
            panel_bias: &self.panel_bias[p0..p1],
        }
    }
}

/// The engine's depthwise kernels on output rows `rows` of every channel, as a kernel for
/// [`Simd::vectorize`]. `out` is valid for writes of `d.c * OH * OW` floats and those rows
/// of its planes are this run's alone (see [`depthwise_part`]).
struct DwRun<'a> {
    d: Dims2d,
    input: &'a [f32],
    params: DwWeights<'a>,
    out: *mut f32,
    rows: (usize, usize),
    act: Act,
    cap: usize,
    force: Option<DwPlan>,
}

impl WithSimd for DwRun<'_> {
    type Output = bool;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> bool {
        let p = self.params;
        // Rows wide enough fill the per-channel tiles; shorter ones go through the
        // transposes of the channel-vectorised path (see `Tuning::dw_rows_min_width`).
        let d = self.d;
        let plan = self
            .force
            .unwrap_or(if d.ow >= S::TUNING.dw_rows_min_width {
                DwPlan::Rows
            } else {
                DwPlan::Channels
            });
        let (input, out, rows, act, cap) = (self.input, self.out, self.rows, self.act, self.cap);
        // SAFETY: `out` and `rows` as the engines require (this struct's contract).
        unsafe {
            if plan == DwPlan::Channels
                && engine::depthwise_channels(
                    s,
                    d,
                    input,
                    p.panels,
                    p.panel_bias,
                    out,
                    rows,
                    act,
                    cap,
                )
            {
                return true;
            }
            engine::depthwise(s, d, input, p.weight, p.bias, out, rows, act, cap)
        }
    }
}

/// Scalar depthwise convolution of output rows `r0..r1` of every channel, for what the
/// engine does not take (a one-row band that does not fit the buffer, more than
/// `MAX_TAPS` taps).
///
/// # Safety
///
/// As [`DwRun`]: `out` valid for writes of `d.c * OH * OW` floats, rows `r0..r1` of its
/// planes this call's alone.
unsafe fn depthwise_fallback(
    d: Dims2d,
    input: &[f32],
    params: DwWeights<'_>,
    out: *mut f32,
    (r0, r1): (usize, usize),
    act: Act,
) {
    let (hw, kk, ohw) = (d.h * d.w, d.kh * d.kw, d.oh * d.ow);
    for c in 0..d.c {
        let inp = &input[c * hw..(c + 1) * hw];
        let w = &params.weight[c * kk..(c + 1) * kk];
        // SAFETY: rows r0..r1 of channel c's plane, inside the output (the contract).
        let rows = unsafe {
            core::slice::from_raw_parts_mut(out.add(c * ohw + r0 * d.ow), (r1 - r0) * d.ow)
        };
        for (oy, row) in (r0..r1).zip(rows.chunks_exact_mut(d.ow)) {
            for (ox, y) in row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for ky in 0..d.kh {
                    let iy = (oy * d.sh + ky * d.dh).wrapping_sub(d.ph);
                    for kx in 0..d.kw {
                        let ix = (ox * d.sw + kx * d.dw).wrapping_sub(d.pw);
                        if iy < d.h && ix < d.w {
                            acc += w[ky * d.kw + kx] * inp[iy * d.w + ix];
                        }
                    }
                }
                *y = act.apply(acc + params.bias[c]);
            }
        }
    }
}

/// Multiply-accumulates from which a depthwise convolution splits over the pool's
/// threads (`parallel` feature): below, waking a worker costs more than it saves. Low,
/// as a layer that reads what the layer before wrote on two cores runs faster on both
/// than on one reading the other core's half.
#[cfg(feature = "parallel")]
const PAR_MACS: usize = 40_000;

/// How a depthwise convolution is split over the pool's threads.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DwSplit {
    /// Ranges of whole 16-channel panels: each part writes whole planes.
    Channels(usize),
    /// Bands of output rows of every channel, in units of `step` rows: each part reads
    /// only its own input rows (and the kernel's halo), the pixels that the pixel split
    /// of the convolution before it wrote on the same thread, and writes those the next
    /// pointwise layer's part reads.
    Rows { parts: usize, step: usize },
}

impl DwSplit {
    #[cfg_attr(not(feature = "parallel"), allow(dead_code))]
    fn parts(self) -> usize {
        match self {
            DwSplit::Rows { parts, .. } | DwSplit::Channels(parts) => parts,
        }
    }
}

/// Floats in a 64-byte cache line.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
const LINE: usize = 16;

/// Rows whose pixels fill whole cache lines: band boundaries at multiples of it start a
/// line in every plane (when the planes do).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
fn line_rows(ow: usize) -> usize {
    let mut g = ow.max(1);
    let mut l = LINE;
    while l != 0 {
        (g, l) = (l, g % l);
    }
    LINE / g
}

/// How the depthwise convolution `d` runs over `threads` threads: one part (this thread
/// only) when the layer is small; else row bands on cache-line boundaries when the output
/// and its planes allow (`out_aligned`: the output starts a line, as a model's arena
/// tensors do) with two line units per thread: each part reads the rows that the pixel
/// split of the pointwise layer before wrote on the same core, and writes those the next
/// one reads (MobileNetV2 at two threads: 2.8% faster than panels first); else whole
/// panels when there is one per thread; else rows on any row when there are two rows per
/// thread (a boundary inside a line has both threads write it once per plane: false
/// sharing, which made 12x12 maps slower on two threads than on one); else what panels
/// there are.
#[cfg(feature = "parallel")]
fn dw_split(d: &Dims2d, threads: usize, out_aligned: bool) -> DwSplit {
    let panels = d.c.div_ceil(PANEL);
    let macs = d.c * d.oh * d.ow * d.kh * d.kw;
    let step = line_rows(d.ow);
    let rows = |step| DwSplit::Rows {
        parts: threads,
        step,
    };
    let aligned_rows =
        out_aligned && (d.oh * d.ow).is_multiple_of(LINE) && d.oh.div_ceil(step) >= 2 * threads;
    if threads < 2 || macs < PAR_MACS {
        DwSplit::Channels(1)
    } else if aligned_rows {
        rows(step)
    } else if panels >= threads {
        DwSplit::Channels(threads)
    } else if d.oh >= 2 * threads {
        rows(1)
    } else {
        DwSplit::Channels(panels)
    }
}

/// Output rows of band `i` of `parts` over `oh` rows, in units of `step` rows
/// (contiguous, as even as units allow, the last band taking what is left).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
fn row_range(oh: usize, step: usize, parts: usize, i: usize) -> (usize, usize) {
    let units = oh.div_ceil(step);
    let at = |k: usize| (k * units / parts * step).min(oh);
    (at(i), at(i + 1))
}

/// Channels of range `i` of `parts` over the whole 16-channel panels of `c` channels.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
fn channel_range(c: usize, parts: usize, i: usize) -> (usize, usize) {
    let panels = c.div_ceil(PANEL);
    let at = |k: usize| (k * panels / parts * PANEL).min(c);
    (at(i), at(i + 1))
}

/// Channels `c0..c1` (`c0` a multiple of 16), output rows `rows` of the depthwise
/// convolution `d` (`d.o` and `d.g` equal to `d.c`), into `out`, the first of those
/// channels' `OH * OW` planes. Every choice (plan, band height, fallback) depends on the
/// geometry only, never on the channel or row range, and each value is one chain in tap
/// order, so each value is computed as by the whole call.
///
/// # Safety
///
/// `out` is valid for writes of `(c1 - c0) * OH * OW` floats, and rows `rows` of those
/// planes are accessed by no one else during the call; `rows` lies in `0..=OH`.
#[allow(clippy::too_many_arguments)]
unsafe fn depthwise_part<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    params: &DepthwiseParams,
    (c0, c1): (usize, usize),
    rows: (usize, usize),
    out: *mut f32,
    act: Act,
    cap: usize,
    force: Option<DwPlan>,
) {
    let hw = d.h * d.w;
    let d = Dims2d {
        c: c1 - c0,
        o: c1 - c0,
        g: c1 - c0,
        ..d
    };
    let input = &input[c0 * hw..c1 * hw];
    let w = params.range(c0, c1);
    let run = DwRun {
        d,
        input,
        params: w,
        out,
        rows,
        act,
        cap,
        force,
    };
    if !s.vectorize(run) {
        // SAFETY: the caller's contract.
        unsafe { depthwise_fallback(d, input, w, out, rows, act) };
    }
}

/// The depthwise convolution with its dimensions as runtime values (`d.o` and `d.g` are
/// ignored: both are `d.c`), at `level` with a band buffer of `cap` floats and optionally
/// a forced plan (tests); see [`depthwise_conv2d`]. Picks the instruction set once and
/// runs [`depthwise_in`] with its token.
#[allow(clippy::too_many_arguments)]
fn depthwise_with(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &DepthwiseParams,
    output: &mut [f32],
    act: Act,
    cap: usize,
    force: Option<DwPlan>,
) {
    simd::run(
        level,
        DwEntry {
            d,
            input,
            params,
            output,
            act,
            cap,
            force,
        },
    );
}

/// The arguments of [`depthwise_in`], as a kernel for [`simd::run`].
struct DwEntry<'a> {
    d: Dims2d,
    input: &'a [f32],
    params: &'a DepthwiseParams,
    output: &'a mut [f32],
    act: Act,
    cap: usize,
    force: Option<DwPlan>,
}

impl WithSimd for DwEntry<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let DwEntry {
            d,
            input,
            params,
            output,
            act,
            cap,
            force,
        } = self;
        depthwise_in(s, d, input, params, output, act, cap, force);
    }
}

/// [`depthwise_with`] on the instruction set of `s`. With the `parallel` feature, a big
/// layer splits its channels (whole 16-channel panels) over the threads of
/// [`crate::pool`]; each value is computed exactly as on one thread. The parts run the
/// engine through [`Simd::vectorize`] with the token `s`, never through a new dispatch.
#[allow(clippy::too_many_arguments)]
fn depthwise_in<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    params: &DepthwiseParams,
    output: &mut [f32],
    act: Act,
    cap: usize,
    force: Option<DwPlan>,
) {
    let d = Dims2d {
        o: d.c,
        g: d.c,
        ..d
    };
    let input = &input[..d.c * d.h * d.w];
    let ohw = d.oh * d.ow;
    let output = &mut output[..d.c * ohw];
    let cap = cap.min(engine::SCRATCH);
    #[cfg(feature = "parallel")]
    {
        let aligned = output.as_ptr().align_offset(64) == 0;
        let split = dw_split(&d, crate::pool::num_threads(), aligned);
        let parts = split.parts();
        if parts > 1 {
            let out = super::conv::OutPtr(output.as_mut_ptr());
            crate::pool::run(parts, &|i| {
                let (chans, rows) = match split {
                    DwSplit::Rows { step, .. } => ((0, d.c), row_range(d.oh, step, parts, i)),
                    DwSplit::Channels(_) => (channel_range(d.c, parts, i), (0, d.oh)),
                };
                // SAFETY: the parts' (channel range, row range) pairs are disjoint and
                // inside `output` (whose borrow outlives `pool::run`): each part writes
                // only its own rows of its own planes.
                unsafe {
                    let out = out.get().add(chans.0 * ohw);
                    depthwise_part(s, d, input, params, chans, rows, out, act, cap, force);
                }
            });
            return;
        }
    }
    // SAFETY: `output` holds the `C * OH * OW` values (sliced above), borrowed for the call.
    unsafe {
        let out = output.as_mut_ptr();
        depthwise_part(
            s,
            d,
            input,
            params,
            (0, d.c),
            (0, d.oh),
            out,
            act,
            cap,
            force,
        );
    }
}

/// Depthwise 2-D convolution fused with its activation: PyTorch `Conv2d` with
/// `groups == in == out == C`,
/// `output[c][y][x] = act(bias[c] + sum over ky, kx of
/// w[c][0][ky][kx] * input[c][y*SH + ky*DH - PH][x*SW + kx*DW - PW])`, taps outside
/// the input reading zero.
///
/// `input` holds at least `C*H*W` values and `output` at least `C*OH*OW`. `PH`/`PW` are
/// the top/left padding; the bottom/right padding is whatever `OH`/`OW` imply.
///
/// # Panics
///
/// If `params` was built for other dimensions, or a slice is too short.
pub fn depthwise_conv2d<
    const C: usize,
    const H: usize,
    const W: usize,
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
    params: &DepthwiseParams,
    output: &mut [f32],
    act: Act,
) {
    const {
        assert!(C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0);
    }
    assert!(
        params.channels == C && params.kh == KH && params.kw == KW,
        "depthwise_conv2d: parameters are [{}, 1, {}, {}], the layer wants [{C}, 1, {KH}, {KW}]",
        params.channels,
        params.kh,
        params.kw
    );
    let d = Dims2d {
        c: C,
        h: H,
        w: W,
        o: C,
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
        g: C,
    };
    depthwise_with(
        cpu::level(),
        d,
        input,
        params,
        output,
        act,
        engine::SCRATCH,
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{conv2d, ConvParams};
    use crate::kernels::norm::channel_affine;
    use crate::kernels::reference::{self as r, Axis, Rng};
    use crate::kernels::simd;

    const ACTS: [Act; 10] = [
        Act::Identity,
        Act::Relu,
        Act::Relu6,
        Act::Tanh,
        Act::Sigmoid,
        Act::LeakyRelu(0.1),
        Act::Silu,
        Act::HardSwish,
        Act::HardSigmoid,
        Act::Gelu,
    ];

    /// The depthwise layer of `c` channels with axes `ah`, `aw`.
    fn dims(c: usize, ah: Axis, aw: Axis) -> Dims2d {
        Dims2d {
            c,
            h: ah.n,
            w: aw.n,
            o: c,
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
            g: c,
        }
    }

    fn check(rng: &mut Rng, c: usize, ah: Axis, aw: Axis, act: Act, with_bias: bool) {
        let d = dims(c, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight = rng.vec(c * ah.k * aw.k, -1.0, 1.0);
        let bias = rng.vec(c, -0.5, 0.5);
        let bias = with_bias.then_some(&bias[..]);
        let params = DepthwiseParams::from_torch(c, 1, ah.k, aw.k, &weight, bias, None);
        let mut inp = input.clone();
        inp.extend([f32::NAN; 2]);
        let n = c * ah.out * aw.out;
        let want = r::conv2d(c, c, c, ah, aw, &input, &weight, bias, act);
        // Every level and plan; the real band buffer, small ones (bands; the channel
        // path falls back to rows), one too small (scalar fallback).
        for level in simd::test_levels() {
            for force in [None, Some(DwPlan::Rows), Some(DwPlan::Channels)] {
                for cap in [engine::SCRATCH, 24, 400, 1] {
                    let mut got = vec![7.0; n + 2];
                    depthwise_with(level, d, &inp, &params, &mut got, act, cap, force);
                    let ctx = (d, act, level, force, cap);
                    assert_eq!(&got[n..], &[7.0; 2], "wrote past its output: {ctx:?}");
                    r::assert_close(&got[..n], &want, &ctx);
                }
            }
        }
    }

    /// Every conv axis geometry on each axis, paired with a random one, channels 1..=8.
    #[test]
    fn sweep_axes_against_reference() {
        let axes = r::conv_axes();
        let mut rng = Rng::new(21);
        for (i, &a) in axes.iter().enumerate() {
            let b = axes[rng.below(axes.len())];
            for (ah, aw) in [(a, b), (b, a)] {
                let act = ACTS[rng.below(ACTS.len())];
                let with_bias = rng.below(4) != 0;
                check(&mut rng, 1 + i % 8, ah, aw, act, with_bias);
            }
        }
    }

    /// Stride 2 (MobileNet style), dilation 2/3, 1x1 input, 'same' with even kernels.
    #[test]
    fn edge_shapes_against_reference() {
        let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
        let mut rng = Rng::new(22);
        let cases = [
            (ax(8, 3, 2, 1, 1), ax(8, 3, 2, 1, 1)),
            (ax(7, 3, 2, 1, 1), ax(9, 3, 2, 1, 1)),
            (ax(7, 5, 2, 2, 1), ax(6, 5, 2, 2, 1)),
            (ax(9, 3, 1, 2, 2), ax(9, 3, 1, 3, 3)),
            (ax(1, 3, 1, 1, 1), ax(1, 1, 1, 0, 1)),
            (ax(4, 4, 1, 0, 1), ax(3, 3, 3, 0, 1)),
            (Axis::same(6, 2, 1), Axis::same(5, 4, 3)),
            (ax(3, 1, 2, 1, 1), ax(3, 3, 1, 3, 1)),
            // MobileNet-like rows: wide (tails of the 4-vector tiles), stride 2.
            (ax(5, 3, 1, 1, 1), ax(48, 3, 1, 1, 1)),
            (ax(6, 3, 2, 1, 1), ax(75, 3, 2, 1, 1)),
            (ax(4, 3, 1, 0, 1), ax(71, 3, 1, 0, 1)),
            (ax(7, 3, 3, 1, 2), ax(40, 3, 3, 2, 2)),
            // Tall maps: the multi-row tiles of the rows path (8, 6, 4, 3 rows by 1 to
            // 4 vectors, then single rows) and whole sliding groups of the channel path.
            (ax(20, 3, 1, 1, 1), ax(10, 3, 1, 1, 1)),
            (ax(19, 3, 1, 1, 1), ax(30, 3, 1, 1, 1)),
            (ax(17, 3, 1, 1, 1), ax(40, 3, 1, 1, 1)),
            (ax(13, 3, 1, 1, 1), ax(70, 3, 1, 1, 1)),
            (ax(25, 3, 2, 1, 1), ax(48, 3, 2, 1, 1)),
            (ax(18, 3, 1, 0, 1), ax(26, 3, 1, 0, 1)),
        ];
        for (ah, aw) in cases {
            for c in [1, 2, 3, 8, 17, 32] {
                for act in ACTS {
                    check(&mut rng, c, ah, aw, act, true);
                }
            }
        }
    }

    /// 1-D signals run as H = 1, KH = 1: long rows, TCN dilations 1..8, padding,
    /// strides.
    #[test]
    fn one_d_against_reference() {
        let mut rng = Rng::new(24);
        let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
        for w in [1, 5, 31, 100, 784] {
            for k in [1, 2, 3, 5] {
                for d in [1, 2, 4, 8] {
                    if k == 1 && d > 1 {
                        continue;
                    }
                    let mut aws: Vec<Axis> = vec![Axis::same(w, k, d)];
                    for s in [1, 2] {
                        for p in [0, d * (k - 1) / 2, d * (k - 1)] {
                            aws.extend(Axis::conv(w, k, s, p, d));
                        }
                    }
                    for aw in aws {
                        let c = [1, 3, 16, 17, 40][rng.below(5)];
                        let act = ACTS[rng.below(ACTS.len())];
                        check(&mut rng, c, one, aw, act, true);
                    }
                }
            }
        }
    }

    /// The const-generic shell equals the general conv with groups == C, and folding a
    /// batch norm equals applying it after.
    #[test]
    fn const_generic_matches_grouped_conv_and_folds_bn() {
        const C: usize = 5;
        let mut rng = Rng::new(23);
        let input = rng.vec(C * 9 * 8, -1.0, 1.0);
        let weight = rng.vec(C * 9, -1.0, 1.0);
        let bias = rng.vec(C, -0.5, 0.5);
        let bn = Affine::from_batch_norm(
            &rng.vec(C, 0.5, 1.5),
            &rng.vec(C, -0.3, 0.3),
            &rng.vec(C, -0.5, 0.5),
            &rng.vec(C, 0.5, 2.0),
            1e-3,
        );
        let dw = DepthwiseParams::from_torch(C, 1, 3, 3, &weight, Some(&bias), None);
        let conv = ConvParams::from_torch(C, 1, 3, 3, &weight, Some(&bias), None);
        let mut got = [0.0; C * 5 * 4];
        depthwise_conv2d::<C, 9, 8, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1>(&input, &dw, &mut got, Act::Relu);
        let mut want = [0.0; C * 5 * 4];
        conv2d::<C, 9, 8, C, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1, C>(&input, &conv, &mut want, Act::Relu);
        assert_eq!(got, want);

        let folded = DepthwiseParams::from_torch(C, 1, 3, 3, &weight, Some(&bias), Some(&bn));
        depthwise_conv2d::<C, 9, 8, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1>(
            &input,
            &folded,
            &mut got,
            Act::Tanh,
        );
        depthwise_conv2d::<C, 9, 8, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1>(
            &input,
            &dw,
            &mut want,
            Act::Identity,
        );
        channel_affine::<C, 20>(&mut want, &bn, Act::Tanh);
        let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
        r::assert_close(&got, &want, &"folded bn");
    }

    /// Depthwise layers for the split tests `(c, height axis, width axis)`:
    /// MobileNet-like 3x3 (stride 1 and 2, wide and short rows: both plans), a channel
    /// count not a multiple of 16, a 5x5 dilated one, a 1-D one. All above `PAR_MACS`.
    fn split_layers() -> Vec<(usize, Axis, Axis)> {
        let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
        vec![
            (32, ax(48, 3, 1, 1, 1), ax(48, 3, 1, 1, 1)),
            (64, ax(48, 3, 2, 1, 1), ax(48, 3, 2, 1, 1)),
            (128, ax(12, 3, 1, 1, 1), ax(12, 3, 1, 1, 1)),
            (512, ax(6, 3, 1, 1, 1), ax(6, 3, 1, 1, 1)),
            (40, ax(20, 3, 1, 1, 1), ax(70, 3, 1, 1, 1)),
            (48, ax(17, 5, 1, 4, 2), ax(23, 5, 1, 4, 2)),
            // Three panels (uneven on two threads), line-aligned planes: by rows when
            // the output starts a line.
            (48, ax(32, 3, 1, 1, 1), ax(32, 3, 1, 1, 1)),
            // One panel, a wide map: split by rows.
            (16, ax(40, 3, 1, 1, 1), ax(60, 3, 1, 1, 1)),
            // A 1-D signal: one row, split by channels.
            (64, ax(1, 1, 1, 0, 1), ax(2000, 3, 1, 1, 1)),
        ]
    }

    fn split_case(
        rng: &mut Rng,
        c: usize,
        ah: Axis,
        aw: Axis,
    ) -> (Dims2d, Vec<f32>, DepthwiseParams) {
        let d = dims(c, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight = rng.vec(c * ah.k * aw.k, -1.0, 1.0);
        let bias = rng.vec(c, -0.5, 0.5);
        let params = DepthwiseParams::from_torch(c, 1, ah.k, aw.k, &weight, Some(&bias), None);
        (d, input, params)
    }

    /// Every split of the channels into ranges of whole panels, and of the output rows
    /// into bands, computed part by part, gives exactly (bit for bit) the whole result, at
    /// every level, plan and band size. Runs without the `parallel` feature too (no
    /// threads involved).
    #[test]
    fn channel_and_row_ranges_equal_the_whole_bit_for_bit() {
        /// [`depthwise_part`] at `level`, into `output` (all channels' planes).
        #[allow(clippy::too_many_arguments)]
        fn part_at(
            level: Level,
            d: Dims2d,
            input: &[f32],
            params: &DepthwiseParams,
            chans: (usize, usize),
            rows: (usize, usize),
            output: &mut [f32],
            force: Option<DwPlan>,
            cap: usize,
        ) {
            struct Part<'a>(
                Dims2d,
                &'a [f32],
                &'a DepthwiseParams,
                (usize, usize),
                (usize, usize),
                &'a mut [f32],
                usize,
                Option<DwPlan>,
            );
            impl WithSimd for Part<'_> {
                type Output = ();
                fn with_simd<S: Simd>(self, s: S) {
                    let Part(d, input, params, chans, rows, output, cap, force) = self;
                    let ohw = d.oh * d.ow;
                    assert!(output.len() >= d.c * ohw && rows.1 <= d.oh);
                    // SAFETY: the output holds every plane and is borrowed for the call.
                    unsafe {
                        let out = output.as_mut_ptr().add(chans.0 * ohw);
                        let act = Act::Relu;
                        depthwise_part(s, d, input, params, chans, rows, out, act, cap, force);
                    }
                }
            }
            let run = Part(d, input, params, chans, rows, output, cap, force);
            simd::run(level, run);
        }
        let mut rng = Rng::new(25);
        for (c, ah, aw) in split_layers() {
            let (d, input, params) = split_case(&mut rng, c, ah, aw);
            let n = c * d.oh * d.ow;
            for level in simd::test_levels() {
                for force in [None, Some(DwPlan::Rows), Some(DwPlan::Channels)] {
                    for cap in [engine::SCRATCH, 400, 1] {
                        let mut whole = vec![0.0; n + 2];
                        let (all_c, all_r) = ((0, c), (0, d.oh));
                        part_at(
                            level, d, &input, &params, all_c, all_r, &mut whole, force, cap,
                        );
                        let mut splits = Vec::new();
                        for parts in 2..=c.div_ceil(PANEL).min(4) {
                            let chans: Vec<_> = (0..parts)
                                .map(|i| (channel_range(c, parts, i), all_r))
                                .collect();
                            splits.push(chans);
                        }
                        for (parts, step) in [(2, 1), (3, 1), (5, 1), (d.oh, 1), (2, 4), (3, 2)] {
                            let parts = parts.min(d.oh.div_ceil(step));
                            let rows: Vec<_> = (0..parts)
                                .map(|i| (all_c, row_range(d.oh, step, parts, i)))
                                .collect();
                            splits.push(rows);
                        }
                        for split in splits {
                            let mut got = vec![f32::NAN; n + 2];
                            got[n..].fill(7.0);
                            for &(chans, rows) in &split {
                                part_at(
                                    level, d, &input, &params, chans, rows, &mut got, force, cap,
                                );
                            }
                            let ctx = (d, level, force, cap, &split);
                            assert_eq!(&got[n..], &[7.0; 2], "wrote past its output: {ctx:?}");
                            assert!(whole[..n] == got[..n], "split differs: {ctx:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn row_ranges_cover_the_rows_in_whole_units() {
        for oh in 1usize..40 {
            for step in [1, 2, 4, 8, 16] {
                for parts in 1..=oh.div_ceil(step).min(9) {
                    let r: Vec<_> = (0..parts).map(|i| row_range(oh, step, parts, i)).collect();
                    let ctx = (oh, step, parts, &r);
                    assert_eq!((r[0].0, r[parts - 1].1), (0, oh), "{ctx:?}");
                    for (i, &(r0, r1)) in r.iter().enumerate() {
                        assert!(r0 < r1 && r0 % step == 0, "{ctx:?}");
                        if i > 0 {
                            assert_eq!(r[i - 1].1, r0);
                        }
                    }
                }
            }
        }
    }

    /// Row bands on cache lines when the output and its planes allow, then panels.
    #[cfg(feature = "parallel")]
    #[test]
    fn splits_prefer_line_aligned_rows_then_panels() {
        let ax = |n, k, s, p| Axis::conv(n, k, s, p, 1).unwrap();
        let mid = dims(128, ax(24, 3, 1, 1), ax(24, 3, 1, 1));
        assert_eq!(dw_split(&mid, 2, true), DwSplit::Rows { parts: 2, step: 2 });
        assert_eq!(dw_split(&mid, 2, false), DwSplit::Channels(2));
        // 12x12 planes: a band boundary on a line leaves 4 + 8 rows (too few units).
        let twelve = dims(256, ax(12, 3, 1, 1), ax(12, 3, 1, 1));
        assert_eq!(dw_split(&twelve, 2, true), DwSplit::Channels(2));
        let wide = dims(16, ax(40, 3, 1, 1), ax(60, 3, 1, 1));
        let rows = |step| DwSplit::Rows { parts: 2, step };
        assert_eq!(dw_split(&wide, 2, true), rows(4));
        assert_eq!(dw_split(&wide, 2, false), rows(1));
        // MobileNetV2's 144 channels: 9 panels split 5 + 4, 56 rows 28 + 28.
        let uneven = dims(144, ax(56, 3, 1, 1), ax(56, 3, 1, 1));
        assert_eq!(dw_split(&uneven, 2, true), rows(2));
        assert_eq!(dw_split(&uneven, 2, false), DwSplit::Channels(2));
        assert_eq!(
            dw_split(&uneven, 3, true),
            DwSplit::Rows { parts: 3, step: 2 }
        );
        let small = dims(16, ax(12, 3, 1, 1), ax(12, 3, 1, 1));
        assert_eq!(dw_split(&small, 2, true), DwSplit::Channels(1));
        // Small but split: its input arrives split over the cores (MobileNet-96's last
        // depthwise layer, 83K MACs: 10.4 -> 6.4 us alone, 24 -> 12 us in the chain).
        let last = dims(256, ax(12, 3, 2, 1), ax(12, 3, 2, 1));
        assert_eq!(dw_split(&last, 2, true), DwSplit::Channels(2));
    }

    #[test]
    fn line_rows_fill_whole_lines() {
        for ow in 1..100 {
            let step = line_rows(ow);
            assert!((step * ow).is_multiple_of(LINE), "{ow} {step}");
            assert!(
                (1..step).all(|k| !(k * ow).is_multiple_of(LINE)),
                "{ow} {step}"
            );
        }
        assert_eq!(
            (line_rows(48), line_rows(24), line_rows(12), line_rows(7)),
            (1, 2, 4, 16)
        );
    }

    #[test]
    fn channel_ranges_cover_the_channels_in_whole_panels() {
        for c in 1usize..100 {
            let panels = c.div_ceil(PANEL);
            for parts in 1..=panels.min(9) {
                let r: Vec<_> = (0..parts).map(|i| channel_range(c, parts, i)).collect();
                assert_eq!((r[0].0, r[parts - 1].1), (0, c), "{c} {parts} {r:?}");
                for (i, &(c0, c1)) in r.iter().enumerate() {
                    assert!(c0 < c1 && c0 % PANEL == 0, "{c} {parts} {r:?}");
                    if i > 0 {
                        assert_eq!(r[i - 1].1, c0);
                    }
                }
            }
        }
    }

    /// Through the pool: 2 and 3 threads give the one-thread result bit for bit, at every
    /// level (`set_num_threads(1)` is the sequential path), and never write past the
    /// output.
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_give_the_one_thread_result_bit_for_bit() {
        let _g = crate::pool::TEST_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut rng = Rng::new(26);
        for (c, ah, aw) in split_layers() {
            let (d, input, params) = split_case(&mut rng, c, ah, aw);
            assert!(dw_split(&d, 2, true).parts() > 1, "{d:?}");
            let n = c * d.oh * d.ow;
            for level in simd::test_levels() {
                for cap in [engine::SCRATCH, 1] {
                    crate::pool::set_num_threads(1);
                    let mut one = vec![0.0; n + 3];
                    depthwise_with(level, d, &input, &params, &mut one, Act::Relu6, cap, None);
                    // An output on a cache line (row bands on line boundaries where
                    // the planes allow) and one off it (split on any row).
                    for (threads, shift) in [(2, 0), (2, 1), (3, 0), (3, 1)] {
                        crate::pool::set_num_threads(threads);
                        let mut buf = vec![7.0; n + 3 + 32];
                        let at = buf.as_ptr().align_offset(64) + shift;
                        let many = &mut buf[at..at + n + 3];
                        depthwise_with(level, d, &input, &params, many, Act::Relu6, cap, None);
                        assert_eq!(&many[n..], &[7.0; 3], "wrote past its output");
                        assert!(
                            one[..n] == many[..n],
                            "{d:?} {level:?} {cap} {threads} threads, shift {shift}"
                        );
                    }
                }
            }
        }
        crate::pool::set_num_threads(2);
    }

    #[test]
    #[should_panic(expected = "one input channel per group")]
    fn rejects_multiplier() {
        DepthwiseParams::from_torch(4, 2, 1, 1, &[0.0; 8], None, None);
    }
}

/// Timing of the two depthwise plans on the depthwise layers of the benchmark models
/// (`cargo test -p cnn-runtime --release depthwise::speed -- --ignored --nocapture`;
/// `CNN_SIMD=avx2` for the AVX2 level).
#[cfg(test)]
mod speed {
    use super::*;
    use crate::kernels::reference::{best_time_us as time, Rng};
    use std::hint::black_box;

    #[test]
    #[ignore]
    fn speed() {
        let level = cpu::level();
        eprintln!("level {level:?}");
        let mut rng = Rng::new(5);
        for (c, h, s) in [
            (64, 32, 1),
            (64, 40, 1),
            (64, 64, 2),
            (32, 48, 1),
            (64, 48, 2),
            (128, 24, 1),
            (128, 24, 2),
            (256, 12, 1),
            (256, 12, 2),
            (32, 112, 1),
            (96, 112, 2),
            (144, 56, 1),
            (192, 28, 1),
            (384, 14, 1),
            (960, 7, 1),
        ] {
            if let Ok(only) = std::env::var("DW_ONLY") {
                if only != format!("{c}x{h}s{s}") {
                    continue;
                }
            }
            let oh = (h + 2 - 3) / s + 1;
            let d = Dims2d {
                c,
                h,
                w: h,
                o: c,
                oh,
                ow: oh,
                kh: 3,
                kw: 3,
                sh: s,
                sw: s,
                ph: 1,
                pw: 1,
                dh: 1,
                dw: 1,
                g: c,
            };
            let x = rng.vec(c * h * h, -1.0, 1.0);
            let w = rng.vec(c * 9, -0.3, 0.3);
            let b = rng.vec(c, -0.1, 0.1);
            let params = DepthwiseParams::from_torch(c, 1, 3, 3, &w, Some(&b), None);
            // Line-aligned like a model's arena (a split's parts must not share lines).
            let mut ybuf = vec![0.0f32; c * oh * oh + 16];
            let off = ybuf.as_ptr().align_offset(64);
            let y = &mut ybuf[off..off + c * oh * oh];
            let mut t = Vec::new();
            for force in [None, Some(DwPlan::Rows), Some(DwPlan::Channels)] {
                t.push(time(|| {
                    depthwise_with(
                        level,
                        d,
                        black_box(&x),
                        &params,
                        black_box(&mut *y),
                        Act::Relu6,
                        engine::SCRATCH,
                        force,
                    )
                }));
            }
            let macs = (c * oh * oh * 9) as f64;
            eprintln!("{c:>4}x{h:>3}x{h:<3} s{s} | auto {:>8.1} µs ({:>5.1} GF/s) | rows {:>8.1} | channels {:>8.1}", t[0], 2.0 * macs / t[0] / 1e3, t[1], t[2]);
        }
    }
}
