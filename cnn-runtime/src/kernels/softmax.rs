//! Softmax over a vector.

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
        *x = (*x - max).exp();
        total += f64::from(*x);
    }
    let total = total as f32;
    for x in buf.iter_mut() {
        *x /= total;
    }
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
    fn nan_propagates() {
        let mut x = [1.0, f32::NAN, 2.0];
        softmax(&mut x);
        assert!(x.iter().all(|v| v.is_nan()));
    }
}
