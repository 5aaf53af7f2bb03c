#!/usr/bin/env python3
"""Writes the graph / §7 / 1-D conformance cases into tests/cases/<name>/.

Each case is a MODEL_FORMAT.md description (§6 graphs, §7 ops, §8 1-D and vector inputs)
with the same four files as the shared suite (tests/conformance/cases):

* ``model.toml``: first line ``# <name>: <description>``, then the TOML description;
* ``weights.safetensors``: the ``state_dict()`` of :func:`cnn_tools.build_model`'s module
  (dotted names give nested keys), float32, BN ``num_batches_tracked`` int64;
* ``data.safetensors``: ``input`` ``[3, *input_shape]`` f32 and ``output``
  ``[3, *output_shape]`` f32, the model run in float64 on the widened weights and inputs,
  then rounded to float32;
* ``case.json``: name, description, features, input_shape, output_shape, n_inputs, params,
  macs, per-layer name/op/output_shape/params, max_abs_output, torch_f32_tolerance_ratio,
  seed.

Deterministic: every case draws its weights and inputs from a ``torch.Generator`` seeded
with a number derived from its name (``seed`` in case.json), so adding a case does not
change the others. Conv / linear / conv_transpose weights are N(0, 1/fan_in) (times the
case's ``_w`` factor where a layer has one), biases N(0, 0.2²); BN: running_mean
N(0, 0.5²), running_var U[0.5, 2], weight U[0.5, 1.5], bias N(0, 0.3²).

Every description is checked twice: by the spec's shape arithmetic
(``cnn_tools.infer_layers``) and by PyTorch running the model (``build_model`` compares
every tensor's shape). ``upsample`` is computed as MODEL_FORMAT.md §7 words it
(``cnn_tools.SpecUpsample``) and compared with ``torch.nn.Upsample`` on the same data.

    python3 tools/gen_cases.py            # (re)writes tests/cases/*, then run
    python3 tools/gen_conformance_models.py
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn_tools  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/cases"
N_INPUTS = 3
ATOL = RTOL = 1e-4


def L(op: str, name: str | None = None, frm: Any = None, **args: Any) -> dict[str, Any]:
    """One layer table: ``name``, ``op``, ``from`` (when given), then the arguments."""
    d: dict[str, Any] = {}
    if name is not None:
        d["name"] = name
    d["op"] = op
    if frm is not None:
        d["from"] = frm
    d.update(args)
    return d


# (name, description, input, layers, options). Options: ``input_scale`` (inputs are
# N(0, input_scale²)), ``features`` (extra tags). A layer key ``_w`` scales its weights.
CASES: list[tuple[str, str, list[int], list[dict[str, Any]], dict[str, Any]]] = []


def case(name: str, description: str, inp: list[int], layers: list[dict[str, Any]],
         **opts: Any) -> None:
    CASES.append((name, description, inp, layers, opts))


# --- §6 merge ops alone ---------------------------------------------------------------------

case("op_add_residual", "add with one name: conv-relu-conv, then add(input) = previous + "
     "input (identity shortcut), relu", [3, 8, 8], [
         L("conv", "c1", out=3, kernel=3, padding=1), L("relu"),
         L("conv", "c2", out=3, kernel=3, padding=1),
         L("add", frm=["input"]), L("relu")])
case("op_mul_gate", "mul of two computed tensors: tanh(conv a(x)) * sigmoid(conv b(x)) "
     "(gated activation), both branches read the input", [3, 7, 9], [
         L("conv", "a", out=4, kernel=3, padding=1), L("tanh", "a_act"),
         L("conv", "b", frm="input", out=4, kernel=3, padding=1), L("sigmoid", "b_act"),
         L("mul", frm=["a_act", "b_act"])])
case("op_concat_channels", "concat of a 2-channel 3x3 conv and a 5-channel 1x1 conv of "
     "the same input along channels, then a 1x1 conv over all 7", [3, 6, 7], [
         L("conv", "left", out=2, kernel=3, padding=1),
         L("conv", "right", frm="input", out=5, kernel=1),
         L("concat", frm=["left", "right"]), L("relu"),
         L("conv", "mix", out=3, kernel=1)])

# --- §7 ops alone ---------------------------------------------------------------------------

case("op_adaptive_avg_pool_nondivisible", "adaptive_avg_pool to non-divisible sizes: "
     "10x9 -> (4, 5) (overlapping windows) -> 3 (int form), spatial output", [3, 10, 9], [
         L("conv", "c", out=4, kernel=1),
         L("adaptive_avg_pool", "p1", out=[4, 5]),
         L("adaptive_avg_pool", "p2", out=3)])
case("op_adaptive_avg_pool_upscale", "adaptive_avg_pool with out > H and W: 5x6 -> (7, 13) "
     "(windows of one or two cells, repeated), conv, then 5x11 -> (4, 3)", [2, 5, 6], [
         L("adaptive_avg_pool", "up", out=[7, 13]),
         L("conv", "c", out=3, kernel=3),
         L("adaptive_avg_pool", "down", out=[4, 3])])
case("op_adaptive_max_pool", "adaptive_max_pool on signed data: 11x7 -> (3, 5) "
     "non-divisible, and from the input 11x7 -> (12, 9) (out > in); both flattened and "
     "concatenated", [3, 11, 7], [
         L("adaptive_max_pool", "p1", out=[3, 5]), L("flatten", "f1"),
         L("adaptive_max_pool", "p2", frm="input", out=[12, 9]),
         L("conv", "c", out=1, kernel=3, stride=2), L("flatten", "f2"),
         L("concat", frm=["f1", "f2"]),
         L("linear", "fc", out=5)])
for act, what in [("silu", "x*sigmoid(x)"), ("hardswish", "x*relu6(x+3)/6, inputs on both "
                                             "sides of -3 and 3"),
                  ("hardsigmoid", "relu6(x+3)/6, inputs on both sides of -3 and 3"),
                  ("gelu", "exact erf form x*(1+erf(x/sqrt 2))/2")]:
    case(f"op_{act}", f"{act} ({what}) on the input itself (N(0, 2^2), values beyond "
         f"+-3) and after a conv with weights scaled 2.5x, then a 1x1 conv", [3, 6, 6], [
             L(act, "a0"),
             L("conv", "c1", out=4, kernel=3, padding=1, _w=2.5), L(act, "a1"),
             L("conv", "c2", out=2, kernel=1)], input_scale=2.0)
case("op_identity", "identity as the first layer, between conv and batch_norm (must not "
     "block folding), and as the last layer", [3, 6, 5], [
         L("identity", "id0"), L("conv", "c", out=4, kernel=3),
         L("identity", "id1"), L("batch_norm", "bn"), L("relu"),
         L("identity", "id_out")])
case("op_softmax_channels_2d", "softmax over channels of a [4, 5, 6] tensor at every "
     "position (PyTorch dim=1), spatial output", [3, 5, 6], [
         L("conv", "c", out=4, kernel=3, padding=1, _w=3.0), L("softmax", "sm")])
case("op_softmax_channels_1d", "softmax over channels of a [5, 12] signal at every "
     "position", [3, 12], [
         L("conv", "c", out=5, kernel=3, padding="same", _w=3.0), L("softmax", "sm")])
case("op_upsample_nearest_scale", "upsample nearest by scale 2, then by the pair scale "
     "(1, 3), between convs", [2, 5, 4], [
         L("conv", "c1", out=3, kernel=3, padding=1),
         L("upsample", "up1", scale=2),
         L("conv", "c2", out=3, kernel=3, padding=1),
         L("upsample", "up2", scale=[1, 3], mode="nearest")])
case("op_upsample_nearest_size", "upsample nearest by size: 9x10 -> (4, 7) (smaller than "
     "the input), -> 11 (int form, non-integer ratios), -> (11, 25)", [2, 9, 10], [
         L("upsample", "down", size=[4, 7]),
         L("upsample", "up", size=11),
         L("upsample", "up2", size=[11, 25])])
case("op_upsample_bilinear", "bilinear, align_corners false (default and explicit): scale "
     "2 (5x4 -> 10x8), size (7, 5) (smaller, non-integer ratios), size (9, 11) "
     "(non-integer ratios)", [2, 5, 4], [
         L("upsample", "up1", scale=2, mode="bilinear"),
         L("conv", "c", out=3, kernel=3, padding=1),
         L("upsample", "down", size=[7, 5], mode="bilinear", align_corners=False),
         L("upsample", "up2", size=[9, 11], mode="bilinear")])
case("op_upsample_bilinear_align_corners", "bilinear with align_corners true: scale (2, 3), "
     "size (7, 5) (smaller), size (1, 5) from the same tensor (an axis of output size 1 "
     "samples index 0) added with broadcasting, size (9, 11)", [2, 5, 4], [
         L("upsample", "up1", scale=[2, 3], mode="bilinear", align_corners=True),
         L("conv", "c", out=3, kernel=3, padding=1),
         L("upsample", "down", size=[7, 5], mode="bilinear", align_corners=True),
         L("upsample", "row", frm="c", size=[1, 5], mode="bilinear", align_corners=True),
         L("add", frm=["down", "row"]),
         L("upsample", "up2", size=[9, 11], mode="bilinear", align_corners=True)])
case("op_conv_transpose_stride2_outpad", "conv_transpose stride 2, padding 1, "
     "output_padding 1 (5x5 -> 10x10), then batch_norm and relu (foldable)", [4, 5, 5], [
         L("conv_transpose", "up", out=6, kernel=3, stride=2, padding=1, output_padding=1),
         L("batch_norm", "bn"), L("relu")])
case("op_conv_transpose_dilation_groups", "conv_transpose kernel 3, dilation 2, groups 2, "
     "padding (1, 2), no bias, then batch_norm and relu", [4, 6, 5], [
         L("conv_transpose", "up", out=6, kernel=3, dilation=2, groups=2, padding=[1, 2],
           bias=False),
         L("batch_norm", "bn"), L("relu")])
case("op_conv_transpose_kernel_lt_stride", "conv_transpose with kernels smaller than the "
     "stride (output cells no tap reaches are the bias): k2 s3 output_padding (2, 1); "
     "k(1, 2) s(3, 2); then batch_norm and relu", [3, 4, 5], [
         L("conv_transpose", "t1", out=4, kernel=2, stride=3, output_padding=[2, 1]),
         L("batch_norm", "bn1"), L("relu"),
         L("conv_transpose", "t2", out=2, kernel=[1, 2], stride=[3, 2], bias=True)])
case("op_conv_transpose_outpad_dilation", "conv_transpose stride 1 with output_padding 1 "
     "(allowed because < dilation 2), depthwise (groups = in = out), pair stride (2, 1) with "
     "output_padding (1, 0)", [3, 5, 6], [
         L("conv_transpose", "t1", out=3, kernel=3, dilation=2, output_padding=1, groups=3),
         L("relu"),
         L("conv_transpose", "t2", out=4, kernel=[3, 2], stride=[2, 1], padding=[1, 0],
           output_padding=[1, 0])])
case("op_conv_transpose_phases", "conv_transpose layers whose strides divide the kernel "
     "(run as one stride-1 convolution over the phases): k4 s2 p1 (DCGAN) then batch_norm + "
     "relu; k4 s2 p1 output_padding 1; k(2, 6) s(2, 3) p(0, 2); k3 s1 p1, then tanh",
     [8, 5, 6], [
         L("conv_transpose", "t1", out=6, kernel=4, stride=2, padding=1),
         L("batch_norm", "bn"), L("relu"),
         L("conv_transpose", "t2", out=4, kernel=4, stride=2, padding=1, output_padding=1),
         L("conv_transpose", "t3", out=3, kernel=[2, 6], stride=[2, 3], padding=[0, 2]),
         L("conv_transpose", "t4", out=2, kernel=3, padding=1), L("tanh")])
case("op_conv_transpose_split", "conv_transpose layers whose strides do not divide the "
     "kernel (run as one convolution per phase): k3 s2 p1 output_padding 1 (CycleGAN) with 24 "
     "outputs then batch_norm + relu; k5 s2 p2 output_padding 1 without bias; "
     "k(3, 5) s(2, 3) p(0, 1), then sigmoid", [20, 5, 6], [
         L("conv_transpose", "t1", out=24, kernel=3, stride=2, padding=1, output_padding=1),
         L("batch_norm", "bn"), L("relu"),
         L("conv_transpose", "t2", out=6, kernel=5, stride=2, padding=2, output_padding=1,
           bias=False),
         L("conv_transpose", "t3", out=3, kernel=[3, 5], stride=[2, 3], padding=[0, 1]),
         L("sigmoid")])
case("op_conv_transpose_dilated_split", "dilated conv_transpose layers: k3 s2 d2 p1 (even "
     "phases get no tap: the phase kernel); then, as one convolution per phase at the phase's "
     "dilation, k4 s1 d2 (the flipped kernel) with output_padding 1, batch_norm + relu; "
     "k3 s2 d3 p1 output_padding 2 (phases of 1 and 2 taps, inputs 3 apart); "
     "k(3, 2) s(3, 1) d(2, 3) p(0, 1) (one tap per row phase)", [6, 2, 3], [
         L("conv_transpose", "t0", out=8, kernel=3, stride=2, dilation=2, padding=1),
         L("conv_transpose", "t1", out=16, kernel=4, dilation=2, output_padding=1),
         L("batch_norm", "bn"), L("relu"),
         L("conv_transpose", "t2", out=20, kernel=3, stride=2, dilation=3, padding=1,
           output_padding=2),
         L("conv_transpose", "t3", out=3, kernel=[3, 2], stride=[3, 1], dilation=[2, 3],
           padding=[0, 1], bias=False)])

# --- §6 graph shapes ------------------------------------------------------------------------

case("graph_from_input_branch", "a branch that reads `input` directly (from = \"input\") "
     "after a conv path; the two are added", [3, 8, 8], [
         L("conv", "c1", out=4, kernel=3, padding=1), L("relu"),
         L("conv", "c2", out=4, kernel=3, padding=1),
         L("conv", "proj", frm="input", out=4, kernel=1),
         L("add", frm=["c2", "proj"]), L("relu")])
case("graph_three_way_concat", "inception-like: 1x1, 3x3 and pool branches of one tensor, "
     "concatenated (3 names), then a 1x1 conv", [3, 9, 9], [
         L("conv", "stem", out=4, kernel=3), L("relu", "stem_act"),
         L("conv", "b1", out=2, kernel=1),
         L("conv", "b3", frm="stem_act", out=3, kernel=3, padding=1),
         L("max_pool", "bp", frm="stem_act", kernel=3, stride=1, padding=1),
         L("concat", "cat", frm=["b1", "b3", "bp"]),
         L("conv", "mix", out=4, kernel=1)])
case("graph_se_block", "squeeze-and-excitation: adaptive_avg_pool(1) -> conv 1x1 -> relu "
     "-> conv 1x1 -> sigmoid gives [C, 1, 1], then mul(features, gate) broadcasts it over "
     "[C, H, W]", [3, 7, 8], [
         L("conv", "features", out=6, kernel=3, padding=1), L("relu", "act"),
         L("adaptive_avg_pool", "squeeze", out=1),
         L("conv", "fc1", out=2, kernel=1), L("relu"),
         L("conv", "fc2", out=6, kernel=1, _w=2.0), L("sigmoid", "gate"),
         L("mul", "scaled", frm=["act", "gate"]),
         L("conv", "out", out=2, kernel=1)])
case("graph_mul_broadcast_first", "mul where the FIRST operand is the broadcast one: "
     "gate [C, 1, 1] * features [C, H, W], then spatial attention [1, H, W] * [C, H, W]",
     [4, 6, 5], [
         L("conv", "feat", out=4, kernel=3, padding=1),
         L("adaptive_max_pool", "pooled", out=1),
         L("sigmoid", "gate"),
         L("mul", "gated", frm=["gate", "feat"]),
         L("conv", "att", out=1, kernel=3, padding=1), L("sigmoid", "att_act"),
         L("mul", frm=["att_act", "gated"])])
case("graph_add_two_branches", "add of two computed branches of different depth (3x3-3x3 "
     "and 5x5), neither is the previous layer of the other", [3, 9, 9], [
         L("conv", "a1", out=4, kernel=3, padding=1), L("relu"),
         L("conv", "a2", out=4, kernel=3, padding=1),
         L("conv", "b1", frm="input", out=4, kernel=5, padding=2), L("tanh", "b_act"),
         L("add", "sum", frm=["a2", "b_act"]),
         L("conv", "head", out=2, kernel=3, stride=2)])
case("graph_read_by_three", "one tensor (`hub`) read by three later layers: the next "
     "conv implicitly, a conv by `from`, and an add", [2, 8, 8], [
         L("conv", "hub", out=4, kernel=3, padding=1),
         L("conv", "x1", out=4, kernel=1),
         L("conv", "x2", frm="hub", out=4, kernel=3, padding=1),
         L("add", frm=["x1", "x2", "hub"]), L("relu")])
case("graph_output_add", "the model output is an add (the last layer is a merge of two "
     "branches)", [3, 6, 6], [
         L("conv", "a", out=3, kernel=3, padding=1), L("relu", "a_act"),
         L("conv", "b", out=3, kernel=1),
         L("add", "out", frm=["a_act", "b"])])
case("graph_output_concat", "the model output is a concat of vectors (global avg and "
     "max pool of the same features)", [3, 7, 6], [
         L("conv", "c", out=4, kernel=3), L("relu", "act"),
         L("global_avg_pool", "gap"),
         L("global_max_pool", "gmp", frm="act"),
         L("concat", "out", frm=["gap", "gmp"])])
case("graph_add_self", "add(x, x) (a name repeated) and mul(y, y) (a square)", [2, 6, 6], [
    L("conv", "x", out=3, kernel=3, padding=1),
    L("add", "twice", frm=["x", "x"]),
    L("tanh", "y"),
    L("mul", "sq", frm=["y", "y"])])
case("graph_add_three_operands", "a 3-operand add (left fold) and a 3-operand mul of "
     "sigmoid gates", [3, 6, 6], [
         L("conv", "a", out=4, kernel=3, padding=1),
         L("conv", "b", frm="input", out=4, kernel=1),
         L("conv", "c", frm="input", out=4, kernel=3, padding=2, dilation=2),
         L("add", "abc", frm=["a", "b", "c"]),
         L("sigmoid", "s"),
         L("mul", frm=["s", "s", "abc"])])
case("graph_single_name_merges", "the one-name forms: add([x]) = previous + x, "
     "mul([x]) = previous * x, concat([x]) = previous ++ x", [2, 6, 7], [
         L("conv", "x", out=3, kernel=3, padding=1),
         L("conv", "y", out=3, kernel=1),
         L("add", "s", frm=["x"]),
         L("sigmoid"),
         L("mul", frm=["x"]),
         L("concat", frm=["y"])])
case("graph_dotted_names", "dotted names as nested PyTorch modules: `layer1.0.conv1` "
     "(key layer1.0.conv1.weight), RegNet-style `trunk_output.block1.block1-0.proj.0` (a "
     "segment with '-'), a Rust-keyword segment `stem.type`, and a layer `layer1.0` (relu) "
     "that is also the prefix of other names", [3, 8, 8], [
         L("conv", "stem.type", out=4, kernel=3, padding=1),
         L("batch_norm", "stem.bn"), L("relu", "stem.act"),
         L("conv", "layer1.0.conv1", out=4, kernel=3, padding=1, bias=False),
         L("batch_norm", "layer1.0.bn1"),
         L("add", frm=["stem.act"]),
         L("relu", "layer1.0"),
         L("conv", "trunk_output.block1.block1-0.proj.0", out=6, kernel=1, stride=2),
         L("batch_norm", "trunk_output.block1.block1-0.proj.1"),
         L("conv", "features.0.0", frm="layer1.0", out=6, kernel=3, stride=2, padding=1),
         L("add", frm=["trunk_output.block1.block1-0.proj.1", "features.0.0"])])
case("graph_index_reference", "unnamed layers referenced by their index: from = \"3\" "
     "on a conv and add([\"1\", \"5\"])", [3, 7, 7], [
         L("conv", out=4, kernel=3, padding=1),     # 0
         L("relu"),                                 # 1
         L("conv", out=4, kernel=3, padding=1),     # 2
         L("tanh"),                                 # 3
         L("max_pool", kernel=2),                   # 4 (reads 3)
         L("conv", frm="3", out=4, kernel=1),       # 5
         L("add", frm=["1", "5"]),                  # 6
         L("avg_pool", frm="6", kernel=2),          # 7
         L("add", frm=["4"])])                      # 8 = 7 + 4
RESNET = [
    L("conv", "conv1", out=8, kernel=3, padding=1, bias=False),
    L("batch_norm", "bn1"), L("relu", "relu"),
    L("conv", "layer1.0.conv1", out=16, kernel=3, stride=2, padding=1, bias=False),
    L("batch_norm", "layer1.0.bn1"), L("relu"),
    L("conv", "layer1.0.conv2", out=16, kernel=3, padding=1, bias=False),
    L("batch_norm", "layer1.0.bn2"),
    L("conv", "layer1.0.downsample.0", frm="relu", out=16, kernel=1, stride=2, bias=False),
    L("batch_norm", "layer1.0.downsample.1"),
    L("add", frm=["layer1.0.bn2", "layer1.0.downsample.1"]),
    L("relu", "layer1.0"),
    L("conv", "layer1.1.conv1", out=16, kernel=3, padding=1, bias=False),
    L("batch_norm", "layer1.1.bn1"), L("relu"),
    L("conv", "layer1.1.conv2", out=16, kernel=3, padding=1, bias=False),
    L("batch_norm", "layer1.1.bn2"),
    L("add", frm=["layer1.0"]),
    L("relu", "layer1.1"),
    L("global_avg_pool", "avgpool"),
    L("linear", "fc", out=5)]
case("graph_resnet_basic_blocks", "torchvision-style ResNet: stem, a basic block with a "
     "stride-2 downsample (conv 1x1 + BN on the shortcut), an identity basic block, "
     "global_avg_pool, fc; torchvision key names", [3, 12, 12], RESNET)
case("graph_mobilenetv2_inverted_residual", "MobileNetV2 inverted residuals "
     "(torchvision names): expand 1x1 -> BN -> relu6 -> depthwise 3x3 -> BN -> relu6 -> "
     "project 1x1 -> BN, + input when stride 1 and same channels; then a stride-2 block "
     "without residual", [4, 10, 10], [
         L("conv", "features.0.conv.0.0", out=16, kernel=1, bias=False),
         L("batch_norm", "features.0.conv.0.1"), L("relu6", "features.0.conv.0.2"),
         L("conv", "features.0.conv.1.0", out=16, kernel=3, padding=1, groups=16,
           bias=False, _w=2.0),
         L("batch_norm", "features.0.conv.1.1"), L("relu6", "features.0.conv.1.2"),
         L("conv", "features.0.conv.2", out=4, kernel=1, bias=False),
         L("batch_norm", "features.0.conv.3"),
         L("add", "features.0", frm=["input"]),
         L("conv", "features.1.conv.0.0", out=12, kernel=1, bias=False),
         L("batch_norm", "features.1.conv.0.1"), L("relu6", "features.1.conv.0.2"),
         L("conv", "features.1.conv.1.0", out=12, kernel=3, stride=2, padding=1, groups=12,
           bias=False),
         L("batch_norm", "features.1.conv.1.1"), L("relu6", "features.1.conv.1.2"),
         L("conv", "features.1.conv.2", out=6, kernel=1, bias=False),
         L("batch_norm", "features.1.conv.3")])
case("graph_densenet_block", "DenseNet-style block: each layer (BN-relu-conv 3x3, growth 3) "
     "reads the concatenation of the block input and all earlier layers' outputs; "
     "transition BN-relu-conv1x1-avg_pool", [4, 8, 8], [
         L("batch_norm", "d1.norm"), L("relu", "d1.relu"),
         L("conv", "d1.conv", out=3, kernel=3, padding=1, bias=False),
         L("concat", "cat1", frm=["input", "d1.conv"]),
         L("batch_norm", "d2.norm"), L("relu", "d2.relu"),
         L("conv", "d2.conv", out=3, kernel=3, padding=1, bias=False),
         L("concat", "cat2", frm=["input", "d1.conv", "d2.conv"]),
         L("batch_norm", "d3.norm"), L("relu", "d3.relu"),
         L("conv", "d3.conv", out=3, kernel=3, padding=1, bias=False),
         L("concat", "cat3", frm=["input", "d1.conv", "d2.conv", "d3.conv"]),
         L("batch_norm", "transition.norm"), L("relu", "transition.relu"),
         L("conv", "transition.conv", out=6, kernel=1, bias=False),
         L("avg_pool", "transition.pool", kernel=2)])
case("graph_dense_chain_in_place", "concat chain (a DenseNet block) written into one "
     "buffer: the block input is a conv's output, a relu reads an extended concat (must not "
     "run in place), an earlier concat is read again after the last one, whose sigmoid must "
     "therefore not run in place either", [3, 6, 6], [
         L("conv", "s", out=4, kernel=3, padding=1),
         L("batch_norm", "d1.norm"), L("relu", "d1.relu"),
         L("conv", "d1.conv", out=3, kernel=3, padding=1, bias=False),
         L("concat", "cat1", frm=["s", "d1.conv"]),
         L("relu", "d2.relu"),
         L("conv", "d2.conv", out=3, kernel=1),
         L("concat", "cat2", frm=["s", "d1.conv", "d2.conv"]),
         L("conv", "d3.conv", out=2, kernel=3, padding=1),
         L("concat", "cat3", frm=["s", "d1.conv", "d2.conv", "d3.conv"]),
         L("sigmoid", "act3"),
         L("conv", "late", out=12, kernel=1, frm="cat1"),
         L("add", "sum", frm=["act3", "late"])])
case("graph_dense_chain_output", "concat chain ending the model (its last concat is the "
     "output) whose first concat's operands are also read outside the chain (copied, not "
     "written in place) and whose relu must not run in place, next to a concat of the same "
     "operands in another order",
     [2, 5, 5], [
         L("conv", "a", out=3, kernel=3, padding=1),
         L("conv", "b", out=2, kernel=1),
         L("concat", "c1", frm=["a", "b"]),
         L("relu", "r1"),
         L("conv", "d", out=3, kernel=3, padding=1),
         L("add", "e", frm=["d", "a"]),
         L("concat", "c2", frm=["b", "a", "e"]),
         L("conv", "f", out=2, kernel=1),
         L("concat", "c3", frm=["a", "b", "f"])])
case("graph_fusion_conv_read_twice", "fusion hazard: conv `c` is read by its batch_norm AND "
     "by a later add, so the BN must not be folded into c's weights (c's raw output is "
     "needed)", [3, 6, 6], [
         L("conv", "c", out=4, kernel=3, padding=1),
         L("batch_norm", "bn"), L("relu"),
         L("conv", "c2", out=4, kernel=1),
         L("add", frm=["c"])])
case("graph_fusion_relu_input_reused", "fusion hazard: a relu whose input is read again "
     "later (must not run in place), and a batch_norm whose input is reused", [3, 6, 6], [
         L("conv", "c", out=4, kernel=3, padding=1),
         L("relu", "r"),
         L("conv", "c2", out=4, kernel=1),
         L("batch_norm", "bn", frm="c"),
         L("add", frm=["c", "c2", "bn"]),
         L("sigmoid", "s"),
         L("concat", frm=["c", "s"])])
case("fusion_winograd_max_pool", "a 3x3 conv that runs as Winograd (24 -> 24 on 16x16), "
     "its batch norm, relu and a 2x2 max pool fused into one step (the pool in the output "
     "transform); then a direct conv and an unfused pool", [3, 16, 16], [
         L("conv", "c1", out=24, kernel=3, padding=1), L("relu"),
         L("conv", "c2", out=24, kernel=3, padding=1),
         L("batch_norm", "bn"), L("relu"),
         L("max_pool", "p1", kernel=2),
         L("conv", "c3", out=8, kernel=3, padding=1), L("relu"),
         L("max_pool", "p2", kernel=2)])
case("fusion_winograd_max_pool_odd", "the fused max pool on an odd map (Winograd 24 -> 24 "
     "on 15x15, floor mode drops the last row and column: 7x7), a Winograd conv without "
     "padding (13x13 -> 6x6), and a ceil-mode pool on an odd map (not fused)",
     [24, 15, 15], [
         L("conv", "c1", out=24, kernel=3, padding=1), L("relu"),
         L("max_pool", "p1", kernel=2),
         L("conv", "c2", out=24, kernel=3, padding=1, frm="input"), L("tanh"),
         L("conv", "c3", out=24, kernel=3),
         L("max_pool", "p2", kernel=2),
         L("conv", "c4", out=24, kernel=3, padding=1, frm="input"), L("relu", "r4"),
         L("max_pool", "p3", kernel=2, ceil_mode=True),
         L("global_avg_pool", "g1", frm="p1"),
         L("global_avg_pool", "g2", frm="p2"),
         L("global_max_pool", "g3", frm="p3"),
         L("concat", frm=["g1", "g2", "g3"])])
case("fusion_winograd_max_pool_read_twice", "fusion hazard: a Winograd conv's activated "
     "output read by a 2x2 max pool and by a global max pool (the pool must not be fused)",
     [24, 16, 16], [
         L("conv", "c", out=24, kernel=3, padding=1), L("relu", "r"),
         L("max_pool", "p", kernel=2),
         L("global_avg_pool", "gp"),
         L("global_max_pool", "gr", frm="r"),
         L("concat", frm=["gp", "gr"])])
case("graph_fusion_flatten_input_reused", "fusion hazard: a flatten whose [C, H, W] input is "
     "read later (by a global pool), and a linear on the flattened tensor; vectors "
     "concatenated", [3, 5, 5], [
         L("conv", "c", out=3, kernel=3), L("relu", "r"),
         L("flatten", "f"),
         L("linear", "fc", out=4),
         L("global_max_pool", "g", frm="r"),
         L("concat", frm=["fc", "g", "f"]),
         L("linear", "head", out=3)])

# --- slices and channel shuffles (ShuffleNet) ------------------------------------------------

case("graph_shufflenet_units", "ShuffleNet v2: a stride-1 unit (half the channels pass by "
     "slice, the other half through 1x1, depthwise 3x3, 1x1; concat; channel_shuffle(2)) and "
     "a stride-2 unit (both branches read the whole input), then a head", [3, 12, 12], [
         L("conv", "stem", out=8, kernel=3, padding=1, bias=False),
         L("batch_norm", "stem_bn"), L("relu", "stem_act"),
         L("slice", "u1.x1", start=0, end=4),
         L("slice", "u1.x2", frm="stem_act", start=4, end=8),
         L("conv", "u1.b.0", out=4, kernel=1, bias=False), L("batch_norm", "u1.b.1"),
         L("relu", "u1.b.2"),
         L("conv", "u1.b.3", out=4, kernel=3, padding=1, groups=4, bias=False),
         L("batch_norm", "u1.b.4"),
         L("conv", "u1.b.5", out=4, kernel=1, bias=False), L("batch_norm", "u1.b.6"),
         L("relu", "u1.b.7"),
         L("concat", "u1.cat", frm=["u1.x1", "u1.b.7"]),
         L("channel_shuffle", "u1.shuffle", groups=2),
         L("conv", "u2.a.0", out=8, kernel=3, stride=2, padding=1, groups=8, bias=False),
         L("batch_norm", "u2.a.1"),
         L("conv", "u2.a.2", out=8, kernel=1, bias=False), L("batch_norm", "u2.a.3"),
         L("relu", "u2.a.4"),
         L("conv", "u2.b.0", frm="u1.shuffle", out=8, kernel=1, bias=False),
         L("batch_norm", "u2.b.1"), L("relu", "u2.b.2"),
         L("conv", "u2.b.3", out=8, kernel=3, stride=2, padding=1, groups=8, bias=False),
         L("batch_norm", "u2.b.4"),
         L("conv", "u2.b.5", out=8, kernel=1, bias=False), L("batch_norm", "u2.b.6"),
         L("relu", "u2.b.7"),
         L("concat", "u2.cat", frm=["u2.a.4", "u2.b.7"]),
         L("channel_shuffle", "u2.shuffle", groups=2),
         L("slice", "u3.x2", start=8, end=16),
         L("conv", "u3.b", out=8, kernel=1), L("relu", "u3.act"),
         L("slice", "u3.x1", frm="u2.shuffle", start=0, end=8),
         L("concat", "u3.cat", frm=["u3.x1", "u3.act"]),
         L("channel_shuffle", "u3.shuffle", groups=4),
         L("global_avg_pool", "gap"), L("linear", "fc", out=5)])
case("graph_slice_views", "slices as views: of the input (its sigmoid must not run in "
     "place over the caller's input), of a tensor read again later (its relu must not run "
     "in place), of a dead tensor (in place inside it), a slice read as a fused residual, "
     "and a slice of a slice", [6, 5, 5], [
         L("slice", "in_part", start=1, end=4),
         L("sigmoid", "in_act"),
         L("conv", "c", frm="input", out=8, kernel=3, padding=1),
         L("slice", "c_hi", start=4, end=8),
         L("relu", "c_hi_act"),
         L("slice", "c_lo", frm="c", start=0, end=3),
         L("conv", "d", frm="c_hi_act", out=8, kernel=1),
         L("slice", "d_mid", start=2, end=6),
         L("slice", "d_mid_lo", start=1, end=3),
         L("tanh", "d_act"),
         L("conv", "e", out=3, kernel=3, padding=1),
         L("add", "e_res", frm=["e", "c_lo"]),
         L("conv", "f", frm="c", out=3, kernel=1),
         L("add", "f_res", frm=["f", "e_res"]),
         L("add", "sum", frm=["f_res", "in_act"])])
case("graph_slice_aliases", "operands that are the same memory: an add of a tensor and "
     "a whole-range slice of it (neither may be overwritten in place while the other is "
     "read), a 3-operand add whose last operand is a slice of the first, a shuffle of a "
     "shuffle", [4, 6, 6], [
         L("channel_shuffle", "s0", groups=2),
         L("channel_shuffle", "s1", groups=2),
         L("slice", "half", start=0, end=2),
         L("softmax", "sm"),
         L("slice", "whole", start=0, end=2),
         L("add", "twice", frm=["whole", "sm"]),
         L("conv", "c", out=4, kernel=3, padding=1),
         L("slice", "c_lo", start=0, end=2),
         L("conv", "d", frm="c", out=2, kernel=1),
         L("add", "three", frm=["c_lo", "d", "c_lo"]),
         L("add", "out", frm=["three", "twice"])])
case("graph_slice_output", "the output is a slice of a flattened vector (its features 7..30): "
     "copied out", [2, 4, 4], [
         L("conv", "c", out=3, kernel=3, padding=1), L("relu", "act"),
         L("flatten", "flat"),
         L("slice", "out", start=7, end=30)])
case("shuffle_1d", "1-D: channel_shuffle(3) of a [12, L] signal, a slice of it, and a "
     "shuffle with one group (a copy)", [4, 20], [
         L("conv", "c", out=12, kernel=3, padding=1), L("relu", "act"),
         L("channel_shuffle", "s", groups=3),
         L("slice", "part", start=2, end=9),
         L("conv", "d", out=6, kernel=3),
         L("channel_shuffle", "one", groups=1),
         L("channel_shuffle", "six", groups=6)])

# --- §8 1-D ---------------------------------------------------------------------------------

case("seq1d_conv_dilation_same", "1-D convs with padding same at dilation 1, 2, 4 (odd "
     "kernel) and an even kernel 4 with dilation 1 (extra cell on the right), and valid",
     [3, 24], [
         L("conv", "d1", out=4, kernel=3, padding="same"), L("relu"),
         L("conv", "d2", out=4, kernel=3, padding="same", dilation=2), L("relu"),
         L("conv", "d4", out=4, kernel=3, padding="same", dilation=4, stride=1), L("relu"),
         L("conv", "even", out=3, kernel=4, padding="same"),
         L("conv", "v", out=2, kernel=5, padding="valid")])
case("seq1d_conv_groups_stride", "1-D conv with stride 2 and padding 2, groups 2 (and "
     "depthwise), stride 3 with a remainder, no bias", [4, 40], [
         L("conv", "s2", out=6, kernel=5, stride=2, padding=2), L("relu"),
         L("conv", "g2", out=4, kernel=3, groups=2, padding=1), L("relu"),
         L("conv", "dw", out=8, kernel=3, groups=4), L("tanh"),
         L("conv", "s3", out=3, kernel=2, stride=3, bias=False)])
case("seq1d_pools", "1-D max_pool k3 s2 p1 with ceil_mode, max_pool dilation 2, avg_pool "
     "k3 s2 p1 count_include_pad false with ceil_mode, avg_pool k3 s2 p1 ceil_mode with "
     "padding counted (the cell past the padding is not)",
     [3, 22], [
         L("max_pool", "mp1", kernel=3, stride=2, padding=1, ceil_mode=True),
         L("max_pool", "mp2", kernel=2, stride=1, dilation=2),
         L("avg_pool", "ap1", kernel=3, stride=2, padding=1, count_include_pad=False,
           ceil_mode=True),
         L("avg_pool", "ap2", kernel=3, stride=2, padding=1, ceil_mode=True)])
case("seq1d_batch_norm", "1-D batch_norm (BatchNorm1d over channels of [C, L]) on the "
     "input, after a conv (foldable) and with eps 1e-3", [4, 16], [
         L("batch_norm", "bn0"),
         L("conv", "c", out=5, kernel=3, padding=1, bias=False),
         L("batch_norm", "bn1", eps=1e-3), L("relu"),
         L("conv", "c2", out=3, kernel=1)])
case("seq1d_adaptive_pools", "1-D adaptive_avg_pool 22 -> 7 (non-divisible), "
     "adaptive_max_pool 7 -> 10 (out > L), adaptive_avg_pool -> 1 added back to its input "
     "with broadcasting ([3, 8] + [3, 1])", [3, 24], [
         L("conv", "c", out=4, kernel=3),
         L("adaptive_avg_pool", "a1", out=7),
         L("adaptive_max_pool", "a2", out=10),
         L("conv", "c2", out=3, kernel=3),
         L("adaptive_avg_pool", "a3", out=1),
         L("add", frm=["c2"])])
case("seq1d_global_pools", "1-D global_avg_pool and global_max_pool of the same features "
     "([C, L] -> [C]), concatenated, linear", [3, 20], [
         L("conv", "c", out=6, kernel=5, stride=2), L("relu", "r"),
         L("global_avg_pool", "gap"),
         L("global_max_pool", "gmp", frm="r"),
         L("concat", frm=["gap", "gmp"]),
         L("linear", "fc", out=4)])
case("seq1d_conv_transpose", "1-D conv_transpose stride 2 padding 1 output_padding 1, "
     "then batch_norm + relu; then stride 3 kernel 2 (smaller than the stride), groups 2, "
     "dilation 2 with output_padding 1 at stride 1", [4, 9], [
         L("conv_transpose", "t1", out=6, kernel=3, stride=2, padding=1, output_padding=1),
         L("batch_norm", "bn"), L("relu"),
         L("conv_transpose", "t2", out=4, kernel=2, stride=3, groups=2),
         L("conv_transpose", "t3", out=3, kernel=3, dilation=2, output_padding=1,
           bias=False)])
case("seq1d_conv_transpose_phases", "1-D conv_transpose layers whose strides divide the "
     "kernel: k4 s2 p1, then k8 s4 p2 output_padding 3 and relu", [5, 11], [
         L("conv_transpose", "t1", out=6, kernel=4, stride=2, padding=1),
         L("conv_transpose", "t2", out=3, kernel=8, stride=4, padding=2, output_padding=3),
         L("relu")])
case("seq1d_conv_transpose_split", "1-D conv_transpose layers whose strides do not divide "
     "the kernel: k3 s2 p1 output_padding 1, then batch_norm + relu; k7 s3 p3 output_padding 2",
     [6, 13], [
         L("conv_transpose", "t1", out=8, kernel=3, stride=2, padding=1, output_padding=1),
         L("batch_norm", "bn"), L("relu"),
         L("conv_transpose", "t2", out=3, kernel=7, stride=3, padding=3, output_padding=2)])
case("seq1d_upsample", "1-D upsample: nearest scale 2, linear scale 3 (align_corners false), "
     "linear size 5 (smaller), linear size 17 align_corners true, nearest size 23 "
     "(non-integer ratio)", [2, 7], [
         L("upsample", "n1", scale=2),
         L("upsample", "l1", scale=3, mode="linear"),
         L("conv", "c", out=3, kernel=3, padding=1),
         L("upsample", "l3", size=5, mode="linear", align_corners=False),
         L("upsample", "l2", size=17, mode="linear", align_corners=True),
         L("upsample", "n2", size=23, mode="nearest")])
case("seq1d_tcn_residual", "small TCN: causal-free dilated blocks (k3, dilation 1, 2, 4 "
     "with padding = dilation), each conv-BN-relu-conv-BN + residual add, a 1x1 shortcut "
     "when channels change, concat of two block outputs, head conv", [3, 24], [
         L("conv", "b1.conv1", out=6, kernel=3, padding=1), L("batch_norm", "b1.bn1"),
         L("relu"),
         L("conv", "b1.conv2", out=6, kernel=3, padding=1), L("batch_norm", "b1.bn2"),
         L("conv", "b1.down", frm="input", out=6, kernel=1),
         L("add", frm=["b1.bn2", "b1.down"]), L("relu", "b1"),
         L("conv", "b2.conv1", out=6, kernel=3, padding=2, dilation=2),
         L("batch_norm", "b2.bn1"), L("relu"),
         L("conv", "b2.conv2", out=6, kernel=3, padding=2, dilation=2),
         L("batch_norm", "b2.bn2"),
         L("add", frm=["b1"]), L("relu", "b2"),
         L("conv", "b3.conv1", out=6, kernel=3, padding=4, dilation=4), L("relu"),
         L("conv", "b3.conv2", out=6, kernel=3, padding=4, dilation=4),
         L("add", frm=["b2"]), L("relu", "b3"),
         L("concat", "cat", frm=["b1", "b3"]),
         L("conv", "head", out=2, kernel=1)])
case("seq1d_flatten_linear_head", "1-D features flattened ([C, L] -> [C*L] in C, L order), "
     "linear, batch_norm on the vector, relu, linear, softmax", [2, 16], [
         L("conv", "c", out=3, kernel=3, stride=2), L("relu"),
         L("max_pool", "p", kernel=2),
         L("flatten"),
         L("linear", "fc1", out=8), L("batch_norm", "bn"), L("relu"),
         L("linear", "fc2", out=4), L("softmax")])

# --- vector input ---------------------------------------------------------------------------

case("vec_mlp_residual", "vector input [12]: linear, batch_norm, relu, a residual add, "
     "a concat with the input, dropout, softmax", [12], [
         L("linear", "fc1", out=12), L("batch_norm", "bn1"), L("relu"),
         L("linear", "fc2", out=12),
         L("add", "res", frm=["input"]),
         L("concat", frm=["input", "res"]),
         L("dropout", p=0.2),
         L("linear", "fc3", out=5), L("softmax")])
case("vec_activations", "vector input [10]: every activation on a vector (silu, hardswish, "
     "hardsigmoid, gelu, identity, leaky_relu, relu6, tanh, sigmoid), batch_norm on the "
     "input, mul of two of them, flatten (a no-op)", [10], [
         L("batch_norm", "bn0"),
         L("linear", "fc1", out=8, _w=3.0), L("silu", "a"),
         L("hardswish", "b", frm="fc1"),
         L("hardsigmoid", "c", frm="fc1"),
         L("gelu", "d", frm="fc1"),
         L("leaky_relu", "e", frm="fc1", slope=0.1),
         L("relu6", "f", frm="fc1"),
         L("mul", "bc", frm=["b", "c"]),
         L("concat", "cat", frm=["a", "bc", "d", "e", "f"]),
         L("identity"), L("flatten"), L("tanh"),
         L("linear", "fc2", out=3), L("sigmoid")], input_scale=2.0)


# ---------------------------------------------------------------------------------------
# Invalid descriptions (tests/cases_invalid/<name>.toml): each must be a compile error
# ---------------------------------------------------------------------------------------

# (name, layer the error must name, reason, input, layers)
INVALID: list[tuple[str, str, str, list[int], list[dict[str, Any]]]] = []


def invalid(name: str, layer: str, reason: str, inp: list[int],
            layers: list[dict[str, Any]]) -> None:
    INVALID.append((name, layer, reason, inp, layers))


_STEM = [L("conv", "conv1", out=4, kernel=3, padding=1), L("batch_norm", "bn1"),
         L("relu", "act1")]
invalid("from_unknown_name", "c2", "`from` names no layer: \"bn_1\" (closest: bn1)",
        [3, 8, 8], _STEM + [L("conv", "c2", frm="bn_1", out=4, kernel=1),
                            L("add", frm=["act1"])])
invalid("from_later_layer", "c2", "`from` names the later layer c3", [3, 8, 8], [
    L("conv", "c1", out=4, kernel=3, padding=1),
    L("conv", "c2", frm="c3", out=4, kernel=1),
    L("conv", "c3", frm="c1", out=4, kernel=1),
    L("add", frm=["c2", "c3"])])
invalid("from_itself", "c2", "`from` names the layer itself", [3, 8, 8], [
    L("conv", "c1", out=4, kernel=3, padding=1), L("conv", "c2", frm="c2", out=4, kernel=1)])
invalid("add_not_broadcastable", "sum", "add of [4,8,8] and [4,4,4] (8 vs 4, neither is 1)",
        [3, 8, 8], [L("conv", "a", out=4, kernel=3, padding=1),
                    L("conv", "b", frm="input", out=4, kernel=3, stride=2, padding=1),
                    L("add", "sum", frm=["a", "b"])])
invalid("add_channels_not_broadcastable", "2", "add of [4,6,6] and [3,6,6] (channels 4 vs 3)",
        [3, 6, 6], [L("conv", out=4, kernel=3, padding=1), L("relu"), L("add", frm=["input"])])
invalid("concat_spatial_mismatch", "cat", "concat of [4,8,8] and [4,4,4] (spatial sizes "
        "differ)", [3, 8, 8], [L("conv", "a", out=4, kernel=3, padding=1),
                                L("max_pool", "b", kernel=2),
                                L("concat", "cat", frm=["a", "b"])])
invalid("concat_rank_mismatch", "cat", "concat of [4,6,6] and the vector [4] (ranks differ)",
        [3, 6, 6], [L("conv", "a", out=4, kernel=3, padding=1),
                    L("global_avg_pool", "g"),
                    L("concat", "cat", frm=["a", "g"])])
invalid("output_never_read", "side", "the output of `side` is read by no layer (the next "
        "layer reads `main` by from)", [3, 8, 8], [
            L("conv", "main", out=4, kernel=3, padding=1),
            L("conv", "side", frm="input", out=4, kernel=1),
            L("relu", frm="main"), L("conv", "head", out=2, kernel=1)])
invalid("array_from_on_single_input", "c2", "array `from` on conv (a single-input op)",
        [3, 8, 8], [L("conv", "c1", out=4, kernel=3, padding=1),
                    L("conv", "c2", frm=["c1"], out=4, kernel=1)])
invalid("string_from_on_merge", "sum", "string `from` on add (needs an array)", [3, 8, 8], [
    L("conv", "c1", out=3, kernel=3, padding=1), L("add", "sum", frm="input")])
invalid("empty_from_on_add", "sum", "add with `from = []` (at least one operand)", [3, 8, 8], [
    L("conv", "c1", out=3, kernel=3, padding=1), L("add", "sum", frm=[])])
invalid("merge_without_from", "sum", "add without `from` (operands are required)", [3, 8, 8],
        [L("conv", "c1", out=3, kernel=3, padding=1), L("add", "sum")])
invalid("upsample_scale_and_size", "up", "upsample with both scale and size", [3, 6, 6], [
    L("upsample", "up", scale=2, size=12)])
invalid("upsample_neither", "up", "upsample with neither scale nor size", [3, 6, 6], [
    L("conv", "c", out=3, kernel=1), L("upsample", "up", mode="bilinear")])
invalid("bilinear_on_1d", "up", "mode bilinear on a [C, L] input (1-D takes linear)", [3, 16], [
    L("conv", "c", out=3, kernel=3), L("upsample", "up", scale=2, mode="bilinear")])
invalid("linear_mode_on_2d", "up", "mode linear on a [C, H, W] input (2-D takes bilinear)",
        [3, 6, 6], [L("upsample", "up", scale=2, mode="linear")])
invalid("align_corners_with_nearest", "up", "align_corners with mode nearest (even false)",
        [3, 6, 6], [L("upsample", "up", scale=2, mode="nearest", align_corners=False)])
invalid("conv_transpose_output_padding_too_large", "up", "output_padding 2 not < stride 2 "
        "nor < dilation 1", [4, 5, 5], [
            L("conv_transpose", "up", out=4, kernel=3, stride=2, padding=1, output_padding=2)])
invalid("conv_transpose_output_size_zero", "up", "output size (1-1)*1 - 2*1 + 1*(1-1) + 0 + 1 "
        "= -1 < 1", [4, 1, 1], [L("conv_transpose", "up", out=4, kernel=1, padding=1)])
invalid("pair_kernel_on_1d", "c", "kernel [3, 3] (a pair) on a [C, L] input", [3, 16], [
    L("conv", "c", out=4, kernel=[3, 3])])
invalid("pair_stride_on_1d_pool", "p", "stride [2, 2] (a pair) on a 1-D max_pool", [3, 16], [
    L("max_pool", "p", kernel=2, stride=[2, 2])])
invalid("adaptive_pool_out_zero", "pool", "adaptive_avg_pool out = 0", [3, 8, 8], [
    L("adaptive_avg_pool", "pool", out=0)])
invalid("input_rank_4", "input", "input of rank 4 [1, 3, 8, 8] (rank 1, 2 or 3)", [1, 3, 8, 8], [
    L("conv", "c", out=4, kernel=3)])
invalid("conv_on_vector_input", "c", "conv on a vector input [16]", [16], [
    L("conv", "c", out=4, kernel=3)])
invalid("layer_named_input", "input", "a layer named `input` (reserved)", [3, 8, 8], [
    L("conv", "input", out=4, kernel=3)])
invalid("slice_beyond_channels", "s", "slice end = 9 of a [6, 4, 4] tensor", [3, 4, 4], [
    L("conv", "c", out=6, kernel=1), L("slice", "s", start=2, end=9)])
invalid("slice_empty", "s", "slice start = 3, end = 3 (nothing kept)", [3, 4, 4], [
    L("slice", "s", start=3, end=3)])
invalid("channel_shuffle_groups_not_dividing", "sh", "channel_shuffle groups = 4 of 6 "
        "channels", [3, 4, 4], [L("conv", "c", out=6, kernel=1),
                                L("channel_shuffle", "sh", groups=4)])
invalid("channel_shuffle_on_vector", "sh", "channel_shuffle of the vector [6]", [6], [
    L("channel_shuffle", "sh", groups=2)])


# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------

def _strip(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in l.items() if not k.startswith("_")} for l in layers]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        if "e" in r:
            mant, exp = r.split("e")
            return (mant if "." in mant else mant + ".0") + f"e{int(exp)}"
        return r
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    raise TypeError(v)


def to_toml(name: str, description: str, inp: list[int], layers: list[dict[str, Any]]) -> str:
    lines = [f"# {name}: {description}", f"input = {_fmt(inp)}"]
    for l in layers:
        lines += ["", "[[layers]]"]
        lines += [f"{k} = {_fmt(v)}" for k, v in l.items()]
    return "\n".join(lines) + "\n"


def _init(model: cnn_tools.GraphModel, layers: list[dict[str, Any]], g: torch.Generator
          ) -> None:
    """Seeded weights: N(0, 1/fan_in)*_w, biases N(0, 0.2²), non-trivial BN statistics."""
    with torch.no_grad():
        for spec, layer, m in zip(layers, model.layers, model._fns):
            scale = float(spec.get("_w", 1.0))
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                fan = m.weight[0].numel()
            elif isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
                taps = m.weight[0, 0].numel()
                fan = max(1.0, (m.in_channels // m.groups) * taps / math.prod(m.stride))
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g, dtype=torch.float64))
                m.weight.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
                m.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.3)
                continue
            else:
                continue
            w = torch.randn(m.weight.shape, generator=g, dtype=torch.float64)
            m.weight.copy_(w * scale / math.sqrt(fan))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=torch.float64) * 0.2)


_KEYWORDS = {"type", "fn", "self", "struct", "mod", "use", "match", "loop", "ref", "move"}


def features(desc: dict[str, Any], layers: list[cnn_tools.Layer], extra: list[str]
             ) -> list[str]:
    tags = set(extra)
    rank = len(desc["input"])
    tags.add({1: "input_vector", 2: "input_1d", 3: "input_2d"}[rank])
    shapes = {"input": tuple(desc["input"])}
    reads: dict[str, int] = {}
    for spec, l in zip(desc["layers"], layers):
        tags.add(l.op)
        ins = [shapes[r] for r in l.inputs]
        for r in l.inputs:
            reads[r] = reads.get(r, 0) + 1
        tags.add("named_layer" if l.named else "unnamed_layer")
        if "." in l.name:
            tags.add("dotted_name")
            segs = l.name.split(".")
            if any(not (s.isidentifier() or s.isdigit()) for s in segs):
                tags.add("name_needs_string_literal")
            if any(s in _KEYWORDS for s in segs):
                tags.add("name_keyword_segment")
        if l.op in cnn_tools.MERGE_OPS:
            n = len(spec["from"])
            tags.add(f"{l.op}_one_name" if n == 1 else f"{l.op}_{min(n, 3)}plus_operands"
                     if n >= 3 else f"{l.op}_two_names")
            if len(set(l.inputs)) < len(l.inputs):
                tags.add("merge_repeated_operand")
            if l.op != "concat" and len(set(ins)) > 1:
                tags.add(f"{l.op}_broadcast")
                if ins[0] != l.output_shape:
                    tags.add(f"{l.op}_broadcast_first_operand")
        elif l.explicit_from:
            tags.add("from_input" if spec["from"] == "input" else "from_layer")
            if spec["from"].isdigit():
                tags.add("from_index_name")
        if l.op in cnn_tools.MERGE_OPS and any(r.isdigit() for r in spec["from"]):
            tags.add("from_index_name")
        if any(r == "input" for r in l.inputs) and l.index > 0:
            tags.add("input_read_later")
        a = l.args
        if l.op == "conv_transpose":
            if a.get("output_padding", 0) != 0:
                tags.add("conv_transpose_output_padding")
            for k in ("stride", "padding", "dilation", "groups"):
                if a.get(k, 1 if k != "padding" else 0) not in (1, 0):
                    tags.add(f"conv_transpose_{k}")
            if a.get("bias", True) is False:
                tags.add("conv_transpose_no_bias")
        if l.op == "upsample":
            mode = a.get("mode", "nearest")
            tags.add(f"upsample_{mode}")
            tags.add("upsample_scale" if "scale" in a else "upsample_size")
            if a.get("align_corners"):
                tags.add("upsample_align_corners")
            if "size" in a and any(o < i for o, i in zip(l.output_shape[1:], ins[0][1:])):
                tags.add("upsample_size_smaller")
        if l.op.startswith("adaptive_"):
            if any(o > i for o, i in zip(l.output_shape[1:], ins[0][1:])):
                tags.add("adaptive_pool_out_gt_in")
            if any(i % o for o, i in zip(l.output_shape[1:], ins[0][1:])):
                tags.add("adaptive_pool_nondivisible")
        if l.op == "softmax" and len(ins[0]) > 1:
            tags.add("softmax_channels")
        if l.op in ("max_pool", "avg_pool"):
            if a.get("ceil_mode"):
                tags.add(f"{l.op}_ceil_mode")
            if a.get("count_include_pad") is False:
                tags.add("avg_pool_exclude_pad")
        if l.op == "conv" and a.get("padding") == "same":
            tags.add("conv_same")
        if l.op == "batch_norm":
            tags.add({1: "batch_norm_vector", 2: "batch_norm_1d", 3: "batch_norm_2d"}[len(ins[0])])
        shapes[l.name] = l.output_shape
    if any(n >= 3 for n in reads.values()):
        tags.add("tensor_read_three_times")
    if layers[-1].op in cnn_tools.MERGE_OPS:
        tags.add("output_is_merge")
    out_rank = len(layers[-1].output_shape)
    if out_rank > 1:
        tags.add("spatial_output" if out_rank == 3 else "output_1d")
    return sorted(tags)


def _dump_case(case: dict[str, Any]) -> str:
    def dump(v: Any) -> str:
        return json.dumps(v, separators=(", ", ": "))

    lines = []
    for k, v in case.items():
        if k == "layers":
            inner = ",\n".join(f"  {dump(l)}" for l in v)
            lines.append(f' "layers": [\n{inner}\n ]')
        else:
            lines.append(f" {dump(k)}: {dump(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def generate(name: str, description: str, inp: list[int], spec_layers: list[dict[str, Any]],
             opts: dict[str, Any], out_root: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    seed = zlib.crc32(name.encode()) % 1_000_000
    g = torch.Generator().manual_seed(seed)
    desc = {"input": list(inp), "layers": _strip(spec_layers)}
    source = f"tests/cases/{name}/model.toml"
    model = cnn_tools.build_model(desc, source)  # spec shapes, checked against torch
    _init(model, spec_layers, g)
    model.eval()
    weights = {k: (v.to(torch.float32) if v.is_floating_point() else v).clone().contiguous()
               for k, v in model.state_dict().items()}
    model.load_state_dict(weights, strict=True)  # the stored f32 values
    x = torch.randn((N_INPUTS,) + tuple(inp), generator=g, dtype=torch.float32)
    x = (x * float(opts.get("input_scale", 1.0))).to(torch.float32)
    with torch.no_grad():
        ref64 = model.double()(x.double())
        y32 = model.float()(x)
    out = ref64.to(torch.float32).contiguous()
    out_shape = tuple(model.layers[-1].output_shape)
    assert tuple(out.shape) == (N_INPUTS,) + out_shape, (name, out.shape, out_shape)
    assert torch.isfinite(ref64).all(), name
    ratio = float(((y32.double() - ref64).abs() / (ATOL + RTOL * ref64.abs())).max())
    if any(l.op == "upsample" for l in model.layers):
        diff = cnn_tools.check_upsample_against_torch(desc, x)
        assert diff < 1e-9, f"{name}: SpecUpsample and torch.nn.Upsample differ by {diff}"
    # The reloaded model must reproduce the reference (strict keys, shapes).
    reloaded = cnn_tools.build_model(desc, source)
    reloaded.load_state_dict(weights, strict=True)
    with torch.no_grad():
        again = reloaded.double().eval()(x.double())
    assert torch.equal(again, ref64), name

    d = out_root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.toml").write_text(to_toml(name, description, inp, desc["layers"]))
    meta = {"generator": f"tools/gen_cases.py, torch {torch.__version__}, case {name}"}
    save_file(weights, str(d / "weights.safetensors"), metadata=meta)
    save_file({"input": x.contiguous(), "output": out}, str(d / "data.safetensors"),
              metadata={"generator": f"tools/gen_cases.py, torch {torch.__version__}, "
                                     f"float64 reference, case {name}"})
    case = {
        "name": name,
        "description": description,
        "features": features(desc, model.layers, opts.get("features", [])),
        "input_shape": list(inp),
        "output_shape": list(out_shape),
        "n_inputs": N_INPUTS,
        "params": cnn_tools.count_params(model),
        "macs": sum(l.macs for l in model.layers),
        "layers": cnn_tools.layer_table(model),
        "max_abs_output": float(out.abs().max()),
        "torch_f32_tolerance_ratio": ratio,
        "seed": seed,
    }
    assert case["params"] == sum(l["params"] for l in case["layers"]), name
    (d / "case.json").write_text(_dump_case(case))
    return case


def write_invalid(out_root: Path) -> None:
    """Write tests/cases_invalid/<name>.toml and check that each is rejected by
    cnn_tools (spec checks) with a message naming the expected layer."""
    out_root.mkdir(parents=True, exist_ok=True)
    names = {n for n, *_ in INVALID}
    assert len(names) == len(INVALID), "duplicate invalid names"
    for p in out_root.glob("*.toml"):
        if p.stem not in names:
            p.unlink()
    for name, layer, reason, inp, layers in INVALID:
        text = to_toml(name, reason, inp, layers).split("\n", 1)[1]
        path = out_root / f"{name}.toml"
        path.write_text(f"# expect: {layer} {reason}\n" + text)
        try:
            cnn_tools.build_model(path)
        except cnn_tools.DescriptionError as e:
            msg = str(e)
            if f"layer {layer!r}" not in msg:
                raise AssertionError(f"{name}: rejected, but not naming {layer!r}: {msg}")
            print(f"{name:42s} rejected: {msg[len(str(path)) + 2:]}", file=sys.stderr)
            continue
        raise AssertionError(f"{name}: accepted")


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    out_root = Path(argv[1]) if len(argv) > 1 else OUT
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    if out_root.is_dir():  # remove stale case directories (keep README.md)
        for p in out_root.iterdir():
            if p.is_dir() and (p / "model.toml").exists() and p.name not in names:
                shutil.rmtree(p)
    write_invalid(ROOT / "tests/cases_invalid" if len(argv) <= 1 else out_root / "invalid")
    worst = 0.0
    for name, description, inp, layers, opts in CASES:
        c = generate(name, description, inp, layers, opts, out_root)
        worst = max(worst, c["torch_f32_tolerance_ratio"])
        print(f"{name:45s} {str(c['input_shape']):12s} -> {str(c['output_shape']):14s} "
              f"params {c['params']:5d}  max|y| {c['max_abs_output']:.3g}  "
              f"f32 ratio {c['torch_f32_tolerance_ratio']:.2g}", file=sys.stderr)
    print(f"{len(CASES)} cases in {out_root}; worst torch f32 tolerance ratio {worst:.3g}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
