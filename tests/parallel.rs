//! The `parallel` feature: a batch split over threads gives exactly the sequential
//! results. Run with `cargo test --features parallel --test parallel`.
#![cfg(feature = "parallel")]

mod support;

use cnn::{cnn_model, Model};
use support::{random_input, random_weights};

cnn_model! {
    /// MobileNet-style depthwise-separable net.
    #[file = "models/mobilenet_96.toml"]
    pub struct MobileNet96;
}

#[test]
fn parallel_batches_equal_sequential_results() {
    let model = MobileNet96::from_safetensors(&random_weights::<MobileNet96>(1)).unwrap();
    // The reference: one image at a time, on this thread only.
    cnn::set_num_threads(1);
    for (threads, n) in [(2, 1usize), (2, 2), (2, 3), (2, 7), (3, 7), (1, 3)] {
        let inputs: Vec<f32> = (0..n as u64)
            .flat_map(|i| random_input::<MobileNet96>(100 + i))
            .collect();
        let mut outputs = vec![0.0f32; n * MobileNet96::OUTPUT_LEN];
        cnn::set_num_threads(threads);
        model.forward_batch_into(&inputs, &mut outputs).unwrap();
        cnn::set_num_threads(1);
        for i in 0..n {
            let x = &inputs[i * MobileNet96::INPUT_LEN..(i + 1) * MobileNet96::INPUT_LEN];
            let want = model.forward_flat(x).unwrap();
            assert_eq!(
                &outputs[i * MobileNet96::OUTPUT_LEN..(i + 1) * MobileNet96::OUTPUT_LEN],
                &want[..],
                "batch of {n} on {threads} threads, item {i}"
            );
        }
    }
}
