//! The register-blocked micro-kernels: pixel-vectorised ([`PvTile`]) and
//! channel-vectorised ([`CvTile`], [`CvTile2`]) tiles, each run as a function of its own.

#[allow(unused_imports)]
use super::*;

/// One pixel-vectorised tile: where it reads and writes.
#[derive(Clone, Copy)]
pub(super) struct PvArgs<'a> {
    pub(super) job: &'a Job<'a>,
    /// Weight lane of the tile's first channel, at tap 0 and the chunk's first channel.
    pub(super) w: *const f32,
    /// The tile's first pixel at tap 0, channel 0 of the chunk.
    pub(super) src: *const f32,
    /// Distance in the source between the tile's vectors: `LANES` along a row, or one
    /// output row's worth when each vector is a row.
    pub(super) vsrc: usize,
    /// The tile's first output.
    pub(super) out: *mut f32,
    /// Distance in the output between the tile's vectors (`LANES`, or `OW`).
    pub(super) vout: usize,
    /// Distance between output channels.
    pub(super) ostride: usize,
    /// Bias of the tile's first channel.
    pub(super) bias: *const f32,
    /// Valid lanes of the last vector (of every vector in `ALL_PARTIAL` tiles).
    pub(super) n: usize,
    /// Lines the tile prefetches into L2 while it runs ([`PrefetchStream`]).
    pub(super) pf: PrefetchStream,
}

/// Full vectors only.
pub(super) const FULL: u8 = 0;
/// The last vector is partial.
pub(super) const LAST_PARTIAL: u8 = 1;
/// Every vector is partial (one row each, rows shorter than a vector).
pub(super) const ALL_PARTIAL: u8 = 2;
/// Two rows of two vectors (`NV = 4`: rows longer than one vector, shorter than two):
/// vector `v` at row `v / 2` (`vsrc`, `vout` apart), `LANES * (v % 2)` along it, the
/// second of each row partial (`n` lanes).
pub(super) const TWO_ROWS: u8 = 3;

/// `MR` output channels by `NV` vectors of pixels (consecutive pixels of a row, or one
/// short row each), run as an isolated function ([`Simd::vectorize`]). `MASK` says which
/// vectors are partial ([`FULL`], [`LAST_PARTIAL`], [`ALL_PARTIAL`]); with `PF` the tile
/// prefetches the lines of `PvArgs::pf` as it goes (a variant of its own: the check a
/// row cost the short loops of a 7x7 stem a few percent).
pub(super) struct PvTile<'a, const MR: usize, const NV: usize, const MASK: u8, const PF: bool>(
    pub(super) PvArgs<'a>,
);

impl<'a, const MR: usize, const NV: usize, const MASK: u8, const PF: bool>
    PvTile<'a, MR, NV, MASK, PF>
{
    /// # Safety
    ///
    /// For every vector `v`, tap offset `off` and channel `c < job.cn`,
    /// `src + v * vsrc + off + c * job.plane` must be readable for the lanes used (all,
    /// or `n` in partial vectors); `w + t * job.wtap + 16 * c + r` readable for `r < MR`;
    /// `out + r * ostride + v * vout` writable (and readable unless `job.first`) for
    /// those lanes; `bias + r` readable. With [`TWO_ROWS`], `(v / 2) * vsrc + (v % 2) *
    /// LANES` and `(v / 2) * vout + (v % 2) * LANES` in place of `v * vsrc`, `v * vout`.
    #[inline(always)]
    pub(super) unsafe fn new(a: PvArgs<'a>) -> Self {
        PvTile(a)
    }
}

impl<const MR: usize, const NV: usize, const MASK: u8, const PF: bool> WithSimd
    for PvTile<'_, MR, NV, MASK, PF>
{
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let job = a.job;
        let partial = |v: usize| {
            MASK == ALL_PARTIAL
                || (MASK == LAST_PARTIAL && v == NV - 1)
                || (MASK == TWO_ROWS && v % 2 == 1)
        };
        // Offset of vector `v` given the distance between vectors (or rows).
        let at = |v: usize, apart: usize| {
            if MASK == TWO_ROWS {
                (v / 2) * apart + (v % 2) * S::LANES
            } else {
                v * apart
            }
        };
        debug_assert!(a.n <= S::LANES && (MASK != FULL || a.n == S::LANES));
        let mut acc = [[s.zero(); NV]; MR];
        // SAFETY: (whole body) every pointer stays within the ranges `new`'s caller
        // guaranteed: taps and channels of `job`, `MR` weight lanes, the lanes used.
        unsafe {
            if !job.first {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    for (v, x) in acc_r.iter_mut().enumerate() {
                        let p = a.out.add(r * a.ostride + at(v, a.vout));
                        *x = if partial(v) {
                            s.load_n(p, a.n)
                        } else {
                            s.load(p)
                        };
                    }
                }
            }
            // One reduction step: the tile's pixels at `sp` times the weights at `wp` (a
            // macro: a closure would not inherit the level's target features).
            macro_rules! step {
                ($sp:expr, $wp:expr) => {{
                    let (sp, wp): (*const f32, *const f32) = ($sp, $wp);
                    let mut b = [s.zero(); NV];
                    for (v, bv) in b.iter_mut().enumerate() {
                        *bv = if partial(v) {
                            s.load_n(sp.add(at(v, a.vsrc)), a.n)
                        } else {
                            s.load(sp.add(at(v, a.vsrc)))
                        };
                    }
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let wr = s.bcast(wp.add(r));
                        for (x, &bv) in acc_r.iter_mut().zip(&b) {
                            *x = s.mul_add(wr, bv, *x);
                        }
                    }
                }};
            }
            if job.cn == 1 {
                // One input channel (a first layer on a gray image or a 1-D signal):
                // the taps are the whole reduction, one loop without an inner one.
                for (t, &off) in job.taps.iter().enumerate() {
                    step!(a.src.offset(off), a.w.add(t * job.wtap));
                }
            } else {
                let (mut pf, mut countdown) = (a.pf, 1);
                for (t, &off) in job.taps.iter().enumerate() {
                    let mut sp = a.src.offset(off);
                    let mut wp = a.w.add(t * job.wtap);
                    for _ in 0..job.cn {
                        step!(sp, wp);
                        if PF {
                            pf.row(s, &mut countdown);
                        }
                        sp = sp.add(job.plane);
                        wp = wp.add(PANEL);
                    }
                }
            }
            // Bias and a piecewise-linear activation (the curved ones are the block
            // post-pass's: `Job::act`).
            for (r, acc_r) in acc.iter_mut().enumerate() {
                if job.last {
                    let b = s.bcast(a.bias.add(r));
                    for x in acc_r.iter_mut() {
                        *x = s.act_piecewise(s.add(*x, b), job.act);
                    }
                }
                for (v, &x) in acc_r.iter().enumerate() {
                    let p = a.out.add(r * a.ostride + at(v, a.vout));
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
pub(super) unsafe fn pv_call<S: Simd>(s: S, mr: usize, nv: usize, mask: u8, a: PvArgs<'_>) {
    macro_rules! go {
        ($mr:literal) => {{
            // SAFETY: forwarded from the caller.
            unsafe {
                match (nv, mask) {
                    (2, FULL) => s.vectorize(PvTile::<$mr, 2, FULL, false>::new(a)),
                    (2, LAST_PARTIAL) => s.vectorize(PvTile::<$mr, 2, LAST_PARTIAL, false>::new(a)),
                    (2, _) => s.vectorize(PvTile::<$mr, 2, ALL_PARTIAL, false>::new(a)),
                    (_, FULL) => s.vectorize(PvTile::<$mr, 1, FULL, false>::new(a)),
                    (_, _) => s.vectorize(PvTile::<$mr, 1, LAST_PARTIAL, false>::new(a)),
                }
            }
        }};
    }
    debug_assert!(mr >= 1 && mr <= S::TUNING.pv_mr && S::TUNING.pv_mr <= 8);
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

/// Runs the pixel-vectorised tile of `mr` (at most 8) channels and three full vectors.
///
/// # Safety
///
/// As [`PvTile::new`], with `MR = mr`, `NV = 3`, `MASK = FULL`.
#[inline(always)]
pub(super) unsafe fn pv3_call<S: Simd>(s: S, mr: usize, a: PvArgs<'_>) {
    debug_assert!((1..=8).contains(&mr));
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 => s.vectorize(PvTile::<1, 3, FULL, false>::new(a)),
            2 => s.vectorize(PvTile::<2, 3, FULL, false>::new(a)),
            3 => s.vectorize(PvTile::<3, 3, FULL, false>::new(a)),
            4 => s.vectorize(PvTile::<4, 3, FULL, false>::new(a)),
            5 => s.vectorize(PvTile::<5, 3, FULL, false>::new(a)),
            6 => s.vectorize(PvTile::<6, 3, FULL, false>::new(a)),
            7 => s.vectorize(PvTile::<7, 3, FULL, false>::new(a)),
            _ => s.vectorize(PvTile::<8, 3, FULL, false>::new(a)),
        }
    }
}

/// Runs the pixel-vectorised tile of `mr` (at most 6) channels and four vectors: four
/// full ones along a row (`MASK = FULL`), or two rows of two ([`TWO_ROWS`]).
///
/// # Safety
///
/// As [`PvTile::new`], with `MR = mr`, `NV = 4` and `MASK` (`PF` when `a.pf` has lines).
#[inline(always)]
pub(super) unsafe fn pv4_call<S: Simd, const MASK: u8>(s: S, mr: usize, a: PvArgs<'_>) {
    debug_assert!((1..=6).contains(&mr) && (MASK == FULL || MASK == TWO_ROWS));
    // Tiles with lines to prefetch (`PvArgs::pf`) run a variant that does; the others
    // one whose loop has no trace of it.
    let pf = a.pf.left > 0;
    // SAFETY: forwarded from the caller.
    unsafe {
        match mr {
            1 if pf => s.vectorize(PvTile::<1, 4, MASK, true>::new(a)),
            2 if pf => s.vectorize(PvTile::<2, 4, MASK, true>::new(a)),
            3 if pf => s.vectorize(PvTile::<3, 4, MASK, true>::new(a)),
            4 if pf => s.vectorize(PvTile::<4, 4, MASK, true>::new(a)),
            5 if pf => s.vectorize(PvTile::<5, 4, MASK, true>::new(a)),
            _ if pf => s.vectorize(PvTile::<6, 4, MASK, true>::new(a)),
            1 => s.vectorize(PvTile::<1, 4, MASK, false>::new(a)),
            2 => s.vectorize(PvTile::<2, 4, MASK, false>::new(a)),
            3 => s.vectorize(PvTile::<3, 4, MASK, false>::new(a)),
            4 => s.vectorize(PvTile::<4, 4, MASK, false>::new(a)),
            5 => s.vectorize(PvTile::<5, 4, MASK, false>::new(a)),
            _ => s.vectorize(PvTile::<6, 4, MASK, false>::new(a)),
        }
    }
}

/// Weight rows (input channels) ahead of the current one that the channel tiles
/// prefetch: their weights stream from L2 or beyond, a new line per panel and channel
/// (MobileNetV2's 1x1 layers on 14x14 and 7x7 maps 5-12% faster; 4 and 16 rows ahead
/// measured the same).
const PF_ROWS: usize = 8;

/// The tile's pixel sources: one base pointer (`CONTIG`: pixel `p` at `base + p`), else
/// a pointer per pixel (`px[p]` from `src`).
pub(super) struct Pixels<const NP: usize, const CONTIG: bool> {
    base: *const f32,
    ptrs: [*const f32; NP],
}

impl<const NP: usize, const CONTIG: bool> Pixels<NP, CONTIG> {
    /// # Safety
    ///
    /// As the tile's: `src + px[p]` inside the source for every pixel; with `CONTIG`,
    /// `px[p] == px[0] + p` and `np == NP`.
    #[inline(always)]
    pub(super) unsafe fn new(src: *const f32, px: &[isize; NP], np: usize) -> Self {
        debug_assert!(!CONTIG || (np == NP && (0..NP).all(|p| px[p] == px[0] + p as isize)));
        Pixels {
            base: src.wrapping_offset(px[0]),
            ptrs: core::array::from_fn(|p| src.wrapping_offset(px[p])),
        }
    }

    /// Pixel `p` at channel offset `co`, broadcast.
    ///
    /// # Safety
    ///
    /// `co` an offset the tile's caller guaranteed readable for every pixel.
    #[inline(always)]
    pub(super) unsafe fn bcast<S: Simd>(&self, s: S, p: usize, co: isize) -> S::V {
        // SAFETY: the caller's contract.
        unsafe {
            if CONTIG {
                s.bcast(self.base.offset(co + p as isize))
            } else {
                s.bcast(self.ptrs[p].offset(co))
            }
        }
    }
}

/// One channel-vectorised tile: where it reads and writes.
pub(super) struct CvArgs<'a, const NP: usize> {
    pub(super) job: &'a Job<'a>,
    /// The panel's first weight row at tap 0 and the chunk's first channel.
    pub(super) w: *const f32,
    /// The source (channel 0 of the chunk).
    pub(super) src: *const f32,
    /// Tap-0 offsets of the tile's pixels in the source.
    pub(super) px: &'a [isize; NP],
    /// The panel's bias row.
    pub(super) bias: *const f32,
    /// Output of the panel's first channel at the tile's first pixel.
    pub(super) out: *mut f32,
    /// Distance between output channels.
    pub(super) ostride: usize,
    /// Lanes of the panel this tile stores (`lo..hi`, the group's channels).
    pub(super) lanes: (usize, usize),
    /// Valid pixels: consecutive outputs `out[..np]` of each channel.
    pub(super) np: usize,
    /// Weights the tile prefetches into L2 while it runs ([`PrefetchStream`]).
    pub(super) pf: PrefetchStream,
}

/// The 16 channels of a panel (`VEC` vectors) by `NP` pixels, run as an isolated
/// function ([`Simd::vectorize`]). Transposed in registers on the way in (chunked
/// accumulation) and out, each channel's `np` pixels moved with one masked access.
///
/// `CONTIG`: the tile's `NP` pixels are consecutive in the source (`px[p] = px[0] + p`,
/// one row of the map, `np == NP`), read from one base pointer; else each pixel through
/// a pointer of its own (tiles that cross rows, short last tiles), which costs general
/// registers (12 or 16 pointers spill).
pub(super) struct CvTile<'a, const VEC: usize, const NP: usize, const CONTIG: bool>(
    pub(super) CvArgs<'a, NP>,
);

impl<'a, const VEC: usize, const NP: usize, const CONTIG: bool> CvTile<'a, VEC, NP, CONTIG> {
    /// # Safety
    ///
    /// For every tap offset `off`, channel `c < job.cn` and pixel `p`,
    /// `src + px[p] + off + c * job.plane` must be readable, and
    /// `w + t * job.wtap + 16 * c .. + 16` readable; `bias .. bias + 16` readable;
    /// `out + lane * ostride .. + np` writable (and readable unless `job.first`) for
    /// every lane in `lanes`.
    #[inline(always)]
    pub(super) unsafe fn new(a: CvArgs<'a, NP>) -> Self {
        CvTile(a)
    }
}

impl<const VEC: usize, const NP: usize, const CONTIG: bool> WithSimd
    for CvTile<'_, VEC, NP, CONTIG>
{
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
            let pixels = Pixels::<NP, CONTIG>::new(a.src, a.px, a.np);
            let (mut pf, mut countdown) = (a.pf, 1);
            for (t, &off) in job.taps.iter().enumerate() {
                let mut wp = a.w.add(t * job.wtap);
                let mut co = off;
                for _ in 0..job.cn {
                    let mut wv = [s.zero(); VEC];
                    for (v, x) in wv.iter_mut().enumerate() {
                        *x = s.load(wp.add(v * l));
                    }
                    s.prefetch_l1(wp.wrapping_add(PF_ROWS * PANEL));
                    pf.row(s, &mut countdown);
                    for (p, x) in acc.iter_mut().enumerate() {
                        let xp = pixels.bcast(s, p, co);
                        for (xv, &wvv) in x.iter_mut().zip(&wv) {
                            *xv = s.mul_add(wvv, xp, *xv);
                        }
                    }
                    wp = wp.add(PANEL);
                    co += job.plane as isize;
                }
            }
            // Bias and a piecewise-linear activation (the curved ones are the block
            // post-pass's: `Job::act`). Passing the tile, or the rows of `m`, to an
            // out-of-line function, even on a branch not taken, made LLVM keep the
            // accumulators of the loop above on the stack (2.5-3x slower, in ReLU
            // layers too). Yet `Simd::act` per vector, whose out-of-line curved branch
            // is never taken here, measured 2x faster than the call-free
            // `Simd::act_piecewise` (AVX2, 6x14x14 k5 -> 16 by channel tiles: 16 against
            // 37 us): LLVM's choices around this epilogue are fragile, measure any
            // change to it with `conv::speed`.
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
/// `CONTIG` as in [`CvTile`].
pub(super) struct CvTile2<'a, const NP: usize, const CONTIG: bool>(
    pub(super) CvArgs<'a, NP>,
    usize,
);

impl<'a, const NP: usize, const CONTIG: bool> CvTile2<'a, NP, CONTIG> {
    /// # Safety
    ///
    /// As [`CvTile::new`] for each of the two panels with `lanes == (0, 16)`: the
    /// second panel's weights at `w + pstride`, its bias at `bias + 16`, its outputs at
    /// `out + 16 * ostride`.
    #[inline(always)]
    pub(super) unsafe fn new(a: CvArgs<'a, NP>, pstride: usize) -> Self {
        CvTile2(a, pstride)
    }
}

impl<const NP: usize, const CONTIG: bool> WithSimd for CvTile2<'_, NP, CONTIG> {
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
            let pixels = Pixels::<NP, CONTIG>::new(a.src, a.px, a.np);
            let (mut pf, mut countdown) = (a.pf, 1);
            for (t, &off) in job.taps.iter().enumerate() {
                let mut wp = a.w.add(t * job.wtap);
                let mut co = off;
                for _ in 0..job.cn {
                    let w0 = s.load(wp);
                    let w1 = s.load(wp.add(pstride));
                    // Rows past the chunk's end are the next tap's or panel's, or past
                    // the weights: prefetches never fault.
                    s.prefetch_l1(wp.wrapping_add(PF_ROWS * PANEL));
                    s.prefetch_l1(wp.wrapping_add(pstride + PF_ROWS * PANEL));
                    pf.row(s, &mut countdown);
                    for (p, x) in acc.iter_mut().enumerate() {
                        let xp = pixels.bcast(s, p, co);
                        x[0] = s.mul_add(w0, xp, x[0]);
                        x[1] = s.mul_add(w1, xp, x[1]);
                    }
                    wp = wp.add(PANEL);
                    co += job.plane as isize;
                }
            }
            // Bias and a piecewise-linear activation (the curved ones are the block
            // post-pass's: `Job::act`). Passing the tile, or the rows of `m`, to an
            // out-of-line function, even on a branch not taken, made LLVM keep the
            // accumulators of the loop above on the stack (2.5-3x slower, in ReLU
            // layers too). Yet `Simd::act` per vector, whose out-of-line curved branch
            // is never taken here, measured 2x faster than the call-free
            // `Simd::act_piecewise` (AVX2, 6x14x14 k5 -> 16 by channel tiles: 16 against
            // 37 us): LLVM's choices around this epilogue are fragile, measure any
            // change to it with `conv::speed`.
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
