#!/usr/bin/env python3
"""Batch-1 latency (or batch-B throughput) of `cnn` next to ONNX Runtime and OpenVINO, in one run.

For each benchmark model (``target/bench/<model>/{model.onnx,data.safetensors}``, written
by ``make_weights.py`` and ``export_onnx.py``) this

* runs ONNX Runtime (CPUExecutionProvider, ``intra_op_num_threads=N``,
  ``inter_op_num_threads=1``, sequential execution, graph optimisation level ALL, its
  other settings at their defaults) and OpenVINO (device CPU, latency hint, 1 stream, N
  inference threads, f32 inference precision) on ``model.onnx``, when they are
  importable; N is ``--threads`` (default 1), and `cnn` gets the same N (built with
  ``--features parallel``, ``CNN_NUM_THREADS=N``); the engines are called through their
  lowest-overhead Python paths (ORT ``run_with_iobinding`` with pre-bound input and
  output, OpenVINO ``InferRequest.infer()`` on a pre-set input tensor);
* checks each engine's output against the PyTorch float64 reference of
  ``data.safetensors`` (``|got - want| <= 1e-4 + 1e-4 |want|``, max abs diff reported);
* with ``--batch B`` (B > 1), runs ``model_b<B>.onnx`` (static batch B, written by
  ``export_onnx.py --batch B``; 64 by default) on B copies of the reference input,
  checks every output row, and `cnn` times ``forward_batch_into`` on B images (spread
  over its N threads); the tables then also give images/s;
* times the three engines **alternated** (the default method): it starts
  ``CNN_NUM_THREADS=N cargo bench --features parallel --bench models -- --serve
  [--batch B] MODEL ...`` once (the Rust bench loads, checks and warms up the models,
  then times a model for a given time on each ``time MODEL SECONDS`` line of its stdin,
  answering a JSON line), and per model runs ``--rounds`` R rounds (default 18); a round
  times each engine for one block of ``--time / R`` seconds (about 0.11 s by default),
  back to back, in an order that changes from round to round (all orders of the
  engines in turn, so none always follows another), with a ``--pause`` (default 30 ms)
  before each block so that the worker threads of the engine before have gone to sleep
  (ONNX Runtime's spin for a while after a run; its settings stay at their defaults).
  With fewer threads than CPUs, this process and the Rust bench are pinned to the same
  ``--cpus`` (default: the last N CPUs; ``all``: no pinning): on these VMs each vCPU
  flips between its speed phases on its own, and two processes on different vCPUs see
  different phases. A block is a short warm-up (at least 2 runs and 10 ms), then runs
  each timed alone until its time has passed (at least 5), the same in Rust and Python;
  a 0.3 s block per engine, not recorded, warms each model up first. The Rust bench is
  built (``--no-run``) before the pinning, on every CPU. Reported per engine: the
  median over the rounds of the block medians (likewise p10 and p90), and per
  reference engine the ratio to `cnn` as the **median of the per-round ratios**
  (reference block median / `cnn` block median of the same round), with their p25-p75
  spread;
* ``--blocks`` keeps the old method: ``cargo bench ... -- --json target/bench/cnn.json``
  times `cnn` alone, model after model, then each reference engine times each model
  for ``--time`` seconds after a 0.3 s warm-up (or, with ``--rounds R`` above 1, the
  three back to back, R times, ``--time / R`` seconds each, and the round with the
  median time per engine); ``--no-cargo`` (implies ``--blocks``) reads an existing
  ``cnn.json`` instead of running cargo. On this project's VMs, whose CPU speed flips
  between two phases 1.5-2x apart several times a second and drifts over minutes,
  blocks of half a second or more per engine land in different phases: their ratios
  moved by up to 30% between two runs minutes apart (MobileNet-96's ORT/cnn at one
  thread: 0.80 and 1.36 with ``--blocks``, 1.13 and 1.13 alternated; see README.md);
* prints one table -- cnn, ORT and OpenVINO times, the ratios ORT/cnn and OV/cnn
  (> 1: cnn is faster), GFLOP/s = 2 * MACs / time -- with the machine and the versions,
  and writes it as markdown to ``target/bench/report.md`` (and the raw numbers, every
  round included, to ``target/bench/compare.json``).

It installs nothing: ``pip install onnxruntime openvino`` (see tools/bench/README.md).

Usage::

    python3 tools/bench/compare.py [--time 2] [--rounds 18] [--threads 1] [--batch 1]
                                   [--cpus LIST|all] [--pause 0.03] [MODEL ...]
    python3 tools/bench/compare.py --blocks [--rounds 1] [--no-cargo] ...
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "target" / "bench"
MODELS = ("lenet5", "cifar_vgg", "mobilenet_96", "fcn_seg", "resnet18_224", "mobilenet_v2_224",
          "unet_shapes", "efficientnet_b0_224", "mobilenet_v3_large_224", "mobilenet_v3_small_224", "densenet121_224", "resnet50_224", "squeezenet1_1_224",
          "shufflenet_v2_x1_0_224")
ATOL = RTOL = 1e-4


# ---------------------------------------------------------------------------------------
# Timing (the same methods as benches/models.rs)
# ---------------------------------------------------------------------------------------

def stats(us: np.ndarray) -> dict:
    """Runs and quantiles (numpy's default linear interpolation) of times in µs."""
    return {
        "runs": int(us.size),
        "p10_us": float(np.percentile(us, 10)),
        "median_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "min_us": float(us.min()),
        "mean_us": float(us.mean()),
    }


@contextlib.contextmanager
def gc_off():
    """Python's garbage collector off for the block (it would pause timed calls)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_fn(fn: Callable[[], object], seconds: float) -> dict:
    """Warm up ``fn``, then time N single calls; returns quantiles in µs."""
    with gc_off():
        clock = time.perf_counter_ns
        start = clock()
        warm_runs = 0
        while warm_runs < 10 or clock() - start < 300_000_000:
            fn()
            warm_runs += 1
        per_run = (clock() - start) / warm_runs / 1e9
        runs = int(min(max(seconds / per_run, 20), 2_000_000))
        samples = np.empty(runs, dtype=np.float64)
        for i in range(runs):
            t0 = clock()
            fn()
            samples[i] = clock() - t0
    return stats(samples / 1e3)


def time_block(fn: Callable[[], object], seconds: float) -> dict:
    """One block of the alternated method, as ``time MODEL SECONDS`` of the Rust bench's
    ``--serve`` mode: a warm-up of at least 2 runs and 10 ms, then single calls, each
    timed alone, until ``seconds`` have passed (at least 5); returns quantiles in µs."""
    with gc_off():
        clock = time.perf_counter_ns
        start = clock()
        warm_runs = 0
        while warm_runs < 2 or clock() - start < 10_000_000:
            fn()
            warm_runs += 1
        samples = []
        budget = int(seconds * 1e9)
        start = clock()
        while len(samples) < 5 or clock() - start < budget:
            t0 = clock()
            fn()
            samples.append(clock() - t0)
    return stats(np.array(samples, dtype=np.float64) / 1e3)


def check(got: np.ndarray, want: np.ndarray) -> dict:
    """Compare an output with the reference: |got - want| <= atol + rtol |want|, atol
    scaled by the reference's largest magnitude."""
    got = np.asarray(got, dtype=np.float32).reshape(-1)
    want = np.asarray(want, dtype=np.float32).reshape(-1)
    if got.shape != want.shape:
        return {"checked": True, "check_passed": False, "max_abs_diff": None,
                "error": f"{got.size} values, expected {want.size}"}
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    # The absolute tolerance per unit of the largest reference magnitude (at least 1), as
    # tests/torchvision.rs and the Rust bench: deep networks' float32 error grows with it.
    atol = ATOL * max(1.0, float(np.nanmax(np.abs(want)))) if want.size else ATOL
    ratio = diff / (atol + RTOL * np.abs(want.astype(np.float64)))
    worst = float(np.nanmax(ratio)) if not np.isnan(ratio).any() else float("inf")
    return {"checked": True, "check_passed": worst <= 1.0,
            "max_abs_diff": float(np.nanmax(diff)) if not np.isnan(diff).any() else float("nan"),
            "worst_diff_over_tolerance": worst}


# ---------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------

def ort_runner(onnx_path: Path, x: np.ndarray, out_shape: tuple[int, ...], threads: int = 1):
    """(output, timed callable, settings) for ONNX Runtime on ``threads`` intra-op
    threads (one inter-op thread, sequential execution)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    out_name = sess.get_outputs()[0].name
    y = sess.run([out_name], {in_name: x})[0]

    binding = sess.io_binding()
    binding.bind_cpu_input(in_name, x)
    out = ort.OrtValue.ortvalue_from_numpy(np.empty(out_shape, dtype=np.float32))
    binding.bind_ortvalue_output(out_name, out)

    def run():
        sess.run_with_iobinding(binding)

    run()
    y_bound = out.numpy()
    if not np.array_equal(y_bound, np.asarray(y).reshape(out_shape)):
        raise RuntimeError("ORT: io-binding output differs from run() output")
    settings = {"providers": sess.get_providers(), "intra_op_num_threads": threads,
                "inter_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL",
                "execution_mode": "ORT_SEQUENTIAL", "call": "run_with_iobinding"}
    return y, run, settings


def ov_runner(onnx_path: Path, x: np.ndarray, out_shape: tuple[int, ...], threads: int = 1):
    """(output, timed callable, settings) for OpenVINO CPU, 1 stream, ``threads``
    inference threads, f32."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
        "INFERENCE_PRECISION_HINT": "f32",
    }
    compiled = core.compile_model(model, "CPU", config)
    req = compiled.create_infer_request()
    req.set_input_tensor(ov.Tensor(x, shared_memory=True))

    def run():
        req.infer(share_inputs=True, share_outputs=True)

    run()
    y = np.array(req.get_output_tensor(0).data).reshape(out_shape)
    settings = {}
    for key in ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
                "INFERENCE_PRECISION_HINT", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING"):
        try:
            settings[key] = str(compiled.get_property(key))
        except Exception:  # a property this version does not have
            pass
    settings["call"] = "InferRequest.infer(share_inputs, share_outputs) on a set tensor"
    return y, run, settings


def call_floor(seconds: float, engines: dict, threads: int = 1) -> dict:
    """Median time of each engine on an Identity graph of one float: the per-call cost."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return {}
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "floor",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path = BENCH / "floor.onnx"
    onnx.save(proto, str(path))
    x = np.ones((1, 1), dtype=np.float32)
    floor = {}
    for name, runner in engines.items():
        try:
            _, run, _ = runner(path, x, (1, 1), threads)
            floor[name] = time_fn(run, min(seconds, 0.5))["median_us"]
        except Exception as e:  # noqa: BLE001 -- reported, not fatal
            floor[name] = f"error: {e}"
    return floor


# ---------------------------------------------------------------------------------------
# Machine and versions
# ---------------------------------------------------------------------------------------

def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
            "kernel": platform.release(), "arch": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name":
                info["cpu"] = value
            elif key == "flags" and "isa" not in info:
                flags = set(value.split())
                info["isa"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16",
                                                   "avx512_vnni", "amx_tile") if f in flags)
            elif key in ("cpu family", "model") and key not in info:
                info[key] = value
            elif key == "cpu MHz" and "mhz" not in info:
                info["mhz"] = value
        cores = set()
        for block in text.split("\n\n"):
            fields = dict((k.strip(), v.strip()) for k, _, v in
                          (line.partition(":") for line in block.splitlines()))
            if "core id" in fields:
                cores.add((fields.get("physical id"), fields["core id"]))
        info["cores"] = len(cores) or None
        info["hypervisor"] = "hypervisor" in text
    except OSError:
        pass
    caches = cache_sizes()
    if caches:
        info["caches"] = caches
    try:
        info["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def cache_sizes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> str:
    """The first CPU's data and unified caches as Linux reports them ("L1d 32K, L2 1024K,
    L3 32768K"; "" where sysfs has none): the kernels' tuning turns on them (the L1d size
    picks the tile kind of long 1x1 reductions), so a report names them."""
    found = []
    for d in sorted(root.glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        found.append((int(level) if level.isdigit() else 9, f"L{level}{'d' if kind == 'Data' else ''} {size}"))
    return ", ".join(name for _, name in sorted(found))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("onnxruntime", "openvino", "onnx", "torch"):
        try:
            m = __import__(mod)
            v[mod] = getattr(m, "__version__", "?")
        except ImportError:
            v[mod] = None
    if shutil.which("rustc"):
        try:
            v["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True,
                                        text=True, check=True).stdout.strip().removeprefix("rustc ")
        except (OSError, subprocess.CalledProcessError):
            pass
    return v


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------

def run_cargo(seconds: float, models: list[str], json_path: Path, threads: int = 1,
              batch: int = 1) -> None:
    cmd = ["cargo", "bench", "--features", "parallel", "--bench", "models", "--",
           "--json", str(json_path), "--time", str(seconds), "--batch", str(batch), *models]
    env = dict(os.environ, CNN_NUM_THREADS=str(threads))
    print(f"$ CNN_NUM_THREADS={threads}", " ".join(cmd), flush=True)
    if shutil.which("cargo") is None:
        raise SystemExit("error: cargo not found; install Rust or pass --no-cargo with "
                         "an existing target/bench/cnn.json")
    res = subprocess.run(cmd, cwd=ROOT, env=env)
    if res.returncode != 0 and not json_path.exists():
        raise SystemExit(f"error: `{' '.join(cmd)}` failed (exit {res.returncode})")
    if res.returncode != 0:
        print(f"warning: cargo bench exited {res.returncode} (an output check failed?); "
              f"using {json_path}", flush=True)


def fmt(v, spec: str, missing: str = "—") -> str:
    return missing if v is None else format(v, spec)


# Defaults of the alternated method.
ROUNDS = 18       # a multiple of 6, the orders of three engines: each order as often
PAUSE_S = 0.03    # before each block: the engine before's worker threads go to sleep
WARM_S = 0.3      # a first block per model and engine, not recorded


class CnnServer:
    """``cargo bench --features parallel --bench models -- --serve``: the Rust bench,
    started once, timing a model for each ``time MODEL SECONDS`` line written to it.

    It is built first (``--no-run``, on every CPU); then, with ``cpus``, this process is
    pinned to those CPUs and the bench started from it inherits them."""

    def __init__(self, models: list[str], threads: int = 1, batch: int = 1,
                 cpus: list[int] | None = None):
        cargo = ["cargo", "bench", "--features", "parallel", "--bench", "models"]
        cmd = [*cargo, "--", "--serve", "--batch", str(batch), *models]
        if shutil.which("cargo") is None:
            raise SystemExit("error: cargo not found; install Rust, or pass --no-cargo "
                             "with an existing target/bench/cnn.json")
        print("$", " ".join([*cargo, "--no-run"]), flush=True)
        if subprocess.run([*cargo, "--no-run"], cwd=ROOT).returncode != 0:
            raise SystemExit("error: the cnn bench does not build")
        if cpus:
            os.sched_setaffinity(0, cpus)
        pinned = f"  (pinned to CPU {','.join(map(str, cpus))})" if cpus else ""
        print(f"$ CNN_NUM_THREADS={threads}", " ".join(cmd) + pinned, flush=True)
        self.cmd = " ".join(cmd)
        # stdin and stdout are the command channel; stderr (cargo's build output, the
        # bench's notes) goes to ours.
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ,
                                                             CNN_NUM_THREADS=str(threads)),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def ask(self, command: str) -> dict:
        """Sends one command, returns its JSON answer (raises on an error answer)."""
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise SystemExit(f"error: `{self.cmd}` exited (status {self.proc.wait()}) "
                             f"instead of answering `{command}`")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"cnn bench: {answer['error']} (command `{command}`)")
        return answer

    def time(self, model: str, seconds: float) -> dict:
        r = self.ask(f"time {model} {seconds:.6f}")
        r.pop("model", None)
        return r

    def __enter__(self) -> "CnnServer":
        return self

    def __exit__(self, *exc) -> None:
        # The end of its stdin makes the bench exit (as `quit` does); cargo follows.
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()


def pinned_cpus(spec: str | None, threads: int) -> list[int] | None:
    """The CPUs of ``--cpus``: a comma-separated list, ``all`` (None: no pinning), or by
    default the last ``threads`` CPUs this process may use (None if that is all)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if spec == "all" or not allowed:
        return None
    if spec is None:
        return allowed[-threads:] if threads < len(allowed) else None
    cpus = sorted({int(c) for c in spec.split(",")})
    if not set(cpus) <= set(allowed):
        raise ValueError(f"CPUs {cpus} are not all among the allowed {allowed}")
    return cpus


def quartiles(v: list[float]) -> dict:
    """Median, p25, p75, min and max of ``v`` (numpy's default interpolation)."""
    a = np.asarray(v, dtype=np.float64)
    return {"median": float(np.median(a)), "p25": float(np.percentile(a, 25)),
            "p75": float(np.percentile(a, 75)), "min": float(a.min()),
            "max": float(a.max()), "rounds": int(a.size)}


def model_data(name: str, batch: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The reference input and output (``batch`` copies of each) and meta.json."""
    from safetensors.numpy import load_file

    data = load_file(str(BENCH / name / "data.safetensors"))
    x = np.ascontiguousarray(data["input"], dtype=np.float32)
    want = data["output"]
    if batch > 1:
        x = np.ascontiguousarray(np.repeat(x, batch, axis=0))
        want = np.repeat(want, batch, axis=0)
    meta = json.loads((BENCH / name / "meta.json").read_text()) \
        if (BENCH / name / "meta.json").exists() else {}
    return x, want, meta


def model_macs(name: str, c: dict | None, meta: dict, notes: list[str]) -> int | None:
    """MACs as cnn counts them (else export_onnx.py's count); notes a difference."""
    if c and c.get("macs") and meta.get("macs") and c["macs"] != meta["macs"]:
        notes.append(f"{name}: MACs differ, cnn {c['macs']} vs torch count {meta['macs']}")
    return (c or {}).get("macs") or meta.get("macs")


def add_rates(r: dict, macs: int | None, batch: int) -> None:
    """GFLOP/s and images/s from the median time, when there is one."""
    if "median_us" in r and macs:
        r["gflops"] = 2 * macs * batch / (r["median_us"] * 1e-6) / 1e9
    if "median_us" in r:
        r["images_per_s"] = batch / (r["median_us"] * 1e-6)


# Calls a block makes at the least (2 of warm-up, 5 timed: `time_block` and `--serve`).
BLOCK_CALLS = 7
# Rounds a model gets at the least when its calls are longer than a block's share.
MIN_ROUNDS = 3


def alternate(args, engines: dict, notes: list[str], onnx_name: str) -> tuple[dict, dict]:
    """The alternated method (default): (results by model, the cnn bench's ``info``)."""
    secs = args.time / args.rounds
    results = {}
    with CnnServer(args.models, args.threads, args.batch, args.cpus) as server:
        info = server.ask("info")   # after the build, the loads, checks and warm-ups
        if info.get("batch", 1) != args.batch:
            raise SystemExit(f"error: the cnn bench runs batch {info.get('batch')}, "
                             f"not {args.batch}")
        cnn_meta = {m["model"]: m for m in info["models"]}
        cnn_errors = {e["model"]: e["error"] for e in info.get("errors", [])}
        for name in args.models:
            x, want, meta = model_data(name, args.batch)
            c = cnn_meta.get(name)
            macs = model_macs(name, c, meta, notes)
            row = {"model": name, "macs": macs, "method": "alternated",
                   "cnn": dict(c) if c else {"error": cnn_errors.get(name, "not loaded")},
                   "engines": {}}
            timers: dict[str, Callable[[float], dict]] = {}
            if c:
                timers["cnn"] = lambda s, name=name: server.time(name, s)
            for ename, runner in engines.items():
                try:
                    y, run, settings = runner(BENCH / name / onnx_name, x,
                                              tuple(want.shape), args.threads)
                    r = check(y, want)
                    r["settings"] = settings
                    timers[ename] = lambda s, run=run: time_block(run, s)
                except Exception as e:  # noqa: BLE001 -- one engine failing is a table entry
                    r = {"error": f"{type(e).__name__}: {e}"}
                    print(f"  {name}: {ename}: error: {r['error']}", flush=True)
                row["engines"][ename] = r
            orders = list(itertools.permutations(timers))
            warm = {}
            for e, timer in timers.items():   # warm-up, not recorded
                time.sleep(args.pause)
                try:
                    warm[e] = timer(WARM_S).get("median_us")
                except Exception:  # noqa: BLE001 -- the rounds report it
                    warm[e] = None
            # A block makes at least BLOCK_CALLS calls: when the slowest engine's call is
            # longer than a block's share, fewer rounds keep each engine near `--time`
            # (at least MIN_ROUNDS; batch 64 at 224x224 takes seconds a call).
            call_s = max((v for v in warm.values() if v), default=0.0) * 1e-6
            n_rounds = args.rounds
            if call_s * BLOCK_CALLS > secs:
                n_rounds = min(args.rounds, max(MIN_ROUNDS, round(
                    args.time / (call_s * BLOCK_CALLS))))
            if n_rounds < args.rounds:
                notes.append(f"{name}: {n_rounds} rounds, not {args.rounds} (a call takes "
                             f"{call_s * 1e3:.0f} ms: {BLOCK_CALLS} calls a block)")
            print(f"{name}: {n_rounds} rounds of {max(secs, call_s * BLOCK_CALLS):.3f} s "
                  f"per engine ({', '.join(timers)}) ...", flush=True)
            rounds = []
            for rd in range(n_rounds):
                order = orders[rd % len(orders)]
                rec = {"order": list(order)}
                for e in order:
                    time.sleep(args.pause)
                    try:
                        rec[e] = timers[e](secs)
                    except Exception as ex:  # noqa: BLE001 -- recorded in the round
                        rec[e] = {"error": f"{type(ex).__name__}: {ex}"}
                cm = rec.get("cnn", {}).get("median_us")
                rec["ratios"] = {e: rec[e]["median_us"] / cm for e in engines
                                 if cm and "median_us" in rec.get(e, {})}
                rounds.append(rec)
            # Per engine: the median over the rounds of each block statistic.
            for e in timers:
                timed = [rec[e] for rec in rounds if "median_us" in rec.get(e, {})]
                r = row["cnn"] if e == "cnn" else row["engines"][e]
                if not timed:
                    r["error"] = next(rec[e]["error"] for rec in rounds if e in rec)
                    continue
                for k in ("p10_us", "median_us", "p90_us", "mean_us"):
                    r[k] = float(np.median([b[k] for b in timed]))
                r["min_us"] = min(b["min_us"] for b in timed)
                r["runs"] = sum(b["runs"] for b in timed)
                r["rounds_timed"] = len(timed)
                add_rates(r, macs, args.batch)
            for e in engines:
                ratios = [rec["ratios"][e] for rec in rounds if e in rec["ratios"]]
                if ratios:
                    row["engines"][e]["over_cnn"] = quartiles(ratios)
            # cnn's images/s over the better reference's, round by round.
            best = [min(rec["ratios"].values()) for rec in rounds if rec["ratios"]]
            if best:
                row["cnn_over_best"] = quartiles(best)
            row["rounds"] = rounds
            results[name] = row
            o = {"ORT" if e == "ort" else "OV": row["engines"][e].get("over_cnn", {})
                 for e in engines}
            print(f"  cnn {fmt(row['cnn'].get('median_us'), '.1f')} µs; " + ", ".join(
                f"{e}/cnn {fmt(v.get('median'), '.2f')}" for e, v in o.items()), flush=True)
    return results, info


def blocks(args, engines: dict, notes: list[str], onnx_name: str) -> tuple[dict, dict]:
    """The old method (``--blocks``): cnn timed by ``cargo bench --json``, the references
    after it, each for ``--time`` seconds (or in ``--rounds``, the median round)."""
    # cnn first (it compiles, then times), then the reference engines; with rounds, model
    # by model (cnn, ORT, OpenVINO back to back), each round timing `--time / rounds`.
    secs = args.time / args.rounds
    if not args.no_cargo:
        run_cargo(secs, args.models[:1] if args.rounds > 1 else args.models,
                  args.cnn_json.resolve(), args.threads, args.batch)
    if not args.cnn_json.exists():
        raise SystemExit(f"error: {args.cnn_json} is missing (run without --no-cargo)")
    cnn = json.loads(args.cnn_json.read_text())
    if cnn.get("batch", 1) != args.batch:
        raise SystemExit(f"error: {args.cnn_json} is for batch {cnn.get('batch', 1)}, "
                         f"not {args.batch} (run without --no-cargo)")
    cnn_by_model = {m["model"]: m for m in cnn["models"]}

    results = {}
    rounds_seen = {}
    for name in [m for m in args.models for _ in range(args.rounds)]:
        rd = rounds_seen[name] = rounds_seen.get(name, -1) + 1
        if args.rounds > 1 and (rd > 0 or name != args.models[0]):
            run_cargo(secs, [name], args.cnn_json.resolve(), args.threads, args.batch)
            cnn_by_model.update({m["model"]: m for m in
                                 json.loads(args.cnn_json.read_text())["models"]})
        x, want, meta = model_data(name, args.batch)
        c = cnn_by_model.get(name)
        macs = model_macs(name, c, meta, notes if rd == 0 else [])
        row = {"model": name, "macs": macs, "method": "blocks", "cnn": c, "engines": {}}
        for ename, runner in engines.items():
            print(f"{name}: {ename} ..." + (f" (round {rd + 1} of {args.rounds})"
                                            if args.rounds > 1 else ""), flush=True)
            try:
                y, run, settings = runner(BENCH / name / onnx_name, x, tuple(want.shape),
                                          args.threads)
                r = check(y, want)
                r.update(time_fn(run, secs))
                r["settings"] = settings
            except Exception as e:  # noqa: BLE001 -- one engine failing is a table entry
                r = {"error": f"{type(e).__name__}: {e}"}
                print(f"  error: {r['error']}", flush=True)
            add_rates(r, macs, args.batch)
            row["engines"][ename] = r
        if args.rounds > 1:
            rounds = results.setdefault(name, {"rounds": []})["rounds"]
            rounds.append(row)
            if rd + 1 < args.rounds:
                continue
            # Per engine, the round with the median time (the upper one of two middles).
            def pick(get):
                ok = [g for g in (get(r) for r in rounds) if g and "median_us" in g]
                return sorted(ok, key=lambda g: g["median_us"])[len(ok) // 2] if ok else \
                    get(rounds[-1])
            row = dict(rounds[-1], rounds=[
                {"cnn_us": (r["cnn"] or {}).get("median_us"),
                 **{e: v.get("median_us") for e, v in r["engines"].items()}}
                for r in rounds])
            row["cnn"] = pick(lambda r: r["cnn"])
            row["engines"] = {e: pick(lambda r, e=e: r["engines"].get(e)) for e in engines}
        # The ratios of the reported times (one value: no spread).
        cm = (row["cnn"] or {}).get("median_us")
        for r in row["engines"].values():
            if cm and r.get("median_us"):
                r["over_cnn"] = {"median": r["median_us"] / cm}
        refs = [r["median_us"] for r in row["engines"].values() if r.get("median_us")]
        if cm and refs:
            row["cnn_over_best"] = {"median": min(refs) / cm}
        results[name] = row
    return results, cnn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--time", type=float, default=2.0,
                        help="measuring seconds per model and engine (default 2), split "
                             "into --rounds blocks")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"rounds per model (default {ROUNDS}; with --blocks 1): each "
                             "round times cnn, ORT and OpenVINO for --time / ROUNDS seconds "
                             "each, back to back, in an order that changes from round to "
                             "round; ratios are the median of the per-round ratios")
    parser.add_argument("--pause", type=float, default=PAUSE_S,
                        help=f"seconds of sleep before each block (default {PAUSE_S}): the "
                             "engine before's spinning worker threads go to sleep")
    parser.add_argument("--cpus", default=None,
                        help="CPUs (comma-separated) cnn's bench and this process are "
                             "pinned to, or `all` for no pinning; default: the last "
                             "--threads CPUs when there are more (not with --blocks)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every engine (default 1): cnn's CNN_NUM_THREADS "
                             "(built with --features parallel), ORT intra_op_num_threads, "
                             "OpenVINO INFERENCE_NUM_THREADS")
    parser.add_argument("--batch", type=int, default=1,
                        help="images per call (default 1): above 1, cnn times "
                             "forward_batch_into and the references model_b<B>.onnx")
    parser.add_argument("--blocks", action="store_true",
                        help="the old method: cnn timed by `cargo bench -- --json "
                             "CNN_JSON`, then each reference engine for --time seconds "
                             "(with --rounds above 1: the three back to back, the median "
                             "round per engine)")
    parser.add_argument("--no-cargo", action="store_true",
                        help="do not run cargo bench; read --cnn-json (implies --blocks)")
    parser.add_argument("--cnn-json", type=Path, default=BENCH / "cnn.json")
    parser.add_argument("--report", type=Path, default=BENCH / "report.md")
    args = parser.parse_args(argv)
    args.blocks = args.blocks or args.no_cargo
    if args.rounds is None:
        args.rounds = 1 if args.blocks else ROUNDS
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.time > 0 or not args.pause >= 0:
        parser.error("--time must be positive and --pause not negative")
    if args.rounds > 1 and args.no_cargo:
        parser.error("--rounds needs cargo (not --no-cargo)")
    try:
        args.cpus = None if args.blocks else pinned_cpus(args.cpus, args.threads)
    except ValueError as e:
        parser.error(f"--cpus: {e}")
    onnx_name = "model.onnx" if args.batch == 1 else f"model_b{args.batch}.onnx"
    for m in args.models:
        if m not in MODELS:
            parser.error(f"unknown model {m!r} (models: {', '.join(MODELS)})")
    for m in args.models:
        for f in (onnx_name, "data.safetensors"):
            if not (BENCH / m / f).exists():
                parser.error(f"{BENCH / m / f} is missing: run `python3 tools/bench/"
                             f"make_weights.py && python3 tools/bench/export_onnx.py"
                             f"{'' if args.batch in (1, 64) else f' --batch {args.batch}'}`")

    engines: dict[str, Callable] = {}
    notes = []
    try:
        import onnxruntime  # noqa: F401
        engines["ort"] = ort_runner
    except ImportError:
        notes.append("ONNX Runtime not importable (pip install onnxruntime): column empty")
    try:
        import openvino  # noqa: F401
        engines["openvino"] = ov_runner
    except ImportError:
        notes.append("OpenVINO not importable (pip install openvino): column empty")

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load_before = loadavg()

    results, cnn = (blocks if args.blocks else alternate)(args, engines, notes, onnx_name)
    secs = args.time / args.rounds
    alternated = not args.blocks

    floor = call_floor(args.time, engines, args.threads)
    load_after = loadavg()

    mach = machine()
    vers = versions()
    vers["cnn simd level"] = cnn.get("simd_level")

    # ---- the tables ----
    cnn_threads = cnn.get("threads", 1)
    t = "" if args.threads == 1 else f" ({args.threads} thr)"
    head = ["model", "MACs", "cnn µs" + ("" if cnn_threads == 1 else f" ({cnn_threads} thr)"),
            f"ORT µs{t}", f"OpenVINO µs{t}", "ORT/cnn", "OV/cnn",
            "cnn GFLOP/s", "ORT GFLOP/s", "OV GFLOP/s"]
    if args.batch > 1:
        head[2:5] = [h.replace("µs", f"µs / {args.batch}") for h in head[2:5]]
        head += ["cnn img/s", "best ref img/s", "cnn / best"]
    rows = []
    detail = []
    for name, row in results.items():
        c = row["cnn"] or {}
        o = row["engines"].get("ort", {})
        v = row["engines"].get("openvino", {})
        cm, om, vm = c.get("median_us"), o.get("median_us"), v.get("median_us")
        rows.append([
            name, fmt(row["macs"], ","), fmt(cm, ".1f"), fmt(om, ".1f"), fmt(vm, ".1f"),
            fmt(o.get("over_cnn", {}).get("median"), ".2f"),
            fmt(v.get("over_cnn", {}).get("median"), ".2f"),
            fmt(c.get("gflops"), ".1f"), fmt(o.get("gflops"), ".1f"),
            fmt(v.get("gflops"), ".1f")])
        if args.batch > 1:
            best = max((r["images_per_s"] for r in (o, v) if r.get("images_per_s")),
                       default=None)
            rows[-1] += [fmt(c.get("images_per_s"), ",.0f"), fmt(best, ",.0f"),
                         fmt(row.get("cnn_over_best", {}).get("median"), ".2f")]
        for ename, r in (("cnn", c), ("ORT", o), ("OpenVINO", v)):
            if not r:
                continue
            status = ("error: " + r["error"][:70]) if "error" in r else (
                ("ok" if r.get("check_passed") else "FAIL") if r.get("checked") else "unchecked")
            spread = r.get("over_cnn", {})
            detail.append([name, ename, fmt(r.get("p10_us"), ".1f"),
                           fmt(r.get("median_us"), ".1f"), fmt(r.get("p90_us"), ".1f"),
                           fmt(r.get("runs"), "d"),
                           f"{spread['p25']:.2f}–{spread['p75']:.2f}" if "p25" in spread
                           else "—",
                           status, fmt(r.get("max_abs_diff"), ".1e")])
    dhead = ["model", "engine", "p10 µs", "median µs", "p90 µs", "runs",
             "/cnn p25–p75", "check", "max abs diff"]

    def text_table(h, rs):
        widths = [max(len(str(x)) for x in col) for col in zip(h, *rs)]
        line = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w)  # noqa: E731
                                   for i, (x, w) in enumerate(zip(r, widths)))
        return "\n".join([line(h), line(["-" * w for w in widths])] + [line(r) for r in rs])

    def md_table(h, rs):
        out = ["| " + " | ".join(h) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(h) - 1)) + "|"]
        out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rs]
        return "\n".join(out)

    family = (f" (family {mach['cpu family']} model {mach['model']})"
              if "cpu family" in mach and "model" in mach else "")
    machine_line = (f"{mach.get('cpu')}{family}, {mach.get('cores') or '?'} cores / "
                    f"{mach.get('logical_cpus')} logical CPUs"
                    f"{' (VM)' if mach.get('hypervisor') else ''}, {mach.get('isa', '')}, "
                    f"{mach.get('mem_gib', '?')} GiB, Linux {mach.get('kernel')}"
                    f"{', ' + mach['caches'] if mach.get('caches') else ''}")
    version_line = ", ".join(f"{k} {v}" for k, v in vers.items() if v)
    floor_line = ", ".join(f"{k} {v:.1f} µs" if isinstance(v, float) else f"{k} {v}"
                           for k, v in floor.items())

    threads_text = ("one thread" if args.threads == 1 and cnn_threads == 1 else
                    f"{args.threads} threads" if cnn_threads == args.threads else
                    f"cnn {cnn_threads} thread(s), ORT and OpenVINO {args.threads} threads")
    print()
    what = ("Batch 1, median latency" if args.batch == 1 else
            f"Batch {args.batch}, median time per batch (images/s = {args.batch} / median)")
    fewer = alternated and any(len(r.get("rounds", [])) < args.rounds for r in results.values())
    ratio_text = (f"ratios: median over {'up to ' if fewer else ''}{args.rounds} alternated "
                  "rounds of the per-round "
                  "ratio (reference / cnn in the same round)" if alternated else
                  "ratios: reference median / cnn median")
    print(f"{what}, {threads_text}; {ratio_text}; > 1: cnn is faster")
    print(text_table(head, rows))
    print()
    print(text_table(dhead, detail))
    print()
    print(f"machine:  {machine_line}")
    print(f"versions: {version_line}")
    print(f"load avg: before {load_before}, after {load_after}")
    if floor_line:
        print(f"per-call floor (Identity on 1 float, via Python): {floor_line}")
    for n in notes:
        print(f"note: {n}")

    ort_settings = next((r["engines"]["ort"].get("settings") for r in results.values()
                         if "ort" in r["engines"]), None)
    ov_settings = next((r["engines"]["openvino"].get("settings") for r in results.values()
                        if "openvino" in r["engines"]), None)
    flags = (f"--time {args.time} --rounds {args.rounds} --threads {args.threads} "
             f"--batch {args.batch}"
             + (f" --pause {args.pause} --cpus {','.join(map(str, args.cpus or [])) or 'all'}"
                if alternated else
                " --blocks" + (" --no-cargo" if args.no_cargo else "")))
    if alternated:
        method = (
            f"Each model ran {args.rounds} rounds; a round times cnn, ORT and OpenVINO "
            f"back to back for {secs:.3f} s each, in an order that changes from round to "
            f"round (all orders in turn), with a {args.pause * 1e3:.0f} ms pause before "
            "each block"
            + (f", every engine pinned to CPU {','.join(map(str, args.cpus))}" if args.cpus
               else "")
            + ". Times are the median over the rounds of each block's median "
            "(p10, p90: likewise); **ORT/cnn and OV/cnn are the median over the rounds of "
            "the ratio reference / cnn in the same round**, p25–p75 of those ratios in the "
            "second table (every round in compare.json). So **> 1 means cnn is faster**. "
            "GFLOP/s = 2 × MACs / median.")
        timing = ("Timing: the Rust bench runs as a server (`cargo bench --bench models -- "
                  "--serve`) and times `cnn` on request, in its own process; ORT and "
                  "OpenVINO are timed in this Python process. A block: warm-up of at least "
                  "2 runs and 10 ms, then runs each timed alone until the block's time has "
                  "passed (at least 5); a 0.3 s block per model and engine, not recorded, "
                  "warms up first. Quantiles by linear interpolation.")
    else:
        method = (
            f"Median time per call ({args.batch} image(s)); ratio = reference median / "
            "cnn median, so **> 1 means cnn is faster**. GFLOP/s = 2 × MACs / median."
            + ("" if args.rounds == 1 else
               f" Each model ran cnn, ORT and OpenVINO back to back, {args.rounds} rounds "
               f"of {secs:.2f} s each; per engine the round with the median time is shown "
               "(all rounds in compare.json)."))
        timing = ("Timing (`--blocks`): warm-up ≥ 0.3 s and 10 runs, then each run timed "
                  f"alone for about {secs:g} s per model and engine; median, p10, p90 by "
                  "linear interpolation. The engines run one after the other, not at the "
                  "same time.")
    md = [
        f"# cnn vs ONNX Runtime vs OpenVINO — batch {args.batch}, {threads_text}",
        "",
        f"Run {started} by `tools/bench/compare.py` (`{flags}`). {method}",
        "",
        md_table(head, rows),
        "",
        "Spread and output checks (vs PyTorch float64, tolerance 1e-4 + 1e-4·|want|)"
        + (", /cnn p25–p75: quartiles of the per-round ratio" if alternated else "") + ":",
        "",
        md_table(dhead, detail),
        "",
        f"- **Machine:** {machine_line}",
        f"- **Versions:** {version_line}",
        f"- **Load average** (1/5/15 min) before {load_before}, after {load_after}",
        "- **cnn:** `cargo bench --bench models` (release profile), "
        + ("`forward` on nested arrays" if args.batch == 1 else
           f"`forward_batch_into` on {args.batch} images (one image per thread at a time)")
        + f", SIMD level {cnn.get('simd_level')}, {cnn_threads} thread(s)",
        f"- **ONNX Runtime:** {json.dumps(ort_settings) if ort_settings else 'not run'}",
        f"- **OpenVINO:** {json.dumps(ov_settings) if ov_settings else 'not run'}",
    ]
    if floor_line:
        md.append(f"- **Per-call floor** of the Python bindings (an Identity graph on one "
                  f"float): {floor_line}; included in the ORT / OpenVINO times above")
    md += [f"- Note: {n}" for n in notes]
    md += ["", timing, ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(md))
    (BENCH / "compare.json").write_text(json.dumps(
        {"started": started, "threads": {"cnn": cnn_threads, "ort": args.threads,
                                         "openvino": args.threads},
         "batch": args.batch,
         "method": {"name": "alternated" if alternated else "blocks", "time_s": args.time,
                    "rounds": args.rounds, "block_s": secs,
                    **({"pause_s": args.pause, "warm_up_s": WARM_S, "cpus": args.cpus}
                       if alternated else {}),
                    "ratios": ("median of the per-round ratios" if alternated else
                               "ratio of the medians")},
         "machine": mach, "versions": vers, "load_before": load_before,
         "load_after": load_after, "call_floor_us": floor, "notes": notes,
         "results": results}, indent=1, default=str) + "\n")
    print(f"\nwrote {args.report} and {BENCH / 'compare.json'}")
    failed = [f"{n}/{e}" for n, row in results.items() for e, r in row["engines"].items()
              if "error" in r or not r.get("check_passed", False)]
    failed += [f"{n}/cnn" for n, row in results.items()
               if row["cnn"] and ("error" in row["cnn"]
                                  or not row["cnn"].get("check_passed", True))]
    if failed:
        print(f"warning: failed or mismatching: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
