"""TE lowerings for the ops the generic Expr lowering cannot handle.

These ops have no Expr (data-dependent indices, dtype conversion, sorting) or
have several outputs (``split``). Each lowering takes the node's inputs as TE
tensors (int64 shapes, possibly symbolic ``tirx.Var`` dims), the output
shapes and TVM dtype strings, and the attributes with defaults filled in, and
returns one ``te.Tensor`` per output. Semantics are those of the op's NumPy
``eval`` in ``tensoropt/ops`` (the oracle).

Out-of-range indices are a user error (the reference raises), but a compiled
kernel must not read or write out of bounds: every data-dependent index is
wrapped like the reference (negative counts from the end) and then clamped into
``[0, size)``, so a bad index yields some in-bounds element, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tvm import te, tirx
from tvm.tirx import Expr as PrimExpr  # 0.27 has no PrimExpr class; Expr is the base

from ..ir.graph import Attrs
from ..ir.types import DTYPES
from ..ops.common import abool, aint, aints, astr
from ..ops.shapes import norm_axis

TELowering = Callable[
    [Sequence[te.Tensor], Sequence[tuple[PrimExpr, ...]], Sequence[str], Attrs], list[te.Tensor]
]

_I64 = "int64"


def _dtype(e: PrimExpr) -> str:
    """The dtype of a scalar expression (0.27 keeps it in ``e.ty``; ``.dtype`` is for buffers)."""
    return str(e.ty.dtype)


def _i64(e: PrimExpr) -> PrimExpr:
    return e if _dtype(e) == _I64 else e.astype(_I64)


def _index(i: PrimExpr, size: PrimExpr) -> PrimExpr:
    """A run-time index into a dim of ``size``: negatives wrapped, then clamped into range.

    ``size == 0`` clamps to 0; callers guard such reads with :func:`_guarded`.
    """
    i = _i64(i)
    size = _i64(size)
    i = tirx.Select(i < 0, i + size, i)
    return tirx.max(tirx.min(i, size - 1), tirx.const(0, _I64))


def _guarded(sizes: Sequence[PrimExpr], read: Callable[[], PrimExpr], dtype: str) -> PrimExpr:
    """``read()``, or 0 when one of the indexed ``sizes`` may be 0 at run time.

    An empty indexed dim with a non-empty output only arises from bad indices;
    the guard is free when the sizes are static and positive.
    """
    maybe_empty = [s for s in sizes if not (isinstance(s, tirx.IntImm) and s.value > 0)]
    if not maybe_empty:
        return read()
    cond = maybe_empty[0] > 0
    for s in maybe_empty[1:]:
        cond = tirx.And(cond, s > 0)
    return tirx.if_then_else(cond, read(), tirx.const(0, dtype))


def _axis(a: Attrs, rank: int) -> int:
    return norm_axis(aint(a, "axis"), rank)


# -- cast ------------------------------------------------------------------------------------


def _float_to_unsigned(x: PrimExpr, dtype: str) -> PrimExpr:
    """Whole floats -> unsigned ``dtype`` modulo 2**width; non-finite values give 0.

    Mirrors ``interp._to_unsigned``: the remainder by 2**width is exact in
    float64, and it is brought into int64's range before the wrapping int cast.
    """
    bits = int(dtype[4:])
    w = float(2**bits)
    x = x.astype("float64")
    x = tirx.Select(tirx.isfinite(x), x, tirx.const(0.0, "float64"))
    r = x - tirx.trunc(x / w) * w  # fmod(x, w), exact
    if bits == 64:
        r = tirx.Select(r >= 2.0**63, r - w, r)
        r = tirx.Select(r < -(2.0**63), r + w, r)
    return tirx.trunc(r).astype(_I64).astype(dtype)


def _float_to_signed(x: PrimExpr, dtype: str) -> PrimExpr:
    """Floats -> signed ``dtype``, truncating toward zero, defined for every input.

    As NumPy on x86 (cvttsd2si): narrow ints convert through int32 and wrap; a
    value out of int32 (int64 for i64) range, or NaN, gives that type's minimum.
    LLVM's plain fptosi would leave those cases undefined.
    """
    via = _I64 if dtype == _I64 else "int32"
    lim = 2.0 ** (int(via[3:]) - 1)
    x = x.astype("float64")
    ok = tirx.And(x >= -lim, x < lim)  # false for NaN
    v = tirx.Select(ok, tirx.trunc(x), tirx.const(-lim, "float64")).astype(via)
    return v if via == dtype else v.astype(dtype)


def _cast_value(x: PrimExpr, dtype: str) -> PrimExpr:
    src = _dtype(x)
    if src == dtype:
        return x
    if src.startswith("float") and dtype.startswith("uint"):
        return _float_to_unsigned(x, dtype)
    if src.startswith("float") and dtype.startswith("int"):
        return _float_to_signed(x, dtype)
    # int <-> int wraps or extends, anything -> bool is != 0 (NaN -> True),
    # bool/int -> float rounds to nearest: TVM's casts do exactly that.
    return x.astype(dtype)


def lower_cast(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
               dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``cast``: NumPy ``astype`` to ``a["to"]``.

    float -> signed int truncates toward zero (out of range or NaN: see
    :func:`_float_to_signed`); float -> unsigned wraps modulo 2**width
    (non-finite -> 0, as the interpreter's ``_to_unsigned``); -> bool is
    ``x != 0`` with NaN true; int -> int wraps or extends.
    """
    (x,) = ins
    to = str(DTYPES[astr(a, "to")])
    return [te.compute(shapes[0], lambda *p: _cast_value(x(*p), to), name="cast")]


# -- gathers ---------------------------------------------------------------------------------


def lower_gather(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
                 dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``gather`` (ONNX Gather): ``out[o, j, i] = data[o, idx[j], i]`` along ``axis``.

    Negative indices count from the end; out-of-range ones are clamped.
    """
    data, idx = ins
    ax = _axis(a, len(data.shape))
    r = len(idx.shape)
    n = data.shape[ax]

    def f(*p: PrimExpr) -> PrimExpr:
        def read() -> PrimExpr:
            j = _index(idx(*p[ax:ax + r]), n)
            return data(*p[:ax], j, *p[ax + r:])
        return _guarded([n], read, data.dtype)

    return [te.compute(shapes[0], f, name="gather")]


def lower_embedding(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
                    dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``embedding``: ``out[p, d] = table[ids[p], d]`` for a ``[V, D]`` table.

    Ids outside ``[0, V)`` are errors in the reference; here negative ones wrap
    and all are clamped, so the kernel stays in bounds.
    """
    table, ids = ins
    v = table.shape[0]

    def f(*p: PrimExpr) -> PrimExpr:
        return _guarded([v], lambda: table(_index(ids(*p[:-1]), v), p[-1]), table.dtype)

    return [te.compute(shapes[0], f, name="embedding")]


def lower_gather_elements(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
                          dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``gather_elements`` (ONNX GatherElements): ``out[p] = data[p with axis := idx[p]]``."""
    data, idx = ins
    ax = _axis(a, len(data.shape))
    n = data.shape[ax]

    def f(*p: PrimExpr) -> PrimExpr:
        def read() -> PrimExpr:
            return data(*p[:ax], _index(idx(*p), n), *p[ax + 1:])
        return _guarded([n], read, data.dtype)

    return [te.compute(shapes[0], f, name="gather_elements")]


def lower_gather_nd(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
                    dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``gather_nd`` (ONNX GatherND) with ``batch_dims`` b.

    ``idx`` is ``B + Y + [k]``; ``out[bt, y, s] = data[bt, idx[bt, y, 0], ...,
    idx[bt, y, k-1], s]`` where the first b axes of data and idx pair up.
    """
    data, idx = ins
    b = aint(a, "batch_dims")
    k = int(idx.shape[-1])
    ny = len(idx.shape) - 1  # batch + Y axes of the output
    sizes = [data.shape[b + j] for j in range(k)]

    def f(*p: PrimExpr) -> PrimExpr:
        def read() -> PrimExpr:
            cols = [_index(idx(*p[:ny], tirx.const(j, _I64)), sizes[j]) for j in range(k)]
            return data(*p[:b], *cols, *p[ny:])
        return _guarded(sizes, read, data.dtype)

    return [te.compute(shapes[0], f, name="gather_nd")]


# -- scatters (sequential: an extern TIR loop nest over a copy of data) ---------------------


def _loops(extents: Sequence[PrimExpr], body: Callable[[list[tirx.Var]], tirx.Stmt],
           parallel_outer: bool = False) -> tirx.Stmt:
    """A row-major loop nest over ``extents`` around ``body(vars)``."""
    vs = [tirx.Var(f"i{d}", _I64) for d in range(len(extents))]
    stmt = body(vs)
    for d in reversed(range(len(extents))):
        kind = tirx.ForKind.PARALLEL if parallel_outer and d == 0 else tirx.ForKind.SERIAL
        stmt = tirx.For(vs[d], tirx.const(0, _I64), _i64(extents[d]), kind, stmt)
    return stmt


def _fold(reduction: str, cur: PrimExpr, upd: PrimExpr) -> PrimExpr:
    """``cur (op) upd`` as NumPy's ufunc: max/min propagate NaN like np.maximum/minimum."""
    if reduction == "none":
        return upd
    if reduction == "add":
        return cur + upd
    if reduction == "mul":
        return cur * upd
    better = cur > upd if reduction == "max" else cur < upd
    if _dtype(cur).startswith("float"):
        return tirx.Select(tirx.Or(better, tirx.isnan(cur)), cur, upd)
    return tirx.Select(better, cur, upd)


def _copy(src: tirx.Buffer, dst: tirx.Buffer) -> tirx.Stmt:
    if not src.shape:
        return tirx.BufferStore(dst, tirx.BufferLoad(src, []), [])
    return _loops(src.shape, lambda v: tirx.BufferStore(dst, tirx.BufferLoad(src, v), v),
                  parallel_outer=True)


def _buffers(ts: Sequence[te.Tensor]) -> list[tirx.Buffer]:
    """Compact buffers for an extern's inputs.

    te.extern's default ones carry a free ``elem_offset`` variable; passed to a
    packed function (topk) with an input computed in the same PrimFunc, it is
    left unbound and the build fails.
    """
    return [tirx.decl_buffer(t.shape, str(t.dtype), f"{t.op.name}_buf") for t in ts]


def _scatter(name: str, ins: Sequence[te.Tensor], out_shape: tuple[PrimExpr, ...],
             body: Callable[[tirx.Buffer, tirx.Buffer, tirx.Buffer, tirx.Buffer], tirx.Stmt]
             ) -> te.Tensor:
    """``out = copy(data)`` then ``body(data, idx, upd, out)``, as one extern op."""
    out = te.extern(
        [out_shape], list(ins),
        lambda bi, bo: tirx.SeqStmt([_copy(bi[0], bo[0]), body(bi[0], bi[1], bi[2], bo[0])]),
        name=name, dtype=str(ins[0].dtype), in_buffers=_buffers(ins))
    return out if isinstance(out, te.Tensor) else out[0]


def lower_scatter_elements(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
                           dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``scatter_elements`` (ONNX ScatterElements), reduction none/add/mul/max/min.

    ``out = data``, then for each position ``p`` of ``idx`` in row-major order
    ``out[p with axis := idx[p]] (op)= upd[p]``: duplicates fold in order and
    with ``none`` the last write wins. Indices wrap and are clamped.
    """
    ax = _axis(a, len(ins[0].shape))
    red = astr(a, "reduction")

    def body(data: tirx.Buffer, idx: tirx.Buffer, upd: tirx.Buffer, out: tirx.Buffer) -> tirx.Stmt:
        n = data.shape[ax]

        def store(p: list[tirx.Var]) -> tirx.Stmt:
            q = [*p[:ax], _index(tirx.BufferLoad(idx, p), n), *p[ax + 1:]]
            return tirx.BufferStore(out, _fold(red, tirx.BufferLoad(out, q), tirx.BufferLoad(upd, p)), q)

        # Duplicates share every non-axis coordinate, so an outer non-axis loop may run in parallel.
        stmt = _loops(idx.shape, store, parallel_outer=ax != 0)
        return tirx.IfThenElse(n > 0, stmt, None)

    return [_scatter("scatter_elements", ins, shapes[0], body)]


def lower_scatter_nd(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
                     dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``scatter_nd`` (ONNX ScatterND), reduction none/add/mul/max/min.

    ``idx`` is ``Y + [k]``; ``out = data``, then for each ``y`` in row-major
    order the slice ``out[idx[y, 0], ..., idx[y, k-1], :] (op)= upd[y, :]``
    (later duplicates win with ``none``). Indices wrap and are clamped.
    """
    red = astr(a, "reduction")

    def body(data: tirx.Buffer, idx: tirx.Buffer, upd: tirx.Buffer, out: tirx.Buffer) -> tirx.Stmt:
        k = int(idx.shape[-1])
        ys, rest = list(idx.shape[:-1]), list(data.shape[k:])

        def store(v: list[tirx.Var]) -> tirx.Stmt:
            y, s = v[:len(ys)], v[len(ys):]
            cols = [_index(tirx.BufferLoad(idx, [*y, tirx.const(j, _I64)]), data.shape[j]) for j in range(k)]
            q = [*cols, *s]
            return tirx.BufferStore(out, _fold(red, tirx.BufferLoad(out, q), tirx.BufferLoad(upd, v)), q)

        cond = None
        for j in range(k):
            c = data.shape[j] > 0
            cond = c if cond is None else tirx.And(cond, c)
        return tirx.IfThenElse(cond, _loops(ys + rest, store), None)

    return [_scatter("scatter_nd", ins, shapes[0], body)]


# -- split -----------------------------------------------------------------------------------


def lower_split(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
                dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``split``: output i is ``x[..., start_i : start_i + split[i], ...]`` along ``axis``."""
    (x,) = ins
    ax = _axis(a, len(x.shape))
    sizes = aints(a, "split")

    def part(i: int, shape: tuple[PrimExpr, ...], start: int) -> te.Tensor:
        off = tirx.const(start, _I64)
        return te.compute(shape, lambda *p: x(*p[:ax], p[ax] + off, *p[ax + 1:]), name=f"split{i}")

    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [part(i, shape, start) for i, (shape, start) in enumerate(zip(shapes, starts))]


# -- topk ------------------------------------------------------------------------------------

#: key dtype for each input dtype: one that tvm.contrib.sort.topk accepts and that
#: orders the values exactly (see :func:`_sort_key`).
_KEY_DTYPE = {
    "int8": "int8", "uint8": "uint8", "int32": "int32", "int64": "int64",
    "int16": "int32", "uint16": "int32", "uint32": "int64", "uint64": "int64",
    "float16": "int32", "float32": "int32", "float64": "int64",
}


def _sort_key(x: PrimExpr) -> PrimExpr:
    """An integer with the same order as ``x`` (and equal exactly when the values are).

    Floats: the IEEE bits as a signed int with the magnitude bits of negatives
    flipped; -0.0 maps to +0.0's key (they compare equal) and every NaN to the
    top key (the reference's argsort puts NaN above +inf). u64: the bits with
    the sign bit flipped.
    """
    dt = _dtype(x)
    key_dt = _KEY_DTYPE[dt]
    if dt.startswith("float"):
        w = int(dt[5:])
        ib = f"int{w}"
        bits = tirx.reinterpret(ib, x)
        low = tirx.const(2 ** (w - 1) - 1, ib)
        key = tirx.bitwise_xor(bits, tirx.bitwise_and(tirx.shift_right(bits, tirx.const(w - 1, ib)), low))
        key = tirx.Select(x == tirx.const(0, dt), tirx.const(0, ib), key)
        key = tirx.Select(tirx.isnan(x), low, key)
        return key.astype(key_dt)
    if dt == "uint64":
        return tirx.bitwise_xor(tirx.reinterpret(_I64, x), tirx.const(-(2**63), _I64))
    return x.astype(key_dt)


def lower_topk(ins: Sequence[te.Tensor], shapes: Sequence[tuple[PrimExpr, ...]],
               dtypes: Sequence[str], a: Attrs) -> list[te.Tensor]:
    """``topk``: the k largest (or smallest) values along ``axis`` and their i64 indices.

    Values come out sorted (best first) whatever ``sorted`` says; ties go to
    the lower index first; NaN counts as larger than +inf; -0.0 equals 0.0.
    Uses the runtime's ``tvm.contrib.sort.topk`` (a heap, O(n log k) per row)
    on an order-preserving integer key, then gathers the values by index.
    """
    (x,) = ins
    ax = _axis(a, len(x.shape))
    k = aint(a, "k")
    vshape, ishape = shapes
    if k == 0:  # the runtime reads k < 1 as "all"
        return [te.compute(vshape, lambda *p: tirx.const(0, str(x.dtype)), name="topk_values"),
                te.compute(ishape, lambda *p: tirx.const(0, _I64), name="topk_indices")]
    key = te.compute(x.shape, lambda *p: _sort_key(x(*p)), name="topk_key")
    ascending = not abool(a, "largest")
    indices = te.extern(
        [ishape], [key],
        lambda bi, bo: tirx.call_packed("tvm.contrib.sort.topk", bi[0], bo[0], k, ax, "indices",
                                        ascending),
        name="topk_indices", dtype=_I64, in_buffers=_buffers([key]))
    n = x.shape[ax]
    values = te.compute(
        vshape, lambda *p: x(*p[:ax], _index(indices(*p), n), *p[ax + 1:]), name="topk_values")
    return [values, indices]


LOWERINGS: dict[str, TELowering] = {
    "cast": lower_cast,
    "embedding": lower_embedding,
    "gather": lower_gather,
    "gather_elements": lower_gather_elements,
    "gather_nd": lower_gather_nd,
    "scatter_elements": lower_scatter_elements,
    "scatter_nd": lower_scatter_nd,
    "split": lower_split,
    "topk": lower_topk,
}
