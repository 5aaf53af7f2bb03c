//! Per-step timing of a forward pass: where a compiled model spends its time.
//!
//! The generated `forward_body` calls [`begin`] before its first kernel call and [`step`]
//! after each one (each planned step of the model: a layer, or layers fused into one
//! call, as [`Model::STEPS`](crate::Model::STEPS) lists them). Without the `profile`
//! feature both are empty `#[inline(always)]` functions: the compiled forward pass is
//! the same machine code as without them. With it (it implies `std`), each records the
//! time in a per-thread buffer, about 20-30 ns a step, no allocation after a thread's
//! first forward pass; `last_steps` then returns the durations of the steps of the
//! last forward pass that ran on the calling thread.
//!
//! ```ignore
//! // Cargo.toml: cnn = { version = "0.1", features = ["profile"] }
//! let y = net.forward(&x);
//! for (info, t) in Net::STEPS.iter().zip(cnn::profile::last_steps()) {
//!     println!("{:<24} {:<32} {:>8.1} µs", info.layer, info.kernel, t.as_secs_f64() * 1e6);
//! }
//! ```
//!
//! With `parallel`, a step's time is the wall time of the whole step (its kernel forks
//! and joins inside it); `forward_batch_into` runs each image's steps on one thread, so
//! each thread holds the times of the last image it ran. `last_step_work` tells, per
//! step, how its split kernel calls kept the threads busy: the time the calling thread
//! and the pool's workers spent running parts, and the number of calls split. A step
//! whose wall time is well above its calling thread's part time waited for a worker
//! (an uneven split, or a worker slowed by reading what the other core wrote).

/// One planned step of a compiled model ([`Model::STEPS`](crate::Model::STEPS)): the
/// layer it starts at, the kernel that runs it (as in `summary()`) and its
/// multiply-accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepInfo {
    /// Name of the step's first layer (its other layers are fused into it); empty for
    /// the copy of a result into the output.
    pub layer: &'static str,
    /// The kernel, as `summary()` shows it: `conv2d+bn+relu`, `add (in place)`, ...
    pub kernel: &'static str,
    /// Multiply-accumulates of the step's layers.
    pub macs: usize,
}

/// How one step's kernel calls split over the pool's threads kept them busy (feature
/// `profile`; all zero without `parallel`, or when the step's calls ran on one thread,
/// and for the steps a [`team`](crate::team) ran: each member computes its own rows of
/// them, and the step's time is the calling thread's, exchanges included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepWork {
    /// Time the calling thread spent running parts of the step's split calls.
    pub caller: core::time::Duration,
    /// Time the pool's workers spent running parts of them (summed over the workers).
    pub workers: core::time::Duration,
    /// Kernel calls of the step that were split over the pool (fork/joins).
    pub jobs: u32,
}

#[cfg(feature = "profile")]
mod imp {
    use super::StepWork;
    use std::cell::{Cell, RefCell};
    use std::time::{Duration, Instant};
    use std::vec::Vec;

    std::thread_local! {
        /// The times of the last forward pass's marks: its start, then each step's end.
        static MARKS: RefCell<Vec<Instant>> = const { RefCell::new(Vec::new()) };
        /// The split calls' work of each step of the last forward pass.
        static WORK: RefCell<Vec<StepWork>> = const { RefCell::new(Vec::new()) };
        /// The split calls' work since the last mark: caller ns, workers ns, jobs.
        static OPEN: Cell<(u64, u64, u32)> = const { Cell::new((0, 0, 0)) };
    }

    #[inline(never)]
    pub(super) fn begin() {
        let now = Instant::now();
        MARKS.with(|m| {
            let mut m = m.borrow_mut();
            m.clear();
            m.push(now);
        });
        WORK.with(|w| w.borrow_mut().clear());
        OPEN.set((0, 0, 0));
    }

    #[inline(never)]
    pub(super) fn step() {
        let now = Instant::now();
        MARKS.with(|m| m.borrow_mut().push(now));
        let (caller, workers, jobs) = OPEN.replace((0, 0, 0));
        WORK.with(|w| {
            w.borrow_mut().push(StepWork {
                caller: Duration::from_nanos(caller),
                workers: Duration::from_nanos(workers),
                jobs,
            })
        });
    }

    pub(super) fn last_steps() -> Vec<Duration> {
        MARKS.with(|m| m.borrow().windows(2).map(|w| w[1] - w[0]).collect())
    }

    pub(super) fn last_step_work() -> Vec<StepWork> {
        WORK.with(|w| w.borrow().clone())
    }

    #[cfg(feature = "parallel")]
    pub(crate) fn record_job(caller: Duration, workers_ns: u64) {
        let (c, w, j) = OPEN.get();
        let caller = u64::try_from(caller.as_nanos()).unwrap_or(u64::MAX);
        OPEN.set((
            c.saturating_add(caller),
            w.saturating_add(workers_ns),
            j.saturating_add(1),
        ));
    }
}

/// Adds one split kernel call to the calling thread's current step (the pool calls it
/// after the join): the caller's and the workers' time in its parts (`profile` only).
#[cfg(all(feature = "profile", feature = "parallel"))]
pub(crate) use imp::record_job;

/// Marks the start of a forward pass (called by the generated code): with the `profile`
/// feature, forgets the calling thread's previous pass and records the time; without
/// it, nothing.
#[inline(always)]
pub fn begin() {
    #[cfg(feature = "profile")]
    imp::begin();
}

/// Marks the end of a step of a forward pass (called by the generated code after each
/// kernel call): with the `profile` feature, records the time; without it, nothing.
#[inline(always)]
pub fn step() {
    #[cfg(feature = "profile")]
    imp::step();
}

/// The duration of each step of the last forward pass that ran on the calling thread,
/// in the order of [`Model::STEPS`](crate::Model::STEPS) (empty before the first one).
#[cfg(feature = "profile")]
pub fn last_steps() -> std::vec::Vec<std::time::Duration> {
    imp::last_steps()
}

/// The work of each step's split kernel calls in the last forward pass that ran on the
/// calling thread, in the order of [`Model::STEPS`](crate::Model::STEPS) (empty before
/// the first one); see [`StepWork`].
#[cfg(feature = "profile")]
pub fn last_step_work() -> std::vec::Vec<StepWork> {
    imp::last_step_work()
}

#[cfg(all(test, feature = "profile"))]
mod tests {
    use super::*;

    #[test]
    fn steps_are_the_gaps_between_marks_of_the_last_pass() {
        begin();
        step();
        step();
        assert_eq!(last_steps().len(), 2);
        begin();
        std::thread::sleep(std::time::Duration::from_millis(2));
        step();
        let t = last_steps();
        assert_eq!(t.len(), 1, "a new pass forgets the old one's steps");
        assert!(t[0] >= std::time::Duration::from_millis(2), "{t:?}");
        // Per thread: another thread's passes are its own.
        std::thread::spawn(|| {
            assert!(last_steps().is_empty());
            begin();
            step();
            step();
            step();
        })
        .join()
        .unwrap();
        assert_eq!(last_steps().len(), 1);
        assert_eq!(last_step_work(), [StepWork::default()], "no split call");
    }

    /// With `parallel` and two threads, a step's split call records the time of its
    /// parts on the caller and on the worker, and one job.
    #[cfg(feature = "parallel")]
    #[test]
    fn a_split_call_records_the_parts_work() {
        use std::time::Duration;
        let _g = crate::pool::test_lock();
        crate::pool::set_num_threads(2);
        begin();
        crate::pool::run(2, &|_| std::thread::sleep(Duration::from_millis(3)));
        step();
        step();
        let w = last_step_work();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].jobs, 1, "{w:?}");
        // Both parts ran (on whichever threads): 6 ms of part time in all.
        assert!(
            w[0].caller + w[0].workers >= Duration::from_millis(6),
            "{w:?}"
        );
        assert!(w[0].caller >= Duration::from_millis(3), "{w:?}");
        assert_eq!(w[1], StepWork::default(), "the next step starts from zero");
        crate::pool::set_num_threads(1);
    }
}
