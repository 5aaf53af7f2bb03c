//! Depthwise 2-D convolution: a `Conv2d` with `groups == in == out`, each channel
//! convolved with its own `KH x KW` kernel. Runs the convolution engine's depthwise
//! kernels (`kernels/engine/depthwise.rs`, `dw_flat.rs`, `dw_phase2.rs`, `dw_rows3.rs`,
//! `dw_narrow2.rs`) on the level
//! [`cpu::level`] picks: 3x3 layers with one pixel of padding per channel (stride 1 with
//! the output as one long row on the flat plane, or row by row on wide maps; stride 2
//! as one long row over the phase planes of a band copy, row by row on wide maps, the
//! column phases split in registers, two rows a vector on maps narrower than one); long
//! rows per
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
    /// `[channels, kh, kw]`.
    pub(crate) fn dims(&self) -> [usize; 3] {
        [self.channels, self.kh, self.kw]
    }

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
pub(crate) enum DwPlan {
    /// Per channel, rows of pixel vectors: long rows.
    Rows,
    /// `LANES` channels at once through transposes: short rows.
    Channels,
    /// 3x3 with one pixel of padding, stride 1 ("same") or 2: per channel, the output
    /// as one long row (`engine::depthwise_flat`; stride 2 over phase planes,
    /// `engine::depthwise_phase2`), two rows a vector on maps narrower than one
    /// (`engine::depthwise_narrow2`).
    Flat,
    /// The same layers per channel and output row, the column taps formed in registers
    /// (`engine::depthwise_rows3`; narrow stride-2 maps as `Flat`).
    Shift,
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
        // The flat paths: every 3x3 stride-1 "same" layer (measured faster than both
        // others on every MobileNet shape, 7x7 included: 28 against 35 µs on AVX-512 with
        // 960 channels); every 3x3 stride-2 one: on maps narrower than a vector two
        // output rows a vector (`engine::depthwise_narrow2`: AVX-512, 576x14x14 -> 7x7
        // 9.9 µs against 19.7 row by row and 21.9 transposed, 256x12x12 -> 6x6 3.8 /
        // 7.0 / 7.1, 320x7x7 -> 4x4 3.5 / 5.6 / 4.1), else the output as one long row
        // over the phase planes of a band copy (`engine::depthwise_phase2`; against the
        // row-by-row path see `Tuning::dw_phase_max_width`; the transposes were slower
        // than the row-by-row path from half a vector of output columns: AVX-512, Zen 5,
        // µs, 192x28x28 -> 14x14 12.7 / 25, 576x14x14 -> 7x7 20.0 / 20.6), except on
        // AVX2 below a vector of output columns, where the phase planes' per-channel
        // copy outweighs the few output vectors: transposed (`Tuning::dw_phase_min_out`).
        let narrow = engine::narrow2_fits(&d, S::LANES);
        let phase = engine::phase3_fits(&d) && !narrow;
        let few = phase && d.ow < S::TUNING.dw_phase_min_out;
        let flat = engine::flat3_fits(&d) || engine::phase3_fits(&d);
        // Row by row, the column taps formed in registers: wide stride-1 maps (AVX-512),
        // wide stride-2 ones.
        let shift = engine::flat3_fits(&d) && d.w >= S::TUNING.dw_shift_min_width
            || phase && d.w > S::TUNING.dw_phase_max_width;
        // A band of such a layer's rows (`kernels::expand_depthwise`: no padding above
        // but at the map's top) fits neither whole-layer test: row by row where its rows
        // fill a vector (16x112x112 -> 96 then stride 2 in bands of 8 rows, AVX-512: the
        // bands' depthwise half 323 µs by the generic per-channel path, 127 row by row;
        // docs/PERFORMANCE.md).
        let band = !flat && rows3_band::<S>(&d);
        let plan = self.force.unwrap_or(if few {
            DwPlan::Channels
        } else if shift || band {
            DwPlan::Shift
        } else if flat {
            DwPlan::Flat
        } else if d.ow >= S::TUNING.dw_rows_min_width {
            DwPlan::Rows
        } else {
            DwPlan::Channels
        });
        let (input, out, rows, act, cap) = (self.input, self.out, self.rows, self.act, self.cap);
        let (w, b) = (p.weight, p.bias);
        // SAFETY: `out` and `rows` as the engines require (this struct's contract).
        unsafe {
            if matches!(plan, DwPlan::Flat | DwPlan::Shift) && narrow {
                engine::depthwise_narrow2(s, d, input, w, b, out, rows, act);
                return true;
            }
            // Stride 2: the output as one long row over the phase planes of a band
            // copy (`Flat`), or row by row, the phases split in registers (`Shift`).
            if plan == DwPlan::Flat
                && engine::phase3_fits(&d)
                && engine::depthwise_phase2(s, d, input, w, b, out, rows, act, cap)
            {
                return true;
            }
            // Stride 2, and wide stride-1 maps: row by row, no band buffer.
            if plan == DwPlan::Shift && (engine::flat3_fits(&d) || band)
                || matches!(plan, DwPlan::Flat | DwPlan::Shift) && engine::phase3_fits(&d)
            {
                engine::depthwise_rows3(s, d, input, w, b, out, rows, act);
                return true;
            }
            if matches!(plan, DwPlan::Flat | DwPlan::Shift)
                && engine::flat3_fits(&d)
                && engine::depthwise_flat(s, d, input, w, b, out, rows, act, cap)
            {
                return true;
            }
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
    let (piece, post) = act.split_curved();
    if post == Act::IDENTITY {
        // SAFETY: the caller's contract.
        unsafe { depthwise_range(s, d, input, params, (c0, c1), rows, out, act, cap, force) };
        return;
    }
    // A curved activation (SiLU, sigmoid, ...): over blocks of whole panels whose output
    // rows stay in L2, once each block is stored, not by the kernels over each channel's
    // band or row (a call per 14-float row of a 14x14 map: EfficientNet-B0's 240x28x28
    // 3x3 stride 2 layer took 67 µs with SiLU, 20 without, 11 for SiLU over its output).
    let ohw = d.oh * d.ow;
    let (y0, y1) = rows;
    let per_channel = (y1 - y0) * d.ow;
    let block = (POST_BLOCK_FLOATS / (per_channel.max(1) * PANEL)).max(1) * PANEL;
    for b0 in (c0..c1).step_by(block) {
        let b1 = (b0 + block).min(c1);
        // SAFETY: the caller's contract, for the channels `b0..b1` of its range (their
        // planes from `out + (b0 - c0) * ohw`), with `b0` a multiple of 16.
        unsafe {
            let out = out.add((b0 - c0) * ohw);
            depthwise_range(s, d, input, params, (b0, b1), rows, out, piece, cap, force);
            if rows == (0, d.oh) {
                s.curved_slice(core::slice::from_raw_parts_mut(out, (b1 - b0) * ohw), post);
            } else {
                for c in 0..b1 - b0 {
                    let band = out.add(c * ohw + y0 * d.ow);
                    s.curved_slice(core::slice::from_raw_parts_mut(band, per_channel), post);
                }
            }
        }
    }
}

/// Output floats of one block of [`depthwise_part`]'s curved activation pass: 256 KiB,
/// in L2 when the pass reads it.
const POST_BLOCK_FLOATS: usize = 64 * 1024;

/// [`depthwise_part`] with the activation applied as the kernels apply it.
///
/// # Safety
///
/// As [`depthwise_part`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn depthwise_range<S: Simd>(
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

/// Whether the row-by-row 3x3 path takes `d` on the level of `S` as a band of rows
/// (`engine::rows3_fits`, and output rows that fill a vector): the plan's rule for bands
/// and [`depthwise_rows_into`]'s.
#[inline(always)]
fn rows3_band<S: Simd>(d: &Dims2d) -> bool {
    engine::rows3_fits(d) && d.ow >= S::LANES
}

/// The depthwise convolution `d` (`d.o`, `d.g` ignored: `d.c`), every output row,
/// written into planes `plane >= OH * OW` floats apart at `output`, at `level`, when the
/// row-by-row 3x3 path takes it (`engine::rows3_fits`, rows that fill a vector): a band
/// of a layer's rows (`kernels::expand_depthwise`) straight into its place in the whole
/// layer's output. `false` (nothing written) otherwise. The same values as
/// [`depthwise_with`] within rounding.
///
/// # Safety
///
/// `output + c * plane` is valid for writes of `OH * OW` floats for every channel
/// `c < C`, accessed by no one else during the call.
pub(crate) unsafe fn depthwise_rows_into(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &DepthwiseParams,
    output: *mut f32,
    plane: usize,
    act: Act,
) -> bool {
    struct RowsInto<'a> {
        d: Dims2d,
        input: &'a [f32],
        params: &'a DepthwiseParams,
        output: *mut f32,
        plane: usize,
        act: Act,
    }
    impl WithSimd for RowsInto<'_> {
        type Output = bool;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> bool {
            let d = Dims2d {
                o: self.d.c,
                g: self.d.c,
                ..self.d
            };
            if !rows3_band::<S>(&d) {
                return false;
            }
            let p = self.params;
            assert!(
                p.dims() == [d.c, 3, 3],
                "depthwise_rows_into: parameters {:?}",
                p.dims()
            );
            let input = &self.input[..d.c * d.h * d.w];
            // SAFETY: the caller's contract on `output` and `plane`.
            unsafe {
                engine::depthwise_rows3_into(
                    s,
                    d,
                    input,
                    &p.weight,
                    &p.bias,
                    self.output,
                    self.plane,
                    self.act,
                );
            }
            true
        }
    }
    simd::run(
        level,
        RowsInto {
            d,
            input,
            params,
            output,
            plane,
            act,
        },
    )
}

/// The depthwise convolution with its dimensions as runtime values (`d.o` and `d.g` are
/// ignored: both are `d.c`), at `level` with a band buffer of `cap` floats and optionally
/// a forced plan (tests); see [`depthwise_conv2d`]. Picks the instruction set once and
/// runs [`depthwise_in`] with its token.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_with(
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
            rows: None,
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
    /// Only these output rows, on this thread ([`depthwise_conv2d_rows`]); `None`: all.
    rows: Option<(usize, usize)>,
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
            rows,
        } = self;
        depthwise_in(s, d, input, params, output, act, cap, force, rows);
    }
}

/// [`depthwise_with`] on the instruction set of `s`. With the `parallel` feature, a big
/// layer splits its channels (whole 16-channel panels) over the threads of
/// [`crate::pool`]; each value is computed exactly as on one thread. The parts run the
/// engine through [`Simd::vectorize`] with the token `s`, never through a new dispatch.
/// With `rows`, only those output rows, on this thread.
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
    rows: Option<(usize, usize)>,
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
    if rows.is_none() {
        let aligned = output.as_ptr().align_offset(64) == 0;
        let split = dw_split(&d, crate::pool::num_threads(), aligned);
        let parts = split.parts();
        if parts > 1 {
            let out = super::SharedPtr(output.as_mut_ptr());
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
            rows.map_or((0, d.oh), |(a, b)| {
                (a.min(d.oh), b.min(d.oh).max(a.min(d.oh)))
            }),
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
    let d = checked_dims::<C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW>(params);
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

/// [`depthwise_conv2d`] on output rows `rows.0..rows.1` only (of every plane), on this
/// thread: the rows one member of a [`team`](crate::team) owns. The other rows of
/// `output` are left as they were; every value written is the one [`depthwise_conv2d`]
/// gives.
///
/// # Panics
///
/// As [`depthwise_conv2d`].
pub fn depthwise_conv2d_rows<
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
    rows: (usize, usize),
) {
    let d = checked_dims::<C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW>(params);
    simd::run(
        cpu::level(),
        DwEntry {
            d,
            input,
            params,
            output,
            act,
            cap: engine::SCRATCH,
            force: None,
            rows: Some(rows),
        },
    );
}

/// The layer's dimensions, after checking them (at compile time) and `params` (at run
/// time) against each other.
fn checked_dims<
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
    params: &DepthwiseParams,
) -> Dims2d {
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
    Dims2d {
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
    }
}

mod split;
#[cfg(feature = "parallel")]
pub(super) use split::line_rows;
#[cfg(feature = "parallel")]
use split::{channel_range, dw_split, row_range, DwSplit};

#[cfg(test)]
mod speed;
#[cfg(test)]
mod tests;
