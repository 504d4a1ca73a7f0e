"""ConvTranspose speed: every tensoropt form against PyTorch eager, per layer and per model.

The layers are the ConvTranspose2d layers of the DCGAN, InfoGAN and FSRCNN
models in ``benchmarks/derive_models.py``, with the exact input shapes those
models feed them (captured by forward hooks), each compiled alone
(``tensoropt.compile(layer, example_inputs=...)``). Sides per layer:

- ``pytorch``: eager, ``torch.set_num_threads(threads)``, ``inference_mode``;
- ``tensoropt``: the default path (the form :func:`choose_form` picks);
- ``<form>``: each form of :mod:`tensoropt.codegen.conv_transpose` forced
  (``use_form``), where it applies;
- ``generic``: the op's Expr through the generic lowering (the path before
  the specialised forms; ``te_fast.FAST`` without its conv_transpose2d entry).

Whole models (dcgan, infogan, fsrcnn): ``pytorch``, ``tensoropt`` and
``generic`` (every ConvTranspose through the Expr path).

Timing is ``tensoropt.bench``'s for every side: ``time_calls`` (wall clock
around a full call, NumPy in, NumPy out). The sides are interleaved: each of
``--rounds`` rounds times every side ``repeat`` times (``repeat`` sized so a
round takes ~50 ms per side, at least 1) after two warm-up calls and a pause
(``SETTLE_S``: the other side's spinning threads go to sleep first), so load
from other jobs hits all sides alike; the statistics pool all runs
(>= ``--rounds`` per side).
Every side's output is checked against PyTorch.

Wall clock on a shared 2-core machine swings with the other jobs (PyTorch's
OpenMP threads more than most), so the layers are also measured as
single-thread CPU time (``--cpu1``, on by default: a subprocess with
``TVM_NUM_THREADS=1`` and ``torch.set_num_threads(1)`` times
``time.process_time()`` over batches of calls, min and median of 5 batches):
the work each form does, which the other jobs barely change.
``choose_form``'s rule comes from these numbers.

    python benchmarks/conv_transpose_speed.py                 # all (a few minutes)
    python benchmarks/conv_transpose_speed.py --only dcgan    # layers/models whose name matches
    python benchmarks/conv_transpose_speed.py --no-generic --no-cpu1 --no-save

Writes benchmarks/results/conv_transpose_speed.json and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results"
MODEL_NAMES = ("dcgan", "infogan", "fsrcnn")
#: a side whose output differs from PyTorch's by more than this (relative) is flagged
TOLERANCE = 1e-4
#: pause before each side's share of a round. TVM's thread pool and PyTorch's
#: OpenMP threads both spin after a call; timed right after a tensoropt side,
#: PyTorch (2 threads, same process) measured 32 ms median for DCGAN's 512->256
#: layer against 1.6 ms with a 50 ms pause and 1.0 ms alone.
SETTLE_S = 0.1

Call = Callable[[], list[np.ndarray]]


@contextlib.contextmanager
def generic_conv_transpose() -> Iterator[None]:
    """Compile conv_transpose2d through its Expr (the generic lowering) inside the block."""
    from tensoropt.codegen import te_fast

    entry = te_fast.FAST.pop("conv_transpose2d", None)
    try:
        yield
    finally:
        if entry is not None:
            te_fast.FAST["conv_transpose2d"] = entry


def torch_call(module: Any, x: np.ndarray) -> Call:
    """PyTorch eager as ``bench`` runs it: NumPy in (from_numpy), inference_mode, NumPy out."""
    import torch

    def call() -> list[np.ndarray]:
        with torch.inference_mode():
            return [module(torch.from_numpy(x)).numpy()]

    return call


def tensoropt_call(module: Any, x: np.ndarray, form: str | None) -> tuple[Call, dict[str, str], float]:
    """Compile ``module`` (form: None = default path, "generic", or a forced form)."""
    import torch

    import tensoropt
    from tensoropt.codegen.conv_transpose import use_form

    ctx = (generic_conv_transpose() if form == "generic" else use_form(form) if form else contextlib.nullcontext())
    t0 = time.perf_counter()
    with ctx, warnings.catch_warnings():
        # a forced form may leave the GEMM rule nothing to tile (kept in the report as "fallbacks")
        warnings.simplefilter("ignore")
        cm = tensoropt.compile(module, example_inputs=(torch.from_numpy(x),))
    secs = time.perf_counter() - t0
    kernels = dict(cm.manifest["kernels"])
    for f in cm.manifest.get("fallbacks", []):
        kernels[f"fallback {f.get('kernel')}"] = str(f.get("reason"))
    return (lambda: [np.asarray(cm(x))]), kernels, secs


def layers(only: str | None) -> list[dict[str, Any]]:
    """Every ConvTranspose2d of the three models with the input its model feeds it."""
    import torch
    from derive_models import MODELS

    out = []
    for mname in MODEL_NAMES:
        module, inputs = MODELS[mname]()
        seen: list[tuple[Any, np.ndarray]] = []
        hooks = [m.register_forward_hook(lambda mod, args, res: seen.append((mod, args[0].detach().numpy().copy())))
                 for m in module.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
        with torch.no_grad():
            module(*inputs)
        for h in hooks:
            h.remove()
        for k, (m, x) in enumerate(seen, 1):
            name = (f"{mname}{k} {m.in_channels}->{m.out_channels} k{m.kernel_size[0]} s{m.stride[0]} "
                    f"p{m.padding[0]}{f' op{m.output_padding[0]}' if m.output_padding[0] else ''} "
                    f"@{x.shape[2]}x{x.shape[3]}")
            if only and not re.search(only, name):
                continue
            out.append({"name": name, "module": m, "x": x})
    return out


def geometry_of(m: Any, x: np.ndarray) -> Any:
    from tensoropt.codegen.conv_transpose import geometry

    pads = [m.padding[0], m.padding[1], m.padding[0] - m.output_padding[0], m.padding[1] - m.output_padding[1]]
    return geometry(m.in_channels, m.out_channels // m.groups, m.kernel_size[0], m.kernel_size[1], x.shape[2],
                    x.shape[3], m.stride, pads, m.dilation, m.groups)


#: ``timer(warmup, repeat)`` -> seconds per timed call (``bench.time_calls`` in this process or the worker's)
Timer = Callable[[int, int], list[float]]


def local_timer(fn: Call) -> Timer:
    from tensoropt.bench import time_calls

    return lambda warmup, repeat: time_calls(fn, warmup=warmup, repeat=repeat)[1]


class TorchWorker:
    """PyTorch eager in a process of its own, timed there with ``bench.time_calls``.

    In one process, TVM's thread pool and PyTorch's OpenMP threads (both
    spinning or sleeping between calls) slow each other down: PyTorch on
    DCGAN's 512->256 layer measured 32 ms median right after tensoropt calls
    against 1.0 ms alone. A user runs one or the other, so each gets its own
    process; the rounds still interleave them. Requests are ``KEY WARMUP
    REPEAT`` lines (KEY: ``layer:<n>`` or ``model:<name>``); answers are JSON
    lists of seconds.
    """

    def __init__(self, threads: int) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__, "--torch-worker", "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def timer(self, key: str) -> Timer:
        def run(warmup: int, repeat: int) -> list[float]:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(f"{key} {warmup} {repeat}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the PyTorch worker died")
            return list(json.loads(line))

        return run

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def torch_worker(threads: int) -> None:
    """The worker's loop (see :class:`TorchWorker`)."""
    import torch
    from derive_models import MODELS

    from tensoropt.bench import time_calls

    torch.set_num_threads(threads)
    calls: dict[str, Call] = {}
    for k, layer in enumerate(layers(None)):
        calls[f"layer:{k}"] = torch_call(layer["module"], layer["x"])
    for name in MODEL_NAMES:
        module, inputs = MODELS[name]()
        calls[f"model:{name}"] = torch_call(module, inputs[0].numpy())
    for line in sys.stdin:
        key, warmup, repeat = line.split()
        _, runs = time_calls(calls[key], warmup=int(warmup), repeat=int(repeat))
        print(json.dumps(runs), flush=True)


def interleaved(timers: dict[str, Timer], rounds: int, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Seconds per call for each side: ``rounds`` rounds, every side timed in each."""
    reps = {}
    for name, timer in timers.items():  # warm up and size each side's share of a round
        first = timer(2, 1)
        reps[name] = max(1, min(20, int(0.05 / max(first[0], 1e-6))))
    runs: dict[str, list[float]] = {n: [] for n in timers}
    for r in range(rounds):
        for name, timer in timers.items():
            time.sleep(SETTLE_S)
            runs[name] += timer(2, reps[name])
        log(f"    round {r + 1}/{rounds}")
    return runs


def measure(name: str, torch_fn: Call, torch_timers: dict[str, Timer],
            ours: dict[str, tuple[Call, dict[str, str], float]], rounds: int,
            log: Callable[[str], None]) -> dict[str, Any]:
    """Check every side against PyTorch (one untimed call here), then time them interleaved."""
    from tensoropt.bench import max_rel_diff, stats_ms

    ref = torch_fn()
    timers: dict[str, Timer] = dict(torch_timers)
    rows: dict[str, dict[str, Any]] = {side: {"process": "its own (see TorchWorker)"} for side in torch_timers}
    for side, (fn, kernels, secs) in ours.items():
        err = max_rel_diff(ref, fn())
        rows[side] = {"kernels": kernels, "compile_s": round(secs, 2), "max_rel_diff": err,
                      "agree": err <= TOLERANCE}
        timers[side] = local_timer(fn)
    runs = interleaved(timers, rounds, log)
    torch_med = None
    for side, rs in runs.items():
        rows[side].update(stats_ms(rs))
        if side == "pytorch":
            torch_med = rows[side]["median_ms"]
    best = min(rows[side]["median_ms"] for side in torch_timers)
    for side, row in rows.items():
        row["ratio_vs_pytorch"] = row["median_ms"] / torch_med if torch_med else None
        row["ratio_vs_best_pytorch"] = row["median_ms"] / best
    return {"name": name, "sides": rows}


def bench_layer(layer: dict[str, Any], torch_timers: dict[str, Timer], rounds: int, generic: bool,
                log: Callable[[str], None]) -> dict[str, Any]:
    from tensoropt.codegen.conv_transpose import FORMS, applicable, choose_form

    m, x = layer["module"], layer["x"]
    geo = geometry_of(m, x)
    ours: dict[str, tuple[Call, dict[str, str], float]] = {"tensoropt": tensoropt_call(m, x, None)}
    for form in FORMS:
        if applicable(geo, form):
            ours[form] = tensoropt_call(m, x, form)
    if generic:
        ours["generic"] = tensoropt_call(m, x, "generic")
    out = measure(layer["name"], torch_call(m, x), torch_timers, ours, rounds, log)
    out["chosen_form"] = choose_form(geo)
    out["gflop"] = 2 * geo.macs * x.shape[0] / 1e9
    out["not_applicable"] = [f for f in FORMS if not applicable(geo, f)]
    return out


def bench_model(name: str, torch_timers: dict[str, Timer], rounds: int, generic: bool,
                log: Callable[[str], None]) -> dict[str, Any]:
    from derive_models import MODELS

    module, inputs = MODELS[name]()
    x = inputs[0].numpy()
    ours = {"tensoropt": tensoropt_call(module, x, None)}
    if generic:
        ours["generic"] = tensoropt_call(module, x, "generic")
    return measure(name, torch_call(module, x), torch_timers, ours, rounds, log)


def cpu_time_calls(fn: Call, batches: int = 5, budget_s: float = 0.2) -> list[float]:
    """Seconds of process CPU time per call, one number per batch of calls (after one warm-up)."""
    fn()
    t0 = time.perf_counter()
    fn()
    reps = max(3, int(budget_s / max(time.perf_counter() - t0, 1e-6)))
    out = []
    for _ in range(batches):
        c0 = time.process_time()
        for _ in range(reps):
            fn()
        out.append((time.process_time() - c0) / reps)
    return out


def cpu1_worker(only: str | None) -> list[dict[str, Any]]:
    """Single-thread CPU time of every side of every layer (run with TVM_NUM_THREADS=1)."""
    import torch

    from tensoropt.codegen.conv_transpose import FORMS, applicable

    torch.set_num_threads(1)
    rows = []
    for layer in layers(only):
        m, x = layer["module"], layer["x"]
        geo = geometry_of(m, x)
        sides: dict[str, Call] = {"pytorch": torch_call(m, x), "tensoropt": tensoropt_call(m, x, None)[0]}
        for form in FORMS:
            if applicable(geo, form):
                sides[form] = tensoropt_call(m, x, form)[0]
        row: dict[str, Any] = {"name": layer["name"], "sides": {}}
        for side, fn in sides.items():
            ms = [t * 1e3 for t in cpu_time_calls(fn)]
            row["sides"][side] = {"min_ms": min(ms), "median_ms": sorted(ms)[len(ms) // 2], "batches_ms": ms}
        rows.append(row)
        print(f"cpu1 {row['name']}: " + " | ".join(f"{k} {v['min_ms']:.3f}" for k, v in row["sides"].items()),
              file=sys.stderr, flush=True)
    return rows


def run_cpu1(only: str | None) -> list[dict[str, Any]]:
    import subprocess

    env = dict(os.environ, TVM_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--cpu1-worker"] + (["--only", only] if only else [])
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout)


#: bar order and colour, the same in both panels
SIDE_ORDER = ("pytorch", "pytorch-1t", "tensoropt", "subpixel", "zero_insert", "col2im", "col2im_t", "subpixel_wcopy", "generic")


def _bars(ax: Any, entries: list[dict[str, Any]]) -> None:
    """Grouped bars per entry, one per side (median, min..max whiskers), tensoropt / PyTorch on top."""
    present = {side for e in entries for side in e["sides"]}
    sides = [side for side in SIDE_ORDER if side in present]
    colors = {side: f"C{k}" for k, side in enumerate(SIDE_ORDER)}
    width = 0.8 / len(sides)
    for k, side in enumerate(sides):
        xs, meds, lo, hi = [], [], [], []
        for i, e in enumerate(entries):
            row = e["sides"].get(side)
            if row is None:
                continue
            xs.append(i + (k - (len(sides) - 1) / 2) * width)
            meds.append(row["median_ms"])
            lo.append(row["median_ms"] - row["min_ms"])
            hi.append(row.get("max_ms", row["median_ms"]) - row["median_ms"])
        ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=side, color=colors[side])
    ax.set_yscale("log")
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels([e["name"].replace(" ", "\n", 1) for e in entries], fontsize=7)
    for i, e in enumerate(entries):
        ours, theirs = e["sides"]["tensoropt"], e["sides"]["pytorch"]
        ax.text(i, 0.98, f"{ours['median_ms'] / theirs['median_ms']:.2f}x", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def plot(report: dict[str, Any], path: Path) -> None:
    """Wall clock (layers and models) on top, single-thread CPU time per layer below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tensoropt.atomic import atomic_write

    entries = report["layers"] + report["models"]
    cpu1 = report.get("cpu1") or []
    panels = 1 + bool(cpu1)
    fig, axes = plt.subplots(panels, 1, figsize=(max(11, 1.7 * len(entries)), 5.5 * panels), squeeze=False)
    m = report["machine"]
    _bars(axes[0][0], entries)
    axes[0][0].set_ylabel("wall clock ms per call\n(median; bars: min..max)")
    axes[0][0].set_title(f"ConvTranspose2d: tensoropt forms vs PyTorch eager, {report['threads']} threads, "
                         f"interleaved ({m['cpu']}); top: tensoropt / PyTorch (medians)", fontsize=9)
    if cpu1:
        _bars(axes[1][0], cpu1)
        axes[1][0].set_ylabel("single-thread CPU ms per call\n(median of 5 batches; bars: min)")
        axes[1][0].set_title("the work each form does (TVM and PyTorch on 1 thread, process time)", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (>= 1; every side is timed each round)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="regex: layers/models whose name matches")
    ap.add_argument("--no-generic", action="store_true", help="skip the slow generic Expr path")
    ap.add_argument("--no-models", action="store_true")
    ap.add_argument("--no-cpu1", action="store_true", help="skip the single-thread CPU-time measurement")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--cpu1-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cpu1_worker:
        print(json.dumps(cpu1_worker(args.only)))
        return 0
    if args.torch_worker:
        torch_worker(args.threads)
        return 0

    import torch

    from tensoropt.bench import TIMING, machine_info, tvm_threads

    torch.set_num_threads(args.threads)
    tvm_threads(args.threads)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine_info(), "threads": args.threads,
        "rounds": args.rounds,
        "cache": "none: every layer and model compiled in this run",
        "timing": TIMING + "; sides interleaved round by round (a pause of SETTLE_S before each), PyTorch in "
                  "a process of its own; stats over all runs of a side",
        "tolerance": TOLERANCE, "layers": [], "models": [],
    }
    # PyTorch as asked (``--threads``), and on one thread: on this shared VM its
    # second OpenMP thread sleeps between parallel regions and, whenever another
    # job holds the other core, each region waits for a scheduler slice
    # (30-40 ms per call measured for layers that take 0.2-3 ms on one thread)
    workers = {"pytorch": TorchWorker(args.threads), "pytorch-1t": TorchWorker(1)}

    def torch_timers(key: str) -> dict[str, Timer]:
        return {side: w.timer(key) for side, w in workers.items()}

    try:
        for k, layer in enumerate(layers(None)):
            if args.only and not re.search(args.only, layer["name"]):
                continue
            log(f"layer {layer['name']}")
            row = bench_layer(layer, torch_timers(f"layer:{k}"), args.rounds, not args.no_generic, log)
            report["layers"].append(row)
            print(_line(row), flush=True)
        if not args.no_models:
            for name in MODEL_NAMES:
                if args.only and not re.search(args.only, name):
                    continue
                log(f"model {name}")
                row = bench_model(name, torch_timers(f"model:{name}"), args.rounds, not args.no_generic, log)
                report["models"].append(row)
                print(_line(row), flush=True)
    finally:
        for w in workers.values():
            w.close()
    if not args.no_cpu1:
        log("single-thread CPU time (subprocess)")
        report["cpu1"] = run_cpu1(args.only)
        report["cpu1_timing"] = ("process CPU time per call, TVM_NUM_THREADS=1 and torch.set_num_threads(1), "
                                 "batches of calls (~0.2 s each), min and median of 5 batches")
    report["machine"]["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        from tensoropt.atomic import atomic_write_text

        atomic_write_text(RESULTS / "conv_transpose_speed.json", json.dumps(report, indent=2, default=str) + "\n")
        plot(report, RESULTS / "conv_transpose_speed.png")
    bad = [f"{e['name']}: {s}" for e in report["layers"] + report["models"] for s, r in e["sides"].items()
           if r.get("agree") is False]
    if bad:
        print("DISAGREE with PyTorch: " + "; ".join(bad))
        return 1
    return 0


def _line(row: dict[str, Any]) -> str:
    parts = [f"{row['name']}:"]
    for side, r in row["sides"].items():
        parts.append(f"{side} {r['median_ms']:.3f} [{r['min_ms']:.3f}-{r['max_ms']:.3f}]")
    t = row["sides"]["tensoropt"]
    parts.append(f"-> tensoropt/pytorch {t['ratio_vs_pytorch']:.2f}, vs best pytorch {t['ratio_vs_best_pytorch']:.2f}" +
                 (f" (chose {row['chosen_form']})" if "chosen_form" in row else ""))
    return " | ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
