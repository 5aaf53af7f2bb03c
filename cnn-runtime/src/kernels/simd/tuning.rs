//! Per-level tuning: the tile shapes the kernels use on each instruction set.
//!
//! These are measured choices (what ran fastest, within the register budget), not facts
//! of the instruction set, so they live here rather than in [`Simd`](super::Simd): one
//! [`Tuning`] per level, reached from a kernel generic over `S: Simd` as `S::TUNING`
//! ([`Tuned`] is a supertrait of `Simd`).

use super::Portable;
#[cfg(target_arch = "x86_64")]
use super::{Avx2, Avx512};

/// How the kernels block their work on one level.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Most output channels of a pixel-vectorised conv tile (two vectors of pixels each):
    /// the register budget.
    pub(crate) pv_mr: usize,
    /// Pixels of a channel-vectorised conv tile (16 channels each; AVX-512 also has 12).
    pub(crate) cv_np: usize,
    /// Panels of 16 outputs a linear-layer tile covers.
    pub(crate) lin_panels: usize,
    /// Wide direct-conv pixel tiles: on rows with four full vectors left, tiles of four
    /// pixel vectors by up to 6 channels (4 loads and 6 broadcasts per 24 FMAs), while
    /// the input strip they share stays within L1; with three full vectors left, tiles
    /// of three by up to 8 channels. Needs the 32 registers of AVX-512.
    pub(crate) wide_pixel_tiles: bool,
    /// Single-panel channel tiles (conv, Winograd GEMM) of 12 pixels besides `cv_np`,
    /// taken when 12 pads the pixel count less.
    pub(crate) cv_tiles_of_12: bool,
    /// Channel tiles of two panels by 8 pixels (two weight loads and 8 broadcasts per 16
    /// FMAs), for groups of at least 32 channels when 8 pixels pad no more; on one-row
    /// layers (1x1 on small maps) by 10, 9 or 8 pixels, whichever pads least.
    pub(crate) cv_panel_pairs: bool,
    /// Output width from which a depthwise layer runs per channel on rows of pixel
    /// vectors; narrower maps take the channel-vectorised path (transposed bands, 3x3
    /// stride-1 ones with its sliding window). Measured with `depthwise::speed` (3x3,
    /// MobileNet shapes): on AVX-512, rows win from 32 columns (32x32 s1: 29 vs 39 µs,
    /// 48x48: 31 vs 44, 112x112: 205 vs 298) and lose below (28x28: 90 vs 87, 24x24:
    /// 51 vs 45); on AVX2 the same crossover (28x28: 136 vs 114, 32x32: 39 vs 45).
    pub(crate) dw_rows_min_width: usize,
    /// Width from which a 3x3 stride-1 "same" depthwise layer runs row by row with its
    /// column taps shifted in registers (`engine::depthwise_rows3`) rather than on the
    /// flat plane (`usize::MAX`: never). Measured with `depthwise::speed` on AVX-512
    /// (Zen 5, µs, shifted / flat): 112x112x32 53 / 85, 56x56x144 73 / 96, 28x28x192 29.5 /
    /// 32, 24x24x128 15.7 / 16.0, 14x14x384 18.1 / 17.6, 7x7x960 24 / 16; on AVX2, whose
    /// cross-lane shifts take two shuffles, slower at every width (112x112: 138 / 126).
    pub(crate) dw_shift_min_width: usize,
    /// Widest input a 3x3 stride-2 depthwise layer runs on the phase planes of a band
    /// copy (`engine::depthwise_phase2`, the output as one long row); wider ones run row
    /// by row, the column phases split in registers (`engine::depthwise_rows3`), where
    /// most vectors of a row take its branch-free interior step. Measured with
    /// `depthwise::speed` on AVX2 (Zen 3, µs, typical of 6-8 alternations, phase planes /
    /// rows): 256x12x12 equal (min 18.2 / 19.8), 128x24x24 35 / 55, 64x48x48 47 / 55,
    /// 192x28x28 65 / 72, 144x56x56 180 / 200, 64x64x64 79 / 85, 96x112x112 396 / 348.
    /// On AVX-512 (Intel Xeon, 2026-12-02, µs, phase planes / rows) the rows won from 24
    /// columns: 128x24x24 35.6 / 31.1, 64x48x48 49.6-61.1 / 46.5-55.5, 64x64x64 77.6 /
    /// 52.1, 192x28x28 42.5 / 27.8, 144x56x56 181-191 / 134-137, 96x112x112 526 / 425;
    /// at 14 columns the planes (576x14x14 33.4 / 53.1): 16 there.
    pub(crate) dw_phase_max_width: usize,
    /// Output columns below which a 3x3 stride-2 depthwise layer too wide for the
    /// two-rows-a-vector path (`engine::depthwise_narrow2`) runs channel-vectorised (a
    /// vector of channels, through transposes) instead of on the phase planes, whose
    /// per-channel copy and setup outweigh a handful of output vectors. Measured with
    /// `depthwise::speed` on AVX2 (Zen 3, µs, four alternations, transposes / phase
    /// planes): 256x12x12 -> 6x6 17-31 / 22-35 (faster in every round), 576x14x14 -> 7x7
    /// 80-90 / 86-95; from 12 output columns the phase planes win or tie (128x24x24 ->
    /// 12x12 27-47 / 27-47, 64x48x48 -> 24x24 81-84 / 51-54). AVX-512 takes those maps
    /// two rows a vector, and its transposes lost to the row-by-row path from half a
    /// vector of output columns (192x28x28 -> 14x14: 25 / 12.7 µs): 0 there.
    pub(crate) dw_phase_min_out: usize,
    /// Winograd GEMM tiles spanning four or two panels of output channels (by 6 or 4,
    /// and 12 tiles), not just one.
    pub(crate) winograd_multi_panel: bool,
    /// Bytes of input a block of pixel tiles reads (direct convolutions): the output
    /// channels' panels run one after another over each block.
    pub(crate) pv_block_bytes: usize,
    /// Bytes of input a block of channel tiles reads: the output channels' panels run
    /// one after another over each block.
    pub(crate) cv_block_bytes: usize,
    /// Reductions (`KH*KW*C/G`) up to which a conv takes pixel tiles even where they
    /// fill fewer lanes (down to the fill `cv_epilogue_steps` gives): a channel tile
    /// ends in transposes and masked stores, which on AVX2 (two 8x8 transposes, 16
    /// masked stores per tile) cost as much as some 28 steps of its reduction.
    /// Measured with `conv::speed` on AVX2 (Zen 3, µs, pixel / channel tiles): 1x1 on
    /// 14x14, 64 -> 384 150 / 214, 96 -> 576 299 / 385; 384 -> 64 and 160 -> 960 on 7x7
    /// (0.875 of the lanes) about equal, 576 -> 96 slower (393 / 356). On AVX-512 (Intel
    /// Xeon, median of 31 paired rounds, pixel / channel tiles, two runs) on 14x14 maps
    /// (0.94 of the lanes): 32 -> 192 0.84 / 0.84, 64 -> 384 0.95 / 0.95, 64 -> 128 0.94 /
    /// 0.95, 96 -> 576 0.99 / 1.02, 128 -> 256 1.03 / 1.05: 64 there.
    pub(crate) pv_short_k: usize,
    /// Steps of a channel tile's reduction its transposing epilogue costs about as much
    /// as (pixel tiles of a short reduction of `k` steps are taken from `k / (k + E)` of
    /// the channel tiles' lane fill). Measured with `conv::speed` (Intel Xeon, µs, pixel
    /// / channel tiles; AVX-512 with the two-row pixel tiles, then AVX2): on 28x28
    /// outputs (0.875 of the pixel lanes) 1 -> 16 3x3 2.4 / 4.5, 3.9 / 6.4; 1 -> 32 5x5
    /// 8.5 / 9.5, 15.5 / 19.2; 3 -> 32 3x3 9.9 / 10.4, 17.9 / 20.4; 4 -> 32 3x3 12.5 /
    /// 12.7, 23.3 / 24.3; 8 -> 16 3x3 12.3 / 13.8, 21.7 / 20.9; 16 -> 32 3x3 44.4 /
    /// 40.2 (AVX-512); on 20x20 (AVX-512: 0.625) 1 -> 16 3x3 1.8 / 2.5, 3 -> 32 3x3 6.8 /
    /// 5.4. AVX2's 28 steps: its two 8x8 transposes and 16 masked stores a tile.
    pub(crate) cv_epilogue_steps: usize,
    /// Reductions (`KH*KW*C/G`) up to which a convolution with taps whose groups have
    /// one panel of outputs at most (`O/G <= 16`) takes pixel tiles where they fill at
    /// least 0.85 of what the channel tiles fill (0: never): one-panel channel tiles
    /// have no panel pairs and read a broadcast per multiply-add. Measured with
    /// `conv::speed` on AVX-512 (Intel Xeon, one core, 2026-12-06, µs pixel / channel
    /// tiles; RegNetX's groups of 16 channels, 3x3): 32x56x56 -> 32 in 2 groups 205 /
    /// 229, stride 2 on 112x112 275-294 / 298-318, 64x28x28 -> 64 in 4 groups 114 / 122,
    /// 160x28x28 -> 160 in 10 groups, stride 2, 103 / 113, 160x14x14 the same 73-75 / 84-86,
    /// 16x28x28 -> 16 30.4 / 32.4, 32x14x14 -> 16 15.3 / 17.0; beyond 288 steps the channel
    /// tiles (64x28x28 -> 16: 121 / 116); below 0.85 of the fill too (48x24x24 -> 48 in 3
    /// groups 73 / 67, 64x40x40 -> 64 in 4 groups 241 / 237, 384x7x7 -> 384 in 24 groups
    /// 104 / 79). On AVX2 the channel tiles win or tie on all of these (32x14x14 -> 16
    /// 24.0 / 21.3, 160x14x14 in 10 groups 118 / 112): 0 there.
    pub(crate) pv_one_panel_k: usize,
    /// Direct 1x1 convolutions on small maps (one row of pixels: MobileNets' 14x14, 7x7,
    /// 6x6 layers) run by channel tiles pack each block's input tile by tile, into the
    /// room a model plans for it (`conv::conv_scratch_len`) or, without it, the band
    /// buffer where the block fits (16k floats), so that a tile's reads are one
    /// contiguous run beside its panel's weights in L1, not a cache line per input
    /// channel from L2. Measured with `conv::speed` on AVX2 (Zen 3, µs, unpacked /
    /// packed): 320 -> 1280 on 7x7 564-767 / 534-730, 160 -> 960 256-324 / 215-298,
    /// 256 -> 512 on 6x6 121-151 / 112-131 (three alternated runs); with the planned
    /// room 960 -> 320 563 / 473, 512 -> 512 on 6x6 295 / 256 (docs/PERFORMANCE.md).
    /// On AVX-512 (Intel Xeon, 48 KB L1d, 2 MB L2) slower or equal: 384 -> 96 on 14x14
    /// 114-129 / 136-146, 576 -> 96 167 / 201, 960 -> 160 on 7x7 114 / 126: off there;
    /// mixed on the portable level: off there.
    pub(crate) cv_pack: bool,
    /// Input channels (per group) from which a 1x1 convolution takes channel tiles
    /// where they fill as many lanes as the pixel tiles (`usize::MAX`: never): a wide
    /// pixel tile's input strip (four vectors of pixels by every input channel, 36 KB at
    /// 144 channels on AVX-512) no longer stays in L1 and is read again from L2 for
    /// every 6-8 output channels, where a channel tile covers 16-32 of them per read.
    /// Measured with `conv::speed` on AVX-512 (Intel Xeon, 48 KB L1d; median of 31
    /// paired rounds, time of channel tiles / pixel tiles, one number per run):
    /// 144x28x28 -> 32 0.89 / 0.89, 192x28x28 -> 32 0.85 / 0.81 / 0.83 / 0.91 / 0.91,
    /// 384x28x28 -> 64 0.87 / 0.89, 256x16x16 -> 256 0.86 / 0.94, 512x12x12 -> 512 0.78
    /// / 0.82, 256x12x12 -> 256 0.83 / 1.03 / 1.02 / 0.83 / 0.89 / 0.89; about even or
    /// slower on 256x12x12 -> 128 1.06 / 1.03 / 1.02 / 1.01 / 1.02 and 256x8x8 -> 256
    /// (the whole map one strip) 1.03 / 1.05; with 128 channels the pixel tiles win
    /// (128x24x24 -> 128 1.09, 128x12x12 -> 128 1.10 / 1.11, 64x12x12 -> 256 1.25). AVX2's
    /// pixel tiles are two 8-lane vectors wide (a quarter of that strip): not measured
    /// there, off. Only on maps of up to `engine::LONG_1X1_MAX_PIXELS` output pixels:
    /// on 28x28 and larger the pixel tiles won again (2026-12-04), on that core; on
    /// cores with less than 48 KiB of L1d (AMD Zen 4) on maps of any size
    /// (`engine::SMALL_L1D_BYTES`, 2026-12-05).
    pub(crate) cv_long_1x1: usize,
    /// Vectors a curved activation over a slice (`Simd::curved_slice`) works on at once,
    /// their dependency chains interleaved step by step (1, 2 or 4). Measured with
    /// `activation::speed` (6x28x28 floats, Intel Xeon, min of 8 alternations, µs, one
    /// vector / four, both with `Simd::div_approx`): on AVX-512 tanh 2.41 -> 1.87,
    /// sigmoid 2.95 -> 2.20, SiLU 3.12 -> 2.61; the AVX2 level on that core within its
    /// noise at one, two or four vectors (tanh 3.29 / 3.64 / 3.51). Two on AVX2 and the
    /// portable level: half the registers, and wider out-of-order cores (Zen) overlap
    /// less of a 20-step chain than they could issue (not measured there).
    pub(crate) act_vectors: usize,
    /// Channel tiles of up to four panels by 6 pixels whose long reductions run in
    /// chunks of input channels, the partial sums in a channel-blocked buffer between
    /// chunks (`engine::cv_chunks`; the rule: `engine::rules::chunk_channels`). Needs a
    /// panel a vector (AVX-512).
    pub(crate) cv_chunks: bool,
}

/// The [`Tuning`] of a level, implemented once per level token.
pub(crate) trait Tuned {
    /// The tile shapes of this level.
    const TUNING: Tuning;
}

impl Tuned for Portable {
    const TUNING: Tuning = Tuning {
        pv_mr: 6,
        cv_np: 2,
        lin_panels: 2,
        wide_pixel_tiles: false,
        cv_tiles_of_12: false,
        cv_panel_pairs: false,
        dw_rows_min_width: 8,
        dw_shift_min_width: usize::MAX,
        dw_phase_max_width: 32,
        dw_phase_min_out: 0,
        winograd_multi_panel: false,
        pv_block_bytes: 64 * 1024,
        cv_block_bytes: 128 * 1024,
        pv_short_k: 0,
        cv_epilogue_steps: 0,
        pv_one_panel_k: 0,
        cv_pack: false,
        cv_long_1x1: usize::MAX,
        act_vectors: 2,
        cv_chunks: false,
    };
}

#[cfg(target_arch = "x86_64")]
impl Tuned for Avx2 {
    const TUNING: Tuning = Tuning {
        pv_mr: 6,
        cv_np: 6,
        lin_panels: 4,
        wide_pixel_tiles: false,
        cv_tiles_of_12: false,
        cv_panel_pairs: false,
        dw_rows_min_width: 32,
        dw_shift_min_width: usize::MAX,
        dw_phase_max_width: 64,
        dw_phase_min_out: 8,
        winograd_multi_panel: false,
        pv_block_bytes: 64 * 1024,
        cv_block_bytes: 128 * 1024,
        pv_short_k: 128,
        cv_epilogue_steps: 28,
        pv_one_panel_k: 0,
        cv_pack: true,
        cv_long_1x1: usize::MAX,
        act_vectors: 2,
        cv_chunks: false,
    };
}

#[cfg(target_arch = "x86_64")]
impl Tuned for Avx512 {
    const TUNING: Tuning = Tuning {
        pv_mr: 8,
        cv_np: 16,
        lin_panels: 8,
        wide_pixel_tiles: true,
        cv_tiles_of_12: true,
        cv_panel_pairs: true,
        dw_rows_min_width: 32,
        dw_shift_min_width: 28,
        dw_phase_max_width: 16,
        dw_phase_min_out: 0,
        winograd_multi_panel: true,
        pv_block_bytes: 64 * 1024,
        cv_block_bytes: 128 * 1024,
        pv_short_k: 64,
        cv_epilogue_steps: 8,
        pv_one_panel_k: 288,
        cv_pack: false,
        cv_long_1x1: 144,
        act_vectors: 4,
        cv_chunks: true,
    };
}
