// Inline counterpart: pools shrink the map to 0x0
cnn::cnn_model! {
    pub struct Invalid {
        input: [1, 8, 8],
        p1: max_pool(2),
        p2: max_pool(2),
        p3: max_pool(2),
        p4: max_pool(2),
        flatten,
    }
}

fn main() {}
