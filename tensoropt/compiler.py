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
from pathlib import Path
from typing import Any, Sequence

from .errors import InputFileError, TensoroptError
from .ir.graph import Graph
from .runtime.measure import (  # noqa: F401 - FallbackWarning and the manifest helpers are part of this API
    WARN_FIRST,
    FallbackWarning,
    compile_graph,
    fallback_summary,
    graph_hash,
    manifest_for,
)
from .runtime.model import CompiledModel, load_artifact


def _sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


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


def compile(model: Any, example_inputs: Sequence[Any] | None = None, pipeline: str | None = None,
            target: str = "llvm", *, progress: Any = None) -> CompiledModel:
    """Compile ``model`` (see the module docstring) for ``target`` ("llvm" or "cuda").

    When some kernels fall back to slower code (``codegen.schedule``'s module
    docstring says what counts), emits one :class:`FallbackWarning` that
    counts them and names the first few; ``manifest["fallbacks"]`` has all.
    """
    graph, source = to_graph(model, example_inputs)
    if pipeline:
        from .api import optimize

        graph, _ = optimize(graph, pipeline)
    return compile_graph(graph, target, pipeline=pipeline, source=source, progress=progress, stacklevel=3)


def load_compiled(directory: str | os.PathLike[str]) -> CompiledModel:
    """The compiled model saved in an artifact directory."""
    p = Path(directory)
    if not p.is_dir():
        raise InputFileError(f"{p}: no such artifact directory")
    return load_artifact(p)
