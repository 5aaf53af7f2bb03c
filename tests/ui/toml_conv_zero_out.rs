// `tests/conformance/invalid/conv_zero_out.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/conv_zero_out.toml"]
    pub struct Invalid;
}

fn main() {}
