//! The input transform `Bᵀ d B` (phase rows, vectorised over tiles) and the output
//! transform `Aᵀ M A` (vectorised over output channels, with bias and activation, stored
//! as whole vector rows of pixels after an in-register transpose), with
//! their vector helpers.

use super::*;
use crate::kernels::engine::{copy_floats, zero_floats};
use core::mem::MaybeUninit;

/// `a - b`, exactly as a subtraction (the product by -1 is exact).
#[inline(always)]
pub(super) fn sub<S: Simd>(s: S, a: S::V, b: S::V) -> S::V {
    s.mul_add(s.splat(-1.0), b, a)
}

/// `Bᵀ d` for six vectors (F(4, 3) on the points `0, 1, -1, 1/2, -2, ∞`, see
/// [`G`](super::params::G)).
#[inline(always)]
pub(super) fn bt<S: Simd>(s: S, d: [S::V; ALPHA]) -> [S::V; ALPHA] {
    let (half, m2, one5) = (s.splat(0.5), s.splat(-2.0), s.splat(1.5));
    let d3m1 = sub(s, d[3], d[1]);
    let d4m2 = sub(s, d[4], d[2]);
    [
        // d0 - 3/2 d1 - 2 d2 + 3/2 d3 + d4
        s.mul_add(one5, d3m1, s.mul_add(m2, d[2], s.add(d[0], d[4]))),
        // -d1 + 1/2 d2 + 5/2 d3 + d4
        s.mul_add(
            s.splat(2.5),
            d[3],
            s.mul_add(half, d[2], sub(s, d[4], d[1])),
        ),
        // d1 - 5/2 d2 + 1/2 d3 + d4
        s.mul_add(
            half,
            d[3],
            s.mul_add(s.splat(-2.5), d[2], s.add(d[4], d[1])),
        ),
        // -2 d1 - d2 + 2 d3 + d4
        s.mul_add(s.splat(2.0), d3m1, d4m2),
        // 1/2 d1 - d2 - 1/2 d3 + d4
        s.mul_add(s.splat(-0.5), d3m1, d4m2),
        // d1 - 3/2 d2 - 2 d3 + 3/2 d4 + d5
        s.mul_add(one5, d4m2, s.mul_add(m2, d[3], s.add(d[1], d[5]))),
    ]
}

/// `Aᵀ m` for six vectors (rows `p^j` of the points `0, 1, -1, 1/2, -2`; `∞` adds to
/// the last).
#[inline(always)]
pub(super) fn at<S: Simd>(s: S, m: [S::V; ALPHA]) -> [S::V; M] {
    let p12 = s.add(m[1], m[2]);
    let m12 = sub(s, m[1], m[2]);
    [
        s.add(s.add(m[0], p12), s.add(m[3], m[4])),
        s.mul_add(s.splat(-2.0), m[4], s.mul_add(s.splat(0.5), m[3], m12)),
        s.mul_add(s.splat(4.0), m[4], s.mul_add(s.splat(0.25), m[3], p12)),
        s.add(
            s.mul_add(s.splat(-8.0), m[4], s.mul_add(s.splat(0.125), m[3], m12)),
            m[5],
        ),
    ]
}

/// `Bᵀ d` of F(2, 3) for the first four vectors (the others returned zero).
#[inline(always)]
pub(super) fn bt2<S: Simd>(s: S, d: [S::V; ALPHA]) -> [S::V; ALPHA] {
    [
        sub(s, d[0], d[2]),
        s.add(d[1], d[2]),
        sub(s, d[2], d[1]),
        sub(s, d[1], d[3]),
        s.zero(),
        s.zero(),
    ]
}

/// `Aᵀ m` of F(2, 3) for the first four vectors (the other two returned zero).
#[inline(always)]
pub(super) fn at2<S: Simd>(s: S, m: [S::V; ALPHA]) -> [S::V; M] {
    [
        s.add(s.add(m[0], m[1]), m[2]),
        sub(s, sub(s, m[1], m[2]), m[3]),
        s.zero(),
        s.zero(),
    ]
}

/// `Bᵀ d` of F(`MT`, 3).
#[inline(always)]
fn bt_m<S: Simd, const MT: usize>(s: S, d: [S::V; ALPHA]) -> [S::V; ALPHA] {
    if MT == 2 {
        bt2(s, d)
    } else {
        bt(s, d)
    }
}

/// `Aᵀ m` of F(`MT`, 3) (the first `MT` vectors).
#[inline(always)]
fn at_m<S: Simd, const MT: usize>(s: S, m: [S::V; ALPHA]) -> [S::V; M] {
    if MT == 2 {
        at2(s, m)
    } else {
        at(s, m)
    }
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
        if self.d.m == 2 {
            self.run::<S, 2>(s)
        } else {
            self.run::<S, M>(s)
        }
    }
}

impl WgInput<'_> {
    /// The transform for output tiles of `MT` pixels a side (input tiles of `MT + 2`).
    #[inline(always)]
    fn run<S: Simd, const MT: usize>(self, s: S) {
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
        let (tw, twp) = (lay.tw, lay.twp);
        let tb = nb * tw;
        let vs = pos_stride(d.c * tb);
        // SAFETY: `phase` and `line` hold the phase rows and the line of a block of `nb`
        // tile rows (with their slack), owned by this part; `V` holds `36 C tb` floats
        // (plus slack), of which this part writes the rows of its channels only.
        unsafe {
            // Input transform.
            let nrows = MT * nb + 2;
            let a = MT + 2;
            // The flat path (`flat_tiles`): channels' tiles gathered in groups of
            // `lay.xg` into `X` (which follows the line), the group starting at `g0`.
            let flat = lay.xrow > 0 && flat_tiles(tw, l);
            let x = line.add(lay.x - lay.line);
            let mut g0 = c0;
            if flat {
                // Lanes past a group's last tile are loaded (never stored): initialised.
                zero_floats(s, x, a * a * lay.xrow);
            }
            // With a left padding of at most one column the phases are split straight
            // from the input rows (`row_phases`): copying each row into a padded line
            // first cost 30 cycles a row in stalls (the line's unaligned stores are not
            // forwarded to the split's aligned loads: 32x32x32 -> 32 16 -> 9 µs). With
            // more, padded rows go through two line buffers: row r + 1 (of this channel
            // or the next) is copied in while row r is split, so that the split's loads
            // wait less for the copy's stores.
            let direct = d.pw <= 1;
            let len = MT * twp;
            let lines = [line, line.add(len + 16)];
            let mut next = !direct && fill_line(s, d, input, c0, MT * ty0, lines[0], len);
            for c in c0..c1 {
                for r in 0..nrows {
                    // Phase rows: `[r][k][twp]`, phase k column j = padded column MT j + k.
                    let dst = phase.add(r * MT * twp);
                    let iy = (MT * ty0 + r).wrapping_sub(d.ph);
                    // The input row (any row when this padded row is all padding: unread).
                    let src = input
                        .as_ptr()
                        .wrapping_add((c * d.h + iy.min(d.h - 1)) * d.w);
                    let here = if direct { iy < d.h } else { next };
                    let buf = lines[(c * nrows + r) % 2];
                    let (c2, r2) = if r + 1 < nrows {
                        (c, r + 1)
                    } else {
                        (c + 1, 0)
                    };
                    if !direct && c2 < c1 {
                        let other = lines[(c2 * nrows + r2) % 2];
                        next = fill_line(s, d, input, c2, MT * ty0 + r2, other, len);
                    }
                    // Phase column `j` of this row (no closure: closures do not inherit
                    // the target features, the intrinsics would be calls).
                    let split = (direct, src, buf.cast_const());
                    if flat {
                        // Straight into this channel's slot of `X`: padded row r is row
                        // i = r - MT ty of the windows of tile rows ty (up to two), and
                        // column k of window tx is phase k % MT at tx + k / MT, the
                        // phase vectors moved down a lane for k >= MT. Whole-vector
                        // stores in increasing order in each row of `X`: the lanes past
                        // a tile row's end are overwritten by the next tile row (or the
                        // next channel, or land in the slack).
                        let slot = (c - g0) * tb;
                        let ty_lo = (r + 1).saturating_sub(a).div_ceil(MT);
                        let ty_hi = (r / MT).min(nb - 1);
                        for j in (0..tw).step_by(l) {
                            let cur = if here {
                                row_phases::<S, MT>(s, d, split, j)
                            } else {
                                [s.zero(); 4]
                            };
                            let nxt = if here && j + l < twp {
                                row_phases::<S, MT>(s, d, split, j + l)
                            } else {
                                [s.zero(); 4]
                            };
                            let (s0, s1) =
                                (s.shift_out(cur[0], nxt[0]), s.shift_out(cur[1], nxt[1]));
                            let cols = if MT == 2 {
                                [cur[0], cur[1], s0, s1, s0, s1]
                            } else {
                                [cur[0], cur[1], cur[2], cur[3], s0, s1]
                            };
                            for ty in ty_lo..=ty_hi {
                                let row = x.add((r - MT * ty) * a * lay.xrow + slot + ty * tw + j);
                                for (k, &v) in cols.iter().enumerate().take(a) {
                                    s.store(row.add(k * lay.xrow), v);
                                }
                            }
                        }
                        continue;
                    }
                    if !here {
                        zero_floats(s, dst, MT * twp);
                        continue;
                    }
                    // Split into MT phases, MT * LANES columns at a time (twp is a
                    // multiple of 16, so of LANES).
                    for j in (0..twp).step_by(l) {
                        let p = row_phases::<S, MT>(s, d, split, j);
                        for (k, &pk) in p.iter().enumerate().take(MT) {
                            s.store(dst.add(k * twp + j), pk);
                        }
                    }
                }
                if flat {
                    if c + 1 == c1 || c + 1 - g0 == lay.xg {
                        flat_transform::<S, MT>(
                            s,
                            x,
                            lay.xrow,
                            v.add(g0 * tb),
                            pos_stride(d.c * tb),
                            (c + 1 - g0) * tb,
                        );
                        g0 = c + 1;
                    }
                    continue;
                }
                for ty in 0..nb {
                    let rows = phase.add(MT * ty * MT * twp);
                    for tx0 in (0..tw).step_by(l) {
                        let n = l.min(tw - tx0);
                        // Columns k of the tiles' a x a inputs, transformed along y.
                        // (No `array::from_fn` with vector code in the closure: closures
                        // do not inherit the target features, the intrinsics would be
                        // calls.)
                        let mut rows_t = [[s.zero(); ALPHA]; ALPHA];
                        for k in 0..a {
                            // Phase k % MT at tile tx + k / MT (reads at most one
                            // vector past `tw`, inside the phase row or its slack).
                            let col = (k % MT) * twp + tx0 + k / MT;
                            let mut dk = [s.zero(); ALPHA];
                            for (i, x) in dk.iter_mut().enumerate().take(a) {
                                *x = s.load(rows.add(i * MT * twp + col));
                            }
                            for (row, x) in rows_t.iter_mut().zip(bt_m::<S, MT>(s, dk)) {
                                row[k] = x;
                            }
                        }
                        for (i, &ri) in rows_t.iter().enumerate().take(a) {
                            let f = bt_m::<S, MT>(s, ri);
                            for (j, &fj) in f.iter().enumerate().take(a) {
                                // V[ξ][c][t]: inside `V` (t + n <= tb).
                                let p = v.add((i * a + j) * vs + c * tb + ty * tw + tx0);
                                s.store_n(p, fj, n);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Columns `x .. x + LANES` of the input row at `row` (`w` floats), zero past its end.
///
/// # Safety
///
/// `row..row + w` readable.
#[inline(always)]
unsafe fn row_vector<S: Simd>(s: S, row: *const f32, w: usize, x: usize) -> S::V {
    if x >= w {
        s.zero()
    } else if x + S::LANES <= w {
        // SAFETY: inside the row.
        unsafe { s.load(row.add(x)) }
    } else {
        // SAFETY: the row's last `w - x` floats.
        unsafe { s.load_n(row.add(x), w - x) }
    }
}

/// The `MT` phases of one padded row at phase column `j` (a multiple of `LANES`): lane
/// `t` of phase `k` is padded column `MT (j + t) + k` (for `MT = 2` the last two are
/// zero). When `direct`, the padded columns come straight from the input row `src`
/// (`d.w` floats, left padding `d.pw` of 0 or 1: padded column `x` is input column
/// `x - pw`, zero outside the row, the pad column shifted in by `shift_in`); else from
/// the row's padded line `buf`.
///
/// # Safety
///
/// `direct`: `src..src + d.w` readable and `d.pw <= 1`; else `buf + MT j .. + MT LANES`
/// readable.
#[inline(always)]
unsafe fn row_phases<S: Simd, const MT: usize>(
    s: S,
    d: WgDims,
    (direct, src, buf): (bool, *const f32, *const f32),
    j: usize,
) -> [S::V; 4] {
    let l = S::LANES;
    let x0 = MT * j;
    // The `MT` vectors of padded columns `x0 .. x0 + MT LANES`.
    let mut v = [s.zero(); 4];
    // SAFETY: (all loads) the caller's bounds.
    unsafe {
        if direct {
            let mut prev = if d.pw == 1 && x0 > 0 {
                row_vector(s, src, d.w, x0 - l)
            } else {
                s.zero()
            };
            for (m, vm) in v.iter_mut().enumerate().take(MT) {
                let cur = row_vector(s, src, d.w, x0 + m * l);
                *vm = if d.pw == 1 {
                    s.shift_in(prev, cur)
                } else {
                    cur
                };
                prev = cur;
            }
        } else {
            for (m, vm) in v.iter_mut().enumerate().take(MT) {
                *vm = s.load(buf.add(x0 + m * l));
            }
        }
    }
    let (e1, o1) = s.deinterleave(v[0], v[1]);
    if MT == 2 {
        return [e1, o1, s.zero(), s.zero()];
    }
    let (e2, o2) = s.deinterleave(v[2], v[3]);
    let (p0, p2) = s.deinterleave(e1, e2);
    let (p1, p3) = s.deinterleave(o1, o2);
    [p0, p1, p2, p3]
}

/// Padded row `r` (input row `r - ph`) of channel `c` into `line` (`len` floats: input
/// column x at `pw + x`, zeros around); `false` (nothing written) when it is all padding.
///
/// # Safety
///
/// `line..line + len` writable, `c < d.c`.
#[inline(always)]
unsafe fn fill_line<S: Simd>(
    s: S,
    d: WgDims,
    input: &[f32],
    c: usize,
    r: usize,
    line: *mut f32,
    len: usize,
) -> bool {
    let iy = r.wrapping_sub(d.ph);
    if iy >= d.h {
        return false;
    }
    let left = d.pw.min(len);
    let n = d.w.min(len - left);
    // SAFETY: row `iy < h` of plane `c < C` is inside the input; `left + n <= len`.
    unsafe {
        zero_floats(s, line, left);
        copy_floats(
            s,
            input.as_ptr().add((c * d.h + iy) * d.w),
            line.add(left),
            n,
        );
        zero_floats(s, line.add(left + n), len - left - n);
    }
    true
}

/// The input transform of `n` flat tiles: `Bᵀ d B` of the `a` x `a` windows (`a = MT +
/// 2`) whose values are `x[(i * a + j) * xrow + t]`, stored to `v[ξ * pitch + t]`
/// (`V`'s rows of a group of channels, `pitch` apart).
///
/// # Safety
///
/// `x` holds `a²` rows of `xrow >= n.next_multiple_of(LANES)` initialised floats, `v`
/// the `a²` rows of `n` floats this call alone writes.
#[inline(always)]
unsafe fn flat_transform<S: Simd, const MT: usize>(
    s: S,
    x: *const f32,
    xrow: usize,
    v: *mut f32,
    pitch: usize,
    n: usize,
) {
    let (l, a) = (S::LANES, MT + 2);
    for t in (0..n).step_by(l) {
        let mut rows_t = [[s.zero(); ALPHA]; ALPHA];
        for k in 0..a {
            let mut dk = [s.zero(); ALPHA];
            for (i, d) in dk.iter_mut().enumerate().take(a) {
                // SAFETY: row (i, k) of `x`, `t + LANES <= xrow` (the caller's bound).
                *d = unsafe { s.load(x.add((i * a + k) * xrow + t)) };
            }
            for (row, d) in rows_t.iter_mut().zip(bt_m::<S, MT>(s, dk)) {
                row[k] = d;
            }
        }
        let nn = l.min(n - t);
        for (i, &ri) in rows_t.iter().enumerate().take(a) {
            for (j, &f) in bt_m::<S, MT>(s, ri).iter().enumerate().take(a) {
                // SAFETY: `V` row ξ = a i + j, floats t .. t + nn <= n (the caller's).
                unsafe {
                    let p = v.add((i * a + j) * pitch + t);
                    if nn == l {
                        s.store(p, f);
                    } else {
                        s.store_n(p, f, nn);
                    }
                }
            }
        }
    }
}

/// One block's output transform for tiles `t0..t1`: bias, the residual (if any),
/// activation, scatter into their output pixels.
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
    /// Output channels `o0..o1` (`o0` a multiple of 16, `o1 <= O`).
    pub(super) chans: (usize, usize),
    pub(super) act: Act,
    /// A residual laid out as the output, added before the activation (a fused `add`),
    /// or null.
    pub(super) res: *const f32,
}

impl WithSimd for WgOutput<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        if self.d.m == 2 {
            self.run::<S, 2>(s)
        } else {
            self.run::<S, M>(s)
        }
    }
}

impl WgOutput<'_> {
    /// The transform for output tiles of `MT` pixels a side.
    #[inline(always)]
    fn run<S: Simd, const MT: usize>(self, s: S) {
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
            chans,
            act,
            res,
        } = self;
        // With a residual the activation follows the sum: after the transpose.
        let tile_act = if res.is_null() { act } else { Act::IDENTITY };
        let l = S::LANES;
        let ohw = d.oh * d.ow;
        let (tw, opad) = (lay.tw, lay.opad);
        let tb = nb * tw;
        // `LANES / MT` tiles of one tile row at a time (fewer at the row's or the part's
        // end): for each pixel row, their `LANES` pixels by `LANES` channels, transposed
        // in registers, are `LANES` channel rows of `LANES` consecutive output pixels,
        // one vector store each (stores of 4 pixels through a buffer cost 3x more).
        let group = l / MT;
        let mut t = t0;
        while t < t1 {
            let (ty, tx) = (ty0 + t / tw, t % tw);
            let g = group.min(tw - tx).min(t1 - t);
            let (y0, x0) = (MT * ty, MT * tx);
            let ny = MT.min(d.oh - y0);
            let nx = (d.ow - x0).min(MT * g);
            for o0 in (chans.0..chans.1).step_by(l) {
                let no = l.min(chans.1 - o0);
                // SAFETY: bias row inside the packed bias (o0 + LANES <= opad).
                let b = unsafe { s.load(bias.add(o0)) };
                // Uninitialised, each slot the transposes read written once below (zeros
                // past the `g` tiles): zero-initialised, the array was a `memset` of 8
                // KiB per group of tiles (8% of 32x32x32 -> 32).
                let mut px = [[MaybeUninit::<S::V>::uninit(); PANEL]; PANEL / 2];
                for (k, pk) in px.iter_mut().enumerate().take(group) {
                    let pixels = if k < g {
                        // SAFETY: tile t + k < t1 <= tb, o0 + LANES <= opad.
                        unsafe { tile_pixels::<S, MT>(s, m, (tb, opad), t + k, o0, b, tile_act) }
                    } else {
                        [s.zero(); PANEL]
                    };
                    for (slot, &v) in pk.iter_mut().zip(&pixels) {
                        slot.write(v);
                    }
                }
                if d.pool {
                    // SAFETY: the slots of `px` the pooled store reads were written
                    // above; its stores are the pooled pixels of this part's tiles.
                    unsafe {
                        store_pooled::<S, MT>(s, d, &px, (g, group), (y0, x0), (ny, nx), o0, out)
                    };
                    continue;
                }
                for y in 0..ny {
                    let mut q = [s.zero(); PANEL];
                    for (i, qi) in q.iter_mut().enumerate().take(l) {
                        // SAFETY: slot `[i / MT][y * MT + i % MT]`, `i / MT < l / MT =
                        // group` and `y * MT + i % MT < MT² <= PANEL`, was written above.
                        *qi = unsafe { px[i / MT][y * MT + i % MT].assume_init() };
                    }
                    s.transpose(&mut q[..l]);
                    // SAFETY: output (o0 + ch, y0 + y, x0 .. x0 + nx) for ch < no, y < ny:
                    // inside the output, and pixels of this part's tiles; the residual's
                    // same pixels (laid out as the output).
                    unsafe {
                        let at = o0 * ohw + (y0 + y) * d.ow + x0;
                        let dst = out.add(at);
                        for (ch, &row) in q.iter().enumerate().take(no) {
                            let row = if res.is_null() {
                                row
                            } else {
                                let r = res.add(at + ch * ohw);
                                let r = if nx == l { s.load(r) } else { s.load_n(r, nx) };
                                s.act(s.add(row, r), act)
                            };
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

/// The 2x2 max pool of stride 2 ([`WgDims::pool`]) of the pixels `px` of `group` tiles
/// of one tile row (`g` of them real, the rest zeros), whose output block starts at
/// pixel `(y0, x0)` with `ny` x `nx` pixels inside the convolution's output, for output
/// channels `o0 ..`: per pooled row, the maxima of the `MT / 2` windows of each tile,
/// transposed in registers into one row of pooled pixels per channel (half a vector:
/// `group * MT / 2` lanes), stored into the pooled output (`OH / 2 x OW / 2` planes).
/// Windows past the convolution's last row or column pair (an odd size) are dropped,
/// as PyTorch's floor mode does.
///
/// # Safety
///
/// The first `group` rows of `px` are initialised; `out` is the pooled output, of which
/// the pooled pixels of these tiles, channels `o0 .. min(o0 + LANES, O)`, are this
/// call's to write.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_pooled<S: Simd, const MT: usize>(
    s: S,
    d: WgDims,
    px: &[[MaybeUninit<S::V>; PANEL]; PANEL / 2],
    (g, group): (usize, usize),
    (y0, x0): (usize, usize),
    (ny, nx): (usize, usize),
    o0: usize,
    out: *mut f32,
) {
    let l = S::LANES;
    let half = MT / 2;
    let (pow, pohw) = (d.ow / 2, (d.oh / 2) * (d.ow / 2));
    let no = l.min(d.o - o0);
    // Whole windows only: `y0` and `x0` are even, so each window lies in one tile.
    let (npy, npx) = (ny / 2, nx / 2);
    debug_assert!(g <= group && npx <= group * half && group * half <= l);
    if npx == 0 {
        return;
    }
    for y2 in 0..npy {
        let mut q = [s.zero(); PANEL];
        for (i, qi) in q.iter_mut().enumerate().take(group * half) {
            // The window's top-left pixel in tile `k`.
            let (k, p) = (i / half, 2 * y2 * MT + 2 * (i % half));
            // SAFETY: rows `k < group` of `px` are initialised (the caller), and
            // `p + MT + 1 < MT²` (the window's bottom-right pixel).
            let [a, b, c, e] =
                [p, p + 1, p + MT, p + MT + 1].map(|j| unsafe { px[k][j].assume_init() });
            *qi = s.max_nan(s.max_nan(a, b), s.max_nan(c, e));
        }
        s.transpose(&mut q[..l]);
        // SAFETY: pooled pixels `(y0 / 2 + y2, x0 / 2 .. x0 / 2 + npx)` of channels
        // `o0 .. o0 + no`: inside the pooled output (`y0 / 2 + y2 < OH / 2`, `x0 / 2 +
        // npx <= OW / 2`), this call's (the caller's contract).
        unsafe {
            let dst = out.add(o0 * pohw + (y0 / 2 + y2) * pow + x0 / 2);
            for (ch, &row) in q.iter().enumerate().take(no) {
                s.store_n(dst.add(ch * pohw), row, npx);
            }
        }
    }
}

/// The output transform of tile `t` for the output channels `o0 .. o0 + LANES`, plus
/// the bias row `b` and the activation: pixel `(y, x)` of the tile at `[y * MT + x]`.
///
/// # Safety
///
/// `m` holds `[(MT + 2)²][tb][opad]` floats (`dims = (tb, opad)`), `t < tb`, `o0 + LANES <= opad`.
#[inline(always)]
unsafe fn tile_pixels<S: Simd, const MT: usize>(
    s: S,
    m: *const f32,
    (tb, opad): (usize, usize),
    t: usize,
    o0: usize,
    b: S::V,
    act: Act,
) -> [S::V; PANEL] {
    let al = MT + 2;
    let mut a = [[s.zero(); ALPHA]; M];
    for j in 0..al {
        let mut mj = [s.zero(); ALPHA];
        for (i, x) in mj.iter_mut().enumerate().take(al) {
            // SAFETY: M[ξ][t][o0..]: inside `M`, as the caller guarantees.
            *x = unsafe { s.load(m.add((i * al + j) * pos_stride(tb * opad) + t * opad + o0)) };
        }
        for (ay, x) in a.iter_mut().zip(at_m::<S, MT>(s, mj)) {
            ay[j] = x;
        }
    }
    let mut px = [s.zero(); PANEL];
    for (y, ay) in a.iter().enumerate().take(MT) {
        let r = at_m::<S, MT>(s, *ay);
        for (x, &rx) in r.iter().enumerate().take(MT) {
            px[y * MT + x] = s.act(s.add(rx, b), act);
        }
    }
    px
}
