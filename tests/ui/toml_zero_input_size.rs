// `tests/conformance/invalid/zero_input_size.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/zero_input_size.toml"]
    pub struct Invalid;
}

fn main() {}
