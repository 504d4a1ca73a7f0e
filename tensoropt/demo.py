"""``tensoropt demo`` / ``make demo``: the main job on a bundled example.

Imports an example model (by default ``examples/small_cnn.onnx``), verifies
it, runs a pass pipeline, evaluates the graph before and after with the
reference interpreter on the same seeded inputs, compiles the optimized graph
with TVM, and times the compiled model against onnxruntime on the same
inputs. The report shows what each pass did, the op mix and cost before and
after, the largest difference between the evaluations (the soundness check
every pass must pass), the kernels TVM built with the schedule each got
(and any fallback), and the latency table: tensoropt compiled and
onnxruntime timed the same way, interleaved (``bench.interleaved_calls``),
and the interpreter, with each one's difference from the interpreter's
outputs.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from . import api

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_EXAMPLE = "small_cnn.onnx"
#: timed calls per side (after warm-up) in the latency table.
RUNS = 20
#: the cleanups; elementwise fusion is left to TVM (FuseOps), which keeps a conv
#: a conv for the GEMM schedule instead of an expr with relu inside its reads.
DEFAULT_PIPELINE = "fold-constants,cse,dce"


def _example_path(file: str | None) -> Path:
    if file:
        return Path(file)
    return EXAMPLES / DEFAULT_EXAMPLE


def _timed_eval(graph, inputs, runs: int = 3):  # type: ignore[no-untyped-def]
    """Outputs and the median seconds of ``runs`` evaluations after a warm-up."""
    out = api.evaluate(graph, inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        api.evaluate(graph, inputs)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def _median_ms(fn, runs: int = RUNS, warmup: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Median wall-clock milliseconds of ``fn()`` (the same timer for every side)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _onnxruntime_session(path: Path, graph):  # type: ignore[no-untyped-def]
    """An onnxruntime session on the example file, or on our export of a non-ONNX graph."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    if path.suffix.lower() == ".onnx":
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    from .frontends.onnx_export import to_onnx

    return ort.InferenceSession(to_onnx(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _compiled_section(path: Path, g, new, inputs, reference, progress) -> dict:  # type: ignore[no-untyped-def]
    """Compile ``new``, then time it, onnxruntime and the interpreter on ``inputs``."""
    from .bench import interleaved_calls
    from .compiler import compile as compile_graph

    t0 = time.perf_counter()
    model = compile_graph(new, progress=progress)
    compile_s = time.perf_counter() - t0
    sess = _onnxruntime_session(path, g)
    names = [o for o in g.outputs]

    def rel(out: dict) -> float:  # type: ignore[type-arg]
        scale = max((float(np.max(np.abs(reference[o]))) for o in names if reference[o].size), default=0.0) or 1.0
        return api.max_abs_diff(reference, out, names) / scale

    ours = model.run(inputs)
    ort_out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
    # the compiled model and onnxruntime timed the same way, interleaved (bench.TIMING)
    runs, _ = interleaved_calls({"tensoropt": lambda: model.run(inputs), "onnxruntime": lambda: sess.run(None, inputs)},
                                warmup=3, repeat=RUNS)
    sides = [
        {"side": "tensoropt (TVM, compiled)", "median_ms": statistics.median(runs["tensoropt"]) * 1e3,
         "max_rel_diff": rel(ours)},
        {"side": "onnxruntime", "median_ms": statistics.median(runs["onnxruntime"]) * 1e3,
         "max_rel_diff": rel(ort_out)},
        {"side": "tensoropt interpreter", "median_ms": _median_ms(lambda: api.evaluate(new, inputs), runs=5, warmup=1),
         "max_rel_diff": 0.0},
    ]
    ort_ms = sides[1]["median_ms"]
    for s in sides:
        s["vs_onnxruntime"] = s["median_ms"] / ort_ms
    return {"compile_seconds": compile_s, "kernels": len(model.manifest["kernels"]),
            "schedules": dict(model.manifest["kernels"]), "fallbacks": list(model.manifest["fallbacks"]),
            "build_seconds": model.manifest["build_seconds"], "runs": RUNS, "sides": sides}


def run_demo(file: str | None = None, *, pipeline: str | None = None, as_json: bool = False) -> int:
    path = _example_path(file)
    pipeline = pipeline or DEFAULT_PIPELINE
    g = api.load(path)
    api.verify(g)
    inputs = api.random_inputs(g, seed=0, bindings={s: 1 for s in api.symbols_of(g)})
    before, t_before = _timed_eval(g, inputs)
    new, reports = api.optimize(g, pipeline, verify=True)
    after, t_after = _timed_eval(new, inputs)
    diff = api.max_abs_diff(before, after, g.outputs)
    scale = max((float(np.max(np.abs(before[o]))) for o in g.outputs if before[o].size), default=0.0) or 1.0
    result = {
        "example": str(path),
        "pipeline": pipeline,
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "passes": api.report_rows(reports),
        "before": {**api.graph_summary(g), "eval_seconds": t_before},
        "after": {**api.graph_summary(new), "eval_seconds": t_after},
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale,
    }
    from .cli.common import build_progress

    with build_progress(not as_json and sys.stderr.isatty()) as progress:
        result["compiled"] = _compiled_section(path, g, new, inputs, before, progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    _print_report(g, new, result)
    return 0


def _print_report(g, new, r) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    from .ir.printer import print_graph

    con = Console(highlight=False)
    con.rule(f"tensoropt demo: {r['example']}")
    ins = ", ".join(f"%{k}{v}" for k, v in r["inputs"].items())
    con.print(f"graph [bold]{g.name}[/]: {len(g.nodes)} nodes, {len(g.constants)} constants; random inputs {ins}")

    t = Table(title=f"pipeline: {r['pipeline']}", title_justify="left")
    for c in ("pass", "ms", "nodes before", "nodes after"):
        t.add_column(c, justify="left" if c == "pass" else "right")
    for p in r["passes"]:
        t.add_row(p["pass"], f"{p['ms']:.2f}", str(p["nodes_before"]), str(p["nodes_after"]))
    con.print(t)

    b, a = r["before"], r["after"]
    ops = sorted(set(b["ops"]) | set(a["ops"]))
    t = Table(title="before / after", title_justify="left")
    t.add_column("")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_row("nodes", str(b["nodes"]), str(a["nodes"]))
    t.add_row("constants", str(b["constants"]), str(a["constants"]))
    for op in ops:
        t.add_row(f"  {op}", str(b["ops"].get(op, 0)), str(a["ops"].get(op, 0)))
    t.add_row("MFLOP (estimate)", f"{b['cost']['flops'] / 1e6:.2f}", f"{a['cost']['flops'] / 1e6:.2f}")
    t.add_row("interpreter ms (median of 3)", f"{b['eval_seconds'] * 1e3:.1f}", f"{a['eval_seconds'] * 1e3:.1f}")
    con.print(t)
    ok = r["max_rel_diff"] < 1e-4
    verdict = "[green]sound[/]" if ok else "[red]MISMATCH[/]"
    con.print(f"soundness: max |before - after| = {r['max_abs_diff']:.3g} "
              f"(relative {r['max_rel_diff']:.3g}) -> {verdict}")
    con.rule("optimized graph")
    con.print(print_graph(new), markup=False, soft_wrap=True)
    c = r["compiled"]
    build = ", ".join(f"{k} {v:.2f} s" for k, v in c["build_seconds"].items())
    con.rule("compiled with TVM")
    con.print(f"{c['kernels']} kernels, compiled in {c['compile_seconds']:.2f} s ({build})")
    con.print(f"fallbacks: {len(c['fallbacks'])}")
    t = Table(title="kernels and their schedules", title_justify="left",
              caption="`| batch=1:` a branch specialised for a symbolic dim bound to 1", caption_justify="left")
    t.add_column("kernel")
    t.add_column("schedule")
    for name, label in sorted(c["schedules"].items()):
        t.add_row(name, label)
    con.print(t)
    for fb in c["fallbacks"]:
        con.print(f"[yellow]fallback[/] {fb['kernel']}: {fb['reason']}")
    t = Table(title=f"latency on the same inputs (median of {c['runs']} calls, this machine)", title_justify="left")
    for col in ("side", "median ms", "vs onnxruntime", "max rel diff vs interpreter"):
        t.add_column(col, justify="left" if col == "side" else "right")
    for sd in c["sides"]:
        t.add_row(sd["side"], f"{sd['median_ms']:.3f}", f"{sd['vs_onnxruntime']:.2f}x", f"{sd['max_rel_diff']:.2g}")
    con.print(t)
