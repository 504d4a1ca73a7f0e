"""End to end: small PyTorch models of OLLIE's networks, compiled with and without ``derive``.

Each model of benchmarks/derive_models.py (ResNet-18's last stage, the DCGAN
and InfoGAN generators, FSRCNN) is exported through the torch frontend,
compiled by tensoropt as is ("direct") and after the ``derive`` pass
("derived"), both with the same rule-based schedules and no tuning, and timed
side by side (TVM's timer, medians); PyTorch eager is timed for context. The
derived model's outputs are compared with the direct one's. Writes
benchmarks/results/derive_e2e.{json,png}.

    python benchmarks/derive_e2e.py                 # all models (~10 min on 2 cores)
    python benchmarks/derive_e2e.py --only dcgan --depth 3 --time 10 --no-save
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from derive_models import MODELS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _median_ms(model: Any, inputs: dict[str, np.ndarray], repeat: int = 20) -> float:
    runs = model.time(inputs, number=max(1, int(0.01 / max(min(model.time(inputs, 1, 3)), 1e-6))), repeat=repeat)
    return float(np.median(runs) * 1e3)


def _torch_ms(module: Any, example: tuple[Any, ...], repeat: int = 30) -> float:
    import os

    import torch

    from tensoropt.bench import time_calls

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with torch.inference_mode():
        _, ts = time_calls(lambda: module(*example), warmup=3, repeat=repeat)
    return float(np.median(ts) * 1e3)


def run_model(name: str, depth: int, seconds: float) -> dict[str, Any]:
    import tensoropt
    from tensoropt.frontends.torch import from_module
    from tensoropt.passes.derive.derive import Derive

    module, example = MODELS[name]()
    graph = from_module(module, example)
    report: list[tuple[str, Any]] = []
    t0 = time.monotonic()
    derived = Derive(depth=depth, time=seconds).apply(
        graph, report, progress=lambda m: print(f"\r  {m:<60}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    derive_s = time.monotonic() - t0
    direct_m = tensoropt.compile(graph)
    derived_m = tensoropt.compile(derived)
    rng = np.random.default_rng(0)
    inputs = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}
    a = direct_m.run(inputs)
    b = derived_m.run(inputs)
    diff = max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(a[k]))), 1e-30)) for k in a)
    # interleave the two sides so drift hits both
    d1, r1 = _median_ms(direct_m, inputs), _median_ms(derived_m, inputs)
    d2, r2 = _median_ms(direct_m, inputs), _median_ms(derived_m, inputs)
    direct_ms, derived_ms = min(d1, d2), min(r1, r2)
    return {
        "model": name, "measured_at": time.strftime("%Y-%m-%d %H:%M"), "direct_ms": direct_ms, "derived_ms": derived_ms, "speedup": direct_ms / derived_ms,
        "torch_ms": _torch_ms(module, example), "max_rel_diff": diff, "derive_s": round(derive_s, 1),
        "fallbacks": {"direct": direct_m.manifest.get("fallbacks", []),  # kernels compiled to slower code
                      "derived": derived_m.manifest.get("fallbacks", [])},
        "nodes": [{"node": n, "original": d.start.program,
                   "derived": d.chosen.program if d.chosen is not d.start else "(kept)",
                   "speedup": d.speedup} for n, d in report],
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
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    from tensoropt.atomic import atomic_write_text
    from tensoropt.bench import machine_info

    rows = []
    for name in MODELS:
        if args.only and not re.search(args.only, name):
            continue
        print(name, file=sys.stderr)
        r = run_model(name, args.depth, args.time)
        rows.append(r)
        print(f"  direct {r['direct_ms']:.4g} ms  derived {r['derived_ms']:.4g} ms  {r['speedup']:.2f}x  "
              f"torch {r['torch_ms']:.4g} ms  diff {r['max_rel_diff']:.1e}  derive {r['derive_s']} s", flush=True)
    out_json = RESULTS / "derive_e2e.json"
    if args.only and out_json.exists() and not args.no_save:
        # a partial rerun replaces its rows and keeps the others (each row records when it ran)
        kept = [r for r in json.loads(out_json.read_text())["rows"] if r["model"] not in {x["model"] for x in rows}]
        rows = [r for r in kept + rows]
        rows.sort(key=lambda r: list(MODELS).index(r["model"]))
    gm = math.exp(sum(math.log(r["speedup"]) for r in rows) / len(rows)) if rows else float("nan")
    print(f"geometric mean speedup: {gm:.2f}x over {len(rows)} models")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        doc = {"machine": machine_info(), "depth": args.depth, "search_seconds": args.time,
               "geomean_speedup": gm, "rows": rows}
        atomic_write_text(RESULTS / "derive_e2e.json", json.dumps(doc, indent=2, default=str) + "\n")
        plot(rows, RESULTS / "derive_e2e.png")
        print(f"wrote {RESULTS / 'derive_e2e.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
