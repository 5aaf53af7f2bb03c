//! A fully convolutional per-pixel classifier (segmentation-style, 3x64x64 -> 4x64x64
//! class scores), compiled from `models/fcn_seg.toml`.
//!
//! Shows a model with a spatial output, `padding = "same"` and a dilated convolution,
//! loaded from a `state_dict()`-shaped safetensors file with seeded random weights: load
//! it with `Model::from_safetensors`, print the summary, check that `forward`,
//! `forward_flat` and `forward_batch_into` agree, time `forward` at batch 1 and
//! `forward_batch_into` at batch 16, and print the output shape and how many pixels the
//! argmax map gives each class.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example fcn_seg
//! cargo run --release --example fcn_seg -- --iters 300
//! ```

mod common;

use std::error::Error;
use std::hint::black_box;

use cnn::{cnn_model, Model};
use common::{bench_report, max_abs_diff, parse_args, random_input, to_chw};
use common::{Rng, StateDict, SEED};

cnn_model! {
    /// Fully convolutional segmenter: three 3x3 `same` convolutions with ReLU (16, 32, 32
    /// channels; the second dilated by 2) and a 1x1 head scoring 4 classes at every pixel.
    #[file = "models/fcn_seg.toml"]
    pub struct FcnSeg;
}

/// Images per `forward_batch_into` call.
const BATCH: usize = 16;

/// Number of classes (output channels).
const CLASSES: usize = 4;

/// Per class, the number of pixels where it has the highest score (ties: lowest class).
fn argmax_counts<const H: usize, const W: usize>(
    scores: &[[[f32; W]; H]; CLASSES],
) -> [usize; CLASSES] {
    let planes = scores.each_ref().map(|plane| plane.as_flattened());
    let mut counts = [0; CLASSES];
    let best_class = |pixel: usize| {
        (1..CLASSES).fold(0, |best, c| {
            if planes[c][pixel] > planes[best][pixel] {
                c
            } else {
                best
            }
        })
    };
    (0..H * W).for_each(|pixel| counts[best_class(pixel)] += 1);
    counts
}

fn main() -> Result<(), Box<dyn Error>> {
    let opts = parse_args("fcn_seg");

    // Seeded random weights for every tensor the model expects (`Model::WEIGHTS`: the
    // keys and shapes of the equivalent PyTorch module's `state_dict()`).
    let sd = StateDict::for_model(FcnSeg::WEIGHTS, SEED);
    let bytes = sd.to_safetensors()?;
    println!(
        "weights: {} tensors, {} parameters (model: {}), {:.1} KiB of safetensors",
        sd.len(),
        sd.params(),
        FcnSeg::PARAMS,
        bytes.len() as f64 / 1024.0
    );
    let model = FcnSeg::from_safetensors(&bytes)?;
    println!("{}", FcnSeg::summary());

    // One seeded random image (flat CHW and nested), and a batch of 16 starting with it.
    let mut rng = Rng::new(SEED ^ 0x1234);
    let flat = random_input(&mut rng, FcnSeg::INPUT_LEN);
    let input = to_chw::<3, 64, 64>(&flat)?;
    let mut batch_in = random_input(&mut rng, BATCH * FcnSeg::INPUT_LEN);
    batch_in[..FcnSeg::INPUT_LEN].copy_from_slice(&flat);
    let mut batch_out = vec![0.0f32; BATCH * FcnSeg::OUTPUT_LEN];

    // The three entry points compute the same thing.
    let scores: [[[f32; 64]; 64]; CLASSES] = model.forward(&input);
    let scores_flat = scores.as_flattened().as_flattened();
    let via_flat = model.forward_flat(&flat)?;
    model.forward_batch_into(&batch_in, &mut batch_out)?;
    println!(
        "max |forward - forward_flat| = {:e}, max |forward - batch[0]| = {:e}\n",
        max_abs_diff(scores_flat, &via_flat),
        max_abs_diff(scores_flat, &batch_out[..FcnSeg::OUTPUT_LEN]),
    );

    bench_report(
        &opts,
        BATCH,
        FcnSeg::MACS,
        || model.forward(black_box(&input)),
        || model.forward_batch_into(black_box(&batch_in), &mut batch_out),
    )?;

    println!(
        "\noutput shape {:?} (class scores per pixel)\n\
         argmax map, pixels per class (random weights, so the classes mean nothing):",
        FcnSeg::OUTPUT_SHAPE
    );
    let counts = argmax_counts(&scores);
    let pixels: usize = counts.iter().sum();
    for (class, n) in counts.iter().enumerate() {
        println!(
            "  class {class}: {n:>5} pixels ({:5.1}%)",
            100.0 * *n as f64 / pixels as f64
        );
    }
    Ok(())
}
