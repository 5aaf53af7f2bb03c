//! How a depthwise convolution splits over the pool's threads (`parallel`): by ranges
//! of whole channel panels or by bands of output rows, and the ranges each part takes.

use super::*;

/// Multiply-accumulates from which a depthwise convolution splits over the pool's
/// threads (`parallel` feature): below, waking a worker costs more than it saves. Low,
/// as a layer that reads what the layer before wrote on two cores runs faster on both
/// than on one reading the other core's half.
#[cfg(feature = "parallel")]
pub(super) const PAR_MACS: usize = 40_000;

/// How a depthwise convolution is split over the pool's threads.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DwSplit {
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
    pub(super) fn parts(self) -> usize {
        match self {
            DwSplit::Rows { parts, .. } | DwSplit::Channels(parts) => parts,
        }
    }
}

/// Floats in a 64-byte cache line.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) const LINE: usize = 16;

/// Output maps of at most this many pixels (24x24) split by panels when there is one per
/// thread, even where row bands on lines would follow the layer before's split:
/// measured at two threads (AVX-512, Zen 5, alternated binaries, six rounds, slow
/// two-thread regime), MobileNet-96 320 -> 305 us (-4.5% in two runs), MobileNetV2
/// within 1% (2532 -> 2509, 2497 -> 2509 us); with 12x12 (144) no change, with 28x28 or
/// 48x48 MobileNet-96 the same, MobileNetV2 worse.
#[cfg(feature = "parallel")]
pub(super) const SMALL_MAP: usize = 576;

/// Rows whose pixels fill whole cache lines: band boundaries at multiples of it start a
/// line in every plane (when the planes do).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(in crate::kernels) fn line_rows(ow: usize) -> usize {
    let mut g = ow.max(1);
    let mut l = LINE;
    while l != 0 {
        (g, l) = (l, g % l);
    }
    LINE / g
}

/// How the depthwise convolution `d` runs over `threads` threads: one part (this thread
/// only) when the layer is small; else panels on small maps ([`SMALL_MAP`]); else row
/// bands on cache-line boundaries when the output
/// and its planes allow (`out_aligned`: the output starts a line, as a model's arena
/// tensors do) with two line units per thread and bands balanced within 5% (else
/// panels, when there is one per thread): each part reads the rows that the pixel
/// split of the pointwise layer before wrote on the same core, and writes those the next
/// one reads (MobileNetV2 at two threads: 2.8% faster than panels first); else whole
/// panels when there is one per thread; else rows on any row when there are two rows per
/// thread (a boundary inside a line has both threads write it once per plane: false
/// sharing, which made 12x12 maps slower on two threads than on one); else what panels
/// there are.
#[cfg(feature = "parallel")]
pub(super) fn dw_split(d: &Dims2d, threads: usize, out_aligned: bool) -> DwSplit {
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
    } else if d.oh * d.ow <= SMALL_MAP && panels >= threads {
        DwSplit::Channels(threads)
    } else if aligned_rows
        // Bands within 5% of each other (the units of `row_range`, as the convolution's
        // pixel ranges). MobileNetV2's 28x28 layers (units of 4 rows: 12 + 16) ran their
        // bands in 36 and 49 µs at two threads, and the projection after them took 57-75
        // µs on the core that had finished first (33 on the other); by panels the pair
        // took 32 + 57 µs instead of 50 + 72 (the 28x28 stage 496 -> 361 µs).
        && (crate::kernels::conv::balanced(step, d.oh, threads) || panels < threads)
    {
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
pub(super) fn row_range(oh: usize, step: usize, parts: usize, i: usize) -> (usize, usize) {
    let units = oh.div_ceil(step);
    let at = |k: usize| (k * units / parts * step).min(oh);
    (at(i), at(i + 1))
}

/// Channels of range `i` of `parts` over the whole 16-channel panels of `c` channels.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) fn channel_range(c: usize, parts: usize, i: usize) -> (usize, usize) {
    let panels = c.div_ceil(PANEL);
    let at = |k: usize| (k * panels / parts * PANEL).min(c);
    (at(i), at(i + 1))
}
