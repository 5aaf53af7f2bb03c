//! One image on two cores as two half images: a *team* of two threads runs the first
//! steps of a forward pass (a chain of convolutions the compiler picked), each thread
//! computing only its own rows of every tensor, in its own copy of the arena.
//!
//! The split plan of [`crate::pool`] splits each kernel call on its own, so a layer's
//! parts read rows the other core wrote in the layer before; on some machines a line
//! written by one core and read by the other costs ten times a line from the core's own
//! cache, and strided rows of it far more (`docs/PERFORMANCE.md`, "A team of two
//! threads"). Here member 0 (the calling thread, on the caller's arena) owns rows
//! `0..h/2` of every tensor and member 1 (the pool's worker, on its thread's scratch
//! arena) rows `h/2..h`. After a step whose reader needs rows of the other half (a
//! kernel taller than one row, or a stride), [`Member::exchange`] moves just those
//! rows: each member gathers the rows the other needs into a contiguous buffer of its
//! own (one of two halves, used in turn), the two meet at a barrier, and each copies
//! the other's buffer into its arena. After the last step [`Member::merge`] brings member 1's rows of the
//! last tensor into member 0's arena (or, when the team's last step writes the model's
//! output, into the caller's output), and the caller runs the rest of the pass as usual.
//!
//! Each step of the team calls a kernel's `_rows` form (such as
//! [`conv2d_rows`](crate::kernels::conv::conv2d_rows)) with the member's rows of its
//! output ([`Member::rows`]): it computes those rows, on this thread, unsplit. Every
//! value is computed as on one thread, so results are bit for bit those of one thread.
//!
//! [`run`] forms a team only with the `parallel` feature, exactly two threads
//! ([`crate::pool::num_threads`]) and the pool free (not inside a batch's part or
//! another call's); otherwise it returns `false` and the caller runs its usual steps.

/// One thread's part of a team: its index and the exchanges with the other member.
pub struct Member {
    index: usize,
    /// Barriers this member has passed in the current team call.
    #[cfg(feature = "parallel")]
    passed: core::cell::Cell<usize>,
    /// This member's contiguous buffer: two halves of `len` floats (the `halo` [`run`]
    /// was given), used in turn by the exchanges and the merge.
    #[cfg(feature = "parallel")]
    halo: *mut f32,
    /// Floats of each half of `halo`.
    #[cfg(feature = "parallel")]
    len: usize,
    /// Exchanges (and merges) this member has started in the current team call.
    #[cfg(feature = "parallel")]
    sent: core::cell::Cell<usize>,
}

impl Member {
    /// 0 for the calling thread (which keeps the whole last tensor), 1 for the worker.
    pub fn index(&self) -> usize {
        self.index
    }

    /// This member's rows of a tensor of `h` rows: `0..h/2` for member 0, `h/2..h` for
    /// member 1.
    pub fn rows(&self, h: usize) -> (usize, usize) {
        if self.index == 0 {
            (0, h / 2)
        } else {
            (h / 2, h)
        }
    }

    /// After a step wrote the tensor of `c` planes of `h` rows by `w` at `off` in this
    /// member's arena (its own rows: `0..h/2` for member 0, `h/2..h` for member 1),
    /// gives member 0 rows `h/2..h/2 + below` and member 1 rows `h/2 - above..h/2` of
    /// every plane from the other member's arena. Both members call it with the same
    /// arguments; `c * max(above, below) * w` must fit the `halo` given to [`run`].
    pub fn exchange(
        &self,
        arena: &mut [f32],
        off: usize,
        (c, h, w): (usize, usize, usize),
        above: usize,
        below: usize,
    ) {
        #[cfg(feature = "parallel")]
        {
            let b = h / 2;
            // Rows the other member needs from this one, and rows it sends to this one.
            let (send, recv) = if self.index == 0 {
                ((b - above, b), (b, b + below))
            } else {
                ((b, b + below), (b - above, b))
            };
            let (mine, at) = self.half();
            imp::gather(arena, off, (c, h, w), send, mine);
            self.barrier();
            let other = self.theirs(at);
            // No second barrier: the other member writes this half of its buffer again
            // two exchanges on, after the barrier of the next one, which this member
            // reaches only once it has read it (and the same the other way).
            imp::scatter(arena, off, (c, h, w), recv, other);
        }
        #[cfg(not(feature = "parallel"))]
        let _ = (arena, off, c, h, w, above, below);
    }

    /// After each member summed its rows of each of `c` planes of `hw` values into
    /// `arena[off..off + c]`
    /// ([`adaptive_avg_pool2d_part`](crate::kernels::adaptive::adaptive_avg_pool2d_part)):
    /// both members get the means there, `(member 0's sum + member 1's) / hw`, as
    /// [`adaptive_avg_pool2d`](crate::kernels::adaptive::adaptive_avg_pool2d) computes
    /// them on one thread (bit for bit). Both members call it with the same arguments;
    /// `c` must fit the `halo` given to [`run`].
    pub fn reduce_mean(&self, arena: &mut [f32], off: usize, c: usize, hw: usize) {
        #[cfg(feature = "parallel")]
        {
            let (mine, at) = self.half();
            imp::gather(arena, off, (1, 1, c), (0, 1), mine);
            self.barrier();
            let other = self.theirs(at);
            imp::mean(arena, off, c, hw, other, self.index == 0);
        }
        #[cfg(not(feature = "parallel"))]
        let _ = (arena, off, c, hw);
    }

    /// After the team's last step wrote the tensor of `c` planes of `h` rows by `w` at
    /// `off` in `buf` (the member's arena, or its output: see [`run`]): member 1's rows
    /// `h/2..h` into member 0's `buf` (through member 1's exchange buffer, which must
    /// hold `c * (h - h/2) * w` floats). Member 1 is done after it.
    pub fn merge(&self, buf: &mut [f32], off: usize, (c, h, w): (usize, usize, usize)) {
        #[cfg(feature = "parallel")]
        {
            let rows = (h / 2, h);
            let (mine, at) = self.half();
            if self.index == 1 {
                imp::gather(buf, off, (c, h, w), rows, mine);
            }
            self.barrier();
            if self.index == 0 {
                imp::scatter(buf, off, (c, h, w), rows, self.theirs(at));
            }
        }
        #[cfg(not(feature = "parallel"))]
        let _ = (buf, off, c, h, w);
    }

    /// The half of this member's buffer for the next exchange or merge, and its offset
    /// in the buffer: the first half for the first one, then the second, and so on (both
    /// members make the same calls in the same order).
    #[cfg(feature = "parallel")]
    fn half(&self) -> (*mut f32, usize) {
        let k = self.sent.get();
        self.sent.set(k + 1);
        let at = (k % 2) * self.len;
        (self.halo.wrapping_add(at), at)
    }

    /// The same half (at `at`) of the other member's buffer: read only after the
    /// exchange's barrier, before which the other published its buffer for this call.
    #[cfg(feature = "parallel")]
    fn theirs(&self, at: usize) -> *const f32 {
        imp::other_halo(self.index).wrapping_add(at)
    }

    /// Waits until the other member reaches its barrier of the same count (or a member
    /// panicked: then it returns at once, and the call panics when both are out).
    #[cfg(feature = "parallel")]
    fn barrier(&self) {
        let k = self.passed.get() + 1;
        self.passed.set(k);
        imp::barrier(k);
    }
}

/// Runs `f` as a team of two members at once, member 0 on this thread with `arena` and
/// `output`, member 1 on the pool's worker with an arena and an output of its own as
/// long (both in its thread's scratch buffer: allocated on the first team call, reused
/// after), each with a contiguous buffer of twice `halo` floats for [`Member::exchange`]
/// and [`Member::merge`] (halves used in turn). A team whose steps do not write the model's output passes an
/// empty `output`. Returns
/// `false` without calling `f` when no team can be formed (no `parallel` feature, a
/// thread count other than two, the pool busy); the caller then runs the same steps on
/// its own.
///
/// # Panics
///
/// If a member panics (after both have returned).
pub fn run(halo: usize, arena: &mut [f32], output: &mut [f32], f: &MemberFn<'_>) -> bool {
    #[cfg(feature = "parallel")]
    {
        imp::run(halo, arena, output, f)
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = (halo, arena, output, f);
        false
    }
}

/// A member's part of a team call: `f(member, arena, output)`.
pub type MemberFn<'a> = dyn Fn(&Member, &mut [f32], &mut [f32]) + Sync + 'a;

/// Team calls made so far in this process (tests check that a model took the team).
#[doc(hidden)]
pub fn calls() -> usize {
    #[cfg(feature = "parallel")]
    {
        imp::CALLS.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "parallel"))]
    {
        0
    }
}

#[cfg(feature = "parallel")]
mod imp {
    use core::cell::Cell;
    use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
    use std::panic::{self, AssertUnwindSafe};
    use std::vec::Vec;

    use super::{Member, MemberFn};

    std::thread_local! {
        /// This thread's contiguous exchange buffer (kept between calls).
        static HALO: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    }

    /// Team calls so far.
    pub(super) static CALLS: AtomicUsize = AtomicUsize::new(0);
    /// Barrier arrivals in the current call (one team at a time: the pool's job).
    static ARRIVED: AtomicUsize = AtomicUsize::new(0);
    /// A member panicked in the current call.
    static POISONED: AtomicBool = AtomicBool::new(false);
    /// Each member's exchange buffer in the current call.
    static HALOS: [AtomicPtr<f32>; 2] = [
        AtomicPtr::new(core::ptr::null_mut()),
        AtomicPtr::new(core::ptr::null_mut()),
    ];

    pub(super) fn other_halo(me: usize) -> *const f32 {
        HALOS[1 - me].load(Ordering::Acquire)
    }

    pub(super) fn barrier(k: usize) {
        ARRIVED.fetch_add(1, Ordering::AcqRel);
        while ARRIVED.load(Ordering::Acquire) < 2 * k {
            if POISONED.load(Ordering::Relaxed) {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Rows `rows` of each of the `c` planes (`h` by `w`, at `off`) into `buf`, one
    /// after another.
    pub(super) fn gather(
        arena: &[f32],
        off: usize,
        (c, h, w): (usize, usize, usize),
        rows: (usize, usize),
        buf: *mut f32,
    ) {
        let n = (rows.1 - rows.0) * w;
        assert!(
            rows.0 <= rows.1 && rows.1 <= h,
            "cnn: exchange rows outside the tensor"
        );
        let src = &arena[off..off + c * h * w];
        // SAFETY: `buf` is a half of this member's buffer, of the `halo` floats `run`
        // was given, which the caller sized for `c * n` (see `Member::exchange`); only
        // this member writes it, and the other reads it only after the barrier that
        // follows this gather and before it passes the barrier of the next exchange,
        // which this member must pass before it writes this half again
        // (`Member::halves`). The source rows are inside `src` (`rows.1 <= h`).
        unsafe { copy_rows(src.as_ptr().add(rows.0 * w), h * w, buf, n, (c, n)) };
    }

    /// The other member's gathered rows from `buf` into rows `rows` of each plane.
    pub(super) fn scatter(
        arena: &mut [f32],
        off: usize,
        (c, h, w): (usize, usize, usize),
        rows: (usize, usize),
        buf: *const f32,
    ) {
        let n = (rows.1 - rows.0) * w;
        assert!(
            rows.0 <= rows.1 && rows.1 <= h,
            "cnn: exchange rows outside the tensor"
        );
        let dst = &mut arena[off..off + c * h * w];
        // SAFETY: the other member gathered `c * n` floats into this half of its
        // buffer (same arguments) before the barrier this member just passed, and does
        // not write this half again before this member has passed the next barrier
        // (`Member::halves`). The destination rows are inside `dst` (`rows.1 <= h`).
        unsafe { copy_rows(buf, n, dst.as_mut_ptr().add(rows.0 * w), h * w, (c, n)) };
    }

    /// `c` runs of `n` floats, from `src + i * src_step` to `dst + i * dst_step` for
    /// `i < c`, by the level's vectors in one dispatch (a `memcpy` call per plane's
    /// rows, 24-48 floats on MobileNet-96's small maps, cost more than the copy).
    ///
    /// # Safety
    ///
    /// Every run is readable at `src` and writable at `dst`, and no run of `dst`
    /// overlaps one of `src` or is accessed by anyone else during the call.
    unsafe fn copy_rows(
        src: *const f32,
        src_step: usize,
        dst: *mut f32,
        dst_step: usize,
        (c, n): (usize, usize),
    ) {
        struct Rows {
            src: *const f32,
            src_step: usize,
            dst: *mut f32,
            dst_step: usize,
            c: usize,
            n: usize,
        }
        impl crate::kernels::simd::WithSimd for Rows {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: crate::kernels::simd::Simd>(self, s: S) {
                for i in 0..self.c {
                    // SAFETY: run `i` of each side (`copy_rows`'s contract).
                    unsafe {
                        crate::kernels::engine::copy_floats(
                            s,
                            self.src.add(i * self.src_step),
                            self.dst.add(i * self.dst_step),
                            self.n,
                        )
                    };
                }
            }
        }
        crate::kernels::simd::run(
            crate::cpu::level(),
            Rows {
                src,
                src_step,
                dst,
                dst_step,
                c,
                n,
            },
        );
    }

    /// `arena[off + i] = (top + bottom) / hw` for `i < c`, `top` this member's sum when
    /// `first`, else the other's (from `buf`, gathered by [`gather`] as in
    /// [`scatter`]'s use).
    pub(super) fn mean(
        arena: &mut [f32],
        off: usize,
        c: usize,
        hw: usize,
        buf: *const f32,
        first: bool,
    ) {
        // SAFETY: as `scatter`: the other member gathered `c` floats into this half of
        // its buffer before the barrier this member just passed, and does not write it
        // again before this member has passed the next barrier.
        let theirs = unsafe { core::slice::from_raw_parts(buf, c) };
        let count = hw as f32;
        for (x, &t) in arena[off..off + c].iter_mut().zip(theirs) {
            let (top, bottom) = if first { (*x, t) } else { (t, *x) };
            *x = (top + bottom) / count;
        }
    }

    /// `f` for member `me` on this thread, its buffer published.
    fn member(me: usize, halo: usize, arena: &mut [f32], output: &mut [f32], f: &MemberFn<'_>) {
        let mut buf = HALO.with(Cell::take);
        if buf.len() < 2 * halo.max(1) {
            buf.resize(2 * halo.max(1), 0.0);
        }
        let m = Member {
            index: me,
            passed: Cell::new(0),
            halo: buf.as_mut_ptr(),
            len: halo.max(1),
            sent: Cell::new(0),
        };
        // Published before this member's first barrier, after which alone the other
        // reads it (the barrier's count is released and acquired).
        HALOS[me].store(m.halo, Ordering::Release);
        let r = panic::catch_unwind(AssertUnwindSafe(|| f(&m, arena, output)));
        HALO.with(|h| h.set(buf));
        if let Err(e) = r {
            POISONED.store(true, Ordering::Relaxed);
            panic::resume_unwind(e);
        }
    }

    pub(super) fn run(
        halo: usize,
        arena: &mut [f32],
        output: &mut [f32],
        f: &MemberFn<'_>,
    ) -> bool {
        // (A call from inside a member finds the pool busy with this team.)
        if crate::pool::num_threads() != 2 {
            return false;
        }
        // This thread's buffer sized now, team or not: a call that finds the pool busy
        // and the next one that does not allocate alike (once per thread).
        HALO.with(|h| {
            let mut buf = h.take();
            if buf.len() < 2 * halo.max(1) {
                buf.resize(2 * halo.max(1), 0.0);
            }
            h.set(buf);
        });
        let (len, out_len) = (arena.len(), output.len());
        let arena_ptr = crate::kernels::SharedPtr(arena.as_mut_ptr());
        let output_ptr = crate::kernels::SharedPtr(output.as_mut_ptr());
        // Reset once the pool is this call's (no other team is running then).
        let reset = || {
            ARRIVED.store(0, Ordering::Relaxed);
            POISONED.store(false, Ordering::Relaxed);
        };
        let started = crate::pool::team(&reset, &|me| {
            if me == 0 {
                // SAFETY: the caller's arena and output, borrowed mutably for this
                // call, used by member 0 only.
                let (arena, output) = unsafe {
                    (
                        core::slice::from_raw_parts_mut(arena_ptr.get(), len),
                        core::slice::from_raw_parts_mut(output_ptr.get(), out_len),
                    )
                };
                member(0, halo, arena, output, f);
            } else {
                let mut scratch = crate::scratch::Scratch::take(len + out_len);
                let (arena, output) = scratch.as_mut_slice()[..len + out_len].split_at_mut(len);
                member(1, halo, arena, output, f);
            }
        });
        if started {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        started
    }
}
