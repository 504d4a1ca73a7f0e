"""The vectorized interpreter agrees with a naive element-by-element evaluator.

The naive evaluator below is the Expr semantics of ``tensoropt.ir.expr``
transcribed as directly as possible (Python loops, one scalar at a time), so
it is slow and obviously right. Hypothesis draws random scopes over two
small tensors (affine, ``//`` and ``%`` indices, out-of-bounds reads with
pads, every reduction kind, nested scopes that read enclosing iterators,
iterators used as values) and checks the two agree in float64.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tensoropt.interp import FUNCTION_IMPLS, evaluate_expr
from tensoropt.ir.expr import Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope
from tensoropt.ir.printer import print_expr

TENSORS = {
    "A": np.random.default_rng(0).uniform(-2, 2, (3, 4)),
    "B": np.random.default_rng(1).uniform(-2, 2, (5,)),
}
REDUCE = {"Sum": sum, "Prod": math.prod, "Max": max, "Min": min}
EMPTY = {"Sum": 0.0, "Prod": 1.0, "Max": -math.inf, "Min": math.inf}


# -- the naive evaluator -----------------------------------------------------------


def naive_scope(s: Scope, env: Mapping[str, int]) -> np.ndarray:
    extents = [d.extent for d in s.travs]
    out = np.empty(extents)
    for pos in itertools.product(*(range(e) for e in extents)):
        point = dict(env)
        point.update((d.name, d.start + p) for d, p in zip(s.travs, pos))
        vals = []
        for red in itertools.product(*(range(d.start, d.start + d.extent) for d in s.sums)):
            inner = dict(point)
            inner.update((d.name, v) for d, v in zip(s.sums, red))
            vals.append(naive(s.body, inner))
        if not s.sums:
            out[pos] = vals[0]
        else:
            out[pos] = REDUCE[s.reduce](vals) if vals else EMPTY[s.reduce]
    return out


def naive(e: Expr, env: Mapping[str, int]) -> float:
    if isinstance(e, Iter):
        return env[e.name]
    if isinstance(e, Const):
        return e.value
    if isinstance(e, BinOp):
        a, b = naive(e.lhs, env), naive(e.rhs, env)
        return {"+": a + b, "-": a - b, "*": a * b}.get(e.op) if e.op in "+-*" else (
            a / b if e.op == "/" else a // b if e.op == "//" else a % b)
    if isinstance(e, Call):
        return float(FUNCTION_IMPLS[e.fn](*(np.float64(naive(x, env)) for x in e.args)))
    assert isinstance(e, Access)
    arr = TENSORS[e.source] if isinstance(e.source, str) else naive_scope(e.source, env)
    idx = tuple(int(naive(i, env)) for i in e.indices)
    if all(0 <= i < n for i, n in zip(idx, arr.shape)):
        return float(arr[idx])
    return e.pad


# -- random scopes -----------------------------------------------------------------


@st.composite
def index(draw, iters: list[str], extent: int) -> Expr:
    """An affine index (sometimes with // or %) likely to land near [0, extent)."""
    i = Iter(draw(st.sampled_from(iters)))
    kind = draw(st.sampled_from(["it", "shift", "scale", "sum", "div", "mod", "const"]))
    if kind == "shift":
        return BinOp(draw(st.sampled_from(["+", "-"])), i, Const(draw(st.integers(0, 2))))
    if kind == "scale":
        return BinOp("*", Const(draw(st.integers(-1, 2))), i)
    if kind == "sum" and len(iters) > 1:
        return BinOp("+", i, Iter(draw(st.sampled_from(iters))))
    if kind == "div":
        return BinOp("//", BinOp("+", i, Const(draw(st.integers(0, 5)))), Const(draw(st.integers(1, 3))))
    if kind == "mod":
        return BinOp("%", i, Const(draw(st.integers(1, extent + 1))))
    if kind == "const":
        return Const(draw(st.integers(-1, extent)))
    return i


@st.composite
def body(draw, iters: list[str], depth: int) -> Expr:
    choices = ["access", "access", "const", "iter", "bin", "bin", "call"] + (["nested"] if depth < 2 else [])
    kind = draw(st.sampled_from(choices if depth < 3 else ["access", "const", "iter"]))
    if kind == "access":
        name = draw(st.sampled_from(sorted(TENSORS)))
        shape = TENSORS[name].shape
        pad = draw(st.sampled_from([0.0, 0.0, -1.5, 3.0]))
        return Access(name, tuple(draw(index(iters, n)) for n in shape), pad)
    if kind == "const":
        return Const(draw(st.sampled_from([0.5, -2.0, 1.0, 3])))
    if kind == "iter":
        return Iter(draw(st.sampled_from(iters)))
    if kind == "bin":
        return BinOp(draw(st.sampled_from(["+", "-", "*"])), draw(body(iters, depth + 1)), draw(body(iters, depth + 1)))
    if kind == "call":
        fn = draw(st.sampled_from(["tanh", "relu", "abs", "max", "min", "lt", "where", "sigmoid", "neg"]))
        arity = {"max": 2, "min": 2, "lt": 2, "where": 3}.get(fn, 1)
        return Call(fn, tuple(draw(body(iters, depth + 1)) for _ in range(arity)))
    inner = draw(scope(depth + 1, outer=iters))
    return Access(inner, tuple(draw(index(iters, d.extent)) for d in inner.travs))


@st.composite
def scope(draw, depth: int = 0, outer: list[str] | None = None) -> Scope:
    outer = outer or []
    prefix = "abcdefgh"[depth * 2: depth * 2 + 2]  # fresh names per nesting level: no shadowing
    n_t, n_s = draw(st.integers(1 if depth == 0 else 1, 2)), draw(st.integers(0, 2))
    travs = tuple(IterDef(f"{prefix[0]}{k}", draw(st.integers(1, 4)), draw(st.sampled_from([0, 0, -1, 1])))
                  for k in range(n_t))
    sums = tuple(IterDef(f"{prefix[1]}{k}", draw(st.integers(0 if depth == 0 else 1, 3)),
                         draw(st.sampled_from([0, 0, -1]))) for k in range(n_s))
    iters = outer + [d.name for d in travs + sums]
    red = draw(st.sampled_from(["Sum", "Sum", "Max", "Min", "Prod"]))
    return Scope(travs, sums, draw(body(iters, depth)), red)


@settings(max_examples=400, deadline=None)
@given(scope())
def test_vectorized_matches_naive(s: Scope) -> None:
    want = naive_scope(s, {})
    got = evaluate_expr(s, TENSORS, dtype=np.float64)
    assert got.shape == want.shape, print_expr(s)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=print_expr(s))


@settings(max_examples=100, deadline=None)
@given(scope())
def test_chunked_matches_naive(s: Scope) -> None:
    """Forcing the memory-bounded chunked path changes nothing."""
    got = evaluate_expr(s, TENSORS, dtype=np.float64, chunk_elements=4)
    np.testing.assert_allclose(got, naive_scope(s, {}), rtol=1e-9, atol=1e-12, err_msg=print_expr(s))


def test_nested_scope_constant_along_its_own_axis() -> None:
    """Regression (found by the property above): a nested scope whose body uses
    an enclosing iterator but not its own came back size 1 on its own axis,
    so reads at positions >= 1 were taken as out of bounds and gave 0."""
    from tensoropt.ir.parser import parse_expr

    s = parse_expr("L[a0:2] { (L[c0:2] { %A[a0, a0] })[a0] }")
    np.testing.assert_allclose(evaluate_expr(s, TENSORS), [TENSORS["A"][0, 0], TENSORS["A"][1, 1]])
