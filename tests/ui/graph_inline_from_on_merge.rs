// Inline: inline, `add` takes positional operands, not `from =`.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        a: conv(4, kernel = 3, padding = 1),
        b: conv(4, kernel = 3, padding = 1),
        add(from = a),
    }
}

fn main() {}
