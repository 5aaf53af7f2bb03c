// Inline counterpart: padding same with stride 2
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 16, 16],
        down: conv(8, kernel = 3, stride = 2, padding = same),
    }
}

fn main() {}
