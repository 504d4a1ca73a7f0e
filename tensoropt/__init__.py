"""tensoropt: a tensor program optimizer. See README.md and DESIGN.md.

The Python API (``load``, ``save``, ``verify``, ``optimize``, ``evaluate``)
lives in :mod:`tensoropt.api` and is re-exported here lazily, so that
``import tensoropt`` and the CLI's ``--help`` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("load", "save", "verify", "optimize", "evaluate", "random_inputs")


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'tensoropt' has no attribute {name!r}")
