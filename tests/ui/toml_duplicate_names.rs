// `tests/conformance/invalid/duplicate_names.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/duplicate_names.toml"]
    pub struct Invalid;
}

fn main() {}
