"""Shared helpers for the Python side of `cnn`.

* MNIST IDX reading and the exact LeNet-5 preprocessing that the Rust example replicates
  (:func:`read_idx`, :func:`mnist_to_lenet_input`, :data:`PREPROCESSING`).
* The model description format of ``MODEL_FORMAT.md`` (§1-§8: graphs, the §7 ops, the
  channel ops ``slice`` and ``channel_shuffle``, 1-D and vector inputs) read from TOML,
  checked with the spec's own shape arithmetic (:func:`infer_layers`) and turned into an
  equivalent PyTorch module (:func:`build_model`) whose ``state_dict()`` keys are exactly
  the weight names the Rust side expects, dotted names included; :func:`build_sequential`
  keeps the original ``nn.Sequential`` builder for §1-§5 descriptions.

Only numpy, torch and the standard library (``tomllib``, Python >= 3.11) are needed.
"""

from __future__ import annotations

import copy
import difflib
import gzip
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
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
    "build_model",
    "GraphModel",
    "Layer",
    "infer_layers",
    "layer_table",
    "check_shapes_with_torch",
    "check_upsample_against_torch",
    "SpecUpsample",
    "ShapeCheckError",
    "SEQUENTIAL_OPS",
    "MERGE_OPS",
    "NAME_RE",
    "LAYER_NAME_RE",
    "SEGMENT_RE",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "ChannelSlice",
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
# Model description (MODEL_FORMAT.md §1-§8)
# ---------------------------------------------------------------------------------------

#: Arguments each op accepts (besides ``name``, ``op`` and ``from``), MODEL_FORMAT.md §2, §6, §7.
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
    # §7
    "adaptive_avg_pool": ("out",),
    "adaptive_max_pool": ("out",),
    "silu": (),
    "hardswish": (),
    "hardsigmoid": (),
    "gelu": (),
    "identity": (),
    "upsample": ("scale", "size", "mode", "align_corners"),
    "conv_transpose": ("out", "kernel", "stride", "padding", "output_padding", "dilation",
                       "groups", "bias"),
    # §6 (operands in `from`)
    "add": (),
    "mul": (),
    "concat": (),
    # channel ranges and channel shuffles (ShuffleNet)
    "slice": ("start", "end"),
    "channel_shuffle": ("groups",),
}

#: The ops of MODEL_FORMAT.md §2 (what :func:`build_sequential` accepts).
SEQUENTIAL_OPS = frozenset(list(OP_ARGS)[:15])
#: Ops that combine tensors (§6): ``from`` is a non-empty array of names.
MERGE_OPS = frozenset({"add", "mul", "concat"})
#: Element-wise ops without arguments or with scalar ones (any rank).
ELEMENTWISE_OPS = frozenset({"relu", "relu6", "tanh", "sigmoid", "leaky_relu", "silu",
                             "hardswish", "hardsigmoid", "gelu", "identity", "dropout"})

_REQUIRED = {"conv": ("out", "kernel"), "linear": ("out",), "max_pool": ("kernel",),
             "avg_pool": ("kernel",), "conv_transpose": ("out", "kernel"),
             "adaptive_avg_pool": ("out",), "adaptive_max_pool": ("out",),
             "add": ("from",), "mul": ("from",), "concat": ("from",),
             "slice": ("start", "end"), "channel_shuffle": ("groups",)}

#: One name segment (§2).
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: A layer name: one or more segments joined by ``.`` (§2).
LAYER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
#: The original (sequential) name rule, kept for tools/export.py: letters, digits, ``_``.
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


class DescriptionError(ValueError):
    """A model description that does not follow MODEL_FORMAT.md."""


class ShapeCheckError(AssertionError):
    """The spec's shape arithmetic and PyTorch's disagree (a bug here or in PyTorch)."""


class GlobalAvgPool2d(nn.Module):
    """``global_avg_pool``: ``[N, C, H, W] -> [N, C]`` (mean over H and W); 1-D too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())))


class GlobalMaxPool2d(nn.Module):
    """``global_max_pool``: ``[N, C, H, W] -> [N, C]`` (max over H and W); 1-D too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=tuple(range(2, x.dim())))


class ChannelSlice(nn.Module):
    """``slice``: channels ``start..end`` (end exclusive) of ``[N, C, ...]`` (features of a
    ``[N, F]`` batch of vectors)."""

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start = int(start)
        self.end = int(end)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.end]

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}"


class SpecUpsample(nn.Module):
    """``upsample`` computed exactly as MODEL_FORMAT.md §7 words it (batched input).

    Per spatial axis, separably: nearest takes ``floor(dst*in/out)`` in integer arithmetic;
    (bi)linear samples at ``max(0, (dst+0.5)*in/out - 0.5)`` or, with ``align_corners``,
    ``dst*(in-1)/(out-1)`` (0 when ``out == 1``), upper neighbour clamped to ``in-1``.
    The coordinates are computed in float64. :class:`torch.nn.Upsample` is the same up to
    rounding (checked by :func:`check_upsample_against_torch`).
    """

    def __init__(self, out_size: Sequence[int], mode: str, align_corners: bool):
        super().__init__()
        self.out_size = tuple(int(v) for v in out_size)
        self.mode = mode
        self.align_corners = bool(align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis, out in enumerate(self.out_size, start=2):
            x = self._axis(x, axis, x.shape[axis], out)
        return x

    def _axis(self, x: torch.Tensor, axis: int, n_in: int, n_out: int) -> torch.Tensor:
        if self.mode == "nearest":
            idx = torch.tensor([(d * n_in) // n_out for d in range(n_out)], dtype=torch.long)
            return x.index_select(axis, idx)
        lo, hi, lam = [], [], []
        for d in range(n_out):
            if self.align_corners:
                src = 0.0 if n_out == 1 else d * (n_in - 1) / (n_out - 1)
            else:
                src = max(0.0, (d + 0.5) * n_in / n_out - 0.5)
            i0 = min(int(math.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            lo.append(i0)
            hi.append(i1)
            lam.append(src - i0)
        shape = [1] * x.dim()
        shape[axis] = n_out
        w = torch.tensor(lam, dtype=torch.float64).to(x.dtype).reshape(shape)
        a = x.index_select(axis, torch.tensor(lo, dtype=torch.long))
        b = x.index_select(axis, torch.tensor(hi, dtype=torch.long))
        return a * (1 - w) + b * w


@dataclass
class Layer:
    """One layer of a checked description."""

    index: int
    name: str            # resolved name (the index as a string when unnamed)
    op: str
    args: dict[str, Any]  # the op's arguments as written (no name/op/from)
    inputs: list[str]    # names of the tensors it reads, in operand order
    explicit_from: bool  # `from` was written
    named: bool          # `name` was written
    output_shape: tuple[int, ...] = ()
    params: int = 0
    macs: int = 0


def load_description(path: str | Path) -> dict[str, Any]:
    """Read a model TOML file and check its structure with :func:`parse_description`."""
    import tomllib

    with open(path, "rb") as f:
        desc = tomllib.load(f)
    return parse_description(desc, source=str(path))


def parse_description(desc: dict[str, Any], source: str = "<description>") -> dict[str, Any]:
    """Check the structure of a parsed description (keys, ops, arguments, names, `from`).

    Shapes are not checked here (:func:`infer_layers` does). Returns ``desc`` unchanged.
    """
    _parse(desc, source)
    return desc


def layer_names(layers: Sequence[dict[str, Any]]) -> list[str]:
    """Resolved layer names: ``name`` if given, else the 0-based index as a string."""
    return [str(layer["name"]) if "name" in layer else str(i) for i, layer in enumerate(layers)]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse(desc: Any, source: str) -> list[Layer]:
    if not isinstance(desc, dict):
        raise DescriptionError(f"{source}: a description is a table, got {type(desc).__name__}")
    unknown = set(desc) - {"input", "layers"}
    if unknown:
        raise DescriptionError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    if "input" not in desc:
        raise DescriptionError(f"{source}: layer 'input': missing `input`")
    inp = desc["input"]
    if (not isinstance(inp, list) or not 1 <= len(inp) <= 3
            or not all(_is_int(v) and v >= 1 for v in inp)):
        raise DescriptionError(f"{source}: layer 'input': `input` must be [C, H, W], [C, L] or "
                               f"[N] of positive integers (rank 1 to 3), got {inp!r}")
    raw = desc.get("layers")
    if not isinstance(raw, list) or not raw:
        raise DescriptionError(f"{source}: needs at least one [[layers]] table")
    names = layer_names(raw)
    index_of: dict[str, int] = {}
    layers: list[Layer] = []
    for i, (layer, name) in enumerate(zip(raw, names)):
        where = f"{source}: layer {name!r} (index {i})"
        if not isinstance(layer, dict):
            raise DescriptionError(f"{where}: a layer is a table")
        op = layer.get("op")
        if op not in OP_ARGS:
            raise DescriptionError(f"{where}: unknown op {op!r}")
        if "name" in layer and (not isinstance(layer["name"], str) or not LAYER_NAME_RE.match(name)):
            raise DescriptionError(f"{where}: invalid name (segments of ASCII letters, digits, "
                                   "_ or - joined by .)")
        if name == "input":
            raise DescriptionError(f"{where}: the name `input` is reserved")
        extra = set(layer) - {"name", "op", "from"} - set(OP_ARGS[op])
        if extra:
            raise DescriptionError(f"{where}: unknown argument(s) {sorted(extra)} for {op}")
        for req in _REQUIRED.get(op, ()):
            if req not in layer:
                raise DescriptionError(f"{where}: missing required argument `{req}`")
        if name in index_of:
            raise DescriptionError(f"{where}: duplicate name {name!r} (also layer index "
                                   f"{index_of[name]})")
        prev = "input" if i == 0 else names[i - 1]
        if op in MERGE_OPS:
            refs = layer["from"]
            if not isinstance(refs, list):
                raise DescriptionError(f"{where}: `from` on {op} must be an array of names, "
                                       f"got {refs!r}")
            if not refs:
                raise DescriptionError(f"{where}: {op} needs at least one operand "
                                       "(`from` is empty)")
            if not all(isinstance(r, str) for r in refs):
                raise DescriptionError(f"{where}: `from` names must be strings, got {refs!r}")
            inputs = [prev] + list(refs) if len(refs) == 1 else list(refs)
        elif "from" in layer:
            ref = layer["from"]
            if not isinstance(ref, str):
                raise DescriptionError(f"{where}: `from` on the single-input op {op} must be "
                                       f"one name (a string), got {ref!r}")
            inputs = [ref]
        else:
            inputs = [prev]
        for r in inputs:
            if r == "input" or r in index_of:
                continue
            if r == name:
                raise DescriptionError(f"{where}: `from` names the layer itself ({r!r})")
            if r in names:
                raise DescriptionError(f"{where}: `from` names the later layer {r!r} (index "
                                       f"{names.index(r)}); only earlier layers or `input`")
            close = difflib.get_close_matches(r, ["input"] + names[:i], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DescriptionError(f"{where}: `from` names no layer: {r!r}{hint}")
        index_of[name] = i
        args = {k: v for k, v in layer.items() if k not in ("name", "op", "from")}
        layers.append(Layer(i, name, op, args, inputs, "from" in layer, "name" in layer))
    read = {r for l in layers for r in l.inputs}
    for l in layers[:-1]:
        if l.name not in read:
            nxt = layers[l.index + 1]
            raise DescriptionError(
                f"{source}: layer {l.name!r} (index {l.index}): its output is never read (the "
                f"next layer {nxt.name!r} reads {', '.join(map(repr, nxt.inputs))} and no layer "
                "names it)")
    return layers


# --- shape arithmetic of the spec (independent of torch) --------------------------------


def _ints(v: Any, rank: int, what: str, allow_zero: bool = False) -> tuple[int, ...]:
    """An int or a pair for a spatial rank ``rank`` (1 or 2); 1-D takes integers only."""
    lo = 0 if allow_zero else 1
    if _is_int(v):
        vals = (int(v),) * rank
    elif isinstance(v, (list, tuple)) and all(_is_int(x) for x in v):
        if rank == 1:
            raise DescriptionError(f"{what}: a pair {list(v)} on a 1-D signal (integer only)")
        if len(v) != 2:
            raise DescriptionError(f"{what}: expected an int or [h, w], got {list(v)!r}")
        vals = tuple(int(x) for x in v)
    else:
        raise DescriptionError(f"{what}: expected an int{' or [h, w]' if rank == 2 else ''}, "
                               f"got {v!r}")
    if any(x < lo for x in vals):
        raise DescriptionError(f"{what}: must be >= {lo}, got {v!r}")
    return vals


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise DescriptionError(f"{where}: expected a boolean, got {v!r}")
    return v


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DescriptionError(f"{where}: expected a number, got {v!r}")
    return float(v)


def _window_out(n: int, k: int, s: int, p: int, d: int, ceil: bool, where: str,
                axis: str) -> int:
    span = d * (k - 1) + 1
    num = n + 2 * p - span
    if num < 0:
        raise DescriptionError(f"{where}: kernel {k} (dilated span {span}) larger than the "
                               f"padded input {n}+2*{p} = {n + 2 * p} on axis {axis}")
    if not ceil:
        return num // s + 1
    out = -(-num // s) + 1
    if (out - 1) * s >= n + p:
        out -= 1
    return out


def _spatial_axes(rank: int) -> str:
    return "HW" if rank == 3 else "L"


def infer_layers(desc: dict[str, Any], source: str = "<description>") -> list[Layer]:
    """Check a description completely (§2, §6-§8) and compute every layer's output shape,
    parameter count and MACs with the spec's arithmetic (no torch involved).

    Shapes are as `cnn` sees them (global pools give ``[C]``). Raises
    :class:`DescriptionError` naming the layer.
    """
    layers = _parse(desc, source)
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(desc["input"])}
    for l in layers:
        where = f"{source}: layer {l.name!r} (index {l.index})"
        ins = [shapes[r] for r in l.inputs]
        out, params, macs = _layer_shape(l, ins, where)
        if any(s < 1 for s in out):
            raise DescriptionError(f"{where}: output shape {list(out)} has a size < 1")
        l.output_shape, l.params, l.macs = tuple(out), params, macs
        shapes[l.name] = l.output_shape
    return layers


def _layer_shape(l: Layer, ins: list[tuple[int, ...]], where: str
                 ) -> tuple[tuple[int, ...], int, int]:
    op, a = l.op, l.args
    if op in MERGE_OPS:
        ranks = {len(s) for s in ins}
        if len(ranks) != 1:
            raise DescriptionError(f"{where}: {op} operands of different ranks: "
                                   + ", ".join(f"{r} {list(s)}" for r, s in zip(l.inputs, ins)))
        if op == "concat":
            rest = {s[1:] for s in ins}
            if len(rest) != 1:
                raise DescriptionError(f"{where}: concat operands differ beyond axis 0: "
                                       + ", ".join(f"{r} {list(s)}"
                                                   for r, s in zip(l.inputs, ins)))
            return (sum(s[0] for s in ins),) + ins[0][1:], 0, 0
        out = ins[0]
        for r, s in zip(l.inputs[1:], ins[1:]):
            if any(x != y and x != 1 and y != 1 for x, y in zip(out, s)):
                raise DescriptionError(f"{where}: {op} operands do not broadcast: "
                                       + ", ".join(f"{r} {list(s)}"
                                                   for r, s in zip(l.inputs, ins)))
            out = tuple(max(x, y) for x, y in zip(out, s))
        return out, 0, 0
    (x,) = ins
    rank = len(x)
    sp = rank - 1  # number of spatial axes

    def need_spatial():
        if rank == 1:
            raise DescriptionError(f"{where}: {op} needs a [C, H, W] or [C, L] input, got "
                                   f"the vector {list(x)}")

    if op in ELEMENTWISE_OPS:
        if op == "leaky_relu" and "slope" in a:
            _num(a["slope"], f"{where} slope")
        if op == "dropout":
            p = _num(a.get("p", 0.5), f"{where} p")
            if not 0 <= p < 1:
                raise DescriptionError(f"{where}: dropout p must be in [0, 1), got {p}")
        return x, 0, 0
    if op == "softmax":
        return x, 0, 0
    if op == "slice":
        start = _ints(a["start"], 1, f"{where} start", allow_zero=True)[0]
        end = _ints(a["end"], 1, f"{where} end")[0]
        if start >= end:
            raise DescriptionError(f"{where}: start {start} must be smaller than end {end}")
        if end > x[0]:
            raise DescriptionError(f"{where}: end {end} larger than the {x[0]} "
                                   f"{'features' if rank == 1 else 'channels'} of the input "
                                   f"{list(x)}")
        return (end - start,) + x[1:], 0, 0
    if op == "batch_norm":
        eps = _num(a.get("eps", 1e-5), f"{where} eps")
        if not eps > 0:
            raise DescriptionError(f"{where}: eps must be > 0, got {eps}")
        return x, 2 * x[0], 0
    if op == "flatten":
        return (math.prod(x),), 0, 0
    if op == "linear":
        if rank != 1:
            raise DescriptionError(f"{where}: linear needs a vector input (flatten first), got "
                                   f"{list(x)}")
        out = _ints(a["out"], 1, f"{where} out")[0]
        bias = _bool(a.get("bias", True), f"{where} bias")
        return (out,), x[0] * out + (out if bias else 0), x[0] * out
    need_spatial()
    C, S = x[0], x[1:]
    axes = _spatial_axes(rank)
    if op in ("global_avg_pool", "global_max_pool"):
        return (C,), 0, 0
    if op == "channel_shuffle":
        g = _ints(a["groups"], 1, f"{where} groups")[0]
        if C % g:
            raise DescriptionError(f"{where}: groups {g} must divide the input channels {C}")
        return x, 0, 0
    if op in ("adaptive_avg_pool", "adaptive_max_pool"):
        return (C,) + _ints(a["out"], sp, f"{where} out"), 0, 0
    if op == "conv":
        out = _ints(a["out"], 1, f"{where} out")[0]
        k = _ints(a["kernel"], sp, f"{where} kernel")
        s = _ints(a.get("stride", 1), sp, f"{where} stride")
        d = _ints(a.get("dilation", 1), sp, f"{where} dilation")
        g = _ints(a.get("groups", 1), 1, f"{where} groups")[0]
        bias = _bool(a.get("bias", True), f"{where} bias")
        pad = a.get("padding", 0)
        if C % g or out % g:
            raise DescriptionError(f"{where}: groups {g} must divide the input channels {C} "
                                   f"and the output channels {out}")
        if pad == "same":
            if any(v != 1 for v in s):
                raise DescriptionError(f"{where}: padding same needs stride 1, got {a['stride']}")
            o = S
        else:
            if isinstance(pad, str) and pad != "valid":
                raise DescriptionError(f"{where}: padding {pad!r} (an int, a pair, same or valid)")
            p = (0,) * sp if pad == "valid" else _ints(pad, sp, f"{where} padding",
                                                         allow_zero=True)
            o = tuple(_window_out(n, kk, ss, pp, dd, False, where, ax)
                      for n, kk, ss, pp, dd, ax in zip(S, k, s, p, d, axes))
        kprod = math.prod(k)
        params = out * (C // g) * kprod + (out if bias else 0)
        return (out,) + tuple(o), params, out * math.prod(o) * (C // g) * kprod
    if op == "conv_transpose":
        out = _ints(a["out"], 1, f"{where} out")[0]
        k = _ints(a["kernel"], sp, f"{where} kernel")
        s = _ints(a.get("stride", 1), sp, f"{where} stride")
        d = _ints(a.get("dilation", 1), sp, f"{where} dilation")
        p = _ints(a.get("padding", 0), sp, f"{where} padding", allow_zero=True)
        op_ = _ints(a.get("output_padding", 0), sp, f"{where} output_padding", allow_zero=True)
        g = _ints(a.get("groups", 1), 1, f"{where} groups")[0]
        bias = _bool(a.get("bias", True), f"{where} bias")
        if C % g or out % g:
            raise DescriptionError(f"{where}: groups {g} must divide the input channels {C} "
                                   f"and the output channels {out}")
        for ax, oo, ss, dd in zip(axes, op_, s, d):
            if not (oo < ss or oo < dd):
                raise DescriptionError(f"{where}: output_padding {oo} on axis {ax} must be "
                                       f"smaller than the stride {ss} or the dilation {dd}")
        o = tuple((n - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1
                  for n, kk, ss, pp, dd, oo in zip(S, k, s, p, d, op_))
        if any(v < 1 for v in o):
            raise DescriptionError(f"{where}: output size {list(o)} < 1 for input "
                                   f"{list(S)} (H' = (H-1)*stride - 2*padding + "
                                   "dilation*(kernel-1) + output_padding + 1)")
        kprod = math.prod(k)
        params = C * (out // g) * kprod + (out if bias else 0)
        return (out,) + o, params, C * math.prod(S) * (out // g) * kprod
    if op in ("max_pool", "avg_pool"):
        k = _ints(a["kernel"], sp, f"{where} kernel")
        s = _ints(a.get("stride", a["kernel"]), sp, f"{where} stride")
        p = _ints(a.get("padding", 0), sp, f"{where} padding", allow_zero=True)
        d = _ints(a.get("dilation", 1), sp, f"{where} dilation")
        ceil = _bool(a.get("ceil_mode", False), f"{where} ceil_mode")
        if "count_include_pad" in a:
            _bool(a["count_include_pad"], f"{where} count_include_pad")
        for kk, pp in zip(k, p):
            if pp > kk // 2:
                raise DescriptionError(f"{where}: padding {pp} larger than half the kernel {kk}")
        o = tuple(_window_out(n, kk, ss, pp, dd, ceil, where, ax)
                  for n, kk, ss, pp, dd, ax in zip(S, k, s, p, d, axes))
        return (C,) + o, 0, 0
    if op == "upsample":
        has_scale, has_size = "scale" in a, "size" in a
        if has_scale == has_size:
            raise DescriptionError(f"{where}: upsample needs exactly one of `scale` and `size` "
                                   f"({'both' if has_scale else 'neither'} given)")
        mode = a.get("mode", "nearest")
        allowed = ("nearest", "bilinear") if rank == 3 else ("nearest", "linear")
        if mode not in allowed:
            raise DescriptionError(f"{where}: mode {mode!r} on a {'[C, H, W]' if rank == 3 else '[C, L]'} "
                                   f"input (allowed: {', '.join(allowed)})")
        if "align_corners" in a:
            _bool(a["align_corners"], f"{where} align_corners")
            if mode == "nearest":
                raise DescriptionError(f"{where}: align_corners with mode nearest")
        if has_scale:
            sc = _ints(a["scale"], sp, f"{where} scale")
            return (C,) + tuple(n * v for n, v in zip(S, sc)), 0, 0
        return (C,) + _ints(a["size"], sp, f"{where} size"), 0, 0
    raise DescriptionError(f"{where}: unknown op {op!r}")


# --- torch modules ------------------------------------------------------------------------


def _torch_module(l: Layer, in_shape: tuple[int, ...], torch_upsample: bool
                  ) -> nn.Module | None:
    """The torch module of a single-input layer, given its input shape (no batch axis)."""
    op, a = l.op, l.args
    rank = len(in_shape)
    sp = max(rank - 1, 1)
    one_d = rank == 2

    def t(v, allow_zero=False):
        vals = _ints(v, sp, l.name, allow_zero)
        return vals[0] if one_d else vals

    if op == "conv":
        pad = a.get("padding", 0)
        pad = pad if isinstance(pad, str) else t(pad, True)
        cls = nn.Conv1d if one_d else nn.Conv2d
        return cls(in_shape[0], int(a["out"]), t(a["kernel"]), stride=t(a.get("stride", 1)),
                   padding=pad, dilation=t(a.get("dilation", 1)), groups=int(a.get("groups", 1)),
                   bias=bool(a.get("bias", True)))
    if op == "conv_transpose":
        cls = nn.ConvTranspose1d if one_d else nn.ConvTranspose2d
        return cls(in_shape[0], int(a["out"]), t(a["kernel"]), stride=t(a.get("stride", 1)),
                   padding=t(a.get("padding", 0), True),
                   output_padding=t(a.get("output_padding", 0), True),
                   groups=int(a.get("groups", 1)), bias=bool(a.get("bias", True)),
                   dilation=t(a.get("dilation", 1)))
    if op == "max_pool":
        cls = nn.MaxPool1d if one_d else nn.MaxPool2d
        return cls(t(a["kernel"]), stride=t(a.get("stride", a["kernel"])),
                   padding=t(a.get("padding", 0), True), dilation=t(a.get("dilation", 1)),
                   ceil_mode=bool(a.get("ceil_mode", False)))
    if op == "avg_pool":
        cls = nn.AvgPool1d if one_d else nn.AvgPool2d
        return cls(t(a["kernel"]), stride=t(a.get("stride", a["kernel"])),
                   padding=t(a.get("padding", 0), True),
                   ceil_mode=bool(a.get("ceil_mode", False)),
                   count_include_pad=bool(a.get("count_include_pad", True)))
    if op == "adaptive_avg_pool":
        return (nn.AdaptiveAvgPool1d if one_d else nn.AdaptiveAvgPool2d)(t(a["out"]))
    if op == "adaptive_max_pool":
        return (nn.AdaptiveMaxPool1d if one_d else nn.AdaptiveMaxPool2d)(t(a["out"]))
    if op == "global_avg_pool":
        return GlobalAvgPool2d()
    if op == "global_max_pool":
        return GlobalMaxPool2d()
    if op == "flatten":
        return nn.Flatten()
    if op == "slice":
        return ChannelSlice(a["start"], a["end"])
    if op == "channel_shuffle":
        return nn.ChannelShuffle(int(a["groups"]))
    if op == "linear":
        return nn.Linear(in_shape[0], int(a["out"]), bias=bool(a.get("bias", True)))
    if op == "batch_norm":
        return (nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d)(
            in_shape[0], eps=float(a.get("eps", 1e-5)))
    if op == "upsample":
        mode = a.get("mode", "nearest")
        ac = bool(a.get("align_corners", False))
        if not torch_upsample:
            return SpecUpsample(l.output_shape[1:], mode, ac)
        kw = {} if mode == "nearest" else {"align_corners": ac}
        if "scale" in a:
            sc = _ints(a["scale"], sp, l.name)
            return nn.Upsample(scale_factor=tuple(float(v) for v in sc), mode=mode, **kw)
        return nn.Upsample(size=tuple(l.output_shape[1:]), mode=mode, **kw)
    simple = {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
              "silu": nn.SiLU, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid,
              "identity": nn.Identity}
    if op in simple:
        return simple[op]()
    if op == "gelu":
        return nn.GELU(approximate="none")
    if op == "leaky_relu":
        return nn.LeakyReLU(float(a.get("slope", 0.01)))
    if op == "softmax":
        return nn.Softmax(dim=1)
    if op == "dropout":
        return nn.Dropout(float(a.get("p", 0.5)))
    raise DescriptionError(f"layer {l.name!r}: no torch module for op {op!r}")


def _merge(op: str, xs: list[torch.Tensor]) -> torch.Tensor:
    if op == "concat":
        return torch.cat(xs, dim=1)
    y = xs[0]
    for x in xs[1:]:
        y = y + x if op == "add" else y * x
    return y


class GraphModel(nn.Module):
    """The PyTorch module of a MODEL_FORMAT.md description (§1-§8), built by
    :func:`build_model`.

    Layers with weights are registered as nested submodules along their dotted names
    (``layer1.0.conv1`` is ``self.layer1[“0”].conv1``), so ``state_dict()`` keys are exactly
    the weight names of §3/§7. Parameter-free layers are kept outside the module tree.
    ``forward`` takes a batch ``[n, *input]`` and returns ``[n, *output]`` with `cnn`'s
    shapes (global pools give ``[n, C]``).
    """

    def __init__(self, layers: list[Layer], input_shape: tuple[int, ...],
                 torch_upsample: bool = False):
        super().__init__()
        self.layers = layers
        self.input_shape = tuple(input_shape)
        self._fns: list[nn.Module | None] = []
        shapes = {"input": self.input_shape}
        for l in layers:
            m = None
            if l.op not in MERGE_OPS:
                m = _torch_module(l, shapes[l.inputs[0]], torch_upsample)
            self._fns.append(m)
            if m is not None and (any(True for _ in m.parameters()) or any(
                    True for _ in m.buffers())):
                self._register(l.name, m)
            shapes[l.name] = l.output_shape

    def _register(self, name: str, module: nn.Module) -> None:
        node: nn.Module = self
        segs = name.split(".")
        for seg in segs[:-1]:
            nxt = node._modules.get(seg)
            if nxt is None:
                nxt = nn.Module()
                node._modules[seg] = nxt  # bypasses add_module's attribute-name checks
            node = nxt
        old = node._modules.get(segs[-1])
        if old is not None:  # a placeholder container made for a longer name: adopt children
            for k, v in old._modules.items():
                module._modules[k] = v
        node._modules[segs[-1]] = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {"input": x}
        for l, m in zip(self.layers, self._fns):
            xs = [env[r] for r in l.inputs]
            env[l.name] = _merge(l.op, xs) if m is None else m(xs[0])
        return env[self.layers[-1].name]

    def layer_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every tensor of the graph for the batch ``x`` (``input`` included)."""
        env = {"input": x}
        for l, m in zip(self.layers, self._fns):
            xs = [env[r] for r in l.inputs]
            env[l.name] = _merge(l.op, xs) if m is None else m(xs[0])
        return env

    def train(self, mode: bool = True):  # keep the parameter-free modules in the same mode
        super().train(mode)
        for m in self._fns:
            if m is not None:
                m.train(mode)
        return self



def build_model(desc: dict[str, Any] | str | Path, source: str | None = None, *,
                torch_upsample: bool = False, check: bool = True) -> GraphModel:
    """Build the PyTorch module equivalent to a description (any of §1-§8).

    ``desc`` is a parsed description dict or a path to a TOML file. The description is
    checked with :func:`infer_layers` (spec arithmetic); with ``check`` (default) the built
    model is also run on zeros and every tensor's shape compared with the spec's, raising
    :class:`ShapeCheckError` if torch disagrees. ``upsample`` uses :class:`SpecUpsample`
    unless ``torch_upsample`` (then ``torch.nn.Upsample``). Parameters have torch's default
    initialisation; the model is in training mode (call ``.eval()``). ``model.layers`` lists
    the :class:`Layer` records (output shapes, params, MACs).
    """
    if not isinstance(desc, dict):
        source = source or str(desc)
        import tomllib

        with open(desc, "rb") as f:
            desc = tomllib.load(f)
    source = source or "<description>"
    layers = infer_layers(desc, source)
    model = GraphModel(layers, tuple(desc["input"]), torch_upsample)
    if check:
        check_shapes_with_torch(model, source)
    return model


def check_shapes_with_torch(model: GraphModel, source: str = "<description>") -> None:
    """Run ``model`` (eval mode, float64, batch 2) and compare every layer's output shape
    with the spec's arithmetic; also runs PyTorch's own argument checks."""
    was_training = model.training
    model.eval()
    try:
        env = {"input": torch.zeros((2,) + model.input_shape, dtype=torch.float64)}
        for l, m in zip(model.layers, model._fns):
            where = f"{source}: layer {l.name!r} (index {l.index})"
            xs = [env[r] for r in l.inputs]
            try:
                with torch.no_grad():
                    if m is None:
                        y = _merge(l.op, xs)
                    else:
                        y = copy.deepcopy(m).double()(xs[0])
            except Exception as e:
                raise ShapeCheckError(f"{where}: accepted by the spec arithmetic but torch "
                                      f"fails: {e}") from e
            if tuple(y.shape[1:]) != l.output_shape:
                raise ShapeCheckError(f"{where}: spec shape {list(l.output_shape)}, torch "
                                      f"shape {list(y.shape[1:])}")
            env[l.name] = y
    finally:
        model.train(was_training)


def layer_table(model_or_layers: GraphModel | list[Layer]) -> list[dict[str, Any]]:
    """Per-layer ``name``, ``op``, ``output_shape``, ``params`` (the case.json format)."""
    layers = model_or_layers.layers if isinstance(model_or_layers, GraphModel) else \
        model_or_layers
    return [{"name": l.name, "op": l.op, "output_shape": list(l.output_shape),
             "params": l.params} for l in layers]


def build_sequential(desc: dict[str, Any] | str | Path, source: str | None = None
                     ) -> tuple[nn.Sequential, list[tuple[str, str, tuple[int, ...]]]]:
    """Build the ``nn.Sequential`` equivalent to a §1-§5 (sequential) description.

    Only the original language: a ``[C, H, W]`` input, the ops of §2 (:data:`SEQUENTIAL_OPS`)
    with softmax on vectors only, no ``from`` and undotted names (``nn.Sequential`` cannot
    hold a dotted child name); anything else raises :class:`DescriptionError` (use
    :func:`build_model`). Children are named with the resolved layer names, so
    ``state_dict()`` keys are the weight names. Global pools use :class:`GlobalAvgPool2d` /
    :class:`GlobalMaxPool2d`.

    Returns ``(model, shapes)`` with ``(name, op, output_shape)`` per layer (no batch
    axis). Parameters have torch's default initialisation; the model is in training mode.
    """
    if not isinstance(desc, dict):
        source = source or str(desc)
        import tomllib

        with open(desc, "rb") as f:
            desc = tomllib.load(f)
    source = source or "<description>"
    layers = _parse(desc, source)
    if len(desc["input"]) != 3:
        raise DescriptionError(f"{source}: layer 'input': build_sequential needs [C, H, W], got "
                               f"{desc['input']!r} (use build_model)")
    for l in layers:
        where = f"{source}: layer {l.name!r} (index {l.index})"
        if l.op not in SEQUENTIAL_OPS:
            raise DescriptionError(f"{where}: op {l.op} is not sequential §2 (use build_model)")
        if l.explicit_from:
            raise DescriptionError(f"{where}: `from` is not sequential (use build_model)")
        if "." in l.name:
            raise DescriptionError(f"{where}: dotted names need build_model")
    layers = infer_layers(desc, source)
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(desc["input"])}
    for l in layers:
        if l.op == "softmax" and len(shapes[l.inputs[0]]) != 1:
            raise DescriptionError(f"{source}: layer {l.name!r} (index {l.index}): softmax needs "
                                   f"a vector in the sequential language, got "
                                   f"{list(shapes[l.inputs[0]])} (use build_model)")
        shapes[l.name] = l.output_shape
    model = GraphModel(layers, tuple(desc["input"]))
    check_shapes_with_torch(model, source)
    children: "OrderedDict[str, nn.Module]" = OrderedDict(
        (l.name, m) for l, m in zip(layers, model._fns))
    return nn.Sequential(children), [(l.name, l.op, l.output_shape) for l in layers]


def check_upsample_against_torch(desc: dict[str, Any], x: torch.Tensor) -> float:
    """Max |difference| between the model with :class:`SpecUpsample` and with
    ``torch.nn.Upsample`` (same weights, eval mode, float64) on the batch ``x``."""
    a = build_model(desc).double().eval()
    b = build_model(desc, torch_upsample=True).double().eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        return float((a(x.double()) - b(x.double())).abs().max())


def count_params(model: nn.Module) -> int:
    """Number of learnable values, as ``sum(p.numel() for p in model.parameters())``."""
    return sum(p.numel() for p in model.parameters())
