//! Timing of Winograd against the direct engine on the 3x3 layers of the benchmark
//! models (dilated ones included) (`cargo test -p cnn-runtime --release winograd::speed -- --ignored
//! --nocapture`; `CNN_SIMD=avx2` for the AVX2 level).

use super::*;
use crate::kernels::conv::{conv2d, conv2d_scratch, conv_scratch_len, ConvParams};
use crate::kernels::reference::{best_time_us, Rng};
use std::hint::black_box;

/// [`best_time_us`], or with `WG_COLD=1` the median of 11 runs each after 256 MB were
/// written (the weights then come from memory, as in a model whose weights exceed the
/// caches: ResNet-18's layer4 streams 9.4 MB a layer direct, 16.8 MB on F(2x2)).
fn time(mut f: impl FnMut()) -> f64 {
    if std::env::var("WG_COLD").is_err() {
        return best_time_us(f);
    }
    let mut junk = vec![0u8; 256 << 20];
    let mut v: Vec<f64> = (0..11)
        .map(|i| {
            junk.iter_mut()
                .step_by(64)
                .for_each(|b| *b = b.wrapping_add(i as u8));
            black_box(&junk);
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[5]
}

fn layer<const C: usize, const H: usize, const O: usize>(rng: &mut Rng) {
    // `WG_ONLY=32x64x32` (C x H x O): only that layer (for a profiler).
    if let Ok(only) = std::env::var("WG_ONLY") {
        if only != format!("{C}x{H}x{O}") {
            return;
        }
    }
    let x = rng.vec(C * H * H, -1.0, 1.0);
    let w = rng.vec(O * C * 9, -0.1, 0.1);
    let b = rng.vec(O, -0.1, 0.1);
    let direct = ConvParams::from_torch(O, C, 3, 3, &w, Some(&b), None);
    let wg = WinogradParams::from_torch(O, C, &w, Some(&b), None);
    let mut y = vec![0.0; O * H * H];
    let mut scratch = vec![0.0; winograd_scratch_len(4, C, H, H, O, H, H, 1, 1)];
    // The direct engine with the working memory a model plans for it (taller bands for
    // big weights).
    let mut dscratch =
        vec![0.0; conv_scratch_len((C, H, H), (O, H, H), (3, 3), (1, 1), (1, 1), (1, 1), 1)];
    let td = time(|| {
        conv2d_scratch::<C, H, H, O, H, H, 3, 3, 1, 1, 1, 1, 1, 1, 1>(
            black_box(&x),
            &direct,
            black_box(&mut y),
            &mut dscratch,
            Act::RELU,
        )
    });
    let tw = time(|| {
        winograd_conv3x3::<C, H, H, O, H, H, 1, 1, 1, 1>(
            black_box(&x),
            &wg,
            black_box(&mut y),
            &mut scratch,
            Act::RELU,
        )
    });
    let wg2 = WinogradParams::with_tile(2, O, C, &w, Some(&b), None);
    let mut scratch2 = vec![0.0; winograd_scratch_len(2, C, H, H, O, H, H, 1, 1)];
    let t2 = time(|| {
        winograd_conv3x3::<C, H, H, O, H, H, 1, 1, 1, 1>(
            black_box(&x),
            &wg2,
            black_box(&mut y),
            &mut scratch2,
            Act::RELU,
        )
    });
    let gf = |t: f64| (2 * O * H * H * C * 9) as f64 / t / 1e3;
    eprintln!(
        "{C:>4}x{H:>2}x{H:<2} -> {O:>4} | {td:>9.1} µs {:>6.1} GF/s | F4 {tw:>9.1} µs {:>6.1} eff GF/s x{:.2} | F2 {t2:>9.1} µs x{:.2} | pays {} tile {:?}",
        gf(td),
        gf(tw),
        td / tw,
        td / t2,
        winograd_pays(C, H, H, O),
        winograd_tile(C, H, H, O, 1, 1)
    );
}

/// A dilated 'same' layer (padding = dilation `D`): the direct engine's `conv2d` with
/// dilation `D` against the polyphase Winograd. `WG_ONLY=16x64x32d2` for this one only.
fn dilated_layer<const C: usize, const H: usize, const O: usize, const D: usize>(rng: &mut Rng) {
    if let Ok(only) = std::env::var("WG_ONLY") {
        if only != format!("{C}x{H}x{O}d{D}") {
            return;
        }
    }
    let x = rng.vec(C * H * H, -1.0, 1.0);
    let w = rng.vec(O * C * 9, -0.1, 0.1);
    let b = rng.vec(O, -0.1, 0.1);
    let direct = ConvParams::from_torch(O, C, 3, 3, &w, Some(&b), None);
    let wg = WinogradParams::from_torch(O, C, &w, Some(&b), None);
    let mut y = vec![0.0; O * H * H];
    let mut scratch = vec![0.0; winograd_scratch_len(4, C, H, H, O, H, H, D, D)];
    let td = time(|| {
        conv2d::<C, H, H, O, H, H, 3, 3, 1, 1, D, D, D, D, 1>(
            black_box(&x),
            &direct,
            black_box(&mut y),
            Act::RELU,
        )
    });
    let tw = time(|| {
        winograd_conv3x3::<C, H, H, O, H, H, D, D, D, D>(
            black_box(&x),
            &wg,
            black_box(&mut y),
            &mut scratch,
            Act::RELU,
        )
    });
    let gf = |t: f64| (2 * O * H * H * C * 9) as f64 / t / 1e3;
    eprintln!(
        "{C:>4}x{H:>2}x{H:<2} -> {O:>4} d{D} | {td:>9.1} µs {:>6.1} GF/s | {tw:>9.1} µs {:>6.1} eff GF/s | x{:.2} | pays {}",
        gf(td),
        gf(tw),
        td / tw,
        winograd_pays_dilated(C, H, H, O, D, D)
    );
}

#[test]
#[ignore]
fn speed() {
    let mut rng = Rng::new(1);
    eprintln!("level {:?}", cpu::level());
    layer::<3, 32, 32>(&mut rng);
    layer::<32, 32, 32>(&mut rng);
    layer::<32, 16, 64>(&mut rng);
    layer::<64, 16, 64>(&mut rng);
    layer::<64, 8, 128>(&mut rng);
    layer::<128, 8, 128>(&mut rng);
    layer::<64, 56, 64>(&mut rng);
    layer::<128, 28, 128>(&mut rng);
    layer::<256, 14, 256>(&mut rng);
    layer::<512, 7, 512>(&mut rng);
    // Around the rule's boundaries.
    layer::<32, 16, 32>(&mut rng);
    layer::<64, 32, 64>(&mut rng);
    layer::<128, 16, 128>(&mut rng);
    layer::<256, 7, 256>(&mut rng);
    layer::<96, 8, 96>(&mut rng);
    layer::<32, 8, 32>(&mut rng);
    layer::<64, 8, 64>(&mut rng);
    layer::<256, 6, 256>(&mut rng);
    layer::<256, 4, 256>(&mut rng);
    layer::<512, 4, 512>(&mut rng);
    layer::<32, 64, 32>(&mut rng);
    layer::<16, 64, 32>(&mut rng);
    layer::<16, 32, 32>(&mut rng);
    // Dilated: fcn_seg's `enc2` (polyphase split into four 16x32x32 phases).
    dilated_layer::<16, 64, 32, 2>(&mut rng);
    dilated_layer::<64, 32, 64, 2>(&mut rng);
    dilated_layer::<16, 64, 16, 2>(&mut rng);
    dilated_layer::<32, 64, 32, 2>(&mut rng);
    dilated_layer::<32, 32, 32, 2>(&mut rng);
    dilated_layer::<16, 128, 32, 2>(&mut rng);
    dilated_layer::<32, 64, 32, 4>(&mut rng);
    dilated_layer::<256, 28, 256, 2>(&mut rng);
}

/// With the `parallel` feature, the input transform (by channels), the 36 products
/// (by position) and the output transform (by tiles), or the blocks by tile rows, split
/// over 2 and 3 threads give the one-thread result bit for bit, at every level and for
/// both tiles (F(4x4) and F(2x2)); several blocks (56x56) and partial edge tiles (30x30)
/// included, and dilated layers (their phases).
#[cfg(feature = "parallel")]
#[test]
fn threads_give_the_one_thread_result_bit_for_bit() {
    let _g = crate::pool::test_lock();
    let mut rng = Rng::new(47);
    // (C, O, size, dilation): padding = dilation ('same').
    for (c, o, n, dil) in [
        (64, 64, 16, 1),
        (32, 40, 28, 1),
        (128, 33, 8, 1),
        (64, 64, 56, 1),
        (40, 24, 30, 1),
        (64, 64, 34, 2),
        (40, 24, 31, 3),
    ] {
        for tile in [4, 2] {
            let d = WgDims {
                c,
                h: n,
                w: n,
                o,
                oh: n,
                ow: n,
                ph: dil,
                pw: dil,
                dh: dil,
                dw: dil,
                m: tile,
                pool: false,
            };
            let input = rng.vec(c * n * n, -1.0, 1.0);
            let weight = rng.vec(o * c * 9, -0.1, 0.1);
            let bias = rng.vec(o, -0.5, 0.5);
            let params = WinogradParams::with_tile(tile, o, c, &weight, Some(&bias), None);
            for level in simd::test_levels() {
                crate::pool::set_num_threads(1);
                let mut one = vec![0.0; o * n * n];
                winograd_dyn(level, d, &input, &params, &mut one, None, Act::RELU);
                for threads in [2, 3] {
                    crate::pool::set_num_threads(threads);
                    let mut many = vec![f32::NAN; o * n * n];
                    winograd_dyn(level, d, &input, &params, &mut many, None, Act::RELU);
                    assert!(one == many, "{d:?} {level:?} {threads} threads");
                }
            }
        }
    }
    crate::pool::set_num_threads(2);
}
