"""Window ops (conv2d, pooling, lrn) on symbolic dims: infer, Expr and cost never crash.

A symbolic spatial dim is only accepted under a 1x1, stride 1, unpadded
window; then the Expr must exist where it can be written and match eval once
the symbols are bound. Where a per-position divisor needs the input size, the
Expr rule gives None (no body can name a symbol's value).
"""

from __future__ import annotations

import numpy as np
import pytest

from tensoropt.errors import ShapeError
from tensoropt.interp import evaluate_expr
from tensoropt.ir.types import TensorType
from tensoropt.ops import get_op, infer_node_types

RNG = np.random.default_rng(3)

#: (op, symbolic input types, concrete input shapes, symbol bindings, attrs)
SYMBOLIC = [
    ("avgpool2d", [(1, 2, "h", "w")], {"h": 5, "w": 4}, {"kernel": [1, 1]}),
    ("avgpool2d", [(1, 2, "h", "w")], {"h": 5, "w": 4}, {"kernel": [1, 1], "count_include_pad": True}),
    ("avgpool2d", [(1, 2, "h", "w")], {"h": 5, "w": 4}, {"kernel": [1, 1], "ceil_mode": True}),
    # a static axis with a real window next to a symbolic one: constant divisor
    ("avgpool2d", [(1, 2, "h", 8)], {"h": 3}, {"kernel": [1, 3], "strides": [1, 2]}),
    ("avgpool2d", [(1, 2, "h", 8)], {"h": 3},
     {"kernel": [1, 3], "pads": [0, 1, 0, 1], "count_include_pad": True}),
    ("avgpool2d", [("n", "c", 7, 7)], {"n": 2, "c": 3}, {"kernel": [3, 3], "pads": [1, 1, 1, 1]}),
    ("maxpool2d", [(1, 2, "h", "w")], {"h": 5, "w": 4}, {"kernel": [1, 1]}),
    ("maxpool2d", [(1, 2, "h", 8)], {"h": 3},
     {"kernel": [1, 3], "strides": [1, 2], "pads": [0, 1, 0, 1], "ceil_mode": True}),
    ("conv2d", [(1, 2, "h", "w"), (3, 2, 1, 1)], {"h": 5, "w": 4}, {}),
    ("conv2d", [("n", 2, "h", "w"), (3, 2, 1, 1), (3,)], {"n": 2, "h": 5, "w": 4}, {}),
    ("lrn", [("n", "c", "h", "w")], {"n": 2, "c": 5, "h": 3, "w": 2}, {"size": 3}),
]


def _concrete(shape: tuple, binds: dict[str, int]) -> tuple[int, ...]:
    return tuple(binds[d] if isinstance(d, str) else d for d in shape)


@pytest.mark.parametrize("op, shapes, binds, attrs", SYMBOLIC,
                         ids=[f"{c[0]}-{k}" for k, c in enumerate(SYMBOLIC)])
def test_symbolic_window_expr_matches_eval(op: str, shapes: list, binds: dict, attrs: dict) -> None:
    rules = get_op(op)
    a = rules.with_defaults(attrs)
    ts = [TensorType("f32", s) for s in shapes]
    outs = infer_node_types(op, ts, attrs)
    rules.cost(ts, outs, a)  # no crash on symbols
    names = [f"x{k}" for k in range(len(ts))]
    scope = rules.expr(names, ts, a)
    assert scope is not None
    xs = [RNG.standard_normal(_concrete(s, binds)) for s in shapes]
    want = rules.eval(xs, a)[0]
    got = evaluate_expr(scope, dict(zip(names, xs)), binds, np.float64)
    assert got.shape == want.shape == _concrete(outs[0].shape, binds)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("attrs", [
    {"kernel": [1, 3], "pads": [0, 1, 0, 1]},  # borders count fewer taps
    {"kernel": [1, 3], "strides": [1, 2], "ceil_mode": True},  # ceil overhang
])
def test_avgpool_varying_divisor_on_symbolic_dims_has_no_expr(attrs: dict) -> None:
    rules = get_op("avgpool2d")
    ts = [TensorType("f32", (1, 2, "h", 8))]
    infer_node_types("avgpool2d", ts, attrs)
    assert rules.expr(["x"], ts, rules.with_defaults(attrs)) is None


@pytest.mark.parametrize("op, shapes, attrs", [
    ("conv2d", [(1, 2, "h", "w"), (3, 2, 3, 3)], {}),
    ("avgpool2d", [(1, 2, "h", "w")], {"kernel": [3, 3]}),
    ("maxpool2d", [(1, 2, 4, "w")], {"kernel": [1, 1], "strides": [1, 2]}),
    ("maxpool2d", [(1, 2, "h", 4)], {"kernel": [1, 1], "pads": [1, 0, 0, 0]}),
])
def test_symbolic_spatial_dim_under_a_real_window_is_a_shape_error(
        op: str, shapes: list, attrs: dict) -> None:
    with pytest.raises(ShapeError, match="symbolic spatial dim '[hw]' needs a 1x1, stride 1"):
        infer_node_types(op, [TensorType("f32", s) for s in shapes], attrs)
