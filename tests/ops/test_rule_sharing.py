"""Rules shared instead of repeated: the builder's arity check, einsum's cost."""

from __future__ import annotations

import pytest

from tensoropt.builder import GraphBuilder
from tensoropt.errors import ShapeError
from tensoropt.ir.types import TensorType
from tensoropt.ops import get_op


def test_builder_checks_arity_like_the_verifier() -> None:
    b = GraphBuilder("g")
    x = b.input("x", "f32", (3,))
    with pytest.raises(ShapeError, match="relu takes 1 inputs, got 2"):
        b.op("relu", x, x)
    with pytest.raises(ShapeError, match="add takes 2 inputs, got 1"):
        b.op("add", x)


def test_einsum_cost_is_the_expr_flop_count() -> None:
    rules = get_op("einsum")

    def flops(eq: str, *shapes: tuple[int, ...]) -> int:
        ts = [TensorType("f32", s) for s in shapes]
        a = rules.with_defaults({"equation": eq})
        return rules.cost(ts, rules.infer(ts, a), a).flops

    assert flops("ij,jk->ik", (2, 3), (3, 4)) == 2 * 2 * 3 * 4  # as matmul: 2 per MAC
    assert flops("ij->ji", (2, 3)) == 0  # a permutation does no arithmetic
    assert flops("ij,ij->ij", (2, 3), (2, 3)) == 6  # one multiply per element
    assert flops("ij->i", (2, 3)) == 6  # one add per element
