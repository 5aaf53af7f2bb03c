#!/usr/bin/env python3
"""Write the torchvision test models: ``tests/torchvision/<name>/`` (and, with
``--example``, ``examples/data/resnet18/`` at 224x224).

Each model is built by torchvision (random init, no download) and then given
deterministic weights that the Rust tests can rebuild without committing megabytes:

* every tensor of rank >= 2 (conv, linear weights) is ``seeded.seeded_tensor(seed, key,
  shape)`` (``tools/seeded.py`` = ``tests/support/seeded.rs``), ``key`` its state_dict
  name;
* rank-1 tensors are stored in ``stats.safetensors``: conv/linear biases uniform in
  [-0.1, 0.1), batch-norm weight uniform in [0.75, 1.25) and bias uniform in [-0.1, 0.1)
  (a ``torch.Generator`` seeded with ``seed``), and the batch-norm running statistics
  calibrated on N(0, 1) inputs: batch norms in training mode with ``momentum=None``
  (cumulative average), every other module in eval mode, ``--calib-batches`` batches of
  ``--calib-size`` images, so that activations stay O(1) in eval mode;
* ``num_batches_tracked`` is not stored (the format ignores it).

Then the model is exported with ``tools/export.py`` (which verifies the description in
float64 against the module) to ``model.toml``, and ``data.safetensors`` gets ``input``
``[2, 3, H, W]`` (N(0, 1), ``torch.Generator`` seeded with ``seed + 1``), ``output`` (the
module in float64, rounded to float32) and ``output_f32`` (PyTorch's own float32
forward). ``case.json`` has ``atol = max(1e-4 * max(1, max|output|), 4 *
torch_f32_max_abs_err)`` and ``rtol = 1e-4``: the Rust output must satisfy
``|got - want| <= atol + rtol * |want|``.

GoogLeNet (and Inception v3, at 80x80: its smallest input is 75x75) is built with
``aux_logits=False, init_weights=False, transform_input=False``:
with ``transform_input=True`` torchvision rescales the three input channels by constants
(ImageNet mean/std re-normalisation) inside ``forward``, which the format has no op for
(it is a per-channel affine map; do it in preprocessing).

    python tools/gen_torchvision_cases.py                 # all models, tests/torchvision
    python tools/gen_torchvision_cases.py --only resnet18 mobilenet_v2
    python tools/gen_torchvision_cases.py --example       # examples/data/resnet18 (224)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seeded  # noqa: E402
from export import export, write_case_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: Keywords of the models built without their auxiliary heads, weight init or input
#: transform (GoogLeNet, Inception v3): passed to the factory and named in the case's
#: description.
_PLAIN = {"aux_logits": False, "init_weights": False, "transform_input": False}

#: name (of the ``torchvision.models`` factory) -> (keywords beyond ``weights=None``,
#: input size, seed)
MODELS = {
    "resnet18": ({}, 64, 1018),
    "resnet50": ({}, 64, 1050),
    "mobilenet_v2": ({}, 64, 2002),
    "mobilenet_v3_small": ({}, 64, 2003),
    "squeezenet1_1": ({}, 64, 3011),
    "efficientnet_b0": ({}, 64, 4000),
    "googlenet": (_PLAIN, 64, 5000),
    "resnext50_32x4d": ({}, 64, 1150),
    "regnet_y_400mf": ({}, 64, 6000),
    "mnasnet0_5": ({}, 64, 7000),
    "mobilenet_v3_large": ({}, 64, 2004),
    "inception_v3": (_PLAIN, 80, 5100),
    "efficientnet_v2_s": ({}, 64, 4100),
    "regnet_x_400mf": ({}, 64, 6100),
    "alexnet": ({}, 64, 8000),
    "shufflenet_v2_x0_5": ({}, 64, 9000),
}


def keywords(name: str) -> str:
    """The model's keywords beyond ``weights=None``, as the description names them."""
    return "".join(f", {k}={v}" for k, v in MODELS[name][0].items())


_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def set_weights(model: nn.Module, seed: int) -> None:
    """Seeded rank>=2 tensors, small rank-1 parameters (BN statistics: see calibrate)."""
    g = torch.Generator().manual_seed(seed)
    bn_params = set()
    for name, m in model.named_modules():
        if isinstance(m, _BN):
            bn_params |= {f"{name}.weight", f"{name}.bias"}
    with torch.no_grad():
        for key, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.from_numpy(seeded.seeded_tensor(seed, key, tuple(p.shape))))
            elif key in bn_params and key.endswith(".weight"):
                p.copy_(0.75 + 0.5 * torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.rand(p.shape, generator=g) - 0.1)


def calibrate(model: nn.Module, size: int, seed: int, batches: int, batch: int) -> None:
    """BN running statistics from N(0, 1) inputs (cumulative average), other modules in
    eval mode (no dropout, no stochastic depth)."""
    g = torch.Generator().manual_seed(seed + 7)
    model.eval()
    for m in model.modules():
        if isinstance(m, _BN):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn((batch, 3, size, size), generator=g))
    for m in model.modules():
        if isinstance(m, _BN):
            m.momentum = 0.1
    model.eval()


def build(name: str, seed: int, size: int, calib_batches: int, calib_size: int) -> nn.Module:
    torch.manual_seed(seed)  # torchvision's own init, overwritten below
    model = getattr(torchvision.models, name)(weights=None, **MODELS[name][0]).eval()
    set_weights(model, seed)
    calibrate(model, size, seed, calib_batches, calib_size)
    return model


def _f32_bits_equal(a: torch.Tensor, b: np.ndarray) -> bool:
    return a.detach().numpy().astype(np.float32).tobytes() == b.astype(np.float32).tobytes()


def write_case(name: str, model: nn.Module, size: int, seed: int, out: Path,
               n_inputs: int = 2) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = export(model, (3, size, size), out / "model.toml", None, name=name)
    # The rank>=2 tensors are exactly the seeded ones; the rest goes to stats.safetensors.
    stats = {}
    for key, t in res.tensors.items():
        if key.endswith(".num_batches_tracked"):
            continue
        if t.dim() >= 2:
            assert _f32_bits_equal(t, seeded.seeded_tensor(seed, key, tuple(t.shape))), key
        else:
            stats[key] = t.float().contiguous()
    save_file(stats, str(out / "stats.safetensors"),
              metadata={"generator": f"tools/gen_torchvision_cases.py, torchvision "
                                     f"{torchvision.__version__}, {name}, seed {seed}"})
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((n_inputs, 3, size, size), generator=g)
    with torch.no_grad():
        y64 = model.double()(x.double())
        model.float()
        y32 = model(x)
    err = float((y32.double() - y64).abs().max())
    want = y64.float()
    save_file({"input": x.contiguous(), "output": want.contiguous(),
               "output_f32": y32.contiguous()}, str(out / "data.safetensors"),
              metadata={"generator": f"tools/gen_torchvision_cases.py, torch "
                                     f"{torch.__version__}, {name}: output = float64 "
                                     "forward rounded to f32, output_f32 = PyTorch f32"})
    max_abs = float(want.abs().max())
    atol = max(1e-4 * max(1.0, max_abs), 4 * err)
    n_rank2 = sum(1 for t in res.tensors.values() if t.dim() >= 2)
    case = {
        "name": name,
        "description": f"torchvision.models.{name} (torchvision {torchvision.__version__})"
                       + keywords(name) + f", {size}x{size}, seeded weights",
        "input_shape": list(res.input_shape),
        "output_shape": list(res.output_shape),
        "n_inputs": n_inputs,
        "params": res.params,
        "macs": res.macs,
        "n_layers": len(res.description["layers"]),
        "seed": seed,
        "seeded_tensors": n_rank2,
        "stats_tensors": len(stats),
        "max_abs_output": max_abs,
        "torch_f32_max_abs_err": err,
        "atol": atol,
        "rtol": 1e-4,
        "weights": "rank>=2 tensors: seeded_tensor(seed, key, shape) (tools/seeded.py, "
                   "tests/support/seeded.rs); rank-1 tensors: stats.safetensors; "
                   "num_batches_tracked omitted",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
    }
    write_case_json(out / "case.json", case)
    kb = sum(p.stat().st_size for p in out.iterdir()) / 1024
    print(f"  {name:<20} {size}x{size} -> {list(res.output_shape)}  {res.params:>9} params "
          f"{res.macs / 1e6:8.1f} MMACs  {len(res.description['layers']):4} layers  "
          f"max|y| {max_abs:7.3f}  f32 err {err:.2e}  {kb:6.0f} KB  {time.time() - t0:5.1f} s")
    return {"res": res, "x": x, "y64": y64, "y32": y32, "atol": atol, "err": err}


def write_example(out: Path, calib_batches: int, calib_size: int) -> None:
    """examples/data/resnet18: 224x224, two inputs, reference.json with top-5."""
    name, size, seed = "resnet18", 224, 1018
    model = build(name, seed, size, calib_batches, calib_size)
    r = write_case(name, model, size, seed, out)
    (out / "case.json").unlink()
    top = []
    for i in range(r["y64"].shape[0]):
        v64, i64 = torch.topk(r["y64"][i], 5)
        v32, i32 = torch.topk(r["y32"][i].double(), 5)
        top.append({"top5_float64": [int(j) for j in i64], "values_float64":
                    [float(v) for v in v64], "top5_f32": [int(j) for j in i32],
                    "values_f32": [float(v) for v in v32]})
    ref = {
        "model": "torchvision.models.resnet18, 224x224, seeded weights (not trained: the "
                 "classes mean nothing, the numbers are the test)",
        "seed": seed,
        "input_shape": [3, size, size],
        "n_inputs": int(r["x"].shape[0]),
        "atol": r["atol"], "rtol": 1e-4,
        "torch_f32_max_abs_err": r["err"],
        "max_abs_output": float(r["y64"].abs().max()),
        "params": r["res"].params, "macs": r["res"].macs,
        "weights": "rank>=2 tensors: seeded_tensor(seed, key, shape) (tools/seeded.py, "
                   "tests/support/seeded.rs); rank-1 tensors: stats.safetensors",
        "data": "data.safetensors: input [2, 3, 224, 224] (N(0,1)), output (float64 forward "
                "rounded to f32), output_f32 (PyTorch's f32 forward)",
        "outputs": top,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
    }
    text = json.dumps(ref, indent=1)
    # Lists of numbers on one line.
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]",
                  lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    (out / "reference.json").write_text(text + "\n")
    print(f"  top-5 (float64): {[t['top5_float64'] for t in top]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS), help="models to write")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "torchvision")
    ap.add_argument("--example", action="store_true",
                    help="write examples/data/resnet18 (224x224) instead")
    ap.add_argument("--calib-batches", type=int, default=4)
    ap.add_argument("--calib-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.example:
        write_example(ROOT / "examples" / "data" / "resnet18", 2, 8)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeded_vectors.json").write_text(
        json.dumps(seeded.test_vectors(), indent=1, ensure_ascii=False) + "\n")
    for name in args.only or MODELS:
        _, size, seed = MODELS[name]
        model = build(name, seed, size, args.calib_batches, args.calib_size)
        write_case(name, model, size, seed, args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
