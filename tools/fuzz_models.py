#!/usr/bin/env python3
"""Differential fuzzing of whole models: random valid descriptions, compiled by `cnn`,
checked against PyTorch.

Each round draws ``--count`` random descriptions (MODEL_FORMAT.md: images, 1-D signals
and vectors; convolutions of every kernel, stride, padding, dilation and group shape,
depthwise and grouped ones, pools with their PyTorch details, batch norm, every
activation, residual ``add``, ``mul`` gates, ``concat``, ``slice``, ``channel_shuffle``,
``upsample``, ``conv_transpose``, adaptive and global pools, classifier heads), keeps
those that the spec's shape arithmetic and PyTorch accept and that PyTorch's own float32
result keeps well inside the tolerance, and writes each as a case (the conformance
suite's files, by ``gen_cases.generate``: seeded weights, three inputs, the float64
reference). A generated crate then compiles every case with ``cnn_model!`` and runs it
on every SIMD level this CPU has, at one and two threads, image by image
(``forward_flat``) and as one batch (``forward_batch_into``), comparing with the
reference at the conformance tolerance (``1e-4 + 1e-4 |want|``).

A description that ``cnn`` refuses to compile is a finding as well (the spec accepts it):
the case is reported and left out of the build.

    python3 tools/fuzz_models.py [--count 40] [--seed 1] [--rounds 1] [--out DIR]

Everything goes under ``target/fuzz_models/`` (cases, the crate, its build); a failing
case's directory stays there with its ``model.toml`` for a regression case. Exit status
1 when any case failed. Slow: PyTorch in float64, and a release build of the crate
(about a minute for 40 models) per round.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn_tools  # noqa: E402
import gen_cases  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ACTS = ["relu", "relu6", "tanh", "sigmoid", "leaky_relu", "silu", "hardswish",
        "hardsigmoid", "gelu", "identity", "dropout"]
#: Most multiply-adds a model may have (PyTorch runs it in float64).
MAX_MACS = 40_000_000


class Builder:
    """A description under construction: the layers so far and the current tensor."""

    def __init__(self, rng: random.Random, inp: list[int]):
        self.rng = rng
        self.inp = inp
        self.layers: list[dict[str, Any]] = []
        self.cur = "input"
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(inp)}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes[self.cur]

    def try_add(self, new: list[dict[str, Any]]) -> bool:
        """Appends `new` (named l<i>) if the description stays valid and small."""
        base = len(self.layers)
        named = []
        for i, l in enumerate(new):
            l = dict(l)
            l.setdefault("name", f"l{base + i}")
            named.append(l)
        desc = {"input": self.inp, "layers": self.layers + named}
        try:
            layers = cnn_tools.infer_layers(desc, "<fuzz>")
        except cnn_tools.DescriptionError:
            return False
        if sum(l.macs for l in layers) > MAX_MACS:
            return False
        if any(math.prod(l.output_shape) > 400_000 for l in layers):
            return False
        self.layers += named
        for l in layers[base:]:
            self.shapes[l.name] = tuple(l.output_shape)
        self.cur = named[-1]["name"]
        return True

    def name_of(self, k: int) -> str:
        """The name layer `k` of a block being built will get (`k` from 0)."""
        return f"l{len(self.layers) + k}"


def pick(rng: random.Random, items: list[Any], weights: list[float] | None = None) -> Any:
    return rng.choices(items, weights=weights)[0]


def act(rng: random.Random) -> dict[str, Any]:
    a = pick(rng, ACTS)
    if a == "leaky_relu" and rng.random() < 0.5:
        return {"op": a, "slope": pick(rng, [0.01, 0.2, 0.3])}
    if a == "dropout":
        return {"op": a, "p": 0.25}
    return {"op": a}


def channels(rng: random.Random) -> int:
    return pick(rng, [1, 2, 3, 4, 6, 8, 12, 16, 17, 24, 32, 33, 48, 64, 96, 128, 160])


def conv_layer(rng: random.Random, c: int, rank: int, *, depthwise: bool = False
               ) -> dict[str, Any]:
    """A convolution of a `c`-channel input (`rank` 3: images, 2: signals)."""
    sp = rank - 1
    if sp == 2 and rng.random() < 0.15:
        k: Any = [pick(rng, [1, 3, 5]), pick(rng, [1, 3, 7])]
    else:
        k = pick(rng, [1, 3, 3, 3, 5, 7], [3, 4, 2, 1, 2, 1] if sp == 2 else None)
    kmax = max(k) if isinstance(k, list) else k
    stride = pick(rng, [1, 1, 1, 2, 2, 3])
    dil = pick(rng, [1, 1, 1, 1, 2, 3]) if kmax > 1 else 1
    pad: Any = pick(rng, [0, kmax // 2, kmax // 2, kmax // 2 * dil, 1, 2])
    if stride == 1 and rng.random() < 0.15:
        pad = "same"
    l: dict[str, Any] = {"op": "conv", "kernel": k}
    if depthwise:
        l["out"] = c * pick(rng, [1, 1, 1, 2])
        l["groups"] = c
    else:
        out = channels(rng)
        g = 1
        if rng.random() < 0.15:
            g = pick(rng, [d for d in range(2, 9) if c % d == 0] or [1])
            out = max(g, out // g * g)
        l["out"] = out
        if g > 1:
            l["groups"] = g
    if stride != 1:
        l["stride"] = stride
    if pad != 0:
        l["padding"] = pad
    if dil != 1:
        l["dilation"] = dil
    if rng.random() < 0.3:
        l["bias"] = False
    return l


def pool_layer(rng: random.Random, rank: int) -> dict[str, Any]:
    kind = pick(rng, ["max_pool", "avg_pool"])
    k = pick(rng, [2, 2, 3, 3, 4, 5])
    l: dict[str, Any] = {"op": kind, "kernel": k}
    s = pick(rng, [None, 1, 2, 3])
    if s is not None:
        l["stride"] = s
    p = pick(rng, [0, 0, k // 2])
    if p:
        l["padding"] = p
    if rng.random() < 0.3:
        l["ceil_mode"] = True
    if kind == "avg_pool" and p and rng.random() < 0.5:
        l["count_include_pad"] = False
    if kind == "max_pool" and rng.random() < 0.1:
        l["dilation"] = 2
    return l


def image_block(b: Builder) -> None:
    """One random block on the current [C, H, W] or [C, L] tensor."""
    rng, rank = b.rng, len(b.shape)
    c = b.shape[0]
    x = b.cur
    kind = pick(rng, ["conv", "dw", "pool", "residual", "concat", "gate", "upsample",
                      "transpose", "shuffle", "act", "bn", "adaptive", "inverted", "dense",
                      "bottleneck"],
                [30, 12, 10, 10, 7, 4, 4, 4, 4, 5, 3, 3, 10, 4, 6])
    if rng.random() < 0.12:
        kind = pick(rng, ["unet", "inception", "spatial_gate"])
    if kind == "unet":
        # Down a level and back up, the skip concatenated (U-Net): sizes must meet.
        m = channels(rng)
        block = [{"op": "conv", "out": m, "kernel": 3, "padding": 1}, {"op": "relu"}]
        skip = b.name_of(len(block) - 1)
        block += [{"op": pick(rng, ["max_pool", "avg_pool"]), "kernel": 2},
                  {"op": "conv", "out": 2 * m, "kernel": 3, "padding": 1}, {"op": "relu"}]
        if rng.random() < 0.5:
            block.append({"op": "upsample", "scale": 2,
                          "mode": pick(rng, ["nearest", "bilinear" if rank == 3 else "linear"])})
        else:
            block.append({"op": "conv_transpose", "out": m, "kernel": 2, "stride": 2})
        block.append({"op": "concat", "from": [b.name_of(len(block) - 1), skip]})
        b.try_add(block)
        return
    if kind == "inception":
        # Three or four branches of the same input, concatenated (or summed).
        block = []
        ends = []
        merge = pick(rng, ["concat", "concat", "add"])
        o = channels(rng)
        for k in rng.sample([1, 3, 5, 7], rng.randrange(2, 5)):
            block.append({"op": "conv", "from": x, "out": o if merge == "add" else channels(rng),
                          "kernel": k, "padding": k // 2})
            ends.append(b.name_of(len(block) - 1))
        if rng.random() < 0.5 and merge == "concat":
            block += [{"op": "max_pool", "from": x, "kernel": 3, "stride": 1, "padding": 1}]
            ends.append(b.name_of(len(block) - 1))
        block.append({"op": merge, "from": ends})
        b.try_add(block)
        return
    if kind == "spatial_gate":
        # One map gating every channel (broadcast over the channel axis).
        k = pick(rng, [3, 7])
        block = [{"op": "conv", "out": 1, "kernel": k, "padding": k // 2},
                 {"op": pick(rng, ["sigmoid", "hardsigmoid", "tanh"])}]
        block.append({"op": pick(rng, ["mul", "add"]), "from": [x, b.name_of(1)]})
        b.try_add(block)
        return
    if kind == "inverted":
        # MobileNetV2/V3, EfficientNet: expand, depthwise (stride 1 or 2), optional
        # squeeze-and-excitation, project, residual when the shape allows.
        e = c * pick(rng, [1, 3, 4, 6])
        k = pick(rng, [3, 3, 5])
        s = pick(rng, [1, 1, 2])
        a1, a2 = pick(rng, ["relu6", "silu", "hardswish", "relu"]), None
        block: list[dict[str, Any]] = []
        if e != c:
            block += [{"op": "conv", "out": e, "kernel": 1, "bias": False},
                      {"op": "batch_norm"}, {"op": a1}]
        block += [{"op": "conv", "out": e, "kernel": k, "stride": s, "padding": k // 2,
                   "groups": e, "bias": False}, {"op": "batch_norm"}, {"op": a1}]
        if rng.random() < 0.35:
            dw = b.name_of(len(block) - 1)
            r = max(1, e // 4)
            block += [{"op": "adaptive_avg_pool", "out": 1 if rank == 2 else [1, 1]},
                      {"op": "conv", "out": r, "kernel": 1}, {"op": "relu"},
                      {"op": "conv", "out": e, "kernel": 1},
                      {"op": pick(rng, ["sigmoid", "hardsigmoid"])}]
            block.append({"op": "mul", "from": [dw, b.name_of(len(block) - 1)]})
        o = c if s == 1 and rng.random() < 0.6 else channels(rng)
        block += [{"op": "conv", "out": o, "kernel": 1, "bias": False}, {"op": "batch_norm"}]
        if s == 1 and o == c:
            block.append({"op": "add", "from": [b.name_of(len(block) - 1), x]})
        del a2
        b.try_add(block)
        return
    if kind == "dense":
        # DenseNet: each layer's output concatenated to everything before it.
        g = pick(rng, [4, 8, 12, 32])
        block = []
        cur = x
        for _ in range(rng.randrange(2, 5)):
            block += [{"op": "batch_norm", "from": cur}, {"op": "relu"},
                      {"op": "conv", "out": 4 * g, "kernel": 1, "bias": False},
                      {"op": "batch_norm"}, {"op": "relu"},
                      {"op": "conv", "out": g, "kernel": 3, "padding": 1, "bias": False}]
            block.append({"op": "concat", "from": [cur, b.name_of(len(block) - 1)]})
            cur = b.name_of(len(block) - 1)
        b.try_add(block)
        return
    if kind == "bottleneck":
        # ResNet: 3x3 (or 1x1-3x3-1x1) with a stride, a 1x1 shortcut when the shape changes.
        s = pick(rng, [1, 2])
        o = pick(rng, [c, c, 2 * c, channels(rng)])
        if rng.random() < 0.5:
            block = [{"op": "conv", "out": o, "kernel": 3, "stride": s, "padding": 1,
                      "bias": False}, {"op": "batch_norm"}, {"op": "relu"},
                     {"op": "conv", "out": o, "kernel": 3, "padding": 1, "bias": False},
                     {"op": "batch_norm"}]
        else:
            m = max(1, o // 4)
            block = [{"op": "conv", "out": m, "kernel": 1, "bias": False},
                     {"op": "batch_norm"}, {"op": "relu"},
                     {"op": "conv", "out": m, "kernel": 3, "stride": s, "padding": 1,
                      "bias": False}, {"op": "batch_norm"}, {"op": "relu"},
                     {"op": "conv", "out": o, "kernel": 1, "bias": False},
                     {"op": "batch_norm"}]
        main_end = b.name_of(len(block) - 1)
        short = x
        if s != 1 or o != c:
            block += [{"op": "conv", "from": x, "out": o, "kernel": 1, "stride": s,
                       "bias": False}, {"op": "batch_norm"}]
            short = b.name_of(len(block) - 1)
        block += [{"op": "add", "from": [main_end, short]}, {"op": "relu"}]
        b.try_add(block)
        return
    if kind == "conv":
        block = [conv_layer(rng, c, rank)]
        if rng.random() < 0.5:
            block.append({"op": "batch_norm"})
        if rng.random() < 0.7:
            block.append(act(rng))
        b.try_add(block)
    elif kind == "dw":
        block = [conv_layer(rng, c, rank, depthwise=True)]
        if rng.random() < 0.5:
            block.append({"op": "batch_norm"})
        block.append(act(rng))
        if rng.random() < 0.6:
            block += [{"op": "conv", "out": channels(rng), "kernel": 1}]
            if rng.random() < 0.5:
                block.append({"op": "batch_norm"})
        b.try_add(block)
    elif kind == "pool":
        b.try_add([pool_layer(rng, rank)])
    elif kind == "residual":
        k = pick(rng, [1, 3, 5])
        branch = [{"op": "conv", "out": c, "kernel": k, "padding": k // 2}]
        if rng.random() < 0.5:
            branch.append({"op": "batch_norm"})
        branch.append(act(rng))
        if rng.random() < 0.5:
            branch.append({"op": "conv", "out": c, "kernel": 3, "padding": 1,
                           "groups": pick(rng, [1, c])})
        end = b.name_of(len(branch) - 1)
        block = branch + [{"op": pick(rng, ["add", "add", "mul"]), "from": [end, x]}]
        if rng.random() < 0.5:
            block.append(act(rng))
        b.try_add(block)
    elif kind == "concat":
        first = conv_layer(rng, c, rank)
        first.update({"stride": 1, "padding": "same"})
        first.pop("dilation", None) if rng.random() < 0.5 else None
        second = {"op": "conv", "from": x, "out": channels(rng), "kernel": 1}
        if rng.random() < 0.4:
            # The input itself as an operand.
            block = [first, {"op": "concat", "from": [x, b.name_of(0)]}]
        else:
            block = [first, second, {"op": "concat", "from": [b.name_of(0), b.name_of(1)]}]
        b.try_add(block)
    elif kind == "gate":
        r = max(1, c // pick(rng, [2, 4, 8]))
        block = [{"op": "adaptive_avg_pool", "out": 1 if rank == 2 else [1, 1]},
                 {"op": "conv", "out": r, "kernel": 1}, {"op": "relu"},
                 {"op": "conv", "out": c, "kernel": 1},
                 {"op": pick(rng, ["sigmoid", "hardsigmoid"])}]
        block.append({"op": "mul", "from": [x, b.name_of(len(block) - 1)]})
        b.try_add(block)
    elif kind == "upsample":
        mode = pick(rng, ["nearest", "bilinear" if rank == 3 else "linear"])
        l: dict[str, Any] = {"op": "upsample", "mode": mode}
        if rng.random() < 0.7:
            l["scale"] = pick(rng, [2, 2, 3])
        else:
            l["size"] = ([pick(rng, [7, 12, 20]), pick(rng, [5, 16])] if rank == 3
                         else pick(rng, [9, 30]))
        if mode != "nearest" and rng.random() < 0.5:
            l["align_corners"] = True
        b.try_add([l])
    elif kind == "transpose":
        k = pick(rng, [2, 3, 4])
        s = pick(rng, [1, 2, 2, 3])
        l = {"op": "conv_transpose", "out": channels(rng), "kernel": k, "stride": s}
        if rng.random() < 0.4:
            l["padding"] = pick(rng, [1, 1, 2])
        # Dilated: per-phase convolutions at a dilation, or (a factor shared with the
        # stride) the phase kernel.
        d = pick(rng, [2, 3]) if rng.random() < 0.2 else 1
        if d > 1:
            l["dilation"] = d
        if max(s, d) > 1 and rng.random() < 0.3:
            l["output_padding"] = rng.randrange(1, max(s, d))
        if rng.random() < 0.1 and c % 2 == 0:
            l["groups"] = 2
            l["out"] = max(2, l["out"] // 2 * 2)
        b.try_add([l, act(rng)])
    elif kind == "shuffle":
        if c >= 4 and rng.random() < 0.5:
            g = pick(rng, [d for d in (2, 3, 4) if c % d == 0] or [1])
            if g > 1:
                b.try_add([{"op": "channel_shuffle", "groups": g}])
                return
        if c >= 2:
            start = rng.randrange(0, c - 1)
            b.try_add([{"op": "slice", "start": start, "end": rng.randrange(start + 1, c + 1)}])
    elif kind == "act":
        b.try_add([act(rng)])
    elif kind == "bn":
        b.try_add([{"op": "batch_norm"}])
    elif kind == "adaptive":
        op = pick(rng, ["adaptive_avg_pool", "adaptive_max_pool"])
        out = ([pick(rng, [1, 2, 3, 5, 7]), pick(rng, [1, 2, 4, 6])] if rank == 3
               else pick(rng, [1, 3, 8]))
        b.try_add([{"op": op, "out": out}])


def head(b: Builder) -> None:
    rng = b.rng
    if len(b.shape) > 1:
        r = rng.random()
        if r < 0.45:
            b.try_add([{"op": pick(rng, ["global_avg_pool", "global_max_pool"])}])
        elif r < 0.7 and math.prod(b.shape) <= 6000:
            b.try_add([{"op": "flatten"}])
        else:
            if rng.random() < 0.3:
                b.try_add([{"op": "softmax"}])
            return
    for _ in range(pick(rng, [0, 1, 1, 2, 3])):
        if rng.random() < 0.25:
            # A vector graph: a residual MLP or two branches concatenated.
            x, n = b.cur, b.shape[0]
            if rng.random() < 0.5:
                b.try_add([{"op": "linear", "out": n}, act(rng), {"op": "linear", "out": n},
                           {"op": pick(rng, ["add", "mul"]), "from": [b.name_of(2), x]}])
            else:
                b.try_add([{"op": "linear", "out": pick(rng, [3, 20])}, act(rng),
                           {"op": "linear", "from": x, "out": pick(rng, [1, 7])},
                           {"op": "concat", "from": [b.name_of(1), b.name_of(2), x]}])
            continue
        block = [{"op": "linear", "out": pick(rng, [1, 5, 10, 16, 33, 64, 100, 130])}]
        if rng.random() < 0.3:
            block[0]["bias"] = False
        if rng.random() < 0.2:
            block.append({"op": "batch_norm"})
        block.append(act(rng))
        b.try_add(block)
    b.try_add([{"op": "linear", "out": pick(rng, [1, 3, 10, 17])}])
    if rng.random() < 0.3:
        b.try_add([{"op": "softmax"}])


def random_model(rng: random.Random, big_share: float = 0.25
                 ) -> tuple[list[int], list[dict[str, Any]]]:
    rank = pick(rng, [3, 2, 1], [75, 18, 7])
    if rank == 3:
        big = rng.random() < big_share
        side = pick(rng, [24, 28, 32, 40, 48, 56, 64] if big else
                    [1, 2, 3, 5, 7, 8, 9, 12, 13, 16, 17, 20, 31])
        w = side if rng.random() < 0.8 else max(1, side + pick(rng, [-3, -1, 2, 5]))
        inp = [pick(rng, [1, 3, 3, 8, 16, 32] if big else [1, 2, 3, 4, 8, 16, 24]), side, w]
    elif rank == 2:
        inp = [pick(rng, [1, 2, 6, 16, 28]), pick(rng, [8, 28, 50, 100, 257])]
    else:
        inp = [pick(rng, [1, 10, 64, 300])]
    b = Builder(rng, inp)
    if rank > 1:
        for _ in range(rng.randrange(1, 9)):
            image_block(b)
    head(b)
    if not b.layers:
        b.try_add([{"op": "relu"}])
    # Merges read their operands by name; plain layers read the one before.
    return inp, b.layers


def generated_crate(crate: Path, name: str, deps: str, main_rs: str,
                    release_debug: int = 0) -> Path:
    """Writes a crate of its own (`[workspace]`, outside the repository's) at `crate`:
    package `name` with the dependency lines `deps` and `src/main.rs`; rewriting the
    source makes cargo rebuild it. Built with `CARGO_TARGET_DIR` = `BUILD` (`build`)."""
    (crate / "src").mkdir(parents=True, exist_ok=True)
    (crate / "Cargo.toml").write_text(f"""[package]
name = "{name}"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
{deps}

[workspace]

[profile.release]
debug = {release_debug}
""")
    (crate / "src" / "main.rs").write_text(main_rs)
    return crate


#: The generated crates' shared target directory (the runtime built once for all).
BUILD = ROOT / "target" / "fuzz_models" / "build"


def build(crate: Path, run_args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """`cargo build --release` of a generated crate (or `cargo run --release -- ARGS`)."""
    cmd = (["cargo", "run", "--release", "--quiet", "--", *run_args] if run_args is not None
           else ["cargo", "build", "--release", "--quiet"])
    return subprocess.run(cmd, cwd=crate, env={**os.environ, "CARGO_TARGET_DIR": str(BUILD)},
                          capture_output=True, text=True)


#: The dependency on `cnn` (this repository) of the generated crates.
CNN_DEP = f"cnn = {{ path = {json.dumps(str(ROOT))}, features = [\"parallel\"] }}"


def model_mods(cases: Path, names: list[str]) -> str:
    """A generated crate's modules: `pub mod NAME { cnn_model! { #[file] pub struct M } }`
    for each case `names` under `cases`."""
    return "\n".join(
        f"pub mod {n} {{\n    cnn::cnn_model! {{\n        #[file = "
        f"{json.dumps(str(cases / n / 'model.toml'))}]\n        pub struct M;\n    }}\n}}\n"
        for n in names)


#: Rust: a little-endian f32 file (`write_bins`' `input.bin`, `output.bin`) as a `Vec`.
RUST_FLOATS = r"""fn floats(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}"""


def write_bins(case_dir: Path) -> dict:
    """The case's `data.safetensors` also as raw little-endian f32 `input.bin` and
    `output.bin` (the generated crates read them without a safetensors dependency);
    returns the arrays."""
    from safetensors.numpy import load_file
    data = load_file(str(case_dir / "data.safetensors"))
    data["input"].astype("<f4").tofile(case_dir / "input.bin")
    data["output"].astype("<f4").tofile(case_dir / "output.bin")
    return data


def write_crate(out: Path, cases: Path, names: list[str]) -> Path:
    """The runner crate in `out/crate` (one for every round) for the cases `names` under
    `cases`."""
    calls = [f'            failed += check::<{n}::M>("{n}", {json.dumps(str(cases / n))});'
             for n in names]
    main_rs = (RUNNER.replace("// MODS", model_mods(cases, names))
               .replace("// FLOATS", RUST_FLOATS)
               .replace("            // CALLS", "\n".join(calls)))
    return generated_crate(out / "crate", "fuzz_models_run", CNN_DEP, main_rs)


RUNNER = r"""// @generated by tools/fuzz_models.py
#![allow(clippy::all)]
use cnn::Model;
use std::path::Path;

// MODS

// FLOATS

/// Worst `|got - want| / (1e-4 + 1e-4 |want|)`, or the first element beyond 1.
fn worst(got: &[f32], want: &[f32]) -> Result<f32, String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    let mut w = 0.0f32;
    for (i, (g, t)) in got.iter().zip(want).enumerate() {
        let r = (g - t).abs() / (1e-4 + 1e-4 * t.abs());
        if r.is_nan() || r > 1.0 {
            return Err(format!("element {i}: got {g}, want {t} (ratio {r})"));
        }
        w = w.max(r);
    }
    Ok(w)
}

#[inline(never)]
fn run<M: Model>(dir: &Path) -> Result<f32, String> {
    let weights = std::fs::read(dir.join("weights.safetensors")).unwrap();
    let model = M::from_safetensors(&weights).map_err(|e| format!("load: {e}"))?;
    let x = floats(&dir.join("input.bin"));
    let y = floats(&dir.join("output.bin"));
    let n = x.len() / M::INPUT_LEN;
    let mut w = 0.0f32;
    for &level in cnn::supported_simd_levels() {
        cnn::set_simd_level(level);
        for threads in [1, 2] {
            cnn::set_num_threads(threads);
            for i in 0..n {
                let got = model
                    .forward_flat(&x[i * M::INPUT_LEN..(i + 1) * M::INPUT_LEN])
                    .map_err(|e| e.to_string())?;
                let r = worst(&got, &y[i * M::OUTPUT_LEN..(i + 1) * M::OUTPUT_LEN])
                    .map_err(|e| format!("{level:?}, {threads} thread(s), input {i}: {e}"))?;
                w = w.max(r);
                // The caller's arena, dirty (NaN): every region written before it is read,
                // the same bits as `forward_flat`.
                let mut arena = M::Arena::default();
                arena.as_mut().fill(f32::NAN);
                let mut out = vec![f32::NAN; M::OUTPUT_LEN];
                // SAFETY: `Input` and `Output` are nested arrays of exactly `INPUT_LEN` and
                // `OUTPUT_LEN` f32 values (the alignment of f32).
                let (xin, yout) = unsafe {
                    (
                        &*(x[i * M::INPUT_LEN..].as_ptr() as *const M::Input),
                        &mut *(out.as_mut_ptr() as *mut M::Output),
                    )
                };
                model.forward_in(xin, yout, &mut arena);
                if out.iter().zip(&got).any(|(a, b)| a.to_bits() != b.to_bits()) {
                    return Err(format!(
                        "{level:?}, {threads} thread(s), input {i}: forward_in on a dirty arena differs"
                    ));
                }
            }
            let mut out = vec![f32::NAN; n * M::OUTPUT_LEN];
            model
                .forward_batch_into(&x, &mut out)
                .map_err(|e| e.to_string())?;
            w = w.max(
                worst(&out, &y).map_err(|e| format!("{level:?}, {threads} thread(s), batch: {e}"))?,
            );
        }
    }
    Ok(w)
}

#[inline(never)]
fn check<M: Model>(name: &str, dir: &str) -> usize {
    let dir = Path::new(dir);
    let r = std::panic::catch_unwind(|| run::<M>(dir))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panic: {msg}"))
        });
    match r {
        Ok(w) => {
            let mut kernels: Vec<&str> = M::STEPS.iter().map(|s| s.kernel).collect();
            kernels.sort();
            kernels.dedup();
            let team = if M::summary().contains("two threads:") { " team" } else { "" };
            println!("ok   {name} worst {w:.4}{team} | {}", kernels.join(" "));
            0
        }
        Err(e) => {
            println!("FAIL {name}: {e}");
            1
        }
    }
}

fn main() {
    // A large stack: the caller-owned arenas (`M::Arena`) of the big models live on it.
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(|| {
            let mut failed = 0;
            // CALLS
            println!("failed {failed}");
        })
        .unwrap()
        .join()
        .unwrap();
}
"""


def generate_round(rng: random.Random, count: int, out: Path, tag: str, big: float
                   ) -> list[str]:
    cases = out / "cases"
    names: list[str] = []
    tries = 0
    while len(names) < count and tries < count * 20:
        tries += 1
        inp, layers = random_model(rng, big)
        name = f"{tag}_{len(names):03d}"
        try:
            case = gen_cases.generate(name, "random model (tools/fuzz_models.py)", inp,
                                      layers, {}, cases)
        except (cnn_tools.DescriptionError, cnn_tools.ShapeCheckError, AssertionError,
                RuntimeError) as e:
            print(f"skipped a draw: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
            shutil.rmtree(cases / name, ignore_errors=True)
            continue
        if case["torch_f32_tolerance_ratio"] > 0.3 or case["max_abs_output"] > 1e4:
            # PyTorch's own float32 is near the tolerance: not a fair test.
            shutil.rmtree(cases / name, ignore_errors=True)
            continue
        write_bins(cases / name)
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=40, help="models per round")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--big", type=float, default=0.25,
                    help="share of image models on large maps (24-64 a side)")
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "fuzz_models")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    failures: list[str] = []
    for rnd in range(args.rounds):
        seed = args.seed + rnd
        rng = random.Random(seed)
        out = args.out / f"seed{seed}"
        shutil.rmtree(out / "cases", ignore_errors=True)
        names = generate_round(rng, args.count, out, f"s{seed}", args.big)
        print(f"seed {seed}: {len(names)} models", file=sys.stderr)
        # Build; a description cnn refuses is reported and left out.
        while True:
            crate = write_crate(args.out, out / "cases", names)
            r = build(crate)
            if r.returncode == 0:
                break
            bad = sorted(set(re.findall(r"cases/(s\d+_\d+)/model\.toml", r.stderr)) & set(names))
            if not bad:
                print(r.stderr[-4000:], file=sys.stderr)
                return 2
            for n in bad:
                msg = [l for l in r.stderr.splitlines() if "error" in l][:3]
                failures.append(f"{n}: rejected by cnn: {' | '.join(msg)}")
                print(f"REJECTED {n}: {' | '.join(msg)}")
            names = [n for n in names if n not in bad]
        exe = BUILD / "release" / "fuzz_models_run"
        r = subprocess.run([str(exe)], capture_output=True, text=True)
        print(r.stdout, end="")
        if r.returncode != 0:
            failures.append(f"seed {seed}: runner exit {r.returncode}: {r.stderr[-2000:]}")
        failures += [l for l in r.stdout.splitlines() if l.startswith("FAIL")]
    print(f"{len(failures)} failure(s)")
    for f in failures:
        print(f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
