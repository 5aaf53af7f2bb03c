// `tests/cases_invalid/from_later_layer.toml` must fail to compile, naming its layer.
// expect: c2 `from` names the later layer c3
cnn::cnn_model! {
    #[file = "tests/cases_invalid/from_later_layer.toml"]
    pub struct Invalid;
}

fn main() {}
