#!/usr/bin/env python3
"""Tests of tools/export.py (and of cnn_tools.build_sequential), pytest-style.

Run with ``python tools/test_export.py`` (no pytest needed) or ``pytest tools/test_export.py``.

    python tools/test_export.py                        # run the tests
    python tools/test_export.py -k depthwise           # only tests whose name contains it
    python tools/test_export.py --write-fixtures DIR   # write DIR/<network>/{model.toml,
                                                       #   weights.safetensors,
                                                       #   data.safetensors, case.json}

The fixtures have the format of the conformance cases (``shared/conformance/cases``):
``data.safetensors`` holds ``input`` ``[3, C, H, W]`` (seeded N(0, 1), float32) and
``output`` ``[3, *output_shape]``, the model in eval mode in float64 (``model.double()``
on the float32 weights and inputs) rounded to float32. Everything is seeded: the same
torch version writes the same files.

The conformance cases (the repository's copy in ``tests/conformance``) are also
used: every case is rebuilt in torch from its TOML (must reproduce the stored outputs), then
exported and re-read (must give the same layers and outputs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tomllib
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import warnings

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn_tools  # noqa: E402
from export import (  # noqa: E402
    ExportError, ExportVerificationError, NestedContainerError, UnsupportedLayerError,
    export, export_case, flatten_sequential, run_description)

# torch's notes on padding='same' with even kernels and on zero-sized layers (built while
# checking that invalid descriptions are rejected) are expected here.
warnings.filterwarnings("ignore", message="Using padding='same'")
warnings.filterwarnings("ignore", message="Initializing zero-element tensors")

# The repository's byte-identical copy of the shared suite (tests/conformance).
CONFORMANCE = Path(__file__).resolve().parent.parent / "tests" / "conformance"

# ---------------------------------------------------------------------------------------
# Test networks (deterministic: each builder seeds torch itself)
# ---------------------------------------------------------------------------------------


def _randomize_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics (as in the conformance cases), so a skipped BN shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
                m.num_batches_tracked.fill_(7)


def lenet_like() -> nn.Module:
    """LeNet-like: named and index-named children, max and avg pool, softmax at the end."""
    torch.manual_seed(101)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 6, 5)),
        ("1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)),
        ("4", nn.Tanh()),
        ("pool2", nn.AvgPool2d(2)),
        ("6", nn.Flatten()),
        ("fc1", nn.Linear(400, 120)),
        ("8", nn.Sigmoid()),
        ("fc2", nn.Linear(120, 84)),
        ("10", nn.ReLU()),
        ("fc3", nn.Linear(84, 10)),
        ("softmax", nn.Softmax(dim=1)),
    ]))


def conv_bn_relu6_pool() -> nn.Module:
    """Conv/BN/ReLU6, a ceil-mode max pool that adds a window, a global average pool head,
    dropout, BatchNorm1d with a custom eps."""
    torch.manual_seed(202)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8, eps=1e-3),
        nn.ReLU6(),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        nn.Conv2d(8, 16, 3, stride=(1, 2), padding=(1, 0)),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(16, 10),
        nn.BatchNorm1d(10, eps=0.01),
        nn.Sigmoid(),
    )
    with torch.no_grad():
        model[0].weight.mul_(4.0)  # so that ReLU6 really clips at 6
    _randomize_bn(model, 203)
    return model


def depthwise_same_leaky() -> nn.Module:
    """Depthwise convs with padding='same' (odd and even kernels, multiplier 2), leaky ReLU,
    a padded ceil-mode average pool that excludes padding, a global max pool head."""
    torch.manual_seed(303)
    return nn.Sequential(OrderedDict([
        ("dw1", nn.Conv2d(4, 4, 3, padding="same", groups=4)),
        ("act1", nn.LeakyReLU(0.2)),
        ("dw2", nn.Conv2d(4, 8, (4, 2), padding="same", dilation=(1, 3), groups=4)),
        ("act2", nn.LeakyReLU()),
        ("pw", nn.Conv2d(8, 12, 1)),
        ("pool", nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                              count_include_pad=False)),
        ("gmax", nn.AdaptiveMaxPool2d(1)),
        ("flat", nn.Flatten()),
        ("fc", nn.Linear(12, 5)),
        ("out", nn.Tanh()),
    ]))


def spatial_output() -> nn.Module:
    """A fully convolutional net with a [C, H, W] output: strided dilated conv, dilated max
    pool, valid padding, no-bias conv + BN2d, an adaptive pool that divides its input."""
    torch.manual_seed(404)
    model = nn.Sequential(OrderedDict([
        ("enc", nn.Conv2d(3, 8, 3, stride=2, padding=2, dilation=2)),
        ("1", nn.ReLU()),
        ("pool", nn.MaxPool2d(2, stride=1, padding=1, dilation=2)),
        ("mix", nn.Conv2d(8, 6, (3, 1), padding="valid", bias=False)),
        ("bn", nn.BatchNorm2d(6)),
        ("5", nn.Sigmoid()),
        ("down", nn.AdaptiveAvgPool2d((2, 3))),
    ]))
    _randomize_bn(model, 405)
    return model


def global_pool_last() -> nn.Module:
    """An adaptive average pool to 1x1 as the last layer: exported as global_avg_pool,
    output [C] (torch's [C, 1, 1] in the same order)."""
    torch.manual_seed(505)
    return nn.Sequential(nn.Conv2d(2, 5, 3), nn.ReLU(), nn.Conv2d(5, 7, 3, stride=2),
                         nn.AdaptiveAvgPool2d(1))


class ChainNet(nn.Module):
    """A non-Sequential module whose forward is the plain chain of its children."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.act(self.conv(x)))))


def chain_module() -> nn.Module:
    """A custom nn.Module (not a Sequential) with chained children."""
    torch.manual_seed(606)
    return ChainNet()


def fusion_edges() -> nn.Module:
    """Plan edge cases: a batch norm and an activation on the input itself, a conv whose
    batch norm follows a dropout, two batch norms and two activations in a row, a
    BatchNorm1d after flatten (not foldable into the conv), a linear folded through a
    dropout, sigmoid then tanh, softmax last."""
    torch.manual_seed(707)
    model = nn.Sequential(OrderedDict([
        ("bn_in", nn.BatchNorm2d(3)),
        ("1", nn.ReLU()),
        ("conv", nn.Conv2d(3, 4, 3, padding=1)),
        ("3", nn.Dropout(0.1)),
        ("bn_a", nn.BatchNorm2d(4)),
        ("bn_b", nn.BatchNorm2d(4, eps=1e-3)),
        ("6", nn.ReLU()),
        ("7", nn.ReLU6()),
        ("8", nn.Flatten()),
        ("bn_flat", nn.BatchNorm1d(4 * 5 * 6)),
        ("fc", nn.Linear(120, 9)),
        ("11", nn.Dropout(0.2)),
        ("bn_fc", nn.BatchNorm1d(9)),
        ("13", nn.Sigmoid()),
        ("14", nn.Tanh()),
        ("15", nn.Softmax(dim=1)),
    ]))
    _randomize_bn(model, 708)
    return model.eval()


def activation_only() -> nn.Module:
    """No kernel writes the output: a single in-place activation on a spatial input."""
    return nn.Sequential(nn.LeakyReLU(0.3)).eval()


def spatial_inplace_tail() -> nn.Module:
    """Spatial output whose last layers (pool, activation, batch norm) follow the conv."""
    torch.manual_seed(909)
    model = nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
        nn.MaxPool2d(2, stride=1, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(3),
        nn.Sigmoid(),
    )
    _randomize_bn(model, 910)
    return model.eval()


#: name -> (builder, input shape, expected output shape as `cnn` sees it)
NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int], tuple[int, ...]]] = {
    "lenet_like": (lenet_like, (1, 32, 32), (10,)),
    "conv_bn_relu6_pool": (conv_bn_relu6_pool, (3, 16, 15), (10,)),
    "depthwise_same_leaky": (depthwise_same_leaky, (4, 12, 9), (5,)),
    "spatial_output": (spatial_output, (3, 19, 23), (6, 2, 3)),
    "global_pool_last": (global_pool_last, (2, 12, 10), (7,)),
    "chain_module": (chain_module, (1, 10, 10), (3,)),
    "fusion_edges": (fusion_edges, (3, 5, 6), (9,)),
    "activation_only": (activation_only, (2, 3, 4), (2, 3, 4)),
    "spatial_inplace_tail": (spatial_inplace_tail, (2, 9, 8), (3, 8, 5)),
}

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _export_to(tmp: Path, model: nn.Module, input_shape, name: str):
    res = export(model, input_shape, tmp / f"{name}.toml", tmp / f"{name}.safetensors",
                 name=name)
    return res, tmp / f"{name}.toml", tmp / f"{name}.safetensors"


def _check_export(name: str) -> None:
    builder, input_shape, out_shape = NETWORKS[name]
    model = builder()
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as d:
        res, toml_path, w_path = _export_to(Path(d), model, input_shape, name)
        # The model is untouched (no BN statistics update, same training flag).
        assert model.training
        for k, v in model.state_dict().items():
            assert torch.equal(v, state_before[k]), k
        # TOML re-parses to the same description and is valid for cnn_tools.
        with open(toml_path, "rb") as f:
            parsed = tomllib.load(f)
        assert parsed == res.description, (parsed, res.description)
        assert parsed["input"] == list(input_shape)
        cnn_tools.parse_description(parsed, str(toml_path))
        assert tuple(res.output_shape) == out_shape, (res.output_shape, out_shape)
        # Names: the child's name, omitted exactly when it equals the index.
        children = [n for n, _ in model.named_children()]
        assert cnn_tools.layer_names(parsed["layers"]) == children
        for i, (layer, child) in enumerate(zip(parsed["layers"], children)):
            assert ("name" in layer) == (child != str(i)), (i, layer, child)
        # Weights: same keys and shapes as the state_dict, float32 (int64 counters).
        state = model.state_dict()
        with safe_open(str(w_path), "pt") as f:
            keys = set(f.keys())
            assert keys == set(state), (sorted(keys ^ set(state)))
            for k in keys:
                t = f.get_tensor(k)
                assert tuple(t.shape) == tuple(state[k].shape), k
                want = torch.int64 if k.endswith("num_batches_tracked") else torch.float32
                assert t.dtype == want, (k, t.dtype)
                assert torch.equal(t, state[k].to(t.dtype)), k
        # Rebuilt from the files, it computes what the model computes.
        rebuilt, shapes = cnn_tools.build_sequential(toml_path)
        assert [list(s[2]) for s in shapes] == [l["output_shape"] for l in res.layers]
        rebuilt.load_state_dict(load_file(str(w_path)), strict=True)
        assert cnn_tools.count_params(rebuilt) == res.params == cnn_tools.count_params(model)
        x = torch.randn((5,) + tuple(input_shape), generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
        with torch.no_grad():
            want = model.double().eval()(x)
            got = rebuilt.double().eval()(x)
        assert got.shape == (5,) + out_shape
        assert torch.allclose(got, want.reshape(got.shape), rtol=1e-10, atol=1e-12)


def _expect(exc_type, fn, *words: str):
    try:
        fn()
    except exc_type as e:
        msg = str(e)
        for w in words:
            assert w in msg, f"{w!r} not in error message: {msg}"
        return e
    raise AssertionError(f"expected {exc_type.__name__}")


def _export_only(model: nn.Module, input_shape=(1, 16, 16)):
    return lambda: export(model, input_shape, None, None)


# ---------------------------------------------------------------------------------------
# Tests: exports
# ---------------------------------------------------------------------------------------


def test_export_lenet_like():
    _check_export("lenet_like")


def test_export_conv_bn_relu6_pool():
    _check_export("conv_bn_relu6_pool")
    res = export(conv_bn_relu6_pool(), (3, 16, 15), None, None)
    ops = [l["op"] for l in res.description["layers"]]
    assert ops[7:9] == ["global_avg_pool", "flatten"], ops
    assert res.description["layers"][1] == {"op": "batch_norm", "eps": 1e-3}
    assert res.description["layers"][3] == {"op": "max_pool", "kernel": 3, "stride": 2,
                                            "ceil_mode": True}
    # ceil mode really adds a window here: floor would give 7x7.
    assert res.layers[3]["output_shape"] == [8, 8, 7]
    assert "eps = 0.001" in res.toml and "eps = 0.01" in res.toml


def test_export_depthwise_same_leaky():
    _check_export("depthwise_same_leaky")
    res = export(depthwise_same_leaky(), (4, 12, 9), None, None)
    # ceil mode adds a last row window that starts on the last input row (12 -> 7, not 6).
    assert res.layers[5]["output_shape"] == [12, 7, 5]
    layers = res.description["layers"]
    assert layers[0] == {"name": "dw1", "op": "conv", "out": 4, "kernel": 3,
                         "padding": "same", "groups": 4}
    assert layers[2]["kernel"] == [4, 2] and layers[2]["dilation"] == [1, 3]
    assert layers[1] == {"name": "act1", "op": "leaky_relu", "slope": 0.2}
    assert layers[3] == {"name": "act2", "op": "leaky_relu"}
    assert layers[5] == {"name": "pool", "op": "avg_pool", "kernel": 3, "stride": 2,
                         "padding": 1, "ceil_mode": True, "count_include_pad": False}
    assert layers[6] == {"name": "gmax", "op": "global_max_pool"}


def test_export_spatial_output():
    _check_export("spatial_output")
    res = export(spatial_output(), (3, 19, 23), None, None)
    # AdaptiveAvgPool2d((2, 3)) on 8x12 is avg_pool(kernel 4).
    assert res.description["layers"][-1] == {"name": "down", "op": "avg_pool", "kernel": 4}
    assert res.description["layers"][3] == {"name": "mix", "op": "conv", "out": 6,
                                            "kernel": [3, 1], "bias": False}
    assert res.output_shape == (6, 2, 3)


def test_export_global_pool_last():
    _check_export("global_pool_last")
    res = export(global_pool_last(), (2, 12, 10), None, None)
    assert res.description["layers"][-1] == {"op": "global_avg_pool"}
    assert "name" not in res.toml  # all children are index-named


def test_export_chain_module():
    _check_export("chain_module")


def test_adaptive_pool_one_not_flattened():
    """AdaptiveAvgPool2d(1) read by a conv keeps PyTorch's [C, 1, 1]: adaptive_avg_pool(1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 2, 1),
                          nn.Flatten(), nn.Linear(2, 2))
    res = export(model, (1, 9, 8), None, None)
    assert res.description["layers"][1] == {"op": "adaptive_avg_pool", "out": 1}
    assert res.layers[1]["output_shape"] == [3, 1, 1]
    assert res.output_shape == (2,)
    # A non-dividing output size is an adaptive pool too.
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveMaxPool2d((3, 2)))
    res = export(model, (1, 9, 8), None, None)
    assert res.description["layers"][1] == {"op": "adaptive_max_pool", "out": [3, 2]}


def test_toml_floats_round_trip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3, eps=1e-7),
                          nn.LeakyReLU(1 / 3), nn.Dropout(0.1), nn.Softmax(dim=-1))
    res = export(model, (1, 2, 2), None, None)
    parsed = tomllib.loads(res.toml)
    assert parsed["layers"][2]["eps"] == 1e-7
    assert parsed["layers"][3]["slope"] == 1 / 3
    assert parsed["layers"][4]["p"] == 0.1
    assert parsed == res.description


def test_model_toml_lenet5_round_trip():
    """models/lenet5.toml -> torch -> export gives the same description."""
    path = Path(__file__).resolve().parent.parent / "models" / "lenet5.toml"
    model, _ = cnn_tools.build_sequential(path)
    res = export(model, (1, 32, 32), None, None)
    with open(path, "rb") as f:
        assert tomllib.load(f) == res.description


# ---------------------------------------------------------------------------------------
# Tests: rejections
# ---------------------------------------------------------------------------------------


def test_reject_bicubic_upsample():
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)),
                                       ("up", nn.Upsample(scale_factor=2, mode="bicubic"))]))
    e = _expect(UnsupportedLayerError, _export_only(model), "'up'", "Upsample", "bicubic")
    assert e.layer_name == "up" and e.layer_type == "Upsample"


def test_reject_reflect_padding():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    _expect(UnsupportedLayerError, _export_only(model), "'0'", "Conv2d", "reflect")


def test_reject_unsupported_settings():
    cases = [
        (nn.MaxPool2d(2, return_indices=True), "return_indices"),
        (nn.AvgPool2d(2, divisor_override=3), "divisor_override"),
        (nn.BatchNorm2d(1, affine=False), "affine=False"),
        (nn.BatchNorm2d(1, track_running_stats=False), "track_running_stats=False"),
        (nn.Flatten(start_dim=2), "start_dim=1"),
        (nn.Softmax(dim=2), "dim=2"),
        (nn.Linear(16, 2), "nn.Flatten"),
        (nn.GELU(approximate="tanh"), "approximate"),
        (nn.PReLU(), "PReLU"),
        (nn.ELU(), "ELU"),
        (nn.Upsample(scale_factor=1.5), "integer"),
        (nn.Upsample(scale_factor=2, mode="nearest-exact"), "nearest-exact"),
    ]
    for layer, word in cases:
        model = nn.Sequential(OrderedDict([("x", layer)]))
        _expect(UnsupportedLayerError, _export_only(model, (1, 16, 16)), "'x'", word)


def test_nested_sequential_exports_with_paths():
    """Nested containers export with dotted module paths as names (the state_dict keys);
    flatten_sequential still gives the old flat names."""
    torch.manual_seed(7)
    model = nn.Sequential(OrderedDict([
        ("features", nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Sequential(nn.Linear(4 * 7 * 7, 10), nn.Softmax(dim=1))),
    ]))
    res = export(model, (1, 16, 16), None, None)
    assert cnn_tools.layer_names(res.description["layers"]) == [
        "features.0", "features.1", "features.2", "flatten", "classifier.0", "classifier.1"]
    assert not any("from" in l for l in res.description["layers"])
    assert set(res.tensors) == set(model.state_dict())
    flat = flatten_sequential(model)
    assert [n for n, _ in flat.named_children()] == [
        "features_0", "features_1", "features_2", "flatten", "classifier_0", "classifier_1"]
    res = export(flat, (1, 16, 16), None, None)
    assert set(res.tensors) == {"features_0.weight", "features_0.bias",
                                "classifier_0.weight", "classifier_0.bias"}


def test_reject_untraceable_forward():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    _expect(ExportError, _export_only(Branchy(), (2, 5, 5)), "torch.fx cannot trace",
            "Branchy")


def test_verification_catches_a_lying_module():
    """A leaf module subclass whose forward is not its parent's is exported as the parent;
    the float64 verification against the module catches it."""
    class NotAvg(cnn_tools.GlobalAvgPool2d):
        def forward(self, x):
            return x.amax(dim=(2, 3))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), NotAvg())
    _expect(ExportVerificationError, _export_only(model, (1, 6, 6)), "float64")


def test_reject_bad_names():
    model = nn.Sequential(OrderedDict([("conv 1", nn.Conv2d(1, 2, 3))]))
    _expect(ExportError, _export_only(model), "conv 1", "ASCII")
    # '-' is a valid name character (MODEL_FORMAT.md §2).
    model = nn.Sequential(OrderedDict([("conv-1", nn.Conv2d(1, 2, 3))]))
    assert export(model, (1, 8, 8), None, None).description["layers"][0]["name"] == "conv-1"


def test_reject_bad_shapes():
    model = nn.Sequential(nn.Conv2d(3, 2, 3))
    _expect(ExportError, _export_only(model, (1, 8, 8)), "'0'", "Conv2d")
    _expect(ExportError, _export_only(nn.Sequential(nn.Conv2d(1, 2, 9)), (1, 4, 4)), "'0'")


# ---------------------------------------------------------------------------------------
# Graph networks (torch.fx): residual, squeeze-excitation, concat, functional, 1-D, decoder
# ---------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: one ReLU module called twice, `out += identity`."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def graph_resnet_block() -> nn.Module:
    """ResNet-style: stem, an identity BasicBlock and a strided one with a 1x1 downsample,
    `out += identity`, a shared ReLU module, adaptive pool + torch.flatten + fc."""
    torch.manual_seed(1101)
    model = ResNetTiny()
    _randomize_bn(model, 1102)
    return model.eval()


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(r, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))


class SENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, 2, 1, bias=False), nn.BatchNorm2d(12),
                                  nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(12, 12, 3, 1, 1, groups=12, bias=False),
                                nn.BatchNorm2d(12), nn.SiLU())
        self.se = SqueezeExcite(12, 4)
        self.project = nn.Sequential(nn.Conv2d(12, 12, 1, bias=False), nn.BatchNorm2d(12))
        self.head = nn.Linear(12, 6)

    def forward(self, x):
        x = self.stem(x)
        y = self.project(self.se(self.dw(x)))
        x = x + y
        return self.head(F.gelu(x.mean((2, 3))))


def graph_se_hardswish() -> nn.Module:
    """MobileNetV3/EfficientNet-style: depthwise conv, squeeze-excitation (adaptive pool to
    [C,1,1], 1x1 convs, hardsigmoid gate, `x * gate` broadcast), a residual add,
    Hardswish/SiLU/GELU, x.mean((2, 3)) as the global pool."""
    torch.manual_seed(1201)
    model = SENet()
    _randomize_bn(model, 1202)
    return model.eval()


class Inception(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.b1 = nn.Conv2d(cin, 4, 1)
        self.b2a = nn.Conv2d(cin, 3, 1)
        self.b2b = nn.Conv2d(3, 5, 3, padding=1)
        self.b3 = nn.Conv2d(cin, 2, 1)

    def forward(self, x):
        a = F.relu(self.b1(x))
        b = F.relu(self.b2b(F.relu(self.b2a(x))))
        c = F.relu(self.b3(F.max_pool2d(x, 3, 1, 1, ceil_mode=True)))
        return torch.cat([a, b, c], 1)


class ConcatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.inc = Inception(6)
        self.squeeze = nn.Conv2d(11, 6, 1)
        self.fc = nn.Linear(17, 4)

    def forward(self, x):
        x = F.relu(self.conv(x))
        y = self.inc(x)
        z = torch.cat((torch.sigmoid(self.squeeze(y)), y), dim=1)
        z = F.avg_pool2d(z, 2, ceil_mode=True, count_include_pad=False)
        z = F.adaptive_max_pool2d(z, 1)
        z = z.view(z.size(0), -1)
        return F.softmax(self.fc(F.dropout(z, 0.3, self.training)), dim=1)


def graph_inception_concat() -> nn.Module:
    """GoogLeNet-style: functional calls only (F.relu, F.max_pool2d ceil mode, torch.cat of
    three branches, a concat whose first operand is not the previous layer,
    F.adaptive_max_pool2d + x.view(x.size(0), -1), F.dropout at eval, F.softmax)."""
    torch.manual_seed(1301)
    return ConcatNet().eval()


class Signal1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 8, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1, dilation=1, groups=2)
        self.pool = nn.MaxPool1d(2)
        self.up = nn.Upsample(scale_factor=2, mode="linear")
        self.deconv = nn.ConvTranspose1d(8, 4, 4, stride=2, padding=1)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)
        y = torch.tanh(self.conv2(x))
        x = x + self.up(self.pool(y))
        x = F.silu(self.deconv(x))
        return self.fc(torch.flatten(self.gap(x), 1))


def graph_signal_1d() -> nn.Module:
    """A 1-D signal net: Conv1d/BatchNorm1d/grouped conv, MaxPool1d, linear Upsample,
    residual add, ConvTranspose1d, AdaptiveAvgPool1d(1) + flatten + linear."""
    torch.manual_seed(1401)
    model = Signal1d()
    _randomize_bn(model, 1402)
    return model.eval()


class TinyDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(2, 4, 3, padding=1)
        self.enc2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = nn.Conv2d(4 + 8 + 8, 3, 1)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        e1 = F.relu6(self.enc1(x))
        e2 = F.relu(self.enc2(e1))
        d1 = self.up1(e2) * e1
        d2 = self.up2(e2)
        d3 = F.interpolate(e2, size=(10, 8), mode="bilinear", align_corners=True)
        return self.softmax(self.fuse(torch.cat([d1, d2, d3], 1)))


def graph_decoder() -> nn.Module:
    """A decoder with a spatial output: strided conv, ConvTranspose2d with output_padding,
    an encoder skip multiplied in, nearest Upsample, F.interpolate bilinear with
    align_corners to a size, a three-way concat, softmax over channels."""
    torch.manual_seed(1501)
    return TinyDecoder().eval()


#: name -> (builder, input shape, expected output shape as `cnn` sees it)
GRAPH_NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], tuple[int, ...]]] = {
    "graph_resnet_block": (graph_resnet_block, (3, 16, 16), (5,)),
    "graph_se_hardswish": (graph_se_hardswish, (3, 14, 12), (6,)),
    "graph_inception_concat": (graph_inception_concat, (3, 15, 13), (4,)),
    "graph_signal_1d": (graph_signal_1d, (2, 24), (3,)),
    "graph_decoder": (graph_decoder, (2, 10, 8), (3, 10, 8)),
}


def _check_graph_export(name: str) -> Any:
    builder, input_shape, out_shape = GRAPH_NETWORKS[name]
    return _check_graph_model(builder(), input_shape, out_shape, name)


def _check_graph_model(model: nn.Module, input_shape, out_shape, name: str) -> Any:
    """Export ``model`` to files and check them: the TOML re-parses to the description, the
    weights are the state_dict's, and the description rebuilt by cnn_tools.build_model and
    run by run_description computes what the model computes (float64)."""
    with tempfile.TemporaryDirectory() as d:
        res, toml_path, w_path = _export_to(Path(d), model, input_shape, name)
        with open(toml_path, "rb") as f:
            parsed = tomllib.load(f)
        assert parsed == res.description, (parsed, res.description)
        assert tuple(res.output_shape) == out_shape, (res.output_shape, out_shape)
        names = cnn_tools.layer_names(parsed["layers"])
        assert len(set(names)) == len(names)
        # Weight keys: those of the state_dict that the layers use, with their values.
        state = model.state_dict()
        weights = load_file(str(w_path))
        for k, t in weights.items():
            assert torch.equal(t, state[k].to(t.dtype)), k
        assert set(weights) | set(res.dropped_keys) == set(state)
        # Rebuilt by cnn_tools.build_model from the files, it computes what the model does.
        rebuilt = cnn_tools.build_model(toml_path)
        rebuilt.load_state_dict(weights, strict=True)
        x = torch.randn((3,) + tuple(input_shape), generator=torch.Generator().manual_seed(2),
                        dtype=torch.float64)
        with torch.no_grad():
            want = model.double().eval()(x)
            got = rebuilt.double().eval()(x)
            mine = run_description(parsed, {k: v.double() for k, v in weights.items()}, x)
        assert got.shape == (3,) + out_shape
        assert torch.allclose(got, want.reshape(got.shape), rtol=1e-10, atol=1e-12)
        assert torch.allclose(mine, got, rtol=1e-10, atol=1e-12)
        assert res.params == cnn_tools.count_params(rebuilt)
    return res


def _layer(res, name: str) -> dict[str, Any]:
    for i, l in enumerate(res.description["layers"]):
        if l.get("name", str(i)) == name:
            return l
    raise AssertionError(f"no layer {name!r}: {cnn_tools.layer_names(res.description['layers'])}")


def test_graph_resnet_block():
    res = _check_graph_export("graph_resnet_block")
    names = cnn_tools.layer_names(res.description["layers"])
    # The shared ReLU module gets path, path_1; the residual add reads the block input.
    assert "layer1.0.relu" in names and "layer1.0.relu_1" in names
    add = res.description["layers"][names.index("layer1.0.bn2") + 1]
    assert add == {"op": "add", "from": ["maxpool"]}, add
    assert _layer(res, "layer2.0.downsample.0")["from"] == "layer1.0.relu_1"
    i = names.index("layer2.0.downsample.1")
    assert res.description["layers"][i + 1]["op"] == "add"
    assert set(res.description["layers"][i + 1]["from"]) == {"layer2.0.bn2"}
    assert [l["op"] for l in res.description["layers"][-3:]] == [
        "global_avg_pool", "flatten", "linear"]
    assert _layer(res, "avgpool") == {"name": "avgpool", "op": "global_avg_pool"}


def test_graph_se_block_mul_broadcast():
    res = _check_graph_export("graph_se_hardswish")
    assert _layer(res, "se.avgpool") == {"name": "se.avgpool", "op": "adaptive_avg_pool",
                                         "out": 1, "from": "dw.2"} or \
        _layer(res, "se.avgpool")["op"] == "adaptive_avg_pool"
    ops = [l["op"] for l in res.description["layers"]]
    assert "mul" in ops and "add" in ops and "gelu" in ops and "hardswish" in ops
    mul = res.description["layers"][ops.index("mul")]
    assert mul["from"] == ["dw.2"], mul          # gate (previous) * x
    gp = res.description["layers"][ops.index("global_avg_pool")]
    assert "name" not in gp                       # x.mean((2, 3)): unnamed
    i = ops.index("add")
    assert res.layers[i]["output_shape"] == [12, 7, 6]


def test_graph_functional_concat():
    res = _check_graph_export("graph_inception_concat")
    layers = res.description["layers"]
    cats = [l for l in layers if l["op"] == "concat"]
    assert len(cats) == 2
    assert len(cats[0]["from"]) == 3              # a, b, c: explicit list
    assert cats[1]["from"] == [cats[0]["name"]]   # [previous (sigmoid), cat]
    ops = [l["op"] for l in layers]
    assert "dropout" not in ops                   # F.dropout at eval: no layer
    assert ops[-5:] == ["avg_pool", "global_max_pool", "flatten", "linear", "softmax"], ops
    mp = next(l for l in layers if l["op"] == "max_pool")
    assert mp == {"name": mp.get("name"), "op": "max_pool", "from": "relu", "kernel": 3,
                  "stride": 1, "padding": 1, "ceil_mode": True} or mp["ceil_mode"]
    # Function layers are named only when read out of order, never with an index name.
    for i, l in enumerate(layers):
        assert not l.get("name", "x").isdigit(), l


def test_graph_signal_1d():
    res = _check_graph_export("graph_signal_1d")
    assert res.description["input"] == [2, 24]
    assert _layer(res, "conv1") == {"name": "conv1", "op": "conv", "out": 8, "kernel": 5,
                                    "padding": 2}
    assert _layer(res, "up") == {"name": "up", "op": "upsample", "scale": 2, "mode": "linear"}
    assert _layer(res, "deconv")["op"] == "conv_transpose"
    assert res.tensors["deconv.weight"].shape == (8, 4, 4)    # [in, out/groups, k]
    assert _layer(res, "gap") == {"name": "gap", "op": "global_avg_pool"}


def test_graph_decoder_transpose_upsample():
    res = _check_graph_export("graph_decoder")
    assert _layer(res, "up1") == {"name": "up1", "op": "conv_transpose", "out": 4, "kernel": 3,
                                  "stride": 2, "padding": 1, "output_padding": 1}
    assert _layer(res, "up2") == {"name": "up2", "op": "upsample", "from": "relu",
                                  "scale": 2} or _layer(res, "up2")["scale"] == 2
    ups = [l for l in res.description["layers"] if l["op"] == "upsample"]
    assert {"size": [10, 8], "mode": "bilinear", "align_corners": True}.items() <= \
        ups[1].items(), ups
    assert res.description["layers"][-1] == {"name": "softmax", "op": "softmax"}


def test_graph_output_not_last_node_gets_identity():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)
            self.b = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.a(x)
            z = self.b(y)
            return y * torch.sigmoid(z)

    torch.manual_seed(3)
    res = export(TwoHeads(), (1, 6, 6), None, None)
    assert res.description["layers"][-1] == {"op": "mul", "from": ["a"]}

    class ReturnsInput(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5, self.training)

    res = export(ReturnsInput(), (3,), None, None)
    assert res.description == {"input": [3], "layers": [{"op": "identity"}]}


def test_graph_names_never_clash_with_indices():
    """A module named '2' in a Sequential sits at index 4; the unnamed layer at index 2
    must then get an explicit name."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.seq = nn.Sequential(OrderedDict([("c", nn.Conv2d(1, 2, 3))]))
            self.add_module("2", nn.ReLU())

        def forward(self, x):
            x = self.seq(x)
            x = torch.sigmoid(x)
            x = torch.relu(x) + x
            return getattr(self, "2")(x)

    torch.manual_seed(4)
    res = export(M(), (1, 5, 5), None, None)
    names = cnn_tools.layer_names(res.description["layers"])
    assert names[-1] == "2" and len(set(names)) == len(names), names
    assert "name" in res.description["layers"][2], res.description["layers"]


def test_graph_weight_sharing_and_unsupported_nodes_listed_at_once():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.elu = nn.ELU()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            y = self.elu(self.conv(x)) + 1.0           # ELU; a constant add
            y = self.conv(y)                           # weights used twice
            y = y.permute(0, 1, 3, 2) * self.scale     # permute; a raw parameter
            return torch.cumsum(y, 1)                  # unknown function

    torch.manual_seed(5)
    e = _expect(UnsupportedLayerError, _export_only(Bad(), (3, 6, 6)), "ELU", "constant",
                "2 times", "permute", "scale", "cumsum")
    assert len(e.nodes) == 7, e.nodes                 # elu, add, conv_1, permute,
    assert e.layer_name == "elu" and e.layer_type == "ELU"  # scale, mul, cumsum
    mods = {n["module"] for n in e.nodes if n["module"]}
    assert mods == {"elu", "conv"}, mods


def test_graph_cat_of_one_tensor_and_shape_arithmetic():
    """DenseNet's first layer concatenates a one-element list (no layer: `concat` with one
    name would mean [previous, name]); shape arithmetic (x.shape[1] // 2) makes no layer."""
    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv2d(2, 4, 3, padding=1)
            self.norm = nn.BatchNorm2d(4)
            self.conv1 = nn.Conv2d(4, 3, 1)

        def forward(self, x):
            x = self.conv0(x)
            feats = [x]
            y = self.conv1(self.norm(torch.cat(feats, 1)))
            return torch.cat([x, y], 1).reshape(x.shape[0] // 1, -1)

    torch.manual_seed(8)
    model = Dense()
    _randomize_bn(model, 9)
    res = export(model.eval(), (2, 5, 5), None, None)
    assert [l["op"] for l in res.description["layers"]] == [
        "conv", "batch_norm", "conv", "concat", "flatten"]
    assert res.description["layers"][-2]["from"] == ["conv0", "conv1"]


def test_graph_vector_input():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.GELU(), nn.Linear(4, 2),
                          nn.Softmax(dim=-1))
    _randomize_bn(model, 7)
    res = export(model, (5,), None, None)
    assert [l["op"] for l in res.description["layers"]] == [
        "linear", "batch_norm", "gelu", "linear", "softmax"]


# ---------------------------------------------------------------------------------------
# Tests: channel ranges (slice) and channel shuffles (channel_shuffle)
# ---------------------------------------------------------------------------------------


class ChannelOps(nn.Module):
    """``fn(head(x))``: the head (a conv or a linear) makes the tested op read a layer."""

    def __init__(self, head: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.head = head
        self.fn = fn

    def forward(self, x):
        return self.fn(self.head(x))


def _tv_channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's ShuffleNetV2 ``channel_shuffle``, verbatim."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    x = x.view(batchsize, num_channels, height, width)
    return x


def _tv_channel_shuffle_1d(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The same for signals ``[b, c, l]``."""
    batchsize, num_channels, length = x.size()
    x = x.view(batchsize, groups, num_channels // groups, length)
    return x.transpose(1, 2).contiguous().view(batchsize, -1, length)


def _check_channel_cases(cases) -> None:
    """Each case ``(label, head, fn, input shape, layers after the head)`` exports (verified
    in float64) to exactly those layers, which build_model and run_description compute."""
    for label, head, fn, input_shape, want in cases:
        torch.manual_seed(17)
        model = ChannelOps(head, fn).eval()
        with torch.no_grad():
            out_shape = tuple(model(torch.zeros((1,) + input_shape)).shape[1:])
        try:
            res = _check_graph_model(model, input_shape, out_shape, "channel_ops")
        except Exception as e:
            raise AssertionError(f"{label}: {type(e).__name__}: {e}") from e
        assert res.description["layers"][1:] == want, (label, res.description["layers"])


def test_slice_spellings():
    conv = lambda cout: nn.Conv2d(3, cout, 1)  # noqa: E731
    cases = [
        ("x.chunk(3, 1) of 7 channels (3, 3, 1), pieces out of order", conv(7),
         lambda x: (lambda p: torch.cat([p[2], p[0]], 1))(x.chunk(3, 1)), (3, 5, 4),
         [{"name": "slice", "op": "slice", "start": 6, "end": 7},
          {"name": "slice_1", "op": "slice", "from": "head", "start": 0, "end": 3},
          {"op": "concat", "from": ["slice", "slice_1"]}]),
        ("torch.chunk(x, 4, dim=-3) of 6 channels: 3 chunks of 2", conv(6),
         lambda x: torch.chunk(x, 4, dim=-3)[-1], (3, 5, 4),
         [{"op": "slice", "start": 4, "end": 6}]),
        ("x.split(3, dim=1)[-1] of 7 channels", conv(7),
         lambda x: x.split(3, dim=1)[-1], (3, 5, 4), [{"op": "slice", "start": 6, "end": 7}]),
        ("torch.split(x, [2, 4, 1], 1)[1]", conv(7),
         lambda x: torch.split(x, [2, 4, 1], 1)[1], (3, 5, 4),
         [{"op": "slice", "start": 2, "end": 6}]),
        ("torch.tensor_split(x, [2, 5], dim=1)[1]", conv(7),
         lambda x: torch.tensor_split(x, [2, 5], dim=1)[1], (3, 5, 4),
         [{"op": "slice", "start": 2, "end": 5}]),
        ("x.tensor_split(3, 1)[0] of 7 channels (3, 2, 2)", conv(7),
         lambda x: x.tensor_split(3, 1)[0], (3, 5, 4), [{"op": "slice", "start": 0, "end": 3}]),
        ("x.narrow(1, 2, 3)", conv(7), lambda x: x.narrow(1, 2, 3), (3, 5, 4),
         [{"op": "slice", "start": 2, "end": 5}]),
        ("torch.narrow(x, -3, -4, 2)", conv(7), lambda x: torch.narrow(x, -3, -4, 2),
         (3, 5, 4), [{"op": "slice", "start": 3, "end": 5}]),
        ("x[:, 2:-1]", conv(7), lambda x: x[:, 2:-1], (3, 5, 4),
         [{"op": "slice", "start": 2, "end": 6}]),
        ("x[:, :x.size(1) // 2, ...]", conv(7), lambda x: x[:, :x.size(1) // 2, ...],
         (3, 5, 4), [{"op": "slice", "start": 0, "end": 3}]),
        ("x[..., -3:, :, :]", conv(7), lambda x: x[..., -3:, :, :], (3, 5, 4),
         [{"op": "slice", "start": 4, "end": 7}]),
        ("the whole range (x[:, :], x.chunk(1, 1)[0]): no layer", conv(7),
         lambda x: torch.relu(x.chunk(1, 1)[0][:, :]), (3, 5, 4), [{"op": "relu"}]),
        ("a signal: x.split([1, 5], dim=1)[1]", nn.Conv1d(4, 6, 3),
         lambda x: x.split([1, 5], dim=1)[1], (4, 9), [{"op": "slice", "start": 1, "end": 6}]),
        ("a vector: x[:, 3:8]", nn.Linear(12, 10), lambda x: x[:, 3:8], (12,),
         [{"op": "slice", "start": 3, "end": 8}]),
        ("a vector: x.chunk(2, -1)[1]", nn.Linear(12, 10), lambda x: x.chunk(2, -1)[1], (12,),
         [{"op": "slice", "start": 5, "end": 10}]),
    ]
    _check_channel_cases(cases)


def test_channel_shuffle_spellings():
    conv = lambda cout: nn.Conv2d(3, cout, 1)  # noqa: E731
    cases = [
        ("nn.ChannelShuffle(4)", conv(8), nn.ChannelShuffle(4), (3, 5, 4),
         [{"name": "fn", "op": "channel_shuffle", "groups": 4}]),
        ("F.channel_shuffle(x, 2)", conv(8), lambda x: F.channel_shuffle(x, 2), (3, 5, 4),
         [{"op": "channel_shuffle", "groups": 2}]),
        ("torch.channel_shuffle(x, 3)", conv(6), lambda x: torch.channel_shuffle(x, 3),
         (3, 5, 4), [{"op": "channel_shuffle", "groups": 3}]),
        ("torchvision's view/transpose/contiguous/view from x.size()", conv(12),
         lambda x: _tv_channel_shuffle(x, 3), (3, 5, 4),
         [{"op": "channel_shuffle", "groups": 3}]),
        ("view(b, 4, -1, h, w).permute(0, 2, 1, 3, 4).reshape(b, -1, h, w)", conv(8),
         lambda x: x.view(x.shape[0], 4, -1, 5, 4).permute(0, 2, 1, 3, 4)
         .reshape(x.shape[0], -1, 5, 4), (3, 5, 4), [{"op": "channel_shuffle", "groups": 4}]),
        ("unflatten(1, (2, 4)).swapaxes(1, 2), torch.flatten(.., 1, 2)", conv(8),
         lambda x: torch.flatten(x.unflatten(1, (2, 4)).swapaxes(1, 2), 1, 2), (3, 5, 4),
         [{"op": "channel_shuffle", "groups": 2}]),
        ("two shuffles in a row, the first read again", conv(8),
         lambda x: _tv_channel_shuffle(_tv_channel_shuffle(x, 2), 4) + x, (3, 5, 4),
         [{"op": "channel_shuffle", "groups": 2}, {"op": "channel_shuffle", "groups": 4},
          {"op": "add", "from": ["head"]}]),
        ("a signal: torchvision's shuffle on [b, c, l]", nn.Conv1d(2, 6, 1),
         lambda x: _tv_channel_shuffle_1d(x, 2), (2, 7),
         [{"op": "channel_shuffle", "groups": 2}]),
        ("a signal: nn.ChannelShuffle(3)", nn.Conv1d(2, 6, 1), nn.ChannelShuffle(3), (2, 7),
         [{"name": "fn", "op": "channel_shuffle", "groups": 3}]),
    ]
    _check_channel_cases(cases)


def test_torchvision_shufflenet_v2_exports():
    """ShuffleNetV2 x0.5 at 64x64: each block's x.chunk(2, dim=1) gives two slices and its
    view/transpose shuffle one channel_shuffle; the export verifies in float64."""
    try:
        from torchvision.models import shufflenet_v2_x0_5
    except ImportError:
        print("    (skipped: no torchvision)")
        return
    torch.manual_seed(1601)
    model = shufflenet_v2_x0_5(weights=None)
    _randomize_bn(model, 1602)
    res = _check_graph_model(model.eval(), (3, 64, 64), (1000,), "shufflenet_v2_x0_5")
    layers = res.description["layers"]
    ops = [l["op"] for l in layers]
    assert ops.count("channel_shuffle") == 4 + 8 + 4, ops          # one per block
    assert ops.count("slice") == 2 * (3 + 7 + 3), ops               # stride-1 blocks
    assert "view" not in res.toml and "transpose" not in res.toml
    # Stage 2, block 1: the halves of block 0's shuffle, the right one through branch2,
    # concatenated behind the left one, shuffled.
    names = cnn_tools.layer_names(layers)
    i = names.index("stage2.1.branch2.0")
    assert layers[i - 3:i] == [
        {"name": "channel_shuffle", "op": "channel_shuffle", "groups": 2},
        {"name": "slice", "op": "slice", "start": 0, "end": 24},
        {"op": "slice", "from": "channel_shuffle", "start": 24, "end": 48}], layers[i - 3:i]
    j = names.index("stage2.1.branch2.7")
    assert layers[j + 1:j + 3] == [
        {"op": "concat", "from": ["slice", "stage2.1.branch2.7"]},
        {"name": "channel_shuffle_1", "op": "channel_shuffle", "groups": 2}], layers[j + 1:j + 3]


def test_reject_slices_along_other_axes_at_once():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)

        def forward(self, x):
            x = self.conv(x)
            a = x.chunk(2, 2)[0]                 # rows
            b = x[:, :, :, 1:3]                  # columns
            c = torch.narrow(x, -1, 0, 2)        # columns
            d = x[:, ::2]                        # every other channel
            return torch.cat([t.mean((2, 3)) for t in (a, b, c, d)], 1)

    e = _expect(UnsupportedLayerError, _export_only(Bad(), (3, 6, 6)), "'chunk'", "dim=2",
                "'getitem_1'", "x[:, :, :, 1:3] slices dim 3", "'narrow'", "dim=-1",
                "'getitem_2'", "x[:, ::2]: only step 1")
    # The chunk's piece (getitem) is not reported again.
    assert [n["node"] for n in e.nodes] == ["chunk", "getitem_1", "narrow", "getitem_2"], \
        e.nodes

    class BatchSlice(nn.Module):
        def forward(self, x):
            return x[1:]

    _expect(UnsupportedLayerError, _export_only(BatchSlice(), (3, 6, 6)), "'getitem'",
            "x[1:] slices dim 0")


def test_reject_view_transpose_that_is_not_a_channel_shuffle():
    def read_twice(x):
        v = x.view(x.size(0), 2, 4, 5, 4)
        return v.transpose(1, 2).reshape(x.size(0), 8, 5, 4) + v.reshape(x.size(0), 8, 5, 4)

    cases = [
        ("other axes swapped", lambda x: x.view(x.size(0), 2, 4, 5, 4).transpose(1, 3)
         .reshape(x.size(0), 8, 5, 4), ("'view'", "'transpose'", "'reshape'")),
        ("not back to the input's shape", lambda x: x.view(x.size(0), 2, 4, 5, 4)
         .transpose(1, 2).reshape(x.size(0), 4, 10, 4), ("'view'", "'transpose'")),
        ("a spatial axis split", lambda x: x.view(x.size(0), 8, 5, 2, 2).transpose(1, 2)
         .reshape(x.size(0), 8, 5, 4), ("'view'", "'transpose'")),
        ("the 5-D tensor read twice", read_twice, ("'view'", "'transpose'", "'reshape_1'")),
    ]
    for label, fn, words in cases:
        torch.manual_seed(0)
        model = ChannelOps(nn.Conv2d(3, 8, 1), fn)
        try:
            _expect(UnsupportedLayerError, _export_only(model, (3, 5, 4)), *words)
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}") from e


def test_channel_op_descriptions_validated():
    cases = [
        ([8, 4, 4], {"op": "slice", "start": 0, "end": 9},
         "end 9 larger than the 8 channels of the input [8, 4, 4]"),
        ([8], {"op": "slice", "start": 2, "end": 9}, "end 9 larger than the 8 features"),
        ([8, 4, 4], {"op": "slice", "start": 3, "end": 3}, "start 3 must be smaller than end 3"),
        ([8, 4, 4], {"op": "slice", "start": 5, "end": 2}, "start 5 must be smaller than end 2"),
        ([8, 4, 4], {"op": "slice", "start": -1, "end": 3}, "start: must be >= 0, got -1"),
        ([8, 4, 4], {"op": "slice", "start": 0}, "missing required argument `end`"),
        ([8, 4, 4], {"op": "slice", "start": 0, "end": 2, "dim": 1}, "unknown argument"),
        ([8, 4], {"op": "slice", "start": 0.0, "end": 2}, "start: expected an int"),
        ([8, 4, 4], {"op": "channel_shuffle", "groups": 3},
         "groups 3 must divide the input channels 8"),
        ([8, 6], {"op": "channel_shuffle", "groups": 0}, "groups: must be >= 1"),
        ([8], {"op": "channel_shuffle", "groups": 2},
         "channel_shuffle needs a [C, H, W] or [C, L] input, got the vector [8]"),
        ([8, 4, 4], {"op": "channel_shuffle"}, "missing required argument `groups`"),
    ]
    for inp, layer, words in cases:
        desc = {"input": inp, "layers": [layer]}
        _expect(cnn_tools.DescriptionError, lambda: cnn_tools.build_model(desc), "layer '0'",
                words)


def test_channel_ops_build_model_and_run_description():
    """A description with slices and shuffles (2-D, 1-D, vector) built in torch and run by
    run_description computes PyTorch's own channel_shuffle and slicing."""
    desc = {"input": [12, 3, 2], "layers": [
        {"name": "shuffle", "op": "channel_shuffle", "groups": 3},
        {"name": "b1", "op": "slice", "start": 0, "end": 5},
        {"op": "slice", "from": "shuffle", "start": 5, "end": 12},
        {"op": "concat", "from": ["b1"]},
        {"op": "flatten"},
        {"op": "slice", "start": 10, "end": 40},
    ]}
    model = cnn_tools.build_model(desc).double().eval()
    assert [l.output_shape for l in model.layers] == [
        (12, 3, 2), (5, 3, 2), (7, 3, 2), (12, 3, 2), (72,), (30,)]
    x = torch.randn(2, 12, 3, 2, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64)
    s = F.channel_shuffle(x, 3)
    want = torch.cat([s[:, 5:12], s[:, 0:5]], 1).flatten(1)[:, 10:40]
    with torch.no_grad():
        assert torch.equal(model(x), want)
    assert torch.equal(run_description(desc, {}, x), want)
    signal = {"input": [6, 5], "layers": [{"op": "channel_shuffle", "groups": 2},
                                          {"op": "slice", "start": 1, "end": 4}]}
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = torch.channel_shuffle(x, 2)[:, 1:4]
    with torch.no_grad():
        assert torch.equal(cnn_tools.build_model(signal).double()(x), want)
    assert torch.equal(run_description(signal, {}, x), want)


# ---------------------------------------------------------------------------------------
# Tests: the torchvision cases (tests/torchvision, examples/data/resnet18)
# ---------------------------------------------------------------------------------------

TORCHVISION = Path(__file__).resolve().parent.parent / "tests" / "torchvision"
EXAMPLE_RESNET18 = Path(__file__).resolve().parent.parent / "examples" / "data" / "resnet18"


def _seeded_weights(model: nn.Module, stats: dict[str, torch.Tensor], seed: int
                    ) -> dict[str, torch.Tensor]:
    """What the Rust side does: every weight the architecture needs, rank >= 2 from the
    seed, rank 1 from stats.safetensors."""
    import seeded

    out = {}
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if t.dim() >= 2:
            out[key] = torch.from_numpy(seeded.seeded_tensor(seed, key, tuple(t.shape)))
        else:
            out[key] = stats[key]
    assert set(out) >= set(stats), sorted(set(stats) - set(out))
    return out


def _check_seeded_case(case_dir: Path, meta: dict[str, Any]) -> None:
    model = cnn_tools.build_model(case_dir / "model.toml")
    stats = load_file(str(case_dir / "stats.safetensors"))
    assert all(t.dim() == 1 for t in stats.values())
    model.load_state_dict(_seeded_weights(model, stats, meta["seed"]), strict=False)
    data = load_file(str(case_dir / "data.safetensors"))
    with torch.no_grad():
        got = model.double().eval()(data["input"].double())
    want = data["output"].double()
    tol = meta["atol"] + meta["rtol"] * want.abs()
    assert ((got - want).abs() <= tol).all(), (case_dir.name, (got - want).abs().max())
    # PyTorch's own float32 result is within the tolerance (it defines the atol).
    assert ((data["output_f32"].double() - want).abs() <= tol).all(), case_dir.name
    assert cnn_tools.count_params(model) == meta["params"], case_dir.name


def test_compare_names_the_caches_from_sysfs():
    """compare.py's machine report lists the data and unified caches (not the
    instruction cache) by level, from a sysfs-shaped tree; nothing where there is none."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
    from compare import cache_sizes

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, (level, kind, size) in enumerate([("3", "Unified", "32768K"), ("1", "Data", "48K"),
                                                  ("1", "Instruction", "32K"),
                                                  ("2", "Unified", "2048K")]):
            d = root / f"index{i}"
            d.mkdir()
            (d / "level").write_text(level + "\n")
            (d / "type").write_text(kind + "\n")
            (d / "size").write_text(size + "\n")
        assert cache_sizes(root) == "L1d 48K, L2 2048K, L3 32768K", cache_sizes(root)
        assert cache_sizes(root / "missing") == ""


def test_torchvision_cases_rebuild_from_seed_and_stats():
    """tests/torchvision/<model>: model.toml rebuilt by cnn_tools.build_model, rank>=2
    weights regenerated from the seed, rank-1 ones from stats.safetensors, gives the stored
    float64 outputs."""
    cases = sorted(p for p in TORCHVISION.iterdir() if (p / "case.json").exists()) \
        if TORCHVISION.is_dir() else []
    if not cases:
        print("    (skipped: no tests/torchvision)")
        return
    for case in cases:
        _check_seeded_case(case, json.loads((case / "case.json").read_text()))
    if (EXAMPLE_RESNET18 / "reference.json").exists():
        _check_seeded_case(EXAMPLE_RESNET18,
                           json.loads((EXAMPLE_RESNET18 / "reference.json").read_text()))


def test_seeded_vectors_file():
    import seeded

    path = TORCHVISION / "seeded_vectors.json"
    if not path.exists():
        print("    (skipped: no tests/torchvision/seeded_vectors.json)")
        return
    assert json.loads(path.read_text()) == json.loads(json.dumps(seeded.test_vectors()))
    seeded._self_test()


# ---------------------------------------------------------------------------------------
# Tests: the conformance cases (tests/conformance, copied from the shared suite)
# ---------------------------------------------------------------------------------------

_DEFAULTS = {
    "conv": {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True},
    "max_pool": {"padding": 0, "dilation": 1, "ceil_mode": False},
    "avg_pool": {"padding": 0, "ceil_mode": False, "count_include_pad": True},
    "batch_norm": {"eps": 1e-5}, "leaky_relu": {"slope": 0.01}, "dropout": {"p": 0.5},
}


def _normalize(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Layers with defaults filled in, pairs expanded, names resolved."""
    out = []
    for name, layer in zip(cnn_tools.layer_names(layers), layers):
        full = dict(_DEFAULTS.get(layer["op"], {}))
        full.update({k: v for k, v in layer.items() if k != "name"})
        if layer["op"] in ("max_pool", "avg_pool"):
            full.setdefault("stride", full["kernel"])
        if full.get("padding") == "valid":
            full["padding"] = 0
        for k in ("kernel", "stride", "padding", "dilation"):
            if k in full and isinstance(full[k], int):
                full[k] = [full[k], full[k]]
        full["name"] = name
        out.append(full)
    return out


def _conformance_cases() -> list[Path]:
    if not (CONFORMANCE / "cases").is_dir():
        return []
    return sorted(p for p in (CONFORMANCE / "cases").iterdir() if (p / "model.toml").exists())


def test_conformance_build_and_export_round_trip():
    cases = _conformance_cases()
    if not cases:
        print("    (skipped: no tests/conformance)")
        return
    for case in cases:
        meta = json.loads((case / "case.json").read_text())
        model, shapes = cnn_tools.build_sequential(case / "model.toml")
        model.load_state_dict(load_file(str(case / "weights.safetensors")), strict=True)
        assert [list(s[2]) for s in shapes] == [l["output_shape"] for l in meta["layers"]], case
        data = load_file(str(case / "data.safetensors"))
        with torch.no_grad():
            got = model.double().eval()(data["input"].double()).float()
        want = data["output"]
        assert ((got - want).abs() <= 1e-4 + 1e-4 * want.abs()).all(), case.name
        model = model.float()
        res = export(model, meta["input_shape"], None, None, name=case.name)
        with open(case / "model.toml", "rb") as f:
            original = tomllib.load(f)
        assert _normalize(original["layers"]) == _normalize(res.description["layers"]), \
            case.name
        assert list(res.output_shape) == meta["output_shape"], case.name
        assert res.params == meta["params"], case.name
        assert set(res.tensors) == set(load_file(str(case / "weights.safetensors"))), case.name


def test_conformance_invalid_descriptions_rejected():
    if not (CONFORMANCE / "invalid").is_dir():
        print("    (skipped: no tests/conformance)")
        return
    for path in sorted((CONFORMANCE / "invalid").glob("*.toml")):
        try:
            cnn_tools.build_sequential(path)
        except (cnn_tools.DescriptionError, tomllib.TOMLDecodeError):
            continue
        raise AssertionError(f"{path.name} was accepted")


# ---------------------------------------------------------------------------------------
# Fixtures and runner
# ---------------------------------------------------------------------------------------


def write_fixtures(out_dir: Path) -> None:
    """Write one conformance-style case per network of :data:`NETWORKS` and
    :data:`GRAPH_NETWORKS` (the graph cases' case.json also has ``torch_f32_max_abs_err``
    and ``torch_f32_tolerance_ratio``)."""
    for i, (name, (builder, input_shape, out_shape)) in enumerate(NETWORKS.items()):
        model = builder()
        res = export_case(model, input_shape, out_dir / name, name, n=3, seed=9000 + i,
                          description=" ".join((builder.__doc__ or "").split()))
        assert tuple(res.output_shape) == out_shape
        print(f"  {name:<22} {list(res.input_shape)} -> {list(res.output_shape)}  "
              f"{res.params} params  {res.macs} MACs")
    for i, (name, (builder, input_shape, out_shape)) in enumerate(GRAPH_NETWORKS.items()):
        model = builder()
        res = export_case(model, input_shape, out_dir / name, name, n=3, seed=9100 + i,
                          description=" ".join((builder.__doc__ or "").split()),
                          f32_tolerance=True)
        assert tuple(res.output_shape) == out_shape
        print(f"  {name:<22} {list(res.input_shape)} -> {list(res.output_shape)}  "
              f"{res.params} params  {res.macs} MACs")
    print(f"wrote {len(NETWORKS) + len(GRAPH_NETWORKS)} cases to {out_dir}")


def test_fuzz_models_draws_valid_deterministic_models():
    """tools/fuzz_models.py: every draw is a description the spec and PyTorch accept (its
    shapes checked against torch on an input), the same draw for the same seed, and the
    draws together reach the ops the fuzzer is meant to exercise."""
    import random

    import fuzz_models

    ops: set[str] = set()
    ranks: set[int] = set()
    for seed in range(40):
        inp, layers = fuzz_models.random_model(random.Random(seed), 0.5)
        again = fuzz_models.random_model(random.Random(seed), 0.5)
        assert (inp, layers) == again, f"seed {seed}: not deterministic"
        desc = {"input": inp, "layers": layers}
        model = cnn_tools.build_model(desc, f"<fuzz seed {seed}>")
        with torch.no_grad():
            y = model.eval()(torch.randn((2, *inp)))
        assert tuple(y.shape[1:]) == tuple(model.layers[-1].output_shape), seed
        ops |= {l["op"] for l in layers}
        ranks.add(len(inp))
    want = {"conv", "linear", "batch_norm", "add", "mul", "concat", "max_pool", "avg_pool",
            "global_avg_pool", "upsample", "conv_transpose", "adaptive_avg_pool"}
    assert want <= ops, f"never drawn: {sorted(want - ops)}"
    assert ranks == {1, 2, 3}, ranks


def test_fuzz_descriptions_reads_the_summary_and_the_spec():
    """tools/fuzz_descriptions.py: the summary table's rows (as `check_toml` renders them)
    parse into name, shape, parameters and MACs; the spec's verdict names the layer."""
    import fuzz_descriptions as fd

    table = """Model `Model`: input [3, 16, 16] -> output [8, 7, 7]
---------------------------------------------------------------
layer  op        output shape  params    MACs  runs as
---------------------------------------------------------------
c      conv      [8, 14, 14]      224  42,336  conv2d+relu
1      relu      [8, 14, 14]        0       0  (fused into `c`)
p      max_pool  [8, 7, 7]          0       0  max_pool2d
---------------------------------------------------------------
total params: 224 (896 bytes as f32)"""
    assert fd.parse_summary(table) == [("c", [8, 14, 14], 224, 42336), ("1", [8, 14, 14], 0, 0),
                                       ("p", [8, 7, 7], 0, 0)]
    layers = [{"name": "c", "op": "conv", "out": 8, "kernel": 3}, {"op": "relu"},
              {"name": "p", "op": "max_pool", "kernel": 2}]
    ok, rows = fd.spec_verdict([3, 16, 16], layers)
    assert ok and rows == fd.parse_summary(table), rows
    layers[0]["kernel"] = 17
    assert fd.spec_verdict([3, 16, 16], layers) == (False, "c")


def _run_tests(pattern: str | None) -> int:
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    if pattern:
        tests = [(n, f) for n, f in tests if pattern in n]
    failed = 0
    for n, f in tests:
        try:
            f()
            print(f"PASS {n}")
        except Exception:
            failed += 1
            print(f"FAIL {n}")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Tests of tools/export.py.")
    ap.add_argument("--write-fixtures", type=Path, metavar="DIR",
                    help="write DIR/<network>/{model.toml, weights.safetensors, "
                         "data.safetensors, case.json} instead of running the tests")
    ap.add_argument("-k", metavar="PATTERN", help="only run tests whose name contains it")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.write_fixtures:
        write_fixtures(args.write_fixtures)
        return 0
    return _run_tests(args.k)


if __name__ == "__main__":
    raise SystemExit(main())
