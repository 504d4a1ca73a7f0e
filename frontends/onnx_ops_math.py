"""ONNX converters for math, logic, scans and composite normalizations/losses.

One small converter per ONNX op (or family), onto registry ops. Where ONNX has
no registry twin the converter composes registry ops, and only when the
composition is exact: logic ops are comparisons and max/min on bool, IsNaN is
``x != x``, BitwiseNot is ``-x - 1``, Hardmax is a one-hot of the argmax, and
the normalizations and losses follow ONNX's own function bodies step by step.

Invariants:
- Output dtypes are ONNX's (ArgMax/TopK indices i64, IsNaN/IsInf bool, OneHot
  the dtype of its values, EyeLike its ``dtype`` attribute).
- Inputs ONNX allows to be tensors but whose value decides an output shape or
  an attribute (CumSum's axis, TopK's k, OneHot's depth, Trilu's k) must be
  known at import time; otherwise the converter raises UnsupportedError naming
  the input (``tensoropt.backend`` re-imports with integer inputs bound).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..ir.types import DTYPES, FLOAT_DTYPES, UNSIGNED_DTYPES
from .onnx_context import Ctx, Operand, Tensor, converter, nbytes_of, onnx_dtype

T = Tensor

# -- elementwise math --------------------------------------------------------------------

_UNARY_MATH = {
    "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "arcsin", "Acos": "arccos", "Atan": "arctan",
    "Sinh": "sinh", "Cosh": "cosh", "Asinh": "arcsinh", "Acosh": "arccosh", "Atanh": "arctanh",
    "Floor": "floor", "Ceil": "ceil", "Round": "round",
}


@converter(*_UNARY_MATH)
def _unary_math(cx: Ctx) -> list[Operand]:
    return [T(cx.op(_UNARY_MATH[cx.node.op_type], cx.tensor(0), out=0))]


_BINARY_BITS = {"BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor"}


@converter(*_BINARY_BITS)
def _bitwise(cx: Ctx) -> list[Operand]:
    return [T(cx.op(_BINARY_BITS[cx.node.op_type], cx.tensor(0), cx.tensor(1), out=0))]


@converter("BitwiseNot")
def _bitwise_not(cx: Ctx) -> list[Operand]:
    # Two's complement: ~x == -x - 1 (wrapping at INT_MIN, as ~ does); unsigned:
    # the dtype's max - x (255 - x for u8, 2**64 - 1 - x for u64: exact, no wrap).
    x = cx.tensor(0)
    dt = cx.type(0).dtype
    if dt in UNSIGNED_DTYPES:
        return [T(cx.op("sub", cx.scalar(np.iinfo(DTYPES[dt]).max, x), x, out=0))]
    return [T(cx.op("sub", cx.op("neg", x), cx.scalar(1, x), out=0))]


_SHIFTS = {"LEFT": "shift_left", "RIGHT": "shift_right"}


@converter("BitShift")
def _bitshift(cx: Ctx) -> list[Operand]:
    direction = cx.attr_str("direction", "")
    if direction not in _SHIFTS:
        raise cx.error(f"direction={direction!r} (valid: {', '.join(_SHIFTS)})")
    return [T(cx.op(_SHIFTS[direction], cx.tensor(0), cx.tensor(1), out=0))]


@converter("Mod")
def _mod(cx: Ctx) -> list[Operand]:
    # fmod=0: the sign of the divisor (Python %); fmod=1: the sign of the dividend (C fmod)
    op = {0: "mod", 1: "fmod"}.get(cx.attr_int("fmod", 0))
    if op is None:
        raise cx.error(f"fmod={cx.attr_int('fmod', 0)} (valid: 0, 1)")
    return [T(cx.op(op, cx.tensor(0), cx.tensor(1), out=0))]


# -- logic (bool as 0/1: max is or, min is and) -------------------------------------------


def _false(cx: Ctx) -> str:
    return cx.b.const(f"{cx.base()}.false", np.array(False))


def _not(cx: Ctx, x: str, out: int | None) -> str:
    return cx.op("equal", x, _false(cx), out=out)


@converter("Not")
def _logical_not(cx: Ctx) -> list[Operand]:
    return [T(_not(cx, cx.tensor(0), 0))]


@converter("And", "Or")
def _and_or(cx: Ctx) -> list[Operand]:
    op = "min" if cx.node.op_type == "And" else "max"
    return [T(cx.op(op, cx.tensor(0), cx.tensor(1), out=0))]


@converter("Xor")
def _xor(cx: Ctx) -> list[Operand]:
    return [T(_not(cx, cx.op("equal", cx.tensor(0), cx.tensor(1)), 0))]


@converter("IsNaN")
def _isnan(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    return [T(_not(cx, cx.op("equal", x, x), 0))]  # NaN is the one value not equal to itself


@converter("IsInf")
def _isinf(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    pos, neg = cx.attr_int("detect_positive", 1), cx.attr_int("detect_negative", 1)
    if pos and neg:
        return [T(cx.op("equal", cx.op("abs", x), cx.scalar(math.inf, x), out=0))]
    if pos or neg:
        return [T(cx.op("equal", x, cx.scalar(math.inf if pos else -math.inf, x), out=0))]
    return [T(cx.op("equal", x, cx.scalar(math.nan, x), out=0))]  # detects nothing: all false


# -- arg-reductions, scans, selections ----------------------------------------------------


@converter("ArgMax", "ArgMin")
def _argmax(cx: Ctx) -> list[Operand]:
    op = "argmax" if cx.node.op_type == "ArgMax" else "argmin"
    return [T(cx.op(op, cx.tensor(0), out=0, axis=cx.attr_int("axis", 0),
                    keepdims=bool(cx.attr_int("keepdims", 1)),
                    select_last_index=bool(cx.attr_int("select_last_index", 0))))]


def _scalar_int(cx: Ctx, i: int, what: str) -> int:
    """A one-element constant input as an int (UnsupportedError if run-time)."""
    v = cx.ints(i, what)
    if len(v) != 1:
        raise cx.error(f"input {i} ({what}) must hold one value, got {len(v)}")
    return v[0]


@converter("CumSum", "CumProd")
def _cumsum(cx: Ctx) -> list[Operand]:
    op = "cumsum" if cx.node.op_type == "CumSum" else "cumprod"
    return [T(cx.op(op, cx.tensor(0), out=0, axis=_scalar_int(cx, 1, "axis"),
                    exclusive=bool(cx.attr_int("exclusive", 0)), reverse=bool(cx.attr_int("reverse", 0))))]


@converter("TopK")
def _topk(cx: Ctx) -> list[Operand]:
    k = _scalar_int(cx, 1, "k") if cx.opset >= 10 else cx.attr_int("k", -1)
    names = [cx.out_name(0) or f"{cx.base()}.values", cx.out_name(1) or f"{cx.base()}.indices"]
    # sorted=0 leaves the order to the backend: sorted output is one valid answer.
    outs = cx.b.op_multi("topk", cx.tensor(0), names=names, k=k, axis=cx.attr_int("axis", -1),
                         largest=bool(cx.attr_int("largest", 1)), sorted=bool(cx.attr_int("sorted", 1)))
    return [T(o) for o in outs]


@converter("Trilu")
def _trilu(cx: Ctx) -> list[Operand]:
    k = _scalar_int(cx, 1, "k") if cx.has(1) else 0
    return [T(cx.op("trilu", cx.tensor(0), out=0, upper=bool(cx.attr_int("upper", 1)), k=k))]


@converter("OneHot")
def _onehot(cx: Ctx) -> list[Operand]:
    depth = cx.need_const(1, "depth").reshape(-1)
    if depth.size != 1:
        raise cx.error(f"input 1 (depth) must hold one value, got {depth.size}")
    # ONNX casts depth to int64 (a float depth such as 10.0 is allowed)
    return [T(cx.op("onehot", cx.tensor(0), cx.tensor(2), out=0, depth=int(depth[0]),
                    axis=cx.attr_int("axis", -1)))]


@converter("Hardmax")
def _hardmax(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    r = cx.rank(0)
    axis = cx.attr_int("axis", -1 if cx.opset >= 13 else 1)
    if not -r <= axis < r:
        raise cx.error(f"axis {axis} is out of range for rank {r}")
    axis %= r
    if cx.opset >= 13:
        return [T(_hardmax_axis(cx, x, axis, 0))]
    # before opset 13: one hardmax over all dims from axis on, as one flattened row
    if axis == r - 1:
        return [T(_hardmax_axis(cx, x, axis, 0))]
    flat = cx.op("flatten", x, axis=axis)
    y = _hardmax_axis(cx, flat, 1, None)
    return [T(cx.op("reshape", y, out=0, shape=cx.static_shape(0, "Hardmax before opset 13")))]


def _hardmax_axis(cx: Ctx, x: str, axis: int, out: int | None) -> str:
    """1 at the first maximum along ``axis``, 0 elsewhere (a one-hot of the argmax)."""
    n = cx.b.type_of(x).shape[axis]
    if not isinstance(n, int):
        raise cx.unsupported(f"Hardmax along a symbolic dim {n!r} (the one-hot depth must be known)")
    ids = cx.op("argmax", x, axis=axis, keepdims=False)
    dt = cx.b.type_of(x).np_dtype
    values = cx.b.const(f"{cx.base()}.off_on", np.array([0, 1], dtype=dt))
    return cx.op("onehot", ids, values, out=out, depth=n, axis=axis)


@converter("EyeLike")
def _eyelike(cx: Ctx) -> list[Operand]:
    shape = cx.static_shape(0, "EyeLike (its output is a constant of the input's shape)")
    if len(shape) != 2:
        raise cx.error(f"input 0 has shape {list(shape)}, expected 2-D")
    dt = onnx_dtype(cx.attr_int("dtype", 0), cx.where) if cx.attr("dtype") is not None else cx.type(0).dtype
    k = cx.attr_int("k", 0)
    size = nbytes_of(shape, DTYPES[dt])
    if cx.budget.refusal(size) is None:
        cx.budget.take(size)
        return [np.eye(shape[0], shape[1], k=k, dtype=DTYPES[dt])]
    # Over the import budget: ones kept to the diagonal j - i == k, at run time.
    ones = cx.filled(shape, np.array(1, DTYPES[dt]), out=None)
    assert isinstance(ones, Tensor)  # the same budget refuses it as an array
    upper = cx.op("trilu", ones.name, upper=True, k=k)
    return [T(cx.op("trilu", upper, out=0, upper=False, k=k))]


@converter("Range")
def _range(cx: Ctx) -> list[Operand]:
    # Reached when some input is not a constant (constant Ranges are folded), or
    # when a constant one is over the import budget: the IR has no run-time Range
    # (its output length depends on the input values).
    for i, what in enumerate(("start", "limit", "delta")):
        cx.need_const(i, what)
    raise cx.unsupported("Range is computed only at import time (its output length depends on "
                         "the input values)")


# -- composite normalizations (ONNX's function bodies, op for op) -------------------------


def _stash(cx: Ctx, x: str) -> tuple[str, Callable[[str], str]]:
    """``x`` in the ``stash_type`` dtype (the precision of the statistics), and a
    function casting a result back to ``x``'s dtype."""
    dt = cx.b.type_of(x).dtype
    stash = onnx_dtype(cx.attr_int("stash_type", 1), f"{cx.where}: stash_type")
    if stash not in FLOAT_DTYPES:
        raise cx.unsupported(f"stash_type {stash} (a float dtype is needed)")
    if stash == dt:
        return x, lambda y: y
    return cx.op("cast", x, to=stash), lambda y: cx.op("cast", y, to=dt)


@converter("RMSNormalization")
def _rms_norm(cx: Ctx) -> list[Operand]:
    x, scale = cx.tensor(0), cx.tensor(1)
    r = cx.rank(0)
    axis = cx.attr_int("axis", -1)
    if not -r <= axis < r:
        raise cx.error(f"axis {axis} is out of range for rank {r}")
    u, back = _stash(cx, x)
    axes = tuple(range(axis % r, r))
    ms = cx.op("reduce_mean", cx.op("mul", u, u), axes=axes, keepdims=True)
    rms = cx.op("sqrt", cx.op("add", ms, cx.scalar(cx.attr_float("epsilon", 1e-5), u)))
    norm = back(cx.op("div", u, rms))
    return [T(cx.op("mul", norm, scale, out=0))]


def _moments(cx: Ctx, x: str, axes: tuple[int, ...]) -> tuple[str, str]:
    """(mean, E[x^2] - mean^2) over ``axes``, kept dims: the ONNX function bodies' variance."""
    mean = cx.op("reduce_mean", x, axes=axes, keepdims=True)
    sq = cx.op("reduce_mean", cx.op("mul", x, x), axes=axes, keepdims=True)
    return mean, cx.op("sub", sq, cx.op("mul", mean, mean))


@converter("GroupNormalization")
def _group_norm(cx: Ctx) -> list[Operand]:
    x, scale, bias = cx.tensor(0), cx.tensor(1), cx.tensor(2)
    shape = cx.shape(0)
    rest = shape[1:]
    if len(shape) < 2 or not all(isinstance(d, int) for d in rest):
        raise cx.unsupported(f"GroupNormalization of shape {list(shape)} (needs static dims after the batch)")
    c = int(rest[0])
    g = cx.attr_int("num_groups", 0)
    if g <= 0 or c % g:
        raise cx.error(f"num_groups={g} does not divide the {c} channels")
    # GroupNormalization-18 (scale per group) is deprecated: ONNX's checker rejects it,
    # so every model that gets here has opset-21 semantics (scale per channel).
    u, back = _stash(cx, x)
    grouped = cx.op("reshape", u, shape=(0, g, -1))
    mean, var = _moments(cx, grouped, (2,))
    std = cx.op("sqrt", cx.op("add", var, cx.scalar(cx.attr_float("epsilon", 1e-5), u)))
    norm = cx.op("div", cx.op("sub", grouped, mean), std)
    norm = back(cx.op("reshape", norm, shape=(0,) + tuple(int(d) for d in rest)))
    per_c = (1,) * (len(shape) - 2)
    s = cx.op("reshape", scale, shape=(-1,) + per_c)
    b = cx.op("reshape", bias, shape=(-1,) + per_c)
    return [T(cx.op("add", cx.op("mul", norm, s), b, out=0))]


@converter("MeanVarianceNormalization")
def _mvn(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    axes = tuple(cx.attr_ints("axes", [0, 2, 3]) or [0, 2, 3])
    mean, var = _moments(cx, x, axes)
    std = cx.op("add", cx.op("sqrt", var), cx.scalar(1e-9, x))
    return [T(cx.op("div", cx.op("sub", x, mean), std, out=0))]


@converter("LpNormalization")
def _lp_norm(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    p, axis = cx.attr_int("p", 2), cx.attr_int("axis", -1)
    if p not in (1, 2):
        raise cx.unsupported(f"p={p} (ONNX defines LpNormalization for p = 1 and 2)")
    mag = cx.op("abs", x) if p == 1 else cx.op("mul", x, x)
    norm = cx.op("reduce_sum", mag, axes=(axis,), keepdims=True)
    if p == 2:
        norm = cx.op("sqrt", norm)
    zero = cx.scalar(0.0, x)
    # a zero vector normalizes to zeros, not 0/0
    return [T(cx.op("where", cx.op("equal", norm, zero), zero, cx.op("div", x, norm), out=0))]


@converter("Swish")
def _swish(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    ax = cx.op("mul", cx.scalar(cx.attr_float("alpha", 1.0), x), x)
    return [T(cx.op("mul", x, cx.op("sigmoid", ax), out=0))]


# -- losses -------------------------------------------------------------------------------

_REDUCTIONS = ("none", "sum", "mean")


def _nll(cx: Ctx, logp: str, target: str, weight: str | None) -> str:
    """NegativeLogLikelihoodLoss of log-probabilities ``logp`` [N, C, d...].

    The target's one-hot comes from comparing it with a constant arange of
    the classes (``where``, not a multiply: ``-inf * 0`` would be NaN), so
    out-of-range and ignored targets pick nothing and weigh nothing. ``mean``
    divides by the summed weights of the targets not ignored, as the spec says.
    """
    reduction = cx.attr_str("reduction", "mean")
    if reduction not in _REDUCTIONS:
        raise cx.error(f"reduction={reduction!r} (valid: {', '.join(_REDUCTIONS)})")
    shape = cx.b.type_of(logp).shape
    c = shape[1] if len(shape) >= 2 else None
    if not isinstance(c, int):
        raise cx.unsupported(f"input of shape {list(shape)}: the class dim must be static")
    tdt = cx.b.type_of(target).np_dtype
    cx.allocation((c,), tdt, "the class index table")
    spread = (1, c) + (1,) * (len(shape) - 2)  # [1, C, 1...]: classes along axis 1
    classes = cx.b.const(f"{cx.base()}.classes", np.arange(c, dtype=tdt).reshape(spread))
    hit = cx.op("equal", cx.op("unsqueeze", target, axes=(1,)), classes)
    keep = None
    if cx.attr("ignore_index") is not None:
        ii = np.array(cx.attr_int("ignore_index", 0), dtype=tdt)
        ignored = cx.op("equal", target, cx.b.const(f"{cx.base()}.ignore", ii))
        keep = _not(cx, ignored, None)
        hit = cx.op("min", hit, cx.op("unsqueeze", keep, axes=(1,)))  # and
    zero = cx.scalar(0.0, logp)
    loss = cx.op("reduce_sum", cx.op("where", hit, cx.op("neg", logp), zero), axes=(1,), keepdims=False)
    w = None
    if weight is not None:
        wc = cx.op("reshape", weight, shape=spread)
        w = cx.op("reduce_sum", cx.op("where", hit, wc, zero), axes=(1,), keepdims=False)
        loss = cx.op("mul", loss, w)
    elif keep is not None:
        w = cx.op("cast", keep, to=cx.b.type_of(logp).dtype)
    if reduction == "none":
        return cx.op("identity", loss, out=0)
    total = cx.op("reduce_sum", loss, keepdims=False, out=0 if reduction == "sum" else None)
    if reduction == "sum":
        return total
    if w is None:
        return cx.op("reduce_mean", loss, keepdims=False, out=0)
    return cx.op("div", total, cx.op("reduce_sum", w, keepdims=False), out=0)


def _weight(cx: Ctx) -> str | None:
    return cx.tensor(2) if cx.has(2) else None


@converter("NegativeLogLikelihoodLoss")
def _nll_loss(cx: Ctx) -> list[Operand]:
    return [T(_nll(cx, cx.tensor(0), cx.tensor(1), _weight(cx)))]


@converter("SoftmaxCrossEntropyLoss")
def _softmax_ce(cx: Ctx) -> list[Operand]:
    if cx.rank(0) < 2:
        raise cx.error(f"scores of shape {list(cx.shape(0))}: expected [N, C, ...]")
    log_prob = cx.op("log_softmax", cx.tensor(0), axis=1, out=1 if cx.out_name(1) else None)
    loss = _nll(cx, log_prob, cx.tensor(1), _weight(cx))
    return [T(loss), T(log_prob)] if cx.out_name(1) else [T(loss)]
