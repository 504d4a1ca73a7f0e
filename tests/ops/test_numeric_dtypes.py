"""Arithmetic ops reject bool (and neg rejects unsigned) at type inference.

Before, these type-checked and then NumPy raised in eval (bool subtract,
bool negative) or silently wrapped (``neg`` of u8); now infer names the input.
"""

from __future__ import annotations

import numpy as np
import pytest

from tensoropt.builder import GraphBuilder
from tensoropt.errors import ShapeError
from tensoropt.interp import run_graph
from tensoropt.ir.types import TensorType
from tensoropt.ops import infer_node_types

B = TensorType("bool", (2, 3))
U8 = TensorType("u8", (2, 3))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
def test_binary_arithmetic_rejects_bool(op: str) -> None:
    with pytest.raises(ShapeError, match=f"input 0 is bool; {op} needs numbers"):
        infer_node_types(op, [B, B])


@pytest.mark.parametrize("op, attrs", [("neg", {}), ("abs", {}), ("relu", {}),
                                       ("clip", {"min": 0.0, "max": 1.0})])
def test_unary_arithmetic_rejects_bool(op: str, attrs: dict) -> None:
    with pytest.raises(ShapeError, match=f"input 0 is bool; {op} needs numbers"):
        infer_node_types(op, [B], attrs)


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
def test_pooling_rejects_bool(op: str) -> None:
    with pytest.raises(ShapeError, match=f"input 0 is bool; {op} needs numbers"):
        infer_node_types(op, [TensorType("bool", (1, 1, 4, 4))], {"kernel": [2, 2]})


def test_neg_rejects_unsigned() -> None:
    with pytest.raises(ShapeError, match="input 0 has dtype u8; neg needs a signed dtype"):
        infer_node_types("neg", [U8])
    assert infer_node_types("neg", [TensorType("i8", (2,))]) == [TensorType("i8", (2,))]
    assert infer_node_types("abs", [U8]) == [U8]  # |x| of unsigned is exact


@pytest.mark.parametrize("op", ["less", "greater", "equal", "max", "min"])
def test_comparisons_and_max_min_keep_bool(op: str) -> None:
    b = GraphBuilder("g")
    x, y = b.input("x", "bool", (3,)), b.input("y", "bool", (3,))
    g = b.build(b.op(op, x, y))
    xs = {"x": np.array([True, False, True]), "y": np.array([False, False, True])}
    got = next(iter(run_graph(g, xs).values()))
    want = {"less": np.less, "greater": np.greater, "equal": np.equal,
            "max": np.maximum, "min": np.minimum}[op](xs["x"], xs["y"])
    np.testing.assert_array_equal(got, want)


def test_where_keeps_bool_branches() -> None:
    assert infer_node_types("where", [B, B, B]) == [B]


def test_builder_rejects_bool_arithmetic_before_eval() -> None:
    b = GraphBuilder("g")
    x = b.input("x", "bool", (3,))
    with pytest.raises(ShapeError, match="input 0 is bool; sub needs numbers"):
        b.op("sub", x, x)
