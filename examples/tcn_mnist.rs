//! A 1-D dilated CNN (TCN-style) classifying MNIST digits read as sequences, with weights
//! trained in PyTorch.
//!
//! ```text
//! cargo run --release --example tcn_mnist
//! ```
//!
//! Each 28x28 test image is a signal of 28 channels (the rows) and length 28 (the
//! columns), the `input = [28, 28]` of `models/tcn_mnist.toml`: four 3-tap convolutions
//! with dilation 1, 2, 4 and 8 (`padding = "same"`), batch norm, ReLU, three residual
//! `add`s, global average pooling over the length and a linear layer to 10 logits. The
//! weights (`examples/data/tcn_mnist/weights.safetensors`) are the `state_dict()` of the
//! same network built from the same TOML and trained by `tools/train_tcn_mnist.py`, which
//! also recorded PyTorch's 10,000 predictions (`torch_reference.json`).
//!
//! The example prints the model summary, the accuracy on the 10,000 bundled t10k images
//! next to PyTorch's, how many predictions differ from PyTorch's, and the latency per
//! sequence (median and p99 at batch 1, one core).
//!
//! Preprocessing, identical to the training script: `x[row][col] = (u8 / 255 - 0.1307) /
//! 0.3081` in f32, no padding.

mod common;

use std::error::Error;
use std::time::{Duration, Instant};

use cnn::{cnn_model, Model};
use common::mnist::{self, report_accuracy};

cnn_model! {
    /// 1-D dilated residual CNN: `[28, 28]` (rows as channels, columns as time) -> 10 logits.
    #[file = "models/tcn_mnist.toml"]
    pub struct TcnMnist;
}

const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

/// A 28x28 u8 image as the network's `[28, 28]` signal: channel = row, position = column.
fn preprocess(image: &[u8]) -> [[f32; 28]; 28] {
    let mut x = [[0.0f32; 28]; 28];
    for (row, pixels) in x.iter_mut().zip(image.chunks_exact(28)) {
        for (v, &p) in row.iter_mut().zip(pixels) {
            *v = (p as f32 / 255.0 - MEAN) / STD;
        }
    }
    x
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    if let Some(a) = std::env::args().nth(1) {
        if a != "-h" && a != "--help" {
            return Err(format!("unknown argument `{a}` (this example takes none)").into());
        }
        println!("usage: cargo run --release --example tcn_mnist");
        return Ok(());
    }
    let dir = mnist::data_dir();
    let weights = dir.join("tcn_mnist/weights.safetensors");
    let model = TcnMnist::load(&weights)?;
    println!("{}\n", TcnMnist::summary());

    let (images, labels) = mnist::test_set()?;
    let n = labels.len();
    let reference = mnist::read_reference(&dir.join("tcn_mnist/torch_reference.json"))?;
    if reference.predictions.len() != n {
        return Err(format!(
            "torch_reference.json has {} predictions for {n} test images",
            reference.predictions.len()
        )
        .into());
    }
    let inputs: Vec<[[f32; 28]; 28]> = images.chunks_exact(784).map(preprocess).collect();

    // Every sequence once (batch 1), then a second pass timing each call on its own.
    let predictions: Vec<usize> = inputs
        .iter()
        .map(|x| mnist::argmax(&model.forward(x)))
        .collect();
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for x in &inputs {
        let t = Instant::now();
        std::hint::black_box(model.forward(std::hint::black_box(x)));
        times.push(t.elapsed());
    }
    times.sort();

    report_accuracy(&predictions, &labels, &reference);
    println!(
        "latency: {:.2} µs/sequence median, {:.2} µs p99 (batch 1, one core, {:?} kernels, {} MMAC)",
        times[n / 2].as_secs_f64() * 1e6,
        times[n * 99 / 100].as_secs_f64() * 1e6,
        cnn::simd_level(),
        TcnMnist::MACS as f64 / 1e6,
    );
    Ok(())
}
