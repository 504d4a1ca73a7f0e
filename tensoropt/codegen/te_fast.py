"""Op-specific TE lowerings, used instead of the generic Expr lowering where they pay.

Only where a specialised form pays (``FAST``: conv2d, batch-1 gemm, signed
shifts and bitwise ops): ``conv2d`` goes through
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


#: split-K width of the batch-1 GEMV form (one AVX-512 vector of f32)
GEMV_LANES = 16


def _gemm(ins: Sequence[TensorType], outs: Sequence[TensorType], a: Attrs) -> TEFn | None:
    """Batch-1 ``gemm`` with B transposed (a fully connected layer, B = W[out, in]) as split-K GEMV.

    ``y[j] = sum_k x[k] W[j, k]`` has one output row, so the GEMM rule's
    register tile (8 rows of the output) has nothing to tile. Written as
    ``part[j, l] = sum_o x[o*16 + l] W[j, o*16 + l]`` it becomes a GEMM whose
    16-wide contiguous axis ``l`` vectorises and whose rows ``j`` tile; a
    16-element sum per output finishes it. Measured on AlexNet's 9216 -> 4096
    layer: see docs/codegen.md.
    """
    x, w = ins[0], ins[1]
    if not (a["trans_b"] and not a["trans_a"]) or x.dtype != "f32" or w.dtype != "f32":
        return None
    if not (x.is_static and w.is_static) or x.shape[0] != 1 or x.shape[1] % GEMV_LANES:
        return None
    n, k = w.shape
    alpha, beta = float(a["alpha"]), float(a["beta"])  # type: ignore[arg-type]
    lanes = GEMV_LANES

    def fn(xt: te.Tensor, wt: te.Tensor, *c: te.Tensor) -> list[te.Tensor]:
        o = te.reduce_axis((0, int(k) // lanes), "ko")
        part = te.compute((n, lanes), lambda j, l: te.sum(xt[0, o * lanes + l] * wt[j, o * lanes + l], axis=o),
                          name="gemv_part")
        r = te.reduce_axis((0, lanes), "kl")
        y = te.compute((1, n), lambda i, j: te.sum(part[j, r], axis=r), name="gemv")

        def out(i: tirx.Var, j: tirx.Var) -> tirx.PrimExpr:
            v = y[i, j] if alpha == 1.0 else y[i, j] * tirx.const(alpha, "float32")
            if c:
                b = _bcast(c[0], (i, j))
                v = v + (b if beta == 1.0 else b * tirx.const(beta, "float32"))
            return v

        return [te.compute((1, n), out, name="gemm")] if (c or alpha != 1.0) else [y]

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
FAST: dict[str, FastLowering] = {"conv2d": _conv2d, "gemm": _gemm, **{op: _int_binary(op) for op in _INT_BINARY}}
