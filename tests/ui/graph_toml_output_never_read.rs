// `tests/cases_invalid/output_never_read.toml` must fail to compile, naming its layer.
// expect: side the output of `side` is read by no layer (the next layer reads `main` by from)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/output_never_read.toml"]
    pub struct Invalid;
}

fn main() {}
