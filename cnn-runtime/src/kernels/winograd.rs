//! Winograd F(4x4, 3x3) convolution for 3x3, stride-1, dilation-1, ungrouped layers.
//!
//! A 4x4 block of outputs of one channel pair needs a 6x6 block of input. Winograd's
//! minimal filtering computes it as `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` with the standard
//! interpolation points `0, ±1, ±2, ∞`: 36 multiplications instead of 144. Summed over
//! the input channels, each of the 36 positions `ξ` of the transformed domain is a
//! matrix product `M[ξ] = V[ξ] · U[ξ]` (`[tiles x C] · [C x O]`), so the multiply count
//! of the layer drops by 4x; the transforms are additions and a few constant products.
//!
//! * **Weights** are transformed at load time ([`WinogradParams::from_torch`], in f64,
//!   batch norm folded in) and packed like the direct engine's: panels of 16 output
//!   channels, `[36][ceil(O/16)][C][16]`.
//! * **Input transform**, per input channel and tile row, vectorised over tiles: each
//!   padded input row is split into its four column phases with vector deinterleaves
//!   (tile `tx` reads columns `4tx..4tx+6`: phases 0..3 at `tx` and 0, 1 at `tx + 1`),
//!   then `Bᵀ d B` is a handful of vector adds and FMAs. `V` is `[36][C][tiles]`.
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
//! Dilation other than 1 is not handled (the dispatch keeps those layers on the direct
//! engine). F(2x2, 3x3) and F(6x6, 3x3) are not implemented: F(4x4) keeps every output
//! within the conformance tolerance at 512 input channels, and small maps (8x8, 7x7) still
//! get 3-4x fewer multiplications.

#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};
#[cfg(feature = "std")]
use std::cell::Cell;

use super::activation::Act;
#[cfg(feature = "alloc")]
use super::engine::pack_bias;
use super::engine::{Row16, PANEL};
#[cfg(feature = "alloc")]
use super::norm::fold_bn;
use super::norm::Affine;
use super::simd::{self, Simd, WithSimd};
use crate::buf::Buf;
use crate::cpu::{self, Level};

/// Output tile side.
const M: usize = 4;
/// Input tile side (`M + 2`).
const ALPHA: usize = 6;
/// Positions of the transformed domain.
const XI: usize = ALPHA * ALPHA;
/// Target floats of `V` plus `M` per block of tile rows (about 1 MiB).
const BLOCK_FLOATS: usize = 256 * 1024;

/// `G` of F(4, 3): the filter transform, `U = G g Gᵀ`.
const G: [[f64; 3]; ALPHA] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Weights and bias of a 3x3 convolution, transformed and packed for
/// [`winograd_conv3x3`] at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct WinogradParams {
    /// Output channels.
    out: usize,
    /// Input channels.
    in_channels: usize,
    /// `[36][ceil(out/16)][in_channels]` rows of 16 output channels: `G g Gᵀ` of each
    /// filter, batch norm folded in, zeros past `out`.
    weight: Buf<Row16>,
    /// `[ceil(out/16)][16]`, batch norm folded in, zeros past `out`.
    bias: Buf<Row16>,
}

#[cfg(feature = "alloc")]
impl crate::buf::Embed for WinogradParams {
    fn parts(&self) -> crate::buf::Parts {
        use crate::buf::row_bytes;
        crate::buf::Parts {
            dims: alloc::vec![self.out, self.in_channels],
            bufs: alloc::vec![
                (true, row_bytes(&self.weight)),
                (true, row_bytes(&self.bias))
            ],
        }
    }
}

impl WinogradParams {
    #[cfg(feature = "alloc")]
    /// Builds the parameters from a PyTorch `Conv2d` weight `[out, in_channels, 3, 3]`
    /// (groups 1) and its optional bias `[out]`; `bn` is a batch norm that follows the
    /// convolution, folded in as in [`ConvParams::from_torch`](super::conv::ConvParams::from_torch).
    /// The filter transform is computed in f64 and rounded once.
    ///
    /// # Panics
    ///
    /// If a length does not match the dimensions (the caller has checked them).
    pub fn from_torch(
        out: usize,
        in_channels: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&Affine>,
    ) -> WinogradParams {
        let (weight, bias) = fold_bn(out, in_channels * 9, weight, bias, bn);
        let panels = out.div_ceil(PANEL);
        let mut u = vec![Row16([0.0; PANEL]); XI * panels * in_channels];
        for o in 0..out {
            for c in 0..in_channels {
                let g = &weight[(o * in_channels + c) * 9..][..9];
                let t = transform_filter(g);
                for (xi, &v) in t.iter().enumerate() {
                    u[(xi * panels + o / PANEL) * in_channels + c].0[o % PANEL] = v as f32;
                }
            }
        }
        WinogradParams {
            out,
            in_channels,
            weight: u.into(),
            bias: pack_bias(out, &bias).into(),
        }
    }

    /// Parameters computed at compile time ([`crate::buf::Embed`]): dims
    /// `[out, in_channels]`, the transformed weight and bias panels.
    #[doc(hidden)]
    pub const fn from_static(
        dims: [usize; 2],
        weight: &'static [Row16],
        bias: &'static [Row16],
    ) -> WinogradParams {
        let [out, in_channels] = dims;
        WinogradParams {
            out,
            in_channels,
            weight: Buf::Static(weight),
            bias: Buf::Static(bias),
        }
    }
}

/// `G g Gᵀ` of one 3x3 filter (row-major), in f64: 36 values, row-major 6x6.
fn transform_filter(g: &[f32]) -> [f64; XI] {
    // gg = G g: 6x3.
    let mut gg = [[0.0f64; 3]; ALPHA];
    for (i, row) in gg.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = (0..3).map(|k| G[i][k] * f64::from(g[k * 3 + j])).sum();
        }
    }
    let mut u = [0.0f64; XI];
    for i in 0..ALPHA {
        for j in 0..ALPHA {
            u[i * ALPHA + j] = (0..3).map(|k| gg[i][k] * G[j][k]).sum();
        }
    }
    u
}

/// Whether Winograd F(4x4, 3x3) is expected to beat the direct engine on one core for a
/// 3x3, stride-1, dilation-1, ungrouped convolution of `c` input channels on an `h` x
/// `w` map with `o` output channels (padding 1 or 0 makes no difference here).
///
/// A pure function of the numbers, so that the compiler can call it at macro-expansion
/// time. Tuned from the measurements in this module's `speed` test on an AVX-512 core:
/// Winograd needs enough channels on both sides to amortise its transforms, and enough
/// tiles per channel pair for its 4x larger transformed weights not to turn the layer
/// into a weight-streaming one.
pub const fn winograd_pays(c: usize, h: usize, w: usize, o: usize) -> bool {
    /// Per-core L2 of the machine the rule was measured on.
    const L2: usize = 2 << 20;
    let tiles = h.div_ceil(M) * w.div_ceil(M);
    let (direct_bytes, winograd_bytes) = (9 * 4 * c * o, XI * 4 * c * o);
    // Enough channels on both sides to amortise the transforms (32 -> 32 breaks even).
    let enough_channels = c >= 32 && o >= 32 && c * o >= 64 * 64;
    // Few tiles per weight and the 4x larger transformed weights leave L2 while the
    // direct engine's stay: streaming them costs more than the multiplications saved.
    let weight_bound = tiles < 16 && direct_bytes <= L2 && winograd_bytes > L2;
    enough_channels && !weight_bound
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
}

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
    /// Offsets in the (64-byte aligned) scratch of the phase rows, the padded line, `V`
    /// and `M`, and the total length.
    phase: usize,
    line: usize,
    v: usize,
    m: usize,
    len: usize,
}

impl Layout {
    fn new(d: &WgDims) -> Layout {
        let (th, tw) = (d.oh.div_ceil(M), d.ow.div_ceil(M));
        let twp = (tw + 1).next_multiple_of(16);
        let opad = d.o.next_multiple_of(PANEL);
        let per_row = XI * (d.c + opad) * tw;
        let nty = (BLOCK_FLOATS / per_row).clamp(1, th);
        let tb = nty * tw;
        // Slack of 16 floats after each buffer: vector loads of a last partial chunk
        // may read (never use) up to one vector past the data.
        let phase = 0;
        let line = phase + (M * nty + 2) * M * twp + 16;
        let v = line + M * twp + 16;
        let m = v + XI * d.c * tb + 16;
        let len = m + XI * tb * opad + 16;
        Layout {
            th,
            tw,
            twp,
            nty,
            opad,
            phase,
            line,
            v,
            m,
            len,
        }
    }
}

#[cfg(feature = "std")]
thread_local! {
    /// This thread's Winograd buffers (separate from [`crate::scratch`], which a model's
    /// `forward` may hold while calling the kernels).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

#[cfg(feature = "std")]
/// This thread's scratch vector, borrowed until dropped (a nested borrow, which the
/// kernels never make, would get a fresh vector).
struct ScratchGuard(Vec<f32>);

#[cfg(feature = "std")]
impl ScratchGuard {
    /// At least `len` floats starting on a 64-byte boundary.
    fn take(len: usize) -> ScratchGuard {
        let mut buf = SCRATCH.with(Cell::take);
        if buf.len() < len + 16 {
            buf.resize(len + 16, 0.0);
        }
        ScratchGuard(buf)
    }

    /// The 64-byte aligned part.
    fn aligned(&mut self) -> &mut [f32] {
        let off = self.0.as_ptr().align_offset(64).min(16);
        &mut self.0[off..]
    }
}

#[cfg(feature = "std")]
impl Drop for ScratchGuard {
    fn drop(&mut self) {
        let buf = core::mem::take(&mut self.0);
        SCRATCH.with(|cell| {
            let other = cell.take();
            cell.set(if other.len() > buf.len() { other } else { buf });
        });
    }
}

/// `a - b`, exactly as a subtraction (the product by -1 is exact).
#[inline(always)]
fn sub<S: Simd>(s: S, a: S::V, b: S::V) -> S::V {
    s.mul_add(s.splat(-1.0), b, a)
}

/// `Bᵀ d` for six vectors.
#[inline(always)]
fn bt<S: Simd>(s: S, d: [S::V; ALPHA]) -> [S::V; ALPHA] {
    let (four, m4, m5, two) = (s.splat(4.0), s.splat(-4.0), s.splat(-5.0), s.splat(2.0));
    let d12 = s.add(d[1], d[2]);
    let d34 = s.add(d[3], d[4]);
    let d1m2 = sub(s, d[1], d[2]);
    let d4m3 = sub(s, d[4], d[3]);
    let d3m1 = sub(s, d[3], d[1]);
    let d4m2 = sub(s, d[4], d[2]);
    [
        s.mul_add(four, d[0], s.mul_add(m5, d[2], d[4])),
        s.mul_add(m4, d12, d34),
        s.mul_add(four, d1m2, d4m3),
        s.mul_add(two, d3m1, d4m2),
        s.mul_add(s.splat(-2.0), d3m1, d4m2),
        s.mul_add(four, d[1], s.mul_add(m5, d[3], d[5])),
    ]
}

/// `Aᵀ m` for six vectors.
#[inline(always)]
fn at<S: Simd>(s: S, m: [S::V; ALPHA]) -> [S::V; M] {
    let p12 = s.add(m[1], m[2]);
    let p34 = s.add(m[3], m[4]);
    let m12 = sub(s, m[1], m[2]);
    let m34 = sub(s, m[3], m[4]);
    [
        s.add(s.add(m[0], p12), p34),
        s.mul_add(s.splat(2.0), m34, m12),
        s.mul_add(s.splat(4.0), p34, p12),
        s.add(s.mul_add(s.splat(8.0), m34, m12), m[5]),
    ]
}

/// One GEMM tile: `PN` panels of 16 output channels by `NT` tiles, at one position `ξ`.
#[derive(Clone, Copy)]
struct GemmArgs {
    /// `V[ξ][0][t0]`: tile `t` of channel `c` at `v + c * vstride + t`.
    v: *const f32,
    vstride: usize,
    /// Valid tiles (`<= NT`); the others repeat the last one, never stored.
    nt: usize,
    /// `U[ξ][panel][0]`: row of channel `c` of panel `p` at `u + (p * c_n + c) * 16`.
    u: *const f32,
    /// Input channels.
    cn: usize,
    /// `M[ξ][t0][panel * 16]`: tile `t` at `m + t * mstride`.
    m: *mut f32,
    mstride: usize,
}

/// The GEMM micro-kernel, run as an isolated function ([`Simd::vectorize`]).
struct GemmTile<const PN: usize, const VEC: usize, const NT: usize>(GemmArgs);

impl<const PN: usize, const VEC: usize, const NT: usize> GemmTile<PN, VEC, NT> {
    /// # Safety
    ///
    /// `v + c * vstride + t` readable for `c < cn`, `t < nt`; `u .. u + PN * cn * 16`
    /// readable; `m + t * mstride .. + PN * 16` writable for `t < nt`.
    #[inline(always)]
    unsafe fn new(a: GemmArgs) -> Self {
        GemmTile(a)
    }
}

impl<const PN: usize, const VEC: usize, const NT: usize> WithSimd for GemmTile<PN, VEC, NT> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let l = S::LANES;
        debug_assert!(VEC * l == PANEL && a.nt >= 1 && a.nt <= NT);
        let mut acc = [[[s.zero(); VEC]; PN]; NT];
        let offs: [usize; NT] = core::array::from_fn(|t| t.min(a.nt - 1));
        let pstride = a.cn * PANEL;
        // SAFETY: (whole body) channel `c < cn` reads `v + c * vstride + offs[t]` with
        // `offs[t] < nt`, and the `PN` panel rows `u + p * pstride + c * 16 .. + 16`;
        // stores touch tiles `t < nt`, `PN * 16` floats each: all within `new`'s contract.
        unsafe {
            let mut vp = a.v;
            let mut up = a.u;
            for _ in 0..a.cn {
                let mut w = [[s.zero(); VEC]; PN];
                for (p, wp) in w.iter_mut().enumerate() {
                    for (k, x) in wp.iter_mut().enumerate() {
                        *x = s.load(up.add(p * pstride + k * l));
                    }
                }
                for (acc_t, &off) in acc.iter_mut().zip(&offs) {
                    let x = s.bcast(vp.add(off));
                    for (acc_p, wp) in acc_t.iter_mut().zip(&w) {
                        for (y, &wk) in acc_p.iter_mut().zip(wp) {
                            *y = s.mul_add(wk, x, *y);
                        }
                    }
                }
                vp = vp.add(a.vstride);
                up = up.add(PANEL);
            }
            for (t, acc_t) in acc.iter().enumerate().take(a.nt) {
                let mp = a.m.add(t * a.mstride);
                for (p, acc_p) in acc_t.iter().enumerate() {
                    for (k, &y) in acc_p.iter().enumerate() {
                        s.store(mp.add(p * PANEL + k * l), y);
                    }
                }
            }
        }
    }
}

/// Runs the GEMM of one position over every panel and tile group.
///
/// # Safety
///
/// `v` holds `cn` rows of `tb` tiles (stride `tb`), `u` `panels * cn` rows of 16,
/// `m` `tb` rows of `panels * 16` floats.
#[inline(always)]
unsafe fn gemm_position<S: Simd>(
    s: S,
    v: *const f32,
    u: *const f32,
    m: *mut f32,
    cn: usize,
    tb: usize,
    panels: usize,
) {
    let opad = panels * PANEL;
    let mut p = 0;
    while p < panels {
        let left = panels - p;
        // (panels, tiles) per call: AVX-512 four panels by 6 (or 4) tiles, two by 12,
        // one by 16 (or 12); AVX2 one panel (two vectors) by 6; portable by 2.
        let pn = if S::TUNING.winograd_multi_panel {
            if left >= 4 {
                4
            } else if left >= 2 {
                2
            } else {
                1
            }
        } else {
            1
        };
        let nt_max = match pn {
            4 => {
                if tb.next_multiple_of(4) < tb.next_multiple_of(6) {
                    4
                } else {
                    6
                }
            }
            2 => 12,
            _ if S::TUNING.cv_tiles_of_12
                && tb.next_multiple_of(12) < tb.next_multiple_of(S::TUNING.cv_np) =>
            {
                12
            }
            _ => S::TUNING.cv_np,
        };
        let mut t0 = 0;
        while t0 < tb {
            let nt = nt_max.min(tb - t0);
            // SAFETY: tiles `t0..t0 + nt` of `v` and `m`, panels `p..p + pn` of `u` and
            // of the rows of `m`: inside the buffers the caller guarantees.
            unsafe {
                let a = GemmArgs {
                    v: v.add(t0),
                    vstride: tb,
                    nt,
                    u: u.add(p * cn * PANEL),
                    cn,
                    m: m.add(t0 * opad + p * PANEL),
                    mstride: opad,
                };
                match (S::LANES, pn, nt_max) {
                    (16, 4, 4) => s.vectorize(GemmTile::<4, 1, 4>::new(a)),
                    (16, 4, _) => s.vectorize(GemmTile::<4, 1, 6>::new(a)),
                    (16, 2, _) => s.vectorize(GemmTile::<2, 1, 12>::new(a)),
                    (16, _, 12) => s.vectorize(GemmTile::<1, 1, 12>::new(a)),
                    (16, _, _) => s.vectorize(GemmTile::<1, 1, 16>::new(a)),
                    (8, _, _) => s.vectorize(GemmTile::<1, 2, 6>::new(a)),
                    _ => s.vectorize(GemmTile::<1, 4, 2>::new(a)),
                }
            }
            t0 += nt;
        }
        p += pn;
    }
}

/// Multiply-accumulates of a block's 36 products from which they are split over the
/// pool's threads (with the `parallel` feature; without it the pool has one thread).
const PAR_MACS: usize = 500_000;

/// The buffers of one block's 36 matrix products, shared by the threads running them.
#[derive(Clone, Copy)]
struct GemmAll<S> {
    s: S,
    v: *const f32,
    u: *const f32,
    m: *mut f32,
}

// SAFETY: the parts of a block read `v` and `u` and write disjoint positions of `m`
// (`GemmAll::position`), and `pool::run` returns only when all of them are done; the
// SIMD token is a proof of CPU features, valid on every thread of the process.
unsafe impl<S> Sync for GemmAll<S> {}

impl<S: Simd> GemmAll<S> {
    /// The matrix product of position `xi` (see [`gemm_position`]).
    ///
    /// # Safety
    ///
    /// The buffers hold `[36][C][tb]` (`v`), `[36][panels][C][16]` (`u`) and
    /// `[36][tb][panels * 16]` (`m`) floats; no other thread touches position `xi` of `m`.
    #[inline(always)]
    unsafe fn position(&self, xi: usize, c: usize, tb: usize, panels: usize) {
        let opad = panels * PANEL;
        // SAFETY: position `xi` of each buffer, as the caller guarantees.
        unsafe {
            gemm_position(
                self.s,
                self.v.add(xi * c * tb),
                self.u.add(xi * panels * c * PANEL),
                self.m.add(xi * tb * opad),
                c,
                tb,
                panels,
            );
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
}

/// Floats of the stack buffer a part of a split input transform other than the first
/// uses for its phase rows and padded line (64 KiB, as the engine's band buffer).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
const PART_FLOATS: usize = 16 * 1024;

/// A part's phase rows and line when they are not the scratch's.
#[repr(C, align(64))]
struct PartBuf([f32; PART_FLOATS]);

/// One block's input transform for channels `c0..c1`: their phase rows (in `phase` and
/// `line`, this part's own) and their rows of `V`.
#[derive(Clone, Copy)]
struct WgInput<'a> {
    d: WgDims,
    lay: &'a Layout,
    input: &'a [f32],
    phase: *mut f32,
    line: *mut f32,
    v: *mut f32,
    ty0: usize,
    nb: usize,
    c0: usize,
    c1: usize,
}

impl WithSimd for WgInput<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let WgInput {
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
        } = self;
        let l = S::LANES;
        let hw = d.h * d.w;
        let (tw, twp) = (lay.tw, lay.twp);
        let tb = nb * tw;
        // SAFETY: `phase` and `line` hold the phase rows and the line of a block of `nb`
        // tile rows (with their slack), owned by this part; `V` holds `36 C tb` floats
        // (plus slack), of which this part writes the rows of its channels only.
        unsafe {
            // Input transform.
            let nrows = M * nb + 2;
            for c in c0..c1 {
                let plane = &input[c * hw..(c + 1) * hw];
                for r in 0..nrows {
                    // Phase rows: `[r][k][twp]`, phase k column j = padded column 4j + k.
                    let dst = phase.add(r * M * twp);
                    let iy = (M * ty0 + r).wrapping_sub(d.ph);
                    if iy >= d.h {
                        zero(s, dst, M * twp);
                        continue;
                    }
                    // The padded row in `line` (4 twp floats): input column x at pw + x.
                    let len = M * twp;
                    let left = d.pw.min(len);
                    let n = d.w.min(len - left);
                    zero(s, line, left);
                    copy(s, plane.as_ptr().add(iy * d.w), line.add(left), n);
                    zero(s, line.add(left + n), len - left - n);
                    // Split into four phases, 4 * LANES columns at a time (twp is a
                    // multiple of 16, so of LANES).
                    for j in (0..twp).step_by(l) {
                        let p = line.add(M * j);
                        let (e1, o1) = s.deinterleave(s.load(p), s.load(p.add(l)));
                        let (e2, o2) = s.deinterleave(s.load(p.add(2 * l)), s.load(p.add(3 * l)));
                        let (p0, p2) = s.deinterleave(e1, e2);
                        let (p1, p3) = s.deinterleave(o1, o2);
                        s.store(dst.add(j), p0);
                        s.store(dst.add(twp + j), p1);
                        s.store(dst.add(2 * twp + j), p2);
                        s.store(dst.add(3 * twp + j), p3);
                    }
                }
                for ty in 0..nb {
                    let rows = phase.add(M * ty * M * twp);
                    for tx0 in (0..tw).step_by(l) {
                        let n = l.min(tw - tx0);
                        // Columns k of the tiles' 6x6 inputs, transformed along y.
                        // (No `array::from_fn` with vector code in the closure: closures
                        // do not inherit the target features, the intrinsics would be
                        // calls.)
                        let mut rows_t = [[s.zero(); ALPHA]; ALPHA];
                        for k in 0..ALPHA {
                            // Phase k % 4 at tile tx + k / 4 (reads at most one
                            // vector past `tw`, inside the phase row or its slack).
                            let col = (k % M) * twp + tx0 + k / M;
                            let mut dk = [s.zero(); ALPHA];
                            for (i, x) in dk.iter_mut().enumerate() {
                                *x = s.load(rows.add(i * M * twp + col));
                            }
                            for (row, x) in rows_t.iter_mut().zip(bt(s, dk)) {
                                row[k] = x;
                            }
                        }
                        for (i, &ri) in rows_t.iter().enumerate() {
                            let f = bt(s, ri);
                            for (j, &fj) in f.iter().enumerate() {
                                // V[ξ][c][t]: inside `V` (t + n <= tb).
                                let p = v.add(((i * ALPHA + j) * d.c + c) * tb + ty * tw + tx0);
                                s.store_n(p, fj, n);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One block's output transform for tiles `t0..t1`: bias, activation, scatter into
/// their output pixels.
#[derive(Clone, Copy)]
struct WgOutput<'a> {
    d: WgDims,
    lay: &'a Layout,
    m: *const f32,
    bias: *const f32,
    out: *mut f32,
    ty0: usize,
    nb: usize,
    t0: usize,
    t1: usize,
    act: Act,
}

impl WithSimd for WgOutput<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let WgOutput {
            d,
            lay,
            m,
            bias,
            out,
            ty0,
            nb,
            t0,
            t1,
            act,
        } = self;
        let l = S::LANES;
        let ohw = d.oh * d.ow;
        let (tw, opad) = (lay.tw, lay.opad);
        let tb = nb * tw;
        // Pixel vectors of one tile after the output transform, `[16][LANES]`.
        let mut tmp = [Row16([0.0; PANEL]); PANEL];
        let tmp = tmp.as_mut_ptr().cast::<f32>();
        // SAFETY: `M` holds `36 tb opad` floats; the output `O*OH*OW`, of which this part
        // writes the pixels of its tiles only.
        unsafe {
            // Output transform, bias, activation, scatter.
            for t in t0..t1 {
                let (ty, tx) = (ty0 + t / tw, t % tw);
                let (y0, x0) = (M * ty, M * tx);
                let (ny, nx) = (M.min(d.oh - y0), M.min(d.ow - x0));
                for o0 in (0..d.o).step_by(l) {
                    let no = l.min(d.o - o0);
                    let mut a = [[s.zero(); ALPHA]; M];
                    for j in 0..ALPHA {
                        let mut mj = [s.zero(); ALPHA];
                        for (i, x) in mj.iter_mut().enumerate() {
                            // M[ξ][t][o0..]: inside `M` (o0 + LANES <= opad).
                            *x = s.load(m.add(((i * ALPHA + j) * tb + t) * opad + o0));
                        }
                        for (ay, x) in a.iter_mut().zip(at(s, mj)) {
                            ay[j] = x;
                        }
                    }
                    // Bias row: inside the packed bias (o0 + LANES <= opad).
                    let b = s.load(bias.add(o0));
                    let mut px = [s.zero(); PANEL];
                    for (y, ay) in a.iter().enumerate() {
                        let r = at(s, *ay);
                        for (x, &rx) in r.iter().enumerate() {
                            px[y * M + x] = s.act(s.add(rx, b), act);
                        }
                    }
                    // Output (o, y0 + y, x0 + x) for o < O, y < ny, x < nx: inside.
                    let dst = out.add(o0 * ohw + y0 * d.ow + x0);
                    if l == PANEL {
                        // Pixels by channels to channels by pixels, in registers.
                        s.transpose(&mut px[..l]);
                        for (ch, &row) in px.iter().enumerate().take(no) {
                            s.store(tmp, row);
                            for y in 0..ny {
                                let v = s.load_n(tmp.add(y * M), nx);
                                s.store_n(dst.add(ch * ohw + y * d.ow), v, nx);
                            }
                        }
                    } else {
                        for (p, &row) in px.iter().enumerate() {
                            s.store(tmp.add(p * l), row);
                        }
                        for ch in 0..no {
                            for y in 0..ny {
                                for x in 0..nx {
                                    *dst.add(ch * ohw + y * d.ow + x) =
                                        *tmp.add((y * M + x) * l + ch);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
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
        } = self;
        let (tw, opad) = (lay.tw, lay.opad);
        let panels = opad / PANEL;
        assert!(scratch.len() >= lay.len);
        assert!(input.len() >= d.c * d.h * d.w && output.len() >= d.o * d.oh * d.ow);
        let base = scratch.as_mut_ptr();
        let u = params.weight.as_ptr().cast::<f32>();
        let bias = params.bias.as_ptr().cast::<f32>();
        let out = output.as_mut_ptr();
        let lay = &lay;
        // Floats of the phase rows and line (with their slack) an input part needs.
        let part_floats = lay.v - lay.phase;
        for ty0 in (0..lay.th).step_by(lay.nty) {
            let nb = lay.nty.min(lay.th - ty0);
            let tb = nb * tw;
            // With the `parallel` feature and enough work, each phase is split over the
            // pool's threads (input channels, positions, tiles), every value computed
            // exactly as on one thread.
            let threads = if XI * tb * d.c * opad >= PAR_MACS {
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
            let sh = Shared((s, phase, line, v, m, out, bias));
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
                let (phase, line) = if i == 0 {
                    (phase, line)
                } else {
                    let b = own.as_mut_ptr().cast::<f32>();
                    // SAFETY: `part_floats <= PART_FLOATS`; the slack after the phase
                    // rows and the line (read by vector loads, never used) is zeroed.
                    unsafe {
                        let line_off = lay.line - lay.phase;
                        core::ptr::write_bytes(b.add(line_off - 16), 0, 16);
                        core::ptr::write_bytes(b.add(part_floats - 16), 0, 16);
                        (b, b.add(line_off))
                    }
                };
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
            let gemm = GemmAll { s, v, u, m };
            let parts = threads.min(XI);
            crate::pool::run(parts, &|i| {
                for xi in i * XI / parts..(i + 1) * XI / parts {
                    // SAFETY: position `xi`'s slices of `V`, `U` and `M`: `V` and `U` only
                    // read, each position of `M` written by the one part that owns it.
                    unsafe { gemm.position(xi, d.c, tb, panels) };
                }
            });
            // Output transform, bias, activation, scatter, split by tiles.
            let parts = threads.min(tb);
            crate::pool::run(parts, &|i| {
                let (s, .., m, out, bias) = sh.get();
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
                    act,
                });
            });
        }
    }
}

/// `dst[..n] = 0`.
///
/// # Safety
///
/// `dst..dst + n` writable.
#[inline(always)]
unsafe fn zero<S: Simd>(s: S, dst: *mut f32, n: usize) {
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

/// `dst[..n] = src[..n]`.
///
/// # Safety
///
/// `src..src + n` readable, `dst..dst + n` writable.
#[inline(always)]
unsafe fn copy<S: Simd>(s: S, src: *const f32, dst: *mut f32, n: usize) {
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

/// The convolution with its dimensions as runtime values, at `level`; see
/// [`winograd_conv3x3`].
pub(crate) fn winograd_dyn(
    level: Level,
    d: WgDims,
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: Option<&mut [f32]>,
    act: Act,
) {
    assert!(
        params.out == d.o && params.in_channels == d.c,
        "winograd_conv3x3: parameters are [{}, {}, 3, 3], the layer wants [{}, {}, 3, 3]",
        params.out,
        params.in_channels,
        d.o,
        d.c
    );
    let lay = Layout::new(&d);
    let input = &input[..d.c * d.h * d.w];
    let output = &mut output[..d.o * d.oh * d.ow];
    // The caller's scratch (a region of the model's arena) when it is large enough,
    // else (with `std`) this thread's buffer.
    #[cfg(feature = "std")]
    let mut guard = None;
    let scratch = match scratch {
        Some(buf) if buf.len() >= lay.len + 16 => {
            let off = buf.as_ptr().align_offset(64).min(16);
            &mut buf[off..]
        }
        #[cfg(feature = "std")]
        _ => guard.insert(ScratchGuard::take(lay.len)).aligned(),
        #[cfg(not(feature = "std"))]
        _ => panic!(
            "winograd_conv3x3: needs {} floats of scratch (the compiler plans them)",
            lay.len + 16
        ),
    };
    let run = WgRun {
        d,
        lay,
        input,
        params,
        output,
        scratch,
        act,
    };
    simd::run(level, run);
}

/// Floats of scratch memory [`winograd_conv3x3`] needs for these dimensions (including
/// the slack to start on a 64-byte boundary); the compiler reserves them in the arena.
pub fn winograd_scratch_len(c: usize, h: usize, w: usize, o: usize, oh: usize, ow: usize) -> usize {
    let d = WgDims {
        c,
        h,
        w,
        o,
        oh,
        ow,
        ph: 0,
        pw: 0,
    };
    Layout::new(&d).len + 16
}

/// 3x3 convolution, stride 1, dilation 1, groups 1, by Winograd F(4x4, 3x3), fused with
/// its bias (and folded batch norm) and activation. Same semantics and argument order as
/// [`conv2d`](super::conv::conv2d) with `KH = KW = 3`, `SH = SW = 1`, `G = 1`:
/// `output[o][y][x] = act(bias[o] + sum over c, ky, kx of
/// w[o][c][ky][kx] * input[c][y + ky*DH - PH][x + kx*DW - PW])`, taps outside the input
/// reading zero; `PH`/`PW` are the top/left padding, the bottom/right padding is whatever
/// `OH`/`OW` imply.
///
/// Only dilation 1 is supported (`DH`, `DW` are there for the signature; other values
/// fail to compile). `scratch` is working memory of at least
/// [`winograd_scratch_len`] floats (a shorter one makes the kernel use a per-thread
/// buffer instead, allocated on the thread's first call).
///
/// # Panics
///
/// If `params` was built for other channel counts, or a slice is too short.
pub fn winograd_conv3x3<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
>(
    input: &[f32],
    params: &WinogradParams,
    output: &mut [f32],
    scratch: &mut [f32],
    act: Act,
) {
    const {
        assert!(C > 0 && H > 0 && W > 0 && O > 0 && OH > 0 && OW > 0);
        assert!(
            DH == 1 && DW == 1,
            "winograd_conv3x3 only handles dilation 1"
        );
    }
    let d = WgDims {
        c: C,
        h: H,
        w: W,
        o: O,
        oh: OH,
        ow: OW,
        ph: PH,
        pw: PW,
    };
    winograd_dyn(cpu::level(), d, input, params, output, Some(scratch), act);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{conv2d, ConvParams};
    use crate::kernels::reference::{self as r, Axis, Rng};

    const ACTS: [Act; 6] = [
        Act::Identity,
        Act::Relu,
        Act::Relu6,
        Act::Tanh,
        Act::Sigmoid,
        Act::LeakyRelu(0.1),
    ];

    /// The conformance tolerance, `|got - want| <= 1e-4 + 1e-4 |want|`: asserts it and
    /// returns the worst `|got - want| / (1e-4 + 1e-4 |want|)`.
    #[track_caller]
    fn check_close(got: &[f32], want: &[f64], ctx: &dyn std::fmt::Debug) -> f64 {
        ratio_to_tolerance(got, want, 1.0, ctx)
    }

    /// The worst `|got - want| / (1e-4 + 1e-4 |want|)`, asserted to be at most `limit`.
    #[track_caller]
    fn ratio_to_tolerance(got: &[f32], want: &[f64], limit: f64, ctx: &dyn std::fmt::Debug) -> f64 {
        assert_eq!(got.len(), want.len(), "length, {ctx:?}");
        let mut worst = 0.0f64;
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let g = f64::from(g);
            let ratio = (g - w).abs() / (1e-4 + 1e-4 * w.abs());
            assert!(
                ratio <= limit,
                "index {i}: got {g}, want {w} (diff {:e}), {ctx:?}",
                (g - w).abs()
            );
            worst = worst.max(ratio);
        }
        worst
    }

    /// `Bᵀ`, `Aᵀ` as matrices, for the f64 check of the transforms.
    const BT: [[f64; 6]; 6] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];
    const AT: [[f64; 6]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

    /// F(4, 3) in f64 is the correlation `y[i] = sum_k d[i + k] g[k]`.
    #[test]
    fn transforms_compute_a_correlation() {
        let mut rng = Rng::new(40);
        for _ in 0..100 {
            let d: Vec<f64> = (0..6).map(|_| f64::from(rng.f32_in(-1.0, 1.0))).collect();
            let g: Vec<f64> = (0..3).map(|_| f64::from(rng.f32_in(-1.0, 1.0))).collect();
            let u: Vec<f64> = G
                .iter()
                .map(|row| (0..3).map(|k| row[k] * g[k]).sum())
                .collect();
            let v: Vec<f64> = BT
                .iter()
                .map(|row| (0..6).map(|k| row[k] * d[k]).sum())
                .collect();
            for (i, row) in AT.iter().enumerate() {
                let y: f64 = (0..6).map(|k| row[k] * u[k] * v[k]).sum();
                let want: f64 = (0..3).map(|k| d[i + k] * g[k]).sum();
                assert!((y - want).abs() < 1e-12, "{y} {want}");
            }
        }
    }

    /// The vector transforms equal the matrices.
    struct Transforms;

    impl WithSimd for Transforms {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let mut rng = Rng::new(41);
            let x: [f32; 6] = core::array::from_fn(|_| rng.f32_in(-1.0, 1.0));
            let v: [S::V; 6] = core::array::from_fn(|i| s.splat(x[i]));
            let lane0 = |v: S::V| {
                let mut buf = [0.0f32; 16];
                // SAFETY: `buf` holds 16 >= LANES floats.
                unsafe { s.store(buf.as_mut_ptr(), v) };
                f64::from(buf[0])
            };
            for (row, &got) in BT.iter().zip(&bt(s, v)) {
                let want: f64 = (0..6).map(|k| row[k] * f64::from(x[k])).sum();
                assert!((lane0(got) - want).abs() < 1e-5);
            }
            for (row, &got) in AT.iter().zip(&at(s, v)) {
                let want: f64 = (0..6).map(|k| row[k] * f64::from(x[k])).sum();
                assert!((lane0(got) - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn vector_transforms_are_the_matrices() {
        for level in simd::test_levels() {
            simd::run(level, Transforms);
        }
    }

    fn dims(c: usize, o: usize, ah: Axis, aw: Axis) -> WgDims {
        assert!(ah.k == 3 && aw.k == 3 && ah.s == 1 && aw.s == 1 && ah.d == 1 && aw.d == 1);
        WgDims {
            c,
            h: ah.n,
            w: aw.n,
            o,
            oh: ah.out,
            ow: aw.out,
            ph: ah.p,
            pw: aw.p,
        }
    }

    /// Runs Winograd at every level against the f64 reference on random data (weights
    /// scaled by `wscale`); returns the worst ratio to the tolerance, asserted to be at
    /// most `limit`.
    #[allow(clippy::too_many_arguments)]
    fn check(
        rng: &mut Rng,
        c: usize,
        o: usize,
        ah: Axis,
        aw: Axis,
        act: Act,
        with_bias: bool,
        wscale: f32,
        limit: f64,
    ) -> f64 {
        let d = dims(c, o, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight: Vec<f32> = rng
            .vec(o * c * 9, -1.0, 1.0)
            .iter()
            .map(|w| w * wscale)
            .collect();
        let bias = rng.vec(o, -0.5, 0.5);
        let bias = with_bias.then_some(&bias[..]);
        let params = WinogradParams::from_torch(o, c, &weight, bias, None);
        let want = r::conv2d(c, o, 1, ah, aw, &input, &weight, bias, act);
        // Slices longer than needed: the output tail must stay untouched, the NaNs after
        // the input never read.
        let mut inp = input.clone();
        inp.extend([f32::NAN; 3]);
        let n = o * ah.out * aw.out;
        let mut worst = 0.0f64;
        for level in simd::test_levels() {
            let mut got = vec![7.0; n + 3];
            winograd_dyn(level, d, &inp, &params, &mut got, None, act);
            let ctx = (d, act, level);
            assert_eq!(&got[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
            worst = worst.max(ratio_to_tolerance(&got[..n], &want, limit, &ctx));
        }
        worst
    }

    /// 3x3 stride-1 axis geometries: sizes 1..13, padding 0, 1, 2, and 'same' with one
    /// more cell of padding at the end than at the start (and the reverse).
    fn axes() -> Vec<Axis> {
        let mut axes = Vec::new();
        for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13] {
            for p in 0..=2 {
                axes.extend(Axis::conv(n, 3, 1, p, 1));
            }
            // Top padding 0, bottom 2; top 2, bottom 0.
            axes.push(Axis {
                n,
                out: n,
                k: 3,
                s: 1,
                p: 0,
                pe: 2,
                d: 1,
            });
            axes.push(Axis {
                n,
                out: n,
                k: 3,
                s: 1,
                p: 2,
                pe: 0,
                d: 1,
            });
        }
        axes
    }

    const CH: [usize; 5] = [1, 3, 16, 17, 64];

    /// Every geometry on each axis (the other random), channel pairs cycled; then every
    /// channel pair over random geometries; every activation.
    #[test]
    fn sweep_against_reference() {
        let axes = axes();
        let pairs: Vec<(usize, usize)> = CH
            .iter()
            .flat_map(|&c| CH.iter().map(move |&o| (c, o)))
            .collect();
        let mut rng = Rng::new(42);
        let mut worst = 0.0f64;
        let mut k = 0;
        for &a in &axes {
            let b = axes[rng.below(axes.len())];
            for (ah, aw) in [(a, b), (b, a)] {
                let (c, o) = pairs[k % pairs.len()];
                let act = ACTS[k % ACTS.len()];
                let wscale = 1.0 / ((c * 9) as f32).sqrt();
                worst = worst.max(check(&mut rng, c, o, ah, aw, act, k % 4 != 0, wscale, 1.0));
                k += 1;
            }
        }
        // Unscaled weights while the outputs stay O(1) (up to 3 input channels), else
        // scaled by 1/sqrt(fan-in).
        for &(c, o) in &pairs {
            let wscale = if c <= 3 {
                1.0
            } else {
                1.0 / ((c * 9) as f32).sqrt()
            };
            for act in ACTS {
                let (ah, aw) = (axes[rng.below(axes.len())], axes[rng.below(axes.len())]);
                worst = worst.max(check(&mut rng, c, o, ah, aw, act, true, wscale, 1.0));
            }
        }
        eprintln!("sweep: worst error / tolerance = {worst:.4}");
    }

    /// Many input channels and the benchmark models' map sizes: weights `U(-1, 1)`
    /// scaled by `1/sqrt(fan-in)` (outputs O(1)), within the tolerance; and unscaled
    /// (outputs O(10-100)), where F(4x4)'s error, about 1e-5 of the outputs' scale,
    /// exceeds the tolerance at small outputs: only measured (printed).
    #[test]
    fn wide_layers_against_reference() {
        let ax = |n, p| Axis::conv(n, 3, 1, p, 1).unwrap();
        let mut rng = Rng::new(43);
        let mut worst = [0.0f64; 2];
        for (c, o, n) in [
            (512, 20, 7),
            (512, 17, 8),
            (256, 33, 14),
            (128, 64, 9),
            (64, 64, 16),
            (3, 32, 32),
        ] {
            let scaled = 1.0 / ((c * 9) as f32).sqrt();
            for (i, (wscale, limit)) in [(scaled, 1.0), (1.0, f64::INFINITY)]
                .into_iter()
                .enumerate()
            {
                let (a, act) = (ax(n, 1), Act::Identity);
                let w = check(&mut rng, c, o, a, a, act, true, wscale, limit);
                worst[i] = worst[i].max(w);
            }
        }
        eprintln!(
            "wide layers: worst error / tolerance = {:.4} (scaled weights), {:.4} (unscaled)",
            worst[0], worst[1]
        );
    }

    /// Batch norm folded into Winograd's parameters equals the direct engine with the
    /// same batch norm; no bias.
    #[test]
    fn folded_batch_norm_matches_direct_conv() {
        let mut rng = Rng::new(44);
        const C: usize = 5;
        const O: usize = 18;
        let input = rng.vec(C * 9 * 10, -1.0, 1.0);
        let weight = rng.vec(O * C * 9, -0.3, 0.3);
        let bn = Affine::from_batch_norm(
            &rng.vec(O, 0.5, 1.5),
            &rng.vec(O, -0.3, 0.3),
            &rng.vec(O, -0.5, 0.5),
            &rng.vec(O, 0.5, 2.0),
            1e-5,
        );
        for act in ACTS {
            let direct = ConvParams::from_torch(O, C, 3, 3, &weight, None, Some(&bn));
            let mut want = vec![0.0; O * 90];
            conv2d::<C, 9, 10, O, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
                &input, &direct, &mut want, act,
            );
            let wg = WinogradParams::from_torch(O, C, &weight, None, Some(&bn));
            let mut got = vec![0.0; O * 90];
            // A short scratch: the kernel falls back to its per-thread buffer.
            winograd_conv3x3::<C, 9, 10, O, 9, 10, 1, 1, 1, 1>(&input, &wg, &mut got, &mut [], act);
            let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
            check_close(&got, &want, &("folded bn", act));
        }
    }

    /// The const-generic entry point on a 'same' layer and an unpadded one.
    #[test]
    fn const_generic_instances() {
        let mut rng = Rng::new(45);
        let input = rng.vec(16 * 11 * 6, -1.0, 1.0);
        let weight = rng.vec(24 * 16 * 9, -0.1, 0.1);
        let bias = rng.vec(24, -0.5, 0.5);
        let params = WinogradParams::from_torch(24, 16, &weight, Some(&bias), None);
        let mut got = vec![0.0; 24 * 11 * 6];
        // The caller's scratch (as the compiler reserves in the arena), poisoned with NaN:
        // nothing may be read before it is written.
        let mut scratch = vec![f32::NAN; winograd_scratch_len(16, 11, 6, 24, 11, 6)];
        winograd_conv3x3::<16, 11, 6, 24, 11, 6, 1, 1, 1, 1>(
            &input,
            &params,
            &mut got,
            &mut scratch,
            Act::Relu,
        );
        let a = |n, p| Axis::conv(n, 3, 1, p, 1).unwrap();
        let want = r::conv2d(
            16,
            24,
            1,
            a(11, 1),
            a(6, 1),
            &input,
            &weight,
            Some(&bias),
            Act::Relu,
        );
        check_close(&got, &want, &"same");
        let mut got = vec![0.0; 24 * 9 * 4];
        let mut scratch = vec![f32::NAN; winograd_scratch_len(16, 11, 6, 24, 9, 4)];
        winograd_conv3x3::<16, 11, 6, 24, 9, 4, 0, 0, 1, 1>(
            &input,
            &params,
            &mut got,
            &mut scratch,
            Act::Tanh,
        );
        let want = r::conv2d(
            16,
            24,
            1,
            a(11, 0),
            a(6, 0),
            &input,
            &weight,
            Some(&bias),
            Act::Tanh,
        );
        check_close(&got, &want, &"valid");
    }

    #[test]
    #[should_panic(expected = "winograd_conv3x3: parameters")]
    fn mismatched_params_panic() {
        let params = WinogradParams::from_torch(2, 3, &[0.0; 54], None, None);
        winograd_conv3x3::<2, 4, 4, 2, 4, 4, 1, 1, 1, 1>(
            &[0.0; 32],
            &params,
            &mut [0.0; 32],
            &mut [],
            Act::Identity,
        );
    }
}

/// Timing of Winograd against the direct engine on the 3x3 layers of the benchmark
/// models (`cargo test -p cnn-runtime --release winograd::speed -- --ignored
/// --nocapture`; `CNN_SIMD=avx2` for the AVX2 level).
#[cfg(test)]
mod speed {
    use super::*;
    use crate::kernels::conv::{conv2d, ConvParams};
    use crate::kernels::reference::Rng;
    use std::hint::black_box;
    use std::time::Instant;

    /// Shortest time in microseconds of `f`, over 11 samples of enough calls for ~3 ms.
    fn time(mut f: impl FnMut()) -> f64 {
        f();
        let t = Instant::now();
        f();
        let once = t.elapsed().as_secs_f64();
        let reps = ((3e-3 / once) as usize).clamp(1, 1000);
        let mut v: Vec<f64> = (0..11)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    f();
                }
                t.elapsed().as_secs_f64() / reps as f64 * 1e6
            })
            .collect();
        // The fastest sample: the machine is shared, slower ones saw other work.
        v.sort_by(f64::total_cmp);
        v[0]
    }

    fn layer<const C: usize, const H: usize, const O: usize>(rng: &mut Rng) {
        let x = rng.vec(C * H * H, -1.0, 1.0);
        let w = rng.vec(O * C * 9, -0.1, 0.1);
        let b = rng.vec(O, -0.1, 0.1);
        let direct = ConvParams::from_torch(O, C, 3, 3, &w, Some(&b), None);
        let wg = WinogradParams::from_torch(O, C, &w, Some(&b), None);
        let mut y = vec![0.0; O * H * H];
        let mut scratch = vec![0.0; winograd_scratch_len(C, H, H, O, H, H)];
        let td = time(|| {
            conv2d::<C, H, H, O, H, H, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
                black_box(&x),
                &direct,
                black_box(&mut y),
                Act::Relu,
            )
        });
        let tw = time(|| {
            winograd_conv3x3::<C, H, H, O, H, H, 1, 1, 1, 1>(
                black_box(&x),
                &wg,
                black_box(&mut y),
                &mut scratch,
                Act::Relu,
            )
        });
        let gf = |t: f64| (2 * O * H * H * C * 9) as f64 / t / 1e3;
        eprintln!(
            "{C:>4}x{H:>2}x{H:<2} -> {O:>4} | {td:>9.1} µs {:>6.1} GF/s | {tw:>9.1} µs {:>6.1} eff GF/s | x{:.2} | pays {}",
            gf(td),
            gf(tw),
            td / tw,
            winograd_pays(C, H, H, O)
        );
    }

    #[test]
    #[ignore]
    fn speed() {
        let mut rng = Rng::new(1);
        eprintln!("level {:?}", cpu::level());
        layer::<3, 32, 32>(&mut rng);
        layer::<32, 32, 32>(&mut rng);
        layer::<32, 16, 64>(&mut rng);
        layer::<64, 16, 64>(&mut rng);
        layer::<64, 8, 128>(&mut rng);
        layer::<128, 8, 128>(&mut rng);
        layer::<64, 56, 64>(&mut rng);
        layer::<128, 28, 128>(&mut rng);
        layer::<256, 14, 256>(&mut rng);
        layer::<512, 7, 512>(&mut rng);
        // Around the rule's boundaries.
        layer::<32, 16, 32>(&mut rng);
        layer::<64, 32, 64>(&mut rng);
        layer::<128, 16, 128>(&mut rng);
        layer::<256, 7, 256>(&mut rng);
        layer::<96, 8, 96>(&mut rng);
    }

    /// With the `parallel` feature, the input transform (by channels), the 36 products
    /// (by position) and the output transform (by tiles) split over 2 and 3 threads give
    /// the one-thread result bit for bit, at every level; several blocks (56x56) and
    /// partial edge tiles (30x30) included.
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_give_the_one_thread_result_bit_for_bit() {
        let _g = crate::pool::TEST_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut rng = Rng::new(47);
        for (c, o, n) in [
            (64, 64, 16),
            (32, 40, 28),
            (128, 33, 8),
            (64, 64, 56),
            (40, 24, 30),
        ] {
            let d = WgDims {
                c,
                h: n,
                w: n,
                o,
                oh: n,
                ow: n,
                ph: 1,
                pw: 1,
            };
            let input = rng.vec(c * n * n, -1.0, 1.0);
            let weight = rng.vec(o * c * 9, -0.1, 0.1);
            let bias = rng.vec(o, -0.5, 0.5);
            let params = WinogradParams::from_torch(o, c, &weight, Some(&bias), None);
            for level in simd::test_levels() {
                crate::pool::set_num_threads(1);
                let mut one = vec![0.0; o * n * n];
                winograd_dyn(level, d, &input, &params, &mut one, None, Act::Relu);
                for threads in [2, 3] {
                    crate::pool::set_num_threads(threads);
                    let mut many = vec![f32::NAN; o * n * n];
                    winograd_dyn(level, d, &input, &params, &mut many, None, Act::Relu);
                    assert!(one == many, "{d:?} {level:?} {threads} threads");
                }
            }
        }
        crate::pool::set_num_threads(2);
    }
}
