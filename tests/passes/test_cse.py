"""cse: merges duplicate registry and expr nodes and rewires every use."""

from __future__ import annotations

from tensoropt.ir.parser import parse_graph
from tensoropt.passes.cse import CommonSubexpressionElimination as CSE

DUPS = """
graph g(%x: f32[4, 3]) {
  %a: f32[4, 3] = relu(%x)
  %b: f32[4, 3] = relu(%x)
  %c: f32[4, 3] = expr(%a) L[i:4, j:3] { %a[i, j] * 2.0 }
  %d: f32[4, 3] = expr(%b) L[i:4, j:3] { %b[i, j] * 2.0 }
  %e: f32[4, 3] = expr(%c, %d) L[i:4, j:3] { %c[i, j] + %d[i, j] }
  %f: f64[4, 3] = expr(%a) L[i:4, j:3] { %a[i, j] * 2.0 }
  return %e, %d, %f
}
"""


def test_merges_registry_and_expr_duplicates() -> None:
    g = CSE().apply(parse_graph(DUPS))
    assert [n.output_names[0] for n in g.nodes] == ["a", "c", "e", "f"]
    e = g.nodes[2]
    # Both reads of the expr node now name %c; its inputs are recomputed.
    assert e.inputs == ("c",)
    assert str(e.expr) == "L[i:4, j:3] { %c[i, j] + %c[i, j] }"
    assert g.outputs == ("e", "c", "f")  # %f differs by dtype: kept


def test_no_duplicates_is_identity(load_graph) -> None:
    g = load_graph("conv")
    g = CSE().apply(g)
    assert CSE().apply(g) is g


def test_chained_duplicates_collapse(load_graph) -> None:
    g = load_graph("conv")
    out = CSE().apply(g)
    assert len(out.nodes) == len(g.nodes) - 1
    assert "m2" not in {n.output_names[0] for n in out.nodes}


def test_sound(any_graph, sound) -> None:
    sound(any_graph, CSE().apply(any_graph))
