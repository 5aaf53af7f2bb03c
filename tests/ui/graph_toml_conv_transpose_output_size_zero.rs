// `tests/cases_invalid/conv_transpose_output_size_zero.toml` must fail to compile, naming its layer.
// expect: up output size (1-1)*1 - 2*1 + 1*(1-1) + 0 + 1 = -1 < 1
cnn::cnn_model! {
    #[file = "tests/cases_invalid/conv_transpose_output_size_zero.toml"]
    pub struct Invalid;
}

fn main() {}
