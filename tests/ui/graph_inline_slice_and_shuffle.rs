// Inline: a slice beyond its input's channels and a shuffle whose groups do not divide
// them, both reported (the shape errors stop at the first layer: the slice).
cnn::cnn_model! {
    pub struct Invalid {
        input: [3, 8, 8],
        c: conv(6, kernel = 1),
        half: slice(start = 3, end = 7),
        shuffled: channel_shuffle(0, from = c),
        tail: conv(2, kernel = 1, from = half),
        sum: add(tail, shuffled),
    }
}

fn main() {}
