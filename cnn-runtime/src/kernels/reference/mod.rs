//! Test-only reference implementations of the kernels: direct loops in f64, written from
//! PyTorch's definitions with no attempt at speed, plus the test utilities (a seeded
//! PRNG, PyTorch's output-size rules, the geometries the sweeps run over, and the
//! tolerance check).
//!
//! The references take weights in PyTorch's layout and never share code with the fast
//! kernels: windows are enumerated cell by cell, padding recognised by coordinates.

use super::activation::{Act, ActKind};
use std::fmt::Debug;

/// Floats on a 64-byte boundary, as a model's arena places every tensor: a large
/// `Vec<f32>` starts 16 bytes into its pages, so a kernel reading it directly straddles
/// two cache lines with every vector load (MobileNet-96's 32x48x48 -> 64 1x1 layer timed
/// 16% slower that way in `conv::speed`, Intel Xeon). For the timing tests' inputs.
pub struct Lined {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl Lined {
    /// `n` zeros starting on a line (an output or working buffer).
    pub fn zeros(n: usize) -> Lined {
        let buf = vec![0.0f32; n + 16];
        let off = buf.as_ptr().align_offset(64);
        assert!(off < 16, "no 64-byte boundary among the first 16 floats");
        Lined { buf, off, len: n }
    }

    /// A copy of `v` starting on a line.
    pub fn new(v: &[f32]) -> Lined {
        let mut x = Lined::zeros(v.len());
        x.copy_from_slice(v);
        x
    }
}

impl core::ops::Deref for Lined {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl core::ops::DerefMut for Lined {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// A deterministic PRNG (SplitMix64), enough for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[lo, hi)`.
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32_in(lo, hi)).collect()
    }
}

/// Shortest time in microseconds of `f`, over 11 samples of enough calls for ~3 ms
/// (for the ignored `speed` tests that compare kernel alternatives).
pub fn best_time_us(mut f: impl FnMut()) -> f64 {
    use std::time::Instant;
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64();
    let reps = ((3e-3 / once) as usize).clamp(1, 1000);
    let mut v: Vec<f64> = (0..11)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64 * 1e6
        })
        .collect();
    // The fastest sample: the machine is shared, slower ones saw other work.
    v.sort_by(f64::total_cmp);
    v[0]
}

/// Variants of one computation timed side by side: `rounds` rounds, each timing every
/// variant in turn for about a millisecond. Returns each variant's fastest time in
/// microseconds and the median over the rounds of its time relative to the first
/// variant's in the same round: on a VM whose speed swings by 1.5-2x from one fraction
/// of a second to the next, the paired ratio is what stays put (for the ignored `speed`
/// tests).
pub fn paired_times(rounds: usize, fs: &mut [&mut dyn FnMut()]) -> (Vec<f64>, Vec<f64>) {
    use std::time::Instant;
    let reps: Vec<usize> = fs
        .iter_mut()
        .map(|f| {
            f();
            let t = Instant::now();
            f();
            ((1e-3 / t.elapsed().as_secs_f64()) as usize).clamp(1, 1000)
        })
        .collect();
    let mut best = vec![f64::INFINITY; fs.len()];
    let mut ratios = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        let times: Vec<f64> = fs
            .iter_mut()
            .zip(&reps)
            .map(|(f, &n)| {
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                t.elapsed().as_secs_f64() / n as f64 * 1e6
            })
            .collect();
        for (i, &t) in times.iter().enumerate() {
            best[i] = best[i].min(t);
            ratios[i].push(t / times[0]);
        }
    }
    let medians = ratios
        .iter_mut()
        .map(|r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
        .collect();
    (best, medians)
}

/// The activation in f64.
pub fn act(act: Act, x: f64) -> f64 {
    match act.kind() {
        ActKind::Identity => x,
        ActKind::Relu => x.max(0.0),
        ActKind::Relu6 => x.clamp(0.0, 6.0),
        ActKind::Tanh => x.tanh(),
        ActKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        ActKind::LeakyRelu => {
            if x >= 0.0 {
                x
            } else {
                f64::from(act.slope()) * x
            }
        }
        ActKind::Silu => x / (1.0 + (-x).exp()),
        ActKind::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        ActKind::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        ActKind::Gelu => gelu(x),
    }
}

/// `erf` in f64 (std has none): `2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (2n+1)!!`, a
/// series of positive terms (no cancellation), 1 past |x| = 6.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    if a.is_nan() {
        return x;
    }
    if a > 6.0 {
        return 1f64.copysign(x);
    }
    let (mut term, mut sum) = (a, a);
    let mut n = 0.0;
    while term > 1e-18 * sum {
        n += 1.0;
        term *= 2.0 * a * a / (2.0 * n + 1.0);
        sum += term;
    }
    (2.0 / core::f64::consts::PI.sqrt() * (-a * a).exp() * sum).copysign(x)
}

/// The exact GELU in f64, `x * (1 + erf(x / sqrt 2)) / 2`.
pub fn gelu(x: f64) -> f64 {
    x * 0.5 * (1.0 + erf(x / core::f64::consts::SQRT_2))
}

/// Every activation, for sweeps.
pub const ACTS: [Act; 10] = [
    Act::IDENTITY,
    Act::RELU,
    Act::RELU6,
    Act::TANH,
    Act::SIGMOID,
    Act::leaky_relu(0.1),
    Act::SILU,
    Act::HARD_SWISH,
    Act::HARD_SIGMOID,
    Act::GELU,
];

/// The kernels' dimensions of a windowed layer with `c` input and `o` output channels in
/// `g` groups, its geometry along the height `ah` and the width `aw`.
pub fn dims2d(c: usize, o: usize, g: usize, ah: Axis, aw: Axis) -> super::geometry::Dims2d {
    super::geometry::Dims2d {
        c,
        h: ah.n,
        w: aw.n,
        o,
        oh: ah.out,
        ow: aw.out,
        kh: ah.k,
        kw: aw.k,
        sh: ah.s,
        sw: aw.s,
        ph: ah.p,
        pw: aw.p,
        dh: ah.d,
        dw: aw.d,
        g,
    }
}

/// Geometry of a windowed operation along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Input size.
    pub n: usize,
    /// Output size.
    pub out: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub s: usize,
    /// Leading (top/left) padding.
    pub p: usize,
    /// Trailing (bottom/right) padding, as declared (a pool's ceil mode may reach past it).
    pub pe: usize,
    /// Dilation.
    pub d: usize,
}

impl Axis {
    /// PyTorch's conv output size with symmetric padding `p`, `None` when the kernel does
    /// not fit: `floor((n + 2p - d(k-1) - 1) / s) + 1`.
    pub fn conv(n: usize, k: usize, s: usize, p: usize, d: usize) -> Option<Axis> {
        let num = (n + 2 * p).checked_sub(d * (k - 1) + 1)?;
        Some(Axis {
            n,
            out: num / s + 1,
            k,
            s,
            p,
            pe: p,
            d,
        })
    }

    /// PyTorch's `padding='same'` (stride 1): `d(k-1)` in total, the extra cell at the end.
    pub fn same(n: usize, k: usize, d: usize) -> Axis {
        let total = d * (k - 1);
        Axis {
            n,
            out: n,
            k,
            s: 1,
            p: total / 2,
            pe: total - total / 2,
            d,
        }
    }

    /// PyTorch's pool output size, `ceil_mode` included: `ceil` instead of `floor`, then
    /// one window less when the last one would start at or past `n + p`. `None` when the
    /// kernel does not fit or a window holds no input cell.
    pub fn pool(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<Axis> {
        let num = (n + 2 * p).checked_sub(d * (k - 1) + 1)?;
        let mut out = if ceil {
            num.div_ceil(s) + 1
        } else {
            num / s + 1
        };
        if ceil && (out - 1) * s >= n + p {
            out -= 1;
        }
        let a = Axis {
            n,
            out,
            k,
            s,
            p,
            pe: p,
            d,
        };
        a.every_window_has_input().then_some(a)
    }

    /// Input index of tap `j` of output `o` (possibly outside the input).
    pub fn tap(&self, o: usize, j: usize) -> isize {
        (o * self.s + j * self.d) as isize - self.p as isize
    }

    /// Whether `i` is inside the input.
    pub fn inside(&self, i: isize) -> bool {
        0 <= i && i < self.n as isize
    }

    /// Whether every output's window has a tap inside the input.
    pub fn every_window_has_input(&self) -> bool {
        (0..self.out).all(|o| (0..self.k).any(|j| self.inside(self.tap(o, j))))
    }

    /// Whether the last window reaches past the trailing padding (ceil mode).
    pub fn past_padding(&self) -> bool {
        (self.out - 1) * self.s + self.d * (self.k - 1) + 1 > self.n + self.p + self.pe
    }
}

/// Conv axis geometries: sizes 1..8, kernels 1..5, strides 1..3, dilations 1..3, symmetric
/// padding 0..=k (windows over padding only included), and 'same' where stride is 1.
pub fn conv_axes() -> Vec<Axis> {
    let mut axes = Vec::new();
    for n in [1, 2, 3, 4, 5, 7, 8] {
        for k in [1, 2, 3, 4, 5] {
            for d in [1, 2, 3] {
                if k == 1 && d > 1 {
                    continue;
                }
                for s in [1, 2, 3] {
                    for p in 0..=k {
                        axes.extend(Axis::conv(n, k, s, p, d));
                    }
                    if s == 1 {
                        axes.push(Axis::same(n, k, d));
                    }
                }
            }
        }
    }
    dedup(axes)
}

/// Pool axis geometries: sizes 1..9, kernels 1..5, strides 1..6 (also larger than the
/// kernel), padding 0..=k/2, dilations 1..3, floor and ceil mode.
pub fn pool_axes() -> Vec<Axis> {
    let mut axes = Vec::new();
    for n in [1, 2, 3, 4, 5, 6, 7, 9] {
        for k in [1, 2, 3, 4, 5] {
            for d in [1, 2, 3] {
                if k == 1 && d > 1 {
                    continue;
                }
                for s in [1, 2, 3, 4, 6] {
                    for p in 0..=k / 2 {
                        for ceil in [false, true] {
                            axes.extend(Axis::pool(n, k, s, p, d, ceil));
                        }
                    }
                }
            }
        }
    }
    dedup(axes)
}

fn dedup(axes: Vec<Axis>) -> Vec<Axis> {
    let mut out: Vec<Axis> = Vec::with_capacity(axes.len());
    for a in axes {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

mod ops;
pub use ops::*;

/// Asserts `|got - want| <= 1e-5 + 1e-5 |want|` elementwise (NaN matches NaN), naming
/// the first mismatch and `ctx`.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], ctx: &dyn Debug) {
    assert_eq!(got.len(), want.len(), "length, {ctx:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= 1e-5 + 1e-5 * w.abs();
        assert!(
            ok,
            "index {i}: got {g}, want {w} (diff {:e}), {ctx:?}",
            (g - w).abs()
        );
    }
}

#[test]
fn lined_starts_on_a_line_with_the_values() {
    let mut rng = Rng::new(3);
    // Large enough for the allocator to map pages (its 16-byte header before them).
    for n in [1, 17, 300_000] {
        let v = rng.vec(n, -1.0, 1.0);
        let x = Lined::new(&v);
        assert_eq!(x.as_ptr().align_offset(64), 0, "{n} floats");
        assert_eq!(&*x, &v[..]);
        let z = Lined::zeros(n);
        assert_eq!(z.as_ptr().align_offset(64), 0, "{n} zeros");
        assert!(z.len() == n && z.iter().all(|&f| f == 0.0));
    }
}

#[test]
fn erf_reference_known_values() {
    // erf(0.5), erf(1), erf(2), erf(3) to 16 digits.
    for (x, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
    ] {
        assert!((erf(x) - want).abs() < 1e-15, "erf({x}) = {}", erf(x));
        assert!((erf(-x) + want).abs() < 1e-15);
    }
    assert_eq!(erf(0.0), 0.0);
    assert_eq!(erf(10.0), 1.0);
}

#[test]
fn pool_output_sizes_follow_pytorch() {
    // Cases from the conformance README's ceil-mode rule.
    assert_eq!(Axis::pool(5, 2, 2, 0, 1, false).unwrap().out, 2);
    assert_eq!(Axis::pool(5, 2, 2, 0, 1, true).unwrap().out, 3);
    // 4, k 2, s 2, p 1, ceil: ceil(3/2)+1 = 3, last start 4 >= 4 + 1? no -> 3.
    assert_eq!(Axis::pool(4, 2, 2, 1, 1, true).unwrap().out, 3);
    // 3, k 3, s 2, p 1, ceil: ceil(2/2)+1 = 2, start 2 < 4 -> 2.
    assert_eq!(Axis::pool(3, 3, 2, 1, 1, true).unwrap().out, 2);
    // 2, k 1, s 2, p 0, ceil: ceil(1/2)+1 = 2, start 2 >= 2 -> dropped -> 1.
    assert_eq!(Axis::pool(2, 1, 2, 0, 1, true).unwrap().out, 1);
    // Kernel does not fit.
    assert!(Axis::pool(2, 3, 1, 0, 1, false).is_none());
    assert!(Axis::pool(3, 2, 1, 0, 3, false).is_none());
    assert_eq!(
        Axis::same(5, 4, 1),
        Axis {
            n: 5,
            out: 5,
            k: 4,
            s: 1,
            p: 1,
            pe: 2,
            d: 1
        }
    );
    assert_eq!(
        Axis::same(5, 2, 3),
        Axis {
            n: 5,
            out: 5,
            k: 2,
            s: 1,
            p: 1,
            pe: 2,
            d: 3
        }
    );
}

/// Splits over threads give the one-thread result bit for bit: runs `run(out)` (an
/// output of `n` floats plus 3 of slack) with one thread, then with 2 and 3 threads
/// into an output starting on a 64-byte line and one a float off it (splits may
/// depend on the alignment), and asserts equal results and an untouched slack. The
/// caller holds [`crate::pool::TEST_LOCK`]; the pool is left at two threads.
#[cfg(feature = "parallel")]
pub(crate) fn assert_threads_match_one(
    n: usize,
    ctx: &dyn core::fmt::Debug,
    mut run: impl FnMut(&mut [f32]),
) {
    crate::pool::set_num_threads(1);
    let mut one = vec![0.0; n + 3];
    run(&mut one);
    for (threads, shift) in [(2, 0), (2, 1), (3, 0), (3, 1)] {
        crate::pool::set_num_threads(threads);
        let mut buf = vec![7.0; n + 3 + 32];
        let at = buf.as_ptr().align_offset(64) + shift;
        let many = &mut buf[at..at + n + 3];
        run(many);
        assert_eq!(&many[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
        assert!(
            one[..n] == many[..n],
            "{ctx:?}: {threads} threads, output shifted by {shift}"
        );
    }
    crate::pool::set_num_threads(2);
}
