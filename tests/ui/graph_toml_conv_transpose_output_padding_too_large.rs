// `tests/cases_invalid/conv_transpose_output_padding_too_large.toml` must fail to compile, naming its layer.
// expect: up output_padding 2 not < stride 2 nor < dilation 1
cnn::cnn_model! {
    #[file = "tests/cases_invalid/conv_transpose_output_padding_too_large.toml"]
    pub struct Invalid;
}

fn main() {}
