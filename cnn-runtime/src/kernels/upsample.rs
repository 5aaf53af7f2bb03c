//! Upsampling (PyTorch `nn.Upsample` / `F.interpolate`, modes `nearest` and `bilinear`)
//! of a `[C, H, W]` tensor to `[C, OH, OW]` (the sizes may also shrink).
//!
//! Source columns and weights depend only on the sizes: they are computed once per call
//! for blocks of 512 output columns into small stack tables (no allocation), then
//! every channel's output rows in that block read them. Rows are handled one output row
//! at a time (one or two source rows, their weights computed per row). Coordinates are
//! computed in f64, so long axes do not suffer the f32 rounding PyTorch's own source
//! coordinate has.

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

/// Bilinear upsampling with its dimensions as runtime values.
#[inline(always)]
fn bilinear_dyn(
    (c, h, w, oh, ow): (usize, usize, usize, usize, usize),
    align_corners: bool,
    input: &[f32],
    output: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    let input = &input[..c * hw];
    let output = &mut output[..c * ohw];
    let mut lo = [0u32; BLOCK];
    let mut hi = [0u32; BLOCK];
    let mut frac = [0.0f32; BLOCK];
    for x0 in (0..ow).step_by(BLOCK) {
        let n = BLOCK.min(ow - x0);
        let (lo, hi, frac) = (&mut lo[..n], &mut hi[..n], &mut frac[..n]);
        for j in 0..n {
            let (l, u, f) = bilinear_coord(x0 + j, w, ow, align_corners);
            (lo[j], hi[j], frac[j]) = (l as u32, u as u32, f);
        }
        let (lo, hi, frac) = (&*lo, &*hi, &*frac);
        for (out_plane, in_plane) in output.chunks_exact_mut(ohw).zip(input.chunks_exact(hw)) {
            for (oy, out_row) in out_plane.chunks_exact_mut(ow).enumerate() {
                let (y0, y1, fy) = bilinear_coord(oy, h, oh, align_corners);
                let r0 = &in_plane[y0 * w..][..w];
                let out_row = &mut out_row[x0..x0 + n];
                let cols = lo.iter().zip(hi).zip(frac);
                if y0 == y1 {
                    for (y, ((&l, &u), &f)) in out_row.iter_mut().zip(cols) {
                        *y = (1.0 - f) * r0[l as usize] + f * r0[u as usize];
                    }
                } else {
                    let r1 = &in_plane[y1 * w..][..w];
                    let gy = 1.0 - fy;
                    for (y, ((&l, &u), &f)) in out_row.iter_mut().zip(cols) {
                        let (l, u, g) = (l as usize, u as usize, 1.0 - f);
                        *y = gy * (g * r0[l] + f * r0[u]) + fy * (g * r1[l] + f * r1[u]);
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
    bilinear_dyn((C, H, W, OH, OW), ALIGN_CORNERS, input, output);
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
            bilinear_dyn(dims, align, &x, &mut got);
            assert_eq!(got[n], 7.0, "wrote past the output");
            let want = r::upsample_bilinear(c, (h, w), (oh, ow), align, &x);
            r::assert_close(&got[..n], &want, &("bilinear", dims, align));
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
