"""TE lowerings for the attribute cases where an op's Expr is None.

Some ops have an Expr for their common attributes only: ``pad`` in reflect
or edge mode (indices are not affine), ``resize`` other than nearest by
integer factors (weighted taps), and any op whose output is empty (no
iterator can write it). Each entry here takes the node's input/output types
and attributes and returns ``(tables, fn)`` or None (not handled):
``tables`` are NumPy arrays computed at compile time from static shapes
(resize's tap indices and weights, by the op's own ``axis_taps``, so the
kernel and the reference cannot disagree on coordinates), passed to the
kernel as constants after the node's inputs; ``fn(*inputs, *tables)`` builds
the TE tensors.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from tvm import te, tirx

from ..ir.graph import Attrs
from ..ir.types import TensorType
from .lower_expr import i64

TEFn = Callable[..., list[te.Tensor]]
Fallback = Callable[[Sequence[TensorType], Sequence[TensorType], Sequence[str], Sequence[tuple], Attrs],
                    "tuple[list[np.ndarray], TEFn] | None"]


def _empty(ins: Sequence[TensorType], outs: Sequence[TensorType], dtypes: Sequence[str],
           shapes: Sequence[tuple], a: Attrs) -> tuple[list[np.ndarray], TEFn] | None:
    """An output with a zero-size dim: nothing to compute, only the shape."""
    if not all(any(d == 0 for d in t.shape) for t in outs):
        return None

    def zeros(dt: str) -> Callable[..., tirx.PrimExpr]:
        return lambda *ax: tirx.const(0, dt)

    def fn(*xs: te.Tensor) -> list[te.Tensor]:
        return [te.compute(s, zeros(dt), name="empty") for s, dt in zip(shapes, dtypes)]

    return [], fn


def _pad(ins: Sequence[TensorType], outs: Sequence[TensorType], dtypes: Sequence[str],
         shapes: Sequence[tuple], a: Attrs) -> tuple[list[np.ndarray], TEFn] | None:
    """``pad`` in reflect mode (mirror without repeating the edge) or edge mode (repeat it)."""
    mode = a["mode"]
    if mode not in ("reflect", "edge"):
        return None
    t = ins[0]
    pads = tuple(a["pads"])  # type: ignore[arg-type]
    begins = pads[: t.rank]

    def src(i: tirx.PrimExpr, b: int, n: tirx.PrimExpr) -> tirx.PrimExpr:
        j = i - i64(b)
        if mode == "edge":
            return tirx.max(tirx.min(j, n - i64(1)), i64(0))
        period = tirx.max(i64(2) * (n - i64(1)), i64(1))
        m = tirx.floormod(j, period)
        return tirx.max(n - i64(1) - tirx.abs(m - (n - i64(1))), i64(0))

    def fn(x: te.Tensor) -> list[te.Tensor]:
        return [te.compute(shapes[0], lambda *ax: x(*[src(i, b, n) for i, b, n in zip(ax, begins, x.shape)]),
                           name="pad")]

    return [], fn


def _resize(ins: Sequence[TensorType], outs: Sequence[TensorType], dtypes: Sequence[str],
            shapes: Sequence[tuple], a: Attrs) -> tuple[list[np.ndarray], TEFn] | None:
    """``resize``: per resized axis, a weighted sum over taps read through index tables."""
    from ..ops.resize import _is_identity, _plan, axis_taps

    t = ins[0]
    if not t.is_static:
        return None
    plan, tables, shape = [], [], list(t.shape)
    for ax, out, scale, roi in _plan(t, a):
        if _is_identity(shape[ax], out, scale, roi, a):
            continue
        idx, w, extrap = axis_taps(shape[ax], out, scale, roi, a)
        if a["mode"] == "nearest":
            pick = np.argmax(w, axis=1)
            idx = idx[np.arange(out), pick][:, None]
            w = np.ones_like(idx, dtype=np.float64)
        mask = (np.zeros(out, bool) if extrap is None else extrap).astype(np.float64)
        plan.append((ax, out, idx.shape[1]))
        tables += [idx.astype(np.int64), w.astype(np.float64), mask]
        shape[ax] = out
    fill = float(a["extrapolation_value"])  # type: ignore[arg-type]
    out_dtype = dtypes[0]

    def fn(x: te.Tensor, *tabs: te.Tensor) -> list[te.Tensor]:
        y: te.Tensor = te.compute(x.shape, lambda *ax: tirx.Cast("float64", x(*ax)), name="resize_in")
        for k, (axis, out, taps) in enumerate(plan):
            idx, w, mask = tabs[3 * k: 3 * k + 3]
            y = _resize_axis(y, idx, w, mask, axis, out, taps, fill)

        last = y

        def final(*ax: tirx.Var) -> tirx.PrimExpr:
            v = last(*ax)
            if out_dtype.startswith("float"):
                return tirx.Cast(out_dtype, v)
            lo, hi = np.iinfo(np.dtype(out_dtype)).min, np.iinfo(np.dtype(out_dtype)).max
            r = tirx.nearbyint(v)
            r = tirx.max(tirx.min(r, tirx.const(float(hi), "float64")), tirx.const(float(lo), "float64"))
            return tirx.Cast(out_dtype, r)

        return [te.compute(y.shape, final, name="resize")]

    return tables, fn


def _resize_axis(y: te.Tensor, idx: te.Tensor, w: te.Tensor, mask: te.Tensor, axis: int, out: int,
                 taps: int, fill: float) -> te.Tensor:
    """One resized axis: ``sum_tap y[.., idx[o, tap], ..] * w[o, tap]``, ``fill`` where extrapolated."""
    new_shape = list(y.shape)
    new_shape[axis] = i64(out)
    r = te.reduce_axis((i64(0), i64(taps)), name="tap")

    def step(*ax: tirx.Var) -> tirx.PrimExpr:
        at = list(ax)
        at[axis] = idx[ax[axis], r]
        return te.sum(y(*at) * w[ax[axis], r], axis=r)

    summed = te.compute(new_shape, step, name="resize_taps")

    def filled(*ax: tirx.Var) -> tirx.PrimExpr:
        return tirx.Select(mask[ax[axis]] != tirx.const(0.0, "float64"), tirx.const(fill, "float64"), summed(*ax))

    return te.compute(new_shape, filled, name="resize_fill")


#: op -> fallback lowering for attribute cases its Expr does not cover.
FALLBACKS: dict[str, Fallback] = {"pad": _pad, "resize": _resize}
#: tried for every op whose Expr is None.
GENERIC_FALLBACKS: tuple[Fallback, ...] = (_empty,)
