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
//! stride reads the input tensor directly. Any other (padding, stride) first copies a band
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
//! * *pixel-vectorised* ([`PvTile`]): `MR` output channels (up to `Simd::PV_MR`: 6 on
//!   AVX2 and portable, 8 on AVX-512) by two vectors of pixels (consecutive pixels of a
//!   row, or two rows when a row fits one vector): per step two vector loads of input,
//!   `MR` weight broadcasts, `2 * MR` FMAs. Output rows are stored directly. Chosen for
//!   wide rows, and 1x1 convolutions, whose pixels form one long row.
//! * *channel-vectorised* ([`CvTile`]): the 16 channels of a panel (1, 2 or 4 vectors)
//!   by `NP` pixels anywhere in the map (`Simd::CV_NP`: 16 or 12 on AVX-512, 6 on AVX2,
//!   2 portable): per step the weight vectors, `NP` input broadcasts, `16 * NP` lanes of
//!   FMA. The tile is transposed in registers and stored as `NP` consecutive pixels per
//!   channel. Chosen for small maps (LeNet's 10x10, VGG's 8x8) where a pixel vector would
//!   be mostly empty.
//!
//! On AVX-512 two more shapes: pixel tiles of four vectors by up to 6 channels (long
//! rows, while the input strip they share fits L1), and channel tiles of two panels by 8
//! pixels ([`CvTile2`], groups of at least 32 channels, when 8 pads no more than 16/12).
//!
//! Which one runs is decided per layer from the lanes each would fill.
//!
//! **Depthwise** convolutions have two paths: per channel, tiles of several rows by up
//! to four pixel vectors ([`DwBand`], long rows); or `LANES` channels at once
//! ([`DwCvBand`]): the band transposed to `[row][column][channel]` in a 64-byte aligned
//! buffer, one channel vector per output pixel (groups of pixels side by side; 3x3
//! stride-1 rows as a sliding window, [`dw3_slide`]), transposed back (short rows, and
//! on AVX-512 every 3x3 stride-1 layer).
//!
//! [`conv_fallback`] handles what the engine does not (a one-row band that does not fit
//! even for one channel, more than [`MAX_TAPS`] taps).

#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};
use core::mem::MaybeUninit;

use super::activation::Act;
use super::conv::Dims2d;
use super::simd::{Simd, WithSimd};

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
    /// The fused activation.
    act: Act,
}

/// One pixel-vectorised tile: where it reads and writes.
#[derive(Clone, Copy)]
struct PvArgs<'a> {
    job: &'a Job<'a>,
    /// Weight lane of the tile's first channel, at tap 0 and the chunk's first channel.
    w: *const f32,
    /// The tile's first pixel at tap 0, channel 0 of the chunk.
    src: *const f32,
    /// Distance in the source between the tile's vectors: `LANES` along a row, or one
    /// output row's worth when each vector is a row.
    vsrc: usize,
    /// The tile's first output.
    out: *mut f32,
    /// Distance in the output between the tile's vectors (`LANES`, or `OW`).
    vout: usize,
    /// Distance between output channels.
    ostride: usize,
    /// Bias of the tile's first channel.
    bias: *const f32,
    /// Valid lanes of the last vector (of every vector in `ALL_PARTIAL` tiles).
    n: usize,
}

/// Full vectors only.
const FULL: u8 = 0;
/// The last vector is partial.
const LAST_PARTIAL: u8 = 1;
/// Every vector is partial (one row each, rows shorter than a vector).
const ALL_PARTIAL: u8 = 2;

/// `MR` output channels by `NV` vectors of pixels (consecutive pixels of a row, or one
/// short row each), run as an isolated function ([`Simd::vectorize`]). `MASK` says which
/// vectors are partial ([`FULL`], [`LAST_PARTIAL`], [`ALL_PARTIAL`]).
struct PvTile<'a, const MR: usize, const NV: usize, const MASK: u8>(PvArgs<'a>);

impl<'a, const MR: usize, const NV: usize, const MASK: u8> PvTile<'a, MR, NV, MASK> {
    /// # Safety
    ///
    /// For every vector `v`, tap offset `off` and channel `c < job.cn`,
    /// `src + v * vsrc + off + c * job.plane` must be readable for the lanes used (all,
    /// or `n` in partial vectors); `w + t * job.wtap + 16 * c + r` readable for `r < MR`;
    /// `out + r * ostride + v * vout` writable (and readable unless `job.first`) for
    /// those lanes; `bias + r` readable.
    #[inline(always)]
    unsafe fn new(a: PvArgs<'a>) -> Self {
        PvTile(a)
    }
}

impl<const MR: usize, const NV: usize, const MASK: u8> WithSimd for PvTile<'_, MR, NV, MASK> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let job = a.job;
        let partial = |v: usize| MASK == ALL_PARTIAL || (MASK == LAST_PARTIAL && v == NV - 1);
        debug_assert!(a.n <= S::LANES && (MASK != FULL || a.n == S::LANES));
        let mut acc = [[s.zero(); NV]; MR];
        // SAFETY: (whole body) every pointer stays within the ranges `new`'s caller
        // guaranteed: taps and channels of `job`, `MR` weight lanes, the lanes used.
        unsafe {
            if !job.first {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    for (v, x) in acc_r.iter_mut().enumerate() {
                        let p = a.out.add(r * a.ostride + v * a.vout);
                        *x = if partial(v) {
                            s.load_n(p, a.n)
                        } else {
                            s.load(p)
                        };
                    }
                }
            }
            for (t, &off) in job.taps.iter().enumerate() {
                let mut sp = a.src.offset(off);
                let mut wp = a.w.add(t * job.wtap);
                for _ in 0..job.cn {
                    let mut b = [s.zero(); NV];
                    for (v, bv) in b.iter_mut().enumerate() {
                        *bv = if partial(v) {
                            s.load_n(sp.add(v * a.vsrc), a.n)
                        } else {
                            s.load(sp.add(v * a.vsrc))
                        };
                    }
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let wr = s.bcast(wp.add(r));
                        for (x, &bv) in acc_r.iter_mut().zip(&b) {
                            *x = s.mul_add(wr, bv, *x);
                        }
                    }
                    sp = sp.add(job.plane);
                    wp = wp.add(PANEL);
                }
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                if job.last {
                    let b = s.bcast(a.bias.add(r));
                    for x in acc_r.iter_mut() {
                        *x = s.act(s.add(*x, b), job.act);
                    }
                }
                for (v, &x) in acc_r.iter().enumerate() {
                    let p = a.out.add(r * a.ostride + v * a.vout);
                    if partial(v) {
                        s.store_n(p, x, a.n);
                    } else {
                        s.store(p, x);
                    }
                }
            }
        }
    }
}

/// Runs the pixel-vectorised tile of `mr` channels and `nv` vectors with partial vectors
/// `mask`.
///
/// # Safety
///
/// As [`PvTile::new`], with `MR = mr`, `NV = nv` (1 or 2), `MASK = mask`.
#[inline(always)]
unsafe fn pv_call<S: Simd>(s: S, mr: usize, nv: usize, mask: u8, a: PvArgs<'_>) {
    macro_rules! go {
        ($mr:literal) => {{
            // SAFETY: forwarded from the caller.
            unsafe {
                match (nv, mask) {
                    (2, FULL) => s.vectorize(PvTile::<$mr, 2, FULL>::new(a)),
                    (2, LAST_PARTIAL) => s.vectorize(PvTile::<$mr, 2, LAST_PARTIAL>::new(a)),
                    (2, _) => s.vectorize(PvTile::<$mr, 2, ALL_PARTIAL>::new(a)),
                    (_, FULL) => s.vectorize(PvTile::<$mr, 1, FULL>::new(a)),
                    (_, _) => s.vectorize(PvTile::<$mr, 1, LAST_PARTIAL>::new(a)),
                }
            }
        }};
    }
    debug_assert!(mr >= 1 && mr <= S::PV_MR && S::PV_MR <= 8);
    match mr {
        1 => go!(1),
        2 => go!(2),
        3 => go!(3),
        4 => go!(4),
        5 => go!(5),
        6 => go!(6),
        7 => go!(7),
        _ => go!(8),
    }
}

/// Runs the pixel-vectorised tile of `mr` (at most 6) channels and four full vectors.
///
/// # Safety
///
/// As [`PvTile::new`], with `MR = mr`, `NV = 4`, `MASK = FULL`.
#[inline(always)]
unsafe fn pv4_call<S: Simd>(s: S, mr: usize, a: PvArgs<'_>) {
    debug_assert!((1..=6).contains(&mr));
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 => s.vectorize(PvTile::<1, 4, FULL>::new(a)),
            2 => s.vectorize(PvTile::<2, 4, FULL>::new(a)),
            3 => s.vectorize(PvTile::<3, 4, FULL>::new(a)),
            4 => s.vectorize(PvTile::<4, 4, FULL>::new(a)),
            5 => s.vectorize(PvTile::<5, 4, FULL>::new(a)),
            _ => s.vectorize(PvTile::<6, 4, FULL>::new(a)),
        }
    }
}

/// One channel-vectorised tile: where it reads and writes.
struct CvArgs<'a, const NP: usize> {
    job: &'a Job<'a>,
    /// The panel's first weight row at tap 0 and the chunk's first channel.
    w: *const f32,
    /// The source (channel 0 of the chunk).
    src: *const f32,
    /// Tap-0 offsets of the tile's pixels in the source.
    px: &'a [isize; NP],
    /// The panel's bias row.
    bias: *const f32,
    /// Output of the panel's first channel at the tile's first pixel.
    out: *mut f32,
    /// Distance between output channels.
    ostride: usize,
    /// Lanes of the panel this tile stores (`lo..hi`, the group's channels).
    lanes: (usize, usize),
    /// Valid pixels: consecutive outputs `out[..np]` of each channel.
    np: usize,
}

/// The 16 channels of a panel (`VEC` vectors) by `NP` pixels, run as an isolated
/// function ([`Simd::vectorize`]). Transposed in registers on the way in (chunked
/// accumulation) and out, each channel's `np` pixels moved with one masked access.
struct CvTile<'a, const VEC: usize, const NP: usize>(CvArgs<'a, NP>);

impl<'a, const VEC: usize, const NP: usize> CvTile<'a, VEC, NP> {
    /// # Safety
    ///
    /// For every tap offset `off`, channel `c < job.cn` and pixel `p`,
    /// `src + px[p] + off + c * job.plane` must be readable, and
    /// `w + t * job.wtap + 16 * c .. + 16` readable; `bias .. bias + 16` readable;
    /// `out + lane * ostride .. + np` writable (and readable unless `job.first`) for
    /// every lane in `lanes`.
    #[inline(always)]
    unsafe fn new(a: CvArgs<'a, NP>) -> Self {
        CvTile(a)
    }
}

impl<const VEC: usize, const NP: usize> WithSimd for CvTile<'_, VEC, NP> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let job = a.job;
        let l = S::LANES;
        debug_assert!(VEC * l == PANEL && NP <= l && a.np <= NP);
        let (lo, hi) = a.lanes;
        let mut acc = [[s.zero(); VEC]; NP];
        let mut m = [s.zero(); 16];
        // SAFETY: (whole body) the pointers stay within the ranges `new`'s caller
        // guaranteed; only lanes in `lo..hi` and pixels `..np` of the output are touched.
        unsafe {
            if !job.first {
                for v in 0..VEC {
                    for (c, row) in m[..l].iter_mut().enumerate() {
                        let lane = v * l + c;
                        *row = if (lo..hi).contains(&lane) {
                            s.load_n(a.out.add(lane * a.ostride), a.np)
                        } else {
                            s.zero()
                        };
                    }
                    s.transpose(&mut m[..l]);
                    for (x, &row) in acc.iter_mut().zip(&m) {
                        x[v] = row;
                    }
                }
            }
            let ptrs: [*const f32; NP] = core::array::from_fn(|p| a.src.offset(a.px[p]));
            for (t, &off) in job.taps.iter().enumerate() {
                let mut wp = a.w.add(t * job.wtap);
                let mut co = off;
                for _ in 0..job.cn {
                    let mut wv = [s.zero(); VEC];
                    for (v, x) in wv.iter_mut().enumerate() {
                        *x = s.load(wp.add(v * l));
                    }
                    for (x, &p) in acc.iter_mut().zip(&ptrs) {
                        let xp = s.bcast(p.offset(co));
                        for (xv, &wvv) in x.iter_mut().zip(&wv) {
                            *xv = s.mul_add(wvv, xp, *xv);
                        }
                    }
                    wp = wp.add(PANEL);
                    co += job.plane as isize;
                }
            }
            for v in 0..VEC {
                let b = s.load(a.bias.add(v * l));
                for (row, x) in m.iter_mut().zip(&acc) {
                    *row = if job.last {
                        s.act(s.add(x[v], b), job.act)
                    } else {
                        x[v]
                    };
                }
                m[NP..l].fill(s.zero());
                s.transpose(&mut m[..l]);
                for (c, &row) in m[..l].iter().enumerate() {
                    let lane = v * l + c;
                    if (lo..hi).contains(&lane) {
                        s.store_n(a.out.add(lane * a.ostride), row, a.np);
                    }
                }
            }
        }
    }
}

/// Two panels (32 channels, one vector each: AVX-512 only) by `NP` pixels, run as an
/// isolated function ([`Simd::vectorize`]): per step two weight loads, `NP` input
/// broadcasts, `2 * NP` FMAs. Each output is one chain in the same order as in
/// [`CvTile`]; every lane of both panels is stored.
struct CvTile2<'a, const NP: usize>(CvArgs<'a, NP>, usize);

impl<'a, const NP: usize> CvTile2<'a, NP> {
    /// # Safety
    ///
    /// As [`CvTile::new`] for each of the two panels with `lanes == (0, 16)`: the
    /// second panel's weights at `w + pstride`, its bias at `bias + 16`, its outputs at
    /// `out + 16 * ostride`.
    #[inline(always)]
    unsafe fn new(a: CvArgs<'a, NP>, pstride: usize) -> Self {
        CvTile2(a, pstride)
    }
}

impl<const NP: usize> WithSimd for CvTile2<'_, NP> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (a, pstride) = (self.0, self.1);
        let job = a.job;
        let l = S::LANES;
        debug_assert!(l == PANEL && NP <= l && a.np <= NP);
        let mut acc = [[s.zero(); 2]; NP];
        let mut m = [s.zero(); 16];
        // SAFETY: (whole body) the pointers stay within the ranges `new`'s caller
        // guaranteed; only pixels `..np` of the 32 output planes are touched.
        unsafe {
            if !job.first {
                for v in 0..2 {
                    for (c, row) in m[..l].iter_mut().enumerate() {
                        *row = s.load_n(a.out.add((v * PANEL + c) * a.ostride), a.np);
                    }
                    s.transpose(&mut m[..l]);
                    for (x, &row) in acc.iter_mut().zip(&m) {
                        x[v] = row;
                    }
                }
            }
            let ptrs: [*const f32; NP] = core::array::from_fn(|p| a.src.offset(a.px[p]));
            for (t, &off) in job.taps.iter().enumerate() {
                let mut wp = a.w.add(t * job.wtap);
                let mut co = off;
                for _ in 0..job.cn {
                    let w0 = s.load(wp);
                    let w1 = s.load(wp.add(pstride));
                    for (x, &p) in acc.iter_mut().zip(&ptrs) {
                        let xp = s.bcast(p.offset(co));
                        x[0] = s.mul_add(w0, xp, x[0]);
                        x[1] = s.mul_add(w1, xp, x[1]);
                    }
                    wp = wp.add(PANEL);
                    co += job.plane as isize;
                }
            }
            for v in 0..2 {
                let b = s.load(a.bias.add(v * PANEL));
                for (row, x) in m.iter_mut().zip(&acc) {
                    *row = if job.last {
                        s.act(s.add(x[v], b), job.act)
                    } else {
                        x[v]
                    };
                }
                m[NP..l].fill(s.zero());
                s.transpose(&mut m[..l]);
                for (c, &row) in m[..l].iter().enumerate() {
                    s.store_n(a.out.add((v * PANEL + c) * a.ostride), row, a.np);
                }
            }
        }
    }
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
            cap,
            force,
            (0, panels),
            (0, d.oh * d.ow),
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

/// [`conv`] restricted to the output channels of weight panels `panels.0..panels.1`
/// (only for one group: with groups, `panels` must be all of them) and to the output
/// pixels `pixels.0..pixels.1` (`q = y * OW + x`; whole rows of [`flat`]`(d)` unless it
/// has one row): writes those pixels of the planes of those channels and nothing else.
/// Every choice (micro-kernel, band height and band boundaries, channel chunks, tile
/// shapes within a panel) is made from the whole layer, so each output value is computed
/// by the same operations in the same order as by [`conv`]; calls over disjoint panel
/// or pixel ranges can run on different threads.
///
/// # Safety
///
/// `out` points to `O*OH*OW` floats, of which this call may write the given pixels of
/// the planes of the channels of its panels (no other thread may access those during the
/// call).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_panels<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    packed: Packed<'_>,
    out: *mut f32,
    act: Act,
    cap: usize,
    force: Option<Plan>,
    panels: (usize, usize),
    pixels: (usize, usize),
) -> bool {
    let kk = d.kh * d.kw;
    let (cg, og) = (d.c / d.g, d.o / d.g);
    assert!(input.len() >= d.c * d.h * d.w);
    assert_eq!(packed.weight.len(), d.o.div_ceil(PANEL) * kk * cg);
    assert_eq!(packed.bias.len(), d.o.div_ceil(PANEL));
    assert!(
        panels.0 < panels.1 && panels.1 <= d.o.div_ceil(PANEL),
        "panel range {panels:?}"
    );
    assert!(
        d.g == 1 || panels == (0, d.o.div_ceil(PANEL)),
        "groups split by panels"
    );
    if kk > MAX_TAPS {
        return false;
    }
    // A 1x1, stride-1, unpadded convolution is a matrix product: its pixels form one row.
    let d = flat(d);
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let (q0, q1) = pixels;
    assert!(
        q0 < q1 && q1 <= ohw && (d.oh == 1 || (q0 % d.ow == 0 && q1 % d.ow == 0)),
        "pixel range {pixels:?}"
    );
    // Output rows of the range.
    let (ya, yb) = (q0 / d.ow, q1.div_ceil(d.ow));

    // Micro-kernel: the one filling more lanes (strides are fine for both: the band's
    // phase split makes a pixel tile's reads contiguous).
    let plan = force.unwrap_or_else(|| {
        let pv = d.ow as f64 / d.ow.next_multiple_of(S::LANES) as f64;
        let cv = og as f64 / og.next_multiple_of(PANEL) as f64;
        if pv >= cv {
            Plan::Pixels
        } else {
            Plan::Channels
        }
    });

    // Input source: direct when every tap is inside the input and the stride is 1.
    let direct = d.ph == 0
        && d.pw == 0
        && d.sw == 1
        && (d.oh - 1) * d.sh + (d.kh - 1) * d.dh < d.h
        && (d.ow - 1) * d.sw + (d.kw - 1) * d.dw < d.w;
    let wp = (d.ow - 1) * d.sw + (d.kw - 1) * d.dw + 1;
    let wq = wp.div_ceil(d.sw);
    let rowpitch = if direct { d.w } else { d.sw * wq };
    let rows_in = |r: usize| (r - 1) * d.sh + (d.kh - 1) * d.dh + 1;
    // Band height (output rows) and channel chunk.
    let (band_rows, chunk) = if direct {
        (d.oh, cg)
    } else if cg * rows_in(1) * rowpitch <= cap {
        let mut r = 1;
        while r < d.oh && cg * rows_in(r + 1) * rowpitch <= cap {
            r += 1;
        }
        (r, cg)
    } else {
        let cc = cap / (rows_in(1) * rowpitch);
        if cc == 0 {
            return false;
        }
        (1, cc)
    };

    // Tap offsets relative to a pixel's tap-0 offset.
    let mut taps_buf = [0isize; MAX_TAPS];
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            let (col, phase) = ((kx * d.dw) / d.sw, (kx * d.dw) % d.sw);
            taps_buf[ky * d.kw + kx] = (ky * d.dh * rowpitch + phase * wq + col) as isize;
        }
    }
    let taps = &taps_buf[..kk];

    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let scratch = scratch.as_mut_ptr().cast::<f32>();
    debug_assert!(cap <= SCRATCH);
    let weight = packed.weight.as_ptr().cast::<f32>();
    let bias = packed.bias.as_ptr().cast::<f32>();

    for g in 0..d.g {
        let gc0 = g * cg;
        // The group's output channels, or (one group) those of the panel range: `og`
        // stays the group's for the choices below, `ro` counts the channels looped over.
        let (go0, ro) = if d.g == 1 {
            let o0 = panels.0 * PANEL;
            (o0, (panels.1 * PANEL).min(d.o) - o0)
        } else {
            (g * og, og)
        };
        // The whole layer's bands that meet the range, cut to it.
        for yb0 in (ya - ya % band_rows..yb).step_by(band_rows) {
            // The whole band's pixels (the channel tiles are chosen from them).
            let band_px = ((yb0 + band_rows).min(d.oh) - yb0) * d.ow;
            let (y0, y1) = (yb0.max(ya), (yb0 + band_rows).min(yb));
            for c0 in (0..cg).step_by(chunk) {
                let c1 = (c0 + chunk).min(cg);
                let band = if direct {
                    Band {
                        // SAFETY: `gc0 + c0 < C`, inside `input`.
                        base: unsafe { input.as_ptr().add((gc0 + c0) * hw) },
                        plane: hw,
                        rowpitch,
                        prow0: 0,
                    }
                } else {
                    let prow0 = y0 * d.sh;
                    let nrows = rows_in(y1 - y0);
                    // SAFETY: `(c1 - c0) * nrows * rowpitch <= cap <= SCRATCH` by the
                    // choice of band height and chunk, so the copy stays in `scratch`.
                    unsafe {
                        copy_band(
                            s,
                            &d,
                            &input[(gc0 + c0) * hw..(gc0 + c1) * hw],
                            c1 - c0,
                            prow0,
                            nrows,
                            wq,
                            scratch,
                        )
                    };
                    Band {
                        base: scratch,
                        plane: nrows * rowpitch,
                        rowpitch,
                        prow0,
                    }
                };
                let job = Job {
                    taps,
                    cn: c1 - c0,
                    plane: band.plane,
                    wtap: PANEL * cg,
                    first: c0 == 0,
                    last: c1 == cg,
                    act,
                };
                // Weights of output channel `o`, lane `o % 16`, at this chunk's channel.
                let w_of = |o: usize| {
                    // SAFETY: `o < O` and `c0 < C/G`: inside the packed weights.
                    unsafe { weight.add(((o / PANEL) * kk * cg + c0) * PANEL + o % PANEL) }
                };
                match plan {
                    Plan::Pixels => {
                        let l = S::LANES;
                        // Tiles of two vectors: consecutive pixels of a row, or two rows
                        // when a row fits one vector; a single vector for what is left.
                        let mut y = y0;
                        while y < y1 {
                            let two_rows = d.ow <= l && y + 1 < y1;
                            let row_off = (y * d.sh - band.prow0) * band.rowpitch;
                            // Columns of this row in the range (all, unless one row).
                            let xa = q0.max(y * d.ow) - y * d.ow;
                            let xb = q1.min((y + 1) * d.ow) - y * d.ow;
                            let mut x0 = xa;
                            while x0 < xb {
                                // AVX-512, four full vectors left: 4-vector tiles of up to 6
                                // channels (4 loads and 6 broadcasts per 24 FMAs), while the
                                // input strip they share (`cn` channels by `KH` rows of 4
                                // vectors) stays within about 24 KiB of L1.
                                let wide = S::LANES == 16
                                    && !two_rows
                                    && xb - x0 >= 4 * l
                                    && job.cn * d.kh <= 96;
                                let (nv, mask, n, vsrc, vout, step) = if wide {
                                    (4, FULL, l, l, l, 4 * l)
                                } else if two_rows {
                                    let mask = if d.ow == l { FULL } else { ALL_PARTIAL };
                                    (2, mask, d.ow, d.sh * band.rowpitch, d.ow, d.ow)
                                } else {
                                    let step = (2 * l).min(xb - x0);
                                    let nv = step.div_ceil(l);
                                    let n = step - (nv - 1) * l;
                                    let mask = if n == l { FULL } else { LAST_PARTIAL };
                                    (nv, mask, n, l, l, step)
                                };
                                // SAFETY: pixel (y, x0) of the band.
                                let src = unsafe { band.base.add(row_off + x0) };
                                let mut o = go0;
                                while o < go0 + ro {
                                    // Tiles never straddle a panel.
                                    let in_panel = (o / PANEL + 1) * PANEL - o;
                                    let max_mr = if wide { 6 } else { S::PV_MR };
                                    let mr = next_mr((go0 + ro - o).min(in_panel), max_mr);
                                    // SAFETY: the tile reads taps of its pixels (row y, or
                                    // rows y and y + 1, columns x0.. for the lanes used) of
                                    // the band for its `cn` channels (inside the input or
                                    // the copied band: `direct` checked the extents, the
                                    // band holds rows_in rows of `wq` columns per phase),
                                    // `mr <= 16 - o % 16` weight lanes, and writes those
                                    // pixels of `mr` output planes.
                                    unsafe {
                                        let a = PvArgs {
                                            job: &job,
                                            w: w_of(o),
                                            src,
                                            vsrc,
                                            out: out.add(o * ohw + y * d.ow + x0),
                                            vout,
                                            ostride: ohw,
                                            bias: bias.add(o),
                                            n,
                                        };
                                        if wide {
                                            pv4_call(s, mr, a);
                                        } else {
                                            pv_call(s, mr, nv, mask, a);
                                        }
                                    }
                                    o += mr;
                                }
                                x0 += step;
                            }
                            y += if two_rows { 2 } else { 1 };
                        }
                    }
                    Plan::Channels => {
                        // (vectors per panel, pixels per tile) of each level.
                        let (qa, qb) = (q0.max(y0 * d.ow), q1.min(y1 * d.ow));
                        let args = (s, &d, &job, &band, qa, qb, go0, ro, w_of, bias, out);
                        let npx = band_px;
                        // AVX-512 single panels: 16 or 12 pixels a tile, whichever pads
                        // less; with at least two panels a group and no more padding,
                        // 32 channels by 8 pixels (two weight loads and 8 broadcasts per
                        // 16 FMAs, instead of one and 16 per 16). Twelve pixels by two
                        // panels runs out of registers.
                        let np1 = if S::CV_NP == 16
                            && npx.next_multiple_of(12) < npx.next_multiple_of(16)
                        {
                            12
                        } else {
                            S::CV_NP
                        };
                        let pair = S::CV_NP == 16
                            && og >= 2 * PANEL
                            && npx.next_multiple_of(8) <= npx.next_multiple_of(np1);
                        let np = if pair { 8 } else { np1 };
                        match (PANEL / S::LANES, np, pair) {
                            (1, 8, true) => cv_rows::<S, 1, 8, 2>(args),
                            (1, 16, _) => cv_rows::<S, 1, 16, 1>(args),
                            (1, 12, _) => cv_rows::<S, 1, 12, 1>(args),
                            (2, 6, _) => cv_rows::<S, 2, 6, 1>(args),
                            (4, 2, _) => cv_rows::<S, 4, 2, 1>(args),
                            shape => unreachable!("no channel tile of shape {shape:?}"),
                        }
                    }
                }
            }
        }
    }
    true
}

/// The channel-vectorised pass over output pixels `q0..q1` (rows of one band) of one
/// group and chunk.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::type_complexity)]
fn cv_rows<S: Simd, const VEC: usize, const NP: usize, const PN: usize>(
    (s, d, job, band, q0, q1, go0, og, w_of, bias, out): (
        S,
        &Dims2d,
        &Job<'_>,
        &Band,
        usize,
        usize,
        usize,
        usize,
        impl Fn(usize) -> *const f32,
        *const f32,
        *mut f32,
    ),
) {
    let ohw = d.oh * d.ow;
    for qb in (q0..q1).step_by(NP) {
        let np = NP.min(q1 - qb);
        // A short last tile repeats its last pixel (computed, never stored).
        let mut px = [0isize; NP];
        for (p, off) in px.iter_mut().enumerate() {
            let q = qb + p.min(np - 1);
            let (y, x) = (q / d.ow, q % d.ow);
            *off = ((y * d.sh - band.prow0) * band.rowpitch + x) as isize;
        }
        let first_panel = go0 / PANEL;
        let last_panel = (go0 + og - 1) / PANEL;
        let mut panel = first_panel;
        while panel <= last_panel {
            let p0 = panel * PANEL;
            if PN == 2 && VEC == 1 && go0 <= p0 && p0 + 2 * PANEL <= go0 + og {
                // Two whole panels of the group at once.
                // SAFETY: as below, for the 32 channels p0..p0 + 32, all of the group:
                // the second panel's weights are `KH*KW*C/G` rows after the first's,
                // its bias row follows the first's, its outputs 16 planes further.
                unsafe {
                    let a = CvArgs {
                        job,
                        w: w_of(p0),
                        src: band.base,
                        px: &px,
                        bias: bias.add(p0),
                        out: out.add(p0 * ohw + qb),
                        ostride: ohw,
                        lanes: (0, PANEL),
                        np,
                    };
                    let pstride = w_of(p0 + PANEL).offset_from(w_of(p0)) as usize;
                    s.vectorize(CvTile2::<NP>::new(a, pstride));
                }
                panel += 2;
                continue;
            }
            panel += 1;
            let lanes = (go0.max(p0) - p0, (go0 + og).min(p0 + PANEL) - p0);
            // Lanes of other groups sharing the panel compute garbage, never stored.
            // SAFETY: `p0 < O` and `qb < OH*OW`, so the pointers are inside the output
            // and bias; the tile reads pixels of the band with every tap inside it (see
            // `conv`), the panel's 16 weight lanes from its first row, its bias row, and
            // touches `np` outputs of the group's channels of the panel.
            unsafe {
                let a = CvArgs {
                    job,
                    w: w_of(p0),
                    src: band.base,
                    px: &px,
                    bias: bias.add(p0),
                    out: out.add(p0 * ohw + qb),
                    ostride: ohw,
                    lanes,
                    np,
                };
                s.vectorize(CvTile::<VEC, NP>::new(a));
            }
        }
    }
}

/// `dst[..n] = src[..n]` with vector moves (short rows: no library call).
///
/// # Safety
///
/// `src..src + n` readable, `dst..dst + n` writable.
#[inline(always)]
unsafe fn copy_floats<S: Simd>(s: S, src: *const f32, dst: *mut f32, n: usize) {
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

/// `dst[..n] = 0` with vector stores.
///
/// # Safety
///
/// `dst..dst + n` writable.
#[inline(always)]
unsafe fn zero_floats<S: Simd>(s: S, dst: *mut f32, n: usize) {
    let l = S::LANES;
    let mut i = 0;
    // SAFETY: every store is below `n`.
    unsafe {
        while i + l <= n {
            s.store(dst.add(i), s.zero());
            i += l;
        }
        if i < n {
            s.store_n(dst.add(i), s.zero(), n - i);
        }
    }
}

/// Copies channels `input[0..nch]` (planes of `H*W`), padded rows `prow0..prow0+nrows`
/// (padded row `r` is input row `r - PH`, zero outside), each row split into `SW`
/// phases of `wq` columns (phase `q`, column `j` is padded column `j*SW + q`, input column
/// `j*SW + q - PW`, zero outside), to `dst` as `[nch][nrows][SW][wq]`, writing every one
/// of those floats (`dst` may be uninitialised). Stride 2 is split with vector
/// deinterleaves.
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
) {
    let l = S::LANES;
    let rowpitch = d.sw * wq;
    let hw = d.h * d.w;
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
                    zero_floats(s, row, rowpitch);
                    continue;
                }
                let src = &plane[iy * d.w..(iy + 1) * d.w];
                if d.sw == 1 {
                    // Padded columns [0, PW) zero, then the input row, then zeros.
                    let left = d.pw.min(wq);
                    let n = d.w.min(wq - left);
                    zero_floats(s, row, left);
                    copy_floats(s, src.as_ptr(), row.add(left), n);
                    zero_floats(s, row.add(left + n), wq - left - n);
                    continue;
                }
                // Scalar element of phase q, column j.
                let put = |q: usize, j: usize| {
                    let ix = (j * d.sw + q).wrapping_sub(d.pw);
                    row.add(q * wq + j)
                        .write(if ix < d.w { src[ix] } else { 0.0 });
                };
                let mut j0 = 0;
                if d.sw == 2 {
                    // Columns j whose two inputs 2j - PW, 2j + 1 - PW are both inside,
                    // `l` (or fewer, masked) at a time: [jlo, jhi).
                    let jlo = d.pw.div_ceil(2).min(wq);
                    let jhi = ((d.w + d.pw) / 2).min(wq).max(jlo);
                    for j in 0..jlo {
                        put(0, j);
                        put(1, j);
                    }
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
                    j0 = jhi;
                }
                for q in 0..d.sw {
                    for j in j0..wq {
                        put(q, j);
                    }
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

/// One band of one depthwise channel: where it reads and writes.
#[derive(Clone, Copy)]
struct DwArgs<'a> {
    /// Tap offsets in the source.
    taps: &'a [isize],
    /// The channel's `taps.len()` weights.
    w: *const f32,
    /// The band's first output row's first pixel at tap 0.
    src: *const f32,
    /// Distance in the source between consecutive output rows.
    src_row: usize,
    /// The band's first output.
    out: *mut f32,
    /// Output rows and columns of the band.
    rows: usize,
    ow: usize,
    bias: f32,
    act: Act,
}

/// A band of output rows of one depthwise channel, run as one isolated function
/// ([`Simd::vectorize`]): each row in tiles of four vectors, then what is left.
struct DwBand<'a>(DwArgs<'a>);

impl<'a> DwBand<'a> {
    /// # Safety
    ///
    /// For every output row `y < rows`, column `x < ow` and tap offset `off`,
    /// `src + y * src_row + x + off` must be readable; `w` readable for `taps.len()`
    /// floats; `out .. out + rows * ow` writable.
    #[inline(always)]
    unsafe fn new(a: DwArgs<'a>) -> Self {
        DwBand(a)
    }
}

/// `R` rows by `NV` vectors of consecutive outputs of one depthwise channel (the last
/// vector of each row `n_last` lanes when `PARTIAL`): `R * NV` independent chains, each
/// in tap order.
///
/// # Safety
///
/// As [`DwBand::new`] for these pixels (rows `0..R` from `src`/`out`).
#[inline(always)]
unsafe fn dw_tile<S: Simd, const R: usize, const NV: usize, const PARTIAL: bool>(
    s: S,
    a: &DwArgs<'_>,
    src: *const f32,
    out: *mut f32,
    n_last: usize,
) {
    let l = S::LANES;
    let mut acc = [[s.zero(); NV]; R];
    // SAFETY: (whole body) within the ranges the caller guarantees.
    unsafe {
        for (t, &off) in a.taps.iter().enumerate() {
            let wt = s.bcast(a.w.add(t));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let sp = src.add(r * a.src_row).offset(off);
                for (v, x) in acc_r.iter_mut().enumerate() {
                    let xin = if PARTIAL && v == NV - 1 {
                        s.load_n(sp.add(v * l), n_last)
                    } else {
                        s.load(sp.add(v * l))
                    };
                    *x = s.mul_add(wt, xin, *x);
                }
            }
        }
        let b = s.splat(a.bias);
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &x) in acc_r.iter().enumerate() {
                let y = s.act(s.add(x, b), a.act);
                let p = out.add(r * a.ow + v * l);
                if PARTIAL && v == NV - 1 {
                    s.store_n(p, y, n_last);
                } else {
                    s.store(p, y);
                }
            }
        }
    }
}

/// Rows `y..` of a band in tiles of `R` rows (while they last, then single rows) by up
/// to `NV` vectors.
///
/// # Safety
///
/// As [`DwBand::new`].
#[inline(always)]
unsafe fn dw_rows<S: Simd, const R: usize, const NV: usize>(s: S, a: &DwArgs<'_>) {
    let l = S::LANES;
    let mut y = 0;
    while y < a.rows {
        let r = if y + R <= a.rows { R } else { 1 };
        // SAFETY: rows y..y + r of the band, columns below `ow` (`new`'s contract).
        unsafe {
            let src = a.src.add(y * a.src_row);
            let out = a.out.add(y * a.ow);
            let mut x0 = 0;
            while x0 + NV * l <= a.ow {
                if r == R {
                    dw_tile::<S, R, NV, false>(s, a, src.add(x0), out.add(x0), l);
                } else {
                    dw_tile::<S, 1, NV, false>(s, a, src.add(x0), out.add(x0), l);
                }
                x0 += NV * l;
            }
            let left = a.ow - x0;
            if left > 0 {
                let (src, out) = (src.add(x0), out.add(x0));
                let nv = left.div_ceil(l);
                let n_last = left - (nv - 1) * l;
                macro_rules! tail {
                    ($nv:literal) => {
                        if r == R {
                            dw_tile::<S, R, $nv, true>(s, a, src, out, n_last)
                        } else {
                            dw_tile::<S, 1, $nv, true>(s, a, src, out, n_last)
                        }
                    };
                }
                match nv {
                    1 => tail!(1),
                    2 => tail!(2),
                    3 => tail!(3),
                    _ => tail!(4),
                }
            }
        }
        y += r;
    }
}

impl WithSimd for DwBand<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let l = S::LANES;
        // About twelve independent chains per tile: rows of one to four vectors.
        // SAFETY: `new`'s contract.
        unsafe {
            match a.ow.div_ceil(l) {
                1 => dw_rows::<S, 8, 1>(s, &a),
                2 => dw_rows::<S, 6, 2>(s, &a),
                3 => dw_rows::<S, 4, 3>(s, &a),
                _ => dw_rows::<S, 3, 4>(s, &a),
            }
        }
    }
}

/// Depthwise convolution (`d.g == d.c == d.o`) with weights `[C][KH*KW]` and bias `[C]`:
/// per channel, pixel-vectorised rows of up to four vectors, reading the input directly
/// or a padded, phase-split band as [`conv`] does. `false` (nothing written) when it needs
/// the fallback.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: &mut [f32],
    act: Act,
    cap: usize,
) -> bool {
    let kk = d.kh * d.kw;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    assert!(input.len() >= d.c * hw && output.len() >= d.c * ohw);
    assert!(weight.len() == d.c * kk && bias.len() == d.c);
    if kk > MAX_TAPS {
        return false;
    }
    let direct = d.ph == 0
        && d.pw == 0
        && d.sw == 1
        && (d.oh - 1) * d.sh + (d.kh - 1) * d.dh < d.h
        && (d.ow - 1) * d.sw + (d.kw - 1) * d.dw < d.w;
    let wp = (d.ow - 1) * d.sw + (d.kw - 1) * d.dw + 1;
    let wq = wp.div_ceil(d.sw);
    let rowpitch = if direct { d.w } else { d.sw * wq };
    let rows_in = |r: usize| (r - 1) * d.sh + (d.kh - 1) * d.dh + 1;
    let band_rows = if direct {
        d.oh
    } else {
        if rows_in(1) * rowpitch > cap {
            return false;
        }
        let mut r = 1;
        while r < d.oh && rows_in(r + 1) * rowpitch <= cap {
            r += 1;
        }
        r
    };
    let mut taps_buf = [0isize; MAX_TAPS];
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            let (col, phase) = ((kx * d.dw) / d.sw, (kx * d.dw) % d.sw);
            taps_buf[ky * d.kw + kx] = (ky * d.dh * rowpitch + phase * wq + col) as isize;
        }
    }
    let taps = &taps_buf[..kk];
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let scratch = scratch.as_mut_ptr().cast::<f32>();
    for c in 0..d.c {
        let plane = &input[c * hw..(c + 1) * hw];
        let w = weight[c * kk..].as_ptr();
        let out = output[c * ohw..(c + 1) * ohw].as_mut_ptr();
        for y0 in (0..d.oh).step_by(band_rows) {
            let y1 = (y0 + band_rows).min(d.oh);
            let (base, prow0) = if direct {
                (plane.as_ptr(), 0)
            } else {
                let prow0 = y0 * d.sh;
                // SAFETY: `rows_in(y1 - y0) * rowpitch <= cap <= SCRATCH`.
                unsafe { copy_band(s, &d, plane, 1, prow0, rows_in(y1 - y0), wq, scratch) };
                (scratch.cast_const(), prow0)
            };
            // SAFETY: rows y0..y1 of the channel with every tap inside the input
            // (`direct`) or the copied band (rows_in rows of wq columns per phase), `kk`
            // weights of channel c, rows y0..y1 of its output plane.
            unsafe {
                let a = DwArgs {
                    taps,
                    w,
                    src: base.add((y0 * d.sh - prow0) * rowpitch),
                    src_row: d.sh * rowpitch,
                    out: out.add(y0 * d.ow),
                    rows: y1 - y0,
                    ow: d.ow,
                    bias: bias[c],
                    act,
                };
                s.vectorize(DwBand::new(a));
            }
        }
    }
    true
}

/// One band of one block of `LANES` depthwise channels in channel-vectorised form:
/// where it reads and writes.
#[derive(Clone, Copy)]
struct DwCvArgs<'a> {
    d: &'a Dims2d,
    /// The block's first input channel plane.
    input: *const f32,
    /// Channels in the block (`<= LANES`).
    nch: usize,
    /// The block's weights: tap `t` at `w + 16 * t` (`nch` lanes, zero padded to LANES).
    w: *const f32,
    /// The block's bias (`LANES` floats, zero padded).
    bias: *const f32,
    /// The block's first output channel plane.
    out: *mut f32,
    /// Output rows `y0..y1` of this band.
    y0: usize,
    y1: usize,
    /// Padded columns of the band (`(OW-1)*SW + (KW-1)*DW + 1`).
    wp: usize,
    /// Tap offsets in the transposed band (in floats).
    taps: &'a [isize],
    /// `rows_in(y1 - y0) * wp * LANES` writable floats.
    scratch: *mut f32,
    act: Act,
}

/// A band of depthwise output rows for `LANES` channels at once, run as one isolated
/// function ([`Simd::vectorize`]): the padded input band is transposed into
/// `[row][column][channel]` in the scratch buffer, `LANES` output pixels accumulate a
/// channel vector each (tap weights are channel vectors too), and the tile is transposed
/// back on the way to the channel-major output. Suits small maps, where per-channel rows
/// are too short to fill vectors.
struct DwCvBand<'a, const G: usize>(DwCvArgs<'a>);

impl<'a, const G: usize> DwCvBand<'a, G> {
    /// # Safety
    ///
    /// `input` holds `nch` planes of `H*W`, `out` `nch` planes of `OH*OW`; `w` holds
    /// `16 * taps.len()` floats, `bias` `LANES`; `scratch` is writable for
    /// `rows_in(y1 - y0) * wp * LANES` floats and every tap offset of every output pixel
    /// of the band lands inside it.
    #[inline(always)]
    unsafe fn new(a: DwCvArgs<'a>) -> Self {
        DwCvBand(a)
    }
}

impl<const G: usize> WithSimd for DwCvBand<'_, G> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let d = a.d;
        let l = S::LANES;
        let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
        let prow0 = a.y0 * d.sh;
        let nrows = (a.y1 - a.y0 - 1) * d.sh + (d.kh - 1) * d.dh + 1;
        let mut m = [s.zero(); 16];
        // SAFETY: (whole body) reads of `nch` input planes inside their rows, writes of
        // `nrows * wp * l` scratch floats, reads of the scratch at tap offsets of band
        // pixels (inside it by `new`'s contract), `LANES`-float weight and bias loads,
        // `n`-pixel stores to the `nch` output planes.
        unsafe {
            // Transposed, zero-padded band: pixel (r, col) at scratch + (r * wp + col) * l.
            let left = d.pw.min(a.wp);
            let n_in = d.w.min(a.wp - left);
            for r in 0..nrows {
                let row = a.scratch.add(r * a.wp * l);
                let iy = (prow0 + r).wrapping_sub(d.ph);
                if iy >= d.h {
                    zero_floats(s, row, a.wp * l);
                    continue;
                }
                zero_floats(s, row, left * l);
                let mut x0 = 0;
                while x0 < n_in {
                    let n = l.min(n_in - x0);
                    for (c, v) in m[..l].iter_mut().enumerate() {
                        *v = if c < a.nch {
                            let p = a.input.add(c * hw + iy * d.w + x0);
                            if n == l {
                                s.load(p)
                            } else {
                                s.load_n(p, n)
                            }
                        } else {
                            s.zero()
                        };
                    }
                    s.transpose(&mut m[..l]);
                    for (j, &v) in m[..n].iter().enumerate() {
                        s.store(row.add((left + x0 + j) * l), v);
                    }
                    x0 += n;
                }
                zero_floats(s, row.add((left + n_in) * l), (a.wp - left - n_in) * l);
            }
            // Output pixels `l` at a time (flat, across rows), in groups of `G` pixels
            // accumulated side by side (taps outer, 3x3 weights in registers; each pixel
            // one chain in tap order: the same sums as the convolution engine), then bias,
            // activation, and the transpose back.
            let bias = s.load(a.bias);
            let three = d.kh == 3 && d.kw == 3;
            let mut w9 = [s.zero(); 9];
            if three {
                for (t, wt) in w9.iter_mut().enumerate() {
                    *wt = s.load(a.w.add(PANEL * t));
                }
            }
            let (rs, cs) = (d.dh * a.wp * l, d.dw * l);
            let (q0, q1) = (a.y0 * d.ow, a.y1 * d.ow);
            let (mut y, mut x) = (a.y0, 0);
            let mut q = q0;
            while q < q1 {
                let n = l.min(q1 - q);
                let mut j = 0;
                while j < n {
                    let g = G.min(n - j);
                    // 3x3, unit column dilation, column stride 1 or 2, a whole group in
                    // one output row: each band column loaded once per kernel row.
                    if three && d.dw == 1 && d.sw == 1 && g == G && x + G <= d.ow {
                        let p = a.scratch.add(((y * d.sh - prow0) * a.wp + x * d.sw) * l);
                        let acc = dw3_slide::<S, G, 1>(s, p, &w9, rs);
                        m[j..j + G].copy_from_slice(&acc);
                        x += G;
                        if x == d.ow {
                            x = 0;
                            y += 1;
                        }
                        j += G;
                        continue;
                    }
                    // A short group repeats its last pixel (computed, never kept).
                    let mut ps = [a.scratch.cast_const(); G];
                    for k in 0..G {
                        if k >= g {
                            ps[k] = ps[g - 1];
                            continue;
                        }
                        ps[k] = a.scratch.add(((y * d.sh - prow0) * a.wp + x * d.sw) * l);
                        x += 1;
                        if x == d.ow {
                            x = 0;
                            y += 1;
                        }
                    }
                    let mut acc = [s.zero(); G];
                    if three {
                        for (v, &p) in acc.iter_mut().zip(&ps) {
                            *v = s.mul(w9[0], s.load(p));
                        }
                        for (t, &wt) in w9.iter().enumerate().skip(1) {
                            let off = (t / 3) * rs + (t % 3) * cs;
                            for (v, &p) in acc.iter_mut().zip(&ps) {
                                *v = s.mul_add(wt, s.load(p.add(off)), *v);
                            }
                        }
                    } else {
                        for (t, &off) in a.taps.iter().enumerate() {
                            let wt = s.load(a.w.add(PANEL * t));
                            for (v, &p) in acc.iter_mut().zip(&ps) {
                                *v = s.mul_add(wt, s.load(p.offset(off)), *v);
                            }
                        }
                    }
                    m[j..j + g].copy_from_slice(&acc[..g]);
                    j += g;
                }
                for v in m[..n].iter_mut() {
                    *v = s.act(s.add(*v, bias), a.act);
                }
                for v in m[n..l].iter_mut() {
                    *v = s.zero();
                }
                s.transpose(&mut m[..l]);
                for (c, &v) in m[..a.nch].iter().enumerate() {
                    let p = a.out.add(c * ohw + q);
                    if n == l {
                        s.store(p, v);
                    } else {
                        s.store_n(p, v, n);
                    }
                }
                q += n;
            }
        }
    }
}

/// `G` consecutive output pixels of one row of a 3x3 depthwise convolution with unit
/// column dilation and column stride `SW`, in the transposed band (pixel vectors `LANES`
/// floats apart): for each kernel row, the `(G-1)*SW + 3` band columns the group covers are
/// loaded once and each multiplied into the pixels it is a tap of. Every pixel's sum is
/// one chain in tap order (the product for tap 0, then fused multiply-adds), as in the
/// per-pixel path.
///
/// # Safety
///
/// `p + ky * rs + c * LANES .. + LANES` readable for `ky < 3`, `c < (G-1)*SW + 3`.
#[inline(always)]
unsafe fn dw3_slide<S: Simd, const G: usize, const SW: usize>(
    s: S,
    p: *const f32,
    w9: &[S::V; 9],
    rs: usize,
) -> [S::V; G] {
    let l = S::LANES;
    let mut acc = [s.zero(); G];
    for ky in 0..3 {
        for c in 0..(G - 1) * SW + 3 {
            // SAFETY: kernel row `ky`, column `c` of the group (the caller's contract).
            let v = unsafe { s.load(p.add(ky * rs + c * l)) };
            for (k, x) in acc.iter_mut().enumerate() {
                let kx = c.wrapping_sub(k * SW);
                if kx < 3 {
                    *x = if ky == 0 && kx == 0 {
                        s.mul(w9[0], v)
                    } else {
                        s.mul_add(w9[ky * 3 + kx], v, *x)
                    };
                }
            }
        }
    }
    acc
}

/// Depthwise convolution in channel-vectorised form (see [`DwCvBand`]) with weights
/// `[ceil(C/16)][KH*KW][16]` and bias `[ceil(C/16)][16]`: `false` (nothing written) when
/// a one-row band of `LANES` channels does not fit `cap`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_channels<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    weight: &[Row16],
    bias: &[Row16],
    output: &mut [f32],
    act: Act,
    cap: usize,
) -> bool {
    let l = S::LANES;
    let kk = d.kh * d.kw;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    assert!(input.len() >= d.c * hw && output.len() >= d.c * ohw);
    assert!(weight.len() == d.c.div_ceil(PANEL) * kk && bias.len() == d.c.div_ceil(PANEL));
    if kk > MAX_TAPS {
        return false;
    }
    let wp = (d.ow - 1) * d.sw + (d.kw - 1) * d.dw + 1;
    let rows_in = |r: usize| (r - 1) * d.sh + (d.kh - 1) * d.dh + 1;
    if rows_in(1) * wp * l > cap {
        return false;
    }
    let mut band_rows = 1;
    while band_rows < d.oh && rows_in(band_rows + 1) * wp * l <= cap {
        band_rows += 1;
    }
    let mut taps_buf = [0isize; MAX_TAPS];
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            taps_buf[ky * d.kw + kx] = ((ky * d.dh * wp + kx * d.dw) * l) as isize;
        }
    }
    let taps = &taps_buf[..kk];
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let scratch = scratch.as_mut_ptr().cast::<f32>();
    let weight = weight.as_ptr().cast::<f32>();
    let bias = bias.as_ptr().cast::<f32>();
    for c0 in (0..d.c).step_by(l) {
        let nch = l.min(d.c - c0);
        for y0 in (0..d.oh).step_by(band_rows) {
            let y1 = (y0 + band_rows).min(d.oh);
            // SAFETY: channels c0..c0+nch of the input and output; the block's weights
            // (lanes c0 % 16.. of its panel's tap rows) and bias; the band needs
            // `rows_in(y1 - y0) * wp * l <= cap <= SCRATCH` floats, and every tap of every
            // output pixel of the band lands in it (rows below rows_in, columns below wp).
            unsafe {
                let a = DwCvArgs {
                    d: &d,
                    input: input.as_ptr().add(c0 * hw),
                    nch,
                    w: weight.add((c0 / PANEL) * kk * PANEL + c0 % PANEL),
                    bias: bias.add(c0),
                    out: output.as_mut_ptr().add(c0 * ohw),
                    y0,
                    y1,
                    wp,
                    taps,
                    scratch,
                    act,
                };
                // Groups of 8 pixels (4 on the 4-lane level) keep 8 chains in flight.
                if l >= 8 {
                    s.vectorize(DwCvBand::<8>::new(a));
                } else {
                    s.vectorize(DwCvBand::<4>::new(a));
                }
            }
        }
    }
    true
}
