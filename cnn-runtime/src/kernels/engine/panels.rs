//! The direct convolution over a range of weight panels or output pixels
//! ([`conv_panels`]): band copies, tile selection, the row loops.

#[allow(unused_imports)]
use super::*;
use crate::kernels::simd::Tuning;

/// [`conv`] restricted to the output channels of weight panels `panels.0..panels.1`
/// (only for one group: with groups, `panels` must be all of them) and to the output
/// pixels `pixels.0..pixels.1` (`q = y * OW + x`; whole rows of [`flat`]`(d)` unless it
/// has one row): writes those pixels of the planes of those channels and nothing else.
/// Every choice (micro-kernel, band height and band boundaries, channel chunks, tile
/// shapes within a panel) is made from the whole layer, so each output value is computed
/// by the same operations in the same order as by [`conv`]; calls over disjoint panel
/// or pixel ranges can run on different threads.
///
/// `res`, when not null, is a residual laid out as the output: each output becomes
/// `act(conv + res)` (a fused `add`), added by the post-pass to each block of output
/// just stored, with the bits of the convolution stored and then added.
///
/// # Safety
///
/// `out` points to `O*OH*OW` floats, of which this call may write the given pixels of
/// the planes of the channels of its panels (no other thread may access those during the
/// call); `res`, if not null, to `O*OH*OW` floats that do not overlap them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_panels<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    packed: Packed<'_>,
    out: *mut f32,
    act: Act,
    res: *const f32,
    cap: usize,
    force: Option<Plan>,
    panels: (usize, usize),
    pixels: (usize, usize),
    pack: PackBuf,
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
    let plan = force.unwrap_or_else(|| auto_plan(&d, S::LANES, &S::TUNING));
    // A one-row layer whose pixel range ends before any tap leaves the input reads it
    // directly too (the interior of a padded 1-D signal, run without its padding).
    let direct = reads_directly(&d) || (d.oh == 1 && reads_directly(&Dims2d { ow: q1, ..d }));
    let wq = d.cols_in().div_ceil(d.sw);
    let rowpitch = if direct { d.w } else { d.sw * wq };
    // Band height (output rows) and channel chunk.
    let Some((band_rows, chunk)) = band_shape(&d, direct, cap) else {
        return false;
    };
    // A layer with big weights copies bands of more rows (of the same chunks: the same
    // sums in the same order) into the working memory its model planned, where that
    // holds more of them ([`big_band_floats`]).
    let big = if direct || pack.len <= cap || !big_weights(&d, chunk) {
        None
    } else {
        band_rows_in(&d, chunk * rowpitch, pack.len.min(BIG_BLOCK_FLOATS))
            .filter(|&r| r > band_rows)
    };
    let band_rows = big.unwrap_or(band_rows);

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
    // A direct 1x1 layer on a small map (one row of pixels) run by channel tiles packs
    // each block's input tile by tile (`cv_rows`): into the buffer the caller planned
    // for it, or, when that is smaller, into the band buffer, which reading the input
    // directly leaves unused.
    let band_buf = if big.is_some() { pack.ptr } else { scratch };
    let pack = if packs(&d, plan, &S::TUNING) && !pack_off() {
        if pack.len > SCRATCH {
            pack
        } else {
            PackBuf {
                ptr: scratch,
                len: SCRATCH,
            }
        }
    } else {
        PackBuf::NONE
    };
    debug_assert!(cap <= SCRATCH);
    let weight = packed.weight.as_ptr().cast::<f32>();
    let bias = packed.bias.as_ptr().cast::<f32>();

    // The tiles' activation and the block post-pass's (`Job::act`, `Job::post`): all
    // of it the post-pass's after a residual.
    let (tile_act, post) = if res.is_null() {
        act.split_curved()
    } else {
        (Act::IDENTITY, act)
    };
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
                        pack,
                    }
                } else {
                    let prow0 = y0 * d.sh;
                    let nrows = d.rows_in(y1 - y0);
                    // SAFETY: `(c1 - c0) * nrows * rowpitch <= cap <= SCRATCH` by the
                    // choice of band height and chunk, so the copy stays in `scratch`;
                    // or, in a big band, `<= pack.len`, in the planned memory
                    // (`band_buf`: not read as a packing buffer, which only direct
                    // layers use).
                    unsafe {
                        copy_band(
                            s,
                            &d,
                            &input[(gc0 + c0) * hw..(gc0 + c1) * hw],
                            c1 - c0,
                            prow0,
                            nrows,
                            wq,
                            band_buf,
                            0.0,
                        )
                    };
                    Band {
                        base: band_buf,
                        plane: nrows * rowpitch,
                        rowpitch,
                        prow0,
                        pack: PackBuf::NONE,
                    }
                };
                let job = Job {
                    taps,
                    cn: c1 - c0,
                    plane: band.plane,
                    wtap: PANEL * cg,
                    first: c0 == 0,
                    last: c1 == cg,
                    act: tile_act,
                    post,
                    res,
                };
                // Weights of output channel `o`, lane `o % 16`, at this chunk's channel.
                let w_of = |o: usize| {
                    // SAFETY: `o < O` and `c0 < C/G`: inside the packed weights.
                    unsafe { weight.add(((o / PANEL) * kk * cg + c0) * PANEL + o % PANEL) }
                };
                match plan {
                    Plan::Pixels => {
                        let l = S::LANES;
                        // Pixel blocks whose input stays in cache, the range's panels one
                        // after another over each: every output plane is written in long
                        // runs by one panel at a time (16 write streams, not one per
                        // output channel, which defeated the prefetcher on large maps).
                        let budget = block_floats::<S>(Plan::Pixels);
                        let (bx, by) = if d.oh == 1 {
                            // One long row (1x1): blocks of columns.
                            let cols = (budget / job.cn.max(1)) / (4 * l) * (4 * l);
                            (cols.max(4 * l), 1)
                        } else {
                            let mut r = 1;
                            while r < y1 - y0 && job.cn * d.rows_in(r + 1) * band.rowpitch <= budget
                            {
                                r += 1;
                            }
                            (
                                usize::MAX,
                                if d.ow <= l { r.next_multiple_of(2) } else { r },
                            )
                        };
                        // A 1x1 layer's reduction in steps of `kc` channels over each
                        // block (`pv_k_chunk`): partial sums through the output.
                        let kc = if kk == 1 { pv_k_chunk(job.cn) } else { job.cn };
                        let mut by0 = y0;
                        while by0 < y1 {
                            let by1 = (by0 + by).min(y1);
                            let mut bx0 = 0;
                            while bx0 < d.ow {
                                let bx1 = bx0.saturating_add(bx).min(d.ow);
                                for k0 in (0..job.cn).step_by(kc) {
                                    let k1 = (k0 + kc).min(job.cn);
                                    let kjob = Job {
                                        cn: k1 - k0,
                                        first: job.first && k0 == 0,
                                        last: job.last && k1 == job.cn,
                                        ..job
                                    };
                                    let kband = Band {
                                        // SAFETY: channel `k0 < cn` of the band.
                                        base: unsafe { band.base.add(k0 * band.plane) },
                                        ..band
                                    };
                                    // SAFETY: channel `k0 < cn` of the chunk's weights.
                                    let kw_of = |o: usize| unsafe { w_of(o).add(k0 * PANEL) };
                                    // SAFETY: the block's pixels of the range, the range's
                                    // channels: this call's to write.
                                    unsafe {
                                        pv_panels(
                                            s,
                                            &d,
                                            &kjob,
                                            &kband,
                                            (by0, by1, bx0, bx1),
                                            (q0, q1),
                                            (go0, go0 + ro),
                                            kw_of,
                                            bias,
                                            out,
                                        )
                                    };
                                }
                                bx0 = bx1;
                            }
                            by0 = by1;
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
                        let np1 = if S::TUNING.cv_tiles_of_12
                            && npx.next_multiple_of(12) < npx.next_multiple_of(S::TUNING.cv_np)
                        {
                            12
                        } else {
                            S::TUNING.cv_np
                        };
                        let pairs = S::TUNING.cv_panel_pairs && og >= 2 * PANEL;
                        // One-row layers (1x1 on a small map: MobileNets' 14x14, 7x7,
                        // 6x6), whose tiles read their pixels from one base pointer
                        // (`cv_rows`): pairs of panels by 10, 9 or 8 pixels, whichever
                        // pads least (the wider on ties). Measured on AVX-512 (Zen 5, one
                        // core, us, 2x8 with pixel pointers / 2x10): 320 -> 1280 on 7x7
                        // 194 / 161, 960 -> 160 on 7x7 138 / 116, 96 -> 576 on 14x14
                        // 90 / 87; 256 -> 512 on 6x6 42.5 / 36.8 (2x9); 2x11 to 2x14 are
                        // slower per FMA than 2x10 (2x12: 197, 139, 99 on the same three).
                        let flat_np = [10, 9, 8]
                            .into_iter()
                            .min_by_key(|&n| npx.next_multiple_of(n))
                            .unwrap_or(8);
                        // Single panels on rows of 8 to 10 pixels: a tile a row, every
                        // tile on one base pointer, not 12 or 16 pixels over two rows
                        // (a pointer a pixel). Measured on AVX-512 (Intel Xeon, one core,
                        // µs, before / after): LeNet-5's conv2 (6x14x14 -> 16, 5x5, 10x10
                        // out) 3.6-4.0 / 2.8-3.1, 16x10x10 -> 16 (3x3) 4.1 / 3.6-3.9,
                        // 16x8x8 -> 16 2.7 / 2.5, 32x9x9 -> 16 6.0-6.6 / 5.4-6.0; rows of
                        // 11 and 14 gained nothing, and pairs of panels lost on rows of 7.
                        let (np, pair) = if S::TUNING.cv_tiles_of_12
                            && !pairs
                            && d.oh > 1
                            && (8..=10).contains(&d.ow)
                        {
                            (d.ow, false)
                        } else if pairs && d.oh == 1 {
                            (flat_np, true)
                        } else if pairs && npx.next_multiple_of(8) <= npx.next_multiple_of(np1) {
                            (8, true)
                        } else {
                            (np1, false)
                        };
                        match (PANEL / S::LANES, np, pair) {
                            (1, 10, false) => cv_rows::<S, _, 1, 10, 1>(args),
                            (1, 8, false) => cv_rows::<S, _, 1, 8, 1>(args),
                            (1, 9, false) => cv_rows::<S, _, 1, 9, 1>(args),
                            (1, 8, true) => cv_rows::<S, _, 1, 8, 2>(args),
                            (1, 9, true) => cv_rows::<S, _, 1, 9, 2>(args),
                            (1, 10, true) => cv_rows::<S, _, 1, 10, 2>(args),
                            (1, 16, _) => cv_rows::<S, _, 1, 16, 1>(args),
                            (1, 12, _) => cv_rows::<S, _, 1, 12, 1>(args),
                            (2, 6, _) => cv_rows::<S, _, 2, 6, 1>(args),
                            (4, 2, _) => cv_rows::<S, _, 4, 2, 1>(args),
                            shape => unreachable!("no channel tile of shape {shape:?}"),
                        }
                    }
                }
            }
        }
    }
    true
}

/// The pixel tiles of one block (output rows `y0..y1`, columns `xlo..xhi`, cut to the
/// pixel range `q0..q1`) for output channels `oa..ob`, panel after panel, each panel's
/// block post-pass right after its tiles: every output plane written in long runs by
/// one panel at a time (16 write streams, not one per output channel, which defeated
/// the prefetcher on large maps).
///
/// # Safety
///
/// As [`pv_block`], for the block's pixels of channels `oa..ob`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_panels<S: Simd, W: Fn(usize) -> *const f32 + Copy>(
    s: S,
    d: &Dims2d,
    job: &Job<'_>,
    band: &Band,
    (y0, y1, xlo, xhi): (usize, usize, usize, usize),
    (q0, q1): (usize, usize),
    (oa, ob): (usize, usize),
    w_of: W,
    bias: *const f32,
    out: *mut f32,
) {
    // The block's pixels of the range: one span per plane (whole rows, or one row).
    debug_assert!(y1 - y0 == 1 || (xlo, xhi) == (0, d.ow));
    let span = (q0.max(y0 * d.ow + xlo), q1.min((y1 - 1) * d.ow + xhi));
    let mut pa = oa;
    while pa < ob {
        let pb = ((pa / PANEL + 1) * PANEL).min(ob);
        // SAFETY: the block's pixels of channels `pa..pb`: the caller's to write.
        unsafe {
            pv_block(
                s,
                d,
                job,
                band,
                (y0, y1, xlo, xhi),
                (q0, q1),
                (pa, pb),
                w_of,
                bias,
                out,
            );
            post_pass(s, job, out, d.oh * d.ow, (pa, pb), span);
        }
        pa = pb;
    }
}

/// The block post-pass: `job.post` (a curved activation) on pixels `span` of output
/// channels `oa..ob`, which the tiles of the last chunk have just stored (with bias and
/// no activation), after adding `job.res` if there is one (`Simd::residual_slice`);
/// nothing on other chunks or without either. One out-of-line loop per plane
/// (`Simd::curved_slice`) over data still in L1: no micro-kernel carries curved code,
/// and no vector is spent on a row's padding lanes.
///
/// # Safety
///
/// `out` points to the layer's output planes (`ohw` floats each), of which pixels
/// `span` of channels `oa..ob` are this call's to write; `job.res`, if not null, to as
/// many floats, not overlapping them.
#[inline(always)]
unsafe fn post_pass<S: Simd>(
    s: S,
    job: &Job<'_>,
    out: *mut f32,
    ohw: usize,
    (oa, ob): (usize, usize),
    (lo, hi): (usize, usize),
) {
    if !job.last || (job.post == Act::IDENTITY && job.res.is_null()) || lo >= hi {
        return;
    }
    debug_assert!(hi <= ohw);
    // Pixels `lo..hi` of planes `oa..ob`: one slice when they are whole planes
    // (consecutive), so that small planes (LeNet-5's 10x10) do not end in a short
    // vector each; else one per plane.
    let (runs, len, step) = if (lo, hi) == (0, ohw) {
        (1, (ob - oa) * ohw, 0)
    } else {
        (ob - oa, hi - lo, ohw)
    };
    for k in 0..runs {
        let at = oa * ohw + lo + k * step;
        // SAFETY: pixels `lo..hi` of planes `oa..ob`, this call's (the caller's
        // contract).
        let x = unsafe { core::slice::from_raw_parts_mut(out.add(at), len) };
        if job.res.is_null() {
            s.curved_slice(x, job.post);
        } else {
            // SAFETY: the residual's floats at the same place (the caller's contract).
            let r = unsafe { core::slice::from_raw_parts(job.res.add(at), len) };
            s.residual_slice(x, r, job.post);
        }
    }
}

/// Floats of input a block of tiles of `plan`'s kind reads: the panels of the range run
/// one after another over a block (`Tuning::pv_block_bytes`, `cv_block_bytes`).
#[inline(always)]
fn block_floats<S: Simd>(plan: Plan) -> usize {
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
const BIG_WEIGHT_FLOATS: usize = 256 * 1024;

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
fn big_weights(d: &Dims2d, chunk: usize) -> bool {
    is_big(d.o / d.g, chunk, d.kh * d.kw)
}

/// Whether `outputs` channels' weights over `chunk` input channels and `taps` taps are
/// big ([`BIG_WEIGHT_FLOATS`]).
#[inline(always)]
fn is_big(outputs: usize, chunk: usize, taps: usize) -> bool {
    outputs * chunk * taps >= BIG_WEIGHT_FLOATS
}

/// Floats of the band buffer a thread part of the (flat) convolution `d` uses beyond
/// the stack's [`SCRATCH`] when the model plans them (0: none): a layer that copies
/// bands and whose weights are big ([`big_weights`]) streams its weights once a band, so
/// it copies bands of as many rows as fit [`BIG_BLOCK_FLOATS`] (ResNet-50's stride-2
/// layers on 14x14 and 28x28 maps: bands of one output row in `SCRATCH`, all seven or
/// eleven rows here).
fn big_band_floats(d: Dims2d) -> usize {
    let d = flat(d);
    if reads_directly(&d) {
        return 0;
    }
    let Some((rows, chunk)) = band_shape(&d, false, SCRATCH) else {
        return 0;
    };
    if rows >= d.oh || !big_weights(&d, chunk) {
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
const BIG_BLOCK_FLOATS: usize = 128 * 1024;

/// Input channels times kernel rows up to which a pixel tile's input strip (that many
/// rows of four vectors) stays within about 24 KiB of L1: the wide pixel tiles' limit
/// (AVX-512), and the limit of pixel tiles on one long row.
const STRIP_ROWS: usize = 96;

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
const LONG_1X1_MAX_PIXELS: usize = 600;

/// The micro-kernel [`conv_panels`] picks for the (flat) convolution `d` on a level of
/// `lanes` lanes and `tuning`: the one filling more lanes (strides are fine for both:
/// the band's phase split makes a pixel tile's reads contiguous).
pub(crate) fn auto_plan(d: &Dims2d, lanes: usize, tuning: &Tuning) -> Plan {
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
    // Long 1x1 reductions on small maps: the pixel tiles' input strip no longer stays
    // in L1 (see `Tuning::cv_long_1x1`, `LONG_1X1_MAX_PIXELS`).
    let long =
        kk == 1 && cg >= tuning.cv_long_1x1 && d.oh * d.ow <= LONG_1X1_MAX_PIXELS && cv >= pv;
    // One long output row (1-D signals) with taps along it. With at most `STRIP_ROWS`
    // input channels (times kernel rows), pixel tiles within 5% of the channel tiles'
    // fill win (AVX-512, 64 -> 64 channels k3 on 1000 samples 163 -> 144 µs, the same
    // at stride 2 on 1000 341 -> 300, dilation 2 on 500 273 -> 257; on 250 samples k5
    // the channel tiles were 3% faster); with more, the channel tiles win at equal fill
    // (the input read directly, 2026-12-04: AVX-512 128 -> 128 k3 on 2000 1134 -> 1094,
    // 256 -> 256 k3 on 500 1249 -> 1060; AVX2 1865 -> 1800, 1967 -> 1764).
    let one_row = d.oh == 1 && kk > 1 && d.ow >= 384;
    let strip = cg * d.kh <= STRIP_ROWS;
    let long_row = one_row && strip && pv >= 0.95 * cv;
    let deep_row = one_row && !strip && cv >= pv;
    if (pv >= cv || short || long_row) && !long && !deep_row {
        Plan::Pixels
    } else {
        Plan::Channels
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
fn packs(d: &Dims2d, plan: Plan, tuning: &Tuning) -> bool {
    tuning.cv_pack && d.kh * d.kw == 1 && d.oh == 1 && plan == Plan::Channels && reads_directly(d)
}

/// Floats a thread part of the convolution `d` (as given, not flat) packs at most on a
/// level of `lanes` lanes and `tuning` (0: it does not pack there): a block of channel
/// tiles' input (`cv_rows`: about `cv_block_bytes`, at least one tile of at most 16
/// pixels), never more than the whole input.
fn pack_floats_at(d: Dims2d, lanes: usize, tuning: &Tuning) -> usize {
    let d = flat(d);
    if !packs(&d, auto_plan(&d, lanes, tuning), tuning) {
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
fn pack_off() -> bool {
    #[cfg(test)]
    {
        NO_PACK.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Switches packing off when set (tests).
#[cfg(test)]
pub(crate) static NO_PACK: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Input channels a 1x1 layer's pixel tiles sum at most before storing their partial
/// sums ([`pv_k_chunk`]).
const PV_K_CHUNK: usize = 64;

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
fn pv_k_chunk(cn: usize) -> usize {
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

/// The pixel tiles of [`conv_panels`] over output rows `y0..y1`, columns `xlo..xhi` (cut
/// to the pixel range `q0..q1`), output channels `oa..ob` (within one panel).
///
/// # Safety
///
/// As [`conv_panels`]: `out` may be written at those pixels of those channels' planes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_block<S: Simd, W: Fn(usize) -> *const f32>(
    s: S,
    d: &Dims2d,
    job: &Job<'_>,
    band: &Band,
    (y0, y1, xlo, xhi): (usize, usize, usize, usize),
    (q0, q1): (usize, usize),
    (oa, ob): (usize, usize),
    w_of: W,
    bias: *const f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let ohw = d.oh * d.ow;
    // Tiles of two vectors: consecutive pixels of a row, or two rows when a row fits one
    // vector; a single vector for what is left.
    let mut y = y0;
    while y < y1 {
        let two_rows = d.ow <= l && y + 1 < y1;
        // Rows of more than one vector and less than two (AVX-512), this row and the next
        // whole in the range and the block: one tile of both rows, 2 + 2 vectors by up
        // to 6 channels (4 loads and 6 broadcasts per 24 FMAs, half the tiles and their
        // overhead of one-row tiles of 2 vectors). LeNet-5's conv1 (1x32x32 -> 6, 5x5,
        // 28-pixel rows).
        let rows2 = S::TUNING.wide_pixel_tiles
            && l < d.ow
            && d.ow < 2 * l
            && y + 1 < y1
            && job.cn * d.kh <= STRIP_ROWS
            && q0 <= y * d.ow
            && (y + 2) * d.ow <= q1
            && xlo == 0
            && d.ow <= xhi;
        let row_off = (y * d.sh - band.prow0) * band.rowpitch;
        // Columns of this row in the range and the block.
        let xa = (q0.max(y * d.ow) - y * d.ow).max(xlo);
        let xb = (q1.min((y + 1) * d.ow) - y * d.ow).min(xhi);
        let mut x0 = xa;
        while x0 < xb {
            // Wide pixel tiles (AVX-512), four full vectors left: 4-vector tiles of up to
            // 6 channels (4 loads and 6 broadcasts per 24 FMAs), while the input strip
            // they share (`cn` channels by `KH` rows of 4 vectors) stays within about
            // 24 KiB of L1.
            let strip = S::TUNING.wide_pixel_tiles && !two_rows && job.cn * d.kh <= STRIP_ROWS;
            let wide = strip && xb - x0 >= 4 * l;
            // Three full vectors left (and fewer than four): one tile of three by up to
            // 8 channels (AVX-512), not two and one (3 loads and 8 broadcasts per 24
            // FMAs, not 3 and 16).
            let three = strip && !wide && xb - x0 >= 3 * l;
            let (nv, mask, n, vsrc, vout, step) = if rows2 {
                (4, TWO_ROWS, d.ow - l, d.sh * band.rowpitch, d.ow, d.ow)
            } else if wide {
                (4, FULL, l, l, l, 4 * l)
            } else if three {
                (3, FULL, l, l, l, 3 * l)
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
            let mut o = oa;
            while o < ob {
                let max_mr = if wide || rows2 { 6 } else { S::TUNING.pv_mr };
                let mr = next_mr(ob - o, max_mr);
                // SAFETY: the tile reads taps of its pixels (row y, or rows y and y + 1,
                // columns x0.. for the lanes used) of the band for its `cn` channels
                // (inside the input or the copied band: `direct` checked the extents,
                // the band holds rows_in rows of `wq` columns per phase), `mr <= 16 - o %
                // 16` weight lanes, and writes those pixels of `mr` output planes.
                unsafe {
                    let a = PvArgs {
                        job,
                        w: w_of(o),
                        src,
                        vsrc,
                        out: out.add(o * ohw + y * d.ow + x0),
                        vout,
                        ostride: ohw,
                        bias: bias.add(o),
                        n,
                    };
                    if rows2 {
                        pv4_call::<S, TWO_ROWS>(s, mr, a);
                    } else if wide {
                        pv4_call::<S, FULL>(s, mr, a);
                    } else if three {
                        pv3_call(s, mr, a);
                    } else {
                        pv_call(s, mr, nv, mask, a);
                    }
                }
                o += mr;
            }
            x0 += step;
        }
        y += if two_rows || rows2 { 2 } else { 1 };
    }
}

/// What a channel-vectorised pass runs on: the level, the layer, the chunk's job, its
/// source, the pixel range `q0..q1`, the group's first output channel and channel count
/// (or the panel range's), the weights of an output channel (`w_of`), bias and output.
type CvPass<'a, S, W> = (
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
    let (s, d, job, band, q0, q1, go0, og, _, _, out) = args;
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
                );
            }
            for qb in (qa + packed * NP..qe).step_by(NP) {
                let np = NP.min(q1 - qb);
                let back = q1.saturating_sub(NP);
                if one_row(qb) {
                    cv_tile::<S, W, VEC, NP, PN, true>(args, qb, NP, p0, pair, None);
                } else if np < NP && job.first && back >= q0 && one_row(back) {
                    cv_tile::<S, W, VEC, NP, PN, true>(args, back, NP, p0, pair, None);
                    lo = lo.min(back);
                } else {
                    cv_tile::<S, W, VEC, NP, PN, false>(args, qb, np, p0, pair, None);
                }
            }
            panel += if pair { 2 } else { 1 };
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
fn cv_tile<S, W, const VEC: usize, const NP: usize, const PN: usize, const CONTIG: bool>(
    (s, d, job, band, _, _, go0, og, w_of, bias, out): CvPass<'_, S, W>,
    qb: usize,
    np: usize,
    p0: usize,
    pair: bool,
    packed: Option<(*const f32, &Job<'_>)>,
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
        };
        if pair {
            let pstride = w_of(p0 + PANEL).offset_from(w_of(p0)) as usize;
            s.vectorize(CvTile2::<NP, CONTIG>::new(a, pstride));
        } else {
            s.vectorize(CvTile::<VEC, NP, CONTIG>::new(a));
        }
    }
}
