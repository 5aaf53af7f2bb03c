// `tests/cases_invalid/slice_beyond_channels.toml` must fail to compile, naming its layer.
// expect: s slice end = 9 of a [6, 4, 4] tensor
cnn::cnn_model! {
    #[file = "tests/cases_invalid/slice_beyond_channels.toml"]
    pub struct Invalid;
}

fn main() {}
