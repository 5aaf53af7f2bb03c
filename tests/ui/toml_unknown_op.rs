// `tests/conformance/invalid/unknown_op.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/unknown_op.toml"]
    pub struct Invalid;
}

fn main() {}
