"""Graph lookups and the networkx view of the dataflow."""

from __future__ import annotations

import networkx as nx

from tensoropt.ir.parser import parse_graph

G = parse_graph("""
graph g(%x: f32[4]) {
  const %w: f32[4]
  %a: f32[4] = mul(%x, %w)
  %b: f32[4] = relu(%a)
  %c: f32[4] = add(%a, %b)
  return %c
}
""")


def test_lookups() -> None:
    assert list(G.values()) == ["x", "w", "a", "b", "c"]
    assert {k: n.op for k, n in G.producers().items()} == {"a": "mul", "b": "relu", "c": "add"}
    assert [n.op for n in G.users()["a"]] == ["relu", "add"]
    assert [v.name for v in G.output_values] == ["c"]


def test_to_networkx_is_the_dataflow_dag() -> None:
    d = G.to_networkx()
    assert nx.is_directed_acyclic_graph(d)
    assert set(d.predecessors(("n", 2))) == {("t", "a"), ("t", "b")}
    assert nx.has_path(d, ("t", "w"), ("t", "c"))
    # a topological order of the op vertices is the graph's own order
    ops = [v for v in nx.topological_sort(d) if v[0] == "n"]
    assert sorted(ops) == [("n", 0), ("n", 1), ("n", 2)]
