// `tests/cases_invalid/array_from_on_single_input.toml` must fail to compile, naming its layer.
// expect: c2 array `from` on conv (a single-input op)
// (trybuild builds this file in target/tests/trybuild/cnn/, hence the ../../../../)
cnn::cnn_model! {
    #[file = "../../../../tests/cases_invalid/array_from_on_single_input.toml"]
    pub struct Invalid;
}

fn main() {}
