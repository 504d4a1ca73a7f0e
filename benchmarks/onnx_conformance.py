"""Run ONNX's own node conformance cases against tensoropt (and TVM Relax as a peer).

    python benchmarks/onnx_conformance.py                  # tensoropt + tvm-relax, all cases
    python benchmarks/onnx_conformance.py --peers tensoropt --filter conv

The cases come from ``onnx.backend.test.case.node.collect_testcases(None)``
(about 1,900, each a small model with inputs and expected outputs). Each case
runs in a worker subprocess under a time limit: a case that hangs or crashes
its worker is recorded as ``timeout`` / ``crash`` and the worker is replaced,
so one bad case costs one case, not the run. Workers live across cases because
importing the peers takes seconds.

Statuses: ``pass`` (every output matches within the case's rtol/atol),
``folded`` (matches, but the whole model was computed while importing it:
every input the model has was needed as an import-time value, so the outputs
came from constant folding by ONNX's reference evaluator, not from the
backend's own kernels; not counted as a pass), ``wrong`` (ran, and an output differs: the one status that must never
happen), ``unsupported`` (the backend refused the model with a clear error:
an op, dtype or attribute it does not handle), ``error`` (any other
exception), ``timeout``, ``crash``.

Writes ``benchmarks/results/onnx_conformance.json`` (per backend: totals, per
op, per case with the error's first line) and ``onnx_conformance.png``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).parent / "results"
PEERS = ("tensoropt", "tensoropt-compiled", "tvm-relax")
STATUSES = ("pass", "folded", "wrong", "unsupported", "error", "timeout", "crash")


# -- the peers: each takes a case and returns its outputs (or raises) --------------------


def _run_tensoropt(model: Any, inputs: list[np.ndarray], mode: str = "eval") -> tuple[list[np.ndarray], bool]:
    """Outputs, and whether the imported graph was empty (all folded at import)."""
    import tensoropt.backend as backend

    rep = backend.prepare(model, mode=mode)
    outs = list(rep.run(inputs))
    return outs, rep.last_graph is not None and not rep.last_graph.nodes


def _run_tvm(model: Any, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, keep_params_in_input=False)
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
    return _flatten_tvm(out), False


def _flatten_tvm(out: Any) -> list[np.ndarray]:
    if hasattr(out, "numpy"):
        return [out.numpy()]
    res: list[np.ndarray] = []
    for o in out:
        res.extend(_flatten_tvm(o))
    return res


RUNNERS: dict[str, Callable[[Any, list[np.ndarray]], tuple[list[np.ndarray], bool]]] = {
    "tensoropt": _run_tensoropt,
    "tensoropt-compiled": lambda model, inputs: _run_tensoropt(model, inputs, mode="compiled"),
    "tvm-relax": _run_tvm,
}


def _is_unsupported(peer: str, e: BaseException) -> bool:
    if peer.startswith("tensoropt"):
        from tensoropt.errors import UnknownOpError, UnsupportedError

        return isinstance(e, (UnsupportedError, UnknownOpError))
    text = str(e)
    return isinstance(e, NotImplementedError) or "not supported" in text.lower() or "not implemented" in text.lower()


def _compare(outs: list[np.ndarray], refs: list[np.ndarray], rtol: float, atol: float) -> str | None:
    """None when ``outs`` match ``refs``; else what differs."""
    if len(outs) != len(refs):
        return f"{len(outs)} outputs, expected {len(refs)}"
    for k, (o, r) in enumerate(zip(outs, refs)):
        o, r = np.asarray(o), np.asarray(r)
        if o.shape != r.shape:
            return f"output {k}: shape {o.shape}, expected {r.shape}"
        if r.dtype.kind in "OSU":
            if not np.array_equal(o, r):
                return f"output {k}: values differ"
            continue
        if o.dtype != r.dtype:
            return f"output {k}: dtype {o.dtype}, expected {r.dtype}"
        try:
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)
        except AssertionError:
            with np.errstate(all="ignore"):
                worst = float(np.nanmax(np.abs(o.astype(np.float64) - r.astype(np.float64)))) if o.size else 0.0
            return f"output {k}: max abs diff {worst:.3g} (rtol {rtol}, atol {atol})"
    return None


def _arrays(xs: Any) -> list[Any]:
    """Case data as NumPy arrays (some cases store TensorProtos)."""
    from onnx import TensorProto, numpy_helper

    return [numpy_helper.to_array(x) if isinstance(x, TensorProto) else x for x in xs]


def _run_case(peer: str, case: Any) -> tuple[str, str]:
    folded = False
    for inputs, refs in case.data_sets:
        inputs, refs = _arrays(inputs), _arrays(refs)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outs, was_folded = RUNNERS[peer](case.model, list(inputs))
                folded = folded or was_folded
        except Exception as e:  # the whole point: classify every failure
            status = "unsupported" if _is_unsupported(peer, e) else "error"
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return status, f"{type(e).__name__}: {first[:300]}"
        diff = _compare(outs, list(refs), case.rtol, case.atol)
        if diff:
            return "wrong", diff
    return ("folded", "computed at import time") if folded else ("pass", "")


def _worker(conn: Connection, peer: str) -> None:
    import logging

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    cases = _collect()
    conn.send("ready")
    while True:
        idx = conn.recv()
        if idx is None:
            return
        conn.send(_run_case(peer, cases[idx]))


def _collect() -> list[Any]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return list(collect_testcases(None))


class _Worker:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=_worker, args=(child, peer), daemon=True)
        self.proc.start()
        if not self.conn.poll(300) or self.conn.recv() != "ready":
            raise RuntimeError(f"{peer} worker did not start")

    def run(self, idx: int, limit: float) -> tuple[str, str]:
        self.conn.send(idx)
        if self.conn.poll(limit):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        else:
            self.kill()
            return "timeout", f"no result within {limit:.0f} s"
        self.kill()
        return "crash", f"worker died (exit code {self.proc.exitcode})"

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(5)
        self.kill()


# -- grouping by op ----------------------------------------------------------------------


def _op_namer() -> Callable[[Any], str]:
    """The op a case tests: its node's op, or (expanded, multi-node cases) the
    ONNX op whose snake_case name is the longest prefix of the case name."""
    import onnx

    snake = {}
    for s in onnx.defs.get_all_schemas():
        if s.domain in ("", "ai.onnx"):
            snake[re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", s.name).lower()] = s.name
    keys = sorted(snake, key=len, reverse=True)

    def name(case: Any) -> str:
        nodes = case.model.graph.node
        if len(nodes) == 1:
            return nodes[0].op_type
        stem = case.name.removeprefix("test_")
        for k in keys:
            if stem.startswith(k):
                return snake[k]
        return nodes[0].op_type if nodes else "?"

    return name


# -- driver ------------------------------------------------------------------------------


def run_peer(peer: str, cases: list[Any], indices: list[int], limit: float, jobs: int) -> dict[str, tuple[str, str]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: dict[str, tuple[str, str]] = {}
    workers = [_Worker(peer) for _ in range(jobs)]
    pending = list(indices)
    busy: dict[int, tuple[int, float]] = {}  # worker slot -> (case index, start)
    with Progress(TextColumn(f"[bold]{peer}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[stats]}"), transient=False) as prog:
        task = prog.add_task(peer, total=len(indices), stats="")
        counts: Counter[str] = Counter()
        while pending or busy:
            for slot, w in enumerate(workers):
                if slot not in busy and pending:
                    idx = pending.pop(0)
                    w.conn.send(idx)
                    busy[slot] = (idx, time.monotonic())
            for slot, (idx, start) in list(busy.items()):
                w = workers[slot]
                res: tuple[str, str] | None = None
                if w.conn.poll(0):
                    try:
                        res = w.conn.recv()
                    except EOFError:
                        res = ("crash", f"worker died (exit code {w.proc.exitcode})")
                elif not w.proc.is_alive():
                    res = ("crash", f"worker died (exit code {w.proc.exitcode})")
                elif time.monotonic() - start > limit:
                    res = ("timeout", f"no result within {limit:.0f} s")
                if res is None:
                    continue
                if res[0] in ("timeout", "crash"):
                    w.kill()
                    workers[slot] = _Worker(peer)
                del busy[slot]
                results[cases[idx].name] = res
                counts[res[0]] += 1
                prog.update(task, advance=1, stats=" ".join(f"{k} {counts[k]}" for k in STATUSES if counts[k]))
            time.sleep(0.002)
    for w in workers:
        w.close()
    return results


def summarize(results: dict[str, tuple[str, str]], op_of: dict[str, str]) -> dict[str, Any]:
    totals = Counter(s for s, _ in results.values())
    per_op: dict[str, Counter[str]] = defaultdict(Counter)
    for name, (s, _) in results.items():
        per_op[op_of[name]][s] += 1
    n = len(results)
    return {
        "total": n,
        "passed": totals["pass"],
        "pass_rate": round(totals["pass"] / n, 4) if n else 0.0,
        "statuses": {s: totals[s] for s in STATUSES},
        "ops_fully_passing": sorted(op for op, c in per_op.items() if c["pass"] == sum(c.values())),
        "ops_unsupported": sorted(op for op, c in per_op.items() if c["pass"] == 0),
        "per_op": {op: dict(c) for op, c in sorted(per_op.items())},
        "cases": {name: {"status": s, "detail": d} for name, (s, d) in sorted(results.items())},
    }


def plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no PNG", file=sys.stderr)
        return
    peers = list(report["backends"])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.8 * len(peers)))
    colors = {"pass": "#2a9d8f", "folded": "#8ecae6", "wrong": "#d62828", "unsupported": "#adb5bd", "error": "#f4a261",
              "timeout": "#6d597a", "crash": "#264653"}
    for y, peer in enumerate(peers):
        left = 0
        for s in STATUSES:
            v = report["backends"][peer]["statuses"][s]
            if v:
                ax.barh(y, v, left=left, color=colors[s], label=s if y == 0 or s not in ax.get_legend_handles_labels()[1] else None)
                left += v
        rate = report["backends"][peer]["pass_rate"]
        ax.text(left + 10, y, f"{rate:.1%} pass", va="center")
    ax.set_yticks(range(len(peers)), peers)
    ax.set_xlabel(f"ONNX node conformance cases (onnx {report['onnx']})")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _machine() -> dict[str, Any]:
    from tensoropt.bench import machine_info

    return machine_info()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {', '.join(PEERS)}")
    ap.add_argument("--filter", default="", help="only cases whose name contains this (regex)")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds per case before it counts as a timeout")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes per peer")
    ap.add_argument("-o", "--output", default=str(RESULTS / "onnx_conformance.json"))
    args = ap.parse_args(argv)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        print(f"onnx_conformance: unknown peer {bad[0]!r} (valid: {', '.join(PEERS)})", file=sys.stderr)
        return 2
    import onnx

    cases = _collect()
    namer = _op_namer()
    indices = [k for k, c in enumerate(cases) if re.search(args.filter, c.name)]
    op_of = {cases[k].name: namer(cases[k]) for k in indices}
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": _machine(),
        "timing": "seconds: wall clock (time.monotonic) of each backend's whole run over the cases "
                  f"({args.jobs} worker processes)",
        "cache": "none",
        "onnx": onnx.__version__, "cases": len(indices), "limit_s": args.limit, "backends": {},
    }
    for peer in peers:
        t0 = time.monotonic()
        res = run_peer(peer, cases, indices, args.limit, args.jobs)
        report["backends"][peer] = {"seconds": round(time.monotonic() - t0, 1), **summarize(res, op_of)}
        b = report["backends"][peer]
        print(f"{peer}: {b['passed']}/{b['total']} pass ({b['pass_rate']:.1%}); "
              + ", ".join(f"{s} {b['statuses'][s]}" for s in STATUSES[1:] if b["statuses"][s]))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)
    plot(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
