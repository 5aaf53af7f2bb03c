#!/usr/bin/env python3
"""Export a PyTorch CNN to the `cnn` model description (TOML) and weights (safetensors).

The model is any ``nn.Module`` that ``torch.fx`` can trace (``nn.Sequential`` chains, and
graphs: residual additions, squeeze-and-excitation products, concatenations, functional
calls). Every fx node becomes one ``[[layers]]`` table of MODEL_FORMAT.md (§2, §6-§8), or
nothing when it is a no-op at inference (functional dropout, stochastic depth, shape
arithmetic):

* a module call is named by its module path (``layer1.0.conv1``), so the weight keys are
  exactly the model's ``state_dict()`` keys; a parameterless module called several times
  (ResNet's ``relu``) gets ``path``, ``path_1``, ``path_2``, ...;
* a function/method call (``x + y``, ``torch.cat``, ``F.relu``, ``x.mean((2, 3))``) is
  left unnamed (index-named) unless a later layer reads it out of order; then it gets its
  fx node name (``add_3``, ``cat``), or its op for ``slice``/``channel_shuffle`` (made of
  several nodes: ``x.chunk`` + ``[i]``, ``view``/``transpose``/``view``); an explicit name
  never equals an unnamed layer's index;
* ``from`` is written only where a layer does not read the previous layer; ``add``/``mul``
  whose one operand is the previous layer use the one-name form ``from = ["other"]``.

Supported (anything else is listed, all at once, in one :class:`UnsupportedLayerError`):

=============================================  ============================================
PyTorch                                        TOML op
=============================================  ============================================
``nn.Conv1d``/``Conv2d`` (padding_mode zeros)  ``conv``
``nn.ConvTranspose1d``/``2d``                  ``conv_transpose`` (no ``output_size`` arg)
``nn.MaxPool1d/2d``, ``F.max_pool1d/2d``       ``max_pool``
``nn.AvgPool1d/2d``, ``F.avg_pool1d/2d``       ``avg_pool`` (no divisor_override)
``nn.AdaptiveAvg/MaxPool1d/2d``, ``F.``        output 1 read only by a flatten (or the
``adaptive_avg/max_pool1d/2d``                 model's output): ``global_avg/max_pool``;
                                               another size dividing the input: a fixed
                                               pool; else ``adaptive_avg/max_pool``
``x.mean((2, 3))`` / ``mean([2,3])`` (``-1``)  ``global_avg_pool`` (``keepdim=True``:
                                               ``adaptive_avg_pool`` 1), ``amax``: max
``nn.Flatten``, ``torch.flatten(x, 1)``,       ``flatten``
``x.flatten(1)``, ``x.view(x.size(0), -1)``
``nn.Linear``                                  ``linear`` (vector input)
``nn.BatchNorm1d``/``2d``                      ``batch_norm`` (affine, running stats)
``nn.ReLU``/``ReLU6``/``Tanh``/``Sigmoid``/    ``relu``, ``relu6``, ``tanh``, ``sigmoid``,
``SiLU``/``Hardswish``/``Hardsigmoid``/        ``silu``, ``hardswish``, ``hardsigmoid``,
``GELU('none')``/``LeakyReLU``, and the        ``gelu``, ``leaky_relu``
``F.``/``torch.``/method forms
``nn.Softmax(dim=1)``, ``F.softmax(x, 1)``     ``softmax`` (over channels/features)
``nn.Upsample``, ``F.interpolate``             ``upsample`` (nearest, (bi)linear)
``nn.Identity``                                ``identity``
``nn.Dropout*``                                ``dropout`` (``F.dropout`` at eval, torch-
                                               vision's ``StochasticDepth``: no layer)
``a + b``, ``+=``, ``torch.add`` (tensors)     ``add``
``a * b``, ``torch.mul`` (tensors)             ``mul`` (broadcasting ``[C,1,1]*[C,H,W]``)
``torch.cat(xs, 1)``                           ``concat``
``x.chunk(n, 1)``, ``x.split(s, 1)``,          ``slice`` per piece read (``start``,
``torch.tensor_split(x, s, 1)`` + ``[i]``,     ``end``; the whole range: no layer);
``x.narrow(1, a, n)``, ``x[:, a:b]`` (step 1)  other axes are rejected
``nn.ChannelShuffle``, ``F.channel_shuffle``,  ``channel_shuffle`` (``groups``), one
torchvision's ``x.view(b, g, c // g, h, w)``   layer for the whole chain (sizes may
-> ``transpose(1, 2)`` (or ``permute``) ->     come from ``x.size()``)
``.contiguous()`` -> ``.view(b, c, h, w)``
(or reshape, flatten(1, 2); 1-D too)
=============================================  ============================================

By default :func:`export` verifies the result: it rebuilds the model from the written
description (``cnn_tools.build_model`` when the helper module has it, otherwise this
module's own reference interpreter of the format), loads the written weights strictly and
checks that it computes the same as the given model in float64
(:class:`ExportVerificationError` otherwise).

Python use::

    from export import export
    export(model, (3, 64, 64), "models/mynet.toml", "mynet.safetensors", name="mynet")

Command line (the factory is called without arguments, or is a module object)::

    python tools/export.py mypkg.nets:make_net --input 3 32 32 --out out/mynet \\
        [--state-dict trained.pt] [--name mynet] [--reference 3]

writes ``out/mynet/model.toml`` and ``out/mynet/weights.safetensors`` (and, with
``--reference N``, ``data.safetensors`` + ``case.json``: N seeded random inputs and the
float64 torch outputs, the format of the conformance cases).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import itertools
import json
import math
import operator
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn_tools  # noqa: E402

__all__ = [
    "ExportError",
    "UnsupportedLayerError",
    "NestedContainerError",
    "ExportVerificationError",
    "SUPPORTED_LAYERS",
    "ExportResult",
    "describe",
    "description_to_toml",
    "run_description",
    "export",
    "export_case",
    "reference_data",
    "flatten_sequential",
]

#: Names of the supported PyTorch module types (for error messages and docs).
SUPPORTED_LAYERS = (
    "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d",
    "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "Flatten", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU", "ReLU6",
    "Tanh", "Sigmoid", "LeakyReLU", "SiLU", "Hardswish", "Hardsigmoid", "GELU", "Softmax",
    "Upsample", "Identity", "Dropout", "Dropout1d", "Dropout2d", "ChannelShuffle",
    "StochasticDepth", "GlobalAvgPool2d", "GlobalMaxPool2d",
)
_SUPPORTED_TEXT = (", ".join(f"nn.{n}" for n in SUPPORTED_LAYERS[:-3])
                   + " (and torchvision's StochasticDepth, cnn_tools.GlobalAvgPool2d/"
                     "GlobalMaxPool2d; add/mul/cat and functional forms as fx nodes)")

#: A layer name: dot-separated segments of ASCII letters, digits, '_' or '-'.
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class ExportError(Exception):
    """The model cannot be exported as a `cnn` description."""


class UnsupportedLayerError(ExportError):
    """Nodes of the model have a type or a setting that `cnn` does not support.

    ``nodes`` lists every offending node as a dict (``node``, ``op``, ``target``,
    ``module`` path or None, ``type``, ``reason``); ``layer_name``/``layer_type`` are the
    first one's module path (or node name) and type.
    """

    def __init__(self, name: str, module: nn.Module | None = None, reason: str | None = None,
                 nodes: list[dict[str, Any]] | None = None):
        if nodes is None:
            nodes = [{"node": name, "op": "call_module", "target": name, "module": name,
                      "type": type(module).__name__ if module is not None else "?",
                      "reason": reason}]
        for n in nodes:
            if n.get("reason") is None:
                n["reason"] = (f"layer type {n['type']} is not supported; supported layers: "
                               f"{_SUPPORTED_TEXT}")
        self.nodes = nodes
        self.layer_name = nodes[0]["module"] or nodes[0]["node"]
        self.layer_type = nodes[0]["type"]
        lines = [_describe_node(n) for n in nodes]
        if len(lines) == 1:
            msg = lines[0]
        else:
            msg = f"{len(lines)} unsupported nodes:\n" + "\n".join(f"  - {l}" for l in lines)
        super().__init__(msg)


def _describe_node(n: dict[str, Any]) -> str:
    where = f"node {n['node']!r} ({n['op']} {n['target']}"
    if n.get("module") is not None:
        where += f", module {n['module']!r} ({n['type']})"
    elif n.get("type"):
        where += f", {n['type']}"
    return f"{where}): {n['reason']}"


class NestedContainerError(UnsupportedLayerError):
    """Kept for compatibility: nested containers are exported since the fx exporter."""


class ExportVerificationError(ExportError):
    """The exported description does not compute what the PyTorch model computes."""


@dataclass
class ExportResult:
    """What :func:`export` produced."""

    name: str | None
    description: dict[str, Any]          # {"input": [...], "layers": [...]} as in the TOML
    toml: str                            # the TOML text
    tensors: dict[str, torch.Tensor]     # the weights as written
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]        # as `cnn` sees it (a global pool gives [C])
    params: int                          # learnable values (torch parameters())
    macs: int                            # conv/conv_transpose/linear multiply-accumulates
    layers: list[dict[str, Any]] = field(default_factory=list)  # name, op, output_shape, params
    dropped_keys: list[str] = field(default_factory=list)  # state_dict keys no layer uses


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------

def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return v  # type: ignore[return-value]


def _compact(p: tuple[int, int]) -> int | list[int]:
    """A pair as the TOML value: one integer when both are equal, else ``[h, w]``."""
    return p[0] if p[0] == p[1] else [p[0], p[1]]


def _tup(v: Any, nd: int) -> tuple[int, ...]:
    """An int or a sequence as an ``nd``-tuple of ints."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (int(v),) * nd
    v = tuple(int(x) for x in v)
    if len(v) == 1:
        return v * nd
    if len(v) != nd:
        raise _Unsupported(f"expected {nd} value(s), got {list(v)}")
    return v


def _val(t: tuple[int, ...]) -> int | list[int]:
    """A TOML size value for 1-D (an int) or 2-D (an int or [h, w])."""
    return t[0] if len(t) == 1 or len(set(t)) == 1 else list(t)


def _is_flatten(m: nn.Module | None) -> bool:
    return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1


class _Unsupported(Exception):
    """Internal: one node cannot be exported (collected into UnsupportedLayerError)."""


def _finite(what: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise _Unsupported(f"{what} = {value} is not finite")
    return value


def _need(cond: bool, reason: str) -> None:
    if not cond:
        raise _Unsupported(reason)


def _need_channel_axis(dim: Any, rank: int) -> None:
    """``dim`` must be the channel/feature axis of a (batched) rank-``rank`` tensor: 1 or
    ``1 - rank``."""
    _need(isinstance(dim, int) and dim % rank == 1,
          f"dim={dim}: only the channel/feature axis (dim=1) is supported")


# Function signatures (positional order) of the functional forms we map.
_SIG: dict[Any, tuple[tuple[str, Any], ...]] = {}
_REQ = object()


def _sig(fns: Sequence[Any], *params: tuple[str, Any]) -> None:
    for f in fns:
        _SIG[f] = params


_ACT = (("input", _REQ), ("inplace", False))
_sig([F.relu, F.relu6, F.silu, F.hardswish, F.hardsigmoid, torch.relu, torch.relu_,
      F.sigmoid, F.tanh, torch.sigmoid, torch.tanh], *_ACT)
_sig([F.leaky_relu], ("input", _REQ), ("negative_slope", 0.01), ("inplace", False))
_sig([F.gelu], ("input", _REQ), ("approximate", "none"))
_sig([F.softmax, torch.softmax], ("input", _REQ), ("dim", None), ("_stacklevel", 3),
     ("dtype", None))
_sig([F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout], ("input", _REQ), ("p", 0.5),
     ("training", True), ("inplace", False))
_sig([F.max_pool1d, F.max_pool2d], ("input", _REQ), ("kernel_size", _REQ), ("stride", None),
     ("padding", 0), ("dilation", 1), ("ceil_mode", False), ("return_indices", False))
_sig([F.avg_pool1d], ("input", _REQ), ("kernel_size", _REQ), ("stride", None),
     ("padding", 0), ("ceil_mode", False), ("count_include_pad", True))
_sig([F.avg_pool2d], ("input", _REQ), ("kernel_size", _REQ), ("stride", None),
     ("padding", 0), ("ceil_mode", False), ("count_include_pad", True),
     ("divisor_override", None))
_sig([F.adaptive_avg_pool1d, F.adaptive_avg_pool2d], ("input", _REQ), ("output_size", _REQ))
_sig([F.adaptive_max_pool1d, F.adaptive_max_pool2d], ("input", _REQ), ("output_size", _REQ),
     ("return_indices", False))
_sig([F.interpolate], ("input", _REQ), ("size", None), ("scale_factor", None),
     ("mode", "nearest"), ("align_corners", None), ("recompute_scale_factor", None),
     ("antialias", False))
_sig([torch.flatten], ("input", _REQ), ("start_dim", 0), ("end_dim", -1))
_sig([torch.cat, torch.concat, torch.concatenate], ("tensors", _REQ), ("dim", 0))
_sig([torch.add], ("input", _REQ), ("other", _REQ), ("alpha", 1))
_sig([torch.mul], ("input", _REQ), ("other", _REQ))
_sig([operator.add, operator.iadd, operator.mul, operator.imul],
     ("input", _REQ), ("other", _REQ))
_sig([torch.mean], ("input", _REQ), ("dim", None), ("keepdim", False), ("dtype", None))
_sig([torch.chunk], ("input", _REQ), ("chunks", _REQ), ("dim", 0))
_sig([torch.split], ("tensor", _REQ), ("split_size_or_sections", _REQ), ("dim", 0))
_sig([torch.tensor_split], ("input", _REQ), ("indices_or_sections", _REQ), ("dim", 0))
_sig([torch.narrow], ("input", _REQ), ("dim", _REQ), ("start", _REQ), ("length", _REQ))
_sig([torch.channel_shuffle, torch.native_channel_shuffle], ("input", _REQ), ("groups", _REQ))
_sig([torch.amax], ("input", _REQ), ("dim", ()), ("keepdim", False))

_METHOD_SIG: dict[str, tuple[tuple[str, Any], ...]] = {
    "relu": (("input", _REQ),), "relu_": (("input", _REQ),),
    "sigmoid": (("input", _REQ),), "sigmoid_": (("input", _REQ),),
    "tanh": (("input", _REQ),), "tanh_": (("input", _REQ),),
    "softmax": (("input", _REQ), ("dim", None)),
    "flatten": (("input", _REQ), ("start_dim", 0), ("end_dim", -1)),
    "mean": (("input", _REQ), ("dim", None), ("keepdim", False), ("dtype", None)),
    "amax": (("input", _REQ), ("dim", ()), ("keepdim", False)),
    "contiguous": (("input", _REQ),),
    "add": (("input", _REQ), ("other", _REQ), ("alpha", 1)),
    "add_": (("input", _REQ), ("other", _REQ), ("alpha", 1)),
    "mul": (("input", _REQ), ("other", _REQ)),
    "mul_": (("input", _REQ), ("other", _REQ)),
    "chunk": (("input", _REQ), ("chunks", _REQ), ("dim", 0)),
    "split": (("input", _REQ), ("split_size", _REQ), ("dim", 0)),
    "tensor_split": (("input", _REQ), ("indices_or_sections", _REQ), ("dim", 0)),
    "narrow": (("input", _REQ), ("dim", _REQ), ("start", _REQ), ("length", _REQ)),
}

#: Calls splitting a tensor into a tuple of pieces (each read by ``getitem``).
_SPLIT_FUNCS = (torch.chunk, torch.split, torch.tensor_split)
_SPLIT_METHODS = ("chunk", "split", "tensor_split")

try:  # torchvision is optional
    from torchvision.ops import StochasticDepth as _StochasticDepth
    from torchvision.ops import stochastic_depth as _stochastic_depth

    _sig([_stochastic_depth], ("input", _REQ), ("p", _REQ), ("mode", _REQ),
         ("training", True))
except ImportError:  # pragma: no cover
    _StochasticDepth = None
    _stochastic_depth = None


def _bind(params: tuple[tuple[str, Any], ...], args: tuple, kwargs: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if len(args) > len(params):
        raise _Unsupported(f"{len(args)} positional arguments, expected at most {len(params)}")
    for (name, _), a in zip(params, args):
        out[name] = a
    for k, v in kwargs.items():
        if k not in {p for p, _ in params}:
            raise _Unsupported(f"unexpected argument {k}={v!r}")
        out[k] = v
    for name, default in params:
        if name not in out:
            if default is _REQ:
                raise _Unsupported(f"missing argument {name}")
            out[name] = default
    return out


_ACT_FUNCS = {
    F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu6: "relu6",
    F.silu: "silu", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
    F.sigmoid: "sigmoid", torch.sigmoid: "sigmoid", F.tanh: "tanh", torch.tanh: "tanh",
}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid",
                "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh"}
_ACT_MODULES = ((nn.ReLU6, "relu6"), (nn.ReLU, "relu"), (nn.Tanh, "tanh"),
                (nn.Sigmoid, "sigmoid"), (nn.SiLU, "silu"), (nn.Hardswish, "hardswish"),
                (nn.Hardsigmoid, "hardsigmoid"), (nn.Identity, "identity"))


# ---------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------

class _Tracer(fx.Tracer):
    """torch.nn modules are leaves (fx's default), and so are StochasticDepth and the
    cnn_tools global pools; every other module is traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if _StochasticDepth is not None and isinstance(m, _StochasticDepth):
            return True
        if isinstance(m, (cnn_tools.GlobalAvgPool2d, cnn_tools.GlobalMaxPool2d)):
            return True
        return super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:
        raise ExportError(
            f"torch.fx cannot trace {type(model).__name__}: {type(e).__name__}: {e} "
            "(data-dependent control flow or non-traceable calls in forward())") from e
    gm = fx.GraphModule(tracer.root, graph)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


class _ShapeProp(fx.Interpreter):
    """Runs the graph once on an example batch, storing each node's output in
    ``shapes[node]`` (a torch.Size for a tensor, else the Python value)."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        try:
            out = super().run_node(n)
        except Exception as e:
            what = f"node {n.name!r} ({n.op} {_target_text(n)}"
            if n.op == "call_module":
                what += f", module {n.target!r} ({type(self.module.get_submodule(n.target)).__name__})"
            ins = [list(self.values[a].shape[1:]) for a in n.all_input_nodes
                   if isinstance(self.values.get(a), torch.Tensor)]
            raise ExportError(f"{what}) fails on input shape(s) {ins}: {e}") from e
        self.values[n] = out
        return out


def _is_shape_value(v: Any) -> bool:
    if isinstance(v, (bool, int, float, torch.Size)):
        return True
    return isinstance(v, (tuple, list)) and all(_is_shape_value(x) for x in v)


def _data_users(n: fx.Node, values: dict[fx.Node, Any]) -> list[fx.Node]:
    """The nodes reading ``n``'s data: every user but shape reads (``x.size(0)``)."""
    return [u for u in n.users if not _is_shape_value(values.get(u))]


class _Alias:
    """Internal: a node that is its operand (torch.cat of one tensor)."""

    def __init__(self, ref: Any):
        self.ref = ref


class _Split:
    """Internal: a node splitting ``source`` into the channel ranges ``bounds``
    (``x.chunk(2, 1)``, ``torch.split``, ``torch.tensor_split``); each piece read
    (``getitem``) is a ``slice`` layer."""

    def __init__(self, source: fx.Node, bounds: list[tuple[int, int]]):
        self.source = source
        self.bounds = bounds


@dataclass
class _Shuffle:
    """Internal: a matched view/transpose channel shuffle (:func:`_channel_shuffles`)."""

    source: fx.Node          # the shuffled tensor
    groups: int
    nodes: list[fx.Node]     # the chain; the last one computes the shuffled tensor


#: Row-major reshapes: their result depends only on the shape they produce.
_RESHAPE_FUNCS = (torch.reshape, torch.flatten, torch.unflatten)
_RESHAPE_METHODS = ("view", "reshape", "flatten", "unflatten")
#: Axis permutations, by kind: ``transpose(input, dim0, dim1)`` or ``permute(dims)``.
_PERMUTE_FUNCS = {torch.transpose: "transpose", torch.swapaxes: "transpose",
                  torch.swapdims: "transpose", torch.permute: "permute"}
_PERMUTE_METHODS = {"transpose": "transpose", "swapaxes": "transpose",
                    "swapdims": "transpose", "permute": "permute"}


def _is_reshape(n: fx.Node) -> bool:
    return ((n.op == "call_function" and n.target in _RESHAPE_FUNCS)
            or (n.op == "call_method" and n.target in _RESHAPE_METHODS))


def _permutation(n: fx.Node, rank: int) -> list[int] | None:
    """The axis order of a transpose/swapaxes/permute node of a rank-``rank`` input (None
    for any other node)."""
    kind = (_PERMUTE_FUNCS.get(n.target) if n.op == "call_function"
            else _PERMUTE_METHODS.get(n.target) if n.op == "call_method" else None)
    try:
        if kind == "transpose":
            a = _bind((("input", _REQ), ("dim0", _REQ), ("dim1", _REQ)), n.args, n.kwargs)
            order = list(range(rank))
            i, j = a["dim0"] % rank, a["dim1"] % rank
            order[i], order[j] = order[j], order[i]
            return order
        if kind == "permute":
            dims = n.args[1:] if len(n.args) > 1 else (n.kwargs.get("dims"),)
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = dims[0]
            return [d % rank for d in dims]
    except (_Unsupported, TypeError):
        pass
    return None


def _sole_reader(n: fx.Node, values: dict[fx.Node, Any], accept) -> fx.Node | None:
    """The only node reading ``n``'s data, if it takes ``n`` as its input and ``accept``
    says yes; else None."""
    users = _data_users(n, values)
    if len(users) == 1 and users[0].args and users[0].args[0] is n and accept(users[0]):
        return users[0]
    return None


def _channel_shuffles(graph: fx.Graph, values: dict[fx.Node, Any]) -> dict[fx.Node, _Shuffle]:
    """The channel shuffles spelled as torchvision's ShuffleNetV2 does, each node of a
    match -> the match.

    A shuffle of ``x`` (``[b, c, h, w]``, or ``[b, c, l]`` for signals) is a reshape to
    ``[b, g, c // g, h, w]`` (``x.view``, ``reshape``, ``unflatten``; sizes computed from
    ``x.size()`` are plain values here), a swap of axes 1 and 2 (``transpose(1, 2)``,
    ``swapaxes``, ``permute(0, 2, 1, 3, 4)``), optionally ``.contiguous()``, and a reshape
    back to the shape of ``x`` (``view``, ``reshape``, ``flatten(1, 2)``): the layer
    ``channel_shuffle`` with ``groups = g``. Each intermediate tensor must have no other
    reader; any other view/transpose sequence is left to the node-by-node conversion,
    which rejects it.
    """
    found: dict[fx.Node, _Shuffle] = {}
    for first in graph.nodes:
        if not _is_reshape(first) or not _is_tensor(values.get(first)):
            continue
        x = first.args[0]
        if not isinstance(x, fx.Node) or not _is_tensor(values.get(x)):
            continue
        xs, ys = tuple(values[x].shape), tuple(values[first].shape)
        if not (len(xs) in (3, 4) and len(ys) == len(xs) + 1 and ys[0] == xs[0]
                and ys[1] * ys[2] == xs[1] and ys[3:] == xs[2:]):
            continue
        swap = _sole_reader(first, values, lambda u: _permutation(u, len(ys)) == [0, 2, 1]
                            + list(range(3, len(ys))))
        if swap is None:
            continue
        chain = [first, swap]
        contig = _sole_reader(swap, values, lambda u: u.op == "call_method"
                              and u.target == "contiguous")
        if contig is not None:
            chain.append(contig)
        last = _sole_reader(chain[-1], values, lambda u: _is_reshape(u)
                            and _is_tensor(values.get(u)) and tuple(values[u].shape) == xs)
        if last is not None:
            chain.append(last)
            found.update(dict.fromkeys(chain, _Shuffle(x, ys[1], chain)))
    return found


def _target_text(n: fx.Node) -> str:
    t = n.target
    if isinstance(t, str):
        return t
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or repr(t)
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch._C") or mod == "torch":
        return f"torch.{name}"
    return f"{mod}.{name}" if mod else name


# ---------------------------------------------------------------------------------------
# Conversion: fx graph -> layers
# ---------------------------------------------------------------------------------------

@dataclass
class _Layer:
    op: str
    args: dict[str, Any]
    inputs: list[Any]                    # refs: "input" or _Layer
    node: fx.Node
    shape: tuple[int, ...]               # output shape as `cnn` sees it
    module: str | None = None            # module path, for call_module layers
    mod: nn.Module | None = None
    params: int = 0
    macs: int = 0
    name: str | None = None              # explicit name (None: index-named)
    needs_name: bool = False


def _conv_args(m: nn.Module, nd: int, transpose: bool) -> dict[str, Any]:
    _need(m.padding_mode == "zeros",
          f"padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
    layer: dict[str, Any] = {"out": int(m.out_channels), "kernel": _val(_tup(m.kernel_size, nd))}
    if _tup(m.stride, nd) != (1,) * nd:
        layer["stride"] = _val(_tup(m.stride, nd))
    if isinstance(m.padding, str):
        _need(m.padding in ("same", "valid"), f"padding={m.padding!r}")
        if m.padding == "same":
            layer["padding"] = "same"
    elif _tup(m.padding, nd) != (0,) * nd:
        layer["padding"] = _val(_tup(m.padding, nd))
    if transpose and _tup(m.output_padding, nd) != (0,) * nd:
        layer["output_padding"] = _val(_tup(m.output_padding, nd))
    if _tup(m.dilation, nd) != (1,) * nd:
        layer["dilation"] = _val(_tup(m.dilation, nd))
    if m.groups != 1:
        layer["groups"] = int(m.groups)
    if m.bias is None:
        layer["bias"] = False
    return layer


def _max_pool_args(kernel, stride, padding, dilation, ceil_mode, nd) -> dict[str, Any]:
    k = _tup(kernel, nd)
    s = _tup(stride if stride is not None and stride != [] and stride != () else kernel, nd)
    layer: dict[str, Any] = {"kernel": _val(k)}
    if s != k:
        layer["stride"] = _val(s)
    if _tup(padding, nd) != (0,) * nd:
        layer["padding"] = _val(_tup(padding, nd))
    if _tup(dilation, nd) != (1,) * nd:
        layer["dilation"] = _val(_tup(dilation, nd))
    if ceil_mode:
        layer["ceil_mode"] = True
    return layer


def _avg_pool_args(kernel, stride, padding, ceil_mode, count_include_pad, nd) -> dict[str, Any]:
    k = _tup(kernel, nd)
    s = _tup(stride if stride is not None and stride != [] and stride != () else kernel, nd)
    layer: dict[str, Any] = {"kernel": _val(k)}
    if s != k:
        layer["stride"] = _val(s)
    if _tup(padding, nd) != (0,) * nd:
        layer["padding"] = _val(_tup(padding, nd))
    if ceil_mode:
        layer["ceil_mode"] = True
    if not count_include_pad:
        layer["count_include_pad"] = False
    return layer


def _adaptive(is_max: bool, size: Any, in_shape: tuple[int, ...], global_ok: bool
              ) -> tuple[str, dict[str, Any]]:
    """An adaptive pool: a global pool (output 1, read only by a flatten), a fixed pool
    (output size dividing the input size) or ``adaptive_*_pool``."""
    nd = len(in_shape) - 1
    _need(nd in (1, 2), f"needs a [C, H, W] or [C, L] input, got {list(in_shape)}")
    if not isinstance(size, (tuple, list)):
        size = (size,) * nd
    size = tuple(size)
    if len(size) == 1:
        size = size * nd
    _need(len(size) == nd, f"output_size {size} on a {nd}-D input")
    out = tuple(in_shape[1 + i] if size[i] is None else int(size[i]) for i in range(nd))
    kind = "max" if is_max else "avg"
    if all(o == 1 for o in out):
        if global_ok:
            return f"global_{kind}_pool", {}
        return f"adaptive_{kind}_pool", {"out": 1}
    if all(in_shape[1 + i] % out[i] == 0 for i in range(nd)):
        return f"{kind}_pool", {"kernel": _val(tuple(in_shape[1 + i] // out[i]
                                                     for i in range(nd)))}
    return f"adaptive_{kind}_pool", {"out": _val(out)}


def _upsample_args(size, scale_factor, mode, align_corners, in_shape) -> dict[str, Any]:
    nd = len(in_shape) - 1
    _need(nd in (1, 2), f"needs a [C, H, W] or [C, L] input, got {list(in_shape)}")
    allowed = {"nearest": "nearest", "bilinear": "bilinear", "linear": "linear"}
    _need(mode in allowed, f"mode={mode!r}: only 'nearest', 'bilinear' (2-D) and 'linear' "
                           "(1-D) are supported")
    _need((mode == "bilinear") == (nd == 2) or mode == "nearest",
          f"mode={mode!r} on a {nd}-D input")
    layer: dict[str, Any] = {}
    if size is not None:
        _need(scale_factor is None, "both size and scale_factor")
        layer["size"] = _val(_tup(size, nd))
    else:
        _need(scale_factor is not None, "neither size nor scale_factor")
        sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * nd
        sf = tuple(float(s) for s in sf) * (nd if len(sf) == 1 else 1)
        _need(all(s >= 1 and s == int(s) for s in sf),
              f"scale_factor={scale_factor}: only positive integer scales are supported "
              "(pass size= for other ratios)")
        layer["scale"] = _val(tuple(int(s) for s in sf))
    if mode != "nearest":
        layer["mode"] = mode
        if align_corners:
            layer["align_corners"] = True
    return layer


def _module_layer(path: str, m: nn.Module, in_shape: tuple[int, ...],
                  out_shape: tuple[int, ...], global_ok: bool) -> tuple[str, dict[str, Any]]:
    """One module call -> (op, args). Shapes are torch's, without the batch axis."""
    rank = len(in_shape)

    def need_rank(*ranks: int) -> None:
        _need(rank in ranks, f"{type(m).__name__} on an input of shape {list(in_shape)}")

    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        need_rank(2 if isinstance(m, nn.Conv1d) else 3)
        return "conv", _conv_args(m, rank - 1, False)
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        need_rank(2 if isinstance(m, nn.ConvTranspose1d) else 3)
        return "conv_transpose", _conv_args(m, rank - 1, True)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
        need_rank(2 if isinstance(m, nn.MaxPool1d) else 3)
        _need(not m.return_indices, "return_indices=True is not supported")
        return "max_pool", _max_pool_args(m.kernel_size, m.stride, m.padding, m.dilation,
                                          m.ceil_mode, rank - 1)
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
        need_rank(2 if isinstance(m, nn.AvgPool1d) else 3)
        div = getattr(m, "divisor_override", None)
        _need(div is None, f"divisor_override={div} is not supported")
        return "avg_pool", _avg_pool_args(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                          m.count_include_pad, rank - 1)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
                      nn.AdaptiveMaxPool2d)):
        is_max = isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d))
        need_rank(2 if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)) else 3)
        if is_max:
            _need(not m.return_indices, "return_indices=True is not supported")
        return _adaptive(is_max, m.output_size, in_shape, global_ok)
    if isinstance(m, (cnn_tools.GlobalAvgPool2d, cnn_tools.GlobalMaxPool2d)):
        need_rank(3)
        return ("global_max_pool" if isinstance(m, cnn_tools.GlobalMaxPool2d)
                else "global_avg_pool"), {}
    if isinstance(m, nn.Flatten):
        _need(m.start_dim == 1 and m.end_dim in (-1, rank),
              f"only Flatten(start_dim=1, end_dim=-1) is supported, got "
              f"start_dim={m.start_dim}, end_dim={m.end_dim}")
        return "flatten", {}
    if isinstance(m, nn.Linear):
        _need(rank == 1, f"needs a vector input (add nn.Flatten() before it), got "
                         f"{list(in_shape)}")
        return "linear", ({"out": int(m.out_features)} if m.bias is not None
                          else {"out": int(m.out_features), "bias": False})
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        _need(m.affine, "affine=False is not supported (the weight file needs "
                        f"{path}.weight and {path}.bias; use affine=True with weight 1, bias 0)")
        _need(m.track_running_stats and m.running_mean is not None,
              "track_running_stats=False is not supported: it normalises with batch "
              "statistics even in eval mode; `cnn` needs running_mean/running_var")
        need_rank(*((3,) if isinstance(m, nn.BatchNorm2d) else (1, 2)))
        eps = _finite("eps", m.eps)
        _need(eps > 0, f"eps must be > 0, got {eps}")
        return "batch_norm", ({} if eps == 1e-5 else {"eps": eps})
    for cls, op in _ACT_MODULES:
        if isinstance(m, cls):
            return op, {}
    if isinstance(m, nn.GELU):
        _need(m.approximate == "none", f"approximate={m.approximate!r} (only 'none')")
        return "gelu", {}
    if isinstance(m, nn.LeakyReLU):
        slope = _finite("negative_slope", m.negative_slope)
        return "leaky_relu", ({} if slope == 0.01 else {"slope": slope})
    if isinstance(m, nn.Softmax):
        _need_channel_axis(m.dim, rank + 1)
        return "softmax", {}
    if isinstance(m, nn.ChannelShuffle):
        need_rank(2, 3)
        return "channel_shuffle", {"groups": int(m.groups)}
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
        p = _finite("p", m.p)
        _need(0 <= p < 1, f"p must be in [0, 1), got {p}")
        return "dropout", ({} if p == 0.5 else {"p": p})
    if isinstance(m, nn.Upsample):
        return "upsample", _upsample_args(m.size, m.scale_factor, m.mode, m.align_corners,
                                          in_shape)
    raise _Unsupported(None)  # type: ignore[arg-type]


def _is_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor)


def _is_split(n: fx.Node) -> bool:
    return ((n.op == "call_function" and n.target in _SPLIT_FUNCS)
            or (n.op == "call_method" and n.target in _SPLIT_METHODS))


def _index_text(items: tuple) -> str:
    """A subscript as written: ``x[:, 2:-1]``."""
    def one(i: Any) -> str:
        if i is Ellipsis:
            return "..."
        if isinstance(i, slice):
            bounds = [i.start, i.stop] + ([i.step] if i.step is not None else [])
            return ":".join("" if b is None else str(b) for b in bounds)
        return repr(i)

    return f"x[{', '.join(one(i) for i in items)}]"


def _subscript_range(index: Any, shape: Sequence[int]) -> tuple[int, int]:
    """The channel range ``(start, end)`` that ``x[index]`` takes of a tensor of (batched)
    ``shape``: ``x[:, a:b]``, with ``...``, trailing ``:`` and negative or omitted bounds,
    step 1. Raises _Unsupported for anything else (other axes, steps, integers)."""
    items = index if isinstance(index, tuple) else (index,)
    text = _index_text(items)
    _need(all(isinstance(i, slice) or i is Ellipsis for i in items),
          f"{text}: only slices along the channel axis (x[:, a:b]) are supported")
    if any(i is Ellipsis for i in items):
        k = next(j for j, i in enumerate(items) if i is Ellipsis)
        items = items[:k] + (slice(None),) * (len(shape) - len(items) + 1) + items[k + 1:]
    items += (slice(None),) * (len(shape) - len(items))
    ranges = [s.indices(size) for s, size in zip(items, shape)]
    _need(all(step == 1 for _, _, step in ranges), f"{text}: only step 1 is supported")
    cut = [d for d, ((a, b, _), size) in enumerate(zip(ranges, shape)) if (a, b) != (0, size)]
    _need(set(cut) <= {1}, f"{text} slices dim {', '.join(map(str, cut))}: only the "
                           "channel/feature axis (dim=1) is supported")
    start, end, _ = ranges[1]
    return start, max(start, end)


def describe(model: nn.Module, input_shape: Sequence[int]
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The description dict of ``model`` and per-layer info, without writing anything.

    Returns ``(description, layers)``: ``description`` is ``{"input": [...], "layers":
    [...]}`` (what the TOML contains) and ``layers`` lists ``name``, ``op``, ``output_shape``
    (as `cnn` sees it), ``params``, ``macs`` and ``module`` (the module path or None) per
    layer. Raises :class:`UnsupportedLayerError` (every unsupported node at once) or
    :class:`ExportError`.
    """
    layers, _, _ = _convert_graph(model, input_shape)
    return _finish(layers, input_shape)


def _convert_graph(model: nn.Module, input_shape: Sequence[int]):
    input_shape = tuple(int(v) for v in input_shape)
    if not 1 <= len(input_shape) <= 3 or min(input_shape) < 1:
        raise ExportError(f"input_shape must be (C, H, W), (C, L) or (N,) of positive ints, "
                          f"got {input_shape}")
    work = copy.deepcopy(model).eval()
    gm = _trace(work)
    dtype = next((p.dtype for p in work.parameters() if p.is_floating_point()), torch.float32)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ExportError(f"forward() takes {len(placeholders)} inputs; exactly one is "
                          "supported (the image/signal)")
    prop = _ShapeProp(gm)
    x = torch.zeros((2,) + input_shape, dtype=dtype)
    with torch.no_grad():
        prop.run(x)
    values = prop.values
    modules = dict(gm.named_modules())

    def tshape(n: Any) -> tuple[int, ...]:
        return tuple(values[n].shape[1:])

    def is_flatten_node(n: fx.Node) -> bool:
        if n.op == "call_module":
            return _is_flatten(modules.get(n.target))
        v = values.get(n)
        if not _is_tensor(v):
            return False
        src = n.all_input_nodes
        if not src or not _is_tensor(values.get(src[0])):
            return False
        ins = values[src[0]].shape
        if n.op == "call_function" and n.target is torch.flatten:
            pass
        elif n.op == "call_method" and n.target in ("flatten", "view", "reshape"):
            pass
        else:
            return False
        return v.dim() == 2 and v.shape[0] == ins[0] and v.shape[1] == math.prod(ins[1:])

    def global_ok(n: fx.Node) -> bool:
        # Shape reads (x.size(0) for a view) do not count as users.
        users = _data_users(n, values)
        return bool(users) and all(is_flatten_node(u) or u.op == "output" for u in users)

    env: dict[fx.Node, Any] = {}
    layers: list[_Layer] = []
    errors: list[dict[str, Any]] = []
    module_calls: dict[str, int] = {}
    output_ref: Any = None

    def cnn_shape(ref: Any) -> tuple[int, ...]:
        return input_shape if ref == "input" else ref.shape

    def reported(node: Any) -> bool:
        return isinstance(node, fx.Node) and any(e["node"] == node.name for e in errors)

    def stand_in() -> Any:  # for a node that cannot be converted: keep going (shape only)
        return "input" if not layers else layers[-1]

    shuffles = _channel_shuffles(gm.graph, values)
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            env[n] = "input"
            continue
        if n.op == "output":
            out = n.args[0]
            if not isinstance(out, fx.Node) or not _is_tensor(values.get(out)):
                if reported(out):
                    continue
                errors.append({"node": n.name, "op": "output", "target": "output",
                               "module": None, "type": type(out).__name__,
                               "reason": "the model must return a single tensor"})
            else:
                output_ref = env.get(out)
            continue
        v = values.get(n)
        mpath = n.target if n.op == "call_module" else None
        mod = modules.get(n.target) if n.op == "call_module" else None
        entry = {"node": n.name, "op": n.op, "target": _target_text(n), "module": mpath,
                 "type": type(mod).__name__ if mod is not None else None, "reason": None}
        shuffle = shuffles.get(n)
        if shuffle is not None and n is not shuffle.nodes[-1]:
            env[n] = None                       # inside a channel shuffle: no layer
            continue
        if n.op == "call_function" and n.target is operator.getitem and reported(n.args[0]) \
                and not _is_tensor(values.get(n.args[0])):
            env[n] = stand_in()                 # a piece of an unsupported tuple
            continue
        if not _is_tensor(v) and not _is_split(n):
            # Shape arithmetic (x.size(0), x.shape[0] // 2, ...) makes no layer; the tensor
            # nodes that use it are judged on their own (a view is only a flatten, ...).
            if _is_shape_value(v):
                env[n] = None
                continue
            entry["reason"] = f"produces a {type(v).__name__}, not a tensor"
            if mod is not None and n.all_input_nodes and _is_tensor(
                    values.get(n.all_input_nodes[0])):
                try:  # a more specific reason (MaxPool2d(return_indices=True), ...)
                    _module_layer(mpath, mod, tuple(values[n.all_input_nodes[0]].shape[1:]),
                                  (), False)
                except _Unsupported as e:
                    if e.args and e.args[0] is not None:
                        entry["reason"] = e.args[0]
            errors.append(entry)
            env[n] = None
            continue
        tin = [a for a in n.all_input_nodes if _is_tensor(values.get(a))]
        try:
            layer = _convert_node(n, mod, mpath, tin, values, env, global_ok, is_flatten_node,
                                  cnn_shape, module_calls, shuffles)
        except _Unsupported as e:
            if e.args and e.args[0] is not None:
                entry["reason"] = e.args[0]
            errors.append(entry)
            env[n] = stand_in()
            continue
        if layer is None:                       # a no-op: alias of its input
            env[n] = env[tin[0]]
            continue
        if isinstance(layer, _Alias):           # alias to a given ref
            env[n] = layer.ref
            continue
        if isinstance(layer, _Split):           # a tuple of pieces, read by getitem nodes
            env[n] = layer
            continue
        layers.append(layer)
        env[n] = layer
    if errors:
        raise UnsupportedLayerError("", nodes=errors)
    if output_ref is None or output_ref == "input" or (layers and output_ref is not layers[-1]):
        # The output is not the last layer's: read it with an identity at the end.
        if output_ref is None:
            raise ExportError("the model has no output")
        out_node = next(n for n in gm.graph.nodes if n.op == "output")
        layers.append(_Layer("identity", {}, [output_ref], out_node, cnn_shape(output_ref)))
    return layers, gm, work


def _convert_node(n, mod, mpath, tin, values, env, global_ok, is_flatten_node, cnn_shape,
                  module_calls, shuffles) -> Any:
    """One tensor-valued (or splitting) node -> a _Layer, None (no-op alias), an _Alias, a
    _Split or raise _Unsupported."""
    def tsh(a: fx.Node) -> tuple[int, ...]:
        return tuple(values[a].shape[1:])

    out_t = tuple(values[n].shape[1:]) if _is_tensor(values[n]) else ()

    def single_input() -> Any:
        _need(len(tin) == 1, f"reads {len(tin)} tensors, expected 1")
        return env[tin[0]]

    def make(op: str, args: dict[str, Any], inputs: list[Any], shape=None) -> _Layer:
        return _Layer(op, args, inputs, n, tuple(out_t if shape is None else shape))

    def channel_range(x: fx.Node, start: int, end: int) -> Any:
        """Channels (features) start..end of x: a slice, no layer for all of them."""
        _need(values[x].dim() in (2, 3, 4), f"on an input of shape {list(tsh(x))}")
        _need(start < end, f"the channel range {start}:{end} is empty")
        if (start, end) == (0, values[x].shape[1]):
            return _Alias(env[x])
        return make("slice", {"start": start, "end": end}, [env[x]])

    def value(arg: Any) -> Any:
        """An argument with the values of the (shape arithmetic) nodes it holds."""
        return fx.node.map_arg(arg, lambda a: values[a])

    shuffle = shuffles.get(n)
    if shuffle is not None:                     # the last node of a view/transpose shuffle
        return make("channel_shuffle", {"groups": shuffle.groups}, [env[shuffle.source]])

    if n.op == "call_module":
        _need(not n.kwargs and len(n.args) == 1,
              f"called with extra arguments {n.args[1:]} {dict(n.kwargs)}")
        src = single_input()
        in_t = tsh(tin[0])
        if _StochasticDepth is not None and isinstance(mod, _StochasticDepth):
            return None
        op, args = _module_layer(mpath, mod, in_t, out_t, global_ok(n))
        shape = out_t
        if op in ("global_avg_pool", "global_max_pool"):
            shape = (in_t[0],)
        elif op == "flatten":
            shape = (math.prod(cnn_shape(src)),)
        layer = _Layer(op, args, [src], n, shape, module=mpath, mod=mod)
        nparams = sum(p.numel() for p in mod.parameters(recurse=True))
        count = module_calls.get(mpath, 0)
        module_calls[mpath] = count + 1
        if count and (nparams or len(list(mod.buffers()))):
            raise _Unsupported(f"module {mpath!r} is called {count + 1} times: a layer's "
                               "weights belong to one layer (weight sharing is not supported)")
        layer.name = mpath if count == 0 else None
        layer.needs_name = count > 0          # gets path_1, path_2, ... below
        layer.params = nparams
        if op == "conv":
            k = math.prod(_tup(mod.kernel_size, len(in_t) - 1))
            layer.macs = math.prod(out_t) * (in_t[0] // mod.groups) * k
        elif op == "conv_transpose":
            k = math.prod(_tup(mod.kernel_size, len(in_t) - 1))
            layer.macs = math.prod(in_t) * (out_t[0] // mod.groups) * k
        elif op == "linear":
            layer.macs = in_t[0] * out_t[0]
        return layer

    if n.op == "get_attr":
        raise _Unsupported(f"reads the parameter/buffer {n.target!r} directly in forward(): "
                           "only modules' own weights can be exported")

    if n.op == "call_function" and n.target is operator.getitem:
        src, index = n.args
        pieces = env.get(src)
        if isinstance(pieces, _Split):          # x.chunk(2, 1)[i], torch.split(..)[i], ...
            _need(isinstance(index, int), f"reads the pieces {index!r} at once")
            return channel_range(pieces.source, *pieces.bounds[index])
        _need(_is_tensor(values.get(src)), f"indexes a {type(values.get(src)).__name__}")
        return channel_range(src, *_subscript_range(value(index), values[src].shape))

    if n.op == "call_method":
        name = n.target
        params = _METHOD_SIG.get(name)
        if name in ("view", "reshape"):
            _need(is_flatten_node(n), f"{name} to shape {list(values[n].shape)}: only a "
                                      "flatten (x.view(x.size(0), -1)) is supported")
            return make("flatten", {}, [env[tin[0]]], (math.prod(cnn_shape(env[tin[0]])),))
        if params is None:
            raise _Unsupported(f"method .{name}() is not supported")
        a = _bind(params, n.args, n.kwargs)
        fn: Any = ("method", name)
    elif n.op == "call_function":
        params = _SIG.get(n.target)
        if params is None:
            raise _Unsupported("function is not supported")
        a = _bind(params, n.args, n.kwargs)
        fn = n.target
    else:
        raise _Unsupported(f"node kind {n.op}")

    def inp(key: str = "input") -> Any:
        x = a.get(key)
        _need(isinstance(x, fx.Node) and _is_tensor(values.get(x)), f"{key} is not a tensor")
        return x

    rank = len(out_t)
    # Activations.
    act = _ACT_FUNCS.get(fn) if not isinstance(fn, tuple) else _ACT_METHODS.get(fn[1])
    if act is not None:
        x = inp()
        return make(act, {}, [env[x]])
    if fn in (F.leaky_relu,):
        x = inp()
        slope = _finite("negative_slope", a["negative_slope"])
        return make("leaky_relu", {} if slope == 0.01 else {"slope": slope}, [env[x]])
    if fn is F.gelu:
        _need(a["approximate"] == "none", f"approximate={a['approximate']!r} (only 'none')")
        return make("gelu", {}, [env[inp()]])
    if fn in (F.softmax, torch.softmax) or fn == ("method", "softmax"):
        x = inp()
        _need_channel_axis(a["dim"], values[x].dim())
        _need(a.get("dtype") is None, "dtype= is not supported")
        return make("softmax", {}, [env[x]])
    if fn in (F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout) or fn is _stochastic_depth:
        _need(not a["training"], "active at inference (training=True): F.dropout defaults to "
                                 "training=True, pass training=self.training")
        return None
    if fn == ("method", "contiguous"):
        return None
    # Pools.
    if fn in (F.max_pool1d, F.max_pool2d):
        x = inp()
        nd = 1 if fn is F.max_pool1d else 2
        _need(len(tsh(x)) == nd + 1, f"on an input of shape {list(tsh(x))}")
        _need(not a["return_indices"], "return_indices=True is not supported")
        return make("max_pool", _max_pool_args(a["kernel_size"], a["stride"], a["padding"],
                                               a["dilation"], a["ceil_mode"], nd), [env[x]])
    if fn in (F.avg_pool1d, F.avg_pool2d):
        x = inp()
        nd = 1 if fn is F.avg_pool1d else 2
        _need(len(tsh(x)) == nd + 1, f"on an input of shape {list(tsh(x))}")
        _need(a.get("divisor_override") is None, "divisor_override is not supported")
        return make("avg_pool", _avg_pool_args(a["kernel_size"], a["stride"], a["padding"],
                                               a["ceil_mode"], a["count_include_pad"], nd),
                    [env[x]])
    if fn in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d,
              F.adaptive_max_pool2d):
        x = inp()
        is_max = fn in (F.adaptive_max_pool1d, F.adaptive_max_pool2d)
        nd = 1 if fn in (F.adaptive_avg_pool1d, F.adaptive_max_pool1d) else 2
        _need(len(tsh(x)) == nd + 1, f"on an input of shape {list(tsh(x))}")
        if is_max:
            _need(not a["return_indices"], "return_indices=True is not supported")
        op, args = _adaptive(is_max, a["output_size"], tsh(x), global_ok(n))
        shape = (tsh(x)[0],) if op.startswith("global") else out_t
        return make(op, args, [env[x]], shape)
    if fn in (torch.mean, torch.amax) or fn in (("method", "mean"), ("method", "amax")):
        x = inp()
        r = len(values[x].shape)
        d = a["dim"]
        dims = {int(v) % r for v in ((d,) if isinstance(d, int) else tuple(d or ()))}
        _need(r in (3, 4) and dims == set(range(2, r)),
              f"reduces dims {d} of a rank-{r} tensor: only the spatial axes ((2, 3), or 2 "
              "for 1-D signals) are supported")
        _need(a.get("dtype") is None, "dtype= is not supported")
        kind = "max" if fn is torch.amax or fn == ("method", "amax") else "avg"
        if a["keepdim"]:
            return make(f"adaptive_{kind}_pool", {"out": 1}, [env[x]])
        return make(f"global_{kind}_pool", {}, [env[x]])
    if fn is torch.flatten or fn == ("method", "flatten"):
        x = inp()
        _need(is_flatten_node(n), f"flatten(start_dim={a['start_dim']}, end_dim="
                                  f"{a['end_dim']}): only flatten(x, 1) is supported")
        return make("flatten", {}, [env[x]], (math.prod(cnn_shape(env[x])),))
    if fn is F.interpolate:
        x = inp()
        _need(not a["antialias"], "antialias=True is not supported")
        _need(not a["recompute_scale_factor"], "recompute_scale_factor=True is not supported")
        return make("upsample", _upsample_args(a["size"], a["scale_factor"], a["mode"],
                                               a["align_corners"], tsh(x)), [env[x]])
    # Channel ranges and shuffles.
    if _is_split(n):
        x = inp("tensor" if fn is torch.split else "input")
        _need_channel_axis(a["dim"], values[x].dim())
        sizes = [int(t.shape[1]) for t in values[n]]
        _need(sum(sizes) == values[x].shape[1],
              f"pieces of {sizes} channels out of {values[x].shape[1]} (overlapping indices)")
        ends = list(itertools.accumulate(sizes))
        return _Split(x, list(zip([0] + ends[:-1], ends)))
    if fn is torch.narrow or fn == ("method", "narrow"):
        x = inp()
        _need_channel_axis(a["dim"], values[x].dim())
        start = int(value(a["start"])) % values[x].shape[1]
        return channel_range(x, start, start + out_t[0])
    if fn in (torch.channel_shuffle, torch.native_channel_shuffle):
        x = inp()
        _need(values[x].dim() in (3, 4), f"on an input of shape {list(tsh(x))}")
        return make("channel_shuffle", {"groups": int(value(a["groups"]))}, [env[x]])
    # Merges.
    if fn in (operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul) \
            or fn in (("method", "add"), ("method", "add_"), ("method", "mul"),
                      ("method", "mul_")):
        is_add = fn in (operator.add, operator.iadd, torch.add) or (
            isinstance(fn, tuple) and fn[1].startswith("add"))
        x, y = a["input"], a["other"]
        if not (isinstance(x, fx.Node) and isinstance(y, fx.Node)
                and _is_tensor(values.get(x)) and _is_tensor(values.get(y))):
            raise _Unsupported(
                f"{'add' if is_add else 'mul'} of a tensor and a constant "
                f"({x if not isinstance(x, fx.Node) else y!r}): only tensor-tensor "
                "element-wise operations are supported")
        _need(a.get("alpha", 1) == 1, f"alpha={a.get('alpha')} is not supported")
        _need(values[x].dim() == values[y].dim(), "operands of different ranks "
              f"{list(values[x].shape)} and {list(values[y].shape)}")
        _need(values[x].shape[0] == values[y].shape[0], "broadcast over the batch axis")
        for r in (env[x], env[y]):
            _need(len(cnn_shape(r)) == rank, "an operand is a global pool's [C] output")
        return make("add" if is_add else "mul", {}, [env[x], env[y]])
    if fn in (torch.cat, torch.concat, torch.concatenate):
        xs = a["tensors"]
        _need(isinstance(xs, (list, tuple)) and xs and all(
            isinstance(t, fx.Node) and _is_tensor(values.get(t)) for t in xs),
            "tensors must be a list of tensors")
        _need_channel_axis(a["dim"], values[n].dim())
        for t in xs:
            _need(len(cnn_shape(env[t])) == rank, "an operand is a global pool's [C] output")
        if len(xs) == 1:                        # DenseNet's first layer: a copy
            return _Alias(env[xs[0]])
        return make("concat", {}, [env[t] for t in xs])
    raise _Unsupported("function is not supported")


def _finish(layers: list[_Layer], input_shape: Sequence[int]
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Names, ``from`` references and the description dict."""
    input_shape = tuple(int(v) for v in input_shape)
    # Which layers are read out of order.
    for i, l in enumerate(layers):
        prev = layers[i - 1] if i else "input"
        if l.op in ("add", "mul", "concat"):
            one = _one_name_form(l, prev)
            refs = [one] if one is not None else l.inputs
        else:
            refs = [] if l.inputs[0] is prev else l.inputs[:1]
        for r in refs:
            if isinstance(r, _Layer):
                r.needs_name = True
    # Explicit names: module paths; fx node names where needed; unique, never an index
    # of an unnamed layer.
    used: set[str] = {l.name for l in layers if l.name is not None}
    for l in layers:
        if l.name is None and l.needs_name:
            base = _node_name(l)
            name, k = base, 0
            while name in used:
                k += 1
                name = f"{base}_{k}"
            l.name = name
            used.add(name)
    while True:
        explicit = {l.name: i for i, l in enumerate(layers) if l.name is not None}
        clash = [j for j, l in enumerate(layers)
                 if l.name is None and str(j) in explicit and explicit[str(j)] != j]
        if not clash:
            break
        for j in clash:
            base = _node_name(layers[j])
            name, k = base, 0
            while name in used:
                k += 1
                name = f"{base}_{k}"
            layers[j].name = name
            used.add(name)
    names = [l.name if l.name is not None else str(i) for i, l in enumerate(layers)]
    for l, nm in zip(layers, names):
        if not NAME_RE.match(nm):
            raise ExportError(f"layer {nm!r} ({l.op}): layer names must be dot-separated "
                              "segments of ASCII letters, digits, '_' or '-' (rename the "
                              "module)")
        if nm == "input":
            raise ExportError("a module named 'input' clashes with the model's input tensor")
    if len(set(names)) != len(names):
        raise ExportError(f"duplicate layer names: {sorted({n for n in names if names.count(n) > 1})}")
    index = {id(l): nm for l, nm in zip(layers, names)}

    def ref(r: Any) -> str:
        return "input" if r == "input" else index[id(r)]

    out_layers, info = [], []
    for i, (l, nm) in enumerate(zip(layers, names)):
        prev = layers[i - 1] if i else "input"
        table: dict[str, Any] = {} if nm == str(i) else {"name": nm}
        table["op"] = l.op
        if l.op in ("add", "mul", "concat"):
            one = _one_name_form(l, prev)
            table["from"] = [ref(one)] if one is not None else [ref(r) for r in l.inputs]
        elif l.inputs[0] is not prev:
            table["from"] = ref(l.inputs[0])
        table.update(l.args)
        out_layers.append(table)
        info.append({"name": nm, "op": l.op, "output_shape": list(l.shape), "params": l.params,
                     "macs": l.macs, "module": l.module})
    return {"input": list(input_shape), "layers": out_layers}, info


def _one_name_form(l: _Layer, prev: Any) -> Any:
    """For a binary merge reading the previous layer: the other operand (``from = [x]``
    means ``prev (op) x``); None when the full list is needed."""
    if len(l.inputs) != 2:
        return None
    a, b = l.inputs
    if a is prev:
        return b
    if b is prev and l.op in ("add", "mul"):   # exact: IEEE + and * commute
        return a
    return None


#: Ops whose function layers are named after the op, not after their fx node: they are
#: made of several nodes (``x.chunk`` + ``[i]``; ``view``/``transpose``/``view``) whose
#: names (``getitem_5``, ``view_1``) would say nothing.
_NAMED_BY_OP = ("slice", "channel_shuffle")


def _node_name(l: _Layer) -> str:
    if l.module is not None:
        return l.module
    if l.op in _NAMED_BY_OP:
        return l.op
    return l.node.name


# ---------------------------------------------------------------------------------------
# Reference interpreter of the format (float64), used to verify exports
# ---------------------------------------------------------------------------------------

def run_description(description: dict[str, Any], tensors: dict[str, torch.Tensor],
                    x: torch.Tensor) -> torch.Tensor:
    """Evaluate a description on a batch ``x`` ``[B, *input]`` with the given weights,
    following MODEL_FORMAT.md (global pools give ``[B, C]``). An independent check of the
    exporter: it reads only the description and the weight dict."""
    names = [str(l["name"]) if "name" in l else str(i)
             for i, l in enumerate(description["layers"])]
    env: dict[str, torch.Tensor] = {"input": x}
    prev = x
    dt = x.dtype

    def w(key: str) -> torch.Tensor:
        return tensors[key].to(dt)

    def tup(v: Any, nd: int) -> tuple[int, ...]:
        return (v,) * nd if isinstance(v, int) else tuple(v)

    for layer, nm in zip(description["layers"], names):
        op = layer["op"]
        if op in ("add", "mul", "concat"):
            refs = [env[r] for r in layer["from"]]
            ops = [prev] + refs if len(refs) == 1 else refs
            if op == "concat":
                y = torch.cat(ops, dim=1)
            else:
                y = ops[0]
                for o in ops[1:]:
                    y = y + o if op == "add" else y * o
            env[nm] = prev = y
            continue
        t = env[layer["from"]] if "from" in layer else prev
        nd = t.dim() - 2
        if op == "conv":
            pad = layer.get("padding", 0)
            pad = pad if isinstance(pad, str) else tup(pad, nd)
            f = F.conv1d if nd == 1 else F.conv2d
            y = f(t, w(f"{nm}.weight"), w(f"{nm}.bias") if layer.get("bias", True) else None,
                  stride=tup(layer.get("stride", 1), nd), padding=pad,
                  dilation=tup(layer.get("dilation", 1), nd), groups=layer.get("groups", 1))
        elif op == "conv_transpose":
            f = F.conv_transpose1d if nd == 1 else F.conv_transpose2d
            y = f(t, w(f"{nm}.weight"), w(f"{nm}.bias") if layer.get("bias", True) else None,
                  stride=tup(layer.get("stride", 1), nd),
                  padding=tup(layer.get("padding", 0), nd),
                  output_padding=tup(layer.get("output_padding", 0), nd),
                  groups=layer.get("groups", 1), dilation=tup(layer.get("dilation", 1), nd))
        elif op == "max_pool":
            k = tup(layer["kernel"], nd)
            f = F.max_pool1d if nd == 1 else F.max_pool2d
            y = f(t, k, tup(layer.get("stride", k), nd), tup(layer.get("padding", 0), nd),
                  tup(layer.get("dilation", 1), nd), ceil_mode=layer.get("ceil_mode", False))
        elif op == "avg_pool":
            k = tup(layer["kernel"], nd)
            f = F.avg_pool1d if nd == 1 else F.avg_pool2d
            y = f(t, k, tup(layer.get("stride", k), nd), tup(layer.get("padding", 0), nd),
                  ceil_mode=layer.get("ceil_mode", False),
                  count_include_pad=layer.get("count_include_pad", True))
        elif op in ("adaptive_avg_pool", "adaptive_max_pool"):
            o = tup(layer["out"], nd)
            f = {("avg", 1): F.adaptive_avg_pool1d, ("avg", 2): F.adaptive_avg_pool2d,
                 ("max", 1): F.adaptive_max_pool1d, ("max", 2): F.adaptive_max_pool2d}[
                (op[9:12], nd)]
            y = f(t, o)
        elif op == "global_avg_pool":
            y = t.mean(dim=tuple(range(2, t.dim())))
        elif op == "global_max_pool":
            y = t.amax(dim=tuple(range(2, t.dim())))
        elif op == "flatten":
            y = t.reshape(t.shape[0], -1)
        elif op == "linear":
            y = F.linear(t, w(f"{nm}.weight"),
                         w(f"{nm}.bias") if layer.get("bias", True) else None)
        elif op == "batch_norm":
            y = F.batch_norm(t, w(f"{nm}.running_mean"), w(f"{nm}.running_var"),
                             w(f"{nm}.weight"), w(f"{nm}.bias"), False, 0.0,
                             layer.get("eps", 1e-5))
        elif op in ("relu", "relu6", "tanh", "sigmoid", "silu", "hardswish", "hardsigmoid",
                    "gelu"):
            y = {"relu": F.relu, "relu6": F.relu6, "tanh": torch.tanh,
                 "sigmoid": torch.sigmoid, "silu": F.silu, "hardswish": F.hardswish,
                 "hardsigmoid": F.hardsigmoid, "gelu": F.gelu}[op](t)
        elif op == "leaky_relu":
            y = F.leaky_relu(t, layer.get("slope", 0.01))
        elif op == "softmax":
            y = torch.softmax(t, dim=1)
        elif op == "slice":
            y = t[:, layer["start"]:layer["end"]]
        elif op == "channel_shuffle":
            g = layer["groups"]
            y = t.reshape(t.shape[0], g, t.shape[1] // g, *t.shape[2:]).transpose(1, 2) \
                .reshape(t.shape)
        elif op in ("dropout", "identity"):
            y = t
        elif op == "upsample":
            mode = layer.get("mode", "nearest")
            if "scale" in layer:
                y = F.interpolate(t, scale_factor=tuple(float(s) for s in tup(layer["scale"], nd)),
                                  mode=mode, align_corners=layer.get("align_corners") if
                                  mode != "nearest" else None)
            else:
                y = F.interpolate(t, size=tup(layer["size"], nd), mode=mode,
                                  align_corners=layer.get("align_corners") if mode != "nearest"
                                  else None)
        else:
            raise ExportError(f"run_description: unknown op {op!r}")
        env[nm] = prev = y
    return prev


# ---------------------------------------------------------------------------------------
# TOML
# ---------------------------------------------------------------------------------------

#: Key order of each op's arguments in the written TOML (after name, op, from).
_KEY_ORDER = {
    "conv": ("out", "kernel", "stride", "padding", "dilation", "groups", "bias"),
    "conv_transpose": ("out", "kernel", "stride", "padding", "output_padding", "dilation",
                       "groups", "bias"),
    "max_pool": ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    "avg_pool": ("kernel", "stride", "padding", "ceil_mode", "count_include_pad"),
    "adaptive_avg_pool": ("out",), "adaptive_max_pool": ("out",),
    "upsample": ("scale", "size", "mode", "align_corners"),
    "linear": ("out", "bias"), "batch_norm": ("eps",), "leaky_relu": ("slope",),
    "dropout": ("p",), "slice": ("start", "end"), "channel_shuffle": ("groups",),
}


def _fmt_float(v: float) -> str:
    """A TOML float that parses back to exactly ``v`` (``1e-05`` -> ``1.0e-5``)."""
    r = repr(float(v))
    if "e" in r:
        mant, exp = r.split("e")
        if "." not in mant:
            mant += ".0"
        return f"{mant}e{int(exp)}"
    return r if "." in r else r + ".0"


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _fmt_float(v)
    if isinstance(v, str):
        return json.dumps(v)  # ASCII names/values: a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def description_to_toml(description: dict[str, Any], comment: str | None = None) -> str:
    """Format a description dict as MODEL_FORMAT.md TOML (keys in the format's order)."""
    lines = []
    if comment:
        lines += [f"# {line}".rstrip() for line in comment.splitlines()]
    lines.append(f"input = {_fmt_value(description['input'])}")
    for layer in description["layers"]:
        lines += ["", "[[layers]]"]
        order = ["name", "op", "from"] + list(_KEY_ORDER.get(layer["op"], ()))
        for key in order + [k for k in layer if k not in order]:
            if key in layer:
                lines.append(f"{key} = {_fmt_value(layer[key])}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------

#: The weight keys each op's layer needs (besides num_batches_tracked, accepted).
_OP_KEYS = {"conv": ("weight", "bias"), "conv_transpose": ("weight", "bias"),
            "linear": ("weight", "bias"),
            "batch_norm": ("weight", "bias", "running_mean", "running_var")}


def _export_tensors(model: nn.Module, description: dict[str, Any], info: list[dict[str, Any]],
                    dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The weights to write (exactly the keys the layers imply) and the dropped keys."""
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    missing = []
    for table, layer in zip(description["layers"], info):
        keys = _OP_KEYS.get(layer["op"], ())
        if table.get("bias") is False:
            keys = tuple(k for k in keys if k != "bias")
        path = layer["module"]
        for k in keys:
            src = f"{path}.{k}"
            if src not in state:
                missing.append(src)
                continue
            t = state[src].detach().cpu()
            tensors[f"{layer['name']}.{k}"] = (t.to(dtype) if t.is_floating_point() else t
                                               ).clone().contiguous()
        if layer["op"] == "batch_norm" and f"{path}.num_batches_tracked" in state:
            tensors[f"{layer['name']}.num_batches_tracked"] = \
                state[f"{path}.num_batches_tracked"].detach().cpu().clone()
    if missing:
        raise ExportError(f"state_dict entries needed by the exported layers are missing: "
                          f"{missing}")
    used_src = set()
    for layer in info:
        if layer["module"] is not None:
            used_src |= {k for k in state if k.startswith(layer["module"] + ".")}
    dropped = sorted(k for k in state if k not in used_src)
    return tensors, dropped


def _reference_model(model: nn.Module) -> nn.Module:
    """An eval-mode float64 copy of ``model``."""
    return copy.deepcopy(model).double().eval()


def _rebuild(description: dict[str, Any], tensors: dict[str, torch.Tensor]):
    """A float64 callable computing the description with the given weights:
    ``cnn_tools.build_model`` when available, else :func:`run_description`."""
    build = getattr(cnn_tools, "build_model", None)
    if build is not None:
        built = build(description)
        rebuilt = built[0] if isinstance(built, tuple) else built
        rebuilt.load_state_dict(tensors, strict=True)
        rebuilt = rebuilt.double().eval()
        return rebuilt, "cnn_tools.build_model"
    return (lambda x: run_description(description, tensors, x)), "export.run_description"


def _verify(model: nn.Module, description: dict[str, Any], tensors: dict[str, torch.Tensor],
            output_shape: tuple[int, ...], seed: int = 12345, n: int = 4) -> float:
    try:
        rebuilt, how = _rebuild(description, tensors)
    except Exception as e:
        raise ExportVerificationError(f"the exported description cannot be rebuilt: "
                                      f"{type(e).__name__}: {e}") from e
    ref = _reference_model(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n,) + tuple(description["input"]), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        got = rebuilt(x)
    if not isinstance(want, torch.Tensor) or want.numel() != got.numel():
        raise ExportVerificationError(
            f"the model's output ({getattr(want, 'shape', type(want).__name__)}) does not match "
            f"the exported description's output {list(got.shape)} ({how})")
    if tuple(got.shape[1:]) != tuple(output_shape):
        raise ExportVerificationError(f"rebuilt output shape {list(got.shape[1:])} != "
                                      f"{list(output_shape)} ({how})")
    want = want.reshape(got.shape)
    err = (got - want).abs().max().item()
    scale = max(1.0, want.abs().max().item())
    if not err <= 1e-9 * scale:
        raise ExportVerificationError(
            f"the exported description computes something else than the model (max abs "
            f"difference {err:.3g} in float64, rebuilt with {how})")
    return err


def export(model: nn.Module, input_shape: Sequence[int], toml_path: str | Path | None,
           weights_path: str | Path | None, name: str | None = None, *, verify: bool = True,
           dtype: torch.dtype = torch.float32, tensors: dict[str, torch.Tensor] | None = None
           ) -> ExportResult:
    """Export ``model`` for ``input_shape`` (``(C, H, W)``, ``(C, L)`` or ``(N,)``).

    Writes the MODEL_FORMAT.md TOML to ``toml_path`` and the weights (safetensors) to
    ``weights_path`` (either may be ``None`` to skip writing it). ``name`` goes into the
    TOML's first comment line and the safetensors metadata. Floating-point tensors are
    written as ``dtype`` (float32); ``num_batches_tracked`` stays int64. The model itself is
    not modified (a copy is traced in eval mode). With ``verify`` (default) the written
    description is rebuilt and checked against the model in float64, raising
    :class:`ExportVerificationError` on a mismatch.

    Raises :class:`UnsupportedLayerError` listing every node `cnn` cannot represent.
    """
    description, info = describe(model, input_shape)
    tensors, dropped = _export_tensors(model, description, info, dtype)
    output_shape = tuple(info[-1]["output_shape"])
    if verify:
        _verify(model, description, tensors, output_shape)
    title = f"{name}: " if name else ""
    comment = (f"{title}exported from PyTorch {torch.__version__} by tools/export.py: "
               f"{'x'.join(map(str, description['input']))} -> "
               f"{'x'.join(map(str, output_shape))}")
    text = description_to_toml(description, comment)
    if toml_path is not None:
        Path(toml_path).parent.mkdir(parents=True, exist_ok=True)
        Path(toml_path).write_text(text)
    if weights_path is not None:
        from safetensors.torch import save_file

        Path(weights_path).parent.mkdir(parents=True, exist_ok=True)
        # One metadata key only: safetensors writes several in a random order.
        gen = f"tools/export.py, torch {torch.__version__}" + (f", model {name}" if name else "")
        save_file(tensors, str(weights_path), metadata={"generator": gen})
    return ExportResult(
        name=name, description=description, toml=text, tensors=tensors,
        input_shape=tuple(description["input"]), output_shape=output_shape,
        params=sum(l["params"] for l in info), macs=sum(l["macs"] for l in info),
        layers=[{k: l[k] for k in ("name", "op", "output_shape", "params")} for l in info],
        dropped_keys=dropped)


def reference_data(model: nn.Module, result: ExportResult, n: int = 3, seed: int = 0
                   ) -> dict[str, torch.Tensor]:
    """Reference inputs/outputs in the conformance-case format.

    ``input``: ``[n, *input_shape]`` float32, N(0, 1) from a ``torch.Generator`` seeded with
    ``seed``; ``output``: ``[n, *output_shape]``, the model in eval mode in float64
    (``model.double()``, the float32 weights widened) on the widened inputs, rounded to
    float32.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n,) + tuple(result.input_shape), generator=gen, dtype=torch.float32)
    ref = _reference_model(model)
    with torch.no_grad():
        y = ref(x.double())
    y = y.reshape((n,) + tuple(result.output_shape)).to(torch.float32).contiguous()
    return {"input": x.contiguous(), "output": y}


def write_case_json(path: Path, case: dict[str, Any]) -> None:
    """case.json like the conformance cases: one key per line, one line per layer."""
    def dump(v: Any) -> str:
        return json.dumps(v, separators=(", ", ": "))

    lines = []
    for k, v in case.items():
        if k == "layers":
            inner = ",\n".join(f"  {dump(l)}" for l in v)
            lines.append(f' "layers": [\n{inner}\n ]')
        else:
            lines.append(f" {dump(k)}: {dump(v)}")
    Path(path).write_text("{\n" + ",\n".join(lines) + "\n}\n")


def export_case(model: nn.Module, input_shape: Sequence[int], out_dir: str | Path, name: str,
                n: int = 3, seed: int = 0, description: str | None = None,
                f32_tolerance: bool = False) -> ExportResult:
    """Write a conformance-style case: ``model.toml``, ``weights.safetensors``,
    ``data.safetensors`` (:func:`reference_data`) and ``case.json`` in ``out_dir``.

    With ``f32_tolerance``, ``case.json`` also gets ``torch_f32_max_abs_err`` (PyTorch's own
    float32 output against the float64 reference) and ``torch_f32_tolerance_ratio``
    (that error over ``1e-4 * max(1, max|output|)``)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    res = export(model, input_shape, out_dir / "model.toml", out_dir / "weights.safetensors",
                 name=name)
    data = reference_data(model, res, n=n, seed=seed)
    save_file(data, str(out_dir / "data.safetensors"),
              metadata={"generator": f"tools/export.py, torch {torch.__version__}, float64 "
                                     f"reference, case {name}"})
    case = {
        "name": name,
        "description": description or "exported by tools/export.py from PyTorch",
        "input_shape": list(res.input_shape),
        "output_shape": list(res.output_shape),
        "n_inputs": n,
        "params": res.params,
        "macs": res.macs,
        "layers": res.layers,
        "max_abs_output": float(data["output"].abs().max()),
    }
    if f32_tolerance:
        f32 = copy.deepcopy(model).float().eval()
        with torch.no_grad():
            y32 = f32(data["input"]).reshape(data["output"].shape)
            y64 = _reference_model(model)(data["input"].double()).reshape(data["output"].shape)
        err = float((y32.double() - y64).abs().max())
        case["torch_f32_max_abs_err"] = err
        case["torch_f32_tolerance_ratio"] = err / (1e-4 * max(1.0, case["max_abs_output"]))
    case["seed"] = seed
    case["torch_version"] = torch.__version__
    write_case_json(out_dir / "case.json", case)
    return res


def flatten_sequential(model: nn.Module, sep: str = "_") -> nn.Sequential:
    """A flat ``nn.Sequential`` of the leaf layers of nested containers.

    No longer needed for export (nested modules export with their dotted paths as names);
    kept for compatibility. Leaves are renamed by joining their path with ``sep``
    (``features.0`` -> ``features_0``). Only valid when the model's forward is the plain
    chain of its leaves in registration order. The layers are shared, not copied.
    """
    leaves: "OrderedDict[str, nn.Module]" = OrderedDict()

    def walk(prefix: str, m: nn.Module) -> None:
        kids = list(m.named_children())
        if prefix and (not kids or _is_leaf_layer(m)):
            if prefix in leaves:
                raise ExportError(f"flattened name {prefix!r} is used twice")
            leaves[prefix] = m
            return
        for n, c in kids:
            walk(f"{prefix}{sep}{n}" if prefix else n, c)

    walk("", model)
    return nn.Sequential(leaves)


def _is_leaf_layer(m: nn.Module) -> bool:
    return type(m).__name__ in SUPPORTED_LAYERS


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def _load_factory(spec: str) -> nn.Module:
    """``module.path:attr`` or ``file.py:attr`` -> the module (calling ``attr`` if needed)."""
    if ":" not in spec:
        raise SystemExit(f"error: expected MODULE:FACTORY, got {spec!r}")
    mod_name, attr = spec.rsplit(":", 1)
    if mod_name.endswith(".py") or "/" in mod_name:
        path = Path(mod_name).resolve()
        sys.path.insert(0, str(path.parent))
        mspec = importlib.util.spec_from_file_location(path.stem, path)
        if mspec is None or mspec.loader is None:
            raise SystemExit(f"error: cannot import {path}")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[path.stem] = module
        mspec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(mod_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        obj = obj()
    if not isinstance(obj, nn.Module):
        raise SystemExit(f"error: {spec} gave a {type(obj).__name__}, not an nn.Module")
    return obj


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Export a PyTorch CNN (any torch.fx-traceable module) to a `cnn` model "
                    "TOML + safetensors.",
        epilog="Example: python tools/export.py mynets:lenet --input 1 32 32 --out out/lenet")
    ap.add_argument("factory", help="MODULE:ATTR or path/file.py:ATTR; ATTR is an nn.Module "
                                    "or a callable returning one (called without arguments)")
    ap.add_argument("--input", nargs="+", type=int, required=True, metavar="DIM",
                    help="input shape without the batch: C H W, C L or N")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--name", help="model name for the TOML comment and metadata")
    ap.add_argument("--state-dict", type=Path,
                    help="weights to load first (.safetensors, or a torch.save'd state_dict)")
    ap.add_argument("--toml-name", default="model.toml")
    ap.add_argument("--weights-name", default="weights.safetensors")
    ap.add_argument("--no-verify", action="store_true", help="skip the float64 check")
    ap.add_argument("--reference", type=int, default=0, metavar="N",
                    help="also write data.safetensors + case.json with N random inputs and "
                         "the float64 torch outputs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --reference inputs")
    args = ap.parse_args(argv)
    if not 1 <= len(args.input) <= 3:
        ap.error("--input takes 1 to 3 sizes")

    model = _load_factory(args.factory)
    if args.state_dict:
        model.load_state_dict(_load_state(args.state_dict), strict=True)
    name = args.name or args.factory.rsplit(":", 1)[1]
    try:
        if args.reference:
            res = export_case(model, args.input, args.out, name, n=args.reference,
                              seed=args.seed)
        else:
            res = export(model, args.input, args.out / args.toml_name,
                         args.out / args.weights_name, name=name, verify=not args.no_verify)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for layer in res.layers:
        print(f"  {layer['name']:>24} {layer['op']:<18} {layer['output_shape']!s:<16} "
              f"{layer['params']}")
    print(f"{name}: {list(res.input_shape)} -> {list(res.output_shape)}, {res.params} params, "
          f"{res.macs} MACs; wrote {args.out}")
    if res.dropped_keys:
        print(f"note: {len(res.dropped_keys)} state_dict entries used by no layer were not "
              f"written: {res.dropped_keys[:8]}{' ...' if len(res.dropped_keys) > 8 else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
