"""Small helpers shared by the op modules: dtype checks, costs, Expr builders.

Invariants:
- Cost helpers count symbolic dims as 1 (``Cost`` fields are plain ints); the
  numbers are for ranking candidates, not for exact accounting.
- Expr builders name traversal iterators ``i0, i1, ...`` and reduction
  iterators with other prefixes, so a body never captures the wrong one.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..errors import ShapeError
from ..ir.expr import Access, Const, Expr, Iter, IterDef, Scope, access, call
from ..ir.graph import Attrs
from ..ir.types import FLOAT_DTYPES, DTYPES, UNSIGNED_DTYPES, Dim, Shape, TensorType
from .registry import Cost, CostFn
from .shapes import fmt_shape, numel1

_FLOATS = ", ".join(d for d in DTYPES if d in FLOAT_DTYPES)


# -- type checks ---------------------------------------------------------------


def need_float(ts: Sequence[TensorType], i: int) -> None:
    if ts[i].dtype not in FLOAT_DTYPES:
        raise ShapeError(f"input {i} has dtype {ts[i].dtype}, expected a float dtype ({_FLOATS})")


def need_numeric(ts: Sequence[TensorType], i: int, op: str) -> None:
    """Input ``i`` must be a number (not bool): ``op`` does arithmetic on it."""
    if ts[i].dtype == "bool":
        raise ShapeError(f"input {i} is bool; {op} needs numbers (cast it first)")


def need_signed(ts: Sequence[TensorType], i: int, op: str) -> None:
    """Input ``i`` must be a signed number: ``op`` would wrap an unsigned one."""
    need_numeric(ts, i, op)
    if ts[i].dtype in UNSIGNED_DTYPES:
        raise ShapeError(f"input {i} has dtype {ts[i].dtype}; {op} needs a signed dtype "
                         "(the result would wrap around)")


def shape_only(x: np.ndarray) -> TensorType:
    """A stand-in type with ``x``'s shape, for eval rules that reuse shape logic.

    Attribute validation (windows, axes, slice plans) reads only the shape;
    the dtype is a placeholder and must not be relied on.
    """
    return TensorType("f32", tuple(int(d) for d in x.shape))


def need_int(ts: Sequence[TensorType], i: int) -> None:
    if ts[i].dtype not in ("i64", "i32"):
        raise ShapeError(f"input {i} has dtype {ts[i].dtype}, expected i64 or i32 indices")


def need_rank(ts: Sequence[TensorType], i: int, rank: int, what: str = "") -> None:
    if ts[i].rank != rank:
        extra = f" ({what})" if what else ""
        raise ShapeError(f"input {i} has shape {fmt_shape(ts[i].shape)}, expected {rank}-D{extra}")


def same_dtype(ts: Sequence[TensorType], idxs: Sequence[int], ref: int = 0) -> None:
    for i in idxs:
        if ts[i].dtype != ts[ref].dtype:
            raise ShapeError(
                f"input {i} has dtype {ts[i].dtype}, expected {ts[ref].dtype} (same as input {ref})"
            )


def need_dim(ts: Sequence[TensorType], i: int, axis: int, want: Dim, why: str) -> None:
    """Input ``i`` must have ``want`` at ``axis``; the message explains ``why``."""
    if ts[i].shape[axis] != want:
        raise ShapeError(
            f"input {i} has shape {fmt_shape(ts[i].shape)}, expected dim {axis} == {want} ({why})"
        )


def choice(a: Attrs, key: str, valid: Sequence[str]) -> str:
    v = a[key]
    if v not in valid:
        raise ShapeError(f"attribute {key}={v!r} is not one of: {', '.join(valid)}")
    return str(v)


def ints_len(a: Attrs, key: str, n: int) -> tuple[int, ...]:
    v = aints(a, key)
    if len(v) != n:
        raise ShapeError(f"attribute {key}={list(v)} needs {n} values, got {len(v)}")
    return v


# -- costs ---------------------------------------------------------------------


def nbytes(t: TensorType) -> int:
    return numel1(t.shape) * t.np_dtype.itemsize


def io_bytes(ts: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
    return sum(nbytes(t) for t in ts) + sum(nbytes(t) for t in outs)


def per_output_cost(flops_per_elem: int) -> CostFn:
    """Cost rule: ``flops_per_elem`` per output element, bytes = inputs + outputs."""

    def cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
        return Cost(flops_per_elem * sum(numel1(o.shape) for o in outs), io_bytes(ts, outs))

    return cost


def per_input_cost(flops_per_elem: int) -> CostFn:
    """Cost rule: ``flops_per_elem`` per element of input 0 (reductions)."""

    def cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
        return Cost(flops_per_elem * numel1(ts[0].shape), io_bytes(ts, outs))

    return cost


movement_cost = per_output_cost(0)


# -- Expr builders -------------------------------------------------------------


def trav(shape: Shape, prefix: str = "i") -> tuple[tuple[IterDef, ...], list[Iter]]:
    """Traversal iterators over ``shape`` and their uses."""
    defs = tuple(IterDef(f"{prefix}{k}", d) for k, d in enumerate(shape))
    return defs, [Iter(d.name) for d in defs]


def bcast_read(name: str | Scope, in_shape: Shape, out_shape: Shape, its: Sequence[Expr],
               pad: float = 0.0) -> Access:
    """Read ``name`` (``in_shape``) at output position ``its`` under broadcasting.

    Dims are right-aligned; a size-1 dim broadcast against a larger one is read
    at index 0.
    """
    return Access(name, bcast_index(in_shape, out_shape, its), pad)


def bcast_index(in_shape: Shape, out_shape: Shape, its: Sequence[Expr]) -> tuple[Expr, ...]:
    """Indices into ``in_shape`` for output position ``its`` (right-aligned broadcast)."""
    off = len(out_shape) - len(in_shape)
    return tuple(Const(0) if d == 1 and out_shape[off + j] != 1 else its[off + j]
                 for j, d in enumerate(in_shape))


def inv_count(extents: Sequence[Dim], prefix: str = "c") -> Expr:
    """``1 / prod(extents)`` as an Expr.

    Static extents give a constant; symbolic ones give the reciprocal of a
    scalar counting scope, because a body cannot name a symbol's value.
    """
    if all(isinstance(d, int) for d in extents):
        n = 1
        for d in extents:
            n *= int(d)
        return Const(1.0 / n)
    sums = tuple(IterDef(f"{prefix}{k}", d) for k, d in enumerate(extents))
    return call("reciprocal", access(Scope((), sums, Const(1.0)), ))


def pointwise(names: Sequence[str], ts: Sequence[TensorType], out: Shape,
              body: Callable[..., Expr]) -> Scope:
    """``L[out] { body(reads) }`` with each input read under broadcasting."""
    defs, its = trav(out)
    reads = [bcast_read(n, t.shape, out, its) for n, t in zip(names, ts)]
    return Scope(defs, (), body(*reads))


def lin(terms: Sequence[tuple[Expr, int]], const: int = 0) -> Expr:
    """``sum(e * k) + const`` without ``* 1`` or ``+ 0`` noise (readable Exprs)."""
    out: Expr | None = None
    for e, k in terms:
        if k == 0:
            continue
        t = e if k == 1 else e * k
        out = t if out is None else out + t
    if out is None:
        return Const(const)
    if const > 0:
        out = out + const
    elif const < 0:
        out = out - (-const)
    return out


# -- typed attribute access ------------------------------------------------------
# ``with_defaults`` has checked kinds, so these only narrow types for readers
# (and mypy); a wrong kind here is a rule bug, hence assert, not ShapeError.


def aint(a: Attrs, key: str) -> int:
    v = a[key]
    assert isinstance(v, int), (key, v)
    return int(v)


def afloat(a: Attrs, key: str) -> float:
    v = a[key]
    assert isinstance(v, (int, float)), (key, v)
    return float(v)


def abool(a: Attrs, key: str) -> bool:
    v = a[key]
    assert isinstance(v, (bool, int)), (key, v)
    return bool(v)


def astr(a: Attrs, key: str) -> str:
    v = a[key]
    assert isinstance(v, str), (key, v)
    return v


def aints(a: Attrs, key: str) -> tuple[int, ...]:
    v = a[key]
    assert isinstance(v, tuple), (key, v)
    return tuple(int(x) for x in v)
