// `tests/conformance/invalid/kernel_larger_than_padded_input.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/kernel_larger_than_padded_input.toml"]
    pub struct Invalid;
}

fn main() {}
