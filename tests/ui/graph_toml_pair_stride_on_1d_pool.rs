// `tests/cases_invalid/pair_stride_on_1d_pool.toml` must fail to compile, naming its layer.
// expect: p stride [2, 2] (a pair) on a 1-D max_pool
cnn::cnn_model! {
    #[file = "tests/cases_invalid/pair_stride_on_1d_pool.toml"]
    pub struct Invalid;
}

fn main() {}
