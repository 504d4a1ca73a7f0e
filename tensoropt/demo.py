"""``tensoropt demo`` / ``make demo``: the optimizer at work on a bundled example.

Imports an example model (by default ``examples/small_cnn.onnx``), verifies
it, and runs a pipeline that changes it: symbolic dims bound to the demo's
batch size (``bind-dims``), batch norms folded into the convolutions before
them (``fold-batchnorm``), the cleanups, and OLLIE-style derivation
(``derive``: each convolution searched, the candidates compiled and timed,
and a rewrite kept only where it measured faster, node by node and in the
whole model). The report shows what each pass did and what changed (nodes
removed, added, rewritten; values retyped), derive's search and measured
choice per node, the op mix and cost before and after, the soundness check
(the reference interpreter before and after on the same seeded inputs),
the kernels TVM built with the schedule each got (and any fallback), and the
latency: the model compiled as imported, the optimized model, and
onnxruntime, timed the same way and interleaved
(``bench.interleaved_calls``), and the interpreter, each with its
difference from the interpreter's outputs. Derive's timings may come from
its cost cache; the report counts those.
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
RUNS = 50
#: rounds of interleaved blocks: more than bench's default, because this VM
#: intermittently runs a 2-thread kernel at half speed for 100 ms or more
#: (README, Codegen), and more, shorter blocks spread every side over it alike
ROUNDS = 10
#: the demo's passes (after ``bind-dims`` when the model has symbolic dims).
#: Elementwise fusion is left to TVM (FuseOps), which keeps a conv a conv for
#: the GEMM schedule instead of an expr with relu inside its reads; derive
#: searches briefly (2 s a node) so that the demo takes seconds, not minutes.
DEFAULT_PIPELINE = "fold-batchnorm,fold-constants,cse,dce,derive{time=2,top=2}"
#: the size every symbolic dim is bound to (the inputs' size too)
DEMO_SIZE = 1


def default_pipeline(symbols: list[str]) -> str:
    """The demo's pipeline for a graph with these symbolic dims."""
    if not symbols:
        return DEFAULT_PIPELINE
    dims = ",".join(f"{s}={DEMO_SIZE}" for s in symbols)
    return f'bind-dims{{dims="{dims}"}},{DEFAULT_PIPELINE}'


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


def _median_ms(fn, runs: int = 20, warmup: int = 3) -> float:  # type: ignore[no-untyped-def]
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
    """Compile ``g`` as imported and ``new`` as optimized, then time both, onnxruntime and the interpreter."""
    from .bench import interleaved_calls
    from .compiler import compile as compile_graph

    t0 = time.perf_counter()
    model = compile_graph(new, progress=progress)
    compile_s = time.perf_counter() - t0
    plain = compile_graph(g, progress=progress)
    sess = _onnxruntime_session(path, g)
    names = [o for o in g.outputs]

    def rel(out: dict) -> float:  # type: ignore[type-arg]
        scale = max((float(np.max(np.abs(reference[o]))) for o in names if reference[o].size), default=0.0) or 1.0
        return api.max_abs_diff(reference, out, names) / scale

    ours, ours_plain = model.run(inputs), plain.run(inputs)
    ort_out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
    # every compiled side timed the same way, interleaved (bench.TIMING)
    runs, _ = interleaved_calls({"optimized": lambda: model.run(inputs), "imported": lambda: plain.run(inputs),
                                 "onnxruntime": lambda: sess.run(None, inputs)}, warmup=3, repeat=RUNS,
                                rounds=ROUNDS)
    sides = [
        {"side": "tensoropt, optimized (TVM)", "median_ms": statistics.median(runs["optimized"]) * 1e3,
         "max_rel_diff": rel(ours)},
        {"side": "tensoropt, as imported (TVM)", "median_ms": statistics.median(runs["imported"]) * 1e3,
         "max_rel_diff": rel(ours_plain)},
        {"side": "onnxruntime", "median_ms": statistics.median(runs["onnxruntime"]) * 1e3,
         "max_rel_diff": rel(ort_out)},
        {"side": "tensoropt interpreter", "median_ms": _median_ms(lambda: api.evaluate(new, inputs), runs=5, warmup=1),
         "max_rel_diff": 0.0},
    ]
    ort_ms = sides[2]["median_ms"]
    for sd in sides:
        sd["vs_onnxruntime"] = sd["median_ms"] / ort_ms
    return {"compile_seconds": compile_s, "kernels": len(model.manifest["kernels"]),
            "kernels_as_imported": len(plain.manifest["kernels"]),
            "schedules": dict(model.manifest["kernels"]), "fallbacks": list(model.manifest["fallbacks"]),
            "fallbacks_as_imported": list(plain.manifest["fallbacks"]),
            "build_seconds": model.manifest["build_seconds"], "runs": RUNS, "sides": sides}


def _run_passes(g, passes, status):  # type: ignore[no-untyped-def]
    """Run ``passes`` like ``api.optimize(verify=True)``, keeping derive's per-node report and model check."""
    from .passes import PassReport
    from .passes.derive.derive import Derive, ModelCheck

    reports, derive_rows = [], []
    check = ModelCheck()
    ran_derive = False
    for p in passes:
        before, t0 = len(g.nodes), time.perf_counter()
        if isinstance(p, Derive):
            ran_derive = True
            found: list = []
            kinds = {n.output_names[0]: _node_kind(n, g) for n in g.nodes}
            g = p.apply(g, found, status, model_check=check)
            derive_rows += [(name, d, kinds.get(name, "?")) for name, d in found]
        else:
            g = p.apply(g)
        reports.append(PassReport(p.name, time.perf_counter() - t0, before, len(g.nodes)))
        api.verify(g)
    derive = None
    if ran_derive:
        derive = {"nodes": [_derive_row(name, d, kind) for name, d, kind in derive_rows],
                  "model_check": check.as_json(), "model_check_line": check.summary(),
                  "cached_timings": check.cached + sum(d.cached for _, d, _ in derive_rows)}
    return g, reports, derive


def _node_kind(node, graph) -> str:  # type: ignore[no-untyped-def]
    """``conv2d 3x3 stride 2``, ``conv2d 3x3 group 16``, or the op's name."""
    if node.op != "conv2d":
        return str(node.op)
    w = graph.type_of(node.inputs[1]).shape
    kind = f"conv2d {w[2]}x{w[3]}"
    group, strides = int(node.attrs.get("group", 1)), list(node.attrs.get("strides", [1, 1]))
    return kind + (f" group {group}" if group > 1 else "") + (f" stride {strides[0]}" if max(strides) > 1 else "")


#: derive decisions as the demo words them
DECISIONS = {"rewritten": "faster alone and in the whole model", "reverted": "faster alone, not in the whole model",
             "slower": "every candidate measured slower", "none built": "no candidate compiled"}


def _derive_row(name: str, d, kind: str) -> dict:  # type: ignore[no-untyped-def]
    """One searched node: what it was, the best program found and measured, and the decision."""
    best = min(d.measured, key=lambda ct: ct[1]) if d.measured else None
    if d.rewritten:
        decision = "rewritten"
    elif d.in_model == "reverted":
        decision = "reverted"
    elif best is None:
        decision = "none built"
    else:
        decision = "slower"
    return {"node": name, "original": kind, "states": d.search.states,
            "search_s": d.search.seconds, "original_ms": None if d.start_s is None else d.start_s * 1e3,
            "best": best[0].program if best else None, "best_ms": best[1] * 1e3 if best else None,
            "best_depth": best[0].depth if best else None, "decision": decision, "cached_timings": d.cached}


def run_demo(file: str | None = None, *, pipeline: str | None = None, as_json: bool = False) -> int:
    from .cli.common import build_progress, status_line
    from .ir.diff import graph_diff
    from .passes import parse_pipeline

    path = _example_path(file)
    g = api.load(path)
    api.verify(g)
    symbols = api.symbols_of(g)
    inputs = api.random_inputs(g, seed=0, bindings={s: DEMO_SIZE for s in symbols})
    pipeline = pipeline or default_pipeline(symbols)
    passes = parse_pipeline(pipeline)
    before, t_before = _timed_eval(g, inputs)
    interactive = not as_json and sys.stderr.isatty()
    status = status_line("  derive", interactive)
    new, reports, derive = _run_passes(g, passes, status)
    if status is not None:
        print(file=sys.stderr)
    after, t_after = _timed_eval(new, inputs)
    diff = api.max_abs_diff(before, after, g.outputs)
    scale = max((float(np.max(np.abs(before[o]))) for o in g.outputs if before[o].size), default=0.0) or 1.0
    result = {
        "example": str(path),
        "pipeline": pipeline,
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "passes": api.report_rows(reports),
        "changes": graph_diff(g, new).as_json(),
        "derive": derive,
        "before": {**api.graph_summary(g), "eval_seconds": t_before},
        "after": {**api.graph_summary(new), "eval_seconds": t_after},
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale,
    }
    with build_progress(interactive) as progress:
        result["compiled"] = _compiled_section(path, g, new, inputs, before, progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    _print_report(g, new, result)
    return 0


def _changes_lines(ch: dict) -> list[str]:  # type: ignore[type-arg]
    """The graph diff in a few lines (long lists shortened)."""
    def names(items: list, fmt) -> str:  # type: ignore[no-untyped-def, type-arg]
        shown = [fmt(t) for t in items[:6]]
        return ", ".join(shown) + (f", and {len(items) - 6} more" if len(items) > 6 else "")

    lines = []
    if ch["removed"]:
        lines.append(f"removed {len(ch['removed'])}: " + names(ch["removed"], lambda t: f"%{t[0]} ({t[1]})"))
    if ch["added"]:
        lines.append(f"added {len(ch['added'])}: " + names(ch["added"], lambda t: f"%{t[0]} ({t[1]})"))
    if ch["rewritten"]:
        lines.append(f"rewritten {len(ch['rewritten'])}: " + names(
            ch["rewritten"], lambda t: f"%{t[0]} ({t[1]}" + (f" -> {t[2]})" if t[1] != t[2] else ", new inputs)")))
    if ch["retyped"]:
        t0 = ch["retyped"][0]
        lines.append(f"retyped {len(ch['retyped'])} values, e.g. %{t0[0]}: {t0[1]} -> {t0[2]}")
    return lines or ["nothing: the pipeline left the graph as it was"]


def _print_report(g, new, r) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .ir.printer import print_graph

    con = Console(highlight=False)
    con.rule(f"tensoropt demo: {r['example']}")
    ins = ", ".join(f"%{k}{v}" for k, v in r["inputs"].items())
    con.print(f"graph [bold]{g.name}[/]: {len(g.nodes)} nodes, {len(g.constants)} constants; random inputs {ins}")

    t = Table(title=f"pipeline: {escape(r['pipeline'])}", title_justify="left")
    for c in ("pass", "ms", "nodes before", "nodes after"):
        t.add_column(c, justify="left" if c == "pass" else "right")
    for p in r["passes"]:
        t.add_row(p["pass"], f"{p['ms']:.2f}", str(p["nodes_before"]), str(p["nodes_after"]))
    con.print(t)
    con.print("[bold]what changed[/]")
    for line in _changes_lines(r["changes"]):
        con.print(f"  {escape(line)}")

    dv = r["derive"]
    if dv is not None:
        t = Table(title="derive: each node searched, the best candidates compiled and timed",
                  title_justify="left", caption="ms: the node with its elementwise epilogue, compiled alone. "
                  + "; ".join(f"{k}: {v}" for k, v in DECISIONS.items()) + " (all but the first keep the node)",
                  caption_justify="left")
        for c in ("node", "op", "states", "ms", "best derived program", "depth", "ms ", "decision"):
            t.add_column(c, justify="right" if c in ("states", "ms", "ms ", "depth") else "left")
        for row in dv["nodes"]:
            t.add_row(f"%{row['node']}", row["original"], f"{row['states']:,}", _ms(row["original_ms"]),
                      row["best"] or "-", str(row["best_depth"] if row["best_depth"] is not None else "-"),
                      _ms(row["best_ms"]), row["decision"])
        con.print(t)
        if dv["model_check_line"]:
            con.print(escape(dv["model_check_line"]))
        con.print(f"derive timings served by the cost cache: {dv['cached_timings']} "
                  "(TENSOROPT_CACHE_DIR; delete it to measure afresh)")

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
    con.print(f"{c['kernels']} kernels ({c['kernels_as_imported']} as imported), compiled in "
              f"{c['compile_seconds']:.2f} s ({build})")
    con.print(f"fallbacks: {len(c['fallbacks'])} (as imported: {len(c['fallbacks_as_imported'])})")
    special = any("| " in label for label in c["schedules"].values())
    t = Table(title="kernels and their schedules", title_justify="left", caption_justify="left",
              caption="`| batch=1:` a branch specialised for a symbolic dim bound to 1" if special else None)
    t.add_column("kernel")
    t.add_column("schedule")
    for name, label in sorted(c["schedules"].items()):
        t.add_row(name, label)
    con.print(t)
    for fb in c["fallbacks"]:
        con.print(f"[yellow]fallback[/] {fb['kernel']}: {fb['reason']}")
    t = Table(title=f"latency on the same inputs (median of {c['runs']} calls, interleaved, this machine)",
              title_justify="left")
    for col in ("side", "median ms", "vs onnxruntime", "max rel diff vs interpreter"):
        t.add_column(col, justify="left" if col == "side" else "right")
    for sd in c["sides"]:
        t.add_row(sd["side"], f"{sd['median_ms']:.3f}", f"{sd['vs_onnxruntime']:.2f}x", f"{sd['max_rel_diff']:.2g}")
    con.print(t)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
