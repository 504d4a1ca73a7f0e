"""ATen rules for shapes and data movement, indexing, and tensor creation.

Views, permutes, (un)squeezes, expands, slices, selects, concatenation,
splits, pads, repeats, flips and nearest upsampling; advanced indexing,
``index_select`` and ``gather``; ``arange``/``full``/``zeros``/... over
symbolic sizes (static ones are folded before any rule runs).

Invariants: movement of an :class:`~.torch_values.Affine` tensor stays
affine (no node is added); what the registry's movement ops cannot write with
symbolic dims (a symbolic-length slice, a row of a symbolic axis, a repeat, a
flip, indexing with affine index tensors) becomes an ``expr`` node that reads
its input at affine positions (:func:`_read`); only an index that is not
affine becomes a data-dependent ``gather``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import sympy

from tensoropt.ir.expr import Access, Const, Expr, Scope
from tensoropt.ir.types import FLOAT_DTYPES, Dim, Shape
from tensoropt.ops.common import bcast_index, lin, trav
from tensoropt.ops.shapes import broadcast, expand_spec, reshape_spec

from .torch_context import Ctx, Rule, norm_axis, op_name, rule
from .torch_values import Affine, as_affine, sym_value


def _read(cx: Ctx, x: str, shape: Shape, dtype: str,
          index: Callable[[Sequence[Expr]], Sequence[Expr]]) -> str:
    """An ``expr`` node of ``shape`` whose element at ``its`` is ``x`` read at ``index(its)``."""
    defs, its = trav(shape)
    return cx.expr(Scope(defs, (), Access(x, tuple(index(its)))), dtype)


def _read_by_axis(cx: Ctx, x: str, shape: Shape, dtype: str,
                  position: Callable[[int, Dim, Expr], Expr]) -> str:
    """:func:`_read` axis by axis: ``position(k, size, it)`` is where input axis ``k``
    (of ``size``) is read at the iterator ``it`` of its output axis (aligned at the end)."""
    src = cx.b.type_of(x).shape
    lead = len(shape) - len(src)
    return _read(cx, x, shape, dtype,
                 lambda its: [position(k, d, its[lead + k]) for k, d in enumerate(src)])


# -- shapes and data movement -----------------------------------------------------------------


@rule("aten.view.default", "aten.reshape.default", "aten._reshape_alias.default")
def _view(cx: Ctx, a: dict[str, Any]) -> Any:
    src = cx.type_of(a["self"]).shape
    dst = cx.out_type().shape
    v = cx.value(a["self"])
    if src == dst:
        return v
    if isinstance(v, Affine) and [d for d in src if d != 1] == [d for d in dst if d != 1]:
        # only unit dims move: re-seat the coefficients
        nz = iter(c for d, c in zip(src, v.coefs) if d != 1)
        return Affine(dst, v.dtype, v.offset, tuple(0 if d == 1 else next(nz) for d in dst))
    if 0 in dst:
        raise cx.unsupported("reshape to a zero-size dim (reshape's 0 means 'copy the input dim')")
    spec = reshape_spec(src, dst)
    if spec is None:
        raise cx.unsupported(f"reshape {list(src)} -> {list(dst)} has several symbolic dims to infer")
    return cx.op("reshape", cx.tensor(a["self"]), shape=spec)


@rule("aten.permute.default")
def _permute(cx: Ctx, a: dict[str, Any]) -> Any:
    rank = cx.type_of(a["self"]).rank
    perm = [norm_axis(p, rank) for p in cx.ints(a["dims"])]
    v = cx.value(a["self"])
    if perm == list(range(rank)):
        return v
    if isinstance(v, Affine):
        return v.permute(perm)
    return cx.op("transpose", cx.tensor(a["self"]), perm=perm)


@rule("aten.unsqueeze.default")
def _unsqueeze(cx: Ctx, a: dict[str, Any]) -> Any:
    axis = norm_axis(cx.int_arg(a["dim"]), cx.type_of(a["self"]).rank + 1)
    v = cx.value(a["self"])
    if isinstance(v, Affine):
        return v.unsqueeze(axis)
    return cx.op("unsqueeze", cx.tensor(a["self"]), axes=[axis])


@rule("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def _squeeze(cx: Ctx, a: dict[str, Any]) -> Any:
    t = cx.type_of(a["self"])
    dims = a.get("dim")
    wanted = range(t.rank) if dims is None else [norm_axis(int(d), t.rank) for d in cx.scalar_list(dims)]
    # torch ignores listed axes whose size is not 1
    axes = sorted(k for k in set(wanted) if t.shape[k] == 1)
    v = cx.value(a["self"])
    if not axes:
        return v
    if isinstance(v, Affine):
        return v.squeeze(axes)
    return cx.op("squeeze", cx.tensor(a["self"]), axes=axes)


@rule("aten.expand.default")
def _expand(cx: Ctx, a: dict[str, Any]) -> Any:
    src, dst = cx.type_of(a["self"]).shape, cx.out_type().shape
    v = cx.value(a["self"])
    if src == dst:
        return v
    if isinstance(v, Affine):
        return v.expand(dst)
    return _broadcast_to(cx, cx.tensor(a["self"]), dst)


def _broadcast_to(cx: Ctx, x: str, dst: Shape) -> str:
    """``expand`` when the target is writable as ints, else an ``expr`` broadcast read."""
    t = cx.b.type_of(x)
    spec = expand_spec(t.shape, dst)
    if spec is None:
        return _read(cx, x, dst, t.dtype, lambda its: bcast_index(t.shape, dst, its))
    return cx.op("expand", x, shape=list(spec))


@rule("aten.cat.default")
def _cat(cx: Ctx, a: dict[str, Any]) -> str:
    out = cx.out_type()
    axis = norm_axis(cx.int_arg(a["dim"]), out.rank)
    parts = [x for x in a["tensors"] if cx.type_of(x).shape != (0,) or out.rank == 1]
    return cx.op("concat", *[cx.tensor(x, out.dtype) for x in parts], axis=axis)


@rule("aten.split_with_sizes.default")
def _split(cx: Ctx, a: dict[str, Any]) -> tuple[str, ...]:
    rank = cx.type_of(a["self"]).rank
    sizes = cx.ints(a["split_sizes"])
    assert cx.node is not None
    names = [f"{cx.node.name}_{k}" for k in range(len(sizes))]
    return tuple(cx.b.op_multi("split", cx.tensor(a["self"]), names=names,
                               axis=norm_axis(cx.int_arg(a["dim"]), rank), split=sizes))


@rule("aten.slice.Tensor")
def _slice(cx: Ctx, a: dict[str, Any]) -> Any:
    t = cx.type_of(a["self"])
    axis = norm_axis(cx.int_arg(a["dim"]), t.rank)
    out = cx.out_type()
    v = cx.value(a["self"])
    start = sym_value(cx.value(a["start"])) if a["start"] is not None else 0
    step = cx.int_arg(a["step"])
    if out.shape == t.shape:
        return v  # a whole-axis slice
    length = out.shape[axis]
    if isinstance(length, int) and isinstance(t.shape[axis], int):
        end = sym_value(cx.value(a["end"])) if a["end"] is not None else 2**63 - 1
        if not isinstance(start, int) or not isinstance(end, int):
            raise cx.unsupported("slice bounds that depend on a symbolic size")
        big = 2**31 - 1  # the registry reads ends past this as "to the end"
        return cx.op("slice", cx.tensor(a["self"]), starts=[start], ends=[min(end, big)],
                     axes=[axis], steps=[step])
    # A symbolic length taken from a static axis (position_ids[:, :seq]) or a
    # static one from a symbolic axis (x[:, :3]): the registry's slice writes
    # neither, but an affine read does.
    if not isinstance(start, int) or start < 0 or step < 1:
        raise cx.unsupported("a slice of symbolic length needs a static start >= 0 and step >= 1")
    aff = as_affine(v)
    if aff is not None:
        return aff.slice(axis, start, step, length)
    return _read(cx, cx.tensor(a["self"]), out.shape, out.dtype,
                 lambda its: [*its[:axis], lin([(its[axis], step)], start), *its[axis + 1:]])


@rule("aten.select.int")
def _select(cx: Ctx, a: dict[str, Any]) -> Any:
    t = cx.type_of(a["self"])
    axis = norm_axis(cx.int_arg(a["dim"]), t.rank)
    index = cx.int_arg(a["index"])
    size = t.shape[axis]
    if index < 0:
        if not isinstance(size, int):
            raise cx.unsupported("selecting from the end of a symbolic axis")
        index += size
    v = cx.value(a["self"])
    if isinstance(v, Affine):
        return v.slice(axis, index, 1, 1).squeeze([axis])
    if not isinstance(size, int):
        # The registry slices symbolic axes only whole: read the row directly.
        out = cx.out_type()
        return _read(cx, cx.tensor(a["self"]), out.shape, out.dtype,
                     lambda its: [*its[:axis], Const(index), *its[axis:]])
    x = cx.op("slice", cx.tensor(a["self"]), starts=[index], ends=[index + 1], axes=[axis],
              name=cx.sub("slice"))
    return cx.op("squeeze", x, axes=[axis])


@rule("aten.constant_pad_nd.default")
def _constant_pad(cx: Ctx, a: dict[str, Any]) -> str:
    t = cx.type_of(a["self"])
    return cx.op("pad", cx.tensor(a["self"]), pads=_torch_pads(cx.ints(a["pad"]), t.rank),
                 value=cx.float_arg(a["value"], 0.0))


def _torch_pads(pad: Sequence[int], rank: int) -> list[int]:
    """torch's ``[last_lo, last_hi, prev_lo, prev_hi, ...]`` as registry begins + ends."""
    begins, ends = [0] * rank, [0] * rank
    for k in range(len(pad) // 2):
        begins[rank - 1 - k], ends[rank - 1 - k] = pad[2 * k], pad[2 * k + 1]
    return begins + ends


def _pad_mode(mode: str) -> Rule:
    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        t = cx.type_of(a["self"])
        return cx.op("pad", cx.tensor(a["self"]), pads=_torch_pads(cx.ints(a["padding"]), t.rank),
                     mode=mode)

    return convert


rule("aten.reflection_pad1d.default", "aten.reflection_pad2d.default",
     "aten.reflection_pad3d.default")(_pad_mode("reflect"))
rule("aten.replication_pad1d.default", "aten.replication_pad2d.default",
     "aten.replication_pad3d.default")(_pad_mode("edge"))


@rule("aten.repeat.default")
def _repeat(cx: Ctx, a: dict[str, Any]) -> str:
    # out[i] = x[i % n] on repeated axes: an affine (mod) read.
    x = cx.tensor(a["self"])
    src = cx.b.type_of(x).shape
    out = cx.out_type()
    reps = cx.ints(a["repeats"])
    lead = len(reps) - len(src)

    def position(k: int, d: Dim, it: Expr) -> Expr:
        if reps[lead + k] == 1:
            return it
        if isinstance(d, int):
            return it % d if d > 1 else Const(0)
        raise cx.unsupported("repeating a symbolic axis")

    return _read_by_axis(cx, x, out.shape, out.dtype, position)


@rule("aten.flip.default")
def _flip(cx: Ctx, a: dict[str, Any]) -> str:
    x = cx.tensor(a["self"])
    t = cx.b.type_of(x)
    axes = {norm_axis(d, t.rank) for d in cx.ints(a["dims"])}

    def position(k: int, d: Dim, it: Expr) -> Expr:
        if k not in axes:
            return it
        if isinstance(d, int):
            return lin([(it, -1)], d - 1)
        raise cx.unsupported("flipping a symbolic axis")

    return _read_by_axis(cx, x, t.shape, t.dtype, position)


@rule("aten.upsample_nearest2d.vec", "aten.upsample_nearest2d.default")
def _upsample_nearest(cx: Ctx, a: dict[str, Any]) -> str:
    # Integer scale factors only: out[h] = x[h // s], an affine (floor-div) read.
    x = cx.tensor(a["input"])
    out = cx.out_type()

    def position(k: int, d: Dim, it: Expr) -> Expr:
        o = out.shape[k]
        if k < 2 or d == o:
            return it
        if isinstance(d, int) and isinstance(o, int) and d > 0 and o % d == 0:
            return it // (o // d)
        raise cx.unsupported(f"nearest upsampling from {d} to {o} (integer scales only)")

    return _read_by_axis(cx, x, out.shape, out.dtype, position)


# -- indexing -----------------------------------------------------------------------------------


def _affine_index(cx: Ctx, arg: Any, size: Dim | None = None) -> Affine | None:
    """``arg`` as an affine index into an axis of ``size``, or None.

    torch wraps negative indices: an index that is negative everywhere is
    shifted by a static ``size``; one that may change sign is not affine.
    """
    f = as_affine(cx.value(arg))
    if f is None or not isinstance(f.offset, int):
        return None
    lo, hi = f.bounds()
    if lo >= 0:
        return f
    if hi < 0 and isinstance(size, int):
        return f.scale_shift(1, size)
    return None


@rule("aten.index.Tensor")
def _index(cx: Ctx, a: dict[str, Any]) -> str:
    """Advanced indexing ``x[i0, i1, ...]`` (None entries keep an axis).

    Affine index tensors (``arange``-like) give an ``expr`` node with affine
    reads; one arbitrary integer index tensor gives ``gather``.
    """
    indices = list(a["indices"])
    used = [k for k, i in enumerate(indices) if i is not None]
    if any(cx.type_of(indices[k]).dtype == "bool" for k in used):
        raise cx.unsupported("boolean mask indexing (its result shape depends on the data)")
    shape = cx.type_of(a["self"]).shape
    affs = [_affine_index(cx, indices[k], shape[k]) for k in used]
    if all(f is not None for f in affs):
        return _index_affine(cx, a["self"], dict(zip(used, affs)))  # type: ignore[arg-type]
    if len(used) == 1:
        return cx.op("gather", cx.tensor(a["self"]), cx.tensor(indices[used[0]]), axis=used[0])
    raise cx.unsupported("indexing with several data-dependent index tensors")


def _index_affine(cx: Ctx, x_arg: Any, by_axis: dict[int, Affine]) -> str:
    x = cx.tensor(x_arg)
    t = cx.b.type_of(x)
    out = cx.out_type()
    axes = sorted(by_axis)
    bshape = broadcast([f.shape for f in by_axis.values()])
    adjacent = axes == list(range(axes[0], axes[-1] + 1))
    # torch puts the broadcast index dims where the indexed axes were when they
    # are adjacent, else in front.
    first = axes[0] if adjacent else 0

    def index(its: Sequence[Expr]) -> list[Expr]:
        b_its = its[first:first + len(bshape)]
        rest = iter([*its[:first], *its[first + len(bshape):]])
        idx: list[Expr] = []
        for k in range(t.rank):
            if k in by_axis:
                f = by_axis[k]
                idx.append(f.index(bcast_index(f.shape, bshape, b_its)))
            else:
                idx.append(next(rest))
        return idx

    return _read(cx, x, out.shape, out.dtype, index)


@rule("aten.index_select.default")
def _index_select(cx: Ctx, a: dict[str, Any]) -> str:
    rank = cx.type_of(a["self"]).rank
    return cx.op("gather", cx.tensor(a["self"]), cx.tensor(a["index"]),
                 axis=norm_axis(cx.int_arg(a["dim"]), rank))


@rule("aten.gather.default")
def _gather(cx: Ctx, a: dict[str, Any]) -> str:
    """torch.gather (ONNX GatherElements): only with an affine index."""
    f = _affine_index(cx, a["index"])
    if f is None:
        rank = cx.type_of(a["self"]).rank
        return cx.op("gather_elements", cx.tensor(a["self"]), cx.tensor(a["index"]),
                     axis=norm_axis(cx.int_arg(a["dim"]), rank))
    x = cx.tensor(a["self"])
    t = cx.b.type_of(x)
    axis = norm_axis(cx.int_arg(a["dim"]), t.rank)
    return _read(cx, x, f.shape, t.dtype,
                 lambda its: [f.index(its) if k == axis else its[k] for k in range(t.rank)])


# -- tensor creation with symbolic sizes (static ones are folded) ----------------------------


@rule("aten.arange.start_step", "aten.arange.start", "aten.arange.default")
def _arange(cx: Ctx, a: dict[str, Any]) -> Affine:
    out = cx.out_type()
    start = cx.scalar(a["start"]) if "start" in a and a["start"] is not None else 0
    step = cx.scalar(a.get("step", 1)) or 1
    if not isinstance(start, int) or not isinstance(step, int):
        raise cx.unsupported("a float arange of symbolic length")
    return Affine(out.shape, out.dtype, start, (step,))


@rule("aten.full.default", "aten.full_like.default", "aten.empty.memory_format",
      "aten.empty_strided.default", "aten.zeros.default", "aten.ones.default")
def _full(cx: Ctx, a: dict[str, Any]) -> Affine | str:
    # A constant fill is affine with zero coefficients.
    out = cx.out_type()
    name = op_name(cx.node.target) if cx.node is not None else ""
    if "fill_value" in a and isinstance(cx.value(a["fill_value"]), sympy.Expr):
        # filled with a size (x.new_full(shape, x.shape[0])): broadcast its value
        return _broadcast_to(cx, cx.tensor(a["fill_value"], out.dtype), out.shape)
    if "fill_value" in a:
        value = cx.float_arg(a["fill_value"])
    else:
        value = 1.0 if name.startswith("aten.ones") else 0.0  # empty: any value will do
    if out.dtype in FLOAT_DTYPES:
        return Affine(out.shape, out.dtype, value, (0,) * out.rank)
    return Affine(out.shape, out.dtype, int(value), (0,) * out.rank)


@rule("aten.scalar_tensor.default")
def _scalar_tensor(cx: Ctx, a: dict[str, Any]) -> str:
    # Only reached with a symbolic value (static ones fold): torch.tensor(x.shape[0]).
    return cx.tensor(a["s"], cx.out_type().dtype)
