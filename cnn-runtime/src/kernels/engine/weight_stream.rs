//! The weights a channel tile prefetches for the panels its pass runs next
//! ([`WeightStream`]).

#[allow(unused_imports)]
use super::*;

/// Weight rows (lines) that a channel tile prefetches into L2 while it runs, evenly
/// spaced over its own rows: a part of the rows of the panels its pass runs next, which
/// in a model's big layers come from memory (ResNet-50's 7x7 1x1 layers stream 4 MiB
/// each per inference). The rows lie in runs of `run` lines, `gap` floats from a run's
/// start to the next's (a chunk's channels of each tap of each panel).
///
/// Measured on AVX-512 (Intel Xeon, one core, µs, weights cold: `conv::speed_cold`,
/// without / with): 2048x7x7 -> 512 870-878 / 766-769, 512x7x7 -> 2048 920-923 /
/// 780-792 (a line every second row). Spacing matters: the same lines prefetched one
/// per row from each tile's start (fill buffers full, the tile's own loads waiting)
/// gained 0-4%, one every fourth row (fewer lines) 5%.
#[derive(Clone, Copy)]
pub(super) struct WeightStream {
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

impl WeightStream {
    /// Nothing to prefetch.
    pub(super) const NONE: WeightStream = WeightStream {
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
        WeightStream {
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
    /// prefetches the next line every `every` rows.
    #[inline(always)]
    pub(super) fn row<S: Simd>(&mut self, s: S, countdown: &mut usize) {
        *countdown -= 1;
        if *countdown == 0 {
            *countdown = self.every;
            if let Some(p) = self.take() {
                s.prefetch(p);
            }
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
                let mut st = WeightStream::new(base, (cn, wtap), (a, b - a), rows);
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
        let mut none = WeightStream::NONE;
        assert!(none.take().is_none());
    }
}
