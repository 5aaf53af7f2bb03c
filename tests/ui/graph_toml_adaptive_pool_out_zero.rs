// `tests/cases_invalid/adaptive_pool_out_zero.toml` must fail to compile, naming its layer.
// expect: pool adaptive_avg_pool out = 0
cnn::cnn_model! {
    #[file = "tests/cases_invalid/adaptive_pool_out_zero.toml"]
    pub struct Invalid;
}

fn main() {}
