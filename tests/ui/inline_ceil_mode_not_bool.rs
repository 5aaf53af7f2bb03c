// Inline counterpart: ceil_mode = 3 is not a boolean
cnn::cnn_model! {
    pub struct Invalid {
        input: [2, 9, 9],
        c: conv(4, kernel = 3),
        pool: max_pool(2, ceil_mode = 3),
    }
}

fn main() {}
