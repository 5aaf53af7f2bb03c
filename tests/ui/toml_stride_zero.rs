// `tests/conformance/invalid/stride_zero.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/stride_zero.toml"]
    pub struct Invalid;
}

fn main() {}
