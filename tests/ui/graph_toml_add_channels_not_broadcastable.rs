// `tests/cases_invalid/add_channels_not_broadcastable.toml` must fail to compile, naming its layer.
// expect: 2 add of [4,6,6] and [3,6,6] (channels 4 vs 3)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/add_channels_not_broadcastable.toml"]
    pub struct Invalid;
}

fn main() {}
