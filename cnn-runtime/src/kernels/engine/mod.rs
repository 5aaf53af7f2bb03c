//! The convolution engine behind [`conv2d`](super::conv::conv2d) and
//! [`depthwise_conv2d`](super::depthwise::depthwise_conv2d): an implicit GEMM over
//! weights packed at load time, register-blocked micro-kernels written once over
//! [`Simd`] (so compiled per instruction set: 4, 8 or 16 lanes), and a band copy that
//! absorbs padding and stride.
//!
//! **Weights** (`ConvParams`) are packed in panels of [`PANEL`] = 16 output channels:
//! `[ceil(O/16)][KH*KW][C/G][16]`, each 16-float row 64-byte aligned ([`Row16`]), zero
//! past the last channel, batch norm folded in. One layout serves both micro-kernels.
//!
//! **Input.** A convolution whose taps all land inside the input with unit horizontal
//! stride reads the input tensor directly (so does a one-row layer over a pixel range
//! whose taps do: the interior of a padded 1-D signal, `conv/run.rs`). Any other (padding, stride) first copies a band
//! of output rows' worth of input rows into a fixed stack buffer ([`SCRATCH`] floats),
//! zero-padded, each padded row split into `SW` phases (columns `q, q + SW, ...`, stride 2
//! with vector deinterleaves), so that every tap of every output row reads a contiguous
//! run. When a band of one output row over all input channels does not fit, the channels
//! are split into chunks whose partial sums accumulate in the output.
//!
//! **Micro-kernels** accumulate a tile of outputs in registers over the taps (outer loop)
//! and the input channels (inner loop), then apply bias and activation to the registers.
//! Each runs as a function of its own ([`Simd::vectorize`]) so that its accumulators get
//! the whole register file:
//!
//! * *pixel-vectorised* ([`PvTile`]): `MR` output channels (up to `Tuning::pv_mr`: 6 on
//!   AVX2 and portable, 8 on AVX-512) by two vectors of pixels (consecutive pixels of a
//!   row, or two rows when a row fits one vector): per step two vector loads of input,
//!   `MR` weight broadcasts, `2 * MR` FMAs. Output rows are stored directly. Chosen for
//!   wide rows, and 1x1 convolutions, whose pixels form one long row.
//! * *channel-vectorised* ([`CvTile`]): the 16 channels of a panel (1, 2 or 4 vectors)
//!   by `NP` pixels anywhere in the map (`Tuning::cv_np`: 16 or 12 on AVX-512, 6 on AVX2,
//!   2 portable): per step the weight vectors, `NP` input broadcasts, `16 * NP` lanes of
//!   FMA. The tile is transposed in registers and stored as `NP` consecutive pixels per
//!   channel. Chosen for small maps (LeNet's 10x10, VGG's 8x8) where a pixel vector would
//!   be mostly empty.
//!
//! On AVX-512 more shapes: pixel tiles of four vectors by up to 6 channels (long rows,
//! while the input strip they share fits L1) and of three by up to 8 (three vectors
//! left: MobileNet-96's 48-pixel stem rows, 23 -> 20 us), and channel tiles of two panels by 8
//! pixels ([`CvTile2`], groups of at least 32 channels, when 8 pads no more than 16/12),
//! or by 10 or 9 on one-row layers (1x1 on small maps).
//!
//! Strided layers with taps and long reductions (ResNets' 3x3 stride-2 layers), and
//! long 1x1 reductions on 12x12 to 24x24 maps, take *chunked* channel tiles on AVX-512
//! (`cv_chunks.rs`): 4 panels by 6 pixels over a
//! block of pixels one chunk of input channels at a time, the chunk's weights in L1,
//! the partial sums in a channel-blocked buffer between chunks.
//!
//! A channel tile whose pixels lie in one row reads them from one base pointer (no
//! pointer per pixel, which spilled general registers); a short last tile on a one-row
//! layer moves back over pixels already computed to be such a tile.
//!
//! Which one runs is decided per layer from the lanes each would fill.
//!
//! **Loop order.** Both run over blocks of output pixels whose input fits in cache
//! (`Tuning::pv_block_bytes`, `cv_block_bytes`), the output channels' panels one after
//! another within a block: a large map's output planes are written 16 at a time in
//! long runs (one write stream per output channel defeated the prefetcher and the TLB:
//! MobileNetV2's 16 -> 96 1x1 layer on 112x112, AVX2, 1.75 -> 1.0 ms on a busy VM,
//! equal on an idle one), and a small map's weights are read once per block rather
//! than once per tile of pixels (its 320 -> 1280 layer on 7x7: 1.6 MB of weights,
//! 596 -> 540 µs).
//!
//! **Depthwise** convolutions have six paths. 3x3 layers with one pixel of padding
//! (MobileNet's) run per channel: stride 1 with the output as one long row of pixel
//! vectors across rows on the flat plane (`dw_flat.rs`, the columns off the map masked),
//! or on wide maps row by row with the column taps shifted in registers (`dw_rows3.rs`,
//! AVX-512 from 28 columns); stride 2 likewise as one long row, over the row and column
//! phase planes of a band copy (`dw_phase2.rs`), or on wide maps row by row, each input
//! row deinterleaved into its column phases in registers (`dw_rows3.rs`), and two output
//! rows a vector on maps narrower than a vector (`dw_narrow2.rs`); `dw_rows3.rs` also
//! takes a band of such a layer's rows with no padding above (the bands of
//! `kernels::expand_depthwise`, `rows3_fits`). Others run per
//! channel in tiles of several rows by up to four pixel
//! vectors ([`DwBand`], `depthwise.rs`, long rows), or `LANES` channels at once
//! ([`DwCvBand`], `dw_channels.rs`): the band transposed to `[row][column][channel]` in
//! a 64-byte aligned buffer (rows narrower than a vector flat, across rows), one channel
//! vector per output pixel (groups of pixels side by side sliding over the band columns,
//! [`dw3_slide`] and [`dw5_slide`]; rows of up to 16 pixels in even groups of their
//! own), transposed back (short rows, and stride-2 layers with at most half a vector of
//! output columns).
//!
//! [`conv_fallback`] handles what the engine does not (a one-row band that does not fit
//! even for one channel, more than [`MAX_TAPS`] taps).

#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};
use core::mem::MaybeUninit;

use super::activation::Act;
use super::geometry::Dims2d;
use super::simd::{Simd, WithSimd};

mod cv_chunks;
mod cv_rows;
mod depthwise;
mod dw_channels;
mod dw_flat;
mod dw_narrow2;
mod dw_phase2;
mod dw_rows3;
mod panels;
mod pool;
mod prefetch;
mod rules;
#[cfg(test)]
mod tile_speed;
mod tiles;

#[allow(unused_imports)]
use self::cv_chunks::*;
use self::cv_rows::*;
pub(crate) use self::depthwise::depthwise;
#[allow(unused_imports)]
use self::depthwise::*;
pub(crate) use self::dw_channels::depthwise_channels;
#[allow(unused_imports)]
use self::dw_channels::*;
pub(crate) use self::dw_flat::{depthwise_flat, flat3_fits};
pub(crate) use self::dw_narrow2::{depthwise_narrow2, narrow2_fits};
pub(crate) use self::dw_phase2::depthwise_phase2;
pub(crate) use self::dw_rows3::{depthwise_rows3, depthwise_rows3_into, phase3_fits, rows3_fits};
pub(crate) use self::panels::conv_panels;
#[allow(unused_imports)]
use self::panels::*;
#[cfg(test)]
pub(crate) use self::pool::separable_fits;
pub(crate) use self::pool::{pool, window_count, PoolOp};
#[allow(unused_imports)]
use self::prefetch::*;
use self::rules::*;
#[cfg(test)]
pub(crate) use self::rules::{
    auto_plan, chunk_channels, BLOCK_OVERRIDE, NO_PACK, NO_PREFETCH, PV_K_CHUNK_OVERRIDE,
};
pub(crate) use self::rules::{band_shape, pack_floats};
#[allow(unused_imports)]
use self::tiles::*;

/// Output channels per packed weight panel.
pub(crate) const PANEL: usize = 16;

/// Floats of the stack buffer holding a padded band of input: 64 KiB with `std`, 16 KiB
/// without (microcontroller stacks). A layer whose input band fits either way runs
/// identically; a bigger one takes more, smaller bands without `std` (the same results
/// within the conformance tolerance; the tests sweep band sizes down to one float).
pub(crate) const SCRATCH: usize = if cfg!(feature = "std") {
    16 * 1024
} else {
    4 * 1024
};

/// Where a direct 1x1 convolution on a small map (one row of pixels) run by channel
/// tiles packs a block's input, tile after tile (`Tuning::cv_pack`): `len` floats at
/// `ptr` that one call of [`conv_panels`] (one thread part) has to itself, or null. A
/// block of more than `len` floats is not packed (the same bits either way).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackBuf {
    /// First float, or null: none.
    pub(crate) ptr: *mut f32,
    /// Floats at `ptr`.
    pub(crate) len: usize,
}

/// Thread parts of a split convolution that get a share of the packing buffer a model
/// plans ([`crate::kernels::conv::conv_scratch_len`]); further parts pack into their
/// band buffers where a block fits.
pub(crate) const PACK_PARTS: usize = 4;

impl PackBuf {
    /// No buffer: the call packs into its band buffer where a block fits it.
    pub(crate) const NONE: PackBuf = PackBuf {
        ptr: core::ptr::null_mut(),
        len: 0,
    };
}

/// Most kernel taps (`KH * KW`) the engine handles; larger kernels use the fallback.
pub(crate) const MAX_TAPS: usize = 128;

/// The band buffer: [`SCRATCH`] floats on a 64-byte boundary (vector loads of the
/// channel-vectorised depthwise band never straddle cache lines).
#[repr(C, align(64))]
struct Scratch([f32; SCRATCH]);

/// Bytes of the band buffer a convolution or depthwise call keeps on the stack (the
/// largest buffer any kernel puts there; a model's `STACK_BYTES`).
pub const ENGINE_STACK_BYTES: usize = core::mem::size_of::<Scratch>();

/// Sixteen floats on a 64-byte boundary: one row of a weight panel (one cache line).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct Row16(pub [f32; PANEL]);

#[cfg(feature = "alloc")]
/// Packs PyTorch conv weights `[out][cg][kh][kw]` into panels `[ceil(out/16)][kh*kw][cg]
/// [16]` (zeros past `out`), and the bias (`[out]`) into `[ceil(out/16)][16]`.
pub(crate) fn pack_conv(
    out: usize,
    cg: usize,
    kk: usize,
    weight: &[f32],
    bias: &[f32],
) -> (Box<[Row16]>, Box<[Row16]>) {
    assert_eq!(weight.len(), out * cg * kk);
    assert_eq!(bias.len(), out);
    let panels = out.div_ceil(PANEL);
    let mut w = vec![Row16([0.0; PANEL]); panels * kk * cg];
    for o in 0..out {
        let (panel, lane) = (o / PANEL, o % PANEL);
        for c in 0..cg {
            for t in 0..kk {
                w[(panel * kk + t) * cg + c].0[lane] = weight[(o * cg + c) * kk + t];
            }
        }
    }
    (w.into_boxed_slice(), pack_bias(out, bias))
}

#[cfg(feature = "alloc")]
/// A bias `[out]` as panels `[ceil(out/16)][16]`, zeros past `out`.
pub(crate) fn pack_bias(out: usize, bias: &[f32]) -> Box<[Row16]> {
    let mut b = vec![Row16([0.0; PANEL]); out.div_ceil(PANEL)];
    for (o, &v) in bias.iter().enumerate().take(out) {
        b[o / PANEL].0[o % PANEL] = v;
    }
    b.into_boxed_slice()
}

/// The packed weights of one convolution, as the engine reads them.
#[derive(Clone, Copy)]
pub(crate) struct Packed<'a> {
    /// `[ceil(O/16)][KH*KW][C/G][16]`.
    pub(crate) weight: &'a [Row16],
    /// `[ceil(O/16)][16]`.
    pub(crate) bias: &'a [Row16],
}

/// Where the micro-kernels read input: the input tensor itself or a padded band copy.
#[derive(Clone, Copy)]
struct Band {
    /// First channel of the chunk, at band row 0, padded column 0.
    base: *const f32,
    /// Distance between channels.
    plane: usize,
    /// Distance between (padded) rows.
    rowpitch: usize,
    /// Padded input row held by band row 0.
    prow0: usize,
    /// Where a one-row channel pass packs its tiles' input (see `cv_rows::cv_rows`),
    /// or none: no packing.
    pack: PackBuf,
}

/// What a micro-kernel call computes, beyond its tile position.
#[derive(Clone, Copy)]
struct Job<'a> {
    /// Source offsets of the taps (`ky`-major) relative to a pixel's offset.
    taps: &'a [isize],
    /// Input channels summed in this call (a chunk of the group's).
    cn: usize,
    /// Distance between channels in the source.
    plane: usize,
    /// Floats between consecutive taps' weight rows (`16 * C/G`).
    wtap: usize,
    /// First chunk: start from zero (else from what the output holds).
    first: bool,
    /// Last chunk: apply bias and activation.
    last: bool,
    /// The fused activation if piecewise linear (applied by the tiles, in registers),
    /// else `Identity`: a curved one is applied by [`conv_panels`] to each block of
    /// output once its tiles have stored it (`Simd::curved_slice`).
    act: Act,
    /// That curved activation, else `Identity` (no post-pass); with a residual, the
    /// whole activation (the tiles apply none).
    post: Act,
    /// A residual added to the output before the activation (a fused `add`), laid out
    /// as the output, or null: the post-pass adds it (`panels::post_pass`).
    res: *const f32,
}

/// How a convolution maps onto the engine, decided once per call from its dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Pixel-vectorised tiles.
    Pixels,
    /// Channel-vectorised tiles.
    Channels,
}

/// Splits `n` output channels into pixel-vectorised tiles of at most `max`, avoiding
/// small last tiles: the size of the next tile.
#[inline(always)]
fn next_mr(n: usize, max: usize) -> usize {
    if n <= max {
        n
    } else if n >= max + 4 {
        max
    } else {
        n - n / 2
    }
}

/// Runs the convolution `d` on the engine: `false` (nothing written) when it needs the
/// fallback. `cap` (at most [`SCRATCH`]) is the band buffer size, smaller in tests to
/// exercise banding and channel chunks; `force` overrides the choice of micro-kernel.
///
/// Preconditions (checked by the caller): `input` holds `C*H*W` values, `output`
/// `O*OH*OW`, `packed` was built for these dimensions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[allow(dead_code)] // Tests and the single-panel-range callers.
pub(crate) fn conv<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    packed: Packed<'_>,
    output: &mut [f32],
    act: Act,
    cap: usize,
    force: Option<Plan>,
) -> bool {
    assert!(output.len() >= d.o * d.oh * d.ow);
    let panels = d.o.div_ceil(PANEL);
    // SAFETY: `output` is exclusively borrowed and holds `O*OH*OW` values.
    unsafe {
        conv_panels(
            s,
            d,
            input,
            packed,
            output.as_mut_ptr(),
            act,
            core::ptr::null(),
            cap,
            force,
            (0, panels),
            (0, d.oh * d.ow),
            PackBuf::NONE,
        )
    }
}

/// The geometry the engine runs `d` as: a 1x1, stride-1, unpadded convolution is a
/// matrix product whose pixels form one row (`OH = 1`, `OW = OH*OW`); anything else as
/// it is. Output pixel `q = y * OW + x` is the same pixel in both.
#[inline(always)]
pub(crate) fn flat(d: Dims2d) -> Dims2d {
    if d.kh * d.kw == 1
        && d.sh == 1
        && d.sw == 1
        && d.ph == 0
        && d.pw == 0
        && d.oh == d.h
        && d.ow == d.w
    {
        Dims2d {
            h: 1,
            w: d.h * d.w,
            oh: 1,
            ow: d.h * d.w,
            ..d
        }
    } else {
        d
    }
}

/// `dst[..n] = src[..n]` with vector moves (short rows: no library call).
///
/// # Safety
///
/// `src..src + n` readable, `dst..dst + n` writable.
#[inline(always)]
pub(crate) unsafe fn copy_floats<S: Simd>(s: S, src: *const f32, dst: *mut f32, n: usize) {
    let l = S::LANES;
    let mut i = 0;
    // SAFETY: every access is below `n`.
    unsafe {
        while i + l <= n {
            s.store(dst.add(i), s.load(src.add(i)));
            i += l;
        }
        if i < n {
            s.store_n(dst.add(i), s.load_n(src.add(i), n - i), n - i);
        }
    }
}

/// `dst[i] = src[stride i]` for every `i < dst.len()` (`src` holds at least `stride
/// (dst.len() - 1) + 1` floats): stride 2 by vectors ([`gather_even`]), 3 and 4 with a
/// constant stride (which the compiler turns into shuffles), others element by element.
#[inline(always)]
pub(crate) fn strided_load<S: Simd>(s: S, dst: &mut [f32], src: &[f32], stride: usize) {
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => gather_even(s, src, dst),
        3 => load_by::<3>(dst, src),
        4 => load_by::<4>(dst, src),
        _ => {
            for (x, &v) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                *x = v;
            }
        }
    }
}

/// `dst[i] = src[S i]` for `i < dst.len()`, a constant stride.
#[inline(always)]
fn load_by<const S: usize>(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    let src = &src[..S * (n - 1) + 1];
    for (i, x) in dst.iter_mut().enumerate() {
        *x = src[S * i];
    }
}

/// `dst[i] = src[2 i]` for every `i < dst.len()`: per `LANES` outputs the even lanes of
/// two loads, which read no further than `src[2 (dst.len() - 1)]`.
#[inline(always)]
pub(crate) fn gather_even<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let (l, n) = (S::LANES, dst.len());
    if n == 0 {
        return;
    }
    let src = &src[..2 * n - 1];
    let mut x = 0;
    while x < n {
        let left = (n - x).min(l);
        let m = src.len() - 2 * x;
        // SAFETY: `src[2x..]` holds `m` floats and the loads read at most `m` of them;
        // `dst[x..x + left]` is inside `dst`.
        unsafe {
            let p = src.as_ptr().add(2 * x);
            let (a, b) = if m >= 2 * l {
                (s.load(p), s.load(p.add(l)))
            } else if m > l {
                (s.load(p), s.load_n(p.add(l), m - l))
            } else {
                (s.load_n(p, m), s.zero())
            };
            let (even, _) = s.deinterleave(a, b);
            if left == l {
                s.store(dst.as_mut_ptr().add(x), even);
            } else {
                s.store_n(dst.as_mut_ptr().add(x), even, left);
            }
        }
        x += left;
    }
}

/// `dst[2 i] = even[i]` and `dst[2 i + 1] = odd[i]`: `dst` holds `even.len() +
/// odd.len()` floats, `even` as many as `odd` or one more. Per `2 LANES` outputs two
/// loads, an [`interleave`](Simd::interleave) and two stores.
#[inline(always)]
pub(crate) fn interleave_into<S: Simd>(s: S, even: &[f32], odd: &[f32], dst: &mut [f32]) {
    let (l, n) = (S::LANES, odd.len());
    assert!(even.len() == n || even.len() == n + 1);
    let dst = &mut dst[..even.len() + n];
    let mut i = 0;
    while i < n {
        let k = (n - i).min(l);
        // SAFETY: `even[i..i + k]` and `odd[i..i + k]` are inside both (`even` is at
        // least as long as `odd`); the stores write `dst[2i..2i + 2k]`, inside `dst`.
        unsafe {
            let (a, b) = if k == l {
                (s.load(even.as_ptr().add(i)), s.load(odd.as_ptr().add(i)))
            } else {
                (
                    s.load_n(even.as_ptr().add(i), k),
                    s.load_n(odd.as_ptr().add(i), k),
                )
            };
            let (lo, hi) = s.interleave(a, b);
            let p = dst.as_mut_ptr().add(2 * i);
            if k == l {
                s.store(p, lo);
                s.store(p.add(l), hi);
            } else if 2 * k > l {
                s.store(p, lo);
                s.store_n(p.add(l), hi, 2 * k - l);
            } else {
                s.store_n(p, lo, 2 * k);
            }
        }
        i += k;
    }
    if even.len() > n {
        dst[2 * n] = even[n];
    }
}

/// `dst[..n] = 0` with vector stores.
///
/// # Safety
///
/// `dst..dst + n` writable.
#[inline(always)]
pub(crate) unsafe fn zero_floats<S: Simd>(s: S, dst: *mut f32, n: usize) {
    // SAFETY: the caller's contract.
    unsafe { fill_floats(s, dst, n, 0.0) }
}

/// The most output rows (up to `OH`) whose padded input band, `row_floats` floats per input
/// row, fits `cap` floats; `None` when not even one output row's does. An output band of
/// `r` rows reads `(r - 1) * SH + (KH - 1) * DH + 1` input rows.
#[inline(always)]
fn band_rows_in(d: &Dims2d, row_floats: usize, cap: usize) -> Option<usize> {
    if d.rows_in(1) * row_floats > cap {
        return None;
    }
    let mut r = 1;
    while r < d.oh && d.rows_in(r + 1) * row_floats <= cap {
        r += 1;
    }
    Some(r)
}

/// Writes `v` to `dst[0..n]`.
///
/// # Safety
///
/// `dst..dst + n` writable.
#[inline(always)]
unsafe fn fill_floats<S: Simd>(s: S, dst: *mut f32, n: usize, v: f32) {
    let l = S::LANES;
    let v = s.splat(v);
    let mut i = 0;
    // SAFETY: every store is below `n`.
    unsafe {
        while i + l <= n {
            s.store(dst.add(i), v);
            i += l;
        }
        if i < n {
            s.store_n(dst.add(i), v, n - i);
        }
    }
}

/// What each per-channel 3x3 depthwise kernel (`dw_flat.rs`, `dw_narrow2.rs`,
/// `dw_phase2.rs`, `dw_rows3.rs`) works on: output rows `rows` of every channel of the
/// layer `d` from `input`, weights `[C][9]` and bias `[C]`, into `out` (valid for writes of
/// `d.c * OH * OW` floats, those rows of its planes the call's alone).
#[derive(Clone, Copy)]
struct Dw3<'a> {
    d: Dims2d,
    input: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
    out: *mut f32,
    /// Floats between the output planes (`OH * OW`, or more: a band's rows written
    /// straight into a whole layer's planes, [`depthwise_rows3_into`]).
    plane: usize,
    rows: (usize, usize),
    act: Act,
}

impl<'a> Dw3<'a> {
    /// The job, its lengths checked: `input` holds the `C` planes, `weight` `[C][9]`,
    /// `bias` `[C]`, `rows` lies in `0..=OH` (`d` a depthwise layer: `c == o`).
    #[allow(clippy::too_many_arguments)]
    fn new(
        d: Dims2d,
        input: &'a [f32],
        weight: &'a [f32],
        bias: &'a [f32],
        out: *mut f32,
        rows: (usize, usize),
        act: Act,
    ) -> Self {
        assert!(d.c == d.o && input.len() >= d.c * d.h * d.w);
        assert!(rows.0 <= rows.1 && rows.1 <= d.oh);
        assert!(weight.len() == d.c * 9 && bias.len() == d.c);
        Dw3 {
            d,
            input,
            weight,
            bias,
            out,
            plane: d.oh * d.ow,
            rows,
            act,
        }
    }
}

/// Channel `c`'s nine weights of `weight` (`[C][9]`), each broadcast to a vector.
#[inline(always)]
fn dw3_weights<S: Simd>(s: S, weight: &[f32], c: usize) -> [S::V; 9] {
    let w = &weight[c * 9..c * 9 + 9];
    let mut wt = [s.zero(); 9];
    for (t, v) in wt.iter_mut().enumerate() {
        // SAFETY: `t < 9 = w.len()`.
        *v = unsafe { s.bcast(w.as_ptr().add(t)) };
    }
    wt
}

/// Copies channels `input[0..nch]` (planes of `H*W`), padded rows `prow0..prow0+nrows`
/// (padded row `r` is input row `r - PH`, `pad` outside), each row split into `SW`
/// phases of `wq` columns (phase `q`, column `j` is padded column `j*SW + q`, input column
/// `j*SW + q - PW`, `pad` outside), to `dst` as `[nch][nrows][SW][wq]`, writing every one
/// of those floats (`dst` may be uninitialised). Stride 2 is split with vector
/// deinterleaves. `pad` is 0 for convolutions, -inf for max pooling.
///
/// # Safety
///
/// `dst` must be writable for `nch * nrows * SW * wq` floats.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn copy_band<S: Simd>(
    s: S,
    d: &Dims2d,
    input: &[f32],
    nch: usize,
    prow0: usize,
    nrows: usize,
    wq: usize,
    dst: *mut f32,
    pad: f32,
) {
    let l = S::LANES;
    let rowpitch = d.sw * wq;
    let hw = d.h * d.w;
    // For strides 3 to 8: the columns `[jlo, jhi)` of each phase `q` whose input column
    // `j * SW + q - PW` lies in `0..W` (the same in every row).
    let mut spans = [(0usize, 0usize); 8];
    if d.sw > 2 {
        for (q, span) in spans.iter_mut().enumerate().take(d.sw) {
            let jlo = d.pw.saturating_sub(q).div_ceil(d.sw).min(wq);
            *span = (
                jlo,
                (d.w + d.pw).saturating_sub(q).div_ceil(d.sw).clamp(jlo, wq),
            );
        }
    }
    for c in 0..nch {
        let plane = &input[c * hw..(c + 1) * hw];
        for r in 0..nrows {
            // SAFETY: (block) `row..row + rowpitch` is inside `dst`'s range, since
            // `(c * nrows + r + 1) * rowpitch <= nch * nrows * rowpitch`; every write
            // below is at an offset `< rowpitch`; reads are inside the input row `src`.
            unsafe {
                let row = dst.add((c * nrows + r) * rowpitch);
                let iy = (prow0 + r).wrapping_sub(d.ph);
                if iy >= d.h {
                    fill_floats(s, row, rowpitch, pad);
                    continue;
                }
                let src = &plane[iy * d.w..(iy + 1) * d.w];
                if d.sw == 1 {
                    // Padded columns [0, PW) `pad`, then the input row, then `pad`.
                    let left = d.pw.min(wq);
                    let n = d.w.min(wq - left);
                    fill_floats(s, row, left, pad);
                    copy_floats(s, src.as_ptr(), row.add(left), n);
                    fill_floats(s, row.add(left + n), wq - left - n, pad);
                    continue;
                }
                // Scalar elements of phase q, columns j0..j1 (stride 2's edges): a loop
                // of its own (a closure per element was not inlined: a call and a bounds
                // check each).
                let put = |q: usize, j0: usize, j1: usize| {
                    let out = row.add(q * wq);
                    let mut ix = (j0 * d.sw + q).wrapping_sub(d.pw);
                    for j in j0..j1 {
                        out.add(j).write(if ix < d.w {
                            *src.get_unchecked(ix)
                        } else {
                            pad
                        });
                        ix = ix.wrapping_add(d.sw);
                    }
                };
                if d.sw == 2 {
                    // Columns j whose two inputs 2j - PW, 2j + 1 - PW are both inside,
                    // `l` (or fewer, masked) at a time: [jlo, jhi).
                    let jlo = d.pw.div_ceil(2).min(wq);
                    let jhi = ((d.w + d.pw) / 2).min(wq).max(jlo);
                    put(0, 0, jlo);
                    put(1, 0, jlo);
                    let mut j = jlo;
                    while j < jhi {
                        let n = l.min(jhi - j);
                        let p = src.as_ptr().add(2 * j - d.pw);
                        let (a, b) = if n == l {
                            (s.load(p), s.load(p.add(l)))
                        } else if 2 * n > l {
                            (s.load(p), s.load_n(p.add(l), 2 * n - l))
                        } else {
                            (s.load_n(p, 2 * n), s.zero())
                        };
                        let (even, odd) = s.deinterleave(a, b);
                        s.store_n(row.add(j), even, n);
                        s.store_n(row.add(wq + j), odd, n);
                        j += n;
                    }
                    for q in 0..d.sw {
                        put(q, jhi, wq);
                    }
                    continue;
                }
                // Larger strides: each phase's columns whose input lies in the row
                // (`spans`) by a copy without a test per element, the padding around
                // them; more phases than `spans` holds element by element.
                if d.sw > spans.len() {
                    for q in 0..d.sw {
                        put(q, 0, wq);
                    }
                    continue;
                }
                for (q, &(jlo, jhi)) in spans[..d.sw].iter().enumerate() {
                    let out = row.add(q * wq);
                    fill_floats(s, out, jlo, pad);
                    // Input columns `jlo * SW + q - PW ..` by `SW`, all inside the row.
                    let from = src.as_ptr().add(jlo * d.sw + q - d.pw);
                    for j in 0..jhi - jlo {
                        out.add(jlo + j).write(*from.add(j * d.sw));
                    }
                    fill_floats(s, out.add(jhi), wq - jhi, pad);
                }
            }
        }
    }
}

/// Scalar convolution over the packed weights, for what the engine does not handle.
pub(crate) fn conv_fallback(
    d: Dims2d,
    input: &[f32],
    packed: Packed<'_>,
    output: &mut [f32],
    act: Act,
) {
    let (cg, og, kk) = (d.c / d.g, d.o / d.g, d.kh * d.kw);
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let output = &mut output[..d.o * ohw];
    for (o, plane) in output.chunks_exact_mut(ohw).enumerate() {
        let g = o / og;
        let b = packed.bias[o / PANEL].0[o % PANEL];
        let w = &packed.weight[(o / PANEL) * kk * cg..][..kk * cg];
        for (oy, row) in plane.chunks_exact_mut(d.ow).enumerate() {
            for (ox, y) in row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for ky in 0..d.kh {
                    let iy = (oy * d.sh + ky * d.dh).wrapping_sub(d.ph);
                    if iy >= d.h {
                        continue;
                    }
                    for kx in 0..d.kw {
                        let ix = (ox * d.sw + kx * d.dw).wrapping_sub(d.pw);
                        if ix >= d.w {
                            continue;
                        }
                        for c in 0..cg {
                            let x = input[(g * cg + c) * hw + iy * d.w + ix];
                            acc += w[(ky * d.kw + kx) * cg + c].0[o % PANEL] * x;
                        }
                    }
                }
                *y = act.apply(acc + b);
            }
        }
    }
}
