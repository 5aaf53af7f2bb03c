//! ResNet-18 (torchvision's `resnet18`) at 224x224, compiled from the description the
//! exporter wrote (`examples/data/resnet18/model.toml`: 69 layers with residual adds).
//!
//! The weights are seeded, not trained (the 47 MB of a trained ResNet-18 would not fit in
//! the repository): every tensor of rank >= 2 is regenerated from the seed by the same
//! generator the exporter used (`tools/seeded.py`), the small rank-1 tensors (biases,
//! batch-norm statistics calibrated on random inputs) come from `stats.safetensors`. The
//! test is agreement: PyTorch's outputs on two inputs (float64, recorded by
//! `tools/gen_torchvision_cases.py`) must be matched within the recorded tolerance.
//!
//! ```text
//! cargo run --release --example resnet18
//! cargo run --release --example resnet18 -- --iters 50
//! ```

mod common;
#[path = "../tests/support/seeded.rs"]
mod seeded;

use std::error::Error;
use std::hint::black_box;
use std::path::Path;

use cnn::{cnn_model, Model};

cnn_model! {
    /// torchvision's ResNet-18: a 7x7 stem, four stages of two basic blocks (3x3 convs,
    /// batch norm, residual adds, 1x1 downsampling), global average pool, 1000 classes.
    #[file = "examples/data/resnet18/model.toml"]
    pub struct ResNet18;
}

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/resnet18");

fn tensor(
    st: &safetensors::SafeTensors<'_>,
    key: &str,
) -> Result<(Vec<usize>, Vec<f32>), Box<dyn Error>> {
    let t = st.tensor(key)?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!("`{key}` is {:?}, expected F32", t.dtype()).into());
    }
    let values = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((t.shape().to_vec(), values))
}

/// The weight file: seeded rank >= 2 tensors and the committed rank-1 ones.
fn weights(seed: u64) -> Result<Vec<u8>, Box<dyn Error>> {
    let stats = std::fs::read(Path::new(DATA).join("stats.safetensors"))?;
    let stats = safetensors::SafeTensors::deserialize(&stats)?;
    let mut tensors = Vec::new();
    for spec in ResNet18::WEIGHTS {
        let values = if spec.shape.len() >= 2 {
            seeded::seeded_tensor(seed, spec.key, spec.shape)
        } else {
            tensor(&stats, spec.key)?.1
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((spec.key.to_string(), spec.shape.to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
        })
        .collect::<Result<_, _>>()?;
    Ok(safetensors::serialize(views, None)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let opts = common::parse_args("resnet18");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        Path::new(DATA).join("reference.json"),
    )?)?;
    let seed = reference["seed"]
        .as_u64()
        .ok_or("reference.json: no seed")?;
    let atol = reference["atol"]
        .as_f64()
        .ok_or("reference.json: no atol")?;
    let rtol = reference["rtol"]
        .as_f64()
        .ok_or("reference.json: no rtol")?;

    let start = std::time::Instant::now();
    let model = ResNet18::from_safetensors(&weights(seed)?)?;
    println!(
        "weights: {} parameters from seed {seed} + stats.safetensors, loaded and repacked in {}",
        ResNet18::PARAMS,
        common::fmt_duration(start.elapsed())
    );
    println!("{}\n", ResNet18::summary());

    let data = std::fs::read(Path::new(DATA).join("data.safetensors"))?;
    let data = safetensors::SafeTensors::deserialize(&data)?;
    let (_, inputs) = tensor(&data, "input")?;
    let (_, want) = tensor(&data, "output")?;
    let mut worst = 0.0f64;
    let mut max_abs = 0.0f64;
    for (i, (x, y)) in inputs
        .chunks_exact(ResNet18::INPUT_LEN)
        .zip(want.chunks_exact(ResNet18::OUTPUT_LEN))
        .enumerate()
    {
        let got = model.forward_flat(x)?;
        for (g, w) in got.iter().zip(y) {
            let err = (f64::from(*g) - f64::from(*w)).abs();
            max_abs = max_abs.max(err);
            worst = worst.max(err / (atol + rtol * f64::from(w.abs())));
        }
        let top: Vec<usize> = common::top_k(&got, 5).iter().map(|(c, _)| *c).collect();
        let torch: Vec<u64> = reference["outputs"][i]["top5_float64"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default();
        println!("input #{i}: top-5 classes {top:?}   [PyTorch: {torch:?}]");
    }
    println!(
        "agreement with PyTorch (float64): max |error| {max_abs:.2e}, {:.3} of the tolerance (atol {atol:.1e}, rtol {rtol:.0e}) -> {}",
        worst,
        if worst <= 1.0 { "PASS" } else { "FAIL" }
    );
    if worst > 1.0 {
        return Err("outputs differ from PyTorch's beyond the tolerance".into());
    }

    println!();
    let input = inputs[..ResNet18::INPUT_LEN].to_vec();
    let mut out = vec![0.0f32; ResNet18::OUTPUT_LEN];
    let mut batch_out = vec![0.0f32; want.len()];
    common::bench_report(
        &opts,
        inputs.len() / ResNet18::INPUT_LEN,
        ResNet18::MACS,
        || model.forward_flat_into(black_box(&input), &mut out),
        || model.forward_batch_into(black_box(&inputs), &mut batch_out),
    )?;
    println!("(instruction set: {:?}, one thread)", cnn::simd_level());
    Ok(())
}
