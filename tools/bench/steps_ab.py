#!/usr/bin/env python3
"""Per-step A/B comparison of two configurations of `cnn` on one model, alternated.

A configuration is a bench binary built with the `profile` feature (and `parallel` for
more than one thread), a thread count and optional environment variables:

    cargo bench --features profile,parallel --bench models --no-run
    cp target/release/deps/models-<hash> /tmp/models_a        # the binary cargo printed
    python3 tools/bench/steps_ab.py mobilenet_v2_224 /tmp/models_a:1 /tmp/models_a:2
    python3 tools/bench/steps_ab.py resnet18_224 /tmp/old:2 /tmp/new:2 --rounds 8
    python3 tools/bench/steps_ab.py mobilenet_96 /tmp/a:2 /tmp/a:2:CNN_SIMD=avx2

Each round runs `BINARY --bench --profile MODEL --time SECONDS` once per configuration
(A then B in even rounds, B then A in odd ones: the first of a round had an edge of up to
~3% on the Intel VM) and reads its per-step table. Reported per step: the median over the rounds of
A's and of B's step medians, and the median over the rounds of the per-round ratio A / B
(> 1: B faster). On a VM whose cores change speed by phases (docs/PERFORMANCE.md), the
per-round ratio of configurations run back to back is what compares; a single run's
numbers do not. Paths are taken from the workspace root (the binaries read
`target/bench/MODEL/`).

Two plans with different steps (a plan change that fuses two layers, say) compare
too: steps pair up by layer and kernel, each side's unpaired steps are listed alone,
and the totals compare.

Build the two binaries alike: identical code built in two target directories ran 2%
apart on a whole model (U-Net, AMD Zen 4, 2026-12-04) from code layout alone. For a
baseline, a `git worktree add /tmp/base <commit>` built with the same
`CARGO_TARGET_DIR` as the change (copy each binary out before the next build).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parse_config(text: str) -> tuple[str, int, dict[str, str]]:
    """`BINARY:THREADS[:NAME=VALUE...]` -> (binary, threads, environment additions)."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) < 1:
        raise argparse.ArgumentTypeError(f"`{text}`: expected BINARY:THREADS[:NAME=VALUE...]")
    env = {}
    for item in parts[2:]:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise argparse.ArgumentTypeError(f"`{item}` in `{text}`: expected NAME=VALUE")
        env[name] = value
    return parts[0], int(parts[1]), env


def parse_table(out: str) -> list[tuple[str, str, int, float]]:
    """The step rows of `--profile`'s table: (layer, kernel, MACs, median µs)."""
    steps = []
    for line in out.splitlines():
        f = line.split()
        if not f or not f[0].isdigit():
            continue
        share = next((i for i, t in enumerate(f) if t.endswith("%")), None)
        if share is None or share < 4:
            continue
        steps.append((f[1], " ".join(f[2:share - 2]), int(f[share - 2]), float(f[share - 1])))
    return steps


def run(config: tuple[str, int, dict[str, str]], model: str, secs: float) -> list:
    binary, threads, extra = config
    env = dict(os.environ, CNN_NUM_THREADS=str(threads), **extra)
    proc = subprocess.run([binary, "--bench", "--profile", model, "--time", str(secs)],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    steps = parse_table(proc.stdout)
    if proc.returncode != 0 or not steps:
        raise SystemExit(f"error: {binary} ({threads} threads) gave no profile for {model}:\n"
                         f"{proc.stderr.strip()[-2000:]}")
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("a", type=parse_config, help="BINARY:THREADS[:NAME=VALUE...]")
    ap.add_argument("b", type=parse_config, help="BINARY:THREADS[:NAME=VALUE...]")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--time", type=float, default=0.3, help="seconds per profile run")
    args = ap.parse_args()
    ra, rb = [], []
    for r in range(args.rounds):
        # A first in even rounds, B first in odd ones: on the Intel VM whichever ran
        # first in a round came out up to ~3% faster (docs/PERFORMANCE.md).
        if r % 2 == 0:
            ra.append(run(args.a, args.model, args.time))
            rb.append(run(args.b, args.model, args.time))
        else:
            rb.append(run(args.b, args.model, args.time))
            ra.append(run(args.a, args.model, args.time))
    for runs, which in ((ra, "A"), (rb, "B")):
        if any([x[:2] for x in r] != [x[:2] for x in runs[0]] for r in runs):
            raise SystemExit(f"error: configuration {which} ran different steps from round "
                             "to round")

    def name(c: tuple[str, int, dict[str, str]]) -> str:
        return ":".join([c[0], str(c[1])] + [f"{k}={v}" for k, v in c[2].items()])

    print(f"{args.model}: A = {name(args.a)}, B = {name(args.b)}, {args.rounds} rounds")
    print(f"{'step':>4}  {'layer':24} {'kernel':46} {'A µs':>9} {'B µs':>9} {'A/B':>5}")
    # Steps pair up by (layer, kernel); where the two plans differ (a fused pair in one,
    # two steps in the other) each side's own steps are listed with the other side
    # empty, and only the totals compare.
    keys_a = [x[:2] for x in ra[0]]
    keys_b = [x[:2] for x in rb[0]]
    shared = set(keys_a) & set(keys_b)
    for i, key in enumerate(keys_a):
        layer, kernel = key
        ta = statistics.median(r[i][3] for r in ra)
        if key in shared:
            j = keys_b.index(key)
            tb = statistics.median(r[j][3] for r in rb)
            q = statistics.median(x[i][3] / y[j][3] for x, y in zip(ra, rb))
            print(f"{i:>4}  {layer[:24]:24} {kernel[:46]:46} {ta:9.1f} {tb:9.1f} {q:5.2f}")
        else:
            print(f"{i:>4}  {layer[:24]:24} {kernel[:46]:46} {ta:9.1f} {'':>9} {'':>5}")
    for j, key in enumerate(keys_b):
        if key not in shared:
            layer, kernel = key
            tb = statistics.median(r[j][3] for r in rb)
            print(f"{'B':>4}  {layer[:24]:24} {kernel[:46]:46} {'':>9} {tb:9.1f} {'':>5}")
    tot = [sum(s[3] for s in r) for r in ra], [sum(s[3] for s in r) for r in rb]
    q = statistics.median(x / y for x, y in zip(*tot))
    print(f"{'':>4}  {'total':24} {'(sum of the step medians)':46} "
          f"{statistics.median(tot[0]):9.1f} {statistics.median(tot[1]):9.1f} {q:5.2f}")


if __name__ == "__main__":
    main()
