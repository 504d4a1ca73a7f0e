"""OLLIE's four reference derivations, found by search alone and checked step by step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tensoropt.passes.derive.check import difference  # noqa: E402
from tensoropt.passes.derive.search import search  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from derive_cases import REFERENCES  # noqa: E402


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_derivation_found_and_every_step_equal(name: str) -> None:
    make, accept = REFERENCES[name]
    expr, values = make()
    shapes = {n: tuple(t.shape) for n, t in values.items()}
    assert not accept(search(expr, values, depth=0).start.kernels), "already in the goal form"
    res = search(expr, values, depth=4, time_limit=120, goal=lambda c: accept(c.kernels))
    assert res.stopped == "goal" and res.found is not None, (res.stopped, res.states)
    prev = expr
    for step in res.found.path:
        d = difference(prev, step.expr, shapes)
        assert d <= 1e-9, (step.rule, step.param, d)
        prev = step.expr
    assert difference(expr, res.found.expr, shapes, seed=7) <= 1e-9
