"""Soundness of every derivation rule: each application, at every site, with every
parameter, is equal to its input on random float64 inputs (whole output)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tensoropt.ir.parser import parse_expr
from tensoropt.ir.types import TensorType
from tensoropt.passes.derive.canon import canonical_key
from tensoropt.passes.derive.check import DerivationError, check_step, difference
from tensoropt.passes.derive.rules import RULES, normalize
from tensoropt.passes.derive.search import guided
from tensoropt.passes.derive.sites import replace, sites

sys.path.insert(0, str(Path(__file__).parent))
from derive_cases import REFERENCES, op_expr  # noqa: E402

CORPUS = {
    "matmul": lambda: op_expr("matmul", [(3, 5), (5, 4)]),
    "batch_matmul": lambda: op_expr("batch_matmul", [(2, 3, 5), (2, 5, 4)]),
    "conv-strided": lambda: op_expr("conv2d", [(1, 3, 7, 7), (4, 3, 3, 3)], strides=[2, 2], pads=[1, 1, 1, 1]),
    "conv-dilated": lambda: op_expr("conv2d", [(1, 2, 8, 8), (3, 2, 3, 3)], dilations=[2, 2], pads=[2, 2, 2, 2]),
    "conv-grouped": lambda: op_expr("conv2d", [(1, 4, 5, 5), (4, 2, 3, 3)], group=2, pads=[1, 1, 1, 1]),
    "conv-bias": lambda: op_expr("conv2d", [(1, 2, 5, 5), (3, 2, 3, 3), (3,)], pads=[1, 1, 1, 1]),
    "convT-s3": lambda: op_expr("conv_transpose2d", [(1, 2, 3, 3), (2, 3, 5, 5)], strides=[3, 3], pads=[1, 1, 1, 1]),
    "gbmm": lambda: op_expr("gbmm", [(1, 9, 5), (1, 9, 3)], width=2, dilation=2),
    "avgpool": lambda: op_expr("avgpool2d", [(1, 2, 6, 6)], kernel=[2, 2], strides=[2, 2]),
    # a summation-free nested scope read in bounds (inline) and out of bounds (kept)
    "nested": lambda: (parse_expr("L[i:4, j:3] Sum[k:3] { (L[a:6, b:3] { %X[a, b] * 2.0 })[i + 1, k] * "
                                  "(L[c:3, d:4] { exp(%Y[c, d]) })[k, j + 2] }"),
                       {"X": TensorType("f32", (6, 3)), "Y": TensorType("f32", (3, 4))}),
    **{k: v[0] for k, v in REFERENCES.items()},
}


def _all_steps(expr, values):
    shapes = {n: tuple(t.shape) for n, t in values.items()}
    for site in sites(expr, shapes):
        for rule in RULES.values():
            for p in rule.params(site):
                new = rule.apply(site, p)
                if new is not None:
                    yield rule.name, p, normalize(replace(expr, site.index, new), shapes), shapes


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_rule_application_is_equal(name: str) -> None:
    expr, values = CORPUS[name]()
    applied = set()
    for rule, p, out, shapes in _all_steps(expr, values):
        applied.add(rule)
        d = difference(expr, out, shapes)
        assert d <= 1e-9, f"{rule} {p}: relative difference {d}\n{expr}\n->\n{out}"
        # and one more level, so rules also meet each other's output
        for rule2, p2, out2, _ in _all_steps(out, values):
            d2 = difference(out, out2, shapes, seed=3)
            assert d2 <= 1e-9, f"{rule} {p} then {rule2} {p2}: {d2}\n{out}\n->\n{out2}"
    assert applied, "no rule applies: the corpus entry tests nothing"


def test_rules_cover_every_family_on_the_corpus() -> None:
    seen = set()
    for make in CORPUS.values():
        expr, values = make()
        seen |= {r for r, *_ in _all_steps(expr, values)}
    assert seen == set(RULES)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(3, 6),
       k=st.integers(1, 4), stride=st.integers(1, 3), pad=st.integers(0, 2), transpose=st.booleans(),
       pick=st.integers(0, 10_000))
def test_random_two_step_derivations_of_convs_are_equal(n, c, f, h, k, stride, pad, transpose, pick) -> None:
    pad = min(pad, k - 1)
    if transpose:
        expr, values = op_expr("conv_transpose2d", [(n, c, h, h), (c, f, k, k)], strides=[stride, stride],
                               pads=[pad] * 4)
    else:
        if (h + 2 * pad - k) < 0:
            return
        expr, values = op_expr("conv2d", [(n, c, h, h), (f, c, k, k)], strides=[stride, stride], pads=[pad] * 4)
    steps = list(_all_steps(expr, values))
    if not steps:
        return
    _, _, mid, shapes = steps[pick % len(steps)]
    mid, _ = guided(mid, shapes)
    assert difference(expr, mid, shapes) <= 1e-9
    more = list(_all_steps(mid, values))
    if more:
        _, _, out, _ = more[(pick // 7) % len(more)]
        assert difference(expr, out, shapes, seed=5) <= 1e-9


def test_check_step_names_an_unequal_step() -> None:
    a = parse_expr("L[i:4] Sum[k:3] { %X[i, k] }")
    b = parse_expr("L[i:4] Sum[k:2] { %X[i, k] }")
    with pytest.raises(DerivationError, match="step 7 .* changed the result"):
        check_step(a, b, {"X": (4, 3)}, "7 (made-up)")


def test_canonical_key_ignores_names_and_sum_order_only() -> None:
    a = parse_expr("L[i:4, j:5] Sum[k:3, l:2] { %X[i, k, l] * %Y[k, l, j] }")
    b = parse_expr("L[p:4, q:5] Sum[m:2, n:3] { %Y[n, m, q] * %X[p, n, m] }")
    c = parse_expr("L[j:5, i:4] Sum[k:3, l:2] { %X[i, k, l] * %Y[k, l, j] }")  # another layout
    assert canonical_key(a) == canonical_key(b)
    assert canonical_key(a) != canonical_key(c)
