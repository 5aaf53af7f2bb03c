//! Element-wise activations: fused into the epilogue of conv/linear/batch-norm kernels, or
//! applied in place by [`activate`] where nothing produces the tensor just before.

/// An element-wise activation, applied in a kernel's epilogue or in place.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `x` for `x >= 0`, else `slope * x`.
    LeakyRelu(f32),
}

impl Act {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::Relu => x.max(0.0),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Tanh => tanh(x),
            Act::Sigmoid => sigmoid(x),
            Act::LeakyRelu(slope) => {
                if x >= 0.0 {
                    x
                } else {
                    slope * x
                }
            }
        }
    }
}

/// `e^x` for f32, branch-free so loops over it vectorise (Cephes' `expf` polynomial,
/// about 1 ulp on [-87, 88]; inputs are clamped to that range).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer, held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5e-1)
        * r
        * r
        + r
        + 1.0;
    // 2^n from the exponent field: n is in [-126, 127] after the clamp.
    let n_int = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// `tanh` for f32, branch-free (Cephes' `tanhf`: a polynomial below 0.625, else
/// `1 - 2 / (e^{2|x|} + 1)`); within 2e-7 of the exact value everywhere.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * a
            + a;
    let big = 1.0 - 2.0 / (exp(2.0 * a.min(10.0)) + 1.0);
    let r = if a < 0.625 { small } else { big };
    let r = r.copysign(x);
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// `1 / (1 + e^-x)` for f32, branch-free and stable for large |x|.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let pos = 1.0 / (1.0 + e);
    let r = if x >= 0.0 { pos } else { e * pos };
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// Applies `act` in place to every value of `buf`.
#[inline(always)]
pub fn activate(buf: &mut [f32], act: Act) {
    match act {
        Act::Identity => {}
        // One loop per variant so each is a tight, vectorisable loop.
        Act::Relu => buf.iter_mut().for_each(|x| *x = x.max(0.0)),
        Act::Relu6 => buf.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        Act::Tanh => buf.iter_mut().for_each(|x| *x = tanh(*x)),
        Act::Sigmoid => buf.iter_mut().for_each(|x| *x = sigmoid(*x)),
        _ => buf.iter_mut().for_each(|x| *x = act.apply(*x)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sweeps [-lo, hi] densely (and the special values) against f64.
    fn sweep(f: fn(f32) -> f32, exact: fn(f64) -> f64, lo: f32, hi: f32, abs: f64, rel: f64) {
        let n = 2_000_000;
        for i in 0..=n {
            let x = lo + (hi - lo) * i as f32 / n as f32;
            let want = exact(x as f64);
            let got = f(x) as f64;
            let err = (got - want).abs();
            assert!(
                err <= abs + rel * want.abs(),
                "x = {x}: got {got}, want {want} (err {err:e})"
            );
        }
    }

    #[test]
    fn exp_is_accurate() {
        sweep(exp, f64::exp, -87.0, 88.0, 0.0, 3e-7);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
    }

    #[test]
    fn tanh_is_accurate() {
        sweep(tanh, f64::tanh, -12.0, 12.0, 2e-7, 2e-7);
        sweep(tanh, f64::tanh, -1e-3, 1e-3, 0.0, 1e-6);
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(1000.0), 1.0);
        assert_eq!(tanh(-1000.0), -1.0);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_is_accurate() {
        let exact = |x: f64| 1.0 / (1.0 + (-x).exp());
        sweep(sigmoid, exact, -30.0, 30.0, 1e-7, 3e-7);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(sigmoid(-1000.0) >= 0.0 && sigmoid(-1000.0) < 1e-37);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn activate_matches_apply() {
        let xs: Vec<f32> = (-100..100).map(|i| i as f32 * 0.37).collect();
        for act in [
            Act::Identity,
            Act::Relu,
            Act::Relu6,
            Act::Tanh,
            Act::Sigmoid,
            Act::LeakyRelu(0.1),
        ] {
            let mut buf = xs.clone();
            activate(&mut buf, act);
            for (x, y) in xs.iter().zip(&buf) {
                assert_eq!(*y, act.apply(*x), "{act:?} at {x}");
            }
        }
    }
}
