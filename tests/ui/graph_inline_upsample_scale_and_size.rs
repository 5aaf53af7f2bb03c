// Inline: upsample with both scale and size.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        up: upsample(scale = 2, size = 16),
    }
}

fn main() {}
