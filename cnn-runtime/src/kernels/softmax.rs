//! Softmax over a vector ([`softmax`]) and over the channels of a `[C, H, W]` tensor at
//! every position ([`softmax_channels`], vectorised across positions).

use super::activation::exp;

/// In place, numerically stable softmax: `buf[i] = exp(buf[i] - max) / sum_j exp(buf[j] - max)`.
///
/// Subtracting the maximum keeps every `exp` in `(0, 1]`, so large inputs neither
/// overflow nor lose the result; the sum is accumulated in f64. An empty slice is left as
/// it is; a NaN or `+inf` input gives NaN, as in PyTorch.
pub fn softmax(buf: &mut [f32]) {
    if buf.is_empty() {
        return;
    }
    let max = buf.iter().fold(
        f32::NEG_INFINITY,
        |m, &x| if x > m || x.is_nan() { x } else { m },
    );
    let mut total = 0.0f64;
    for x in buf.iter_mut() {
        *x = crate::math::expf(*x - max);
        total += f64::from(*x);
    }
    let total = total as f32;
    for x in buf.iter_mut() {
        *x /= total;
    }
}

/// Positions of [`softmax_channels`] processed together (the maxima and sums of a block
/// live on the stack).
const BLOCK: usize = 256;

/// `max` that propagates NaN.
#[inline(always)]
fn max_nan(m: f32, x: f32) -> f32 {
    if x > m || x.is_nan() {
        x
    } else {
        m
    }
}

/// [`softmax_channels`] with its dimensions as runtime values.
#[inline(always)]
fn softmax_channels_dyn(c: usize, hw: usize, buf: &mut [f32]) {
    let buf = &mut buf[..c * hw];
    for p0 in (0..hw).step_by(BLOCK) {
        let n = BLOCK.min(hw - p0);
        let mut m = [f32::NEG_INFINITY; BLOCK];
        let m = &mut m[..n];
        for plane in buf.chunks_exact(hw) {
            for (m, &x) in m.iter_mut().zip(&plane[p0..p0 + n]) {
                *m = max_nan(*m, x);
            }
        }
        let mut total = [0.0f32; BLOCK];
        let total = &mut total[..n];
        for plane in buf.chunks_exact_mut(hw) {
            for ((x, &m), t) in plane[p0..p0 + n].iter_mut().zip(&*m).zip(total.iter_mut()) {
                *x = exp(*x - m);
                *t += *x;
            }
        }
        for t in total.iter_mut() {
            *t = 1.0 / *t;
        }
        for plane in buf.chunks_exact_mut(hw) {
            for (x, &r) in plane[p0..p0 + n].iter_mut().zip(&*total) {
                *x *= r;
            }
        }
    }
}

/// In place, numerically stable softmax over the `C` channels at each of the `HW`
/// positions of a `[C, H, W]` tensor (PyTorch `softmax(dim=1)` on NCHW):
/// `buf[c*HW + p] = exp(buf[c*HW + p] - m_p) / sum_k exp(buf[k*HW + p] - m_p)`, `m_p` the
/// maximum over the channels at `p`. Vectorised across positions (channel planes are
/// contiguous), in blocks of positions whose maxima and sums stay on the stack. A NaN or
/// `+inf` at a position gives NaN at that position, as in PyTorch.
///
/// # Panics
///
/// If `buf` is shorter than `C*HW`.
pub fn softmax_channels<const C: usize, const HW: usize>(buf: &mut [f32]) {
    const { assert!(C > 0 && HW > 0) }
    softmax_channels_dyn(C, HW, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Rng};

    #[test]
    fn against_reference_and_sums_to_one() {
        let mut rng = Rng::new(61);
        for n in [1, 2, 3, 10, 100, 1000] {
            for scale in [1.0, 10.0, 100.0] {
                let x = rng.vec(n, -scale, scale);
                let mut got = x.clone();
                softmax(&mut got);
                r::assert_close(&got, &r::softmax(&x), &(n, scale));
                let s: f64 = got.iter().map(|&v| f64::from(v)).sum();
                assert!((s - 1.0).abs() < 1e-5, "sum {s}");
            }
        }
    }

    #[test]
    fn stable_with_large_inputs() {
        let mut x = [1000.0f32, 1000.0, 999.0, -1000.0];
        softmax(&mut x);
        assert!(x.iter().all(|v| v.is_finite()), "{x:?}");
        let e = (-1.0f64).exp();
        let want = [1.0 / (2.0 + e), 1.0 / (2.0 + e), e / (2.0 + e), 0.0];
        r::assert_close(&x, &want, &"large inputs");
        let s: f32 = x.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);

        let mut x = [-1000.0f32, -1001.0];
        softmax(&mut x);
        r::assert_close(
            &x,
            &r::softmax(&[-1000.0, -1001.0]),
            &"large negative inputs",
        );

        let mut one = [12345.0f32];
        softmax(&mut one);
        assert_eq!(one, [1.0]);
        let mut same = [3.0f32; 4];
        softmax(&mut same);
        assert_eq!(same, [0.25; 4]);
        let mut empty: [f32; 0] = [];
        softmax(&mut empty);
    }

    #[test]
    fn channels_against_reference() {
        let mut rng = Rng::new(62);
        for c in [1, 2, 3, 10, 21] {
            for hw in [1, 2, 7, 255, 256, 257, 784, 1000] {
                let scale = [1.0, 30.0][rng.below(2)];
                let x = rng.vec(c * hw, -scale, scale);
                let mut got = x.clone();
                got.push(42.0);
                softmax_channels_dyn(c, hw, &mut got);
                assert_eq!(got[c * hw], 42.0, "wrote past the tensor");
                r::assert_close(&got[..c * hw], &r::softmax_channels(c, hw, &x), &(c, hw));
            }
        }
        let mut x = [1000.0f32, 1.0, f32::NAN, 999.0, 1.0, 0.0];
        softmax_channels::<2, 3>(&mut x);
        let e = (-1.0f64).exp();
        r::assert_close(&x[..2], &[1.0 / (1.0 + e), 0.5], &"large");
        r::assert_close(&x[3..5], &[e / (1.0 + e), 0.5], &"large");
        assert!(x[2].is_nan() && x[5].is_nan());
    }

    #[test]
    fn nan_propagates() {
        let mut x = [1.0, f32::NAN, 2.0];
        softmax(&mut x);
        assert!(x.iter().all(|v| v.is_nan()));
    }
}
