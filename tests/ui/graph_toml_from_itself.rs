// `tests/cases_invalid/from_itself.toml` must fail to compile, naming its layer.
// expect: c2 `from` names the layer itself
cnn::cnn_model! {
    #[file = "tests/cases_invalid/from_itself.toml"]
    pub struct Invalid;
}

fn main() {}
