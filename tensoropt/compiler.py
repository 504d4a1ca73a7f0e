"""``tensoropt.compile``: any supported model in, a callable compiled model out.

Accepted models: a path (``.onnx``, ``.pt2``, ``.top``), an ``onnx.ModelProto``,
a ``torch.nn.Module`` (exported with ``example_inputs``), a
``torch.export.ExportedProgram``, or a :class:`Graph`. The optional pipeline
runs first (the same text spec as ``tensoropt opt``); the graph is then built
by :mod:`tensoropt.codegen` for the target. The result is a
:class:`~tensoropt.runtime.model.CompiledModel`, which ``.save(DIR)`` writes as
an artifact and :func:`load_compiled` reads back.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import InputFileError, TensoroptError
from .ir.graph import Graph
from .runtime.artifact import FORMAT, VERSION, value_json
from .runtime.model import CompiledModel, load_artifact, versions


class FallbackWarning(UserWarning):
    """Some kernels of a compiled model got slower code than tensoropt meant to give them.

    Emitted once per :func:`compile` that had fallbacks; the details are in
    ``model.manifest["fallbacks"]``. Filter it with
    ``warnings.simplefilter("ignore", tensoropt.compiler.FallbackWarning)``.
    """


#: Fallbacks a :class:`FallbackWarning` names before "and N more".
WARN_FIRST = 3


def fallback_summary(fallbacks: Sequence[Mapping[str, Any]], first: int = WARN_FIRST) -> str:
    """One line: how many fallbacks (how many are bugs), then the first few, kernel and reason."""
    n = len(fallbacks)
    bugs = sum(1 for f in fallbacks if f.get("bug"))
    head = f"{n} fallback{'s' if n != 1 else ''}" + (f" ({bugs} from bugs)" if bugs else "")
    shown = "; ".join(f"{f['kernel']}: {f['reason']}" for f in fallbacks[:first])
    more = f"; and {n - first} more" if n > first else ""
    return (f"tensoropt: {head}, some kernels run slower code: {shown}{more} "
            "(all of them in model.manifest['fallbacks'])")


def _sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def graph_hash(graph: Graph) -> str:
    """Content hash of a graph: its text form and its weights' bytes."""
    from .ir.printer import print_graph

    return _sha256_bytes(print_graph(graph).encode() + graph.weights.digest().encode())


def to_graph(model: Any, example_inputs: Sequence[Any] | None = None) -> tuple[Graph, dict[str, str]]:
    """The Graph for ``model`` and a description of its source (kind, path, sha256)."""
    if isinstance(model, Graph):
        return model, {"kind": "graph", "sha256": graph_hash(model)}
    if isinstance(model, (str, os.PathLike)):
        from .api import load
        from .runtime.artifact import sha256_file

        p = Path(model)
        g = load(p)
        return g, {"kind": p.suffix.lstrip(".").lower(), "path": str(p), "sha256": sha256_file(p)}
    kind = f"{type(model).__module__}.{type(model).__name__}"
    if kind == "onnx.onnx_ml_pb2.ModelProto" or type(model).__name__ == "ModelProto":
        from .frontends.onnx import from_onnx

        return from_onnx(model), {"kind": "onnx", "sha256": _sha256_bytes(model.SerializeToString())}
    if type(model).__name__ == "ExportedProgram":
        from .frontends.torch import from_exported

        g = from_exported(model)
        return g, {"kind": "torch.export", "sha256": graph_hash(g)}
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise TensoroptError("compiling a torch.nn.Module needs example_inputs (a tuple of tensors)")
        from .frontends.torch import from_module

        g = from_module(model, tuple(example_inputs), name=type(model).__name__)
        return g, {"kind": "torch.nn.Module", "class": kind, "sha256": graph_hash(g)}
    raise TensoroptError(
        f"cannot compile a {kind}; give a path (.onnx/.pt2/.top), an onnx.ModelProto, "
        "a torch.nn.Module, a torch.export.ExportedProgram or a tensoropt Graph"
    )


def manifest_for(graph: Graph, built: Any, pipeline: str | None, source: dict[str, str]) -> dict[str, Any]:
    """The artifact manifest (see ``runtime/artifact.py``) for a built graph."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "inputs": [value_json(v) for v in graph.inputs],
        "outputs": [value_json(v) for v in graph.output_values],
        "weights": [c.name for c in graph.constants],
        "target": {"name": built.target, "tvm": built.target_json},
        "pipeline": pipeline or "",
        "source": source,
        "versions": versions(),
        "kernels": dict(built.kernels),
        "fallbacks": [f.to_json() for f in getattr(built, "fallbacks", ())],
        "build_seconds": {k: round(v, 3) for k, v in built.seconds.items()},
    }


def compile(model: Any, example_inputs: Sequence[Any] | None = None, pipeline: str | None = None,
            target: str = "llvm", *, progress: Any = None) -> CompiledModel:
    """Compile ``model`` (see the module docstring) for ``target`` ("llvm" or "cuda").

    When some kernels fall back to slower code (``codegen.schedule``'s module
    docstring says what counts), emits one :class:`FallbackWarning` that
    counts them and names the first few; ``manifest["fallbacks"]`` has all.
    """
    from .codegen.build import build

    graph, source = to_graph(model, example_inputs)
    if pipeline:
        from .api import optimize

        graph, _ = optimize(graph, pipeline)
    built = build(graph, target=target, progress=progress)
    weights = {c.name: graph.weights[c.name] for c in graph.constants}
    manifest = manifest_for(graph, built, pipeline, source)
    if manifest["fallbacks"]:
        warnings.warn(FallbackWarning(fallback_summary(manifest["fallbacks"])), stacklevel=2)
    return CompiledModel(built.executable, manifest, weights)


def load_compiled(directory: str | os.PathLike[str]) -> CompiledModel:
    """The compiled model saved in an artifact directory."""
    p = Path(directory)
    if not p.is_dir():
        raise InputFileError(f"{p}: no such artifact directory")
    return load_artifact(p)
