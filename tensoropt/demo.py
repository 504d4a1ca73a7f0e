"""``tensoropt demo`` / ``make demo``: the main job on a bundled example.

Loads an example graph, verifies it, runs a pass pipeline, evaluates the
graph before and after with the reference interpreter on the same seeded
inputs, and prints a report: what each pass did and how long it took, the
op mix and cost before and after, and the largest difference between the two
evaluations (the soundness check every pass must pass).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from . import api

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_EXAMPLE = "conv_block.top"
DEFAULT_PIPELINE = "fold-constants,cse,dce,fuse-elementwise"


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


def run_demo(file: str | None = None, *, pipeline: str | None = None, as_json: bool = False) -> int:
    path = _example_path(file)
    pipeline = pipeline or DEFAULT_PIPELINE
    g = api.load(path)
    api.verify(g)
    inputs = api.random_inputs(g, seed=0, bindings={s: 2 for s in api.symbols_of(g)})
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
