//! Pooling windows of any size, stride, padding and dilation over the engine's padded,
//! phase-split bands ([`copy_band`], padded with -inf for max, 0 for sums): every tap of
//! the window is then a contiguous run of one phase row, so each output row is whole
//! vectors of NaN-propagating maxima or of sums, with no per-element bounds or branches.

#[allow(unused_imports)]
use super::*;

/// Max pooling (`max`), or the window sums of an average pooling (else; the caller
/// divides), of `d` per channel (`d.o` and `d.g` ignored): `output[c][y][x]` combines
/// `input[c][y*SH + ky*DH - PH][x*SW + kx*DW - PW]` over the taps in order (`ky` outer,
/// `kx` inner), taps outside the input reading -inf (max) or 0 (sums). NaN propagates
/// through the maxima. `false` (nothing written) when the band of one output row does
/// not fit the engine's band buffer. Only output rows `rows.0..rows.1` of every plane
/// are computed and written (a part of a split over threads; `(0, d.oh)`: all).
///
/// # Safety
///
/// `output` must be valid for writes of `d.c * d.oh * d.ow` floats, and no other thread
/// may access rows `rows.0..rows.1` of its planes during the call; `rows.1 <= d.oh`.
#[inline(always)]
pub(crate) unsafe fn pool<S: Simd>(
    s: S,
    d: Dims2d,
    input: &[f32],
    output: *mut f32,
    rows: (usize, usize),
    max: bool,
) -> bool {
    let l = S::LANES;
    let (hw, ohw) = (d.h * d.w, d.oh * d.ow);
    let input = &input[..d.c * hw];
    if d.oh == 0 || d.ow == 0 || d.kh == 0 || d.kw == 0 {
        return false;
    }
    if d.kh * d.kw > MAX_TAPS {
        return false;
    }
    let wp = d.cols_in();
    let wq = wp.div_ceil(d.sw);
    let rowpitch = d.sw * wq;
    let Some(band_rows) = band_rows_in(&d, rowpitch, SCRATCH) else {
        return false;
    };
    // Each tap's offset in the band from its output row's first pixel: kernel row `ky`
    // rows down, phase `t % SW` of the row, column `t / SW` (`t = kx * DW`).
    let mut taps_buf = [0usize; MAX_TAPS];
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            let t = kx * d.dw;
            taps_buf[ky * d.kw + kx] = ky * d.dh * rowpitch + (t % d.sw) * wq + t / d.sw;
        }
    }
    let taps = &taps_buf[..d.kh * d.kw];
    let pad = if max { f32::NEG_INFINITY } else { 0.0 };
    let init = s.splat(pad);
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let scratch = scratch.as_mut_ptr().cast::<f32>();
    for (c, plane) in input.chunks_exact(hw).enumerate() {
        // SAFETY: plane `c < d.c` of the output, inside its `d.c * ohw` floats.
        let out = unsafe { output.add(c * ohw) };
        for y0 in (rows.0..rows.1).step_by(band_rows) {
            let y1 = (y0 + band_rows).min(rows.1);
            let prow0 = y0 * d.sh;
            // SAFETY: `rows_in(y1 - y0) * rowpitch <= SCRATCH` by the choice of
            // `band_rows`, so the copy stays in `scratch`.
            unsafe { copy_band(s, &d, plane, 1, prow0, d.rows_in(y1 - y0), wq, scratch, pad) };
            for oy in y0..y1 {
                // SAFETY: output row `oy < rows.1 <= OH` of this plane, this call's
                // alone (the caller's contract).
                let row = unsafe { core::slice::from_raw_parts_mut(out.add(oy * d.ow), d.ow) };
                let base = (oy * d.sh - prow0) * rowpitch;
                let mut x0 = 0;
                while x0 < d.ow {
                    let n = l.min(d.ow - x0);
                    let mut acc = init;
                    for &off in taps {
                        // SAFETY: band row `oy * SH - prow0 + ky * DH < d.rows_in(y1 - y0)`
                        // (output row `oy < y1`, `ky < KH`); in it phase `t % SW`,
                        // columns `x0 + t / SW ..` + n, below `wq` since their padded
                        // columns `x * SW + t <= (OW - 1) * SW + (KW - 1) * DW < wq * SW`;
                        // all written by `copy_band`.
                        let v = unsafe {
                            let p = scratch.add(base + off + x0);
                            if n == l {
                                s.load(p)
                            } else {
                                s.load_n(p, n)
                            }
                        };
                        acc = if max {
                            s.max_nan(acc, v)
                        } else {
                            s.add(acc, v)
                        };
                    }
                    // SAFETY: outputs x0 .. x0 + n of `row` (n <= OW - x0).
                    unsafe {
                        let y = row.as_mut_ptr().add(x0);
                        if n == l {
                            s.store(y, acc);
                        } else {
                            s.store_n(y, acc, n);
                        }
                    }
                    x0 += n;
                }
            }
        }
    }
    true
}
