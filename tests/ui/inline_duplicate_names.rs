// Inline counterpart: duplicate layer names
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 12, 12],
        conv1: conv(4, kernel = 3),
        relu,
        conv1: conv(4, kernel = 3),
    }
}

fn main() {}
