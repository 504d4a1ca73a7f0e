"""Op-specific TE lowerings, used instead of the generic Expr lowering where they pay.

Only where a measured formulation beats the generic one: ``conv2d`` goes
through :func:`schedule_conv.conv2d_te`, which picks per shape between a
direct convolution and im2col + GEMM (measured, see ``schedule_conv``), both
of which the GEMM schedule rule then tiles. Each entry returns None when it
does not apply (non-float dtypes, symbolic channel or kernel sizes), and the
node falls back to its Expr.
"""

from __future__ import annotations

from typing import Callable, Sequence

from tvm import te

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


#: op -> specialised lowering (tried before the op's Expr).
FAST: dict[str, FastLowering] = {"conv2d": _conv2d}
