// `tests/conformance/invalid/count_include_pad_on_max_pool.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/count_include_pad_on_max_pool.toml"]
    pub struct Invalid;
}

fn main() {}
