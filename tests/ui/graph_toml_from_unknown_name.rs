// `tests/cases_invalid/from_unknown_name.toml` must fail to compile, naming its layer.
// expect: c2 `from` names no layer: "bn_1" (closest: bn1)
cnn::cnn_model! {
    #[file = "tests/cases_invalid/from_unknown_name.toml"]
    pub struct Invalid;
}

fn main() {}
