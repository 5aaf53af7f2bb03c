// `tests/cases_invalid/from_itself.toml` must fail to compile, naming its layer.
// expect: c2 `from` names the layer itself
// (trybuild builds this file in target/tests/trybuild/cnn/, hence the ../../../../)
cnn::cnn_model! {
    #[file = "../../../../tests/cases_invalid/from_itself.toml"]
    pub struct Invalid;
}

fn main() {}
