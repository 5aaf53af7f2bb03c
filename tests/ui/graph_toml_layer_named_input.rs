// `tests/cases_invalid/layer_named_input.toml` must fail to compile, naming its layer.
// expect: input a layer named `input` (reserved)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/layer_named_input.toml"]
    pub struct Invalid;
}

fn main() {}
