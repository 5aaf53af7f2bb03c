// A `#[weights = ..]` path that does not exist. (Absolute, so that the path the message
// resolves it to does not depend on where trybuild's package, under the target
// directory, is.)
cnn::cnn_model! {
    #[weights = "/no/such/weights.safetensors"]
    pub struct Tiny {
        input: [1, 4, 4],
        flatten,
        fc: linear(2),
    }
}

fn main() {}
