// `tests/cases_invalid/align_corners_with_nearest.toml` must fail to compile, naming its layer.
// expect: up align_corners with mode nearest (even false)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/align_corners_with_nearest.toml"]
    pub struct Invalid;
}

fn main() {}
