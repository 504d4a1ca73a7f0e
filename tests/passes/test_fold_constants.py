"""fold-constants: const-only subgraphs become constants with weights."""

from __future__ import annotations

import numpy as np

from tensoropt.ir.parser import parse_graph
from tensoropt.passes.fold_constants import FoldConstants

CHAIN = """
graph g(%x: f32[2, 3]) {
  const %a: f32[2, 3]
  const %b: f32[3]
  const %keep: f32[3]
  %s: f32[2, 3] = add(%a, %b)
  %t: f32[2, 3] = exp(%s)
  %u: f32[2, 3] = expr(%t) L[i:2, j:3] { %t[i, 2 - j] * 0.5 }
  %k: f32[2, 3] = add(%x, %keep)
  %y: f32[2, 3] = mul(%k, %u)
  return %y
}
"""


def chain() -> "object":
    g = parse_graph(CHAIN)
    rng = np.random.default_rng(0)
    return g.replace(weights={c.name: rng.standard_normal(c.type.shape).astype(np.float32) for c in g.constants})


def test_const_subgraph_becomes_one_constant() -> None:
    g = chain()
    out = FoldConstants().apply(g)
    assert [n.output_names[0] for n in out.nodes] == ["k", "y"]
    assert [c.name for c in out.constants] == ["keep", "u"]
    w = g.weights
    want = np.exp(w["a"] + w["b"])[:, ::-1] * 0.5
    np.testing.assert_allclose(out.weights["u"], want, rtol=1e-6)
    assert out.weights["u"].dtype == np.float32


def test_max_bytes_keeps_big_results() -> None:
    g = chain()
    out = FoldConstants(max_bytes=8).apply(g)
    assert out is g


def test_graph_without_weights_unchanged() -> None:
    g = parse_graph(CHAIN)
    assert FoldConstants().apply(g) is g


def test_sound(any_graph, sound) -> None:
    sound(any_graph, FoldConstants().apply(any_graph))


def test_chain_sound(sound) -> None:
    g = chain()
    sound(g, FoldConstants().apply(g))
