// Inline counterpart: stride 0
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 8, 8],
        c: conv(2, kernel = 3, stride = 0),
    }
}

fn main() {}
