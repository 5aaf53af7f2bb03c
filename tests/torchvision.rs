//! torchvision's CNNs compiled from their exported descriptions and compared with
//! PyTorch in float64: resnet18, resnet50, resnext50_32x4d (32 groups), mobilenet_v2,
//! mobilenet_v3_small, mobilenet_v3_large, mnasnet0_5, regnet_y_400mf (groups and
//! squeeze-and-excitation), regnet_x_400mf (groups of 16), squeezenet1_1, efficientnet_b0,
//! efficientnet_v2_s (fused MBConv blocks: 3x3 expansions), alexnet (an 11x11 stride-4
//! stem; its adaptive average pool makes 6x6 out of the 1x1 map a 64x64 input leaves,
//! before a 9216 -> 4096 linear layer), shufflenet_v2_x0_5 (channel slices, concats and
//! channel shuffles) and googlenet at 64x64,
//! inception_v3 at 80x80 (its smallest input is 75x75; 1x7, 7x1, 1x3 and 3x1 kernels,
//! padded average pools) (`tests/torchvision/`, made by `tools/gen_torchvision_cases.py`).
//!
//! The closest to its tolerance is inception_v3 (0.61-0.70 of it, 2026-12-05; 0.87-0.88
//! with F(4x4) on the points `0, ±1, ±2`; 0.25-0.36 with its 3x3 layers run direct): its
//! Winograd F(4x4) layers round more than a direct 3x3 convolution in float32.
//!
//! The weights are too large to commit: every tensor of rank >= 2 is regenerated from the
//! case's seed (`support/seeded.rs`, bit-identical to `tools/seeded.py`), the rank-1
//! tensors (biases, batch-norm parameters and statistics calibrated on random inputs so
//! activations stay O(1)) come from `stats.safetensors`.
//!
//! Deep networks accumulate float32 error, so the tolerance is per case:
//! `|got - want| <= atol + 1e-4 |want|` with `atol = max(1e-4 * max(1, max|want|),
//! 4 * PyTorch's own float32 error on that case)` (`case.json`).

mod support;

use std::path::PathBuf;

use cnn::Model;
use support::seeded::seeded_tensor;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn f32_tensor(st: &safetensors::SafeTensors<'_>, key: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(key).unwrap_or_else(|e| panic!("`{key}`: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "`{key}`");
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), data)
}

/// The full weight file of model `M` for case `dir`: seeded rank >= 2 tensors, committed
/// rank-1 ones.
fn weights<M: Model>(dir: &std::path::Path, seed: u64) -> Vec<u8> {
    let stats = std::fs::read(dir.join("stats.safetensors")).expect("stats.safetensors");
    let stats = safetensors::SafeTensors::deserialize(&stats).expect("valid stats");
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = M::WEIGHTS
        .iter()
        .map(|spec| {
            let values = if spec.shape.len() >= 2 {
                seeded_tensor(seed, spec.key, spec.shape)
            } else {
                let (shape, values) = f32_tensor(&stats, spec.key);
                assert_eq!(shape, spec.shape, "`{}`", spec.key);
                values
            };
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (spec.key.to_string(), spec.shape.to_vec(), bytes)
        })
        .collect();
    support::serialize(&tensors)
}

/// Runs one case; returns the worst `|got - want| / (atol + rtol |want|)`.
fn check<M: Model>(name: &str) -> f64 {
    let dir = root().join("tests/torchvision").join(name);
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let seed = case["seed"].as_u64().unwrap();
    let atol = case["atol"].as_f64().unwrap();
    let rtol = case["rtol"].as_f64().unwrap();
    assert_eq!(
        case["params"].as_u64().unwrap() as usize,
        M::PARAMS,
        "{name}: params"
    );
    let model =
        M::from_safetensors(&weights::<M>(&dir, seed)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let data = std::fs::read(dir.join("data.safetensors")).unwrap();
    let data = safetensors::SafeTensors::deserialize(&data).unwrap();
    let (in_shape, input) = f32_tensor(&data, "input");
    let (_, want) = f32_tensor(&data, "output");
    assert_eq!(in_shape[1..], *M::INPUT_SHAPE, "{name}");
    let mut worst = 0.0f64;
    for (x, y) in input
        .chunks_exact(M::INPUT_LEN)
        .zip(want.chunks_exact(M::OUTPUT_LEN))
    {
        let got = model.forward_flat(x).unwrap();
        for (i, (g, w)) in got.iter().zip(y).enumerate() {
            let r = (f64::from(*g) - f64::from(*w)).abs() / (atol + rtol * f64::from(w.abs()));
            assert!(
                r <= 1.0,
                "{name}: output {i}: got {g}, want {w} (atol {atol:.2e})"
            );
            worst = worst.max(r);
        }
    }
    println!(
        "torchvision {name}: {} params, {} MACs, arena {} bytes; worst error {worst:.3} of the tolerance (atol {atol:.2e})",
        M::PARAMS,
        M::MACS,
        M::ARENA_BYTES
    );
    worst
}

macro_rules! torchvision {
    ($($name:ident: $file:literal),* $(,)?) => {
        $(
            mod $name {
                cnn::cnn_model! {
                    #[file = $file]
                    pub struct Net;
                }
            }
            #[test]
            fn $name() {
                check::<$name::Net>(stringify!($name));
            }
        )*
    };
}

torchvision!(
    resnet18: "tests/torchvision/resnet18/model.toml",
    resnet50: "tests/torchvision/resnet50/model.toml",
    mobilenet_v2: "tests/torchvision/mobilenet_v2/model.toml",
    mobilenet_v3_small: "tests/torchvision/mobilenet_v3_small/model.toml",
    squeezenet1_1: "tests/torchvision/squeezenet1_1/model.toml",
    efficientnet_b0: "tests/torchvision/efficientnet_b0/model.toml",
    googlenet: "tests/torchvision/googlenet/model.toml",
    resnext50_32x4d: "tests/torchvision/resnext50_32x4d/model.toml",
    regnet_y_400mf: "tests/torchvision/regnet_y_400mf/model.toml",
    mnasnet0_5: "tests/torchvision/mnasnet0_5/model.toml",
    mobilenet_v3_large: "tests/torchvision/mobilenet_v3_large/model.toml",
    inception_v3: "tests/torchvision/inception_v3/model.toml",
    efficientnet_v2_s: "tests/torchvision/efficientnet_v2_s/model.toml",
    regnet_x_400mf: "tests/torchvision/regnet_x_400mf/model.toml",
    alexnet: "tests/torchvision/alexnet/model.toml",
    shufflenet_v2_x0_5: "tests/torchvision/shufflenet_v2_x0_5/model.toml",
);

/// Inception v3 with `#[winograd = false]`: every convolution direct (no `winograd3x3`
/// step in the summary), about four times closer to PyTorch than with its Winograd
/// layers (0.25-0.36 of the tolerance against 0.61-0.70, 2026-12-05).
mod inception_v3_direct {
    cnn::cnn_model! {
        #[file = "tests/torchvision/inception_v3/model.toml"]
        #[winograd = false]
        pub struct Net;
    }
}

#[test]
fn inception_v3_direct() {
    use inception_v3_direct::Net;
    assert!(!Net::summary().contains("winograd"), "{}", Net::summary());
    assert!(inception_v3::Net::summary().contains("winograd3x3"));
    let worst = check::<Net>("inception_v3");
    assert!(
        worst < 0.5,
        "direct convolutions: {worst:.3} of the tolerance"
    );
}
