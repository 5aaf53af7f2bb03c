#!/usr/bin/env python3
"""Single-op latency of `cnn`'s conv_transpose and upsample kernels next to ONNX Runtime.

The ops (defined once, in ``cnn-runtime/benches/ops.rs``): the U-Net decoder layers of
``models/unet_shapes.toml`` (``up2``: conv_transpose 64->32 k2 s2 on the 64x16x16
bottleneck; ``up1``: bilinear x2 of ``d2``, 32x32x32) and larger decoder-sized ones
(conv_transpose 128->64 k2 s2 on 128x56x56; conv_transpose 64->32 k4 s2 p1 on 64x64x64;
conv_transpose k3 s2 p1 output_padding 1, 64->32 on 64x64x64 and 128->64 on 128x32x32;
bilinear x2 with and without align_corners, and nearest x2, of 64x56x56). This

1. runs ``cargo bench -p cnn-runtime --bench ops -- --write-inputs``, which writes each
   op's seeded input, weight and bias, and its attributes, to
   ``target/bench/ops/<op>.safetensors``;
2. builds a one-node ONNX model per op (opset 17) -- ``ConvTranspose`` with those weights
   and bias, or ``Resize`` to the output size: nearest with ``asymmetric`` coordinates
   and ``floor`` (PyTorch's ``nearest``), linear with ``pytorch_half_pixel``
   (``align_corners=False``; PyTorch clamps the negative source coordinates, which for
   output sizes > 1 ONNX Runtime's linear Resize does too) or ``align_corners``;
3. runs it in ONNX Runtime on one thread (``compare.ort_runner``: intra_op_num_threads=1,
   sequential, ORT_ENABLE_ALL, ``run_with_iobinding`` with bound input and output),
   checks ORT's output against PyTorch in float64 when torch is importable, stores it in
   the op's file as ``ort_output`` and times it with ``compare.time_fn`` (the method of
   ``benches/models.rs``);
4. runs ``cargo bench -p cnn-runtime --bench ops -- --json target/bench/ops/cnn.json``,
   which checks each kernel's output against ``ort_output`` (``|got - want| <= 1e-4 +
   1e-4 |want|``, so both do the same work) and times it;
5. prints a markdown table -- op, shape, cnn µs, ORT µs, ORT/cnn (> 1: cnn is faster) --
   and writes it to ``target/bench/ops/report.md`` (raw numbers: ``compare.json`` there).

Usage::

    python3 tools/bench/ops.py [--time 2] [--no-cargo] [OP ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (call_floor, check, fmt, loadavg, machine, ort_runner,  # noqa: E402
                     time_fn, versions)

ROOT = Path(__file__).resolve().parents[2]
OPS_DIR = ROOT / "target" / "bench" / "ops"
CARGO = ["cargo", "bench", "-p", "cnn-runtime", "--bench", "ops", "--"]


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",")]


def load_op(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def onnx_model(t: dict[str, np.ndarray], meta: dict[str, str], path: Path) -> None:
    """The op as a one-node ONNX model (input ``input``, output ``output``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = t["input"]
    out_shape = ints(meta["out_shape"])
    inits = []
    if meta["op"] == "conv_transpose":
        ph, pw = ints(meta["padding"])
        node = helper.make_node(
            "ConvTranspose", ["input", "weight", "bias"], ["output"],
            kernel_shape=ints(meta["kernel"]), strides=ints(meta["stride"]),
            pads=[ph, pw, ph, pw], dilations=ints(meta["dilation"]),
            output_padding=ints(meta["output_padding"]), group=int(meta["groups"]))
        inits = [numpy_helper.from_array(t["weight"], "weight"),
                 numpy_helper.from_array(t["bias"], "bias")]
    elif meta["op"] == "upsample":
        if meta["mode"] == "nearest":
            attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                     "nearest_mode": "floor"}
        elif meta["mode"] == "bilinear":
            ac = meta["align_corners"] == "true"
            attrs = {"mode": "linear", "coordinate_transformation_mode":
                     "align_corners" if ac else "pytorch_half_pixel"}
        else:
            raise ValueError(f"upsample mode {meta['mode']!r}")
        # Resize(X, roi, scales, sizes): to the exact output size, like cnn's kernel.
        node = helper.make_node("Resize", ["input", "", "", "sizes"], ["output"], **attrs)
        inits = [numpy_helper.from_array(np.array(out_shape, dtype=np.int64), "sizes")]
    else:
        raise ValueError(f"op {meta['op']!r}")
    graph = helper.make_graph(
        [node], meta.get("desc", "op"),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def torch_reference(t: dict[str, np.ndarray], meta: dict[str, str]) -> np.ndarray | None:
    """The op in PyTorch, float64 (None without torch)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    x = torch.from_numpy(t["input"].astype(np.float64))
    out_shape = ints(meta["out_shape"])
    with torch.no_grad():
        if meta["op"] == "conv_transpose":
            y = F.conv_transpose2d(
                x, torch.from_numpy(t["weight"].astype(np.float64)),
                torch.from_numpy(t["bias"].astype(np.float64)), stride=ints(meta["stride"]),
                padding=ints(meta["padding"]), output_padding=ints(meta["output_padding"]),
                groups=int(meta["groups"]), dilation=ints(meta["dilation"]))
        elif meta["mode"] == "nearest":
            y = F.interpolate(x, size=out_shape[2:], mode="nearest")
        else:
            y = F.interpolate(x, size=out_shape[2:], mode="bilinear",
                              align_corners=meta["align_corners"] == "true")
    return y.numpy()


def cargo(args: list[str]) -> int:
    cmd = CARGO + args
    print("$", " ".join(cmd), flush=True)
    if shutil.which("cargo") is None:
        raise SystemExit("error: cargo not found")
    return subprocess.run(cmd, cwd=ROOT).returncode


def md_table(h: list[str], rs: list[list]) -> str:
    out = ["| " + " | ".join(h) + " |",
           "|" + "|".join(["---", "---"] + ["---:"] * (len(h) - 2)) + "|"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rs]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ops", nargs="*", help="op names (default: all of ops.rs)")
    parser.add_argument("--time", type=float, default=2.0,
                        help="measuring seconds per op and engine (default 2)")
    parser.add_argument("--no-cargo", action="store_true",
                        help="do not run cargo: use the existing data files and --cnn-json")
    parser.add_argument("--cnn-json", type=Path, default=OPS_DIR / "cnn.json")
    parser.add_argument("--report", type=Path, default=OPS_DIR / "report.md")
    args = parser.parse_args(argv)

    from safetensors.numpy import save_file

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load_before = loadavg()
    if not args.no_cargo and cargo(["--write-inputs", *args.ops]) != 0:
        raise SystemExit("error: cargo bench --write-inputs failed")
    if args.ops:
        names = args.ops
    elif (OPS_DIR / "ops.json").exists():
        names = json.loads((OPS_DIR / "ops.json").read_text())
    else:
        names = []
    if not names:
        parser.error(f"no data files in {OPS_DIR} (run without --no-cargo)")

    notes = []
    results = {}
    for name in names:
        path = OPS_DIR / f"{name}.safetensors"
        if not path.exists():
            parser.error(f"{path} is missing (run without --no-cargo)")
        t, meta = load_op(path)
        t.pop("ort_output", None)
        out_shape = tuple(ints(meta["out_shape"]))
        onnx_path = OPS_DIR / f"{name}.onnx"
        onnx_model(t, meta, onnx_path)
        x = np.ascontiguousarray(t["input"], dtype=np.float32)
        print(f"{name}: ort ...", flush=True)
        row = {"op": name, "desc": meta.get("desc"), "kind": meta["op"],
               "macs": int(meta.get("macs", 0))}
        try:
            y, run, settings = ort_runner(onnx_path, x, out_shape, 1)
            y = np.asarray(y, dtype=np.float32).reshape(out_shape)
            ref = torch_reference(t, meta)
            r = check(y, ref) if ref is not None else {"checked": False}
            if ref is None:
                notes.append("torch not importable: ORT outputs not checked against PyTorch")
            save_file({**t, "ort_output": y}, str(path), metadata=meta)
            r.update(time_fn(run, args.time))
            r["settings"] = settings
        except Exception as e:  # noqa: BLE001 -- one op failing is a table entry
            r = {"error": f"{type(e).__name__}: {e}"}
            print(f"  error: {r['error']}", flush=True)
        row["ort"] = r
        results[name] = row

    if not args.no_cargo:
        rc = cargo(["--json", str(args.cnn_json.resolve()), "--time", str(args.time), *names])
        if rc != 0:
            print(f"warning: cargo bench exited {rc} (an output check failed?)", flush=True)
    if not args.cnn_json.exists():
        parser.error(f"{args.cnn_json} is missing (run without --no-cargo)")
    cnn = json.loads(args.cnn_json.read_text())
    for c in cnn["ops"]:
        if c["op"] in results:
            results[c["op"]]["cnn"] = c

    floor = call_floor(args.time, {"ort": ort_runner}, 1)
    load_after = loadavg()
    mach = machine()
    vers = versions()
    vers["cnn simd level"] = cnn.get("simd_level")

    head = ["op", "shape", "cnn µs", "ORT µs", "ORT/cnn"]
    rows, detail = [], []
    for name, row in results.items():
        c, o = row.get("cnn") or {}, row["ort"]
        cm, om = c.get("median_us"), o.get("median_us")
        rows.append([name, row["desc"], fmt(cm, ".1f"), fmt(om, ".1f"),
                     fmt(om / cm if om and cm else None, ".2f")])
        for ename, r in (("cnn", c), ("ORT", o)):
            if not r:
                status = "not run"
            elif "error" in r:
                status = "error: " + r["error"][:70]
            elif r.get("checked"):
                status = ("ok" if r.get("check_passed") else "FAIL") + (
                    " vs ORT" if ename == "cnn" else " vs torch f64")
            else:
                status = "unchecked"
            detail.append([name, ename, fmt(r.get("p10_us"), ".1f"),
                           fmt(r.get("median_us"), ".1f"), fmt(r.get("p90_us"), ".1f"),
                           fmt(r.get("runs"), "d"), status, fmt(r.get("max_abs_diff"), ".1e")])
    dhead = ["op", "engine", "p10 µs", "median µs", "p90 µs", "runs", "check", "max abs diff"]

    family = (f" (family {mach['cpu family']} model {mach['model']})"
              if "cpu family" in mach and "model" in mach else "")
    machine_line = (f"{mach.get('cpu')}{family}, {mach.get('cores') or '?'} cores / "
                    f"{mach.get('logical_cpus')} logical CPUs"
                    f"{' (VM)' if mach.get('hypervisor') else ''}, {mach.get('isa', '')}")
    version_line = ", ".join(f"{k} {v}" for k, v in vers.items()
                             if v and k in ("onnxruntime", "onnx", "torch", "numpy", "rustc",
                                            "cnn simd level"))
    floor_line = ", ".join(f"{k} {v:.1f} µs" if isinstance(v, float) else f"{k} {v}"
                           for k, v in floor.items())
    md = [
        "# cnn vs ONNX Runtime — single ops, batch 1, one thread",
        "",
        f"Run {started} by `tools/bench/ops.py --time {args.time}`. Median latency of one "
        "op call; ORT/cnn = ORT median / cnn median, so **> 1 means cnn is faster**.",
        "",
        md_table(head, rows),
        "",
        "Spread and output checks (cnn vs ORT's output, ORT vs PyTorch float64; tolerance "
        "1e-4 + 1e-4·|want|):",
        "",
        md_table(dhead, detail),
        "",
        f"- **Machine:** {machine_line}",
        f"- **Versions:** {version_line}",
        f"- **Load average** (1/5/15 min) before {load_before}, after {load_after}",
        "- **cnn:** `cargo bench -p cnn-runtime --bench ops` (release profile), one kernel "
        "call on pre-allocated slices",
        "- **ONNX Runtime:** one-node model, intra_op_num_threads=1, "
        "`run_with_iobinding` with bound input and output",
    ]
    if floor_line:
        md.append(f"- **Per-call floor** of ORT's Python binding (an Identity graph on one "
                  f"float): {floor_line}; included in the ORT times above")
    md += [f"- Note: {n}" for n in dict.fromkeys(notes)]
    md.append("")
    text = "\n".join(md)
    print()
    print(text)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    (OPS_DIR / "compare.json").write_text(json.dumps(
        {"started": started, "machine": mach, "versions": vers, "load_before": load_before,
         "load_after": load_after, "call_floor_us": floor, "notes": notes,
         "results": results}, indent=1, default=str) + "\n")
    print(f"wrote {args.report} and {OPS_DIR / 'compare.json'}")
    failed = [f"{n}/ort" for n, row in results.items()
              if "error" in row["ort"] or not row["ort"].get("check_passed", True)]
    failed += [f"{n}/cnn" for n, row in results.items()
               if not row.get("cnn") or not row["cnn"].get("check_passed", False)
               or not row["cnn"].get("checked", False)]
    if failed:
        print(f"warning: failed, unchecked or mismatching: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
