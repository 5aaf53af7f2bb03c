// Inline counterpart: a malformed layer
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 8, 8],
        c: conv(4, kernel = ),
    }
}

fn main() {}
