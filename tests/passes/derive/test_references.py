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


def test_full_search_records_the_first_hit_and_goes_on_to_the_depth() -> None:
    """stop_on_goal=False: the search the OLLIE comparison counts (all states to a depth)."""
    make, accept = REFERENCES[sorted(REFERENCES)[0]]
    expr, values = make()
    first = search(expr, values, depth=3, time_limit=120, goal=lambda c: accept(c.kernels))
    full = search(expr, values, depth=2, time_limit=120, goal=lambda c: accept(c.kernels), stop_on_goal=False)
    assert first.stopped == "goal" and full.stopped in ("depth", "exhausted")
    assert full.found is not None and full.found.depth == first.found.depth
    assert full.found_states is not None and full.found_states <= full.states
    assert len(full.level_s) == len(full.per_level) and full.level_s == sorted(full.level_s)
    assert full.states_to(len(full.level_s) - 1) == full.states >= first.states
    assert full.states_to(0) == 1
