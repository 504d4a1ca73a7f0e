"""Ops along one axis: arg-reductions, running sums/products, top-k, one-hot, triangles.

- ``argmax``/``argmin``: the index (i64) of the first extreme value along
  ``axis`` (the last with ``select_last_index``); NaN counts as the extreme,
  as in NumPy. The Expr finds the extreme with a nested ``Max``/``Min`` scope,
  then the first (``Min``) or last (``Max``) position holding it.
- ``cumsum``/``cumprod``: running sum/product along ``axis``, optionally
  ``exclusive`` (shifted by one, starting at the identity) and ``reverse``
  (from the end). The Expr reduces over a shifted read whose out-of-bounds
  positions give the identity as the pad value: no masks.
- ``topk``: the ``k`` largest (or smallest) values along ``axis`` and their
  indices, sorted, ties broken by the lower index. Data-dependent selection:
  category ``movement``, no Expr.
- ``onehot``: ``values[1]`` where ``indices == position`` along a new axis of
  size ``depth``, else ``values[0]``; indices in ``[-depth, 0)`` count from the
  end, anything else out of range matches nowhere.
- ``trilu``: the upper (``j - i >= k``) or lower (``j - i <= k``) triangle of
  the last two dims, zero elsewhere.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..errors import EvalError, ShapeError
from ..ir.expr import Access, Const, Expr, Iter, IterDef, Scope, call
from ..ir.graph import Attrs
from ..ir.types import Shape, TensorType
from .common import abool, aint, io_bytes, need_numeric, per_input_cost, per_output_cost, trav
from .registry import AttrSpec, Cost, EvalFn, ExprFn, OpRules, register
from .shapes import fmt_shape, norm_axis, numel1

# -- argmax / argmin -------------------------------------------------------------------

#: op -> (NumPy arg-reduction, Expr reducer finding the extreme value)
_ARG = {"argmax": (np.argmax, "Max"), "argmin": (np.argmin, "Min")}

_ARG_ATTRS = (AttrSpec("axis", "int", 0, "the axis reduced"),
              AttrSpec("keepdims", "bool", True, "keep the axis as size 1"),
              AttrSpec("select_last_index", "bool", False,
                       "the last position of the extreme instead of the first"))


def _arg_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_numeric(ts, 0, "an arg-reduction")
    t = ts[0]
    ax = norm_axis(aint(a, "axis"), t.rank)
    keep = abool(a, "keepdims")
    shape = tuple(1 if k == ax else d for k, d in enumerate(t.shape) if keep or k != ax)
    return [TensorType("i64", shape)]


def _arg_eval(op: str) -> EvalFn:
    fn = _ARG[op][0]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        ax = norm_axis(aint(a, "axis"), x.ndim)
        if x.shape[ax] == 0:
            raise EvalError(f"{op} of an empty axis {ax} (shape {list(x.shape)})")
        if abool(a, "select_last_index"):
            idx = x.shape[ax] - 1 - fn(np.flip(x, ax), axis=ax)
        else:
            idx = fn(x, axis=ax)
        if abool(a, "keepdims"):
            idx = np.expand_dims(idx, ax)
        return [np.asarray(idx, dtype=np.int64)]

    return ev


def _arg_expr(op: str) -> ExprFn:
    reducer = _ARG[op][1]

    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        shape = ts[0].shape
        ax = norm_axis(aint(a, "axis"), len(shape))
        n = shape[ax]
        rest = shape[:ax] + shape[ax + 1 :]

        def at(its: Sequence[Expr], k: Expr) -> Access:
            return Access(names[0], tuple(its[:ax]) + (k,) + tuple(its[ax:]))

        mdefs, ms = trav(rest, "m")
        extreme = Scope(mdefs, (IterDef("q", n),), at(ms, Iter("q")), reducer)
        defs, its = trav(shape)
        outer = list(its[:ax] + its[ax + 1 :])
        r = Iter("r")
        v = at(outer, r)
        # NaN is the extreme (NumPy's rule): the extreme scope is NaN then, and
        # ne(v, v) marks the NaN positions.
        hit = call("max", call("eq", v, Access(extreme, tuple(outer))), call("ne", v, v))
        last = abool(a, "select_last_index")
        miss = -math.inf if last else math.inf
        travs = tuple(d if k != ax else IterDef(d.name, 1) for k, d in enumerate(defs)
                      if abool(a, "keepdims") or k != ax)
        return Scope(travs, (IterDef("r", n),), call("where", hit, r, miss), "Max" if last else "Min")

    return expr


for _op in _ARG:
    register(OpRules(
        name=_op, category="compute", inputs=(1, 1), infer=_arg_infer, eval=_arg_eval(_op),
        expr=_arg_expr(_op), cost=per_input_cost(2), attrs=_ARG_ATTRS,
        doc=f"index (i64) of the {'largest' if _op == 'argmax' else 'smallest'} value along axis",
    ))


# -- cumsum / cumprod ------------------------------------------------------------------

#: op -> (NumPy running op, Expr reducer, identity: the pad of reads before the start)
_CUM: dict[str, tuple[Callable[..., np.ndarray], str, float]] = {
    "cumsum": (np.cumsum, "Sum", 0.0), "cumprod": (np.cumprod, "Prod", 1.0)}

_CUM_ATTRS = (AttrSpec("axis", "int", 0, "the axis to run along"),
              AttrSpec("exclusive", "bool", False, "leave out the element itself"),
              AttrSpec("reverse", "bool", False, "run from the end of the axis"))


def _cum_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_numeric(ts, 0, "a running sum or product")
    norm_axis(aint(a, "axis"), ts[0].rank)
    return [ts[0]]


def _cum_eval(op: str) -> EvalFn:
    fn, _, ident = _CUM[op]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        ax = norm_axis(aint(a, "axis"), x.ndim)
        rev = abool(a, "reverse")
        y = np.flip(x, ax) if rev else x
        if abool(a, "exclusive"):
            # shift by one: the identity first, the last element dropped
            first = np.full(y.shape[:ax] + (min(1, y.shape[ax]),) + y.shape[ax + 1 :], ident, x.dtype)
            y = np.concatenate([first, np.take(y, range(y.shape[ax] - 1), axis=ax)], axis=ax)
        out = fn(y, axis=ax, dtype=x.dtype)
        return [np.flip(out, ax) if rev else out]

    return ev


def _cum_expr(op: str) -> ExprFn:
    _, reducer, ident = _CUM[op]

    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        shape = ts[0].shape
        ax = norm_axis(aint(a, "axis"), len(shape))
        defs, its = trav(shape)
        k = Iter("k")
        step: Expr = k + 1 if abool(a, "exclusive") else k
        # forward reads i, i-1, ... (i-1, i-2, ... exclusive); reverse reads i, i+1, ...
        pos = its[ax] + step if abool(a, "reverse") else its[ax] - step
        idx = tuple(pos if j == ax else it for j, it in enumerate(its))
        return Scope(defs, (IterDef("k", shape[ax]),), Access(names[0], idx, ident), reducer)

    return expr


for _op in _CUM:
    register(OpRules(
        name=_op, category="compute", inputs=(1, 1), infer=_cum_infer, eval=_cum_eval(_op),
        expr=_cum_expr(_op), cost=per_input_cost(1), attrs=_CUM_ATTRS,
        doc=f"running {'sum' if _op == 'cumsum' else 'product'} along axis (exclusive, reverse)",
    ))


# -- topk ------------------------------------------------------------------------------


def _topk_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_numeric(ts, 0, "topk")
    t = ts[0]
    ax = norm_axis(aint(a, "axis"), t.rank)
    k = aint(a, "k")
    n = t.shape[ax]
    if k < 0 or (isinstance(n, int) and k > n):
        raise ShapeError(f"k={k} is out of range for axis {ax} of {fmt_shape(t.shape)} "
                         f"(valid: 0..{n})")
    shape = t.shape[:ax] + (k,) + t.shape[ax + 1 :]
    return [TensorType(t.dtype, shape), TensorType("i64", shape)]


def _topk_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    ax = norm_axis(aint(a, "axis"), x.ndim)
    k, n = aint(a, "k"), x.shape[ax]
    if k > n:
        raise EvalError(f"k={k} is more than the {n} elements along axis {ax}")
    if abool(a, "largest"):
        # Descending with ties in ascending index order: sort the reversed axis
        # stably (ascending), read it backwards, map positions back.
        order = n - 1 - np.flip(np.argsort(np.flip(x, ax), axis=ax, kind="stable"), ax)
    else:
        order = np.argsort(x, axis=ax, kind="stable")
    idx = np.take(order, range(k), axis=ax)
    return [np.take_along_axis(x, idx, axis=ax), idx.astype(np.int64)]


def _topk_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    # a comparison sort: n log n comparisons per row
    n = ts[0].shape[norm_axis(aint(a, "axis"), ts[0].rank)]
    logn = max(1, math.ceil(math.log2(n))) if isinstance(n, int) and n > 1 else 1
    return Cost(numel1(ts[0].shape) * logn, io_bytes(ts, outs))


register(OpRules(
    name="topk", category="movement", inputs=(1, 1), infer=_topk_infer, eval=_topk_eval,
    expr=None, cost=_topk_cost, num_outputs=2,
    attrs=(AttrSpec("k", "int", doc="how many values to keep"),
           AttrSpec("axis", "int", -1),
           AttrSpec("largest", "bool", True, "the largest values (else the smallest)"),
           AttrSpec("sorted", "bool", True,
                    "sorted output (the values always come sorted: any order is allowed)")),
    doc="the k largest/smallest values along axis, sorted (ties: lower index first), and their indices",
))


# -- onehot ----------------------------------------------------------------------------


def _onehot_axis(rank: int, a: Attrs) -> int:
    """The new axis' position in the output (rank + 1 dims)."""
    return norm_axis(aint(a, "axis"), rank + 1)


def _onehot_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_numeric(ts, 0, "onehot (indices)")
    if ts[1].shape != (2,):
        raise ShapeError(f"input 1 has shape {fmt_shape(ts[1].shape)}, expected [2] (off, on values)")
    depth = aint(a, "depth")
    if depth < 0:
        raise ShapeError(f"depth={depth} must be >= 0")
    ax = _onehot_axis(ts[0].rank, a)
    s = ts[0].shape
    return [TensorType(ts[1].dtype, s[:ax] + (depth,) + s[ax:])]


def _onehot_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    idx, values = xs
    depth = aint(a, "depth")
    ax = _onehot_axis(idx.ndim, a)
    pos = np.arange(depth).reshape((depth,) + (1,) * (idx.ndim - ax))
    at = np.expand_dims(idx, ax)
    hit = (at == pos) | (at == pos - depth)  # [-depth, 0) counts from the end
    return [np.where(hit, values[1], values[0]).astype(values.dtype, copy=False)]


def _onehot_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    depth = aint(a, "depth")
    ax = _onehot_axis(ts[0].rank, a)
    out: Shape = ts[0].shape[:ax] + (depth,) + ts[0].shape[ax:]
    defs, its = trav(out)
    d = its[ax]
    i = Access(names[0], tuple(its[:ax] + its[ax + 1 :]))
    hit = call("max", call("eq", i, d), call("eq", i, d - depth))
    on, off = Access(names[1], (Const(1),)), Access(names[1], (Const(0),))
    return Scope(defs, (), call("where", hit, on, off))


register(OpRules(
    name="onehot", category="compute", inputs=(2, 2), infer=_onehot_infer, eval=_onehot_eval,
    expr=_onehot_expr, cost=per_output_cost(1),
    attrs=(AttrSpec("depth", "int", doc="size of the new axis"),
           AttrSpec("axis", "int", -1, "where the new axis goes in the output")),
    doc="values[1] where indices equal the position along a new axis of size depth, else values[0]",
))


# -- trilu -----------------------------------------------------------------------------


def _trilu_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    if ts[0].rank < 2:
        raise ShapeError(f"input 0 has shape {fmt_shape(ts[0].shape)}, expected at least 2-D")
    return [ts[0]]


def _trilu_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    fn = np.triu if abool(a, "upper") else np.tril
    return [fn(xs[0], aint(a, "k"))]


def _trilu_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    defs, its = trav(ts[0].shape)
    diag = its[-1] - its[-2]  # column minus row, as a value
    keep = call("ge" if abool(a, "upper") else "le", diag, float(aint(a, "k")))
    return Scope(defs, (), call("where", keep, Access(names[0], tuple(its)), 0.0))


register(OpRules(
    name="trilu", category="compute", inputs=(1, 1), infer=_trilu_infer, eval=_trilu_eval,
    expr=_trilu_expr, cost=per_output_cost(1),
    attrs=(AttrSpec("upper", "bool", True, "keep j - i >= k (else j - i <= k)"),
           AttrSpec("k", "int", 0, "diagonal offset")),
    doc="upper or lower triangle of the last two dims (from diagonal k), zeros elsewhere",
))
