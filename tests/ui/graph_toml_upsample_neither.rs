// `tests/cases_invalid/upsample_neither.toml` must fail to compile, naming its layer.
// expect: up upsample with neither scale nor size
cnn::cnn_model! {
    #[file = "tests/cases_invalid/upsample_neither.toml"]
    pub struct Invalid;
}

fn main() {}
