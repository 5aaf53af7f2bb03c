//! Fully connected layer (PyTorch `Linear`), fused with its activation.
//!
//! The weights are packed at load time in panels of 16 outputs, `[ceil(out/16)][in][16]`
//! (the convolution engine's layout for a 1x1 map), so the kernel is a matrix-vector
//! product vectorised over outputs: each input broadcast once per group of panels, each
//! weight row loaded once, bias and activation applied in registers.

use super::activation::Act;
use super::engine::{self, Row16, PANEL};
#[cfg(feature = "alloc")]
use super::norm::fold_bn;
use super::norm::Affine;
use super::simd::{self, Simd, WithSimd};
use super::SharedPtr;
use crate::buf::Buf;
use crate::cpu::{self, Level};
#[cfg(feature = "alloc")]
#[allow(unused_imports)]
use alloc::{boxed::Box, vec, vec::Vec};

/// Weights and bias of a linear layer, repacked for [`linear`].
#[derive(Clone, Debug, PartialEq)]
pub struct LinearParams {
    /// Output features.
    out: usize,
    /// Input features.
    inp: usize,
    /// Panels of 16 outputs: `[ceil(out/16)][inp][16]`, batch norm folded in, zeros past
    /// `out`.
    weight: Buf<Row16>,
    /// `[ceil(out/16)][16]`, zeros when the layer has no bias, batch norm folded in.
    bias: Buf<Row16>,
}

#[cfg(feature = "alloc")]
impl crate::buf::Embed for LinearParams {
    fn parts(&self) -> crate::buf::Parts {
        use crate::buf::row_bytes;
        crate::buf::Parts {
            dims: alloc::vec![self.out, self.inp],
            bufs: alloc::vec![
                (true, row_bytes(&self.weight)),
                (true, row_bytes(&self.bias))
            ],
        }
    }
}

impl LinearParams {
    #[cfg(feature = "alloc")]
    /// Builds the parameters from a PyTorch `Linear` weight `[out, inp]` and its optional
    /// bias `[out]`.
    ///
    /// `bn` is a batch norm that follows the layer, folded in here:
    /// `w'[o] = w[o] * scale[o]`, `b'[o] = b[o] * scale[o] + shift[o]`, computed in f64.
    ///
    /// # Panics
    ///
    /// If a length does not match the dimensions (the caller has checked them).
    pub fn from_torch(
        out: usize,
        inp: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        bn: Option<&Affine>,
    ) -> LinearParams {
        let (weight, bias) = fold_bn(out, inp, weight, bias, bn);
        // A linear layer is a 1x1 convolution of a 1x1 map: the same panels.
        let (weight, bias) = engine::pack_conv(out, inp, 1, &weight, &bias);
        LinearParams {
            out,
            inp,
            weight: weight.into(),
            bias: bias.into(),
        }
    }

    /// Parameters computed at compile time ([`crate::buf::Embed`]): dims `[out, inp]`,
    /// the weight and bias panels.
    #[doc(hidden)]
    pub const fn from_static(
        dims: [usize; 2],
        weight: &'static [Row16],
        bias: &'static [Row16],
    ) -> LinearParams {
        let [out, inp] = dims;
        LinearParams {
            out,
            inp,
            weight: Buf::Static(weight),
            bias: Buf::Static(bias),
        }
    }
}

/// One group of panels of a linear layer: where it reads and writes.
#[derive(Clone, Copy)]
struct LinArgs {
    inp: usize,
    /// The first panel's weights.
    w: *const f32,
    /// The input vector.
    x: *const f32,
    /// The first panel's bias.
    bias: *const f32,
    /// The first panel's outputs.
    y: *mut f32,
    /// Outputs written.
    n: usize,
    act: Act,
}

/// `P` panels (`16 * P` outputs, `VEC` vectors each) of `y = act(W x + b)`: one pass over
/// the input, each weight row loaded once; run as an isolated function
/// ([`Simd::vectorize`]).
struct LinTile<const VEC: usize, const P: usize>(LinArgs);

impl<const VEC: usize, const P: usize> LinTile<VEC, P> {
    /// # Safety
    ///
    /// `w` must hold `P` panels of `inp` rows, `x` `inp` floats, `bias` `P` rows; `y` must
    /// be writable for `n` floats (`n <= 16 * P`, covering every panel but the last fully).
    #[inline(always)]
    unsafe fn new(a: LinArgs) -> Self {
        LinTile(a)
    }
}

impl<const VEC: usize, const P: usize> WithSimd for LinTile<VEC, P> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let a = self.0;
        let l = S::LANES;
        let mut acc = [[s.zero(); VEC]; P];
        // SAFETY: (whole body) within the ranges `new`'s caller guaranteed.
        unsafe {
            for i in 0..a.inp {
                let xi = s.bcast(a.x.add(i));
                for (p, x) in acc.iter_mut().enumerate() {
                    let row = a.w.add((p * a.inp + i) * PANEL);
                    for (v, xv) in x.iter_mut().enumerate() {
                        *xv = s.mul_add(s.load(row.add(v * l)), xi, *xv);
                    }
                }
            }
            for (p, x) in acc.iter().enumerate() {
                for (v, &xv) in x.iter().enumerate() {
                    let k = p * PANEL + v * l;
                    if k >= a.n {
                        break;
                    }
                    let r = s.act(s.add(xv, s.load(a.bias.add(k))), a.act);
                    if a.n - k >= l {
                        s.store(a.y.add(k), r);
                    } else {
                        s.store_n(a.y.add(k), r, a.n - k);
                    }
                }
            }
        }
    }
}

/// The linear layer as a kernel for [`simd::run`].
struct LinearRun<'a> {
    inp: usize,
    out: usize,
    input: &'a [f32],
    params: &'a LinearParams,
    output: &'a mut [f32],
    act: Act,
}

impl WithSimd for LinearRun<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (inp, out) = (self.inp, self.out);
        let input = &self.input[..inp];
        let output = &mut self.output[..out];
        let panels = out.div_ceil(PANEL);
        assert_eq!(self.params.weight.len(), panels * inp);
        assert_eq!(self.params.bias.len(), panels);
        let w = SharedPtr(self.params.weight.as_ptr().cast::<f32>().cast_mut());
        let b = SharedPtr(self.params.bias.as_ptr().cast::<f32>().cast_mut());
        let act = self.act;
        // Eight accumulators: 8 panels of one vector (AVX-512), 4 of two (AVX2), 2 of four.
        let group = S::TUNING.lin_panels;
        let groups = panels.div_ceil(group);
        // Panel groups `g0..g1`: the tiles one thread runs, whichever thread runs them.
        let run_groups = |g0: usize, g1: usize, y: *mut f32| {
            for g in g0..g1 {
                let p0 = g * group;
                let np = group.min(panels - p0);
                let n = (out - p0 * PANEL).min(np * PANEL);
                // SAFETY: panels p0..p0+np of the weights (`inp` rows each) and bias,
                // `inp` inputs, and outputs p0*16 .. p0*16 + n, inside `output` (`y` is
                // its start).
                unsafe {
                    let a = LinArgs {
                        inp,
                        w: w.get().add(p0 * inp * PANEL),
                        x: input.as_ptr(),
                        bias: b.get().add(p0 * PANEL),
                        y: y.add(p0 * PANEL),
                        n,
                        act,
                    };
                    lin_tile(s, np, a);
                }
            }
        };
        #[cfg(feature = "parallel")]
        {
            let parts = lin_parts(inp, out, groups, crate::pool::num_threads());
            if parts > 1 {
                let y = SharedPtr(output.as_mut_ptr());
                crate::pool::run(parts, &|i| {
                    // Contiguous ranges of whole groups: each output is computed by the
                    // tile that computes it on one thread (the same bits).
                    run_groups(i * groups / parts, (i + 1) * groups / parts, y.get());
                });
                return;
            }
        }
        run_groups(0, groups, output.as_mut_ptr());
    }
}

/// Runs the tile of `np` panels (at most the level's `lin_panels`) on `a`.
///
/// # Safety
///
/// As [`LinTile::new`].
#[inline(always)]
unsafe fn lin_tile<S: Simd>(s: S, np: usize, a: LinArgs) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (S::LANES, np) {
            (16, 8) => s.vectorize(LinTile::<1, 8>::new(a)),
            (16, 7) => s.vectorize(LinTile::<1, 7>::new(a)),
            (16, 6) => s.vectorize(LinTile::<1, 6>::new(a)),
            (16, 5) => s.vectorize(LinTile::<1, 5>::new(a)),
            (16, 4) => s.vectorize(LinTile::<1, 4>::new(a)),
            (16, 3) => s.vectorize(LinTile::<1, 3>::new(a)),
            (16, 2) => s.vectorize(LinTile::<1, 2>::new(a)),
            (16, _) => s.vectorize(LinTile::<1, 1>::new(a)),
            (8, 4) => s.vectorize(LinTile::<2, 4>::new(a)),
            (8, 3) => s.vectorize(LinTile::<2, 3>::new(a)),
            (8, 2) => s.vectorize(LinTile::<2, 2>::new(a)),
            (8, _) => s.vectorize(LinTile::<2, 1>::new(a)),
            (_, 2) => s.vectorize(LinTile::<4, 2>::new(a)),
            (_, _) => s.vectorize(LinTile::<4, 1>::new(a)),
        }
    }
}

/// Multiply-adds below which a linear layer runs on the calling thread: a layer this
/// size streams its 2 MB of weights in ~100 µs, a fork/join costs ~1 µs; LeNet-5's
/// (48K and smaller) stay whole.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
const PAR_MACS: usize = 500_000;

/// Parts a linear layer of `inp` inputs and `out` outputs (`groups` panel groups) is
/// split into over `threads` threads: one for small layers, else one per thread (as
/// many as there are groups). A batch-1 linear layer reads each weight once: it is
/// bound by memory bandwidth, which two cores draw more of than one.
#[cfg_attr(not(feature = "parallel"), allow(dead_code))]
fn lin_parts(inp: usize, out: usize, groups: usize, threads: usize) -> usize {
    if inp * out < PAR_MACS {
        1
    } else {
        threads.min(groups).max(1)
    }
}

/// The linear layer with its dimensions as runtime values, at `level`; see [`linear`].
fn linear_dyn(
    level: Level,
    inp: usize,
    out: usize,
    input: &[f32],
    params: &LinearParams,
    output: &mut [f32],
    act: Act,
) {
    let run = LinearRun {
        inp,
        out,
        input: &input[..inp],
        params,
        output: &mut output[..out],
        act,
    };
    simd::run(level, run);
}

/// Fully connected layer fused with its activation, PyTorch `Linear`:
/// `output[o] = act(bias[o] + sum over i of weight[o][i] * input[i])`.
///
/// `input` holds at least `IN` values and `output` at least `OUT`.
///
/// # Panics
///
/// If `params` was built for other dimensions, or a slice is too short.
pub fn linear<const IN: usize, const OUT: usize>(
    input: &[f32],
    params: &LinearParams,
    output: &mut [f32],
    act: Act,
) {
    const { assert!(IN > 0 && OUT > 0) }
    assert!(
        params.out == OUT && params.inp == IN,
        "linear: parameters are [{}, {}], the layer wants [{OUT}, {IN}]",
        params.out,
        params.inp
    );
    linear_dyn(cpu::level(), IN, OUT, input, params, output, act);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::norm::channel_affine;
    use crate::kernels::reference::{self as r, Rng};
    use crate::kernels::simd;

    /// The first six of the reference's activations (the sweeps' random data follows them).
    const ACTS: &[Act] = r::ACTS.split_at(6).0;

    /// The activations added later, fused into the epilogue at every level (a sweep of
    /// its own, so that the random data of the one below stays as it was).
    #[test]
    fn new_activations_in_epilogue() {
        let mut rng = Rng::new(42);
        for inp in [1, 7, 16, 17, 100] {
            for out in [1, 5, 16 * 5 + 3] {
                for act in [Act::SILU, Act::HARD_SWISH, Act::HARD_SIGMOID, Act::GELU] {
                    let x = rng.vec(inp, -1.0, 1.0);
                    let w = rng.vec(out * inp, -1.0, 1.0);
                    let b = rng.vec(out, -0.5, 0.5);
                    let p = LinearParams::from_torch(out, inp, &w, Some(&b), None);
                    let want = r::linear(inp, out, &x, &w, Some(&b), act);
                    for level in simd::test_levels() {
                        let mut got = vec![7.0; out];
                        linear_dyn(level, inp, out, &x, &p, &mut got, act);
                        r::assert_close(&got, &want, &(inp, out, act, level));
                    }
                }
            }
        }
    }

    /// Input sizes around the lane count, output sizes 1 and more, with and without bias.
    #[test]
    fn sweep_against_reference() {
        let mut rng = Rng::new(41);
        let mut cases = 0;
        for inp in [1, 2, 3, 7, 8, 9, 15, 16, 17, 33, 100, 400, 1000] {
            for out in [1, 2, 5, 10, 84, 120, 16 * 5 + 3] {
                for (k, &act) in ACTS.iter().enumerate() {
                    let x = rng.vec(inp, -1.0, 1.0);
                    let w = rng.vec(out * inp, -1.0, 1.0);
                    let b = rng.vec(out, -0.5, 0.5);
                    let b = (k % 3 != 0).then_some(&b[..]);
                    let p = LinearParams::from_torch(out, inp, &w, b, None);
                    let mut xin = x.clone();
                    xin.push(f32::NAN);
                    let want = r::linear(inp, out, &x, &w, b, act);
                    for level in simd::test_levels() {
                        let mut got = vec![7.0; out + 1];
                        linear_dyn(level, inp, out, &xin, &p, &mut got, act);
                        assert_eq!(got[out], 7.0, "wrote past the output");
                        r::assert_close(&got[..out], &want, &(inp, out, act, level));
                    }
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 13 * 7 * 6);
    }

    #[test]
    fn const_generic_instance_and_folded_bn() {
        const IN: usize = 400;
        const OUT: usize = 120;
        let mut rng = Rng::new(42);
        let x = rng.vec(IN, -1.0, 1.0);
        let w = rng.vec(OUT * IN, -0.05, 0.05);
        let b = rng.vec(OUT, -0.2, 0.2);
        let p = LinearParams::from_torch(OUT, IN, &w, Some(&b), None);
        let mut got = [0.0; OUT];
        linear::<IN, OUT>(&x, &p, &mut got, Act::TANH);
        r::assert_close(
            &got,
            &r::linear(IN, OUT, &x, &w, Some(&b), Act::TANH),
            &"linear 400->120",
        );

        let bn = Affine::from_batch_norm(
            &rng.vec(OUT, 0.5, 1.5),
            &rng.vec(OUT, -0.3, 0.3),
            &rng.vec(OUT, -0.5, 0.5),
            &rng.vec(OUT, 0.5, 2.0),
            1e-5,
        );
        for bias in [Some(&b[..]), None] {
            let plain = LinearParams::from_torch(OUT, IN, &w, bias, None);
            let folded = LinearParams::from_torch(OUT, IN, &w, bias, Some(&bn));
            let mut want = [0.0; OUT];
            linear::<IN, OUT>(&x, &plain, &mut want, Act::IDENTITY);
            channel_affine::<OUT, 1>(&mut want, &bn, Act::RELU);
            linear::<IN, OUT>(&x, &folded, &mut got, Act::RELU);
            let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
            r::assert_close(&got, &want, &"folded bn");
        }
    }

    /// Big layers split their panel groups over the threads: 2 and 3 threads give the
    /// one-thread result bit for bit at every level (outputs a whole number of panel
    /// groups, a partial last panel, fewer groups than threads), which is the reference's.
    #[cfg(feature = "parallel")]
    #[test]
    fn threads_give_the_one_thread_result_bit_for_bit() {
        let _g = crate::pool::test_lock();
        let mut rng = Rng::new(77);
        for (inp, out) in [
            (1280, 1000),
            (512, 1000),
            (2048, 250),
            (4000, 130),
            (700, 1024),
        ] {
            assert!(inp * out >= PAR_MACS);
            assert!(lin_parts(inp, out, out.div_ceil(PANEL).div_ceil(8), 2) == 2);
            let x = rng.vec(inp, -1.0, 1.0);
            let w = rng.vec(out * inp, -0.05, 0.05);
            let b = rng.vec(out, -0.2, 0.2);
            let p = LinearParams::from_torch(out, inp, &w, Some(&b), None);
            let want = r::linear(inp, out, &x, &w, Some(&b), Act::RELU6);
            for level in simd::test_levels() {
                r::assert_threads_match_one(out, &(inp, out, level), |y| {
                    linear_dyn(level, inp, out, &x, &p, y, Act::RELU6);
                    r::assert_close(&y[..out], &want, &(inp, out, level));
                });
            }
        }
        assert_eq!(lin_parts(400, 120, 1, 2), 1, "LeNet-5's fc1 stays whole");
        assert_eq!(lin_parts(4000, 130, 2, 8), 2, "no more parts than groups");
        crate::pool::set_num_threads(2);
    }

    #[test]
    #[should_panic(expected = "linear: parameters")]
    fn mismatched_params_panic() {
        let p = LinearParams::from_torch(2, 3, &[0.0; 6], None, None);
        linear::<2, 3>(&[0.0; 3], &p, &mut [0.0; 3], Act::IDENTITY);
    }
}
