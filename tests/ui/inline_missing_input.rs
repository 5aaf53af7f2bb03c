// Inline counterpart: no input
cnn::cnn_model! {
    pub struct Invalid {
        c: conv(2, kernel = 3),
    }
}

fn main() {}
