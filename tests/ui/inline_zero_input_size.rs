// Inline counterpart: input height 0
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 0, 28],
        flatten,
        linear(10),
    }
}

fn main() {}
