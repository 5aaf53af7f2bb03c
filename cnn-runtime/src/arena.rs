//! Borrowing several tensors of one buffer at once.
//!
//! The compiler places every tensor of `forward` at a fixed offset of one activation
//! arena (or of the caller's output). A step reads some of those regions and writes
//! another; [`split`] hands out the reads as shared slices and the write as a mutable
//! one. The plan never overlaps a read with the write; `split` checks it (a few
//! comparisons of constants, folded away by the optimiser) instead of trusting it.

/// The regions `reads` (offset, length) of `buf` as shared slices and the region `write`
/// as a mutable slice.
///
/// # Panics
///
/// If a region lies outside `buf` or a read overlaps the write (a compiler bug: the
/// plan keeps them apart).
#[inline(always)]
pub fn split<const N: usize>(
    buf: &mut [f32],
    reads: [(usize, usize); N],
    write: (usize, usize),
) -> ([&[f32]; N], &mut [f32]) {
    let (before, rest) = buf.split_at_mut(write.0);
    let (out, after) = rest.split_at_mut(write.1);
    let (before, after): (&[f32], &[f32]) = (before, after);
    let end = write.0 + write.1;
    let slices = reads.map(|(offset, len)| {
        if offset + len <= write.0 {
            &before[offset..offset + len]
        } else {
            assert!(
                offset >= end,
                "arena::split: read [{offset}, {}) overlaps write [{}, {end})",
                offset + len,
                write.0
            );
            &after[offset - end..offset - end + len]
        }
    });
    (slices, out)
}

/// Like [`split`] with two disjoint writes (a step's destination and its scratch).
///
/// # Panics
///
/// If a region lies outside `buf`, the writes overlap, or a read overlaps a write.
#[inline(always)]
pub fn split2<const N: usize>(
    buf: &mut [f32],
    reads: [(usize, usize); N],
    first: (usize, usize),
    second: (usize, usize),
) -> ([&[f32]; N], &mut [f32], &mut [f32]) {
    let swapped = second.0 < first.0;
    let (lo, hi) = if swapped {
        (second, first)
    } else {
        (first, second)
    };
    assert!(lo.0 + lo.1 <= hi.0, "arena::split2: the writes overlap");
    let (before, rest) = buf.split_at_mut(lo.0);
    let (w_lo, rest) = rest.split_at_mut(lo.1);
    let (between, rest) = rest.split_at_mut(hi.0 - lo.0 - lo.1);
    let (w_hi, after) = rest.split_at_mut(hi.1);
    let (before, between, after): (&[f32], &[f32], &[f32]) = (before, between, after);
    let (mid, end) = (lo.0 + lo.1, hi.0 + hi.1);
    let slices = reads.map(|(offset, len)| {
        if offset + len <= lo.0 {
            &before[offset..offset + len]
        } else if offset >= mid && offset + len <= hi.0 {
            &between[offset - mid..offset - mid + len]
        } else {
            assert!(
                offset >= end,
                "arena::split2: read [{offset}, {}) overlaps a write",
                offset + len
            );
            &after[offset - end..offset - end + len]
        }
    });
    if swapped {
        (slices, w_hi, w_lo)
    } else {
        (slices, w_lo, w_hi)
    }
}

#[cfg(test)]
mod tests {
    use super::{split, split2};

    #[test]
    fn two_writes_and_reads_around_them() {
        let mut buf: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let ([a, b, c], w, s) = split2(&mut buf, [(0, 1), (4, 2), (10, 2)], (7, 3), (1, 3));
        assert_eq!((a, b, c), (&[0.0][..], &[4.0, 5.0][..], &[10.0, 11.0][..]));
        assert_eq!(w, &[7.0, 8.0, 9.0]);
        assert_eq!(s, &[1.0, 2.0, 3.0]);
        w[0] = -7.0;
        s[0] = -1.0;
        assert_eq!((buf[7], buf[1]), (-7.0, -1.0));
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_writes_panic() {
        let mut buf = [0.0f32; 8];
        let _ = split2::<0>(&mut buf, [], (0, 4), (3, 2));
    }

    #[test]
    fn reads_on_both_sides_of_the_write() {
        let mut buf: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let ([a, b, c], w) = split(&mut buf, [(0, 2), (7, 3), (1, 1)], (3, 4));
        assert_eq!(a, &[0.0, 1.0]);
        assert_eq!(b, &[7.0, 8.0, 9.0]);
        assert_eq!(c, &[1.0]);
        assert_eq!(w, &[3.0, 4.0, 5.0, 6.0]);
        w[0] = -1.0;
        assert_eq!(buf[3], -1.0);
    }

    #[test]
    fn adjacent_regions_are_fine() {
        let mut buf = [0.0f32; 6];
        let ([a, b], w) = split(&mut buf, [(0, 2), (4, 2)], (2, 2));
        assert_eq!((a.len(), b.len(), w.len()), (2, 2, 2));
    }

    #[test]
    #[should_panic(expected = "overlaps")]
    fn an_overlapping_read_panics() {
        let mut buf = [0.0f32; 6];
        let _ = split(&mut buf, [(1, 2)], (2, 2));
    }

    #[test]
    #[should_panic]
    fn a_region_past_the_end_panics() {
        let mut buf = [0.0f32; 6];
        let _ = split(&mut buf, [(0, 1)], (4, 4));
    }
}
