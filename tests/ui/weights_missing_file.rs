// A `#[weights = ..]` path that does not exist.
cnn::cnn_model! {
    #[weights = "no/such/weights.safetensors"]
    pub struct Tiny {
        input: [1, 4, 4],
        flatten,
        fc: linear(2),
    }
}

fn main() {}
