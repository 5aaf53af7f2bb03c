// `tests/conformance/invalid/linear_on_spatial.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/linear_on_spatial.toml"]
    pub struct Invalid;
}

fn main() {}
