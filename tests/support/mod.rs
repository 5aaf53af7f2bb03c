//! Helpers shared by the integration tests: seeded random weights for any model.

#![allow(dead_code)]

pub mod seeded;

use cnn::Model;

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A safetensors file with every tensor `M` needs, filled with seeded values in a range
/// that keeps activations O(1) (weights scaled by 1/sqrt(fan_in), variances positive).
pub fn random_weights<M: Model>(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = M::WEIGHTS
        .iter()
        .map(|spec| {
            let n: usize = spec.shape.iter().product();
            let fan_in: usize = spec.shape.iter().skip(1).product::<usize>().max(1);
            let scale = if spec.key.ends_with("running_var") {
                0.0
            } else if spec.shape.len() > 1 {
                (3.0 / fan_in as f32).sqrt()
            } else {
                0.2
            };
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    if spec.key.ends_with("running_var") {
                        1.0 + 0.5 * rng.uniform()
                    } else {
                        scale * rng.uniform()
                    }
                })
                .collect();
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (spec.key.to_string(), spec.shape.to_vec(), bytes)
        })
        .collect();
    serialize(&tensors)
}

/// Serializes `(key, shape, f32 little-endian bytes)` triples as safetensors.
pub fn serialize(tensors: &[(String, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    serialize_typed(
        &tensors
            .iter()
            .map(|(k, s, b)| (k.clone(), safetensors::Dtype::F32, s.clone(), b.clone()))
            .collect::<Vec<_>>(),
    )
}

/// Serializes `(key, dtype, shape, bytes)` as safetensors.
pub fn serialize_typed(tensors: &[(String, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, dtype, shape, bytes)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .expect("consistent test tensor"),
            )
        })
        .collect();
    safetensors::serialize(views, None).expect("serializable")
}

/// A seeded random input for `M`.
pub fn random_input<M: Model>(seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..M::INPUT_LEN).map(|_| rng.uniform()).collect()
}
