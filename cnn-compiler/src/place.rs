//! Part of stage 5, plan: memory. Blocks of the activation arena (a tensor, the tensors
//! written in place over it or into it, or a kernel's scratch) each live from the step
//! that first writes them to the step that last reads them; two blocks whose live ranges
//! meet must not overlap. Blocks are placed largest first at the lowest offset free over
//! their whole live range (TVM's and onnx2c's greedy-by-size heuristic), so memory is
//! shared by live range rather than by alternation; then, within that size, moved where
//! the arena was used last ([`warm`]), so that a tensor is written into lines still in
//! cache.

/// A block to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// The caller's id for it.
    pub id: usize,
    /// Values (f32) it holds.
    pub len: usize,
    /// First step that uses it.
    pub first: usize,
    /// Last step that uses it (inclusive).
    pub last: usize,
}

impl Block {
    /// Whether the two live ranges share a step (the blocks then must not overlap).
    fn meets(&self, other: &Block) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// The places `(start, end)` of the blocks `others` at `offsets` whose live ranges meet
/// `b`'s, sorted.
fn busy(
    blocks: &[Block],
    offsets: &[usize],
    b: &Block,
    others: impl Iterator<Item = usize>,
) -> Vec<(usize, usize)> {
    let mut busy: Vec<(usize, usize)> = others
        .filter(|&j| blocks[j].meets(b))
        .map(|j| (offsets[j], offsets[j] + blocks[j].len))
        .collect();
    busy.sort_unstable();
    busy
}

/// Where the blocks went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The offset of each block, in the order given.
    pub offsets: Vec<usize>,
    /// The arena's size in values.
    pub size: usize,
    /// The step at which the arena's high-water mark is first reached.
    pub peak_step: Option<usize>,
}

/// Places `blocks` over `steps` steps.
pub fn place(blocks: &[Block], steps: usize) -> Placement {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(blocks[i].len), blocks[i].first));
    let mut offsets = vec![0usize; blocks.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut size = 0usize;
    for &i in &order {
        let b = &blocks[i];
        let mut at = 0;
        for (start, end) in busy(blocks, &offsets, b, placed.iter().copied()) {
            if at + b.len <= start {
                break;
            }
            at = at.max(end);
        }
        offsets[i] = at;
        size = size.max(at + b.len);
        placed.push(i);
    }
    Placement {
        peak_step: peak(blocks, &offsets, steps),
        offsets,
        size,
    }
}

/// Places `blocks` again, in the order of their first steps, each where the arena was
/// used most recently, so that its first writes find their lines in cache rather than
/// in memory, within the `size` of `placed` (the greedy-by-size placement, whose size
/// stays the arena's). Greedy by size puts a block at the lowest free offset, often
/// arena memory last used a whole forward pass before: MobileNetV2's 32 -> 16 1x1
/// layer on 112x112 wrote its 800 KB output there in 215-238 µs, against 126 alone
/// (`conv::speed`); warm, in 158 (AMD Zen 4, 1 MB L2, one thread, `--profile`). Whole
/// models, alternated A/B of binaries built alike (one thread, Zen 4): MobileNetV2
/// 1.016x, MobileNetV3-Large 1.013x, EfficientNet-B0 1.008x, U-Net 1.005x, ResNet-18
/// and -50 0.994x / 0.995x (their arenas' blocks are few and large), others within 1%.
///
/// First every block anew, in step order; where that leaves some block no room within
/// `size`, `placed` instead, each block moved in step order to a warmer place that
/// every other block leaves free (its own place always is).
pub fn warm(blocks: &[Block], steps: usize, placed: Placement) -> Placement {
    let offsets = rewarm(blocks, placed.size, None).unwrap_or_else(|| {
        rewarm(blocks, placed.size, Some(&placed.offsets)).unwrap_or(placed.offsets)
    });
    Placement {
        peak_step: peak(blocks, &offsets, steps),
        offsets,
        size: placed.size,
    }
}

/// One warm pass of [`warm`]: blocks in step order, each at the free end of a gap (or,
/// moving the blocks of `from`, its place there) covering the most recently used
/// floats, each weighted by `1 / (1 + age)`, its age the steps since its last use
/// (never-used floats weigh nothing), the lowest offset on a tie. With `from`, the
/// blocks not yet moved hold their places there. `None` when a block finds no room.
fn rewarm(blocks: &[Block], size: usize, from: Option<&[usize]>) -> Option<Vec<usize>> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| (blocks[i].first, std::cmp::Reverse(blocks[i].len), i));
    let mut offsets = from.map_or_else(|| vec![0; blocks.len()], <[usize]>::to_vec);
    // Blocks holding a place: moved ones, and with `from` all the others too.
    let mut holds = vec![from.is_some(); blocks.len()];
    // Painted segments of the arena: `(start, end, last step)`, disjoint.
    let mut paint: Vec<(usize, usize, usize)> = Vec::new();
    for &i in &order {
        let b = &blocks[i];
        let others = (0..blocks.len()).filter(|&j| j != i && holds[j]);
        let mut cands = Vec::new();
        let mut at = 0;
        for (start, end) in busy(blocks, &offsets, b, others)
            .into_iter()
            .chain([(size, size)])
        {
            if start >= at + b.len {
                // Either end of the gap (a block inside would split it).
                cands.extend([at, start - b.len]);
            }
            at = at.max(end);
        }
        if from.is_some() {
            cands.push(offsets[i]);
        }
        let warmth = |off: usize| -> f64 {
            paint
                .iter()
                .filter(|&&(s, e, _)| s < off + b.len && off < e)
                .map(|&(s, e, last)| {
                    let overlap = e.min(off + b.len) - s.max(off);
                    overlap as f64 / (1.0 + b.first.saturating_sub(last) as f64)
                })
                .sum()
        };
        let mut best: Option<(f64, usize)> = None;
        for off in cands {
            let w = warmth(off);
            if best.is_none_or(|(bw, bo)| w > bw || (w == bw && off < bo)) {
                best = Some((w, off));
            }
        }
        let (_, off) = best?;
        offsets[i] = off;
        holds[i] = true;
        repaint(&mut paint, off, off + b.len, b.last);
    }
    Some(offsets)
}

/// Paints floats `s..e` with step `last` over the disjoint segments of `paint`.
fn repaint(paint: &mut Vec<(usize, usize, usize)>, s: usize, e: usize, last: usize) {
    let mut next = Vec::with_capacity(paint.len() + 2);
    for &(ps, pe, l) in paint.iter() {
        if pe <= s || ps >= e {
            next.push((ps, pe, l));
            continue;
        }
        if ps < s {
            next.push((ps, s, l));
        }
        if pe > e {
            next.push((e, pe, l));
        }
    }
    next.push((s, e, last));
    *paint = next;
}

/// The step at which the blocks at `offsets` first reach their highest end.
fn peak(blocks: &[Block], offsets: &[usize], steps: usize) -> Option<usize> {
    let mut peak_step = None;
    let mut peak = 0;
    for s in 0..steps {
        let top = (0..blocks.len())
            .filter(|&i| blocks[i].first <= s && s <= blocks[i].last)
            .map(|i| offsets[i] + blocks[i].len)
            .max()
            .unwrap_or(0);
        if top > peak {
            peak = top;
            peak_step = Some(s);
        }
    }
    peak_step
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(id: usize, len: usize, first: usize, last: usize) -> Block {
        Block {
            id,
            len,
            first,
            last,
        }
    }

    #[test]
    fn a_chain_alternates_between_two_blocks() {
        // t0 -> t1 -> t2 -> t3: each tensor lives over two steps.
        let blocks = [
            block(0, 10, 0, 1),
            block(1, 8, 1, 2),
            block(2, 10, 2, 3),
            block(3, 4, 3, 4),
        ];
        let p = place(&blocks, 5);
        assert_eq!(p.size, 18);
        assert_eq!(p.offsets[0], p.offsets[2]);
        assert_eq!(p.peak_step, Some(1));
    }

    #[test]
    fn a_skip_connection_keeps_its_block() {
        // A long-lived skip tensor and three short ones around it.
        let blocks = [
            block(0, 6, 0, 5),
            block(1, 6, 1, 2),
            block(2, 6, 2, 3),
            block(3, 6, 3, 4),
        ];
        let p = place(&blocks, 6);
        assert_eq!(p.size, 18);
    }

    #[test]
    fn warm_reuses_the_memory_just_read() {
        // A chain into a step with a scratch block (MobileNetV2's first blocks): greedy
        // by size puts the third tensor above everything; warm, into the first's
        // memory, which the step before it read.
        let blocks = [
            block(0, 4, 0, 1),
            block(1, 4, 1, 2),
            block(2, 2, 2, 3),
            block(3, 5, 3, 3),
            block(4, 3, 3, 4),
        ];
        let greedy = place(&blocks, 5);
        assert_eq!(greedy.offsets[2], 8);
        let w = warm(&blocks, 5, greedy.clone());
        assert_eq!(w.size, greedy.size);
        assert_eq!(w.offsets[2], w.offsets[0]);
        assert_eq!(w.offsets, [0, 4, 0, 2, 7]);
    }

    #[test]
    fn warm_moves_greedy_blocks_where_step_order_fragments() {
        // In step order the two blocks of step 0 take the room the block of step 1
        // needs within the greedy size: warm then moves the greedy placement's blocks,
        // each where the others leave room. The last block goes from the memory last
        // used at step 1 to the memory last used at step 2, the step before its first.
        let blocks = [
            block(0, 1, 3, 5),
            block(1, 3, 1, 1),
            block(2, 2, 0, 0),
            block(3, 2, 0, 2),
        ];
        let greedy = place(&blocks, 6);
        assert_eq!((greedy.size, greedy.offsets.clone()), (5, vec![0, 0, 0, 3]));
        assert_eq!(rewarm(&blocks, greedy.size, None), None);
        let w = warm(&blocks, 6, greedy.clone());
        assert_eq!((w.size, w.offsets), (5, vec![4, 0, 0, 3]));
    }

    proptest! {
        /// Blocks whose live ranges meet never overlap, and the arena holds them all.
        #[test]
        fn no_two_live_blocks_overlap(spec in prop::collection::vec((1usize..50, 0usize..20, 0usize..6), 1..40)) {
            let blocks: Vec<Block> = spec
                .iter()
                .enumerate()
                .map(|(i, (len, first, span))| block(i, *len, *first, first + span))
                .collect();
            let greedy = place(&blocks, 26);
            let warmed = warm(&blocks, 26, greedy.clone());
            prop_assert_eq!(warmed.size, greedy.size);
            for p in [greedy, warmed] {
                for (i, a) in blocks.iter().enumerate() {
                    prop_assert!(p.offsets[i] + a.len <= p.size);
                    for (j, b) in blocks.iter().enumerate().skip(i + 1) {
                        if a.meets(b) {
                            let (ai, bi) = (p.offsets[i], p.offsets[j]);
                            prop_assert!(ai + a.len <= bi || bi + b.len <= ai, "{a:?} at {ai} and {b:?} at {bi}");
                        }
                    }
                }
                // Never more than keeping every block apart.
                prop_assert!(p.size <= blocks.iter().map(|b| b.len).sum::<usize>());
            }
        }
    }
}
