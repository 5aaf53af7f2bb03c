// `tests/conformance/invalid/missing_input.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/missing_input.toml"]
    pub struct Invalid;
}

fn main() {}
