// `tests/conformance/invalid/missing_kernel.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/missing_kernel.toml"]
    pub struct Invalid;
}

fn main() {}
