"""What an FX node's value is while a torch program is imported (the operand kinds).

The converter's environment maps each FX node to one of:

- a ``str``: a tensor computed at run time, named in the graph builder;
- :class:`ConstTensor`: a tensor known at import time (parameters, buffers,
  lifted constants, results folded from them); it enters the graph only when
  a converted node reads it, with its own dtype;
- :class:`Affine`: a tensor whose elements are an affine function of their
  position (``arange`` over symbolic sizes, fills), kept symbolic so that
  indexing with it stays affine;
- :class:`Missing`: an output torch computes that tensoropt cannot (pooling
  indices, saved statistics); reading it is an error that names it;
- a Python number, a sympy expression (a symbolic size used as a value),
  ``None``, or a tuple of these for a node with several outputs.

Invariants: values are immutable once made (a :class:`ConstTensor` only
records the graph name it got on first use); :func:`is_tensor_value` holds
for exactly the first three kinds. This module knows nothing of the graph
builder or of the node being converted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import sympy
import torch

from tensoropt.ir.expr import Const, Expr, Scope
from tensoropt.ir.types import Dim, Shape, TensorType
from tensoropt.ops.common import lin, trav

#: torch dtype -> tensoropt dtype. Anything else (bfloat16, complex, ...) is unsupported. torch
#: has few kernels for uint16/32/64 (no add): mapped so their tensors import, nothing more.
DTYPES: dict[torch.dtype, str] = {
    torch.float32: "f32", torch.float64: "f64", torch.float16: "f16",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8",
    torch.uint8: "u8", torch.uint16: "u16", torch.uint32: "u32", torch.uint64: "u64", torch.bool: "bool",
}
#: tensoropt dtype -> torch dtype (the inverse of :data:`DTYPES`).
TORCH_DTYPES = {v: k for k, v in DTYPES.items()}


@dataclass(eq=False)
class ConstTensor:
    """A tensor known at import time; added to the graph on first use."""

    tensor: torch.Tensor
    name: str
    graph_name: str | None = None


@dataclass(frozen=True)
class Affine:
    """A tensor whose element at position ``p`` is ``offset + sum(coefs[k] * p[k])``.

    Tracks ``arange`` over symbolic sizes (and fills, slices, unsqueezes of it)
    so that indexing with it stays affine. ``offset`` and ``coefs`` are exact
    Python numbers; a non-integer offset is only used for fills.
    """

    shape: Shape
    dtype: str
    offset: int | float
    coefs: tuple[int, ...]

    @property
    def type(self) -> TensorType:
        return TensorType(self.dtype, self.shape)

    def index(self, its: Sequence[Expr]) -> Expr:
        """The value at position ``its`` as an Expr (affine in the iterators)."""
        terms = [(e, c) for e, c in zip(its, self.coefs) if c and not _is_zero(e)]
        return lin(terms, int(self.offset))

    def unsqueeze(self, axis: int) -> Affine:
        return Affine(self.shape[:axis] + (1,) + self.shape[axis:], self.dtype, self.offset,
                      self.coefs[:axis] + (0,) + self.coefs[axis:])

    def squeeze(self, axes: Sequence[int]) -> Affine:
        keep = [k for k in range(len(self.shape)) if k not in axes]
        return Affine(tuple(self.shape[k] for k in keep), self.dtype, self.offset,
                      tuple(self.coefs[k] for k in keep))

    def permute(self, perm: Sequence[int]) -> Affine:
        return Affine(tuple(self.shape[p] for p in perm), self.dtype, self.offset,
                      tuple(self.coefs[p] for p in perm))

    def expand(self, shape: Shape) -> Affine:
        # Broadcast dims always read position 0, so their coefficient is moot: 0.
        lead = len(shape) - len(self.shape)
        coefs = (0,) * lead + tuple(0 if d == 1 and shape[lead + k] != 1 else c
                                    for k, (d, c) in enumerate(zip(self.shape, self.coefs)))
        return Affine(tuple(shape), self.dtype, self.offset, coefs)

    def slice(self, axis: int, start: int, step: int, length: Dim) -> Affine:
        coefs = list(self.coefs)
        coefs[axis] = self.coefs[axis] * step
        shape = list(self.shape)
        shape[axis] = length
        return Affine(tuple(shape), self.dtype, self.offset + self.coefs[axis] * start, tuple(coefs))

    def scale_shift(self, scale: int, shift: int) -> Affine:
        return Affine(self.shape, self.dtype, self.offset * scale + shift,
                      tuple(c * scale for c in self.coefs))

    def bounds(self) -> tuple[float, float]:
        """Smallest and largest element (+-inf along a symbolic dim)."""
        lo = hi = float(self.offset)
        for c, d in zip(self.coefs, self.shape):
            span = c * (d - 1) if isinstance(d, int) else (math.inf if c > 0 else -math.inf if c else 0)
            lo, hi = lo + min(span, 0), hi + max(span, 0)
        return lo, hi

    def scope(self) -> Scope:
        defs, its = trav(self.shape)
        body: Expr = self.index(its) if isinstance(self.offset, int) else Const(float(self.offset))
        return Scope(defs, (), body)


@dataclass(frozen=True)
class Missing:
    """An output torch computes that tensoropt cannot (pooling indices, ...)."""

    what: str


def is_tensor_value(v: Any) -> bool:
    """Whether ``v`` is a tensor: run-time (a builder name), constant or affine."""
    return isinstance(v, (str, ConstTensor, Affine))


def is_static_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, bool))


def sym_value(v: Any) -> Any:
    """A Python number for a static value, else the sympy expression of a symbolic one."""
    if isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        v = v.node.expr
    if isinstance(v, sympy.Basic):
        if v.is_Integer:
            return int(v)
        if v.is_Float:
            return float(v)
        if v in (sympy.true, sympy.false):
            return bool(v)
    return v


def describe(v: Any) -> str:
    """A value that is not what was wanted, for a message (``the constant 3``)."""
    if v is None:
        return "None"
    if isinstance(v, Missing):
        return v.what
    if is_static_scalar(v):
        return f"the constant {v!r}"
    return f"a {type(v).__name__}"


def as_affine(v: Any) -> Affine | None:
    """``v`` itself when affine, the affine form of an integer constant, else None."""
    if isinstance(v, Affine):
        return v
    if isinstance(v, ConstTensor):
        return _affine_of_const(v.tensor)
    return None


def _is_zero(e: Expr) -> bool:
    return isinstance(e, Const) and e.value == 0


def _affine_of_const(t: torch.Tensor) -> Affine | None:
    """The affine form of a small integer constant, when it has one."""
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or t.numel() == 0:
        return None
    a = t.detach().to(torch.int64).numpy()
    zero = (0,) * a.ndim
    offset = int(a[zero])
    coefs = []
    for k in range(a.ndim):
        if a.shape[k] > 1:
            at = list(zero)
            at[k] = 1
            coefs.append(int(a[tuple(at)]) - offset)
        else:
            coefs.append(0)
    grid = offset + sum(c * np.arange(n).reshape([-1 if j == k else 1 for j in range(a.ndim)])
                        for k, (c, n) in enumerate(zip(coefs, a.shape)))
    if not np.array_equal(np.broadcast_to(grid, a.shape), a):
        return None
    return Affine(tuple(int(d) for d in a.shape), DTYPES[t.dtype], offset, tuple(coefs))
