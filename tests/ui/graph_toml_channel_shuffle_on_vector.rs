// `tests/cases_invalid/channel_shuffle_on_vector.toml` must fail to compile, naming its layer.
// expect: sh channel_shuffle of the vector [6]
cnn::cnn_model! {
    #[file = "tests/cases_invalid/channel_shuffle_on_vector.toml"]
    pub struct Invalid;
}

fn main() {}
