//! What a tile prefetches into L2 while it runs, for the tiles after it: lines of
//! memory it does not read itself, spread over its own rows ([`PrefetchStream`]),
//! handed out tile by tile where the tiles are only counted roughly
//! ([`StreamShares`]).
//!
//! Three uses, each for data that a model's layer finds outside the caches where a
//! layer alone, timed in a loop, finds it inside:
//! - the channel tiles' (`cv_rows`) weights of the panels their pass runs next: a
//!   model's big layers stream theirs from memory once per inference (ResNet-50's 7x7
//!   layers, 4-9 MiB each);
//! - a one-row 1x1 layer's pixel tiles (`conv_panels`) the next block's input, every
//!   channel's columns: hundreds of channel planes read a few lines at a time are more
//!   streams than the hardware prefetcher follows (ResNet-50's 56x56 maps of 256
//!   channels, 3.2 MB, beyond the L2);
//! - in place of that, on a layer's last chunk with a fused residual, the residual that
//!   the block post-pass adds after the panel's tiles (written three layers earlier).
//!
//! Intel cores only (`rules::prefetch_off`): on AMD Zen 3 the same kind of prefetch
//! measured slower.
//!
//! Measured on AVX-512 (Intel Xeon, 2 MB L2, one core, µs): weights cold
//! (`conv::speed_cold`, without / with): 2048x7x7 -> 512 870-878 / 766-769, 512x7x7 ->
//! 2048 920-923 / 780-792; in ResNet-50 (`steps_ab.py`, six alternated rounds) its 7x7
//! 1x1 layers 1.20-1.25x, its 56x56 and 28x28 1x1 layers with the next block's input
//! 1.04-1.34x, those adding a residual 1.05-1.12x. Spacing matters: the same weight
//! lines prefetched one per row from each tile's start (fill buffers full, the tile's
//! own loads waiting) gained 0-4%, one every fourth row (fewer lines) 5%.

#[allow(unused_imports)]
use super::*;

/// Lines that a tile prefetches into L2 while it runs, evenly spaced over its own rows
/// (reduction steps). They lie in runs of `run` lines, `gap` floats from a run's start
/// to the next's (a chunk's channels of each tap of each panel; a block's columns of
/// each channel plane).
#[derive(Clone, Copy)]
pub(super) struct PrefetchStream {
    /// The next line.
    pub(super) p: *const f32,
    /// Lines left to prefetch.
    pub(super) left: usize,
    /// Lines left in the current run.
    pub(super) run_left: usize,
    /// Lines in a run.
    pub(super) run: usize,
    /// Floats from a run's start to the next run's.
    pub(super) gap: usize,
    /// Rows of the tile between prefetches.
    pub(super) every: usize,
}

impl PrefetchStream {
    /// Nothing to prefetch.
    pub(super) const NONE: PrefetchStream = PrefetchStream {
        p: core::ptr::null(),
        left: 0,
        run_left: 1,
        run: 1,
        gap: 0,
        every: 1,
    };

    /// Lines `first..first + n` of the region at `base` (runs of `run` lines, `gap`
    /// floats apart) spaced over `rows` rows of a tile.
    pub(super) fn new(
        base: *const f32,
        (run, gap): (usize, usize),
        (first, n): (usize, usize),
        rows: usize,
    ) -> Self {
        if n == 0 || run == 0 {
            return Self::NONE;
        }
        PrefetchStream {
            // Prefetches never fault: any address will do, so wrapping arithmetic.
            p: base.wrapping_add((first / run) * gap + (first % run) * PANEL),
            left: n,
            run_left: run - first % run,
            run,
            gap,
            every: (rows / n).max(1),
        }
    }

    /// Called once per row, with the rows counted down in `*countdown` (start at 1):
    /// prefetches the next line every `every` rows, from the first.
    #[inline(always)]
    pub(super) fn row<S: Simd>(&mut self, s: S, countdown: &mut usize) {
        *countdown -= 1;
        if *countdown == 0 {
            // Done (or nothing to do): the count runs out no more, one decrement and a
            // branch a row.
            *countdown = match self.take() {
                Some(p) => {
                    s.prefetch(p);
                    self.every
                }
                None => usize::MAX,
            };
        }
    }

    /// The next line to prefetch, if any left.
    #[inline(always)]
    pub(super) fn take(&mut self) -> Option<*const f32> {
        if self.left == 0 {
            return None;
        }
        let p = self.p;
        self.left -= 1;
        self.run_left -= 1;
        self.p = if self.run_left == 0 {
            self.run_left = self.run;
            p.wrapping_add(self.gap - (self.run - 1) * PANEL)
        } else {
            p.wrapping_add(PANEL)
        };
        Some(p)
    }
}

/// Lines of a region (runs of `run` lines, `gap` floats apart) handed out to a
/// sequence of tiles, a quota each ([`StreamShares::take`]), for passes whose tile
/// count is only estimated: a tile past the region prefetches nothing.
#[derive(Clone, Copy)]
pub(super) struct StreamShares {
    base: *const f32,
    run: usize,
    gap: usize,
    next: usize,
    end: usize,
    quota: usize,
    rows: usize,
}

impl StreamShares {
    /// Nothing to hand out.
    pub(super) const NONE: StreamShares = StreamShares {
        base: core::ptr::null(),
        run: 1,
        gap: 0,
        next: 0,
        end: 0,
        quota: 0,
        rows: 1,
    };

    /// The `lines` of the region at `base` over about `tiles` tiles of `rows` rows each;
    /// nothing when that is more than a line every second row: denser prefetches hold
    /// the fill buffers that the tiles' own loads need (MobileNetV2's 32 -> 16 1x1 layer
    /// on 112x112 and its 192 -> 32 ones on 28x28, a line every row or two: 0.93-0.95x).
    pub(super) fn new(
        base: *const f32,
        (run, gap): (usize, usize),
        lines: usize,
        tiles: usize,
        rows: usize,
    ) -> Self {
        if 2 * lines > tiles * rows {
            return Self::NONE;
        }
        StreamShares {
            base,
            run,
            gap,
            next: 0,
            end: lines,
            quota: lines.div_ceil(tiles.max(1)),
            rows,
        }
    }

    /// The next tile's share.
    #[inline(always)]
    pub(super) fn take(&mut self) -> PrefetchStream {
        let n = self.quota.min(self.end - self.next);
        let w = PrefetchStream::new(self.base, (self.run, self.gap), (self.next, n), self.rows);
        self.next += n;
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiles' streams of a panel run together prefetch every row of the next
    /// panels' chunk once (a chunk of the channels of each tap of each panel), each
    /// within its own rows.
    #[test]
    fn streams_cover_the_next_panels_rows_once() {
        let weights = vec![0.0f32; 4 * 9 * 40 * PANEL];
        for (taps, cg, (c0, c1), panels, tiles) in [
            (1, 40, (0, 40), 2, 5),
            (9, 40, (8, 24), 2, 3),
            (9, 40, (0, 40), 1, 7),
            (1, 40, (0, 40), 2, 1),
            (4, 40, (39, 40), 2, 4),
        ] {
            let (cn, wtap) = (c1 - c0, PANEL * cg);
            let rows = taps * cn;
            let lines = panels * rows;
            let base = weights[c0 * PANEL..].as_ptr();
            let mut seen = Vec::new();
            for i in 0..tiles {
                let (a, b) = (i * lines / tiles, (i + 1) * lines / tiles);
                let mut st = PrefetchStream::new(base, (cn, wtap), (a, b - a), rows);
                // Spaced within the tile's rows, unless it has more lines than rows.
                assert!(b - a <= rows || st.every == 1);
                assert!((b - a).saturating_sub(1) * st.every < rows.max(b - a));
                while let Some(p) = st.take() {
                    // SAFETY: every line of these regions lies inside `weights`.
                    seen.push(unsafe { p.offset_from(weights.as_ptr()) } as usize);
                }
            }
            let mut want = Vec::new();
            for k in 0..panels {
                for t in 0..taps {
                    for c in c0..c1 {
                        want.push(k * taps * wtap + t * wtap + c * PANEL);
                    }
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, want, "taps {taps}, chunk {c0}..{c1}, {tiles} tiles");
        }
        let mut none = PrefetchStream::NONE;
        assert!(none.take().is_none());
    }

    /// Shares handed out tile by tile cover the region once, in order, whatever the
    /// estimate of tiles; a region of more than a line every second row gives none.
    #[test]
    fn shares_cover_the_region_once() {
        let data = vec![0.0f32; 8 * 100 * PANEL];
        let base = data.as_ptr();
        for (run, gap, channels, tiles, rows) in
            [(4, 100 * PANEL, 8, 10, 64), (3, 7 * PANEL, 5, 2, 64)]
        {
            let lines = run * channels;
            let mut shares = StreamShares::new(base, (run, gap), lines, tiles, rows);
            let mut seen = Vec::new();
            for _ in 0..tiles + 3 {
                let mut st = shares.take();
                while let Some(p) = st.take() {
                    // SAFETY: every line of the region lies inside `data`.
                    seen.push(unsafe { p.offset_from(base) } as usize);
                }
            }
            let want: Vec<usize> = (0..channels)
                .flat_map(|c| (0..run).map(move |l| c * gap + l * PANEL))
                .collect();
            assert_eq!(seen, want, "run {run}, gap {gap}");
        }
        let mut dense = StreamShares::new(base, (4, 100 * PANEL), 32, 2, 8);
        assert!(dense.take().take().is_none());
    }
}
