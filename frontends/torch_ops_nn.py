"""ATen rules for contractions, neural-network layers and reductions.

Matrix products, convolutions (2-D and 3-D, plain and transposed; 1-D ones
on the 2-D ops over a unit height), inference-mode normalizations, pooling,
embedding and dropout, then reductions (``sum``, ``mean``, ``amax``, ``argmax``, ``cumsum``, ``var``).

Invariants: only inference semantics are imported (training-mode batch norm
and dropout are an :class:`UnsupportedError` saying to call ``eval()``); the
extra outputs torch returns for training (saved statistics, pooling indices,
dropout masks) are :class:`~.torch_values.Missing` and fail only when read;
per-axis arguments given once for all axes are spread with :func:`_per_axis`.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import numpy as np

from tensoropt.ir.types import TensorType

from .torch_context import Ctx, Rule, norm_axis, rule
from .torch_values import Missing

# -- contractions ----------------------------------------------------------------------------


@rule("aten.mm.default")
def _mm(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("matmul", cx.tensor(a["self"]), cx.tensor(a["mat2"]))


@rule("aten.bmm.default")
def _bmm(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("batch_matmul", cx.tensor(a["self"]), cx.tensor(a["mat2"]))


@rule("aten.addmm.default")
def _addmm(cx: Ctx, a: dict[str, Any]) -> str:
    # beta * self + alpha * (mat1 @ mat2) is exactly ONNX Gemm with C = self.
    return cx.op("gemm", cx.tensor(a["mat1"]), cx.tensor(a["mat2"]), cx.tensor(a["self"]),
                 alpha=cx.float_arg(a["alpha"]), beta=cx.float_arg(a["beta"]))


# -- neural-network ops ----------------------------------------------------------------------


def _per_axis(v: Sequence[int], rank: int, default: int | None = None) -> list[int]:
    """torch's per-axis argument as ``rank`` values: one value stands for every axis.

    An empty list is ``default`` for every axis (when a default is given).
    """
    out = list(v) or ([] if default is None else [default])
    return out * rank if len(out) == 1 else out


@rule("aten.convolution.default")
def _convolution(cx: Ctx, a: dict[str, Any]) -> str:
    """``conv{2,3}d`` or ``conv_transpose{2,3}d``; 1-D runs on the 2-D op over a unit height.

    torch's ``padding`` crops both ends of a transposed convolution;
    ``output_padding`` gives back that much at the end, which the registry's
    pads write as a smaller end crop.
    """
    r = cx.type_of(a["input"]).rank - 2
    kind = "conv_transpose" if a["transposed"] else "conv"
    if r not in (1, 2, 3):
        raise cx.unsupported(f"{r}-D {'transposed ' if a['transposed'] else ''}convolution")
    stride = _per_axis(cx.ints(a["stride"]), r, 1)
    begins = _per_axis(cx.ints(a["padding"]), r, 0)
    dil = _per_axis(cx.ints(a["dilation"]), r, 1)
    ends = begins
    if a["transposed"]:
        ends = [p - e for p, e in zip(begins, _per_axis(cx.ints(a["output_padding"]), r, 0))]
    bias = [cx.tensor(a["bias"])] if a["bias"] is not None else []
    x, w = cx.tensor(a["input"]), cx.tensor(a["weight"])
    group = cx.int_arg(a["groups"])
    if r > 1:
        return cx.op(f"{kind}{r}d", x, w, *bias, strides=stride, pads=begins + ends, dilations=dil, group=group)
    # 1-D: the 2-D op over a unit height (stride 1, no padding, dilation 1 on it).
    x2 = cx.op("unsqueeze", x, axes=[2], name=cx.sub("x2d"))
    w2 = cx.op("unsqueeze", w, axes=[2], name=cx.sub("w2d"))
    y = cx.op(f"{kind}2d", x2, w2, *bias, strides=[1, *stride], pads=[0, *begins, 0, *ends],
              dilations=[1, *dil], group=group, name=cx.sub(f"{kind}2d"))
    return cx.op("squeeze", y, axes=[2])


@rule("aten._native_batch_norm_legit_no_training.default")
def _batch_norm(cx: Ctx, a: dict[str, Any]) -> tuple[Any, ...]:
    x = cx.tensor(a["input"])
    c = cx.type_of(a["input"]).shape[1]
    dt = cx.type_of(a["input"]).dtype
    if not isinstance(c, int):
        raise cx.unsupported("batch norm over a symbolic channel count")
    scale = _param_or(cx, a["weight"], 1.0, c, dt, "scale")
    bias = _param_or(cx, a["bias"], 0.0, c, dt, "bias")
    y = cx.op("batchnorm", x, scale, bias, cx.tensor(a["running_mean"]), cx.tensor(a["running_var"]),
              epsilon=cx.float_arg(a["eps"]))
    return (y, Missing("batch norm's saved mean"), Missing("batch norm's saved inverse std"))


@rule("aten._native_batch_norm_legit.default", "aten._native_batch_norm_legit_functional.default",
      "aten.native_batch_norm.default")
def _batch_norm_train(cx: Ctx, a: dict[str, Any]) -> Any:
    raise cx.unsupported("batch norm in training mode (batch statistics); call module.eval() before export")


def _param_or(cx: Ctx, arg: Any, fill: float, n: int, dtype: str, tag: str) -> str:
    """An optional per-channel parameter, defaulting to a constant ``fill``."""
    if arg is not None:
        return cx.tensor(arg)
    return cx.b.const(cx.sub(tag), np.full((n,), fill, dtype=TensorType(dtype, ()).np_dtype))


@rule("aten.native_layer_norm.default")
def _layer_norm(cx: Ctx, a: dict[str, Any]) -> tuple[Any, ...]:
    t = cx.type_of(a["input"])
    norm = cx.ints(a["normalized_shape"])
    scale = (cx.tensor(a["weight"]) if a["weight"] is not None
             else cx.b.const(cx.sub("scale"), np.ones(norm, TensorType(t.dtype, ()).np_dtype)))
    bias = [cx.tensor(a["bias"])] if a["bias"] is not None else []
    y = cx.op("layernorm", cx.tensor(a["input"]), scale, *bias, axis=-len(norm),
              epsilon=cx.float_arg(a["eps"]))
    return (y, Missing("layer norm's mean"), Missing("layer norm's inverse std"))


@rule("aten.native_group_norm.default")
def _group_norm(cx: Ctx, a: dict[str, Any]) -> tuple[Any, ...]:
    # Normalize [N, G, C/G * HW] rows with layernorm, then the per-channel affine.
    t = cx.type_of(a["input"])
    if not t.is_static:
        raise cx.unsupported("group norm with symbolic sizes")
    n, c = int(t.shape[0]), int(t.shape[1])
    g = cx.int_arg(a["group"])
    np_dt = TensorType(t.dtype, ()).np_dtype
    rows = cx.op("reshape", cx.tensor(a["input"]), shape=[n, g, -1], name=cx.sub("rows"))
    ones = cx.b.const(cx.sub("ones"), np.ones((), np_dt))
    y = cx.op("layernorm", rows, ones, axis=2, epsilon=cx.float_arg(a["eps"]), name=cx.sub("norm"))
    y = cx.op("reshape", y, shape=list(t.shape), name=cx.sub("back") if a["weight"] is not None
              or a["bias"] is not None else None)
    per_channel = [c] + [1] * (t.rank - 2)
    if a["weight"] is not None:
        w = cx.op("reshape", cx.tensor(a["weight"]), shape=per_channel, name=cx.sub("w"))
        y = cx.op("mul", y, w, name=cx.sub("scaled") if a["bias"] is not None else None)
    if a["bias"] is not None:
        bias = cx.op("reshape", cx.tensor(a["bias"]), shape=per_channel, name=cx.sub("b"))
        y = cx.op("add", y, bias)
    return (y, Missing("group norm's mean"), Missing("group norm's inverse std"))


@rule("aten._softmax.default")
def _softmax(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("softmax", cx.tensor(a["self"], cx.out_type().dtype), axis=cx.int_arg(a["dim"]))


@rule("aten._log_softmax.default")
def _log_softmax(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("log_softmax", cx.tensor(a["self"], cx.out_type().dtype), axis=cx.int_arg(a["dim"]))


def _window(cx: Ctx, a: dict[str, Any], r: int) -> dict[str, Any]:
    """The registry's pooling window attributes over ``r`` axes."""
    kernel = _per_axis(cx.ints(a["kernel_size"]), r, 1)
    stride = cx.ints(a["stride"]) or kernel  # torch: an empty stride means the kernel
    return {"kernel": kernel, "strides": _per_axis(stride, r, 1),
            "pads": _per_axis(cx.ints(a["padding"]), r, 0) * 2, "ceil_mode": bool(a["ceil_mode"])}


def _max_pool(r: int) -> Rule:
    def convert(cx: Ctx, a: dict[str, Any]) -> tuple[Any, ...]:
        y = cx.op(f"maxpool{r}d", cx.tensor(a["self"]), dilations=_per_axis(cx.ints(a["dilation"]), r, 1),
                  **_window(cx, a, r))
        return (y, Missing("max pooling's indices"))

    return convert


rule("aten.max_pool2d_with_indices.default")(_max_pool(2))
rule("aten.max_pool3d_with_indices.default")(_max_pool(3))


@rule("aten.avg_pool2d.default")
def _avg_pool2d(cx: Ctx, a: dict[str, Any]) -> str:
    if a["divisor_override"] is not None:
        raise cx.unsupported("avg_pool2d with divisor_override")
    return cx.op("avgpool2d", cx.tensor(a["self"]), count_include_pad=bool(a["count_include_pad"]),
                 **_window(cx, a, 2))


@rule("aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool2d(cx: Ctx, a: dict[str, Any]) -> str:
    x = cx.tensor(a["self"])
    h, w = cx.b.type_of(x).shape[-2:]
    oh, ow = _per_axis(cx.ints(a["output_size"]), 2, 1)
    if (oh, ow) == (1, 1) and cx.b.type_of(x).rank == 4:
        return cx.op("global_avgpool", x)
    if isinstance(h, int) and isinstance(w, int) and h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]  # equal windows: a plain average pool
        return cx.op("avgpool2d", x, kernel=k, strides=k)
    raise cx.unsupported(f"adaptive average pooling from {h}x{w} to {oh}x{ow} (uneven windows)")


@rule("aten.embedding.default")
def _embedding(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("embedding", cx.tensor(a["weight"]), cx.tensor(a["indices"]))


@rule("aten.native_dropout.default")
def _native_dropout(cx: Ctx, a: dict[str, Any]) -> tuple[Any, ...]:
    if a["train"]:
        raise cx.unsupported("dropout in training mode; call module.eval() before export")
    return (cx.value(a["input"]), Missing("dropout's mask"))


# -- reductions ----------------------------------------------------------------------------


def _reduce(op: str) -> Rule:
    """``sum``/``mean``/``amax``/... over ``dim`` ([] or None: every axis).

    The input is cast to the result dtype first: torch sums bools and ints
    as int64 and reduces ``any``/``all`` as bool.
    """

    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        out = cx.out_type()
        x = cx.tensor(a["self"], out.dtype)
        dims = a.get("dim")
        axes = [] if dims is None else [int(d) for d in cx.scalar_list(dims)]
        keep = bool(a.get("keepdim", False))
        return cx.op(op, x, axes=axes, keepdims=keep)

    return convert


rule("aten.sum.dim_IntList", "aten.sum.default")(_reduce("reduce_sum"))
rule("aten.mean.dim", "aten.mean.default")(_reduce("reduce_mean"))
rule("aten.amax.default")(_reduce("reduce_max"))
rule("aten.amin.default")(_reduce("reduce_min"))
rule("aten.prod.dim_int", "aten.prod.default")(_reduce("reduce_prod"))
rule("aten.any.dim", "aten.any.dims", "aten.any.default")(_reduce("reduce_max"))
rule("aten.all.dim", "aten.all.dims", "aten.all.default")(_reduce("reduce_min"))


def _reduce_with_index(op: str, arg_op: str) -> Rule:
    """``max.dim``/``min.dim``: values, and the positions only when read."""

    def convert(cx: Ctx, a: dict[str, Any]) -> tuple[Any, ...]:
        axis, keep = cx.int_arg(a["dim"]), bool(a["keepdim"])
        x = cx.tensor(a["self"])
        y = cx.op(op, x, axes=[axis], keepdims=keep)
        assert cx.node is not None
        wanted = any(u.target is operator.getitem and u.args[1] == 1 for u in cx.node.users)
        if not wanted:
            return (y, Missing(f"the indices of {op}"))
        return (y, cx.op(arg_op, x, axis=axis, keepdims=keep, name=cx.sub("indices")))

    return convert


rule("aten.max.dim")(_reduce_with_index("reduce_max", "argmax"))
rule("aten.min.dim")(_reduce_with_index("reduce_min", "argmin"))


def _arg_reduce(op: str) -> Rule:
    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        x = cx.tensor(a["self"])
        keep = bool(a["keepdim"])
        if a["dim"] is not None:
            return cx.op(op, x, axis=cx.int_arg(a["dim"]), keepdims=keep)
        # no dim: the position in the flattened tensor
        flat = cx.op("reshape", x, shape=[-1], name=cx.sub("flat"))
        if not keep:
            return cx.op(op, flat, axis=0, keepdims=False)
        y = cx.op(op, flat, axis=0, keepdims=True, name=cx.sub(op))
        return cx.op("reshape", y, shape=list(cx.out_type().shape))

    return convert


rule("aten.argmax.default")(_arg_reduce("argmax"))
rule("aten.argmin.default")(_arg_reduce("argmin"))


@rule("aten.cumsum.default")
def _cumsum(cx: Ctx, a: dict[str, Any]) -> str:
    out = cx.out_type()  # torch sums bools and ints as int64
    return cx.op("cumsum", cx.tensor(a["self"], out.dtype), axis=norm_axis(cx.int_arg(a["dim"]), out.rank))


@rule("aten.var.correction", "aten.var.dim")
def _var(cx: Ctx, a: dict[str, Any]) -> str:
    # sum((x - mean)^2) / (N - correction), N static.
    t = cx.type_of(a["self"])
    axes = [norm_axis(int(d), t.rank) for d in cx.scalar_list(a["dim"])] or list(range(t.rank))
    sizes = [t.shape[k] for k in axes]
    if not all(isinstance(d, int) for d in sizes):
        raise cx.unsupported("variance over a symbolic dim")
    if "correction" in a:
        corr = cx.scalar(a["correction"])
        corr = 1 if corr is None else corr
    else:
        corr = 1 if a.get("unbiased", True) else 0
    n = math.prod(int(d) for d in sizes)
    x = cx.tensor(a["self"])
    mean = cx.op("reduce_mean", x, axes=axes, keepdims=True, name=cx.sub("mean"))
    d = cx.op("sub", x, mean, name=cx.sub("dev"))
    ss = cx.op("reduce_sum", cx.op("mul", d, d, name=cx.sub("sq")), axes=axes,
               keepdims=bool(a["keepdim"]), name=cx.sub("ss"))
    return cx.op("div", ss, cx.scalar_const(float(max(n - corr, 0)), t.dtype))
