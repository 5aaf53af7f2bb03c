// `tests/cases_invalid/array_from_on_single_input.toml` must fail to compile, naming its layer.
// expect: c2 array `from` on conv (a single-input op)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/array_from_on_single_input.toml"]
    pub struct Invalid;
}

fn main() {}
