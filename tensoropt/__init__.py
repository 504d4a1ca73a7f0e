"""tensoropt: a tensor program optimizer. See README.md and DESIGN.md.

The Python API (``load``, ``save``, ``verify``, ``optimize``, ``evaluate``)
lives in :mod:`tensoropt.api`, ``compile`` in :mod:`tensoropt.compiler`; both
are re-exported here lazily, so that ``import tensoropt`` and the CLI's
``--help`` stay fast. ``tensoropt.load(path)`` reads a model file as a Graph,
or a compiled artifact directory as a callable ``CompiledModel``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("save", "verify", "optimize", "evaluate", "random_inputs")


def load(path: Any) -> Any:
    """A Graph from a model file (.top/.onnx/.pt2), or a CompiledModel from an artifact directory."""
    from pathlib import Path

    if Path(path).is_dir():
        from .compiler import load_compiled

        return load_compiled(path)
    from .api import load as load_graph

    return load_graph(path)


def __getattr__(name: str) -> Any:
    if name == "compile":
        from .compiler import compile

        return compile
    if name == "FallbackWarning":  # the one warning a compile may emit: filter it by this name
        from .runtime.measure import FallbackWarning

        return FallbackWarning
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'tensoropt' has no attribute {name!r}")
