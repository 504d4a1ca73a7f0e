"""Op-specific TE lowerings, used instead of the generic Expr lowering where they pay.

Only where a specialised form pays (``FAST``: conv2d, conv_transpose2d,
signed shifts and bitwise ops; a batch-1 fully connected layer needs no form
of its own: the ``gemv`` schedule rule splits its reduction): ``conv2d`` goes through
:func:`schedule_conv.conv2d_te`, which picks per shape between a direct
convolution and im2col + GEMM (measured, see ``schedule_conv``), both of which
the GEMM schedule rule then tiles. The shifts and bitwise ops on integers use
native integer instructions: their Exprs compute in float64 (the interpreter's
rule for integer Exprs), which is exact only below 2**53, so 64-bit operands
lose bits (signed dtypes only: TVM's lowering rejects unsigned shifts). Each entry returns None when it does not apply (non-float dtypes
for conv, symbolic channel or kernel sizes), and the node falls back to its
Expr.
"""

from __future__ import annotations

from typing import Callable, Sequence

from tvm import te, tirx

from ..ir.graph import Attrs
from ..ir.types import TensorType

TEFn = Callable[..., list[te.Tensor]]
FastLowering = Callable[[Sequence[TensorType], Sequence[TensorType], Attrs], "TEFn | None"]


def _conv2d(ins: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> TEFn | None:
    x, w = ins[0], ins[1]
    if x.dtype != "f32" or w.dtype != "f32" or not w.is_static or not isinstance(x.shape[1], int):
        return None
    strides, pads, dils, group = a["strides"], a["pads"], a["dilations"], int(a["group"])  # type: ignore[arg-type]

    def fn(data: te.Tensor, weight: te.Tensor, *bias: te.Tensor) -> list[te.Tensor]:
        from .schedule_conv import conv2d_te

        y = conv2d_te(data, weight, strides, pads, dils, group)
        if bias:
            b = bias[0]
            y = te.compute(y.shape, lambda n, f, i, j: y[n, f, i, j] + b[f], name="conv2d_bias")
        return [y]

    return fn


def _conv_transpose2d(ins: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> TEFn | None:
    """f32 conv_transpose2d with static channels, kernel and spatial dims (any batch):
    :func:`conv_transpose.conv_transpose2d_te` (a GEMM form chosen per shape)."""
    x, w = ins[0], ins[1]
    if x.dtype != "f32" or w.dtype != "f32" or not w.is_static or not all(isinstance(d, int) for d in x.shape[1:]):
        return None
    from .conv_transpose import conv_transpose2d_te, geometry

    geo = geometry(x.shape[1], w.shape[1], w.shape[2], w.shape[3], x.shape[2], x.shape[3],  # type: ignore[arg-type]
                   a["strides"], a["pads"], a["dilations"], int(a["group"]))  # type: ignore[arg-type]

    def fn(data: te.Tensor, weight: te.Tensor, *bias: te.Tensor) -> list[te.Tensor]:
        return [conv_transpose2d_te(data, weight, geo, bias[0] if bias else None)]

    return fn


def _bcast(x: te.Tensor, ax: tuple) -> tirx.PrimExpr:
    """``x`` read at output index ``ax`` with NumPy broadcasting (size-1 dims read 0)."""
    lead = len(ax) - len(x.shape)
    idx = [tirx.const(0, "int64") if (isinstance(d, tirx.IntImm) and int(d) == 1) else a
           for d, a in zip(x.shape, ax[lead:])]
    return x(*idx)


def _in_width(b: tirx.PrimExpr, bits: int, dt: str) -> tirx.PrimExpr:
    """A shift count in ``[0, bits)``."""
    return tirx.all(b >= tirx.const(0, dt), b < tirx.const(bits, dt))


def _shift_left(a: tirx.PrimExpr, b: tirx.PrimExpr, bits: int, dt: str) -> tirx.PrimExpr:
    ok = _in_width(b, bits, dt)
    safe = tirx.Select(ok, b, tirx.const(0, dt))
    return tirx.Select(ok, a << safe, tirx.const(0, dt))


def _shift_right(a: tirx.PrimExpr, b: tirx.PrimExpr, bits: int, dt: str) -> tirx.PrimExpr:
    ok = _in_width(b, bits, dt)
    safe = tirx.Select(ok, b, tirx.const(0, dt))
    fill = tirx.Select(a < tirx.const(0, dt), tirx.const(-1, dt), tirx.const(0, dt))
    return tirx.Select(ok, a >> safe, fill)


_INT_BINARY: dict[str, Callable[[tirx.PrimExpr, tirx.PrimExpr, int, str], tirx.PrimExpr]] = {
    "shift_left": _shift_left,
    "shift_right": _shift_right,
    "bitwise_and": lambda a, b, bits, dt: a & b,
    "bitwise_or": lambda a, b, bits, dt: a | b,
    "bitwise_xor": lambda a, b, bits, dt: a ^ b,
}


def _int_binary(op: str) -> FastLowering:
    """Native integer lowering of ``op`` (same dtype operands, broadcast like NumPy)."""

    def make(ins: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> TEFn | None:
        dt = outs[0].dtype
        # Signed only: TVM's TIR lowering fails on unsigned shifts (a "0u - x"
        # const-fold check); unsigned ops keep their Expr, exact below 2**53.
        if dt not in ("i8", "i16", "i32", "i64") or not ins[0].dtype == ins[1].dtype == dt:
            return None
        from .relax_graph import TVM_DTYPES

        tdt = TVM_DTYPES[dt]
        bits = int(tdt.removeprefix("int"))
        body = _INT_BINARY[op]

        def fn(x: te.Tensor, y: te.Tensor) -> list[te.Tensor]:
            rank = max(len(x.shape), len(y.shape))
            shape = []
            for k in range(rank):
                kx, ky = k - rank + len(x.shape), k - rank + len(y.shape)
                dx = x.shape[kx] if kx >= 0 else None
                dy = y.shape[ky] if ky >= 0 else None
                if dx is None or (dy is not None and isinstance(dx, tirx.IntImm) and int(dx) == 1):
                    shape.append(dy)
                else:
                    shape.append(dx)
            return [te.compute(shape, lambda *ax: body(_bcast(x, ax), _bcast(y, ax), bits, tdt), name=op)]

        return fn

    return make


#: op -> specialised lowering (tried before the op's Expr).
FAST: dict[str, FastLowering] = {"conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d, **{op: _int_binary(op) for op in _INT_BINARY}}
