//! Winograd F(4x4, 3x3) and F(2x2, 3x3) convolution for 3x3, stride-1, ungrouped layers (dilated ones
//! through their polyphase components, `polyphase.rs`).
//!
//! A 4x4 block of outputs of one channel pair needs a 6x6 block of input. Winograd's
//! minimal filtering computes it as `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` with the
//! interpolation points `0, 1, -1, 1/2, -2, ∞` (more accurate in float32 than the
//! symmetric `0, ±1, ±2`: `params::G`): 36 multiplications instead of 144. Summed over
//! the input channels, each of the 36 positions `ξ` of the transformed domain is a
//! matrix product `M[ξ] = V[ξ] · U[ξ]` (`[tiles x C] · [C x O]`), so the multiply count
//! of the layer drops by 4x; the transforms are additions and a few constant products.
//!
//! * **Weights** are transformed at load time ([`WinogradParams::from_torch`], or
//!   [`WinogradParams::with_tile`] for either tile; in f64, batch norm folded in) and
//!   packed like the direct engine's: panels of 16 output channels,
//!   `[36][ceil(O/16)][C][16]` (F(2x2): 16 positions).
//! * **Input transform**, per input channel and tile row, vectorised over tiles: each
//!   padded input row is split into its four column phases with vector deinterleaves
//!   (tile `tx` reads columns `4tx..4tx+6`: phases 0..3 at `tx` and 0, 1 at `tx + 1`),
//!   straight from the input row in registers when the left padding is 0 or 1 (a padded
//!   copy of the row first stalled every load on store forwarding), then `Bᵀ d B` is a
//!   handful of vector adds and FMAs. `V` is `[36][C][tiles]`, its positions an odd
//!   number of cache lines apart (`pos_stride`; at a multiple of 4 KiB, the 36 rows a
//!   tile's transform writes shared one L1 set).
//! * **Batched GEMM**: a channel-vectorised register-blocked micro-kernel (`GemmTile`):
//!   `PN` panels of 16 output channels by `NT` tiles, per input channel `PN * 16 / LANES`
//!   weight loads and `NT` broadcasts. `M` is `[36][tiles][O rounded to 16]`.
//! * **Output transform** vectorised over output channels, with the bias and the
//!   activation applied to the registers, then scattered to the 4x4 output block (on
//!   AVX-512 through an in-register 16x16 transpose).
//!
//! Tiles are processed in blocks of tile rows sized so that `V` and `M` of a block stay
//! around L2; the buffers live in a per-thread scratch vector (allocated on the first
//! call on a thread, grown when needed, never per call).
//!
//! A dilation `(DH, DW)` above 1 splits the layer into `DH * DW` independent dilation-1
//! convolutions of the input's phase planes (every `DH`-th row, every `DW`-th column),
//! gathered side by side into one mosaic in the scratch, run as above and scattered
//! back (`polyphase.rs`).
//!
//! F(2x2, 3x3) runs through the same code with 4x4 input tiles, two column phases and 16
//! positions (`WgDims::m`, the transforms' `MT`): 2.25x fewer multiplications than
//! direct (F(4x4): 4x) but transformed weights 16/9 of the direct ones (F(4x4): 4x), so
//! [`winograd_tile`] takes it where F(4x4)'s weights would stream from memory (beyond
//! 8 MB: ResNet's 14x14 and 7x7 layers). F(6x6, 3x3) is not
//! implemented: F(4x4) keeps every output within the conformance tolerance at 512 input
//! channels.
//!
//! Maps narrower than a vector of tile rows (`flat_tiles`: under 80% of the lanes
//! filled, e.g. 4 tiles a row on a 16x16 map) store their rows' phase vectors straight
//! into a flat buffer `X`, the tiles of several channels back to back, so that the input
//! transform runs on full vectors.

use super::activation::Act;
#[cfg(feature = "alloc")]
use super::engine::pack_bias;
use super::engine::{interleave_into, strided_load, Row16, PANEL};
#[cfg(feature = "alloc")]
use super::norm::fold_bn;
use super::norm::Affine;
use super::simd::{self, Simd, WithSimd};
use crate::buf::Buf;
use crate::cpu::{self, Level};
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};

/// Output tile side of F(4x4, 3x3) (the rules and the default weights).
const M: usize = 4;
/// Input tile side of F(4x4, 3x3) (`M + 2`), the largest: the size of the register
/// arrays of the transforms (F(2x2, 3x3) uses the first 4 entries).
const ALPHA: usize = 6;
/// Positions of F(4x4, 3x3)'s transformed domain.
const XI: usize = ALPHA * ALPHA;
/// Target floats of `V` plus `M` per block of tile rows (about 1 MiB).
const BLOCK_FLOATS: usize = 256 * 1024;

mod api;
mod gemm;
mod params;
mod polyphase;
#[cfg(test)]
mod speed;
#[cfg(test)]
mod tests;
mod transform;

pub use self::api::*;
use self::gemm::*;
pub use self::params::WinogradParams;
use self::polyphase::*;
use self::transform::*;

/// Per-core L2 of the machine the Winograd rules were measured on (bytes).
const L2: usize = 2 << 20;

/// Whether Winograd F(4x4, 3x3) is expected to beat the direct engine on one core for a
/// 3x3, stride-1, dilation-1, ungrouped convolution of `c` input channels on an `h` x
/// `w` map with `o` output channels (padding 1 or 0 makes no difference here).
///
/// A pure function of the numbers, so that the compiler can call it at macro-expansion
/// time. Tuned from the measurements in this module's `speed` test (AVX-512 and AVX2 on
/// one core; AVX2 gains more, so the AVX-512 crossovers decide). Winograd saves
/// multiplications in proportion to `tiles * c * o` and spends its transforms in
/// proportion to `tiles * (c + o)`, so it needs `c * o / (c + o)` large enough (10) on a
/// map of at least 16 tiles (16 -> 32 channels on 32x32: 1.61x; 32 -> 32 on 16x16:
/// 1.52x) or so many channel pairs that even a few tiles pay (`c * o >= 2048`: 64 -> 64
/// on 8x8 1.84x, where 32 -> 32 on 8x8 is 0.82x); and its 4x larger transformed weights
/// must not turn a layer with few tiles into a weight-streaming one (beyond 4x L2;
/// 128 -> 128 on 8x8, 2.4 MB, is 1.77x even in cifar_vgg's chained forward).
/// Dilated layers: see [`winograd_pays_dilated`].
pub const fn winograd_pays(c: usize, h: usize, w: usize, o: usize) -> bool {
    let tiles = h.div_ceil(M) * w.div_ceil(M);
    let (direct_bytes, winograd_bytes) = (9 * 4 * c * o, XI * 4 * c * o);
    // Enough channels on both sides to amortise the transforms.
    let enough_channels = (c * o >= 10 * (c + o) && tiles >= 16) || c * o >= 2048;
    // Few tiles per weight and the 4x larger transformed weights far beyond L2 while the
    // direct engine's stay: streaming them costs more than the multiplications saved.
    let weight_bound = tiles < 16 && direct_bytes <= L2 && winograd_bytes > 4 * L2;
    enough_channels && !weight_bound
}

/// [`winograd_pays`] for a 3x3 stride-1 ungrouped layer with dilation `(dh, dw)`: with
/// dilation 1 the same; above 1, the layer runs as one dilation-1 convolution of its
/// phase mosaic (about the map's size) plus a gather of the input and a scatter of the
/// output, costs in proportion to `(c + o) * h * w` that only many channel pairs
/// amortise: the rule on the phase planes' size (`ceil(h / dh)` x `ceil(w / dw)`) and
/// `c * o >= 1024`. Measured with this module's `speed` test (Intel Xeon, one core,
/// 2026-12-06, direct / polyphase Winograd, the gather and scatter in vectors: the even
/// lanes of two loads, the two column phases interleaved), AVX-512: 64 -> 64 on 32x32,
/// dilation 2, 1.55-1.63x (1.37-1.49x with the scalar gather and scatter before), 256 ->
/// 256 on 28x28 1.24x, 32 -> 32 on 64x64 1.17-1.27x (dilation 4 1.17-1.25x), on 32x32
/// 1.05x, 16 -> 32 on 64x64 1.03-1.10x (0.88x before), 16 -> 16 0.77x; AVX2 gains more
/// (16 -> 32 1.19x). Inside models (chains of three dilated layers, `#[winograd =
/// false]` against the rule, one thread / two): 32 -> 32 on 64x64 at dilation 2, 2, 4
/// 1.15-1.21x / 1.02-1.04x, at 4, 4, 8 1.05-1.11x / 1.00-1.04x, 48 -> 48 on 48x48
/// 1.34-1.42x / 1.12-1.17x, 64 -> 64 on 64x64 1.70-1.77x / 1.46-1.60x; but fcn_seg's 16
/// -> 32 layer on 64x64 took 268 µs as Winograd against 248-256 direct (its mosaic and
/// output, 850 KB, cold inside the model where the speed test reuses them): 1024.
pub const fn winograd_pays_dilated(
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    dh: usize,
    dw: usize,
) -> bool {
    if dh <= 1 && dw <= 1 {
        winograd_pays(c, h, w, o)
    } else {
        winograd_pays(c, h.div_ceil(dh), w.div_ceil(dw), o) && c * o >= 1024
    }
}

/// The output tile side Winograd should use for a 3x3 stride-1 ungrouped layer of `c`
/// input and `o` output channels on an `h` x `w` map with dilation `(dh, dw)`: `Some(4)`
/// for F(4x4, 3x3), `Some(2)` for F(2x2, 3x3), `None` for the direct engine.
///
/// A pure function of the numbers (the compiler calls it at macro-expansion time),
/// measured on one core with this module's `speed` test (Zen 5, AVX-512; µs direct /
/// F(4x4) / F(2x2)). F(2x2) multiplies 1.8x more than F(4x4) but its transformed weights
/// are 16/36 of F(4x4)'s (16/9 of the direct ones), and it has 4x the tiles to use each
/// weight on: it wins once F(4x4)'s weights exceed 4x L2 and stream from memory in a
/// model (512 -> 512 on 7x7: 1024 / 930 / 634; 256 -> 256 on 14x14 is 1056 / 363 / 495
/// alone, but its 9.4 MB of F(4x4) weights come from memory in ResNet-18). On maps of
/// 5x5 to 8x8 (F(4x4): at most 2x2 tiles, each weight used on at most 4 tiles) F(2x2)
/// is taken from 1 MB of F(4x4) weights (half of `L2`): there the weights of a model
/// do not stay in L2 from one forward pass to the next, and each layer streams them in
/// again. How fast depends on the machine. On Zen 5, whose L3 is fast, F(4x4) won
/// (64 -> 128 on 8x8: 36.9 / 18.4 / 24.9 alone, in cifar_vgg's chained forward 20.8 /
/// 25.0; 128 -> 128 on 8x8: 73 / 36 / 46, chained 41.9 / 46.9: F(2x2) 1.12-1.20x
/// slower); on the Intel Xeon with AVX-512 (2 MB L2, about 23 GB/s from beyond it on one
/// core) the same two layers in cifar_vgg's forward took 49.9 / 37.3 and 97.9 / 68.3 µs
/// (F(4x4) / F(2x2), one thread, six alternated rounds: F(2x2) 1.34-1.43x faster; whole
/// model 1.16x; two threads 1.07 / 1.04, model 1.04x). F(2x2) is the smaller worst case
/// of the two. On 4x4 maps and below
/// F(2x2) is taken when even the direct weights exceed 4x L2 (512 -> 512: 404 / 836 /
/// 183; 256 -> 256, 76 / 93 / 53 alone, stays direct: its F(2x2) weights are 4.2 MB).
/// Elsewhere [`winograd_pays_dilated`] decides between F(4x4) and direct. Dilated layers: the same on their phase planes
/// (`ceil(h / dh)` x `ceil(w / dw)`), F(2x2) only with `c * o >= 2048`.
pub const fn winograd_tile(
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    dh: usize,
    dw: usize,
) -> Option<usize> {
    let (dh, dw) = (if dh > 1 { dh } else { 1 }, if dw > 1 { dw } else { 1 });
    let (ph, pw) = (h.div_ceil(dh), w.div_ceil(dw));
    let (direct_bytes, f4_bytes) = (9 * 4 * c * o, XI * 4 * c * o);
    let f2 = if ph <= 4 || pw <= 4 {
        direct_bytes > 4 * L2
    } else if ph <= 2 * M && pw <= 2 * M {
        f4_bytes > L2 / 2
    } else {
        f4_bytes > 4 * L2
    };
    let dilated = dh > 1 || dw > 1;
    if f2 && (!dilated || c * o >= 2048) {
        Some(2)
    } else if (ph > 4 || pw > 4) && winograd_pays_dilated(c, h, w, o, dh, dw) {
        Some(4)
    } else {
        None
    }
}

/// Dimensions of a Winograd convolution as runtime values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WgDims {
    /// Input channels.
    pub(crate) c: usize,
    /// Input height.
    pub(crate) h: usize,
    /// Input width.
    pub(crate) w: usize,
    /// Output channels.
    pub(crate) o: usize,
    /// Output height.
    pub(crate) oh: usize,
    /// Output width.
    pub(crate) ow: usize,
    /// Top padding (the bottom padding is implied by `oh`).
    pub(crate) ph: usize,
    /// Left padding (the right padding is implied by `ow`).
    pub(crate) pw: usize,
    /// Vertical dilation (1: the plain Winograd; more: the polyphase split).
    pub(crate) dh: usize,
    /// Horizontal dilation.
    pub(crate) dw: usize,
    /// Output tile side: 4 (F(4x4, 3x3)) or 2 (F(2x2, 3x3)).
    pub(crate) m: usize,
    /// Whether the activated output goes through a 2x2 max pool of stride 2 (PyTorch's
    /// floor mode) on its way out: the output is then `o x oh / 2 x ow / 2`, and the
    /// convolution's own output is never stored (dilation 1 only).
    pub(crate) pool: bool,
}

impl WgDims {
    /// Floats of the output: the pooled one's with [`pool`](Self::pool).
    pub(crate) const fn out_len(&self) -> usize {
        if self.pool {
            self.o * (self.oh / 2) * (self.ow / 2)
        } else {
            self.o * self.oh * self.ow
        }
    }

    /// Input tile side (`m + 2`).
    const fn alpha(&self) -> usize {
        self.m + 2
    }

    /// Positions of the transformed domain (`alpha²`: 36 or 16).
    const fn xi(&self) -> usize {
        self.alpha() * self.alpha()
    }
}

/// Target floats of a group of channels' tiles in the flat tile buffer `X` (per row).
const X_FLOATS: usize = 128;

/// Whether the input transform gathers a block's tiles into the flat buffer `X` (each of
/// its 36 rows: the input values at one position of the 6x6 tile windows, for the tiles
/// of `xg` channels back to back) and transforms `LANES` of them per vector, instead of
/// the tiles of one tile row per vector (`tw` tiles in `ceil(tw / LANES)` vectors): when
/// the tile rows would fill less than 80% of the lanes (a 16x16 map's tile rows of 4
/// tiles filled 4 of AVX-512's 16 lanes).
const fn flat_tiles(tw: usize, lanes: usize) -> bool {
    5 * tw < 4 * tw.div_ceil(lanes) * lanes
}

/// Floats from one position's rows of `V` (or `M`) to the next's when a position holds
/// `n` floats: `n` in whole cache lines, an odd number of them. A tile's transforms touch
/// one row per position, 36 rows a position stride apart; at a multiple of 4 KiB (a
/// 32x32 map's 64 tiles of 32 channels) they all fell in one set of the L1 (12 ways for
/// 36 lines: the input transform of 32x32x32 -> 32 took 38 of the layer's 71 µs); at an
/// odd number of lines they fall in 36 different sets.
const fn pos_stride(n: usize) -> usize {
    (n.div_ceil(16) | 1) * 16
}

/// Panels of output channels each part must get for two parts over an odd number of
/// tile rows to share the middle row by halves of its panels (else 3 + 4 rows of 7,
/// say). Four: the matrix products' four-panel tiles. Each half is a sub-block of one
/// tile row, a whole pass over its panels' transformed weights for one row of tiles.
/// Measured at two threads (Intel Xeon VM, AVX-512, alternated binaries, four-five
/// rounds): SqueezeNet's 32x27x27 -> 128 layers (8 panels, 7 tile rows at F(4x4)) 1.09-1.11x
/// (their parts 90 and 137 µs before); DenseNet-121's 128x28x28 -> 32 layers (2 panels)
/// 0.90-0.94x halved (parts 122 and 168 µs, 159 and 196 halved): one-panel products and
/// a weight pass per row cost more than the balance gained.
const HALF_PANELS: usize = 4;

/// Most parts a block splits into over threads (tile rows; [`crate::pool::MAX_THREADS`]).
const MAX_PARTS: usize = crate::pool::MAX_THREADS;

/// How a convolution is cut into blocks and where its buffers start in the scratch.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Tile rows and columns.
    th: usize,
    tw: usize,
    /// Floats per phase of a split input row (at least `tw + 1`, a multiple of 16).
    twp: usize,
    /// Tile rows per block.
    nty: usize,
    /// Output channels rounded up to 16.
    opad: usize,
    /// Floats per row of the flat tile buffer `X` (0: not reserved, see
    /// [`flat_tiles`]) and input channels per group of it.
    xrow: usize,
    xg: usize,
    /// Offsets in the (64-byte aligned) scratch of the phase rows, the padded line, the
    /// flat tile buffer `X`, `V` and `M`, and the total length.
    phase: usize,
    line: usize,
    x: usize,
    v: usize,
    m: usize,
    len: usize,
}

impl Layout {
    fn new(d: &WgDims) -> Layout {
        let (m, xi) = (d.m, d.xi());
        let (th, tw) = (d.oh.div_ceil(m), d.ow.div_ceil(m));
        let twp = (tw + 1).next_multiple_of(16);
        let opad = d.o.next_multiple_of(PANEL);
        let per_row = xi * (d.c + opad) * tw;
        let nty = (BLOCK_FLOATS / per_row).clamp(1, th);
        // A layer a little over the budget (a third at most) in one block, of an even
        // number of rows (two parts of whole rows, each one sub-block): every block is a
        // pass over the transformed weights, and a last block of a row or two costs one
        // as a whole. DenseNet-121's 128x28x28 -> 32 layers (7 tile rows of 40k floats,
        // 6 a block before; Intel Xeon, alternated binaries, µs): 255-281 -> 225-263 at
        // one thread (1.01-1.19x), 160-169 -> 134-142 at two (1.17-1.23x, the parts 3
        // and 4 rows in one sub-block each, where 4 had taken two).
        let even = th.next_multiple_of(2);
        let nty = if nty < th && even * per_row <= BLOCK_FLOATS * 4 / 3 {
            even
        } else {
            nty
        };
        let tb = nty * tw;
        // Slack of 16 floats after each buffer: vector loads of a last partial chunk
        // may read (never use) up to one vector past the data. `V` and `M` have it after
        // each of up to `MAX_PARTS` sub-blocks (the parts of a block split by tile rows
        // over threads), so that no part's loads reach another part's data.
        // The flat tile buffer: 36 rows of `xg` channels' tiles of a block (about
        // `X_FLOATS`), each row with a vector of slack; reserved when some level's
        // input transform takes the flat path.
        let xg = (X_FLOATS / tb).clamp(1, d.c);
        let xrow = if [4, 8, 16].iter().any(|&l| flat_tiles(tw, l)) {
            (xg * tb + 16).next_multiple_of(16)
        } else {
            0
        };
        let phase = 0;
        let line = phase + (m * nty + 2) * m * twp + 16;
        let x = line + 2 * (m * twp + 16);
        let v = x + xi * xrow;
        // `pos_stride` adds fewer than 32 floats per position to each part's rows, and a
        // block splits into at most `nty` parts (one tile row or more each).
        let parts = nty.min(MAX_PARTS);
        let mo = v + xi * (d.c * tb + 32 * parts) + 16 * MAX_PARTS;
        let len = mo + xi * (tb * opad + 32 * parts) + 16 * MAX_PARTS;
        Layout {
            th,
            tw,
            twp,
            nty,
            opad,
            xrow,
            xg,
            phase,
            line,
            x,
            v,
            m: mo,
            len,
        }
    }
}

/// The whole convolution at one level, as a kernel for [`simd::run`].
struct WgRun<'a> {
    d: WgDims,
    lay: Layout,
    input: &'a [f32],
    params: &'a WinogradParams,
    output: &'a mut [f32],
    scratch: &'a mut [f32],
    act: Act,
    /// A residual added before the activation, laid out as the output, or null.
    res: *const f32,
    /// Only these tile rows, on this thread (a [`crate::team`] member's); `None`: all.
    rows: Option<(usize, usize)>,
}

/// The pointers the parts of a split block share.
#[derive(Clone, Copy)]
struct Shared<T>(T);
// SAFETY: the parts of a block write disjoint parts of `V`, `M` and the output (their
// channels, positions, tiles), read what the previous phase finished, and `pool::run`
// returns only when all of them are done; the SIMD token is a proof of CPU features,
// valid on every thread of the process.
unsafe impl<T> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// The value (a method, so that closures capture the whole `Sync` wrapper).
    fn get(&self) -> T {
        self.0
    }
}

impl WithSimd for WgRun<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let WgRun {
            d,
            lay,
            input,
            params,
            output,
            scratch,
            act,
            res,
            rows,
        } = self;
        let (tw, opad) = (lay.tw, lay.opad);
        let panels = opad / PANEL;
        assert!(scratch.len() >= lay.len);
        assert!(input.len() >= d.c * d.h * d.w && output.len() >= d.out_len());
        let base = scratch.as_mut_ptr();
        let u = params.weight.as_ptr().cast::<f32>();
        let bias = params.bias.as_ptr().cast::<f32>();
        let out = output.as_mut_ptr();
        let lay = &lay;
        // Floats of the phase rows and line (with their slack) an input part needs.
        let part_floats = lay.v - lay.phase;
        // A split by tile rows has every part read all of the transformed weights; the
        // phase split divides the positions (so the weights) between the threads, and
        // moves `V` and `M` between cores instead. So rows only when the weights fit the
        // L2 and (F(4x4)) are no larger than a block's `V` and `M`. F(2x2), taken for
        // layers heavy in weights, beyond the L2: 512x7x7 -> 512 rows 420 against 385 µs
        // on two threads; below, rows (two threads, Zen 5: 64x8x8 -> 128 30 -> 20.6 µs,
        // 128x8x8 -> 128 45 -> 36.5, 96x8x8 -> 96 33 -> 26). F(4x4) on the Zen 3 VM
        // (AVX2, two threads, best of 20 alternations in one process, three runs, µs
        // rows / phases): 32x16x16 -> 64 40-66 / 34-55, 64x16x16 -> 64 72-84 / 57-100
        // (two runs of three faster), 128x28x28 -> 128 719-1061 / 667-785; 64x56x56
        // -> 64 (a block's `V` and `M` larger than its weights) keeps rows.
        let block_vm = d.xi() * (d.c + opad) * tw * lay.nty;
        let weights = d.xi() * d.c * opad;
        let rows_ok = weights * 4 <= L2 && (d.m == 2 || weights <= block_vm);
        // With two tile rows or more per thread, the whole layer splits once by tile
        // rows: each part runs its own rows, in sub-blocks of `nty / parts` rows (its
        // share of `V` and `M`), the three phases on each, one join for the layer and
        // nothing crossing between cores but the input rows' halo. (Splitting each
        // block instead left parts uneven, 3 and 4 of a 32x32 map's first block of 7
        // rows, and a last block of one row to the phase split: 64x32x32 -> 64 at 1.28x
        // on two threads.)
        // A band of tile rows (`rows`) runs on this thread alone.
        let threads = if rows.is_some() {
            1
        } else if d.xi() * lay.th * tw * d.c * opad >= 2 * PAR_MACS {
            crate::pool::num_threads()
        } else {
            1
        };
        let parts = threads.min(lay.th / 2).min(MAX_PARTS);
        let cap = lay.nty / parts.max(1);
        if parts > 1 && cap >= 1 && rows_ok && part_floats <= PART_FLOATS {
            let panels = opad / PANEL;
            // Two parts over an odd number of tile rows share the middle one by halves
            // of its output panels (each transforms that row's input), when each half
            // has [`HALF_PANELS`].
            let halves = parts == 2 && lay.th % 2 == 1 && panels >= 2 * HALF_PANELS;
            let sh = Shared((s, base, u, out, bias, res));
            crate::pool::run(parts, &|i| {
                let (s, base, u, out, bias, res) = sh.get();
                let (a, b) = (i * lay.th / parts, (i + 1) * lay.th / parts);
                // With `halves`: part 0 rows `0..h` and the first panels of row `h`,
                // part 1 the other panels of row `h` and rows `h + 1..th` (`a == h`).
                let a = if halves && i == 1 { a + 1 } else { a };
                let mut own = core::mem::MaybeUninit::<PartBuf>::uninit();
                // SAFETY: part `i` owns tile rows `a..b` of the layer (and, with
                // `halves`, its half of the panels of row `h`): its `V` and `M` start
                // after the earlier parts' `cap` rows each (and 16 floats of slack each;
                // `parts * cap <= nty` rows and `MAX_PARTS` slacks reserved by
                // `Layout`), its phase rows are the scratch's (part 0) or its own stack
                // buffer (`part_floats <= PART_FLOATS`), and its output tiles are its own
                // rows of the output (of its channels in row `h`: whole planes' rows).
                unsafe {
                    let (phase, line) =
                        part_rows(lay, i, (base.add(lay.phase), base.add(lay.line)), &mut own);
                    let v = base.add(lay.v + i * (d.xi() * (d.c * tw * cap + 32) + 16));
                    let m = base.add(lay.m + i * (d.xi() * (opad * tw * cap + 32) + 16));
                    let bufs = (phase, line, v, m);
                    let args = (input, u, bias, out);
                    let h = lay.th / 2;
                    if halves && i == 1 {
                        let half = (panels / 2, panels);
                        sub_block(s, d, lay, args, bufs, (h, 1), half, (act, res));
                    }
                    for r in (a..b).step_by(cap) {
                        let all = (0, panels);
                        sub_block(s, d, lay, args, bufs, (r, cap.min(b - r)), all, (act, res));
                    }
                    if halves && i == 0 {
                        let half = (0, panels / 2);
                        sub_block(s, d, lay, args, bufs, (h, 1), half, (act, res));
                    }
                }
            });
            return;
        }
        let (first, end) = rows.map_or((0, lay.th), |(a, b)| (a.min(lay.th), b.min(lay.th)));
        // A band runs beside the other member's: in blocks of half the rows, as the
        // two parts of the tile-row split run theirs (the two blocks together the budget
        // of one). fcn_seg's 32x64x64 layer as a team, whole model at two threads
        // (alternated binaries): 313-316 µs with whole blocks, 307-309 with halves.
        let nty = if rows.is_some() {
            (lay.nty / 2).max(1)
        } else {
            lay.nty
        };
        for ty0 in (first..end).step_by(nty) {
            let nb = nty.min(end - ty0);
            let tb = nb * tw;
            // With the `parallel` feature and enough work, each phase is split over the
            // pool's threads (input channels, positions, tiles), every value computed
            // exactly as on one thread.
            let threads = if rows.is_none() && d.xi() * tb * d.c * opad >= PAR_MACS {
                crate::pool::num_threads()
            } else {
                1
            };
            // SAFETY: (block) the scratch holds `lay.len` floats, laid out by `Layout`
            // for blocks of `lay.nty >= nb` tile rows: phase rows `(4 nb + 2) * 4 twp`,
            // the line `4 twp`, `V` `36 C tb`, `M` `36 tb opad`, each followed by 16
            // floats of slack.
            let (phase, line, v, m) = unsafe {
                (
                    base.add(lay.phase),
                    base.add(lay.line),
                    base.add(lay.v),
                    base.add(lay.m),
                )
            };
            let sh = Shared((s, phase, line, v, m, out, bias, res));
            // Split by tile rows when every thread gets two and the other parts' phase
            // rows fit their stack buffers: each part runs the three phases on its own
            // sub-block (its own `V` and `M`, back to back with slack between), one join
            // per block, nothing crossing between cores but the input rows' halo (cifar
            // conv3, 16x16 maps: 39 -> 20 µs on two threads). With one tile row per
            // thread the weights (4x the direct ones, read whole by every part) dominate:
            // the phases split instead, positions (and so weights) divided between them.
            let rows = if !rows_ok {
                1
            } else {
                threads.min(nb / 2).min(MAX_PARTS)
            };
            if rows > 1 && part_floats <= PART_FLOATS {
                let weights = Shared(u);
                crate::pool::run(rows, &|i| {
                    let (s, phase, line, v, m, out, bias, res) = sh.get();
                    let u = weights.get();
                    let (r0, r1) = (i * nb / rows, (i + 1) * nb / rows);
                    let mut own = core::mem::MaybeUninit::<PartBuf>::uninit();
                    // SAFETY: part `i` owns tile rows `r0..r1` of the block: its `V` and
                    // `M` start after the earlier parts' (and 16 floats of slack each,
                    // reserved by `Layout`), its phase rows are the scratch's (part 0)
                    // or its own stack buffer (`part_floats <= PART_FLOATS`), and its
                    // output tiles are its own rows of the output.
                    unsafe {
                        let (phase, line) = part_rows(lay, i, (phase, line), &mut own);
                        let v = v.add(d.xi() * (d.c * tw * r0 + 32 * i) + 16 * i);
                        let m = m.add(d.xi() * (opad * tw * r0 + 32 * i) + 16 * i);
                        sub_block(
                            s,
                            d,
                            lay,
                            (input, u, bias, out),
                            (phase, line, v, m),
                            (ty0 + r0, r1 - r0),
                            (0, opad / PANEL),
                            (act, res),
                        );
                    }
                });
                continue;
            }
            // Else each phase is split over the threads (input channels, positions, tiles).
            // Input transform: the first part in the scratch's phase rows, the others
            // in their own stack buffer (when it is large enough; else one part).
            let parts = if part_floats <= PART_FLOATS {
                threads.min(d.c)
            } else {
                1
            };
            crate::pool::run(parts, &|i| {
                let (s, phase, line, v, ..) = sh.get();
                let (c0, c1) = (i * d.c / parts, (i + 1) * d.c / parts);
                let mut own = core::mem::MaybeUninit::<PartBuf>::uninit();
                // SAFETY: `part_floats <= PART_FLOATS` (this split's condition).
                let (phase, line) = unsafe { part_rows(lay, i, (phase, line), &mut own) };
                s.vectorize(WgInput {
                    d,
                    lay,
                    input,
                    phase,
                    line,
                    v,
                    ty0,
                    nb,
                    c0,
                    c1,
                });
            });
            // The 36 matrix products, split by position (disjoint parts of `M`).
            let kc = chunk_channels(d.xi(), d.c, panels);
            let gemm = GemmAll { s, v, u, m, kc };
            let nxi = d.xi();
            let parts = threads.min(nxi);
            crate::pool::run(parts, &|i| {
                for xi in i * nxi / parts..(i + 1) * nxi / parts {
                    // SAFETY: position `xi`'s slices of `V`, `U` and `M`: `V` and `U` only
                    // read, each position of `M` written by the one part that owns it.
                    unsafe { gemm.position(xi, d.c, tb, (panels, (0, panels))) };
                }
            });
            // Output transform, bias, activation, scatter, split by tiles.
            let parts = threads.min(tb);
            crate::pool::run(parts, &|i| {
                let (s, .., m, out, bias, res) = sh.get();
                s.vectorize(WgOutput {
                    d,
                    lay,
                    m,
                    bias,
                    out,
                    ty0,
                    nb,
                    t0: i * tb / parts,
                    t1: (i + 1) * tb / parts,
                    chans: (0, d.o),
                    act,
                    res,
                });
            });
        }
    }
}

/// The phase rows and line of part `i` of a split block: the scratch's for part 0, else
/// `own`'s, with the slack after the phase rows and after the line (read by vector loads,
/// never used) zeroed.
///
/// # Safety
///
/// `lay.v - lay.phase <= PART_FLOATS` (the phase rows, line and slack fit `own`).
#[inline(always)]
unsafe fn part_rows(
    lay: &Layout,
    i: usize,
    (phase, line): (*mut f32, *mut f32),
    own: &mut core::mem::MaybeUninit<PartBuf>,
) -> (*mut f32, *mut f32) {
    if i == 0 {
        return (phase, line);
    }
    let b = own.as_mut_ptr().cast::<f32>();
    let line_off = lay.line - lay.phase;
    // SAFETY: both slacks lie inside `own` (the caller's bound).
    unsafe {
        core::ptr::write_bytes(b.add(line_off - 16), 0, 16);
        core::ptr::write_bytes(b.add(lay.v - lay.phase - 16), 0, 16);
        (b, b.add(line_off))
    }
}

/// The three phases of the tile rows `ty0 .. ty0 + nb` on one thread: the input transform
/// into `v` (`[36][C][nb * tw]`), the 36 matrix products into `m` (`[36][nb * tw][opad]`),
/// the output transform into the output rows of those tiles; the products and the output
/// of the panels `prange` of output channels only (all of them: `(0, opad / 16)`).
///
/// # Safety
///
/// `phase` and `line` hold the phase rows and line (with their slack) of `nb` tile rows
/// as `Layout` sizes them, `v` and `m` `36 C nb tw` and `36 nb tw opad` floats plus 16 of
/// slack, all this call's alone; `u` and `bias` are the layer's transformed weights and
/// padded bias; `out` the output, whose rows of these tiles no one else touches; `res`
/// null or a residual laid out as the output.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn sub_block<S: Simd>(
    s: S,
    d: WgDims,
    lay: &Layout,
    (input, u, bias, out): (&[f32], *const f32, *const f32, *mut f32),
    (phase, line, v, m): (*mut f32, *mut f32, *mut f32, *mut f32),
    (ty0, nb): (usize, usize),
    prange: (usize, usize),
    (act, res): (Act, *const f32),
) {
    let tb = nb * lay.tw;
    s.vectorize(WgInput {
        d,
        lay,
        input,
        phase,
        line,
        v,
        ty0,
        nb,
        c0: 0,
        c1: d.c,
    });
    let kc = chunk_channels(d.xi(), d.c, lay.opad / PANEL);
    let gemm = GemmAll { s, v, u, m, kc };
    for xi in 0..d.xi() {
        // SAFETY: position `xi`'s slices of this sub-block's `V` and `M` (the caller's).
        unsafe { gemm.position(xi, d.c, tb, (lay.opad / PANEL, prange)) };
    }
    s.vectorize(WgOutput {
        d,
        lay,
        m,
        bias,
        out,
        ty0,
        nb,
        t0: 0,
        t1: tb,
        chans: (prange.0 * PANEL, (prange.1 * PANEL).min(d.o)),
        act,
        res,
    });
}

/// Floats of scratch the dilation-1 convolution `d` needs (with the slack to start on a
/// 64-byte boundary).
fn plain_scratch_len(d: &WgDims) -> usize {
    Layout::new(d).len + 16
}

/// Floats of scratch the convolution `d` needs (dilated ones: their phase buffers and
/// the largest phase's Winograd scratch).
fn scratch_len(d: &WgDims) -> usize {
    if d.dh == 1 && d.dw == 1 {
        plain_scratch_len(d)
    } else {
        polyphase_scratch_len(d)
    }
}

/// The dilation-1 convolution `d` at `level`, with at least [`plain_scratch_len`]
/// floats of `scratch`, and a residual (as long as the output) added before the
/// activation, if any; only tile rows `rows.0..rows.1` (on this thread) if given.
#[allow(clippy::too_many_arguments)]
fn plain(
    level: Level,
    d: WgDims,
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
    res: Option<&[f32]>,
    rows: Option<(usize, usize)>,
) {
    debug_assert!(d.dh == 1 && d.dw == 1);
    let lay = Layout::new(&d);
    assert!(scratch.len() >= lay.len + 16);
    let off = scratch.as_ptr().align_offset(64).min(16);
    let run = WgRun {
        d,
        lay,
        input,
        params,
        output,
        scratch: &mut scratch[off..],
        act,
        res: res.map_or(core::ptr::null(), |r| r[..d.out_len()].as_ptr()),
        rows,
    };
    simd::run(level, run);
}
