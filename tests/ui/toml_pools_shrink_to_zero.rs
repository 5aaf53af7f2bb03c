// `tests/conformance/invalid/pools_shrink_to_zero.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/pools_shrink_to_zero.toml"]
    pub struct Invalid;
}

fn main() {}
