// `tests/conformance/invalid/same_with_stride2.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/same_with_stride2.toml"]
    pub struct Invalid;
}

fn main() {}
