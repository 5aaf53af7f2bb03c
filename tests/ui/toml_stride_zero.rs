// `tests/conformance/invalid/stride_zero.toml` must fail to compile, naming its layer.
// (trybuild builds this file in target/tests/trybuild/cnn/, hence the ../../../../)
cnn::cnn_model! {
    #[file = "../../../../tests/conformance/invalid/stride_zero.toml"]
    pub struct Invalid;
}

fn main() {}
