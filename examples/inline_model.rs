//! A small CNN written inline in Rust with `cnn_model!` (no TOML file), loaded with seeded
//! random weights and run on one image; then the two ways a caller can get things wrong at
//! run time and what the errors say: a weight file whose tensors do not match the
//! architecture (`LoadError`) and an input of the wrong length (`ShapeError`). Mistakes in
//! the architecture itself are compile errors, so they cannot happen here.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example inline_model
//! ```

mod common;

use std::error::Error;

use cnn::{cnn_model, Model};
use common::{random_input, to_chw, top_k, Rng, StateDict, SEED};

cnn_model! {
    /// A tiny CIFAR-sized classifier: 3x32x32 images to probabilities over 10 classes.
    ///
    /// `conv1` keeps the 32x32 size (`padding = same`), the max pool halves it, the
    /// strided `conv2` halves it again to 32x8x8, and global average pooling leaves a
    /// 32-vector for the linear layer. Unnamed layers are named by their position, like
    /// `torch.nn.Sequential` children, but they have no weights here.
    pub struct TinyNet {
        input: [3, 32, 32],
        conv1: conv(16, kernel = 3, padding = same),
        bn1: batch_norm,
        relu,
        max_pool(2),
        conv2: conv(32, kernel = 3, stride = 2, padding = 1),
        leaky_relu(slope = 0.1),
        global_avg_pool,
        dropout(p = 0.2),
        fc: linear(10),
        softmax,
    }
}

/// The `state_dict()` of the equivalent PyTorch `nn.Sequential`.
fn state_dict() -> StateDict {
    let mut sd = StateDict::new(SEED);
    sd.conv("conv1", 3, 16, 3, 1, true)
        .batch_norm("bn1", 16)
        .conv("conv2", 16, 32, 3, 1, true)
        .linear("fc", 32, 10, true);
    sd
}

fn main() -> Result<(), Box<dyn Error>> {
    // --- The happy path -------------------------------------------------------------
    let bytes = state_dict().to_safetensors()?;
    let model = TinyNet::from_safetensors(&bytes)?;
    println!("{}", TinyNet::summary());

    let mut rng = Rng::new(SEED ^ 0x1234);
    let flat = random_input(&mut rng, TinyNet::INPUT_LEN);
    let input = to_chw::<3, 32, 32>(&flat)?;
    let probs: [f32; 10] = model.forward(&input);
    println!(
        "probabilities (random weights; sum = {:.6}):",
        probs.iter().sum::<f32>()
    );
    for (class, p) in probs.iter().enumerate() {
        println!(
            "  class {class}: {p:.4}  {}",
            "#".repeat((p * 100.0) as usize)
        );
    }
    if let Some((class, p)) = top_k(&probs, 1).first() {
        println!("most likely: class {class} (p = {p:.4})");
    }

    // --- A weight file that does not match ----------------------------------------
    // conv2 trained with 8 input channels instead of 16: strict loading names the key and
    // both shapes.
    println!("\nloading weights where `conv2.weight` has the wrong shape:");
    let mut wrong = state_dict();
    wrong.reshape("conv2.weight", &[32, 8, 3, 3])?;
    match TinyNet::from_safetensors(&wrong.to_safetensors()?) {
        Ok(_) => println!("  unexpectedly loaded"),
        Err(e) => println!("  LoadError: {e}"),
    }

    // A renamed layer (as after editing the PyTorch module): one key is missing and one
    // is unexpected, and every problem is reported at once.
    println!("\nloading weights where `fc` was renamed to `head`:");
    let mut renamed = state_dict();
    renamed.rename("fc.weight", "head.weight")?;
    renamed.rename("fc.bias", "head.bias")?;
    match TinyNet::from_safetensors(&renamed.to_safetensors()?) {
        Ok(_) => println!("  unexpectedly loaded"),
        Err(e) => println!("  LoadError: {e}"),
    }

    // --- An input of the wrong size -------------------------------------------------
    // `forward` takes `&[[[f32; 32]; 32]; 3]`, so its size is checked by the compiler;
    // the flat entry points check the length at run time.
    println!("\nforward_flat with a 1x32x32 image instead of 3x32x32:");
    match model.forward_flat(&flat[..32 * 32]) {
        Ok(_) => println!("  unexpectedly ran"),
        Err(e) => println!("  ShapeError: {e}"),
    }
    Ok(())
}
