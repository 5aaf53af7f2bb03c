#!/usr/bin/env python3
"""Train LeNet-5 (models/lenet5.toml) on MNIST and write the weights and a torch reference.

The network is built from the TOML description with ``cnn_tools.build_sequential``, so it is
exactly the ``nn.Sequential`` of MODEL_FORMAT.md: children ``conv1`` (Conv2d(1, 6, 5)),
``1`` (Tanh), ``pool1`` (AvgPool2d(2)), ``conv2`` (Conv2d(6, 16, 5)), ``4`` (Tanh), ``pool2``
(AvgPool2d(2)), ``6`` (Flatten), ``fc1`` (Linear(400, 120)), ``8`` (Tanh), ``fc2``
(Linear(120, 84)), ``10`` (Tanh), ``fc3`` (Linear(84, 10)); 61,706 parameters. Its
``state_dict()`` keys are the weight names the Rust side loads.

Preprocessing (the Rust example replicates it EXACTLY, bit for bit)
-------------------------------------------------------------------
1. Read the IDX u8 image, 28x28 (``train-images-idx3-ubyte.gz`` / ``t10k-images-idx3-ubyte.gz``).
2. Place it in a 32x32 **u8** image at rows/columns 2..29, i.e. a 2-pixel border of u8 zeros
   on every side.
3. For every one of the 32x32 pixels, in IEEE float32 with round-to-nearest after each
   operation: ``x = ((f32)u8 / 255.0f32 - 0.1307f32) / 0.3081f32`` -- a true division by 255,
   a subtraction, a true division (no reciprocal multiplication, no fused multiply-add).
   The border pixels are therefore ``-0.1307f/0.3081f = -0.42421296...``, not 0.
4. The input tensor is ``[1, 32, 32]`` (C, H, W), row-major. No other augmentation or
   normalisation is applied, in training or at test time.

In Rust: ``((u as f32) / 255.0f32 - 0.1307f32) / 0.3081f32``.

Training
--------
Adam (lr 1e-3, betas (0.9, 0.999), no weight decay), batch 64, cross-entropy on the logits of
``fc3``, a cosine learning-rate decay per step from 1e-3 to 0 over all epochs (default 15),
on the 60,000 official training images in a freshly shuffled order each epoch. Training
augmentation only: each training image is shifted by a random whole number of pixels in
[-2, 2] per axis (``--shift``), i.e. the 28x28 digit is placed at a random offset in 0..4
instead of 2 inside the 32x32 frame (new border pixels get the normalised value of a u8 0).
Test images are never shifted: they use exactly the preprocessing above. Everything is
deterministic: ``torch.manual_seed(seed)``, ``torch.use_deterministic_algorithms(True)``,
``torch.set_num_threads(threads)`` (default 2) and separately seeded ``torch.Generator``s for
the shuffling and the shifts; subnormal floats are flushed to zero during training only
(speed). The same seed, thread count and torch version give the same weights.

Outputs (``--out``, default ``examples/data/lenet5/``)
------------------------------------------------------
* ``weights.safetensors``: ``safetensors.torch.save_file(model.state_dict())``, float32,
  keys ``conv1.weight``, ``conv1.bias``, ``conv2.*``, ``fc1.*``, ``fc2.*``, ``fc3.*``.
* ``torch_reference.json``: torch version, seed, epochs, training time, test accuracy, the
  number correct, ``n`` = 10000, the float32 eval-mode ``predictions`` (argmax of the logits,
  first index on ties) for the 10,000 t10k images in file order, ``min_margin`` (smallest
  top-1 minus top-2 logit over the test set) and ``near_ties`` (indices of the images whose
  margin is < 1e-3: there a float32 implementation may legitimately pick the other class),
  the preprocessing text, and ``first_logits`` (the float32 logits of the first 16 test
  images) for finer checks.

Usage::

    python tools/train_lenet5.py                       # data from ../shared/data/mnist
    python tools/train_lenet5.py --data DIR --epochs 15 --out examples/data/lenet5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

# Passive OpenMP waiting: on a shared 2-core machine, spinning worker threads make epochs
# several times slower whenever another process (e.g. a cargo build) is running. This does
# not change any result. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn_tools  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_MODEL = REPO / "models" / "lenet5.toml"
DEFAULT_OUT = REPO / "examples" / "data" / "lenet5"


def load_split(data_dir: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``{prefix}-images-idx3-ubyte.gz`` and labels, preprocessed as documented."""
    images = cnn_tools.read_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz")
    labels = cnn_tools.read_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{prefix}: {images.shape[0]} images but {labels.shape[0]} labels")
    x = torch.from_numpy(cnn_tools.mnist_to_lenet_input(images))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def shift_canvas(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Extend preprocessed ``[N, 1, 32, 32]`` inputs by ``shift`` border pixels per side.

    The new pixels get the value of a normalised u8 zero, so a 32x32 crop at offset
    ``(shift, shift)`` gives back ``x`` exactly.
    """
    if shift == 0:
        return x
    border = float((np.float32(0.0) / np.float32(255.0) - cnn_tools.MNIST_MEAN)
                   / cnn_tools.MNIST_STD)
    return F.pad(x, (shift, shift, shift, shift), value=border)


def random_shift_crop(big: torch.Tensor, idx: torch.Tensor, shift: int,
                      gen: torch.Generator) -> torch.Tensor:
    """Training augmentation: crop each image of ``big[idx]`` at a random offset.

    ``big`` comes from :func:`shift_canvas`; offsets are uniform in ``[0, 2*shift]`` per
    axis, so the digit moves by up to ``shift`` pixels in each direction (and never leaves
    the 32x32 frame for shift <= 2). Test images are never shifted.
    """
    xb = big[idx]
    if shift == 0:
        return xb
    n = len(idx)
    off = torch.randint(0, 2 * shift + 1, (2, n), generator=gen)
    ar = torch.arange(32)
    rows = (off[0][:, None] + ar)[:, :, None]          # [n, 32, 1]
    cols = (off[1][:, None] + ar)[:, None, :]          # [n, 1, 32]
    return xb[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, batch: int = 1000
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode float32 logits and argmax predictions for ``x``."""
    model.eval()
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    return logits, logits.argmax(dim=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="folder with the four MNIST IDX .gz files (default: %(default)s)")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                    help="model description TOML (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output folder (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shift", type=int, default=2, choices=range(0, 3),
                    help="training augmentation: random shift of up to this many pixels "
                         "(0 disables; default %(default)s)")
    ap.add_argument("--min-accuracy", type=float, default=0.99,
                    help="exit with status 1 if the test accuracy is below this")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    shuffle_gen = torch.Generator().manual_seed(args.seed + 1)
    shift_gen = torch.Generator().manual_seed(args.seed + 2)

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    x_train_big = shift_canvas(x_train, args.shift)
    model, shapes = cnn_tools.build_sequential(args.model)
    for name, op, shape in shapes:
        print(f"  {name:>6} {op:<9} {list(shape)}")
    print(f"  params {cnn_tools.count_params(model)}", flush=True)

    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n = len(x_train)
    steps_per_epoch = math.ceil(n / args.batch)
    total_steps = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))

    # Tanh saturation makes tiny (subnormal) gradients late in training, which are very
    # slow on x86; flushing them to zero during training keeps epochs fast. It is switched
    # off again for the reference evaluation below (plain IEEE float32, like the Rust side).
    flush = torch.set_flush_denormal(True)
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=shuffle_gen)
        loss_sum, seen = 0.0, 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb = random_shift_crop(x_train_big, idx, args.shift, shift_gen)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
        train_time = time.perf_counter() - t0
        _, pred = evaluate(model, x_test)
        acc = (pred == y_test).float().mean().item()
        print(f"epoch {epoch:2d}/{args.epochs}  loss {loss_sum / seen:.4f}  "
              f"test acc {acc * 100:.2f}%  lr {sched.get_last_lr()[0]:.2e}  "
              f"{train_time:.1f}s (+{time.perf_counter() - t0 - train_time:.1f}s eval)",
              flush=True)
    train_seconds = time.perf_counter() - t_start
    if flush:
        torch.set_flush_denormal(False)

    logits, pred = evaluate(model, x_test)
    top2 = logits.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    near_ties = [int(i) for i in (margin < 1e-3).nonzero().flatten()]
    correct = int((pred == y_test).sum())
    accuracy = correct / len(y_test)
    print(f"final test accuracy {accuracy * 100:.2f}% ({correct}/{len(y_test)}), "
          f"total {train_seconds:.1f}s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "weights.safetensors"),
              metadata={"generator": f"tools/train_lenet5.py, torch {torch.__version__}, "
                                     f"model lenet5, seed {args.seed}"})
    reference = {
        "torch_version": torch.__version__,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "threads": args.threads,
        "train_seconds": round(train_seconds, 1),
        "test_accuracy": accuracy,
        "correct": correct,
        "n": len(y_test),
        "preprocessing": cnn_tools.PREPROCESSING,
        "predictions": [int(p) for p in pred],
        "min_margin": float(margin.min()),
        "near_ties": near_ties,
        "first_logits": [[float(v) for v in row] for row in logits[:16]],
    }
    # One key per line; lists written compactly on their line.
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
                      for k, v in reference.items())
    (args.out / "torch_reference.json").write_text("{\n" + body + "\n}\n")
    print(f"wrote {args.out / 'weights.safetensors'} and {args.out / 'torch_reference.json'}")
    if accuracy < args.min_accuracy:
        print(f"error: accuracy {accuracy:.4f} < required {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
