#!/usr/bin/env python3
"""Write seeded random weights for the thirteen benchmark models.

For each model of ``models/<model>.toml`` this builds the equivalent PyTorch module --
``torch.nn.Sequential`` (``tools/cnn_tools.py``'s ``build_sequential``) for the four
sequential models ``lenet5``, ``cifar_vgg``, ``mobilenet_96``, ``fcn_seg``, the graph module
of ``cnn_tools.build_model`` for ``unet_shapes``, ``resnet18_224`` and ``mobilenet_v2_224`` (torchvision's
``resnet18()`` / ``mobilenet_v2()`` at 3x224x224, exported by ``tools/export.py``, so the
keys are also those of the torchvision modules) -- and writes its ``state_dict()`` to
``target/bench/<model>/weights.safetensors`` (float32, the exact keys and shapes the Rust
side expects, ``num_batches_tracked`` included as torch has it). The same file is then loaded by ``export_onnx.py`` (PyTorch -> ONNX) and by the Rust
bench ``benches/models.rs``, so every engine computes the same network.

Values (deterministic for a given ``--seed``):

* conv / linear weights ``U(-sqrt(6/fan_in), +sqrt(6/fan_in))`` (He-uniform: keeps
  activations O(1) through ReLU stacks), biases ``U(-0.1, 0.1)``;
* batch norm ``weight ~ U(0.5, 1.5)``, ``bias ~ U(-0.2, 0.2)``, and *calibrated* running
  statistics: the batch norms alone are put in training mode with cumulative averaging
  (``momentum=None``) and fed ``--calib-batches`` batches of N(0, 1) inputs, so
  ``running_mean`` / ``running_var`` are those of the data actually flowing through the
  network (plausible, and each BN output is ~N(beta, gamma^2)).

Usage::

    python3 tools/bench/make_weights.py [--seed 1234] [--out target/bench]
        [--calib-batches 4] [--calib-size 16] [MODEL ...]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from cnn_tools import build_model, build_sequential  # noqa: E402

#: The benchmark models, in table order; each is ``models/<name>.toml``. (New models go at
#: the end: a model's weight seed depends on its index here.)
MODELS = ("lenet5", "cifar_vgg", "mobilenet_96", "fcn_seg", "resnet18_224", "mobilenet_v2_224",
          "unet_shapes", "efficientnet_b0_224", "mobilenet_v3_large_224", "mobilenet_v3_small_224", "densenet121_224", "resnet50_224", "squeezenet1_1_224",
          "shufflenet_v2_x1_0_224")

#: The graph models: name -> the ``torchvision.models`` constructor they were exported from
#: (``export_onnx.py`` exports that module, with these weights, to ONNX).
TORCHVISION = {"resnet18_224": "resnet18", "mobilenet_v2_224": "mobilenet_v2",
               "efficientnet_b0_224": "efficientnet_b0", "mobilenet_v3_large_224": "mobilenet_v3_large", "mobilenet_v3_small_224": "mobilenet_v3_small", "densenet121_224": "densenet121", "resnet50_224": "resnet50", "squeezenet1_1_224": "squeezenet1_1",
               "shufflenet_v2_x1_0_224": "shufflenet_v2_x1_0"}

#: The other graph models: exported as the module ``cnn_tools.build_model`` builds from the
#: description (U-Net: transposed convolution, bilinear upsampling, concatenations).
GRAPHS = ("unet_shapes",)


def build_torch(name: str) -> tuple[nn.Module, list[tuple[str, str, tuple[int, ...]]]]:
    """The PyTorch module of ``models/<name>.toml`` (torch's default init, training mode)
    and ``(layer name, op, output shape)`` per layer: ``build_sequential`` for the
    sequential models, ``build_model`` (the graph interpreter) for the others. Either way
    the ``state_dict()`` keys are the description's weight names."""
    toml = ROOT / "models" / f"{name}.toml"
    if name in TORCHVISION or name in GRAPHS:
        model = build_model(toml)
        return model, [(l.name, l.op, l.output_shape) for l in model.layers]
    return build_sequential(toml)


def init_weights(model: nn.Module, gen: torch.Generator) -> None:
    """Fill conv/linear/batch-norm parameters with seeded values (see the module doc)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                w = module.weight
                fan_in = w[0].numel()
                bound = math.sqrt(6.0 / fan_in)
                w.copy_(torch.rand(w.shape, generator=gen) * 2 * bound - bound)
                if module.bias is not None:
                    b = module.bias
                    b.copy_(torch.rand(b.shape, generator=gen) * 0.2 - 0.1)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 0.4 - 0.2)


def calibrate_batch_norms(model: nn.Module, input_shape: tuple[int, ...],
                          gen: torch.Generator, batches: int, batch_size: int) -> None:
    """Set every batch norm's running stats to those of N(0, 1) inputs through the net."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration batches
        bn.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn((batch_size,) + tuple(input_shape), generator=gen))
    for bn in bns:
        bn.momentum = 0.1  # torch's default, so the module is an ordinary one again
    model.eval()


def make_model(name: str, seed: int, calib_batches: int = 4, batch_size: int = 16
               ) -> tuple[nn.Module, tuple[int, ...]]:
    """The model ``name`` with seeded weights and calibrated BN stats, in eval mode."""
    toml = ROOT / "models" / f"{name}.toml"
    model, _ = build_torch(name)
    import tomllib

    with open(toml, "rb") as f:
        input_shape = tuple(tomllib.load(f)["input"])
    # One generator per model, seeded from the seed and the model name, so each model's
    # weights do not depend on which other models are generated.
    gen = torch.Generator().manual_seed(seed * 1000 + MODELS.index(name)
                                        if name in MODELS else seed)
    init_weights(model, gen)
    calibrate_batch_norms(model, input_shape, gen, calib_batches, batch_size)
    return model.eval(), input_shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS),
                        help=f"models to write (default: {' '.join(MODELS)})")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "bench",
                        help="output root; writes <out>/<model>/weights.safetensors")
    parser.add_argument("--calib-batches", type=int, default=4,
                        help="batches of N(0, 1) inputs for the BN statistics (default 4)")
    parser.add_argument("--calib-size", type=int, default=16,
                        help="inputs per calibration batch (default 16)")
    args = parser.parse_args(argv)

    from safetensors.torch import save_file

    for name in args.models:
        if not (ROOT / "models" / f"{name}.toml").exists():
            parser.error(f"no model description models/{name}.toml")
        torch.manual_seed(args.seed)
        model, input_shape = make_model(name, args.seed, args.calib_batches,
                                        args.calib_size)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        out_dir = args.out / name
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "weights.safetensors"
        save_file(state, str(path), metadata={"model": name, "seed": str(args.seed),
                                              "source": "tools/bench/make_weights.py"})
        n = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
        print(f"{name:16s} input {list(input_shape)}  {len(state):3d} tensors, "
              f"{n:>9,d} values -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
