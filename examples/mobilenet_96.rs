//! A MobileNet-v1-style network of depthwise-separable convolutions (3x96x96 -> 100
//! logits), compiled from `models/mobilenet_96.toml`.
//!
//! Shows grouped (depthwise) convolutions, batch norm and ReLU6 loaded from a
//! `state_dict()`-shaped safetensors file with seeded random weights: load it with
//! `Model::from_safetensors`, print the summary, check that `forward`, `forward_flat` and
//! `forward_batch_into` agree, time `forward` at batch 1 and `forward_batch_into` at
//! batch 16, and print the top-5 classes.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example mobilenet_96
//! cargo run --release --example mobilenet_96 -- --iters 200
//! ```

mod common;

use std::error::Error;

use cnn::cnn_model;
use common::print_top5;

cnn_model! {
    /// MobileNet-v1-style classifier for 96x96 images: a stride-2 3x3 stem, six
    /// depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each with batch norm and
    /// ReLU6; 64 to 512 channels, 3x3 spatial at the end), global average pooling,
    /// dropout and a linear layer to 100 classes.
    #[file = "models/mobilenet_96.toml"]
    pub struct MobileNet96;
}

fn main() -> Result<(), Box<dyn Error>> {
    let logits = common::demo::<MobileNet96>("mobilenet_96")?;
    println!();
    print_top5(&logits);
    Ok(())
}
