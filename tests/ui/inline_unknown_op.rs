// Inline counterpart: unknown op
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 8, 8],
        c1: conv2d(4, kernel = 3),
    }
}

fn main() {}
