// Inline counterpart: linear on a [C, H, W] tensor
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        conv: conv(4, kernel = 3),
        relu,
        fc: linear(10),
    }
}

fn main() {}
