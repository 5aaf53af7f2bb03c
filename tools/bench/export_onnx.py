#!/usr/bin/env python3
"""Export the thirteen benchmark models to ONNX, with a reference input and output.

For each model (``models/<name>.toml``) this

1. builds the PyTorch module and loads ``target/bench/<name>/weights.safetensors``
   strictly -- the same file the Rust bench loads (write it first with
   ``make_weights.py``). For the sequential models that is the equivalent
   ``torch.nn.Sequential`` (``cnn_tools.build_sequential``); for the graph models
   ``resnet18_224`` and ``mobilenet_v2_224`` it is the torchvision module itself
   (``torchvision.models.resnet18()`` / ``mobilenet_v2()``, whose ``state_dict()`` keys are
   the description's), so that the ONNX graph is exactly what a normal torchvision export
   gives ONNX Runtime and OpenVINO; it is first checked in float64 against the module
   ``cnn_tools.build_model`` builds from the TOML (the network `cnn` compiles);
2. exports it with ``torch.onnx.export`` (opset 17, batch 1, static shapes, the
   TorchScript-based exporter, constant folding on, so batch norms are folded into the
   convs) to ``target/bench/<name>/model.onnx`` and checks it with ``onnx.checker``; the
   same at static batch B to ``model_b<B>.onnx`` for each ``--batch B`` (default 64: what
   ``compare.py --batch 64`` runs);
   ``padding="same"`` convs are exported with the equal explicit padding, because ONNX
   Runtime rejects ``auto_pad=SAME_UPPER`` on dilated convs;
3. writes ``target/bench/<name>/data.safetensors``: ``input`` ``[1, C, H, W]`` float32 drawn
   from N(0, 1) with a fixed seed, and ``output`` ``[1, ...]``: the model run in float64 on
   that input, rounded to float32;
4. writes ``target/bench/<name>/meta.json``: shapes, parameter and MAC counts (counted like
   ``cnn``: conv ``out*H'*W'*(in/groups)*kh*kw``, linear ``in*out``), ONNX ops, versions.

Usage::

    python3 tools/bench/export_onnx.py [--out target/bench] [--opset 17] [--batch 64 ...] [MODEL ...]

Needs torch, safetensors, numpy and onnx (``pip install onnx``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cnn_tools import count_params, load_description  # noqa: E402
from make_weights import GRAPHS, MODELS, TORCHVISION, build_torch  # noqa: E402


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at batch 1, counted as ``cnn`` does."""
    macs = 0

    def hook(module: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += out[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            macs += _inp[0][0].numel() * (module.out_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape)))
    finally:
        for h in handles:
            h.remove()
    return macs


def explicit_same_padding(model: nn.Module) -> list[str]:
    """Turn ``padding='same'`` convs into the equal explicit symmetric padding, in place.

    The TorchScript exporter writes ``padding='same'`` as ``auto_pad=SAME_UPPER``, which
    ONNX Runtime rejects for dilated convs ("Dilation not supported for AutoPadType::
    SAME_UPPER"). With stride 1 and an even total padding ``dilation * (kernel - 1)`` the
    explicit ``pads`` compute the same thing (checked against the reference afterwards by
    ``compare.py``). Returns the names of the convs changed.
    """
    changed = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.padding == "same":
            pads = []
            for k, d in zip(module.kernel_size, module.dilation):
                total = d * (k - 1)
                if total % 2:
                    break  # asymmetric: leave it to auto_pad
                pads.append(total // 2)
            else:
                module.padding = tuple(pads)
                changed.append(name)
    return changed


def torchvision_module(name: str, described: nn.Module, state: dict, input_shape: tuple
                       ) -> nn.Module:
    """The torchvision module of graph model ``name`` with the weights ``state`` (strict:
    the keys are the description's), checked in float64 against ``described`` (the
    module of the description, ``cnn_tools.build_model``) on a seeded input."""
    import torchvision

    torch.manual_seed(0)  # torchvision's own init, overwritten by the state dict
    model = getattr(torchvision.models, TORCHVISION[name])(weights=None)
    model.load_state_dict(state, strict=True)
    model.eval()
    gen = torch.Generator().manual_seed(99)
    x = torch.randn((2,) + tuple(input_shape), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        want = described.double()(x)
        got = model.double()(x)
    described.float()
    model.float()
    err = float((got - want).abs().max())
    if got.shape != want.shape or not err <= 1e-9 * max(1.0, float(want.abs().max())):
        raise SystemExit(f"error: {name}: torchvision.models.{TORCHVISION[name]} and the "
                         f"description's module differ (max abs {err:.3g} in float64)")
    return model


def export_one(name: str, out_root: Path, opset: int, seed: int,
               batches: tuple[int, ...] = ()) -> dict:
    """Export model ``name``; returns its meta dict (also written to meta.json)."""
    from safetensors.torch import load_file, save_file

    out_dir = out_root / name
    weights = out_dir / "weights.safetensors"
    if not weights.exists():
        raise SystemExit(f"error: {weights} does not exist; run "
                         f"`python3 tools/bench/make_weights.py` first")
    toml = ROOT / "models" / f"{name}.toml"
    input_shape = tuple(load_description(toml)["input"])
    state = load_file(str(weights))
    model, shapes = build_torch(name)
    model.load_state_dict(state, strict=True)
    model.eval()
    module_desc = ("cnn_tools.build_model(toml)" if name in GRAPHS
                   else "cnn_tools.build_sequential(toml)")
    if name in TORCHVISION:
        model = torchvision_module(name, model, state, input_shape)
        module_desc = f"torchvision.models.{TORCHVISION[name]}()"

    # Reference data: float64 forward, rounded to float32.
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1,) + input_shape, generator=gen, dtype=torch.float32)
    with torch.no_grad():
        y64 = model.double()(x.double())
        model.float()
        y32 = model(x)
    y = y64.float().contiguous()
    save_file({"input": x.contiguous(), "output": y}, str(out_dir / "data.safetensors"),
              metadata={"model": name, "seed": str(seed),
                        "source": "tools/bench/export_onnx.py",
                        "output": "float64 forward rounded to float32"})

    onnx_path = out_dir / "model.onnx"
    explicit = explicit_same_padding(model)
    with torch.no_grad():
        if not torch.equal(model(x), y32):
            raise SystemExit(f"error: {name}: explicit padding changed the output")
    resized = name in GRAPHS and any(l.op == "upsample" for l in model.layers)
    if resized:
        # The description's upsample layers compute the spec's arithmetic, which exports
        # as gathers, multiplications and additions; torch.nn.Upsample (the same values
        # up to rounding) exports as one Resize, what a PyTorch export gives ONNX Runtime.
        from cnn_tools import build_model

        model = build_model(toml, torch_upsample=True)
        model.load_state_dict(state, strict=True)
        model.eval()
        explicit = explicit_same_padding(model)
        with torch.no_grad():
            err = float((model.double()(x.double()) - y64).abs().max())
            model.float()
        if not err <= 1e-9 * max(1.0, float(y64.abs().max())):
            raise SystemExit(f"error: {name}: torch.nn.Upsample changed the output "
                             f"(max abs {err:.3g} in float64)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of the TorchScript exporter
        torch.onnx.export(model, (x,), str(onnx_path), input_names=["input"],
                          output_names=["output"], opset_version=opset,
                          do_constant_folding=True, dynamo=False)
        for b in batches:
            torch.onnx.export(model, (x.repeat((b,) + (1,) * len(input_shape)),),
                              str(out_dir / f"model_b{b}.onnx"), input_names=["input"],
                              output_names=["output"], opset_version=opset,
                              do_constant_folding=True, dynamo=False)
    import onnx

    for b in batches:
        onnx.checker.check_model(onnx.load(str(out_dir / f"model_b{b}.onnx")))
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    ops = sorted({n.op_type for n in proto.graph.node})
    if "BatchNormalization" in ops:
        print(f"warning: {name}: batch norms were not folded into the convs", file=sys.stderr)

    meta = {
        "model": name,
        "toml": f"models/{name}.toml",
        "torch_module": module_desc,
        "input_shape": [1, *input_shape],
        "output_shape": list(y.shape),
        "params": count_params(model),
        "macs": count_macs(model, input_shape),
        "opset": opset,
        "onnx_ops": ops,
        "same_padding_made_explicit": explicit,
        "upsample_as_torch": resized,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        **({"torchvision": __import__("torchvision").__version__} if name in TORCHVISION
           else {}),
        "torch_f32_vs_f64_max_abs": float((y32.double() - y64).abs().max()),
        "output_max_abs": float(y64.abs().max()),
        "layers": [[n, op, list(s)] for n, op, s in shapes],
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "bench")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--seed", type=int, default=4321, help="seed of the reference input")
    parser.add_argument("--batch", type=int, nargs="+", default=[64],
                        help="also export at these static batch sizes (model_b<B>.onnx; "
                             "default 64)")
    args = parser.parse_args(argv)
    if any(b < 2 for b in args.batch):
        parser.error("--batch sizes must be at least 2 (batch 1 is model.onnx)")
    try:
        import onnx  # noqa: F401
    except ImportError:
        parser.error("the `onnx` package is needed by torch.onnx.export: pip install onnx")
    for name in args.models:
        if not (ROOT / "models" / f"{name}.toml").exists():
            parser.error(f"no model description models/{name}.toml")
        meta = export_one(name, args.out, args.opset, args.seed, tuple(args.batch))
        print(f"{name:16s} {str(meta['input_shape']):16s} -> {str(meta['output_shape']):16s} "
              f"{meta['params']:>9,d} params {meta['macs']:>12,d} MACs  "
              f"|y|max {meta['output_max_abs']:.3g}  f32-f64 {meta['torch_f32_vs_f64_max_abs']:.2g}"
              f"  ops {','.join(meta['onnx_ops'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
