//! The direct convolution's choices per layer, made from its dimensions alone: the
//! micro-kernel ([`auto_plan`]), the block sizes, the band shape and the big-weight
//! bands, channel-tile packing, and the 1x1 reduction step.

#[allow(unused_imports)]
use super::*;
use crate::kernels::simd::Tuning;

/// Floats of input a block of tiles of `plan`'s kind reads: the panels of the range run
/// one after another over a block (`Tuning::pv_block_bytes`, `cv_block_bytes`).
#[inline(always)]
pub(super) fn block_floats<S: Simd>(plan: Plan) -> usize {
    #[cfg(test)]
    {
        let v = BLOCK_OVERRIDE[plan as usize].load(core::sync::atomic::Ordering::Relaxed);
        if v != 0 {
            return v / 4;
        }
    }
    match plan {
        Plan::Pixels => S::TUNING.pv_block_bytes / 4,
        Plan::Channels => S::TUNING.cv_block_bytes / 4,
    }
}

/// Weights (floats, 1 MB) of one pass over a block or band (every output channel of
/// the range, one channel chunk) from which they count as big: the block then holds
/// [`BIG_BLOCK_FLOATS`] of input instead of the level's cache budget, and a banded
/// layer copies taller bands ([`big_band_floats`]). Blocks and bands exist so that
/// their input stays in cache while every panel's weights stream past it, once per
/// block; weights beyond the L2 stream from memory each time, and a layer whose weights
/// outweigh its input (ResNet-50's 7x7 layers: 4-9 MB of weights on 200-400 KB of
/// input) is faster with its input read from L2 panel after panel and the weights
/// streamed once.
pub(super) const BIG_WEIGHT_FLOATS: usize = 256 * 1024;

/// Output rows and channel chunk of the bands of the (flat) convolution `d` in a band
/// buffer of `cap` floats: all rows and channels when it reads its input directly, else
/// as many rows of all channels as fit, else one row of as many channels as fit; `None`
/// when not one channel's row does. The chunks fix the order of each output's sums
/// (chunk after chunk): they depend on `cap` alone, never on a part of a split.
pub(crate) fn band_shape(d: &Dims2d, direct: bool, cap: usize) -> Option<(usize, usize)> {
    let cg = d.c / d.g;
    let rowpitch = if direct {
        d.w
    } else {
        d.sw * d.cols_in().div_ceil(d.sw)
    };
    if direct {
        Some((d.oh, cg))
    } else if let Some(r) = band_rows_in(d, cg * rowpitch, cap) {
        Some((r, cg))
    } else {
        let cc = cap / (d.rows_in(1) * rowpitch);
        (cc > 0).then_some((1, cc))
    }
}

/// Whether the weights one band of `chunk` channels streams past its tiles (every
/// output channel's) are big: [`BIG_WEIGHT_FLOATS`] or more.
pub(super) fn big_weights(d: &Dims2d, chunk: usize) -> bool {
    is_big(d.o / d.g, chunk, d.kh * d.kw)
}

/// Whether `outputs` channels' weights over `chunk` input channels and `taps` taps are
/// big ([`BIG_WEIGHT_FLOATS`]).
#[inline(always)]
pub(super) fn is_big(outputs: usize, chunk: usize, taps: usize) -> bool {
    outputs * chunk * taps >= BIG_WEIGHT_FLOATS
}

/// Floats of the band buffer a thread part of the (flat) convolution `d` uses beyond
/// the stack's [`SCRATCH`] when the model plans them (0: none): a layer that copies
/// bands and whose weights are big ([`big_weights`]) streams its weights once a band, so
/// it copies bands of as many rows as fit [`BIG_BLOCK_FLOATS`] (ResNet-50's stride-2
/// layers on 14x14 and 28x28 maps: bands of one output row in `SCRATCH`, all seven or
/// eleven rows here).
pub(super) fn big_band_floats(d: Dims2d) -> usize {
    let d = flat(d);
    if reads_directly(&d) {
        return 0;
    }
    // A layer run by chunked channel tiles (on AVX-512, wherever a model runs) copies
    // big bands too, with the band buffer's last quarter kept for partial sums.
    #[cfg(target_arch = "x86_64")]
    let chunked = {
        use crate::kernels::simd::{Avx512, Tuned};
        let t = &<Avx512 as Tuned>::TUNING;
        auto_plan(&d, PANEL, t, 0) == Plan::Channels && chunk_channels(&d, t, 0) > 0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let chunked = false;
    let cap = if chunked {
        SCRATCH - CK_ACC_FLOATS
    } else {
        SCRATCH
    };
    let Some((rows, chunk)) = band_shape(&d, false, cap) else {
        return 0;
    };
    if rows >= d.oh || !(chunked || big_weights(&d, chunk)) {
        return 0;
    }
    let row_floats = chunk * d.sw * d.cols_in().div_ceil(d.sw);
    match band_rows_in(&d, row_floats, BIG_BLOCK_FLOATS) {
        Some(r) if r > rows => d.rows_in(r) * row_floats,
        _ => 0,
    }
}

/// Input floats of a block of a layer with big weights ([`BIG_WEIGHT_FLOATS`]): within
/// the L2 of the machines measured (1-2 MiB).
pub(super) const BIG_BLOCK_FLOATS: usize = 128 * 1024;

/// Input channels times kernel rows up to which a pixel tile's input strip (that many
/// rows of four vectors) stays within about 24 KiB of L1: the wide pixel tiles' limit
/// (AVX-512), and the limit of pixel tiles on one long row.
pub(super) const STRIP_ROWS: usize = 96;

/// Output pixels up to which a long 1x1 reduction takes channel tiles on a lane-fill
/// tie (`Tuning::cv_long_1x1`); on larger maps the pixel tiles win: the channel tiles'
/// weights for a pair of panels (32 KB at 256 input channels) and each tile's input
/// lines (one per input channel) no longer share L1, while a wide pixel tile reads its
/// inputs as whole lines of one plane. Measured on AVX-512 (Intel Xeon, 48 KB L1d, one
/// core, `conv::speed`, µs pixel / channel tiles, 2026-12-04): 256x56x56 -> 64 788 /
/// 911, 256x56x56 -> 128 1505 / 1715, 512x28x28 -> 256 1381 / 1505, 512x28x28 -> 128
/// 691 / 770, 192x56x56 -> 64 578 / 675, 384x28x28 -> 64 271 / 297, 192x28x28 -> 32
/// 57 / 62; even on 20x20 (512 -> 128: 332 / 331); channel tiles faster on 14x14 and
/// below (1024x14x14 -> 256 809 / 644, 576x14x14 -> 96 160 / 129, 2048x7x7 -> 512 963 /
/// 674). In the models, alternated A/B with 28x28 and larger maps on pixel tiles: one
/// thread ResNet-50 1.018x, DenseNet-121 1.053x, MobileNetV2 1.005x; two threads
/// ResNet-50 1.046x, DenseNet-121 1.017x, MobileNetV2 1.011x.
///
/// On cores with less L1d ([`SMALL_L1D_BYTES`]) there is no such limit: on AMD Zen 4
/// (32 KiB L1d, 1 MiB L2, `conv::speed`, the two plans paired round by round, time of
/// channel tiles / pixel tiles, 2026-12-05) 256x56x56 -> 64 0.95, 256x56x56 -> 128
/// 0.95-0.96, 160x56x56 -> 64 0.96, 512x28x28 -> 128 0.92, 256x28x28 -> 256 0.97,
/// 384x28x28 -> 64 0.96, 192x28x28 -> 32 0.96 (steps of 32 or 128 channels for the pixel
/// tiles did not close the gap); whole models, alternated, one thread: ResNet-50 1.012x,
/// DenseNet-121 1.020x, MobileNetV2 1.027x, ResNet-18 1.003x.
pub(super) const LONG_1X1_MAX_PIXELS: usize = 600;

/// L1d size (bytes) below which [`LONG_1X1_MAX_PIXELS`] does not apply (long 1x1
/// reductions take channel tiles on a lane-fill tie on maps of any size): measured on
/// 32 KiB (AMD Zen 4) against 48 KiB (Intel Xeon); [`crate::cpu::l1d_bytes`] gives the
/// machine's (0, unknown, keeps the limit).
pub(crate) const SMALL_L1D_BYTES: usize = 48 * 1024;

/// The micro-kernel [`conv_panels`] picks for the (flat) convolution `d` on a level of
/// `lanes` lanes and `tuning`, on a core with `l1d` bytes of L1 data cache (0: unknown):
/// the one filling more lanes (strides are fine for both: the band's phase split makes
/// a pixel tile's reads contiguous).
pub(crate) fn auto_plan(d: &Dims2d, lanes: usize, tuning: &Tuning, l1d: usize) -> Plan {
    let (kk, cg, og) = (d.kh * d.kw, d.c / d.g, d.o / d.g);
    let pv = d.ow as f64 / d.ow.next_multiple_of(lanes) as f64;
    let cv = og as f64 / og.next_multiple_of(PANEL) as f64;
    // Short reductions: the channel tiles' transposing epilogue weighs, about as much
    // as `Tuning::cv_epilogue_steps` steps of their reduction, so pixel tiles of `k`
    // steps win while filling `k / (k + E)` of the channel tiles' lanes (see
    // `Tuning::pv_short_k`).
    let k = (kk * cg) as f64;
    let short =
        kk * cg <= tuning.pv_short_k && pv >= k / (k + tuning.cv_epilogue_steps as f64) * cv;
    // Long 1x1 reductions on small maps, or on any map where L1d is small: the pixel
    // tiles' input strip no longer stays in L1 (see `Tuning::cv_long_1x1`,
    // `LONG_1X1_MAX_PIXELS`, `SMALL_L1D_BYTES`).
    let any_map = l1d != 0 && l1d < SMALL_L1D_BYTES;
    let long = kk == 1
        && cg >= tuning.cv_long_1x1
        && (any_map || d.oh * d.ow <= LONG_1X1_MAX_PIXELS)
        && cv >= pv;
    // Convolutions with taps whose groups have one panel of outputs (RegNetX's groups
    // of 16): pixel tiles from 0.85 of the channel tiles' fill (`Tuning::pv_one_panel_k`).
    let one_panel = kk > 1 && og <= PANEL && kk * cg <= tuning.pv_one_panel_k && pv >= 0.85 * cv;
    // One long output row (1-D signals) with taps along it. With at most `STRIP_ROWS`
    // input channels (times kernel rows), pixel tiles within 5% of the channel tiles'
    // fill win (AVX-512, 64 -> 64 channels k3 on 1000 samples 163 -> 144 µs, the same
    // at stride 2 on 1000 341 -> 300, dilation 2 on 500 273 -> 257; on 250 samples k5
    // the channel tiles were 3% faster); with more, the channel tiles win at equal fill
    // (the input read directly, 2026-12-04: AVX-512 128 -> 128 k3 on 2000 1134 -> 1094,
    // 256 -> 256 k3 on 500 1249 -> 1060; AVX2 1865 -> 1800, 1967 -> 1764).
    // 1x1 layers on large maps (one flat row of more than `LONG_1X1_MAX_PIXELS`) whose
    // pixel count is not a whole number of vectors: pixel tiles within 5% of the channel
    // tiles' fill win there too (Intel Xeon, one core, `conv::speed`, µs channel / pixel
    // tiles, 2026-12-05: SqueezeNet's 128x55x55 -> 16 134 / 96, 256x27x27 -> 32 89 /
    // 83, 96x55x55 -> 64 279 / 263; 192x35x35 -> 64 223 / 211, 288x35x35 -> 48 313 / 247,
    // 256x35x35 -> 64 331 / 292, 512x27x27 -> 128 732 / 633, 160x45x45 -> 96 538 / 476;
    // on 17x17, 289 pixels, the channel tiles: 768 -> 192 582 / 610).
    let big_map = kk == 1 && d.oh == 1 && d.ow > LONG_1X1_MAX_PIXELS && !any_map && pv >= 0.95 * cv;
    let one_row = d.oh == 1 && kk > 1 && d.ow >= 384;
    let strip = cg * d.kh <= STRIP_ROWS;
    let long_row = one_row && strip && pv >= 0.95 * cv;
    let deep_row = one_row && !strip && cv >= pv;
    if (pv >= cv || short || one_panel || long_row || big_map) && !long && !deep_row {
        Plan::Pixels
    } else {
        Plan::Channels
    }
}

/// Input channels per step of a chunked channel pass (`cv_chunks`) on the (flat)
/// convolution `d` run by channel tiles on a level of `tuning`, on a core with `l1d`
/// bytes of L1 data cache (0: unknown); 0: the layer takes the other channel tiles.
///
/// Taken by strided 2-D convolutions with taps (ResNets' 3x3 stride-2 layers) of at
/// least 64 output channels, [`CK_MIN_K`] reduction steps and [`CK_MIN_PIXELS`] output
/// pixels; the step keeps a chunk's weights of four panels within about three quarters
/// of L1d (16 channels of 3x3 on 48 KiB). Measured with `conv::speed` on AVX-512 (Intel
/// Xeon, 48 KiB L1d, one core, µs, the other channel tiles / chunked, each with the
/// model's planned band; steps of 16 and 32 channels alike): 3x3 stride 2, 256x28x28 ->
/// 256 2063 / 1514, 128x56x56 -> 128 1721 / 1547-1560, 64x56x56 -> 128 836 / 755-785,
/// 128x28x28 -> 256 784 / 739-745; on 7x7 outputs slower (512x14x14 -> 512 1697 / 1779,
/// 256x14x14 -> 512 858 / 860-879); 3x3 stride 1 mostly slower (64x56x56 -> 64 1321 /
/// 1410, 128x28x28 -> 128 1233 / 1334-1378, 64x28x28 -> 64 327 / 344-363; faster on
/// 128x14x14 -> 128, 425 / 333).
///
/// And by 1x1 layers on maps of [`CK_1X1_PIXELS`] with at least 256 input and 64
/// output channels, in steps of 64 channels (ResNet-50's and DenseNet-121's 14x14
/// layers, the MobileNets' and EfficientNet's 14x14 projections, SqueezeNet's 13x13
/// ones): in ResNet-50 (`steps_ab.py`, five alternated rounds, one thread) its 14x14
/// 1x1 layers 1.05-1.14x, the model 1.03x; DenseNet-121 1.02x (two threads 1.05x),
/// MobileNet-96 1.01-1.02x. From 64 outputs since their blocks take whole maps
/// (`cv_chunks::CK_1X1_BLOCK_SCALE`; in blocks of the plain input budget SqueezeNet's
/// 384 -> 64 and 512 -> 64 on 13x13 had lost, 0.93x, 0.95x): `conv::speed`, two binaries
/// alternated three times, µs before / after (2026-12-05): 384x14x14 -> 64 58-62 /
/// 54-56, 576x14x14 -> 96 130-138 / 115-130, 384x13x13 -> 64 49-51 / 46-49, 512x13x13
/// -> 64 65-67 / 61-62, 480x14x14 -> 80 98-105 / 87-92, 672x14x14 -> 112 193-201 /
/// 159-173, 256x14x14 -> 64 39-43 / 37-39; in the models (`steps_ab.py`, four rounds)
/// those layers 1.04-1.16x at one thread and 1.05-1.12x at two, MobileNetV2 1.00x /
/// 1.01x, MobileNetV3-Large 1.02x / 1.01x, EfficientNet-B0 1.00x / 1.00x, SqueezeNet
/// 1.02x at one thread. On 7x7 maps they lose (`conv::speed`, 2048 -> 512 655 / 758,
/// 960 -> 160 88 / 100).
pub(crate) fn chunk_channels(d: &Dims2d, tuning: &Tuning, l1d: usize) -> usize {
    let kk = d.kh * d.kw;
    if !tuning.cv_chunks || d.g != 1 || ck_off() {
        return 0;
    }
    let pointwise =
        kk == 1 && d.oh == 1 && d.c >= 256 && d.o >= 4 * PANEL && CK_1X1_PIXELS.contains(&d.ow);
    if pointwise {
        return 64;
    }
    let strided = d.oh > 1
        && (2..=MAX_TAPS).contains(&kk)
        && (d.sh > 1 || d.sw > 1)
        && d.o >= 4 * PANEL
        && kk * d.c >= CK_MIN_K
        && d.oh * d.ow >= CK_MIN_PIXELS;
    if !strided {
        return 0;
    }
    let l1 = if l1d == 0 { 32 * 1024 } else { l1d };
    ((l1 * 3 / 4 / 4) / (4 * PANEL * kk)).max(4).min(d.c)
}

/// Output pixels of the 1x1 layers that take chunked channel tiles (12x12 to 24x24).
pub(super) const CK_1X1_PIXELS: core::ops::RangeInclusive<usize> = 144..=600;

/// Reduction steps (`KH*KW*C`) from which a strided layer takes chunked channel tiles.
pub(super) const CK_MIN_K: usize = 512;

/// Output pixels from which a strided layer takes chunked channel tiles (not 7x7).
pub(super) const CK_MIN_PIXELS: usize = 100;

/// Whether chunked channel tiles are switched off (`CNN_CHUNKED=0`, read once: an
/// A/B switch for measuring them in whole models).
fn ck_off() -> bool {
    #[cfg(feature = "std")]
    {
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OFF.get_or_init(|| std::env::var("CNN_CHUNKED").is_ok_and(|v| v == "0"))
    }
    #[cfg(not(feature = "std"))]
    {
        false
    }
}

/// Whether [`conv_panels`] reads the (flat) convolution `d`'s input directly, not
/// through a band copy: every tap inside the input and stride 1 along rows.
pub(crate) fn reads_directly(d: &Dims2d) -> bool {
    d.ph == 0
        && d.pw == 0
        && d.sw == 1
        && (d.oh - 1) * d.sh + (d.kh - 1) * d.dh < d.h
        && d.cols_in() <= d.w
}

/// Whether the channel tiles of the (flat) convolution `d` run by `plan` pack their
/// input on a level of `tuning` (`Tuning::cv_pack`): a direct 1x1 layer of one row.
pub(super) fn packs(d: &Dims2d, plan: Plan, tuning: &Tuning) -> bool {
    tuning.cv_pack && d.kh * d.kw == 1 && d.oh == 1 && plan == Plan::Channels && reads_directly(d)
}

/// Floats a thread part of the convolution `d` (as given, not flat) packs at most on a
/// level of `lanes` lanes and `tuning` (0: it does not pack there): a block of channel
/// tiles' input (`cv_rows`: about `cv_block_bytes`, at least one tile of at most 16
/// pixels), never more than the whole input.
pub(super) fn pack_floats_at(d: Dims2d, lanes: usize, tuning: &Tuning) -> usize {
    let d = flat(d);
    // Either L1d size's plan (the room must fit the machine the model runs on).
    let plans = [0, 32 * 1024].map(|l1d| auto_plan(&d, lanes, tuning, l1d));
    if !plans.iter().any(|&p| packs(&d, p, tuning)) {
        return 0;
    }
    let cg = d.c / d.g;
    (d.ow * cg).min((tuning.cv_block_bytes / 4).max(16 * cg))
}

/// Floats a thread part of the convolution `d` packs at most on any level the build
/// has (0: it never packs): what [`PackBuf`] needs per part so that every block packs.
pub(crate) fn pack_floats(d: Dims2d) -> usize {
    use crate::kernels::simd::{Portable, Tuned};
    #[allow(unused_mut)]
    let mut n = pack_floats_at(d, <Portable as Simd>::LANES, &<Portable as Tuned>::TUNING)
        .max(big_band_floats(d));
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::simd::{Avx2, Avx512};
        n = n.max(pack_floats_at(
            d,
            <Avx2 as Simd>::LANES,
            &<Avx2 as Tuned>::TUNING,
        ));
        n = n.max(pack_floats_at(
            d,
            <Avx512 as Simd>::LANES,
            &<Avx512 as Tuned>::TUNING,
        ));
    }
    n
}

/// Whether packing is switched off (tests comparing packed and unpacked tiles).
#[inline(always)]
pub(super) fn pack_off() -> bool {
    #[cfg(test)]
    {
        NO_PACK.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Whether the tiles' software prefetches for the tiles after them (`prefetch`) are
/// off: on cores other than Intel's, where the same prefetches measured slower (AMD Zen
/// 3, AVX2, 2026-12-02: the next panel's weights spread over the tiles 4-24% slower on
/// MobileNetV2's 7x7 layers, the next block's input 0-4%; AMD fills L1 whatever the
/// hint), and in tests that switch them off (`conv::speed_cold` times both).
#[inline(always)]
pub(super) fn prefetch_off() -> bool {
    #[cfg(test)]
    if NO_PREFETCH.load(core::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    !crate::cpu::is_intel()
}

/// Switches the tiles' prefetches for the tiles after them off when set (tests).
#[cfg(test)]
pub(crate) static NO_PREFETCH: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Switches packing off when set (tests).
#[cfg(test)]
pub(crate) static NO_PACK: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Input channels a 1x1 layer's pixel tiles sum at most before storing their partial
/// sums ([`pv_k_chunk`]).
pub(super) const PV_K_CHUNK: usize = 64;

/// The step, in input channels, of a 1x1 layer's reduction of `cn` channels over each
/// block of pixel tiles: `cn` in equal steps of at most [`PV_K_CHUNK`]. A wide pixel
/// tile reads four lines of every input channel (a strip of 64 KB at 256 channels,
/// beyond L1), again for every 6 output channels; in steps of 64 channels the strip (16
/// KB) stays in L1 for all of the block's output channels, and the partial sums go
/// through the output (the same chains in the same order, stored and reloaded exactly:
/// the same bits). Measured on AVX-512 (Intel Xeon, 48 KB L1d, one core,
/// `reference::paired_times`, 31 rounds, median time with steps / without): 256x56x56
/// -> 64 0.84-0.88, 256x56x56 -> 128 0.83-0.87, 512x28x28 -> 128 0.82-0.83, 512x28x28
/// -> 256 0.79-0.81, 192x56x56 -> 64 0.90-0.91, 160x56x56 -> 64 0.86, 1024x28x28 ->
/// 256 0.94, 144x28x28 -> 32 1.02 (noise); steps of 32 were slower than 64, 96 and 128
/// about as good or worse.
pub(super) fn pv_k_chunk(cn: usize) -> usize {
    #[cfg(test)]
    {
        let v = PV_K_CHUNK_OVERRIDE.load(core::sync::atomic::Ordering::Relaxed);
        if v != 0 {
            return v.min(cn.max(1));
        }
    }
    let steps = cn.div_ceil(PV_K_CHUNK).max(1);
    cn.div_ceil(steps).max(1)
}

/// Replaces [`PV_K_CHUNK`]'s steps when not 0 (tests: steps of one channel, or of all).
#[cfg(test)]
pub(crate) static PV_K_CHUNK_OVERRIDE: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

/// Bytes replacing the block sizes when not 0, indexed by [`Plan`] (the conv speed
/// test).
#[cfg(test)]
pub(crate) static BLOCK_OVERRIDE: [core::sync::atomic::AtomicUsize; 2] = [
    core::sync::atomic::AtomicUsize::new(0),
    core::sync::atomic::AtomicUsize::new(0),
];
