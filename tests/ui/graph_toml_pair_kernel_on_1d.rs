// `tests/cases_invalid/pair_kernel_on_1d.toml` must fail to compile, naming its layer.
// expect: c kernel [3, 3] (a pair) on a [C, L] input
cnn::cnn_model! {
    #[file = "tests/cases_invalid/pair_kernel_on_1d.toml"]
    pub struct Invalid;
}

fn main() {}
