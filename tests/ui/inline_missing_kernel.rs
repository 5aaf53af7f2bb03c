// Inline counterpart: conv without kernel
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 8, 8],
        c: conv(4),
    }
}

fn main() {}
