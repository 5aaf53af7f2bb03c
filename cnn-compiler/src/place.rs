//! Part of stage 5, plan: memory. Blocks of the activation arena (a tensor, the tensors
//! written in place over it or into it, or a kernel's scratch) each live from the step
//! that first writes them to the step that last reads them; two blocks whose live ranges
//! meet must not overlap. Blocks are placed largest first at the lowest offset free over
//! their whole live range (TVM's and onnx2c's greedy-by-size heuristic), so memory is
//! shared by live range rather than by alternation.

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
    let meet = |a: &Block, b: &Block| a.first <= b.last && b.first <= a.last;
    for &i in &order {
        let b = &blocks[i];
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| meet(&blocks[j], b))
            .map(|&j| (offsets[j], offsets[j] + blocks[j].len))
            .collect();
        busy.sort_unstable();
        let mut at = 0;
        for (start, end) in busy {
            if at + b.len <= start {
                break;
            }
            at = at.max(end);
        }
        offsets[i] = at;
        size = size.max(at + b.len);
        placed.push(i);
    }
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
    Placement {
        offsets,
        size,
        peak_step,
    }
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

    proptest! {
        /// Blocks whose live ranges meet never overlap, and the arena holds them all.
        #[test]
        fn no_two_live_blocks_overlap(spec in prop::collection::vec((1usize..50, 0usize..20, 0usize..6), 1..40)) {
            let blocks: Vec<Block> = spec
                .iter()
                .enumerate()
                .map(|(i, (len, first, span))| block(i, *len, *first, first + span))
                .collect();
            let p = place(&blocks, 26);
            for (i, a) in blocks.iter().enumerate() {
                prop_assert!(p.offsets[i] + a.len <= p.size);
                for (j, b) in blocks.iter().enumerate().skip(i + 1) {
                    if a.first <= b.last && b.first <= a.last {
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
