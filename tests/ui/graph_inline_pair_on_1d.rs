// Inline: a pair kernel on a [C, L] model.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 16],
        c: conv(8, kernel = (3, 3)),
    }
}

fn main() {}
