"""The op registry, populated: importing this package registers every op.

Op modules by concern: :mod:`.elementwise` (unary/binary maps, where),
:mod:`.nn` (conv, pooling, norms, softmax), :mod:`.linalg` (matmul, gemm),
:mod:`.band` (banded attention products g2bmm, gbmm),
:mod:`.reduce`, :mod:`.movement` (reshape-like, slicing, gathers, casts).
Shared shape arithmetic is in :mod:`.shapes`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import ShapeError
from ..ir.graph import AttrValue
from ..ir.types import TensorType
from . import band, elementwise, indexing, linalg, movement, nn, reduce, resize, scan, spatial  # noqa: F401  (registration)
from .registry import REGISTRY, AttrSpec, Cost, OpRules, get_op, register

__all__ = ["REGISTRY", "AttrSpec", "Cost", "OpRules", "get_op", "register", "infer_node_types"]


def infer_node_types(op: str, input_types: Sequence[TensorType],
                     attrs: Mapping[str, AttrValue] | None = None) -> list[TensorType]:
    """Output types of ``op`` applied to ``input_types``.

    Checks arity, fills attribute defaults (ShapeError on unknown, missing or
    ill-kinded ones), then runs the op's ``infer``. UnknownOpError for an
    unregistered op.
    """
    rules = get_op(op)
    lo, hi = rules.inputs
    n = len(input_types)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
        raise ShapeError(f"{op} takes {want} inputs, got {n}")
    a = rules.with_defaults(attrs or {})
    out = list(rules.infer(list(input_types), a))
    if rules.num_outputs is not None and len(out) != rules.num_outputs:
        raise AssertionError(f"{op} infer returned {len(out)} outputs, registry says {rules.num_outputs}")
    return out
