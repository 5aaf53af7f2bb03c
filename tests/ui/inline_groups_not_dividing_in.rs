// Inline counterpart: groups does not divide the input channels
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        g: conv(4, kernel = 3, groups = 2),
    }
}

fn main() {}
