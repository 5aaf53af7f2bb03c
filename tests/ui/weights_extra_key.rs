// A weight file with an extra `conv2.weight`, a layer the model does not have
// (`tests/weights_invalid/`, written by `tools/gen_weights_invalid.py`): a compile error
// naming the key, checked by the runtime's strict loader while the macro expands.
cnn::cnn_model! {
    #[file = "tests/weights_invalid/model.toml"]
    #[weights = "tests/weights_invalid/extra_key.safetensors"]
    pub struct Small;
}

fn main() {}
