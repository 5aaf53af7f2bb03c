// A weight file without `fc.bias`, which the model needs
// (`tests/weights_invalid/`, written by `tools/gen_weights_invalid.py`): a compile error
// naming the key, checked by the runtime's strict loader while the macro expands.
cnn::cnn_model! {
    #[file = "tests/weights_invalid/model.toml"]
    #[weights = "tests/weights_invalid/missing_key.safetensors"]
    pub struct Small;
}

fn main() {}
