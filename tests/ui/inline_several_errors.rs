// Inline counterpart: independent errors are all reported in one compile
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 8, 8],
        a: conv(0, kernel = 3),
        b: max_pool(2, ceil_mode = 3),
        c: batch_norm(eps = 0),
        d: dropout(p = 1.5),
    }
}

fn main() {}
