// `tests/cases_invalid/concat_rank_mismatch.toml` must fail to compile, naming its layer.
// expect: cat concat of [4,6,6] and the vector [4] (ranks differ)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/concat_rank_mismatch.toml"]
    pub struct Invalid;
}

fn main() {}
