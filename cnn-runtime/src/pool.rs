//! Intra-op parallelism: a small persistent thread pool that splits one kernel call
//! (one image) over the cores, with the `parallel` feature.
//!
//! [`run`]`(n, f)` calls `f(0)`, ..., `f(n - 1)`, spread over the calling thread and
//! the pool's workers, and returns when all have returned (fork/join). The workers are
//! started once, on the first call that wants them, and wait between jobs (spinning
//! briefly, then parked on a condition variable). A job passes the closure by pointer:
//! no allocation per call. Part `i` below the thread count is thread `i`'s own (the
//! caller is thread 0, worker `k` thread `k + 1`): consecutive calls split the same way
//! run the same part on the same core, whose cache holds what that part wrote the call
//! before. Each thread runs its own part first, then claims the others from a shared
//! counter and takes the own parts of threads that have not started theirs, so a busy
//! or sleeping worker never holds up the others.
//!
//! Thread count (the calling thread included): [`set_num_threads`], else the
//! environment variable `CNN_NUM_THREADS`, else [`std::thread::available_parallelism`].
//! One disables the pool. A call made while the pool is busy with another job (another
//! thread's, or nested inside a part) runs its parts on its own thread.
//!
//! Without the `parallel` feature, [`num_threads`] is 1, [`set_num_threads`] does nothing
//! and [`run`] is a plain loop.

/// Most threads [`set_num_threads`] accepts.
pub const MAX_THREADS: usize = 64;

/// Threads a kernel call may use (the calling thread included): 1 without the
/// `parallel` feature.
pub fn num_threads() -> usize {
    #[cfg(feature = "parallel")]
    {
        imp::num_threads()
    }
    #[cfg(not(feature = "parallel"))]
    {
        1
    }
}

/// Sets the threads a kernel call may use (calling thread included), capped to
/// `1..=`[`MAX_THREADS`]; 1 runs everything on the calling thread. No effect without the
/// `parallel` feature.
pub fn set_num_threads(n: usize) {
    #[cfg(feature = "parallel")]
    imp::set_num_threads(n);
    #[cfg(not(feature = "parallel"))]
    let _ = n;
}

/// Calls `f(i)` for every `i` in `0..n`, on the calling thread and (with the `parallel`
/// feature, when [`num_threads`] is above 1 and the pool is free) the pool's workers, and
/// returns once every call has returned. Each index runs exactly once; the order is
/// unspecified. A panic in a part is propagated to the caller after all parts finished.
pub fn run(n: usize, f: &(dyn Fn(usize) + Sync)) {
    #[cfg(feature = "parallel")]
    {
        if n > 1 && num_threads() > 1 {
            imp::run(n, f);
            return;
        }
    }
    (0..n).for_each(f);
}

/// Calls `before()`, then `f(0)` on this thread and `f(1)` on the pool's worker at the
/// same time (neither part is ever run by the other thread, so the two may wait for each
/// other), and returns `true` once both returned; `false` without calling anything when
/// the pool does not have exactly two threads or is busy. A panic in a part is
/// propagated after both finished.
#[cfg(feature = "parallel")]
pub(crate) fn team(before: &dyn Fn(), f: &(dyn Fn(usize) + Sync)) -> bool {
    num_threads() == 2 && imp::team(before, f)
}

/// Splits `data` into pieces of `chunk` elements (the last may be shorter) and calls
/// `f(i, piece_i)` for every piece, spread over the pool's threads as [`run`] does: the
/// pieces are disjoint, so each part writes its own piece. Returns once every call has
/// returned.
///
/// # Panics
///
/// If `chunk` is 0 (and `data` is not empty), or a part panics (after all parts ran).
pub fn run_chunks_mut<T: Send>(data: &mut [T], chunk: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    if data.is_empty() {
        return;
    }
    assert!(
        chunk > 0,
        "cnn: run_chunks_mut needs a chunk length above 0"
    );
    let len = data.len();
    let base = ChunkPtr(data.as_mut_ptr());
    run(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        let end = (start + chunk).min(len);
        // SAFETY: `run` calls each index in `0..len.div_ceil(chunk)` exactly once, so the
        // ranges `start..end` handed out are disjoint and inside `data`, which stays
        // mutably borrowed (by this function) until every part has returned.
        let piece = unsafe { core::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(i, piece);
    });
}

/// The base pointer of [`run_chunks_mut`]'s slice, shared by its parts.
struct ChunkPtr<T>(*mut T);
// SAFETY: the parts only form disjoint sub-slices through it (see `run_chunks_mut`), and
// `T: Send` lets each piece be used on another thread.
unsafe impl<T: Send> Sync for ChunkPtr<T> {}

impl<T> ChunkPtr<T> {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    fn get(&self) -> *mut T {
        self.0
    }
}

#[cfg(feature = "parallel")]
mod imp {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

    use super::MAX_THREADS;

    /// Spin iterations a worker waits for the next job before parking.
    const SPIN: u32 = 1 << 15;

    /// Spin iterations the caller waits for the workers to leave a job before parking.
    const JOIN_SPIN: u32 = 1 << 16;

    /// Stack size of a worker thread.
    const WORKER_STACK: usize = crate::arena::STACK_LIMIT + (4 << 20);

    /// The threads wanted (0: not read from the environment yet).
    static THREADS: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn num_threads() -> usize {
        match THREADS.load(Ordering::Relaxed) {
            0 => {
                let n = std::env::var("CNN_NUM_THREADS")
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                    .min(MAX_THREADS);
                // A concurrent `set_num_threads` wins.
                let _ = THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
                THREADS.load(Ordering::Relaxed)
            }
            n => n,
        }
    }

    pub(super) fn set_num_threads(n: usize) {
        THREADS.store(n.clamp(1, MAX_THREADS), Ordering::Relaxed);
    }

    /// The closure of the current job, its lifetime erased.
    #[derive(Clone, Copy)]
    struct JobRef {
        f: *const (dyn Fn(usize) + Sync + 'static),
        n: usize,
        /// Parts `0..homes` are thread `i`'s own (`homes <= 64`, the threads wanted).
        homes: usize,
        /// A team job: each thread runs its own part only, none is claimed by another.
        team: bool,
    }
    // SAFETY: the pointee is `Sync` (shared by reference across threads is fine), and
    // `run` keeps it alive until no worker can reach it any more (see `run`).
    unsafe impl Send for JobRef {}

    /// What the mutex guards.
    struct State {
        /// The job being run; `None` between jobs.
        job: Option<JobRef>,
        /// Workers parked on `wake`.
        sleepers: usize,
        /// Worker threads started.
        spawned: usize,
    }

    struct Pool {
        state: Mutex<State>,
        /// Workers wait here for a job.
        wake: Condvar,
        /// The caller waits here for the workers to leave a job (after spinning).
        done: Condvar,
        /// Workers inside the current job (joined under the mutex, left without it).
        active: AtomicUsize,
        /// The caller is parked on `done` (set under the mutex).
        waiting: AtomicBool,
        /// Incremented (under the mutex) for every job: what spinning workers watch.
        generation: AtomicU64,
        /// Next part index to claim (from `homes` on).
        next: AtomicUsize,
        /// Own parts (bit `i`: part `i`) already taken.
        taken: AtomicU64,
        /// A part panicked in a worker.
        panicked: AtomicBool,
        /// A job is running (one at a time; others run on their own thread).
        busy: AtomicBool,
        /// Nanoseconds the workers spent in the current job's parts (`profile`).
        #[cfg(feature = "profile")]
        work_ns: AtomicU64,
    }

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            state: Mutex::new(State {
                job: None,
                sleepers: 0,
                spawned: 0,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            active: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            panicked: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            #[cfg(feature = "profile")]
            work_ns: AtomicU64::new(0),
        })
    }

    fn lock(p: &Pool) -> MutexGuard<'_, State> {
        // Parts never run under the lock, so it is never poisoned by them.
        p.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims and runs parts of `job` on thread `me` (0: the caller) until none is left:
    /// its own part, the shared ones, then own parts of threads that have not taken
    /// theirs. Returns whether one panicked.
    fn claim(p: &Pool, job: JobRef, me: usize) -> bool {
        let mut panicked = false;
        let mut part = |i: usize| {
            // SAFETY: a thread claims parts only between joining the job and leaving it
            // (workers: `active` counted; the caller: inside `run`), and `run` returns,
            // ending the closure's borrow, only once the job is cleared (no worker joins
            // any more) and no worker is active, so the pointee is alive here.
            let f = unsafe { &*job.f };
            panicked |= panic::catch_unwind(AssertUnwindSafe(|| f(i))).is_err();
        };
        let take = |i: usize| p.taken.fetch_or(1 << i, Ordering::Relaxed) & (1 << i) == 0;
        if job.team {
            if me < job.n {
                part(me);
            }
            return panicked;
        }
        if me < job.homes && take(me) {
            part(me);
        }
        loop {
            let i = p.next.fetch_add(1, Ordering::Relaxed);
            if i >= job.n {
                break;
            }
            part(i);
        }
        for i in (0..job.homes).map(|k| (me + k) % job.homes) {
            if p.taken.load(Ordering::Relaxed) & (1 << i) == 0 && take(i) {
                part(i);
            }
        }
        panicked
    }

    /// Worker thread `me` (1 for the first worker), started when the pool's generation
    /// was `seen`: a job published since (the one that started it) is still to join (a
    /// team job's part is its alone).
    fn worker(p: &'static Pool, me: usize, mut seen: u64) {
        // Workers run only kernels of forward passes: subnormals flushed for good, as
        // on the calling thread during `cpu::dispatch`.
        let _flush = crate::cpu::FlushSubnormals::new();
        loop {
            let mut spins = 0;
            while p.generation.load(Ordering::Acquire) == seen && spins < SPIN {
                std::hint::spin_loop();
                spins += 1;
            }
            let mut st = lock(p);
            let job = loop {
                let g = p.generation.load(Ordering::Acquire);
                if g != seen {
                    seen = g;
                    // `None`: that job is already over.
                    break st.job;
                }
                st.sleepers += 1;
                st = p.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                st.sleepers -= 1;
            };
            let Some(job) = job else { continue };
            p.active.fetch_add(1, Ordering::SeqCst);
            drop(st);
            #[cfg(feature = "profile")]
            let start = std::time::Instant::now();
            if claim(p, job, me) {
                p.panicked.store(true, Ordering::Relaxed);
            }
            // Counted before leaving: the caller reads it once no worker is active.
            #[cfg(feature = "profile")]
            p.work_ns.fetch_add(
                u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            // Leaving: no lock and no system call unless the caller has parked (it
            // usually spins for the few microseconds a part takes).
            if p.active.fetch_sub(1, Ordering::SeqCst) == 1 && p.waiting.load(Ordering::SeqCst) {
                let _st = lock(p);
                p.done.notify_all();
            }
        }
    }

    /// Waits for the workers to leave the job and clears it, even when the caller's
    /// own part panics (the closure must outlive every worker's use of it).
    struct Finish<'a>(&'a Pool);

    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            let p = self.0;
            // No part is left to claim: make sure of it if the caller unwinds early.
            p.next.store(usize::MAX / 2, Ordering::Relaxed);
            p.taken.store(u64::MAX, Ordering::Relaxed);
            // No worker joins from now on (they join under the mutex, seeing the job).
            lock(p).job = None;
            // The workers still inside finish their last part: spin for it (a parked
            // caller costs a wake-up of tens of microseconds), then park.
            let mut spins = 0;
            while p.active.load(Ordering::SeqCst) != 0 && spins < JOIN_SPIN {
                std::hint::spin_loop();
                spins += 1;
            }
            if p.active.load(Ordering::SeqCst) != 0 {
                let mut st = lock(p);
                p.waiting.store(true, Ordering::SeqCst);
                while p.active.load(Ordering::SeqCst) != 0 {
                    st = p.done.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                p.waiting.store(false, Ordering::SeqCst);
                drop(st);
            }
            p.busy.store(false, Ordering::Release);
        }
    }

    pub(super) fn run(n: usize, f: &(dyn Fn(usize) + Sync)) {
        let p = pool();
        if p.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            (0..n).for_each(f);
            return;
        }
        start(p, n, num_threads() - 1, false, f);
    }

    pub(super) fn team(before: &dyn Fn(), f: &(dyn Fn(usize) + Sync)) -> bool {
        let p = pool();
        if p.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        before();
        // One worker whatever the thread count has become since the caller looked: the
        // second part must run.
        start(p, 2, 1, true, f);
        true
    }

    /// Runs the job of `n` parts (`team`: each thread its own) with the pool, which the
    /// caller has marked busy, with `want` workers at least.
    fn start(p: &'static Pool, n: usize, want: usize, team: bool, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: only the lifetime is erased; `Finish` (dropped before this function
        // returns or unwinds) waits until no worker is in the job and clears it, and a
        // worker only reads `job` under the mutex, so no use outlives the borrow.
        let f = unsafe {
            core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        let job = JobRef {
            f,
            n,
            homes: n.min(want + 1).min(64),
            team,
        };
        {
            let mut st = lock(p);
            while st.spawned < want {
                std::thread::Builder::new()
                    .name(format!("cnn-worker-{}", st.spawned))
                    // A worker may run a whole forward pass (batches): room for an arena
                    // kept on the stack (up to `STACK_LIMIT`) and the kernels' buffers.
                    .stack_size(WORKER_STACK)
                    .spawn({
                        let me = st.spawned + 1;
                        // Under the mutex, before this job's generation.
                        let seen = p.generation.load(Ordering::Acquire);
                        move || worker(p, me, seen)
                    })
                    .expect("cnn: cannot start a worker thread");
                st.spawned += 1;
            }
            p.next.store(job.homes, Ordering::Relaxed);
            p.taken.store(0, Ordering::Relaxed);
            p.panicked.store(false, Ordering::Relaxed);
            st.job = Some(job);
            p.generation.fetch_add(1, Ordering::Release);
            if st.sleepers > 0 {
                p.wake.notify_all();
            }
        }
        let finish = Finish(p);
        #[cfg(feature = "profile")]
        let start = std::time::Instant::now();
        let mine = claim(p, job, 0);
        #[cfg(feature = "profile")]
        let caller = start.elapsed();
        let theirs = {
            drop(finish);
            p.panicked.load(Ordering::Relaxed)
        };
        // After the join (no worker active): the workers' part time of this job (not
        // of a team's, which spans the steps the caller marked one by one inside it).
        #[cfg(feature = "profile")]
        {
            let workers = p.work_ns.swap(0, Ordering::Relaxed);
            if !team {
                crate::profile::record_job(caller, workers);
            }
        }
        if mine || theirs {
            panic!("cnn: a part of a parallel kernel call panicked");
        }
    }
}

/// Tests that change the thread count take this lock (they run one at a time).
#[cfg(test)]
pub(crate) static TEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`TEST_LOCK`] (also after a test that held it panicked).
#[cfg(test)]
pub(crate) fn test_lock() -> std::sync::MutexGuard<'static, ()> {
    TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A team's two parts run at once: each waits for the other to start (bounded, so
    /// that a failure fails instead of hanging).
    #[cfg(feature = "parallel")]
    #[test]
    fn team_parts_run_at_once() {
        let _g = super::test_lock();
        set_num_threads(2);
        // Other tests' kernels may hold the pool (they do not take the lock): count the
        // calls that formed a team.
        let (mut teams, t0) = (0, std::time::Instant::now());
        while teams < 200 && t0.elapsed().as_secs() < 20 {
            let started = AtomicUsize::new(0);
            let met = AtomicUsize::new(0);
            let ran = team(&|| {}, &|_| {
                started.fetch_add(1, Ordering::SeqCst);
                let t = std::time::Instant::now();
                while started.load(Ordering::SeqCst) < 2 {
                    if t.elapsed().as_secs() >= 2 {
                        return;
                    }
                    std::hint::spin_loop();
                }
                met.fetch_add(1, Ordering::SeqCst);
            });
            if ran {
                teams += 1;
                assert_eq!(met.load(Ordering::SeqCst), 2, "both parts met");
            } else {
                assert_eq!(
                    started.load(Ordering::SeqCst),
                    0,
                    "no part runs without a team"
                );
            }
        }
        assert!(teams > 0, "no team formed in 20 s");
        set_num_threads(3);
        assert!(!team(&|| {}, &|_| unreachable!("no team on three threads")));
        set_num_threads(1);
    }

    #[test]
    fn many_small_jobs_run_every_part_once() {
        let _g = super::test_lock();
        set_num_threads(4);
        for n in [0, 1, 2, 3, 7, 64] {
            for _ in 0..500 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let total = AtomicUsize::new(0);
                run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                    total.fetch_add(i + 1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                assert_eq!(total.into_inner(), n * (n + 1) / 2);
            }
        }
        set_num_threads(0);
        assert_eq!(num_threads(), 1);
    }

    #[cfg(feature = "parallel")]
    #[test]
    fn parts_run_on_several_threads_and_nest() {
        let _g = super::test_lock();
        set_num_threads(2);
        let ids = Mutex::new(std::collections::HashSet::new());
        let inner = AtomicUsize::new(0);
        for _ in 0..200 {
            run(2, &|_| {
                ids.lock().unwrap().insert(std::thread::current().id());
                // A nested call runs on its own thread.
                run(3, &|_| {
                    inner.fetch_add(1, Ordering::Relaxed);
                });
                std::thread::sleep(std::time::Duration::from_micros(50));
            });
        }
        assert_eq!(inner.into_inner(), 200 * 2 * 3);
        assert!(ids.into_inner().unwrap().len() >= 2);
    }

    #[cfg(feature = "parallel")]
    #[test]
    fn a_panicking_part_reaches_the_caller_and_the_pool_survives() {
        let _g = super::test_lock();
        set_num_threads(2);
        let r = std::panic::catch_unwind(|| run(4, &|i| assert!(i != 3, "part 3")));
        assert!(r.is_err());
        let total = AtomicUsize::new(0);
        run(4, &|i| {
            total.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(total.into_inner(), 6);
    }

    #[test]
    fn chunks_are_disjoint_and_cover_the_slice() {
        let _g = super::test_lock();
        for threads in [1, 2, 3] {
            set_num_threads(threads);
            for (len, chunk) in [(0, 3), (1, 1), (7, 3), (64, 1), (65, 8), (10, 20)] {
                let mut v = vec![0usize; len];
                run_chunks_mut(&mut v, chunk, &|i, piece| {
                    assert!(piece.len() <= chunk && !piece.is_empty());
                    for (k, x) in piece.iter_mut().enumerate() {
                        *x += i * chunk + k + 1;
                    }
                });
                let want: Vec<usize> = (1..=len).collect();
                assert_eq!(v, want, "len {len}, chunk {chunk}, {threads} threads");
            }
        }
        set_num_threads(0);
    }

    #[test]
    fn one_thread_runs_on_the_caller() {
        let _g = super::test_lock();
        set_num_threads(1);
        assert_eq!(num_threads(), 1);
        let me = std::thread::current().id();
        let order = Mutex::new(Vec::new());
        run(5, &|i| {
            assert_eq!(std::thread::current().id(), me);
            order.lock().unwrap().push(i);
        });
        assert_eq!(order.into_inner().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}

/// The cost of one fork/join on two threads (`cargo test -p cnn-runtime --features
/// parallel --release forkjoin_speed -- --ignored --nocapture`): the floor under every
/// split kernel call. Trivial parts measure the publish and the caller's check (the
/// caller runs both when the worker is later than its own part); parts of 2 µs each
/// (a spin on the clock) measure the whole fork/join, the time over 2 µs, and how often
/// the worker ran its part.
#[cfg(all(test, feature = "parallel"))]
mod forkjoin_speed {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    #[ignore]
    fn forkjoin_speed() {
        let _g = super::test_lock();
        super::set_num_threads(2);
        let me = std::thread::current().id();
        for part_us in [0u64, 2] {
            for _ in 0..3 {
                let n = 20000;
                let on_worker = AtomicUsize::new(0);
                let t = Instant::now();
                for _ in 0..n {
                    super::run(2, &|_| {
                        let start = Instant::now();
                        while start.elapsed() < Duration::from_micros(part_us) {
                            std::hint::spin_loop();
                        }
                        if std::thread::current().id() != me {
                            on_worker.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                let per_call = t.elapsed().as_secs_f64() * 1e6 / n as f64;
                eprintln!(
                    "parts of {part_us} µs: {per_call:.2} µs a call ({:.2} over one part), \
                     the worker ran {:.0}% of the second parts",
                    per_call - part_us as f64,
                    on_worker.load(Ordering::Relaxed) as f64 * 100.0 / n as f64
                );
            }
        }
        super::set_num_threads(0);
    }
}

/// What moving data between two cores costs on this machine, the other floor under a
/// split kernel call: `cargo test -p cnn-runtime --release --lib cross_core -- --ignored
/// --nocapture`. Two threads take turns on one 64 KiB buffer, each turn starting on
/// lines the other thread just wrote (modified in the other core's cache): reading them,
/// then again (now in its own cache), or overwriting them, then again. Where the first
/// pass costs several times the second, a split kernel whose parts read or write what
/// the other core last wrote (the layer before split another way, or an arena region the
/// other thread wrote last) pays that on top of its work. Intel Xeon VM (family 6 model
/// 167, 2026-12-03, three runs): 64 KiB read in 8.1-10.1 µs against 2.1-2.4 µs from its
/// own cache, overwritten in 8.7-11.6 µs against 2.4-3.0 µs: about 7 GB/s between cores.
#[cfg(test)]
mod cross_core {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    /// Values of the buffer (64 KiB).
    const N: usize = 16 * 1024;

    fn read(buf: &[u32]) -> u32 {
        buf.iter().fold(0u32, |a, &x| a.wrapping_add(x))
    }

    #[test]
    #[ignore]
    fn cross_core() {
        // The lock hands the buffer over; `turn` makes the threads alternate.
        let buf = Mutex::new(vec![0u32; N]);
        let turn = AtomicUsize::new(0);
        let rounds = 2000;
        let times = std::thread::scope(|s| {
            let side = |me: usize| {
                let (buf, turn) = (&buf, &turn);
                move || {
                    // Other's read, own read, write over shared lines, own write (µs).
                    let mut t = [0.0f64; 4];
                    for r in 0..rounds {
                        while turn.load(Ordering::Acquire) != 2 * r + me {
                            std::hint::spin_loop();
                        }
                        let mut b = buf.lock().unwrap();
                        let v = 2 * r as u32 + me as u32;
                        let mut at = Instant::now();
                        let mut lap = |k: usize, t: &mut [f64; 4]| {
                            let now = Instant::now();
                            t[k] += (now - at).as_secs_f64();
                            at = now;
                        };
                        // Every turn starts on lines the other thread just wrote: read
                        // them (even rounds) or overwrite them (odd rounds), then again.
                        if r % 2 == 0 {
                            black_box(read(black_box(&b)));
                            lap(0, &mut t);
                            black_box(read(black_box(&b)));
                            lap(1, &mut t);
                            black_box(&mut *b).fill(v);
                        } else {
                            black_box(&mut *b).fill(v);
                            lap(2, &mut t);
                            black_box(&mut *b).fill(v);
                            lap(3, &mut t);
                        }
                        drop(b);
                        turn.store(2 * r + me + 1, Ordering::Release);
                    }
                    t.map(|x| x / (rounds / 2) as f64 * 1e6)
                }
            };
            let a = s.spawn(side(0));
            let b = s.spawn(side(1));
            [a.join().unwrap(), b.join().unwrap()]
        });
        for (who, t) in times.iter().enumerate() {
            eprintln!(
                "thread {who}, 64 KiB: read what the other core wrote {:.2} µs, again {:.2} µs; \
                 overwrite what it wrote {:.2} µs, again {:.2} µs",
                t[0], t[1], t[2], t[3]
            );
        }
        // The last turn (thread 1's of the last round) left its value.
        let last = 2 * (rounds as u32 - 1) + 1;
        assert_eq!(read(&buf.lock().unwrap()), (N as u32).wrapping_mul(last));
    }
}
