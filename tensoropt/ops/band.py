"""Banded (sliding-window) attention products, as in Longformer.

Two ops over a band of ``2 * width + 1`` row offsets around each row ``i``;
offset ``w`` in ``[0, 2W]`` names row ``i + D * (w - W)`` of the other operand
(``W``: ``width``, ``D``: ``dilation``):

- ``g2bmm(A, B)``: ``A, B: [b, m, k] -> Y: [b, m, 2W+1]``,
  ``Y[b, i, w] = sum_k A[b, i, k] * B[b, i + D*(w - W), k]`` (banded Q @ K^T).
- ``gbmm(P, V)``: ``P: [b, m, 2W+1], V: [b, m, n] -> Y: [b, m, n]``,
  ``Y[b, i, j] = sum_w P[b, i, w] * V[b, i + D*(w - W), j]`` (banded probs @ V).

Invariants:
- Rows of the banded operand outside ``[0, m)`` read 0; in the Expr this is
  the out-of-bounds rule of accesses, so the band edge needs no guard.
- Inputs are float and of one dtype; the output has that dtype.
- ``b``, ``m``, ``k`` and ``n`` may be symbolic; the band ``2W+1`` is static
  (it comes from the ``width`` attribute), so ``gbmm``'s ``P`` must have it
  as an int dim 2.
- Eval loops over the ``2W+1`` offsets only, never over rows.
- Cost counts the whole band (edge rows included), 2 flops per multiply-add,
  as the Expr does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ShapeError
from ..ir.expr import Access, Expr, Iter, IterDef, Scope
from ..ir.graph import Attrs
from ..ir.types import Dim, TensorType
from .common import aint, io_bytes, lin, need_float, need_rank, same_dtype, trav
from .registry import AttrSpec, Cost, OpRules, register
from .shapes import fmt_shape, numel1

BAND_ATTRS = (
    AttrSpec("width", "int", doc="W >= 0: the band has 2W+1 row offsets, -W..W"),
    AttrSpec("dilation", "int", 1, doc="D >= 1: offset w reads row i + D*(w - W)"),
)

# -- shared band arithmetic ------------------------------------------------------------


def band_params(a: Attrs) -> tuple[int, int]:
    """``(width, dilation)``, checked: ShapeError unless ``W >= 0`` and ``D >= 1``."""
    w, d = aint(a, "width"), aint(a, "dilation")
    if w < 0:
        raise ShapeError(f"attribute width={w} must be >= 0")
    if d < 1:
        raise ShapeError(f"attribute dilation={d} must be >= 1")
    return w, d


def band_size(a: Attrs) -> int:
    """``2W + 1``: the number of row offsets in the band."""
    w, _ = band_params(a)
    return 2 * w + 1


def band_row(i: Expr, w: Expr, a: Attrs) -> Expr:
    """The banded operand's row for row ``i`` at offset ``w``: ``i + D*w - D*W``."""
    width, dil = band_params(a)
    return lin([(i, 1), (w, dil)], -dil * width)


def band_rows(m: int, shift: int) -> tuple[slice, slice]:
    """Rows ``i`` of ``[0, m)`` whose partner ``i + shift`` is also in ``[0, m)``,
    and those partners, as slices (both empty when ``|shift| >= m``)."""
    lo, hi = max(0, -shift), min(m, m - shift)
    if hi <= lo:
        return slice(0, 0), slice(0, 0)
    return slice(lo, hi), slice(lo + shift, hi + shift)


def band_shifts(a: Attrs) -> list[tuple[int, int]]:
    """``(w, D*(w - W))`` for every offset of the band, in order."""
    width, dil = band_params(a)
    return [(w, dil * (w - width)) for w in range(2 * width + 1)]


def _same_batch_rows(ts: Sequence[TensorType]) -> None:
    """Input 1 has input 0's dims 0 and 1 (batch and rows)."""
    (b, m), (b2, m2) = ts[0].shape[:2], ts[1].shape[:2]
    if (b2, m2) != (b, m):
        raise ShapeError(f"input 1 has shape {fmt_shape(ts[1].shape)}, expected dim 0 == {b} and "
                         f"dim 1 == {m} (input 0 is {fmt_shape(ts[0].shape)})")


def _check_inputs(ts: Sequence[TensorType], what0: str, what1: str) -> None:
    """Both inputs 3-D, float, of one dtype, with the same batch and rows."""
    need_rank(ts, 0, 3, what0)
    need_rank(ts, 1, 3, what1)
    need_float(ts, 0)
    same_dtype(ts, [1])
    _same_batch_rows(ts)


def _band_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], inner: Dim) -> Cost:
    """2 flops per multiply-add: each output element sums ``inner`` products."""
    n = inner if isinstance(inner, int) else 1
    return Cost(2 * numel1(outs[0].shape) * n, io_bytes(ts, outs))


# -- g2bmm -------------------------------------------------------------------------------


def _g2bmm_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    _check_inputs(ts, "B, M, K", "B, M, K")
    if ts[1].shape[2] != ts[0].shape[2]:
        raise ShapeError(f"input 1 has shape {fmt_shape(ts[1].shape)}, expected "
                         f"{fmt_shape(ts[0].shape)} (same as input 0)")
    b, m, _ = ts[0].shape
    return [TensorType(ts[0].dtype, (b, m, band_size(a)))]


def _g2bmm_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x, y = xs
    b, m, _ = x.shape
    out = np.zeros((b, m, band_size(a)), x.dtype)
    for w, shift in band_shifts(a):
        rows, partners = band_rows(m, shift)
        out[:, rows, w] = np.einsum("bik,bik->bi", x[:, rows], y[:, partners])
    return [out]


def _g2bmm_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    defs, (b, i, w) = trav(_g2bmm_infer(ts, a)[0].shape)
    k = Iter("k")
    body = Access(names[0], (b, i, k)) * Access(names[1], (b, band_row(i, w, a), k))
    return Scope(defs, (IterDef("k", ts[0].shape[2]),), body)


register(OpRules(
    name="g2bmm", category="compute", inputs=(2, 2), infer=_g2bmm_infer, eval=_g2bmm_eval,
    expr=_g2bmm_expr, cost=lambda ts, outs, a: _band_cost(ts, outs, ts[0].shape[2]),
    attrs=BAND_ATTRS,
    doc="banded A @ B^T: [b, m, k] x [b, m, k] -> [b, m, 2W+1], Y[b,i,w] = A[b,i,:] . B[b,i+D*(w-W),:]",
))

# -- gbmm ---------------------------------------------------------------------------------


def _gbmm_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    _check_inputs(ts, "B, M, 2W+1", "B, M, N")
    band = band_size(a)
    if ts[0].shape[2] != band:
        width, _ = band_params(a)
        raise ShapeError(f"input 0 has shape {fmt_shape(ts[0].shape)}, expected dim 2 == {band} "
                         f"(2*width+1, width={width})")
    b, m, n = ts[1].shape
    return [TensorType(ts[0].dtype, (b, m, n))]


def _gbmm_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    p, v = xs
    m = p.shape[1]
    out = np.zeros(v.shape, v.dtype)
    for w, shift in band_shifts(a):
        rows, partners = band_rows(m, shift)
        out[:, rows] += p[:, rows, w, None] * v[:, partners]
    return [out]


def _gbmm_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    defs, (b, i, j) = trav(_gbmm_infer(ts, a)[0].shape)
    w = Iter("w")
    body = Access(names[0], (b, i, w)) * Access(names[1], (b, band_row(i, w, a), j))
    return Scope(defs, (IterDef("w", band_size(a)),), body)


register(OpRules(
    name="gbmm", category="compute", inputs=(2, 2), infer=_gbmm_infer, eval=_gbmm_eval,
    expr=_gbmm_expr, cost=lambda ts, outs, a: _band_cost(ts, outs, band_size(a)),
    attrs=BAND_ATTRS,
    doc="banded P @ V: [b, m, 2W+1] x [b, m, n] -> [b, m, n], Y[b,i,:] = sum_w P[b,i,w] * V[b,i+D*(w-W),:]",
))
