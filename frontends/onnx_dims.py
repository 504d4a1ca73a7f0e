"""Shape arithmetic over symbolic dims at import time.

``Shape(x)`` of a tensor with a symbolic batch gives :class:`Dims`
(``[batch, 3, 224, 224]``); exported models then slice, gather, concatenate and
unsqueeze such vectors before a Reshape or Expand reads them. These rules run
that bookkeeping on object arrays (entries are ints or symbol names), so the
result is again a Dims value and nothing reaches the graph. Arithmetic on
symbols (``batch * 2``) has no IR dim and is refused with the node named.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .onnx_context import Ctx, Dims, Operand, onnx_dtype

DimsRule = Callable[[Ctx], Sequence[Operand]]


def _obj(cx: Ctx, i: int) -> np.ndarray:
    """Input ``i`` as an object array of ints and symbols."""
    op = cx.inputs[i]
    if isinstance(op, Dims):
        a = np.empty(len(op.dims), dtype=object)
        a[:] = list(op.dims)
        return a.reshape(()) if op.scalar else a
    if isinstance(op, np.ndarray) and op.dtype.kind in "iu":
        return op.astype(object)
    raise cx.unsupported(f"input {i} mixes symbolic shape values with run-time data")


def _dims(a: object) -> Dims:
    # np.take with a scalar index returns the element itself, not a 0-D array
    a = np.asarray(a, dtype=object) if not isinstance(a, np.ndarray) else a
    flat = [int(v) if not isinstance(v, str) else v for v in a.reshape(-1)]
    return Dims(tuple(flat), scalar=a.ndim == 0)


def _gather(cx: Ctx) -> list[Operand]:
    idx = cx.need_const(1, "indices")
    return [_dims(np.take(_obj(cx, 0), idx, axis=cx.attr_int("axis", 0)))]


def _concat(cx: Ctx) -> list[Operand]:
    parts = [_obj(cx, i).reshape(-1) for i in range(len(cx.inputs)) if cx.has(i)]
    return [_dims(np.concatenate(parts))]


def _unsqueeze(cx: Ctx) -> list[Operand]:
    a = _obj(cx, 0)
    if a.ndim != 0:  # Dims are vectors: a scalar becomes one, nothing more
        raise cx.unsupported("unsqueeze of a symbolic shape vector (the result would be 2-D)")
    return [_dims(a.reshape(-1))]


def _squeeze(cx: Ctx) -> list[Operand]:
    a = _obj(cx, 0)
    if a.size != 1:
        return [_dims(a)]
    return [_dims(a.reshape(()))]


def _slice(cx: Ctx) -> list[Operand]:
    a = _obj(cx, 0)
    if cx.opset < 10:
        starts, ends, steps = cx.attr_ints("starts") or [0], cx.attr_ints("ends") or [len(a)], [1]
    else:
        starts, ends = cx.ints(1, "starts"), cx.ints(2, "ends")
        steps = cx.ints(4, "steps") if cx.has(4) else [1]
    return [_dims(a[slice(starts[0], ends[0], steps[0])])]


def _same(cx: Ctx) -> list[Operand]:
    op = cx.inputs[0]
    if cx.node.op_type == "Cast":
        if onnx_dtype(cx.attr_int("to", 0), cx.where) not in ("i64", "i32"):
            raise cx.unsupported("cast of a symbolic shape to a non-integer type")
    return [op]


def _reshape(cx: Ctx) -> list[Operand]:
    a = _obj(cx, 0)
    target = cx.ints(1, "shape")
    if len(target) != 1 or target[0] not in (-1, 0, a.size):
        raise cx.unsupported(f"reshape of a symbolic shape vector to {target} (Dims are 1-D)")
    return [_dims(a.reshape(-1))]


def _arith(cx: Ctx) -> list[Operand]:
    """Add/Sub/Mul/Div on dims: exact only when every symbol meets a neutral value."""
    a, b = _obj(cx, 0), _obj(cx, 1)
    neutral = {"Add": 0, "Sub": 0, "Mul": 1, "Div": 1}[cx.node.op_type]
    a, b = np.broadcast_arrays(a, b)
    out = np.empty(a.shape, dtype=object)
    for k, (x, y) in enumerate(zip(a.reshape(-1), b.reshape(-1))):
        if isinstance(x, str) or isinstance(y, str):
            if isinstance(y, int) and y == neutral:
                out.reshape(-1)[k] = x
            elif isinstance(x, int) and x == neutral and cx.node.op_type in ("Add", "Mul"):
                out.reshape(-1)[k] = y
            else:
                raise cx.unsupported(f"arithmetic on symbolic dims ({x} {cx.node.op_type} {y}) "
                                     "has no IR dim")
        else:
            f = {"Add": lambda p, q: p + q, "Sub": lambda p, q: p - q, "Mul": lambda p, q: p * q,
                 "Div": lambda p, q: p // q}[cx.node.op_type]
            out.reshape(-1)[k] = f(int(x), int(y))
    return [_dims(out)]


DIMS_OPS: dict[str, DimsRule] = {
    "Gather": _gather, "Concat": _concat, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
    "Slice": _slice, "Cast": _same, "Identity": _same, "Reshape": _reshape,
    "Add": _arith, "Sub": _arith, "Mul": _arith, "Div": _arith,
}
