"""ONNX converters for indexing (gather/scatter), transposed and N-d windows, resize, attention.

Each converter maps one ONNX op onto registry ops (see :mod:`.onnx_ops` for
the conventions). 1-D windows run on the 2-D registry ops with an extra axis
of size 1; 3-D windows run on the ``*3d`` ops of :mod:`tensoropt.ops.spatial`.
Compositions are exact (``LpPool`` is a depthwise sum-convolution of ``|x|^p``,
``MaxUnpool`` a scatter into zeros, ``Col2Im`` one strided placement per
kernel tap, ``Attention`` matmuls, a softmax and selects); anything a
converter cannot express exactly raises :class:`UnsupportedError` naming the
attribute or input. Inputs that fix shapes or positions (Resize scales and
sizes, ReverseSequence lengths, write indices) must be known at import time.

:func:`conv_nd` and :func:`pool_nd` are the rank-generic Conv / MaxPool /
AveragePool bodies (1-D to 3-D, MaxPool's Indices output included). The
converters registered for those ops live in :mod:`.onnx_ops`; they hand 3-D
inputs and the Indices output to these.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .onnx_context import Ctx, Operand, Tensor, converter, onnx_dtype

T = Tensor

# -- window attributes -------------------------------------------------------------------


def spatial_rank(cx: Ctx, what: str) -> int:
    """Spatial rank of input 0 (N, C, spatial...): 1, 2 or 3, else UnsupportedError."""
    r = cx.rank(0) - 2
    if r not in (1, 2, 3):
        raise cx.unsupported(f"{r}-D {what} (tensoropt has 1-D, 2-D and 3-D {what})")
    return r


def static_dims(cx: Ctx, i: int | str, axes: Sequence[int], why: str) -> list[int]:
    """Dims at ``axes`` as ints (other dims, e.g. a batch, may stay symbolic) of
    input ``i``, or of the builder tensor named ``i``."""
    shape = cx.shape(i) if isinstance(i, int) else cx.b.type_of(i).shape
    dims = [shape[a] for a in axes]
    if not all(isinstance(d, int) for d in dims):
        what = f"input {i}" if isinstance(i, int) else f"%{i}"
        raise cx.unsupported(f"{what} has shape {list(shape)}; {why} needs static dims {list(axes)}")
    return [int(d) for d in dims]


def _ints_attr(cx: Ctx, name: str, n: int, default: int) -> list[int]:
    v = cx.attr_ints(name) or [default] * n
    if len(v) != n:
        raise cx.error(f"attribute {name}={v} needs {n} values")
    return v


_AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _auto_pad(cx: Ctx) -> str:
    """The node's ``auto_pad`` (empty means NOTSET); UnsupportedError for other values."""
    auto = cx.attr_str("auto_pad", "NOTSET") or "NOTSET"
    if auto not in _AUTO_PADS:
        raise cx.unsupported(f"auto_pad={auto!r} (valid: {', '.join(_AUTO_PADS)})")
    return auto


def window_pads(cx: Ctx, kernel: Sequence[int], strides: Sequence[int], dil: Sequence[int]) -> list[int]:
    """Conv/pool pads (begins + ends) with ``auto_pad`` resolved against input 0.

    SAME_*: output = ceil(in / stride); the odd pad goes at the end (UPPER) or
    the beginning (LOWER), as ONNX specifies.
    """
    r = len(kernel)
    auto = _auto_pad(cx)
    if auto == "NOTSET":
        return _ints_attr(cx, "pads", 2 * r, 0)
    if auto == "VALID":
        return [0] * (2 * r)
    spatial = static_dims(cx, 0, range(2, 2 + r), f"auto_pad={auto}")
    begins, ends = [], []
    for d, k, s, dl in zip(spatial, kernel, strides, dil):
        total = max(0, (-(-d // s) - 1) * s + (k - 1) * dl + 1 - d)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins + ends


def _as_2d(cx: Ctx, name: str) -> str:
    """A 1-D (N, C, L) operand as 2-D (N, C, 1, L)."""
    return cx.op("unsqueeze", name, axes=(2,))


def _lift_1d(strides: list[int], dil: list[int], pads: list[int]) -> dict[str, Any]:
    """Window attributes of the 2-D op that computes a 1-D window on axis 3."""
    return {"strides": (1, strides[0]), "dilations": (1, dil[0]), "pads": (0, pads[0], 0, pads[1])}


def _window_attrs(r: int, strides: list[int], dil: list[int], pads: list[int]) -> dict[str, Any]:
    if r == 1:
        return _lift_1d(strides, dil, pads)
    return {"strides": tuple(strides), "dilations": tuple(dil), "pads": tuple(pads)}


def _registry_rank(r: int) -> int:
    """The registry op's spatial rank for an ONNX ``r``-D window (1-D runs as 2-D)."""
    return max(r, 2)


def _finish(cx: Ctx, r: int, op: str, ins: list[str], **attrs: object) -> str:
    """Run ``op`` on ``ins`` (already lifted when 1-D) and squeeze a 1-D result back."""
    y = cx.op(op, *ins, out=None if r == 1 else 0, **attrs)
    return cx.op("squeeze", y, out=0, axes=(2,)) if r == 1 else y


# -- Conv / pooling of any rank -------------------------------------------------------------


@converter("Conv")
def conv_nd(cx: Ctx) -> list[Operand]:
    """ONNX Conv, 1-D to 3-D."""
    bias = [cx.tensor(2)] if cx.has(2) else []
    return [T(_conv(cx, cx.tensor(0), cx.tensor(1), bias, out=0))]


def _conv(cx: Ctx, x: str, w: str, bias: list[str], out: int | None) -> str:
    """Conv of ``x`` by ``w`` (+ bias) with the node's window attributes; any rank 1-3."""
    r = spatial_rank(cx, "convolution")
    kernel = [int(d) for d in cx.static_shape(1, "Conv weights")[2:]]
    given = cx.attr_ints("kernel_shape")
    if given and list(given) != kernel:
        raise cx.error(f"kernel_shape={given} disagrees with the weights' kernel {kernel}")
    strides, dil = _ints_attr(cx, "strides", r, 1), _ints_attr(cx, "dilations", r, 1)
    pads = window_pads(cx, kernel, strides, dil)
    if r == 1:
        x, w = _as_2d(cx, x), _as_2d(cx, w)
    attrs = dict(group=cx.attr_int("group", 1), **_window_attrs(r, strides, dil, pads))
    y = cx.op(f"conv{_registry_rank(r)}d", x, w, *bias, out=out if r > 1 else None, **attrs)
    return cx.op("squeeze", y, out=out, axes=(2,)) if r == 1 else y


@converter("ConvInteger")
def _conv_integer(cx: Ctx) -> list[Operand]:
    """(x - x_zero_point) conv (w - w_zero_point) in int32, computed in float64: exact
    whenever the int32 result does not overflow (8-bit operands: under ~33,000 taps per
    output), since every partial sum is then an integer far below 2**53."""
    def centered(i: int, zp: int, per_channel: bool) -> str:
        v = cx.op("cast", cx.tensor(i), to="f64")
        if not cx.has(zp):
            return v
        z = cx.op("cast", cx.tensor(zp), to="f64")
        if per_channel and cx.rank(zp) == 1 and cx.shape(zp)[0] != 1:
            z = cx.op("reshape", z, shape=(-1,) + (1,) * (cx.rank(i) - 1))
        return cx.op("sub", v, z)

    y = _conv(cx, centered(0, 2, False), centered(1, 3, True), [], out=None)
    return [T(cx.op("cast", y, out=0, to="i32"))]


_POOLS = {"MaxPool": "maxpool", "AveragePool": "avgpool"}


@converter("MaxPool", "AveragePool")
def pool_nd(cx: Ctx) -> list[Operand]:
    """ONNX MaxPool (with its Indices output) / AveragePool, 1-D to 3-D."""
    r = spatial_rank(cx, "pooling")
    kernel = cx.attr_ints("kernel_shape")
    if not kernel or len(kernel) != r:
        raise cx.error(f"needs attribute kernel_shape with {r} values")
    strides, dil = _ints_attr(cx, "strides", r, 1), _ints_attr(cx, "dilations", r, 1)
    pads = window_pads(cx, kernel, strides, dil)
    x = cx.tensor(0)
    if r == 1:
        x = _as_2d(cx, x)
    extra: dict[str, object] = {}
    if cx.node.op_type == "AveragePool":
        extra["count_include_pad"] = bool(cx.attr_int("count_include_pad", 0))
    rr = _registry_rank(r)
    attrs = dict(kernel=tuple(kernel) if r > 1 else (1, kernel[0]), ceil_mode=bool(cx.attr_int("ceil_mode", 0)),
                 **_window_attrs(r, strides, dil, pads))
    outs: list[Operand] = [T(_finish(cx, r, f"{_POOLS[cx.node.op_type]}{rr}d", [x], **attrs, **extra))]
    if cx.node.op_type == "MaxPool" and cx.out_name(1):
        # 1-D runs on an H of 1, where row- and column-major positions coincide
        y = cx.op(f"maxpool{rr}d_indices", x, out=None if r == 1 else 1,
                  column_major=bool(cx.attr_int("storage_order", 0)), **attrs)
        outs.append(T(cx.op("squeeze", y, out=1, axes=(2,)) if r == 1 else y))
    return outs


# -- LpPool / GlobalLpPool ---------------------------------------------------------------


def _abs_pow(cx: Ctx, x: str, p: int) -> str:
    """``|x| ** p`` with the cheap spellings for p = 1, 2."""
    if p == 1:
        return cx.op("abs", x)
    if p == 2:
        return cx.op("mul", x, x)
    return cx.op("pow", cx.op("abs", x), cx.scalar(float(p), x))


def _root(cx: Ctx, s: str, p: int) -> str:
    if p == 1:
        return cx.op("identity", s, out=0)
    if p == 2:
        return cx.op("sqrt", s, out=0)
    return cx.op("pow", s, cx.scalar(1.0 / p, s), out=0)


def _lp_p(cx: Ctx) -> int:
    p = cx.attr_int("p", 2)
    if p < 1:
        raise cx.unsupported(f"p={p} (LpPool needs p >= 1)")
    return p


@converter("LpPool")
def _lppool(cx: Ctx) -> list[Operand]:
    """``(sum over the window of |x|^p) ^ (1/p)``, pads counting as 0: a depthwise
    convolution with a kernel of ones sums each window exactly."""
    r = spatial_rank(cx, "pooling")
    p = _lp_p(cx)
    kernel = cx.attr_ints("kernel_shape")
    if not kernel or len(kernel) != r:
        raise cx.error(f"needs attribute kernel_shape with {r} values")
    if cx.attr_int("ceil_mode", 0):
        # ONNX's reference and PyTorch weigh the ceil-mode overhang differently
        raise cx.unsupported("ceil_mode=1 for LpPool (the overhang windows are ambiguous)")
    c = cx.shape(0)[1]
    if not isinstance(c, int):
        raise cx.unsupported(f"LpPool over symbolic channels {c!r} (the sum kernel needs C)")
    strides, dil = _ints_attr(cx, "strides", r, 1), _ints_attr(cx, "dilations", r, 1)
    pads = window_pads(cx, kernel, strides, dil)
    x = _abs_pow(cx, cx.tensor(0), p)
    k = tuple(kernel) if r > 1 else (1, kernel[0])
    cx.allocation((c, 1) + k, cx.type(0).np_dtype, "the summing kernel")
    ones = cx.b.const(f"{cx.base()}.ones", np.ones((c, 1) + k, dtype=cx.type(0).np_dtype))
    if r == 1:
        x = _as_2d(cx, x)
    s = cx.op(f"conv{_registry_rank(r)}d", x, ones, group=c, **_window_attrs(r, strides, dil, pads))
    if r == 1:
        s = cx.op("squeeze", s, axes=(2,))
    return [T(_root(cx, s, p))]


@converter("GlobalLpPool")
def _global_lppool(cx: Ctx) -> list[Operand]:
    p = _lp_p(cx)
    axes = tuple(range(2, cx.rank(0)))
    s = cx.op("reduce_sum", _abs_pow(cx, cx.tensor(0), p), axes=axes, keepdims=True)
    return [T(_root(cx, s, p))]


# -- ConvTranspose -----------------------------------------------------------------------


def _ct_pads(cx: Ctx, size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
             dil: Sequence[int], out_pad: Sequence[int]) -> list[int]:
    """Pads (begins + ends) of the full output, ``output_padding`` folded into the ends.

    ``output_shape`` (or SAME auto_pad, whose output is ``in * stride``) sets
    ``total = full + output_padding - output``, split per ONNX: SAME_UPPER puts
    the smaller half first, NOTSET and SAME_LOWER put it last. Halves use floor
    division, so a negative total (output larger than the full size) extends
    at the end, as ONNX's reference output shows.
    """
    r = len(kernel)
    auto = _auto_pad(cx)
    shape = cx.attr_ints("output_shape")
    if shape and len(shape) == r + 2:
        shape = shape[2:]  # some exporters write N and C too
    if not shape and auto.startswith("SAME"):
        shape = [d * s for d, s in zip(size, strides)]
    full = [(d - 1) * s + (k - 1) * dl + 1 for d, s, k, dl in zip(size, strides, kernel, dil)]
    if shape:
        if len(shape) != r:
            raise cx.error(f"output_shape={shape} needs {r} values")
        totals = [f + op - o for f, op, o in zip(full, out_pad, shape)]
        small = [t // 2 for t in totals]
        big = [t - t // 2 for t in totals]
        begins, ends = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        begins, ends = [0] * r, [0] * r
    else:
        pads = _ints_attr(cx, "pads", 2 * r, 0)
        begins, ends = pads[:r], pads[r:]
    return begins + [e - op for e, op in zip(ends, out_pad)]


@converter("ConvTranspose")
def _conv_transpose(cx: Ctx) -> list[Operand]:
    r = spatial_rank(cx, "transposed convolution")
    wshape = cx.static_shape(1, "ConvTranspose weights")
    kernel = [int(d) for d in wshape[2:]]
    given = cx.attr_ints("kernel_shape")
    if given and list(given) != kernel:
        raise cx.error(f"kernel_shape={given} disagrees with the weights' kernel {kernel}")
    size = static_dims(cx, 0, range(2, 2 + r), "ConvTranspose")
    strides, dil = _ints_attr(cx, "strides", r, 1), _ints_attr(cx, "dilations", r, 1)
    out_pad = _ints_attr(cx, "output_padding", r, 0)
    pads = _ct_pads(cx, size, kernel, strides, dil, out_pad)
    x, w = cx.tensor(0), cx.tensor(1)
    if r == 1:
        x, w = _as_2d(cx, x), _as_2d(cx, w)
    ins = [x, w] + ([cx.tensor(2)] if cx.has(2) else [])
    op = f"conv_transpose{_registry_rank(r)}d"
    return [T(_finish(cx, r, op, ins, group=cx.attr_int("group", 1), **_window_attrs(r, strides, dil, pads)))]


# -- gathers and scatters ----------------------------------------------------------------


def _reduction(cx: Ctx) -> str:
    red = cx.attr_str("reduction", "none")
    if red not in ("none", "add", "mul", "max", "min"):
        raise cx.unsupported(f"reduction={red!r} (valid: none, add, mul, max, min)")
    return red


@converter("GatherElements")
def _gather_elements(cx: Ctx) -> list[Operand]:
    return [T(cx.op("gather_elements", cx.tensor(0), cx.tensor(1), out=0, axis=cx.attr_int("axis", 0)))]


@converter("ScatterElements", "Scatter")
def _scatter_elements(cx: Ctx) -> list[Operand]:
    # Scatter (opset 9-10) is ScatterElements without reduction
    return [T(cx.op("scatter_elements", cx.tensor(0), cx.tensor(1), cx.tensor(2), out=0,
                    axis=cx.attr_int("axis", 0), reduction=_reduction(cx)))]


@converter("GatherND")
def _gather_nd(cx: Ctx) -> list[Operand]:
    return [T(cx.op("gather_nd", cx.tensor(0), cx.tensor(1), out=0, batch_dims=cx.attr_int("batch_dims", 0)))]


@converter("ScatterND")
def _scatter_nd(cx: Ctx) -> list[Operand]:
    return [T(cx.op("scatter_nd", cx.tensor(0), cx.tensor(1), cx.tensor(2), out=0, reduction=_reduction(cx)))]


# -- Resize / Upsample -------------------------------------------------------------------


def _given(cx: Ctx, i: int) -> bool:
    """Optional input ``i`` is present and not an empty tensor (ONNX's way to skip one)."""
    if not cx.has(i):
        return False
    v = cx.const(i)
    return v is None or v.size > 0


def _resize_plan(cx: Ctx, scales: list[float] | None, sizes: list[int] | None,
                 axes: list[int]) -> tuple[list[float], list[int]]:
    """(scale, output size) per resized axis, as ONNX derives them.

    From scales: size = floor(scale * in). From sizes: scale = out / in, or one
    scale for all axes under keep_aspect_ratio_policy (not_larger: the
    smallest, not_smaller: the largest; sizes then round half up).
    """
    dims = static_dims(cx, 0, axes, "Resize")
    if scales is not None:
        if len(scales) != len(axes):
            raise cx.error(f"scales has {len(scales)} values for {len(axes)} axes")
        return scales, [int(s * d) for s, d in zip(scales, dims)]
    assert sizes is not None
    if len(sizes) != len(axes):
        raise cx.error(f"sizes has {len(sizes)} values for {len(axes)} axes")
    ratios = [o / d for o, d in zip(sizes, dims)]
    policy = cx.attr_str("keep_aspect_ratio_policy", "stretch")
    pick = {"stretch": None, "not_larger": min, "not_smaller": max}
    if policy not in pick:
        raise cx.unsupported(f"keep_aspect_ratio_policy={policy!r} (valid: stretch, not_larger, not_smaller)")
    fn = pick[policy]
    if fn is None:
        return ratios, list(sizes)
    s = fn(ratios)
    return [s] * len(axes), [int(s * d + 0.5) for d in dims]


_RESIZE_MODES = ("nearest", "linear", "cubic")


@converter("Resize")
def _resize(cx: Ctx) -> list[Operand]:
    r = cx.rank(0)
    mode = cx.attr_str("mode", "nearest")
    if mode not in _RESIZE_MODES:
        raise cx.unsupported(f"mode={mode!r} (valid: {', '.join(_RESIZE_MODES)})")
    if mode == "nearest" and cx.attr_int("antialias", 0):
        raise cx.unsupported("antialias=1 with mode='nearest' (ONNX defines antialias for linear/cubic)")
    if cx.opset < 11:  # Resize-10: (X, scales), asymmetric coordinates, nearest rounds down
        coord, nearest, scale_at, roi_at, sizes_at = "asymmetric", "floor", 1, None, None
    else:
        coord = cx.attr_str("coordinate_transformation_mode", "half_pixel")
        nearest = cx.attr_str("nearest_mode", "round_prefer_floor")
        scale_at, roi_at, sizes_at = 2, 1, 3
    axes = [a % r for a in (cx.attr_ints("axes") or range(r))]
    scales = ([float(v) for v in cx.need_const(scale_at, "scales").reshape(-1)]
              if _given(cx, scale_at) else None)
    sizes = cx.ints(sizes_at, "sizes") if sizes_at is not None and _given(cx, sizes_at) else None
    if (scales is None) == (sizes is None):
        raise cx.error("needs exactly one of scales and sizes")
    scale_list, size_list = _resize_plan(cx, scales, sizes, axes)
    roi: tuple[float, ...] = ()
    if coord == "tf_crop_and_resize":
        if roi_at is None or not _given(cx, roi_at):
            raise cx.error("coordinate_transformation_mode=tf_crop_and_resize needs roi")
        roi = tuple(float(v) for v in cx.need_const(roi_at, "roi").reshape(-1))
    return [T(cx.op("resize", cx.tensor(0), out=0, mode=mode, coordinate_transformation_mode=coord,
                    nearest_mode=nearest, cubic_coeff_a=cx.attr_float("cubic_coeff_a", -0.75),
                    exclude_outside=bool(cx.attr_int("exclude_outside", 0)),
                    extrapolation_value=cx.attr_float("extrapolation_value", 0.0),
                    antialias=bool(cx.attr_int("antialias", 0)), axes=tuple(axes),
                    scales=tuple(scale_list), sizes=tuple(size_list), roi=roi))]


@converter("Upsample")
def _upsample(cx: Ctx) -> list[Operand]:
    """Upsample (opset 7-9): output = floor(in * scale), source = out / scale (asymmetric);
    nearest rounds down, i.e. repeats each input scale times."""
    mode = cx.attr_str("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise cx.unsupported(f"mode={mode!r} (valid: nearest, linear)")
    raw = cx.need_const(1, "scales").reshape(-1) if cx.opset >= 9 else cx.attr("scales")
    if not isinstance(raw, (np.ndarray, list, tuple)):
        raise cx.error("needs scales")
    scales = [float(v) for v in raw]
    axes = list(range(cx.rank(0)))
    scale_list, size_list = _resize_plan(cx, scales, None, axes)
    return [T(cx.op("resize", cx.tensor(0), out=0, mode=mode, coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor", axes=tuple(axes), scales=tuple(scale_list),
                    sizes=tuple(size_list)))]


# -- Attention ---------------------------------------------------------------------------
#
# Y = softmax(softcap(Q*s @ (K*s)^T) + bias) @ V with s = sqrt(scale), in the
# operator's own order (ONNX spells it out step by step). The bias is the
# run-time attn_mask (a bool mask selects 0 / -inf) plus a constant built here
# from is_causal, the window sizes and nonpad_kv_seqlen; rows it masks
# completely give 0, not nan (ONNX's fully-masked-row rule).

def _heads_4d(cx: Ctx, i: int, heads: int | None, what: str) -> str:
    """Input ``i`` as [B, heads, S, D]: 3-D [B, S, heads * D] inputs are split and transposed."""
    x = cx.tensor(i)
    if cx.rank(i) == 4:
        return x
    if heads is None or heads < 1:
        raise cx.error(f"3-D {what} needs the {'q' if i == 0 else 'kv'}_num_heads attribute")
    (hidden,) = static_dims(cx, i, [2], "3-D Attention")
    if hidden % heads:
        raise cx.error(f"{what} hidden size {hidden} is not a multiple of {heads} heads")
    y = cx.op("reshape", x, shape=(0, 0, heads, hidden // heads))
    return cx.op("transpose", y, perm=(0, 2, 1, 3))


def _repeat_heads(cx: Ctx, x: str, reps: int) -> str:
    """[B, H, T, D] -> [B, H * reps, T, D], each head repeated ``reps`` times in place (GQA)."""
    if reps == 1:
        return x
    _, h, t, d = cx.b.type_of(x).shape
    y = cx.op("expand", cx.op("unsqueeze", x, axes=(2,)), shape=(1, 1, reps, 1, 1))
    return cx.op("reshape", y, shape=(0, int(h) * reps, t, d))


def _allowed_keys(sq: int, t: int, offset: np.ndarray, causal: bool, left: int, right: int) -> np.ndarray | None:
    """Which keys each query may see, from the structure alone: [len(offset), sq, t] bools.

    Query ``i`` sits at absolute position ``offset + i``: causal allows keys
    ``j <= p``, the window ``p - left <= j <= p + right`` (-1: unbounded).
    """
    if not causal and left < 0 and right < 0:
        return None
    p = offset.reshape(-1, 1, 1) + np.arange(sq).reshape(1, sq, 1)
    j = np.arange(t).reshape(1, 1, t)
    ok = np.ones((len(offset), sq, t), dtype=bool)
    if causal:
        ok &= j <= p
    if left >= 0:
        ok &= p - j <= left
    if right >= 0:
        ok &= j - p <= right
    return ok


def _structural_bias(cx: Ctx, b: int, sq: int, t: int, past: int, dt: np.dtype) -> np.ndarray | None:
    """0 / -inf bias from is_causal, the window sizes and nonpad_kv_seqlen: [sq, t] or [b, 1, sq, t]
    (``b``: the batch, -1 when symbolic)."""
    causal = bool(cx.attr_int("is_causal", 0))
    left, right = cx.attr_int("left_window_size", -1), cx.attr_int("right_window_size", -1)
    if left < -1 or right < -1:
        raise cx.error(f"window sizes must be -1 or >= 0, got left={left} right={right}")
    nonpad = None
    if cx.has(6):
        nonpad = np.asarray(cx.need_const(6, "nonpad_kv_seqlen")).reshape(-1).astype(np.int64)
        if b < 0 or nonpad.shape != (b,):
            raise cx.error(f"nonpad_kv_seqlen has shape {list(nonpad.shape)}, expected [batch] (static)")
    offset = nonpad - sq if nonpad is not None else np.array([past])
    if causal or left >= 0 or right >= 0 or nonpad is not None:
        cx.allocation((len(offset), sq, t), dt, "the causal/window/padding bias")
    ok = _allowed_keys(sq, t, offset, causal, left, right)
    if nonpad is not None:
        pad_ok = np.arange(t).reshape(1, 1, t) < nonpad.reshape(-1, 1, 1)
        ok = pad_ok if ok is None else ok & pad_ok
    if ok is None:
        return None
    bias = np.where(ok, dt.type(0), dt.type(-np.inf)).astype(dt)
    return bias[:, None] if nonpad is not None else bias[0]


def _mask_bias(cx: Ctx, t: int) -> str | None:
    """attn_mask as an additive bias of Q's dtype, its last dim padded to ``t`` keys with -inf."""
    if not cx.has(3):
        return None
    m = cx.tensor(3)
    mt = cx.type(3)
    dt = cx.type(0)
    if mt.dtype == "bool":
        zero = cx.b.const(f"{cx.base()}.zero", np.zeros((), dt.np_dtype))
        ninf = cx.b.const(f"{cx.base()}.ninf", np.array(-np.inf, dt.np_dtype))
        m = cx.op("where", m, zero, ninf)  # a select: (1 - mask) * -inf would give 0 * -inf = nan
    elif mt.dtype != dt.dtype:
        raise cx.error(f"attn_mask has dtype {mt.dtype}, expected bool or {dt.dtype} (Q's)")
    last = mt.shape[-1]
    if not isinstance(last, int) or last > t:
        raise cx.error(f"attn_mask has {last} keys, more than the {t} of K (past included)")
    if last < t:
        r = len(mt.shape)
        m = cx.op("pad", m, pads=(0,) * (2 * r - 1) + (t - last,), value=-math.inf)
    return m


def _softmax_dtype(cx: Ctx, q_dtype: str) -> str:
    prec = cx.attr_int("softmax_precision", 0)
    return q_dtype if prec == 0 else onnx_dtype(prec, f"{cx.where}: softmax_precision")


def _guarded_softmax(cx: Ctx, logits: str, bias: str | None, const_bias: np.ndarray | None,
                     q_dtype: str) -> str:
    """softmax over keys in softmax_precision; rows whose bias is all -inf become 0."""
    work = _softmax_dtype(cx, q_dtype)
    x = logits if work == q_dtype else cx.op("cast", logits, to=work)
    p = cx.op("softmax", x, axis=-1)
    if bias is not None or (const_bias is not None and np.isneginf(const_bias.max(axis=-1)).any()):
        src = bias if bias is not None else cx.b.const(f"{cx.base()}.bias", np.asarray(const_bias))
        ninf = cx.b.const(f"{cx.base()}.ninf", np.array(-np.inf, cx.b.type_of(src).np_dtype))
        dead = cx.op("equal", cx.op("reduce_max", src, axes=(-1,), keepdims=True), ninf)
        zero = cx.b.const(f"{cx.base()}.zero", np.zeros((), cx.b.type_of(p).np_dtype))
        p = cx.op("where", dead, zero, p)
    return p if work == q_dtype else cx.op("cast", p, to=q_dtype)


def _check_attention(cx: Ctx) -> None:
    """Input combinations and attributes this converter refuses, before building anything."""
    if cx.has(4) != cx.has(5):
        raise cx.error("past_key and past_value must be given together")
    if cx.has(6) and cx.has(4):
        raise cx.error("nonpad_kv_seqlen cannot be combined with past_key / past_value")
    rank = cx.rank(0)
    if rank not in (3, 4) or cx.rank(1) != rank or cx.rank(2) != rank:
        raise cx.error("Q, K and V must all be 3-D or all 4-D")
    qh, kvh = cx.attr("q_num_heads"), cx.attr("kv_num_heads")
    if rank == 4 and ((qh is not None and qh != cx.shape(0)[1]) or (kvh is not None and kvh != cx.shape(1)[1])):
        raise cx.unsupported("q_num_heads / kv_num_heads that disagree with 4-D Q / K head dims")
    mode = cx.attr_int("qk_matmul_output_mode", 0)
    if cx.out_name(3) and mode not in (0, 1, 2, 3):
        raise cx.unsupported(f"qk_matmul_output_mode={mode} (valid: 0, 1, 2, 3)")
    if cx.out_name(3) and mode == 0 and cx.attr_float("softcap", 0.0) > 0:
        # The spec says raw QK; ONNX's reference returns it soft-capped. Refuse rather than guess.
        raise cx.unsupported("qk_matmul_output_mode=0 with softcap > 0 (spec and reference disagree)")


def _attention_kv(cx: Ctx, hq: int) -> tuple[str, str, int, int, list[Operand]]:
    """(K, V) as [B, hq, T, D] with the past prepended and KV heads repeated for GQA,
    the past length, T, and the present_key / present_value outputs (before the repeat)."""
    kvh = cx.attr("kv_num_heads")
    k = _heads_4d(cx, 1, kvh if isinstance(kvh, int) else None, "K")
    v = _heads_4d(cx, 2, kvh if isinstance(kvh, int) else None, "V")
    past = 0
    if cx.has(4):
        (past,) = static_dims(cx, 4, [2], "past_key")
        k = cx.op("concat", cx.tensor(4), k, axis=2)
        v = cx.op("concat", cx.tensor(5), v, axis=2)
    present: list[Operand] = [T(cx.op("identity", x, out=slot)) if cx.out_name(slot) else None
                              for slot, x in ((1, k), (2, v))]
    hk, t = static_dims(cx, k, [1, 2], "Attention")
    if hq % hk:
        raise cx.error(f"q heads {hq} are not a multiple of kv heads {hk}")
    return _repeat_heads(cx, k, hq // hk), _repeat_heads(cx, v, hq // hk), past, t, present


@converter("Attention")
def _attention(cx: Ctx) -> list[Operand]:
    _check_attention(cx)
    dt = cx.type(0)
    qh = cx.attr("q_num_heads")
    q = _heads_4d(cx, 0, qh if isinstance(qh, int) else None, "Q")
    hq, sq, d = static_dims(cx, q, [1, 2, 3], "Attention")
    k, v, past, t, present = _attention_kv(cx, hq)
    scale = cx.attr("scale")
    s = math.sqrt(float(scale) if scale is not None else 1 / math.sqrt(d))  # type: ignore[arg-type]
    qs, ks = cx.op("mul", q, cx.scalar(s, q)), cx.op("mul", k, cx.scalar(s, k))
    qk = cx.op("matmul", qs, cx.op("transpose", ks, perm=(0, 1, 3, 2)))
    capped = qk
    softcap = cx.attr_float("softcap", 0.0)
    if softcap > 0:
        c = cx.scalar(softcap, qk)
        capped = cx.op("mul", cx.op("tanh", cx.op("div", qk, c)), c)
    batch = cx.shape(0)[0]
    struct = _structural_bias(cx, batch if isinstance(batch, int) else -1, sq, t, past, dt.np_dtype)
    bias = _mask_bias(cx, t)
    if bias is not None and struct is not None:
        bias = cx.op("add", bias, cx.b.const(f"{cx.base()}.structure", struct))
    logits = capped
    if bias is not None or struct is not None:
        logits = cx.op("add", capped, bias or cx.b.const(f"{cx.base()}.structure", np.asarray(struct)))
    p = _guarded_softmax(cx, logits, bias, struct, dt.dtype)
    y = cx.op("matmul", p, v)
    if cx.rank(0) == 3:
        y = cx.op("reshape", cx.op("transpose", y, perm=(0, 2, 1, 3)), shape=(0, 0, -1))
    outs: list[Operand] = [T(cx.op("identity", y, out=0))]
    outs += present
    if cx.out_name(3):
        chosen = {0: qk, 1: capped, 2: logits, 3: p}[cx.attr_int("qk_matmul_output_mode", 0)]
        outs.append(T(cx.op("identity", chosen, out=3)))
    return outs


# -- CenterCropPad, ReverseSequence, MaxUnpool, Col2Im -----------------------------------


@converter("CenterCropPad")
def _center_crop_pad(cx: Ctx) -> list[Operand]:
    """One ``pad``: positive pads grow an axis, negative ones crop it; the odd
    element of a crop or pad goes at the end (ONNX)."""
    shape = cx.static_shape(0, "CenterCropPad")
    r = len(shape)
    target = cx.ints(1, "shape")
    axes = [a % r for a in (cx.attr_ints("axes") or range(r))]
    if len(axes) != len(target):
        raise cx.error(f"shape has {len(target)} values for {len(axes)} axes")
    begins, ends = [0] * r, [0] * r
    for a, want in zip(axes, target):
        grow = want - shape[a]
        begins[a] = grow // 2 if grow >= 0 else -(-grow // 2)
        ends[a] = grow - begins[a]
    return [T(cx.op("pad", cx.tensor(0), out=0, pads=tuple(begins + ends)))]


@converter("ReverseSequence")
def _reverse_sequence(cx: Ctx) -> list[Operand]:
    """A gather along the time axis with constant positions: t -> len - 1 - t below len."""
    shape = cx.static_shape(0, "ReverseSequence")
    bax, tax = cx.attr_int("batch_axis", 1), cx.attr_int("time_axis", 0)
    if {bax, tax} != {0, 1}:
        raise cx.error(f"batch_axis={bax} and time_axis={tax} must be 0 and 1")
    lens = cx.ints(1, "sequence_lens")
    b, t = shape[bax], shape[tax]
    if len(lens) != b or any(not 0 <= n <= t for n in lens):
        raise cx.error(f"sequence_lens {lens} needs {b} values in 0..{t}")
    cx.allocation((b, t), np.int64, "the reversed positions")
    pos = np.arange(t)[None, :]
    n = np.array(lens).reshape(-1, 1)
    idx = np.where(pos < n, n - 1 - pos, pos)  # [batch, time]
    if tax == 0:
        idx = idx.T
    idx = idx.reshape(idx.shape + (1,) * (len(shape) - 2)).astype(np.int64)
    full = cx.op("expand", cx.b.const(f"{cx.base()}.positions", idx), shape=shape)
    return [T(cx.op("gather_elements", cx.tensor(0), full, out=0, axis=tax))]


@converter("MaxUnpool")
def _max_unpool(cx: Ctx) -> list[Operand]:
    """Scatter X into zeros at the flat positions I (over the whole N, C, spatial tensor)."""
    shape = cx.static_shape(0, "MaxUnpool")
    r = len(shape) - 2
    kernel = _ints_attr(cx, "kernel_shape", r, 0)
    strides, pads = _ints_attr(cx, "strides", r, 1), _ints_attr(cx, "pads", 2 * r, 0)
    out = list(shape[:2]) + [(shape[2 + k] - 1) * strides[k] - pads[k] - pads[r + k] + kernel[k]
                             for k in range(r)]
    if cx.has(2) and cx.ints(2, "output_shape") != out:
        # ONNX's reference flattens I over the inferred shape, PyTorch over output_size.
        raise cx.unsupported(f"output_shape={cx.ints(2, 'output_shape')} other than the inferred "
                             f"{out} (the layout of the indices is ambiguous then)")
    zeros = cx.b.const(f"{cx.base()}.zero", np.zeros((1,), cx.type(0).np_dtype))
    flat = cx.op("expand", zeros, shape=(int(np.prod(out)),))
    idx = cx.op("reshape", cx.tensor(1), shape=(-1,))
    vals = cx.op("reshape", cx.tensor(0), shape=(-1,))
    y = cx.op("scatter_elements", flat, idx, vals, axis=0)
    return [T(cx.op("reshape", y, out=0, shape=tuple(out)))]


@converter("Col2Im")
def _col2im(cx: Ctx) -> list[Operand]:
    """Sum of sliding blocks: per kernel tap, its channel slice placed with a stride-s,
    1x1 transposed convolution of weight 1 (exact: no products with 0) and shifted by the
    tap's offset through the pads; the taps then add up."""
    image = cx.ints(1, "image_shape")
    block = cx.ints(2, "block_shape")
    r = len(image)
    if r not in (2, 3) or len(block) != r:
        raise cx.unsupported(f"Col2Im with {r}-D images (tensoropt has 2-D and 3-D)")
    n, ck, length = cx.static_shape(0, "Col2Im")
    ktot = int(np.prod(block))
    if ck % ktot:
        raise cx.error(f"input dim 1 ({ck}) is not a multiple of the block size {ktot}")
    c = ck // ktot
    strides, dil = _ints_attr(cx, "strides", r, 1), _ints_attr(cx, "dilations", r, 1)
    pads = _ints_attr(cx, "pads", 2 * r, 0)
    blocks = [(image[k] + pads[k] + pads[r + k] - dil[k] * (block[k] - 1) - 1) // strides[k] + 1
              for k in range(r)]
    if int(np.prod(blocks)) != length or min(blocks) < 1:
        raise cx.error(f"input dim 2 ({length}) is not the number of blocks {blocks}")
    cols = cx.op("reshape", cx.tensor(0), shape=(n, c, ktot) + tuple(blocks))
    cx.allocation((c, 1) + (1,) * r, cx.type(0).np_dtype, "the placing kernel")
    ones = cx.b.const(f"{cx.base()}.ones", np.ones((c, 1) + (1,) * r, cx.type(0).np_dtype))
    acc: str | None = None
    for k, tap in enumerate(np.ndindex(*block)):
        part = cx.op("reshape", cx.op("slice", cols, starts=(k,), ends=(k + 1,), axes=(2,)),
                     shape=(n, c) + tuple(blocks))
        full = [(b - 1) * s + 1 for b, s in zip(blocks, strides)]
        lo = [pads[j] - tap[j] * dil[j] for j in range(r)]
        hi = [full[j] - lo[j] - image[j] for j in range(r)]
        placed = cx.op(f"conv_transpose{r}d", part, ones, group=c, strides=tuple(strides),
                       dilations=(1,) * r, pads=tuple(lo + hi))
        acc = placed if acc is None else cx.op("add", acc, placed)
    assert acc is not None
    return [T(cx.op("identity", acc, out=0))]


# -- CausalConvWithState, TensorScatter --------------------------------------------------


@converter("CausalConvWithState")
def _causal_conv_with_state(cx: Ctx) -> list[Operand]:
    """Depthwise causal 1-D conv over [past_state (zeros if absent), input]; the new state
    is the last k - 1 steps of that sequence. SiLU runs in f32 for f16 (as ONNX does)."""
    act = cx.attr_str("activation", "none")
    if act not in ("none", "silu", "swish"):
        raise cx.unsupported(f"activation={act!r} (valid: none, silu, swish)")
    c, one, k = cx.static_shape(1, "CausalConvWithState weights")
    if one != 1:
        raise cx.error(f"weights have shape {[c, one, k]}, expected [channels, 1, k] (depthwise)")
    (length,) = static_dims(cx, 0, [2], "CausalConvWithState")
    x = cx.tensor(0)
    if cx.has(3):
        seq = cx.op("concat", cx.tensor(3), x, axis=2)
    else:
        seq = cx.op("pad", x, pads=(0, 0, k - 1, 0, 0, 0))
    w = _as_2d(cx, cx.tensor(1))
    ins = [_as_2d(cx, seq), w] + ([cx.tensor(2)] if cx.has(2) else [])
    y = cx.op("squeeze", cx.op("conv2d", *ins, group=c), axes=(2,))
    if act != "none":
        dt = cx.type(0).dtype
        z = y if dt != "f16" else cx.op("cast", y, to="f32")
        z = cx.op("mul", z, cx.op("sigmoid", z))
        y = z if dt != "f16" else cx.op("cast", z, to="f16")
    outs: list[Operand] = [T(cx.op("identity", y, out=0))]
    if cx.out_name(1):
        total = length + k - 1
        outs.append(T(cx.op("slice", seq, out=1, starts=(total - (k - 1),), ends=(total,), axes=(2,))))
    return outs


@converter("TensorScatter")
def _tensor_scatter(cx: Ctx) -> list[Operand]:
    """Write ``update`` into the cache along ``axis`` from write_indices[batch] on
    (wrapping for mode=circular): a scatter at constant positions."""
    mode = cx.attr_str("mode", "linear")
    if mode not in ("linear", "circular"):
        raise cx.unsupported(f"mode={mode!r} (valid: linear, circular)")
    cache = cx.static_shape(0, "TensorScatter")
    upd = cx.static_shape(1, "TensorScatter")
    r = len(cache)
    axis = cx.attr_int("axis", -2) % r
    if axis == 0:
        raise cx.error("axis must not be the batch axis 0")
    cx.allocation((cache[0], upd[axis]), np.int64, "the write positions")
    starts = (np.asarray(cx.need_const(2, "write_indices")).reshape(-1).astype(np.int64) if cx.has(2)
              else np.zeros(cache[0], np.int64))
    steps = np.arange(upd[axis]).reshape((1,) * axis + (-1,) + (1,) * (r - axis - 1))
    pos = starts.reshape((-1,) + (1,) * (r - 1)) + steps
    if mode == "circular":
        pos = pos % cache[axis]
    if pos.min() < 0 or pos.max() >= cache[axis]:
        raise cx.error(f"write positions {int(pos.min())}..{int(pos.max())} leave the cache's "
                       f"{cache[axis]} slots (mode=linear)")
    idx = cx.op("expand", cx.b.const(f"{cx.base()}.positions", pos.astype(np.int64)), shape=upd)
    return [T(cx.op("scatter_elements", cx.tensor(0), idx, cx.tensor(1), out=0, axis=axis))]
