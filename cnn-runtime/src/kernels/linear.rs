//! Fully connected layer (PyTorch `Linear`), fused with its activation.

use super::activation::Act;
use super::norm::{fold_bn, Affine};

/// Weights and bias of a linear layer, repacked for [`linear`].
#[derive(Clone, Debug, PartialEq)]
pub struct LinearParams {
    /// Output features.
    out: usize,
    /// Input features.
    inp: usize,
    /// `[out][inp]` (PyTorch's layout), batch norm folded in.
    weight: Box<[f32]>,
    /// `[out]`, zeros when the layer has no bias, batch norm folded in.
    bias: Box<[f32]>,
}

impl LinearParams {
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
        LinearParams {
            out,
            inp,
            weight,
            bias,
        }
    }
}

/// Lanes of the dot product: independent accumulators, so the loop vectorises without
/// reassociating f32 additions.
const LANES: usize = 8;

/// `sum a[i] * b[i]` over the common length, in [`LANES`] interleaved partial sums.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; LANES];
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += x * y;
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}

/// The linear layer with its dimensions as runtime values; see [`linear`].
#[inline(always)]
fn linear_dyn(
    inp: usize,
    out: usize,
    input: &[f32],
    params: &LinearParams,
    output: &mut [f32],
    act: Act,
) {
    let input = &input[..inp];
    let output = &mut output[..out];
    let weight = &params.weight[..out * inp];
    let bias = &params.bias[..out];
    for ((y, row), &b) in output.iter_mut().zip(weight.chunks_exact(inp)).zip(bias) {
        *y = act.apply(dot(row, input) + b);
    }
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
    linear_dyn(IN, OUT, input, params, output, act);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::norm::channel_affine;
    use crate::kernels::reference::{self as r, Rng};

    const ACTS: [Act; 6] = [
        Act::Identity,
        Act::Relu,
        Act::Relu6,
        Act::Tanh,
        Act::Sigmoid,
        Act::LeakyRelu(0.1),
    ];

    /// Input sizes around the lane count, output sizes 1 and more, with and without bias.
    #[test]
    fn sweep_against_reference() {
        let mut rng = Rng::new(41);
        let mut cases = 0;
        for inp in [1, 2, 3, 7, 8, 9, 15, 16, 17, 33, 100, 400, 1000] {
            for out in [1, 2, 5, 10, 84] {
                for (k, act) in ACTS.into_iter().enumerate() {
                    let x = rng.vec(inp, -1.0, 1.0);
                    let w = rng.vec(out * inp, -1.0, 1.0);
                    let b = rng.vec(out, -0.5, 0.5);
                    let b = (k % 3 != 0).then_some(&b[..]);
                    let p = LinearParams::from_torch(out, inp, &w, b, None);
                    let mut xin = x.clone();
                    xin.push(f32::NAN);
                    let mut got = vec![7.0; out + 1];
                    linear_dyn(inp, out, &xin, &p, &mut got, act);
                    assert_eq!(got[out], 7.0, "wrote past the output");
                    let want = r::linear(inp, out, &x, &w, b, act);
                    r::assert_close(&got[..out], &want, &(inp, out, act));
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 13 * 5 * 6);
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
        linear::<IN, OUT>(&x, &p, &mut got, Act::Tanh);
        r::assert_close(
            &got,
            &r::linear(IN, OUT, &x, &w, Some(&b), Act::Tanh),
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
            linear::<IN, OUT>(&x, &plain, &mut want, Act::Identity);
            channel_affine::<OUT, 1>(&mut want, &bn, Act::Relu);
            linear::<IN, OUT>(&x, &folded, &mut got, Act::Relu);
            let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
            r::assert_close(&got, &want, &"folded bn");
        }
    }

    #[test]
    #[should_panic(expected = "linear: parameters")]
    fn mismatched_params_panic() {
        let p = LinearParams::from_torch(2, 3, &[0.0; 6], None, None);
        linear::<2, 3>(&[0.0; 3], &p, &mut [0.0; 3], Act::Identity);
    }
}
