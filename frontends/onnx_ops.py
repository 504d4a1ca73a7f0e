"""ONNX op converters: one small function per ONNX op (or family), onto registry ops.

Each converter reads its :class:`Ctx` and returns one operand per ONNX output.
Ops with no registry equivalent are composed from registry ops when the
composition is exact (``Elu``, ``PRelu``, ``InstanceNormalization``, ``Tile``);
anything else is absent from :data:`CONVERTERS`, and the importer names it.

Opset differences are handled here, not by rewriting the model: an attribute
that later opsets moved to an input (``axes``, ``split``, ``pads``, clip
bounds) is read from wherever the node has it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..ir.types import Dim, dtype_of
from ..ops.shapes import expand_spec, reshape_spec
from .onnx_context import Ctx, Dims, Operand, Tensor, converter, onnx_dtype

T = Tensor

# -- elementwise -----------------------------------------------------------------------

_UNARY = {
    "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log",
    "Sqrt": "sqrt", "Neg": "neg", "Abs": "abs", "Erf": "erf", "Reciprocal": "reciprocal",
}


@converter(*_UNARY)
def _unary(cx: Ctx) -> list[Operand]:
    return [T(cx.op(_UNARY[cx.node.op_type], cx.tensor(0), out=0))]


_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Equal": "equal",
           "Less": "less", "Greater": "greater"}


@converter(*_BINARY)
def _binary(cx: Ctx) -> list[Operand]:
    return [T(cx.op(_BINARY[cx.node.op_type], cx.tensor(0), cx.tensor(1), out=0))]


@converter("Pow")
def _pow(cx: Ctx) -> list[Operand]:
    x, y = cx.tensor(0), cx.tensor(1)
    dt = cx.type(0).dtype
    if cx.type(1).dtype != dt:  # ONNX lets the exponent have its own type
        y = cx.op("cast", y, to=dt)
    return [T(cx.op("pow", x, y, out=0))]


@converter("LessOrEqual", "GreaterOrEqual")
def _cmp_or_equal(cx: Ctx) -> list[Operand]:
    # (a < b) or (a == b): false for NaN, as ONNX says ("not a > b" would be true)
    strict = "less" if cx.node.op_type == "LessOrEqual" else "greater"
    a, b = cx.tensor(0), cx.tensor(1)
    return [T(cx.op("max", cx.op(strict, a, b), cx.op("equal", a, b), out=0))]


_VARIADIC = {"Sum": "add", "Max": "max", "Min": "min", "Mean": "add"}


@converter(*_VARIADIC)
def _variadic(cx: Ctx) -> list[Operand]:
    op = _VARIADIC[cx.node.op_type]
    names = [cx.tensor(i) for i in range(len(cx.inputs))]
    acc = names[0]
    mean = cx.node.op_type == "Mean"
    for k, n in enumerate(names[1:]):
        last = k == len(names) - 2 and not mean
        acc = cx.op(op, acc, n, out=0 if last else None)
    if mean:
        acc = cx.op("div", acc, cx.scalar(len(names), acc), out=0)
    elif len(names) == 1:
        acc = cx.op("identity", acc, out=0)
    return [T(acc)]


@converter("Where")
def _where(cx: Ctx) -> list[Operand]:
    return [T(cx.op("where", cx.tensor(0), cx.tensor(1), cx.tensor(2), out=0))]


@converter("LeakyRelu")
def _leaky(cx: Ctx) -> list[Operand]:
    return [T(cx.op("leaky_relu", cx.tensor(0), out=0, alpha=cx.attr_float("alpha", 0.01)))]


@converter("Gelu")
def _gelu(cx: Ctx) -> list[Operand]:
    return [T(cx.op("gelu", cx.tensor(0), out=0, approximate=cx.attr_str("approximate", "none")))]


@converter("Clip")
def _clip(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    if cx.opset < 11:
        lo, hi = cx.attr_float("min", -math.inf), cx.attr_float("max", math.inf)
        return [T(cx.op("clip", x, out=0, min=lo, max=hi))]
    consts = [cx.const(i) if cx.has(i) else np.array(bound) for i, bound in ((1, -math.inf), (2, math.inf))]
    if all(c is not None for c in consts):
        lo, hi = (float(np.asarray(c).reshape(())) for c in consts)  # type: ignore[arg-type]
        if cx.type(0).dtype.startswith(("i", "u")):
            # integer clip: run-time max/min keep the dtype exact
            y = cx.op("max", x, cx.scalar(max(lo, -2**62), x)) if lo > -math.inf else x
            y = cx.op("min", y, cx.scalar(min(hi, 2**62), x)) if hi < math.inf else y
            return [T(cx.op("identity", y, out=0))]
        return [T(cx.op("clip", x, out=0, min=lo, max=hi))]
    y = cx.op("max", x, cx.tensor(1)) if cx.has(1) else x  # run-time bounds
    y = cx.op("min", y, cx.tensor(2)) if cx.has(2) else y
    return [T(cx.op("identity", y, out=0))]


# compositions of registry ops (exact, so every one keeps an Expr definition)

@converter("Elu", "Celu", "Selu")
def _elu_family(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    kind = cx.node.op_type
    alpha = cx.attr_float("alpha", {"Elu": 1.0, "Celu": 1.0, "Selu": 1.6732632423543772848170429916717}[kind])
    inner = x if kind != "Celu" else cx.op("div", x, cx.scalar(alpha, x))
    em1 = cx.op("sub", cx.op("exp", inner), cx.scalar(1.0, x))
    neg = cx.op("mul", em1, cx.scalar(alpha, x))
    zero = cx.scalar(0.0, x)
    cond = cx.op("greater", x, zero)
    if kind != "Selu":
        return [T(cx.op("where", cond, x, neg, out=0))]
    gamma = cx.attr_float("gamma", 1.0507009873554804934193349852946)
    y = cx.op("where", cond, x, neg)
    return [T(cx.op("mul", y, cx.scalar(gamma, x), out=0))]


@converter("PRelu")
def _prelu(cx: Ctx) -> list[Operand]:
    x, slope = cx.tensor(0), cx.tensor(1)
    xs, ss = cx.shape(0), cx.shape(1)
    if len(ss) == 1 and len(xs) > 2 and ss[0] == xs[1] and ss[0] != xs[-1] and ss[0] != 1:
        # opset < 7 models give one slope per channel (dim 1), not NumPy-broadcast
        slope = cx.op("reshape", slope, shape=(-1,) + (1,) * (len(xs) - 2))
    cond = cx.op("less", x, cx.scalar(0.0, x))
    return [T(cx.op("where", cond, cx.op("mul", x, slope), x, out=0))]


@converter("ThresholdedRelu")
def _thresholded_relu(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    cond = cx.op("greater", x, cx.scalar(cx.attr_float("alpha", 1.0), x))
    return [T(cx.op("where", cond, x, cx.scalar(0.0, x), out=0))]


def _softplus(cx: Ctx, x: str, out: int | None) -> str:
    # log(1 + exp(x)) computed stably as max(x, 0) + log(1 + exp(-|x|))
    t = cx.op("exp", cx.op("neg", cx.op("abs", x)))
    return cx.op("add", cx.op("relu", x), cx.op("log", cx.op("add", t, cx.scalar(1.0, x))), out=out)


@converter("Softplus")
def _softplus_op(cx: Ctx) -> list[Operand]:
    return [T(_softplus(cx, cx.tensor(0), 0))]


@converter("Mish")
def _mish(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    return [T(cx.op("mul", x, cx.op("tanh", _softplus(cx, x, None)), out=0))]


@converter("Softsign")
def _softsign(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    return [T(cx.op("div", x, cx.op("add", cx.op("abs", x), cx.scalar(1.0, x)), out=0))]


@converter("HardSigmoid", "HardSwish")
def _hard_sigmoid(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    swish = cx.node.op_type == "HardSwish"
    alpha = 1.0 / 6.0 if swish else cx.attr_float("alpha", 0.2)
    beta = 0.5 if swish else cx.attr_float("beta", 0.5)
    lin = cx.op("add", cx.op("mul", x, cx.scalar(alpha, x)), cx.scalar(beta, x))
    hs = cx.op("clip", lin, out=None if swish else 0, min=0.0, max=1.0)
    return [T(cx.op("mul", x, hs, out=0) if swish else hs)]


@converter("Sign")
def _sign(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    zero = cx.scalar(0, x)
    pos = cx.op("where", cx.op("greater", x, zero), cx.scalar(1, x), zero)
    neg = cx.op("where", cx.op("less", x, zero), cx.scalar(-1, x), pos)
    if cx.type(0).dtype not in ("f16", "f32", "f64"):
        return [T(cx.op("identity", neg, out=0))]
    # NaN is neither > 0 nor < 0: keep it NaN (x == x is false only for NaN)
    return [T(cx.op("where", cx.op("equal", x, x), neg, x, out=0))]


@converter("Shrink")
def _shrink(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    lambd, bias = cx.attr_float("lambd", 0.5), cx.attr_float("bias", 0.0)
    zero = cx.scalar(0, x)
    lo = cx.op("where", cx.op("less", x, cx.scalar(-lambd, x)), cx.op("add", x, cx.scalar(bias, x)), zero)
    return [T(cx.op("where", cx.op("greater", x, cx.scalar(lambd, x)),
                    cx.op("sub", x, cx.scalar(bias, x)), lo, out=0))]


# -- linear algebra ----------------------------------------------------------------------


@converter("MatMul")
def _matmul(cx: Ctx) -> list[Operand]:
    return [T(cx.op("matmul", cx.tensor(0), cx.tensor(1), out=0))]


@converter("Gemm")
def _gemm(cx: Ctx) -> list[Operand]:
    ins = [cx.tensor(0), cx.tensor(1)] + ([cx.tensor(2)] if cx.has(2) else [])
    return [T(cx.op("gemm", *ins, out=0, alpha=cx.attr_float("alpha", 1.0), beta=cx.attr_float("beta", 1.0),
                    trans_a=bool(cx.attr_int("transA", 0)), trans_b=bool(cx.attr_int("transB", 0))))]


@converter("Einsum")
def _einsum(cx: Ctx) -> list[Operand]:
    eq = cx.attr_str("equation", "").replace(" ", "")
    return [T(cx.op("einsum", *(cx.tensor(i) for i in range(len(cx.inputs))), out=0, equation=eq))]


# -- convolution and pooling -------------------------------------------------------------


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(cx: Ctx) -> list[Operand]:
    op = "global_avgpool" if cx.node.op_type == "GlobalAveragePool" else "global_maxpool"
    return [T(cx.op(op, cx.tensor(0), out=0))]


# -- normalization and softmax -----------------------------------------------------------


def _no_extra_outputs(cx: Ctx, what: str) -> None:
    if any(o for o in cx.node.output[1:]):
        raise cx.unsupported(f"{what} (outputs 1.. are only produced in training mode)")


@converter("BatchNormalization")
def _batchnorm(cx: Ctx) -> list[Operand]:
    if cx.attr_int("training_mode", 0):
        raise cx.unsupported("training_mode=1 (tensoropt imports inference graphs)")
    _no_extra_outputs(cx, "running statistics outputs")
    ins = [cx.tensor(i) for i in range(5)]
    return [T(cx.op("batchnorm", *ins, out=0, epsilon=cx.attr_float("epsilon", 1e-5)))]


@converter("LayerNormalization")
def _layernorm(cx: Ctx) -> list[Operand]:
    ins = [cx.tensor(0), cx.tensor(1)] + ([cx.tensor(2)] if cx.has(2) else [])
    axis, eps = cx.attr_int("axis", -1), cx.attr_float("epsilon", 1e-5)
    y = cx.op("layernorm", *ins, out=0, axis=axis, epsilon=eps)
    if not any(cx.out_name(k) for k in (1, 2)):
        return [T(y)]
    # Mean and InvStdDev (kept dims), as ONNX's function body computes them
    x = ins[0]
    axes = tuple(range(axis % cx.rank(0), cx.rank(0)))
    mean = cx.op("reduce_mean", x, out=1, axes=axes, keepdims=True)
    d = cx.op("sub", x, mean)
    var = cx.op("reduce_mean", cx.op("mul", d, d), axes=axes, keepdims=True)
    inv = cx.op("rsqrt", cx.op("add", var, cx.scalar(eps, x)), out=2)
    return [T(y), T(mean), T(inv)]


@converter("InstanceNormalization")
def _instance_norm(cx: Ctx) -> list[Operand]:
    x, scale, bias = cx.tensor(0), cx.tensor(1), cx.tensor(2)
    r = cx.rank(0)
    axes = tuple(range(2, r))
    mean = cx.op("reduce_mean", x, axes=axes, keepdims=True)
    d = cx.op("sub", x, mean)
    var = cx.op("reduce_mean", cx.op("mul", d, d), axes=axes, keepdims=True)
    inv = cx.op("rsqrt", cx.op("add", var, cx.scalar(cx.attr_float("epsilon", 1e-5), x)))
    per_c = (r - 2) * (1,)
    s = cx.op("reshape", scale, shape=(-1,) + per_c)
    b = cx.op("reshape", bias, shape=(-1,) + per_c)
    return [T(cx.op("add", cx.op("mul", cx.op("mul", d, inv), s), b, out=0))]


@converter("LRN")
def _lrn(cx: Ctx) -> list[Operand]:
    return [T(cx.op("lrn", cx.tensor(0), out=0, size=cx.attr_int("size", 1),
                    alpha=cx.attr_float("alpha", 1e-4), beta=cx.attr_float("beta", 0.75),
                    bias=cx.attr_float("bias", 1.0)))]


@converter("Softmax", "LogSoftmax")
def _softmax(cx: Ctx) -> list[Operand]:
    op = "softmax" if cx.node.op_type == "Softmax" else "log_softmax"
    x = cx.tensor(0)
    r = cx.rank(0)
    if cx.opset >= 13:
        return [T(cx.op(op, x, out=0, axis=cx.attr_int("axis", -1)))]
    # before opset 13: softmax over all dims from axis on, as one flattened row
    axis = cx.attr_int("axis", 1) % max(r, 1)
    if axis == r - 1:
        return [T(cx.op(op, x, out=0, axis=-1))]
    shape = cx.shape(0)
    flat = cx.op("flatten", x, axis=axis)
    y = cx.op(op, flat, axis=1)
    back = tuple(0 if k < axis else d for k, d in enumerate(shape))
    if not all(isinstance(d, int) for d in back):
        raise cx.unsupported(f"softmax (opset {cx.opset}) over symbolic trailing dims {list(shape)}")
    return [T(cx.op("reshape", y, out=0, shape=back))]


# -- data movement -----------------------------------------------------------------------


@converter("Identity")
def _identity(cx: Ctx) -> list[Operand]:
    return [cx.inputs[0]] if not isinstance(cx.inputs[0], T) else [T(cx.op("identity", cx.tensor(0), out=0))]


@converter("Dropout")
def _dropout(cx: Ctx) -> list[Operand]:
    train = cx.const(2) if cx.has(2) else None
    if cx.has(2) and (train is None or bool(np.asarray(train).reshape(()))):
        raise cx.unsupported("training_mode (tensoropt imports inference graphs)")
    y = cx.op("identity", cx.tensor(0), out=0)
    if cx.out_name(1) is None:
        return [T(y)]
    # all true: an array within the import budget, else a run-time expand
    return [T(y), cx.filled(cx.static_shape(0, "the Dropout mask"), np.array(True), out=1)]


@converter("ConstantOfShape")
def _constant_of_shape(cx: Ctx) -> list[Operand]:
    """The value (default a float32 0) over a constant shape: an array when it
    fits the import budget, else an ``expand`` of the scalar that runs with the
    graph (a declared size is never allocated here just because a file says so)."""
    value = cx.attr("value")
    v = np.asarray(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
    if v.size != 1:
        raise cx.error(f"attribute value must hold one element, got {v.size}")
    try:
        dtype_of(v.dtype)
    except ValueError:
        raise cx.unsupported(f"value of dtype {v.dtype}, which tensoropt does not support") from None
    return [cx.filled(cx.ints(0, "shape"), v.reshape(()), out=0)]


@converter("Cast")
def _cast(cx: Ctx) -> list[Operand]:
    to = onnx_dtype(cx.attr_int("to", 0), cx.where)
    if cx.type(0).dtype == to:
        return [T(cx.op("identity", cx.tensor(0), out=0))]
    return [T(cx.op("cast", cx.tensor(0), out=0, to=to))]


@converter("CastLike")
def _cast_like(cx: Ctx) -> list[Operand]:
    to = cx.type(1).dtype
    if cx.type(0).dtype == to:
        return [T(cx.op("identity", cx.tensor(0), out=0))]
    return [T(cx.op("cast", cx.tensor(0), out=0, to=to))]


@converter("Reshape")
def _reshape(cx: Ctx) -> list[Operand]:
    target = cx.dims(1, "shape")
    if cx.attr_int("allowzero", 0) and 0 in target:
        raise cx.unsupported("allowzero=1 with a 0 in the target shape (zero-sized tensors)")
    spec = reshape_spec(cx.shape(0), target)
    if spec is None:
        raise cx.unsupported(f"reshape to {list(target)}: more than one dim is unknown at import time")
    return [T(cx.op("reshape", cx.tensor(0), out=0, shape=spec))]


@converter("Flatten")
def _flatten(cx: Ctx) -> list[Operand]:
    axis = cx.attr_int("axis", 1)
    return [T(cx.op("flatten", cx.tensor(0), out=0, axis=axis + cx.rank(0) if axis < 0 else axis))]


@converter("Transpose")
def _transpose(cx: Ctx) -> list[Operand]:
    perm = cx.attr_ints("perm") or list(reversed(range(cx.rank(0))))
    return [T(cx.op("transpose", cx.tensor(0), out=0, perm=tuple(perm)))]


def _axes(cx: Ctx, index: int, since: int) -> list[int] | None:
    """Axes from input ``index`` (opset >= ``since``) or the ``axes`` attribute."""
    if cx.opset >= since:
        return cx.ints(index, "axes") if cx.has(index) else None
    return cx.attr_ints("axes")


@converter("Squeeze")
def _squeeze(cx: Ctx) -> list[Operand]:
    axes = _axes(cx, 1, 13) or []
    return [T(cx.op("squeeze", cx.tensor(0), out=0, axes=tuple(axes)))]


@converter("Unsqueeze")
def _unsqueeze(cx: Ctx) -> list[Operand]:
    axes = _axes(cx, 1, 13)
    if axes is None:
        raise cx.error("needs axes")
    return [T(cx.op("unsqueeze", cx.tensor(0), out=0, axes=tuple(axes)))]


@converter("Concat")
def _concat(cx: Ctx) -> list[Operand]:
    ins = [cx.tensor(i) for i in range(len(cx.inputs)) if cx.has(i)]
    return [T(cx.op("concat", *ins, out=0, axis=cx.attr_int("axis", 0)))]


@converter("Split")
def _split(cx: Ctx) -> list[Operand]:
    axis = cx.attr_int("axis", 0)
    n = len(cx.node.output)
    dim = cx.shape(0)[axis]
    sizes: list[int] | None
    if cx.opset >= 13:
        sizes = cx.ints(1, "split") if cx.has(1) else None
    else:
        sizes = cx.attr_ints("split")
    if sizes is None:
        if not isinstance(dim, int):
            raise cx.unsupported(f"split of a symbolic dim {dim!r} without explicit sizes")
        n = cx.attr_int("num_outputs", n)
        size = -(-dim // n)  # ONNX: equal parts, the last one smaller
        sizes = [min(size, dim - k * size) for k in range(n)]
    names = [cx.out_name(k) or f"{cx.base()}.{k}" for k in range(len(sizes))]
    outs = cx.b.op_multi("split", cx.tensor(0), names=names, axis=axis, split=tuple(sizes))
    return [T(o) for o in outs]


@converter("Slice")
def _slice(cx: Ctx) -> list[Operand]:
    if cx.opset < 10:
        starts, ends = cx.attr_ints("starts") or [], cx.attr_ints("ends") or []
        axes, steps = cx.attr_ints("axes") or [], []
    else:
        starts, ends = cx.ints(1, "starts"), cx.ints(2, "ends")
        axes = cx.ints(3, "axes") if cx.has(3) else []
        steps = cx.ints(4, "steps") if cx.has(4) else []
    big = 2**31 - 1  # INT64_MAX and friends mean "to the end": keep within our attr range
    clamp = [max(min(v, big), -big) for v in ends]
    starts = [max(min(v, big), -big) for v in starts]
    return [T(cx.op("slice", cx.tensor(0), out=0, starts=tuple(starts), ends=tuple(clamp),
                    axes=tuple(axes), steps=tuple(steps)))]


@converter("Pad")
def _pad(cx: Ctx) -> list[Operand]:
    mode = cx.attr_str("mode", "constant")
    r = cx.rank(0)
    if cx.opset < 11:
        pads = cx.attr_ints("pads") or []
        value = cx.attr_float("value", 0.0)
    else:
        pads = cx.ints(1, "pads")
        value = float(np.asarray(cx.need_const(2, "constant_value")).reshape(())) if cx.has(2) else 0.0
        if cx.has(3):  # opset 18: pads only for these axes
            axes = [a % r for a in cx.ints(3, "axes")]
            full = [0] * (2 * r)
            for j, a in enumerate(axes):
                full[a], full[a + r] = pads[j], pads[j + len(axes)]
            pads = full
    if mode not in ("constant", "reflect", "edge"):
        raise cx.unsupported(f"pad mode={mode!r} (supported: constant, reflect, edge)")
    return [T(cx.op("pad", cx.tensor(0), out=0, pads=tuple(pads), mode=mode, value=value))]


@converter("Expand")
def _expand(cx: Ctx) -> list[Operand]:
    target = cx.dims(1, "shape")
    spec = expand_spec(cx.shape(0), target)
    if spec is None:
        raise cx.unsupported(f"expand of {list(cx.shape(0))} to {list(target)}: a symbolic target dim "
                             "is not the input's dim")
    return [T(cx.op("expand", cx.tensor(0), out=0, shape=spec))]


@converter("Tile")
def _tile(cx: Ctx) -> list[Operand]:
    reps = cx.ints(1, "repeats")
    shape = cx.static_shape(0, "Tile")
    if 0 in reps:
        raise cx.unsupported(f"repeats={reps}: a zero repeat gives a zero-size tensor")
    x = cx.tensor(0)
    # [d0, d1] tiled [r0, r1] is [r0, d0, r1, d1] broadcast, reshaped to [r0*d0, r1*d1]
    inter = cx.op("reshape", x, shape=tuple(v for d in shape for v in (1, d)))
    big = cx.op("expand", inter, shape=tuple(v for r, d in zip(reps, shape) for v in (r, d)))
    return [T(cx.op("reshape", big, out=0, shape=tuple(r * d for r, d in zip(reps, shape))))]


@converter("Gather")
def _gather(cx: Ctx) -> list[Operand]:
    return [T(cx.op("gather", cx.tensor(0), cx.tensor(1), out=0, axis=cx.attr_int("axis", 0)))]


@converter("DepthToSpace", "SpaceToDepth")
def _depth_space(cx: Ctx) -> list[Operand]:
    n, c, h, w = cx.static_shape(0, cx.node.op_type)
    b = cx.attr_int("blocksize", 1)
    x = cx.tensor(0)
    if cx.node.op_type == "SpaceToDepth":
        t = cx.op("reshape", x, shape=(n, c, h // b, b, w // b, b))
        # DCR: out channel (by, bx, c); CRD: (c, by, bx)
        dcr = cx.attr_str("mode", "DCR") == "DCR"
        t = cx.op("transpose", t, perm=(0, 3, 5, 1, 2, 4) if dcr else (0, 1, 3, 5, 2, 4))
        return [T(cx.op("reshape", t, out=0, shape=(n, c * b * b, h // b, w // b)))]
    if cx.attr_str("mode", "DCR") == "DCR":
        t = cx.op("reshape", x, shape=(n, b, b, c // (b * b), h, w))
        t = cx.op("transpose", t, perm=(0, 3, 4, 1, 5, 2))
    else:
        t = cx.op("reshape", x, shape=(n, c // (b * b), b, b, h, w))
        t = cx.op("transpose", t, perm=(0, 1, 4, 2, 5, 3))
    return [T(cx.op("reshape", t, out=0, shape=(n, c // (b * b), h * b, w * b)))]


# -- reductions --------------------------------------------------------------------------

_REDUCE = {"ReduceSum": "reduce_sum", "ReduceMean": "reduce_mean", "ReduceMax": "reduce_max",
           "ReduceMin": "reduce_min", "ReduceProd": "reduce_prod"}
_REDUCE_COMPOSED = ("ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")


def _reduce_args(cx: Ctx) -> tuple[tuple[int, ...], bool] | None:
    """(axes, keepdims), or None for a no-op (empty axes with noop_with_empty_axes)."""
    since = 13 if cx.node.op_type == "ReduceSum" else 18
    axes = _axes(cx, 1, since) or []
    if not axes and cx.attr_int("noop_with_empty_axes", 0):
        return None
    return tuple(axes), bool(cx.attr_int("keepdims", 1))


@converter(*_REDUCE, *_REDUCE_COMPOSED)
def _reduce(cx: Ctx) -> list[Operand]:
    x = cx.tensor(0)
    args = _reduce_args(cx)
    kind = cx.node.op_type
    if args is None:
        pre = {"ReduceSumSquare": lambda: cx.op("mul", x, x), "ReduceL1": lambda: cx.op("abs", x),
               "ReduceL2": lambda: cx.op("abs", x), "ReduceLogSum": lambda: cx.op("log", x)}
        y = pre[kind]() if kind in pre else x
        return [T(cx.op("identity", y, out=0))]
    axes, keep = args
    if kind in _REDUCE:
        return [T(cx.op(_REDUCE[kind], x, out=0, axes=axes, keepdims=keep))]
    if kind == "ReduceLogSumExp":  # max-shifted: log(sum(exp(x - m))) + m
        m = cx.op("reduce_max", x, axes=axes, keepdims=True)
        s = cx.op("reduce_sum", cx.op("exp", cx.op("sub", x, m)), axes=axes, keepdims=keep)
        every = axes or tuple(range(cx.rank(0)))  # [] reduces every axis
        mk = m if keep else cx.op("squeeze", m, axes=every)
        return [T(cx.op("add", cx.op("log", s), mk, out=0))]
    body = {"ReduceSumSquare": lambda: cx.op("mul", x, x), "ReduceL1": lambda: cx.op("abs", x),
            "ReduceL2": lambda: cx.op("mul", x, x), "ReduceLogSum": lambda: x}[kind]()
    last = kind in ("ReduceSumSquare", "ReduceL1")
    s = cx.op("reduce_sum", body, out=0 if last else None, axes=axes, keepdims=keep)
    if last:
        return [T(s)]
    return [T(cx.op("sqrt" if kind == "ReduceL2" else "log", s, out=0))]


# -- shapes as values --------------------------------------------------------------------


@converter("Shape")
def _shape(cx: Ctx) -> list[Operand]:
    dims = cx.shape(0)
    r = len(dims)
    start = cx.attr_int("start", 0)
    end = cx.attr_int("end", r)
    start, end = (max(0, min(r, v + r if v < 0 else v)) for v in (start, end))
    return [Dims(tuple(dims[start:end]))]


@converter("Size")
def _size(cx: Ctx) -> list[Operand]:
    dims = cx.shape(0)
    if all(isinstance(d, int) for d in dims):
        return [np.array(int(np.prod(dims, dtype=np.int64)), dtype=np.int64)]
    if sum(not isinstance(d, int) for d in dims) == 1 and int(np.prod([d for d in dims if isinstance(d, int)])) == 1:
        return [Dims(tuple(d for d in dims if not isinstance(d, int)), scalar=True)]
    raise cx.unsupported(f"Size of symbolic shape {list(dims)} (a product of symbols)")
