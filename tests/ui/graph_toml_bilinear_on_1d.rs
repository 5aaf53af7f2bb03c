// `tests/cases_invalid/bilinear_on_1d.toml` must fail to compile, naming its layer.
// expect: up mode bilinear on a [C, L] input (1-D takes linear)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/bilinear_on_1d.toml"]
    pub struct Invalid;
}

fn main() {}
