// Inline counterpart: misspelt argument
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 12, 12],
        c1: conv(4, kernel = 3),
        c2: conv(4, kernel = 3, strides = 2),
    }
}

fn main() {}
