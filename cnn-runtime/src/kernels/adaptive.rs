//! Adaptive pools (PyTorch `AdaptiveAvgPool2d`, `AdaptiveMaxPool2d`): the output size is
//! given and each output cell pools its own window, `[floor(i*H/OH), ceil((i+1)*H/OH))`
//! along each axis (windows may overlap or, when `OH > H`, repeat input cells).
//!
//! Each window is summed (or maximised) row by row over its contiguous columns, in
//! independent partial accumulators so the loops vectorise; a 1-D signal (`H = 1`) is
//! one row per channel.

/// Window `[start, end)` of output `i` of `out` over an axis of `n` cells (PyTorch's
/// adaptive pooling rule, exact integer arithmetic).
#[inline(always)]
fn window(i: usize, n: usize, out: usize) -> (usize, usize) {
    (i * n / out, ((i + 1) * n).div_ceil(out))
}

/// Lanes of the partial sums and maxima.
const LANES: usize = 8;

/// Sum of `xs` in [`LANES`] interleaved partial sums.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut acc = [0.0f32; LANES];
    for chunk in chunks {
        for (s, &x) in acc.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `max` that propagates NaN, as PyTorch's max pools do.
#[inline(always)]
fn max_nan(m: f32, x: f32) -> f32 {
    if x > m || x.is_nan() {
        x
    } else {
        m
    }
}

/// Maximum of `xs` (NaN if one is) in [`LANES`] interleaved partial maxima.
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let chunks = xs.chunks_exact(LANES);
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| max_nan(m, x));
    let mut acc = [f32::NEG_INFINITY; LANES];
    for chunk in chunks {
        for (s, &x) in acc.iter_mut().zip(chunk) {
            *s = max_nan(*s, x);
        }
    }
    for &a in &acc {
        m = max_nan(m, a);
    }
    m
}

/// The adaptive pool with its dimensions as runtime values: `max` or average.
#[inline(always)]
fn adaptive_dyn(
    (c, h, w, oh, ow): (usize, usize, usize, usize, usize),
    max_pool: bool,
    input: &[f32],
    output: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    let input = &input[..c * hw];
    let output = &mut output[..c * ohw];
    for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
        for (oy, out_row) in out_plane.chunks_exact_mut(ow).enumerate() {
            let (y0, y1) = window(oy, h, oh);
            for (ox, y) in out_row.iter_mut().enumerate() {
                let (x0, x1) = window(ox, w, ow);
                let rows = in_plane[y0 * w..y1 * w].chunks_exact(w);
                *y = if max_pool {
                    rows.fold(f32::NEG_INFINITY, |m, r| max_nan(m, max(&r[x0..x1])))
                } else {
                    let s: f32 = rows.map(|r| sum(&r[x0..x1])).sum();
                    s / ((y1 - y0) * (x1 - x0)) as f32
                };
            }
        }
    }
}

/// Adaptive average pool, PyTorch `AdaptiveAvgPool2d((OH, OW))`: `output[c][i][j]` is the
/// mean of `input[c]` over rows `[floor(i*H/OH), ceil((i+1)*H/OH))` and columns
/// `[floor(j*W/OW), ceil((j+1)*W/OW))`.
///
/// `input` holds at least `C*H*W` values and `output` at least `C*OH*OW`.
///
/// # Panics
///
/// If a slice is too short.
pub fn adaptive_avg_pool2d<
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &[f32],
    output: &mut [f32],
) {
    const { assert!(C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0) }
    if OH == 1 && OW == 1 {
        // One window, the whole plane: the global average pool's vector kernel
        // (squeeze-and-excitation blocks: EfficientNet-B0's 16 pools 464 -> 162 µs).
        // Each plane summed in two parts, rows `0..H/2` and `H/2..H`, as the two members of
        // a team sum them (`adaptive_avg_pool2d_part`).
        let split = H / 2 * W;
        crate::kernels::pool::global_avg_dyn(crate::cpu::level(), C, H * W, split, input, output);
        return;
    }
    adaptive_dyn((C, H, W, OH, OW), false, input, output);
}

/// A team member's part of [`adaptive_avg_pool2d`] to one value a plane (`[C, H, W] ->
/// [C, 1, 1]`, a squeeze-and-excitation block's pool): the sum of rows `rows.0..rows.1`
/// of each plane, undivided, into `output[c]`. That pool sums rows `0..H/2` and `H/2..H`
/// of each plane this way, adds the two sums and divides by `H*W`:
/// [`Member::reduce_mean`](crate::team::Member::reduce_mean) does the same with the two
/// members' sums, so the team's means are the one-thread pool's bit for bit.
///
/// # Panics
///
/// If `input` holds fewer than `C*H*W` values or `output` fewer than `C`.
pub fn adaptive_avg_pool2d_part<const C: usize, const H: usize, const W: usize>(
    input: &[f32],
    output: &mut [f32],
    rows: (usize, usize),
) {
    const { assert!(C > 0 && H > 0 && W > 0) }
    crate::kernels::pool::gap_part_dyn(
        crate::cpu::level(),
        C,
        H * W,
        super::row_span(rows, H, W),
        input,
        output,
    );
}

/// Adaptive max pool, PyTorch `AdaptiveMaxPool2d((OH, OW))`: `output[c][i][j]` is the
/// maximum of `input[c]` over the window of [`adaptive_avg_pool2d`] (NaN if one of its
/// values is).
///
/// `input` holds at least `C*H*W` values and `output` at least `C*OH*OW`.
///
/// # Panics
///
/// If a slice is too short.
pub fn adaptive_max_pool2d<
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &[f32],
    output: &mut [f32],
) {
    const { assert!(C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0) }
    adaptive_dyn((C, H, W, OH, OW), true, input, output);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Rng};

    #[test]
    fn sweep_against_reference() {
        let mut rng = Rng::new(81);
        let sizes = [1, 2, 3, 4, 5, 7, 8, 10, 13];
        for &h in &sizes {
            for &w in &sizes {
                for &oh in &sizes {
                    for &ow in &sizes {
                        let c = 1 + rng.below(3);
                        check(&mut rng, (c, h, w, oh, ow));
                    }
                }
            }
        }
        // 1-D signals: long rows, output smaller, equal and larger.
        for (w, ow) in [
            (784, 1),
            (784, 10),
            (784, 784),
            (1000, 333),
            (100, 250),
            (16000, 7),
        ] {
            check(&mut rng, (2, 1, w, 1, ow));
        }
    }

    fn check(rng: &mut Rng, (c, h, w, oh, ow): (usize, usize, usize, usize, usize)) {
        let x = rng.vec(c * h * w, -3.0, -1.0);
        let n = c * oh * ow;
        for max_pool in [false, true] {
            let mut got = vec![7.0; n + 1];
            adaptive_dyn((c, h, w, oh, ow), max_pool, &x, &mut got);
            assert_eq!(got[n], 7.0, "wrote past the output");
            let want = r::adaptive_pool2d(c, (h, w), (oh, ow), max_pool, &x);
            r::assert_close(&got[..n], &want, &(c, h, w, oh, ow, max_pool));
        }
    }

    /// A 1x1 output (squeeze-and-excitation's pool) runs the global average pool: equal
    /// to the reference on channel counts around the vector widths and plane sizes with
    /// and without a partial vector, NaN propagating.
    #[test]
    fn one_by_one_output_is_the_global_average() {
        fn run<const C: usize, const H: usize, const W: usize>(rng: &mut Rng) {
            let x = rng.vec(C * H * W, -3.0, 1.0);
            let mut got = vec![7.0; C + 1];
            adaptive_avg_pool2d::<C, H, W, 1, 1>(&x, &mut got);
            assert_eq!(got[C], 7.0, "wrote past the output");
            let want = r::adaptive_pool2d(C, (H, W), (1, 1), false, &x);
            r::assert_close(&got[..C], &want, &(C, H, W));
            let mut x = x;
            x[(C - 1) * H * W + H * W / 2] = f32::NAN;
            adaptive_avg_pool2d::<C, H, W, 1, 1>(&x, &mut got);
            assert!(got[C - 1].is_nan() && got[..C - 1].iter().all(|v| v.is_finite()));
        }
        let mut rng = Rng::new(82);
        run::<1, 1, 1>(&mut rng);
        run::<3, 5, 5>(&mut rng);
        run::<17, 7, 7>(&mut rng);
        run::<32, 112, 112>(&mut rng);
        run::<96, 1, 1000>(&mut rng);
        run::<240, 14, 14>(&mut rng);
    }

    #[test]
    fn windows_follow_pytorch() {
        // 5 -> 3: [0, 2), [1, 4), [3, 5).
        assert_eq!(
            (0..3).map(|i| window(i, 5, 3)).collect::<Vec<_>>(),
            [(0, 2), (1, 4), (3, 5)]
        );
        // 2 -> 3: [0, 1), [0, 2), [1, 2).
        assert_eq!(
            (0..3).map(|i| window(i, 2, 3)).collect::<Vec<_>>(),
            [(0, 1), (0, 2), (1, 2)]
        );
    }

    #[test]
    fn const_generic_instances_and_nan() {
        let x = [1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0];
        let mut avg = [0.0; 2];
        adaptive_avg_pool2d::<1, 2, 3, 1, 2>(&x, &mut avg);
        assert!(avg[0].is_nan() && avg[1].is_nan());
        let mut m = [0.0; 2];
        adaptive_max_pool2d::<1, 2, 3, 1, 2>(&x, &mut m);
        assert!(m[0].is_nan() && m[1].is_nan());
        let mut m = [0.0; 3];
        adaptive_max_pool2d::<1, 1, 3, 1, 3>(&x, &mut m);
        assert_eq!(m, [1.0, 2.0, 3.0]);
        let mut a = [0.0; 1];
        adaptive_avg_pool2d::<1, 2, 2, 1, 1>(&x, &mut a);
        assert_eq!(a, [2.5]);
    }
}
