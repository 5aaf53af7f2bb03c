// Inline: concat of [4, 8, 8] and [4, 4, 4].
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        a: conv(4, kernel = 3, padding = 1),
        b: max_pool(2),
        cat: concat(a, b),
    }
}

fn main() {}
