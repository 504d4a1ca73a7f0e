"""fuse-elementwise: producers inline into their only consumer's Expr."""

from __future__ import annotations

import time
from types import SimpleNamespace

from tensoropt.builder import GraphBuilder
from tensoropt.ir.expr import Access, Scope, walk
from tensoropt.ir.graph import Graph
from tensoropt.ir.parser import parse_graph
from tensoropt.ir.printer import print_graph
from tensoropt.ir.types import TensorType
from tensoropt.passes.fuse import FuseElementwise, interval, node_scope, op_count
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


def tanh_chain(n: int) -> Graph:
    b = GraphBuilder("chain")
    t = b.input("x", "f32", ("batch", 4))
    for _ in range(n):
        t = b.op("tanh", t)
    return b.build(t)


def test_long_chain_is_cut_at_max_ops(sound) -> None:
    """600 tanh in one body used to overflow the printer's and interpreter's recursion."""
    g = tanh_chain(600)
    out = FuseElementwise().apply(g)
    assert len(out.nodes) >= 600 / 64
    assert all(n.op == "expr" and op_count(n.expr) <= 64 for n in out.nodes)
    sound(g, out)
    assert parse_graph(print_graph(out)) == out
    small = FuseElementwise(max_ops=5).apply(tanh_chain(12))
    assert [op_count(n.expr) for n in small.nodes] == [5, 5, 2]


def test_max_ops_counts_index_arithmetic() -> None:
    g = parse_graph("""
graph g(%x: f32[8]) {
  %a: f32[8] = expr(%x) L[i:8] { %x[7 - i] }
  %b: f32[8] = tanh(%a)
  return %b
}
""")
    assert FuseElementwise(max_ops=1).apply(g) == g  # tanh(x[7 - i]) holds 2 ops
    (b,) = FuseElementwise(max_ops=2).apply(g).nodes
    assert op_count(b.expr) == 2


def elementwise_graph(n: int) -> Graph:
    """``n`` elementwise nodes: a unary chain with an ``add`` of the input every third node."""
    b = GraphBuilder("long")
    x = b.input("x", "f32", (4, 8))
    t = x
    unary = ("tanh", "relu", "sigmoid", "neg")
    for i in range(n):
        t = b.op(unary[i % 4], t) if i % 3 else b.op("add", t, x)
    return b.build(t)


def test_large_graph_fuses_in_linear_time(sound) -> None:
    """The pass used to rescan the whole graph after every fusion (quadratic)."""
    g = elementwise_graph(2000)
    t0 = time.perf_counter()
    out = FuseElementwise().apply(g)
    dt = time.perf_counter() - t0
    assert dt < 5.0, f"fuse-elementwise took {dt:.2f} s on 2,000 nodes"
    assert 2000 / 64 <= len(out.nodes) < 100
    sound(g, out, seeds=(0,))


def test_failing_expr_rule_means_no_scope() -> None:
    """An op whose Expr rule cannot handle an instance is left unfused, not an internal error."""
    t = TensorType("f32", ("n", 4))
    node = parse_graph("graph g(%x: f32[n, 4]) {\n  %y: f32[n, 4] = relu(%x)\n  return %y\n}").nodes[0]
    for exc in (TypeError, ValueError):
        def rule(*args: object, exc: type[Exception] = exc) -> Scope:
            raise exc("symbolic dim")

        registry = {"relu": SimpleNamespace(expr=rule, with_defaults=lambda a: a)}
        assert node_scope(node, {"x": t, "y": t}, registry) is None
