"""The verifier: one negative test per check, asserting on the message."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensoropt.errors import ShapeError, UnknownOpError, VerifyError
from tensoropt.ir.expr import Access, BinOp, Call, Const, Iter, IterDef, Scope, access, call, iters
from tensoropt.ir.graph import Attrs, Graph, Node, Value
from tensoropt.ir.parser import parse_graph
from tensoropt.ir.types import TensorType
from tensoropt.ir.verify import verify, verify_all, verify_expr
from tensoropt.ops.registry import AttrSpec, Cost, OpRules


def f32(*shape: int | str) -> TensorType:
    return TensorType("f32", shape)


def _same(ts, a):  # type: ignore[no-untyped-def]
    return [ts[0]]


def _scaled(ts, a):  # type: ignore[no-untyped-def]
    return [TensorType(ts[0].dtype, ts[0].shape)]


# A tiny hermetic registry: the verifier must not depend on which ops exist.
REG = {
    "relu": OpRules("relu", "elementwise", (1, 1), _same, lambda xs, a: [np.maximum(xs[0], 0)], None,
                    lambda ts, outs, a: Cost(0, 0)),
    "scale": OpRules("scale", "elementwise", (1, 1), _scaled, lambda xs, a: [xs[0] * a["factor"]], None,
                     lambda ts, outs, a: Cost(0, 0), attrs=(AttrSpec("factor", "float"),)),
    "add": OpRules("add", "elementwise", (2, 2), _same, lambda xs, a: [xs[0] + xs[1]], None,
                   lambda ts, outs, a: Cost(0, 0)),
}


def expr_node(out: str, t: TensorType, scope: Scope) -> Node:
    from tensoropt.ir.expr import tensor_names

    return Node("expr", tensor_names(scope), (Value(out, t),), Attrs(), scope)


def graph(nodes: list[Node], inputs: dict[str, TensorType] | None = None, outputs: tuple[str, ...] = ("y",),
          constants: tuple[Value, ...] = (), weights: dict | None = None) -> Graph:
    ins = tuple(Value(k, v) for k, v in (inputs or {"x": f32(4, 3)}).items())
    return Graph("g", ins, constants, tuple(nodes), outputs, weights or {})


def one_error(g: Graph, cls: type[Exception] = VerifyError) -> str:
    with pytest.raises(cls) as info:
        verify(g, REG)
    return str(info.value)


GOOD = """
graph mlp(%x: f32[batch, 3], %w: f32[3, 5]) {
  %r: f32[batch, 3] = relu(%x)
  %y: f32[batch, 5] = expr(%r, %w) L[b:batch, j:5] Sum[k:3] { %r[b, k] * %w[k, j] }
  return %y
}
"""


def test_good_graph_verifies() -> None:
    g = parse_graph(GOOD)
    verify(g, REG)
    verify(g)  # without a registry only the structural checks run
    assert verify_all(g, REG) == []


def test_duplicate_name() -> None:
    g = graph([Node("relu", ("x",), (Value("x", f32(4, 3)),)), Node("relu", ("x",), (Value("y", f32(4, 3)),))])
    assert one_error(g) == "%x is defined twice: as a graph input and as an output of relu node %x"


def test_use_before_def() -> None:
    g = graph([Node("relu", ("h",), (Value("y", f32(4, 3)),)), Node("relu", ("x",), (Value("h", f32(4, 3)),))])
    assert one_error(g) == "relu node %y: input 0 %h is used before it is defined"


def test_undefined_input() -> None:
    g = graph([Node("relu", ("nope",), (Value("y", f32(4, 3)),))])
    assert one_error(g) == "relu node %y: input 0 %nope is not defined"


def test_unknown_output() -> None:
    g = graph([Node("relu", ("x",), (Value("y", f32(4, 3)),))], outputs=("y", "z"))
    assert one_error(g) == "graph output 1 %z is not defined"


def test_unknown_op_lists_valid_ops() -> None:
    g = graph([Node("rleu", ("x",), (Value("y", f32(4, 3)),))])
    msg = one_error(g, UnknownOpError)
    assert msg == "rleu node %y: unknown op 'rleu'; registered ops: add, expr, relu, scale"
    verify(g)  # no registry: op rules are not checked


def test_bad_attr() -> None:
    g = graph([Node("scale", ("x",), (Value("y", f32(4, 3)),), Attrs({"factr": 2.0}))])
    assert one_error(g, ShapeError) == "scale node %y: unknown attribute 'factr' of scale (valid: factor)"
    g = graph([Node("scale", ("x",), (Value("y", f32(4, 3)),))])
    assert one_error(g, ShapeError) == "scale node %y: scale needs attribute 'factor' (float)"


def test_wrong_arity() -> None:
    g = graph([Node("add", ("x",), (Value("y", f32(4, 3)),))])
    assert one_error(g, ShapeError) == "add node %y: add takes 2 inputs, got 1"


def test_wrong_output_count() -> None:
    g = graph([Node("relu", ("x",), (Value("y", f32(4, 3)), Value("z", f32(4, 3))))])
    assert one_error(g, ShapeError) == "relu node %y: relu defines 1 outputs, node declares 2"


def test_wrong_output_type() -> None:
    g = graph([Node("relu", ("x",), (Value("y", f32(4, 5)),))])
    assert one_error(g, ShapeError) == "relu node %y: output 0 %y is declared f32[4, 5] but relu infers f32[4, 3]"
    g = graph([Node("relu", ("x",), (Value("y", TensorType("f64", (4, 3))),))])
    assert "declared f64[4, 3] but relu infers f32[4, 3]" in one_error(g, ShapeError)


def test_symbolic_dims_compare_by_name() -> None:
    g = graph([Node("relu", ("x",), (Value("y", f32("m", 3)),))], inputs={"x": f32("n", 3)})
    assert one_error(g, ShapeError) == "relu node %y: output 0 %y is declared f32[m, 3] but relu infers f32[n, 3]"


def test_constants_need_matching_weights() -> None:
    c = (Value("w", f32(2, 2)),)
    node = [Node("add", ("x", "w"), (Value("y", f32(4, 3)),))]
    verify(graph(node, constants=c), None)  # no weights at all: parsed text, allowed
    g = graph(node, constants=c, weights={"w": np.zeros((2, 3), np.float32)})
    assert one_error(g) == "constant %w is declared f32[2, 2] but its array is f32[2, 3]"
    g = graph(node, constants=c + (Value("v", f32(1)),), weights={"w": np.zeros((2, 2), np.float32)})
    assert one_error(g) == "constant %v has no weight array"


def test_expr_unbound_iterator() -> None:
    i, j, q = iters("i", "j", "q")
    s = Scope((IterDef("i", 4), IterDef("j", 3)), (), access("x", i, q))
    msg = one_error(graph([expr_node("y", f32(4, 3), s)]))
    assert msg == "expr node %y: in L[i:4, j:3]: iterator 'q' is not bound"


def test_expr_rank_mismatch() -> None:
    i, j = iters("i", "j")
    s = Scope((IterDef("i", 4), IterDef("j", 3)), (), access("x", i, j, 0))
    msg = one_error(graph([expr_node("y", f32(4, 3), s)]))
    assert msg == "expr node %y: in L[i:4, j:3]: rank mismatch: %x has rank 2 but is read with 3 indices"


def test_expr_non_affine_index() -> None:
    i, j = iters("i", "j")
    s = Scope((IterDef("i", 4), IterDef("j", 3)), (), access("x", i * j, j))
    msg = one_error(graph([expr_node("y", f32(4, 3), s)]))
    assert msg.startswith("expr node %y: in L[i:4, j:3]: non-affine index ")
    assert msg.endswith(": product of two iterator-dependent terms")
    for bad, why in [
        (BinOp("//", i, j), "// by a non-constant"),
        (BinOp("%", i, Const(0)), "% by non-positive constant 0"),
        (call("exp", i), "function call exp(...) in an index"),
        (access("x", i, j), "tensor read inside an index"),
    ]:
        s = Scope((IterDef("i", 4), IterDef("j", 3)), (), access("x", bad, j))
        assert why in one_error(graph([expr_node("y", f32(4, 3), s)]))
    ok = Scope((IterDef("i", 4), IterDef("j", 3)), (), access("x", (i * 3 + j) // 3 % 4, 2 * j - 1))
    verify(graph([expr_node("y", f32(4, 3), ok)]), REG)


def test_expr_unknown_tensor() -> None:
    i, j = iters("i", "j")
    s = Scope((IterDef("i", 4), IterDef("j", 3)), (), access("zz", i, j))
    node = Node("expr", ("x",), (Value("y", f32(4, 3)),), Attrs(), s)
    msgs = verify_all(graph([node]), REG)
    assert "expr node %y: in L[i:4, j:3]: unknown tensor %zz (readable: %x)" in msgs
    assert any("inputs (%x) must be the tensors the scope reads" in m for m in msgs)


def test_expr_other_checks() -> None:
    i, j, k = iters("i", "j", "k")
    L = (IterDef("i", 4), IterDef("j", 3))

    def msgs(s: Scope, t: TensorType = f32(4, 3)) -> list[str]:
        return verify_all(graph([expr_node("y", t, s)]), REG)

    assert "expr node %y: in L[i:4, i:3]: iterator 'i' is bound twice" in msgs(
        Scope((IterDef("i", 4), IterDef("i", 3)), (), access("x", i, i)))
    inner = Scope((IterDef("i", 3),), (), Iter("i"))
    assert "expr node %y: in L[i:3]: iterator 'i' shadows an enclosing iterator" in msgs(
        Scope(L, (), Access(inner, (j,))))
    assert "expr node %y: in L[i:4, j:3] Sum[k:0]: iterator 'k' has an empty range (extent 0)" in msgs(
        Scope(L, (IterDef("k", 0),), access("x", i, j)))
    assert any("symbolic extent 'n' but starts at 1" in m for m in msgs(
        Scope((IterDef("i", "n", 1), IterDef("j", 3)), (), access("x", i, j)), f32("n", 3)))
    assert "expr node %y: in L[i:4, j:3]: unknown function 'expp'; valid: " in msgs(
        Scope(L, (), Call("expp", (access("x", i, j),))))[0]
    assert "expr node %y: in L[i:4, j:3]: max takes 2 argument(s), got 1" in msgs(
        Scope(L, (), Call("max", (access("x", i, j),))))
    assert any("a scope may only be the top level or the source of an access" in m for m in msgs(
        Scope(L, (), BinOp("+", access("x", i, j), inner))))
    assert "expr node %y: the scope has shape [4, 3] but output %y is declared f32[4, 4]" in msgs(
        Scope(L, (), access("x", i, j)), f32(4, 4))
    with pytest.raises(VerifyError, match="here: in L"):
        verify_expr(Scope(L, (), access("x", i, k)), {"x": f32(4, 3)}, "here")


def test_expr_node_shape() -> None:
    g = graph([Node("expr", ("x",), (Value("y", f32(4, 3)),))])
    assert one_error(g) == "expr node %y: an expr node needs a scope"
    i, j = iters("i", "j")
    s = Scope((IterDef("i", 4), IterDef("j", 3)), (), access("x", i, j))
    g = graph([Node("relu", ("x",), (Value("y", f32(4, 3)),), Attrs(), s)])
    assert one_error(g) == "relu node %y: only expr nodes carry a scope, but this relu node has one"


def test_nested_scope_may_read_enclosing_iterators() -> None:
    i, j, a = iters("i", "j", "a")
    inner = Scope((IterDef("a", 3),), (), access("x", i, a))
    verify(graph([expr_node("y", f32(4, 3), Scope((IterDef("i", 4), IterDef("j", 3)), (), Access(inner, (j,))))]), REG)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=3),
    st.integers(-2, 2),
    st.integers(1, 3),
)
def test_well_formed_shift_scopes_verify(shape: list[int], shift: int, stride: int) -> None:
    names = [f"i{k}" for k in range(len(shape))]
    travs = tuple(IterDef(n, d) for n, d in zip(names, shape))
    idx = [Iter(n) * stride + shift for n in names]
    s = Scope(travs, (), call("relu", Access("x", tuple(idx))) + Iter(names[0]))
    g = graph([expr_node("y", f32(*shape), s)], inputs={"x": f32(*shape)})
    assert verify_all(g, REG) == []
