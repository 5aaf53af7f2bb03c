//! The scalar transcendental functions the kernels need, from `libm` on every build, so
//! that `std` and `no_std` builds compute the same bits (std's `f32::exp` calls the
//! platform's C library, which differs between systems).

/// `e^x` (f32).
#[inline]
pub(crate) fn expf(x: f32) -> f32 {
    libm::expf(x)
}

/// `√x` (f64), correctly rounded like `f64::sqrt`.
#[inline]
pub(crate) fn sqrt(x: f64) -> f64 {
    libm::sqrt(x)
}
