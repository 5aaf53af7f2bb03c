// `#[weights = ..]` is checked against the architecture while the macro expands: a file
// for another model is a compile error naming the keys and shapes.
cnn::cnn_model! {
    #[file = "models/lenet5.toml"]
    #[weights = "tests/conformance/cases/tiny_1ch_5x5/weights.safetensors"]
    pub struct LeNet5;
}

fn main() {}
