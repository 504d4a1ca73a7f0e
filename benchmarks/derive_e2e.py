"""End to end: small PyTorch models of OLLIE's networks, compiled with and without ``derive``.

Each model of benchmarks/derive_models.py (ResNet-18's last stage, the DCGAN
and InfoGAN generators, FSRCNN) is exported through the torch frontend,
compiled by tensoropt as is ("direct") and after the ``derive`` pass
("derived"), both with the same rule-based schedules and no tuning; the two
and PyTorch eager are timed the same way, interleaved
(``tensoropt.bench.interleaved_calls``: wall clock around each full call,
NumPy in and out). The derive search runs with a private cost cache, empty at
the start, unless ``--cache`` names one. The derived model's outputs are
compared with the direct one's. Writes benchmarks/results/derive_e2e.{json,png}
(every row from this run: a partial run with ``--only`` writes elsewhere, ``-o``).

    python benchmarks/derive_e2e.py                 # all models (~10 min on 2 cores)
    python benchmarks/derive_e2e.py --only dcgan --depth 3 --time 10 --no-save
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from derive_models import MODELS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run_model(name: str, depth: int, seconds: float, repeat: int) -> dict[str, Any]:
    import tensoropt
    from tensoropt.bench import interleaved_calls, stats_ms, torch_side
    from tensoropt.frontends.torch import from_module
    from tensoropt.passes.derive.derive import Derive, ModelCheck

    module, example = MODELS[name]()
    graph = from_module(module, example)
    report: list[tuple[str, Any]] = []
    check = ModelCheck()
    t0 = time.monotonic()
    derived = Derive(depth=depth, time=seconds).apply(
        graph, report, progress=lambda m: print(f"\r  {m:<60}", end="", file=sys.stderr, flush=True),
        model_check=check)
    print(file=sys.stderr)
    derive_s = time.monotonic() - t0
    direct_m = tensoropt.compile(graph)
    derived_m = tensoropt.compile(derived)
    rng = np.random.default_rng(0)
    inputs = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}
    a = direct_m.run(inputs)
    b = derived_m.run(inputs)
    diff = max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(a[k]))), 1e-30)) for k in a)
    runs, failed = interleaved_calls({"direct": lambda: direct_m.run(inputs), "derived": lambda: derived_m.run(inputs),
                                      "torch": torch_side(module, [inputs[v.name] for v in graph.inputs],
                                                         len(os.sched_getaffinity(0)))},
                                     warmup=3, repeat=repeat)
    if failed:
        raise RuntimeError(f"a side failed while timed: {failed}")
    timings = {k: {m: v for m, v in stats_ms(r).items() if m != "runs_ms"} | {"cached": False}
               for k, r in runs.items()}
    direct_ms, derived_ms = timings["direct"]["median_ms"], timings["derived"]["median_ms"]
    # nothing rewritten: both sides ran the same program, the speedup is 1 and
    # their measured ratio only the timing's noise floor
    rewritten = derived is not graph
    return {
        "model": name, "measured_at": time.strftime("%Y-%m-%d %H:%M"), "direct_ms": direct_ms,
        "derived_ms": derived_ms, "speedup": direct_ms / derived_ms if rewritten else 1.0,
        "timed_ratio": direct_ms / derived_ms, "torch_ms": timings["torch"]["median_ms"],
        "timings": timings, "max_rel_diff": diff, "derive_s": round(derive_s, 1),
        "fallbacks": {"direct": direct_m.manifest.get("fallbacks", []),  # kernels compiled to slower code
                      "derived": derived_m.manifest.get("fallbacks", [])},
        "nodes": [{"node": n, "original": d.start.program,
                   "derived": d.chosen.program if d.chosen is not d.start else "(kept)",
                   "speedup": d.speedup, "in_model": d.in_model, "cached_timings": d.cached} for n, d in report],
        # the pass's own whole-model check (TVM's timer), when a node-level win made it run one
        "model_check": check.as_json(),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tensoropt.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(rows))
    for k, (key, label) in enumerate((("direct_ms", "tensoropt direct"), ("derived_ms", "tensoropt + derive"),
                                      ("torch_ms", "PyTorch eager"))):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=label)
    ax.set_xticks(x, [r["model"] for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("ms per call (median, log)")
    ax.set_title("end to end, batch 1, this CPU")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--time", type=float, default=30.0, help="search seconds per node")
    ap.add_argument("--repeat", type=int, default=30, help="timed calls per side")
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="the derive cost cache to use (default: a private one, empty at the start)")
    ap.add_argument("-o", "--output", default=None, help="results JSON (default benchmarks/results/derive_e2e.json)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    if args.only and not (args.no_save or args.output):
        ap.error("--only runs some models: give -o PATH (or --no-save) so the full results are not overwritten")
    # the search ranks candidates by measured time: an older cache would rank by stale timings
    cache_dir = args.cache or tempfile.mkdtemp(prefix="tensoropt-derive-cache-")
    os.environ["TENSOROPT_CACHE_DIR"] = cache_dir
    from tensoropt.atomic import atomic_write_text
    from tensoropt.bench import TIMING, machine_info

    rows = []
    for name in MODELS:
        if args.only and not re.search(args.only, name):
            continue
        print(name, file=sys.stderr)
        r = run_model(name, args.depth, args.time, args.repeat)
        rows.append(r)
        print(f"  direct {r['direct_ms']:.4g} ms  derived {r['derived_ms']:.4g} ms  {r['speedup']:.2f}x  "
              f"torch {r['torch_ms']:.4g} ms  diff {r['max_rel_diff']:.1e}  derive {r['derive_s']} s", flush=True)
    out_json = Path(args.output) if args.output else RESULTS / "derive_e2e.json"
    gm = math.exp(sum(math.log(r["speedup"]) for r in rows) / len(rows)) if rows else float("nan")
    print(f"geometric mean speedup: {gm:.2f}x over {len(rows)} models")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        doc = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
               "timing": TIMING + f"; {args.repeat} timed calls per side",
               "cost_cache": ("given: " + args.cache) if args.cache else "private, empty at the start",
               "depth": args.depth, "search_seconds": args.time, "geomean_speedup": gm, "rows": rows}
        atomic_write_text(out_json, json.dumps(doc, indent=2, default=str) + "\n")
        plot(rows, out_json.with_suffix(".png"))
        print(f"wrote {out_json} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
