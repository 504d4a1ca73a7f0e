"""GEMM / conv speed of tensoropt's default CPU schedules against NumPy, same process.

Builds each kernel as a Relax module (BlockBuilder.emit_te -> FuseOps/FuseTIR ->
schedule_module -> tvm.compile), times it with the VM's time_evaluator (median
of >= 10 repeats after warm-up) and times NumPy's `a @ b` (OpenBLAS) the same
way. Writes benchmarks/results/gemm_speed.json and gemm_speed.png.

    python benchmarks/gemm_speed.py            # full run (~2-3 min on 2 cores)
    python benchmarks/gemm_speed.py --quick    # 1024^3 + two small shapes + two ragged ones
    python benchmarks/gemm_speed.py --only 'N=|@111' --no-save   # rows whose name matches a regex

Ragged rows (marked "ragged"): the contiguous output axis (N, or the fused
y*x of a conv) is not a multiple of the vector width (111x111, 55x55, 13x13,
7x7 outputs; N=1000, 77).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tvm
from tvm import relax, te

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tensoropt.codegen.schedule import host_target, last_fallbacks, last_report, schedule_module  # noqa: E402
from tensoropt.codegen.schedule_conv import conv2d_te  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _matmul_te(a: te.Tensor, b: te.Tensor) -> te.Tensor:
    k = te.reduce_axis((0, a.shape[-1]), "k")
    if len(a.shape) == 2:
        return te.compute((a.shape[0], b.shape[1]), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="matmul")
    return te.compute(
        (a.shape[0], a.shape[1], b.shape[2]),
        lambda n, i, j: te.sum(a[n, i, k] * b[n, k, j], axis=k),
        name="bmm",
    )


def _relax_module(fn, shapes: list[tuple[int, ...]]) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(s, "float32")) for i, s in enumerate(shapes)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(bb.emit_te(fn, *params))
        bb.emit_func_output(out)
    mod = bb.get()
    for p in (relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps(), relax.transform.FuseTIR()):
        mod = p(mod)
    return mod


def _time_vm(mod: tvm.IRModule, target, args: list[np.ndarray], repeat: int) -> float:
    ex = tvm.compile(mod, target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    targs = [tvm.runtime.tensor(a) for a in args]
    vm["main"](*targs)
    ev = vm.time_evaluator("main", tvm.cpu(), number=3, repeat=repeat, min_repeat_ms=50)
    return float(ev(*targs).median)


def _time_numpy(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if time.perf_counter() - t0 > 0.05:
                break
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def _cpu_model() -> str:
    from tensoropt.bench import cpu_model

    return cpu_model()


def _gemm_case(name, m, n, k, batch, target, repeat):
    rng = np.random.default_rng(0)
    if batch:
        shapes = [(batch, m, k), (batch, k, n)]
    else:
        shapes = [(m, k), (k, n)]
    args = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    mod = schedule_module(_relax_module(_matmul_te, shapes), target)
    rule = ",".join(last_report.values())
    fallbacks = [fb.to_json() for fb in last_fallbacks]  # a slow row with fallbacks did not get its rule
    t = _time_vm(mod, target, args, repeat)
    a, b = args
    t_np = _time_numpy(lambda: a @ b, repeat)
    flops = 2.0 * m * n * k * (batch or 1)
    return {"name": name, "kind": "gemm", "flops": flops, "ours_gflops": flops / t / 1e9,
            "numpy_gflops": flops / t_np / 1e9, "rule": rule, "fallbacks": fallbacks}


def _conv_case(name, n, c, h, w, f, kh, stride, pad, groups, target, repeat, forms):
    rng = np.random.default_rng(0)
    shapes = [(n, c, h, w), (f, c // groups, kh, kh)]
    args = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    oh = (h + 2 * pad - kh) // stride + 1
    flops = 2.0 * n * f * oh * oh * (c // groups) * kh * kh
    row = {"name": name, "kind": "conv2d", "flops": flops}
    for form in forms:
        def fn(x, wt, form=form):
            return conv2d_te(x, wt, (stride, stride), (pad, pad, pad, pad), (1, 1), groups, form=form)
        mod = schedule_module(_relax_module(fn, shapes), target)
        row[f"rule_{form}"] = ",".join(last_report.values())
        row[f"fallbacks_{form}"] = [fb.to_json() for fb in last_fallbacks]
        row[f"{form}_gflops"] = flops / _time_vm(mod, target, args, repeat) / 1e9
    forms_done = [fm for fm in forms if f"{fm}_gflops" in row]
    best = max(forms_done, key=lambda fm: row[f"{fm}_gflops"])
    row["best_form"] = best
    row["ours_gflops"] = row[f"{best}_gflops"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few shapes, fewer repeats")
    ap.add_argument("--repeat", type=int, default=None, help="timing repeats (median taken)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--only", default=None, help="regex: run only rows whose name matches (implies --no-save)")
    ap.add_argument("--no-save", action="store_true", help="print only; keep results/ as they are")
    args = ap.parse_args()
    keep = (lambda name: re.search(args.only, name) is not None) if args.only else (lambda name: True)
    save = not (args.no_save or args.only)
    repeat = args.repeat or (10 if args.quick else 15)
    target = host_target()
    rows = []

    gemms = [("1024x1024x1024", 1024, 1024, 1024, 0)]
    gemms += [("64x256x768", 64, 256, 768, 0), ("64x768x256", 64, 768, 256, 0)]
    if not args.quick:
        gemms += [("64x256x1024", 64, 256, 1024, 0), ("64x1024x256", 64, 1024, 256, 0),
                  ("256x1024x1024", 256, 1024, 1024, 0), ("bmm 4x64x64x64", 64, 64, 64, 4)]
    gemms += [("ragged 64x1000x256 N=1000", 64, 1000, 256, 0)]
    if not args.quick:
        gemms += [("ragged 50x77x33 N=77", 50, 77, 33, 0)]
    for name, m, n, k, b in gemms:
        if not keep(name):
            continue
        row = _gemm_case(name, m, n, k, b, target, repeat)
        rows.append(row)
        print(f"{name:>22}  ours {row['ours_gflops']:7.1f}  numpy {row['numpy_gflops']:7.1f}  "
              f"ratio {row['ours_gflops'] / row['numpy_gflops']:.2f}  [{row['rule']}]", flush=True)

    # Unscheduled baseline, once (it is slow: ~2 s per call).
    unsched = None
    if save:
        unsched = _unscheduled(target)
        print(f"{'unscheduled 1024^3':>22}  {unsched:7.1f} GFLOP/s", flush=True)

    convs = [("3x3 64->64 @56", 1, 64, 56, 56, 64, 3, 1, 1, 1),
             ("1x1 256->1024 @14", 1, 256, 14, 14, 1024, 1, 1, 0, 1),
             ("ragged 1x1 96->16 @55", 1, 96, 55, 55, 16, 1, 1, 0, 1)]
    if not args.quick:
        convs += [("7x7/2 3->64 @224", 1, 3, 224, 224, 64, 7, 2, 3, 1),
                  ("dw 3x3 32 @112", 1, 32, 112, 112, 32, 3, 1, 1, 32),
                  ("3x3 256->256 @14", 1, 256, 14, 14, 256, 3, 1, 1, 1),
                  ("ragged 3x3/2 3->64 @111", 1, 3, 224, 224, 64, 3, 2, 0, 1),
                  ("ragged 3x3 64->256 @13", 1, 64, 13, 13, 256, 3, 1, 1, 1),
                  ("ragged 3x3 512->512 @7", 1, 512, 7, 7, 512, 3, 1, 1, 1)]
    for name, n, c, h, w, f, kh, s, p, g in convs:
        if not keep(name):
            continue
        forms = ("direct",) if g > 1 else ("direct", "im2col")
        row = _conv_case(name, n, c, h, w, f, kh, s, p, g, target, repeat, forms)
        rows.append(row)
        detail = "  ".join(f"{fm} {row[f'{fm}_gflops']:7.1f}" for fm in forms)
        print(f"{name:>22}  {detail}  best {row['best_form']}  [{row['rule_' + row['best_form']]}]", flush=True)

    for row in rows:
        if "numpy_gflops" in row:
            row["ratio"] = row["ours_gflops"] / row["numpy_gflops"]
    if not save:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"cpu": _cpu_model(), "cores": len(os.sched_getaffinity(0)), "target": str(target),
                    "numpy": np.__version__, "tvm": tvm.__version__},
        "unscheduled_1024_gflops": unsched,
        "rows": rows,
    }
    (RESULTS / "gemm_speed.json").write_text(json.dumps(report, indent=2))
    if not args.no_plot:
        _plot(rows, report["machine"])
    print(f"wrote {RESULTS / 'gemm_speed.json'}")


def _unscheduled(target) -> float:
    """GFLOP/s of the unscheduled 1024^3 matmul (one call: it is slow)."""
    shapes = [(1024, 1024), (1024, 1024)]
    base_args = [np.ones(s, np.float32) for s in shapes]
    ex = tvm.compile(_relax_module(_matmul_te, shapes), target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    t0 = time.perf_counter()
    vm["main"](*[tvm.runtime.tensor(a) for a in base_args])
    return 2.0 * 1024**3 / (time.perf_counter() - t0) / 1e9


def _plot(rows: list[dict], machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(rows)), 4.5))
    xs = np.arange(len(rows))
    ours = [r["ours_gflops"] for r in rows]
    ax.bar(xs - 0.2, ours, 0.4, label="tensoropt")
    def other(r: dict) -> float:
        if "numpy_gflops" in r:
            return r["numpy_gflops"]
        forms = [k for k in ("direct_gflops", "im2col_gflops") if k in r and k != f"{r['best_form']}_gflops"]
        return r[forms[0]] if forms else 0.0

    ax.bar(xs + 0.2, [other(r) for r in rows], 0.4, label="NumPy (GEMM) / the other conv form")
    ax.set_xticks(xs, [r["name"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"float32, {machine['cores']} cores, {machine['cpu']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "gemm_speed.png", dpi=120)


if __name__ == "__main__":
    main()
