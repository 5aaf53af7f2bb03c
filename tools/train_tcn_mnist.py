#!/usr/bin/env python3
"""Train the 1-D dilated CNN ``models/tcn_mnist.toml`` on MNIST read as a sequence.

Each MNIST image is a 1-D signal of 28 channels (the image rows) and length 28 (the
columns): ``input = [28, 28]`` in MODEL_FORMAT.md §8, so channel ``c`` at position ``l`` is
the pixel at row ``c``, column ``l``. The network is built from the TOML description with
``cnn_tools.build_model`` (Conv1d / BatchNorm1d / ReLU, residual adds, global average pool,
Linear), so its ``state_dict()`` keys are exactly the weight names the Rust side loads.

Preprocessing (the Rust example replicates it EXACTLY)
------------------------------------------------------
1. Read the IDX u8 image, 28x28, row-major (``t10k-images-idx3-ubyte.gz`` etc.).
2. For every pixel, in IEEE float32 with round-to-nearest after each operation:
   ``x = ((f32)u8 / 255.0f32 - 0.1307f32) / 0.3081f32`` -- a true division by 255, a
   subtraction, a true division (no reciprocal multiplication, no fused multiply-add).
   No padding, no other normalisation or augmentation, in training or at test time.
3. The input tensor is ``[28, 28]`` = (C = row, L = column): the row-major image itself.

In Rust: ``x[row][col] = ((u as f32) / 255.0f32 - 0.1307f32) / 0.3081f32``.

Training
--------
Adam (lr 2e-3, no weight decay), batch 128, cross-entropy on the logits of ``fc``, cosine
learning-rate decay per step from lr to 0 over all epochs (default 6), the 60,000 official
training images in a freshly shuffled order each epoch. Deterministic:
``torch.manual_seed(seed)``, ``torch.use_deterministic_algorithms(True)``,
``torch.set_num_threads(threads)`` (default 2) and a separately seeded ``torch.Generator``
for the shuffling. The same seed, thread count and torch version give the same weights.

Outputs (``--out``, default ``examples/data/tcn_mnist/``)
---------------------------------------------------------
* ``weights.safetensors``: ``model.state_dict()`` in float32 (``conv1.weight``, ``bn1.*``,
  ..., ``fc.weight``, ``fc.bias``; ``bn*.num_batches_tracked`` as I64).
* ``torch_reference.json``: torch version, seed, epochs, training time, ``test_accuracy``,
  ``correct``, ``n`` = 10000, the float32 eval-mode ``predictions`` (argmax of the logits)
  for the 10,000 t10k images in file order, ``min_margin`` and ``near_ties`` (images whose
  top-1 minus top-2 logit is < 1e-3), the ``preprocessing`` statement and ``first_logits``
  (the logits of the first 16 test images).

Usage::

    python tools/train_tcn_mnist.py                    # data from ../shared/data/mnist
    python tools/train_tcn_mnist.py --data DIR --epochs 6 --out examples/data/tcn_mnist
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn_tools  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_MODEL = REPO / "models" / "tcn_mnist.toml"
DEFAULT_OUT = REPO / "examples" / "data" / "tcn_mnist"

PREPROCESSING = (
    "Read the IDX u8 28x28 image (row-major). For every pixel, in IEEE float32 with "
    "round-to-nearest at each step: x = ((float32)u8 / 255.0f - 0.1307f) / 0.3081f (a "
    "division by 255, a subtraction and a division, no fused multiply-add, no reciprocal "
    "multiplication). No padding. Input tensor [28, 28] = (C, L) = (image row, image "
    "column), i.e. the row-major image itself: channel c at position l is the pixel at "
    "row c, column l."
)


def to_sequence(images: np.ndarray) -> np.ndarray:
    """u8 ``[N, 28, 28]`` -> float32 ``[N, 28, 28]`` (C = row, L = column), as documented."""
    x = images.astype(np.float32)
    x = x / np.float32(255.0)
    x = x - cnn_tools.MNIST_MEAN
    x = x / cnn_tools.MNIST_STD
    assert x.dtype == np.float32
    return x


def load_split(data_dir: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = cnn_tools.read_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz")
    labels = cnn_tools.read_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(f"{prefix}: images {images.shape}, labels {labels.shape}")
    return torch.from_numpy(to_sequence(images)), torch.from_numpy(labels.astype(np.int64))


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, batch: int = 1000
             ) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    return logits, logits.argmax(dim=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-accuracy", type=float, default=0.97,
                    help="exit with status 1 if the test accuracy is below this")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    shuffle_gen = torch.Generator().manual_seed(args.seed + 1)

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    model = cnn_tools.build_model(args.model)
    for row in cnn_tools.layer_table(model):
        print(f"  {row['name']:>6} {row['op']:<15} {row['output_shape']}")
    print(f"  params {cnn_tools.count_params(model)}", flush=True)

    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n = len(x_train)
    total_steps = math.ceil(n / args.batch) * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))

    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=shuffle_gen)
        loss_sum, seen = 0.0, 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
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
              f"test acc {acc * 100:.2f}%  {train_time:.1f}s", flush=True)
    train_seconds = time.perf_counter() - t_start

    logits, pred = evaluate(model, x_test)
    top2 = logits.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    near_ties = [int(i) for i in (margin < 1e-3).nonzero().flatten()]
    correct = int((pred == y_test).sum())
    accuracy = correct / len(y_test)
    print(f"final test accuracy {accuracy * 100:.2f}% ({correct}/{len(y_test)}), "
          f"total {train_seconds:.1f}s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "weights.safetensors"),
              metadata={"generator": f"tools/train_tcn_mnist.py, torch {torch.__version__}, "
                                     f"model tcn_mnist, seed {args.seed}"})
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
        "preprocessing": PREPROCESSING,
        "predictions": [int(p) for p in pred],
        "min_margin": float(margin.min()),
        "near_ties": near_ties,
        "first_logits": [[float(v) for v in row] for row in logits[:16]],
    }
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
