//! LeNet-5 on the real MNIST test set, with weights trained in PyTorch.
//!
//! ```text
//! cargo run --release --example mnist                  # the 10,000 test images
//! cargo run --release --example mnist -- --image my_digit.png
//! ```
//!
//! The network is `models/lenet5.toml`, compiled by `cnn_model!`. The weights
//! (`examples/data/lenet5/weights.safetensors`) are the `state_dict()` of the same network
//! trained by `tools/train_lenet5.py`, which also recorded PyTorch's 10,000 predictions
//! (`torch_reference.json`): this example checks that Rust predicts the same labels.
//!
//! Preprocessing, identical to the training script: each 28x28 u8 image is placed in a
//! 32x32 image with a 2-pixel zero border, then every pixel becomes
//! `(u8 / 255 - 0.1307) / 0.3081`.

mod common;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cnn::{cnn_model, Model};
use common::mnist::{argmax, data_dir, read_idx, read_reference, report_accuracy};
use common::softmax;

cnn_model! {
    /// LeNet-5 (LeCun et al., 1998): 1x32x32 -> 10 logits.
    #[file = "models/lenet5.toml"]
    pub struct LeNet5;
}

const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// A 28x28 u8 image as the network's normalised 32x32 input.
fn preprocess(image: &[u8]) -> [[[f32; 32]; 32]; 1] {
    let mut x = [[[(0.0 - MEAN) / STD; 32]; 32]; 1];
    for (r, row) in image.chunks_exact(28).enumerate() {
        for (c, &p) in row.iter().enumerate() {
            x[0][r + 2][c + 2] = (p as f32 / 255.0 - MEAN) / STD;
        }
    }
    x
}

/// Draws a 28x28 digit as ASCII art, two characters per pixel column pair.
fn ascii(image: &[u8]) -> Vec<String> {
    const SHADES: &[u8] = b" .:-=+*#%@";
    image
        .chunks_exact(28)
        .step_by(2)
        .map(|row| {
            row.iter()
                .map(|&p| SHADES[p as usize * (SHADES.len() - 1) / 255] as char)
                .collect()
        })
        .collect()
}

fn classify_file(model: &LeNet5, path: &Path) -> BoxResult<()> {
    let img = image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_luma8();
    let small = image::imageops::resize(&img, 28, 28, image::imageops::FilterType::Triangle);
    let mut pixels: Vec<u8> = small.into_raw();
    // MNIST digits are light on dark: invert a dark-on-light picture (judged by its border).
    let border: Vec<u8> = (0..28)
        .flat_map(|i| {
            [
                pixels[i],
                pixels[27 * 28 + i],
                pixels[i * 28],
                pixels[i * 28 + 27],
            ]
        })
        .collect();
    let border_mean = border.iter().map(|&p| p as f32).sum::<f32>() / border.len() as f32;
    if border_mean > 127.0 {
        pixels.iter_mut().for_each(|p| *p = 255 - *p);
    }
    let probs = softmax(&model.forward(&preprocess(&pixels)));
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
    for line in ascii(&pixels) {
        println!("    {line}");
    }
    println!("{}:", path.display());
    for &d in &order[..3] {
        println!("  {d}  {:6.2}%", 100.0 * probs[d]);
    }
    Ok(())
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

fn run() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut image_arg = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--image" => image_arg = Some(PathBuf::from(it.next().ok_or("--image needs a path")?)),
            "-h" | "--help" => {
                println!("usage: mnist [--image PATH]");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}` (try --help)").into()),
        }
    }

    let dir = data_dir();
    let model = LeNet5::load(dir.join("lenet5/weights.safetensors"))?;
    println!("{}\n", LeNet5::summary());

    if let Some(path) = image_arg {
        return classify_file(&model, &path);
    }

    let (idims, images) = read_idx(&dir.join("mnist/t10k-images-idx3-ubyte.gz"), 0x803)?;
    let (_, labels) = read_idx(&dir.join("mnist/t10k-labels-idx1-ubyte.gz"), 0x801)?;
    let n = idims[0];
    let reference = read_reference(&dir.join("lenet5/torch_reference.json"))?;
    if reference.predictions.len() != n {
        return Err("torch_reference.json does not cover the test set".into());
    }

    let inputs: Vec<[[[f32; 32]; 32]; 1]> = images.chunks_exact(784).map(preprocess).collect();

    // Throughput: the whole test set, one image after another (batch 1), timed as a whole.
    let mut logits = vec![[0.0f32; 10]; n];
    let start = Instant::now();
    for (x, y) in inputs.iter().zip(logits.iter_mut()) {
        *y = model.forward(x);
    }
    let total = start.elapsed();

    // Latency: each image timed on its own, second pass (warm caches), median and p99.
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for x in &inputs {
        let t = Instant::now();
        std::hint::black_box(model.forward(std::hint::black_box(x)));
        times.push(t.elapsed());
    }
    times.sort();

    let predictions: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
    report_accuracy(&predictions, &labels, &reference);
    println!(
        "throughput: {:.0} images/s ({n} images in {:.1} ms, batch 1, one core, {:?} kernels)",
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64() * 1e3,
        cnn::simd_level()
    );
    println!(
        "latency: {:.2} µs/image median, {:.2} µs p99",
        times[n / 2].as_secs_f64() * 1e6,
        times[n * 99 / 100].as_secs_f64() * 1e6
    );

    println!("\nsome test digits:");
    for &i in &[0usize, 1, 2, 3, 4, 5] {
        let probs = softmax(&logits[i]);
        let p = predictions[i];
        let art = ascii(&images[i * 784..(i + 1) * 784]);
        println!(
            "#{i}: predicted {p} ({:.1}%), label {}",
            100.0 * probs[p],
            labels[i]
        );
        for line in art.iter().skip(2).take(11) {
            println!("    {line}");
        }
    }
    let wrong: Vec<usize> = (0..n)
        .filter(|&i| predictions[i] != labels[i] as usize)
        .take(2)
        .collect();
    for &i in &wrong {
        let probs = softmax(&logits[i]);
        let p = predictions[i];
        println!(
            "#{i} (a miss): predicted {p} ({:.1}%), label {}",
            100.0 * probs[p],
            labels[i]
        );
        for line in ascii(&images[i * 784..(i + 1) * 784])
            .iter()
            .skip(2)
            .take(11)
        {
            println!("    {line}");
        }
    }
    Ok(())
}
