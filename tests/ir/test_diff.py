"""graph_diff names what a pipeline removed, added, rewrote and retyped."""

from __future__ import annotations

from tensoropt.ir.diff import graph_diff
from tensoropt.ir.parser import parse_graph

A = """
graph g(%x: f32[batch, 4]) {
  %a: f32[batch, 4] = relu(%x)
  %b: f32[batch, 4] = exp(%a)
  %c: f32[batch, 4] = neg(%b)
  return %c
}
"""
B = """
graph g(%x: f32[2, 4]) {
  %a: f32[2, 4] = relu(%x)
  %c: f32[2, 4] = neg(%a)
  %d: f32[2, 4] = abs(%c)
  return %d
}
"""


def test_diff_names_removed_added_rewritten_and_retyped() -> None:
    d = graph_diff(parse_graph(A), parse_graph(B))
    assert d.removed == (("b", "exp"),)
    assert d.added == (("d", "abs"),)
    assert d.rewritten == (("c", "neg", "neg"),)  # reads %a now
    assert ("x", "f32[batch, 4]", "f32[2, 4]") in d.retyped and len(d.retyped) == 3
    assert not d.empty and d.as_json()["removed"] == [["b", "exp"]]


def test_same_graph_has_an_empty_diff() -> None:
    g = parse_graph(A)
    assert graph_diff(g, g).empty
