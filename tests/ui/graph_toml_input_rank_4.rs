// `tests/cases_invalid/input_rank_4.toml` must fail to compile, naming its layer.
// expect: input input of rank 4 [1, 3, 8, 8] (rank 1, 2 or 3)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/input_rank_4.toml"]
    pub struct Invalid;
}

fn main() {}
