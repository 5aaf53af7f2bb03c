// `tests/cases_invalid/upsample_scale_and_size.toml` must fail to compile, naming its layer.
// expect: up upsample with both scale and size
cnn::cnn_model! {
    #[file = "tests/cases_invalid/upsample_scale_and_size.toml"]
    pub struct Invalid;
}

fn main() {}
