//! Channel tiles of up to four panels whose reduction runs in chunks of input channels
//! ([`cv_chunks`]), the partial sums kept between chunks in a small channel-blocked
//! buffer rather than in the output. Taken by strided layers with taps (ResNets' 3x3
//! stride-2 layers: 1152-2304 steps) and by 1x1 layers with long reductions on 12x12 to
//! 24x24 maps (steps of 64 channels); the rule is `rules::chunk_channels`.
//!
//! The tiles of a block of pixels (up to 60) run one chunk of `kc` input channels at a
//! time (16 for 3x3 on 48 KiB of L1d), all of them over the chunk before the next: the
//! chunk's weights of the tiles' four panels (36 KB) are read from L1 by all but the
//! first tiles of the block. Between chunks each tile's sums go to the buffer (`[pixel]
//! [channel]`, one vector store per accumulator, no transpose) and come back for the
//! next. The tile is 4 panels by 6 pixels (per step 4 weight loads and 6 broadcasts for
//! 24 FMAs; 2 by 12 on two last panels, 3 by 6, 1 by 12), nothing in its function but
//! the reduction between loads and stores ([`CkTile`]); only the last chunk's sums are
//! transposed into the output, with bias and activation ([`CkOut`]), and a band chunk
//! after the first starts from the output's partial sums ([`CkIn`]). While they run, the
//! block's first four tiles prefetch the next chunk's weights into L1 (a panel each,
//! a line a step) and the next four those of the chunk after into L2: the first tile of
//! a chunk whose weights came from L2 or L3 ran 3-4x slower than the others.
//!
//! Each output is one chain over the band chunks, then the `kc`-chunks, then taps and
//! channels in order; `kc` and the band chunks are chosen from the whole layer (never
//! from a thread part's range), so any split of the layer gives the same bits.

#[allow(unused_imports)]
use super::*;

/// One chunked channel tile: where it reads and writes.
#[derive(Clone, Copy)]
pub(super) struct CkArgs<'a, const NP: usize> {
    /// The chunk: its taps, channel count `cn`, channel and tap distances.
    pub(super) job: &'a Job<'a>,
    /// The first panel's weight row at tap 0 and the chunk's first channel.
    pub(super) w: *const f32,
    /// Floats between consecutive panels' weights.
    pub(super) pstride: usize,
    /// The source at the chunk's first channel.
    pub(super) src: *const f32,
    /// Tap-0 offsets of the tile's pixels in the source.
    pub(super) px: &'a [isize; NP],
    /// Valid pixels (the others repeat the last one's offset).
    pub(super) np: usize,
    /// The tile's partial sums, `[NP][PN][16]` floats on a 64-byte boundary: read
    /// unless the tile starts from zero, written.
    pub(super) acc: *mut f32,
    /// Weights of one panel of a later chunk, in the layout of `w` (taps `job.wtap`
    /// apart, then rows): with `PF` set, the tile prefetches the line of the row it
    /// is at there, one a step (into L1 with [`PF_L1`], else into L2).
    pub(super) pf: *const f32,
}

/// A chunked tile prefetches nothing.
pub(super) const PF_NONE: u8 = 0;
/// It prefetches a panel of the next chunk's weights into L1.
pub(super) const PF_L1: u8 = 1;
/// It prefetches a panel of the chunk after next into L2.
pub(super) const PF_L2: u8 = 2;

/// `PN` panels (16 channels each, one vector: AVX-512 only) by `NP` pixels over one
/// chunk of input channels, run as an isolated function ([`Simd::vectorize`]): the sums
/// start from zero (`FIRST`) or from the tile's partial sums, and end there. Nothing
/// but the reduction between the loads and the stores (a transposing epilogue in the
/// same function made LLVM keep the accumulators of the 4 x 6 tile on the stack, 2x
/// slower): [`CkOut`] and [`CkIn`] move the sums to and from the output.
/// `CONTIG` as in [`CvTile`].
pub(super) struct CkTile<
    'a,
    const PN: usize,
    const NP: usize,
    const CONTIG: bool,
    const FIRST: bool,
    const PF: u8,
>(CkArgs<'a, NP>);

impl<'a, const PN: usize, const NP: usize, const CONTIG: bool, const FIRST: bool, const PF: u8>
    CkTile<'a, PN, NP, CONTIG, FIRST, PF>
{
    /// # Safety
    ///
    /// For every tap offset `off`, channel `c < job.cn` and pixel `p`,
    /// `src + px[p] + off + c * job.plane` must be readable, and `w + v * pstride +
    /// t * job.wtap + 16 * c .. + 16` readable for `v < PN`; `acc` valid for
    /// `NP * PN * 16` floats, 64-byte aligned.
    #[inline(always)]
    pub(super) unsafe fn new(a: CkArgs<'a, NP>) -> Self {
        CkTile(a)
    }
}

impl<const PN: usize, const NP: usize, const CONTIG: bool, const FIRST: bool, const PF: u8> WithSimd
    for CkTile<'_, PN, NP, CONTIG, FIRST, PF>
{
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let job = a.job;
        debug_assert!(S::LANES == PANEL && a.np <= NP);
        let mut acc = [[s.zero(); PN]; NP];
        // SAFETY: (whole body) the pointers stay within the ranges `new`'s caller
        // guaranteed.
        unsafe {
            if !FIRST {
                for (p, x) in acc.iter_mut().enumerate() {
                    for (v, xv) in x.iter_mut().enumerate() {
                        *xv = s.load(a.acc.add((p * PN + v) * PANEL));
                    }
                }
            }
            let pixels = Pixels::<NP, CONTIG>::new(a.src, a.px, a.np);
            for (t, &off) in job.taps.iter().enumerate() {
                let mut wp = a.w.add(t * job.wtap);
                let mut pf = a.pf.wrapping_add(t * job.wtap);
                let mut co = off;
                for _ in 0..job.cn {
                    let mut wv = [s.zero(); PN];
                    for (v, x) in wv.iter_mut().enumerate() {
                        *x = s.load(wp.add(v * a.pstride));
                    }
                    // Addresses past the weights are never read: prefetches do not
                    // fault.
                    if PF == PF_L1 {
                        s.prefetch_l1(pf);
                    } else if PF == PF_L2 {
                        s.prefetch(pf);
                    }
                    for (p, x) in acc.iter_mut().enumerate() {
                        let xp = pixels.bcast(s, p, co);
                        for (xv, &wvv) in x.iter_mut().zip(&wv) {
                            *xv = s.mul_add(wvv, xp, *xv);
                        }
                    }
                    wp = wp.add(PANEL);
                    pf = pf.wrapping_add(PANEL);
                    co += job.plane as isize;
                }
            }
            for (p, x) in acc.iter().enumerate() {
                for (v, &xv) in x.iter().enumerate() {
                    s.store(a.acc.add((p * PN + v) * PANEL), xv);
                }
            }
        }
    }
}

/// A chunked tile's sums moved to the output or from it: `PN` panels by `NP` pixels.
#[derive(Clone, Copy)]
pub(super) struct CkMove {
    /// The tile's partial sums, `[NP][PN][16]`, 64-byte aligned.
    pub(super) acc: *mut f32,
    /// Output of the first panel's first channel at the tile's first pixel.
    pub(super) out: *mut f32,
    /// Distance between output channels.
    pub(super) ostride: usize,
    /// Output channels of the panels moved (the first `valid` lanes).
    pub(super) valid: usize,
    /// Valid pixels: consecutive outputs `out[..np]` of each channel.
    pub(super) np: usize,
    /// The first panel's bias row (the next panels' follow).
    pub(super) bias: *const f32,
    /// The layer's last sums: add the bias and apply `act` on the way out.
    pub(super) last: bool,
    /// The piecewise-linear activation of the last sums.
    pub(super) act: Act,
}

/// A chunked tile's sums transposed into the output ([`CkMove`]; with bias and the
/// activation when `last`), each channel's `np` pixels with one masked store.
pub(super) struct CkOut<const PN: usize, const NP: usize>(CkMove);

/// The output transposed into a chunked tile's sums ([`CkMove`]: partial sums a band
/// chunk before stored there); lanes past `valid` start from zero.
pub(super) struct CkIn<const PN: usize, const NP: usize>(CkMove);

impl<const PN: usize, const NP: usize> CkOut<PN, NP> {
    /// # Safety
    ///
    /// `acc` valid for `NP * PN * 16` floats, aligned; `out + lane * ostride .. + np`
    /// writable for every lane below `valid`; `bias .. + 16 * PN` readable.
    #[inline(always)]
    pub(super) unsafe fn new(m: CkMove) -> Self {
        CkOut(m)
    }
}

impl<const PN: usize, const NP: usize> CkIn<PN, NP> {
    /// # Safety
    ///
    /// `acc` valid for `NP * PN * 16` floats, aligned; `out + lane * ostride .. + np`
    /// readable for every lane below `valid`.
    #[inline(always)]
    pub(super) unsafe fn new(m: CkMove) -> Self {
        CkIn(m)
    }
}

impl<const PN: usize, const NP: usize> WithSimd for CkOut<PN, NP> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let l = S::LANES;
        debug_assert!(l == PANEL && NP <= l && a.np <= NP && a.valid <= PN * PANEL);
        let mut m = [s.zero(); 16];
        // SAFETY: (whole body) within the ranges `new`'s caller guaranteed.
        unsafe {
            for v in 0..PN {
                let b = s.load(a.bias.add(v * PANEL));
                for (p, row) in m[..NP].iter_mut().enumerate() {
                    let x = s.load(a.acc.add((p * PN + v) * PANEL));
                    *row = if a.last { s.act(s.add(x, b), a.act) } else { x };
                }
                m[NP..l].fill(s.zero());
                s.transpose(&mut m[..l]);
                for (c, &row) in m[..l].iter().enumerate() {
                    let lane = v * PANEL + c;
                    if lane < a.valid {
                        s.store_n(a.out.add(lane * a.ostride), row, a.np);
                    }
                }
            }
        }
    }
}

impl<const PN: usize, const NP: usize> WithSimd for CkIn<PN, NP> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let l = S::LANES;
        debug_assert!(l == PANEL && NP <= l && a.np <= NP && a.valid <= PN * PANEL);
        let mut m = [s.zero(); 16];
        // SAFETY: (whole body) within the ranges `new`'s caller guaranteed.
        unsafe {
            for v in 0..PN {
                for (c, row) in m[..l].iter_mut().enumerate() {
                    let lane = v * PANEL + c;
                    *row = if lane < a.valid {
                        s.load_n(a.out.add(lane * a.ostride), a.np)
                    } else {
                        s.zero()
                    };
                }
                s.transpose(&mut m[..l]);
                for (p, &row) in m[..NP].iter().enumerate() {
                    s.store(a.acc.add((p * PN + v) * PANEL), row);
                }
            }
        }
    }
}

/// Floats of the band buffer a chunked channel pass keeps for its partial sums (the
/// buffer's last quarter; the band copy gets the rest): blocks of up to 60 pixels by
/// 64 channels with `std`, 12 without.
pub(super) const CK_ACC_FLOATS: usize = SCRATCH / 4;

/// How many times the channel tiles' input budget (`Tuning::cv_block_bytes`) a block of
/// a 1x1 layer's chunked tiles reads: 1 MiB of input on AVX-512, whole 14x14 maps of up
/// to 1024 channels, or a whole thread part's pixels. Every block streams all of the
/// layer's weights past its tiles (256K-1M floats on ResNet-50's 14x14 layers), so fewer
/// blocks stream less; with the plain budget a 1024-channel layer ran in blocks of 48
/// pixels, 196 = 4 x 48 + 4, at two threads 48 + 48 + 2 per part. Measured on AVX-512
/// (Intel Xeon, 2 MiB L2, 2026-12-05): `conv::speed` 1024x14x14 -> 256 575 -> 513 µs,
/// 512x14x14 -> 128 136 -> 128, 896x14x14 -> 128 246 -> 237, 256x14x14 -> 1024 571 ->
/// 529; in ResNet-50 (`steps_ab.py`, six alternated rounds) its 14x14 1x1 layers
/// 1.03-1.08x at one thread and 1.04-1.08x at two, layer3.0.downsample 1.07-1.08x,
/// the model 1.02x at both; four times the budget gave 0.99-1.00x of eight. DenseNet-121's
/// 14x14 1x1 layers 0.98-1.03x (the larger ones faster). Not measured on cores with 1
/// MiB of L2 (AMD Zen 4), where a block's input and the streamed weights share less.
pub(super) const CK_1X1_BLOCK_SCALE: usize = 8;

/// Pixels of a block of chunked tiles: a multiple of 12 (the tiles are 6 or 12 pixels).
const CK_BLOCK_STEP: usize = 12;

/// Most pixels of a block: as many as a whole band buffer of partial sums holds (64
/// channels a pixel), a multiple of [`CK_BLOCK_STEP`].
const CK_MAX_BLOCK: usize = SCRATCH / (4 * PANEL) / CK_BLOCK_STEP * CK_BLOCK_STEP;

/// The chunked channel pass over output pixels `q0..q1` (rows of one band) of the
/// output channels `go0..go0 + og` (one group: whole panels from `go0`), the band's
/// chunk of channels `job` summed in steps of `kc`: in blocks of pixels whose partial
/// sums fit `acc_len` floats at `acc`, for each run of up to four panels, for each step,
/// every tile of the block.
///
/// # Safety
///
/// As [`cv_rows`]; `acc` valid for `acc_len` floats (this call's alone), on a 64-byte
/// boundary, `acc_len >= 12 * 64`.
#[inline(always)]
pub(super) unsafe fn cv_chunks<S, W>(
    args: CvPass<'_, S, W>,
    kc: usize,
    acc: *mut f32,
    acc_len: usize,
) where
    S: Simd,
    W: Fn(usize) -> *const f32 + Copy,
{
    let (s, d, job, band, q0, q1, go0, og, w_of, bias, out) = args;
    debug_assert!(S::LANES == PANEL && go0 % PANEL == 0 && kc > 0);
    debug_assert!(acc_len >= CK_BLOCK_STEP * 4 * PANEL);
    let ohw = d.oh * d.ow;
    // Pixels of a block: as many as the partial sums' buffer holds, and no more than
    // the channel tiles' input budget (`cv_rows`; [`CK_1X1_BLOCK_SCALE`] times that
    // for a 1x1 layer) unless that is under a step.
    let by_acc = acc_len / (4 * PANEL);
    let budget = block_floats::<S>(Plan::Channels);
    let budget = if job.taps.len() == 1 {
        budget * CK_1X1_BLOCK_SCALE
    } else {
        budget
    };
    let by_input = budget / (job.cn * d.sh * d.sw).max(1);
    let block = by_acc.min(by_input.max(4 * CK_BLOCK_STEP)) / CK_BLOCK_STEP * CK_BLOCK_STEP;
    let block = block.clamp(CK_BLOCK_STEP, CK_MAX_BLOCK);
    let (first_panel, end_panel) = (go0 / PANEL, (go0 + og).div_ceil(PANEL));
    let mut qa = q0;
    while qa < q1 {
        let qe = (qa + block).min(q1);
        // Each pixel's offset in the band, for every chunk and run of panels of the
        // block; a short last tile's places past the block repeat its last pixel
        // (computed, never stored).
        let mut offs = [0isize; CK_MAX_BLOCK + CK_BLOCK_STEP];
        let n = qe - qa;
        for (p, off) in offs
            .iter_mut()
            .enumerate()
            .take(n.next_multiple_of(CK_BLOCK_STEP))
        {
            let q = qa + p.min(n - 1);
            let (y, x) = (q / d.ow, q % d.ow);
            *off = ((y * d.sh - band.prow0) * band.rowpitch + x) as isize;
        }
        let mut panel = first_panel;
        while panel < end_panel {
            let pn = (end_panel - panel).min(4);
            let p0 = panel * PANEL;
            let valid = (go0 + og - p0).min(pn * PANEL);
            for k0 in (0..job.cn).step_by(kc) {
                let k1 = (k0 + kc).min(job.cn);
                let kjob = Job {
                    cn: k1 - k0,
                    ..*job
                };
                // SAFETY: channel `k0 < cn` of the band and of the panels' weights.
                let (src, w) =
                    unsafe { (band.base.add(k0 * band.plane), w_of(p0).add(k0 * PANEL)) };
                // The next two chunks' weights in loop order (this run's next chunks,
                // the next run's or the next block's first): tiles prefetch them.
                let after = |panel: usize, k0: usize| {
                    let pn = (end_panel - panel).min(4);
                    if k0 + kc < job.cn {
                        (panel, k0 + kc)
                    } else if panel + pn < end_panel {
                        (panel + pn, 0)
                    } else {
                        (first_panel, 0)
                    }
                };
                let (n1, n2) = (
                    after(panel, k0),
                    after(after(panel, k0).0, after(panel, k0).1),
                );
                let wk = |(p, k): (usize, usize)| w_of(p * PANEL).wrapping_add(k * PANEL);
                let next = [wk(n1), wk(n2)];
                let pstride = if pn > 1 {
                    // SAFETY: both inside the packed weights (`p0 + 16 < O`).
                    unsafe { w_of(p0 + PANEL).offset_from(w_of(p0)) as usize }
                } else {
                    0
                };
                let run = Run {
                    d,
                    job: &kjob,
                    src,
                    w,
                    pstride,
                    bias: bias.wrapping_add(p0),
                    out: out.wrapping_add(p0 * ohw),
                    ohw,
                    valid,
                    acc,
                    // Sums from the output: a band chunk after the first.
                    from_out: k0 == 0 && !job.first,
                    first: k0 == 0 && job.first,
                    // Sums to the output: the band chunk's last step.
                    to_out: k1 == job.cn,
                    range: (qa, qe),
                    offs: &offs,
                    next,
                };
                // SAFETY: forwarded (the block's pixels of these panels, this call's).
                unsafe {
                    match pn {
                        4 => run.tiles::<S, 4, 6>(s),
                        3 => run.tiles::<S, 3, 6>(s),
                        2 => run.tiles::<S, 2, 12>(s),
                        _ => run.tiles::<S, 1, 12>(s),
                    }
                }
            }
            panel += pn;
        }
        // SAFETY: pixels `qa..qe` of the range, channels of the group: this pass's.
        unsafe { post_pass(s, job, out, ohw, (go0, go0 + og), (qa, qe)) };
        qa = qe;
    }
}

/// The tiles of one chunk, one run of panels and one block of pixels.
struct Run<'a> {
    d: &'a Dims2d,
    job: &'a Job<'a>,
    /// The band at the chunk's first channel.
    src: *const f32,
    /// The first panel's weights at the chunk's first channel.
    w: *const f32,
    pstride: usize,
    /// The first panel's bias row.
    bias: *const f32,
    /// The first panel's first output plane.
    out: *mut f32,
    ohw: usize,
    valid: usize,
    acc: *mut f32,
    /// The sums start from the output (partial sums of an earlier band chunk).
    from_out: bool,
    /// The sums start from zero.
    first: bool,
    /// The sums end in the output (with bias and activation on the job's last chunk).
    to_out: bool,
    /// The block's pixels.
    range: (usize, usize),
    /// Their offsets in the band, from the block's first pixel (and the repeated last
    /// one to a whole number of tiles).
    offs: &'a [isize],
    /// The next chunk's weights and the one's after (their first panel): tile `i <
    /// PN` prefetches panel `i` of the first into L1, tile `PN + i` panel `i` of the
    /// second into L2.
    next: [*const f32; 2],
}

impl Run<'_> {
    /// Runs `PN`-panel tiles of `NP` pixels over the block, tile `i`'s partial sums at
    /// `acc + i * NP * PN * 16`.
    ///
    /// # Safety
    ///
    /// As [`cv_chunks`], for this run's panels and block.
    #[inline(always)]
    unsafe fn tiles<S: Simd, const PN: usize, const NP: usize>(&self, s: S) {
        let d = self.d;
        let (qa, qe) = self.range;
        for (i, qb) in (qa..qe).step_by(NP).enumerate() {
            let np = NP.min(qe - qb);
            // SAFETY: tile `i` of the block: `(i + 1) * NP * PN * 16 <= acc_len` (the
            // block is at most `acc_len / 64` pixels).
            let acc = unsafe { self.acc.add(i * NP * PN * PANEL) };
            let mv = CkMove {
                acc,
                // SAFETY: pixel `qb < OH*OW` of the first panel's plane.
                out: unsafe { self.out.add(qb) },
                ostride: self.ohw,
                valid: self.valid,
                np,
                bias: self.bias,
                last: self.job.last,
                act: self.job.act,
            };
            if self.from_out {
                // SAFETY: lanes below `valid` of the tile's pixels' outputs: this
                // pass's (stored by an earlier band chunk).
                unsafe { s.vectorize(CkIn::<PN, NP>::new(mv)) };
            }
            // A short last tile repeats its last pixel (`offs`).
            let px: [isize; NP] = core::array::from_fn(|p| self.offs[i * NP + p]);
            let a = CkArgs {
                job: self.job,
                w: self.w,
                pstride: self.pstride,
                src: self.src,
                px: &px,
                np,
                acc,
                pf: if i < PN {
                    self.next[0].wrapping_add(i * self.pstride)
                } else {
                    self.next[1].wrapping_add((i - PN) * self.pstride)
                },
            };
            let contig = np == NP && qb / d.ow == (qb + NP - 1) / d.ow;
            // SAFETY: the tile's pixels and channels as `cv_tile`'s (taps inside the
            // band), the panels' weights: the caller's.
            // SAFETY: the tile's pixels and channels as `cv_tile`'s (taps inside the
            // band), the panels' weights: the caller's.
            unsafe {
                macro_rules! go {
                    ($pf:expr) => {
                        match (contig, self.first) {
                            (true, true) => s.vectorize(CkTile::<PN, NP, true, true, $pf>::new(a)),
                            (true, false) => {
                                s.vectorize(CkTile::<PN, NP, true, false, $pf>::new(a))
                            }
                            (false, true) => {
                                s.vectorize(CkTile::<PN, NP, false, true, $pf>::new(a))
                            }
                            (false, false) => {
                                s.vectorize(CkTile::<PN, NP, false, false, $pf>::new(a))
                            }
                        }
                    };
                }
                if i < PN {
                    go!(PF_L1)
                } else if i < 2 * PN {
                    go!(PF_L2)
                } else {
                    go!(PF_NONE)
                }
            }
            if self.to_out {
                // SAFETY: lanes below `valid` of the tile's pixels' outputs: this
                // pass's; the panels' bias rows.
                unsafe { s.vectorize(CkOut::<PN, NP>::new(mv)) };
            }
        }
    }
}
