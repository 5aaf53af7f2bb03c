//! Strided layers run by chunked channel tiles (`engine::cv_chunks`, AVX-512): close to
//! the reference with ReLU and with a residual and SiLU, through band copies of one
//! chunk of channels and of several (partial sums through the output), through the
//! model's planned band; the same bits over any panel or pixel range and on 2 and 3
//! threads. Output channels not a multiple of 64 (runs of 3, 2 and 1 panels, a partial
//! last panel), short last tiles, tiles across rows, 5x5 taps in chunks of 5 channels,
//! 1x1 layers in chunks of 64 (the last one shorter).

use super::run::*;
use super::*;
use crate::kernels::engine::{PackBuf, Plan, PANEL};
use crate::kernels::reference::{self as r, Axis, Rng};
use crate::kernels::simd;

/// `(C, H, W, O, kernel, stride, padding)`.
const LAYERS: [(usize, usize, usize, usize, usize, usize, usize); 10] = [
    (256, 14, 14, 128, 1, 1, 0),
    // A 1x1 layer of 5 panels (runs of 4 and 1).
    (384, 13, 13, 80, 1, 1, 0),
    // A 1x1 layer of more pixels than a block of chunked tiles holds (323 = 252 + 71).
    (260, 17, 19, 140, 1, 1, 0),
    (300, 12, 13, 144, 1, 1, 0),
    (64, 20, 20, 64, 3, 2, 1),
    (60, 24, 22, 100, 3, 2, 1),
    (72, 27, 27, 176, 3, 2, 1),
    (32, 30, 30, 80, 5, 2, 2),
    (128, 28, 28, 128, 3, 2, 1),
    (57, 21, 30, 77, 3, 2, 0),
];

/// Whether the layer takes chunked channel tiles at `level` on this machine.
pub(super) fn chunked(level: cpu::Level, d: Dims2d) -> bool {
    #[cfg(target_arch = "x86_64")]
    if level == cpu::Level::Avx512 {
        use crate::kernels::engine::{auto_plan, chunk_channels, flat};
        use crate::kernels::simd::{Avx512, Tuned};
        let (f, t) = (flat(d), &<Avx512 as Tuned>::TUNING);
        let l1d = cpu::l1d_bytes();
        return auto_plan(&f, PANEL, t, l1d) == Plan::Channels && chunk_channels(&f, t, l1d) > 0;
    }
    let _ = (level, d);
    false
}

#[test]
fn chunked_layers_match_the_reference_and_every_split() {
    #[cfg(feature = "parallel")]
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(61);
    let mut exercised = 0;
    for (c, h, w, o, k, s, p) in LAYERS {
        let ah = Axis::conv(h, k, s, p, 1).unwrap();
        let aw = Axis::conv(w, k, s, p, 1).unwrap();
        let d = r::dims2d(c, o, 1, ah, aw);
        let n = o * d.oh * d.ow;
        let input = rng.vec(c * h * w, -1.0, 1.0);
        let weight = rng.vec(o * c * k * k, -0.2, 0.2);
        let bias = rng.vec(o, -0.5, 0.5);
        let res = rng.vec(n, -1.0, 1.0);
        let params = ConvParams::from_torch(o, c, k, k, &weight, Some(&bias), None);
        let conv = r::conv2d(c, o, 1, ah, aw, &input, &weight, Some(&bias), Act::IDENTITY);
        let planned = conv_scratch_len(
            (c, h, w),
            (o, d.oh, d.ow),
            (k, k),
            (s, s),
            (p, p),
            (1, 1),
            1,
        );
        for level in simd::test_levels() {
            if !chunked(level, d) {
                // Every layer here takes them on AVX-512: a rule change that drops
                // one must replace it.
                assert!(
                    level != cpu::Level::Avx512,
                    "not chunked: {c}x{h}x{w} -> {o}"
                );
                continue;
            }
            exercised += 1;
            // The band buffer whole (one band chunk, or the planned band), and small
            // enough to split the channels into band chunks.
            for cap in [engine::SCRATCH, 2 * engine::SCRATCH / 4 + 2 * c] {
                for (act, residual) in [(Act::RELU, None), (Act::SILU, Some(&res[..]))] {
                    let want = r::add_act(&conv, residual, act);
                    let ctx = (c, h, w, o, k, s, p, level, cap, act.kind());
                    let run = |y: &mut [f32], scratch: &mut [f32]| {
                        conv2d_with(
                            level, d, &input, &params, y, act, residual, cap, None, scratch,
                        )
                    };
                    let mut plain = vec![0.0; n];
                    run(&mut plain, &mut []);
                    r::assert_close(&plain, &want, &ctx);
                    let mut with = vec![0.0; n];
                    run(&mut with, &mut vec![0.0; planned]);
                    r::assert_close(&with, &want, &ctx);
                    // Panel and pixel ranges, with the planned band each.
                    let ranges = |out: &mut [f32], panels, pixels| {
                        let mut buf = vec![0.0f32; planned];
                        let pack = PackBuf {
                            ptr: if planned > 0 {
                                buf.as_mut_ptr()
                            } else {
                                core::ptr::null_mut()
                            },
                            len: planned,
                        };
                        let run = ConvRun {
                            d,
                            input: &input,
                            params: params.packed(),
                            out: out.as_mut_ptr(),
                            act,
                            res: residual.map_or(core::ptr::null(), |r| r.as_ptr()),
                            cap,
                            force: None,
                            panels,
                            pixels,
                            pack,
                        };
                        assert!(simd::run(level, run), "declined: {ctx:?}");
                    };
                    let panels = o.div_ceil(PANEL);
                    let mut whole = vec![0.0; n];
                    ranges(&mut whole, (0, panels), (0, d.oh * d.ow));
                    assert!(bits(&whole, &with), "one range differs: {ctx:?}");
                    for parts in 2..=panels.min(3) {
                        let mut split = vec![f32::NAN; n];
                        for i in 0..parts {
                            ranges(&mut split, panel_range(panels, parts, i), (0, d.oh * d.ow));
                        }
                        assert!(bits(&whole, &split), "panel split differs: {ctx:?} {parts}");
                    }
                    for parts in 2..=3 {
                        let mut split = vec![f32::NAN; n];
                        for i in 0..parts {
                            ranges(&mut split, (0, panels), pixel_range(&d, parts, i));
                        }
                        assert!(bits(&whole, &split), "pixel split differs: {ctx:?} {parts}");
                    }
                    #[cfg(feature = "parallel")]
                    r::assert_threads_match_one(n, &ctx, |y| run(y, &mut vec![0.0; planned]));
                }
            }
        }
    }
    if exercised == 0 {
        eprintln!("note: this CPU has no AVX-512: the chunked channel tiles are NOT exercised");
    }
}

/// Bit-for-bit equality.
fn bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The rule: ResNet-50's stride-2 3x3 layers on 56x56 and 28x28 inputs and its 1x1
/// layers on 14x14 take chunked tiles; its 14x14 stride-2 one (7x7 output), stride-1
/// 3x3 layers, 1x1 layers on 7x7, with under 64 outputs or 256 inputs, and narrow
/// ones do not (SqueezeNet's 384 -> 64 on 13x13 does);
/// the planned memory holds a big band for the strided ones that do.
#[test]
#[cfg(target_arch = "x86_64")]
fn chunked_tiles_rule() {
    use crate::kernels::engine::{chunk_channels, flat};
    use crate::kernels::simd::{Avx2, Avx512, Tuned};
    let t = &<Avx512 as Tuned>::TUNING;
    let kc = |c, h, o, k, s| {
        let ax = Axis::conv(h, k, s, k / 2, 1).unwrap();
        chunk_channels(&flat(r::dims2d(c, o, 1, ax, ax)), t, 48 * 1024)
    };
    assert_eq!(kc(128, 56, 128, 3, 2), 16);
    assert_eq!(kc(256, 28, 256, 3, 2), 16);
    assert_eq!(kc(64, 56, 128, 3, 2), 16);
    assert_eq!(kc(512, 14, 512, 3, 2), 0);
    assert_eq!(kc(128, 28, 128, 3, 1), 0);
    assert_eq!(kc(1024, 14, 256, 1, 1), 64);
    assert_eq!(kc(256, 14, 1024, 1, 1), 64);
    assert_eq!(kc(384, 13, 64, 1, 1), 64);
    assert_eq!(kc(384, 13, 48, 1, 1), 0);
    assert_eq!(kc(192, 14, 64, 1, 1), 0);
    assert_eq!(kc(96, 14, 576, 1, 1), 0);
    assert_eq!(kc(2048, 7, 512, 1, 1), 0);
    assert_eq!(kc(128, 56, 32, 3, 2), 0);
    assert_eq!(kc(32, 56, 64, 3, 2), 0);
    let ax = Axis::conv(28, 3, 2, 1, 1).unwrap();
    let d = flat(r::dims2d(256, 256, 1, ax, ax));
    assert_eq!(chunk_channels(&d, &<Avx2 as Tuned>::TUNING, 48 * 1024), 0);
    assert!(
        conv_scratch_len(
            (128, 56, 56),
            (128, 28, 28),
            (3, 3),
            (2, 2),
            (1, 1),
            (1, 1),
            1
        ) > 0
    );
    // More taps than the engine takes (the fallback's), and a 1-D signal: no chunks.
    assert_eq!(kc(1, 64, 64, 23, 2), 0);
    let one = Axis::conv(1, 1, 1, 0, 1).unwrap();
    let row = Axis::conv(1000, 3, 2, 1, 1).unwrap();
    let d1 = flat(r::dims2d(256, 64, 1, one, row));
    assert_eq!(chunk_channels(&d1, t, 48 * 1024), 0);
}
