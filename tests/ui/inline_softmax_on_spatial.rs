// Inline counterpart: softmax on a spatial tensor
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        c: conv(4, kernel = 3),
        relu,
        softmax,
    }
}

fn main() {}
