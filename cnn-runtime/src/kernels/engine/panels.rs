//! The direct convolution over a range of weight panels or output pixels
//! ([`conv_panels`]): band copies, tile selection, the row loops.

#[allow(unused_imports)]
use super::*;

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
    let plan =
        force.unwrap_or_else(|| auto_plan(&d, S::LANES, &S::TUNING, crate::cpu::l1d_bytes()));
    // A one-row layer whose pixel range ends before any tap leaves the input reads it
    // directly too (the interior of a padded 1-D signal, run without its padding).
    let direct = reads_directly(&d) || (d.oh == 1 && reads_directly(&Dims2d { ow: q1, ..d }));
    let wq = d.cols_in().div_ceil(d.sw);
    let rowpitch = if direct { d.w } else { d.sw * wq };
    // Long reductions by channel tiles of up to four panels summed in chunks of `kc`
    // input channels (0: not), their partial sums in the band buffer's last
    // `CK_ACC_FLOATS` (the band gets the rest): decided from the whole layer.
    let kc = if plan == Plan::Channels
        && !packs(&d, plan, &S::TUNING)
        && (reads_directly(&d) || cap >= 2 * CK_ACC_FLOATS)
    {
        chunk_channels(&d, &S::TUNING, crate::cpu::l1d_bytes())
    } else {
        0
    };
    let cap = if kc > 0 && !reads_directly(&d) {
        cap - CK_ACC_FLOATS
    } else {
        cap
    };
    // Band height (output rows) and channel chunk.
    let Some((band_rows, chunk)) = band_shape(&d, direct, cap) else {
        return false;
    };
    // A layer with big weights copies bands of more rows (of the same chunks: the same
    // sums in the same order) into the working memory its model planned, where that
    // holds more of them ([`big_band_floats`]).
    let big = if direct || pack.len <= cap || !(kc > 0 || big_weights(&d, chunk)) {
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
                                // A one-row layer reading its input directly (1x1): the
                                // block's tiles prefetch the next block's input into L2,
                                // every channel's columns (`StreamShares`).
                                let nx1 = bx1.saturating_add(bx).min(d.ow).min(q1);
                                let mut pf = if d.oh == 1
                                    && direct
                                    && bx1 < nx1
                                    && job.cn * d.h * d.w >= PF_INPUT_FLOATS
                                    && !prefetch_off()
                                {
                                    let run = (nx1 - bx1).div_ceil(PANEL);
                                    // Tiles of the block: per chunk, per panel
                                    // three of up to 6 channels per 4 vectors.
                                    let tiles = job.cn.div_ceil(kc)
                                        * (ro.div_ceil(PANEL) * 3)
                                        * (bx1 - bx0).div_ceil(4 * S::LANES);
                                    StreamShares::new(
                                        band.base.wrapping_add(bx1),
                                        (run, band.plane),
                                        run * job.cn,
                                        tiles,
                                        kc,
                                    )
                                } else {
                                    StreamShares::NONE
                                };
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
                                            &mut pf,
                                        )
                                    };
                                }
                                bx0 = bx1;
                            }
                            by0 = by1;
                        }
                    }
                    Plan::Channels if kc > 0 => {
                        let (qa, qb) = (q0.max(y0 * d.ow), q1.min(y1 * d.ow));
                        let args = (s, &d, &job, &band, qa, qb, go0, ro, w_of, bias, out);
                        // The partial sums: the band buffer's last quarter, or all of
                        // it where the band is not in it.
                        let (acc, acc_len) = if direct || big.is_some() {
                            (scratch, SCRATCH)
                        } else {
                            // SAFETY: the last `CK_ACC_FLOATS` of `scratch`, past the
                            // band (`cap` was cut by as many).
                            (
                                unsafe { scratch.add(SCRATCH - CK_ACC_FLOATS) },
                                CK_ACC_FLOATS,
                            )
                        };
                        // SAFETY: the range's pixels of the band's rows and its panels'
                        // channels: this call's to write; `acc` this call's, aligned.
                        unsafe { cv_chunks(args, kc, acc, acc_len) };
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

/// Floats of input (or residual) from which a one-row 1x1 layer's pixel tiles prefetch
/// the next block's (or their residual) into L2 (`prefetch`): 512 KiB, a quarter of
/// the L2 of the machines measured; on smaller maps, which a model keeps in L2, the
/// prefetches cost more than they save (U-Net's 16-channel 64x64 layers 0.85-0.95x).
const PF_INPUT_FLOATS: usize = 128 * 1024;

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
    pf: &mut StreamShares,
) {
    // The block's pixels of the range: one span per plane (whole rows, or one row).
    debug_assert!(y1 - y0 == 1 || (xlo, xhi) == (0, d.ow));
    let span = (q0.max(y0 * d.ow + xlo), q1.min((y1 - 1) * d.ow + xhi));
    let mut pa = oa;
    while pa < ob {
        let pb = ((pa / PANEL + 1) * PANEL).min(ob);
        // The residual that the post-pass adds after these tiles (a one-row layer's
        // last chunk): they prefetch it into L2, in place of the next block's input.
        let mut res_pf;
        let pf: &mut StreamShares = if !prefetch_off()
            && job.last
            && !job.res.is_null()
            && d.oh == 1
            && span.0 < span.1
            && (ob - oa) * d.oh * d.ow >= PF_INPUT_FLOATS
        {
            let lo = span.0 / PANEL * PANEL;
            let run = (span.1 - lo).div_ceil(PANEL);
            let tiles = (pb - pa).div_ceil(6) * (span.1 - span.0).div_ceil(4 * S::LANES);
            res_pf = StreamShares::new(
                job.res.wrapping_add(pa * d.oh * d.ow + lo),
                (run, d.oh * d.ow),
                run * (pb - pa),
                tiles,
                job.taps.len() * job.cn,
            );
            &mut res_pf
        } else {
            pf
        };
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
                pf,
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
pub(super) unsafe fn post_pass<S: Simd>(
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
    pf: &mut StreamShares,
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
                        // Only the 4-vector tiles prefetch (`pv4_call`).
                        pf: if rows2 || wide {
                            pf.take()
                        } else {
                            PrefetchStream::NONE
                        },
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
