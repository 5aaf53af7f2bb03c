// A weight file whose `conv1.weight` is U8 (a quantized export), not a float type
// (`tests/weights_invalid/`, written by `tools/gen_weights_invalid.py`): a compile error
// naming the key, checked by the runtime's strict loader while the macro expands.
cnn::cnn_model! {
    #[file = "tests/weights_invalid/model.toml"]
    #[weights = "tests/weights_invalid/wrong_dtype.safetensors"]
    pub struct Small;
}

fn main() {}
