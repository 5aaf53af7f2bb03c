//! The input transform `Bᵀ d B` (phase rows, vectorised over tiles) and the output
//! transform `Aᵀ M A` (vectorised over output channels, with bias and activation, stored
//! as whole vector rows of pixels after an in-register transpose), with
//! their vector helpers.

use super::*;
use crate::kernels::engine::{copy_floats, zero_floats};

/// `a - b`, exactly as a subtraction (the product by -1 is exact).
#[inline(always)]
pub(super) fn sub<S: Simd>(s: S, a: S::V, b: S::V) -> S::V {
    s.mul_add(s.splat(-1.0), b, a)
}

/// `Bᵀ d` for six vectors.
#[inline(always)]
pub(super) fn bt<S: Simd>(s: S, d: [S::V; ALPHA]) -> [S::V; ALPHA] {
    let (four, m4, m5, two) = (s.splat(4.0), s.splat(-4.0), s.splat(-5.0), s.splat(2.0));
    let d12 = s.add(d[1], d[2]);
    let d34 = s.add(d[3], d[4]);
    let d1m2 = sub(s, d[1], d[2]);
    let d4m3 = sub(s, d[4], d[3]);
    let d3m1 = sub(s, d[3], d[1]);
    let d4m2 = sub(s, d[4], d[2]);
    [
        s.mul_add(four, d[0], s.mul_add(m5, d[2], d[4])),
        s.mul_add(m4, d12, d34),
        s.mul_add(four, d1m2, d4m3),
        s.mul_add(two, d3m1, d4m2),
        s.mul_add(s.splat(-2.0), d3m1, d4m2),
        s.mul_add(four, d[1], s.mul_add(m5, d[3], d[5])),
    ]
}

/// `Aᵀ m` for six vectors.
#[inline(always)]
pub(super) fn at<S: Simd>(s: S, m: [S::V; ALPHA]) -> [S::V; M] {
    let p12 = s.add(m[1], m[2]);
    let p34 = s.add(m[3], m[4]);
    let m12 = sub(s, m[1], m[2]);
    let m34 = sub(s, m[3], m[4]);
    [
        s.add(s.add(m[0], p12), p34),
        s.mul_add(s.splat(2.0), m34, m12),
        s.mul_add(s.splat(4.0), p34, p12),
        s.add(s.mul_add(s.splat(8.0), m34, m12), m[5]),
    ]
}

/// Floats of the stack buffer a part of a split input transform other than the first
/// uses for its phase rows and padded line (64 KiB, as the engine's band buffer).
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
pub(super) const PART_FLOATS: usize = 16 * 1024;

/// A part's phase rows and line when they are not the scratch's.
#[repr(C, align(64))]
pub(super) struct PartBuf(pub(super) [f32; PART_FLOATS]);

/// One block's input transform for channels `c0..c1`: their phase rows (in `phase` and
/// `line`, this part's own) and their rows of `V`.
#[derive(Clone, Copy)]
pub(super) struct WgInput<'a> {
    pub(super) d: WgDims,
    pub(super) lay: &'a Layout,
    pub(super) input: &'a [f32],
    pub(super) phase: *mut f32,
    pub(super) line: *mut f32,
    pub(super) v: *mut f32,
    pub(super) ty0: usize,
    pub(super) nb: usize,
    pub(super) c0: usize,
    pub(super) c1: usize,
}

impl WithSimd for WgInput<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let WgInput {
            d,
            lay,
            input,
            phase,
            line,
            v,
            ty0,
            nb,
            c0,
            c1,
        } = self;
        let l = S::LANES;
        let hw = d.h * d.w;
        let (tw, twp) = (lay.tw, lay.twp);
        let tb = nb * tw;
        // SAFETY: `phase` and `line` hold the phase rows and the line of a block of `nb`
        // tile rows (with their slack), owned by this part; `V` holds `36 C tb` floats
        // (plus slack), of which this part writes the rows of its channels only.
        unsafe {
            // Input transform.
            let nrows = M * nb + 2;
            for c in c0..c1 {
                let plane = &input[c * hw..(c + 1) * hw];
                for r in 0..nrows {
                    // Phase rows: `[r][k][twp]`, phase k column j = padded column 4j + k.
                    let dst = phase.add(r * M * twp);
                    let iy = (M * ty0 + r).wrapping_sub(d.ph);
                    if iy >= d.h {
                        zero_floats(s, dst, M * twp);
                        continue;
                    }
                    // The padded row in `line` (4 twp floats): input column x at pw + x.
                    let len = M * twp;
                    let left = d.pw.min(len);
                    let n = d.w.min(len - left);
                    zero_floats(s, line, left);
                    copy_floats(s, plane.as_ptr().add(iy * d.w), line.add(left), n);
                    zero_floats(s, line.add(left + n), len - left - n);
                    // Split into four phases, 4 * LANES columns at a time (twp is a
                    // multiple of 16, so of LANES).
                    for j in (0..twp).step_by(l) {
                        let p = line.add(M * j);
                        let (e1, o1) = s.deinterleave(s.load(p), s.load(p.add(l)));
                        let (e2, o2) = s.deinterleave(s.load(p.add(2 * l)), s.load(p.add(3 * l)));
                        let (p0, p2) = s.deinterleave(e1, e2);
                        let (p1, p3) = s.deinterleave(o1, o2);
                        s.store(dst.add(j), p0);
                        s.store(dst.add(twp + j), p1);
                        s.store(dst.add(2 * twp + j), p2);
                        s.store(dst.add(3 * twp + j), p3);
                    }
                }
                for ty in 0..nb {
                    let rows = phase.add(M * ty * M * twp);
                    for tx0 in (0..tw).step_by(l) {
                        let n = l.min(tw - tx0);
                        // Columns k of the tiles' 6x6 inputs, transformed along y.
                        // (No `array::from_fn` with vector code in the closure: closures
                        // do not inherit the target features, the intrinsics would be
                        // calls.)
                        let mut rows_t = [[s.zero(); ALPHA]; ALPHA];
                        for k in 0..ALPHA {
                            // Phase k % 4 at tile tx + k / 4 (reads at most one
                            // vector past `tw`, inside the phase row or its slack).
                            let col = (k % M) * twp + tx0 + k / M;
                            let mut dk = [s.zero(); ALPHA];
                            for (i, x) in dk.iter_mut().enumerate() {
                                *x = s.load(rows.add(i * M * twp + col));
                            }
                            for (row, x) in rows_t.iter_mut().zip(bt(s, dk)) {
                                row[k] = x;
                            }
                        }
                        for (i, &ri) in rows_t.iter().enumerate() {
                            let f = bt(s, ri);
                            for (j, &fj) in f.iter().enumerate() {
                                // V[ξ][c][t]: inside `V` (t + n <= tb).
                                let p = v.add(((i * ALPHA + j) * d.c + c) * tb + ty * tw + tx0);
                                s.store_n(p, fj, n);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One block's output transform for tiles `t0..t1`: bias, activation, scatter into
/// their output pixels.
#[derive(Clone, Copy)]
pub(super) struct WgOutput<'a> {
    pub(super) d: WgDims,
    pub(super) lay: &'a Layout,
    pub(super) m: *const f32,
    pub(super) bias: *const f32,
    pub(super) out: *mut f32,
    pub(super) ty0: usize,
    pub(super) nb: usize,
    pub(super) t0: usize,
    pub(super) t1: usize,
    pub(super) act: Act,
}

impl WithSimd for WgOutput<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let WgOutput {
            d,
            lay,
            m,
            bias,
            out,
            ty0,
            nb,
            t0,
            t1,
            act,
        } = self;
        let l = S::LANES;
        let ohw = d.oh * d.ow;
        let (tw, opad) = (lay.tw, lay.opad);
        let tb = nb * tw;
        // `LANES / 4` tiles of one tile row at a time (fewer at the row's or the part's
        // end): for each pixel row, their `LANES` pixels by `LANES` channels, transposed
        // in registers, are `LANES` channel rows of `LANES` consecutive output pixels,
        // one vector store each (stores of 4 pixels through a buffer cost 3x more).
        let group = l / M;
        let mut t = t0;
        while t < t1 {
            let (ty, tx) = (ty0 + t / tw, t % tw);
            let g = group.min(tw - tx).min(t1 - t);
            let (y0, x0) = (M * ty, M * tx);
            let ny = M.min(d.oh - y0);
            let nx = (d.ow - x0).min(M * g);
            for o0 in (0..d.o).step_by(l) {
                let no = l.min(d.o - o0);
                // SAFETY: bias row inside the packed bias (o0 + LANES <= opad).
                let b = unsafe { s.load(bias.add(o0)) };
                let mut px = [[s.zero(); PANEL]; PANEL / M];
                for (k, pk) in px.iter_mut().enumerate().take(g) {
                    // SAFETY: tile t + k < t1 <= tb, o0 + LANES <= opad.
                    *pk = unsafe { tile_pixels(s, m, (tb, opad), t + k, o0, b, act) };
                }
                for y in 0..ny {
                    let mut q = [s.zero(); PANEL];
                    for (i, qi) in q.iter_mut().enumerate().take(l) {
                        *qi = px[i / M][y * M + i % M];
                    }
                    s.transpose(&mut q[..l]);
                    // SAFETY: output (o0 + ch, y0 + y, x0 .. x0 + nx) for ch < no, y < ny:
                    // inside the output, and pixels of this part's tiles.
                    unsafe {
                        let dst = out.add(o0 * ohw + (y0 + y) * d.ow + x0);
                        for (ch, &row) in q.iter().enumerate().take(no) {
                            if nx == l {
                                s.store(dst.add(ch * ohw), row);
                            } else {
                                s.store_n(dst.add(ch * ohw), row, nx);
                            }
                        }
                    }
                }
            }
            t += g;
        }
    }
}

/// The output transform of tile `t` for the output channels `o0 .. o0 + LANES`, plus
/// the bias row `b` and the activation: pixel `(y, x)` of the tile at `[y * 4 + x]`.
///
/// # Safety
///
/// `m` holds `[36][tb][opad]` floats (`dims = (tb, opad)`), `t < tb`, `o0 + LANES <= opad`.
#[inline(always)]
unsafe fn tile_pixels<S: Simd>(
    s: S,
    m: *const f32,
    (tb, opad): (usize, usize),
    t: usize,
    o0: usize,
    b: S::V,
    act: Act,
) -> [S::V; PANEL] {
    let mut a = [[s.zero(); ALPHA]; M];
    for j in 0..ALPHA {
        let mut mj = [s.zero(); ALPHA];
        for (i, x) in mj.iter_mut().enumerate() {
            // SAFETY: M[ξ][t][o0..]: inside `M`, as the caller guarantees.
            *x = unsafe { s.load(m.add(((i * ALPHA + j) * tb + t) * opad + o0)) };
        }
        for (ay, x) in a.iter_mut().zip(at(s, mj)) {
            ay[j] = x;
        }
    }
    let mut px = [s.zero(); PANEL];
    for (y, ay) in a.iter().enumerate() {
        let r = at(s, *ay);
        for (x, &rx) in r.iter().enumerate() {
            px[y * M + x] = s.act(s.add(rx, b), act);
        }
    }
    px
}
