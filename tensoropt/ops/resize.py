"""``resize``: ONNX Resize (nearest, linear, cubic; every coordinate mode; antialias).

Resize is separable: each resized axis maps output position ``o`` to a source
coordinate ``x(o)`` (the coordinate transformation mode), then reads ``n``
neighbours ``idx[o, :]`` of ``floor(x)`` (clamped to the axis, i.e. edge
padding) with weights ``w[o, :]`` (the interpolation mode). :func:`axis_taps`
computes that table; eval applies one table per axis, in the order of
``axes``, in float64, and rounds once at the end (ONNX's reference order).

Category: movement. The op is a gather with computed, input-independent
positions and fixed weights; the positions are ``floor`` of a scaled
coordinate, which is affine only for nearest resizes by integer factors. For
those the Expr is a plain strided/divided read; every other configuration
returns None (like ``pad`` in reflect mode), never an approximation.

Attributes describe only the resized ``axes`` (all axes when empty): their
``scales`` (used by the coordinate map), output ``sizes`` and, for
``tf_crop_and_resize``, the ``roi`` (begins then ends, normalized). The
importer resolves ONNX's scales-or-sizes inputs and aspect-ratio policy into
these, so the op itself has one meaning.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from ..ir.expr import Access, Expr, Scope
from ..ir.graph import Attrs
from ..ir.types import TensorType
from .common import (
    abool,
    afloat,
    aints,
    astr,
    choice,
    lin,
    movement_cost,
    need_numeric,
    trav,
)
from .registry import AttrSpec, OpRules, register
from .shapes import fmt_shape, norm_axes

MODES = ("nearest", "linear", "cubic")
COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
          "tf_crop_and_resize")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


# -- the per-axis tables -----------------------------------------------------------------


def source_coords(mode: str, out: int, size: int, scale: float,
                  roi: tuple[float, float]) -> np.ndarray:
    """Source coordinate of each output position along one axis (float64).

    ``out_f = scale * size`` is the unrounded output length that ONNX uses in
    the ``== 1`` tests and ``align_corners`` ratios; the operation order
    follows the ONNX formulas so the coordinates round the same way.
    """
    y = np.arange(out, dtype=np.float64)
    out_f = scale * size
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = size / 2 * (1 - out / out_f)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return np.full(out, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    if mode == "align_corners":
        return np.zeros(out) if out_f == 1 else y * (size - 1) / (out_f - 1)
    if mode == "asymmetric":
        return y / scale
    lo, hi = roi  # tf_crop_and_resize
    base = (np.full(out, (hi - lo) * (size - 1) / 2) if out_f == 1
            else y * (hi - lo) * (size - 1) / (out_f - 1))
    return base + lo * (size - 1)


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel (Keys, parameter ``a``) at distances ``d``."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _weights(ratio: np.ndarray, scale: float, a: Attrs) -> np.ndarray:
    """Weights ``[out, n]`` of the ``n`` neighbours ``floor(x) + offsets(n)``.

    ``ratio`` is in (0, 1]: the distance of ``x`` past its left neighbour, 1
    for an integer ``x`` (then the neighbour at offset 1 is ``x`` itself).
    """
    mode = astr(a, "mode")
    r = ratio[:, None]
    if mode == "nearest":
        # Integer x (ratio 1) always takes x; otherwise the rounding rule decides.
        rule = astr(a, "nearest_mode")
        right = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
                 "floor": ratio == 1.0, "ceil": np.ones_like(ratio, dtype=bool)}[rule] | (ratio == 1.0)
        return np.stack([~right, right], axis=1).astype(np.float64)
    if not abool(a, "antialias"):
        if mode == "linear":
            return np.concatenate([1 - r, r], axis=1)
        return _cubic(np.arange(-1, 3)[None, :] - r, afloat(a, "cubic_coeff_a"))
    # Antialias: the kernel stretched by 1/scale when downsampling, renormalized.
    s = min(scale, 1.0)
    reach = 1 if mode == "linear" else 2
    start = math.floor(-reach / s) + 1
    offsets = np.arange(start, 2 - start)[None, :]
    d = (offsets - r) * s
    w = np.clip(1 - np.abs(d), 0, 1) if mode == "linear" else _cubic(d, afloat(a, "cubic_coeff_a"))
    return w / w.sum(axis=1, keepdims=True)


def axis_taps(size: int, out: int, scale: float, roi: tuple[float, float],
              a: Attrs) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(indices ``[out, n]`` clamped into ``[0, size)``, weights ``[out, n]``,
    extrapolated-position mask or None) for one axis."""
    mode = astr(a, "coordinate_transformation_mode")
    x = source_coords(mode, out, size, scale, roi)
    left = np.floor(x)
    ratio = np.where(x == left, 1.0, x - left)
    w = _weights(ratio, scale, a)
    n = w.shape[1]  # always even: the window is centred between two neighbours
    # The n neighbours nearest to x, ties to the smaller index: for an integer x
    # that is x - n/2 .. x + n/2 - 1, otherwise floor(x) - n/2 + 1 .. floor(x) + n/2.
    first = np.where(x == left, left - n // 2, left - n // 2 + 1).astype(np.int64)
    idx = first[:, None] + np.arange(n)[None, :]
    if abool(a, "exclude_outside"):
        w = np.where((idx < 0) | (idx >= size), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    extrap = (x < 0) | (x > size - 1) if mode == "tf_crop_and_resize" else None
    return np.clip(idx, 0, size - 1), w, extrap


# -- attributes and shapes -----------------------------------------------------------------


def _plan(t: TensorType, a: Attrs) -> list[tuple[int, int, float, tuple[float, float]]]:
    """(axis, output size, scale, roi) per resized axis, in ``axes`` order; checks attributes."""
    choice(a, "mode", MODES)
    choice(a, "coordinate_transformation_mode", COORDS)
    choice(a, "nearest_mode", NEAREST)
    axes = aints(a, "axes") or tuple(range(t.rank))
    norm_axes(axes, t.rank)  # range and duplicates
    axes = tuple(ax % t.rank for ax in axes)
    scales, sizes = a["scales"], aints(a, "sizes")
    roi = a["roi"] or (0.0,) * len(axes) + (1.0,) * len(axes)
    assert isinstance(scales, tuple) and isinstance(roi, tuple)
    if not (len(scales) == len(sizes) == len(axes) and len(roi) == 2 * len(axes)):
        raise ShapeError(f"resize needs one scale and size per axis and two roi values per axis; got "
                         f"axes={list(axes)} scales={list(scales)} sizes={list(sizes)} roi={list(roi)}")
    plan = []
    for j, ax in enumerate(axes):
        d = t.shape[ax]
        if not isinstance(d, int):
            raise ShapeError(f"input 0 has shape {fmt_shape(t.shape)}: resized axis {ax} must be static")
        if sizes[j] < 0 or not float(scales[j]) > 0:
            raise ShapeError(f"resize of axis {ax}: size {sizes[j]} and scale {scales[j]} must be "
                             ">= 0 and > 0")
        plan.append((ax, sizes[j], float(scales[j]), (float(roi[j]), float(roi[len(axes) + j]))))
    return plan


def _is_identity(size: int, out: int, scale: float, roi: tuple[float, float], a: Attrs) -> bool:
    """ONNX skips an axis whose size and scale (within 1e-9) are unchanged and whose roi is [0, 1]."""
    whole = (astr(a, "coordinate_transformation_mode") != "tf_crop_and_resize"
             or (math.isclose(roi[0], 0.0) and math.isclose(roi[1], 1.0)))
    return out == size and math.isclose(scale, 1.0) and whole


def _infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    need_numeric(ts, 0, "resize")
    shape = list(ts[0].shape)
    for ax, out, _, _ in _plan(ts[0], a):
        shape[ax] = out
    return [TensorType(ts[0].dtype, tuple(shape))]


# -- eval ---------------------------------------------------------------------------------


def _resize_axis(x: np.ndarray, ax: int, out: int, scale: float, roi: tuple[float, float],
                 a: Attrs) -> np.ndarray:
    idx, w, extrap = axis_taps(x.shape[ax], out, scale, roi, a)
    shape = [1] * x.ndim
    shape[ax] = out
    if astr(a, "mode") == "nearest":
        # One neighbour has weight 1: read it (no 0 * inf = nan from the other).
        y = np.take(x, idx[np.arange(out), np.argmax(w, axis=1)], axis=ax)
    else:
        y = sum(np.take(x, idx[:, k], axis=ax) * w[:, k].reshape(shape) for k in range(w.shape[1]))
    if extrap is not None and extrap.any():
        y = np.where(extrap.reshape(shape), afloat(a, "extrapolation_value"), y)
    return np.asarray(y)


def _round_to(y: np.ndarray, dt: np.dtype) -> np.ndarray:
    """float64 -> ``dt``; integers round half to even and saturate (ONNX)."""
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return np.clip(np.rint(y), info.min, info.max).astype(dt)
    return y.astype(dt)


def _eval(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
    x = xs[0]
    y = x.astype(np.float64)
    for ax, out, scale, roi in _plan(TensorType("f32", x.shape), a):
        if out == 0 or not _is_identity(y.shape[ax], out, scale, roi, a):
            y = _resize_axis(y, ax, out, scale, roi, a) if out else np.zeros(
                y.shape[:ax] + (0,) + y.shape[ax + 1:])
    return [_round_to(y, x.dtype)]


# -- Expr: nearest by integer factors ---------------------------------------------------------


def _affine_nearest(src: np.ndarray, it: Expr) -> Expr | None:
    """``src[o]`` as ``o``, ``(o + c) // k`` or ``o * k + c`` when one of those fits exactly."""
    o = np.arange(len(src))
    step = np.diff(src)
    if len(src) > 1 and np.all(step == step[0]) and step[0] > 0:
        k, c = int(step[0]), int(src[0])  # every k-th input, from c
        return lin([(it, k)], c)
    if src[0] != 0 or not np.all((step == 0) | (step == 1)):
        return None
    # Runs of repeats: the first is k - c long, the others k.
    starts = np.flatnonzero(np.diff(src, prepend=-1))
    runs = np.diff(np.append(starts, len(src)))
    k = int(runs[1]) if len(runs) > 1 else int(runs[0])
    c = k - int(runs[0])
    if k < 1 or c < 0 or not np.array_equal(src, (o + c) // k):
        return None
    return lin([(it, 1)], c) // k if k > 1 else lin([(it, 1)], c)


def _expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope | None:
    if astr(a, "mode") != "nearest" or astr(a, "coordinate_transformation_mode") == "tf_crop_and_resize":
        return None  # weighted sums of floor-indexed reads, or extrapolated positions
    out = _infer(ts, a)[0].shape
    defs, its = trav(out)
    idx: list[Expr] = list(its)
    for ax, n, scale, roi in _plan(ts[0], a):
        size = ts[0].shape[ax]
        assert isinstance(size, int)
        if n == 0:
            return None  # an empty axis has no iterator to write
        if _is_identity(size, n, scale, roi, a):
            continue
        taps, w, _ = axis_taps(size, n, scale, roi, a)
        e = _affine_nearest(taps[np.arange(n), np.argmax(w, axis=1)], its[ax])
        if e is None:
            return None
        idx[ax] = e
    return Scope(defs, (), Access(names[0], tuple(idx)))


register(OpRules(
    name="resize", category="movement", inputs=(1, 1), infer=_infer, eval=_eval, expr=_expr,
    cost=movement_cost,
    attrs=(
        AttrSpec("mode", "str", "nearest", "nearest, linear or cubic"),
        AttrSpec("coordinate_transformation_mode", "str", "half_pixel", ", ".join(COORDS)),
        AttrSpec("nearest_mode", "str", "round_prefer_floor", ", ".join(NEAREST)),
        AttrSpec("cubic_coeff_a", "float", -0.75),
        AttrSpec("exclude_outside", "bool", False, "zero (and renormalize) weights outside the input"),
        AttrSpec("extrapolation_value", "float", 0.0, "tf_crop_and_resize: value outside the input"),
        AttrSpec("antialias", "bool", False, "linear/cubic: widen the kernel when downsampling"),
        AttrSpec("axes", "ints", (), "resized axes (empty: all, in order)"),
        AttrSpec("scales", "floats", doc="one scale per resized axis (drives the coordinate map)"),
        AttrSpec("sizes", "ints", doc="one output size per resized axis"),
        AttrSpec("roi", "floats", (), "tf_crop_and_resize: begins then ends per axis (empty: 0..1)"),
    ),
    doc="ONNX Resize over the given axes: separable nearest/linear/cubic interpolation",
))
