//! The channel-vectorised pass of the direct convolution ([`cv_rows`]): blocks of
//! pixels, the group's panels one after another over each block, channel tiles.

#[allow(unused_imports)]
use super::*;

/// What a channel-vectorised pass runs on: the level, the layer, the chunk's job, its
/// source, the pixel range `q0..q1`, the group's first output channel and channel count
/// (or the panel range's), the weights of an output channel (`w_of`), bias and output.
pub(super) type CvPass<'a, S, W> = (
    S,
    &'a Dims2d,
    &'a Job<'a>,
    &'a Band,
    usize,
    usize,
    usize,
    usize,
    W,
    *const f32,
    *mut f32,
);

/// The channel-vectorised pass over output pixels `q0..q1` (rows of one band) of one
/// group and chunk, in blocks of pixels whose input stays in cache, the group's panels
/// one after another over each block: a panel's weights are read once per block (on
/// small maps with many channels, MobileNetV2's 7x7 1x1 layers, once per layer), not
/// once per tile of pixels. Tiles whose `NP` pixels lie in one row read them from one
/// base pointer (`CONTIG` tiles); a short last tile moves back over pixels of the range
/// already computed when that makes it one (their values are recomputed identically:
/// only on a first chunk, which does not read the output).
#[inline(always)]
pub(super) fn cv_rows<S, W, const VEC: usize, const NP: usize, const PN: usize>(
    args: CvPass<'_, S, W>,
) where
    S: Simd,
    W: Fn(usize) -> *const f32 + Copy,
{
    let (s, d, job, band, q0, q1, go0, og, w_of, _, out) = args;
    let ohw = d.oh * d.ow;
    let one_row = |q: usize| q + NP <= q1 && q / d.ow == (q + NP - 1) / d.ow;
    // Pixels of a block: as many as its input keeps in cache, or, with big weights, as
    // many as `BIG_BLOCK_FLOATS` of input (a big band's pixels: one block).
    let block = if is_big(og, job.cn, job.taps.len()) {
        BIG_BLOCK_FLOATS / job.cn.max(1)
    } else {
        block_floats::<S>(Plan::Channels) / (job.cn * d.sh * d.sw).max(1)
    };
    let block = (block / NP * NP).max(NP);
    let (first_panel, last_panel) = (go0 / PANEL, (go0 + og - 1) / PANEL);
    // The packed tiles' job: their channels `NP` floats apart.
    let pjob = Job { plane: NP, ..*job };
    let mut qa = q0;
    while qa < q1 {
        let qe = (qa + block).min(q1);
        let mut lo = qa;
        // Packing (a direct 1x1 layer of one row, `band.pack` not null): the block's
        // whole tiles' input copied tile after tile, `[tile][channel][NP]`, so that each
        // tile reads one contiguous run (a line per 16 / NP channels, in L1 with the
        // panel's weights) instead of a line per channel spread over the whole input.
        // The tiles compute the same chains in the same order: the same bits.
        let packed = if !band.pack.ptr.is_null() && (qe - qa) * job.cn <= band.pack.len {
            let nt = (qe - qa) / NP;
            // SAFETY: tiles `t < nt` are whole and in the one row (`qa + nt * NP <= qe
            // <= q1`): input pixels `qa..qa + nt * NP` of each of the chunk's channels
            // (direct: the input itself); the buffer holds `pack.len >= nt * NP * cn`
            // floats, this call's alone (`PackBuf`).
            unsafe {
                for c in 0..job.cn {
                    let src = band.base.add(c * band.plane + qa);
                    for t in 0..nt {
                        core::ptr::copy_nonoverlapping(
                            src.add(t * NP),
                            band.pack.ptr.add((t * job.cn + c) * NP),
                            NP,
                        );
                    }
                }
            }
            nt
        } else {
            0
        };
        let mut panel = first_panel;
        while panel <= last_panel {
            let p0 = panel * PANEL;
            // Two whole panels of the group at once, or one panel (of which only the
            // group's lanes are stored: lanes of other groups sharing it compute garbage).
            let pair = PN == 2 && VEC == 1 && go0 <= p0 && p0 + 2 * PANEL <= go0 + og;
            let step = if pair { 2 } else { 1 };
            // The panels run next: this block's next ones, else the next block's first.
            // Their weights may come from memory (a model's big layers stream theirs
            // once per inference): this group's tiles prefetch them into L2, each tile a
            // share of the rows, spread over its own (`PrefetchStream`).
            let next = if panel + step <= last_panel {
                Some(panel + step)
            } else if qe < q1 {
                Some(first_panel)
            } else {
                None
            };
            let ntiles = (qe - qa).div_ceil(NP);
            let rows = job.taps.len() * job.cn;
            let lines = next
                .filter(|_| !prefetch_off())
                .map_or(0, |n| (last_panel + 1 - n).min(PN) * rows);
            let base = next.map_or(core::ptr::null(), |n| w_of(n * PANEL));
            let pf_of = |i: usize| {
                let (a, b) = (i * lines / ntiles, (i + 1) * lines / ntiles);
                PrefetchStream::new(base, (job.cn, job.wtap), (a, b - a), rows)
            };
            let mut i = 0;
            for t in 0..packed {
                // SAFETY: tile `t` of the packed block (see above).
                let src = unsafe { band.pack.ptr.add(t * job.cn * NP) };
                cv_tile::<S, W, VEC, NP, PN, true>(
                    args,
                    qa + t * NP,
                    NP,
                    p0,
                    pair,
                    Some((src, &pjob)),
                    pf_of(i),
                );
                i += 1;
            }
            for qb in (qa + packed * NP..qe).step_by(NP) {
                let np = NP.min(q1 - qb);
                let back = q1.saturating_sub(NP);
                let pf = pf_of(i);
                i += 1;
                if one_row(qb) {
                    cv_tile::<S, W, VEC, NP, PN, true>(args, qb, NP, p0, pair, None, pf);
                } else if np < NP && job.first && back >= q0 && one_row(back) {
                    cv_tile::<S, W, VEC, NP, PN, true>(args, back, NP, p0, pair, None, pf);
                    lo = lo.min(back);
                } else {
                    cv_tile::<S, W, VEC, NP, PN, false>(args, qb, np, p0, pair, None, pf);
                }
            }
            panel += step;
        }
        // The block's pixels, and those before it that a tile moved back over stored
        // again (without the curved activation): all of the group's channels.
        // SAFETY: pixels `lo..qe` of the range, channels of the group (or panel
        // range): this pass's to write.
        unsafe { post_pass(s, job, out, ohw, (go0, go0 + og), (lo, qe)) };
        qa = qe;
    }
}

/// The channel tile of [`cv_rows`] at output pixels `qb..qb + np` and the panel at
/// output channel `p0` (with the next one: `pair`); `packed`: its input packed at that
/// pointer (`[channel][NP]`, a whole contiguous tile) and the job reading it.
#[inline(always)]
pub(super) fn cv_tile<
    S,
    W,
    const VEC: usize,
    const NP: usize,
    const PN: usize,
    const CONTIG: bool,
>(
    (s, d, job, band, _, _, go0, og, w_of, bias, out): CvPass<'_, S, W>,
    qb: usize,
    np: usize,
    p0: usize,
    pair: bool,
    packed: Option<(*const f32, &Job<'_>)>,
    pf: PrefetchStream,
) where
    S: Simd,
    W: Fn(usize) -> *const f32 + Copy,
{
    let ohw = d.oh * d.ow;
    // A short last tile repeats its last pixel (computed, never stored).
    let mut px = [0isize; NP];
    let (src, job) = match packed {
        Some((src, job)) => {
            for (p, off) in px.iter_mut().enumerate() {
                *off = p as isize;
            }
            (src, job)
        }
        None => {
            for (p, off) in px.iter_mut().enumerate() {
                let q = qb + p.min(np - 1);
                let (y, x) = (q / d.ow, q % d.ow);
                *off = ((y * d.sh - band.prow0) * band.rowpitch + x) as isize;
            }
            (band.base, job)
        }
    };
    let lanes = (go0.max(p0) - p0, (go0 + og).min(p0 + PANEL) - p0);
    // SAFETY: `p0 < O` and `qb < OH*OW`, so the pointers are inside the output and
    // bias; the tile reads pixels of the band with every tap inside it (see `conv`),
    // or packed its `cn * NP` floats of the packing buffer (`cv_rows`), the panel's 16
    // weight lanes from its first row, its bias row, and touches `np`
    // outputs of the group's channels of the panel. A pair: the same for the 32
    // channels p0..p0 + 32, all of the group: the second panel's weights are
    // `KH*KW*C/G` rows after the first's, its bias row follows the first's, its
    // outputs 16 planes further.
    unsafe {
        let a = CvArgs {
            job,
            w: w_of(p0),
            src,
            px: &px,
            bias: bias.add(p0),
            out: out.add(p0 * ohw + qb),
            ostride: ohw,
            lanes,
            np,
            pf,
        };
        if pair {
            let pstride = w_of(p0 + PANEL).offset_from(w_of(p0)) as usize;
            s.vectorize(CvTile2::<NP, CONTIG>::new(a, pstride));
        } else {
            s.vectorize(CvTile::<VEC, NP, CONTIG>::new(a));
        }
    }
}
