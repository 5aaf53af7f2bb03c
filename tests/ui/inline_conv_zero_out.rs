// Inline counterpart: conv with out = 0
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        c1: conv(0, kernel = 3),
    }
}

fn main() {}
