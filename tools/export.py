#!/usr/bin/env python3
"""Export a PyTorch CNN to the `cnn` model description (TOML) and weights (safetensors).

The model must be a ``torch.nn.Sequential``, or a module whose children, in registration
order, are the layers of a straight chain (its ``forward`` applies them one after the other).
Each child becomes one ``[[layers]]`` table of MODEL_FORMAT.md; its ``name`` is the child's
name, omitted when it equals the child's 0-based index (the format's implicit name), so the
weight keys are exactly the model's ``state_dict()`` keys (``conv1.weight``, ``3.bias``, ...).

Supported children (anything else raises :class:`UnsupportedLayerError`):

==========================================  ===============================================
PyTorch                                     TOML op
==========================================  ===============================================
``nn.Conv2d`` (padding_mode='zeros')        ``conv`` (kernel, stride, padding int/pair/
                                            'same'/'valid', dilation, groups, bias)
``nn.MaxPool2d`` (no return_indices)        ``max_pool`` (kernel, stride, padding, dilation,
                                            ceil_mode)
``nn.AvgPool2d`` (no divisor_override)      ``avg_pool`` (kernel, stride, padding, ceil_mode,
                                            count_include_pad)
``nn.AdaptiveAvgPool2d`` /                  ``global_avg_pool`` / ``global_max_pool`` for
``nn.AdaptiveMaxPool2d``                    output size 1 when followed by ``nn.Flatten`` or
                                            last; otherwise, when the output size divides
                                            the input size, the equivalent fixed
                                            ``avg_pool`` / ``max_pool``
``nn.Flatten`` (start_dim=1, end_dim=-1)    ``flatten``
``nn.Linear``                               ``linear``
``nn.BatchNorm2d`` / ``nn.BatchNorm1d``     ``batch_norm`` (eps; affine and running stats
                                            required; exported in inference mode)
``nn.ReLU``, ``nn.ReLU6``, ``nn.Tanh``,     ``relu``, ``relu6``, ``tanh``, ``sigmoid``
``nn.Sigmoid``
``nn.LeakyReLU``                            ``leaky_relu`` (slope)
``nn.Softmax`` (dim 1 or -1, vector input)  ``softmax``
``nn.Dropout``, ``nn.Dropout2d``            ``dropout`` (p; identity at inference)
``cnn_tools.GlobalAvgPool2d`` / ``...Max``  ``global_avg_pool`` / ``global_max_pool``
==========================================  ===============================================

A global pool gives ``[C]`` where PyTorch's adaptive pool gives ``[C, 1, 1]``; the values
are the same in C, H, W order, and an ``nn.Flatten`` after it is a no-op in `cnn`.

Nested containers (a child that is itself a ``Sequential`` or has children) are rejected:
a weight key like ``features.0.weight`` cannot be a layer name. :func:`flatten_sequential`
turns such a model into a flat ``Sequential`` with names like ``features_0``.

By default :func:`export` verifies the result: it rebuilds the model from the written
description (``cnn_tools.build_sequential``), loads the written weights strictly and checks
that it computes the same as the given model in float64 (this also catches a custom
``forward`` that is not the plain chain of its children).

Python use::

    from export import export
    export(model, (1, 28, 28), "models/mynet.toml", "mynet.safetensors", name="mynet")

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
import json
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
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
    "export",
    "export_case",
    "reference_data",
    "flatten_sequential",
]

#: Names of the supported PyTorch layer types (for error messages and docs).
SUPPORTED_LAYERS = (
    "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Flatten",
    "Linear", "BatchNorm2d", "BatchNorm1d", "ReLU", "ReLU6", "Tanh", "Sigmoid", "LeakyReLU",
    "Softmax", "Dropout", "Dropout2d", "GlobalAvgPool2d", "GlobalMaxPool2d",
)
_SUPPORTED_TEXT = ", ".join(f"nn.{n}" for n in SUPPORTED_LAYERS[:-2]) + \
    " (and cnn_tools.GlobalAvgPool2d/GlobalMaxPool2d)"


class ExportError(Exception):
    """The model cannot be exported as a `cnn` description."""


class UnsupportedLayerError(ExportError):
    """A child layer has a type or a setting that `cnn` does not support."""

    def __init__(self, name: str, module: nn.Module, reason: str | None = None):
        self.layer_name = name
        self.layer_type = type(module).__name__
        if reason is None:
            reason = (f"layer type {self.layer_type} is not supported; "
                      f"supported layers: {_SUPPORTED_TEXT}")
        super().__init__(f"layer {name!r} ({self.layer_type}): {reason}")


class NestedContainerError(UnsupportedLayerError):
    """A child is itself a container (nested ``Sequential`` or a module with children)."""


class ExportVerificationError(ExportError):
    """The exported description does not compute what the PyTorch model computes."""


@dataclass
class ExportResult:
    """What :func:`export` produced."""

    name: str | None
    description: dict[str, Any]          # {"input": [C,H,W], "layers": [...]} as in the TOML
    toml: str                            # the TOML text
    tensors: dict[str, torch.Tensor]     # the weights as written
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, ...]        # as `cnn` sees it (a global pool gives [C])
    params: int                          # learnable values (torch parameters())
    macs: int                            # conv out*H'*W'*(in/groups)*kh*kw + linear in*out
    layers: list[dict[str, Any]] = field(default_factory=list)  # name, op, output_shape, params


# ---------------------------------------------------------------------------------------
# Conversion
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


def _check_finite(name: str, module: nn.Module, what: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise UnsupportedLayerError(name, module, f"{what} = {value} is not finite")
    return value


def _children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    children = list(model.named_children())
    if not children:
        raise ExportError(f"{type(model).__name__} has no child layers to export "
                          "(pass an nn.Sequential or a module whose children are the layers)")
    return children


def _is_flatten(m: nn.Module | None) -> bool:
    return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1


def _convert(name: str, m: nn.Module, in_shape: tuple[int, ...],
             next_module: nn.Module | None, is_last: bool) -> dict[str, Any]:
    """One child -> one layer table (without the name)."""
    spatial = len(in_shape) == 3

    def need(cond: bool, reason: str) -> None:
        if not cond:
            raise UnsupportedLayerError(name, m, reason)

    if isinstance(m, nn.Conv2d):
        need(m.padding_mode == "zeros",
             f"padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
        need(spatial, f"needs a [C, H, W] input, got {list(in_shape)}")
        layer: dict[str, Any] = {"op": "conv", "out": int(m.out_channels),
                                 "kernel": _compact(_pair(m.kernel_size))}
        if _pair(m.stride) != (1, 1):
            layer["stride"] = _compact(_pair(m.stride))
        if isinstance(m.padding, str):
            need(m.padding in ("same", "valid"), f"padding={m.padding!r}")
            if m.padding == "same":
                layer["padding"] = "same"
        elif _pair(m.padding) != (0, 0):
            layer["padding"] = _compact(_pair(m.padding))
        if _pair(m.dilation) != (1, 1):
            layer["dilation"] = _compact(_pair(m.dilation))
        if m.groups != 1:
            layer["groups"] = int(m.groups)
        if m.bias is None:
            layer["bias"] = False
        return layer

    if isinstance(m, nn.MaxPool2d):
        need(not m.return_indices, "return_indices=True is not supported")
        need(spatial, f"needs a [C, H, W] input, got {list(in_shape)}")
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        layer = {"op": "max_pool", "kernel": _compact(k)}
        if s != k:
            layer["stride"] = _compact(s)
        if _pair(m.padding) != (0, 0):
            layer["padding"] = _compact(_pair(m.padding))
        if _pair(m.dilation) != (1, 1):
            layer["dilation"] = _compact(_pair(m.dilation))
        if m.ceil_mode:
            layer["ceil_mode"] = True
        return layer

    if isinstance(m, nn.AvgPool2d):
        need(m.divisor_override is None,
             f"divisor_override={m.divisor_override} is not supported")
        need(spatial, f"needs a [C, H, W] input, got {list(in_shape)}")
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        layer = {"op": "avg_pool", "kernel": _compact(k)}
        if s != k:
            layer["stride"] = _compact(s)
        if _pair(m.padding) != (0, 0):
            layer["padding"] = _compact(_pair(m.padding))
        if m.ceil_mode:
            layer["ceil_mode"] = True
        if not m.count_include_pad:
            layer["count_include_pad"] = False
        return layer

    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        is_max = isinstance(m, nn.AdaptiveMaxPool2d)
        if is_max:
            need(not m.return_indices, "return_indices=True is not supported")
        need(spatial, f"needs a [C, H, W] input, got {list(in_shape)}")
        size = m.output_size
        size = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
        if len(size) == 1:
            size = (size[0], size[0])
        oh = in_shape[1] if size[0] is None else int(size[0])
        ow = in_shape[2] if size[1] is None else int(size[1])
        if (oh, ow) == (1, 1) and (is_last or _is_flatten(next_module)):
            return {"op": "global_max_pool" if is_max else "global_avg_pool"}
        h, w = in_shape[1], in_shape[2]
        need(oh >= 1 and ow >= 1 and h % oh == 0 and w % ow == 0,
             f"output_size {(oh, ow)} on a {h}x{w} input: only an output size that divides "
             "the input size (an ordinary pool) or a global pool (output size 1 followed by "
             "nn.Flatten or at the end) can be exported")
        k = (h // oh, w // ow)
        return {"op": "max_pool" if is_max else "avg_pool", "kernel": _compact(k)}

    if isinstance(m, (cnn_tools.GlobalAvgPool2d, cnn_tools.GlobalMaxPool2d)):
        need(spatial, f"needs a [C, H, W] input, got {list(in_shape)}")
        is_max = isinstance(m, cnn_tools.GlobalMaxPool2d)
        return {"op": "global_max_pool" if is_max else "global_avg_pool"}

    if isinstance(m, nn.Flatten):
        need(m.start_dim == 1 and m.end_dim in (-1, len(in_shape)),
             f"only Flatten(start_dim=1, end_dim=-1) is supported, got "
             f"start_dim={m.start_dim}, end_dim={m.end_dim}")
        return {"op": "flatten"}

    if isinstance(m, nn.Linear):
        need(not spatial, f"needs a vector input (add nn.Flatten() before it), got "
                          f"{list(in_shape)}")
        layer = {"op": "linear", "out": int(m.out_features)}
        if m.bias is None:
            layer["bias"] = False
        return layer

    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        need(m.affine, "affine=False is not supported (the weight file needs "
                       f"{name}.weight and {name}.bias; use affine=True with weight 1, bias 0)")
        need(m.track_running_stats and m.running_mean is not None,
             "track_running_stats=False is not supported: it normalises with batch "
             "statistics even in eval mode; `cnn` needs running_mean/running_var")
        need(len(in_shape) == (3 if isinstance(m, nn.BatchNorm2d) else 1),
             f"{type(m).__name__} on an input of shape {list(in_shape)}")
        layer = {"op": "batch_norm"}
        eps = _check_finite(name, m, "eps", m.eps)
        need(eps > 0, f"eps must be > 0, got {eps}")
        if eps != 1e-5:
            layer["eps"] = eps
        return layer

    if isinstance(m, nn.ReLU6):
        return {"op": "relu6"}
    if isinstance(m, nn.ReLU):
        return {"op": "relu"}
    if isinstance(m, nn.Tanh):
        return {"op": "tanh"}
    if isinstance(m, nn.Sigmoid):
        return {"op": "sigmoid"}
    if isinstance(m, nn.LeakyReLU):
        slope = _check_finite(name, m, "negative_slope", m.negative_slope)
        return {"op": "leaky_relu"} if slope == 0.01 else {"op": "leaky_relu", "slope": slope}
    if isinstance(m, nn.Softmax):
        need(not spatial, f"softmax is only supported on a vector (over its features), "
                          f"not on a {list(in_shape)} tensor")
        need(m.dim in (1, -1, None), f"dim={m.dim}: only dim=1 or -1 (the features)")
        return {"op": "softmax"}
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        p = _check_finite(name, m, "p", m.p)
        need(0 <= p < 1, f"p must be in [0, 1), got {p}")
        return {"op": "dropout"} if p == 0.5 else {"op": "dropout", "p": p}

    if len(list(m.children())) > 0:
        raise NestedContainerError(
            name, m,
            "nested containers are not supported: a `cnn` model is a flat list of layers and "
            f"a weight key like '{name}.0.weight' cannot be a layer name. Flatten the model "
            "first, e.g. export(flatten_sequential(model), ...) from tools/export.py, which "
            f"names the inner layers '{name}_0', '{name}_1', ...")
    raise UnsupportedLayerError(name, m)


def _layer_tensor_keys(name: str, m: nn.Module) -> list[str]:
    return [f"{name}.{k}" for k in m.state_dict().keys()]


def describe(model: nn.Module, input_shape: Sequence[int]
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The description dict of ``model`` and per-layer info, without writing anything.

    Returns ``(description, layers)``: ``description`` is ``{"input": [C, H, W], "layers":
    [...]}`` (what the TOML contains) and ``layers`` lists ``name``, ``op``, ``output_shape``
    (as `cnn` sees it), ``params`` and ``macs`` per layer. Raises
    :class:`UnsupportedLayerError` / :class:`NestedContainerError` / :class:`ExportError`.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ExportError(f"input_shape must be (C, H, W) of positive ints, got {input_shape}")
    children = _children(model)
    # Trace shapes on an eval-mode copy so the user's model (BN statistics, mode) is untouched.
    traced = copy.deepcopy(model).eval()
    traced_children = dict(traced.named_children())
    x = torch.zeros((2,) + input_shape, dtype=next(
        (p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32))
    layers, info = [], []
    shape = input_shape
    for i, (name, m) in enumerate(children):
        if not cnn_tools.NAME_RE.match(name):
            raise ExportError(f"layer {name!r} ({type(m).__name__}): layer names must be ASCII "
                              "letters, digits and '_' (rename the child)")
        nxt = children[i + 1][1] if i + 1 < len(children) else None
        # Convert first: rejects unsupported layers with a clear message before torch runs.
        layer = _convert(name, m, shape, nxt, nxt is None)
        try:
            with torch.no_grad():
                y = traced_children[name](x)
        except Exception as e:
            raise ExportError(f"layer {name!r} ({type(m).__name__}) fails on an input of shape "
                              f"{list(shape)}: {e}") from e
        if not isinstance(y, torch.Tensor):
            raise UnsupportedLayerError(name, m, f"returns {type(y).__name__}, not a tensor")
        out_torch = tuple(y.shape[1:])
        # The `cnn` output shape: global pools give [C], everything else as torch.
        out = (shape[0],) if layer["op"] in ("global_avg_pool", "global_max_pool") else out_torch
        if layer["op"] == "flatten":
            out = (math.prod(shape),)
            x = y.reshape(y.shape[0], -1)
        else:
            x = y if len(out) == len(out_torch) else y.reshape((y.shape[0],) + out)
        params = sum(p.numel() for p in m.parameters())
        macs = 0
        if layer["op"] == "conv":
            kh, kw = _pair(m.kernel_size)
            macs = out[0] * out[1] * out[2] * (shape[0] // m.groups) * kh * kw
        elif layer["op"] == "linear":
            macs = shape[0] * out[0]
        table = ({} if name == str(i) else {"name": name})
        table.update(layer)
        layers.append(table)
        info.append({"name": name, "op": layer["op"], "output_shape": list(out),
                     "params": params, "macs": macs})
        shape = out
    return {"input": list(input_shape), "layers": layers}, info


# ---------------------------------------------------------------------------------------
# TOML
# ---------------------------------------------------------------------------------------

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
        order = ["name", "op"] + list(cnn_tools.OP_ARGS.get(layer["op"], ()))
        for key in order + [k for k in layer if k not in order]:
            if key in layer:
                lines.append(f"{key} = {_fmt_value(layer[key])}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------

def _export_tensors(model: nn.Module, info: list[dict[str, Any]],
                    dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state_dict to write, with its keys checked against the layers."""
    state = model.state_dict()
    children = dict(model.named_children())
    expected = []
    for layer in info:
        expected += _layer_tensor_keys(layer["name"], children[layer["name"]])
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ExportError(f"state_dict entries that belong to no child layer: {extra} "
                          "(parameters/buffers registered on the model itself are not supported)")
    tensors = {}
    for key in expected:
        t = state[key].detach().cpu()
        if t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.clone().contiguous()  # clone: no shared storage for save_file
    return tensors


def _reference_model(model: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """An eval-mode float64 copy of ``model`` holding exactly the exported weight values."""
    ref = copy.deepcopy(model)
    ref.load_state_dict(tensors, strict=True)
    return ref.double().eval()


def _verify(model: nn.Module, description: dict[str, Any], tensors: dict[str, torch.Tensor],
            output_shape: tuple[int, ...], seed: int = 12345) -> None:
    rebuilt, shapes = cnn_tools.build_sequential(description, source="<exported description>")
    if tuple(shapes[-1][2]) != tuple(output_shape):
        raise ExportVerificationError(f"rebuilt output shape {shapes[-1][2]} != {output_shape}")
    rebuilt.load_state_dict(tensors, strict=True)
    rebuilt = rebuilt.double().eval()
    ref = _reference_model(model, tensors)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((4,) + tuple(description["input"]), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        got = rebuilt(x)
    if not isinstance(want, torch.Tensor) or want.numel() != got.numel():
        raise ExportVerificationError(
            f"the model's output ({getattr(want, 'shape', type(want).__name__)}) does not match "
            f"the exported description's output {list(got.shape)}: is its forward() the plain "
            "chain of its children?")
    want, got = want.reshape(got.shape), got
    err = (got - want).abs().max().item()
    scale = max(1.0, want.abs().max().item())
    if not err <= 1e-9 * scale:
        raise ExportVerificationError(
            f"the exported description computes something else than the model (max abs "
            f"difference {err:.3g} in float64): is its forward() the plain chain of its "
            "children, with nothing in between (functional ops, residuals, reshapes)?")


def export(model: nn.Module, input_shape: Sequence[int], toml_path: str | Path | None,
           weights_path: str | Path | None, name: str | None = None, *, verify: bool = True,
           dtype: torch.dtype = torch.float32) -> ExportResult:
    """Export ``model`` for ``input_shape = (C, H, W)``.

    Writes the MODEL_FORMAT.md TOML to ``toml_path`` and
    ``safetensors.torch.save_file(state_dict)`` to ``weights_path`` (either may be ``None``
    to skip writing it). ``name`` goes into the TOML's first comment line and the
    safetensors metadata. Floating-point tensors are written as ``dtype`` (float32);
    ``num_batches_tracked`` stays int64. The model itself is not modified (a copy is traced
    in eval mode). With ``verify`` (default) the written description is rebuilt and checked
    against the model in float64, raising :class:`ExportVerificationError` on a mismatch.

    Raises :class:`UnsupportedLayerError` (with the child's name and type) for a layer
    `cnn` cannot represent, :class:`NestedContainerError` for nested containers.
    """
    description, info = describe(model, input_shape)
    tensors = _export_tensors(model, info, dtype)
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
        layers=[{k: l[k] for k in ("name", "op", "output_shape", "params")} for l in info])


def reference_data(model: nn.Module, result: ExportResult, n: int = 3, seed: int = 0
                   ) -> dict[str, torch.Tensor]:
    """Reference inputs/outputs in the conformance-case format.

    ``input``: ``[n, C, H, W]`` float32, N(0, 1) from a ``torch.Generator`` seeded with
    ``seed``; ``output``: ``[n, *output_shape]``, the model in eval mode in float64
    (``model.double()``, with the exported float32 weights widened) on the widened inputs,
    rounded to float32.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n,) + tuple(result.input_shape), generator=gen, dtype=torch.float32)
    ref = _reference_model(model, result.tensors)
    with torch.no_grad():
        y = ref(x.double())
    y = y.reshape((n,) + tuple(result.output_shape)).to(torch.float32).contiguous()
    return {"input": x.contiguous(), "output": y}


def export_case(model: nn.Module, input_shape: Sequence[int], out_dir: str | Path, name: str,
                n: int = 3, seed: int = 0, description: str | None = None) -> ExportResult:
    """Write a conformance-style case: ``model.toml``, ``weights.safetensors``,
    ``data.safetensors`` (:func:`reference_data`) and ``case.json`` in ``out_dir``."""
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
        "description": description or f"exported by tools/export.py from PyTorch",
        "input_shape": list(res.input_shape),
        "output_shape": list(res.output_shape),
        "n_inputs": n,
        "params": res.params,
        "macs": res.macs,
        "layers": res.layers,
        "max_abs_output": float(data["output"].abs().max()),
        "seed": seed,
        "torch_version": torch.__version__,
    }
    # Like the conformance cases: one key per line, one line per layer.
    def dump(v: Any) -> str:
        return json.dumps(v, separators=(", ", ": "))

    lines = []
    for k, v in case.items():
        if k == "layers":
            inner = ",\n".join(f"  {dump(l)}" for l in v)
            lines.append(f' "layers": [\n{inner}\n ]')
        else:
            lines.append(f" {dump(k)}: {dump(v)}")
    (out_dir / "case.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    return res


def flatten_sequential(model: nn.Module, sep: str = "_") -> nn.Sequential:
    """A flat ``nn.Sequential`` of the leaf layers of nested containers.

    Leaves are renamed by joining their path with ``sep`` (``features.0`` ->
    ``features_0``). Only valid when the model's forward is the plain chain of its leaves
    in registration order (export's verification checks it). The layers are shared, not
    copied.
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
        description="Export a PyTorch nn.Sequential CNN to a `cnn` model TOML + safetensors.",
        epilog="Example: python tools/export.py mynets:lenet --input 1 32 32 --out out/lenet")
    ap.add_argument("factory", help="MODULE:ATTR or path/file.py:ATTR; ATTR is an nn.Module "
                                    "or a callable returning one (called without arguments)")
    ap.add_argument("--input", nargs=3, type=int, required=True, metavar=("C", "H", "W"))
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
        print(f"  {layer['name']:>12} {layer['op']:<16} {layer['output_shape']!s:<16} "
              f"{layer['params']}")
    print(f"{name}: {list(res.input_shape)} -> {list(res.output_shape)}, {res.params} params, "
          f"{res.macs} MACs; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
