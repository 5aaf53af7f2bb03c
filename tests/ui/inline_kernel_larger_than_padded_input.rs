// Inline counterpart: kernel larger than the padded input
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 9, 9],
        c1: conv(2, kernel = 5),
        c2: conv(2, kernel = 8, padding = 1),
    }
}

fn main() {}
