"""How long importing an ONNX model takes, against onnxruntime building a session.

For each light model in the onnx wheel (ResNet-50, VGG-19, ...): the time of
``tensoropt.frontends.onnx.load_onnx`` (parse, check, version conversion,
strict shape inference, conversion with constant folding) and of
``onnxruntime.InferenceSession`` on the same file (parse, graph optimization,
kernel creation), interleaved, ``--repeat`` samples each; medians and the
ratio. The models' weights come from ConstantOfShape, so both sides also
materialize them. Writes ``benchmarks/results/onnx_import_speed.{json,png}``.

    python benchmarks/onnx_import_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import onnx

OUT = Path(__file__).resolve().parent / "results"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import onnxruntime as ort

    from tensoropt.frontends.onnx import load_onnx

    so = ort.SessionOptions()
    so.log_severity_level = 3
    rows = []
    for path in sorted(LIGHT.glob("*.onnx")):
        name = path.stem.removeprefix("light_")
        g = load_onnx(path)  # warm-up (and first-use imports)
        ours, peer = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            load_onnx(path)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            peer.append(time.perf_counter() - t0)
        row = {"model": name, "nodes_onnx": len(onnx.load(str(path)).graph.node), "nodes_ir": len(g.nodes),
               "tensoropt_s": ours, "onnxruntime_s": peer,
               "tensoropt_median_s": statistics.median(ours), "onnxruntime_median_s": statistics.median(peer)}
        row["ratio"] = row["tensoropt_median_s"] / row["onnxruntime_median_s"]
        rows.append(row)
        print(f"{name:>14}: import {row['tensoropt_median_s'] * 1e3:8.1f} ms   onnxruntime session "
              f"{row['onnxruntime_median_s'] * 1e3:8.1f} ms   ratio {row['ratio']:.2f}   "
              f"{row['nodes_onnx']} ONNX nodes -> {row['nodes_ir']} IR nodes")
    OUT.mkdir(exist_ok=True)
    from tensoropt.bench import machine_info

    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine_info(),
              "timing": "wall clock (time.perf_counter) of each import (tensoropt's load_onnx) and each "
                        f"onnxruntime.InferenceSession, alternating, {args.repeat} samples each; medians",
              "cache": "none (each import parses the file afresh; the OS file cache is warm after the first)",
              "onnx": onnx.__version__, "onnxruntime": ort.__version__, "repeat": args.repeat, "rows": rows}
    tmp = OUT / "onnx_import_speed.json.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(OUT / "onnx_import_speed.json")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no PNG")
        return
    fig, ax = plt.subplots(figsize=(8, 3.5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["tensoropt_median_s"] * 1e3 for r in rows], 0.4, label="tensoropt import")
    ax.bar([x + 0.2 for x in xs], [r["onnxruntime_median_s"] * 1e3 for r in rows], 0.4, label="onnxruntime session")
    ax.set_xticks(list(xs), [r["model"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("median ms")
    ax.set_title(f"ONNX import time, light models ({report['machine']['cpu_id']}, {report['machine']['cores']} cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "onnx_import_speed.png", dpi=120)


if __name__ == "__main__":
    main()
