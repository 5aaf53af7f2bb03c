// Inline: output_padding not below stride or dilation.
cnn::cnn_model! {
    pub struct Invalid {
        input: [4, 6, 6],
        up: conv_transpose(2, kernel = 3, stride = 2, output_padding = 2),
    }
}

fn main() {}
