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
//! each thread holds the times of the last image it ran.

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

#[cfg(feature = "profile")]
mod imp {
    use std::cell::RefCell;
    use std::time::{Duration, Instant};
    use std::vec::Vec;

    std::thread_local! {
        /// The times of the last forward pass's marks: its start, then each step's end.
        static MARKS: RefCell<Vec<Instant>> = const { RefCell::new(Vec::new()) };
    }

    #[inline(never)]
    pub(super) fn begin() {
        let now = Instant::now();
        MARKS.with(|m| {
            let mut m = m.borrow_mut();
            m.clear();
            m.push(now);
        });
    }

    #[inline(never)]
    pub(super) fn step() {
        let now = Instant::now();
        MARKS.with(|m| m.borrow_mut().push(now));
    }

    pub(super) fn last_steps() -> Vec<Duration> {
        MARKS.with(|m| m.borrow().windows(2).map(|w| w[1] - w[0]).collect())
    }
}

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
    }
}
