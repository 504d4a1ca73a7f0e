"""Banded attention ops (g2bmm, gbmm): error messages, symbolic dims, Expr text, cost.

Numerics against naive loops are in ``op_cases.py`` (via ``test_rules.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from tensoropt.errors import ShapeError
from tensoropt.interp import evaluate_expr
from tensoropt.ir.types import TensorType
from tensoropt.ops import get_op, infer_node_types

RNG = np.random.default_rng(11)


def T(dtype: str, *shape: int | str) -> TensorType:
    return TensorType(dtype, tuple(shape))


@pytest.mark.parametrize("op, ins, attrs, msg", [
    ("g2bmm", [T("f32", 2, 7), T("f32", 2, 7, 4)], {"width": 1},
     r"input 0 has shape \[2, 7\], expected 3-D \(B, M, K\)"),
    ("g2bmm", [T("f32", 2, 7, 4), T("f32", 2, 7, 5)], {"width": 1},
     r"input 1 has shape \[2, 7, 5\], expected \[2, 7, 4\] \(same as input 0\)"),
    ("g2bmm", [T("f32", 2, 7, 4), T("f32", 2, 6, 4)], {"width": 1},
     r"input 1 has shape \[2, 6, 4\], expected dim 0 == 2 and dim 1 == 7"),
    ("g2bmm", [T("f32", "b", "m", 4), T("f32", "b", "n", 4)], {"width": 1},
     r"input 1 has shape \[b, n, 4\], expected dim 0 == b and dim 1 == m"),
    ("g2bmm", [T("i32", 2, 7, 4), T("i32", 2, 7, 4)], {"width": 1},
     r"input 0 has dtype i32, expected a float dtype"),
    ("g2bmm", [T("f32", 2, 7, 4), T("f16", 2, 7, 4)], {"width": 1},
     r"input 1 has dtype f16, expected f32 \(same as input 0\)"),
    ("g2bmm", [T("f32", 2, 7, 4), T("f32", 2, 7, 4)], {"width": -1}, r"attribute width=-1 must be >= 0"),
    ("g2bmm", [T("f32", 2, 7, 4), T("f32", 2, 7, 4)], {"width": 1, "dilation": 0},
     r"attribute dilation=0 must be >= 1"),
    ("g2bmm", [T("f32", 2, 7, 4), T("f32", 2, 7, 4)], {}, r"g2bmm needs attribute 'width' \(int\)"),
    ("gbmm", [T("f32", 2, 7, 4), T("f32", 2, 7, 3)], {"width": 1},
     r"input 0 has shape \[2, 7, 4\], expected dim 2 == 3 \(2\*width\+1, width=1\)"),
    ("gbmm", [T("f32", 2, 7, "w"), T("f32", 2, 7, 3)], {"width": 1},
     r"input 0 has shape \[2, 7, w\], expected dim 2 == 3"),
    ("gbmm", [T("f32", 2, 7, 3), T("f32", 7, 3)], {"width": 1},
     r"input 1 has shape \[7, 3\], expected 3-D \(B, M, N\)"),
    ("gbmm", [T("f32", 2, 7, 3), T("f32", 2, 8, 3)], {"width": 1},
     r"input 1 has shape \[2, 8, 3\], expected dim 0 == 2 and dim 1 == 7"),
])
def test_shape_errors_name_the_input(op: str, ins: list[TensorType], attrs: dict, msg: str) -> None:
    with pytest.raises(ShapeError, match=msg):
        infer_node_types(op, ins, attrs)


#: (op, symbolic input shapes, bindings, attrs, output shape)
SYMBOLIC = [
    ("g2bmm", [("b", "m", "k"), ("b", "m", "k")], {"b": 2, "m": 6, "k": 3}, {"width": 2},
     ("b", "m", 5)),
    ("g2bmm", [(1, "m", 4), (1, "m", 4)], {"m": 5}, {"width": 1, "dilation": 2}, (1, "m", 3)),
    ("gbmm", [("b", "m", 5), ("b", "m", "n")], {"b": 2, "m": 6, "n": 3}, {"width": 2}, ("b", "m", "n")),
    ("gbmm", [(1, "m", 3), (1, "m", 4)], {"m": 5}, {"width": 1, "dilation": 3}, (1, "m", 4)),
]


@pytest.mark.parametrize("op, shapes, binds, attrs, out", SYMBOLIC,
                         ids=[f"{c[0]}-{k}" for k, c in enumerate(SYMBOLIC)])
def test_symbolic_dims_infer_and_expr_matches_eval(op: str, shapes: list, binds: dict, attrs: dict,
                                                   out: tuple) -> None:
    rules = get_op(op)
    a = rules.with_defaults(attrs)
    ts = [TensorType("f32", s) for s in shapes]
    outs = infer_node_types(op, ts, attrs)
    assert outs == [TensorType("f32", out)]
    rules.cost(ts, outs, a)  # symbols count as 1: no crash
    names = [f"x{k}" for k in range(len(ts))]
    scope = rules.expr(names, ts, a)
    assert scope is not None
    xs = [RNG.standard_normal(tuple(binds.get(d, d) for d in s)) for s in shapes]
    want = rules.eval(xs, a)[0]
    got = evaluate_expr(scope, dict(zip(names, xs)), binds, np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_exprs_read_the_band_as_one_affine_index() -> None:
    g2 = get_op("g2bmm")
    s = g2.expr(["A", "B"], [T("f32", "b", "m", 8)] * 2, g2.with_defaults({"width": 2, "dilation": 3}))
    assert str(s) == "L[i0:b, i1:m, i2:5] Sum[k:8] { %A[i0, i1, k] * %B[i0, i1 + i2 * 3 - 6, k] }"
    gb = get_op("gbmm")
    s = gb.expr(["P", "V"], [T("f32", "b", "m", 3), T("f32", "b", "m", 8)], gb.with_defaults({"width": 1}))
    assert str(s) == "L[i0:b, i1:m, i2:8] Sum[w:3] { %P[i0, i1, w] * %V[i0, i1 + w - 1, i2] }"


def test_cost_is_two_flops_per_band_multiply_add() -> None:
    g2, gb = get_op("g2bmm"), get_op("gbmm")
    a = g2.with_defaults({"width": 2})
    ts = [T("f32", 2, 7, 4)] * 2
    cost = g2.cost(ts, infer_node_types("g2bmm", ts, {"width": 2}), a)
    assert cost.flops == 2 * (2 * 7 * 5) * 4
    assert cost.bytes == 4 * (2 * 7 * 4 * 2 + 2 * 7 * 5)
    ts = [T("f32", 2, 7, 5), T("f32", 2, 7, 3)]
    cost = gb.cost(ts, infer_node_types("gbmm", ts, {"width": 2}), a)
    assert cost.flops == 2 * (2 * 7 * 3) * 5
    assert cost.bytes == 4 * (2 * 7 * 5 + 2 * 7 * 3 * 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_eval_keeps_the_dtype(dtype: type) -> None:
    x = RNG.standard_normal((1, 4, 3)).astype(dtype)
    y = get_op("g2bmm").eval([x, x], get_op("g2bmm").with_defaults({"width": 1}))[0]
    assert y.dtype == dtype and y.shape == (1, 4, 3)
    z = get_op("gbmm").eval([y, x], get_op("gbmm").with_defaults({"width": 1}))[0]
    assert z.dtype == dtype and z.shape == (1, 4, 3)
