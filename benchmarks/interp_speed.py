"""Reference-interpreter speed against PyTorch eager (CPU), side by side.

Cases:
- ``conv3x3-expr``: the 3x3 same-padded conv over 1x64x56x56 (64 filters)
  written as an Expr and run by ``evaluate_expr`` (f32 and f64), vs
  ``torch.nn.functional.conv2d``.
- ``conv3x3-op``: the same conv through the ``conv2d`` op's NumPy rule.
- ``vgg19``: VGG-19 (random He weights) on 1x3x224x224 through ``run_graph``,
  vs the same weights through PyTorch.

Each case runs ``--repeat`` times after one warm-up, the two sides
interleaved; the JSON has every
sample, the medians, the ratio interpreter/torch, and the largest relative
difference of the outputs. Writes ``benchmarks/results/interp_speed.{json,png}``.

    python benchmarks/interp_speed.py [--repeat 5] [--skip-vgg]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

OUT = Path(__file__).resolve().parent / "results"


def sample(fn: Callable[[], object]) -> float:
    # NumPy's OpenBLAS threads busy-wait for a while after a call and steal the
    # two cores from PyTorch's pool (and vice versa): let them park first.
    time.sleep(0.2)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a64 - b64)) / max(np.max(np.abs(b64)), 1e-30))


def case(name: str, ours: Callable[[], object], peer: Callable[[], object], repeat: int) -> dict:
    y_ours, y_peer = ours(), peer()  # warm-up, and the values we compare
    s_ours, s_peer = [], []
    for _ in range(repeat):  # interleaved, so drift hits both sides alike
        s_ours.append(sample(ours))
        s_peer.append(sample(peer))
    med_o, med_p = statistics.median(s_ours), statistics.median(s_peer)
    row = {"case": name, "tensoropt_s": s_ours, "torch_s": s_peer, "tensoropt_median_s": med_o,
           "torch_median_s": med_p, "ratio": med_o / med_p, "max_rel_diff": rel_diff(y_ours, y_peer)}
    print(f"{name:>18}: tensoropt {med_o * 1e3:9.1f} ms   torch {med_p * 1e3:9.1f} ms   "
          f"ratio {row['ratio']:.2f}   rel diff {row['max_rel_diff']:.2e}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-vgg", action="store_true")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from tensoropt.interp import evaluate_expr, run_graph
    from tensoropt.ir.parser import parse_expr
    from tensoropt.ops import REGISTRY
    from tensoropt.zoo import torch_forward, vgg

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 56, 56)).astype(np.float32)
    k = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    conv = parse_expr("L[n:1, f:64, h:56, w:56] Sum[c:64, r:3, s:3] "
                      "{ %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }")
    tx, tk = torch.from_numpy(x), torch.from_numpy(k)
    torch_conv = lambda: F.conv2d(tx, tk, padding=1).numpy()  # noqa: E731
    rules = REGISTRY["conv2d"]
    attrs = rules.with_defaults({"pads": (1, 1, 1, 1)})
    rows = [
        case("conv3x3-expr-f32", lambda: evaluate_expr(conv, {"X": x, "K": k}, dtype=np.float32), torch_conv,
             args.repeat),
        case("conv3x3-expr-f64", lambda: evaluate_expr(conv, {"X": x, "K": k}, dtype=np.float64), torch_conv,
             args.repeat),
        case("conv3x3-op-f32", lambda: rules.eval([x, k], attrs)[0], torch_conv, args.repeat),
    ]
    if not args.skip_vgg:
        g = vgg(19)
        img = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        rows.append(case("vgg19", lambda: run_graph(g, {"x": img})[g.outputs[0]],
                         lambda: torch_forward(g, img), max(2, args.repeat // 2)))

    OUT.mkdir(parents=True, exist_ok=True)
    from tensoropt.bench import machine_info

    meta = {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "numpy": np.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    doc = {"meta": meta, "date": meta["date"], "machine": machine_info(),
           "timing": f"wall clock (time.perf_counter) around each full call, NumPy arrays in and out on both sides; "
                     f"one warm-up call per side, then --repeat ({args.repeat}) calls, the two sides alternating "
                     "call by call; medians",
           "cache": "none", "cases": rows}
    tmp = OUT / "interp_speed.json.tmp"  # never a half-written results file
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(OUT / "interp_speed.json")
    plot(rows, OUT / "interp_speed.png")
    print(f"wrote {OUT / 'interp_speed.json'} and {OUT / 'interp_speed.png'}")


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no PNG")
        return
    names = [r["case"] for r in rows]
    ours = [r["tensoropt_median_s"] * 1e3 for r in rows]
    peer = [r["torch_median_s"] * 1e3 for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(rows) + 1.5))
    ax.barh(y - 0.2, ours, 0.4, label="tensoropt reference interpreter (NumPy)")
    ax.barh(y + 0.2, peer, 0.4, label="PyTorch eager (CPU)")
    ax.set_yticks(y, names)
    ax.set_xscale("log")
    ax.set_xlabel("median time, ms (log scale)")
    for i, r in enumerate(rows):
        ax.text(max(ours[i], peer[i]) * 1.1, i, f"x{r['ratio']:.2f}", va="center")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Reference interpreter vs PyTorch, median of runs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
