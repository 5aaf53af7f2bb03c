//! The global pools: `[C, H, W] -> [C]`, each channel's mean (in vectors of channels,
//! a team member's part of the rows summed apart) or maximum.

use super::max_nan;
use super::simd::{self, Simd, WithSimd};
use crate::cpu::{self, Level};

/// Global average pool with its dimensions as runtime values, at `level` ([`GapRun`]),
/// each plane summed in two parts, its values `0..split` and `split..hw` (the rows of
/// the two members of a [`team`](crate::team), which sum their own parts with
/// [`gap_part_dyn`]), then added, then divided by `hw`.
pub(crate) fn global_avg_dyn(
    level: Level,
    c: usize,
    hw: usize,
    split: usize,
    input: &[f32],
    output: &mut [f32],
) {
    let split = split.min(hw);
    #[cfg(feature = "parallel")]
    {
        // Ranges of whole 16-channel groups over the threads: each part reads the planes
        // of its channels (those a depthwise layer split by channels wrote on its core:
        // squeeze-and-excitation's pool, EfficientNet-B0's 16 of them 293 -> 122 µs at
        // two threads, where one thread read half its input from the other core).
        let groups = c / 16;
        let threads = crate::pool::num_threads().min(groups);
        if threads > 1 && c * hw >= GAP_PAR_FLOATS {
            let per = groups.div_ceil(threads) * 16;
            let input = &input[..c * hw];
            crate::pool::run_chunks_mut(&mut output[..c], per, &|i, out| {
                let c0 = i * per;
                let n = out.len();
                let run = GapRun {
                    c: n,
                    hw,
                    part: Part::Both(split),
                    input: &input[c0 * hw..(c0 + n) * hw],
                    output: out,
                };
                simd::run(level, run);
            });
            return;
        }
    }
    let run = GapRun {
        c,
        hw,
        part: Part::Both(split),
        input: &input[..c * hw],
        output: &mut output[..c],
    };
    simd::run(level, run);
}

/// The sums of values `lo..hi` of each of the `c` planes of `hw` values, as
/// [`global_avg_dyn`] sums its parts (bit for bit), undivided: a team member's part.
pub(crate) fn gap_part_dyn(
    level: Level,
    c: usize,
    hw: usize,
    (lo, hi): (usize, usize),
    input: &[f32],
    output: &mut [f32],
) {
    let hi = hi.min(hw);
    let run = GapRun {
        c,
        hw,
        part: Part::Only(lo.min(hi), hi),
        input: &input[..c * hw],
        output: &mut output[..c],
    };
    simd::run(level, run);
}

/// What [`GapRun`] computes of each plane.
#[derive(Clone, Copy)]
enum Part {
    /// The mean: the sums of values `0..split` and `split..hw`, added, divided by `hw`
    /// (with `split` 0 or `hw`: the one sum, divided).
    Both(usize),
    /// The sum of values `lo..hi` alone.
    Only(usize, usize),
}

/// Input floats from which a global average pool splits its channels over the threads.
#[cfg(feature = "parallel")]
pub(super) const GAP_PAR_FLOATS: usize = 32 * 1024;

/// The global average pool of `c` planes of `hw` values, `LANES` channels at a time: each
/// part of each plane ([`Part`]) summed in `LANES` partial sums (whole vectors, then the
/// rest of the part in a masked one), the group's partial sums transposed and added (one
/// vector of `LANES` channel sums); the two parts' sums added, divided by `hw`. A
/// channel at a time, in the baseline level's auto-vectorised loop, the chain of adds of
/// each plane left the pool latency-bound: 1280x7x7 (MobileNetV2) 24 µs for its 250 KB,
/// 512x3x3 (mobilenet_96) 3.0-6.4.
struct GapRun<'a> {
    c: usize,
    hw: usize,
    part: Part,
    /// `c * hw` values.
    input: &'a [f32],
    /// `c` values.
    output: &'a mut [f32],
}

impl WithSimd for GapRun<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let (c, hw) = (self.c, self.hw);
        assert!(self.input.len() >= c * hw && self.output.len() >= c && l <= 16);
        let count = s.splat(hw as f32);
        let (x, y) = (self.input.as_ptr(), self.output.as_mut_ptr());
        for c0 in (0..c).step_by(l) {
            let n = l.min(c - c0);
            // SAFETY: planes `c0 .. c0 + n <= c` of the input (`c * hw` values,
            // asserted), values `lo..hi <= hw` of each.
            let sums = |lo: usize, hi: usize| unsafe { gap_sums(s, x, (c0, n), hw, (lo, hi)) };
            let v = match self.part {
                Part::Both(split) if split == 0 || split >= hw => s.div(sums(0, hw), count),
                Part::Both(split) => s.div(s.add(sums(0, split), sums(split, hw)), count),
                Part::Only(lo, hi) => sums(lo, hi),
            };
            // SAFETY: outputs `c0 .. c0 + n <= c` (`c` values, asserted).
            unsafe { s.store_n(y.add(c0), v, n) };
        }
    }
}

/// The sums of values `lo..hi` of planes `c0..c0 + n` (`n <= LANES`) of `hw` values at
/// `x`, one channel a lane: each in `LANES` partial sums (whole vectors from `lo`, then
/// the rest in a masked one), transposed and added.
///
/// # Safety
///
/// `x` points to at least `(c0 + n) * hw` values, `lo <= hi <= hw`.
#[inline(always)]
unsafe fn gap_sums<S: Simd>(
    s: S,
    x: *const f32,
    (c0, n): (usize, usize),
    hw: usize,
    (lo, hi): (usize, usize),
) -> S::V {
    let l = S::LANES;
    let (full, rest) = ((hi - lo) / l * l, (hi - lo) % l);
    let mut acc = [s.zero(); 16];
    for (g, a) in acc.iter_mut().enumerate().take(n) {
        // SAFETY: plane `c0 + g` of the caller's, values `lo..lo + full` in vectors,
        // then `rest` values to `hi`.
        unsafe {
            let p = x.add((c0 + g) * hw + lo);
            for j in (0..full).step_by(l) {
                *a = s.add(*a, s.load(p.add(j)));
            }
            if rest > 0 {
                *a = s.add(*a, s.load_n(p.add(full), rest));
            }
        }
    }
    s.transpose(&mut acc[..l]);
    acc[1..l].iter().fold(acc[0], |t, &a| s.add(t, a))
}

/// Global max pool with its dimensions as runtime values, at `level`: each plane's
/// maximum (NaN if it holds one) in four independent vectors of running maxima, then
/// across their lanes, and the values past the last whole vector one by one. A value a
/// compare and a branch took ~1 ns (`pool::tests::window_speed`, one core, µs before /
/// after: 160x40x40 565 / 16, 96x64x64 871 / 29, 160x32x32 359 / 10).
pub(super) fn global_max_dyn(level: Level, c: usize, hw: usize, input: &[f32], output: &mut [f32]) {
    simd::run(
        level,
        GmpRun {
            hw,
            input: &input[..c * hw],
            output: &mut output[..c],
        },
    );
}

/// [`global_max_dyn`] as a kernel for [`simd::run`].
struct GmpRun<'a> {
    hw: usize,
    /// `output.len() * hw` values.
    input: &'a [f32],
    output: &'a mut [f32],
}

impl WithSimd for GmpRun<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (l, hw) = (S::LANES, self.hw);
        for (y, plane) in self.output.iter_mut().zip(self.input.chunks_exact(hw)) {
            let full = hw / l * l;
            let mut m = f32::NEG_INFINITY;
            if full > 0 {
                let p = plane.as_ptr();
                // SAFETY: values `0..l` of the plane (`full >= l`).
                let first = unsafe { s.load(p) };
                let mut acc = [first; 4];
                let mut j = l;
                while j + 4 * l <= full {
                    for (k, a) in acc.iter_mut().enumerate() {
                        // SAFETY: values `j + k l .. j + (k + 1) l <= full <= hw`.
                        *a = s.max_nan(*a, unsafe { s.load(p.add(j + k * l)) });
                    }
                    j += 4 * l;
                }
                while j < full {
                    // SAFETY: values `j..j + l <= full`.
                    acc[0] = s.max_nan(acc[0], unsafe { s.load(p.add(j)) });
                    j += l;
                }
                let v = s.max_nan(s.max_nan(acc[0], acc[1]), s.max_nan(acc[2], acc[3]));
                let mut lanes = [0.0f32; 16];
                // SAFETY: `l <= 16` floats of `lanes`.
                unsafe { s.store(lanes.as_mut_ptr(), v) };
                for &x in &lanes[..l] {
                    max_nan(&mut m, x);
                }
            }
            for &x in &plane[full..] {
                max_nan(&mut m, x);
            }
            *y = m;
        }
    }
}

/// Global average pool: `[C, H, W] -> [C]`, `output[c]` the mean of the `HW = H*W`
/// values of channel `c`.
///
/// # Panics
///
/// If `input` is shorter than `C*HW` or `output` than `C`.
pub fn global_avg_pool<const C: usize, const HW: usize>(input: &[f32], output: &mut [f32]) {
    const { assert!(C > 0 && HW > 0) }
    global_avg_dyn(cpu::level(), C, HW, 0, input, output);
}

/// Global max pool: `[C, H, W] -> [C]`, `output[c]` the maximum of the `HW = H*W`
/// values of channel `c` (NaN if one of them is).
///
/// # Panics
///
/// If `input` is shorter than `C*HW` or `output` than `C`.
pub fn global_max_pool<const C: usize, const HW: usize>(input: &[f32], output: &mut [f32]) {
    const { assert!(C > 0 && HW > 0) }
    global_max_dyn(cpu::level(), C, HW, input, output);
}
