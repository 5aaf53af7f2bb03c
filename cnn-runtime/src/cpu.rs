//! Run-time CPU feature detection and the dispatch of a compiled network to the best
//! instruction set the machine has.
//!
//! A generated model implements [`Model::forward_body`](crate::Model::forward_body) as
//! an `#[inline(always)]` straight line of kernel calls, and the kernels are
//! `#[inline(always)]` too. [`dispatch`] calls it either directly (the portable build,
//! SSE2 on x86-64) or from inside a function compiled with `#[target_feature(enable =
//! "avx2,fma")]`, so the same code is compiled twice and LLVM vectorises the second copy
//! with 256-bit registers. Detection runs once and is cached; the environment variable
//! `CNN_SIMD=portable` (read at first use) or [`set_level`] forces the portable path,
//! which gives the same results within the conformance tolerance.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::Model;

/// The instruction sets `forward` can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The target's baseline (SSE2 on x86-64): always available.
    Portable,
    /// x86-64 with AVX2 and FMA.
    Avx2Fma,
}

const UNKNOWN: u8 = 0;
const PORTABLE: u8 = 1;
const AVX2_FMA: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// What the CPU supports, ignoring overrides.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2Fma;
        }
    }
    Level::Portable
}

/// The level `forward` uses: detected once (honouring `CNN_SIMD=portable`), then cached.
#[inline]
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        PORTABLE => Level::Portable,
        AVX2_FMA => Level::Avx2Fma,
        _ => {
            let forced =
                std::env::var("CNN_SIMD").is_ok_and(|v| v.eq_ignore_ascii_case("portable"));
            let level = if forced { Level::Portable } else { detected() };
            set_level(level)
        }
    }
}

/// Sets the level used from now on, for every model and thread (for tests and
/// benchmarks). A level the CPU lacks falls back to [`Level::Portable`]; returns the
/// level actually set.
pub fn set_level(level: Level) -> Level {
    let level = if level == Level::Avx2Fma && detected() != Level::Avx2Fma {
        Level::Portable
    } else {
        level
    };
    let code = match level {
        Level::Portable => PORTABLE,
        Level::Avx2Fma => AVX2_FMA,
    };
    LEVEL.store(code, Ordering::Relaxed);
    level
}

/// Runs `model.forward_body(input, output)` compiled for the best available level.
#[inline]
pub fn dispatch<M: Model>(model: &M, input: &[f32], output: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if level() == Level::Avx2Fma {
            // SAFETY: `level()` is `Avx2Fma` only when `detected()` found both AVX2 and
            // FMA on this CPU (`set_level` refuses it otherwise), which is the one
            // requirement of calling a `#[target_feature(enable = "avx2,fma")]` function.
            unsafe { forward_avx2_fma(model, input, output) };
            return;
        }
    }
    forward_portable(model, input, output);
}

/// `forward_body` compiled for the target's baseline. Never inlined, so that `dispatch`'s
/// own frame stays small: each path's activation arenas live only in its own frame.
#[inline(never)]
fn forward_portable<M: Model>(model: &M, input: &[f32], output: &mut [f32]) {
    model.forward_body(input, output);
}

/// `forward_body` inlined into a function compiled for AVX2 and FMA.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn forward_avx2_fma<M: Model>(model: &M, input: &[f32], output: &mut [f32]) {
    model.forward_body(input, output);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_consistent() {
        let d = detected();
        assert_eq!(set_level(Level::Portable), Level::Portable);
        assert_eq!(level(), Level::Portable);
        assert_eq!(set_level(Level::Avx2Fma), d);
        assert_eq!(level(), d);
    }
}
