"""Budgets on evaluation: fold-constants and the reference interpreter size a
node from its declared types before computing it, and refuse what is over.

Every size here is small or impossible to allocate (2**80 bytes), so a
regression fails a test instead of exhausting the machine; budgets are given
explicitly or patched, never read from the host.
"""

from __future__ import annotations

import numpy as np
import pytest

import tensoropt.interp as interp
from tensoropt.errors import BudgetError, EvalError
from tensoropt.interp import available_memory, evaluate_node, evaluation_budget, run_graph
from tensoropt.ir.graph import Graph
from tensoropt.ir.parser import parse_graph
from tensoropt.passes.fold_constants import FoldConstants, declared_bytes

SMALL_AND_BIG = """
graph g(%x: f32[4]) {
  const %s: f32[]
  %small: f32[4] = expand(%s) {shape=[4]}
  %big: f32[128, 4] = expand(%s) {shape=[128, 4]}
  %a: f32[4] = add(%small, %x)
  %b: f32[128, 4] = add(%big, %x)
  return %a, %b
}
"""


def small_and_big() -> Graph:
    g = parse_graph(SMALL_AND_BIG)
    return g.replace(weights={"s": np.array(1.5, np.float32)})


def test_over_budget_node_stays_and_under_budget_one_folds() -> None:
    g = small_and_big()
    out = FoldConstants(max_bytes=1024).apply(g)  # small: 16 B, big: 2 KiB
    assert [n.output_names[0] for n in out.nodes] == ["big", "a", "b"]
    np.testing.assert_array_equal(out.weights["small"], np.full(4, 1.5, np.float32))
    x = np.arange(4, dtype=np.float32)
    want, got = run_graph(g, {"x": x}), run_graph(out, {"x": x})
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_total_budget_keeps_later_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FoldConstants, "max_total_bytes", 16)
    g = parse_graph("""
graph g(%x: f32[4]) {
  const %s: f32[]
  %first: f32[4] = expand(%s) {shape=[4]}
  %second: f32[4] = expand(%s) {shape=[4]}
  %y: f32[4] = add(%first, %second)
  return %y
}
""").replace(weights={"s": np.array(1.5, np.float32)})
    out = FoldConstants(max_bytes=1 << 20).apply(g)
    assert [n.output_names[0] for n in out.nodes] == ["second", "y"]  # the first 16 bytes fold


def test_huge_max_bytes_is_still_bounded_by_the_evaluation_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interp, "evaluation_budget", lambda: 1024)
    out = FoldConstants(max_bytes=1 << 60).apply(small_and_big())
    assert [n.output_names[0] for n in out.nodes] == ["big", "a", "b"]


def test_hostile_dims_are_sized_in_python_ints() -> None:
    """2**40 x 2**40 f32 would wrap in int64 arithmetic; it must not look small."""
    g = parse_graph("""
graph g(%x: f32[1]) {
  const %s: f32[]
  %h: f32[1099511627776, 1099511627776] = expand(%s) {shape=[1099511627776, 1099511627776]}
  %y: f32[1099511627776, 1099511627776] = add(%h, %x)
  return %y
}
""").replace(weights={"s": np.array(1.0, np.float32)})
    assert declared_bytes(g.nodes[0]) == 4 << 80
    assert FoldConstants(max_bytes=1 << 62).apply(g) is g
    with pytest.raises(BudgetError, match=r"expand node %h: declares f32\[1099511627776, 1099511627776\]"):
        run_graph(g, {"x": np.zeros(1, np.float32)}, max_bytes=1 << 62)


# -- the interpreter's budget ------------------------------------------------------------


def test_run_graph_checks_every_node_before_running_any() -> None:
    """The integer division by zero comes first in the graph, the oversized node
    second: the budget error wins, so nothing was evaluated."""
    g = parse_graph("""
graph g(%x: i32[2]) {
  const %z: i32[2]
  %q: i32[2] = div(%x, %z)
  %e: i32[1000, 2] = expand(%q) {shape=[1000, 2]}
  return %e
}
""").replace(weights={"z": np.zeros(2, np.int32)})
    x = np.ones(2, np.int32)
    with pytest.raises(EvalError) as plain:
        run_graph(g, {"x": x})
    assert not isinstance(plain.value, BudgetError)  # within the default budget: the division fails
    with pytest.raises(BudgetError) as e:
        run_graph(g, {"x": x}, max_bytes=4000)
    msg = str(e.value)
    assert msg == "expand node %e: declares i32[1000, 2] (7.8 KiB): over the 3.9 KiB evaluation budget", msg


def test_symbols_and_f64_count() -> None:
    g = parse_graph("""
graph g(%x: f32[n, 8]) {
  %y: f32[n, 8] = relu(%x)
  return %y
}
""")
    x = np.ones((4, 8), np.float32)  # 128 bytes in f32, 256 in f64
    run_graph(g, {"x": x}, max_bytes=128)
    with pytest.raises(BudgetError, match=r"f32\[4, 8\] \(256 B\)"):
        run_graph(g, {"x": x}, dtype="f64", max_bytes=128)
    with pytest.raises(BudgetError):
        evaluate_node(g.nodes[0], [x], {"n": 4}, max_bytes=64)


def test_default_budget_follows_the_address_space_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    real = resource.getrlimit

    def fake(which: int) -> tuple[int, int]:
        return (2 << 30, resource.RLIM_INFINITY) if which == resource.RLIMIT_AS else real(which)

    monkeypatch.setattr(resource, "getrlimit", fake)
    assert available_memory() <= 2 << 30
    assert evaluation_budget() == int(available_memory() * interp.EVAL_BUDGET_FRACTION)
    g = parse_graph("""
graph g(%x: f32[1]) {
  %y: f32[1000000000] = expand(%x) {shape=[1000000000]}
  return %y
}
""")
    with pytest.raises(BudgetError, match=r"3\.7 GiB\): over the .* evaluation budget \(25% of the"):
        run_graph(g, {"x": np.zeros(1, np.float32)})
