"""Reductions over a set of axes: reduce_sum/mean/max/min/prod.

``axes=[]`` (the default) reduces every axis, as ONNX does when
``noop_with_empty_axes`` is 0. ``keepdims`` keeps reduced axes as size 1.
Reducing over no values gives the reduction's identity (max: -inf or the
dtype's minimum, min: +inf or its maximum, sum 0, prod 1), as in ONNX.
The Expr is one scope whose reduction kind matches the op; ``reduce_mean``
multiplies the body by ``1 / count`` (a constant unless dims are symbolic).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..ir.expr import Access, Const, Expr, Iter, IterDef, Scope
from ..ir.graph import Attrs
from ..ir.types import TensorType
from .common import inv_count, per_input_cost
from .common import abool, aints
from .registry import AttrSpec, OpRules, register
from .shapes import norm_axes


def reduced_axes(rank: int, a: Attrs) -> tuple[int, ...]:
    axes = aints(a, "axes")
    return tuple(range(rank)) if not axes else norm_axes(axes, rank)


def _infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    t = ts[0]
    axes = reduced_axes(t.rank, a)
    keep = abool(a, "keepdims")
    shape = tuple(1 if k in axes else d for k, d in enumerate(t.shape) if keep or k not in axes)
    return [TensorType(t.dtype, shape)]


#: name -> (NumPy reduction, Expr reducer, doc)
REDUCES: dict[str, tuple[Callable, str, str]] = {
    "reduce_sum": (np.sum, "Sum", "sum over axes"),
    "reduce_mean": (np.mean, "Sum", "mean over axes"),
    "reduce_max": (np.max, "Max", "maximum over axes"),
    "reduce_min": (np.min, "Min", "minimum over axes"),
    "reduce_prod": (np.prod, "Prod", "product over axes"),
}


def _empty_identity(name: str, dtype: np.dtype) -> float | int | None:
    """What ``name`` gives over no values (ONNX): max -inf, min +inf, or the
    dtype's extreme when it has no infinity (False/True for bool). Sum, mean
    and prod have NumPy identities (mean: 0/0 = nan)."""
    if name not in ("reduce_max", "reduce_min"):
        return None
    low = name == "reduce_max"
    if dtype.kind == "f":
        return -np.inf if low else np.inf
    if dtype.kind == "b":
        return not low
    info = np.iinfo(dtype)
    return info.min if low else info.max


def _empty_value(name: str, dtype: np.dtype) -> float:
    """The result of ``name`` over no values, as a float (mean: 0/0 = nan)."""
    ident = _empty_identity(name, dtype)
    if ident is not None:
        return float(ident)
    return {"reduce_sum": 0.0, "reduce_prod": 1.0}.get(name, math.nan)


def _register(name: str) -> None:
    fn, reducer, doc = REDUCES[name]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        axes = reduced_axes(x.ndim, a)
        keep = abool(a, "keepdims")
        initial = _empty_identity(name, x.dtype)
        if initial is not None and any(x.shape[k] == 0 for k in axes):
            out = fn(x, axis=axes, keepdims=keep, initial=initial)
        else:
            out = fn(x, axis=axes, keepdims=keep)
        return [np.asarray(out).astype(x.dtype, copy=False)]

    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        t = ts[0]
        axes = reduced_axes(t.rank, a)
        keep = abool(a, "keepdims")
        travs: list[IterDef] = []
        sums: list[IterDef] = []
        idx: list[Expr] = []
        for k, d in enumerate(t.shape):
            if k in axes:
                sums.append(IterDef(f"r{k}", d))
                idx.append(Iter(f"r{k}"))
                if keep:
                    travs.append(IterDef(f"i{k}", 1))  # kept unit dim, never read
            else:
                travs.append(IterDef(f"i{k}", d))
                idx.append(Iter(f"i{k}"))
        if 0 in [t.shape[k] for k in axes]:
            # Nothing to reduce (and the verifier rejects empty ranges): the
            # result is the identity everywhere.
            return Scope(tuple(travs), (), Const(_empty_value(name, t.np_dtype)))
        body: Expr = Access(names[0], tuple(idx))
        if name == "reduce_mean":
            body = body * inv_count([t.shape[k] for k in axes])
        return Scope(tuple(travs), tuple(sums), body, reducer)

    register(OpRules(
        name=name, category="compute", inputs=(1, 1), infer=_infer, eval=ev, expr=expr,
        cost=per_input_cost(1),
        attrs=(AttrSpec("axes", "ints", (), "axes to reduce; [] means all"),
               AttrSpec("keepdims", "bool", True, "keep reduced axes as size 1")),
        doc=doc,
    ))


for _n in REDUCES:
    _register(_n)
