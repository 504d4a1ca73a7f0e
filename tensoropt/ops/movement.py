"""Data movement: reshape-like ops, slicing, concatenation, gathers, casts.

Affine movement ops get an Expr (index arithmetic only: ``//`` and ``%`` by
constants for reshape, shifted out-of-bounds reads for concat and pad).
Data-dependent ones (``gather``, ``embedding``) and ``cast`` return None.
Cost: no flops; bytes = inputs + outputs.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from ..errors import EvalError, ShapeError
from ..ir.expr import Access, Const, Expr, IterDef, Scope
from ..ir.graph import Attrs
from ..ir.types import DTYPES, Dim, Shape, TensorType
from .common import (bcast_read, choice, lin, movement_cost, need_int, need_rank, same_dtype,
                     shape_only, trav)
from .common import afloat, aint, aints, astr
from .registry import AttrSpec, EvalFn, ExprFn, InferFn, OpRules, register
from .shapes import broadcast, dim_product, fmt_shape, norm_axes, norm_axis


def _reg(name: str, infer: InferFn, ev: EvalFn, expr: ExprFn | None, attrs: tuple[AttrSpec, ...] = (),
         inputs: tuple[int, int | None] = (1, 1), num_outputs: int | None = 1, doc: str = "") -> None:
    register(OpRules(name=name, category="movement", inputs=inputs, infer=infer, eval=ev,
                     expr=expr, cost=movement_cost, attrs=attrs, num_outputs=num_outputs, doc=doc))


# -- reshape-like ---------------------------------------------------------------------


def reshape_scope(name: str, src: Shape, dst: Shape) -> Scope | None:
    """``L[dst] { %name[...] }`` reading ``src`` in row-major order.

    Equal leading and trailing dims index straight through (that is how
    symbolic dims survive); the differing middle is re-indexed through its
    flat offset, which needs static sizes, else None.
    """
    defs, its = trav(dst)
    p = 0
    while p < min(len(src), len(dst)) and src[p] == dst[p]:
        p += 1
    q = 0
    while q < min(len(src), len(dst)) - p and src[-1 - q] == dst[-1 - q]:
        q += 1
    mid_src, mid_dst = src[p : len(src) - q], dst[p : len(dst) - q]
    if not all(isinstance(d, int) for d in mid_src + mid_dst):
        return None
    strides = [int(np.prod(mid_dst[k + 1 :], dtype=np.int64)) for k in range(len(mid_dst))]
    flat = lin([(its[p + k], s) for k, s in enumerate(strides)])
    idx: list[Expr] = list(its[:p])
    for k, d in enumerate(mid_src):
        stride = int(np.prod(mid_src[k + 1 :], dtype=np.int64))
        if d == 1:
            idx.append(Const(0))
            continue
        e = flat if stride == 1 else flat // stride
        idx.append(e if k == 0 else e % d)  # the flat offset never exceeds dim 0
    idx += its[len(dst) - q :]
    return Scope(defs, (), Access(name, tuple(idx)))


def reshape_target(src: Shape, spec: Sequence[int]) -> Shape:
    """ONNX reshape: 0 copies the input dim, -1 is inferred (at most one)."""
    out: list[Dim | None] = []
    hole = None
    for k, s in enumerate(spec):
        if s == 0:
            if k >= len(src):
                raise ShapeError(f"shape={list(spec)}: 0 at position {k} has no input dim to copy "
                                 f"(input 0 has shape {fmt_shape(src)})")
            out.append(src[k])
        elif s == -1:
            if hole is not None:
                raise ShapeError(f"shape={list(spec)} has more than one -1")
            hole = k
            out.append(None)
        elif s < -1:
            raise ShapeError(f"shape={list(spec)} has a negative size {s}")
        else:
            out.append(s)
    known = [d for d in out if d is not None]
    in_syms = Counter(d for d in src if isinstance(d, str))
    out_syms = Counter(d for d in known if isinstance(d, str))
    in_n = int(np.prod([d for d in src if isinstance(d, int)], dtype=np.int64))
    out_n = int(np.prod([d for d in known if isinstance(d, int)], dtype=np.int64))
    bad = ShapeError(f"cannot reshape input 0 of shape {fmt_shape(src)} to shape={list(spec)}")
    if out_syms - in_syms:
        raise bad
    left = in_syms - out_syms
    if hole is None:
        if left or in_n != out_n:
            raise bad
        return tuple(known)
    if out_n == 0 or in_n % out_n:
        raise bad
    fill: Dim = in_n // out_n
    if left:
        if sum(left.values()) != 1 or fill != 1:
            raise bad  # the -1 would be a product like batch * 4
        fill = next(iter(left))
    out[hole] = fill
    return tuple(out)


def _reshape_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    return [TensorType(ts[0].dtype, reshape_target(ts[0].shape, aints(a, "shape")))]


def _as_reshape(infer: InferFn) -> ExprFn:
    """Expr rule for an op that is a reshape from input 0 to its inferred shape."""
    return lambda names, ts, a: reshape_scope(names[0], ts[0].shape, infer(ts, a)[0].shape)


_reg("reshape", _reshape_infer,
     lambda xs, a: [xs[0].reshape(reshape_target(xs[0].shape, aints(a, "shape")))],
     _as_reshape(_reshape_infer), (AttrSpec("shape", "ints", doc="0 copies, -1 infers"),),
     doc="row-major reshape (ONNX 0 / -1 rules)")


def _flatten_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    s = ts[0].shape
    ax = aint(a, "axis")
    if not -len(s) <= ax <= len(s):
        raise ShapeError(f"axis {ax} is out of range for rank {len(s)} (valid: {-len(s)}..{len(s)})")
    if ax < 0:
        ax += len(s)
    out = (dim_product(s[:ax], "input 0 leading dims"), dim_product(s[ax:], "input 0 trailing dims"))
    return [TensorType(ts[0].dtype, out)]


_reg("flatten", _flatten_infer,
     lambda xs, a: [xs[0].reshape(_flatten_infer([shape_only(xs[0])], a)[0].shape)],
     _as_reshape(_flatten_infer), (AttrSpec("axis", "int", 1),),
     doc="to 2-D: [prod(dims[:axis]), prod(dims[axis:])]")


def _squeeze_axes(t: TensorType, a: Attrs) -> tuple[int, ...]:
    axes = aints(a, "axes")
    if not axes:
        return tuple(k for k, d in enumerate(t.shape) if d == 1)
    axes = norm_axes(axes, t.rank)
    for k in axes:
        if t.shape[k] != 1:
            raise ShapeError(f"input 0 has shape {fmt_shape(t.shape)}, expected dim {k} == 1 (squeezed)")
    return axes


def _squeeze_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    axes = _squeeze_axes(ts[0], a)
    return [TensorType(ts[0].dtype, tuple(d for k, d in enumerate(ts[0].shape) if k not in axes))]


def _squeeze_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    axes = _squeeze_axes(ts[0], a)
    defs, its = trav(_squeeze_infer(ts, a)[0].shape)
    rest = iter(its)
    return Scope(defs, (), Access(names[0], tuple(
        Const(0) if k in axes else next(rest) for k in range(ts[0].rank))))


_reg("squeeze", _squeeze_infer,
     lambda xs, a: [np.squeeze(xs[0], _squeeze_axes(shape_only(xs[0]), a))],
     _squeeze_expr, (AttrSpec("axes", "ints", (), "size-1 axes to drop; [] drops all"),),
     doc="drop size-1 axes")


def _unsqueeze_axes(t: TensorType, a: Attrs) -> tuple[int, ...]:
    return norm_axes(aints(a, "axes"), t.rank + len(aints(a, "axes")))


def _unsqueeze_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    axes = _unsqueeze_axes(ts[0], a)
    rest = iter(ts[0].shape)
    shape = tuple(1 if k in axes else next(rest) for k in range(ts[0].rank + len(axes)))
    return [TensorType(ts[0].dtype, shape)]


def _unsqueeze_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    axes = _unsqueeze_axes(ts[0], a)
    defs, its = trav(_unsqueeze_infer(ts, a)[0].shape)
    return Scope(defs, (), Access(names[0], tuple(i for k, i in enumerate(its) if k not in axes)))


_reg("unsqueeze", _unsqueeze_infer,
     lambda xs, a: [np.expand_dims(xs[0], _unsqueeze_axes(shape_only(xs[0]), a))],
     _unsqueeze_expr, (AttrSpec("axes", "ints", doc="positions of new size-1 axes in the output"),),
     doc="insert size-1 axes")


def _perm(t: TensorType, a: Attrs) -> tuple[int, ...]:
    perm = aints(a, "perm") or tuple(reversed(range(t.rank)))
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"perm={list(perm)} is not a permutation of 0..{t.rank - 1} "
                         f"(input 0 has shape {fmt_shape(t.shape)})")
    return perm


def _transpose_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    perm = _perm(ts[0], a)
    return [TensorType(ts[0].dtype, tuple(ts[0].shape[p] for p in perm))]


def _transpose_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    perm = _perm(ts[0], a)
    defs, its = trav(_transpose_infer(ts, a)[0].shape)
    idx: list[Expr] = [Const(0)] * len(perm)
    for k, p in enumerate(perm):
        idx[p] = its[k]  # output dim k is input dim perm[k]
    return Scope(defs, (), Access(names[0], tuple(idx)))


_reg("transpose", _transpose_infer,
     lambda xs, a: [np.transpose(xs[0], _perm(shape_only(xs[0]), a))],
     _transpose_expr, (AttrSpec("perm", "ints", (), "output dim k is input dim perm[k]; [] reverses"),),
     doc="permute axes")


def _identity_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    defs, its = trav(ts[0].shape)
    return Scope(defs, (), Access(names[0], tuple(its)))


_reg("identity", lambda ts, a: [ts[0]], lambda xs, a: [xs[0].copy()], _identity_expr,
     doc="y = x")
_reg("dropout", lambda ts, a: [ts[0]], lambda xs, a: [xs[0].copy()], _identity_expr,
     (AttrSpec("ratio", "float", 0.5, "ignored: inference only"),),
     doc="inference dropout: y = x")

# -- expand ----------------------------------------------------------------------------


def _bcast_parts(name: str, src: Shape, dst: Shape) -> tuple[tuple[IterDef, ...], tuple[()], Expr]:
    defs, its = trav(dst)
    return defs, (), bcast_read(name, src, dst, its)


def _expand_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    target = aints(a, "shape")
    try:
        out = broadcast([ts[0].shape, target])
    except ShapeError:
        raise ShapeError(f"input 0 has shape {fmt_shape(ts[0].shape)}, which does not "
                         f"broadcast with shape={list(target)}") from None
    return [TensorType(ts[0].dtype, out)]


_reg("expand", _expand_infer,
     lambda xs, a: [np.broadcast_to(xs[0], _expand_infer([shape_only(xs[0])], a)[0]
                                    .shape).copy()],
     lambda names, ts, a: Scope(*_bcast_parts(names[0], ts[0].shape, _expand_infer(ts, a)[0].shape)),
     (AttrSpec("shape", "ints", doc="broadcast (both ways) against the input shape"),),
     doc="broadcast to a shape (ONNX Expand)")


# -- concat / split -----------------------------------------------------------------------


def _concat_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    same_dtype(ts, range(1, len(ts)))
    ref = ts[0]
    ax = norm_axis(aint(a, "axis"), ref.rank)
    for i, t in enumerate(ts[1:], 1):
        if t.rank != ref.rank or any(d != e for k, (d, e) in enumerate(zip(t.shape, ref.shape))
                                     if k != ax):
            raise ShapeError(f"input {i} has shape {fmt_shape(t.shape)}, expected "
                             f"{fmt_shape(ref.shape)} outside axis {ax}")
    sizes = [t.shape[ax] for t in ts]
    if len(ts) == 1:
        total: Dim = sizes[0]
    elif all(isinstance(d, int) for d in sizes):
        total = sum(sizes)
    else:
        raise ShapeError(f"concat along axis {ax} of symbolic sizes {sizes} cannot be written as one dim")
    return [TensorType(ref.dtype, ref.shape[:ax] + (total,) + ref.shape[ax + 1 :])]


def _concat_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    """Sum of shifted reads: each output position is in bounds of exactly one input."""
    out = _concat_infer(ts, a)[0].shape
    ax = norm_axis(aint(a, "axis"), len(out))
    defs, its = trav(out)
    body: Expr | None = None
    off = 0
    for n, t in zip(names, ts):
        idx = tuple(its[:ax]) + (lin([(its[ax], 1)], -off),) + tuple(its[ax + 1 :])
        body = Access(n, idx) if body is None else body + Access(n, idx)
        off += t.shape[ax] if isinstance(t.shape[ax], int) else 0
    assert body is not None
    return Scope(defs, (), body)


_reg("concat", _concat_infer,
     lambda xs, a: [np.concatenate(xs, axis=aint(a, "axis"))],
     _concat_expr, (AttrSpec("axis", "int"),), inputs=(1, None),
     doc="join inputs along an axis")


def _split_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    t = ts[0]
    ax = norm_axis(aint(a, "axis"), t.rank)
    sizes = aints(a, "split")
    if not sizes or min(sizes) < 0 or sum(sizes) != t.shape[ax]:
        raise ShapeError(f"split={list(sizes)} must be non-negative sizes summing to dim {ax} of "
                         f"input 0 shape {fmt_shape(t.shape)}")
    return [TensorType(t.dtype, t.shape[:ax] + (s,) + t.shape[ax + 1 :]) for s in sizes]


def _split_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    cuts = np.cumsum(aints(a, "split"))[:-1]
    return [p.copy() for p in np.split(xs[0], cuts, axis=aint(a, "axis"))]


def split_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs, index: int = 0) -> Scope:
    """Expr of output ``index`` of a split (the registry's rule gives output 0)."""
    outs = _split_infer(ts, a)
    ax = norm_axis(aint(a, "axis"), ts[0].rank)
    start = sum(aints(a, "split")[:index])
    defs, its = trav(outs[index].shape)
    idx = tuple(its[:ax]) + (lin([(its[ax], 1)], start),) + tuple(its[ax + 1 :])
    return Scope(defs, (), Access(names[0], idx))


_reg("split", _split_infer, _split_eval, split_expr,
     (AttrSpec("axis", "int", 0), AttrSpec("split", "ints", doc="output sizes along axis")),
     num_outputs=None, doc="cut along an axis into len(split) outputs")

# -- slice ---------------------------------------------------------------------------------

_BIG = 2**31 - 1  # ends at or past this mean "to the end" (ONNX exports INT64_MAX)


def slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int]:
    """ONNX clamping: (first index, count) for one sliced axis of size ``dim``."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return start, max(0, -(-(end - start) // step))
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, max(0, -(-(start - end) // -step))


def _slice_plan(t: TensorType, a: Attrs) -> dict[int, tuple[int, int, int]]:
    """axis -> (start, count, step) for each sliced axis, validated."""
    starts, ends = aints(a, "starts"), aints(a, "ends")
    axes = aints(a, "axes") or tuple(range(len(starts)))
    steps = aints(a, "steps") or (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError(f"starts, ends, axes and steps need equal lengths, got "
                         f"{len(starts)}, {len(ends)}, {len(axes)}, {len(steps)}")
    plan = {}
    for ax_raw, s, e, st in zip(axes, starts, ends, steps):
        ax = norm_axis(ax_raw, t.rank)
        if ax in plan:
            raise ShapeError(f"axes={list(axes)} repeat axis {ax}")
        if st == 0:
            raise ShapeError(f"steps={list(steps)} has a 0 step")
        d = t.shape[ax]
        if isinstance(d, str):
            if s == 0 and st == 1 and e >= _BIG:
                continue  # full-range slice of a symbolic dim: a no-op
            raise ShapeError(f"input 0 has shape {fmt_shape(t.shape)}: symbolic dim {d!r} "
                             f"can only be sliced whole")
        start, count = slice_bounds(d, s, e, st)
        plan[ax] = (start, count, st)
    return plan


def _slice_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    plan = _slice_plan(ts[0], a)
    shape = tuple(plan[k][1] if k in plan else d for k, d in enumerate(ts[0].shape))
    return [TensorType(ts[0].dtype, shape)]


def _slice_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    plan = _slice_plan(shape_only(xs[0]), a)
    idx = [slice(None)] * xs[0].ndim
    for ax, (start, count, step) in plan.items():
        stop = start + count * step
        idx[ax] = slice(start, stop if stop >= 0 else None, step)  # -1 would wrap around
    return [xs[0][tuple(idx)].copy()]


def _slice_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope | None:
    plan = _slice_plan(ts[0], a)
    if any(count == 0 for _, count, _ in plan.values()):
        return None  # an empty result has no iterator range to write
    defs, its = trav(_slice_infer(ts, a)[0].shape)
    idx = tuple(lin([(it, plan[k][2])], plan[k][0]) if k in plan else it for k, it in enumerate(its))
    return Scope(defs, (), Access(names[0], idx))


_reg("slice", _slice_infer, _slice_eval, _slice_expr,
     (AttrSpec("starts", "ints"), AttrSpec("ends", "ints"),
      AttrSpec("axes", "ints", (), "[] means 0..len(starts)-1"),
      AttrSpec("steps", "ints", (), "[] means all 1")),
     doc="strided slice with ONNX clamping (negative steps allowed)")

# -- pad -------------------------------------------------------------------------------------

_PAD_MODES = ("constant", "reflect", "edge")


def _pads(t: TensorType, a: Attrs) -> list[tuple[int, int]]:
    pads = aints(a, "pads")
    if len(pads) != 2 * t.rank:
        raise ShapeError(f"pads={list(pads)} needs {2 * t.rank} values "
                         f"(begins then ends) for input 0 shape {fmt_shape(t.shape)}")
    return list(zip(pads[: t.rank], pads[t.rank :]))


def _pad_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    choice(a, "mode", _PAD_MODES)
    out: list[Dim] = []
    for k, (d, (b, e)) in enumerate(zip(ts[0].shape, _pads(ts[0], a))):
        if isinstance(d, str):
            if b or e:
                raise ShapeError(f"input 0 has shape {fmt_shape(ts[0].shape)}: symbolic dim {d!r} "
                                 "cannot be padded")
            out.append(d)
        elif d + b + e < 0:
            raise ShapeError(f"pads crop dim {k} of input 0 shape {fmt_shape(ts[0].shape)} below 0")
        else:
            out.append(d + b + e)
    return [TensorType(ts[0].dtype, tuple(out))]


def _pad_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    pads = _pads(shape_only(x), a)
    grow = [(max(b, 0), max(e, 0)) for b, e in pads]
    mode = astr(a, "mode")
    y = (np.pad(x, grow, constant_values=afloat(a, "value")) if mode == "constant"
         else np.pad(x, grow, mode=mode))
    # Negative pads crop (ONNX allows them); apply after growing.
    crop = tuple(slice(-min(b, 0), y.shape[k] + min(e, 0)) for k, (b, e) in enumerate(pads))
    return [y[crop].astype(x.dtype, copy=False)]


def _pad_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope | None:
    if a["mode"] != "constant":
        return None  # reflect/edge indices are not affine
    pads = _pads(ts[0], a)
    defs, its = trav(_pad_infer(ts, a)[0].shape)
    idx = tuple(lin([(it, 1)], -b) for it, (b, _) in zip(its, pads))
    return Scope(defs, (), Access(names[0], idx, afloat(a, "value")))


_reg("pad", _pad_infer, _pad_eval, _pad_expr,
     (AttrSpec("pads", "ints", doc="[begin_0, ..., begin_n, end_0, ..., end_n]"),
      AttrSpec("mode", "str", "constant", "constant, reflect or edge"),
      AttrSpec("value", "float", 0.0, "fill for constant mode")),
     doc="pad (or crop, with negative pads) every axis")

# -- cast, gather, embedding -------------------------------------------------------------------


def _cast_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    to = choice(a, "to", tuple(DTYPES))
    return [TensorType(to, ts[0].shape)]


_reg("cast", _cast_infer, lambda xs, a: [xs[0].astype(DTYPES[astr(a, "to")])], None,
     (AttrSpec("to", "str", doc="target dtype short name (f32, i64, ...)"),),
     doc="convert the dtype")


def _gather_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_int(ts, 1)
    d = ts[0]
    ax = norm_axis(aint(a, "axis"), d.rank)
    return [TensorType(d.dtype, d.shape[:ax] + ts[1].shape + d.shape[ax + 1 :])]


def check_ids(ids: np.ndarray, size: int, what: str, lo: int = 0) -> None:
    """EvalError unless every id is in ``[lo, size)``: ids come from user inputs."""
    bad = (ids < lo) | (ids >= size)
    if np.any(bad):
        first = ids[bad].flat[0]
        raise EvalError(f"index {first} out of range for {what} of size {size}")


def _gather_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    data, idx = xs
    ax = norm_axis(aint(a, "axis"), data.ndim)
    n = data.shape[ax]
    check_ids(idx, n, f"axis {ax}", lo=-n)  # ONNX allows negative indices
    idx = np.where(idx < 0, idx + n, idx)
    return [np.take(data, idx, axis=ax)]


def _embedding_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    table, ids = xs
    check_ids(ids, table.shape[0], "the table's rows")  # no negative ids (as in torch)
    return [table[ids]]


_reg("gather", _gather_infer, _gather_eval, None, (AttrSpec("axis", "int", 0),), inputs=(2, 2),
     doc="ONNX Gather: pick slices along axis by integer indices")


def _embedding_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_rank(ts, 0, 2, "vocab, dim")
    need_int(ts, 1)
    return [TensorType(ts[0].dtype, ts[1].shape + (ts[0].shape[1],))]


_reg("embedding", _embedding_infer, _embedding_eval, None, inputs=(2, 2),
     doc="table [V, D] looked up by integer ids: ids.shape + [D]")
