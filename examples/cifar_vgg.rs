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
use std::hint::black_box;

use cnn::{cnn_model, Model};
use common::{bench_report, max_abs_diff, parse_args, print_top5, random_input, to_chw};
use common::{Rng, StateDict, SEED};

cnn_model! {
    /// VGG-style CIFAR-10 classifier: six 3x3 conv + batch norm + ReLU layers in three
    /// blocks (32, 64, 128 channels), each ending in a 2x2 max pool, then global average
    /// pooling and a linear layer to 10 classes.
    #[file = "models/cifar_vgg.toml"]
    pub struct CifarVgg;
}

/// Images per `forward_batch_into` call.
const BATCH: usize = 16;

fn main() -> Result<(), Box<dyn Error>> {
    let opts = parse_args("cifar_vgg");

    // Seeded random weights for every tensor the model expects (`Model::WEIGHTS`: the
    // keys and shapes of the equivalent PyTorch module's `state_dict()`).
    let sd = StateDict::for_model(CifarVgg::WEIGHTS, SEED);
    let bytes = sd.to_safetensors()?;
    println!(
        "weights: {} tensors, {} parameters (model: {}), {:.1} KiB of safetensors",
        sd.len(),
        sd.params(),
        CifarVgg::PARAMS,
        bytes.len() as f64 / 1024.0
    );
    let model = CifarVgg::from_safetensors(&bytes)?;
    println!("{}", CifarVgg::summary());

    // One seeded random image (flat CHW and nested), and a batch of 16 starting with it.
    let mut rng = Rng::new(SEED ^ 0x1234);
    let flat = random_input(&mut rng, CifarVgg::INPUT_LEN);
    let input = to_chw::<3, 32, 32>(&flat)?;
    let mut batch_in = random_input(&mut rng, BATCH * CifarVgg::INPUT_LEN);
    batch_in[..CifarVgg::INPUT_LEN].copy_from_slice(&flat);
    let mut batch_out = vec![0.0f32; BATCH * CifarVgg::OUTPUT_LEN];

    // The three entry points compute the same thing.
    let logits: [f32; 10] = model.forward(&input);
    let via_flat = model.forward_flat(&flat)?;
    model.forward_batch_into(&batch_in, &mut batch_out)?;
    println!(
        "max |forward - forward_flat| = {:e}, max |forward - batch[0]| = {:e}\n",
        max_abs_diff(&logits, &via_flat),
        max_abs_diff(&logits, &batch_out[..CifarVgg::OUTPUT_LEN]),
    );

    bench_report(
        &opts,
        BATCH,
        CifarVgg::MACS,
        || model.forward(black_box(&input)),
        || model.forward_batch_into(black_box(&batch_in), &mut batch_out),
    )?;

    println!();
    print_top5(&logits);
    Ok(())
}
