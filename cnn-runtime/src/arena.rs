//! Borrowing several tensors of one buffer at once.
//!
//! The compiler places every tensor of `forward` at a fixed offset of one activation
//! arena (or of the caller's output). A step reads some of those regions and writes
//! another; [`split`] hands out the reads as shared slices and the write as a mutable
//! one. The plan never overlaps a read with the write; `split` checks it (a few
//! comparisons of constants, folded away by the optimiser) instead of trusting it.
//!
//! The arena itself is an [`Arena`]: the model's `Arena` type is `Arena<N>` with `N`
//! computed by the macro. [`crate::Model::forward_in`] runs on one the caller owns (in a
//! `static` [`ArenaCell`], a task's state, a `Box`); `forward` puts one on the stack (or,
//! with `std`, borrows this thread's scratch when it exceeds [`STACK_LIMIT`], 4 KiB).

/// The activation memory of one forward pass: `N` floats on a 64-byte boundary.
///
/// Its contents between calls mean nothing: every forward pass writes each region before
/// reading it, so one arena serves any number of calls (of one thread at a time).
#[repr(C, align(64))]
pub struct Arena<const N: usize>([f32; N]);

impl<const N: usize> Arena<N> {
    /// Floats in the arena.
    pub const LEN: usize = N;

    /// A zeroed arena (usable in a `static` initialiser).
    pub const fn new() -> Self {
        Arena([0.0; N])
    }

    /// A zeroed arena on the heap, built there directly (an arena of many megabytes
    /// never passes through the stack, as `Box::new(Arena::new())` may).
    #[cfg(feature = "alloc")]
    pub fn new_boxed() -> alloc::boxed::Box<Self> {
        let layout = core::alloc::Layout::new::<Self>();
        if layout.size() == 0 {
            return alloc::boxed::Box::new(Self::new());
        }
        // SAFETY: the layout has a non-zero size (checked above).
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) }.cast::<Self>();
        if ptr.is_null() {
            alloc::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` is a fresh allocation of `Self`'s layout by the global allocator,
        // zeroed, and all-zero bytes are a valid `[f32; N]` (zeros); the Box takes
        // ownership and frees it with the same layout.
        unsafe { alloc::boxed::Box::from_raw(ptr) }
    }

    /// The arena as one slice of `N` floats.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl<const N: usize> AsMut<[f32]> for Arena<N> {
    fn as_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Debug for Arena<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Arena<{N}>")
    }
}

/// [`ArenaCell`] and its guard: only where atomics have compare-and-swap (not, e.g.,
/// `thumbv6m`).
#[cfg(target_has_atomic = "8")]
mod cell {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, Ordering};

    use super::Arena;

    /// An [`Arena`] in a `static`, lent to one caller at a time: the safe way to give a
    /// `no_std` program's model its memory without `static mut`. (Needs atomic
    /// compare-and-swap: not on targets without it, such as `thumbv6m`.)
    ///
    /// ```
    /// use cnn_runtime::ArenaCell;
    ///
    /// static ARENA: ArenaCell<256> = ArenaCell::new();
    ///
    /// let mut guard = ARENA.lock().expect("not in use");
    /// assert!(ARENA.lock().is_none(), "lent to one caller at a time");
    /// guard.as_mut_slice()[0] = 1.0;
    /// drop(guard);
    /// assert!(ARENA.lock().is_some());
    /// ```
    pub struct ArenaCell<const N: usize> {
        busy: AtomicBool,
        arena: UnsafeCell<Arena<N>>,
    }

    // SAFETY: the arena is only reached through an `ArenaGuard`, and `lock` hands out at most
    // one guard at a time (the `busy` flag is taken with an acquire compare-exchange and
    // released by the guard's drop), so no two threads ever access it together.
    unsafe impl<const N: usize> Sync for ArenaCell<N> {}

    impl<const N: usize> ArenaCell<N> {
        /// A zeroed, free arena.
        pub const fn new() -> Self {
            ArenaCell {
                busy: AtomicBool::new(false),
                arena: UnsafeCell::new(Arena::new()),
            }
        }

        /// Borrows the arena until the guard drops; `None` while another guard is alive.
        pub fn lock(&self) -> Option<ArenaGuard<'_, N>> {
            self.busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .ok()?;
            // SAFETY: the flag was free and is now ours: no other reference to the arena
            // exists until this guard releases the flag in its drop.
            let arena = unsafe { &mut *self.arena.get() };
            Some(ArenaGuard {
                busy: &self.busy,
                arena,
            })
        }
    }

    impl<const N: usize> Default for ArenaCell<N> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// The borrow of an [`ArenaCell`]'s arena; releases it when dropped.
    pub struct ArenaGuard<'a, const N: usize> {
        busy: &'a AtomicBool,
        arena: &'a mut Arena<N>,
    }

    impl<const N: usize> core::ops::Deref for ArenaGuard<'_, N> {
        type Target = Arena<N>;
        fn deref(&self) -> &Arena<N> {
            self.arena
        }
    }

    impl<const N: usize> core::ops::DerefMut for ArenaGuard<'_, N> {
        fn deref_mut(&mut self) -> &mut Arena<N> {
            self.arena
        }
    }

    impl<const N: usize> Drop for ArenaGuard<'_, N> {
        fn drop(&mut self) {
            self.busy.store(false, Ordering::Release);
        }
    }
}

#[cfg(target_has_atomic = "8")]
pub use cell::{ArenaCell, ArenaGuard};

/// Calls `f` with `N` floats of activation memory for one forward pass, starting a
/// 64-byte cache line like every [`Arena`]: an arena on the stack, or with `std`, when it
/// exceeds [`STACK_LIMIT`] bytes, this thread's scratch buffer (no allocation after a
/// thread's first call). What `forward` uses.
///
/// The alignment matters for speed, not results: the planner puts every tensor on a
/// line of the arena, and a kernel split over threads gives each thread whole lines;
/// on a misaligned arena the threads would write shared lines at every plane boundary
/// (false sharing; MobileNet-96 on two threads ran ~20% slower so).
#[inline(always)]
pub fn with_arena<const N: usize, R>(f: impl FnOnce(&mut [f32]) -> R) -> R {
    #[cfg(feature = "std")]
    if N * 4 > STACK_LIMIT {
        return on_scratch::<N, R>(f);
    }
    on_stack::<N, R>(f)
}

/// `f` on an array on the stack. Its own function, never inlined: a caller taking the
/// scratch path never reserves the array in its frame (an unoptimised build would), and
/// a caller running several forward passes (inlined one after another) does not get
/// one array per pass in its frame.
#[inline(never)]
fn on_stack<const N: usize, R>(f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut arena = Arena::<N>::new();
    f(&mut arena.0)
}

/// `f` on this thread's scratch buffer.
#[cfg(feature = "std")]
#[inline(never)]
fn on_scratch<const N: usize, R>(f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut scratch = crate::scratch::Scratch::take(N);
    f(&mut scratch.as_mut_slice()[..N])
}

/// Bytes of activation memory `forward` keeps on the stack; larger arenas use this
/// thread's scratch buffer (with `std`), so deep networks at high resolution cannot
/// overflow a thread's stack, and no call pays for zeroing a stack arena (a stack arena
/// is zeroed on every call: 0.9 MB took ~30 µs of MobileNet-96's 550 and evicted its
/// weights from L2; LeNet-5's 23.5 KB about 0.2 µs of its 11, 2.6%; the scratch buffer
/// is zeroed once, when allocated, and a call finds it for a few nanoseconds). Without
/// `std` every arena is on the stack.
pub const STACK_LIMIT: usize = 4 << 10;

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
    use super::{split, split2, with_arena, ArenaCell, STACK_LIMIT};

    #[test]
    fn arena_cell_lends_one_guard_at_a_time() {
        static CELL: ArenaCell<16> = ArenaCell::new();
        let mut a = CELL.lock().unwrap();
        assert!(CELL.lock().is_none());
        a.as_mut_slice()[15] = 2.0;
        drop(a);
        let mut b = CELL.lock().unwrap();
        assert_eq!(b.as_mut_slice()[15], 2.0, "same memory");
        assert_eq!(
            b.as_mut_slice().as_ptr() as usize % 64,
            0,
            "64-byte aligned"
        );
    }

    #[test]
    fn boxed_arenas_are_zeroed_and_aligned() {
        // 64 MiB: would overflow a test thread's stack if it went through it.
        let mut big = super::Arena::<{ 16 << 20 }>::new_boxed();
        let s = big.as_mut_slice();
        assert_eq!(s.len(), 16 << 20);
        assert!(s.iter().all(|v| *v == 0.0));
        assert_eq!(s.as_ptr() as usize % 64, 0);
        let mut empty = super::Arena::<0>::new_boxed();
        assert!(empty.as_mut_slice().is_empty());
    }

    #[test]
    fn with_arena_gives_exactly_n_floats_on_a_line() {
        let line = |a: &mut [f32]| (a.len(), a.as_ptr() as usize % 64);
        assert_eq!(with_arena::<100, _>(line), (100, 0));
        const BIG: usize = STACK_LIMIT / 4 + 1;
        assert_eq!(with_arena::<BIG, _>(line), (BIG, 0));
        // A nested borrow of the scratch (a second buffer) is on a line too.
        with_arena::<BIG, _>(|_| assert_eq!(with_arena::<{ BIG + 3 }, _>(line), (BIG + 3, 0)));
    }

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
