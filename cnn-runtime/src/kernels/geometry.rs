//! The geometry of windowed 2-D operations, shared by the convolution kernels, the
//! convolution engine and the pools: their dimensions ([`Dims2d`]) and the arithmetic of
//! kernel taps over padded, strided axes.

/// Dimensions of a windowed 2-D operation (convolution or pool) as runtime values.
///
/// The public kernels fill it with their const generics and call an `#[inline(always)]`
/// worker, so LLVM sees constants; tests call the workers directly to sweep shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims2d {
    /// Input channels.
    pub(crate) c: usize,
    /// Input height.
    pub(crate) h: usize,
    /// Input width.
    pub(crate) w: usize,
    /// Output channels (`c` for depthwise convolutions and pools).
    pub(crate) o: usize,
    /// Output height.
    pub(crate) oh: usize,
    /// Output width.
    pub(crate) ow: usize,
    /// Kernel height.
    pub(crate) kh: usize,
    /// Kernel width.
    pub(crate) kw: usize,
    /// Vertical stride.
    pub(crate) sh: usize,
    /// Horizontal stride.
    pub(crate) sw: usize,
    /// Top padding (the bottom padding is implied by `oh`).
    pub(crate) ph: usize,
    /// Left padding (the right padding is implied by `ow`).
    pub(crate) pw: usize,
    /// Vertical dilation.
    pub(crate) dh: usize,
    /// Horizontal dilation.
    pub(crate) dw: usize,
    /// Groups (`c` for depthwise convolutions and pools).
    pub(crate) g: usize,
}

impl Dims2d {
    /// Padded input rows that `r >= 1` consecutive output rows read.
    #[inline(always)]
    pub(crate) fn rows_in(&self, r: usize) -> usize {
        (r - 1) * self.sh + (self.kh - 1) * self.dh + 1
    }

    /// Padded input columns that all `ow` output columns read.
    #[inline(always)]
    pub(crate) fn cols_in(&self) -> usize {
        (self.ow - 1) * self.sw + (self.kw - 1) * self.dw + 1
    }
}

/// For a kernel tap at offset `off` (`k * dilation`) along one axis of an input of `n`
/// cells with leading padding `p`, stride `s` and `out` outputs: the output positions
/// `[lo, hi)` whose tap lands inside the input, and the input index of position `lo`
/// (meaningful only when `lo < hi`).
#[inline(always)]
pub(crate) fn tap_range(
    off: usize,
    p: usize,
    s: usize,
    n: usize,
    out: usize,
) -> (usize, usize, usize) {
    // Output x reads input x*s + off - p, valid when 0 <= x*s + off - p <= n - 1.
    if n + p <= off {
        return (0, 0, 0);
    }
    let hi = ((n - 1 + p - off) / s + 1).min(out);
    let lo = if off >= p { 0 } else { (p - off).div_ceil(s) };
    if lo >= hi {
        (0, 0, 0)
    } else {
        (lo, hi, lo * s + off - p)
    }
}

/// `f(&mut out[i], src[start + i * s])` for every `i` in `0..out.len()`: one kernel tap
/// applied to a run of output cells. Contiguous (vectorisable) when `s == 1`.
#[inline(always)]
pub(crate) fn combine_taps(
    out: &mut [f32],
    src: &[f32],
    start: usize,
    s: usize,
    f: impl Fn(&mut f32, f32),
) {
    if out.is_empty() {
        return;
    }
    if s == 1 {
        let src = &src[start..start + out.len()];
        for (y, &x) in out.iter_mut().zip(src) {
            f(y, x);
        }
    } else {
        let src = &src[start..start + (out.len() - 1) * s + 1];
        for (y, &x) in out.iter_mut().zip(src.iter().step_by(s)) {
            f(y, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_range_matches_brute_force() {
        for n in 1usize..7 {
            for out in 1..9 {
                for s in 1..4 {
                    for p in 0..4 {
                        for off in 0..10 {
                            let valid: Vec<usize> = (0..out)
                                .filter(|&x: &usize| (x * s + off).wrapping_sub(p) < n)
                                .collect();
                            let (lo, hi, start) = tap_range(off, p, s, n, out);
                            assert_eq!(
                                (lo..hi).collect::<Vec<_>>(),
                                valid,
                                "{n} {out} {s} {p} {off}"
                            );
                            if lo < hi {
                                assert_eq!(start, lo * s + off - p);
                            }
                        }
                    }
                }
            }
        }
    }
}
