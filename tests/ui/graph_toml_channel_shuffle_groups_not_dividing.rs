// `tests/cases_invalid/channel_shuffle_groups_not_dividing.toml` must fail to compile, naming its layer.
// expect: sh channel_shuffle groups = 4 of 6 channels
cnn::cnn_model! {
    #[file = "tests/cases_invalid/channel_shuffle_groups_not_dividing.toml"]
    pub struct Invalid;
}

fn main() {}
