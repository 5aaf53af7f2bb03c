// `tests/cases_invalid/concat_spatial_mismatch.toml` must fail to compile, naming its layer.
// expect: cat concat of [4,8,8] and [4,4,4] (spatial sizes differ)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/concat_spatial_mismatch.toml"]
    pub struct Invalid;
}

fn main() {}
