"""Reductions over a set of axes: reduce_sum/mean/max/min/prod.

``axes=[]`` (the default) reduces every axis, as ONNX does when
``noop_with_empty_axes`` is 0. ``keepdims`` keeps reduced axes as size 1.
The Expr is one scope whose reduction kind matches the op; ``reduce_mean``
multiplies the body by ``1 / count`` (a constant unless dims are symbolic).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..ir.expr import Access, Expr, Iter, IterDef, Scope
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


def _register(name: str) -> None:
    fn, reducer, doc = REDUCES[name]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        axes = reduced_axes(x.ndim, a)
        out = fn(x, axis=axes, keepdims=abool(a, "keepdims"))
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
