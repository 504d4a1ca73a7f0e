"""Data-dependent indexing: element and N-d gathers and scatters (ONNX semantics).

``gather_elements``, ``scatter_elements``, ``gather_nd`` and ``scatter_nd``
read or write positions named by a run-time integer tensor, so their
indices are not affine in any iterator: like ``gather`` they are movement ops
without an Expr. Invariants shared by all four:

- Indices are i64 or i32 and may be negative (counted from the end, as ONNX
  allows); an index outside ``[-n, n)`` is an :class:`EvalError` naming it,
  never a silent wrap or clamp.
- Scatters copy ``data`` and apply updates in row-major order of the index
  tensor, so with ``reduction="none"`` the last write to a position wins and
  ``add``/``mul``/``max``/``min`` fold every duplicate (ONNX's reference order).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import EvalError, ShapeError
from ..ir.graph import Attrs
from ..ir.types import Dim, TensorType
from .common import aint, choice, movement_cost, need_int, need_numeric, same_dtype
from .registry import AttrSpec, EvalFn, InferFn, OpRules, register
from .shapes import fmt_shape, norm_axis

REDUCTIONS = ("none", "add", "mul", "max", "min")

#: reduction -> the unbuffered ufunc that folds duplicates in index order.
_FOLD: dict[str, np.ufunc] = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _reg(name: str, infer: InferFn, ev: EvalFn, inputs: tuple[int, int], attrs: tuple[AttrSpec, ...],
         doc: str) -> None:
    register(OpRules(name=name, category="movement", inputs=inputs, infer=infer, eval=ev, expr=None,
                     cost=movement_cost, attrs=attrs, doc=doc))


def normalized(idx: np.ndarray, size: int, what: str) -> np.ndarray:
    """``idx`` with negatives counted from the end; EvalError outside ``[-size, size)``."""
    idx = np.asarray(idx, dtype=np.int64)
    bad = (idx < -size) | (idx >= size)
    if np.any(bad):
        raise EvalError(f"index {int(idx[bad].flat[0])} out of range for {what} of size {size}")
    return np.where(idx < 0, idx + size, idx)


def _fits(small: Sequence[Dim], big: Sequence[Dim], what: str) -> None:
    """Each static dim of ``small`` is at most the matching dim of ``big``."""
    for k, (s, b) in enumerate(zip(small, big)):
        if isinstance(s, int) and isinstance(b, int) and s > b:
            raise ShapeError(f"{what}: dim {k} is {s}, larger than {b}")


def _scatter_rows(out: np.ndarray, rows: np.ndarray, upd: np.ndarray, reduction: str) -> None:
    """``out[rows[i]] (op)= upd[i]`` in order of ``i``; ``out`` and ``upd`` are 2-D."""
    if reduction == "none":
        # Last write wins: keep each row's last occurrence (first in reverse order).
        rev = rows[::-1]
        uniq, first = np.unique(rev, return_index=True)
        out[uniq] = upd[::-1][first]
        return
    _FOLD[reduction].at(out, rows, upd)


# -- gather_elements / scatter_elements ----------------------------------------------------


def _elements_infer(scatter: bool) -> InferFn:
    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        data, idx = ts[0], ts[1]
        need_int(ts, 1)
        norm_axis(aint(a, "axis"), data.rank)
        if idx.rank != data.rank:
            raise ShapeError(f"input 1 has shape {fmt_shape(idx.shape)}, expected rank {data.rank} "
                             f"(same as input 0 shape {fmt_shape(data.shape)})")
        ax = norm_axis(aint(a, "axis"), data.rank)
        others = [k for k in range(data.rank) if k != ax]
        _fits([idx.shape[k] for k in others], [data.shape[k] for k in others], "input 1 (indices)")
        if not scatter:
            return [TensorType(data.dtype, idx.shape)]
        same_dtype(ts, [2])
        if ts[2].shape != idx.shape:
            raise ShapeError(f"input 2 has shape {fmt_shape(ts[2].shape)}, expected "
                             f"{fmt_shape(idx.shape)} (same as input 1, the indices)")
        if choice(a, "reduction", REDUCTIONS) != "none":
            need_numeric(ts, 0, f"reduction={a['reduction']}")
        return [data]

    return infer


def _element_index(data: np.ndarray, idx: np.ndarray, ax: int) -> tuple[np.ndarray, ...]:
    """Full index grids into ``data``: position ``p`` of ``idx`` with axis ``ax`` replaced."""
    grids: list[np.ndarray] = list(np.indices(idx.shape, sparse=True))
    grids[ax] = normalized(idx, data.shape[ax], f"axis {ax}")
    return tuple(grids)


def _gather_elements_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    data, idx = xs
    ax = norm_axis(aint(a, "axis"), data.ndim)
    return [data[_element_index(data, idx, ax)]]


def _scatter_elements_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    data, idx, upd = xs
    ax = norm_axis(aint(a, "axis"), data.ndim)
    out = np.array(data, order="C")  # a fresh C-order copy, so reshape gives a view
    grids = np.broadcast_arrays(*_element_index(data, idx, ax))
    rows = np.ravel_multi_index(tuple(g.reshape(-1) for g in grids), data.shape)
    flat = out.reshape(-1, 1)  # a view: out is contiguous
    _scatter_rows(flat, rows, upd.reshape(-1, 1), str(a["reduction"]))
    return [out]


_AXIS = AttrSpec("axis", "int", 0)
_REDUCTION = AttrSpec("reduction", "str", "none", "none, add, mul, max or min")

_reg("gather_elements", _elements_infer(False), _gather_elements_eval, (2, 2), (_AXIS,),
     "ONNX GatherElements: out[p] = data[p with axis replaced by indices[p]]")
_reg("scatter_elements", _elements_infer(True), _scatter_elements_eval, (3, 3), (_AXIS, _REDUCTION),
     "ONNX ScatterElements: data with data[p with axis replaced by indices[p]] (op)= updates[p]")

# -- gather_nd / scatter_nd ------------------------------------------------------------------


def _depth(idx: TensorType) -> int:
    k = idx.shape[-1] if idx.rank else None
    if not isinstance(k, int):
        raise ShapeError(f"input 1 has shape {fmt_shape(idx.shape)}: the last dim (index depth) "
                         "must be static")
    return k


def _gather_nd_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_int(ts, 1)
    data, idx = ts[0], ts[1]
    b = aint(a, "batch_dims")
    if idx.rank < 1 or not 0 <= b < min(data.rank, idx.rank):
        raise ShapeError(f"batch_dims={b} must be below both ranks (input 0 {fmt_shape(data.shape)}, "
                         f"input 1 {fmt_shape(idx.shape)})")
    k = _depth(idx)
    if not 1 <= k <= data.rank - b:
        raise ShapeError(f"input 1 index depth {k} must be in 1..{data.rank - b} "
                         f"(rank of input 0 minus batch_dims)")
    if data.shape[:b] != idx.shape[:b]:
        raise ShapeError(f"batch dims differ: input 0 {fmt_shape(data.shape)}, input 1 "
                         f"{fmt_shape(idx.shape)} (first {b})")
    return [TensorType(data.dtype, idx.shape[:-1] + data.shape[b + k:])]


def _gather_nd_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    data, idx = xs
    b = aint(a, "batch_dims")
    k = idx.shape[-1]
    cols = tuple(normalized(idx[..., j], data.shape[b + j], f"axis {b + j}") for j in range(k))
    # Batch axis j of the index tensor pairs with batch axis j of data.
    batch = tuple(np.arange(d).reshape((-1,) + (1,) * (idx.ndim - 2 - j)) for j, d in enumerate(idx.shape[:b]))
    return [data[batch + cols]]


def _scatter_nd_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_int(ts, 1)
    same_dtype(ts, [2])
    data, idx, upd = ts
    k = _depth(idx)
    if not 1 <= k <= data.rank:
        raise ShapeError(f"input 1 index depth {k} must be in 1..{data.rank} (rank of input 0)")
    want = idx.shape[:-1] + data.shape[k:]
    if upd.shape != want:
        raise ShapeError(f"input 2 has shape {fmt_shape(upd.shape)}, expected {fmt_shape(want)} "
                         "(indices dims but the last, then the data dims they do not index)")
    if choice(a, "reduction", REDUCTIONS) != "none":
        need_numeric(ts, 0, f"reduction={a['reduction']}")
    return [data]


def _scatter_nd_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    data, idx, upd = xs
    k = idx.shape[-1]
    out = np.array(data, order="C")  # a fresh C-order copy, so reshape gives a view
    cols = tuple(normalized(idx[..., j], data.shape[j], f"axis {j}").reshape(-1) for j in range(k))
    rows = np.ravel_multi_index(cols, data.shape[:k]) if k else np.zeros(0, np.int64)
    view = out.reshape((int(np.prod(data.shape[:k])), -1))  # each row: one indexed slice
    _scatter_rows(view, rows, upd.reshape(len(rows), -1), str(a["reduction"]))
    return [out]


_reg("gather_nd", _gather_nd_infer, _gather_nd_eval, (2, 2),
     (AttrSpec("batch_dims", "int", 0, "leading dims shared by data and indices"),),
     "ONNX GatherND: slices of data at the index tuples in the last dim of indices")
_reg("scatter_nd", _scatter_nd_infer, _scatter_nd_eval, (3, 3), (_REDUCTION,),
     "ONNX ScatterND: data with the slices at the index tuples replaced or reduced by updates")
