// Inline counterpart: count_include_pad is avg_pool-only
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        c: conv(4, kernel = 3),
        relu,
        max_pool(2, padding = 1, count_include_pad = false),
    }
}

fn main() {}
