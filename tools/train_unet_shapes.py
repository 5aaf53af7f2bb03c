#!/usr/bin/env python3
"""Train the small U-Net ``models/unet_shapes.toml`` on a generated shapes segmentation set.

The data set is generated from a seed (:func:`make_set`): 64x64 RGB images of 1-4 filled
circles, squares and triangles (squares and triangles rotated at random, shapes may
overlap, a later shape covering an earlier one) in random colours over a textured, noisy
background (colour gradient, low-frequency blotches, stripes half of the time, per-pixel
noise); the mask gives each pixel its class: 0 background, 1 circle, 2 square, 3 triangle.
Images are stored as u8 (``[3, 64, 64]``, CHW) and masks as u8 (``[64, 64]``).

The network is built from the TOML description with ``cnn_tools.build_model`` (Conv2d,
BatchNorm2d, MaxPool2d, ConvTranspose2d, bilinear upsample, concat, channel softmax), so
its ``state_dict()`` keys are the weight names the Rust side loads. Its output is the
softmax over the 4 class channels; training uses the cross-entropy of the ``head`` logits.

Preprocessing (the Rust example replicates it EXACTLY)
------------------------------------------------------
``x = (f32)u8 / 255.0f32`` for every value of the u8 ``[3, 64, 64]`` image (a true division
in IEEE float32). No other normalisation. Predicted mask = argmax over the 4 channels of
the output at each pixel (first index on ties).

Training
--------
``--train`` (default 4000) images from seed ``seed * 1000 + 1``, random horizontal and
vertical flips (seeded generator); Adam (lr 3e-3), batch 32, cosine learning-rate decay per
step to 0 over the epochs (default 5), cross-entropy on the ``head`` logits.
Deterministic: ``torch.manual_seed``, ``torch.use_deterministic_algorithms(True)``, 2
threads, seeded generators; the same seed, threads and torch version give the same weights.

Evaluation: intersection over union per class, over all pixels of a set,
``IoU_c = |pred = c and truth = c| / |pred = c or truth = c|``, and the mean IoU over the 4
classes (background included). On the 16 bundled test images (seed ``seed * 1000 + 3``) --
the numbers the Rust example recomputes -- and, for information, on ``--val`` (default
512) held-out images (seed ``seed * 1000 + 2``).

Outputs (``--out``, default ``examples/data/unet_shapes/``)
-----------------------------------------------------------
* ``weights.safetensors``: ``model.state_dict()``.
* ``test.safetensors``: ``images`` u8 ``[16, 3, 64, 64]``, ``masks`` u8 ``[16, 64, 64]``
  (ground truth), ``torch_masks`` u8 ``[16, 64, 64]`` (PyTorch's float32 eval-mode
  predicted masks).
* ``torch_reference.json``: IoU per class and mean IoU on the test images and the
  validation set, pixel accuracy, training settings and time, the preprocessing statement.

Usage::

    python tools/train_unet_shapes.py                  # ~9 min on 2 cores
    python tools/train_unet_shapes.py --epochs 5 --train 4000 --out examples/data/unet_shapes
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
DEFAULT_MODEL = REPO / "models" / "unet_shapes.toml"
DEFAULT_OUT = REPO / "examples" / "data" / "unet_shapes"

SIZE = 64
CLASSES = ("background", "circle", "square", "triangle")
N_TEST = 16

PREPROCESSING = (
    "The u8 image [3, 64, 64] (C, H, W; RGB) becomes x = (float32)u8 / 255.0f (a true "
    "IEEE float32 division) for every value; no other normalisation. The predicted class "
    "of a pixel is the argmax over the 4 output channels (first index on ties)."
)


# ---------------------------------------------------------------------------------------
# The generated data set
# ---------------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a random ``cells x cells`` grid, bilinearly
    interpolated to 64x64."""
    g = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1))
    t = (np.arange(SIZE) + 0.5) / SIZE * cells
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = g[i] * (1 - f)[:, None] + g[i + 1] * f[:, None]              # [64, cells+1]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]  # [64, 64]


def make_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (u8 ``[3, 64, 64]``) and its mask (u8 ``[64, 64]``)."""
    yy, xx = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5, indexing="ij")
    # Background: a gradient between two colours, blotches, maybe stripes, noise.
    c0, c1 = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
    ang = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - 32) * math.cos(ang) + (yy - 32) * math.sin(ang)) / 90 + 0.5
    img = c0[:, None, None] * (1 - ramp) + c1[:, None, None] * ramp
    img = img + 0.12 * np.stack([_smooth_noise(rng, 6) for _ in range(3)])
    if rng.uniform() < 0.5:
        sa, period = rng.uniform(0, math.pi), rng.uniform(4, 12)
        stripes = np.sin(2 * math.pi * (xx * math.cos(sa) + yy * math.sin(sa)) / period)
        img = img + rng.uniform(0.05, 0.15) * stripes[None] * rng.choice([-1, 1], 3)[:, None, None]
    bg_mean = img.mean(axis=(1, 2))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(1, 4))
        cx, cy = rng.uniform(10, 54, 2)
        r = rng.uniform(6, 14)
        theta = rng.uniform(0, 2 * math.pi)
        for _ in range(20):  # a colour that stands out from the background
            col = rng.uniform(0.0, 1.0, 3)
            if np.abs(col - bg_mean).sum() > 0.6:
                break
        dx, dy = xx - cx, yy - cy
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = -dx * math.sin(theta) + dy * math.cos(theta)
        if cls == 1:
            inside = dx * dx + dy * dy <= r * r
        elif cls == 2:
            s = 0.85 * r
            inside = (np.abs(u) <= s) & (np.abs(v) <= s)
        else:  # equilateral triangle of circumradius 1.25 r: three half-planes
            R = 1.25 * r
            inside = np.ones_like(u, bool)
            for k in range(3):
                a = theta + math.pi / 2 + k * 2 * math.pi / 3 + math.pi / 3
                inside &= (dx * math.cos(a) + dy * math.sin(a)) <= R / 2
        shade = 1.0 + 0.15 * _smooth_noise(rng, 4)
        for ch in range(3):
            img[ch][inside] = (col[ch] * shade)[inside]
        mask[inside] = cls
    img = img + rng.normal(0.0, 0.05, img.shape)
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return u8, mask


def make_set(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images u8 ``[n, 3, 64, 64]`` and masks u8 ``[n, 64, 64]`` from ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    pairs = [make_image(rng) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def preprocess(images: np.ndarray) -> torch.Tensor:
    x = images.astype(np.float32) / np.float32(255.0)
    assert x.dtype == np.float32
    return torch.from_numpy(x)


# ---------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------

def logits_of(model: cnn_tools.GraphModel, x: torch.Tensor) -> torch.Tensor:
    return model.layer_outputs(x)["head"]


@torch.no_grad()
def predict(model: cnn_tools.GraphModel, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Eval-mode predicted masks ``[n, 64, 64]``: argmax of the softmax output."""
    model.eval()
    return torch.cat([model(x[i:i + batch]).argmax(dim=1) for i in range(0, len(x), batch)])


def iou(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {}
    for c, name in enumerate(CLASSES):
        inter = int(((pred == c) & (truth == c)).sum())
        union = int(((pred == c) | (truth == c)).sum())
        out[name] = inter / union if union else float("nan")
    out["mean"] = float(np.nanmean([out[n] for n in CLASSES]))
    out["pixel_accuracy"] = float((pred == truth).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--val", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-miou", type=float, default=0.8,
                    help="exit with status 1 if the validation mean IoU is below this")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed + 1)

    t0 = time.perf_counter()
    tr_img, tr_mask = make_set(args.seed * 1000 + 1, args.train)
    va_img, va_mask = make_set(args.seed * 1000 + 2, args.val)
    te_img, te_mask = make_set(args.seed * 1000 + 3, N_TEST)
    x_train, y_train = preprocess(tr_img), torch.from_numpy(tr_mask.astype(np.int64))
    x_val, x_test = preprocess(va_img), preprocess(te_img)
    frac = np.bincount(tr_mask.ravel(), minlength=4) / tr_mask.size
    print(f"generated {args.train} train / {args.val} val / {N_TEST} test images in "
          f"{time.perf_counter() - t0:.1f}s; class pixel fractions {np.round(frac, 3).tolist()}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    model = cnn_tools.build_model(args.model)
    print(f"params {cnn_tools.count_params(model)}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n = len(x_train)
    total_steps = math.ceil(n / args.batch) * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))

    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, seen = 0.0, 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb, yb = x_train[idx], y_train[idx]
            flips = torch.randint(0, 2, (2,), generator=gen)
            if flips[0]:
                xb, yb = xb.flip(-1), yb.flip(-1)
            if flips[1]:
                xb, yb = xb.flip(-2), yb.flip(-2)
            loss = F.cross_entropy(logits_of(model, xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
        train_time = time.perf_counter() - t0
        v = iou(predict(model, x_val).numpy(), va_mask)
        print(f"epoch {epoch:2d}/{args.epochs}  loss {loss_sum / seen:.4f}  val mIoU "
              f"{v['mean']:.4f}  " + " ".join(f"{c} {v[c]:.3f}" for c in CLASSES) +
              f"  {train_time:.1f}s", flush=True)
    train_seconds = time.perf_counter() - t_start

    val = iou(predict(model, x_val).numpy(), va_mask)
    torch_masks = predict(model, x_test).numpy().astype(np.uint8)
    test = iou(torch_masks, te_mask)
    print(f"test ({N_TEST} images) mIoU {test['mean']:.4f}, val ({args.val}) mIoU "
          f"{val['mean']:.4f}, total {train_seconds:.1f}s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"generator": f"tools/train_unet_shapes.py, torch {torch.__version__}, "
                         f"model unet_shapes, seed {args.seed}"}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(args.out / "weights.safetensors"), metadata=meta)
    save_file({"images": torch.from_numpy(te_img.copy()),
               "masks": torch.from_numpy(te_mask.copy()),
               "torch_masks": torch.from_numpy(torch_masks)},
              str(args.out / "test.safetensors"), metadata=meta)
    reference = {
        "torch_version": torch.__version__,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_images": args.train,
        "batch": args.batch,
        "lr": args.lr,
        "threads": args.threads,
        "train_seconds": round(train_seconds, 1),
        "classes": list(CLASSES),
        "iou_definition": "per class over all pixels of the set: |pred=c and truth=c| / "
                          "|pred=c or truth=c|; mean over the 4 classes",
        "test_images": N_TEST,
        "test_iou": test,
        "val_images": args.val,
        "val_iou": val,
        "preprocessing": PREPROCESSING,
    }
    (args.out / "torch_reference.json").write_text(json.dumps(reference, indent=2) + "\n")
    print(f"wrote weights.safetensors, test.safetensors, torch_reference.json in {args.out}")
    if val["mean"] < args.min_miou:
        print(f"error: val mean IoU {val['mean']:.4f} < required {args.min_miou}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
