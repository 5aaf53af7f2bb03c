//! Replays the committed corpus of the `load_weights` fuzz target
//! (`fuzz/corpus/load_weights`) through the same calls on stable, with the same model
//! (`fuzz/model.toml`): every file loads (and the model runs) or is refused with an error
//! that says something, and nothing panics.

use std::path::Path;

use cnn::{cnn_model, Model};

cnn_model! {
    /// The fuzz target's model: conv, batch norm, relu, max pool, flatten, linear.
    #[file = "fuzz/model.toml"]
    pub struct FuzzNet;
}

#[test]
fn load_weights_corpus_loads_or_explains() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/load_weights");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .collect();
    files.sort();
    let (mut ok, mut refused) = (0, 0);
    for path in &files {
        let bytes = std::fs::read(path).expect("readable corpus file");
        match FuzzNet::from_safetensors(&bytes) {
            Ok(model) => {
                let out = model.forward(&[[[0.5; 8]; 8]; 1]);
                assert_eq!(out.len(), 3);
                ok += 1;
            }
            Err(e) => {
                assert!(!e.to_string().trim().is_empty(), "{}", path.display());
                refused += 1;
            }
        }
    }
    assert!(ok > 0 && refused > 0, "{ok} loaded, {refused} refused");
}

/// The seed generator (`fuzz/make_seeds.py`) and the fuzz target agree on the keys.
#[test]
fn fuzz_model_weights() {
    let keys: Vec<&str> = FuzzNet::WEIGHTS.iter().map(|s| s.key).collect();
    assert_eq!(
        keys,
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "fc.weight",
            "fc.bias"
        ]
    );
}
