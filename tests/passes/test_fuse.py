"""fuse-elementwise: producers inline into their only consumer's Expr."""

from __future__ import annotations

from tensoropt.ir.expr import Access, Scope, walk
from tensoropt.ir.parser import parse_graph
from tensoropt.passes.fuse import FuseElementwise, interval
from tensoropt.ir.expr import IterDef, iters

RELU_MATMUL = """
graph g(%x: f32[4, 3], %w: f32[3, 5]) {
  %r: f32[4, 3] = relu(%x)
  %y: f32[4, 5] = expr(%r, %w) L[i:4, j:5] Sum[k:3] { %r[i, k] * %w[k, j] }
  return %y
}
"""


def nested(s: Scope) -> int:
    return sum(1 for n in walk(s.body) if isinstance(n, Access) and isinstance(n.source, Scope))


def test_relu_into_matmul_is_one_flat_expr(sound) -> None:
    g = parse_graph(RELU_MATMUL)
    out = FuseElementwise().apply(g)
    assert len(out.nodes) == 1
    (y,) = out.nodes
    assert y.op == "expr" and y.inputs == ("x", "w") and y.output_names == ("y",)
    assert y.expr is not None and nested(y.expr) == 0
    assert y.expr.travs == g.nodes[1].expr.travs
    sound(g, out)


def test_out_of_bounds_reads_stay_nested(load_graph, sound) -> None:
    g = load_graph("conv")
    out = FuseElementwise().apply(g)
    by_name = {n.output_names[0]: n for n in out.nodes}
    c = by_name["c"]  # conv2d read relu(%x) with padding: nested, not flattened
    assert c.op == "expr" and c.inputs[0] == "x" and nested(c.expr) == 1
    sound(g, out)


def test_multi_user_and_graph_outputs_not_fused(load_graph) -> None:
    g = parse_graph("""
graph g(%x: f32[4]) {
  %a: f32[4] = relu(%x)
  %b: f32[4] = exp(%a)
  %c: f32[4] = neg(%a)
  %d: f32[4] = add(%b, %c)
  return %d, %b
}
""")
    out = FuseElementwise().apply(g)
    # %a has two users, %b is a graph output: only %c fuses into %d.
    assert [n.output_names[0] for n in out.nodes] == ["a", "b", "d"]
    assert out.nodes[2].inputs == ("b", "a")


def test_max_depth_limits_nesting(load_graph) -> None:
    g = load_graph("conv")
    flat = FuseElementwise(max_depth=1).apply(g)
    for n in flat.nodes:
        if n.expr is not None:
            assert nested(n.expr) == 0
    assert len(flat.nodes) > len(FuseElementwise().apply(g).nodes)


def test_interval_arithmetic() -> None:
    i, j = iters("i", "j")
    env = {"i": IterDef("i", 4), "j": IterDef("j", 3, -1)}
    assert interval(i * 2 + j, env) == (-1, 7)
    assert interval((i + 5) // 2, env) == (2, 4)
    assert interval(i % 3, env) == (0, 2)
    assert interval(i % 8, env) == (0, 3)
    assert interval(i - j, env) == (-1, 4)


def test_sound(any_graph, sound) -> None:
    out = FuseElementwise().apply(any_graph)
    sound(any_graph, out)
    assert len(out.nodes) < len(any_graph.nodes)


def test_registry_consumer_converted_with_its_expr_rule(sound) -> None:
    g = parse_graph("""
graph g(%x: f32[batch, 3], %w: f32[3, 5], %b: f32[5]) {
  %r: f32[batch, 3] = relu(%x)
  %h: f32[batch, 5] = matmul(%r, %w)
  %hb: f32[batch, 5] = add(%h, %b)
  return %hb
}
""")
    out = FuseElementwise().apply(g)
    # relu flattens into matmul; the matmul (a reduction) nests inside add.
    assert [n.op for n in out.nodes] == ["expr"]
    assert out.nodes[0].inputs == ("x", "w", "b")
    sound(g, out)


TWICE = """
graph g(%x: f32[4, 3]) {
  %r: f32[4, 3] = relu(%x)
  %y: f32[4, 3] = expr(%r) L[i:4, j:3] { %r[i, j] * %r[i, j] + %r[i, 0] }
  return %y
}
"""


def test_no_recompute_by_default(sound) -> None:
    """A producer read three times stays a tensor unless recompute is asked for."""
    g = parse_graph(TWICE)
    assert FuseElementwise().apply(g) == g
    out = FuseElementwise(recompute=True).apply(g)
    (y,) = out.nodes
    assert y.inputs == ("x",) and nested(y.expr) == 0
    assert sum(1 for n in walk(y.expr) if isinstance(n, Access) and n.source == "x") == 3
    sound(g, out)
