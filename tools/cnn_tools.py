"""Shared helpers for the Python side of `cnn`.

* MNIST IDX reading and the exact LeNet-5 preprocessing that the Rust example replicates
  (:func:`read_idx`, :func:`mnist_to_lenet_input`, :data:`PREPROCESSING`).
* The model description format of ``MODEL_FORMAT.md`` read from TOML and turned into the
  equivalent ``torch.nn.Sequential`` (:func:`load_description`, :func:`build_sequential`),
  whose ``state_dict()`` keys are exactly the weight names the Rust side expects.

Only numpy, torch and the standard library (``tomllib``, Python >= 3.11) are needed.
"""

from __future__ import annotations

import gzip
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "PREPROCESSING",
    "read_idx",
    "mnist_to_lenet_input",
    "OP_ARGS",
    "DescriptionError",
    "load_description",
    "parse_description",
    "layer_names",
    "build_sequential",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "count_params",
]

# ---------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------

#: Normalisation constants, as float32 (the computation below is done in float32).
MNIST_MEAN = np.float32(0.1307)
MNIST_STD = np.float32(0.3081)

#: Human-readable statement of the preprocessing; also stored in torch_reference.json.
PREPROCESSING = (
    "Read the IDX u8 28x28 image; place it in a 32x32 u8 image at rows/cols 2..29 "
    "(2-pixel border of u8 zeros on every side); then for every one of the 32x32 pixels, "
    "in IEEE float32 with round-to-nearest at each step: "
    "x = ((float32)u8 / 255.0f - 0.1307f) / 0.3081f "
    "(a division by 255, a subtraction and a division, no fused multiply-add, no "
    "reciprocal multiplication). The border pixels therefore are (0 - 0.1307f)/0.3081f, "
    "not 0. Input tensor layout [1, 32, 32] (C, H, W), row-major."
)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of its element type.

    Supports the u8 IDX type (0x08) used by MNIST: big-endian magic ``00 00 08 nd``,
    then ``nd`` big-endian u32 dimensions, then the row-major data.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4]!r})")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX element type 0x{raw[2]:02x} unsupported (only u8)")
    nd = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", nd, 4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} data bytes, dims {dims} need {np.prod(dims)}")
    return data.reshape(dims)


def mnist_to_lenet_input(images: np.ndarray) -> np.ndarray:
    """Turn u8 MNIST images ``[N, 28, 28]`` into LeNet-5 inputs ``[N, 1, 32, 32]`` float32.

    Exactly :data:`PREPROCESSING`: zero-pad the *u8* image by 2 pixels on every side, then
    ``((float32)u8 / 255 - 0.1307) / 0.3081`` evaluated step by step in float32.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected u8 [N, 28, 28], got {images.dtype} {images.shape}")
    padded = np.zeros((images.shape[0], 1, 32, 32), dtype=np.uint8)
    padded[:, 0, 2:30, 2:30] = images
    x = padded.astype(np.float32)
    x = x / np.float32(255.0)
    x = x - MNIST_MEAN
    x = x / MNIST_STD
    assert x.dtype == np.float32
    return x


# ---------------------------------------------------------------------------------------
# Model description (MODEL_FORMAT.md)
# ---------------------------------------------------------------------------------------

#: Arguments each op accepts (besides ``name`` and ``op``), from MODEL_FORMAT.md §2.
OP_ARGS: dict[str, tuple[str, ...]] = {
    "conv": ("out", "kernel", "stride", "padding", "dilation", "groups", "bias"),
    "max_pool": ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    "avg_pool": ("kernel", "stride", "padding", "ceil_mode", "count_include_pad"),
    "global_avg_pool": (),
    "global_max_pool": (),
    "flatten": (),
    "linear": ("out", "bias"),
    "batch_norm": ("eps",),
    "relu": (),
    "relu6": (),
    "tanh": (),
    "sigmoid": (),
    "leaky_relu": ("slope",),
    "softmax": (),
    "dropout": ("p",),
}

_REQUIRED = {"conv": ("out", "kernel"), "linear": ("out",), "max_pool": ("kernel",),
             "avg_pool": ("kernel",)}

NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


class DescriptionError(ValueError):
    """A model description that does not follow MODEL_FORMAT.md."""


class GlobalAvgPool2d(nn.Module):
    """``global_avg_pool``: ``[N, C, H, W] -> [N, C]`` (mean over H and W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GlobalMaxPool2d(nn.Module):
    """``global_max_pool``: ``[N, C, H, W] -> [N, C]`` (max over H and W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


def load_description(path: str | Path) -> dict[str, Any]:
    """Read a model TOML file and check it with :func:`parse_description`."""
    import tomllib

    with open(path, "rb") as f:
        desc = tomllib.load(f)
    return parse_description(desc, source=str(path))


def parse_description(desc: dict[str, Any], source: str = "<description>") -> dict[str, Any]:
    """Check the structure of a parsed description (keys, ops, arguments, names).

    Shapes are not checked here; :func:`build_sequential` checks them by running torch.
    Returns ``desc`` unchanged.
    """
    unknown = set(desc) - {"input", "layers"}
    if unknown:
        raise DescriptionError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    if "input" not in desc:
        raise DescriptionError(f"{source}: missing `input`")
    inp = desc["input"]
    if (not isinstance(inp, list) or len(inp) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in inp)):
        raise DescriptionError(f"{source}: `input` must be [C, H, W] of positive ints, got {inp!r}")
    layers = desc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise DescriptionError(f"{source}: needs at least one [[layers]] table")
    names = layer_names(layers)
    seen: set[str] = set()
    for i, (layer, name) in enumerate(zip(layers, names)):
        where = f"{source}: layer {name!r} (index {i})"
        op = layer.get("op")
        if op not in OP_ARGS:
            raise DescriptionError(f"{where}: unknown op {op!r}")
        extra = set(layer) - {"name", "op"} - set(OP_ARGS[op])
        if extra:
            raise DescriptionError(f"{where}: unknown argument(s) {sorted(extra)} for {op}")
        for req in _REQUIRED.get(op, ()):
            if req not in layer:
                raise DescriptionError(f"{where}: missing required argument `{req}`")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise DescriptionError(f"{where}: invalid name (ASCII letters, digits, _ only)")
        if name in seen:
            raise DescriptionError(f"{where}: duplicate name {name!r}")
        seen.add(name)
    return desc


def layer_names(layers: Sequence[dict[str, Any]]) -> list[str]:
    """Resolved layer names: ``name`` if given, else the 0-based index as a string."""
    return [str(layer["name"]) if "name" in layer else str(i) for i, layer in enumerate(layers)]


def _pair(v: Any, what: str) -> tuple[int, int]:
    if isinstance(v, bool):
        raise DescriptionError(f"{what}: expected an int or [h, w], got {v!r}")
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in v):
        return (int(v[0]), int(v[1]))
    raise DescriptionError(f"{what}: expected an int or [h, w], got {v!r}")


def _layer_module(layer: dict[str, Any], shape: tuple[int, ...], where: str) -> nn.Module:
    """The torch module for one layer given its input shape (without batch)."""
    op = layer["op"]
    spatial = len(shape) == 3

    def need_spatial():
        if not spatial:
            raise DescriptionError(f"{where}: {op} needs a [C, H, W] input, got {list(shape)}")

    def need_vector():
        if spatial:
            raise DescriptionError(f"{where}: {op} needs a vector input, got {list(shape)}")

    if op == "conv":
        need_spatial()
        padding = layer.get("padding", 0)
        if not isinstance(padding, str):
            padding = _pair(padding, f"{where} padding")
        elif padding not in ("same", "valid"):
            raise DescriptionError(f"{where}: padding {padding!r}")
        return nn.Conv2d(
            shape[0], int(layer["out"]), _pair(layer["kernel"], f"{where} kernel"),
            stride=_pair(layer.get("stride", 1), f"{where} stride"), padding=padding,
            dilation=_pair(layer.get("dilation", 1), f"{where} dilation"),
            groups=int(layer.get("groups", 1)), bias=bool(layer.get("bias", True)))
    if op == "max_pool":
        need_spatial()
        k = _pair(layer["kernel"], f"{where} kernel")
        return nn.MaxPool2d(k, stride=_pair(layer.get("stride", k), f"{where} stride"),
                            padding=_pair(layer.get("padding", 0), f"{where} padding"),
                            dilation=_pair(layer.get("dilation", 1), f"{where} dilation"),
                            ceil_mode=_bool(layer.get("ceil_mode", False), where))
    if op == "avg_pool":
        need_spatial()
        k = _pair(layer["kernel"], f"{where} kernel")
        return nn.AvgPool2d(k, stride=_pair(layer.get("stride", k), f"{where} stride"),
                            padding=_pair(layer.get("padding", 0), f"{where} padding"),
                            ceil_mode=_bool(layer.get("ceil_mode", False), where),
                            count_include_pad=_bool(layer.get("count_include_pad", True), where))
    if op == "global_avg_pool":
        need_spatial()
        return GlobalAvgPool2d()
    if op == "global_max_pool":
        need_spatial()
        return GlobalMaxPool2d()
    if op == "flatten":
        return nn.Flatten()
    if op == "linear":
        need_vector()
        return nn.Linear(shape[0], int(layer["out"]), bias=bool(layer.get("bias", True)))
    if op == "batch_norm":
        eps = float(layer.get("eps", 1e-5))
        if not eps > 0:
            raise DescriptionError(f"{where}: eps must be > 0, got {eps}")
        return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(shape[0], eps=eps)
    if op == "relu":
        return nn.ReLU()
    if op == "relu6":
        return nn.ReLU6()
    if op == "tanh":
        return nn.Tanh()
    if op == "sigmoid":
        return nn.Sigmoid()
    if op == "leaky_relu":
        return nn.LeakyReLU(float(layer.get("slope", 0.01)))
    if op == "softmax":
        need_vector()
        return nn.Softmax(dim=1)
    if op == "dropout":
        p = float(layer.get("p", 0.5))
        if not 0 <= p < 1:
            raise DescriptionError(f"{where}: dropout p must be in [0, 1), got {p}")
        return nn.Dropout(p)
    raise DescriptionError(f"{where}: unknown op {op!r}")


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise DescriptionError(f"{where}: expected a boolean, got {v!r}")
    return v


def build_sequential(desc: dict[str, Any] | str | Path, source: str | None = None
                     ) -> tuple[nn.Sequential, list[tuple[str, str, tuple[int, ...]]]]:
    """Build the ``nn.Sequential`` equivalent to a description.

    ``desc`` is a parsed description dict or a path to a TOML file. Children are named with
    the resolved layer names, so ``state_dict()`` keys are the MODEL_FORMAT.md weight names
    (``conv1.weight``, ``3.running_mean``, ...). Global pools use :class:`GlobalAvgPool2d` /
    :class:`GlobalMaxPool2d` (``[N,C,H,W] -> [N,C]``).

    Returns ``(model, shapes)`` where ``shapes`` lists ``(name, op, output_shape)`` per
    layer (without the batch dimension). Parameters have torch's default initialisation;
    the model is in training mode like any fresh module (call ``.eval()`` for inference).
    """
    if not isinstance(desc, dict):
        source = source or str(desc)
        desc = load_description(desc)
    else:
        desc = parse_description(desc, source or "<description>")
    source = source or "<description>"
    shape: tuple[int, ...] = tuple(desc["input"])
    children: "OrderedDict[str, nn.Module]" = OrderedDict()
    shapes = []
    names = layer_names(desc["layers"])
    for i, (layer, name) in enumerate(zip(desc["layers"], names)):
        where = f"{source}: layer {name!r} (index {i})"
        try:
            module = _layer_module(layer, shape, where)
        except (ValueError, TypeError, RuntimeError) as e:  # torch's own argument checks
            if isinstance(e, DescriptionError):
                raise
            raise DescriptionError(f"{where}: invalid for input {list(shape)}: {e}") from e
        module.eval()
        try:
            with torch.no_grad():
                out = module(torch.zeros((2,) + shape))
        except Exception as e:  # shape errors from torch
            raise DescriptionError(f"{where}: invalid for input {list(shape)}: {e}") from e
        shape = tuple(out.shape[1:])
        if any(s < 1 for s in shape):
            raise DescriptionError(f"{where}: output shape {list(shape)} has a zero size")
        children[name] = module
        shapes.append((name, layer["op"], shape))
    return nn.Sequential(children), shapes


def count_params(model: nn.Module) -> int:
    """Number of learnable values, as ``sum(p.numel() for p in model.parameters())``."""
    return sum(p.numel() for p in model.parameters())
