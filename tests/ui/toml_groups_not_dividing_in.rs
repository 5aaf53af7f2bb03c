// `tests/conformance/invalid/groups_not_dividing_in.toml` must fail to compile, naming its layer.
cnn::cnn_model! {
    #[file = "tests/conformance/invalid/groups_not_dividing_in.toml"]
    pub struct Invalid;
}

fn main() {}
