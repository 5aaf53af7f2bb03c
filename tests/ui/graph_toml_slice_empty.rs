// `tests/cases_invalid/slice_empty.toml` must fail to compile, naming its layer.
// expect: s slice start = 3, end = 3 (nothing kept)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/slice_empty.toml"]
    pub struct Invalid;
}

fn main() {}
