"""Neural-network ops: conv2d, pooling, LRN, batchnorm, softmax, layernorm.

Layout is NCHW throughout (ONNX). ``pads`` for 2-D windows are
``[top, left, bottom, right]``. Window geometry (output size, ceil mode) lives
in :func:`tensoropt.ops.shapes.window_out`, shared by infer and the Exprs, so
the three rules cannot disagree about sizes.

Exprs express padding by out-of-bounds reads (pad 0 for conv/avg, ``-inf``
for max) and groups by ``//`` on the output-channel iterator.
"""

from __future__ import annotations

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
    bcast_read, inv_count, io_bytes, ints_len, lin, need_dim, need_float, need_numeric, need_rank,
    per_input_cost, per_output_cost, same_dtype, shape_only, trav,
)
from .common import abool, afloat, aint
from .registry import AttrSpec, Cost, EvalFn, ExprFn, InferFn, OpRules, register
from .shapes import broadcast_to, fmt_shape, norm_axis, numel1, window_out

# -- window geometry -------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A 2-D window sweep: kernel, strides, dilations, pads and output size."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    out: tuple[Dim, Dim]
    size: tuple[Dim, Dim]  # input H, W

    def is_static(self, k: int) -> bool:
        """Whether axis ``k`` (0: H, 1: W) has static input and output sizes."""
        return isinstance(self.size[k], int) and isinstance(self.out[k], int)

    def extra(self, k: int) -> int:
        """Rows/cols read past the high pad by a ceil-mode last window.

        A symbolic axis has a 1x1, stride 1, unpadded window (``window_of``
        rejects anything else), which never reads past the input: 0.
        """
        if not self.is_static(k):
            return 0
        span = (self.kernel[k] - 1) * self.dilations[k] + 1
        reach = (int(self.out[k]) - 1) * self.strides[k] + span
        return max(0, reach - (int(self.size[k]) + self.pads[k] + self.pads[k + 2]))

    def padded(self, x: np.ndarray, value: float) -> np.ndarray:
        """``x`` (NCHW) padded on H, W, including any ceil-mode overhang."""
        t, l, b, r = self.pads
        return np.pad(x, ((0, 0), (0, 0), (t, b + self.extra(0)), (l, r + self.extra(1))),
                      constant_values=value)

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """View ``[N, C, OH, OW, KH, KW]`` of the padded input (no copy)."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        oh, ow = (int(d) for d in self.out)  # eval windows are always concrete
        v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        return v[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, ::dh, ::dw]

    def read_index(self, k: int, out_it: Expr, red_it: Expr) -> Expr:
        """Input row (k=0) / column (k=1) read by output ``out_it``, tap ``red_it``."""
        return lin([(out_it, self.strides[k]), (red_it, self.dilations[k])], -self.pads[k])


def _spatial_out(x: TensorType, k: int, kernel: int, stride: int, lo: int, hi: int,
                 dil: int, ceil_mode: bool) -> Dim:
    d = x.shape[2 + k]
    if isinstance(d, str):
        if (kernel - 1) * dil == 0 and stride == 1 and lo == hi == 0:
            return d  # a 1x1 stride-1 unpadded window keeps a symbolic size
        raise ShapeError(f"input 0 has shape {fmt_shape(x.shape)}: symbolic spatial dim {d!r} "
                         "needs a 1x1, stride 1, unpadded window")
    return window_out(d, kernel, stride, lo, hi, dil, ceil_mode)


def window_of(x: TensorType, kernel: Sequence[int], a: Attrs, ceil_mode: bool = False) -> Window:
    """Validate window attributes against input 0 and compute the sweep.

    A symbolic spatial dim is accepted only under a 1x1, stride 1, unpadded
    window (its output size is the same symbol); ShapeError otherwise.
    """
    strides = ints_len(a, "strides", 2)
    pads = ints_len(a, "pads", 4)
    dil = ints_len(a, "dilations", 2)
    if min(strides) < 1 or min(dil) < 1 or min(kernel) < 1 or min(pads) < 0:
        raise ShapeError(f"window needs kernel, strides, dilations >= 1 and pads >= 0; got "
                         f"kernel={list(kernel)} strides={list(strides)} "
                         f"dilations={list(dil)} pads={list(pads)}")
    out = tuple(_spatial_out(x, k, kernel[k], strides[k], pads[k], pads[k + 2], dil[k], ceil_mode)
                for k in range(2))
    return Window(tuple(kernel), strides, dil, pads, out, (x.shape[2], x.shape[3]))


_WINDOW_ATTRS = (
    AttrSpec("strides", "ints", (1, 1), "[stride_h, stride_w]"),
    AttrSpec("pads", "ints", (0, 0, 0, 0), "[top, left, bottom, right]"),
    AttrSpec("dilations", "ints", (1, 1), "[dilation_h, dilation_w]"),
)

# -- conv2d ----------------------------------------------------------------------


def _conv_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_rank(ts, 0, 4, "N, C, H, W")
    need_rank(ts, 1, 4, "F, C / group, KH, KW")
    need_float(ts, 0)
    same_dtype(ts, range(1, len(ts)))
    x, w = ts[0], ts[1]
    g = aint(a, "group")
    n, c = x.shape[0], x.shape[1]
    f, cg, kh, kw = w.shape
    if not all(isinstance(d, int) for d in w.shape):
        raise ShapeError(f"input 1 has shape {fmt_shape(w.shape)}, expected static weights")
    if g < 1 or (isinstance(c, int) and c % g) or f % g:
        raise ShapeError(f"group={g} must be >= 1 and divide input channels {c} "
                         f"(input 0 dim 1) and filters {f} (input 1 dim 0)")
    want = c // g if isinstance(c, int) else c
    if isinstance(c, str) and g != 1:
        raise ShapeError(f"input 0 has symbolic channels {c!r}; group={g} needs them static")
    need_dim(ts, 1, 1, want, f"input channels {c} / group {g}")
    if len(ts) == 3:
        if ts[2].shape != (f,):
            raise ShapeError(f"input 2 has shape {fmt_shape(ts[2].shape)}, expected [{f}] (bias)")
    win = window_of(x, (kh, kw), a)
    return [TensorType(x.dtype, (n, f) + win.out)]


def _conv_window(x: np.ndarray, w: np.ndarray, a: Attrs) -> Window:
    return window_of(shape_only(x), w.shape[2:], a)


def conv2d_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    """im2col + one batched matmul per group (BLAS); no loops over pixels.

    The column matrix is ``[N, group, C/g * KH * KW, OH * OW]`` so the matmul
    result is already NCHW: no transpose of the output is needed.
    """
    x, w = xs[0], xs[1]
    dt = x.dtype
    work = np.float32 if dt == np.float16 else dt  # f16 GEMM is slow in NumPy
    x, w = x.astype(work, copy=False), w.astype(work, copy=False)
    g = aint(a, "group")
    win = _conv_window(x, w, a)
    n, c = x.shape[:2]
    f, cg, kh, kw = w.shape
    oh, ow = win.out
    view = win.windows(win.padded(x, 0.0))  # [N, C, OH, OW, KH, KW]
    cols = view.transpose(0, 1, 4, 5, 2, 3).reshape(n, g, cg * kh * kw, oh * ow)
    out = np.matmul(w.reshape(g, f // g, cg * kh * kw), cols).reshape(n, f, oh, ow)
    if len(xs) == 3:
        out += xs[2].astype(work, copy=False).reshape(1, f, 1, 1)
    return [out.astype(dt, copy=False)]


def _conv_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    x, w = ts[0], ts[1]
    g = aint(a, "group")
    f, cg, kh, kw = w.shape
    win = window_of(x, (kh, kw), a)
    out = _conv_infer(ts, a)[0].shape
    defs, (n, fo, h, wo) = trav(out, "j" if len(ts) == 3 else "i")
    c, r, s = Iter("c"), Iter("r"), Iter("s")
    sums = (IterDef("c", cg), IterDef("r", kh), IterDef("s", kw))
    # Group g' = f // (F/g) reads input channels [g' * C/g, (g'+1) * C/g).
    cin = c if g == 1 else (fo // (f // g)) * cg + c
    xr = Access(names[0], (n, cin, win.read_index(0, h, r), win.read_index(1, wo, s)))
    wr = Access(names[1], (fo, c, r, s))
    conv = Scope(defs, sums, xr * wr)
    if len(ts) == 2:
        return conv
    # Bias must sit outside the reduction, so it needs an enclosing scope.
    odefs, oits = trav(out)
    return Scope(odefs, (), Access(conv, tuple(oits)) + Access(names[2], (oits[1],)))


def _conv_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    _, cg, kh, kw = ts[1].shape
    macs = numel1(outs[0].shape) * cg * kh * kw
    return Cost(2 * macs + (numel1(outs[0].shape) if len(ts) == 3 else 0), io_bytes(ts, outs))


register(OpRules(
    name="conv2d", category="compute", inputs=(2, 3), infer=_conv_infer, eval=conv2d_eval,
    expr=_conv_expr, cost=_conv_cost,
    attrs=_WINDOW_ATTRS + (AttrSpec("group", "int", 1, "channel groups (C and F divisible)"),),
    doc="2-D convolution NCHW x FCKK (+ bias F) with strides, pads, dilations, groups",
))

# -- pooling -----------------------------------------------------------------------

_POOL_ATTRS = (AttrSpec("kernel", "ints", doc="[kernel_h, kernel_w]"),) + _WINDOW_ATTRS + (
    AttrSpec("ceil_mode", "bool", False, "round the output size up"),
)


def _pool_window(t: TensorType, a: Attrs) -> Window:
    kernel = ints_len(a, "kernel", 2)
    return window_of(t, kernel, a, abool(a, "ceil_mode"))


def _pool_infer(op: str) -> InferFn:
    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        need_rank(ts, 0, 4, "N, C, H, W")
        need_numeric(ts, 0, op)
        win = _pool_window(ts[0], a)
        return [TensorType(ts[0].dtype, ts[0].shape[:2] + win.out)]

    return infer


def _lowest(dt: np.dtype) -> float:
    return -np.inf if np.issubdtype(dt, np.floating) else float(np.iinfo(dt).min)


def _maxpool_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    win = _pool_window(shape_only(x), a)
    v = win.windows(win.padded(x, _lowest(x.dtype)))
    return [v.max(axis=(4, 5))]


def _pool_reads(name: str, ts: Sequence[TensorType], win: Window, pad: float,
                prefix: str) -> tuple[tuple[IterDef, ...], tuple[IterDef, ...], Access]:
    out = ts[0].shape[:2] + win.out
    defs, (n, c, h, w) = trav(out, prefix)
    r, s = Iter("r"), Iter("s")
    sums = (IterDef("r", win.kernel[0]), IterDef("s", win.kernel[1]))
    read = Access(name, (n, c, win.read_index(0, h, r), win.read_index(1, w, s)), pad)
    return defs, sums, read


def _maxpool_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    win = _pool_window(ts[0], a)
    defs, sums, read = _pool_reads(names[0], ts, win, -math.inf, "i")
    return Scope(defs, sums, read, "Max")


def _pool_cost(ts: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> Cost:
    k = ints_len(a, "kernel", 2)
    return Cost(numel1(outs[0].shape) * k[0] * k[1], io_bytes(ts, outs))


register(OpRules(
    name="maxpool2d", category="compute", inputs=(1, 1), infer=_pool_infer("maxpool2d"),
    eval=_maxpool_eval, expr=_maxpool_expr, cost=_pool_cost, attrs=_POOL_ATTRS,
    doc="2-D max pooling NCHW; padding never wins (reads -inf)",
))


def avgpool_counts(win: Window, include_pad: bool) -> np.ndarray:
    """Divisor per output position ``[OH, OW]``.

    Counted positions: the input, plus the explicit pads when ``include_pad``;
    never the ceil-mode overhang past the high pad (PyTorch/ONNX rule).
    Needs static spatial dims (callers check :func:`avgpool_divisor` first).
    """
    h, w = (int(d) for d in win.size)
    t, l, b, r = win.pads
    mask = np.zeros((1, 1, h + t + b + win.extra(0), w + l + r + win.extra(1)))
    if include_pad:
        mask[:, :, : h + t + b, : w + l + r] = 1.0
    else:
        mask[:, :, t : t + h, l : l + w] = 1.0
    return win.windows(mask).sum(axis=(4, 5))[0, 0]


def avgpool_divisor(win: Window, include_pad: bool) -> int | None:
    """The divisor when it is provably the same at every output position.

    Every tap of every window lands in a counted position when there is no
    ceil-mode overhang and either no padding or padding that counts; then the
    divisor is the kernel area, whatever the (possibly symbolic) input size.
    Otherwise the static counts decide; None when they vary or a dim is symbolic.
    """
    if win.extra(0) == win.extra(1) == 0 and (include_pad or not any(win.pads)):
        return win.kernel[0] * win.kernel[1]
    if not (win.is_static(0) and win.is_static(1)):
        return None
    counts = avgpool_counts(win, include_pad)
    return int(counts.flat[0]) if counts.min() == counts.max() else None


def _avgpool_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    win = _pool_window(shape_only(x), a)
    sums = win.windows(win.padded(x, 0.0)).sum(axis=(4, 5))
    counts = avgpool_counts(win, abool(a, "count_include_pad"))
    return [(sums / counts).astype(x.dtype, copy=False)]


def _in_range(e: Expr, lo: int, hi: int) -> Expr:
    """1.0 where ``lo <= e < hi`` else 0.0 (iterators are numbers in a body)."""
    return call("ge", e, lo) * call("lt", e, hi)


def _avgpool_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope | None:
    win = _pool_window(ts[0], a)
    include = abool(a, "count_include_pad")
    divisor = avgpool_divisor(win, include)
    if divisor:  # 0 only for an empty input: the count scope then gives nan, as eval does
        # The common case: a constant divisor folds into the sum.
        defs, sums, read = _pool_reads(names[0], ts, win, 0.0, "i")
        return Scope(defs, sums, read * (1.0 / divisor))
    if not (win.is_static(0) and win.is_static(1)):
        return None  # per-position counts need the input size: no body can name a symbol
    # Borders count fewer positions: divide by a count scope over the taps.
    defs, sums, read = _pool_reads(names[0], ts, win, 0.0, "j")
    total = Scope(defs, sums, read)
    h, w = Iter("q0"), Iter("q1")
    r, s = Iter("r"), Iter("s")
    (ih, iw), (t, l, b, rr) = (int(d) for d in win.size), win.pads
    lo_h, hi_h = (-t, ih + b) if include else (0, ih)
    lo_w, hi_w = (-l, iw + rr) if include else (0, iw)
    cnt = Scope((IterDef("q0", win.out[0]), IterDef("q1", win.out[1])), sums,
                _in_range(win.read_index(0, h, r), lo_h, hi_h)
                * _in_range(win.read_index(1, w, s), lo_w, hi_w))
    odefs, oits = trav(ts[0].shape[:2] + win.out)
    return Scope(odefs, (), Access(total, tuple(oits)) / Access(cnt, (oits[2], oits[3])))


register(OpRules(
    name="avgpool2d", category="compute", inputs=(1, 1), infer=_pool_infer("avgpool2d"),
    eval=_avgpool_eval, expr=_avgpool_expr, cost=_pool_cost,
    attrs=_POOL_ATTRS + (AttrSpec("count_include_pad", "bool", False,
                                  "divide by the window size including explicit pads"),),
    doc="2-D average pooling NCHW (count_include_pad as in ONNX)",
))

# -- global pooling ------------------------------------------------------------------


def _global_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    if ts[0].rank < 3:
        raise ShapeError(f"input 0 has shape {fmt_shape(ts[0].shape)}, expected N, C, spatial...")
    return [TensorType(ts[0].dtype, ts[0].shape[:2] + (1,) * (ts[0].rank - 2))]


def _global_expr(reduce: str) -> ExprFn:
    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        shape = ts[0].shape
        defs, its = trav(_global_infer(ts, a)[0].shape)
        sums = tuple(IterDef(f"r{k}", d) for k, d in enumerate(shape[2:]))
        read: Expr = Access(names[0], tuple(its[:2]) + tuple(Iter(s.name) for s in sums))
        if reduce == "Sum":
            read = read * inv_count(shape[2:])
        return Scope(defs, sums, read, reduce)

    return expr


for _name, _red, _np in (("global_avgpool", "Sum", np.mean), ("global_maxpool", "Max", np.max)):
    register(OpRules(
        name=_name, category="compute", inputs=(1, 1), infer=_global_infer,
        eval=(lambda f: lambda xs, a: [np.asarray(
            f(xs[0], axis=tuple(range(2, xs[0].ndim)), keepdims=True)).astype(xs[0].dtype)])(_np),
        expr=_global_expr(_red), cost=per_input_cost(1),
        doc=f"{'mean' if _red == 'Sum' else 'max'} over all spatial dims, kept as size 1",
    ))

# -- LRN ---------------------------------------------------------------------------


def _lrn_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_float(ts, 0)
    if ts[0].rank < 3:
        raise ShapeError(f"input 0 has shape {fmt_shape(ts[0].shape)}, expected N, C, spatial...")
    if aint(a, "size") < 1:
        raise ShapeError(f"attribute size={a['size']} must be >= 1")
    return [ts[0]]


def _lrn_span(size: int) -> tuple[int, int]:
    """Channels before/after ``c`` in the window (ONNX: floor/ceil of (size-1)/2)."""
    return (size - 1) // 2, size // 2


def _lrn_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    size = aint(a, "size")
    lo, hi = _lrn_span(size)
    sq = np.pad(x * x, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    win = sliding_window_view(sq, size, axis=1).sum(axis=-1)
    scale = afloat(a, "bias") + afloat(a, "alpha") / size * win
    return [(x / scale ** afloat(a, "beta")).astype(x.dtype, copy=False)]


def _lrn_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    size = aint(a, "size")
    lo, hi = _lrn_span(size)
    jdefs, js = trav(ts[0].shape, "j")
    k = Iter("k")
    # Channel reads past either end are 0: ONNX clips the window there.
    at = Access(names[0], (js[0], js[1] + k) + tuple(js[2:]))
    sq = Scope(jdefs, (IterDef("k", size, -lo),), at * at)
    defs, its = trav(ts[0].shape)
    base = Access(sq, tuple(its)) * (afloat(a, "alpha") / size) + afloat(a, "bias")
    return Scope(defs, (), Access(names[0], tuple(its)) * call("pow", base, -afloat(a, "beta")))


register(OpRules(
    name="lrn", category="compute", inputs=(1, 1), infer=_lrn_infer, eval=_lrn_eval,
    expr=_lrn_expr, cost=lambda ts, outs, a: Cost(
        numel1(outs[0].shape) * (2 * aint(a, "size") + 4), io_bytes(ts, outs)),
    attrs=(AttrSpec("size", "int", doc="channels in the window"),
           AttrSpec("alpha", "float", 1e-4), AttrSpec("beta", "float", 0.75),
           AttrSpec("bias", "float", 1.0)),
    doc="local response norm across channels: x / (bias + alpha/size * sum x^2) ** beta",
))

# -- batchnorm -----------------------------------------------------------------------


def _bn_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_float(ts, 0)
    same_dtype(ts, range(1, 5))
    x = ts[0]
    if x.rank < 2:
        raise ShapeError(f"input 0 has shape {fmt_shape(x.shape)}, expected N, C, ...")
    for i, what in zip(range(1, 5), ("scale", "bias", "mean", "var")):
        if ts[i].shape != (x.shape[1],):
            raise ShapeError(f"input {i} has shape {fmt_shape(ts[i].shape)}, "
                             f"expected [{x.shape[1]}] ({what} per channel)")
    return [x]


def _bn_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x, scale, bias, mean, var = xs
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + afloat(a, "epsilon"))
    y = (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)
    return [y.astype(x.dtype, copy=False)]


def _bn_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    defs, its = trav(ts[0].shape)
    x, s, b, m, v = (Access(n, tuple(its) if k == 0 else (its[1],)) for k, n in enumerate(names))
    body = (x - m) * call("rsqrt", v + afloat(a, "epsilon")) * s + b
    return Scope(defs, (), body)


register(OpRules(
    name="batchnorm", category="compute", inputs=(5, 5), infer=_bn_infer, eval=_bn_eval,
    expr=_bn_expr, cost=per_output_cost(4),
    attrs=(AttrSpec("epsilon", "float", 1e-5),),
    doc="inference batch norm over channel dim 1: (x - mean) / sqrt(var + eps) * scale + bias",
))

# -- softmax / log_softmax -----------------------------------------------------------


def _axis_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_float(ts, 0)
    norm_axis(aint(a, "axis"), ts[0].rank)
    return [ts[0]]


def _softmax_eval(log: bool) -> EvalFn:
    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        ax = norm_axis(aint(a, "axis"), x.ndim)
        z = x - x.max(axis=ax, keepdims=True)  # shift: exp never overflows
        if log:
            y = z - np.log(np.exp(z).sum(axis=ax, keepdims=True))
        else:
            e = np.exp(z)
            y = e / e.sum(axis=ax, keepdims=True)
        return [y.astype(x.dtype, copy=False)]

    return ev


def _softmax_expr(log: bool) -> ExprFn:
    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        shape = ts[0].shape
        ax = norm_axis(aint(a, "axis"), len(shape))
        rest = shape[:ax] + shape[ax + 1 :]

        def at(its: Sequence[Expr], k: Expr) -> Access:
            return Access(names[0], tuple(its[:ax]) + (k,) + tuple(its[ax:]))

        k = Iter("k")
        mdefs, ms = trav(rest, "m")
        mx = Scope(mdefs, (IterDef("k", shape[ax]),), at(ms, k), "Max")
        sdefs, ss = trav(rest, "s")
        # Iterator names are unique across nested scopes: no shadowing allowed.
        q = Iter("q")
        total = Scope(sdefs, (IterDef("q", shape[ax]),),
                      call("exp", at(ss, q) - Access(mx, tuple(ss))))
        defs, its = trav(shape)
        outer = tuple(its[:ax] + its[ax + 1 :])
        z = Access(names[0], tuple(its)) - Access(mx, outer)
        if log:
            return Scope(defs, (), z - call("log", Access(total, outer)))
        return Scope(defs, (), call("exp", z) / Access(total, outer))

    return expr


for _name, _log in (("softmax", False), ("log_softmax", True)):
    register(OpRules(
        name=_name, category="compute", inputs=(1, 1), infer=_axis_infer,
        eval=_softmax_eval(_log), expr=_softmax_expr(_log), cost=per_output_cost(5),
        attrs=(AttrSpec("axis", "int", -1),),
        doc=("log of " if _log else "") + "softmax along one axis (max-shifted)",
    ))

# -- layernorm -------------------------------------------------------------------------


def _ln_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_float(ts, 0)
    same_dtype(ts, range(1, len(ts)))
    ax = norm_axis(aint(a, "axis"), ts[0].rank)
    norm_shape = ts[0].shape[ax:]
    for i in range(1, len(ts)):
        broadcast_to(ts[i].shape, norm_shape, i)
    return [ts[0]]


def _ln_eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    axes = tuple(range(norm_axis(aint(a, "axis"), x.ndim), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    d = x - mu
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / np.sqrt(var + afloat(a, "epsilon")) * xs[1]
    if len(xs) == 3:
        y = y + xs[2]
    return [y.astype(x.dtype, copy=False)]


def _ln_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    shape = ts[0].shape
    ax = norm_axis(aint(a, "axis"), len(shape))
    outer, inner = shape[:ax], shape[ax:]
    sums = tuple(IterDef(f"k{q}", d) for q, d in enumerate(inner))
    ks = tuple(Iter(s.name) for s in sums)
    inv = inv_count(inner)
    mdefs, ms = trav(outer, "m")
    mean = Scope(mdefs, sums, Access(names[0], tuple(ms) + ks) * inv)
    vdefs, vs = trav(outer, "v")
    # var reads mean, so its reduction iterators need names of their own.
    vsums = tuple(IterDef(f"u{q}", d) for q, d in enumerate(inner))
    us = tuple(Iter(s.name) for s in vsums)
    dv = Access(names[0], tuple(vs) + us) - Access(mean, tuple(vs))
    var = Scope(vdefs, vsums, dv * dv * inv_count(inner, "w"))
    defs, its = trav(shape)
    o = tuple(its[:ax])
    body: Expr = (Access(names[0], tuple(its)) - Access(mean, o)) * call(
        "rsqrt", Access(var, o) + afloat(a, "epsilon"))
    body = body * bcast_read(names[1], ts[1].shape, inner, its[ax:])
    if len(ts) == 3:
        body = body + bcast_read(names[2], ts[2].shape, inner, its[ax:])
    return Scope(defs, (), body)


register(OpRules(
    name="layernorm", category="compute", inputs=(2, 3), infer=_ln_infer, eval=_ln_eval,
    expr=_ln_expr, cost=per_output_cost(8),
    attrs=(AttrSpec("axis", "int", -1, "normalize over dims axis..end"),
           AttrSpec("epsilon", "float", 1e-5)),
    doc="layer norm over the trailing dims from axis, times scale (+ bias)",
))
