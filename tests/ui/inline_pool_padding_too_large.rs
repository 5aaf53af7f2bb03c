// Inline counterpart: pool padding larger than half the kernel
cnn::cnn_model! {
    pub struct Invalid {
        input: [2, 8, 8],
        pool: max_pool(2, padding = 2),
    }
}

fn main() {}
