"""The reference interpreter: scope semantics, functions, errors, run_graph."""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest
import scipy.special

from tensoropt.errors import EvalError
from tensoropt.interp import FUNCTION_IMPLS, evaluate_expr, evaluate_node, run_graph
from tensoropt.ir.expr import FUNCTIONS, Access, IterDef, Scope, access, call, iters
from tensoropt.ir.graph import Graph, Node, Value
from tensoropt.ir.parser import parse_expr
from tensoropt.ir.types import TensorType

RNG = np.random.default_rng(0)


def ev(text: str, symbols: dict[str, int] | None = None, dtype: object = np.float64, **tensors: np.ndarray) -> np.ndarray:
    return evaluate_expr(parse_expr(text), tensors, symbols, dtype)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def conv_ref(x: np.ndarray, k: np.ndarray, stride: int = 1, pad: int = 0, dil: int = 1, groups: int = 1) -> np.ndarray:
    """Direct NCHW convolution: loops over the kernel window only."""
    n, c, h, w = x.shape
    f, cg, kh, kw = k.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, f, oh, ow))
    fg = f // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ks = k[g * fg:(g + 1) * fg]
        for r in range(kh):
            for s in range(kw):
                win = xs[:, :, r * dil:r * dil + stride * oh:stride, s * dil:s * dil + stride * ow:stride]
                out[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", win, ks[:, :, r, s])
    return out


# --------------------------------------------------------------------------
# Functions


HAND = {
    "neg": lambda x: -x,
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "erf": scipy.special.erf,
    "sin": np.sin,
    "cos": np.cos,
    "floor": np.floor,
    "ceil": np.ceil,
    "sign": np.sign,
    "reciprocal": lambda x: 1.0 / x,
    "tan": lambda x: np.sin(x) / np.cos(x),
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
    "sinh": lambda x: (np.exp(x) - np.exp(-x)) / 2,
    "cosh": lambda x: (np.exp(x) + np.exp(-x)) / 2,
    "arcsinh": np.arcsinh,
    "arccosh": np.arccosh,
    "arctanh": np.arctanh,
    "round": np.round,  # halves to even
    "fmod": lambda a, b: a - np.trunc(a / b) * b,
    "max": lambda a, b: np.where(a > b, a, b),
    "min": lambda a, b: np.where(a < b, a, b),
    "pow": lambda a, b: a**b,
    "lt": lambda a, b: (a < b) * 1.0,
    "le": lambda a, b: (a <= b) * 1.0,
    "gt": lambda a, b: (a > b) * 1.0,
    "ge": lambda a, b: (a >= b) * 1.0,
    "eq": lambda a, b: (a == b) * 1.0,
    "ne": lambda a, b: (a != b) * 1.0,
    "where": lambda c, a, b: np.array([x if k != 0 else y for k, x, y in zip(c, a, b)]),
}
POSITIVE = {"log", "sqrt", "rsqrt", "pow"}


def test_function_tables_agree() -> None:
    assert set(FUNCTION_IMPLS) == set(FUNCTIONS) == set(HAND)


@pytest.mark.parametrize("fn", sorted(FUNCTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_function_matches_hand_numpy(fn: str, dtype: type) -> None:
    arity = FUNCTIONS[fn]
    base = np.array([-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0])
    args = [np.abs(base) + 0.25 if fn in POSITIVE else base]
    args += [np.array([1.0, -1.0, 0.0, 0.0, 2.0, 1.0, -3.0, 0.5])] * (arity - 1)
    if fn == "pow":
        args[1] = np.array([2.0, 0.5, 3.0, 0.0, -1.0, 1.5, 2.0, -0.5])
    if fn == "where":
        args = [np.array([1.0, 0.0, -2.0, 0.5, 0.0, 0.0, 1.0, 0.0]), base, -base * 10]
    names = [f"A{k}" for k in range(arity)]
    scope = Scope((IterDef("i", 8),), (), call(fn, *(access(n, iters("i")[0]) for n in names)))
    got = evaluate_expr(scope, {n: a.astype(dtype) for n, a in zip(names, args)}, dtype=dtype)
    with np.errstate(divide="ignore"):
        want = HAND[fn](*[a.astype(dtype) for a in args])
    assert got.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got, want.astype(dtype), rtol=tol, atol=tol)


def test_function_impl_arity() -> None:
    for fn, impl in FUNCTION_IMPLS.items():
        if isinstance(impl, np.ufunc):
            assert impl.nin == FUNCTIONS[fn], fn
        else:
            assert len(inspect.signature(impl).parameters) == FUNCTIONS[fn], fn


def test_ieee_results_without_warnings() -> None:
    with np.errstate(all="raise"):
        out = ev("L[i:3] { log(%X[i]) / %X[i] }", X=np.array([0.0, 1.0, -1.0]))
    assert out[0] == -np.inf and out[1] == 0.0 and np.isnan(out[2])


# --------------------------------------------------------------------------
# Contractions and convolutions


def test_matmul_and_batched_matmul() -> None:
    a, b = randn(5, 7), randn(7, 3)
    np.testing.assert_allclose(ev("L[i:5, j:3] Sum[k:7] { %A[i, k] * %B[k, j] }", A=a, B=b), a @ b, rtol=1e-12)
    a, b = randn(2, 5, 7), randn(2, 7, 3)
    out = ev("L[b:2, i:5, j:3] Sum[k:7] { %A[b, i, k] * %B[b, k, j] * 2 }", A=a, B=b)
    np.testing.assert_allclose(out, 2 * a @ b, rtol=1e-12)


def test_conv_same_padding() -> None:
    x, k = randn(2, 3, 6, 5), randn(4, 3, 3, 3)
    out = ev("L[n:2, f:4, h:6, w:5] Sum[c:3, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }", X=x, K=k)
    np.testing.assert_allclose(out, conv_ref(x, k, pad=1), rtol=1e-10, atol=1e-12)


def test_conv_stride_and_dilation() -> None:
    x, k = randn(1, 2, 9, 9), randn(3, 2, 3, 3)
    out = ev("L[n:1, f:3, h:4, w:4] Sum[c:2, r:3, s:3] { %X[n, c, 2*h + r, 2*w + s] * %K[f, c, r, s] }", X=x, K=k)
    np.testing.assert_allclose(out, conv_ref(x, k, stride=2), rtol=1e-10, atol=1e-12)
    out = ev(
        "L[n:1, f:3, h:9, w:9] Sum[c:2, r:3, s:3] { %X[n, c, h + 2*r - 2, w + 2*s - 2] * %K[f, c, r, s] }",
        X=x, K=k,
    )
    np.testing.assert_allclose(out, conv_ref(x, k, pad=2, dil=2), rtol=1e-10, atol=1e-12)


def test_grouped_conv_via_floordiv() -> None:
    # 2 groups: output channel f reads input channels (f // 3) * 2 + c.
    x, k = randn(1, 4, 5, 5), randn(6, 2, 3, 3)
    out = ev(
        "L[n:1, f:6, h:5, w:5] Sum[c:2, r:3, s:3] "
        "{ %X[n, f // 3 * 2 + c, h + r - 1, w + s - 1] * %K[f, c, r, s] }",
        X=x, K=k,
    )
    np.testing.assert_allclose(out, conv_ref(x, k, pad=1, groups=2), rtol=1e-10, atol=1e-12)


def test_conv_runs_in_float32() -> None:
    x, k = randn(1, 8, 12, 12).astype(np.float32), randn(8, 8, 3, 3).astype(np.float32)
    out = ev(
        "L[n:1, f:8, h:12, w:12] Sum[c:8, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }",
        dtype=np.float32, X=x, K=k,
    )
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, conv_ref(x.astype(float), k.astype(float), pad=1), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_64x56x56_under_a_second(dtype: type) -> None:
    x, k = randn(1, 64, 56, 56).astype(dtype), randn(64, 64, 3, 3).astype(dtype)
    text = "L[n:1, f:64, h:56, w:56] Sum[c:64, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }"
    start = time.perf_counter()
    ev(text, dtype=dtype, X=x, K=k)
    assert time.perf_counter() - start < 1.0


def test_max_pool_with_neg_inf_pad() -> None:
    x = randn(1, 2, 5, 5)
    out = ev("L[n:1, c:2, h:3, w:3] Max[r:3, s:3] { %X[n, c, 2*h + r - 1, 2*w + s - 1 | -inf] }", X=x)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    want = np.max([xp[:, :, r:r + 5:2, s:s + 5:2] for r in range(3) for s in range(3)], axis=0)
    np.testing.assert_array_equal(out, want)


def test_iterator_ranges_with_start() -> None:
    x = randn(6)
    out = ev("L[i:6] Sum[r:-1..2] { %X[i + r] }", X=x)
    np.testing.assert_allclose(out, np.convolve(x, np.ones(3), mode="same"), rtol=1e-12)
    out = ev("L[i:2..5] { %X[i] * i }", X=x)  # position p holds i = 2 + p
    np.testing.assert_allclose(out, x[2:5] * np.arange(2, 5))


# --------------------------------------------------------------------------
# Data movement


def test_reshape_via_floordiv_and_mod() -> None:
    x = randn(3, 4)
    out = ev("L[i:12] { %X[i // 4, i % 4] }", X=x)
    np.testing.assert_array_equal(out, x.reshape(12))
    out = ev("L[a:2, b:6] { %X[(a * 6 + b) // 4, (a * 6 + b) % 4] }", X=x)
    np.testing.assert_array_equal(out, x.reshape(2, 6))


def test_floordiv_and_mod_follow_python_on_negatives() -> None:
    out = ev("L[i:7] { (i - 3) // 2 + (i - 3) % 2 * 10 }")
    assert out.tolist() == [(i - 3) // 2 + (i - 3) % 2 * 10 for i in range(7)]
    x = np.arange(4.0)
    out = ev("L[i:7] { %X[(i - 3) // 2 + 1] }", X=x)  # index -1 is out of bounds, not x[-1]
    want = [x[(i - 3) // 2 + 1] if (i - 3) // 2 + 1 >= 0 else 0.0 for i in range(7)]
    assert out.tolist() == want and want[0] == 0.0


def test_true_division_in_body() -> None:
    out = ev("L[i:4] { i / 2 }")
    assert out.tolist() == [0.0, 0.5, 1.0, 1.5]


def test_transpose() -> None:
    x = randn(2, 3, 4)
    np.testing.assert_array_equal(ev("L[k:4, i:2, j:3] { %X[i, j, k] }", X=x), x.transpose(2, 0, 1))


def test_concat_as_sum_of_padded_reads() -> None:
    a, b = randn(2, 3), randn(2, 4)
    out = ev("L[i:2, j:7] { %A[i, j] + %B[i, j - 3] }", A=a, B=b)
    np.testing.assert_array_equal(out, np.concatenate([a, b], axis=1))


def test_constant_index_and_scalar_tensor() -> None:
    x, s = randn(3, 4), np.array(2.5)
    out = ev("L[j:4] { %X[1, j] * %s[] }", X=x, s=s)
    np.testing.assert_allclose(out, x[1] * 2.5)
    out = ev("L[j:2] { %X[5, j] + 1 }", X=x)  # constant index out of bounds: pad
    assert out.tolist() == [1.0, 1.0]


# --------------------------------------------------------------------------
# Nested scopes, iterators as values, reductions


def test_nested_scope_closed() -> None:
    x = randn(4, 5)
    # softmax-style: row maximum computed by an inner scope, read per row.
    out = ev("L[i:4, j:5] { exp(%X[i, j] - (L[a:4] Max[b:5] { %X[a, b] })[i]) }", X=x)
    np.testing.assert_allclose(out, np.exp(x - x.max(axis=1, keepdims=True)), rtol=1e-12)


def test_nested_scope_using_enclosing_iterator() -> None:
    x = randn(4, 6)
    # Inner scope depends on the outer i: prefix sums of row i, read at j.
    out = ev("L[i:4, j:6] { (L[t:6] Sum[u:6] { %X[i, u] * le(u, t) })[j] }", X=x)
    np.testing.assert_allclose(out, np.cumsum(x, axis=1), rtol=1e-12)
    # ... and under a reduction of the outer scope, with an outer iterator as value.
    out = ev("L[i:4] Sum[j:6] { (L[t:6] { %X[i, t] * i })[5 - j] }", X=x)
    np.testing.assert_allclose(out, x.sum(axis=1) * np.arange(4), rtol=1e-12)


def test_nested_scope_shadowing_outer_name() -> None:
    x = randn(3)
    out = ev("L[i:3] { (L[i:3] { %X[i] * 2 })[2 - i] }", X=x)
    np.testing.assert_allclose(out, 2 * x[::-1])


def test_causal_mask_with_iterators_as_values() -> None:
    s = randn(5, 5)
    out = ev("L[i:5, j:5] { where(le(j, i), %S[i, j], -inf) }", S=s)
    np.testing.assert_array_equal(out, np.where(np.tril(np.ones((5, 5))) > 0, s, -np.inf))
    out = ev("L[i:5] Max[j:5] { where(le(j, i), %S[i, j], -inf) }", S=s)
    np.testing.assert_array_equal(out, [s[i, : i + 1].max() for i in range(5)])


def test_iterator_value_in_float32() -> None:
    out = ev("L[i:3] { %X[i] * i + 0.5 }", dtype=np.float32, X=np.ones(3, np.float32))
    assert out.dtype == np.float32 and out.tolist() == [0.5, 1.5, 2.5]


@pytest.mark.parametrize("reduce, identity", [("Sum", 0.0), ("Prod", 1.0), ("Max", -np.inf), ("Min", np.inf)])
def test_empty_reduction_is_identity(reduce: str, identity: float) -> None:
    out = ev(f"L[i:3] {reduce}[k:0] {{ %X[i, k] }}", X=np.ones((3, 0)))
    assert out.tolist() == [identity] * 3
    out = ev(f"L[i:2] {reduce}[k:2..2] {{ 5.0 }}")
    assert out.tolist() == [identity] * 2


@pytest.mark.parametrize("reduce, want", [("Sum", 4 * 1.5), ("Prod", 1.5**4), ("Max", 1.5), ("Min", 1.5)])
def test_reduction_over_unused_iterator(reduce: str, want: float) -> None:
    out = ev(f"L[i:2] {reduce}[k:4] {{ %X[i] }}", X=np.full(2, 1.5))
    np.testing.assert_allclose(out, [want, want])


def test_empty_traversal() -> None:
    assert ev("L[i:0, j:3] Sum[k:2] { %A[i, k] * %B[k, j] }", A=np.ones((0, 2)), B=np.ones((2, 3))).shape == (0, 3)


def test_scalar_result() -> None:
    x = randn(3, 4)
    out = ev("L[] Sum[i:3, j:4] { %X[i, j] * %X[i, j] }", X=x)
    assert out.shape == () and np.isclose(out, (x**2).sum())


def test_result_is_fresh_and_writable() -> None:
    out = ev("L[i:3, j:2] { %X[i] }", X=np.ones(3))
    out[0, 0] = 7.0  # a broadcast view would refuse this
    assert out.flags.c_contiguous


# --------------------------------------------------------------------------
# Chunking: splitting a big scope must not change the result


@pytest.mark.parametrize(
    "text",
    [
        "L[n:1, f:4, h:6, w:6] Sum[c:3, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }",
        "L[n:1, f:4, h:6, w:6] Max[c:3, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }",
        "L[] Sum[c:3, h:6, w:6] { %X[0, c, h, w] * %X[0, c, h, w] + 1 }",
        "L[f:4] Prod[c:3, r:3] { 1 + %K[f, c, r, 0] * 0.1 }",
        "L[f:4, c:3] { (L[a:4] Sum[r:3, s:3] { %K[a, c, r, s] * %K[f, c, r, s] })[3 - f] }",
    ],
)
def test_chunking_preserves_results(text: str) -> None:
    x, k = randn(1, 3, 6, 6), randn(4, 3, 3, 3)
    scope = parse_expr(text)
    whole = evaluate_expr(scope, {"X": x, "K": k})
    split = evaluate_expr(scope, {"X": x, "K": k}, chunk_elements=7)
    np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# Symbols and errors


def test_symbolic_extents() -> None:
    x = randn(3, 4)
    out = ev("L[b:batch, j:4] { %X[b, j] * 2 }", {"batch": 3}, X=x)
    np.testing.assert_allclose(out, 2 * x)


def test_unbound_symbol() -> None:
    with pytest.raises(EvalError, match="unbound symbol 'batch'.*iterator 'b'"):
        ev("L[b:batch] { %X[b] }", X=np.ones(3))


def test_missing_tensor() -> None:
    with pytest.raises(EvalError, match="tensor %Y is not provided.*%X"):
        ev("L[i:3] { %X[i] + %Y[i] }", X=np.ones(3))


def test_arity_mismatch() -> None:
    with pytest.raises(EvalError, match="%X has 1 indices but %X has rank 2"):
        ev("L[i:3] { %X[i] }", X=np.ones((3, 3)))
    inner = Scope((IterDef("a", 3),), (), access("X", iters("a")[0]))
    with pytest.raises(EvalError, match="nested scope has 2 indices .* rank 1"):
        evaluate_expr(Scope((IterDef("i", 3),), (), Access(inner, iters("i", "i"))), {"X": np.ones(3)})


def test_unbound_iterator() -> None:
    with pytest.raises(EvalError, match="iterator 'q' is not bound"):
        ev("L[i:3] { %X[i] * q }", X=np.ones(3))


def test_non_integer_index() -> None:
    scope = Scope((IterDef("i", 3),), (), access("X", iters("i")[0] + 0.5))
    with pytest.raises(EvalError, match="not an integer"):
        evaluate_expr(scope, {"X": np.ones(3)})


def test_dtype_by_short_name() -> None:
    assert ev("L[i:2] { 1.5 }", dtype="f32").dtype == np.float32


# --------------------------------------------------------------------------
# run_graph


def f32(*shape: int | str) -> TensorType:
    return TensorType("f32", shape)


def mlp_graph() -> tuple[Graph, np.ndarray, np.ndarray]:
    """x[batch, 4] @ w[4, 3] -> relu -> * 2: two expr nodes, symbolic batch."""
    w = randn(4, 3).astype(np.float32)
    b = randn(3).astype(np.float32)
    h = Node("expr", ("x", "w", "b"), (Value("h", f32("batch", 3)),),
             expr=parse_expr("L[i:batch, j:3] { relu((L[a:batch, c:3] Sum[k:4] { %x[a, k] * %w[k, c] })[i, j] + %b[j]) }"))
    y = Node("expr", ("h",), (Value("y", f32("batch", 3)),), expr=parse_expr("L[i:batch, j:3] { %h[i, j] * 2 }"))
    g = Graph("mlp", (Value("x", f32("batch", 4)),), (Value("w", f32(4, 3)), Value("b", f32(3))),
              (h, y), ("y",), {"w": w, "b": b})
    return g, w, b


@pytest.mark.parametrize("batch", [1, 5])
def test_run_graph_symbolic_batch(batch: int) -> None:
    g, w, b = mlp_graph()
    x = randn(batch, 4).astype(np.float32)
    out = run_graph(g, {"x": x})
    assert list(out) == ["y"] and out["y"].dtype == np.float32 and out["y"].shape == (batch, 3)
    np.testing.assert_allclose(out["y"], 2 * np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)


def test_run_graph_f64_mode() -> None:
    g, w, b = mlp_graph()
    x = randn(2, 4).astype(np.float32)
    out = run_graph(g, {"x": x}, dtype="f64")["y"]
    assert out.dtype == np.float64
    want = 2 * np.maximum(x.astype(float) @ w.astype(float) + b.astype(float), 0)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    # f64 mode accepts a float64 input for an f32 declaration.
    run_graph(g, {"x": x.astype(np.float64)}, dtype="f64")


def test_run_graph_bad_inputs() -> None:
    g, _, _ = mlp_graph()
    x = np.ones((2, 4), np.float32)
    with pytest.raises(EvalError, match=r"missing input %x \(expected f32\[batch, 4\]\)"):
        run_graph(g, {})
    with pytest.raises(EvalError, match="unknown input %z"):
        run_graph(g, {"x": x, "z": x})
    with pytest.raises(EvalError, match=r"input %x: expected rank 2 .* got shape \(8,\)"):
        run_graph(g, {"x": x.reshape(8)})
    with pytest.raises(EvalError, match="input %x: dim 1 expected 4 .* got 5"):
        run_graph(g, {"x": np.ones((2, 5), np.float32)})
    with pytest.raises(EvalError, match="input %x: expected dtype f32 .* got float64"):
        run_graph(g, {"x": x.astype(np.float64)})
    with pytest.raises(EvalError, match="mode 'f16'"):
        run_graph(g, {"x": x}, dtype="f16")


def test_run_graph_conflicting_symbol() -> None:
    node = Node("expr", ("a", "b"), (Value("y", f32("n")),), expr=parse_expr("L[i:n] { %a[i] + %b[i] }"))
    g = Graph("add", (Value("a", f32("n")), Value("b", f32("n"))), (), (node,), ("y",))
    with pytest.raises(EvalError, match="input %b: symbolic dim 'n' .* is 4 here but input %a bound it to 3"):
        run_graph(g, {"a": np.ones(3, np.float32), "b": np.ones(4, np.float32)})
    out = run_graph(g, {"a": np.ones(3, np.float32), "b": np.ones(3, np.float32)})
    assert out["y"].tolist() == [2.0, 2.0, 2.0]


def test_run_graph_frees_intermediates_and_keeps_outputs() -> None:
    # %t is an output *and* read later: it must survive its last use.
    n1 = Node("expr", ("x",), (Value("t", f32(3)),), expr=parse_expr("L[i:3] { %x[i] + 1 }"))
    n2 = Node("expr", ("t",), (Value("u", f32(3)),), expr=parse_expr("L[i:3] { %t[i] * 2 }"))
    n3 = Node("expr", ("u", "t"), (Value("v", f32(3)),), expr=parse_expr("L[i:3] { %u[i] - %t[i] }"))
    g = Graph("chain", (Value("x", f32(3)),), (), (n1, n2, n3), ("v", "t"))
    out = run_graph(g, {"x": np.zeros(3, np.float32)})
    assert out["t"].tolist() == [1.0] * 3 and out["v"].tolist() == [1.0] * 3


def test_run_graph_declared_shape_is_checked() -> None:
    node = Node("expr", ("x",), (Value("y", f32(4)),), expr=parse_expr("L[i:3] { %x[i] }"))
    g = Graph("bad", (Value("x", f32(3)),), (), (node,), ("y",))
    with pytest.raises(EvalError, match=r"expr node %y: output %y has shape \(3,\), declared f32\[4\]"):
        run_graph(g, {"x": np.zeros(3, np.float32)})


def test_run_graph_int_output_and_missing_weight() -> None:
    node = Node("expr", ("x",), (Value("y", TensorType("i64", (3,))),), expr=parse_expr("L[i:3] { %x[i] * i }"))
    g = Graph("ints", (Value("x", TensorType("i64", (3,))),), (), (node,), ("y",))
    out = run_graph(g, {"x": np.array([5, 6, 7])})["y"]
    assert out.dtype == np.int64 and out.tolist() == [0, 6, 14]
    g2 = Graph("w", (), (Value("w", f32(2)),), (), ("w",))
    with pytest.raises(EvalError, match="constant %w has no data"):
        run_graph(g2, {})


def test_evaluate_node_with_custom_registry() -> None:
    class Twice:
        def with_defaults(self, attrs: object) -> dict:
            return {}

        def eval(self, xs: list, attrs: object) -> list:
            return [xs[0] * 2]

    node = Node("twice", ("x",), (Value("y", f32(2)),))
    out = evaluate_node(node, [np.ones(2, np.float32)], {}, {"twice": Twice()})
    assert out[0].tolist() == [2.0, 2.0]
    with pytest.raises(EvalError, match="unknown op 'nope'"):
        evaluate_node(Node("nope", ("x",), (Value("y", f32(2)),)), [np.ones(2)], {}, {"twice": Twice()})


@pytest.mark.parametrize("dt", ["u8", "u16", "u32", "u64"])
def test_unsigned_expr_outputs_wrap_like_numpy(dt: str) -> None:
    # The body computes in float64; the cast to the unsigned output wraps
    # modulo 2**width exactly (a plain float -> uint cast is undefined below 0).
    t = TensorType(dt, (4,))
    node = Node("expr", ("x", "z"), (Value("y", t),), expr=parse_expr("L[i:4] { %x[i] - %z[i] }"))
    g = Graph("wrap", (Value("x", t), Value("z", t)), (), (node,), ("y",))
    x = np.array([0, 5, 1, 2], t.np_dtype)
    z = np.array([1, 3, 200, 2], t.np_dtype)
    out = run_graph(g, {"x": x, "z": z})["y"]
    assert out.dtype == t.np_dtype
    assert out.tolist() == (x - z).tolist()  # NumPy's own wrapping subtract
