//! Running the engine on a convolution: the instruction set picked once per call (its
//! token passed down), the split over the threads of [`crate::pool`], and 1-D signals
//! too long for the engine's band buffer: their interior read directly, their padded
//! ends (or, where the stride does not divide the padding, the whole signal) in column
//! tiles.

use super::ConvParams;
use crate::cpu::Level;
use crate::kernels::activation::Act;
use crate::kernels::engine::{self, PackBuf, Packed, Plan};
use crate::kernels::geometry::Dims2d;
use crate::kernels::simd::{self, Simd, WithSimd};

/// The engine on one convolution (the output channels of a range of weight panels), as
/// a kernel for [`simd::run`].
pub(super) struct ConvRun<'a> {
    pub(super) d: Dims2d,
    pub(super) input: &'a [f32],
    pub(super) params: Packed<'a>,
    /// `O*OH*OW` floats (from a 1-D interior's first column: see `Window`); this run
    /// writes the planes of its panels' channels only, at its pixels.
    pub(super) out: *mut f32,
    pub(super) act: Act,
    /// A residual added before the activation, laid out as `out` (from the same
    /// first column), or null.
    pub(super) res: *const f32,
    pub(super) cap: usize,
    pub(super) force: Option<Plan>,
    pub(super) panels: (usize, usize),
    /// Output pixels `q = y * OW + x` (see `engine::conv_panels`).
    pub(super) pixels: (usize, usize),
    /// This run's own packing buffer (see `engine::conv_panels`).
    pub(super) pack: PackBuf,
}

impl WithSimd for ConvRun<'_> {
    type Output = bool;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> bool {
        // SAFETY: whoever built the run (`conv2d_in`) gave it `out` over the whole
        // output, a panel or pixel range no other run of the same call writes, a
        // packing buffer no other run of the call uses, and a residual (if any) as
        // long as the output, apart from it.
        unsafe {
            engine::conv_panels(
                s,
                self.d,
                self.input,
                self.params,
                self.out,
                self.act,
                self.res,
                self.cap,
                self.force,
                self.panels,
                self.pixels,
                self.pack,
            )
        }
    }
}

/// Multiply-accumulates from which a one-group convolution splits its panels over the
/// pool's threads (`parallel` feature): below, waking a worker costs more than it saves.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) const PAR_MACS: usize = 500_000;

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
/// enough work. By output pixels when there are enough of them, they balance the parts
/// within 5% and the split is worth its shared cache lines, else by output panels.
///
/// A pixel split has each part read only its own input rows (and copy only its own band
/// rows), while a panel split reads the whole input, of which, in a model, the other
/// cores just wrote their parts (the layer before split by pixels). But a pixel
/// boundary that falls inside a cache line of an output plane has both threads write
/// that line (false sharing, about ten times a line read from the other core:
/// MobileNet-96's 256 -> 256 1x1 layer on 12x12, 256 planes with a boundary mid-line,
/// 61 -> 97 us at two threads). So pixels win when the input lines the other cores
/// wrote outnumber eight times the shared output lines ([`shared_lines`]):
/// MobileNetV2's 14x14 projections (576 -> 96 channels: 145 -> 106 us in the chain),
/// not its expansions (96 -> 576), nor layers whose planes and boundaries start lines.
/// `out_off`: the output's first float past a 64-byte line (0 for a model's arena).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) fn conv_split(d: &Dims2d, threads: usize, out_off: usize) -> Split {
    let panels = d.o.div_ceil(engine::PANEL);
    let macs = d.o * d.oh * d.ow * (d.c / d.g) * d.kh * d.kw;
    let f = engine::flat(*d);
    let n = f.oh * f.ow;
    // Pixel units: rows, or runs of columns of a one-row layer.
    let unit = pixel_unit(&f, threads);
    let units = n.div_ceil(unit);
    let pixels = || Split::Pixels(threads.min(units).max(1));
    if threads < 2 || macs < PAR_MACS {
        Split::Panels(1)
    } else if d.g != 1
        || panels < 2
        || (units >= 2 * threads
            && (panels < 2 * threads
                || (balanced(unit, n, threads)
                    && shared_lines(d, threads, out_off) * 8
                        <= d.c * d.h * d.w * (threads - 1) / threads / LINE)))
    {
        pixels()
    } else {
        Split::Panels(threads.min(panels))
    }
}

/// Floats per 64-byte cache line.
const LINE: usize = 64 / core::mem::size_of::<f32>();

/// Cache lines of the output planes that two parts of a pixel split over `parts` would
/// both write: for every plane, each boundary between parts and the plane's start
/// (after the first) that falls inside a line. The output starts `out_off` floats past
/// a line.
pub(super) fn shared_lines(d: &Dims2d, parts: usize, out_off: usize) -> usize {
    let ohw = d.oh * d.ow;
    let starts = (1..parts).map(|i| pixel_range(d, parts, i).0);
    let mut shared = 0;
    for q in starts.chain([0]) {
        // Plane `o`'s boundary is off a line as `o * ohw + q` is: periodic in `o % LINE`.
        for r in (0..LINE).filter(|&r| r < d.o && !(r * ohw + q + out_off).is_multiple_of(LINE)) {
            let planes = (d.o - r).div_ceil(LINE);
            // A plane's start is a boundary from the second plane on.
            shared += planes - usize::from(q == 0 && r == 0);
        }
    }
    shared
}

/// Start of range `k` of `parts` over `n` pixels cut in units of `unit` (the last unit
/// may be short).
fn unit_start(unit: usize, n: usize, parts: usize, k: usize) -> usize {
    (k * n.div_ceil(unit) / parts * unit).min(n)
}

/// Whether `parts` ranges of whole units leave no part over 5% above the mean (also
/// the depthwise row bands' test: `row_range` cuts rows as `unit_start` cuts pixels).
pub(crate) fn balanced(unit: usize, n: usize, parts: usize) -> bool {
    let longest = (0..parts)
        .map(|k| unit_start(unit, n, parts, k + 1) - unit_start(unit, n, parts, k))
        .max()
        .unwrap_or(0);
    longest * parts * 20 <= n * 21
}

/// Pixels per unit of a pixel split of `f` (a layer after [`engine::flat`]) over `parts`:
/// whole rows, or, for a one-row layer, runs of columns: one cache line of floats, else
/// half or a quarter of one when that balances the parts better (a 7x7 map's 49 pixels:
/// 24 + 25, where whole lines made it 32 + 17; 576 pixels: 288 + 288). A part's edge
/// tile is narrower; each pixel's value does not depend on it.
pub(super) fn pixel_unit(f: &Dims2d, parts: usize) -> usize {
    if f.oh != 1 {
        return f.ow;
    }
    [16, 8, 4]
        .into_iter()
        .find(|&u| balanced(u, f.ow, parts))
        .unwrap_or(4)
}

/// Output pixels `q = y * OW + x` of range `i` of `parts` of the convolution `d`: whole
/// units of [`pixel_unit`] (the last range taking what is left).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) fn pixel_range(d: &Dims2d, parts: usize, i: usize) -> (usize, usize) {
    let f = engine::flat(*d);
    let (unit, n) = (pixel_unit(&f, parts), f.oh * f.ow);
    (
        unit_start(unit, n, parts, i),
        unit_start(unit, n, parts, i + 1),
    )
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
/// the instruction set once and runs [`conv2d_in`] with its token. `res`: a residual
/// added before the activation (see [`conv2d_residual`](super::conv2d_residual)).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_with(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    output: &mut [f32],
    act: Act,
    res: Option<&[f32]>,
    cap: usize,
    force: Option<Plan>,
    pack: &mut [f32],
) {
    conv2d_packed(
        level,
        d,
        input,
        params.packed(),
        output,
        act,
        res,
        (cap, force),
        pack,
        None,
    );
}

/// [`conv2d_with`] (the default band buffer) on output rows `rows.0..rows.1` only, on
/// this thread: the rows a member of a [`crate::team`] owns. The other rows of `output`
/// are not written; each value written is the one the whole layer gives.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_rows_with(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    output: &mut [f32],
    act: Act,
    res: Option<&[f32]>,
    pack: &mut [f32],
    rows: (usize, usize),
) {
    simd::run(
        level,
        ConvEntry {
            d,
            input,
            params: params.packed(),
            output,
            act,
            res,
            cap: engine::SCRATCH,
            force: None,
            pack,
            rows: Some(rows),
        },
    );
}

/// [`conv2d_with`] on packed weights and bias read from anywhere (a layer's own, or a
/// copy scaled per input channel: [`conv2d_scaled`](super::conv2d_scaled)); with
/// `rows`, only those output rows, on this thread (see [`conv2d_rows_with`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_packed(
    level: Level,
    d: Dims2d,
    input: &[f32],
    params: Packed<'_>,
    output: &mut [f32],
    act: Act,
    res: Option<&[f32]>,
    (cap, force): (usize, Option<Plan>),
    pack: &mut [f32],
    rows: Option<(usize, usize)>,
) {
    simd::run(
        level,
        ConvEntry {
            d,
            input,
            params,
            output,
            act,
            res,
            cap,
            force,
            pack,
            rows,
        },
    );
}

/// The arguments of [`conv2d_in`], as a kernel for [`simd::run`].
pub(super) struct ConvEntry<'a> {
    pub(super) d: Dims2d,
    pub(super) input: &'a [f32],
    pub(super) params: Packed<'a>,
    pub(super) output: &'a mut [f32],
    pub(super) act: Act,
    pub(super) res: Option<&'a [f32]>,
    pub(super) cap: usize,
    pub(super) force: Option<Plan>,
    pub(super) pack: &'a mut [f32],
    /// Only these output rows, on this thread (see [`conv2d_rows_with`]); `None`: all.
    pub(super) rows: Option<(usize, usize)>,
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
            res,
            cap,
            force,
            pack,
            rows,
        } = self;
        conv2d_in(
            s, d, input, params, output, act, res, cap, force, pack, rows,
        );
    }
}

/// [`conv2d_with`] on the instruction set of `s`. With the `parallel` feature, a big
/// one-group layer splits its output channels (whole 16-channel panels) over the threads
/// of [`crate::pool`]; each value is computed exactly as on one thread. Every engine run
/// goes through [`Simd::vectorize`] with the token `s` (a function of its own compiled
/// for the level), never through a new dispatch. A residual is added by the engine's
/// post-pass, block by block; the paths without one (the column tiles of long 1-D
/// signals, the scalar fallback) run without it and the activation, then add both over
/// the whole output (the same bits). With `rows`, the engine computes only those output
/// rows, unsplit (a team member's); the paths without the engine compute them all.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_in<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    params: Packed<'_>,
    output: &mut [f32],
    act: Act,
    res: Option<&[f32]>,
    cap: usize,
    force: Option<Plan>,
    pack: &mut [f32],
    rows: Option<(usize, usize)>,
) {
    let input = &input[..d.c * d.h * d.w];
    let n = d.o * d.oh * d.ow;
    let output = &mut output[..n];
    let res = res.map(|r| &r[..n]);
    let cap = cap.min(engine::SCRATCH);
    let whole = Window {
        off: 0,
        n: d.oh * d.ow,
    };
    // A row band's output pixels.
    let band = rows.map(|(a, b)| (a.min(d.oh) * d.ow, b.min(d.oh) * d.ow));
    if let Some(dd) = subsampled_1x1(&d) {
        // A strided 1x1 layer (ResNets' downsampling): the pixels it reads gathered into
        // the planned memory (a band's rows alone), then a direct 1x1 layer on them.
        let n = d.c * d.oh * d.ow;
        if pack.len() >= n.next_multiple_of(16) {
            let (gathered, rest) = pack.split_at_mut(n.next_multiple_of(16));
            let rows = rows.map(|(a, b)| (a.min(d.oh), b.min(d.oh)));
            gather_strided(s, &d, input, &mut gathered[..n], rows);
            let gathered = &gathered[..n];
            let run = (act, res);
            if engine_run(
                s, dd, gathered, params, output, run, cap, force, rest, whole, band,
            ) {
                return;
            }
        }
    }
    // The paths without a post-pass: no residual, no activation when there is one.
    let plain = if res.is_some() {
        (Act::IDENTITY, None)
    } else {
        (act, None)
    };
    let finish = |output: &mut [f32]| {
        if let Some(r) = res {
            s.residual_slice(output, r, act);
        }
    };
    if let Some((dd, lo, count)) = interior_1d(&d, cap) {
        // A padded 1-D signal too long for the band buffer: the outputs whose taps all
        // land inside it read it directly (no copy), the few at its ends through
        // column tiles.
        let window = Window { off: lo, n: count };
        let done = engine_run(
            s, dd, input, params, output, plain, cap, force, pack, window, None,
        );
        if done {
            let tiled = conv1d_tiled(s, d, input, params, output, plain.0, 0..lo)
                && conv1d_tiled(s, d, input, params, output, plain.0, lo + count..d.ow);
            if tiled {
                finish(output);
                return;
            }
        }
    }
    if engine_run(
        s,
        d,
        input,
        params,
        output,
        (act, res),
        cap,
        force,
        pack,
        whole,
        band,
    ) {
        return;
    }
    let tiled = is_1d(&d) && conv1d_tiled(s, d, input, params, output, plain.0, 0..d.ow);
    if !tiled {
        engine::conv_fallback(d, input, params, output, plain.0);
    }
    finish(output);
}

/// For an unpadded 1x1 convolution with a stride (ResNets' downsampling layers), the
/// 1x1 stride-1 convolution on the pixels it reads: the engine would copy bands of every
/// input row and column (all stride phases) to read a quarter of them, and, with big
/// weights, stream its weights once per band of few rows. Only where the band copy would
/// take every input channel at once: the sums then run in the same order either way.
pub(super) fn subsampled_1x1(d: &Dims2d) -> Option<Dims2d> {
    let strided = d.kh * d.kw == 1 && d.ph == 0 && d.pw == 0 && (d.sh, d.sw) != (1, 1);
    let whole =
        engine::band_shape(d, false, engine::SCRATCH).is_some_and(|(_, cc)| cc == d.c / d.g);
    (strided && whole).then_some(Dims2d {
        h: d.oh,
        w: d.ow,
        sh: 1,
        sw: 1,
        dh: 1,
        dw: 1,
        ..*d
    })
}

/// The input pixels of the strided 1x1 convolution `d` ([`subsampled_1x1`]) into `out`
/// (`C x OH x OW`): every `SH`-th row, every `SW`-th column; with `rows`, only those
/// output rows' pixels of each plane, on this thread (a team member's band, whose input
/// rows are the only ones it holds). With the `parallel` feature, large whole gathers
/// split their planes over the pool's threads.
fn gather_strided<S: Simd>(
    s: S,
    d: &Dims2d,
    input: &[f32],
    out: &mut [f32],
    rows: Option<(usize, usize)>,
) {
    let plane = d.oh * d.ow;
    #[cfg(feature = "parallel")]
    if rows.is_none() {
        let split = crate::kernels::split_planes(d.c, plane, out, &|first, part| {
            s.vectorize(Gather {
                d,
                input,
                out: part,
                first,
                rows: (0, d.oh),
            });
        });
        if split {
            return;
        }
    }
    s.vectorize(Gather {
        d,
        input,
        out: &mut out[..d.c * plane],
        first: 0,
        rows: rows.unwrap_or((0, d.oh)),
    });
}

/// [`gather_strided`] of output rows `rows` of the planes in `out` from plane `first`
/// on, as one isolated function ([`Simd::vectorize`]).
struct Gather<'a> {
    d: &'a Dims2d,
    input: &'a [f32],
    out: &'a mut [f32],
    first: usize,
    rows: (usize, usize),
}

impl WithSimd for Gather<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Gather {
            d,
            input,
            out,
            first,
            rows,
        } = self;
        let ow = d.ow;
        for (c, plane) in (first..).zip(out.chunks_exact_mut(d.oh * ow)) {
            let band = plane[rows.0 * ow..rows.1 * ow].chunks_exact_mut(ow);
            for (y, row) in (rows.0..).zip(band) {
                // The input row's pixels from the first one read to the last.
                let src = &input[(c * d.h + y * d.sh) * d.w..][..(ow - 1) * d.sw + 1];
                engine::strided_load(s, row, src, d.sw);
            }
        }
    }
}

/// The output pixels one engine run computes: `n` pixels of every output plane, the
/// first at `off` (the whole plane, or the columns of a 1-D signal whose taps all land
/// inside it: see [`interior_1d`]).
#[derive(Clone, Copy)]
struct Window {
    off: usize,
    n: usize,
}

/// For a padded 1-D convolution (stride dividing the padding) whose padded row, all
/// channels, does not fit the band buffer of `cap` floats: the same convolution without
/// padding, its output shifted by `lo = padding / stride` columns, and how many of its
/// outputs (from the first) read only the signal: `(d', lo, count)`, `count > 0`.
/// Output `x' < count` of `d'` is output `lo + x'` of `d`; the engine reads `d'`'s
/// input directly for them (its pixel range ends before any tap leaves the signal).
pub(super) fn interior_1d(d: &Dims2d, cap: usize) -> Option<(Dims2d, usize, usize)> {
    if !is_1d(d) || d.pw == 0 || !d.pw.is_multiple_of(d.sw) {
        return None;
    }
    // The band of one output row: every channel's padded row, split in stride phases.
    let rowpitch = d.sw * d.cols_in().div_ceil(d.sw);
    if (d.c / d.g) * rowpitch <= cap {
        return None;
    }
    let span = d.dw * (d.kw - 1) + 1;
    let lo = d.pw / d.sw;
    let count = ((d.w.checked_sub(span)? / d.sw) + 1).min(d.ow.checked_sub(lo)?);
    (count > 0).then_some((Dims2d { pw: 0, ..*d }, lo, count))
}

/// The engine on the pixels `window` of the convolution `d` (all of them, or the
/// interior of a 1-D signal), split over the pool's threads with the `parallel` feature;
/// false (nothing written) when the engine declines the layer. `(act, res)`: the
/// activation and the residual added before it (as long as the output), if any.
/// `band`: only these pixels of the whole window, unsplit (a team member's rows).
#[allow(clippy::too_many_arguments)]
fn engine_run<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    params: Packed<'_>,
    output: &mut [f32],
    (act, res): (Act, Option<&[f32]>),
    cap: usize,
    force: Option<Plan>,
    pack: &mut [f32],
    window: Window,
    band: Option<(usize, usize)>,
) -> bool {
    let panels = d.o.div_ceil(engine::PANEL);
    // The planes seen from the window's first pixel: every plane keeps its stride `OH *
    // OW`, the run writes pixels `0..n` of each (`off + n <= OH * OW`).
    let output = &mut output[window.off..];
    let res = res.map(|r| &r[window.off..]);
    let res_ptr = || res.map_or(core::ptr::null(), <[f32]>::as_ptr);
    let band = band.filter(|_| window.off == 0 && window.n == d.oh * d.ow);
    if band.is_some_and(|(a, b)| a >= b) {
        return true;
    }
    #[cfg(feature = "parallel")]
    if band.is_none() {
        let out_off = (output.as_ptr() as usize / core::mem::size_of::<f32>()) % 16;
        let split = conv_split(&d, crate::pool::num_threads(), out_off);
        let parts = split.parts();
        if parts > 1 {
            // Pixel ranges over the window (a 1-D interior: a one-row layer of `n`
            // columns).
            let dw = if window.n == d.oh * d.ow {
                d
            } else {
                Dims2d { ow: window.n, ..d }
            };
            let out = crate::kernels::SharedPtr(output.as_mut_ptr());
            // The packing buffer in equal shares, whole lines, for the first parts
            // (the others pack into their band buffers where a block fits).
            let shares = parts.min(engine::PACK_PARTS);
            let share = pack.len() / shares / 16 * 16;
            let pack_base = crate::kernels::SharedPtr(pack.as_mut_ptr());
            let ok = std::sync::atomic::AtomicBool::new(true);
            let part = |i: usize| {
                let (panels, pixels) = match split {
                    Split::Panels(_) => (panel_range(panels, parts, i), (0, window.n)),
                    Split::Pixels(_) => ((0, panels), pixel_range(&dw, parts, i)),
                };
                if pixels.0 >= pixels.1 {
                    return;
                }
                warm_input(s, &d, input, pixels);
                let run = ConvRun {
                    d,
                    input,
                    params,
                    out: out.get(),
                    act,
                    res: res_ptr(),
                    cap,
                    force,
                    panels,
                    pixels,
                    pack: if i < shares && share > 0 {
                        PackBuf {
                            // SAFETY: share `i < shares` of `pack`: `i * share + share
                            // <= pack.len()`, no other part's.
                            ptr: unsafe { pack_base.get().add(i * share) },
                            len: share,
                        }
                    } else {
                        PackBuf::NONE
                    },
                };
                if !s.vectorize(run) {
                    ok.store(false, std::sync::atomic::Ordering::Relaxed);
                }
            };
            crate::pool::run(parts, &part);
            // The engine declines a layer (identically for every range) before writing.
            return ok.into_inner();
        }
    }
    let run = ConvRun {
        d,
        input,
        params,
        out: output.as_mut_ptr(),
        act,
        res: res_ptr(),
        cap,
        force,
        panels: (0, panels),
        pixels: band.unwrap_or((0, window.n)),
        pack: PackBuf {
            ptr: pack.as_mut_ptr(),
            len: pack.len(),
        },
    };
    s.vectorize(run)
}

/// Output maps of at most this many pixels (24x24) on which a split 1x1 layer warms
/// its part's input first ([`warm_input`]): those whose depthwise layers split by
/// channels (`depthwise::split::SMALL_MAP`), as the 1x1 layers before them split by
/// panels, so that a part's input is half the other core's. On 28x28 and 56x56 maps
/// (split by rows) it made MobileNetV2's layers 4-12% slower.
#[cfg(feature = "parallel")]
const WARM_MAP: usize = 576;

/// Before a part of a split 1x1 layer (stride 1, no padding) on a small map
/// ([`WARM_MAP`]) runs, asks for every line of the input it reads to be brought into
/// its first-level cache (`prefetcht0`, one per line): pixels `pixels` of every input
/// plane (a pixel split), or the whole input. Much of that input was just written by
/// the other core (a layer before split another way: about 7 GB/s between cores on the
/// Intel VM, `pool::cross_core`); the tiles alone read it a short run per plane at a
/// time, a few lines in flight, where the prefetches keep many. Measured at two
/// threads (Intel Xeon VM, alternated in one binary, four rounds): MobileNetV2's 14x14
/// projections 7-12% faster, MobileNetV3-Large's 14x14 layers 7-23%, MobileNet-96's
/// 12x12 and 6x6 ones 10%, DenseNet-121's 14x14 1x1 layers 10%; whole models 1-2%
/// (MobileNet-96, MobileNetV2, MobileNetV3-Large, EfficientNet-B0, ResNet-50,
/// DenseNet-121), MobileNetV3-Small and SqueezeNet within noise. A prefetch is a hint:
/// values do not depend on it.
#[cfg(feature = "parallel")]
#[inline(always)]
fn warm_input<S: Simd>(s: S, d: &Dims2d, input: &[f32], (q0, q1): (usize, usize)) {
    let hw = d.h * d.w;
    if d.kh * d.kw != 1
        || d.sh * d.sw != 1
        || d.ph + d.pw != 0
        || hw != d.oh * d.ow
        || hw > WARM_MAP
    {
        return;
    }
    let base = input.as_ptr();
    for c in 0..d.c {
        // From the line holding pixel `q0` (planes need not start a line).
        let mut q = c * hw + q0;
        q -= q % LINE;
        while q < c * hw + q1 {
            // `wrapping_add`: the address is only a hint (`Simd::prefetch_l1`); every
            // line asked for holds a float of plane `c`.
            s.prefetch_l1(base.wrapping_add(q));
            q += LINE;
        }
    }
}

/// Whether a convolution is a 1-D one as the compiler lowers `[C, L]` signals: one row
/// in and out, a one-row kernel, no vertical padding.
pub(super) fn is_1d(d: &Dims2d) -> bool {
    d.h == 1 && d.oh == 1 && d.kh == 1 && d.ph == 0
}

/// Floats of each of the two stack buffers of [`conv1d_tiled`].
pub(super) const TILE: usize = 8 * 1024;

/// The output columns `cols` of a 1-D convolution (`H = 1`) whose padded row the engine
/// does not take (longer than its band buffer: a long audio or sensor signal), cut into
/// column tiles: each tile's input columns, zero-padded at the ends of the signal, are
/// copied into a stack buffer, the engine convolves the tile unpadded into a second one,
/// and the outputs are copied into their columns. Returns false when even one output
/// column per tile does not fit (the caller then falls back to the scalar loop).
pub(super) fn conv1d_tiled<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    params: Packed<'_>,
    output: &mut [f32],
    act: Act,
    cols: core::ops::Range<usize>,
) -> bool {
    if cols.is_empty() {
        return true;
    }
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
    let mut x0 = cols.start;
    while x0 < cols.end {
        let n = tw.min(cols.end - x0);
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
            None,
            engine::SCRATCH,
            None,
            &mut [],
            None,
        );
        for o in 0..d.o {
            output[o * d.ow + x0..o * d.ow + x0 + n].copy_from_slice(&tout[o * n..(o + 1) * n]);
        }
        x0 += n;
    }
    true
}
