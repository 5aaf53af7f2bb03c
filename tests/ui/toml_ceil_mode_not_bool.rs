// `tests/conformance/invalid/ceil_mode_not_bool.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/ceil_mode_not_bool.toml"]
    pub struct Invalid;
}

fn main() {}
