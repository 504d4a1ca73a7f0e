"""GEMM / conv speed of tensoropt's default CPU schedules against NumPy and PyTorch, same process.

Builds each kernel as a Relax module (BlockBuilder.emit_te -> FuseOps/FuseTIR ->
schedule_module -> tvm.compile). Every side is timed the same way
(:data:`TIMING`): wall clock around one full call on inputs already in the
side's own tensors, each call allocating its output (tensoropt: the Relax
VM's ``main`` on TVM tensors; NumPy: ``a @ b``; PyTorch: ``torch.matmul`` /
``F.conv2d``), sides interleaved in blocks over rounds with
:func:`tensoropt.bench.interleaved_calls`; GFLOP/s from each side's median,
quartiles kept. Every side checks its answer against NumPy's float64 result
first. No cost cache is involved: every kernel is built and timed in the run.
Writes benchmarks/results/gemm_speed.json and gemm_speed.png.

    python benchmarks/gemm_speed.py            # full run (~5 min on 2 cores)
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
import sys
import time
from pathlib import Path

import numpy as np
import tvm
from tvm import relax, te

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tensoropt.codegen.schedule import host_target, last_fallbacks, last_report, schedule_module  # noqa: E402
from tensoropt.bench import ROUNDS, SETTLE_S, interleaved_calls, machine_info, stats_ms, tvm_threads  # noqa: E402
from tensoropt.codegen.schedule_conv import choose_conv_form, conv2d_te  # noqa: E402

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


#: how every side is timed (written at the top of the results JSON)
TIMING = ("wall clock (time.perf_counter) around each full call on inputs already in the side's own tensors "
          "(tensoropt: the Relax VM's main on TVM tensors; NumPy: a @ b; PyTorch: torch.matmul / F.conv2d under "
          "inference_mode), each call allocating its output; tensoropt's kernel also timed back to back by TVM's "
          "time_evaluator (ours_native_gflops, median of 10 repeats, not interleaved); after warm-up, sides interleaved in blocks of calls "
          f"over {ROUNDS} rounds (order rotating, a {SETTLE_S:g} s pause and one untimed call before each block) "
          "by tensoropt.bench.interleaved_calls; GFLOP/s from each side's median")
#: relative error (max |x - ref| / max |ref|, float32 against float64) above which a side is wrong
TOL = 1e-4


def _vm_side(mod: tvm.IRModule, target, args: list[np.ndarray]):
    """tensoropt's built kernel as a zero-argument call on resident TVM tensors, a NumPy-returning call
    for checking, and a back-to-back timing of it by TVM's own timer (seconds, median)."""
    ex = tvm.compile(mod, target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    targs = [tvm.runtime.tensor(a) for a in args]
    fn = vm["main"]

    def native() -> float:
        return float(vm.time_evaluator("main", tvm.cpu(), number=3, repeat=10, min_repeat_ms=50)(*targs).median)

    return (lambda: fn(*targs)), (lambda: fn(*targs).numpy()), native


def _torch_tensors(args: list[np.ndarray]):
    import torch

    return [torch.from_numpy(a.copy()) for a in args]


def _check(name: str, side: str, got: np.ndarray, ref: np.ndarray) -> float:
    err = float(np.max(np.abs(got.astype(np.float64) - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    if not err <= TOL:
        raise SystemExit(f"gemm_speed: {name}: {side} is wrong (relative error {err:.2e} > {TOL:g})")
    return err


def _time_sides(sides: dict, repeat: int, flops: float) -> dict[str, dict]:
    """Interleaved wall-clock timing of every side; GFLOP/s at the median, and the per-side stats."""
    runs, failed = interleaved_calls(sides, warmup=3, repeat=repeat, max_seconds=3.0, min_repeat=10)
    if failed:
        raise SystemExit(f"gemm_speed: a side failed: {failed}")
    out = {}
    for name, r in runs.items():
        st = stats_ms(r)
        st.pop("runs_ms")
        out[name] = {"gflops": flops / (st["median_ms"] * 1e-3) / 1e9, **{k: round(v, 5) for k, v in st.items()},
                     "calls": len(r)}
    return out


def _gemm_case(name, m, n, k, batch, target, repeat):
    import torch

    rng = np.random.default_rng(0)
    if batch:
        shapes = [(batch, m, k), (batch, k, n)]
    else:
        shapes = [(m, k), (k, n)]
    args = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    mod = schedule_module(_relax_module(_matmul_te, shapes), target)
    rule = ",".join(last_report.values())
    fallbacks = [fb.to_json() for fb in last_fallbacks]  # a slow row with fallbacks did not get its rule
    a, b = args
    ta, tb = _torch_tensors(args)
    ours, ours_np, native = _vm_side(mod, target, args)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    errs = {"tensoropt": _check(name, "tensoropt", ours_np(), ref), "numpy": _check(name, "numpy", a @ b, ref)}
    with torch.inference_mode():
        errs["torch"] = _check(name, "torch", torch.matmul(ta, tb).numpy(), ref)

    def torch_call():
        with torch.inference_mode():
            return torch.matmul(ta, tb)

    flops = 2.0 * m * n * k * (batch or 1)
    sides = _time_sides({"tensoropt": ours, "numpy": lambda: a @ b, "torch": torch_call}, repeat, flops)
    return {"name": name, "kind": "gemm", "flops": flops, "sides": sides, "max_rel_err": errs,
            # the same build timed back to back by TVM's timer (not interleaved): the bimodality check
            "ours_native_gflops": flops / native() / 1e9,
            "ours_gflops": sides["tensoropt"]["gflops"], "numpy_gflops": sides["numpy"]["gflops"],
            "torch_gflops": sides["torch"]["gflops"], "rule": rule, "fallbacks": fallbacks}


def _conv_ref(x: np.ndarray, wt: np.ndarray, stride: int, pad: int, groups: int):
    """PyTorch's float64 convolution, the reference every side is checked against."""
    import torch
    import torch.nn.functional as F

    return F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(wt).double(), stride=stride, padding=pad,
                    groups=groups).numpy()


def _conv_case(name, n, c, h, w, f, kh, stride, pad, groups, target, repeat, forms):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    shapes = [(n, c, h, w), (f, c // groups, kh, kh)]
    args = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    oh = (h + 2 * pad - kh) // stride + 1
    flops = 2.0 * n * f * oh * oh * (c // groups) * kh * kh
    row = {"name": name, "kind": "conv2d", "flops": flops}
    ref = _conv_ref(*args, stride, pad, groups)
    tx, tw = _torch_tensors(args)
    sides, errs, natives = {}, {}, {}
    for form in forms:
        def fn(x, wt, form=form):
            return conv2d_te(x, wt, (stride, stride), (pad, pad, pad, pad), (1, 1), groups, form=form)
        mod = schedule_module(_relax_module(fn, shapes), target)
        row[f"rule_{form}"] = ",".join(last_report.values())
        row[f"fallbacks_{form}"] = [fb.to_json() for fb in last_fallbacks]
        call, call_np, native = _vm_side(mod, target, args)
        errs[form] = _check(name, form, call_np(), ref)
        sides[form] = call
        natives[form] = native

    def torch_call():
        with torch.inference_mode():
            return F.conv2d(tx, tw, stride=stride, padding=pad, groups=groups)

    errs["torch"] = _check(name, "torch", torch_call().numpy(), ref)
    sides["torch"] = torch_call
    timed = _time_sides(sides, repeat, flops)
    for form in forms:
        row[f"{form}_gflops"] = timed[form]["gflops"]
    row["torch_gflops"] = timed["torch"]["gflops"]
    row["sides"] = timed
    row["max_rel_err"] = errs
    row["best_form"] = max(forms, key=lambda fm: row[f"{fm}_gflops"])
    # what a user gets: the form conv2d_te(form="auto") picks for this shape
    auto = choose_conv_form(c, oh, oh, kh, kh, (stride, stride), groups)
    row["auto_form"] = auto
    row["ours_gflops"] = row[f"{auto}_gflops"]
    row["ours_native_gflops"] = flops / natives[auto]() / 1e9  # back to back, TVM's timer
    row["ratio"] = row["ours_gflops"] / row["torch_gflops"]
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
    repeat = args.repeat or (30 if args.quick else 60)
    target = host_target()
    threads = tvm_threads(len(os.sched_getaffinity(0)))
    import torch

    torch.set_num_threads(threads)
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
        print(f"{name:>26}  tensoropt {row['ours_gflops']:6.1f}  numpy {row['numpy_gflops']:6.1f}  "
              f"torch {row['torch_gflops']:6.1f} GFLOP/s  [{row['rule']}]", flush=True)

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
        forms = (choose_conv_form(c, 1, 1, kh, kh, (s, s), g),) if g > 1 else ("direct", "im2col")
        row = _conv_case(name, n, c, h, w, f, kh, s, p, g, target, repeat, forms)
        rows.append(row)
        detail = "  ".join(f"{fm} {row[f'{fm}_gflops']:6.1f}" for fm in forms)
        print(f"{name:>26}  {detail}  torch {row['torch_gflops']:6.1f} GFLOP/s  auto {row['auto_form']}  "
              f"[{row['rule_' + row['auto_form']]}]", flush=True)

    for row in rows:
        if row["kind"] == "gemm":
            row["ratio"] = row["ours_gflops"] / max(row["numpy_gflops"], row["torch_gflops"])
    if not save:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {**machine_info(), "target": str(target)},
        "timing": TIMING + f"; {repeat} timed calls per side (fewer, at least 5, when a side is slow)",
        "threads": {"tensoropt": f"TVM_NUM_THREADS={threads}", "torch": f"torch.set_num_threads({threads})",
                    "numpy": "OpenBLAS's default (one thread per core)"},
        "ratio": "tensoropt GFLOP/s / the best peer's (GEMM: NumPy or PyTorch; conv: PyTorch); above 1: "
                 "tensoropt is faster",
        "cache": "none: every kernel built and timed in this run",
        "tolerance": TOL,
        "unscheduled_1024_gflops": unsched,
        "rows": rows,
    }
    tmp = RESULTS / "gemm_speed.json.tmp"  # never a half-written results file
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(RESULTS / "gemm_speed.json")
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
    series = [("tensoropt (conv: the form it picks)", lambda r: r["ours_gflops"]),
              ("NumPy (GEMM) / the other conv form", lambda r: r.get("numpy_gflops") or _other_form(r)),
              ("PyTorch", lambda r: r["torch_gflops"])]
    for i, (label, get) in enumerate(series):
        ax.bar(xs + (i - 1) * 0.27, [get(r) or 0.0 for r in rows], 0.27, label=label)
    ax.set_xticks(xs, [r["name"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("GFLOP/s (median of interleaved wall-clock calls)")
    ax.set_title(f"float32, {machine['cores']} cores, {machine['cpu_id']} ({machine['isa']['llvm_cpu']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "gemm_speed.png", dpi=120)


def _other_form(r: dict) -> float | None:
    """The conv form tensoropt did not pick (None for single-form rows)."""
    other = {"direct": "im2col", "im2col": "direct"}.get(r.get("auto_form", ""))
    return r.get(f"{other}_gflops") if other else None


if __name__ == "__main__":
    main()
