// `tests/cases_invalid/conv_on_vector_input.toml` must fail to compile, naming its layer.
// expect: c conv on a vector input [16]
cnn::cnn_model! {
    #[file = "tests/cases_invalid/conv_on_vector_input.toml"]
    pub struct Invalid;
}

fn main() {}
