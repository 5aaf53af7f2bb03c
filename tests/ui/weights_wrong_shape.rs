// A weight file whose `fc.weight` is transposed ([8, 3] for [3, 8])
// (`tests/weights_invalid/`, written by `tools/gen_weights_invalid.py`): a compile error
// naming the key, checked by the runtime's strict loader while the macro expands.
cnn::cnn_model! {
    #[file = "tests/weights_invalid/model.toml"]
    #[weights = "tests/weights_invalid/wrong_shape.safetensors"]
    pub struct Small;
}

fn main() {}
