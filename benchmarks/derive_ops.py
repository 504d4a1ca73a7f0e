"""Derived programs against direct lowering on OLLIE's operator set, on this CPU.

For each operator (ResNet-18's 3x3 conv at 7x7x512, the ConvTranspose layers
of the DCGAN and InfoGAN generators, FSRCNN's 5x5 conv and 9x9 deconv, a
dilated Longformer-style G2BMM and GBMM) it runs the derivation search on the
op's own Expr, measures the original node compiled by tensoropt's codegen
("direct": the same rule-based schedules, no tuning on either side) and the
best few derived programs (TVM's timer, to rank them), checks the chosen
program equal to the original with the reference interpreter, then times the
direct program, the chosen one and PyTorch the same way, interleaved
(``tensoropt.bench.interleaved_calls``: wall clock around each full call,
NumPy in and out), and reports the speedup and the geometric mean. The search
uses a private cost cache, empty at the start, unless ``--cache`` names one.
Writes benchmarks/results/derive_ops.{json,png}.

    python benchmarks/derive_ops.py                  # all ops (~10-15 min on 2 cores)
    python benchmarks/derive_ops.py --only dcgan --depth 4 --time 20 --no-save
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tensoropt.builder import GraphBuilder  # noqa: E402
from tensoropt.interp import run_graph  # noqa: E402
from tensoropt.ir.graph import Graph  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: (name, op, input shapes, which inputs are weights, attrs)
OPS: list[tuple[str, str, list[tuple[int, ...]], tuple[int, ...], dict[str, Any]]] = [
    ("resnet18 conv3x3 512@7x7", "conv2d", [(1, 512, 7, 7), (512, 512, 3, 3)], (1,), {"pads": [1, 1, 1, 1]}),
    ("dcgan convT 512->256 @4", "conv_transpose2d", [(1, 512, 4, 4), (512, 256, 4, 4)], (1,),
     {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("dcgan convT 256->128 @8", "conv_transpose2d", [(1, 256, 8, 8), (256, 128, 4, 4)], (1,),
     {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("dcgan convT 128->64 @16", "conv_transpose2d", [(1, 128, 16, 16), (128, 64, 4, 4)], (1,),
     {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("dcgan convT 64->3 @32", "conv_transpose2d", [(1, 64, 32, 32), (64, 3, 4, 4)], (1,),
     {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("infogan convT 128->64 @7", "conv_transpose2d", [(1, 128, 7, 7), (128, 64, 4, 4)], (1,),
     {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("infogan convT 64->1 @14", "conv_transpose2d", [(1, 64, 14, 14), (64, 1, 4, 4)], (1,),
     {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("fsrcnn conv5x5 1->56 @32", "conv2d", [(1, 1, 32, 32), (56, 1, 5, 5)], (1,), {"pads": [2, 2, 2, 2]}),
    ("fsrcnn deconv9x9 56->1 @32", "conv_transpose2d", [(1, 56, 32, 32), (56, 1, 9, 9)], (1,),
     {"strides": [2, 2], "pads": [4, 4, 3, 3]}),
    ("longformer g2bmm d4", "g2bmm", [(8, 512, 64), (8, 512, 64)], (), {"width": 32, "dilation": 4}),
    ("longformer gbmm d4", "gbmm", [(8, 512, 65), (8, 512, 64)], (), {"width": 32, "dilation": 4}),
]


def op_graph(op: str, shapes: list[tuple[int, ...]], weights: tuple[int, ...], attrs: dict[str, Any],
             seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder(op)
    names = []
    for k, s in enumerate(shapes):
        if k in weights:
            names.append(b.const(f"w{k}", (rng.standard_normal(s) / math.sqrt(np.prod(s[1:]))).astype(np.float32)))
        else:
            names.append(b.input(f"x{k}", "f32", s))
    return b.build(b.op(op, *names, **attrs))


def torch_fn(op: str, g: Graph, attrs: dict[str, Any], x: np.ndarray) -> Callable[[], np.ndarray] | None:
    """PyTorch eager on the same op (context: a library peer), NumPy in and out like
    tensoropt's side; None if PyTorch has no equivalent."""
    import torch
    import torch.nn.functional as F

    if op not in ("conv2d", "conv_transpose2d"):
        return None
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    w = torch.from_numpy(np.array(g.weights[g.constants[0].name]))  # a writable copy
    pads = attrs["pads"]
    # ONNX-style asymmetric pads: crop (top, left) and output_padding for the rest
    extra = (pads[0] - pads[2], pads[1] - pads[3])

    def fn() -> np.ndarray:
        with torch.inference_mode():
            xt = torch.from_numpy(x)
            if op == "conv2d":
                return F.conv2d(xt, w, padding=(pads[0], pads[1])).numpy()
            return F.conv_transpose2d(xt, w, stride=tuple(attrs["strides"]), padding=(pads[0], pads[1]),
                                      output_padding=extra).numpy()

    return fn


def final_timing(g: Graph, program: Graph | None, torch_side: Callable[[], np.ndarray] | None,
                 xs: dict[str, np.ndarray], repeat: int) -> dict[str, Any]:
    """The direct and derived programs compiled, and PyTorch, timed the same way
    (``bench.interleaved_calls``: wall clock around each full call, NumPy in and
    out, interleaved blocks); per side median/min/max ms, never cached."""
    import warnings

    from tensoropt.bench import interleaved_calls, stats_ms
    from tensoropt.compiler import FallbackWarning, compile as compile_model

    def side(graph: Graph) -> tuple[Callable[[], Any], int]:
        with warnings.catch_warnings():  # recorded below instead
            warnings.simplefilter("ignore", FallbackWarning)
            model = compile_model(graph)
        ins = {k: v for k, v in xs.items() if k in {i.name for i in graph.inputs}}
        return (lambda: model.run(ins)), len(model.manifest["fallbacks"])

    sides: dict[str, Callable[[], Any]] = {}
    fallbacks = {}
    sides["direct"], fallbacks["direct"] = side(g)
    if program is not None:
        sides["derived"], fallbacks["derived"] = side(program)
    if torch_side is not None:
        sides["torch"] = torch_side
    runs, failed = interleaved_calls(sides, warmup=3, repeat=repeat)
    if failed:
        raise RuntimeError(f"a side failed while timed: {failed}")
    out = {name: {k: v for k, v in stats_ms(r).items() if k != "runs_ms"} | {"cached": False}
           for name, r in runs.items()}
    for name, n in fallbacks.items():
        out[name]["fallbacks"] = n
    return out


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-30))


def run_one(name: str, op: str, shapes: list[tuple[int, ...]], weights: tuple[int, ...], attrs: dict[str, Any],
            depth: int, seconds: float, repeat: int) -> dict[str, Any]:
    from tensoropt.passes.derive.derive import _expr_of, derive_expr

    g = op_graph(op, shapes, weights, attrs)
    node = g.nodes[0]
    types = {k: v.type for k, v in g.values().items()}
    values = {i: types[i] for i in node.inputs}
    w = {i: np.asarray(g.weights[i]) for i in node.inputs if i in g.weights}
    expr = _expr_of(node, types)
    t0 = time.monotonic()
    d = derive_expr(expr, values, w, depth=depth, time_limit=seconds, original=g, verify=True,
                    progress=lambda m: print(f"\r  {m:<60}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    # equality of the chosen program with the original on the same inputs (float32 interpreter)
    rng = np.random.default_rng(1)
    xs = {v.name: rng.uniform(-1, 1, size=v.type.shape).astype(np.float32) for v in g.inputs}
    want = run_graph(g, xs)[g.outputs[0]]
    assert d.program is not None
    got = run_graph(d.program, {k: v for k, v in xs.items() if k in {i.name for i in d.program.inputs}})
    diff = rel_diff(want, got[d.program.outputs[0]])
    kept = d.chosen is d.start
    timed = final_timing(g, None if kept else d.program, torch_fn(op, g, attrs, xs[g.inputs[0].name]), xs, repeat)
    direct = timed["direct"]["median_ms"]
    derived = direct if kept else timed["derived"]["median_ms"]
    return {
        "op": name, "kind": op, "shapes": shapes, "attrs": attrs,
        "direct_ms": direct, "derived_ms": derived,
        "torch_ms": timed["torch"]["median_ms"] if "torch" in timed else None,
        "speedup": direct / derived,
        "timings": timed,
        # what the search measured to rank candidates (TVM's timer, this run's private cost cache)
        "search_direct_ms": d.start_s * 1e3 if d.start_s else None,
        "search_derived_ms": d.chosen_s * 1e3 if d.chosen_s else None,
        "search_cached_timings": d.cached,  # 0 with the private cache: every ranking timing measured in this run
        "program": d.chosen.program if not kept else "(original kept)",
        "depth": d.chosen.depth, "steps": len(d.chosen.path),
        "states": d.search.states, "search_s": round(d.search.seconds, 2), "stopped": d.search.stopped,
        "measured": [{"program": c.program, "ms": t * 1e3} for c, t in d.measured],
        "max_rel_diff_vs_original": diff, "wall_s": round(time.monotonic() - t0, 1),
        "path": [f"{s.rule} {s.param}" + (" (guided)" if s.guided else "") for s in d.chosen.path],
    }


def plot(rows: list[dict[str, Any]], gm: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tensoropt.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    names = [r["op"] for r in rows]
    sp = [r["speedup"] or 1.0 for r in rows]
    ax.barh(names, sp, color=["tab:green" if s > 1.0 else "tab:gray" for s in sp])
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(gm, color="tab:blue", ls="--", lw=1, label=f"geometric mean {gm:.2f}x")
    ax.set_xscale("log")
    ax.set_xlabel("speedup of the derived program over direct lowering (x, log scale)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax.set_title("tensoropt derive: OLLIE's operator set, this CPU")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help="regex on op names")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--time", type=float, default=40.0, help="search seconds per op")
    ap.add_argument("--repeat", type=int, default=30, help="timed calls per side in the final timing")
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="the derive cost cache to use (default: a private one, empty at the start)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    # the search ranks candidates by measured time: a cache from an earlier
    # build of tensoropt would rank by stale timings (it did, before the
    # ConvTranspose lowering landed)
    cache_dir = args.cache or tempfile.mkdtemp(prefix="tensoropt-derive-cache-")
    os.environ["TENSOROPT_CACHE_DIR"] = cache_dir
    from tensoropt.atomic import atomic_write_text
    from tensoropt.bench import TIMING, machine_info

    rows = []
    for name, op, shapes, weights, attrs in OPS:
        if args.only and not re.search(args.only, name):
            continue
        print(f"{name}", file=sys.stderr)
        r = run_one(name, op, shapes, weights, attrs, args.depth, args.time, args.repeat)
        rows.append(r)
        print(f"  direct {r['direct_ms']:.4g} ms  derived {r['derived_ms']:.4g} ms  {r['speedup']:.2f}x  "
              f"(torch {r['torch_ms'] if r['torch_ms'] is None else round(r['torch_ms'], 4)} ms)  {r['program']}  depth {r['depth']}  {r['states']} states  diff {r['max_rel_diff_vs_original']:.1e}",
              flush=True)
    sps = [r["speedup"] for r in rows if r["speedup"]]
    gm = math.exp(sum(math.log(s) for s in sps) / len(sps)) if sps else float("nan")
    print(f"geometric mean speedup: {gm:.2f}x over {len(sps)} ops")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        doc = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
               "timing": TIMING + f"; {args.repeat} timed calls per side; direct and derived programs "
                         "compiled by tensoropt's default path (the search's own ranking used TVM's timer)",
               "cost_cache": ("given: " + args.cache) if args.cache else "private, empty at the start",
               "depth": args.depth, "search_seconds": args.time, "geomean_speedup": gm, "rows": rows}
        atomic_write_text(RESULTS / "derive_ops.json", json.dumps(doc, indent=2, default=str) + "\n")
        plot(rows, gm, RESULTS / "derive_ops.png")
        print(f"wrote {RESULTS / 'derive_ops.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
