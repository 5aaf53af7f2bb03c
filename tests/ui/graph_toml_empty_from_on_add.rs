// `tests/cases_invalid/empty_from_on_add.toml` must fail to compile, naming its layer.
// expect: sum add with `from = []` (at least one operand)
// (trybuild builds this file in target/tests/trybuild/cnn/, hence the ../../../../)
cnn::cnn_model! {
    #[file = "../../../../tests/cases_invalid/empty_from_on_add.toml"]
    pub struct Invalid;
}

fn main() {}
