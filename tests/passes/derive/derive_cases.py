"""Expressions the derivation tests start from: registry ops' own Exprs at small shapes."""

from __future__ import annotations

from tensoropt.ir.expr import Scope
from tensoropt.ir.graph import Attrs
from tensoropt.ir.types import TensorType
from tensoropt.ops import REGISTRY


def op_expr(op: str, shapes: list[tuple[int, ...]], **attrs: object) -> tuple[Scope, dict[str, TensorType]]:
    """The Expr of ``op`` on inputs ``X0, X1, ...`` of the given shapes, and their types."""
    rules = REGISTRY[op]
    names = [f"X{i}" for i in range(len(shapes))]
    ts = [TensorType("f32", s) for s in shapes]
    expr = rules.expr(names, ts, rules.with_defaults(Attrs(attrs)))
    assert expr is not None
    return expr, dict(zip(names, ts))


#: OLLIE's four reference derivations: (start, goal on the instantiated kernels)
REFERENCES = {
    "conv3x3-to-matmul": (
        lambda: op_expr("conv2d", [(1, 8, 7, 7), (8, 8, 3, 3)], pads=[1, 1, 1, 1]),
        lambda kernels: sorted(kernels) == ["eop", "matmul"],
    ),
    "convtranspose-to-matmul": (
        lambda: op_expr("conv_transpose2d", [(1, 8, 4, 4), (8, 4, 4, 4)], strides=[2, 2], pads=[1, 1, 1, 1]),
        lambda kernels: sorted(kernels) == ["eop", "matmul"],
    ),
    "conv5x5-to-conv3x3": (
        lambda: op_expr("conv2d", [(1, 4, 8, 8), (4, 4, 5, 5)], pads=[2, 2, 2, 2]),
        lambda kernels: "conv2d 3x3" in kernels,
    ),
    "dilated-g2bmm-to-g2bmm": (
        lambda: op_expr("g2bmm", [(1, 16, 4), (1, 16, 4)], width=2, dilation=2),
        lambda kernels: "g2bmm" in kernels,
    ),
}
