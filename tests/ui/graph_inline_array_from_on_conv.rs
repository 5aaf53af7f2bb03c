// Inline: a list `from` on a single-input op.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        a: conv(4, kernel = 3, padding = 1),
        b: conv(4, kernel = 3, padding = 1, from = (a, input)),
    }
}

fn main() {}
