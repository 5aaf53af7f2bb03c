//! Arbitrary bytes as a safetensors file for a model with conv, batch norm and linear
//! weights (`fuzz/model.toml`): the strict loader must return the model or an error that
//! says something, never panic, hang, or allocate what the header claims rather than
//! what the file holds.
#![no_main]

use cnn::Model;
use libfuzzer_sys::fuzz_target;

cnn::cnn_model! {
    /// The fuzz model (`fuzz/model.toml`), shared with `tests/fuzz_corpus.rs`.
    #[file = "model.toml"]
    pub struct FuzzNet;
}

fuzz_target!(|data: &[u8]| {
    match FuzzNet::from_safetensors(data) {
        // Loaded weights may hold anything (NaN, inf); the forward pass must still run.
        Ok(model) => {
            let _ = model.forward(&[[[0.5; 8]; 8]; 1]);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
