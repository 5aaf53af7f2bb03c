// `tests/cases_invalid/linear_mode_on_2d.toml` must fail to compile, naming its layer.
// expect: up mode linear on a [C, H, W] input (2-D takes bilinear)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/linear_mode_on_2d.toml"]
    pub struct Invalid;
}

fn main() {}
