"""dce: removes exactly the dead nodes and constants."""

from __future__ import annotations

from tensoropt.ir.parser import parse_graph
from tensoropt.passes.dce import DeadCodeElimination

DEAD = """
graph g(%x: f32[4]) {
  const %u: f32[4]
  const %v: f32[4]
  %a: f32[4] = relu(%x)
  %d: f32[4] = add(%a, %u)
  %e: f32[4] = exp(%d)
  %y: f32[4] = add(%a, %v)
  return %y
}
"""


def test_removes_exactly_the_dead_nodes(load_graph) -> None:
    import numpy as np

    g = parse_graph(DEAD)
    g = g.replace(weights={"u": np.ones(4, np.float32), "v": np.zeros(4, np.float32)})
    out = DeadCodeElimination().apply(g)
    assert [n.output_names for n in out.nodes] == [("a",), ("y",)]
    assert [c.name for c in out.constants] == ["v"]
    assert list(out.weights) == ["v"]
    assert out.inputs == g.inputs and out.outputs == g.outputs


def test_no_change_returns_same_graph(load_graph) -> None:
    g = load_graph("conv")
    assert DeadCodeElimination().apply(g) is g


def test_multi_output_node_kept_whole() -> None:
    g = parse_graph("""
graph g(%x: f32[4]) {
  %a: f32[4] = relu(%x)
  %y: f32[4] = expr(%a) L[i:4] { %a[i] * 2.0 }
  return %y, %x
}
""")
    assert DeadCodeElimination().apply(g) is g


def test_sound(any_graph, sound) -> None:
    after = DeadCodeElimination().apply(any_graph)
    sound(any_graph, after)
    assert DeadCodeElimination().apply(after) is after  # idempotent
