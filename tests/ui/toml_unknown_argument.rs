// `tests/conformance/invalid/unknown_argument.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/unknown_argument.toml"]
    pub struct Invalid;
}

fn main() {}
