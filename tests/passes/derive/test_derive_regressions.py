"""Regression tests: cases a review found where a rule, normalization or matcher
changed the result (each fixed; each case must stay equal)."""

from __future__ import annotations

import numpy as np
import pytest

from tensoropt.interp import evaluate_expr, run_graph
from tensoropt.ir.parser import parse_expr
from tensoropt.ir.types import TensorType
from tensoropt.passes.derive.check import difference
from tensoropt.passes.derive.instantiate import instantiate
from tensoropt.passes.derive.rules import RULES, normalize
from tensoropt.passes.derive.search import search
from tensoropt.passes.derive.sites import replace, sites

CASES = {
    # trav-split past the end of a nested scope read out of bounds
    "split-oob": ("L[i:6] { (L[j:5] { %X[2 * j] })[i] }", {"X": (12,)}),
    "split-oob-sum": ("L[i:5] Sum[k:3] { (L[a:3] { %X[2 * a] + 1.0 })[i + k - 2] * %Y[k] }", {"X": (6,), "Y": (3,)}),
    # trav-subst of a dim read out of bounds
    "subst-oob": ("L[i:5] Sum[k:3] { (L[a:4, b:2] { %X[a + b] + 1.0 })[i + k - 2, 1] * %Y[k] }",
                  {"X": (6,), "Y": (3,)}),
    "subst-oob-guided": ("L[i:4, j:3] Sum[k:2] { (L[a:3, b:3] Sum[c:2] { %X[a + b, c] * %Y[c, b] })[i, j] * %Z[k] }",
                         {"X": (5, 2), "Y": (2, 3), "Z": (2,)}),
    # an unused traversal iterator read out of bounds
    "unused-oob": ("L[i:5] { (L[j:3] { %X[0] })[i] }", {"X": (4,)}),
    # layout-split of a -inf padded read under Max
    "layout-pad": ("L[i:3] Max[k:3] { %X[2 * i + k - 1 | -inf] }", {"X": (5,)}),
    # a predicate compared with 0.0 instead of 0
    "eq-float": ("L[i:5] Sum[k:3] { where(eq((i - k) % 2, 0.0), %X[(i - k) // 2], 0.0) * %Y[k] }",
                 {"X": (3,), "Y": (3,)}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_rule_stays_equal(name: str) -> None:
    text, shapes = CASES[name]
    expr = parse_expr(text)
    for site in sites(expr, shapes):
        for rule in RULES.values():
            for p in rule.params(site):
                new = rule.apply(site, p)
                if new is not None:
                    out = normalize(replace(expr, site.index, new), shapes)
                    assert difference(expr, out, shapes) <= 1e-9, (rule.name, p, str(out))
    assert difference(expr, normalize(expr, shapes), shapes) <= 1e-9


def test_guided_search_states_stay_equal() -> None:
    text, shapes = CASES["subst-oob-guided"]
    expr = parse_expr(text)
    res = search(expr, {k: TensorType("f32", v) for k, v in shapes.items()}, depth=1)
    for c in res.candidates:
        assert difference(expr, c.expr, shapes) <= 1e-9, str(c.expr)


MATCH = {
    # conv2d must sum over exactly channels and taps (z would be dropped)
    "conv-extra-sum": ("L[n:1, f:2, h:3, w:3] Sum[c:2, r:3, s:3, z:2] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }",
                       {"X": (1, 2, 3, 3), "K": (2, 2, 3, 3)}),
    # gbmm must sum over the band only
    "gbmm-extra-sum": ("L[i:5, j:2] Sum[w:3, z:2] { %P[i, w] * %V[i + w - 1, j] }", {"P": (5, 3), "V": (5, 2)}),
    "gbmm-unbound": ("L[i:5, j:2] Sum[w:3, k:2] { %P[i, w, k] * %V[i + w - 1, j] }", {"P": (5, 3, 2), "V": (5, 2)}),
    # operators read zero outside: a read padded with 1.0 is not theirs
    "g2bmm-pad": ("L[i:5, w:3] Sum[k:2] { %A[i, k] * %B[i + w - 1, k | 1.0] }", {"A": (5, 2), "B": (5, 2)}),
    "gbmm-pad": ("L[i:5, j:2] Sum[w:3] { %P[i, w] * %V[i + w - 1, j | 1.0] }", {"P": (5, 3), "V": (5, 2)}),
}


@pytest.mark.parametrize("name", sorted(MATCH))
def test_instantiated_program_computes_its_expression(name: str) -> None:
    text, shapes = MATCH[name]
    expr = parse_expr(text)
    values = {k: TensorType("f32", v) for k, v in shapes.items()}
    g, _ = instantiate(expr, values, {})
    rng = np.random.default_rng(0)
    xs = {k: rng.uniform(-1, 1, size=v).astype(np.float32) for k, v in shapes.items()}
    want = evaluate_expr(expr, {k: v.astype(np.float64) for k, v in xs.items()})
    got = run_graph(g, {v.name: xs[v.name] for v in g.inputs}, dtype="f64")[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
