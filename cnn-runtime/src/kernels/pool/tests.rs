//! Tests of the pooling kernels: every window shape against the reference, every level.

use super::*;
use crate::kernels::reference::{self as r, Axis, Rng};
use crate::kernels::simd;

fn dims(c: usize, ah: Axis, aw: Axis) -> Dims2d {
    r::dims2d(c, c, c, ah, aw)
}

/// Runs both pools (average only without dilation) against the reference on data
/// that is all negative half of the time, so that zero padding would show.
fn check(rng: &mut Rng, c: usize, ah: Axis, aw: Axis) {
    let d = dims(c, ah, aw);
    let (lo, hi) = if rng.below(2) == 0 {
        (-1.0, 1.0)
    } else {
        (-3.0, -1.0)
    };
    let input = rng.vec(c * ah.n * aw.n, lo, hi);
    let mut inp = input.clone();
    inp.extend([f32::NAN; 2]);
    let n = c * ah.out * aw.out;
    for level in simd::test_levels() {
        let mut got = vec![7.0; n + 2];
        max_pool_dyn(level, d, &inp, &mut got);
        assert_eq!(&got[n..], &[7.0; 2], "{d:?} wrote past its output");
        let want = r::max_pool2d(c, ah, aw, &input);
        assert!(
            got[..n].iter().zip(&want).all(|(&g, &w)| f64::from(g) == w),
            "max pool {d:?} {level:?}\n got {:?}\nwant {want:?}",
            &got[..n]
        );
        if ah.d == 1 && aw.d == 1 {
            for include_pad in [true, false] {
                avg_pool_dyn(level, d, include_pad, &inp, &mut got);
                assert_eq!(&got[n..], &[7.0; 2], "{d:?} wrote past its output");
                let want = r::avg_pool2d(c, ah, aw, include_pad, &input);
                r::assert_close(&got[..n], &want, &(d, include_pad, level));
            }
        }
    }
}

/// 1-D signals run as H = 1: long rows, every window/stride/dilation/padding, the
/// 1x2 fast path among them.
#[test]
fn one_d_against_reference() {
    let mut rng = Rng::new(52);
    let one = Axis::pool(1, 1, 1, 0, 1, false).unwrap();
    let mut n = 0;
    for w in [2, 3, 17, 33, 784, 1001] {
        for k in [1, 2, 3, 5] {
            for s in [1, 2, 3] {
                for d in [1, 2, 4, 8] {
                    for p in 0..=k / 2 {
                        for ceil in [false, true] {
                            if let Some(aw) = Axis::pool(w, k, s, p, d, ceil) {
                                check(&mut rng, 1 + n % 3, one, aw);
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(n > 300, "{n}");
    let aw = Axis::pool(784, 2, 2, 0, 1, false).unwrap();
    assert!(is_1x2(&dims(3, one, aw)));
}

/// Every pool axis geometry (sizes, kernels, strides larger than the kernel, padding up
/// to half the kernel, dilation, ceil mode with extra and dropped windows) on each axis,
/// paired with a random one.
#[test]
fn sweep_axes_against_reference() {
    let axes = r::pool_axes();
    assert!(axes.len() > 300, "{}", axes.len());
    assert!(
        axes.iter().any(|a| a.past_padding()),
        "no ceil window reaching past the padding"
    );
    let mut rng = Rng::new(51);
    for (i, &a) in axes.iter().enumerate() {
        let b = axes[rng.below(axes.len())];
        check(&mut rng, 1 + i % 4, a, b);
        check(&mut rng, 1 + i % 3, b, a);
    }
}

/// The vectorised 2x2 stride-2 path: widths around the vector lengths (tails), odd
/// sizes (a dropped last row/column), NaN propagation.
#[test]
fn two_by_two_fast_path() {
    let mut rng = Rng::new(54);
    for h in [2, 3, 4, 7] {
        for w in [2, 3, 6, 8, 9, 15, 16, 17, 28, 33, 65] {
            let a = Axis::pool(h, 2, 2, 0, 1, false).unwrap();
            let b = Axis::pool(w, 2, 2, 0, 1, false).unwrap();
            assert!(is_2x2(&dims(3, a, b)));
            check(&mut rng, 3, a, b);
        }
    }
    let mut x = rng.vec(2 * 4 * 18, -1.0, 1.0);
    x[5] = f32::NAN;
    x[4 * 18 + 18 + 17] = f32::NAN;
    let (a, b) = (
        Axis::pool(4, 2, 2, 0, 1, false).unwrap(),
        Axis::pool(18, 2, 2, 0, 1, false).unwrap(),
    );
    for level in simd::test_levels() {
        let mut y = vec![0.0; 2 * 2 * 9];
        max_pool_dyn(level, dims(2, a, b), &x, &mut y);
        assert_nans_at(&y, &r::max_pool2d(2, a, b, &x), &[2, 18 + 8], &level);
    }
}

/// With the `parallel` feature, 2x2 pools large enough to split by output rows over
/// 2 and 3 threads give the one-thread result bit for bit (max and average, every
/// level, outputs on a line and off it, rows of 16, 8, 4 and 32 outputs, an odd
/// height), and match the reference; planes off whole lines (15x13) split by channels.
#[cfg(feature = "parallel")]
#[test]
fn two_by_two_row_split_equals_one_thread() {
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(56);
    for (c, h, w) in [
        (32, 32, 32),
        (64, 16, 16),
        (128, 8, 8),
        (8, 64, 64),
        (40, 22, 33),
        (24, 30, 26),
    ] {
        let (a, b) = (
            Axis::pool(h, 2, 2, 0, 1, false).unwrap(),
            Axis::pool(w, 2, 2, 0, 1, false).unwrap(),
        );
        let d = dims(c, a, b);
        assert!(is_2x2(&d) && c * h * w >= POOL_PAR_FLOATS);
        let x = rng.vec(c * h * w, -1.0, 1.0);
        let n = c * d.oh * d.ow;
        let want = r::max_pool2d(c, a, b, &x);
        for level in simd::test_levels() {
            r::assert_threads_match_one(n, &(c, h, w, level), |out| {
                max_pool_dyn(level, d, &x, out);
                let got: Vec<f64> = out[..n].iter().map(|&v| f64::from(v)).collect();
                assert!(got == want, "{:?}", (c, h, w, level));
            });
            r::assert_threads_match_one(n, &(c, h, w, level, "avg"), |out| {
                avg_pool_dyn(level, d, false, &x, out);
            });
        }
    }
    crate::pool::set_num_threads(2);
}

/// With the `parallel` feature, banded pools (any other window) large enough to split
/// by output rows over 2 and 3 threads give the one-thread result bit for bit and the
/// reference's: ResNet's 3x3 stride-2 max pool (56x56 outputs: a band boundary on a
/// line), a 3x3 stride-1 one, a dilated one and ceil-mode ones with odd sizes
/// (SqueezeNet's 111x111 -> 55x55: planes off whole lines, split by channels, 5
/// channels over 3 threads too), max and average, every level, outputs on a line and
/// off it.
#[cfg(feature = "parallel")]
#[test]
fn banded_row_split_equals_one_thread() {
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(57);
    for (c, h, k, st, p, dil, ceil) in [
        (64, 112, 3, 2, 1, 1, false),
        (16, 48, 3, 1, 1, 1, false),
        (8, 64, 3, 1, 2, 2, false),
        (24, 45, 3, 2, 0, 1, true),
        (64, 111, 3, 2, 0, 1, true),
        (5, 70, 3, 2, 0, 1, true),
    ] {
        let a = Axis::pool(h, k, st, p, dil, ceil).unwrap();
        let d = dims(c, a, a);
        assert!(!is_2x2(&d) && c * h * h >= POOL_PAR_FLOATS);
        let x = rng.vec(c * h * h, -1.0, 1.0);
        let n = c * d.oh * d.ow;
        let want = r::max_pool2d(c, a, a, &x);
        for level in simd::test_levels() {
            r::assert_threads_match_one(n, &(c, h, k, st, level), |out| {
                max_pool_dyn(level, d, &x, out);
                let got: Vec<f64> = out[..n].iter().map(|&v| f64::from(v)).collect();
                assert!(got == want, "{:?}", (c, h, k, st, level));
            });
            if dil == 1 {
                r::assert_threads_match_one(n, &(c, h, k, st, level, "avg"), |out| {
                    avg_pool_dyn(level, d, true, &x, out);
                });
            }
        }
    }
    crate::pool::set_num_threads(2);
}

/// ResNet's 3x3 stride-2 padding-1 max pool (the separable path) on a map taller than
/// one band of the banded path, NaN propagated from any tap, at every level.
#[test]
fn banded_windows_propagate_nan_and_span_bands() {
    let mut rng = Rng::new(55);
    let a = Axis::pool(112, 3, 2, 1, 1, false).unwrap();
    let b = Axis::pool(118, 3, 2, 1, 1, false).unwrap();
    check(&mut rng, 2, a, b);
    let d = dims(2, a, b);
    let mut x = rng.vec(2 * 112 * 118, -1.0, 1.0);
    // Row 0 column 0 (a corner, next to the padding) and an interior cell of plane 1.
    x[0] = f32::NAN;
    x[112 * 118 + 51 * 118 + 77] = f32::NAN;
    let want = r::max_pool2d(2, a, b, &x);
    // Output (0, 0) of plane 0; rows 25, 26 by columns 38, 39 of plane 1 (input row
    // 51 = 2 * 25 + 1 = 2 * 26 - 1, column 77 likewise).
    let (oh, ow) = (a.out, b.out);
    assert_eq!((oh, ow), (56, 59));
    let at = |y: usize, x: usize| oh * ow + y * ow + x;
    let want_nans = vec![0, at(25, 38), at(25, 39), at(26, 38), at(26, 39)];
    for level in simd::test_levels() {
        let mut y = vec![0.0; 2 * a.out * b.out];
        max_pool_dyn(level, d, &x, &mut y);
        assert_nans_at(&y, &want, &want_nans, &level);
    }
}

/// The separable pools (`engine::separable_fits`), max and average: the windows of
/// ResNet's, DenseNet's and SqueezeNet's pools take it; strides 1 to 4 across (1 and 2
/// by shifted loads and lane pairs, more through every column's window), every width
/// from 1 to 4, padding, ceil mode, rows around the vector lengths, against the
/// reference; a NaN in the first or the last column of a row (beside the -inf padding of
/// the combined row) reaches exactly the outputs whose windows hold it.
#[test]
fn separable_max_pools() {
    let fits = |a: Axis, b: Axis, lanes: usize| engine::separable_fits(&dims(1, a, b), lanes);
    let pool = |n, k, s, p, ceil| Axis::pool(n, k, s, p, 1, ceil).unwrap();
    for lanes in [4, 8, 16] {
        assert!(fits(
            pool(112, 3, 2, 1, false),
            pool(112, 3, 2, 1, false),
            lanes
        ));
        assert!(fits(
            pool(111, 3, 2, 0, true),
            pool(111, 3, 2, 0, true),
            lanes
        ));
        assert!(fits(
            pool(13, 3, 2, 0, true),
            pool(13, 3, 2, 0, true),
            lanes
        ));
        assert!(fits(
            pool(28, 3, 1, 1, false),
            pool(28, 3, 1, 1, false),
            lanes
        ));
        assert!(fits(
            pool(28, 3, 3, 1, false),
            pool(28, 3, 3, 1, false),
            lanes
        ));
        // Dilated across: the banded path.
        let dilated = Axis::pool(28, 3, 1, 1, 2, false).unwrap();
        assert!(!fits(pool(28, 3, 1, 1, false), dilated, lanes));
    }
    let mut rng = Rng::new(56);
    let mut n = 0;
    for w in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 56, 111] {
        for k in 1..=4 {
            for s in [1, 2, 3, 4] {
                for p in 0..=k / 2 {
                    for ceil in [false, true] {
                        let Some(b) = Axis::pool(w, k, s, p, 1, ceil) else {
                            continue;
                        };
                        let a = Axis::pool(5 + n % 4, 3, 1 + n % 2, n % 2, 1, ceil).unwrap();
                        assert!(fits(a, b, 16), "{a:?} {b:?}");
                        check(&mut rng, 1 + n % 3, a, b);
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n > 400, "{n}");
    // Rows too wide for one band of all output rows in the buffer (1068 floats a row:
    // 15 rows a band with `std`, 3 without), stride 2 and 1.
    for s in [2, 1] {
        let (a, b) = (pool(64, 3, s, 1, false), pool(1000, 3, s, 1, true));
        assert!(a.out * (1000 + 1 + 3 + 64) > engine::SCRATCH);
        assert!(fits(a, b, 16));
        check(&mut rng, 2, a, b);
    }
    // NaN at the ends of rows: columns 0 and W - 1 of row 4.
    let (a, b) = (pool(9, 3, 2, 1, false), pool(33, 3, 2, 1, false));
    let mut x = rng.vec(9 * 33, -1.0, 1.0);
    x[4 * 33] = f32::NAN;
    x[4 * 33 + 32] = f32::NAN;
    let want = r::max_pool2d(1, a, b, &x);
    let (oh, ow) = (a.out, b.out);
    assert_eq!((oh, ow), (5, 17));
    // Input row 4 is in the window of output row 2 alone (rows 3..=5); column 0 only
    // in output column 0's (-1..=1), column 32 only in output column 16's (31..=33).
    let want_nans = vec![2 * ow, 3 * ow - 1];
    for level in simd::test_levels() {
        let mut y = vec![0.0; oh * ow];
        max_pool_dyn(level, dims(1, a, b), &x, &mut y);
        assert_nans_at(&y, &want, &want_nans, &level);
    }
}

/// Pools the separable path cannot take run the banded one, averages divided there too:
/// a padding wider than a vector, and 1-D rows too long for the separable buffers that
/// still fit a band (stride 3: three phase rows), every level, against the reference.
#[test]
fn banded_pools_and_averages() {
    let mut rng = Rng::new(58);
    let one = Axis::pool(1, 1, 1, 0, 1, false).unwrap();
    // A window 35 wide (35 taps: the banded path takes up to `MAX_TAPS`), padded by 17.
    for (w, s) in [(40, 1), (40, 2), (23, 3)] {
        let a = Axis::pool(9, 3, 2, 1, 1, false).unwrap();
        let b = Axis::pool(w, 35, s, 17, 1, false).unwrap();
        let d = dims(2, a, b);
        assert!(
            !engine::separable_fits(&d, 16) && 3 * 35 <= engine::MAX_TAPS,
            "{d:?}"
        );
        check(&mut rng, 2, a, b);
    }
    for (w, ceil) in [(10_000, false), (10_001, true)] {
        let b = Axis::pool(w, 3, 3, 1, 1, ceil).unwrap();
        let d = dims(1, one, b);
        assert!(!engine::separable_fits(&d, 4), "{d:?}");
        check(&mut rng, 1, one, b);
    }
}

/// The separable path with a NaN at each column of a row in turn, for windows 2 to 4
/// wide of stride 1 and 2 (each column reaches the even or the odd lanes of a pair of
/// loads, or a shifted load): NaN exactly at the outputs whose windows hold it, the
/// other values the reference's, at every level.
#[test]
fn separable_max_pools_propagate_nan_from_every_column() {
    let mut rng = Rng::new(57);
    for (k, s) in [(2, 2), (3, 2), (4, 2), (2, 1), (3, 1)] {
        let a = Axis::pool(7, 3, 2, 1, 1, false).unwrap();
        let b = Axis::pool(37, k, s, 1, 1, true).unwrap();
        assert!(engine::separable_fits(&dims(1, a, b), 16));
        let x0 = rng.vec(7 * 37, -1.0, 1.0);
        for col in 0..37 {
            let mut x = x0.clone();
            x[3 * 37 + col] = f32::NAN;
            let want = r::max_pool2d(1, a, b, &x);
            // Output (y, x) holds input (3, col) where both axes' windows do.
            let holds =
                |ax: Axis, o: usize, i: usize| (0..ax.k).any(|j| ax.tap(o, j) == i as isize);
            let want_nans: Vec<usize> = (0..a.out * b.out)
                .filter(|&q| holds(a, q / b.out, 3) && holds(b, q % b.out, col))
                .collect();
            assert!(!want_nans.is_empty());
            for level in simd::test_levels() {
                let mut y = vec![0.0; a.out * b.out];
                max_pool_dyn(level, dims(1, a, b), &x, &mut y);
                assert_nans_at(&y, &want, &want_nans, &(k, s, col, level));
            }
        }
    }
}

/// `got` is NaN exactly at `nans` and equal to `want` elsewhere.
fn assert_nans_at(got: &[f32], want: &[f64], nans: &[usize], ctx: &dyn std::fmt::Debug) {
    let at: Vec<usize> = (0..got.len()).filter(|&i| got[i].is_nan()).collect();
    assert_eq!(at, nans, "{ctx:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.is_nan() || f64::from(*g) == *w, "{ctx:?}");
    }
}

/// Named cases with hand-computed outputs: PyTorch's divisors in ceil mode.
#[test]
fn ceil_mode_divisors_by_hand() {
    // H = W = 3, k = 2, s = 2, p = 0, ceil: out 2x2, last window covers one real row
    // and one cell past the input (no padding): divisor 1 either way.
    let a = Axis::pool(3, 2, 2, 0, 1, true).unwrap();
    assert_eq!(a.out, 2);
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let mut y = [0.0; 4];
    avg_pool2d::<1, 3, 3, 2, 2, 2, 2, 2, 2, 0, 0, true>(&x, &mut y);
    assert_eq!(y, [3.0, 4.5, 7.5, 9.0]);
    // H = W = 4, k = 3, s = 2, p = 1, ceil: out = ceil(3/2)+1 = 3, last window starts at
    // padded 4 (< H + p = 5, kept), covers padded [4, 7): real 3 (index 3 -> padded 4),
    // padding 5, past-padding 6. Divisor with padding: 2 per axis.
    let a = Axis::pool(4, 3, 2, 1, 1, true).unwrap();
    assert_eq!(a.out, 3);
    let x = [1.0f32; 16];
    let mut y = [0.0; 9];
    avg_pool2d::<1, 4, 4, 3, 3, 3, 3, 2, 2, 1, 1, true>(&x, &mut y);
    // Corner (0,0): window padded [0,3)x[0,3): 4 real of 9.
    assert_eq!(y[0], 4.0 / 9.0);
    // (0,2): rows padded [0,3) count 3, cols padded [4,6) count 2: 6 cells, 2 real.
    assert_eq!(y[2], 2.0 / 6.0);
    // (2,2): 2x2 cells counted, 1 real.
    assert_eq!(y[8], 1.0 / 4.0);
    avg_pool2d::<1, 4, 4, 3, 3, 3, 3, 2, 2, 1, 1, false>(&x, &mut y);
    assert_eq!(y, [1.0; 9]);
}

#[test]
fn max_pool_pads_with_minus_infinity_and_propagates_nan() {
    let x = [-5.0f32, -4.0, -3.0, -2.0];
    let mut y = [0.0; 9];
    // 2x2 input, kernel 2, stride 1, padding 1: 3x3 output, every window real values only.
    max_pool2d::<1, 2, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1>(&x, &mut y);
    assert_eq!(y, [-5.0, -4.0, -4.0, -3.0, -2.0, -2.0, -3.0, -2.0, -2.0]);
    let x = [1.0f32, f32::NAN, 3.0, 2.0];
    let mut y = [0.0; 1];
    max_pool2d::<1, 2, 2, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1>(&x, &mut y);
    assert!(y[0].is_nan());
    global_max_pool::<1, 4>(&x, &mut y);
    assert!(y[0].is_nan());
}

/// Const-generic shells on a few layers.
#[test]
fn const_generic_instances() {
    let mut rng = Rng::new(52);
    // LeNet avg_pool(2) on 6x28x28.
    let x = rng.vec(6 * 28 * 28, -1.0, 1.0);
    let a = Axis::pool(28, 2, 2, 0, 1, false).unwrap();
    let mut y = vec![0.0; 6 * 14 * 14];
    avg_pool2d::<6, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, true>(&x, &mut y);
    r::assert_close(&y, &r::avg_pool2d(6, a, a, true, &x), &"lenet avg pool");
    // Max pool 3x3 stride 2 pad 1 (ResNet stem), ceil mode on a 7x9 map.
    let x = rng.vec(2 * 7 * 9, -2.0, -1.0);
    let (ah, aw) = (
        Axis::pool(7, 3, 2, 1, 1, true).unwrap(),
        Axis::pool(9, 3, 2, 1, 1, true).unwrap(),
    );
    assert_eq!((ah.out, aw.out), (4, 5));
    let mut y = vec![0.0; 2 * 4 * 5];
    max_pool2d::<2, 7, 9, 4, 5, 3, 3, 2, 2, 1, 1, 1, 1>(&x, &mut y);
    r::assert_close(&y, &r::max_pool2d(2, ah, aw, &x), &"max pool ceil");
    // Dilated, non-square.
    let (ah, aw) = (
        Axis::pool(8, 2, 1, 1, 3, false).unwrap(),
        Axis::pool(6, 3, 2, 0, 2, true).unwrap(),
    );
    let x = rng.vec(3 * 8 * 6, -1.0, 1.0);
    let mut y = vec![0.0; 3 * ah.out * aw.out];
    max_pool2d::<3, 8, 6, 7, 2, 2, 3, 1, 2, 1, 0, 3, 2>(&x, &mut y);
    assert_eq!((ah.out, aw.out), (7, 2));
    r::assert_close(&y, &r::max_pool2d(3, ah, aw, &x), &"max pool dilated");
    // Avg pool, exclude pad, ceil, non-square.
    let (ah, aw) = (
        Axis::pool(5, 3, 2, 1, 1, true).unwrap(),
        Axis::pool(6, 2, 3, 1, 1, true).unwrap(),
    );
    assert_eq!((ah.out, aw.out), (3, 3));
    let x = rng.vec(2 * 5 * 6, -1.0, 1.0);
    let mut y = vec![0.0; 2 * 3 * 3];
    avg_pool2d::<2, 5, 6, 3, 3, 3, 2, 2, 3, 1, 1, false>(&x, &mut y);
    r::assert_close(
        &y,
        &r::avg_pool2d(2, ah, aw, false, &x),
        &"avg pool exclude pad",
    );
}

/// With the `parallel` feature a large global average pool splits whole 16-channel
/// groups over the threads: the one-thread result bit for bit at 2 and 3 threads (a last
/// range of fewer channels, channels past the last whole group) and the reference's.
#[cfg(feature = "parallel")]
#[test]
fn global_avg_threads_give_the_one_thread_result() {
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(54);
    for (c, hw) in [(96, 784), (1152, 49), (40, 3136), (250, 196)] {
        assert!(c * hw >= super::global::GAP_PAR_FLOATS);
        let x = rng.vec(c * hw, -2.0, 1.0);
        let want = r::global_avg_pool(c, hw, &x);
        for level in simd::test_levels() {
            r::assert_threads_match_one(c, &(c, hw, level), |y| {
                global_avg_dyn(level, c, hw, hw / 2, &x, y);
                r::assert_close(&y[..c], &want, &(c, hw, level));
            });
        }
    }
    crate::pool::set_num_threads(2);
}

/// The pool in two parts (a team's rows) is the sum of the parts [`gap_part_dyn`] gives,
/// added, divided, bit for bit, and the reference's within rounding, on every level.
#[test]
fn global_avg_in_two_parts() {
    let mut rng = Rng::new(55);
    for (c, h, w) in [
        (3, 2, 1),
        (17, 7, 7),
        (40, 14, 14),
        (16, 5, 9),
        (33, 56, 56),
    ] {
        let hw = h * w;
        let x = rng.vec(c * hw, -2.0, 1.0);
        let want = r::global_avg_pool(c, hw, &x);
        for level in simd::test_levels() {
            for split in [h / 2 * w, w, (h - 1) * w] {
                let mut y = vec![0.0; c];
                global_avg_dyn(level, c, hw, split, &x, &mut y);
                r::assert_close(&y, &want, &(c, h, w, split, level));
                let (mut top, mut bottom) = (vec![0.0; c], vec![0.0; c]);
                gap_part_dyn(level, c, hw, (0, split), &x, &mut top);
                gap_part_dyn(level, c, hw, (split, hw), &x, &mut bottom);
                for i in 0..c {
                    let mean = (top[i] + bottom[i]) / hw as f32;
                    assert_eq!(
                        mean.to_bits(),
                        y[i].to_bits(),
                        "{:?}",
                        (c, h, w, split, i, level)
                    );
                }
            }
        }
    }
}

#[test]
fn global_pools_against_reference() {
    let mut rng = Rng::new(53);
    for c in [1, 3, 16, 17, 40] {
        for hw in [1, 2, 7, 8, 9, 15, 16, 17, 49, 3136] {
            let x = rng.vec(c * hw, -2.0, 1.0);
            let mut xin = x.clone();
            xin.push(f32::NAN);
            let mut y = vec![7.0; c + 1];
            for level in simd::test_levels() {
                global_avg_dyn(level, c, hw, 0, &xin, &mut y);
                assert_eq!(y[c], 7.0);
                r::assert_close(
                    &y[..c],
                    &r::global_avg_pool(c, hw, &x),
                    &("global avg", level, c, hw),
                );
            }
            for level in simd::test_levels() {
                global::global_max_dyn(level, c, hw, &xin, &mut y);
                assert_eq!(y[c], 7.0);
                r::assert_close(
                    &y[..c],
                    &r::global_max_pool(c, hw, &x),
                    &("global max", level, c, hw),
                );
            }
        }
    }
    let x = [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0];
    let mut y = [0.0; 2];
    global_avg_pool::<2, 4>(&x, &mut y);
    assert_eq!(y, [2.5, -2.5]);
    global_max_pool::<2, 4>(&x, &mut y);
    assert_eq!(y, [4.0, -1.0]);
}

/// Timing of ResNet's stem max pool and SqueezeNet's three ceil-mode ones, and of a map
/// that stays in L2 (`cargo test -p cnn-runtime --release pool::tests::speed --
/// --ignored --nocapture`).
#[test]
#[ignore]
fn speed() {
    for (c, n, p, ceil) in [
        (64, 112, 1, false),
        (64, 111, 0, true),
        (128, 55, 0, true),
        (256, 27, 0, true),
        // In L2: the kernel's own speed.
        (8, 111, 0, true),
    ] {
        let a = Axis::pool(n, 3, 2, p, 1, ceil).unwrap();
        let d = dims(c, a, a);
        let x = Rng::new(3).vec(c * n * n, -1.0, 1.0);
        let mut y = vec![0.0; c * a.out * a.out];
        let t = r::best_time_us(|| max_pool_dyn(cpu::level(), d, std::hint::black_box(&x), &mut y));
        eprintln!("max pool {c}x{n}x{n} 3x3 s2 p{p} ceil {ceil}: {t:.1} us");
    }
}

/// Timing of pools of other windows, average and max side by side, and of the global
/// max pool: `POOL_SHAPES="c,h,w,k,s,p;..."` (default: windows of 3 with strides 2 and
/// 3, the shapes where `tools/bench/fuzz_speed.py` found them slow; `cargo test -p
/// cnn-runtime --release pool::tests::window_speed -- --ignored --nocapture`).
#[test]
#[ignore]
fn window_speed() {
    let shapes: Vec<[usize; 6]> = std::env::var("POOL_SHAPES").map_or_else(
        |_| {
            vec![
                [160, 40, 40, 3, 3, 0],
                [96, 64, 64, 3, 2, 0],
                [160, 32, 32, 3, 3, 1],
            ]
        },
        |v| {
            v.split(';')
                .map(|t| {
                    let f: Vec<usize> = t.split(',').map(|x| x.trim().parse().unwrap()).collect();
                    [f[0], f[1], f[2], f[3], f[4], f[5]]
                })
                .collect()
        },
    );
    for [c, h, w, k, st, p] in shapes {
        let (ah, aw) = (
            Axis::pool(h, k, st, p, 1, false).unwrap(),
            Axis::pool(w, k, st, p, 1, false).unwrap(),
        );
        let d = dims(c, ah, aw);
        let x = Rng::new(3).vec(c * h * w, -1.0, 1.0);
        let mut y = vec![0.0; c * ah.out * aw.out];
        let level = cpu::level();
        let ta = r::best_time_us(|| avg_pool_dyn(level, d, true, std::hint::black_box(&x), &mut y));
        let tm = r::best_time_us(|| max_pool_dyn(level, d, std::hint::black_box(&x), &mut y));
        let mut g = vec![0.0; c];
        let tg = r::best_time_us(|| {
            global::global_max_dyn(level, c, h * w, std::hint::black_box(&x), &mut g)
        });
        eprintln!("{c}x{h}x{w} window {k} stride {st} padding {p}: avg {ta:.1} us, max {tm:.1} us; global max {tg:.1} us");
    }
}

/// Timing of the global average pool on the benchmark models' shapes (`cargo test -p
/// cnn-runtime --release gap_speed -- --ignored --nocapture`).
#[test]
#[ignore]
fn gap_speed() {
    for (c, hw) in [(512usize, 9usize), (1280, 49), (512, 49), (128, 16)] {
        let x = Rng::new(3).vec(c * hw, -1.0, 1.0);
        let mut y = vec![0.0; c];
        let t = r::best_time_us(|| {
            global_avg_dyn(cpu::level(), c, hw, 0, std::hint::black_box(&x), &mut y)
        });
        eprintln!("global avg pool {c}x{hw}: {t:.2} us");
    }
}
