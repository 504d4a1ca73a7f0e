"""The Python API: load, verify, optimize, evaluate and save graphs.

This module sits above ``ir``, ``ops``, ``interp`` and ``passes`` (see the
import order in DESIGN.md); the CLI is a thin layer over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import EvalError, InputFileError
from .ir.graph import Graph
from .runtime.measure import random_values  # noqa: F401 - part of the API
from .runtime.measure import symbols_of as _symbols_of

#: file suffixes the text IR writer and reader use.
TEXT_SUFFIXES = (".top",)


def _load_text(p: Path) -> Graph:
    from .ir.io import load_graph

    return load_graph(p)


def _load_onnx(p: Path) -> Graph:
    from .frontends.onnx import load_onnx

    return load_onnx(p)


def _load_pt2(p: Path) -> Graph:
    from .frontends.torch import load_pt2

    return load_pt2(p)


#: suffix -> reader. Frontends are imported only when their suffix is read
#: (importing torch costs seconds; a .top user should not pay for it).
READERS: dict[str, Callable[[Path], Graph]] = {".top": _load_text, ".onnx": _load_onnx, ".pt2": _load_pt2}


def load(path: str | os.PathLike[str]) -> Graph:
    """Load a graph from a file; the suffix picks the reader.

    ``.top`` is the text IR (weights in the ``.npz`` beside it), ``.onnx`` an
    ONNX model (external data beside it), ``.pt2`` a ``torch.export.save``
    archive.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():
        if (p / "manifest.json").is_file():
            raise InputFileError(f"{p}: is a compiled artifact; run it with `tensoropt run` "
                                 "or load it with tensoropt.load")
        raise InputFileError(f"{p}: is a directory, expected a model file")
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        known = ", ".join(READERS)
        raise InputFileError(f"{p}: unknown file type {p.suffix or '(no suffix)'!r}; tensoropt reads {known}")
    return reader(p)


def save(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write ``graph`` as text IR (+ ``.npz`` weights), atomically."""
    from .ir.io import save_graph

    p = Path(path)
    if p.suffix not in TEXT_SUFFIXES:
        raise InputFileError(f"{p}: output must end in {', '.join(TEXT_SUFFIXES)}")
    save_graph(graph, p)


def export_onnx(graph: Graph, path: str | os.PathLike[str], *, opset: int = 18) -> None:
    """Write ``graph`` as an ONNX model, atomically."""
    from .frontends.onnx_export import save_onnx

    save_onnx(graph, Path(path), opset=opset)


def verify(graph: Graph) -> None:
    """Check every IR invariant, op rules included; raises VerifyError."""
    from .ir.verify import verify as _verify
    from .ops import REGISTRY

    _verify(graph, REGISTRY)


def optimize(graph: Graph, pipeline: str | Sequence[Any], *, verify: bool | None = None,
             on_pass: Callable[..., None] | None = None) -> tuple[Graph, list]:
    """Run a pipeline, as text (``"dce,cse"``) or already-parsed passes;
    returns the graph and per-pass reports."""
    from .passes.pipeline import parse_pipeline, run_pipeline

    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    return run_pipeline(graph, passes, verify=verify, on_pass=on_pass)


def evaluate(graph: Graph, inputs: Mapping[str, np.ndarray], *, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Run ``graph`` with the reference interpreter."""
    from .interp import run_graph

    return run_graph(graph, inputs, dtype=dtype)


def symbols_of(graph: Graph | Sequence[Any]) -> list[str]:
    """Symbolic dims of the graph inputs (or of a sequence of input Values), in order of first appearance."""
    return _symbols_of(graph.inputs if isinstance(graph, Graph) else graph)


def check_bindings(graph: Graph | Sequence[Any], bindings: Mapping[str, int], what: str = "graph") -> None:
    """EvalError naming the first ``--bind`` symbol that no input of ``graph`` (or of the Values) has."""
    known = symbols_of(graph)
    unknown = sorted(set(bindings) - set(known))
    if unknown:
        raise EvalError(f"--bind {unknown[0]}: the {what} has no symbolic dim {unknown[0]!r} "
                        f"(its symbols: {', '.join(known) or 'none'})")


def random_inputs(graph: Graph, *, seed: int = 0, bindings: Mapping[str, int] | None = None,
                  default_dim: int = 4) -> dict[str, np.ndarray]:
    """Seeded random inputs for every graph input (see :func:`random_values`)."""
    return random_values(graph.inputs, seed=seed, bindings=bindings, default_dim=default_dim)


def read_inputs(path: str | os.PathLike[str], graph: Graph) -> dict[str, np.ndarray]:
    """Read graph inputs from an ``.npz`` (keys are input names, no ``%``)."""
    from .ir.io import read_npz

    p = Path(path)
    arrays = read_npz(p, what="inputs")
    want = [v.name for v in graph.inputs]
    extra = sorted(set(arrays) - set(want))
    if extra:
        raise EvalError(f"{p}: array {extra[0]!r} is not a graph input (inputs: {', '.join(want)})")
    return arrays


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays to an ``.npz`` atomically (any array names, no pickles)."""
    from .atomic import atomic_write
    from .ir.io import write_npz as _write

    atomic_write(Path(path), lambda tmp: _write(tmp, arrays))


def report_rows(reports: Sequence[Any]) -> list[dict[str, object]]:
    """Pass reports (``run_pipeline``'s) as plain rows for tables and JSON."""
    return [{"pass": r.name, "ms": r.seconds * 1e3, "nodes_before": r.nodes_before,
             "nodes_after": r.nodes_after} for r in reports]


def summarize(arrays: Mapping[str, np.ndarray]) -> list[dict[str, object]]:
    """Per-array shape, dtype and a few statistics, for reports."""
    rows = []
    for k, a in arrays.items():
        row: dict[str, object] = {"name": k, "shape": list(a.shape), "dtype": str(a.dtype)}
        if a.size and a.dtype.kind in "fiub":
            af = a.astype(np.float64)
            row.update(min=float(af.min()), max=float(af.max()), mean=float(af.mean()))
        rows.append(row)
    return rows


def max_abs_diff(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], names: Sequence[str]) -> float:
    """Largest absolute difference over the named arrays (for soundness reports)."""
    worst = 0.0
    for n in names:
        x, y = np.asarray(a[n], np.float64), np.asarray(b[n], np.float64)
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def graph_cost(graph: Graph) -> dict[str, int]:
    """Total flops and bytes of the graph (symbolic dims counted as 1).

    Registry ops use their cost rules; ``expr`` nodes use the structural
    estimate of :func:`tensoropt.ir.cost.expr_flops` and count input and
    output bytes once.
    """
    from .ir.cost import expr_flops
    from .ops import REGISTRY
    from .ops.common import io_bytes

    types = {k: v.type for k, v in graph.values().items()}
    flops = nbytes = 0
    for n in graph.nodes:
        if n.expr is not None:
            flops += expr_flops(n.expr)
            nbytes += io_bytes([types[t] for t in n.inputs], [o.type for o in n.outputs])
            continue
        rules = REGISTRY.get(n.op)
        if rules is None:
            continue
        c = rules.cost([types[i] for i in n.inputs], [o.type for o in n.outputs], rules.with_defaults(n.attrs))
        flops += c.flops
        nbytes += c.bytes
    return {"flops": flops, "bytes": nbytes}


def graph_summary(graph: Graph) -> dict[str, object]:
    """Name, signature, node/constant counts, op histogram and cost, for reports."""
    from collections import Counter

    ops = Counter(n.op for n in graph.nodes)
    return {
        "name": graph.name,
        "inputs": {v.name: str(v.type) for v in graph.inputs},
        "outputs": {v.name: str(v.type) for v in graph.output_values},
        "nodes": len(graph.nodes),
        "constants": len(graph.constants),
        "weight_bytes": int(sum(a.nbytes for a in graph.weights.values())),
        "ops": dict(sorted(ops.items())),
        "cost": graph_cost(graph),
    }
