//! A VGG-style CIFAR-10 classifier with batch norm (3x32x32 -> 10 logits), compiled from
//! `models/cifar_vgg.toml`.
//!
//! Shows the whole path without PyTorch: build a `state_dict()`-shaped safetensors file
//! with seeded random weights, load it with `Model::from_safetensors`, print the summary,
//! check that `forward`, `forward_flat` and `forward_batch_into` agree, time `forward` at
//! batch 1 and `forward_batch_into` at batch 16, and print the top-5 classes.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example cifar_vgg
//! cargo run --release --example cifar_vgg -- --iters 500
//! ```

mod common;

use std::error::Error;

use cnn::cnn_model;
use common::print_top5;

cnn_model! {
    /// VGG-style CIFAR-10 classifier: six 3x3 conv + batch norm + ReLU layers in three
    /// blocks (32, 64, 128 channels), each ending in a 2x2 max pool, then global average
    /// pooling and a linear layer to 10 classes.
    #[file = "models/cifar_vgg.toml"]
    pub struct CifarVgg;
}

fn main() -> Result<(), Box<dyn Error>> {
    let logits = common::demo::<CifarVgg>("cifar_vgg")?;
    println!();
    print_top5(&logits);
    Ok(())
}
