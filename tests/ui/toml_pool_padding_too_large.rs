// `tests/conformance/invalid/pool_padding_too_large.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/pool_padding_too_large.toml"]
    pub struct Invalid;
}

fn main() {}
