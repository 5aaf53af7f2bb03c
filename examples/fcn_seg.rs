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

use cnn::{cnn_model, Model};

cnn_model! {
    /// Fully convolutional segmenter: three 3x3 `same` convolutions with ReLU (16, 32, 32
    /// channels; the second dilated by 2) and a 1x1 head scoring 4 classes at every pixel.
    #[file = "models/fcn_seg.toml"]
    pub struct FcnSeg;
}

/// Number of classes (output channels).
const CLASSES: usize = 4;

/// Per class, the number of pixels where it has the highest score (ties: lowest class);
/// `scores` is `[CLASSES, H, W]` in CHW order with `plane = H * W`.
fn argmax_counts(scores: &[f32], plane: usize) -> [usize; CLASSES] {
    let mut counts = [0; CLASSES];
    for pixel in 0..plane {
        let best = (1..CLASSES).fold(0, |best, c| {
            if scores[c * plane + pixel] > scores[best * plane + pixel] {
                c
            } else {
                best
            }
        });
        counts[best] += 1;
    }
    counts
}

fn main() -> Result<(), Box<dyn Error>> {
    let scores = common::demo::<FcnSeg>("fcn_seg")?;
    println!(
        "\noutput shape {:?} (class scores per pixel)\n\
         argmax map, pixels per class (random weights, so the classes mean nothing):",
        FcnSeg::OUTPUT_SHAPE
    );
    let counts = argmax_counts(&scores, FcnSeg::OUTPUT_SHAPE[1] * FcnSeg::OUTPUT_SHAPE[2]);
    let pixels: usize = counts.iter().sum();
    for (class, n) in counts.iter().enumerate() {
        println!(
            "  class {class}: {n:>5} pixels ({:5.1}%)",
            100.0 * *n as f64 / pixels as f64
        );
    }
    Ok(())
}
