// Inline: bilinear on a [C, L] model.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 16],
        up: upsample(scale = 2, mode = bilinear),
    }
}

fn main() {}
