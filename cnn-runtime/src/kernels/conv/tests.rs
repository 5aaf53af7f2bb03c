//! Tests of the convolution against the f64 reference, at every level.

use super::run::*;
use super::*;
use crate::kernels::engine::Plan;
use crate::kernels::norm::channel_affine;
use crate::kernels::reference::{self as r, Axis, Rng, ACTS};
use crate::kernels::simd;

/// Channel configurations `(c, o, groups)`: groups 1, 2, C, and in != out.
pub(super) const CHANNELS: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 3, 1),
    (3, 2, 1),
    (2, 4, 2),
    (4, 2, 2),
    (3, 3, 3),
    (4, 8, 4),
    (6, 6, 3),
    (5, 5, 5),
    (8, 4, 1),
];

pub(super) fn dims(c: usize, o: usize, g: usize, ah: Axis, aw: Axis) -> Dims2d {
    r::dims2d(c, o, g, ah, aw)
}

/// Runs the fast convolution and the f64 reference on random data, channels
/// `(c, o, g)`.
pub(super) fn check(
    rng: &mut Rng,
    (c, o, g): (usize, usize, usize),
    ah: Axis,
    aw: Axis,
    act: Act,
    with_bias: bool,
) {
    let d = dims(c, o, g, ah, aw);
    let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
    let weight = rng.vec(o * (c / g) * ah.k * aw.k, -1.0, 1.0);
    let bias = rng.vec(o, -0.5, 0.5);
    let bias = with_bias.then_some(&bias[..]);
    let params = ConvParams::from_torch(o, c / g, ah.k, aw.k, &weight, bias, None);
    let want = r::conv2d(c, o, g, ah, aw, &input, &weight, bias, act);
    check_all_paths(d, &input, &params, act, &want);
}

/// Band buffer sizes the engine is tested with: the real one, one small enough to
/// split most convolutions into bands and channel chunks, one that sends padded
/// convolutions to the fallback.
pub(super) const CAPS: [usize; 3] = [engine::SCRATCH, 64, 1];

/// Runs the convolution at every level, with each micro-kernel forced and the
/// automatic choice, at every band size, against `want`.
pub(super) fn check_all_paths(
    d: Dims2d,
    input: &[f32],
    params: &ConvParams,
    act: Act,
    want: &[f64],
) {
    // Slices longer than needed: the tail of the output must stay untouched, and
    // the NaNs after the input must never be read.
    let mut inp = input.to_vec();
    inp.extend([f32::NAN; 3]);
    let n = d.o * d.oh * d.ow;
    for level in simd::test_levels() {
        for force in [None, Some(Plan::Pixels), Some(Plan::Channels)] {
            for cap in CAPS {
                let mut got = vec![7.0; n + 3];
                conv2d_with(
                    level,
                    d,
                    &inp,
                    params,
                    &mut got,
                    act,
                    None,
                    cap,
                    force,
                    &mut [],
                );
                let ctx = (d, act, level, force, cap);
                assert_eq!(&got[n..], &[7.0; 3], "wrote past its output: {ctx:?}");
                r::assert_close(&got[..n], want, &ctx);
            }
        }
    }
}

/// Every conv axis geometry (input size, kernel, stride, dilation, padding including
/// asymmetric 'same') on the height axis and on the width axis, paired with a random
/// geometry on the other axis, random channels/groups and activation.
#[test]
fn sweep_axes_against_reference() {
    let axes = r::conv_axes();
    assert!(axes.len() > 300, "{}", axes.len());
    let mut rng = Rng::new(11);
    let mut cases = 0;
    for (i, &a) in axes.iter().enumerate() {
        let b = axes[rng.below(axes.len())];
        for (ah, aw) in [(a, b), (b, a)] {
            let (c, o, g) = CHANNELS[(i + cases) % CHANNELS.len()];
            let act = ACTS[rng.below(ACTS.len())];
            let with_bias = rng.below(4) != 0;
            check(&mut rng, (c, o, g), ah, aw, act, with_bias);
            cases += 1;
        }
    }
    assert_eq!(cases, 2 * axes.len());
}

/// 1-D signals run as H = 1, KH = 1: long rows, TCN dilations 1..8, 'same', causal
/// (left-padded only, as the compiler lowers it: valid after a pad) and strided.
#[test]
fn one_d_against_reference() {
    let mut rng = Rng::new(17);
    let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
    for w in [1, 5, 31, 100, 784] {
        for k in [1, 2, 3, 5] {
            for d in [1, 2, 4, 8] {
                if k == 1 && d > 1 {
                    continue;
                }
                let mut aws: Vec<Axis> = vec![Axis::same(w, k, d)];
                for s in [1, 2, 3] {
                    for p in [0, d * (k - 1) / 2, d * (k - 1)] {
                        aws.extend(Axis::conv(w, k, s, p, d));
                    }
                }
                for aw in aws {
                    let ch =
                        [(3, 5, 1), (16, 16, 1), (33, 20, 1), (8, 8, 2), (6, 6, 6)][rng.below(5)];
                    let act = ACTS[rng.below(ACTS.len())];
                    check(&mut rng, ch, one, aw, act, true);
                }
            }
        }
    }
}

/// Padded 1-D signals whose padded row, all channels, does not fit the band buffer: the
/// interior outputs read the signal directly, the ends run in column tiles, equal to the
/// reference at every level, every band size, forced tile kind, strides dividing the
/// padding or not (those take the band path), dilation and groups.
#[test]
fn padded_1d_interior_reads_directly() {
    let mut rng = Rng::new(29);
    let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
    let mut interior = 0;
    for (c, o, g, w, k, s, p, d) in [
        (16, 24, 1, 300, 3, 1, 1, 1),
        (8, 16, 1, 257, 5, 1, 2, 1),
        (8, 8, 1, 200, 3, 2, 2, 1),
        (6, 9, 3, 150, 3, 1, 4, 4),
        (5, 7, 1, 90, 4, 3, 3, 1),
        (4, 4, 1, 64, 3, 2, 1, 1),
        (3, 2, 1, 9, 7, 1, 3, 1),
        (3, 2, 1, 4, 7, 1, 3, 1),
    ] {
        let aw = Axis::conv(w, k, s, p, d).unwrap();
        let input = rng.vec(c * w, -1.0, 1.0);
        let weight = rng.vec(o * (c / g) * k, -1.0, 1.0);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c / g, 1, k, &weight, Some(&bias), None);
        let want = r::conv2d(c, o, g, one, aw, &input, &weight, Some(&bias), Act::RELU);
        let dd = dims(c, o, g, one, aw);
        for cap in [16, 64, 512, 4096, engine::SCRATCH] {
            interior += usize::from(super::run::interior_1d(&dd, cap).is_some());
            for level in simd::test_levels() {
                for force in [None, Some(Plan::Pixels), Some(Plan::Channels)] {
                    let mut got = vec![f32::NAN; o * aw.out + 1];
                    got[o * aw.out] = 7.0;
                    conv2d_with(
                        level,
                        dd,
                        &input,
                        &params,
                        &mut got,
                        Act::RELU,
                        None,
                        cap,
                        force,
                        &mut [],
                    );
                    assert_eq!(got[o * aw.out], 7.0, "wrote past the output");
                    let ctx = (c, o, g, w, k, s, p, d, cap, level, force);
                    r::assert_close(&got[..o * aw.out], &want, &ctx);
                }
            }
        }
    }
    assert!(interior >= 15, "{interior}");
}

/// Long 1-D signals whose padded row is longer than the engine's band buffer run in
/// column tiles on the engine (not the scalar loop), equal to the reference.
#[test]
fn long_1d_signals_in_column_tiles() {
    let mut rng = Rng::new(23);
    let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
    for (c, o, w, k, s, p, d) in [
        (2, 3, 20_000, 3, 1, 1, 1),
        (4, 8, 17_000, 3, 1, 8, 8),
        (16, 16, 16_500, 5, 2, 2, 1),
        (1, 1, 40_000, 2, 1, 1, 1),
    ] {
        let aw = Axis::conv(w, k, s, p, d).unwrap();
        let input = rng.vec(c * w, -1.0, 1.0);
        let weight = rng.vec(o * c * k, -1.0, 1.0);
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c, 1, k, &weight, Some(&bias), None);
        let want = r::conv2d(c, o, 1, one, aw, &input, &weight, Some(&bias), Act::RELU);
        let dd = dims(c, o, 1, one, aw);
        // The engine alone declines these rows (what sent them to the scalar loop).
        let mut scratch_out = vec![0.0f32; o * aw.out];
        let declined = !simd::run(
            Level::Portable,
            ConvRun {
                d: dd,
                input: &input,
                params: params.packed(),
                out: scratch_out.as_mut_ptr(),
                act: Act::RELU,
                res: core::ptr::null(),
                cap: engine::SCRATCH,
                force: None,
                panels: (0, o.div_ceil(engine::PANEL)),
                pixels: (0, aw.out),
                pack: engine::PackBuf::NONE,
            },
        );
        assert!(declined, "{c}x{w} k{k} p{p} d{d}: the engine took it");
        assert!(conv1d_tiled(
            simd::Portable,
            dd,
            &input,
            params.packed(),
            &mut vec![0.0; o * aw.out],
            Act::RELU,
            0..aw.out
        ));
        for level in simd::test_levels() {
            let mut got = vec![0.0f32; o * aw.out];
            conv2d_dyn(level, dd, &input, &params, &mut got, &mut [], Act::RELU);
            r::assert_close(&got, &want, &(c, o, w, k, s, p, d, level));
        }
    }
}

/// Every channel configuration with a set of geometries chosen at random.
#[test]
fn sweep_channels_against_reference() {
    let axes = r::conv_axes();
    let mut rng = Rng::new(12);
    for &(c, o, g) in &CHANNELS {
        for _ in 0..40 {
            let (ah, aw) = (axes[rng.below(axes.len())], axes[rng.below(axes.len())]);
            check(&mut rng, (c, o, g), ah, aw, Act::IDENTITY, true);
        }
    }
}

/// The named edge shapes: 1x1 input, kernel equal to the input, stride larger than the
/// kernel, non-square everything, dilation 2/3, windows in the padding only.
#[test]
fn edge_shapes_against_reference() {
    let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
    let mut rng = Rng::new(13);
    let cases = [
        // 1x1 input, 1x1 kernel; and 1x1 input with a padded 3x3 kernel.
        (ax(1, 1, 1, 0, 1), ax(1, 1, 1, 0, 1)),
        (ax(1, 3, 1, 1, 1), ax(1, 3, 1, 1, 1)),
        // Kernel equal to the input (one output).
        (ax(5, 5, 1, 0, 1), ax(3, 3, 1, 0, 1)),
        // Stride larger than the kernel.
        (ax(9, 2, 4, 0, 1), ax(10, 1, 3, 0, 1)),
        // Non-square kernel, stride, padding, dilation.
        (ax(7, 3, 2, 1, 2), ax(6, 2, 1, 0, 3)),
        // 'same' with even kernels and odd dilation: extra padding at the bottom/right.
        (Axis::same(6, 2, 3), Axis::same(5, 4, 1)),
        (Axis::same(4, 3, 2), Axis::same(7, 2, 1)),
        // Padding larger than the kernel: windows over padding only give act(bias).
        (ax(3, 1, 1, 2, 1), ax(2, 2, 2, 2, 1)),
        // 1x1 stride 2 (not the pointwise path), 1x1 with padding.
        (ax(7, 1, 2, 0, 1), ax(8, 1, 2, 0, 1)),
        (ax(4, 1, 1, 1, 1), ax(4, 1, 1, 0, 1)),
    ];
    for (ah, aw) in cases {
        for &(c, o, g) in &CHANNELS {
            for act in ACTS {
                check(&mut rng, (c, o, g), ah, aw, act, true);
            }
        }
    }
}

/// The 1x1 path: sizes around its block boundary, groups.
#[test]
fn pointwise_against_reference() {
    let mut rng = Rng::new(14);
    for (h, w) in [
        (1, 1),
        (1, 7),
        (16, 16),
        (1, 256),
        (257, 1),
        (13, 41),
        (5, 50),
    ] {
        let (ah, aw) = (
            Axis::conv(h, 1, 1, 0, 1).unwrap(),
            Axis::conv(w, 1, 1, 0, 1).unwrap(),
        );
        for &(c, o, g) in &CHANNELS {
            check(&mut rng, (c, o, g), ah, aw, Act::RELU, true);
        }
        check(&mut rng, (32, 16, 1), ah, aw, Act::IDENTITY, false);
    }
}

/// Layers of the shared models and wider edge cases (many channels, panels with a
/// remainder, long rows with a tail, strides, dilation), weights scaled by
/// `1/sqrt(fan-in)` so outputs stay O(1).
#[test]
fn model_layers_against_reference() {
    let ax = |n, k, s, p, d| Axis::conv(n, k, s, p, d).unwrap();
    let mut rng = Rng::new(17);
    // (c, o, g, ah, aw, act)
    let cases = [
        // LeNet conv1, conv2.
        (1, 6, 1, ax(32, 5, 1, 0, 1), ax(32, 5, 1, 0, 1), Act::TANH),
        (6, 16, 1, ax(14, 5, 1, 0, 1), ax(14, 5, 1, 0, 1), Act::TANH),
        // VGG: 3 -> 32 on 32x32, 32 -> 64 on 16x16, 64 -> 40 on 8x8 (panel remainder).
        (3, 32, 1, ax(32, 3, 1, 1, 1), ax(32, 3, 1, 1, 1), Act::RELU),
        (32, 64, 1, ax(16, 3, 1, 1, 1), ax(16, 3, 1, 1, 1), Act::RELU),
        (64, 40, 1, ax(8, 3, 1, 1, 1), ax(8, 3, 1, 1, 1), Act::RELU),
        // MobileNet stem (stride 2; 96 columns: 48-pixel rows, three-vector tiles on
        // AVX-512), pointwise on 12x12 and 6x6, 16 -> 21.
        (3, 32, 1, ax(24, 3, 2, 1, 1), ax(24, 3, 2, 1, 1), Act::RELU6),
        (3, 24, 1, ax(9, 3, 2, 1, 1), ax(96, 3, 2, 1, 1), Act::RELU6),
        (
            64,
            48,
            1,
            ax(12, 1, 1, 0, 1),
            ax(12, 1, 1, 0, 1),
            Act::RELU6,
        ),
        (
            48,
            64,
            1,
            ax(6, 1, 1, 0, 1),
            ax(6, 1, 1, 0, 1),
            Act::IDENTITY,
        ),
        (
            16,
            21,
            1,
            ax(9, 1, 1, 0, 1),
            ax(7, 1, 1, 0, 1),
            Act::SIGMOID,
        ),
        // FCN: 'same' dilated on a wide map, 1x1 head with 4 outputs.
        (
            16,
            32,
            1,
            Axis::same(13, 3, 2),
            Axis::same(70, 3, 2),
            Act::RELU,
        ),
        (
            32,
            4,
            1,
            ax(9, 1, 1, 0, 1),
            ax(40, 1, 1, 0, 1),
            Act::IDENTITY,
        ),
        // Grouped with panels shared by groups, stride 3 horizontally only.
        (
            12,
            36,
            3,
            ax(9, 3, 1, 1, 1),
            ax(17, 3, 3, 2, 1),
            Act::leaky_relu(0.1),
        ),
        (8, 24, 2, ax(11, 2, 2, 0, 2), ax(29, 4, 1, 3, 1), Act::TANH),
        // Two-panel channel tiles (AVX-512): groups of 48 (pairs, then a single
        // panel, the second group's pair starting mid-panel-row), and a map of 25
        // pixels (a short last tile).
        (64, 96, 2, ax(8, 3, 1, 1, 1), ax(8, 3, 1, 1, 1), Act::RELU),
        (32, 48, 1, ax(5, 3, 1, 1, 1), ax(5, 3, 1, 1, 1), Act::RELU6),
        // Four-vector pixel tiles (AVX-512) of 1 to 6 channels: long rows, direct and
        // banded, tiles of 6, 4, 3 (23 outputs), 5, 2, 1.
        (24, 23, 1, ax(3, 1, 1, 0, 1), ax(100, 1, 1, 0, 1), Act::TANH),
        (
            8,
            5,
            1,
            ax(2, 3, 1, 1, 1),
            ax(67, 3, 1, 1, 1),
            Act::leaky_relu(0.1),
        ),
        (
            4,
            2,
            1,
            ax(1, 1, 1, 0, 1),
            ax(130, 1, 1, 0, 1),
            Act::IDENTITY,
        ),
        (3, 1, 1, ax(5, 3, 1, 0, 1), ax(70, 3, 1, 0, 1), Act::RELU),
        // Single-panel channel tiles of one row (AVX-512, rows of 8 to 10 pixels):
        // 8, 9 and 10 wide, stride 2, a partial panel of 12 channels.
        (16, 16, 1, ax(8, 3, 1, 1, 1), ax(8, 3, 1, 1, 1), Act::RELU),
        (
            32,
            16,
            1,
            ax(9, 3, 1, 1, 1),
            ax(9, 3, 1, 1, 1),
            Act::SIGMOID,
        ),
        (8, 12, 1, ax(20, 3, 2, 1, 1), ax(20, 3, 2, 1, 1), Act::RELU6),
        // Two-row pixel tiles (AVX-512, rows of 17 to 31 pixels): 6 + 6 + 4 channels on
        // 28-pixel rows; 20 wide (stride 2 along rows) with an odd row left; 31 wide by
        // 6 + 1 channels; 25 wide, stride 2 both ways.
        (1, 16, 1, ax(28, 3, 1, 1, 1), ax(28, 3, 1, 1, 1), Act::TANH),
        (2, 6, 1, ax(50, 3, 2, 1, 1), ax(50, 3, 2, 1, 1), Act::RELU),
        (3, 5, 1, ax(11, 3, 1, 1, 1), ax(40, 3, 2, 1, 1), Act::RELU),
        (2, 7, 1, ax(9, 3, 1, 0, 1), ax(33, 3, 1, 0, 1), Act::SIGMOID),
        // Groups of one panel on 14- and 28-pixel rows (RegNetX's groups of 16, pixel
        // tiles on AVX-512: `Tuning::pv_one_panel_k`), stride 2 and 1, a 16-output
        // layer with 32 input channels.
        (64, 64, 4, ax(6, 3, 2, 1, 1), ax(56, 3, 2, 1, 1), Act::RELU),
        (48, 48, 3, ax(5, 3, 1, 1, 1), ax(14, 3, 1, 1, 1), Act::RELU),
        (
            32,
            16,
            1,
            ax(4, 3, 1, 1, 1),
            ax(28, 3, 1, 1, 1),
            Act::IDENTITY,
        ),
    ];
    for (c, o, g, ah, aw, act) in cases {
        let d = dims(c, o, g, ah, aw);
        let fan_in = (c / g * ah.k * aw.k) as f32;
        let input = rng.vec(c * ah.n * aw.n, -1.0, 1.0);
        let weight: Vec<f32> = rng
            .vec(o * (c / g) * ah.k * aw.k, -1.0, 1.0)
            .iter()
            .map(|w| w / fan_in.sqrt())
            .collect();
        let bias = rng.vec(o, -0.5, 0.5);
        let params = ConvParams::from_torch(o, c / g, ah.k, aw.k, &weight, Some(&bias), None);
        let want = r::conv2d(c, o, g, ah, aw, &input, &weight, Some(&bias), act);
        check_all_paths(d, &input, &params, act, &want);
    }
}

/// More taps than the engine takes: the fallback.
#[test]
fn huge_kernel_uses_the_fallback() {
    let mut rng = Rng::new(18);
    let (ah, aw) = (
        Axis::conv(14, 12, 1, 1, 1).unwrap(),
        Axis::conv(13, 11, 1, 0, 1).unwrap(),
    );
    assert!(ah.k * aw.k > engine::MAX_TAPS);
    let d = dims(2, 3, 1, ah, aw);
    let input = rng.vec(2 * ah.n * aw.n, -1.0, 1.0);
    let weight = rng.vec(3 * 2 * ah.k * aw.k, -0.1, 0.1);
    let params = ConvParams::from_torch(3, 2, ah.k, aw.k, &weight, None, None);
    let want = r::conv2d(2, 3, 1, ah, aw, &input, &weight, None, Act::TANH);
    check_all_paths(d, &input, &params, Act::TANH, &want);
}

fn shell_check<
    const C: usize,
    const H: usize,
    const W: usize,
    const O: usize,
    const OH: usize,
    const OW: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
    const G: usize,
>(
    ah: Axis,
    aw: Axis,
    act: Act,
) {
    assert_eq!(
        (ah.n, ah.out, ah.k, ah.s, ah.p, ah.d),
        (H, OH, KH, SH, PH, DH)
    );
    assert_eq!(
        (aw.n, aw.out, aw.k, aw.s, aw.p, aw.d),
        (W, OW, KW, SW, PW, DW)
    );
    let mut rng = Rng::new(15);
    let input = rng.vec(C * H * W, -1.0, 1.0);
    let weight = rng.vec(O * (C / G) * KH * KW, -1.0, 1.0);
    let bias = rng.vec(O, -0.5, 0.5);
    let params = ConvParams::from_torch(O, C / G, KH, KW, &weight, Some(&bias), None);
    let mut got = vec![0.0; O * OH * OW];
    conv2d::<C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G>(&input, &params, &mut got, act);
    let want = r::conv2d(C, O, G, ah, aw, &input, &weight, Some(&bias), act);
    r::assert_close(&got, &want, &"const-generic conv2d");
}

/// The const-generic shell, instantiated on a few layers.
#[test]
fn const_generic_instances() {
    // LeNet-5 conv1.
    let a = Axis::conv(32, 5, 1, 0, 1).unwrap();
    shell_check::<1, 32, 32, 6, 28, 28, 5, 5, 1, 1, 0, 0, 1, 1, 1>(a, a, Act::TANH);
    // Grouped, 'same' with kernel (2, 3) and dilation (3, 1).
    let (ah, aw) = (Axis::same(7, 2, 3), Axis::same(6, 3, 1));
    shell_check::<4, 7, 6, 6, 7, 6, 2, 3, 1, 1, 1, 1, 3, 1, 2>(ah, aw, Act::RELU6);
    // Strided, padded, non-square, 1x1 map out.
    let (ah, aw) = (
        Axis::conv(5, 3, 2, 1, 1).unwrap(),
        Axis::conv(2, 2, 3, 0, 1).unwrap(),
    );
    shell_check::<3, 5, 2, 4, 3, 1, 3, 2, 2, 3, 1, 0, 1, 1, 1>(ah, aw, Act::SIGMOID);
    // Pointwise.
    let a = Axis::conv(9, 1, 1, 0, 1).unwrap();
    shell_check::<8, 9, 9, 12, 9, 9, 1, 1, 1, 1, 0, 0, 1, 1, 4>(a, a, Act::leaky_relu(0.2));
}

#[test]
#[should_panic(expected = "conv2d: parameters")]
fn mismatched_params_panic() {
    // Built for groups = 1, called with groups = 2.
    let params = ConvParams::from_torch(2, 2, 3, 3, &[0.0; 36], None, None);
    conv2d::<2, 4, 4, 2, 2, 2, 3, 3, 1, 1, 0, 0, 1, 1, 2>(
        &[0.0; 32],
        &params,
        &mut [0.0; 8],
        Act::IDENTITY,
    );
}

/// A conv with a batch norm folded in equals the conv followed by the batch norm.
#[test]
fn folded_batch_norm_equals_conv_then_affine() {
    let mut rng = Rng::new(16);
    const C: usize = 3;
    const O: usize = 4;
    let input = rng.vec(C * 6 * 5, -1.0, 1.0);
    let weight = rng.vec(O * C * 9, -1.0, 1.0);
    let bias = rng.vec(O, -0.5, 0.5);
    let bn = Affine::from_batch_norm(
        &rng.vec(O, 0.5, 1.5),
        &rng.vec(O, -0.3, 0.3),
        &rng.vec(O, -0.5, 0.5),
        &rng.vec(O, 0.5, 2.0),
        1e-5,
    );
    for bias in [Some(&bias[..]), None] {
        for act in ACTS {
            let plain = ConvParams::from_torch(O, C, 3, 3, &weight, bias, None);
            let folded = ConvParams::from_torch(O, C, 3, 3, &weight, bias, Some(&bn));
            let mut want = [0.0; O * 6 * 5];
            conv2d::<C, 6, 5, O, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
                &input,
                &plain,
                &mut want,
                Act::IDENTITY,
            );
            channel_affine::<O, 30>(&mut want, &bn, act);
            let mut got = [0.0; O * 6 * 5];
            conv2d::<C, 6, 5, O, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1>(&input, &folded, &mut got, act);
            let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
            r::assert_close(&got, &want, &("folded bn", act));
        }
    }
}
