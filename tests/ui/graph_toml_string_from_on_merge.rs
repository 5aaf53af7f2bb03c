// `tests/cases_invalid/string_from_on_merge.toml` must fail to compile, naming its layer.
// expect: sum string `from` on add (needs an array)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/string_from_on_merge.toml"]
    pub struct Invalid;
}

fn main() {}
