//! Element-wise binary operations with broadcasting (residual additions, SE-block
//! gating `x * sigmoid(se)`, scalings), fused with an activation.
//!
//! Both operands are C, H, W tensors whose every axis is either the output's size or 1
//! (broadcast). The shapes are first collapsed: output axes of size 1 are dropped and
//! neighbouring axes on which both operands agree (each either full on both or broadcast
//! on both) are merged, so a same-shape operation is one long run, a per-channel `[C,1,1]`
//! operand is `C` runs of `H*W` against a scalar, and so on. Each innermost run is then
//! one vectorised loop on the level [`cpu::level`] selects: vector op vector, vector op
//! scalar, scalar op vector (or a fill when both are scalars there).

use super::activation::Act;
use super::simd::{self, Simd, WithSimd};
use crate::cpu::{self, Level};

/// Element-wise binary op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `a + b`.
    Add,
    /// `a * b`.
    Mul,
}

impl BinOp {
    /// `a op b` for one pair of values.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinOp::Add => a + b,
            BinOp::Mul => a * b,
        }
    }
}

/// The collapsed iteration space: up to three axes (outermost first), the output
/// contiguous, each operand with its own stride per axis (0 when broadcast along it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// Axis sizes.
    n: [usize; 3],
    /// Strides of `a`.
    sa: [usize; 3],
    /// Strides of `b`.
    sb: [usize; 3],
}

/// Collapses output shape `out` and operand shapes `a`, `b` (each axis equal to the
/// output's or 1) into a [`Layout`].
fn collapse(out: [usize; 3], a: [usize; 3], b: [usize; 3]) -> Layout {
    // (size, a full, b full) of the output axes larger than 1, merged where the flags agree.
    let mut axes: [(usize, bool, bool); 3] = [(1, false, false); 3];
    let mut k = 0;
    for i in 0..3 {
        if out[i] == 1 {
            continue;
        }
        let (fa, fb) = (a[i] != 1, b[i] != 1);
        if k > 0 && axes[k - 1].1 == fa && axes[k - 1].2 == fb {
            axes[k - 1].0 *= out[i];
        } else {
            axes[k] = (out[i], fa, fb);
            k += 1;
        }
    }
    // Right-align into three axes (leading axes of size 1), strides from the inside out.
    let mut l = Layout {
        n: [1; 3],
        sa: [0; 3],
        sb: [0; 3],
    };
    let (mut pa, mut pb) = (1, 1);
    for j in (0..k).rev() {
        let (n, fa, fb) = axes[j];
        let slot = 3 - k + j;
        l.n[slot] = n;
        if fa {
            l.sa[slot] = pa;
            pa *= n;
        }
        if fb {
            l.sb[slot] = pb;
            pb *= n;
        }
    }
    l
}

/// One collapsed binary operation as a kernel for [`simd::run`], over raw pointers so
/// that `a` may be the output itself (in place).
struct BinRun {
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    l: Layout,
    /// Strides of `out` along the two outer axes (contiguous: `[n[1] * n[2], n[2]]`).
    so: [usize; 2],
    op: BinOp,
    act: Act,
}

impl BinRun {
    /// The operation `l` over contiguous output `out`.
    fn new(a: *const f32, b: *const f32, out: *mut f32, l: Layout, op: BinOp, act: Act) -> Self {
        let so = [l.n[1] * l.n[2], l.n[2]];
        BinRun {
            a,
            b,
            out,
            l,
            so,
            op,
            act,
        }
    }
}

/// `v op w` on vectors.
#[inline(always)]
fn vop<S: Simd>(s: S, op: BinOp, v: S::V, w: S::V) -> S::V {
    match op {
        BinOp::Add => s.add(v, w),
        BinOp::Mul => s.mul(v, w),
    }
}

/// One innermost run of `n` outputs: `AV`/`BV` say whether `a`/`b` advance along it (else
/// their first value is broadcast).
///
/// # Safety
///
/// `a` (`b`) must be readable for `n` floats when `AV` (`BV`), else for one; `out`
/// writable for `n` floats; `a` may equal `out` (each lane is read before it is written).
#[inline(always)]
unsafe fn run_row<S: Simd, const AV: bool, const BV: bool>(
    s: S,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    n: usize,
    op: BinOp,
    act: Act,
) {
    let l = S::LANES;
    // SAFETY: the caller guarantees the reads and writes below are in bounds: vector
    // `i` touches lanes `i..i + LANES` (or `..n` in the tail) of the advancing operands
    // and the output, the broadcast operands only their first float.
    unsafe {
        let sa = if AV { s.zero() } else { s.bcast(a) };
        let sb = if BV { s.zero() } else { s.bcast(b) };
        let mut i = 0;
        while i + l <= n {
            let va = if AV { s.load(a.add(i)) } else { sa };
            let vb = if BV { s.load(b.add(i)) } else { sb };
            s.store(out.add(i), s.act(vop(s, op, va, vb), act));
            i += l;
        }
        if i < n {
            let m = n - i;
            let va = if AV { s.load_n(a.add(i), m) } else { sa };
            let vb = if BV { s.load_n(b.add(i), m) } else { sb };
            s.store_n(out.add(i), s.act(vop(s, op, va, vb), act), m);
        }
    }
}

/// `x = act(x + r)` over a slice (`r` at least as long): the add kernel's row loop on
/// one contiguous run, as a kernel for [`Simd::vectorize`] (a residual fused into the
/// convolution that produced `x`: [`Simd::residual_slice`]).
pub(crate) struct AddAssignRow<'a> {
    pub(crate) x: &'a mut [f32],
    pub(crate) r: &'a [f32],
    pub(crate) act: Act,
}

impl WithSimd for AddAssignRow<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (n, r) = (self.x.len(), self.r);
        let r = &r[..n];
        let x = self.x.as_mut_ptr();
        // SAFETY: `x` and `r` hold `n` floats each; the output is `x` itself, each lane
        // read before it is written (`run_row`'s contract allows `a == out`).
        unsafe { run_row::<S, true, true>(s, x, r.as_ptr(), x, n, BinOp::Add, self.act) };
    }
}

impl WithSimd for BinRun {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Layout { n, sa, sb } = self.l;
        let (op, act) = (self.op, self.act);
        let (av, bv) = (sa[2] != 0, sb[2] != 0);
        for i0 in 0..n[0] {
            for i1 in 0..n[1] {
                // SAFETY: the callers checked that `a` and `b` hold their operand's
                // values and `out` the output's; the offsets of run (i0, i1) and its `n[2]`
                // values along the strides stay inside them (`collapse` derives the
                // strides from the operands' contiguous layouts).
                unsafe {
                    let a = self.a.add(i0 * sa[0] + i1 * sa[1]);
                    let b = self.b.add(i0 * sb[0] + i1 * sb[1]);
                    let out = self.out.add(i0 * self.so[0] + i1 * self.so[1]);
                    match (av, bv) {
                        (true, true) => run_row::<S, true, true>(s, a, b, out, n[2], op, act),
                        (true, false) => run_row::<S, true, false>(s, a, b, out, n[2], op, act),
                        (false, true) => run_row::<S, false, true>(s, a, b, out, n[2], op, act),
                        (false, false) => run_row::<S, false, false>(s, a, b, out, n[2], op, act),
                    }
                }
            }
        }
    }
}

/// Checks that every axis of `x` is 1 or the output's.
fn check_broadcast(out: [usize; 3], x: [usize; 3], name: &str) {
    assert!(
        (0..3).all(|i| x[i] == 1 || x[i] == out[i]),
        "binary op: operand {name} {x:?} does not broadcast to {out:?}"
    );
}

/// `out = act(a op b)` with the shapes as runtime values, at `level`.
fn binary_into_dyn(
    level: Level,
    shape: [usize; 3],
    sa: [usize; 3],
    sb: [usize; 3],
    (a, b, out): (&[f32], &[f32], &mut [f32]),
    op: BinOp,
    act: Act,
) {
    check_broadcast(shape, sa, "a");
    check_broadcast(shape, sb, "b");
    let a = &a[..sa.iter().product()];
    let b = &b[..sb.iter().product()];
    let out = &mut out[..shape.iter().product()];
    let run = BinRun::new(
        a.as_ptr(),
        b.as_ptr(),
        out.as_mut_ptr(),
        collapse(shape, sa, sb),
        op,
        act,
    );
    run_split(level, shape, (sa, sb), run);
}

/// `acc = act(acc op b)` in place with the shapes as runtime values, at `level`.
pub(crate) fn binary_assign_dyn(
    level: Level,
    shape: [usize; 3],
    sb: [usize; 3],
    acc: &mut [f32],
    b: &[f32],
    op: BinOp,
    act: Act,
) {
    check_broadcast(shape, sb, "b");
    let b = &b[..sb.iter().product()];
    let acc = &mut acc[..shape.iter().product()];
    let out = acc.as_mut_ptr();
    let run = BinRun::new(
        out.cast_const(),
        b.as_ptr(),
        out,
        collapse(shape, shape, sb),
        op,
        act,
    );
    run_split(level, shape, (shape, sb), run);
}

/// Output floats from which an element-wise operation splits over the pool's threads.
#[cfg(feature = "parallel")]
const BIN_PAR_FLOATS: usize = 8192;

/// Runs `run` (over a whole contiguous output of `shape`, operands of shapes `sa`, `sb`)
/// at `level`. With the `parallel` feature and a large output, over the threads:
///
/// * when both operands have the output's shape (a residual add) and the planes are
///   whole 64-byte lines, each part takes the same range of pixels in every plane: the
///   rows that a convolution split by rows or pixels wrote on that part's core (on one
///   thread, half of the operands came from the other core, and MobileNetV2's adds took
///   twice as long at two threads);
/// * else (broadcasts: squeeze-and-excitation's scale by one value per channel) by
///   ranges of channels, one contiguous range of the output each. EfficientNet-B0's 16
///   scales at two threads 210 -> 139 µs (32x112x112 30 -> 16, 1152x7x7 11 -> 8); the
///   same range of pixels in every plane took 54 µs on the 112x112 one.
///
/// Every value is computed as on one thread.
fn run_split(level: Level, shape: [usize; 3], (sa, sb): ([usize; 3], [usize; 3]), run: BinRun) {
    #[cfg(feature = "parallel")]
    {
        let [c, h, w] = shape;
        let hw = h * w;
        let threads = crate::pool::num_threads();
        if threads > 1 && c * hw >= BIN_PAR_FLOATS {
            let (a, b) = (
                super::SharedPtr(run.a.cast_mut()),
                super::SharedPtr(run.b.cast_mut()),
            );
            let out = super::SharedPtr(run.out);
            let (op, act) = (run.op, run.act);
            let lines = hw / 16;
            let on_lines =
                hw.is_multiple_of(16) && lines >= threads && run.out.align_offset(64) == 0;
            if sa == shape && sb == shape && on_lines {
                crate::pool::run(threads, &|i| {
                    let (p0, p1) = (i * lines / threads * 16, (i + 1) * lines / threads * 16);
                    let p1 = if i + 1 == threads { hw } else { p1 };
                    let part = BinRun {
                        a: a.get().wrapping_add(p0),
                        b: b.get().wrapping_add(p0),
                        out: out.get().wrapping_add(p0),
                        // Pixels p0..p1 of every plane: `c` runs `hw` apart in all three.
                        l: Layout {
                            n: [1, c, p1 - p0],
                            sa: [0, hw, 1],
                            sb: [0, hw, 1],
                        },
                        so: [0, hw],
                        op,
                        act,
                    };
                    simd::run(level, part);
                });
                return;
            }
            if c >= threads {
                crate::pool::run(threads, &|i| {
                    let (c0, c1) = (i * c / threads, (i + 1) * c / threads);
                    // An operand's channels c0..c1 (all of them when it broadcasts
                    // over channels).
                    let part = |sx: [usize; 3]| {
                        if sx[0] == 1 {
                            (0, sx)
                        } else {
                            (c0 * sx[1] * sx[2], [c1 - c0, sx[1], sx[2]])
                        }
                    };
                    let ((oa, pa), (ob, pb)) = (part(sa), part(sb));
                    let run = BinRun::new(
                        a.get().wrapping_add(oa),
                        b.get().wrapping_add(ob),
                        out.get().wrapping_add(c0 * hw),
                        collapse([c1 - c0, h, w], pa, pb),
                        op,
                        act,
                    );
                    simd::run(level, run);
                });
                return;
            }
        }
    }
    let _ = (shape, sa, sb);
    simd::run(level, run);
}

/// Element-wise `out[c][h][w] = act(a[c'][h'][w'] op b[c''][h''][w''])`, where an operand
/// axis of size 1 is broadcast (its index is 0) and one of the output's size indexed as
/// the output (PyTorch broadcasting of two `[C, H, W]` tensors; a vector `[N]` is
/// `C = N, H = W = 1`).
///
/// `a` holds at least `AC*AH*AW` values, `b` `BC*BH*BW`, `out` `C*H*W` (only those are
/// read and written). Each of `AC`/`BC` is 1 or `C`, `AH`/`BH` 1 or `H`, `AW`/`BW` 1 or `W`.
///
/// # Panics
///
/// If a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn binary_into<
    const C: usize,
    const H: usize,
    const W: usize,
    const AC: usize,
    const AH: usize,
    const AW: usize,
    const BC: usize,
    const BH: usize,
    const BW: usize,
>(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    op: BinOp,
    act: Act,
) {
    const {
        assert!(C > 0 && H > 0 && W > 0);
        assert!(AC == 1 || AC == C, "AC must be 1 or C");
        assert!(AH == 1 || AH == H, "AH must be 1 or H");
        assert!(AW == 1 || AW == W, "AW must be 1 or W");
        assert!(BC == 1 || BC == C, "BC must be 1 or C");
        assert!(BH == 1 || BH == H, "BH must be 1 or H");
        assert!(BW == 1 || BW == W, "BW must be 1 or W");
    }
    binary_into_dyn(
        cpu::level(),
        [C, H, W],
        [AC, AH, AW],
        [BC, BH, BW],
        (a, b, out),
        op,
        act,
    );
}

/// In place: `acc[c][h][w] = act(acc[c][h][w] op b[c'][h'][w'])` with `b` broadcast as in
/// [`binary_into`] (`acc` has the full shape `[C, H, W]`).
///
/// `acc` holds at least `C*H*W` values and `b` `BC*BH*BW`. Each of `BC` is 1 or `C`, `BH`
/// 1 or `H`, `BW` 1 or `W`.
///
/// # Panics
///
/// If a slice is too short.
pub fn binary_assign<
    const C: usize,
    const H: usize,
    const W: usize,
    const BC: usize,
    const BH: usize,
    const BW: usize,
>(
    acc: &mut [f32],
    b: &[f32],
    op: BinOp,
    act: Act,
) {
    const {
        assert!(C > 0 && H > 0 && W > 0);
        assert!(BC == 1 || BC == C, "BC must be 1 or C");
        assert!(BH == 1 || BH == H, "BH must be 1 or H");
        assert!(BW == 1 || BW == W, "BW must be 1 or W");
    }
    binary_assign_dyn(cpu::level(), [C, H, W], [BC, BH, BW], acc, b, op, act);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::{self as r, Rng, ACTS};

    /// Every broadcast pattern of an operand of `shape`.
    fn patterns(shape: [usize; 3]) -> Vec<[usize; 3]> {
        let mut v: Vec<[usize; 3]> = (0..8)
            .map(|m| {
                let mut p = shape;
                for (i, x) in p.iter_mut().enumerate() {
                    if m >> i & 1 == 1 {
                        *x = 1;
                    }
                }
                p
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    const SHAPES: [[usize; 3]; 14] = [
        [1, 1, 1],
        [5, 1, 1],
        [1, 1, 7],
        [3, 4, 5],
        [2, 3, 16],
        [4, 2, 17],
        [16, 1, 1],
        [33, 1, 1],
        [3, 1, 784],
        [2, 5, 1],
        [1, 6, 9],
        [7, 3, 3],
        [24, 7, 7],
        [2, 1, 1000],
    ];

    #[test]
    fn sweep_shapes_and_broadcasts_against_reference() {
        let mut rng = Rng::new(71);
        for shape in SHAPES {
            let n: usize = shape.iter().product();
            for sa in patterns(shape) {
                for sb in patterns(shape) {
                    let op = [BinOp::Add, BinOp::Mul][rng.below(2)];
                    let act = ACTS[rng.below(ACTS.len())];
                    let a = rng.vec(sa.iter().product(), -2.0, 2.0);
                    let b = rng.vec(sb.iter().product(), -2.0, 2.0);
                    let want = r::binary(shape, sa, sb, &a, &b, op == BinOp::Mul, act);
                    let mut a_long = a.clone();
                    a_long.push(f32::NAN);
                    let mut b_long = b.clone();
                    b_long.push(f32::NAN);
                    for level in simd::test_levels() {
                        let ctx = (shape, sa, sb, op, act, level);
                        let mut got = vec![7.0; n + 1];
                        let ops = (&a_long[..], &b_long[..], &mut got[..]);
                        binary_into_dyn(level, shape, sa, sb, ops, op, act);
                        assert_eq!(got[n], 7.0, "wrote past the output: {ctx:?}");
                        r::assert_close(&got[..n], &want, &ctx);
                        if sa == shape {
                            let mut acc = a_long.clone();
                            binary_assign_dyn(level, shape, sb, &mut acc, &b_long, op, act);
                            assert!(acc[n].is_nan(), "wrote past acc: {ctx:?}");
                            r::assert_close(&acc[..n], &want, &("assign", ctx));
                        }
                    }
                }
            }
        }
    }

    /// With the `parallel` feature, large same-shape operations split each plane's
    /// pixels over 2 and 3 threads: the one-thread result bit for bit and the
    /// reference's, into a new output and in place (planes of whole lines, of a partial
    /// line: one thread; outputs on a line and off it).
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_give_the_one_thread_result_bit_for_bit() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(72);
        for shape in [
            [64, 56, 56],
            [32, 28, 28],
            [24, 16, 48],
            [96, 14, 14],
            [20, 1, 800],
        ] {
            let n: usize = shape.iter().product();
            assert!(n >= BIN_PAR_FLOATS);
            let a = rng.vec(n, -2.0, 2.0);
            let b = rng.vec(n, -2.0, 2.0);
            let want = r::binary(shape, shape, shape, &a, &b, false, Act::RELU);
            for level in simd::test_levels() {
                r::assert_threads_match_one(n, &(shape, level), |out| {
                    let ops = (&a[..], &b[..], &mut out[..n]);
                    binary_into_dyn(level, shape, shape, shape, ops, BinOp::Add, Act::RELU);
                    r::assert_close(&out[..n], &want, &(shape, level));
                });
                r::assert_threads_match_one(n, &(shape, level, "assign"), |out| {
                    out[..n].copy_from_slice(&a);
                    binary_assign_dyn(level, shape, shape, out, &b, BinOp::Add, Act::RELU);
                });
            }
        }
        crate::pool::set_num_threads(2);
    }

    /// Broadcasting operations split by channels (one value per channel: squeeze-and-
    /// excitation's scale; `[1, H, W]`, `[C, 1, W]`, a scalar): the one-thread result bit
    /// for bit and the reference's, into a new output and in place.
    #[cfg(feature = "parallel")]
    #[test]
    fn broadcasts_split_over_threads_as_one() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(73);
        for (shape, sa, sb) in [
            ([96, 28, 28], [96, 28, 28], [96, 1, 1]),
            ([240, 14, 14], [240, 1, 1], [240, 14, 14]),
            ([1152, 7, 7], [1152, 7, 7], [1152, 1, 1]),
            ([64, 16, 16], [64, 16, 16], [1, 16, 16]),
            ([40, 12, 20], [40, 1, 20], [40, 12, 20]),
            ([33, 30, 30], [1, 1, 1], [33, 30, 30]),
            ([17, 1, 900], [17, 1, 900], [17, 1, 1]),
        ] {
            let n: usize = shape.iter().product();
            assert!(n >= BIN_PAR_FLOATS);
            let a = rng.vec(sa.iter().product(), -2.0, 2.0);
            let b = rng.vec(sb.iter().product(), -2.0, 2.0);
            let want = r::binary(shape, sa, sb, &a, &b, true, Act::SIGMOID);
            for level in simd::test_levels() {
                r::assert_threads_match_one(n, &(shape, sa, sb, level), |out| {
                    let ops = (&a[..], &b[..], &mut out[..n]);
                    binary_into_dyn(level, shape, sa, sb, ops, BinOp::Mul, Act::SIGMOID);
                    r::assert_close(&out[..n], &want, &(shape, sa, sb, level));
                });
                if sa == shape {
                    r::assert_threads_match_one(n, &(shape, sb, level, "assign"), |out| {
                        out[..n].copy_from_slice(&a);
                        binary_assign_dyn(level, shape, sb, out, &b, BinOp::Mul, Act::SIGMOID);
                        r::assert_close(&out[..n], &want, &(shape, sb, level, "assign"));
                    });
                }
            }
        }
        crate::pool::set_num_threads(2);
    }

    #[test]
    fn collapse_merges_axes() {
        let l = collapse([8, 5, 6], [8, 5, 6], [8, 5, 6]);
        assert_eq!(l.n, [1, 1, 240]);
        let l = collapse([8, 5, 6], [8, 5, 6], [8, 1, 1]);
        assert_eq!((l.n, l.sa, l.sb), ([1, 8, 30], [0, 30, 1], [0, 1, 0]));
        let l = collapse([8, 5, 6], [8, 5, 6], [1, 5, 6]);
        assert_eq!((l.n, l.sa, l.sb), ([1, 8, 30], [0, 30, 1], [0, 0, 1]));
        let l = collapse([8, 1, 6], [1, 1, 6], [8, 1, 1]);
        assert_eq!((l.n, l.sa, l.sb), ([1, 8, 6], [0, 0, 1], [0, 1, 0]));
        let l = collapse([1, 1, 1], [1, 1, 1], [1, 1, 1]);
        assert_eq!(l.n, [1, 1, 1]);
    }

    #[test]
    fn const_generic_instances() {
        // SE gating: x * sigmoid(s) with s per channel.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let s = [0.0, 100.0];
        let mut out = [0.0; 6];
        binary_into::<2, 1, 3, 2, 1, 3, 2, 1, 1>(&x, &s, &mut out, BinOp::Add, Act::RELU);
        assert_eq!(out, [1.0, 2.0, 3.0, 104.0, 105.0, 106.0]);
        let mut acc = x;
        binary_assign::<2, 1, 3, 1, 1, 1>(&mut acc, &[2.0], BinOp::Mul, Act::IDENTITY);
        assert_eq!(acc, [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        // a broadcast, b full: [1,1,3] + [2,1,3].
        binary_into::<2, 1, 3, 1, 1, 3, 2, 1, 3>(
            &[1.0, 2.0, 3.0],
            &x,
            &mut out,
            BinOp::Add,
            Act::IDENTITY,
        );
        assert_eq!(out, [2.0, 4.0, 6.0, 5.0, 7.0, 9.0]);
    }

    #[test]
    #[should_panic(expected = "does not broadcast")]
    fn rejects_bad_broadcast() {
        binary_assign_dyn(
            Level::Portable,
            [2, 3, 4],
            [2, 2, 4],
            &mut [0.0; 24],
            &[0.0; 16],
            BinOp::Add,
            Act::IDENTITY,
        );
    }
}
