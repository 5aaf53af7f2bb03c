#!/usr/bin/env python3
"""Seed files for the fuzz targets (standard library only).

    python3 fuzz/make_seeds.py OUT_DIR

writes OUT_DIR/front_end/ (every TOML description in the repository) and
OUT_DIR/load_weights/ (safetensors files for fuzz/model.toml: valid ones in every dtype
the loader converts, and truncated or hostile variants of them).
"""
import json
import pathlib
import shutil
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# fuzz/model.toml's weights, as its `WEIGHTS` lists them.
SPECS = {
    "conv.weight": [4, 1, 3, 3],
    "conv.bias": [4],
    "bn.weight": [4],
    "bn.bias": [4],
    "bn.running_mean": [4],
    "bn.running_var": [4],
    "fc.weight": [3, 36],
    "fc.bias": [3],
}
SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "U8": 1}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F64":
        return struct.pack(f"<{len(values)}d", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    if dtype == "BF16":
        return b"".join(struct.pack("<f", v)[2:] for v in values)
    if dtype == "I64":
        return struct.pack(f"<{len(values)}q", *[int(v) for v in values])
    return bytes(int(v) & 0xFF for v in values)


def safetensors(tensors, metadata=None, pad=8):
    """tensors: list of (key, dtype, shape, data bytes)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for key, dtype, shape, raw in tensors:
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % pad)
    return struct.pack("<Q", len(text)) + text + data


def raw_header(text):
    return struct.pack("<Q", len(text)) + text


def tensors(dtype="F32", specs=SPECS):
    out = []
    for i, (key, shape) in enumerate(specs.items()):
        n = numel(shape)
        values = [((i * 7 + j) % 11) / 10.0 + (1.0 if key.endswith("running_var") else 0.0) for j in range(n)]
        out.append((key, dtype, shape, encode(values, dtype)))
    return out


def weight_seeds():
    valid = safetensors(tensors())
    seeds = {
        "valid_f32": valid,
        "valid_f16": safetensors(tensors("F16")),
        "valid_bf16": safetensors(tensors("BF16")),
        "valid_f64": safetensors(tensors("F64")),
        "valid_metadata": safetensors(tensors(), metadata={"format": "pt"}),
        "valid_num_batches_tracked": safetensors(tensors() + [("bn.num_batches_tracked", "I64", [], encode([3], "I64"))]),
        "mixed_dtypes": safetensors([(k, d, s, encode([0.25] * numel(s), d)) for (k, _, s, _), d in zip(tensors(), ["F32", "F16", "BF16", "F64"] * 2)]),
        "missing_key": safetensors(tensors()[:-1]),
        "extra_key": safetensors(tensors() + [("fc2.weight", "F32", [2], encode([1, 2], "F32"))]),
        "typo_key": safetensors([("conv.wieght" if k == "conv.weight" else k, d, s, r) for k, d, s, r in tensors()]),
        "wrong_shape": safetensors([(k, d, [36, 3] if k == "fc.weight" else s, r) for k, d, s, r in tensors()]),
        "wrong_dtype": safetensors([(k, "I64" if k == "bn.bias" else d, s, encode([1] * numel(s), "I64") if k == "bn.bias" else r) for k, d, s, r in tensors()]),
        "u8_dtype": safetensors([(k, "U8" if k == "fc.bias" else d, s, encode([1] * numel(s), "U8") if k == "fc.bias" else r) for k, d, s, r in tensors()]),
        "empty": b"",
        "short_length": b"\x10\x00\x00",
        "empty_header": struct.pack("<Q", 2) + b"{}",
        "huge_header_length": struct.pack("<Q", 1 << 40) + b"{}",
        "max_header_length": struct.pack("<Q", (1 << 64) - 1) + b"{}",
        "not_json": struct.pack("<Q", 8) + b"not json",
        "huge_shape": safetensors([("conv.weight", "F32", [1 << 31, 1 << 31, 1 << 20, 4], b"")]),
        "huge_offsets": raw_header(b'{"conv.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,18446744073709551615]}}'),
        "huge_number": raw_header(b'{"conv.bias":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,16]}}') + b"\0" * 16,
        "overlapping": raw_header(b'{"conv.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"bn.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}') + b"\0" * 16,
        "nan_weights": safetensors([(k, d, s, b"\xff\xff\xff\x7f" * numel(s)) for k, d, s, _ in tensors()]),
    }
    # Truncations at the length prefix, inside the header and inside the data.
    for cut in (4, 8, 20, 100, len(valid) // 2, len(valid) - 1):
        seeds[f"truncated_{cut}"] = valid[:cut]
    return seeds


def main():
    out = pathlib.Path(sys.argv[1])
    front = out / "front_end"
    front.mkdir(parents=True, exist_ok=True)
    for path in sorted(ROOT.glob("models/*.toml")) + sorted(ROOT.glob("tests/**/*.toml")) + sorted(ROOT.glob("fuzz/*.toml")):
        name = str(path.relative_to(ROOT)).replace("/", "__")
        shutil.copyfile(path, front / name)
    weights = out / "load_weights"
    weights.mkdir(parents=True, exist_ok=True)
    for name, data in weight_seeds().items():
        (weights / f"{name}.safetensors").write_bytes(data)
    print(f"{len(list(front.iterdir()))} front_end seeds, {len(list(weights.iterdir()))} load_weights seeds in {out}")


if __name__ == "__main__":
    main()
