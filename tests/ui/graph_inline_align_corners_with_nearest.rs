// Inline: align_corners with mode nearest.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        up: upsample(scale = 2, align_corners = false),
    }
}

fn main() {}
