//! Per-level tuning: the tile shapes the kernels use on each instruction set.
//!
//! These are measured choices (what ran fastest, within the register budget), not facts
//! of the instruction set, so they live here rather than in [`Simd`](super::Simd): one
//! [`Tuning`] per level, reached from a kernel generic over `S: Simd` as `S::TUNING`
//! ([`Tuned`] is a supertrait of `Simd`).

use super::Portable;
#[cfg(target_arch = "x86_64")]
use super::{Avx2, Avx512};

/// How the kernels block their work on one level.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Most output channels of a pixel-vectorised conv tile (two vectors of pixels each):
    /// the register budget.
    pub(crate) pv_mr: usize,
    /// Pixels of a channel-vectorised conv tile (16 channels each; AVX-512 also has 12).
    pub(crate) cv_np: usize,
    /// Panels of 16 outputs a linear-layer tile covers.
    pub(crate) lin_panels: usize,
}

/// The [`Tuning`] of a level, implemented once per level token.
pub(crate) trait Tuned {
    /// The tile shapes of this level.
    const TUNING: Tuning;
}

impl Tuned for Portable {
    const TUNING: Tuning = Tuning {
        pv_mr: 6,
        cv_np: 2,
        lin_panels: 2,
    };
}

#[cfg(target_arch = "x86_64")]
impl Tuned for Avx2 {
    const TUNING: Tuning = Tuning {
        pv_mr: 6,
        cv_np: 6,
        lin_panels: 4,
    };
}

#[cfg(target_arch = "x86_64")]
impl Tuned for Avx512 {
    const TUNING: Tuning = Tuning {
        pv_mr: 8,
        cv_np: 16,
        lin_panels: 8,
    };
}
