// `tests/cases_invalid/add_not_broadcastable.toml` must fail to compile, naming its layer.
// expect: sum add of [4,8,8] and [4,4,4] (8 vs 4, neither is 1)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/add_not_broadcastable.toml"]
    pub struct Invalid;
}

fn main() {}
