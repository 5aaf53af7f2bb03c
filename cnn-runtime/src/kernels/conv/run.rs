//! Running the engine on a convolution: the instruction set picked once per call (its
//! token passed down), the split over the threads of [`crate::pool`], and the column
//! tiles of 1-D signals too long for the engine's band buffer.

use super::ConvParams;
use crate::cpu::Level;
use crate::kernels::activation::Act;
use crate::kernels::engine::{self, Plan};
use crate::kernels::geometry::Dims2d;
use crate::kernels::simd::{self, Simd, WithSimd};

/// The engine on one convolution (the output channels of a range of weight panels), as
/// a kernel for [`simd::run`].
pub(super) struct ConvRun<'a> {
    pub(super) d: Dims2d,
    pub(super) input: &'a [f32],
    pub(super) params: &'a ConvParams,
    /// `O*OH*OW` floats; this run writes the planes of its panels' channels only.
    pub(super) out: *mut f32,
    pub(super) act: Act,
    pub(super) cap: usize,
    pub(super) force: Option<Plan>,
    pub(super) panels: (usize, usize),
    /// Output pixels `q = y * OW + x` (see `engine::conv_panels`).
    pub(super) pixels: (usize, usize),
}

impl WithSimd for ConvRun<'_> {
    type Output = bool;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> bool {
        // SAFETY: whoever built the run (`conv2d_with`) gave it `out` over the whole
        // output and a panel range no other run of the same call writes.
        unsafe {
            engine::conv_panels(
                s,
                self.d,
                self.input,
                self.params.packed(),
                self.out,
                self.act,
                self.cap,
                self.force,
                self.panels,
                self.pixels,
            )
        }
    }
}

/// Multiply-accumulates from which a one-group convolution splits its panels over the
/// pool's threads (`parallel` feature): below, waking a worker costs more than it saves.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) const PAR_MACS: usize = 500_000;

/// The output pointer shared by the parts of a split convolution.
#[cfg(feature = "parallel")]
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: the parts of one call write disjoint channel planes through it (see
// `conv2d_with`), and the call waits for all of them before the borrow ends.
#[cfg(feature = "parallel")]
unsafe impl Sync for OutPtr {}
#[cfg(feature = "parallel")]
unsafe impl Send for OutPtr {}

#[cfg(feature = "parallel")]
impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// How a convolution is split over the pool's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Split {
    /// Contiguous ranges of output panels (one group only).
    Panels(usize),
    /// Contiguous ranges of output pixels: whole rows, or columns of a one-row layer
    /// (see [`pixel_range`]).
    Pixels(usize),
}

#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
impl Split {
    pub(super) fn parts(self) -> usize {
        match self {
            Split::Panels(n) | Split::Pixels(n) => n,
        }
    }
}

/// How the convolution `d` is split over `threads` threads: `Panels(1)` (this thread
/// only) unless the `parallel` feature is on, the pool has threads and the layer has
/// enough work. By output pixels when there are enough of them (each part copies only
/// its own band rows, and reads only its own input rows), else by output panels.
///
/// `out_aligned`: the output starts a 64-byte cache line (a model's arena tensors do).
/// A pixel split puts a boundary inside every output plane; when a boundary or a plane
/// start falls inside a line, both threads write that line, once per plane (false
/// sharing: measured to cost more than the split saves on 12x12 maps), so a layer with
/// panels to spare is then split by panels, whose boundaries are whole planes.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) fn conv_split(d: &Dims2d, threads: usize, out_aligned: bool) -> Split {
    let panels = d.o.div_ceil(engine::PANEL);
    let macs = d.o * d.oh * d.ow * (d.c / d.g) * d.kh * d.kw;
    let f = engine::flat(*d);
    // Pixel units: rows, or `PIX_COLS`-column chunks of a one-row layer.
    let units = if f.oh == 1 { f.ow / PIX_COLS } else { f.oh };
    let pixels = || Split::Pixels(threads.min(units).max(1));
    // Boundaries start lines in every plane, and no part is over 5% above the mean
    // (a one-row layer's columns split in whole lines: 144 pixels are 64 + 80).
    let on_lines = |s: Split| {
        let line = 64 / core::mem::size_of::<f32>();
        let parts = s.parts();
        let n = d.oh * d.ow;
        let longest = (0..parts).map(|i| {
            let (q0, q1) = pixel_range(d, parts, i);
            q1 - q0
        });
        out_aligned
            && n.is_multiple_of(line)
            && (1..parts).all(|i| pixel_range(d, parts, i).0.is_multiple_of(line))
            && longest.max().unwrap_or(0) * parts * 20 <= n * 21
    };
    if threads < 2 || macs < PAR_MACS {
        Split::Panels(1)
    } else if d.g != 1
        || panels < 2
        || (units >= 2 * threads && (panels < 2 * threads || on_lines(pixels())))
    {
        pixels()
    } else {
        Split::Panels(threads.min(panels))
    }
}

/// Columns per unit of a pixel split of a one-row layer: one cache line of floats (a
/// 24x24 map's 576 pixels split 288 + 288, where whole 64-pixel tiles made it 256 +
/// 320). A part's edge tile is narrower; each pixel's value does not depend on it.
pub(super) const PIX_COLS: usize = 16;

/// Output pixels `q = y * OW + x` of range `i` of `parts` of the convolution `d`: whole
/// rows of `engine::flat(d)`, or, when it has one row, runs of [`PIX_COLS`] columns
/// (the last range taking what is left).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) fn pixel_range(d: &Dims2d, parts: usize, i: usize) -> (usize, usize) {
    let f = engine::flat(*d);
    let (unit, units, n) = if f.oh == 1 {
        (PIX_COLS, f.ow.div_ceil(PIX_COLS), f.ow)
    } else {
        (f.ow, f.oh, f.oh * f.ow)
    };
    let at = |k: usize| (k * units / parts * unit).min(n);
    (at(i), at(i + 1))
}

/// Panel range `i` of `parts` over `panels` panels: contiguous, in whole pairs of
/// panels when there are enough and pairs balance the parts as well as single panels do
/// (AVX-512's two-panel tiles then pair the same panels as in one run), else in single
/// panels (6 panels over two threads: 3 + 3, where pairs gave 2 + 4: MobileNetV2's
/// 96-channel projections), the last range taking what is left. Each value is the same
/// whatever tile computes it.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) fn panel_range(panels: usize, parts: usize, i: usize) -> (usize, usize) {
    let at = |unit: usize, k: usize| (k * panels.div_ceil(unit) / parts * unit).min(panels);
    let longest = |unit: usize| (0..parts).map(|k| at(unit, k + 1) - at(unit, k)).max();
    let unit = if panels >= 2 * parts && longest(2) <= longest(1) {
        2
    } else {
        1
    };
    (at(unit, i), at(unit, i + 1))
}

/// The convolution with its dimensions as runtime values, at `level`, with a band buffer
/// of `cap` floats and optionally a forced micro-kernel (tests); see [`conv2d`](super::conv2d). Picks
/// the instruction set once and runs [`conv2d_in`] with its token.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_with(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    output: &mut [f32],
    act: Act,
    cap: usize,
    force: Option<Plan>,
) {
    simd::run(
        level,
        ConvEntry {
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

/// The arguments of [`conv2d_in`], as a kernel for [`simd::run`].
pub(super) struct ConvEntry<'a> {
    pub(super) d: Dims2d,
    pub(super) input: &'a [f32],
    pub(super) params: &'a ConvParams,
    pub(super) output: &'a mut [f32],
    pub(super) act: Act,
    pub(super) cap: usize,
    pub(super) force: Option<Plan>,
}

impl WithSimd for ConvEntry<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let ConvEntry {
            d,
            input,
            params,
            output,
            act,
            cap,
            force,
        } = self;
        conv2d_in(s, d, input, params, output, act, cap, force);
    }
}

/// [`conv2d_with`] on the instruction set of `s`. With the `parallel` feature, a big
/// one-group layer splits its output channels (whole 16-channel panels) over the threads
/// of [`crate::pool`]; each value is computed exactly as on one thread. Every engine run
/// goes through [`Simd::vectorize`] with the token `s` (a function of its own compiled
/// for the level), never through a new dispatch.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_in<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    output: &mut [f32],
    act: Act,
    cap: usize,
    force: Option<Plan>,
) {
    let input = &input[..d.c * d.h * d.w];
    let n = d.o * d.oh * d.ow;
    let output = &mut output[..n];
    let panels = d.o.div_ceil(engine::PANEL);
    let cap = cap.min(engine::SCRATCH);
    #[cfg(feature = "parallel")]
    {
        let aligned = output.as_ptr().align_offset(64) == 0;
        let split = conv_split(&d, crate::pool::num_threads(), aligned);
        let parts = split.parts();
        if parts > 1 {
            let out = OutPtr(output.as_mut_ptr());
            let ok = std::sync::atomic::AtomicBool::new(true);
            let part = |i: usize| {
                let (panels, pixels) = match split {
                    Split::Panels(_) => (panel_range(panels, parts, i), (0, d.oh * d.ow)),
                    Split::Pixels(_) => ((0, panels), pixel_range(&d, parts, i)),
                };
                let run = ConvRun {
                    d,
                    input,
                    params,
                    out: out.get(),
                    act,
                    cap,
                    force,
                    panels,
                    pixels,
                };
                if !s.vectorize(run) {
                    ok.store(false, std::sync::atomic::Ordering::Relaxed);
                }
            };
            crate::pool::run(parts, &part);
            // The engine declines a layer (identically for every range) before writing.
            let done =
                ok.into_inner() || (is_1d(&d) && conv1d_tiled(s, d, input, params, output, act));
            if !done {
                engine::conv_fallback(d, input, params.packed(), output, act);
            }
            return;
        }
    }
    let run = ConvRun {
        d,
        input,
        params,
        out: output.as_mut_ptr(),
        act,
        cap,
        force,
        panels: (0, panels),
        pixels: (0, d.oh * d.ow),
    };
    let done = s.vectorize(run) || (is_1d(&d) && conv1d_tiled(s, d, input, params, output, act));
    if !done {
        engine::conv_fallback(d, input, params.packed(), output, act);
    }
}

/// Whether a convolution is a 1-D one as the compiler lowers `[C, L]` signals: one row
/// in and out, a one-row kernel, no vertical padding.
pub(super) fn is_1d(d: &Dims2d) -> bool {
    d.h == 1 && d.oh == 1 && d.kh == 1 && d.ph == 0
}

/// Floats of each of the two stack buffers of [`conv1d_tiled`].
pub(super) const TILE: usize = 8 * 1024;

/// A 1-D convolution (`H = 1`) whose padded row the engine does not take (longer than its
/// band buffer: a long audio or sensor signal), cut into column tiles: each tile's input
/// columns, zero-padded at the ends of the signal, are copied into a stack buffer, the
/// engine convolves the tile unpadded into a second one, and the outputs are copied into
/// their columns. Returns false when even one output column per tile does not fit (the
/// caller then falls back to the scalar loop).
pub(super) fn conv1d_tiled<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    output: &mut [f32],
    act: Act,
) -> bool {
    let span = d.dw * (d.kw - 1) + 1;
    // Output columns per tile: the tile's input columns must fit the input buffer, its
    // outputs the output buffer.
    let by_in = (TILE / d.c).saturating_sub(span) / d.sw + 1;
    let by_out = TILE / d.o;
    let tw = by_in.min(by_out).min(d.ow);
    if TILE / d.c < span || tw == 0 {
        return false;
    }
    let mut tin = [0.0f32; TILE];
    let mut tout = [0.0f32; TILE];
    let mut x0 = 0;
    while x0 < d.ow {
        let n = tw.min(d.ow - x0);
        // Input columns [start, start + wi) of the padded signal, `start` may be negative.
        let start = (x0 * d.sw) as isize - d.pw as isize;
        let wi = (n - 1) * d.sw + span;
        for c in 0..d.c {
            let row = &input[c * d.w..(c + 1) * d.w];
            let dst = &mut tin[c * wi..(c + 1) * wi];
            for (j, v) in dst.iter_mut().enumerate() {
                let x = start + j as isize;
                *v = if x >= 0 && (x as usize) < d.w {
                    row[x as usize]
                } else {
                    0.0
                };
            }
        }
        let td = Dims2d {
            w: wi,
            ow: n,
            pw: 0,
            ..d
        };
        conv2d_in(
            s,
            td,
            &tin[..d.c * wi],
            params,
            &mut tout[..d.o * n],
            act,
            engine::SCRATCH,
            None,
        );
        for o in 0..d.o {
            output[o * d.ow + x0..o * d.ow + x0 + n].copy_from_slice(&tout[o * n..(o + 1) * n]);
        }
        x0 += n;
    }
    true
}
