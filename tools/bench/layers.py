#!/usr/bin/env python3
"""Per-layer times of `cnn` next to ONNX Runtime's, for one of the four sequential models.

`cnn`: the kernel bench's "in the chain" column (`cargo bench -p cnn-runtime --bench
kernels -- MODEL LEVEL`: each layer's real kernel call, reading what the layer before
wrote, random weights of the right shapes). ONNX Runtime: its profiler's per-node kernel
times on `target/bench/MODEL/model.onnx` (`export_onnx.py`), the median over `--runs`
runs, same thread count. The two alternate `--rounds` times and each layer's median round
is reported, so that both engines see the same phases of a machine whose speed drifts.

ORT's nodes are its optimised graph's (batch norms and activations fused into the
convolutions, NCHWc reorders added); they are matched to `cnn`'s layers in order by
kind (conv, pool, global pool, fully connected); ORT's layout reorders and flattens are
listed after the table. The profiler adds a few microseconds per node: compare layers
of tens of microseconds or more, and whole models with `compare.py`.

    python3 tools/bench/layers.py mobilenet_96 [--threads N] [--rounds R] [--level avx2]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "target" / "bench"
MODELS = ("lenet5", "cifar_vgg", "mobilenet_96", "fcn_seg")

# ORT op types -> the kind of the cnn layer they match; None: ORT-only (layout).
ORT_KIND = {
    "Conv": "conv", "FusedConv": "conv",
    "MaxPool": "pool", "AveragePool": "pool",
    "GlobalAveragePool": "gap", "ReduceMean": "gap", "GlobalMaxPool": "gap",
    "Gemm": "fc", "FusedGemm": "fc", "MatMul": "fc",
}


def cnn_kind(desc: str) -> str:
    """The kind of a kernel-bench layer from its description (`conv ...`, `dw ...`)."""
    word = desc.split()[0]
    if word in ("conv", "dw") or word.startswith("wino"):
        return "conv"
    if word in ("max", "avg"):
        return "pool"
    if word == "global":
        return "gap"
    if word == "linear":
        return "fc"
    return word


def level_default() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "avx2"
    return "avx512" if "avx512f" in flags else "avx2"


def run_cnn(model: str, level: str, threads: int) -> list[tuple[str, str, float]]:
    """(name, description, chained µs) of every layer, from the kernel bench."""
    env = dict(os.environ, CNN_NUM_THREADS=str(threads))
    cmd = ["cargo", "bench", "-q", "-p", "cnn-runtime", "--bench", "kernels"]
    if threads > 1:
        cmd += ["--features", "parallel"]
    cmd += ["--", model, level]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    rows = []
    chain = False
    for line in out.splitlines():
        if line.startswith("in the chain"):
            chain = True
            continue
        if not chain:
            continue
        if line.startswith("forward") or not line.strip():
            break
        m = re.match(r"(\S+)\s+(.*?)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            rows.append((m.group(1), m.group(2), float(m.group(4))))
    if not rows:
        sys.exit(f"no per-layer table in the kernel bench's output for {model} {level}:\n{out}")
    return rows


def run_ort(model: str, threads: int, runs: int) -> list[tuple[str, str, float]]:
    """(node name, op type, median kernel µs) of every profiled node, in run order."""
    import numpy as np
    import onnxruntime as ort

    path = BENCH / model / "model.onnx"
    if not path.exists():
        sys.exit(f"{path} missing: run tools/bench/make_weights.py and export_onnx.py first")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
        for _ in range(runs):
            sess.run(None, {inp.name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))].append(e["dur"])
    # The first runs include the session's warm-up.
    return [(n, op, statistics.median(v[len(v) // 5:])) for (n, op), v in times.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300, help="ORT runs per round")
    parser.add_argument("--level", default=level_default(), help="avx512, avx2 or portable")
    args = parser.parse_args(argv)

    cnn_rounds, ort_rounds = [], []
    for _ in range(args.rounds):
        cnn_rounds.append(run_cnn(args.model, args.level, args.threads))
        ort_rounds.append(run_ort(args.model, args.threads, args.runs))
    layers = [(n, d) for n, d, _ in cnn_rounds[0]]
    cnn_us = [statistics.median(r[i][2] for r in cnn_rounds) for i in range(len(layers))]
    nodes = [(n, op) for n, op, _ in ort_rounds[0]]
    ort_us = [statistics.median(r[i][2] for r in ort_rounds) for i in range(len(nodes))]

    matched = [i for i, (_, op) in enumerate(nodes) if ORT_KIND.get(op)]
    extra = [i for i, (_, op) in enumerate(nodes) if not ORT_KIND.get(op)]
    kinds_cnn = [cnn_kind(d) for _, d in layers]
    kinds_ort = [ORT_KIND[nodes[i][1]] for i in matched]
    print(f"{args.model}: {args.threads} thread(s), cnn at {args.level}, "
          f"medians of {args.rounds} alternated rounds, µs\n")
    if kinds_cnn != kinds_ort:
        print(f"layers do not match by kind (cnn {kinds_cnn}, ORT {kinds_ort}): listed apart\n")
        for (n, d), t in zip(layers, cnn_us):
            print(f"cnn  {n:8s} {d:48s} {t:9.1f}")
        for (n, op), t in zip(nodes, ort_us):
            print(f"ORT  {op:18s} {n:48s} {t:9.1f}")
        return 0
    print("| layer | what | cnn | ORT | ORT/cnn |")
    print("|---|---|---:|---:|---:|")
    for (n, d), t, i in zip(layers, cnn_us, matched):
        print(f"| {n} | {d} | {t:.1f} | {ort_us[i]:.1f} | {ort_us[i] / t:.2f} |")
    total_c, total_o = sum(cnn_us), sum(ort_us[i] for i in matched)
    print(f"| sum | | {total_c:.1f} | {total_o:.1f} | {total_o / total_c:.2f} |")
    if extra:
        print("\nORT only (layout): " + ", ".join(
            f"{nodes[i][1]} {ort_us[i]:.1f}" for i in extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
