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
use std::hint::black_box;

use cnn::{cnn_model, Model};
use common::{bench_report, max_abs_diff, parse_args, print_top5, random_input, to_chw};
use common::{Rng, StateDict, SEED};

cnn_model! {
    /// MobileNet-v1-style classifier for 96x96 images: a stride-2 3x3 stem, six
    /// depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each with batch norm and
    /// ReLU6; 64 to 512 channels, 3x3 spatial at the end), global average pooling,
    /// dropout and a linear layer to 100 classes.
    #[file = "models/mobilenet_96.toml"]
    pub struct MobileNet96;
}

/// Images per `forward_batch_into` call.
const BATCH: usize = 16;

fn main() -> Result<(), Box<dyn Error>> {
    let opts = parse_args("mobilenet_96");

    // Seeded random weights for every tensor the model expects (`Model::WEIGHTS`: the
    // keys and shapes of the equivalent PyTorch module's `state_dict()`).
    let sd = StateDict::for_model(MobileNet96::WEIGHTS, SEED);
    let bytes = sd.to_safetensors()?;
    println!(
        "weights: {} tensors, {} parameters (model: {}), {:.1} KiB of safetensors",
        sd.len(),
        sd.params(),
        MobileNet96::PARAMS,
        bytes.len() as f64 / 1024.0
    );
    let model = MobileNet96::from_safetensors(&bytes)?;
    println!("{}", MobileNet96::summary());

    // One seeded random image (flat CHW and nested), and a batch of 16 starting with it.
    let mut rng = Rng::new(SEED ^ 0x1234);
    let flat = random_input(&mut rng, MobileNet96::INPUT_LEN);
    let input = to_chw::<3, 96, 96>(&flat)?;
    let mut batch_in = random_input(&mut rng, BATCH * MobileNet96::INPUT_LEN);
    batch_in[..MobileNet96::INPUT_LEN].copy_from_slice(&flat);
    let mut batch_out = vec![0.0f32; BATCH * MobileNet96::OUTPUT_LEN];

    // The three entry points compute the same thing.
    let logits: [f32; 100] = model.forward(&input);
    let via_flat = model.forward_flat(&flat)?;
    model.forward_batch_into(&batch_in, &mut batch_out)?;
    println!(
        "max |forward - forward_flat| = {:e}, max |forward - batch[0]| = {:e}\n",
        max_abs_diff(&logits, &via_flat),
        max_abs_diff(&logits, &batch_out[..MobileNet96::OUTPUT_LEN]),
    );

    bench_report(
        &opts,
        BATCH,
        MobileNet96::MACS,
        || model.forward(black_box(&input)),
        || model.forward_batch_into(black_box(&batch_in), &mut batch_out),
    )?;

    println!();
    print_top5(&logits);
    Ok(())
}
