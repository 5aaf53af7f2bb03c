// Inline: `from` naming a later layer.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        a: conv(4, kernel = 3, padding = 1, from = b),
        b: conv(4, kernel = 3, padding = 1),
    }
}

fn main() {}
