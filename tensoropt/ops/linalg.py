"""Contractions: matmul (NumPy semantics), gemm (ONNX), batch_matmul (strict 3-D).

Cost: 2 flops per multiply-add; gemm adds 2 per output element for
``beta * C``. Exprs are one ``Sum`` scope over the inner dim; gemm's ``C``
needs an enclosing scope because it sits outside the reduction.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ShapeError, TensoroptError
from ..ir.cost import expr_flops
from ..ir.expr import Access, Expr, Iter, IterDef, Scope
from ..ir.graph import Attrs
from ..ir.types import Dim, Shape, TensorType
from .common import bcast_index, bcast_read, io_bytes, need_rank, same_dtype, trav
from .common import abool, afloat, astr
from .registry import AttrSpec, Cost, OpRules, register
from .shapes import broadcast, broadcast_to, fmt_shape, numel1

# -- matmul -------------------------------------------------------------------------


def _mm_parts(ts: Sequence[TensorType]) -> tuple[Shape, Shape, Shape]:
    """(batch shape, A as >= 2-D, B as >= 2-D): 1-D operands get a unit dim.

    NumPy rule: a 1-D A is ``[1, K]``, a 1-D B is ``[K, 1]``; the unit dim is
    dropped from the result.
    """
    a, b = ts
    for i, t in enumerate(ts):
        if t.rank == 0:
            raise ShapeError(f"input {i} has shape [], expected at least 1-D")
    ash = a.shape if a.rank >= 2 else (1,) + a.shape
    bsh = b.shape if b.rank >= 2 else b.shape + (1,)
    if ash[-1] != bsh[-2]:
        kdim = b.rank - 2 if b.rank >= 2 else 0
        raise ShapeError(
            f"input 1 has shape {fmt_shape(b.shape)}, expected dim {kdim} == {ash[-1]} "
            f"(inner dim of input 0 {fmt_shape(a.shape)})"
        )
    batch = broadcast([ash[:-2], bsh[:-2]])
    return batch, ash, bsh


def _mm_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    same_dtype(ts, [1])
    batch, ash, bsh = _mm_parts(ts)
    out = batch + (ash[-2:-1] if ts[0].rank >= 2 else ()) + (bsh[-1:] if ts[1].rank >= 2 else ())
    return [TensorType(ts[0].dtype, out)]


def _mm_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    batch, ash, bsh = _mm_parts(ts)
    out = _mm_infer(ts, a)[0].shape
    defs, its = trav(out)
    nb = len(batch)
    k = Iter("k")
    rows: tuple[Expr, ...] = (its[nb],) if ts[0].rank >= 2 else ()
    cols: tuple[Expr, ...] = (its[-1],) if ts[1].rank >= 2 else ()
    ai = bcast_index(ash[:-2], batch, its[:nb]) + rows + (k,)
    bi = bcast_index(bsh[:-2], batch, its[:nb]) + (k,) + cols
    return Scope(defs, (IterDef("k", ash[-1]),), Access(names[0], ai) * Access(names[1], bi))


def _mm_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    k = ts[0].shape[-1]
    return Cost(2 * numel1(outs[0].shape) * (k if isinstance(k, int) else 1), io_bytes(ts, outs))


register(OpRules(
    name="matmul", category="compute", inputs=(2, 2), infer=_mm_infer,
    eval=lambda xs, a: [np.matmul(xs[0], xs[1])], expr=_mm_expr, cost=_mm_cost,
    doc="NumPy matmul: batch dims broadcast, 1-D operands get a dropped unit dim",
))

# -- batch_matmul ---------------------------------------------------------------------


def _bmm_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_rank(ts, 0, 3, "B, M, K")
    need_rank(ts, 1, 3, "B, K, N")
    same_dtype(ts, [1])
    (b, m, k), (b2, k2, n) = ts[0].shape, ts[1].shape
    if (b2, k2) != (b, k):
        raise ShapeError(f"input 1 has shape {fmt_shape(ts[1].shape)}, expected 3-D with "
                         f"dim 0 == {b} and dim 1 == {k} (input 0 is {fmt_shape(ts[0].shape)})")
    return [TensorType(ts[0].dtype, (b, m, n))]


def _bmm_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    defs, (b, m, n) = trav(_bmm_infer(ts, a)[0].shape)
    k = Iter("k")
    return Scope(defs, (IterDef("k", ts[0].shape[2]),),
                 Access(names[0], (b, m, k)) * Access(names[1], (b, k, n)))


register(OpRules(
    name="batch_matmul", category="compute", inputs=(2, 2), infer=_bmm_infer,
    eval=lambda xs, a: [np.matmul(xs[0], xs[1])], expr=_bmm_expr, cost=_mm_cost,
    doc="[B, M, K] x [B, K, N] -> [B, M, N], no broadcasting",
))

# -- gemm -------------------------------------------------------------------------------


def _gemm_dims(ts: Sequence[TensorType], a: Attrs) -> tuple[Dim, Dim, Dim]:
    """(M, K, N) after the transposes, with input 1 checked against input 0."""
    need_rank(ts, 0, 2, "M, K or K, M with trans_a")
    ta, tb = abool(a, "trans_a"), abool(a, "trans_b")
    m, k = ts[0].shape[::-1] if ta else ts[0].shape
    kdim = 1 if tb else 0
    b = ts[1]
    if b.rank != 2 or b.shape[kdim] != k:
        raise ShapeError(f"input 1 has shape {fmt_shape(b.shape)}, expected 2-D with "
                         f"dim {kdim} == {k}" + (" (trans_b)" if tb else ""))
    n = b.shape[1 - kdim]
    return m, k, n


def _gemm_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    same_dtype(ts, range(1, len(ts)))
    m, k, n = _gemm_dims(ts, a)
    if len(ts) == 3:
        broadcast_to(ts[2].shape, (m, n), 2)
    return [TensorType(ts[0].dtype, (m, n))]


def _gemm_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0].T if abool(a, "trans_a") else xs[0]
    w = xs[1].T if abool(a, "trans_b") else xs[1]
    y = afloat(a, "alpha") * (x @ w)
    if len(xs) == 3:
        y = y + afloat(a, "beta") * xs[2]
    return [y.astype(xs[0].dtype, copy=False)]


def _gemm_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    m, k, n = _gemm_dims(ts, a)
    alpha, beta = afloat(a, "alpha"), afloat(a, "beta")
    defs, (i, j) = trav((m, n), "j" if len(ts) == 3 else "i")
    kk = Iter("k")
    x = Access(names[0], (kk, i) if abool(a, "trans_a") else (i, kk))
    w = Access(names[1], (j, kk) if abool(a, "trans_b") else (kk, j))
    body: Expr = x * w if alpha == 1.0 else x * w * alpha
    prod = Scope(defs, (IterDef("k", k),), body)
    if len(ts) == 2:
        return prod
    odefs, its = trav((m, n))
    c: Expr = bcast_read(names[2], ts[2].shape, (m, n), its)
    return Scope(odefs, (), Access(prod, tuple(its)) + (c if beta == 1.0 else c * beta))


def _gemm_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    m, k, n = (d if isinstance(d, int) else 1 for d in _gemm_dims(ts, a))
    return Cost(2 * m * k * n + (2 * m * n if len(ts) == 3 else 0), io_bytes(ts, outs))


register(OpRules(
    name="gemm", category="compute", inputs=(2, 3), infer=_gemm_infer, eval=_gemm_eval,
    expr=_gemm_expr, cost=_gemm_cost,
    attrs=(AttrSpec("alpha", "float", 1.0), AttrSpec("beta", "float", 1.0),
           AttrSpec("trans_a", "bool", False), AttrSpec("trans_b", "bool", False)),
    doc="ONNX Gemm: alpha * A' @ B' + beta * C (C broadcast to [M, N])",
))


# -- einsum -------------------------------------------------------------------------
# The registry face of einsum sugar: the Expr is exactly ``einsum_to_expr``, so
# every einsum a frontend meets is visible to the derivation engine.


def _einsum_scope(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    from ..ir.einsum import einsum_to_expr

    try:
        return einsum_to_expr(astr(a, "equation"), [(n, t.shape) for n, t in zip(names, ts)])
    except TensoroptError as e:
        raise ShapeError(str(e)) from None


def _einsum_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    same_dtype(ts, range(1, len(ts)))
    s = _einsum_scope([f"in{k}" for k in range(len(ts))], ts, a)
    return [TensorType(ts[0].dtype, s.shape)]


def _einsum_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    return [np.asarray(np.einsum(astr(a, "equation"), *xs, optimize=True)).astype(xs[0].dtype, copy=False)]


def _einsum_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    # The Expr's own count: per iteration point, one flop per multiply of the
    # operands plus one for the reduction when there is one. So a contraction
    # costs 2 per multiply-add (as matmul), a pure permutation 0 and an
    # elementwise product n-1; symbolic extents count as 1 (like ``numel1``).
    s = _einsum_scope([f"in{k}" for k in range(len(ts))], ts, a)
    return Cost(expr_flops(s, symbol_size=1), io_bytes(ts, outs))


register(OpRules(
    name="einsum", category="compute", inputs=(1, None), infer=_einsum_infer, eval=_einsum_eval,
    expr=_einsum_scope, cost=_einsum_cost,
    attrs=(AttrSpec("equation", "str", doc='NumPy/ONNX einsum spec, e.g. "bik,bkj->bij"'),),
    doc="Einstein summation (NumPy/ONNX Einsum); its Expr is the einsum sugar",
))
