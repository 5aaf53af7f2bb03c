//! Seeded weights, bit-identical to `tools/seeded.py` (pure std).
//!
//! The torchvision test models (`tests/torchvision/`) commit only their rank-1 tensors
//! (biases, batch-norm parameters and statistics); every tensor of rank >= 2 (conv,
//! conv_transpose and linear weights) is regenerated here from the case's seed:
//!
//! 1. `state = seed ^ fnv1a64(key)` (FNV-1a 64 of the UTF-8 key, e.g. `layer1.0.conv1.weight`);
//! 2. per value, in row-major order, splitmix64: `state += 0x9E3779B97F4A7C15`, mix, and
//!    `u = (z >> 40) as f32 / 2^23 - 1.0` (exact, in [-1, 1));
//! 3. `value = sqrt(3.0 / fan_in) * u` in f32, `fan_in = product of shape[1..]`.
//!
//! Test vectors shared with Python: `tests/torchvision/seeded_vectors.json`.

#![allow(dead_code)]

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 outputs for tensor `key`, `n` of them.
pub fn seeded_u64(seed: u64, key: &str, n: usize) -> Vec<u64> {
    let mut state = seed ^ fnv1a64(key.as_bytes());
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

/// The seeded tensor `key` of `shape` (row-major, f32).
pub fn seeded_tensor(seed: u64, key: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in: usize = shape.iter().skip(1).product();
    let scale = (3.0f32 / fan_in as f32).sqrt();
    seeded_u64(seed, key, n)
        .into_iter()
        .map(|z| scale * ((z >> 40) as f32 / (1u64 << 23) as f32 - 1.0))
        .collect()
}
