"""einsum_to_expr: agreement with numpy.einsum (property test) and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensoropt.errors import VerifyError
from tensoropt.interp import evaluate_expr
from tensoropt.ir.einsum import einsum_to_expr
from tensoropt.ir.expr import Access, Const, Iter, IterDef

LETTERS = "abcdeijkAB"  # upper case checks NumPy's code-point ordering of implicit outputs


@st.composite
def einsum_cases(draw: st.DrawFn) -> tuple[str, list[np.ndarray]]:
    """A valid einsum spec with 1-3 operands and matching random arrays.

    Sizes are per letter; an operand may see a letter (or an ellipsis dim) as
    size 1 to exercise broadcasting. Letters may repeat within an operand
    (diagonals), and operands may carry ``...``.
    """
    size = {ch: draw(st.integers(1, 3)) for ch in LETTERS}
    ell_shape = draw(st.lists(st.integers(1, 3), max_size=2))
    n_ops = draw(st.integers(1, 3))
    terms, shapes = [], []
    for _ in range(n_ops):
        letters = draw(st.lists(st.sampled_from(LETTERS), max_size=4))
        squash = {ch: draw(st.booleans()) and draw(st.booleans()) for ch in set(letters)}
        dims = [1 if squash[ch] else size[ch] for ch in letters]
        if ell_shape and draw(st.booleans()):
            n_ell = draw(st.integers(0, len(ell_shape)))
            ell = [1 if draw(st.integers(0, 3)) == 0 else d for d in ell_shape[len(ell_shape) - n_ell:]]
            at = draw(st.integers(0, len(letters)))
            terms.append("".join(letters[:at]) + "..." + "".join(letters[at:]))
            shapes.append(dims[:at] + ell + dims[at:])
        else:
            terms.append("".join(letters))
            shapes.append(dims)
    spec = ",".join(terms)
    if draw(st.booleans()):
        used = sorted(set("".join(terms).replace(".", "")))
        out = draw(st.permutations(used))[: draw(st.integers(0, len(used)))]
        text = "".join(out)
        if "..." in spec:
            at = draw(st.integers(0, len(text)))
            text = text[:at] + "..." + text[at:]
        spec += "->" + text
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return spec, [rng.standard_normal(s) for s in shapes]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(einsum_cases())
def test_matches_numpy_einsum(case: tuple[str, list[np.ndarray]]) -> None:
    spec, arrays = case
    names = [f"T{k}" for k in range(len(arrays))]
    scope = einsum_to_expr(spec, [(n, a.shape) for n, a in zip(names, arrays)])
    got = evaluate_expr(scope, dict(zip(names, arrays)))
    want = np.einsum(spec, *arrays)
    assert got.shape == np.shape(want), spec
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=spec)


def test_matmul_structure() -> None:
    s = einsum_to_expr("ik,kj->ij", [("A", (2, 3)), ("B", (3, 4))])
    assert s.travs == (IterDef("i", 2), IterDef("j", 4))
    assert s.sums == (IterDef("k", 3),)
    assert s.reduce == "Sum"
    assert str(s) == "L[i:2, j:4] Sum[k:3] { %A[i, k] * %B[k, j] }"


def test_batched_and_implicit() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    s = einsum_to_expr("bik,bkj->bij", [("A", a.shape), ("B", b.shape)])
    np.testing.assert_allclose(evaluate_expr(s, {"A": a, "B": b}), a @ b, rtol=1e-12)
    s = einsum_to_expr("ij,jk", [("A", (2, 3)), ("B", (3, 4))])
    assert [d.name for d in s.travs] == ["i", "k"]


def test_diagonal_and_trace() -> None:
    x = np.arange(9.0).reshape(3, 3)
    s = einsum_to_expr("ii->i", [("X", (3, 3))])
    assert s.body == Access("X", (Iter("i"), Iter("i")))
    np.testing.assert_array_equal(evaluate_expr(s, {"X": x}), np.diag(x))
    assert evaluate_expr(einsum_to_expr("ii", [("X", (3, 3))]), {"X": x}) == 12.0


def test_broadcast_size_one_reads_index_zero() -> None:
    s = einsum_to_expr("...i,...i->...i", [("A", (1, 3)), ("B", (5, 3))])
    assert s.travs == (IterDef("e0", 5), IterDef("i", 3))
    assert s.body.lhs == Access("A", (Const(0), Iter("i")))  # type: ignore[attr-defined]


def test_symbolic_dims() -> None:
    s = einsum_to_expr("bk,kj->bj", [("X", ("batch", 4)), ("W", (4, 2))])
    assert s.travs[0] == IterDef("b", "batch")
    x, w = np.ones((7, 4)), np.ones((4, 2))
    out = evaluate_expr(s, {"X": x, "W": w}, {"batch": 7})
    np.testing.assert_array_equal(out, x @ w)


def test_scalar_operand() -> None:
    s = einsum_to_expr("i,->i", [("X", (3,)), ("s", ())])
    out = evaluate_expr(s, {"X": np.arange(3.0), "s": np.array(2.0)})
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0])


@pytest.mark.parametrize(
    "spec, operands, match",
    [
        ("ij,jk->ik", [("A", (2, 3))], "2 operand term"),
        ("ij->ij", [("A", (2, 3, 4))], "rank 3"),
        ("ij,jk->ik", [("A", (2, 3)), ("B", (4, 5))], "'j' has size 3 in operand 0 .* but 4 in operand 1"),
        ("ii->i", [("A", (2, 3))], "repeated subscript 'i'"),
        ("i$->i", [("A", (2, 3))], "bad subscript '\\$'"),
        ("ij->iz", [("A", (2, 3))], "'z' appears in no operand"),
        ("ij->ii", [("A", (2, 3))], "repeats 'i'"),
        ("...i->i", [("A", (2, 3))], "no '...'"),
        ("i..j->ij", [("A", (2, 3))], "'...'"),
        ("i->i->i", [("A", (2,))], "more than one '->'"),
        ("ij...->ij", [("A", (2,))], "rank >= 2"),
        ("->", [], "at least one operand"),
    ],
)
def test_errors(spec: str, operands: list, match: str) -> None:
    with pytest.raises(VerifyError, match=match):
        einsum_to_expr(spec, operands)
