//! Upsampling (PyTorch `nn.Upsample` / `F.interpolate`, modes `nearest` and `bilinear`)
//! of a `[C, H, W]` tensor to `[C, OH, OW]` (the sizes may also shrink).
//!
//! Source columns and weights depend only on the sizes: they are computed once per call
//! for blocks of 512 output columns into small stack tables (no allocation), then
//! every channel's output rows in that block read them. Coordinates are computed in f64,
//! so long axes do not suffer the f32 rounding PyTorch's own source coordinate has.
//!
//! Bilinear upsampling is separable, columns first as PyTorch computes it: each source
//! row is interpolated along the row once (into one of two stack rows of a column block,
//! kept while the output rows that read it go by), then each output row is the weighted
//! sum of its two interpolated source rows, in vectors (the rows' sources and weights
//! tabled once per call for blocks of 512 rows, like the columns'). The values are those of the
//! formula per output (`gy * (gx * a + fx * b) + fy * (gx * c + fx * d)`, the same
//! operations in the same order, no fused multiply-add). With the `parallel` feature a
//! large map splits by channels.

use super::simd::{self, Simd, WithSimd};
use crate::cpu::{self, Level};

/// Output columns whose source tables are computed together.
const BLOCK: usize = 512;

/// Bilinear source of output `dst` of `out` along an axis of `n` cells: the lower
/// neighbour, the upper one (`min(lower + 1, n - 1)`) and the weight of the upper one.
/// Without `align_corners` the source coordinate is `max(0, (dst + 0.5) * n / out - 0.5)`,
/// with it `dst * (n - 1) / (out - 1)` (0 when `out == 1`).
#[inline(always)]
fn bilinear_coord(dst: usize, n: usize, out: usize, align_corners: bool) -> (usize, usize, f32) {
    let src = if align_corners {
        if out > 1 {
            (dst * (n - 1)) as f64 / (out - 1) as f64
        } else {
            0.0
        }
    } else {
        ((dst as f64 + 0.5) * n as f64 / out as f64 - 0.5).max(0.0)
    };
    let lo = (src as usize).min(n - 1);
    (lo, (lo + 1).min(n - 1), (src - lo as f64) as f32)
}

/// Nearest upsampling with its dimensions as runtime values.
#[inline(always)]
fn nearest_dyn(
    (c, h, w, oh, ow): (usize, usize, usize, usize, usize),
    input: &[f32],
    output: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    let input = &input[..c * hw];
    let output = &mut output[..c * ohw];
    if ow == w || ow.is_multiple_of(w) {
        // Each source value repeated `ow / w` times (a copy when 1).
        let k = ow / w;
        for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
            for (oy, out_row) in out_plane.chunks_exact_mut(ow).enumerate() {
                let src = &in_plane[oy * h / oh * w..][..w];
                if k == 1 {
                    out_row.copy_from_slice(src);
                } else {
                    for (dst, &x) in out_row.chunks_exact_mut(k).zip(src) {
                        dst.fill(x);
                    }
                }
            }
        }
        return;
    }
    let mut idx = [0u32; BLOCK];
    for x0 in (0..ow).step_by(BLOCK) {
        let n = BLOCK.min(ow - x0);
        let idx = &mut idx[..n];
        for (j, i) in idx.iter_mut().enumerate() {
            *i = ((x0 + j) * w / ow) as u32;
        }
        for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
            for (oy, out_row) in out_plane.chunks_exact_mut(ow).enumerate() {
                let src = &in_plane[oy * h / oh * w..][..w];
                for (y, &i) in out_row[x0..x0 + n].iter_mut().zip(&*idx) {
                    *y = src[i as usize];
                }
            }
        }
    }
}

/// Bilinear upsampling with its dimensions as runtime values, at `level`: with the
/// `parallel` feature and a large output, the channels in one range per thread (each
/// plane computed as on one thread).
fn bilinear_dyn(
    level: Level,
    (c, h, w, oh, ow): (usize, usize, usize, usize, usize),
    align_corners: bool,
    input: &[f32],
    output: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    let input = &input[..c * hw];
    let output = &mut output[..c * ohw];
    #[cfg(feature = "parallel")]
    {
        let split = super::split_planes(c, ohw, output, &|first, out| {
            let planes = out.len() / ohw;
            let run = Bilinear {
                dims: (planes, h, w, oh, ow),
                align_corners,
                input: &input[first * hw..][..planes * hw],
                output: out,
            };
            simd::run(level, run);
        });
        if split {
            return;
        }
    }
    let run = Bilinear {
        dims: (c, h, w, oh, ow),
        align_corners,
        input,
        output,
    };
    simd::run(level, run);
}

/// Bilinear upsampling of whole planes (see the module docs) as a kernel for
/// [`simd::run`]: `input` holds `C*H*W` floats, `output` `C*OH*OW`.
struct Bilinear<'a> {
    dims: (usize, usize, usize, usize, usize),
    align_corners: bool,
    input: &'a [f32],
    output: &'a mut [f32],
}

impl WithSimd for Bilinear<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Bilinear {
            dims: (_, h, w, oh, ow),
            align_corners,
            input,
            output,
        } = self;
        let (hw, ohw) = (h * w, oh * ow);
        let l = S::LANES;
        let mut lo = [0u32; BLOCK];
        let mut hi = [0u32; BLOCK];
        let mut frac = [0.0f32; BLOCK];
        // The same for up to `BLOCK` output rows, computed once for every plane.
        let mut ylo = [0u32; BLOCK];
        let mut yhi = [0u32; BLOCK];
        let mut yfrac = [0.0f32; BLOCK];
        // Two source rows interpolated along the block's columns, and which rows they are.
        let mut rows = [[0.0f32; BLOCK]; 2];
        for x0 in (0..ow).step_by(BLOCK) {
            let n = BLOCK.min(ow - x0);
            for j in 0..n {
                let (l, u, f) = bilinear_coord(x0 + j, w, ow, align_corners);
                (lo[j], hi[j], frac[j]) = (l as u32, u as u32, f);
            }
            let (lo, hi, frac) = (&lo[..n], &hi[..n], &frac[..n]);
            for y0 in (0..oh).step_by(BLOCK) {
                let ny = BLOCK.min(oh - y0);
                for j in 0..ny {
                    let (l, u, f) = bilinear_coord(y0 + j, h, oh, align_corners);
                    (ylo[j], yhi[j], yfrac[j]) = (l as u32, u as u32, f);
                }
                for (out_plane, in_plane) in
                    output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw))
                {
                    let mut held = [usize::MAX; 2];
                    // The slot holding source row `y` interpolated, filled unless held
                    // (never the slot of `keep`, the other row the output row needs).
                    let mut row_slot = |y: usize, keep: usize, rows: &mut [[f32; BLOCK]; 2]| {
                        if let Some(k) = held.iter().position(|&r| r == y) {
                            return k;
                        }
                        let k = usize::from(held[0] == keep);
                        let src = &in_plane[y * w..][..w];
                        for (((t, &l), &u), &f) in rows[k][..n].iter_mut().zip(lo).zip(hi).zip(frac)
                        {
                            // SAFETY: `bilinear_coord` gives sources below `w`, the row's length.
                            let (a, b) = unsafe {
                                (
                                    *src.get_unchecked(l as usize),
                                    *src.get_unchecked(u as usize),
                                )
                            };
                            *t = (1.0 - f) * a + f * b;
                        }
                        held[k] = y;
                        k
                    };
                    let band = &mut out_plane[y0 * ow..(y0 + ny) * ow];
                    for (j, out_row) in band.chunks_exact_mut(ow).enumerate() {
                        let (y0, y1, fy) = (ylo[j] as usize, yhi[j] as usize, yfrac[j]);
                        let out_row = &mut out_row[x0..x0 + n];
                        let k0 = row_slot(y0, y1, &mut rows);
                        if y0 == y1 {
                            out_row.copy_from_slice(&rows[k0][..n]);
                            continue;
                        }
                        let k1 = row_slot(y1, y0, &mut rows);
                        let (r0, r1) = (&rows[k0][..n], &rows[k1][..n]);
                        let (gy, fy) = (s.splat(1.0 - fy), s.splat(fy));
                        let mut j = 0;
                        while j < n {
                            let m = l.min(n - j);
                            // SAFETY: `j + m <= n`, the length of `r0`, `r1` and `out_row`.
                            unsafe {
                                let (a, b) = if m == l {
                                    (s.load(r0.as_ptr().add(j)), s.load(r1.as_ptr().add(j)))
                                } else {
                                    (
                                        s.load_n(r0.as_ptr().add(j), m),
                                        s.load_n(r1.as_ptr().add(j), m),
                                    )
                                };
                                let v = s.add(s.mul(gy, a), s.mul(fy, b));
                                if m == l {
                                    s.store(out_row.as_mut_ptr().add(j), v);
                                } else {
                                    s.store_n(out_row.as_mut_ptr().add(j), v, m);
                                }
                            }
                            j += m;
                        }
                    }
                }
            }
        }
    }
}

/// Nearest-neighbour upsampling, PyTorch `Upsample(size=(OH, OW), mode='nearest')`:
/// `output[c][i][j] = input[c][floor(i*H/OH)][floor(j*W/OW)]` (exact integer arithmetic).
///
/// `input` holds at least `C*H*W` values and `output` at least `C*OH*OW`.
///
/// # Panics
///
/// If a slice is too short.
pub fn upsample_nearest2d<
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
    nearest_dyn((C, H, W, OH, OW), input, output);
}

/// Bilinear upsampling, PyTorch `Upsample(size=(OH, OW), mode='bilinear',
/// align_corners=ALIGN_CORNERS)`: along each axis the source coordinate of output `d` is
/// `max(0, (d + 0.5) * in / out - 0.5)`, or with `ALIGN_CORNERS` `d * (in - 1) / (out - 1)`
/// (0 when `out == 1`); it interpolates linearly between `floor` of it and the next cell
/// (clamped to the last), rows after columns as PyTorch does. With `H = 1` it is exact
/// 1-D linear interpolation (`mode='linear'`).
///
/// `input` holds at least `C*H*W` values and `output` at least `C*OH*OW`.
///
/// # Panics
///
/// If a slice is too short.
pub fn upsample_bilinear2d<
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
    const ALIGN_CORNERS: bool,
>(
    input: &[f32],
    output: &mut [f32],
) {
    const { assert!(C > 0 && H > 0 && W > 0 && OH > 0 && OW > 0) }
    bilinear_dyn(
        cpu::level(),
        (C, H, W, OH, OW),
        ALIGN_CORNERS,
        input,
        output,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Rng};

    fn check(rng: &mut Rng, dims: (usize, usize, usize, usize, usize)) {
        let (c, h, w, oh, ow) = dims;
        let x = rng.vec(c * h * w, -2.0, 2.0);
        let n = c * oh * ow;
        let mut got = vec![7.0; n + 1];
        nearest_dyn(dims, &x, &mut got);
        assert_eq!(got[n], 7.0, "wrote past the output");
        let want = r::upsample_nearest(c, (h, w), (oh, ow), &x);
        r::assert_close(&got[..n], &want, &("nearest", dims));
        for align in [false, true] {
            let want = r::upsample_bilinear(c, (h, w), (oh, ow), align, &x);
            let mut first: Option<Vec<f32>> = None;
            for level in simd::test_levels() {
                let mut got = vec![7.0; n + 1];
                bilinear_dyn(level, dims, align, &x, &mut got);
                assert_eq!(got[n], 7.0, "wrote past the output");
                r::assert_close(&got[..n], &want, &("bilinear", dims, align, level));
                // No fused multiply-add: the same values at every level.
                match &first {
                    Some(f) => assert!(f[..] == got[..n], "{dims:?} {align}: {level:?}"),
                    None => first = Some(got[..n].to_vec()),
                }
            }
        }
    }

    #[test]
    fn sweep_against_reference() {
        let mut rng = Rng::new(91);
        let sizes = [1, 2, 3, 4, 5, 7, 8, 12, 15];
        for &h in &sizes {
            for &w in &sizes {
                for &oh in &sizes {
                    for &ow in &sizes {
                        let c = 1 + rng.below(2);
                        check(&mut rng, (c, h, w, oh, ow));
                    }
                }
            }
        }
        // 1-D and long rows across the table blocks.
        for (w, ow) in [
            (784, 1568),
            (100, 1023),
            (513, 1025),
            (1000, 999),
            (3, 2000),
            (16000, 32000),
        ] {
            check(&mut rng, (2, 1, w, 1, ow));
        }
        check(&mut rng, (3, 9, 300, 20, 700));
        // Columns and rows across the row tables' blocks.
        check(&mut rng, (2, 300, 3, 1100, 5));
    }

    /// Split by channels over 2 and 3 threads, bilinear upsampling gives the one-thread
    /// result bit for bit, at every level.
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_give_the_one_thread_result_bit_for_bit() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(92);
        for dims in [
            (32, 32, 32, 64, 64),
            (9, 20, 30, 80, 67),
            (3, 64, 64, 128, 100),
        ] {
            let (c, h, w, oh, ow) = dims;
            let x = rng.vec(c * h * w, -1.0, 1.0);
            for align in [false, true] {
                for level in simd::test_levels() {
                    r::assert_threads_match_one(c * oh * ow, &(dims, align, level), |out| {
                        bilinear_dyn(level, dims, align, &x, out)
                    });
                }
            }
        }
    }

    #[test]
    fn one_d_is_linear_interpolation() {
        // align_corners: 0, 1, 2 -> 0, 0.5, 1, 1.5, 2.
        let mut y = [0.0; 5];
        upsample_bilinear2d::<1, 1, 3, 1, 5, true>(&[0.0, 1.0, 2.0], &mut y);
        assert_eq!(y, [0.0, 0.5, 1.0, 1.5, 2.0]);
        // Half-pixel: 2 -> 4: sources 0, 0.25, 0.75, 1 (clamped at both ends).
        let mut y = [0.0; 4];
        upsample_bilinear2d::<1, 1, 2, 1, 4, false>(&[0.0, 4.0], &mut y);
        assert_eq!(y, [0.0, 1.0, 3.0, 4.0]);
        let mut y = [0.0; 6];
        upsample_nearest2d::<1, 1, 3, 2, 3>(&[1.0, 2.0, 3.0], &mut y);
        assert_eq!(y, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    }
}
