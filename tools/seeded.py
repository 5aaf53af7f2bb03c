#!/usr/bin/env python3
"""Seeded weights that Rust can regenerate bit for bit (``tests/support/seeded.rs``).

The torchvision test models (``tests/torchvision/``) are too big to commit, so every
tensor of rank >= 2 (conv, conv_transpose and linear weights) is generated from a seed,
and only the small rank-1 tensors are stored. The algorithm, for a tensor with key ``k``
(its state_dict name, e.g. ``layer1.0.conv1.weight``) and shape ``s``, all integers
``u64`` with wrapping arithmetic, all floats IEEE ``f32`` with round-to-nearest:

1. ``state = seed XOR fnv1a64(utf-8 bytes of k)``; FNV-1a 64: ``h = 0xcbf29ce484222325``,
   for each byte ``h = (h XOR byte) * 0x100000001b3``;
2. for each value ``i`` in row-major order (splitmix64):
   ``state += 0x9E3779B97F4A7C15; z = state;``
   ``z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;``
   ``z ^= z >> 31;``
   ``u = f32(z >> 40) / f32(2^23) - 1.0``  (exact: a multiple of 2^-23 in [-1, 1));
3. ``value = f32(sqrt(f32(3.0) / f32(fan_in))) * u`` with ``fan_in = prod(s[1:])`` (also
   for conv_transpose's ``[in, out/groups, kh, kw]``; 1 for a rank-1 shape), i.e. uniform
   with variance ``1 / fan_in``.

``python tools/seeded.py`` prints the test vectors (``tests/torchvision/seeded_vectors.json``
is written by ``tools/gen_torchvision_cases.py``).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Sequence

import numpy as np

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MASK = (1 << 64) - 1


def fnv1a64(key: str) -> int:
    h = FNV_OFFSET
    for b in key.encode("utf-8"):
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def seeded_u64(seed: int, key: str, n: int) -> np.ndarray:
    """The ``n`` splitmix64 outputs of tensor ``key`` (uint64)."""
    base = np.uint64((seed ^ fnv1a64(key)) & MASK)
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = base + i * np.uint64(GOLDEN)                  # wrapping
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        z = z ^ (z >> np.uint64(31))
    return z


def seeded_uniform(seed: int, key: str, n: int) -> np.ndarray:
    """``u`` in [-1, 1), float32, exactly as in the module docstring."""
    z = seeded_u64(seed, key, n)
    return (z >> np.uint64(40)).astype(np.float32) / np.float32(2 ** 23) - np.float32(1.0)


def fan_in(shape: Sequence[int]) -> int:
    return int(math.prod(shape[1:]))


def seeded_tensor(seed: int, key: str, shape: Sequence[int]) -> np.ndarray:
    """The seeded tensor (float32, ``shape``)."""
    n = int(math.prod(shape))
    scale = np.sqrt(np.float32(3.0) / np.float32(fan_in(shape)), dtype=np.float32)
    u = seeded_uniform(seed, key, n)
    out = (np.float32(scale) * u).astype(np.float32)
    assert out.dtype == np.float32
    return out.reshape(tuple(shape))


#: (seed, key, shape) of the shared test vectors.
VECTOR_CASES = [
    (0, "", [4, 1]),
    (0, "conv1.weight", [64, 3, 7, 7]),
    (1, "conv1.weight", [64, 3, 7, 7]),
    (20240607, "layer1.0.conv1.weight", [64, 64, 3, 3]),
    (20240607, "fc.weight", [1000, 512]),
    (7, "features.1.conv.0.0.weight", [32, 1, 3, 3]),
    (0xFFFFFFFFFFFFFFFF, "deconv.weight", [8, 4, 4]),
    (42, "é/ü-key", [3, 5]),
]


def test_vectors(n_first: int = 8) -> dict:
    out = {
        "algorithm": "tools/seeded.py (doc), tests/support/seeded.rs",
        "note": ("first_bits/last_bits: f32 bit patterns of the first 8 and the last value; "
                 "first: the same as decimals; first_u64: the first 3 splitmix64 outputs; "
                 "sum: f64 sum of all values (order-dependent in the last bits: compare "
                 "with a 1e-9 tolerance); seed is also given as 16 hex digits (seed_hex) "
                 "for JSON readers without u64 support"),
        "vectors": [],
    }
    for seed, key, shape in VECTOR_CASES:
        t = seeded_tensor(seed, key, shape).reshape(-1)
        out["vectors"].append({
            "seed": seed, "seed_hex": f"{seed:016x}", "key": key, "shape": shape,
            "fnv1a64": f"{fnv1a64(key):016x}",
            "first_u64": [f"{int(v):016x}" for v in seeded_u64(seed, key, 3)],
            # float32 values as their exact bit patterns and as decimal
            "first_bits": [f"{int(b):08x}" for b in t[:n_first].view(np.uint32)],
            "first": [float(v) for v in t[:n_first]],
            "last_bits": f"{int(t[-1:].view(np.uint32)[0]):08x}",
            "sum": float(t.astype(np.float64).sum()),
        })
    return out


def _self_test() -> None:
    # Scalar reference implementation (pure Python ints) against the vectorised one.
    for seed, key, shape in VECTOR_CASES:
        n = min(50, math.prod(shape))
        st = (seed ^ fnv1a64(key)) & MASK
        ref = []
        for _ in range(n):
            st = (st + GOLDEN) & MASK
            z = st
            z = ((z ^ (z >> 30)) * MIX1) & MASK
            z = ((z ^ (z >> 27)) * MIX2) & MASK
            z ^= z >> 31
            ref.append(z)
        assert [int(v) for v in seeded_u64(seed, key, n)] == ref, key
        u = seeded_uniform(seed, key, n)
        assert all(-1.0 <= float(v) < 1.0 for v in u)
        assert all(float(a) == (r >> 40) / 2 ** 23 - 1 for a, r in zip(u, ref))
    assert fnv1a64("") == FNV_OFFSET
    assert fnv1a64("a") == 0xAF63DC4C8601EC8C   # published FNV-1a 64 test vector


if __name__ == "__main__":
    _self_test()
    json.dump(test_vectors(), sys.stdout, indent=1, ensure_ascii=False)
    print()
