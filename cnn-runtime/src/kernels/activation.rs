//! Element-wise activations: fused into the epilogue of conv/linear/batch-norm kernels, or
//! applied in place by [`activate`] where nothing produces the tensor just before.

/// The kind of an element-wise activation ([`Act::kind`]), without its parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActKind {
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
    /// `x` for `x >= 0`, else `slope * x` ([`Act::slope`]).
    LeakyRelu,
    /// `x * sigmoid(x)` (PyTorch `SiLU`, a.k.a. swish).
    Silu,
    /// `x * relu6(x + 3) / 6` (PyTorch `Hardswish`).
    HardSwish,
    /// `relu6(x + 3) / 6` (PyTorch `Hardsigmoid`).
    HardSigmoid,
    /// `x * (1 + erf(x / sqrt(2))) / 2`, the exact form (PyTorch's default `GELU()`).
    Gelu,
}

/// An element-wise activation, applied in a kernel's epilogue or in place: a kind
/// ([`ActKind`]) and leaky ReLU's slope.
///
/// The slope is a field of every activation, `0.0` for the kinds without one, not an
/// enum variant's payload: the kernels' epilogues are compiled to branch-free selects
/// that compute leaky ReLU's `v * slope` whatever the kind, and a payload that only one
/// variant initialises would be whatever bytes the stack held (a subnormal float, which
/// costs a microcode assist on every multiplication on Intel cores, made MobileNetV2's
/// ReLU6 layers up to 7x slower before the forward pass flushed subnormals).
#[derive(Clone, Copy, PartialEq)]
pub struct Act {
    kind: ActKind,
    slope: f32,
}

impl Act {
    /// No activation.
    pub const IDENTITY: Act = Act::of(ActKind::Identity);
    /// `max(x, 0)`.
    pub const RELU: Act = Act::of(ActKind::Relu);
    /// `min(max(x, 0), 6)`.
    pub const RELU6: Act = Act::of(ActKind::Relu6);
    /// `tanh(x)`.
    pub const TANH: Act = Act::of(ActKind::Tanh);
    /// `1 / (1 + exp(-x))`.
    pub const SIGMOID: Act = Act::of(ActKind::Sigmoid);
    /// `x * sigmoid(x)` (PyTorch `SiLU`, a.k.a. swish).
    pub const SILU: Act = Act::of(ActKind::Silu);
    /// `x * relu6(x + 3) / 6` (PyTorch `Hardswish`).
    pub const HARD_SWISH: Act = Act::of(ActKind::HardSwish);
    /// `relu6(x + 3) / 6` (PyTorch `Hardsigmoid`).
    pub const HARD_SIGMOID: Act = Act::of(ActKind::HardSigmoid);
    /// `x * (1 + erf(x / sqrt(2))) / 2`, the exact form (PyTorch's default `GELU()`).
    pub const GELU: Act = Act::of(ActKind::Gelu);

    /// `x` for `x >= 0`, else `slope * x` (PyTorch `LeakyReLU(negative_slope)`).
    #[inline(always)]
    pub const fn leaky_relu(slope: f32) -> Act {
        Act {
            kind: ActKind::LeakyRelu,
            slope,
        }
    }

    /// The activation of `kind`; leaky ReLU with slope 0 (a ReLU) for `LeakyRelu`.
    #[inline(always)]
    pub const fn of(kind: ActKind) -> Act {
        Act { kind, slope: 0.0 }
    }

    /// Its kind.
    #[inline(always)]
    pub const fn kind(self) -> ActKind {
        self.kind
    }

    /// Leaky ReLU's slope; `0.0` for the other kinds.
    #[inline(always)]
    pub const fn slope(self) -> f32 {
        self.slope
    }

    /// Identity, ReLU, ReLU6 and leaky ReLU: a compare or two per value, applied in
    /// registers by every kernel; the others run out of line on the x86 levels.
    #[inline(always)]
    pub fn is_piecewise_linear(self) -> bool {
        matches!(
            self.kind,
            ActKind::Identity | ActKind::Relu | ActKind::Relu6 | ActKind::LeakyRelu
        )
    }

    /// `(piecewise, curved)`: this activation split by where the kernels apply it, in
    /// registers in a micro-kernel's epilogue if piecewise linear, else by a post-pass
    /// over the stored output; the other part is `Identity`.
    pub(crate) fn split_curved(self) -> (Act, Act) {
        if self.is_piecewise_linear() {
            (self, Act::IDENTITY)
        } else {
            (Act::IDENTITY, self)
        }
    }
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self.kind {
            ActKind::Identity => x,
            ActKind::Relu => x.max(0.0),
            ActKind::Relu6 => x.clamp(0.0, 6.0),
            ActKind::Tanh => tanh(x),
            ActKind::Sigmoid => sigmoid(x),
            ActKind::LeakyRelu => {
                if x >= 0.0 {
                    x
                } else {
                    self.slope * x
                }
            }
            ActKind::Silu => silu(x),
            ActKind::HardSwish => hardswish(x),
            ActKind::HardSigmoid => hardsigmoid(x),
            ActKind::Gelu => gelu(x),
        }
    }
}

impl core::fmt::Debug for Act {
    /// `Relu6`, `LeakyRelu(0.1)`: the kind, and the slope where it has one.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind {
            ActKind::LeakyRelu => write!(f, "LeakyRelu({:?})", self.slope),
            kind => write!(f, "{kind:?}"),
        }
    }
}

/// `e^x` for f32, branch-free so loops over it vectorise (Cephes' `expf` polynomial,
/// about 1 ulp on [-87, 88]; inputs are clamped to that range).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
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

/// `tanh`'s argument clamp: f32 `tanh` is +-1 from about 9.01, and the rational form
/// at 9 is 1 (rounded, with or without fused multiply-adds).
pub(crate) const TANH_CLAMP: f32 = 9.0;
/// Numerator of [`tanh`]'s rational form, in `x^2`, highest power first (times `x`).
#[allow(clippy::excessive_precision)]
pub(crate) const TANH_P: [f32; 7] = [
    -2.760_768_477_423_55e-16,
    2.000_187_904_824_77e-13,
    -8.604_671_522_137_35e-11,
    5.122_297_090_371_14e-8,
    1.485_722_357_179_79e-5,
    6.372_619_288_754_36e-4,
    4.893_524_558_917_86e-3,
];
/// Denominator of [`tanh`]'s rational form, in `x^2`, highest power first.
#[allow(clippy::excessive_precision)]
pub(crate) const TANH_Q: [f32; 4] = [
    1.198_258_394_667_02e-6,
    1.185_347_056_866_54e-4,
    2.268_434_632_439_00e-3,
    4.893_525_185_543_85e-3,
];

/// `c[0] * x^(n-1) + ... + c[n-1]` by Horner's rule, unfused (each step rounds the
/// product, then the sum: the portable vector level's exact operations).
#[inline(always)]
fn horner(x: f32, c: &[f32]) -> f32 {
    c[1..].iter().fold(c[0], |p, k| p * x + k)
}

/// `tanh` for f32, branch-free: `x P(x^2) / Q(x^2)` on `x` clamped to
/// +-9, the result clamped to [-1, 1] (the rational approximation of
/// Eigen's and tract's fast tanh: one division, no exponential); within 4e-7 of the
/// exact value everywhere, relative error under 3e-7 near zero; NaN stays NaN.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let c = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let z = c * c;
    (c * horner(z, &TANH_P) / horner(z, &TANH_Q)).clamp(-1.0, 1.0)
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

/// `x * sigmoid(x)` for f32 (SiLU / swish), with [`sigmoid`]'s accuracy.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// `relu6(x + 3) / 6` for f32, as PyTorch computes it (NaN propagates).
#[inline(always)]
pub fn hardsigmoid(x: f32) -> f32 {
    (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// `x * relu6(x + 3) / 6` for f32, as PyTorch computes it (NaN propagates).
#[inline(always)]
pub fn hardswish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// Cephes' `erff` polynomial: `erf(a) = a * T(a^2)` for `|a| < 1`, highest power first.
/// (Its constant term is Cephes' fit, one ulp off `2/sqrt(pi)` in f32.)
#[allow(clippy::approx_constant)]
pub(crate) const ERF_T: [f32; 7] = [
    7.853_861_5e-5,
    -8.010_193_7e-4,
    5.188_327_7e-3,
    -2.685_381_3e-2,
    1.128_358_54e-1,
    -3.761_262_6e-1,
    1.128_379_1,
];
/// Cephes' `erfcf` polynomial: `erfc(a) = e^{-a^2} / a * P(1/a^2)` for `1 <= a < 2`.
pub(crate) const ERFC_P: [f32; 9] = [
    2.326_82e-2,
    -1.387_039_4e-1,
    3.687_424_7e-1,
    -5.824_733e-1,
    6.210_004_7e-1,
    -4.944_515_2e-1,
    3.404_88e-1,
    -2.741_127e-1,
    5.638_259_6e-1,
];
/// Cephes' `erfcf` polynomial: `erfc(a) = e^{-a^2} / a * R(1/a^2)` for `a >= 2`.
pub(crate) const ERFC_R: [f32; 8] = [
    -1.047_766_4e1,
    1.297_72e1,
    -7.495_518_7,
    2.921_019,
    -1.015_265_2,
    4.218_463_3e-1,
    -2.820_767_5e-1,
    5.641_895e-1,
];

/// `x * (1 + erf(x / sqrt 2)) / 2` for f32 (the exact GELU), branch-free.
///
/// The normal CDF `(1 + erf(u)) / 2`, `u = x / sqrt 2`, comes from Cephes' `erff`
/// polynomial below `|u| = 1` and from `erfc(|u|) = e^{-u^2} / |u| * P(1/u^2)` (two
/// polynomials, split at 2) above, so that the lower tail keeps its relative accuracy:
/// within a few 1e-7 of the exact value (absolute below 1, relative above). NaN
/// propagates; `gelu(-inf)` is NaN as in PyTorch.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let u = x * core::f32::consts::FRAC_1_SQRT_2;
    let a = u.abs();
    let z = a * a;
    let erf = horner(z, &ERF_T) * a;
    let small = 0.5 + 0.5 * erf.copysign(u);
    // `max` ignores NaN here; the final product brings it back.
    let b = a.max(1.0);
    let q = 1.0 / b;
    let y = q * q;
    let e = exp(-(b * b));
    let (p, r) = (horner(y, &ERFC_P), horner(y, &ERFC_R));
    let half_erfc = 0.5 * (e * q * if b < 2.0 { p } else { r });
    let big = if u >= 0.0 { 1.0 - half_erfc } else { half_erfc };
    x * if a < 1.0 { small } else { big }
}

/// Applies `act` in place to every value of `buf`, on the instruction set
/// [`cpu::level`](crate::cpu::level) selects: the vector activations of the fused
/// epilogues (`Simd::curved_slice`), so a standalone activation gives the bits a fused
/// one gives at that level (the portable level: [`Act::apply`]'s).
#[inline]
pub fn activate(buf: &mut [f32], act: Act) {
    activate_dyn(crate::cpu::level(), buf, act);
}

/// Floats [`activate_into`] copies and activates at a time: a run that stays in L1
/// between its copy and its activation.
const INTO_CHUNK: usize = 2048;

/// [`activate`] from `src` into `dst` (an activation whose input is still needed
/// afterwards), `min(src.len(), dst.len())` values: the bits of copying `src` into
/// `dst` and activating there, in one pass over memory (a chunk is copied and activated
/// while it is in L1).
#[inline]
pub fn activate_into(src: &[f32], dst: &mut [f32], act: Act) {
    let level = crate::cpu::level();
    for (d, s) in dst.chunks_mut(INTO_CHUNK).zip(src.chunks(INTO_CHUNK)) {
        let n = d.len().min(s.len());
        d[..n].copy_from_slice(&s[..n]);
        activate_dyn(level, &mut d[..n], act);
    }
}

/// [`activate`] at `level`.
pub(crate) fn activate_dyn(level: crate::cpu::Level, buf: &mut [f32], act: Act) {
    if act != Act::IDENTITY && !buf.is_empty() {
        crate::kernels::simd::run(level, crate::kernels::simd::CurvedSlice { x: buf, act });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The out-of-place activation gives the in-place one's bits, on lengths around its
    /// chunk, and writes nothing past the input's length.
    #[test]
    fn activate_into_matches_in_place() {
        let mut rng = crate::kernels::reference::Rng::new(5);
        for n in [0, 1, 17, INTO_CHUNK - 1, INTO_CHUNK, 3 * INTO_CHUNK + 5] {
            for act in [
                Act::RELU,
                Act::SILU,
                Act::GELU,
                Act::TANH,
                Act::leaky_relu(0.1),
            ] {
                let x = rng.vec(n, -4.0, 4.0);
                let mut want = x.clone();
                activate(&mut want, act);
                let mut got = vec![9.0; n + 3];
                activate_into(&x, &mut got, act);
                assert!(got[n..].iter().all(|&v| v == 9.0), "wrote past {n}");
                let same = got[..n]
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(same, "{n} {act:?}");
            }
        }
    }

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
        sweep(tanh, f64::tanh, -12.0, 12.0, 4e-7, 2e-7);
        sweep(tanh, f64::tanh, -1e-3, 1e-3, 0.0, 3e-7);
        assert_eq!(tanh(0.0), 0.0);
        assert!(tanh(-0.0) == 0.0 && tanh(-0.0).is_sign_negative());
        // Odd, and never beyond +-1.
        for i in 0..=100_000 {
            let x = i as f32 * 1e-4;
            assert_eq!(tanh(-x), -tanh(x), "{x}");
            assert!(tanh(x) <= 1.0, "{x}");
        }
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
    fn silu_is_accurate() {
        let exact = |x: f64| x / (1.0 + (-x).exp());
        sweep(silu, exact, -30.0, 30.0, 1e-7, 4e-7);
        assert_eq!(silu(0.0), 0.0);
        assert_eq!(silu(1000.0), 1000.0);
        assert!(silu(-1000.0) <= 0.0 && silu(-1000.0) > -1e-30);
        assert!(silu(f32::NAN).is_nan());
    }

    #[test]
    fn hard_activations_are_exact() {
        let hs = |x: f64| (x + 3.0).clamp(0.0, 6.0) / 6.0;
        sweep(hardsigmoid, hs, -8.0, 8.0, 0.0, 1.2e-7);
        let hswish = |x: f64| x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
        sweep(hardswish, hswish, -8.0, 8.0, 0.0, 2.4e-7);
        assert_eq!(hardsigmoid(-3.0), 0.0);
        assert_eq!(hardsigmoid(3.0), 1.0);
        assert_eq!(hardsigmoid(0.0), 0.5);
        assert_eq!(hardswish(-3.0), 0.0);
        assert_eq!(hardswish(3.0), 3.0);
        assert_eq!(hardswish(100.0), 100.0);
        assert_eq!(hardswish(-100.0), 0.0);
        assert!(hardsigmoid(f32::NAN).is_nan() && hardswish(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_is_accurate() {
        use crate::kernels::reference::gelu as exact;
        sweep(gelu, exact, -12.0, 12.0, 1e-7, 3e-7);
        // Around the polynomial switches |x / sqrt 2| = 1 and 2, densely.
        for c in [-2.0 * SQRT_2, -SQRT_2, SQRT_2, 2.0 * SQRT_2] {
            sweep(gelu, exact, c - 1e-3, c + 1e-3, 1e-7, 3e-7);
        }
        sweep(gelu, exact, -1e-3, 1e-3, 0.0, 3e-7);
        assert_eq!(gelu(0.0), 0.0);
        assert_eq!(gelu(1000.0), 1000.0);
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
        assert!(gelu(-1000.0) <= 0.0 && gelu(-1000.0) > -1e-30);
        assert!(gelu(f32::NAN).is_nan());
    }

    const SQRT_2: f32 = core::f32::consts::SQRT_2;

    /// The standalone activation gives the fused epilogues' bits at every level (the
    /// vector path, every length: whole vectors and a short rest), and at the portable
    /// level exactly `Act::apply`.
    /// Every activation carries a defined slope: zero but for leaky ReLU's (the
    /// epilogues multiply by it whatever the kind), and prints as its kind.
    #[test]
    fn every_activation_has_a_defined_slope() {
        let all = [
            (Act::IDENTITY, ActKind::Identity),
            (Act::RELU, ActKind::Relu),
            (Act::RELU6, ActKind::Relu6),
            (Act::TANH, ActKind::Tanh),
            (Act::SIGMOID, ActKind::Sigmoid),
            (Act::SILU, ActKind::Silu),
            (Act::HARD_SWISH, ActKind::HardSwish),
            (Act::HARD_SIGMOID, ActKind::HardSigmoid),
            (Act::GELU, ActKind::Gelu),
        ];
        for (act, kind) in all {
            assert_eq!(act.kind(), kind);
            assert_eq!(act.slope().to_bits(), 0, "{act:?}");
            assert_eq!(act, Act::of(kind));
            assert_eq!(format!("{act:?}"), format!("{kind:?}"));
        }
        let leaky = Act::leaky_relu(0.25);
        assert_eq!((leaky.kind(), leaky.slope()), (ActKind::LeakyRelu, 0.25));
        assert_eq!(format!("{leaky:?}"), "LeakyRelu(0.25)");
        assert_ne!(leaky, Act::leaky_relu(0.5));
        assert_eq!(leaky.apply(-2.0), -0.5);
        assert_eq!(Act::RELU6.apply(-2.0), 0.0);
    }

    #[test]
    fn activate_matches_apply() {
        use crate::cpu::Level;
        use crate::kernels::simd::{self, tests::apply};
        let xs: Vec<f32> = (-100..101).map(|i| i as f32 * 0.37).collect();
        for level in simd::test_levels() {
            for act in crate::kernels::reference::ACTS {
                for n in [0, 1, 7, 8, 17, xs.len()] {
                    let mut buf = xs[..n].to_vec();
                    activate_dyn(level, &mut buf, act);
                    let want = apply(level, act, &xs[..n]);
                    for ((x, y), w) in xs.iter().zip(&buf).zip(&want) {
                        assert_eq!(y.to_bits(), w.to_bits(), "{level:?} {act:?} at {x}");
                        if level == Level::Portable {
                            assert_eq!(*y, act.apply(*x), "{act:?} at {x}");
                        }
                    }
                }
            }
        }
    }
}

/// Timing of the standalone (post-pass) activations on LeNet-5's conv1 output, 6x28x28
/// floats, at the selected level (`cargo test -p cnn-runtime --release
/// activation::speed -- --ignored --nocapture`).
#[cfg(test)]
mod speed {
    use super::*;
    use crate::kernels::reference::{best_time_us as time, Rng};
    use std::hint::black_box;

    #[test]
    #[ignore]
    fn speed() {
        let level = crate::cpu::level();
        let x = Rng::new(3).vec(6 * 28 * 28, -4.0, 4.0);
        let mut buf = x.clone();
        for act in [
            Act::TANH,
            Act::SIGMOID,
            Act::SILU,
            Act::HARD_SWISH,
            Act::GELU,
        ] {
            let t = time(|| {
                buf.copy_from_slice(&x);
                activate_dyn(level, black_box(&mut buf), act);
            });
            eprintln!("{level:?} {act:?} on {} floats: {t:.2} µs", x.len());
        }
    }
}
