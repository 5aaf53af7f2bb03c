// Inline: a dotted reference with a typo.
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        layer1.0.conv1: conv(4, kernel = 3, padding = 1),
        layer1.0.bn1: batch_norm,
        "block-1.relu": relu,
        layer1.0.conv2: conv(4, kernel = 3, padding = 1),
        add(layer1.0.conv),
    }
}

fn main() {}
