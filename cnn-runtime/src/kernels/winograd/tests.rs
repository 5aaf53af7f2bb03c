//! Tests of the Winograd convolution against the f64 reference and the direct engine.

use super::params::{G, G2};
use super::*;
use crate::kernels::conv::{conv2d, ConvParams};
use crate::kernels::reference::{self as r, Axis, Rng};

/// The first six of the reference's activations (the sweeps' random data follows them).
const ACTS: &[Act] = r::ACTS.split_at(6).0;

/// The conformance tolerance, `|got - want| <= 1e-4 + 1e-4 |want|`: asserts it and
/// returns the worst `|got - want| / (1e-4 + 1e-4 |want|)`.
#[track_caller]
fn check_close(got: &[f32], want: &[f64], ctx: &dyn std::fmt::Debug) -> f64 {
    ratio_to_tolerance(got, want, 1.0, ctx)
}

/// The worst `|got - want| / (1e-4 + 1e-4 |want|)`, asserted to be at most `limit`.
#[track_caller]
fn ratio_to_tolerance(got: &[f32], want: &[f64], limit: f64, ctx: &dyn std::fmt::Debug) -> f64 {
    assert_eq!(got.len(), want.len(), "length, {ctx:?}");
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let ratio = (g - w).abs() / (1e-4 + 1e-4 * w.abs());
        assert!(
            ratio <= limit,
            "index {i}: got {g}, want {w} (diff {:e}), {ctx:?}",
            (g - w).abs()
        );
        worst = worst.max(ratio);
    }
    worst
}

/// `Bᵀ`, `Aᵀ` as matrices, for the f64 check of the transforms.
const BT: [[f64; 6]; 6] = [
    [1.0, -1.5, -2.0, 1.5, 1.0, 0.0],
    [0.0, -1.0, 0.5, 2.5, 1.0, 0.0],
    [0.0, 1.0, -2.5, 0.5, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 0.5, -1.0, -0.5, 1.0, 0.0],
    [0.0, 1.0, -1.5, -2.0, 1.5, 1.0],
];
const AT: [[f64; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 0.5, -2.0, 0.0],
    [0.0, 1.0, 1.0, 0.25, 4.0, 0.0],
    [0.0, 1.0, -1.0, 0.125, -8.0, 1.0],
];

/// `Bᵀ`, `Aᵀ` of F(2, 3).
const BT2: [[f64; 6]; 4] = [
    [1.0, 0.0, -1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 1.0, 0.0, 0.0, 0.0],
    [0.0, -1.0, 1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, -1.0, 0.0, 0.0],
];
const AT2: [[f64; 6]; 2] = [
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, -1.0, -1.0, 0.0, 0.0],
];

/// F(4, 3) and F(2, 3) in f64 are the correlation `y[i] = sum_k d[i + k] g[k]`.
#[test]
fn transforms_compute_a_correlation() {
    let mut rng = Rng::new(40);
    let g2: Vec<[f64; 3]> = G2.to_vec();
    type Matrices<'a> = (&'a [[f64; 3]], &'a [[f64; 6]], &'a [[f64; 6]]);
    let f4: Matrices = (&G, &BT, &AT);
    let f2: Matrices = (&g2, &BT2, &AT2);
    for (gm, bt, at) in [f4, f2] {
        let a = bt.len();
        for _ in 0..100 {
            let d: Vec<f64> = (0..a).map(|_| f64::from(rng.f32_in(-1.0, 1.0))).collect();
            let g: Vec<f64> = (0..3).map(|_| f64::from(rng.f32_in(-1.0, 1.0))).collect();
            let u: Vec<f64> = gm
                .iter()
                .map(|row| (0..3).map(|k| row[k] * g[k]).sum())
                .collect();
            let v: Vec<f64> = bt
                .iter()
                .map(|row| (0..a).map(|k| row[k] * d[k]).sum())
                .collect();
            for (i, row) in at.iter().enumerate() {
                let y: f64 = (0..a).map(|k| row[k] * u[k] * v[k]).sum();
                let want: f64 = (0..3).map(|k| d[i + k] * g[k]).sum();
                assert!((y - want).abs() < 1e-12, "{y} {want}");
            }
        }
    }
}

/// The vector transforms equal the matrices.
struct Transforms;

impl WithSimd for Transforms {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let mut rng = Rng::new(41);
        let x: [f32; 6] = core::array::from_fn(|_| rng.f32_in(-1.0, 1.0));
        let v: [S::V; 6] = core::array::from_fn(|i| s.splat(x[i]));
        let lane0 = |v: S::V| {
            let mut buf = [0.0f32; 16];
            // SAFETY: `buf` holds 16 >= LANES floats.
            unsafe { s.store(buf.as_mut_ptr(), v) };
            f64::from(buf[0])
        };
        for (row, &got) in BT.iter().zip(&bt(s, v)) {
            let want: f64 = (0..6).map(|k| row[k] * f64::from(x[k])).sum();
            assert!((lane0(got) - want).abs() < 1e-5);
        }
        for (row, &got) in AT.iter().zip(&at(s, v)) {
            let want: f64 = (0..6).map(|k| row[k] * f64::from(x[k])).sum();
            assert!((lane0(got) - want).abs() < 1e-5);
        }
        for (row, &got) in BT2.iter().zip(&bt2(s, v)) {
            let want: f64 = (0..6).map(|k| row[k] * f64::from(x[k])).sum();
            assert!((lane0(got) - want).abs() < 1e-5);
        }
        for (row, &got) in AT2.iter().zip(&at2(s, v)) {
            let want: f64 = (0..6).map(|k| row[k] * f64::from(x[k])).sum();
            assert!((lane0(got) - want).abs() < 1e-5);
        }
    }
}

#[test]
fn vector_transforms_are_the_matrices() {
    for level in simd::test_levels() {
        simd::run(level, Transforms);
    }
}

fn dims(c: usize, o: usize, ah: Axis, aw: Axis) -> WgDims {
    assert!(ah.k == 3 && aw.k == 3 && ah.s == 1 && aw.s == 1);
    WgDims {
        c,
        h: ah.n,
        w: aw.n,
        o,
        oh: ah.out,
        ow: aw.out,
        ph: ah.p,
        pw: aw.p,
        dh: ah.d,
        dw: aw.d,
        m: 4,
        pool: false,
    }
}

/// Runs Winograd at every level against the f64 reference on random data (weights
/// scaled by `wscale`); returns the worst ratio to the tolerance, asserted to be at
/// most `limit`.
#[allow(clippy::too_many_arguments)]
fn check(
    rng: &mut Rng,
    c: usize,
    o: usize,
    ah: Axis,
    aw: Axis,
    act: Act,
    with_bias: bool,
    wscale: f32,
    limit: f64,
) -> f64 {
    let d = dims(c, o, ah, aw);
    let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
    let weight: Vec<f32> = rng
        .vec(o * c * 9, -1.0, 1.0)
        .iter()
        .map(|w| w * wscale)
        .collect();
    let bias = rng.vec(o, -0.5, 0.5);
    let bias = with_bias.then_some(&bias[..]);
    let want = r::conv2d(c, o, 1, ah, aw, &input, &weight, bias, act);
    // Slices longer than needed: the output tail must stay untouched, the NaNs after
    // the input never read.
    let mut inp = input.clone();
    inp.extend([f32::NAN; 3]);
    let n = o * ah.out * aw.out;
    let mut worst = 0.0f64;
    for tile in [4, 2] {
        let params = WinogradParams::with_tile(tile, o, c, &weight, bias, None);
        for level in simd::test_levels() {
            let mut got = vec![7.0; n + 3];
            winograd_dyn(level, d, &inp, &params, &mut got, None, act);
            let ctx = (d, act, level, tile);
            assert_eq!(&got[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
            worst = worst.max(ratio_to_tolerance(&got[..n], &want, limit, &ctx));
        }
    }
    worst
}

/// 3x3 stride-1 axis geometries: sizes 1..13 (and 17, 20, 46: tile rows of the flat
/// input transform wider than a vector on the portable level, F(4x4), and on AVX2,
/// F(2x2)), padding 0, 1, 2, and 'same' with one more cell of padding at the end than at
/// the start (and the reverse).
fn axes() -> Vec<Axis> {
    let mut axes = Vec::new();
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 17, 20, 46] {
        for p in 0..=2 {
            axes.extend(Axis::conv(n, 3, 1, p, 1));
        }
        // Top padding 0, bottom 2; top 2, bottom 0.
        axes.push(Axis {
            n,
            out: n,
            k: 3,
            s: 1,
            p: 0,
            pe: 2,
            d: 1,
        });
        axes.push(Axis {
            n,
            out: n,
            k: 3,
            s: 1,
            p: 2,
            pe: 0,
            d: 1,
        });
    }
    axes
}

const CH: [usize; 5] = [1, 3, 16, 17, 64];

/// Every geometry on each axis (the other random), channel pairs cycled; then every
/// channel pair over random geometries; every activation.
#[test]
fn sweep_against_reference() {
    let axes = axes();
    let pairs: Vec<(usize, usize)> = CH
        .iter()
        .flat_map(|&c| CH.iter().map(move |&o| (c, o)))
        .collect();
    let mut rng = Rng::new(42);
    let mut worst = 0.0f64;
    let mut k = 0;
    for &a in &axes {
        let b = axes[rng.below(axes.len())];
        for (ah, aw) in [(a, b), (b, a)] {
            let (c, o) = pairs[k % pairs.len()];
            let act = ACTS[k % ACTS.len()];
            let wscale = 1.0 / ((c * 9) as f32).sqrt();
            worst = worst.max(check(&mut rng, c, o, ah, aw, act, k % 4 != 0, wscale, 1.0));
            k += 1;
        }
    }
    // Unscaled weights while the outputs stay O(1) (up to 3 input channels), else
    // scaled by 1/sqrt(fan-in).
    for &(c, o) in &pairs {
        let wscale = if c <= 3 {
            1.0
        } else {
            1.0 / ((c * 9) as f32).sqrt()
        };
        for &act in ACTS {
            let (ah, aw) = (axes[rng.below(axes.len())], axes[rng.below(axes.len())]);
            worst = worst.max(check(&mut rng, c, o, ah, aw, act, true, wscale, 1.0));
        }
    }
    eprintln!("sweep: worst error / tolerance = {worst:.4}");
}

/// Many input channels and the benchmark models' map sizes (transformed weights above
/// 1 MB: products in chunks of 64 channels, 300 leaving a short last one): weights `U(-1, 1)`
/// scaled by `1/sqrt(fan-in)` (outputs O(1)), within the tolerance; and unscaled
/// (outputs O(10-100)), where F(4x4)'s error, about 1e-5 of the outputs' scale,
/// exceeds the tolerance at small outputs: only measured (printed).
#[test]
fn wide_layers_against_reference() {
    let ax = |n, p| Axis::conv(n, 3, 1, p, 1).unwrap();
    let mut rng = Rng::new(43);
    let mut worst = [0.0f64; 2];
    for (c, o, n) in [
        (512, 20, 7),
        (512, 17, 8),
        (256, 33, 14),
        (300, 40, 7),
        (128, 64, 9),
        (64, 64, 16),
        (3, 32, 32),
        // Seven tile rows a little over the block budget at F(4x4): one block of eight.
        (128, 32, 28),
    ] {
        let scaled = 1.0 / ((c * 9) as f32).sqrt();
        for (i, (wscale, limit)) in [(scaled, 1.0), (1.0, f64::INFINITY)]
            .into_iter()
            .enumerate()
        {
            let (a, act) = (ax(n, 1), Act::IDENTITY);
            let w = check(&mut rng, c, o, a, a, act, true, wscale, limit);
            worst[i] = worst[i].max(w);
        }
    }
    eprintln!(
        "wide layers: worst error / tolerance = {:.4} (scaled weights), {:.4} (unscaled)",
        worst[0], worst[1]
    );
}

/// Batch norm folded into Winograd's parameters equals the direct engine with the
/// same batch norm; no bias.
#[test]
fn folded_batch_norm_matches_direct_conv() {
    let mut rng = Rng::new(44);
    const C: usize = 5;
    const O: usize = 18;
    let input = rng.vec(C * 9 * 10, -1.0, 1.0);
    let weight = rng.vec(O * C * 9, -0.3, 0.3);
    let bn = Affine::from_batch_norm(
        &rng.vec(O, 0.5, 1.5),
        &rng.vec(O, -0.3, 0.3),
        &rng.vec(O, -0.5, 0.5),
        &rng.vec(O, 0.5, 2.0),
        1e-5,
    );
    for &act in ACTS {
        let direct = ConvParams::from_torch(O, C, 3, 3, &weight, None, Some(&bn));
        let mut want = vec![0.0; O * 90];
        conv2d::<C, 9, 10, O, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1>(&input, &direct, &mut want, act);
        let wg = WinogradParams::from_torch(O, C, &weight, None, Some(&bn));
        let mut got = vec![0.0; O * 90];
        // A short scratch: the kernel falls back to its per-thread buffer.
        winograd_conv3x3::<C, 9, 10, O, 9, 10, 1, 1, 1, 1>(&input, &wg, &mut got, &mut [], act);
        let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
        check_close(&got, &want, &("folded bn", act));
    }
}

/// The const-generic entry point on a 'same' layer and an unpadded one.
#[test]
fn const_generic_instances() {
    let mut rng = Rng::new(45);
    let input = rng.vec(16 * 11 * 6, -1.0, 1.0);
    let weight = rng.vec(24 * 16 * 9, -0.1, 0.1);
    let bias = rng.vec(24, -0.5, 0.5);
    let params = WinogradParams::from_torch(24, 16, &weight, Some(&bias), None);
    let mut got = vec![0.0; 24 * 11 * 6];
    // The caller's scratch (as the compiler reserves in the arena), poisoned with NaN:
    // nothing may be read before it is written.
    let mut scratch = vec![f32::NAN; winograd_scratch_len(4, 16, 11, 6, 24, 11, 6, 1, 1)];
    winograd_conv3x3::<16, 11, 6, 24, 11, 6, 1, 1, 1, 1>(
        &input,
        &params,
        &mut got,
        &mut scratch,
        Act::RELU,
    );
    let a = |n, p| Axis::conv(n, 3, 1, p, 1).unwrap();
    let want = r::conv2d(
        16,
        24,
        1,
        a(11, 1),
        a(6, 1),
        &input,
        &weight,
        Some(&bias),
        Act::RELU,
    );
    check_close(&got, &want, &"same");
    let mut got = vec![0.0; 24 * 9 * 4];
    let mut scratch = vec![f32::NAN; winograd_scratch_len(4, 16, 11, 6, 24, 9, 4, 1, 1)];
    winograd_conv3x3::<16, 11, 6, 24, 9, 4, 0, 0, 1, 1>(
        &input,
        &params,
        &mut got,
        &mut scratch,
        Act::TANH,
    );
    let want = r::conv2d(
        16,
        24,
        1,
        a(11, 0),
        a(6, 0),
        &input,
        &weight,
        Some(&bias),
        Act::TANH,
    );
    check_close(&got, &want, &"valid");
}

#[test]
#[should_panic(expected = "winograd_conv3x3: parameters")]
fn mismatched_params_panic() {
    let params = WinogradParams::from_torch(2, 3, &[0.0; 54], None, None);
    winograd_conv3x3::<2, 4, 4, 2, 4, 4, 1, 1, 1, 1>(
        &[0.0; 32],
        &params,
        &mut [0.0; 32],
        &mut [],
        Act::IDENTITY,
    );
}

/// 3x3 stride-1 axis geometries with dilation `d`: odd and even sizes, some smaller than
/// the dilation, padding 0, 1, 2 and `d` ('same'), PyTorch's 'same' (the extra cell at
/// the end), and lopsided paddings that leave whole phase planes in the padding.
fn dilated_axes(d: usize) -> Vec<Axis> {
    let mut axes = Vec::new();
    // 35 and 70: phases of whole AVX-512 vectors and a tail (the vector gather of the
    // input's columns and interleave of the outputs' at dilation 2).
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 17, 35, 70] {
        for p in [0, 1, 2, d] {
            axes.extend(Axis::conv(n, 3, 1, p, d));
        }
        axes.push(Axis::same(n, 3, d));
        for (p, pe) in [(0, 2 * d), (2 * d, 0), (2 * d + 1, 2 * d + 1)] {
            axes.push(Axis {
                n,
                out: n + p + pe - 2 * d,
                k: 3,
                s: 1,
                p,
                pe,
                d,
            });
        }
    }
    axes.sort_by_key(|a| (a.n, a.p, a.pe));
    axes.dedup();
    axes
}

/// Dilated layers (through the polyphase split) against the f64 reference: every
/// geometry of each dilated axis against a random one of the other, several channel
/// pairs, every activation, at every level.
#[test]
fn dilated_sweep_against_reference() {
    let pairs = [(16, 32), (3, 16), (40, 24)];
    let mut rng = Rng::new(48);
    let mut worst = 0.0f64;
    let mut k = 0;
    for (dh, dw) in [(2, 2), (3, 3), (2, 1), (1, 3)] {
        let (ahs, aws) = (dilated_axes(dh), dilated_axes(dw));
        let mut cases: Vec<(Axis, Axis)> = Vec::new();
        for &ah in &ahs {
            cases.push((ah, aws[rng.below(aws.len())]));
        }
        for &aw in &aws {
            cases.push((ahs[rng.below(ahs.len())], aw));
        }
        for (ah, aw) in cases {
            let (c, o) = pairs[k % pairs.len()];
            let act = ACTS[k % ACTS.len()];
            let wscale = 1.0 / ((c * 9) as f32).sqrt();
            worst = worst.max(check(&mut rng, c, o, ah, aw, act, k % 4 != 0, wscale, 1.0));
            k += 1;
        }
    }
    eprintln!("dilated sweep ({k} layers): worst error / tolerance = {worst:.4}");
}

/// A phase whose input plane lies wholly in the padding still gets `act(bias)`.
#[test]
fn dilated_all_padding_phase() {
    // One input row, dilation 2, padding 3 above and below: output rows 0 and 2 read
    // input rows -3, -1, 1 and -1, 1, 3 (all padding), row 1 reads row 0.
    let ah = Axis {
        n: 1,
        out: 3,
        k: 3,
        s: 1,
        p: 3,
        pe: 3,
        d: 2,
    };
    let aw = Axis::conv(5, 3, 1, 2, 2).unwrap();
    let mut rng = Rng::new(49);
    for act in [Act::IDENTITY, Act::SIGMOID] {
        check(&mut rng, 3, 16, ah, aw, act, true, 0.5, 1.0);
        check(&mut rng, 3, 16, aw, ah, act, true, 0.5, 1.0);
    }
}

/// The const-generic entry point with dilation 2 equals the direct engine's `conv2d`
/// with dilation 2 (and the arena-sized scratch, poisoned with NaN, suffices).
#[test]
fn dilated_const_generic_matches_direct_conv() {
    let mut rng = Rng::new(50);
    const C: usize = 16;
    const O: usize = 32;
    let input = rng.vec(C * 20 * 15, -1.0, 1.0);
    let weight = rng.vec(O * C * 9, -0.1, 0.1);
    let bias = rng.vec(O, -0.5, 0.5);
    let direct = ConvParams::from_torch(O, C, 3, 3, &weight, Some(&bias), None);
    let wg = WinogradParams::from_torch(O, C, &weight, Some(&bias), None);
    // 'Same' (padding 2) and unpadded.
    let mut want = vec![0.0; O * 20 * 15];
    conv2d::<C, 20, 15, O, 20, 15, 3, 3, 1, 1, 2, 2, 2, 2, 1>(
        &input,
        &direct,
        &mut want,
        Act::RELU,
    );
    let mut got = vec![0.0; O * 20 * 15];
    let mut scratch = vec![f32::NAN; winograd_scratch_len(4, C, 20, 15, O, 20, 15, 2, 2)];
    winograd_conv3x3::<C, 20, 15, O, 20, 15, 2, 2, 2, 2>(
        &input,
        &wg,
        &mut got,
        &mut scratch,
        Act::RELU,
    );
    let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    check_close(&got, &want, &"dilation 2, same");
    let mut want = vec![0.0; O * 16 * 11];
    conv2d::<C, 20, 15, O, 16, 11, 3, 3, 1, 1, 0, 0, 2, 2, 1>(
        &input,
        &direct,
        &mut want,
        Act::TANH,
    );
    let mut got = vec![0.0; O * 16 * 11];
    let mut scratch = vec![f32::NAN; winograd_scratch_len(4, C, 20, 15, O, 16, 11, 2, 2)];
    winograd_conv3x3::<C, 20, 15, O, 16, 11, 0, 0, 2, 2>(
        &input,
        &wg,
        &mut got,
        &mut scratch,
        Act::TANH,
    );
    let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    check_close(&got, &want, &"dilation 2, valid");
}

/// Through the pool: 2 and 3 threads give the one-thread result bit for bit, at every
/// level, and never write past the output. Layers with several tile rows per block (split
/// by tile rows), with one tile row (split phase by phase), several blocks (large maps),
/// odd sizes and channel counts.
#[cfg(feature = "parallel")]
#[test]
fn threads_give_the_one_thread_result_bit_for_bit() {
    let _g = crate::pool::test_lock();
    let ax = |n, p| Axis::conv(n, 3, 1, p, 1).unwrap();
    let mut rng = Rng::new(47);
    for (c, o, ah, aw) in [
        (32, 32, ax(32, 1), ax(32, 1)),
        (64, 128, ax(8, 1), ax(8, 1)),
        (40, 24, ax(21, 1), ax(23, 0)),
        (64, 64, ax(4, 1), ax(30, 1)),
        (16, 32, ax(96, 1), ax(96, 1)),
        (128, 128, ax(14, 1), ax(14, 1)),
        (96, 40, ax(8, 1), ax(6, 1)),
        // Odd tile-row counts (7 at F(4x4), 5 at F(2x2)) over two threads: the middle
        // row's panels halved where each half has four (8 and 9 panels), whole rows
        // where not (2 and 3).
        (128, 32, ax(28, 1), ax(28, 1)),
        (48, 40, ax(10, 1), ax(13, 1)),
        (32, 128, ax(27, 1), ax(27, 1)),
        (24, 136, ax(10, 1), ax(9, 1)),
    ] {
        let d = dims(c, o, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let wscale = 1.0 / ((c * 9) as f32).sqrt();
        let weight: Vec<f32> = rng.vec(o * c * 9, -wscale, wscale);
        let bias = rng.vec(o, -0.5, 0.5);
        let n = o * ah.out * aw.out;
        for tile in [4, 2] {
            let params = WinogradParams::with_tile(tile, o, c, &weight, Some(&bias), None);
            for level in simd::test_levels() {
                r::assert_threads_match_one(n, &(d, level, tile), |out| {
                    winograd_dyn(level, d, &input, &params, out, None, Act::RELU)
                });
            }
        }
    }
    crate::pool::set_num_threads(2);
}

/// `max_pool2d(y, 2)` (floor mode) of `o` planes of `oh x ow` values: the reference
/// pool, in f32 (a maximum is exact).
fn pool2(y: &[f32], o: usize, oh: usize, ow: usize) -> Vec<f32> {
    let ax = |n| Axis::pool(n, 2, 2, 0, 1, false).unwrap();
    r::max_pool2d(o, ax(oh), ax(ow), y)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// The fused max pool (`WgDims::pool`) gives exactly the pooled output of the unfused
/// convolution, at every level, with both tiles, on even and odd output sizes (floor
/// mode drops the last row or column), partial tiles, channel counts off the vector
/// width, curved and piecewise activations, and never writes past the pooled output.
#[test]
fn fused_max_pool_is_the_pool_of_the_convolution() {
    let ax = |n, p| Axis::conv(n, 3, 1, p, 1).unwrap();
    let mut rng = Rng::new(53);
    let mut k = 0;
    for (c, o, ah, aw) in [
        (3, 16, ax(32, 1), ax(32, 1)),
        (16, 17, ax(8, 1), ax(8, 1)),
        (8, 40, ax(10, 1), ax(14, 1)),
        (5, 3, ax(7, 1), ax(9, 0)),
        (17, 33, ax(6, 1), ax(5, 1)),
        (4, 8, ax(2, 1), ax(3, 1)),
        (64, 128, ax(8, 1), ax(8, 1)),
        // 7 tile rows at F(4x4), 8 panels: two threads halve the middle row's panels.
        (8, 128, ax(28, 1), ax(28, 1)),
        (12, 20, ax(30, 1), ax(22, 2)),
        (2, 64, ax(46, 1), ax(13, 1)),
    ] {
        let d = dims(c, o, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let wscale = 1.0 / ((c * 9) as f32).sqrt();
        let weight = rng.vec(o * c * 9, -wscale, wscale);
        let bias = rng.vec(o, -0.5, 0.5);
        let (oh, ow) = (ah.out, aw.out);
        let n = o * (oh / 2) * (ow / 2);
        for tile in [4, 2] {
            let params = WinogradParams::with_tile(tile, o, c, &weight, Some(&bias), None);
            for level in simd::test_levels() {
                let act = ACTS[k % ACTS.len()];
                k += 1;
                let mut conv = vec![0.0; o * oh * ow];
                winograd_dyn(level, d, &input, &params, &mut conv, None, act);
                let want = pool2(&conv, o, oh, ow);
                let mut got = vec![7.0; n + 3];
                let pd = WgDims { pool: true, ..d };
                winograd_dyn(level, pd, &input, &params, &mut got, None, act);
                let ctx = (pd, level, tile, act);
                assert_eq!(&got[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
                assert!(got[..n] == want[..], "{ctx:?}");
                #[cfg(feature = "parallel")]
                {
                    let _g = crate::pool::test_lock();
                    r::assert_threads_match_one(n, &ctx, |out| {
                        winograd_dyn(level, pd, &input, &params, out, None, act)
                    });
                }
            }
        }
    }
}

/// The const-generic entry point of the fused max pool agrees with the dynamic one.
#[test]
fn fused_max_pool_entry_point() {
    let mut rng = Rng::new(54);
    let (input, weight, bias) = (
        rng.vec(8 * 12 * 10, -1.0, 1.0),
        rng.vec(24 * 8 * 9, -0.3, 0.3),
        rng.vec(24, -0.5, 0.5),
    );
    let params = WinogradParams::with_tile(4, 24, 8, &weight, Some(&bias), None);
    let mut scratch = vec![0.0; winograd_scratch_len(4, 8, 12, 10, 24, 12, 10, 1, 1)];
    let mut got = vec![0.0; 24 * 6 * 5];
    winograd_conv3x3_maxpool2::<8, 12, 10, 24, 12, 10, 1, 1>(
        &input,
        &params,
        &mut got,
        &mut scratch,
        Act::RELU,
    );
    let mut conv = vec![0.0; 24 * 12 * 10];
    winograd_conv3x3::<8, 12, 10, 24, 12, 10, 1, 1, 1, 1>(
        &input,
        &params,
        &mut conv,
        &mut scratch,
        Act::RELU,
    );
    assert!(got == pool2(&conv, 24, 12, 10));
}

/// A residual added by the output transform ([`winograd_conv3x3_residual`]): the bits
/// of the convolution stored and then added by the add kernel with the activation, for
/// both tiles, every level, partial tiles (odd sizes), a dilated layer (its polyphase
/// output added whole) and the thread splits (tile rows, phases); the same bits on 2
/// and 3 threads.
#[test]
fn residual_equals_conv_then_add_bit_for_bit() {
    use crate::kernels::binary::{binary_assign_dyn, BinOp};
    #[cfg(feature = "parallel")]
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(53);
    let ax = |n: usize, p: usize, dl: usize| Axis::conv(n, 3, 1, p, dl).unwrap();
    for (c, o, ah, aw) in [
        (8, 20, ax(9, 1, 1), ax(11, 1, 1)),
        (64, 64, ax(56, 1, 1), ax(56, 1, 1)),
        (32, 48, ax(14, 0, 1), ax(13, 1, 1)),
        (512, 512, ax(7, 1, 1), ax(7, 1, 1)),
        (16, 24, ax(12, 2, 2), ax(10, 2, 2)),
        // Odd tile rows (7 at F(4x4), 13 at F(2x2)), 8 panels: the middle row halved.
        (16, 128, ax(26, 1, 1), ax(26, 1, 1)),
    ] {
        let mut d = dims(c, o, ah, aw);
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let wscale = 1.0 / ((c * 9) as f32).sqrt();
        let weight: Vec<f32> = rng.vec(o * c * 9, -wscale, wscale);
        let bias = rng.vec(o, -0.5, 0.5);
        let n = o * ah.out * aw.out;
        let res = rng.vec(n, -2.0, 2.0);
        let shape = [o, ah.out, aw.out];
        for tile in [4, 2] {
            let params = WinogradParams::with_tile(tile, o, c, &weight, Some(&bias), None);
            d.m = tile;
            for level in simd::test_levels() {
                for act in [Act::IDENTITY, Act::RELU, Act::SILU] {
                    let ctx = (d, level, tile, act.kind());
                    let mut want = vec![0.0; n];
                    winograd_dyn(level, d, &input, &params, &mut want, None, Act::IDENTITY);
                    binary_assign_dyn(level, shape, shape, &mut want, &res, BinOp::Add, act);
                    let run = |out: &mut [f32]| {
                        winograd_res(level, d, &input, &params, out, None, act, Some(&res), None)
                    };
                    let mut got = vec![7.0; n + 3];
                    run(&mut got);
                    assert_eq!(&got[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
                    let same = got[..n]
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "fused residual differs: {ctx:?}");
                    #[cfg(feature = "parallel")]
                    r::assert_threads_match_one(n, &ctx, run);
                }
            }
        }
    }
    #[cfg(feature = "parallel")]
    crate::pool::set_num_threads(2);
}

/// The public kernel with const dimensions: the residual variant equals the plain one
/// followed by the add.
#[test]
fn residual_const_generic_instance() {
    let mut rng = Rng::new(54);
    let (c, o) = (4, 6);
    let input = rng.vec(c * 10 * 10, -1.0, 1.0);
    let weight = rng.vec(o * c * 9, -0.3, 0.3);
    let res = rng.vec(o * 100, -1.0, 1.0);
    let params = WinogradParams::with_tile(4, o, c, &weight, None, None);
    let mut scratch = vec![0.0; winograd_scratch_len(4, c, 10, 10, o, 10, 10, 1, 1)];
    let mut plain = vec![0.0; o * 100];
    winograd_conv3x3::<4, 10, 10, 6, 10, 10, 1, 1, 1, 1>(
        &input,
        &params,
        &mut plain,
        &mut scratch,
        Act::IDENTITY,
    );
    let mut got = vec![0.0; o * 100];
    winograd_conv3x3_residual::<4, 10, 10, 6, 10, 10, 1, 1, 1, 1>(
        &input,
        &params,
        &res,
        &mut got,
        &mut scratch,
        Act::RELU,
    );
    for ((g, p), q) in got.iter().zip(&plain).zip(&res) {
        assert_eq!(g.to_bits(), (p + q).max(0.0).to_bits());
    }
}
