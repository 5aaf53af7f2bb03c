// `tests/conformance/invalid/softmax_on_spatial.toml` must fail to compile, naming its layer.
// (trybuild builds this file in target/tests/trybuild/cnn/, hence the ../../../../)
cnn::cnn_model! {
    #[file = "../../../../tests/conformance/invalid/softmax_on_spatial.toml"]
    pub struct Invalid;
}

fn main() {}
