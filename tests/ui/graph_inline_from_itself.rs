// Inline: a layer reading itself.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        a: conv(4, kernel = 3, padding = 1),
        b: relu(from = b),
    }
}

fn main() {}
