// `tests/cases_invalid/merge_without_from.toml` must fail to compile, naming its layer.
// expect: sum add without `from` (operands are required)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/merge_without_from.toml"]
    pub struct Invalid;
}

fn main() {}
