// Inline: a branch whose output nothing reads.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        a: conv(4, kernel = 3, padding = 1),
        side: conv(4, kernel = 1),
        b: conv(4, kernel = 3, padding = 1, from = a),
        relu,
    }
}

fn main() {}
