// Inline counterpart: batch_norm with eps = 0
cnn::cnn_model! {
    pub struct Invalid {
        input: [2, 4, 4],
        bn: batch_norm(eps = 0.0),
    }
}

fn main() {}
