"""N-d window ops: 3-D convolution and pooling, max-pooling indices, transposed convolution.

Each op has one rank-generic implementation (:class:`Sweep` geometry, eval,
Expr) registered once per spatial rank, with the rank in the name like the 2-D
ops of :mod:`.nn`: ``conv3d``, ``maxpool3d``, ``avgpool3d``,
``maxpool{2,3}d_indices`` (ONNX MaxPool's Indices output),
``conv_transpose2d``, ``conv_transpose3d``. The 2-D conv/pool ops stay in
:mod:`.nn` (their geometry is 2-D specific). A fixed rank per op keeps every
rule's shapes checkable from the name; ONNX 1-D ops map onto the 2-D ones (an
extra axis of size 1), as ``conv2d`` does for 1-D Conv.

Layout is N, C, spatial... throughout. ``pads`` are all begins, then all ends
(ONNX order: ``[d_begin, h_begin, w_begin, d_end, h_end, w_end]``). Window
sizes follow :func:`tensoropt.ops.shapes.window_out`, shared with the 2-D ops,
so 2-D and 3-D pools cannot disagree about ceil mode. Spatial dims must be
static (the batch may be symbolic): a symbolic size would need ``h * 2 + 1``
style dims, which the IR cannot write.

Transposed convolution ``conv_transpose{2,3}d``: weights ``[C, F/group, k...]``
(ONNX layout). The full output along an axis has ``(in - 1) * stride +
(k - 1) * dilation + 1`` positions; ``pads`` crop it (positive) or extend it
with zeros (negative: how ONNX ``output_padding`` and a large
``output_shape`` come out). Its Expr is the gather form of the scatter:
output ``o`` reads input ``(o + pad - tap * dilation) / stride`` where that
divides exactly (a ``%`` test in the body; ``//`` in the index).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ShapeError
from ..ir.expr import Access, Expr, Iter, IterDef, Scope, call
from ..ir.graph import Attrs
from ..ir.types import Dim, TensorType
from .common import (
    abool,
    aint,
    aints,
    io_bytes,
    lin,
    need_float,
    need_numeric,
    need_rank,
    same_dtype,
    shape_only,
    trav,
)
from .registry import AttrSpec, Cost, ExprFn, InferFn, OpRules, register
from .shapes import fmt_shape, numel1, window_out

# -- geometry --------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """A window sweep over the ``rank`` trailing dims of an ``N, C, spatial...`` tensor.

    Invariant: every field has one entry per spatial axis (``pads``: two, begins
    first) and all sizes are static ints.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    out: tuple[int, ...]
    size: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.kernel)

    def lo(self, k: int) -> int:
        return self.pads[k]

    def hi(self, k: int) -> int:
        return self.pads[self.rank + k]

    def span(self, k: int) -> int:
        return (self.kernel[k] - 1) * self.dilations[k] + 1

    def extra(self, k: int) -> int:
        """Positions read past the high pad by a ceil-mode last window (0 without)."""
        reach = (self.out[k] - 1) * self.strides[k] + self.span(k)
        return max(0, reach - (self.size[k] + self.lo(k) + self.hi(k)))

    def padded(self, x: np.ndarray, value: float) -> np.ndarray:
        """``x`` padded on every spatial axis, ceil-mode overhang included."""
        widths = [(0, 0), (0, 0)] + [(self.lo(k), self.hi(k) + self.extra(k)) for k in range(self.rank)]
        return np.pad(x, widths, constant_values=value)

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """View ``[N, C, out..., kernel...]`` of the padded input (no copy)."""
        r = self.rank
        axes = tuple(range(2, 2 + r))
        v = sliding_window_view(xp, tuple(self.span(k) for k in range(r)), axis=axes)
        outs = tuple(slice(None, (self.out[k] - 1) * self.strides[k] + 1, self.strides[k]) for k in range(r))
        taps = tuple(slice(None, None, d) for d in self.dilations)
        return v[(slice(None), slice(None)) + outs + taps]

    def read_index(self, k: int, out_it: Expr, tap: Expr) -> Expr:
        """Input position along axis ``k`` read by output ``out_it`` at ``tap``."""
        return lin([(out_it, self.strides[k]), (tap, self.dilations[k])], -self.lo(k))


def _window_ints(a: Attrs, key: str, n: int) -> tuple[int, ...]:
    v = aints(a, key)
    if len(v) != n:
        raise ShapeError(f"attribute {key}={list(v)} needs {n} values, got {len(v)}")
    return v


def _static_spatial(x: TensorType, rank: int) -> tuple[int, ...]:
    spatial = x.shape[2:]
    if not all(isinstance(d, int) for d in spatial):
        raise ShapeError(f"input 0 has shape {fmt_shape(x.shape)}: {rank}-D windows need static "
                         "spatial dims")
    return tuple(int(d) for d in spatial)


def sweep_of(x: TensorType, kernel: Sequence[int], a: Attrs, ceil_mode: bool = False) -> Sweep:
    """Validate window attributes (``strides``, ``pads``, ``dilations``) against ``x``."""
    r = len(kernel)
    strides = _window_ints(a, "strides", r)
    pads = _window_ints(a, "pads", 2 * r)
    dil = _window_ints(a, "dilations", r)
    if min(strides) < 1 or min(dil) < 1 or min(kernel) < 1 or min(pads) < 0:
        raise ShapeError(f"window needs kernel, strides, dilations >= 1 and pads >= 0; got "
                         f"kernel={list(kernel)} strides={list(strides)} dilations={list(dil)} "
                         f"pads={list(pads)}")
    size = _static_spatial(x, r)
    out = tuple(window_out(size[k], kernel[k], strides[k], pads[k], pads[r + k], dil[k], ceil_mode)
                for k in range(r))
    return Sweep(tuple(kernel), strides, dil, pads, out, size)


def _window_attrs(r: int) -> tuple[AttrSpec, ...]:
    return (
        AttrSpec("strides", "ints", (1,) * r, f"{r} strides"),
        AttrSpec("pads", "ints", (0,) * (2 * r), f"{r} begins, then {r} ends"),
        AttrSpec("dilations", "ints", (1,) * r, f"{r} dilations"),
    )


def _taps(kernel: Sequence[int], prefix: str = "r") -> tuple[tuple[IterDef, ...], list[Iter]]:
    """Reduction iterators over the kernel taps (``prefix`` keeps nested scopes apart)."""
    defs = tuple(IterDef(f"{prefix}{k}", n) for k, n in enumerate(kernel))
    return defs, [Iter(d.name) for d in defs]


def _with_bias(conv: Scope, out: Sequence[Dim], bias: str) -> Scope:
    """``conv + bias[f]``: the bias sits outside the reduction, in an enclosing scope."""
    defs, its = trav(tuple(out))
    return Scope(defs, (), Access(conv, tuple(its)) + Access(bias, (its[1],)))


def _weights_static(w: TensorType, i: int = 1) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in w.shape):
        raise ShapeError(f"input {i} has shape {fmt_shape(w.shape)}, expected static weights")
    return tuple(int(d) for d in w.shape)


def _check_bias(ts: Sequence[TensorType], f: int) -> None:
    if len(ts) == 3 and ts[2].shape != (f,):
        raise ShapeError(f"input 2 has shape {fmt_shape(ts[2].shape)}, expected [{f}] (bias)")


def _work_dtype(dt: np.dtype) -> type:
    """Accumulation dtype: f16 GEMMs are slow in NumPy, so they run in f32."""
    return np.float32 if dt == np.float16 else dt.type


# -- convolution -------------------------------------------------------------------


def _conv_geometry(ts: Sequence[TensorType], a: Attrs, r: int) -> tuple[Sweep, int, int, int]:
    """(sweep, group, filters, channels per group) after checking every input."""
    need_rank(ts, 0, r + 2, "N, C, spatial...")
    need_rank(ts, 1, r + 2, "F, C / group, kernel...")
    need_float(ts, 0)
    same_dtype(ts, range(1, len(ts)))
    w = _weights_static(ts[1])
    f, cg = w[0], w[1]
    g = aint(a, "group")
    c = ts[0].shape[1]
    if g < 1 or f % g or not isinstance(c, int) or c != cg * g:
        raise ShapeError(f"group={g} must be >= 1 and divide the filters {f} (input 1 dim 0), and "
                         f"input channels {c} (input 0 dim 1) must be group * {cg} (input 1 dim 1)")
    _check_bias(ts, f)
    return sweep_of(ts[0], w[2:], a), g, f, cg


def _conv_infer(r: int) -> InferFn:
    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        sw, _, f, _ = _conv_geometry(ts, a, r)
        return [TensorType(ts[0].dtype, (ts[0].shape[0], f) + sw.out)]

    return infer


def conv_nd_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    """im2col + one batched matmul per group, for any spatial rank."""
    x, w = xs[0], xs[1]
    dt = x.dtype
    work = _work_dtype(dt)
    x, w = x.astype(work, copy=False), w.astype(work, copy=False)
    r = x.ndim - 2
    g = aint(a, "group")
    sw = sweep_of(shape_only(x), w.shape[2:], a)
    n, f, cg = x.shape[0], w.shape[0], w.shape[1]
    ktot, p = math.prod(w.shape[2:]), math.prod(sw.out)
    view = sw.windows(sw.padded(x, 0.0))  # [N, C, out..., kernel...]
    perm = (0, 1) + tuple(range(2 + r, 2 + 2 * r)) + tuple(range(2, 2 + r))
    cols = view.transpose(perm).reshape(n, g, cg * ktot, p)
    out = np.matmul(w.reshape(g, f // g, cg * ktot), cols).reshape((n, f) + sw.out)
    if len(xs) == 3:
        out += xs[2].astype(work, copy=False).reshape((1, f) + (1,) * r)
    return [out.astype(dt, copy=False)]


def _conv_expr(r: int) -> ExprFn:
    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        sw, g, f, cg = _conv_geometry(ts, a, r)
        out = (ts[0].shape[0], f) + sw.out
        defs, its = trav(out, "j" if len(ts) == 3 else "i")
        n, fo, sp = its[0], its[1], its[2:]
        c = Iter("c")
        tdefs, taps = _taps(sw.kernel)
        # Filter fo belongs to group fo // (F/g), which reads channels [g' * C/g, (g'+1) * C/g).
        cin = c if g == 1 else (fo // (f // g)) * cg + c
        xr = Access(names[0], (n, cin) + tuple(sw.read_index(k, sp[k], taps[k]) for k in range(r)))
        wr = Access(names[1], (fo, c) + tuple(taps))
        conv = Scope(defs, (IterDef("c", cg),) + tdefs, xr * wr)
        return conv if len(ts) == 2 else _with_bias(conv, out, names[2])

    return expr


def _conv_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    macs = numel1(outs[0].shape) * numel1(ts[1].shape[1:])
    return Cost(2 * macs + (numel1(outs[0].shape) if len(ts) == 3 else 0), io_bytes(ts, outs))


# -- pooling --------------------------------------------------------------------------


def _pool_sweep(t: TensorType, a: Attrs, r: int) -> Sweep:
    return sweep_of(t, _window_ints(a, "kernel", r), a, abool(a, "ceil_mode"))


def _pool_infer(op: str, r: int) -> InferFn:
    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        need_rank(ts, 0, r + 2, "N, C, spatial...")
        need_numeric(ts, 0, op)
        return [TensorType(ts[0].dtype, ts[0].shape[:2] + _pool_sweep(ts[0], a, r).out)]

    return infer


def _lowest(dt: np.dtype) -> float:
    return -np.inf if np.issubdtype(dt, np.floating) else float(np.iinfo(dt).min)


def _kernel_axes(r: int) -> tuple[int, ...]:
    return tuple(range(2 + r, 2 + 2 * r))


def _maxpool_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    r = x.ndim - 2
    sw = _pool_sweep(shape_only(x), a, r)
    return [sw.windows(sw.padded(x, _lowest(x.dtype))).max(axis=_kernel_axes(r))]


def pool_counts(sw: Sweep, include_pad: bool) -> np.ndarray:
    """Divisor per output position ``[out...]``: taps on the input, plus the
    explicit pads when ``include_pad``; never the ceil-mode overhang."""
    r = sw.rank
    shape = tuple(sw.size[k] + sw.lo(k) + sw.hi(k) + sw.extra(k) for k in range(r))
    mask = np.zeros((1, 1) + shape)
    if include_pad:
        counted = tuple(slice(0, sw.size[k] + sw.lo(k) + sw.hi(k)) for k in range(r))
    else:
        counted = tuple(slice(sw.lo(k), sw.lo(k) + sw.size[k]) for k in range(r))
    mask[(slice(None), slice(None)) + counted] = 1.0
    return sw.windows(mask).sum(axis=_kernel_axes(r))[0, 0]


def _avgpool_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    r = x.ndim - 2
    sw = _pool_sweep(shape_only(x), a, r)
    sums = sw.windows(sw.padded(x, 0.0)).sum(axis=_kernel_axes(r))
    return [(sums / pool_counts(sw, abool(a, "count_include_pad"))).astype(x.dtype, copy=False)]


def _pool_reads(name: str, t: TensorType, sw: Sweep, pad: float, prefix: str,
                tap_prefix: str = "r") -> tuple[tuple[IterDef, ...], tuple[IterDef, ...], Access]:
    defs, its = trav(t.shape[:2] + sw.out, prefix)
    tdefs, taps = _taps(sw.kernel, tap_prefix)
    idx = tuple(sw.read_index(k, its[2 + k], taps[k]) for k in range(sw.rank))
    return defs, tdefs, Access(name, (its[0], its[1]) + idx, pad)


def _maxpool_expr(r: int) -> ExprFn:
    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        defs, sums, read = _pool_reads(names[0], ts[0], _pool_sweep(ts[0], a, r), -math.inf, "i")
        return Scope(defs, sums, read, "Max")

    return expr


def _in_range(e: Expr, lo: int, hi: int) -> Expr:
    """1.0 where ``lo <= e < hi`` else 0.0 (iterators are numbers in a body)."""
    return call("ge", e, lo) * call("lt", e, hi)


def _avgpool_expr(r: int) -> ExprFn:
    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        sw = _pool_sweep(ts[0], a, r)
        include = abool(a, "count_include_pad")
        counts = pool_counts(sw, include)
        if counts.size and counts.min() == counts.max() and counts.flat[0] > 0:
            # The common case: one divisor everywhere folds into the sum.
            defs, sums, read = _pool_reads(names[0], ts[0], sw, 0.0, "i")
            return Scope(defs, sums, read * (1.0 / float(counts.flat[0])))
        # Borders count fewer positions: divide by a count scope over the taps.
        defs, sums, read = _pool_reads(names[0], ts[0], sw, 0.0, "j")
        total = Scope(defs, sums, read)
        qdefs = tuple(IterDef(f"q{k}", sw.out[k]) for k in range(r))
        qs = [Iter(d.name) for d in qdefs]
        _, taps = _taps(sw.kernel)
        ok: Expr | None = None
        for k in range(r):
            lo, hi = (-sw.lo(k), sw.size[k] + sw.hi(k)) if include else (0, sw.size[k])
            term = _in_range(sw.read_index(k, qs[k], taps[k]), lo, hi)
            ok = term if ok is None else ok * term
        assert ok is not None
        cnt = Scope(qdefs, sums, ok)
        odefs, oits = trav(ts[0].shape[:2] + sw.out)
        return Scope(odefs, (), Access(total, tuple(oits)) / Access(cnt, tuple(oits[2:])))

    return expr


def _pool_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    return Cost(numel1(outs[0].shape) * math.prod(aints(a, "kernel")), io_bytes(ts, outs))


def _pool_attrs(r: int) -> tuple[AttrSpec, ...]:
    return ((AttrSpec("kernel", "ints", doc=f"{r} kernel sizes"),) + _window_attrs(r)
            + (AttrSpec("ceil_mode", "bool", False, "round the output size up"),))


# -- max pooling indices ------------------------------------------------------------------
#
# ONNX MaxPool's second output: for each window, the flat position (over the whole
# N, C, spatial tensor) of its first maximum in scan order, i.e. the smallest
# row-major position among the maxima. ``column_major`` re-encodes that position
# with the spatial axes reversed (ONNX storage_order=1); the choice stays the same.
# Padding never wins. Eval follows ONNX's scan (a later tap wins only when strictly
# greater), so a NaN counts only as a window's first valid tap; the Expr, a Min over
# the taps that equal the window's Max, agrees on every input without NaN.

_BIG = float(2**62)  # above every flat position, exact in float64


def _argmax_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    r = x.ndim - 2
    sw = _pool_sweep(shape_only(x), a, r)
    view = sw.windows(sw.padded(x, 0))  # validity decides below, not the pad value
    best = np.zeros(x.shape[:2] + sw.out, x.dtype)
    seen = np.zeros(best.shape, bool)
    pos = [np.zeros(best.shape, np.int64) for _ in range(r)]
    outs = np.indices(sw.out, sparse=True)
    for tap in itertools.product(*(range(k) for k in sw.kernel)):
        coord = [outs[k] * sw.strides[k] + tap[k] * sw.dilations[k] - sw.lo(k) for k in range(r)]
        ok = np.ones(sw.out, bool)
        for k in range(r):
            ok = ok & (coord[k] >= 0) & (coord[k] < sw.size[k])
        v = view[(Ellipsis,) + tap]
        take = ok & (~seen | (v > best))  # ONNX's scan: a later tap must be strictly greater
        best = np.where(take, v, best)
        seen |= take
        pos = [np.where(take, coord[k], pos[k]) for k in range(r)]
    n, c = x.shape[:2]
    flat = (np.arange(n * c).reshape((n, c) + (1,) * r)) * math.prod(sw.size)
    stride = 1
    for k in (range(r) if abool(a, "column_major") else reversed(range(r))):
        flat = flat + pos[k] * stride
        stride *= sw.size[k]
    return [np.asarray(flat, dtype=np.int64)]


def _argmax_infer(r: int) -> InferFn:
    pool = _pool_infer(f"maxpool{r}d_indices", r)

    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        if not isinstance(ts[0].shape[1], int):
            raise ShapeError(f"input 0 has shape {fmt_shape(ts[0].shape)}: flat positions need static channels")
        return [TensorType("i64", pool(ts, a)[0].shape)]

    return infer


def _first_max(name: str, t: TensorType, sw: Sweep, prefix: str) -> Scope:
    """Row-major flat position of each window's first maximum: a Min over matching taps."""
    r = sw.rank
    shape = tuple(int(d) for d in t.shape[1:])
    mdefs, msums, mread = _pool_reads(name, t, sw, -math.inf, "m", "q")
    top = Scope(mdefs, msums, mread, "Max")
    defs, its = trav(t.shape[:2] + sw.out, prefix)
    tdefs, taps = _taps(sw.kernel)
    spatial = [sw.read_index(k, its[2 + k], taps[k]) for k in range(r)]
    hit: Expr = call("eq", Access(name, (its[0], its[1]) + tuple(spatial), -math.inf), Access(top, tuple(its)))
    for k in range(r):
        hit = hit * _in_range(spatial[k], 0, sw.size[k])  # padding never wins
    pos: Expr = (its[0] * shape[0] + its[1]) * math.prod(shape[1:])
    for k in range(r):
        pos = pos + spatial[k] * math.prod(shape[2 + k:])
    return Scope(defs, tdefs, call("where", hit, pos, _BIG), "Min")


def _argmax_expr(r: int) -> ExprFn:
    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        sw = _pool_sweep(ts[0], a, r)
        if not abool(a, "column_major"):
            return _first_max(names[0], ts[0], sw, "i")
        # Split the row-major choice into coordinates and weigh them column-major.
        sizes = [int(d) for d in ts[0].shape[2:]]
        plane = math.prod(sizes)
        defs, its = trav(ts[0].shape[:2] + sw.out)
        p = Access(_first_max(names[0], ts[0], sw, "j"), tuple(its))
        rest = p % plane
        out: Expr = p - rest
        for k in range(r):
            coord = (rest // math.prod(sizes[k + 1:])) % sizes[k]
            out = out + coord * math.prod(sizes[:k])
        return Scope(defs, (), out)

    return expr


# -- transposed convolution ----------------------------------------------------------


@dataclass(frozen=True)
class Transposed:
    """Geometry of a transposed convolution (all static).

    ``full[k]`` is the uncropped output length along spatial axis ``k``;
    ``out[k] = full[k] - pads[k] - pads[r + k]`` (negative pads extend).
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    size: tuple[int, ...]
    group: int
    filters: int  # output channels F = group * W.shape[1]
    cg: int  # input channels per group

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def full(self) -> tuple[int, ...]:
        return tuple((self.size[k] - 1) * self.strides[k] + (self.kernel[k] - 1) * self.dilations[k] + 1
                     for k in range(self.rank))

    @property
    def out(self) -> tuple[int, ...]:
        r = self.rank
        return tuple(self.full[k] - self.pads[k] - self.pads[r + k] for k in range(r))


def _transposed(ts: Sequence[TensorType], a: Attrs, r: int) -> Transposed:
    need_rank(ts, 0, r + 2, "N, C, spatial...")
    need_rank(ts, 1, r + 2, "C, F / group, kernel...")
    need_float(ts, 0)
    same_dtype(ts, range(1, len(ts)))
    w = _weights_static(ts[1])
    g = aint(a, "group")
    c = ts[0].shape[1]
    if g < 1 or not isinstance(c, int) or c != w[0] or c % g:
        raise ShapeError(f"group={g} must be >= 1 and divide input channels {c} (input 0 dim 0), "
                         f"which must equal input 1 dim 0 ({w[0]})")
    strides = _window_ints(a, "strides", r)
    dil = _window_ints(a, "dilations", r)
    pads = _window_ints(a, "pads", 2 * r)
    if min(strides) < 1 or min(dil) < 1 or min(w[2:]) < 1:
        raise ShapeError(f"transposed conv needs kernel, strides, dilations >= 1; got "
                         f"kernel={list(w[2:])} strides={list(strides)} dilations={list(dil)}")
    tr = Transposed(w[2:], strides, dil, pads, _static_spatial(ts[0], r), g, g * w[1], c // g)
    if min(tr.out) < 1:
        raise ShapeError(f"pads={list(pads)} leave an empty output (full size {list(tr.full)})")
    _check_bias(ts, tr.filters)
    return tr


def _ct_infer(r: int) -> InferFn:
    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        tr = _transposed(ts, a, r)
        return [TensorType(ts[0].dtype, (ts[0].shape[0], tr.filters) + tr.out)]

    return infer


def _crop_or_extend(y: np.ndarray, pads: Sequence[int]) -> np.ndarray:
    """Crop positive pads off, append zeros for negative ones (spatial axes)."""
    r = y.ndim - 2
    grow = [(0, 0), (0, 0)] + [(max(-pads[k], 0), max(-pads[r + k], 0)) for k in range(r)]
    y = np.pad(y, grow)
    keep = tuple(slice(max(pads[k], 0), y.shape[2 + k] - max(pads[r + k], 0)) for k in range(r))
    return y[(slice(None), slice(None)) + keep]


def conv_transpose_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    """One matmul gives every (input pixel, tap) product; taps then scatter-add
    into the full output with strided slices (col2im), which pads crop."""
    x, w = xs[0], xs[1]
    dt = x.dtype
    work = _work_dtype(dt)
    r = x.ndim - 2
    tr = _transposed([shape_only(x), shape_only(w)], a, r)
    n, g, cg, fg = x.shape[0], tr.group, tr.cg, w.shape[1]
    ktot, p = math.prod(tr.kernel), math.prod(tr.size)
    xg: np.ndarray = x.astype(work, copy=False).reshape(n, g, cg, p)
    # [g, Fg * K, Cg] @ [N, g, Cg, P] -> [N, g, Fg * K, P]
    wg: np.ndarray = w.astype(work, copy=False).reshape(g, cg, fg * ktot).transpose(0, 2, 1)
    cols = np.matmul(wg, xg).reshape((n, tr.filters) + tr.kernel + tr.size)
    full: np.ndarray = np.zeros((n, tr.filters) + tr.full, dtype=work)
    for tap in itertools.product(*(range(k) for k in tr.kernel)):
        dst = tuple(slice(t * d, t * d + (s_in - 1) * s + 1, s)
                    for t, d, s_in, s in zip(tap, tr.dilations, tr.size, tr.strides))
        full[(slice(None), slice(None)) + dst] += cols[(slice(None), slice(None)) + tap]
    y = _crop_or_extend(full, tr.pads)
    if len(xs) == 3:
        y = y + xs[2].astype(work, copy=False).reshape((1, tr.filters) + (1,) * r)
    return [np.ascontiguousarray(y).astype(dt, copy=False)]


def _ct_expr(r: int) -> ExprFn:
    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        tr = _transposed(ts, a, r)
        out = (ts[0].shape[0], tr.filters) + tr.out
        defs, its = trav(out, "j" if len(ts) == 3 else "i")
        n, fo, sp = its[0], its[1], its[2:]
        fg = tr.filters // tr.group
        c = Iter("c")
        tdefs, taps = _taps(tr.kernel)
        cin = c if tr.group == 1 else (fo // fg) * tr.cg + c
        reads: list[Expr] = []
        hits: list[Expr] = []
        for k in range(r):
            # full position o + pad = input * stride + tap * dilation
            t = lin([(sp[k], 1), (taps[k], -tr.dilations[k])], tr.pads[k])
            s = tr.strides[k]
            reads.append(t if s == 1 else t // s)
            if s > 1:
                hits.append(call("eq", t % s, 0))
        xr = Access(names[0], (n, cin) + tuple(reads))
        wr = Access(names[1], (cin, fo if tr.group == 1 else fo % fg) + tuple(taps))
        body: Expr = xr * wr
        if hits:
            cond = hits[0]
            for h in hits[1:]:
                cond = cond * h
            # a select, not a product: a skipped read may hold inf, and inf * 0 is nan
            body = call("where", cond, body, 0.0)
        conv = Scope(defs, (IterDef("c", tr.cg),) + tdefs, body)
        return conv if len(ts) == 2 else _with_bias(conv, out, names[2])

    return expr


def _ct_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    macs = numel1(ts[0].shape) * numel1(ts[1].shape[1:])
    return Cost(2 * macs + (numel1(outs[0].shape) if len(ts) == 3 else 0), io_bytes(ts, outs))


# -- registration ----------------------------------------------------------------------

_GROUP = AttrSpec("group", "int", 1, "channel groups (C and F divisible)")

for _r in (3,):
    register(OpRules(
        name=f"conv{_r}d", category="compute", inputs=(2, 3), infer=_conv_infer(_r),
        eval=conv_nd_eval, expr=_conv_expr(_r), cost=_conv_cost,
        attrs=_window_attrs(_r) + (_GROUP,),
        doc=f"{_r}-D convolution N C spatial x F C/g kernel (+ bias F) with strides, pads, dilations, groups",
    ))
    register(OpRules(
        name=f"maxpool{_r}d", category="compute", inputs=(1, 1), infer=_pool_infer(f"maxpool{_r}d", _r),
        eval=_maxpool_eval, expr=_maxpool_expr(_r), cost=_pool_cost, attrs=_pool_attrs(_r),
        doc=f"{_r}-D max pooling; padding never wins (reads -inf)",
    ))
    register(OpRules(
        name=f"avgpool{_r}d", category="compute", inputs=(1, 1), infer=_pool_infer(f"avgpool{_r}d", _r),
        eval=_avgpool_eval, expr=_avgpool_expr(_r), cost=_pool_cost,
        attrs=_pool_attrs(_r) + (AttrSpec("count_include_pad", "bool", False,
                                          "divide by the window size including explicit pads"),),
        doc=f"{_r}-D average pooling (count_include_pad as in ONNX)",
    ))

for _r in (2, 3):
    register(OpRules(
        name=f"maxpool{_r}d_indices", category="compute", inputs=(1, 1), infer=_argmax_infer(_r),
        eval=_argmax_eval, expr=_argmax_expr(_r), cost=_pool_cost,
        attrs=_pool_attrs(_r) + (AttrSpec("column_major", "bool", False,
                                          "encode positions with the spatial axes reversed"),),
        doc=f"flat input position (i64) of each {_r}-D max pooling window's first maximum",
    ))
    register(OpRules(
        name=f"conv_transpose{_r}d", category="compute", inputs=(2, 3), infer=_ct_infer(_r),
        eval=conv_transpose_eval, expr=_ct_expr(_r), cost=_ct_cost,
        attrs=_window_attrs(_r) + (_GROUP,),
        doc=(f"{_r}-D transposed convolution N C spatial x C F/g kernel (+ bias F); pads crop the "
             "full output, negative pads extend it with zeros"),
    ))
