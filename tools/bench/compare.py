#!/usr/bin/env python3
"""Batch-1 latency (or batch-B throughput) of `cnn` next to ONNX Runtime and OpenVINO, in one run.

For each benchmark model (``target/bench/<model>/{model.onnx,data.safetensors}``, written
by ``make_weights.py`` and ``export_onnx.py``) this

* runs ONNX Runtime (CPUExecutionProvider, ``intra_op_num_threads=N``,
  ``inter_op_num_threads=1``, sequential execution, graph optimisation level ALL) and
  OpenVINO (device CPU, latency hint, 1 stream, N inference threads, f32 inference
  precision) on ``model.onnx``, when they are importable; N is ``--threads`` (default 1),
  and `cnn` gets the same N (built with ``--features parallel``, ``CNN_NUM_THREADS=N``);
* checks each engine's output against the PyTorch float64 reference of
  ``data.safetensors`` (``|got - want| <= 1e-4 + 1e-4 |want|``, max abs diff reported);
* with ``--batch B`` (B > 1), runs ``model_b<B>.onnx`` (static batch B, written by
  ``export_onnx.py --batch B``; 64 by default) on B copies of the reference input,
  checks every output row, and `cnn` times ``forward_batch_into`` on B images (spread
  over its N threads); the tables then also give images/s;
* times each at batch 1 exactly as the Rust bench does: warm-up (>= 0.3 s and 10 runs),
  then N runs each timed alone (N for about ``--time`` seconds), median / p10 / p90 with
  numpy's default linear interpolation; the engines are called through their
  lowest-overhead Python paths (ORT ``run_with_iobinding`` with pre-bound input and
  output, OpenVINO ``InferRequest.infer()`` on a pre-set input tensor);
* runs ``CNN_NUM_THREADS=N cargo bench --features parallel --bench models -- --json
  target/bench/cnn.json`` for `cnn` (or reads that file with ``--no-cargo``);
* with ``--rounds R`` (R > 1), runs each model's three engines back to back, R times,
  ``--time / R`` seconds each, and reports per engine the round with the median time: on
  a VM whose speed drifts within minutes (two threads on this project's 2-core VMs ran
  1.3x to 1.9x faster than one, changing from minute to minute), engines timed a minute
  apart are not comparable;
* prints one table -- cnn, ORT and OpenVINO medians, the ratios ORT/cnn and OV/cnn
  (> 1: cnn is faster), GFLOP/s = 2 * MACs / median -- with the machine and the
  versions, and writes it as markdown to ``target/bench/report.md`` (and the raw numbers
  to ``target/bench/compare.json``).

It installs nothing: ``pip install onnxruntime openvino`` (see tools/bench/README.md).

Usage::

    python3 tools/bench/compare.py [--time 2] [--threads 1] [--batch 1] [--rounds 1] [--no-cargo] [MODEL ...]
"""

from __future__ import annotations

import argparse
import datetime
import gc
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
MODELS = ("lenet5", "cifar_vgg", "mobilenet_96", "fcn_seg", "resnet18_224", "mobilenet_v2_224")
ATOL = RTOL = 1e-4


# ---------------------------------------------------------------------------------------
# Timing (the same method as benches/models.rs)
# ---------------------------------------------------------------------------------------

def time_fn(fn: Callable[[], object], seconds: float) -> dict:
    """Warm up ``fn``, then time N single calls; returns quantiles in µs."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
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
    finally:
        if gc_was_enabled:
            gc.enable()
    us = samples / 1e3
    return {
        "runs": runs,
        "p10_us": float(np.percentile(us, 10)),
        "median_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "min_us": float(us.min()),
        "mean_us": float(us.mean()),
    }


def check(got: np.ndarray, want: np.ndarray) -> dict:
    """Compare an output with the reference, with the conformance tolerance."""
    got = np.asarray(got, dtype=np.float32).reshape(-1)
    want = np.asarray(want, dtype=np.float32).reshape(-1)
    if got.shape != want.shape:
        return {"checked": True, "check_passed": False, "max_abs_diff": None,
                "error": f"{got.size} values, expected {want.size}"}
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    ratio = diff / (ATOL + RTOL * np.abs(want.astype(np.float64)))
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
    try:
        info["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--time", type=float, default=2.0,
                        help="measuring seconds per model and engine (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every engine (default 1): cnn's CNN_NUM_THREADS "
                             "(built with --features parallel), ORT intra_op_num_threads, "
                             "OpenVINO INFERENCE_NUM_THREADS")
    parser.add_argument("--batch", type=int, default=1,
                        help="images per call (default 1): above 1, cnn times "
                             "forward_batch_into and the references model_b<B>.onnx")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds (default 1): above 1, each model runs cnn, ORT and "
                             "OpenVINO back to back, ROUNDS times, --time / ROUNDS seconds "
                             "each, and the round with the median time is reported per "
                             "engine (for machines whose speed drifts within a run)")
    parser.add_argument("--no-cargo", action="store_true",
                        help="do not run cargo bench; read --cnn-json")
    parser.add_argument("--cnn-json", type=Path, default=BENCH / "cnn.json")
    parser.add_argument("--report", type=Path, default=BENCH / "report.md")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.rounds > 1 and args.no_cargo:
        parser.error("--rounds needs cargo (not --no-cargo)")
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

    from safetensors.numpy import load_file

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

    # cnn first (it compiles, then times), then the reference engines; with rounds, model
    # by model (cnn, ORT, OpenVINO back to back), each round timing `--time / rounds`.
    secs = args.time / args.rounds
    if not args.no_cargo:
        run_cargo(secs, args.models[:1] if args.rounds > 1 else args.models,
                  args.cnn_json.resolve(), args.threads, args.batch)
    if not args.cnn_json.exists():
        parser.error(f"{args.cnn_json} is missing (run without --no-cargo)")
    cnn = json.loads(args.cnn_json.read_text())
    if cnn.get("batch", 1) != args.batch:
        parser.error(f"{args.cnn_json} is for batch {cnn.get('batch', 1)}, not {args.batch} "
                     "(run without --no-cargo)")
    cnn_by_model = {m["model"]: m for m in cnn["models"]}

    results = {}
    rounds_seen = {}
    for name in [m for m in args.models for _ in range(args.rounds)]:
        rd = rounds_seen[name] = rounds_seen.get(name, -1) + 1
        if args.rounds > 1 and (rd > 0 or name != args.models[0]):
            run_cargo(secs, [name], args.cnn_json.resolve(), args.threads, args.batch)
            cnn_by_model.update({m["model"]: m for m in
                                 json.loads(args.cnn_json.read_text())["models"]})
        data = load_file(str(BENCH / name / "data.safetensors"))
        x = np.ascontiguousarray(data["input"], dtype=np.float32)
        want = data["output"]
        if args.batch > 1:
            x = np.ascontiguousarray(np.repeat(x, args.batch, axis=0))
            want = np.repeat(want, args.batch, axis=0)
        meta = json.loads((BENCH / name / "meta.json").read_text()) \
            if (BENCH / name / "meta.json").exists() else {}
        c = cnn_by_model.get(name)
        macs = (c or {}).get("macs") or meta.get("macs")
        if c and meta.get("macs") and c["macs"] != meta["macs"]:
            notes.append(f"{name}: MACs differ, cnn {c['macs']} vs torch count {meta['macs']}")
        row = {"model": name, "macs": macs, "cnn": c, "engines": {}}
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
            if "median_us" in r and macs:
                r["gflops"] = 2 * macs * args.batch / (r["median_us"] * 1e-6) / 1e9
            if "median_us" in r:
                r["images_per_s"] = args.batch / (r["median_us"] * 1e-6)
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
        results[name] = row

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
            fmt(om / cm if om and cm else None, ".2f"), fmt(vm / cm if vm and cm else None, ".2f"),
            fmt(c.get("gflops"), ".1f"), fmt(o.get("gflops"), ".1f"),
            fmt(v.get("gflops"), ".1f")])
        if args.batch > 1:
            best = max((r["images_per_s"] for r in (o, v) if r.get("images_per_s")),
                       default=None)
            cimg = args.batch / (cm * 1e-6) if cm else None
            rows[-1] += [fmt(cimg, ",.0f"), fmt(best, ",.0f"),
                         fmt(cimg / best if cimg and best else None, ".2f")]
        for ename, r in (("cnn", c), ("ORT", o), ("OpenVINO", v)):
            if not r:
                continue
            status = ("error: " + r["error"][:70]) if "error" in r else (
                ("ok" if r.get("check_passed") else "FAIL") if r.get("checked") else "unchecked")
            detail.append([name, ename, fmt(r.get("p10_us"), ".1f"),
                           fmt(r.get("median_us"), ".1f"), fmt(r.get("p90_us"), ".1f"),
                           fmt(r.get("runs"), "d"), status,
                           fmt(r.get("max_abs_diff"), ".1e")])
    dhead = ["model", "engine", "p10 µs", "median µs", "p90 µs", "runs", "check",
             "max abs diff"]

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
                    f"{mach.get('mem_gib', '?')} GiB, Linux {mach.get('kernel')}")
    version_line = ", ".join(f"{k} {v}" for k, v in vers.items() if v)
    floor_line = ", ".join(f"{k} {v:.1f} µs" if isinstance(v, float) else f"{k} {v}"
                           for k, v in floor.items())

    threads_text = ("one thread" if args.threads == 1 and cnn_threads == 1 else
                    f"{args.threads} threads" if cnn_threads == args.threads else
                    f"cnn {cnn_threads} thread(s), ORT and OpenVINO {args.threads} threads")
    print()
    what = ("Batch 1, median latency" if args.batch == 1 else
            f"Batch {args.batch}, median time per batch (images/s = {args.batch} / median)")
    print(f"{what}, {threads_text}; ratio > 1: cnn is faster")
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
    md = [
        f"# cnn vs ONNX Runtime vs OpenVINO — batch {args.batch}, {threads_text}",
        "",
        f"Run {started} by `tools/bench/compare.py` (`--time {args.time} --threads {args.threads} --batch {args.batch} --rounds {args.rounds}`). Median time "
        f"per call ({args.batch} image(s)); ratio = reference median / cnn median, so **> 1 means cnn is "
        "faster**. GFLOP/s = 2 × MACs / median."
        + ("" if args.rounds == 1 else
           f" Each model ran cnn, ORT and OpenVINO back to back, {args.rounds} rounds of "
           f"{secs:.2f} s each; per engine the round with the median time is shown "
           "(all rounds in compare.json)."),
        "",
        md_table(head, rows),
        "",
        "Spread and output checks (vs PyTorch float64, tolerance 1e-4 + 1e-4·|want|):",
        "",
        md_table(dhead, detail),
        "",
        f"- **Machine:** {machine_line}",
        f"- **Versions:** {version_line}",
        f"- **Load average** (1/5/15 min) before {load_before}, after {load_after}",
        f"- **cnn:** `cargo bench --bench models` (release profile), "
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
    md += ["", "Timing: warm-up ≥ 0.3 s and 10 runs, then each run timed alone for about "
           f"{args.time} s per model and engine; median, p10, p90 by linear interpolation. "
           "The engines run one after the other, not at the same time.", ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(md))
    (BENCH / "compare.json").write_text(json.dumps(
        {"started": started, "threads": {"cnn": cnn_threads, "ort": args.threads,
                                         "openvino": args.threads}, "machine": mach, "versions": vers, "load_before": load_before,
         "load_after": load_after, "call_floor_us": floor, "notes": notes,
         "results": results}, indent=1, default=str) + "\n")
    print(f"\nwrote {args.report} and {BENCH / 'compare.json'}")
    failed = [f"{n}/{e}" for n, row in results.items() for e, r in row["engines"].items()
              if "error" in r or not r.get("check_passed", False)]
    failed += [f"{n}/cnn" for n, row in results.items()
               if row["cnn"] and not row["cnn"].get("check_passed", True)]
    if failed:
        print(f"warning: failed or mismatching: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
