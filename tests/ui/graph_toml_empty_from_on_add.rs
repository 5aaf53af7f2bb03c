// `tests/cases_invalid/empty_from_on_add.toml` must fail to compile, naming its layer.
// expect: sum add with `from = []` (at least one operand)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/empty_from_on_add.toml"]
    pub struct Invalid;
}

fn main() {}
