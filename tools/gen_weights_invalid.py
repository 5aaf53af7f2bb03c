#!/usr/bin/env python3
"""Writes the weight-file fixtures of tests/weights_invalid/ (no dependencies).

The model is ``tests/weights_invalid/model.toml``: ``conv1`` (conv, 2 channels, 3x3) on a
[1, 4, 4] input, relu, flatten, ``fc`` (linear, 3). Its ``state_dict()`` keys:

    conv1.weight [2, 1, 3, 3]   conv1.bias [2]   fc.weight [3, 8]   fc.bias [3]

Each file below is that state_dict with exactly one thing wrong, so the strict loader
(``#[weights = ..]`` at compile time: tests/ui/weights_*.rs; ``from_safetensors`` at run
time: tests/runtime.rs) reports exactly one problem, naming the key:

* ``ok.safetensors``: nothing wrong (the control: it loads);
* ``missing_key.safetensors``: no ``fc.bias``;
* ``extra_key.safetensors``: an extra ``conv2.weight`` [4, 2, 3, 3], a layer the model
  does not have;
* ``wrong_shape.safetensors``: ``fc.weight`` transposed, [8, 3];
* ``wrong_dtype.safetensors``: ``conv1.weight`` stored as U8 (a quantized export).

The files are safetensors written by hand (8-byte little-endian header length, JSON header
padded with spaces to a multiple of 8, then the tensors' bytes back to back), so this
needs neither ``safetensors`` nor ``numpy``. Deterministic: the values are fixed.

    python3 tools/gen_weights_invalid.py           # (re)writes tests/weights_invalid/*.safetensors
    python3 tools/gen_weights_invalid.py --check   # fails if the committed files differ
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "weights_invalid"

# (key, shape) of the model's state_dict, in PyTorch's order.
SPECS: list[tuple[str, list[int]]] = [
    ("conv1.weight", [2, 1, 3, 3]),
    ("conv1.bias", [2]),
    ("fc.weight", [3, 8]),
    ("fc.bias", [3]),
]

# A tensor: (key, dtype, shape).
Tensor = tuple[str, str, list[int]]


def numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def data(dtype: str, n: int) -> bytes:
    """n fixed values of the given dtype, little-endian: k/8 - 1 for k = 0, 1, .. (mod 16)."""
    if dtype == "F32":
        return struct.pack(f"<{n}f", *((k % 16) / 8 - 1 for k in range(n)))
    if dtype == "U8":
        return bytes(k % 16 for k in range(n))
    raise ValueError(f"unsupported dtype {dtype}")


def safetensors(tensors: list[Tensor]) -> bytes:
    header: dict[str, object] = {}
    body = b""
    for key, dtype, shape in tensors:
        chunk = data(dtype, numel(shape))
        header[key] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(body), len(body) + len(chunk)],
        }
        body += chunk
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def ok() -> list[Tensor]:
    return [(key, "F32", shape) for key, shape in SPECS]


def files() -> dict[str, bytes]:
    missing = [t for t in ok() if t[0] != "fc.bias"]
    extra = ok() + [("conv2.weight", "F32", [4, 2, 3, 3])]
    shape = [(k, d, [8, 3] if k == "fc.weight" else s) for k, d, s in ok()]
    dtype = [(k, "U8" if k == "conv1.weight" else d, s) for k, d, s in ok()]
    return {
        "ok.safetensors": safetensors(ok()),
        "missing_key.safetensors": safetensors(missing),
        "extra_key.safetensors": safetensors(extra),
        "wrong_shape.safetensors": safetensors(shape),
        "wrong_dtype.safetensors": safetensors(dtype),
    }


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] and not check:
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for name, content in files().items():
        path = OUT / name
        if check:
            if not path.is_file() or path.read_bytes() != content:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            print(f"wrote {path.relative_to(OUT.parent.parent)} ({len(content)} bytes)")
    if stale:
        print(
            f"tests/weights_invalid: {', '.join(stale)} differ from "
            "tools/gen_weights_invalid.py; run it to rewrite them",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
