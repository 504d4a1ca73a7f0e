"""The IR text format: round trips, the docs/ir.md examples, located errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tensoropt.errors import ParseError
from tensoropt.fuzz.generate import exprs, graphs, random_expr, random_graph
from tensoropt.ir.expr import Access, BinOp, Call, Const, Iter, IterDef, Scope, access, call, iters
from tensoropt.ir.graph import Attrs, Graph, Node, Value
from tensoropt.ir.io import load_graph, save_graph
from tensoropt.ir.parser import parse_expr, parse_graph
from tensoropt.ir.printer import print_expr, print_graph
from tensoropt.ir.types import TensorType

_PROPS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- properties


@_PROPS
@given(exprs())
def test_expr_round_trip(e: Scope) -> None:
    text = print_expr(e)
    back = parse_expr(text)
    assert back == e
    assert print_expr(back) == text


@_PROPS
@given(graphs())
def test_graph_round_trip(g: Graph) -> None:
    text = print_graph(g)
    back = parse_graph(text)
    assert back == g
    assert print_graph(back) == text


def test_seeded_generators_are_reproducible_and_round_trip() -> None:
    for seed in range(200):
        assert random_expr(seed) == random_expr(seed)
        assert random_graph(seed) == random_graph(seed)
        assert parse_expr(print_expr(random_expr(seed))) == random_expr(seed)
        assert parse_graph(print_graph(random_graph(seed))) == random_graph(seed)


# ---------------------------------------------------------------- docs/ir.md

CONV = "L[n:1, f:64, h:56, w:56] Sum[c:64, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }"

MLP = """\
graph mlp(%x: f32[batch, 784]) {
  const %w1: f32[784, 256]
  const %b1: f32[256]
  %h: f32[batch, 256] = matmul(%x, %w1)
  %hb: f32[batch, 256] = add(%h, %b1)
  %a: f32[batch, 256] = relu(%hb)
  %p: f32[batch, 64], %q: f32[batch, 192] = split(%a) {axis=1, split=[64, 192]}
  %y: f32[batch, 10] = expr(%p) L[b:batch, j:10] Sum[k:64] { %p[b, k] * 0.5 }
  return %y, %q
}
"""


def test_conv_example() -> None:
    n, f, h, w, c, r, s = iters("n", "f", "h", "w", "c", "r", "s")
    want = Scope(
        (IterDef("n", 1), IterDef("f", 64), IterDef("h", 56), IterDef("w", 56)),
        (IterDef("c", 64), IterDef("r", 3), IterDef("s", 3)),
        access("X", n, c, h + r - 1, w + s - 1) * access("K", f, c, r, s),
    )
    assert parse_expr(CONV) == want
    assert print_expr(want) == CONV
    assert str(want) == CONV


def test_mlp_example() -> None:
    g = parse_graph("# comments run to the end of the line\n" + MLP)
    assert g.name == "mlp"
    assert g.inputs == (Value("x", TensorType("f32", ("batch", 784))),)
    assert [v.name for v in g.constants] == ["w1", "b1"]
    assert [n.op for n in g.nodes] == ["matmul", "add", "relu", "split", "expr"]
    split = g.nodes[3]
    assert split.attrs == Attrs({"axis": 1, "split": (64, 192)})
    assert split.output_names == ("p", "q")
    y = g.nodes[4]
    assert y.inputs == ("p",) and y.expr is not None
    assert y.expr.body == BinOp("*", access("p", Iter("b"), Iter("k")), Const(0.5))
    assert g.outputs == ("y", "q")
    assert len(g.weights) == 0
    assert print_graph(g) == MLP


def test_names_are_plain_str() -> None:
    g = parse_graph(MLP)
    assert type(g.name) is str and type(g.nodes[0].op) is str
    assert all(type(k) is str for n in g.nodes for k in n.attrs)
    assert all(type(v.name) is str for v in g.values().values())


# ---------------------------------------------------------------- details


@pytest.mark.parametrize(
    "text, body",
    [
        ("1", Const(1)),
        ("1.0", Const(1.0)),
        ("-1", Const(-1)),
        ("1e-05", Const(1e-05)),
        ("-inf", Const(-math.inf)),
        ("-i", Call("neg", (Iter("i"),))),
        ("neg(i)", Call("neg", (Iter("i"),))),
        ("i - -1", BinOp("-", Iter("i"), Const(-1))),
        ("-i * 2", BinOp("*", Call("neg", (Iter("i"),)), Const(2))),
        ("i - (i - 1)", BinOp("-", Iter("i"), BinOp("-", Iter("i"), Const(1)))),
        ("i - i - 1", BinOp("-", BinOp("-", Iter("i"), Iter("i")), Const(1))),
        ("i + i * 2", BinOp("+", Iter("i"), BinOp("*", Iter("i"), Const(2)))),
        ("(i + i) * 2", BinOp("*", BinOp("+", Iter("i"), Iter("i")), Const(2))),
        ("i // 2 % 3", BinOp("%", BinOp("//", Iter("i"), Const(2)), Const(3))),
        ("where(lt(i, 1), %x[i | -inf], %s[])", call("where", call("lt", Iter("i"), 1),
                                                     access("x", Iter("i"), pad=-math.inf), access("s"))),
    ],
)
def test_body_forms(text: str, body: object) -> None:
    e = parse_expr(f"L[i:4] {{ {text} }}")
    assert e.body == body


def test_int_and_float_consts_differ() -> None:
    assert parse_expr("L[] { 1 }") != parse_expr("L[] { 1.0 }")
    assert type(parse_expr("L[] { 1 }").body.value) is int  # type: ignore[attr-defined]


def test_canonical_printing_details() -> None:
    i = Iter("i")
    assert print_expr(BinOp("-", i, BinOp("+", i, Const(1)))) == "i - (i + 1)"
    assert print_expr(BinOp("+", i, BinOp("+", i, Const(1)))) == "i + (i + 1)"
    assert print_expr(BinOp("+", BinOp("+", i, i), Const(1))) == "i + i + 1"
    assert print_expr(-i) == "neg(i)"
    assert print_expr(Access("a/b", (i,), 0.0)) == '%"a/b"[i]'
    assert print_expr(Access("a.b_1", (), 1.0)) == "%a.b_1[| 1.0]"
    assert print_expr(Access("x", (i,), math.nan)) == "%x[i | nan]"
    assert print_expr(Scope((IterDef("r", 3, -1),), (), i, "Max")) == "L[r:-1..2] Max[] { i }"
    nested = Access(Scope((IterDef("j", 2),), (), Iter("j")), (i,))
    assert print_expr(nested) == "(L[j:2] { j })[i]"


def test_graph_printing_details() -> None:
    t = TensorType("f32", ())
    node = Node(
        "expr", ("x",), (Value("y", t),),
        Attrs({"s": 'a"b\\', "b": True, "f": 1.0, "n": -2, "l": (), "z": (1, 2.5, "q", False)}),
        parse_expr("L[] { %x[] }"),
    )
    g = Graph("a b", (Value("x", t),), (), (node,), ("y",))
    text = print_graph(g)
    assert text == (
        'graph "a b"(%x: f32[]) {\n'
        '  %y: f32[] = expr(%x) L[] { %x[] } {b=true, f=1.0, l=[], n=-2, s="a\\"b\\\\", z=[1, 2.5, "q", false]}\n'
        "  return %y\n"
        "}\n"
    )
    assert parse_graph(text) == g


def test_keywords_are_contextual() -> None:
    # `graph`, `const`, `Sum`, `true` are only keywords where the grammar expects them
    g = parse_graph("graph graph(%const: f32[Sum]) { %y: f32[] = graph(%const) {true=false} return %y }")
    assert g.name == "graph" and g.nodes[0].op == "graph"
    assert g.nodes[0].attrs == Attrs({"true": False})
    assert parse_expr("L[Sum:2] Max[max:3] { Sum + max }").body == BinOp("+", Iter("Sum"), Iter("max"))


def test_modulo_next_to_tensor_names() -> None:
    # after an operand, `%` is modulo even without spaces
    e = parse_expr("L[i:3] { %x[i]%2 }")
    assert e.body == BinOp("%", access("x", Iter("i")), Const(2))


# ---------------------------------------------------------------- errors


def _err(text: str, *, graph: bool = False) -> str:
    with pytest.raises(ParseError) as info:
        (parse_graph if graph else parse_expr)(text, "f.top")
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_error_unclosed_access() -> None:
    assert _err("L[i:3] { %x[i }") == (
        "f.top:1:15: unexpected '}'; expected one of: '%', '(', '*', '+', ',', '-', '/', '//', ']', '|'"
    )


def test_error_bad_character() -> None:
    assert _err("L[i:3] { @ }") == (
        "f.top:1:10: unexpected '@'; expected one of: '(', '-', identifier, number, tensor name"
    )


def test_error_end_of_input() -> None:
    assert _err("L[i:3] {\n  i +") == (
        "f.top:2:6: unexpected end of input; expected one of: '(', '-', identifier, number, tensor name"
    )


def test_error_iterator_list() -> None:
    assert _err("L[i:3 { i }") == "f.top:1:7: unexpected '{'; expected one of: ',', '..', ']'"


def test_error_graph_statement() -> None:
    text = "graph g(%x: f32[3]) {\n  %y: f32[3] relu(%x)\n  return %y\n}\n"
    assert _err(text, graph=True) == "f.top:2:14: unexpected 'relu'; expected one of: ',', '='"


def test_error_attr_value() -> None:
    text = "graph g(%x: f32[3]) {\n  %y: f32[3] = relu(%x) {a=[1, [2]]}\n  return %y\n}\n"
    assert _err(text, graph=True) == (
        "f.top:2:32: unexpected '['; expected one of: '-', 'false', 'true', number, string"
    )


def test_error_missing_return() -> None:
    assert _err("graph g() {\n}", graph=True) == (
        "f.top:2:1: unexpected '}'; expected one of: 'const', 'return', tensor name"
    )


def test_error_unknown_function() -> None:
    msg = _err("L[i:3] {\n  foo(i) }")
    assert msg.startswith("f.top:2:3: unknown function 'foo'; expected one of: abs, arccos,")
    assert msg.endswith("tanh, where")


def test_error_arity() -> None:
    assert _err("L[i:3] { max(i) }") == "f.top:1:10: function 'max' takes 2 arguments, got 1"
    assert _err("L[i:3] { exp(i, i) }") == "f.top:1:10: function 'exp' takes 1 argument, got 2"


def test_error_bad_dtype() -> None:
    assert _err("graph g(%x: f33[3]) { return %x }", graph=True) == (
        "f.top:1:13: unknown dtype 'f33'; expected one of: f32, f64, f16, i64, i32, i16, i8, u8, u16, u32, u64, bool"
    )


def test_error_duplicate_attribute() -> None:
    text = "graph g(%x: f32[3]) {\n  %y: f32[3] = relu(%x) {axis=1, axis=2}\n  return %y\n}"
    assert _err(text, graph=True) == "f.top:2:34: duplicate attribute 'axis'"


def test_error_bad_range() -> None:
    assert _err("L[i:3, r:2..1] { i }") == "f.top:1:8: bad iterator range 'r:2..1': stop must be >= start"


def test_error_bad_escape() -> None:
    assert _err('L[] { %"a\\n"[] }').startswith("f.top:1:7: unexpected '%'")


def test_error_default_filename() -> None:
    with pytest.raises(ParseError, match=r"^<string>:1:1: unexpected end of input; expected one of: 'L'$"):
        parse_expr("")


U64_GRAPH = """\
graph wide(%x: u64[n, 4], %h: u16[4]) {
  const %mask: u64[4]
  %m: u64[n, 4] = bitwise_and(%x, %mask)
  %s: u64[n, 4] = shift_left(%m, %x)
  %c: u32[4] = cast(%h) {to="u32"}
  %y: u64[n, 4] = expr(%s) L[i:n, j:4] { %s[i, j] - 1.0 }
  return %y, %c
}
"""


def test_unsigned_graph_round_trip(tmp_path: Path) -> None:
    g = parse_graph(U64_GRAPH)
    assert g.inputs[0].type == TensorType("u64", ("n", 4)) and g.inputs[1].type.dtype == "u16"
    assert print_graph(g) == U64_GRAPH
    assert parse_graph(print_graph(g)) == g
    # and on disk, weights included: a u64 above 2**63 survives exactly
    mask = np.array([2**64 - 1, 2**63 + 1, 0, 255], np.uint64)
    g = g.replace(weights={"mask": mask})
    save_graph(g, tmp_path / "w.top")
    back = load_graph(tmp_path / "w.top")
    assert back.same_as(g) and back.weights["mask"].dtype == np.uint64
    assert back.weights["mask"].tolist() == mask.tolist()
