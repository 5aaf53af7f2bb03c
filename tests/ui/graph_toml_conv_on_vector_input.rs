// `tests/cases_invalid/conv_on_vector_input.toml` must fail to compile, naming its layer.
// expect: c conv on a vector input [16]
// (trybuild builds this file in target/tests/trybuild/cnn/, hence the ../../../../)
cnn::cnn_model! {
    #[file = "../../../../tests/cases_invalid/conv_on_vector_input.toml"]
    pub struct Invalid;
}

fn main() {}
