// Inline: `from` naming no layer: a typo of `conv1`.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        conv1: conv(4, kernel = 3, padding = 1),
        relu,
        conv2: conv(4, kernel = 3, padding = 1, from = conv11),
        add(conv1),
    }
}

fn main() {}
