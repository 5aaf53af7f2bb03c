//! The batched matrix products `M[ξ] = V[ξ] · U[ξ]` of a block: the register-blocked
//! micro-kernel (`GemmTile`), one position's tiles (`gemm_position`) and the split of the
//! 36 positions over the pool's threads.

use super::*;

/// One GEMM tile: `PN` panels of 16 output channels by `NT` tiles, at one position `ξ`.
#[derive(Clone, Copy)]
pub(super) struct GemmArgs {
    /// `V[ξ][0][t0]`: tile `t` of channel `c` at `v + c * vstride + t`.
    pub(super) v: *const f32,
    pub(super) vstride: usize,
    /// Valid tiles (`<= NT`); the others repeat the last one, never stored.
    pub(super) nt: usize,
    /// `U[ξ][panel][c0]`: row of channel `c0 + c` of panel `p` at `u + p * pstride + c *
    /// 16`.
    pub(super) u: *const f32,
    /// Floats between the panels of `U` (the layer's input channels times 16).
    pub(super) pstride: usize,
    /// Input channels of this call (a chunk of the layer's).
    pub(super) cn: usize,
    /// Whether the products add to `M` (a later chunk of channels) or overwrite it.
    pub(super) accumulate: bool,
    /// `M[ξ][t0][panel * 16]`: tile `t` at `m + t * mstride`.
    pub(super) m: *mut f32,
    pub(super) mstride: usize,
    /// Prefetched while the product runs: `pf_lines` cache lines per input channel from
    /// `pf` on (the next panels' weights; any address: prefetches never fault).
    pub(super) pf: *const f32,
    pub(super) pf_lines: usize,
}

/// The GEMM micro-kernel, run as an isolated function ([`Simd::vectorize`]).
pub(super) struct GemmTile<const PN: usize, const VEC: usize, const NT: usize>(pub(super) GemmArgs);

impl<const PN: usize, const VEC: usize, const NT: usize> GemmTile<PN, VEC, NT> {
    /// # Safety
    ///
    /// `v + c * vstride + t` readable for `c < cn`, `t < nt`; `u + p * pstride + c * 16
    /// .. + 16` readable for `p < PN`, `c < cn`; `m + t * mstride .. + PN * 16` writable
    /// for `t < nt` (and, with `accumulate`, readable: the earlier chunks' sums).
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
        let pstride = a.pstride;
        // SAFETY: (whole body) channel `c < cn` reads `v + c * vstride + offs[t]` with
        // `offs[t] < nt`, and the `PN` panel rows `u + p * pstride + c * 16 .. + 16`;
        // stores (and, accumulating, the loads before) touch tiles `t < nt`, `PN * 16`
        // floats each: all within `new`'s contract.
        unsafe {
            if a.accumulate {
                for (t, acc_t) in acc.iter_mut().enumerate().take(a.nt) {
                    let mp = a.m.add(t * a.mstride);
                    for (p, acc_p) in acc_t.iter_mut().enumerate() {
                        for (k, y) in acc_p.iter_mut().enumerate() {
                            *y = s.load(mp.add(p * PANEL + k * l));
                        }
                    }
                }
            }
            let mut vp = a.v;
            let mut up = a.u;
            let mut pp = a.pf;
            for _ in 0..a.cn {
                for j in 0..a.pf_lines {
                    s.prefetch(pp.wrapping_add(j * PANEL));
                }
                pp = pp.wrapping_add(a.pf_lines * PANEL);
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

/// Runs the GEMM of one position over the panels `pa..pz` (of `panels`) and every tile
/// group, `kc` input channels per pass ([`chunk_channels`]).
///
/// # Safety
///
/// `v` holds `cn` rows of `tb` tiles (stride `tb`), `u` `panels * cn` rows of 16,
/// `m` `tb` rows of `panels * 16` floats; `pa < pz <= panels`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_position<S: Simd>(
    s: S,
    v: *const f32,
    u: *const f32,
    m: *mut f32,
    cn: usize,
    tb: usize,
    (panels, (pa, pz)): (usize, (usize, usize)),
    kc: usize,
) {
    let opad = panels * PANEL;
    let mut p = pa;
    while p < pz {
        let left = pz - p;
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
        // The next panels' weights (or the next position's: `U` is one run of rows) are
        // prefetched a slice per tile group, so that their first pass does not wait on
        // memory when the model's weights do not stay in cache.
        let next = u.wrapping_add((p + pn) * cn * PANEL);
        let groups = tb.div_ceil(nt_max);
        let lps = if groups >= 2 { pn.div_ceil(groups) } else { 0 };
        let mut k0 = 0;
        while k0 < cn {
            let kn = kc.min(cn - k0);
            let mut t0 = 0;
            let mut g = 0;
            while t0 < tb {
                let nt = nt_max.min(tb - t0);
                let first = (g * lps).min(pn);
                let pf_lines = lps.min(pn - first);
                // SAFETY: tiles `t0..t0 + nt` of `v` and `m`, panels `p..p + pn` of `u` and
                // of the rows of `m`: inside the buffers the caller guarantees.
                unsafe {
                    let a = GemmArgs {
                        v: v.add(k0 * tb + t0),
                        vstride: tb,
                        nt,
                        u: u.add(p * cn * PANEL + k0 * PANEL),
                        pstride: cn * PANEL,
                        cn: kn,
                        accumulate: k0 > 0,
                        m: m.add(t0 * opad + p * PANEL),
                        mstride: opad,
                        pf: next.wrapping_add(first * cn * PANEL + k0 * pf_lines * PANEL),
                        pf_lines,
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
                g += 1;
            }
            k0 += kn;
        }
        p += pn;
    }
}

/// Input channels per pass of a chunked product ([`chunk_channels`]): four panels' rows
/// of 64 channels are 16 KiB, in L1 for the passes of the tile groups after the first.
const CHUNK: usize = 64;

/// Input channels per pass over a panel group's tile groups for a layer of `positions`
/// products of `c` input channels and `panels` panels of 16 output channels: [`CHUNK`]
/// where its transformed weights exceed half the L2 (they stream from beyond it on
/// every image), else all of them. A panel group's weights are read once per tile
/// group: from memory by the first pass, from cache by the others; cut into chunks of
/// channels, the reads from memory spread over the passes instead of stalling the first
/// pass of each group (ResNet-18's 512x7x7 F(2x2) layer from memory, cold, medians of 15
/// alternated runs: 1947 -> 1723 µs on AVX-512, 2562 -> 2375 on AVX2; 256x14x14: 1186 ->
/// 1038, 1539 -> 1491; the whole ResNet-18 1.06x at one thread, 1.04x at two; chunks of
/// 32 and 128 channels no better). The chunks' partial sums accumulate in `M` (each
/// value still one chain in channel order: the same bits).
pub(super) fn chunk_channels(positions: usize, c: usize, panels: usize) -> usize {
    let bytes = positions * panels * PANEL * c * core::mem::size_of::<f32>();
    if bytes > L2 / 2 {
        CHUNK
    } else {
        usize::MAX
    }
}

/// Multiply-accumulates of a block's 36 products from which they are split over the
/// pool's threads (with the `parallel` feature; without it the pool has one thread).
pub(super) const PAR_MACS: usize = 500_000;

/// The buffers of one block's 36 matrix products, shared by the threads running them.
#[derive(Clone, Copy)]
pub(super) struct GemmAll<S> {
    pub(super) s: S,
    pub(super) v: *const f32,
    pub(super) u: *const f32,
    pub(super) m: *mut f32,
    /// Input channels per pass ([`chunk_channels`]).
    pub(super) kc: usize,
}

// SAFETY: the parts of a block read `v` and `u` and write disjoint positions of `m`
// (`GemmAll::position`), and `pool::run` returns only when all of them are done; the
// SIMD token is a proof of CPU features, valid on every thread of the process.
unsafe impl<S> Sync for GemmAll<S> {}

impl<S: Simd> GemmAll<S> {
    /// The matrix product of position `xi` (see [`gemm_position`]) for the panels
    /// `prange` of `panels`.
    ///
    /// # Safety
    ///
    /// The buffers hold `[36][C][tb]` (`v`), `[36][panels][C][16]` (`u`) and
    /// `[36][tb][panels * 16]` (`m`) floats, the positions of `v` and `m`
    /// [`pos_stride`] apart; no other thread touches those panels of position `xi` of
    /// `m`; `prange.0 < prange.1 <= panels`.
    #[inline(always)]
    pub(super) unsafe fn position(
        &self,
        xi: usize,
        c: usize,
        tb: usize,
        (panels, prange): (usize, (usize, usize)),
    ) {
        let opad = panels * PANEL;
        // SAFETY: position `xi` of each buffer, as the caller guarantees.
        unsafe {
            gemm_position(
                self.s,
                self.v.add(xi * pos_stride(c * tb)),
                self.u.add(xi * panels * c * PANEL),
                self.m.add(xi * pos_stride(tb * opad)),
                c,
                tb,
                (panels, prange),
                self.kc,
            );
        }
    }
}
