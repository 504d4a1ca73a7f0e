"""Every registered op: eval vs an independent reference, infer vs eval, Expr vs eval.

The case table lives in ``op_cases.py``; ``test_every_op_has_a_case`` makes
adding an op without cases fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_cases import CASES, Case

from tensoropt.interp import _to_unsigned, evaluate_expr
from tensoropt.ir.types import TensorType, dtype_of
from tensoropt.ir.verify import expr_problems
from tensoropt.ops import REGISTRY, Cost, get_op, infer_node_types

IDS = [c.id for c in CASES]


def _types(xs: list[np.ndarray]) -> list[TensorType]:
    return [TensorType(dtype_of(x.dtype), x.shape) for x in xs]


def _run(case: Case, xs: list[np.ndarray] | None = None) -> list[np.ndarray]:
    rules = get_op(case.op)
    return rules.eval(case.inputs if xs is None else xs, rules.with_defaults(case.attrs))


def _f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) if x.dtype.kind == "f" else x


def test_every_op_has_a_case() -> None:
    missing = sorted(set(REGISTRY) - {c.op for c in CASES})
    assert not missing, f"ops without test cases: {missing}"


def test_compute_and_elementwise_ops_have_exprs() -> None:
    lacking = sorted(n for n, r in REGISTRY.items()
                     if r.category in ("compute", "elementwise") and r.expr is None)
    assert not lacking


def test_rules_are_well_formed() -> None:
    for name, r in REGISTRY.items():
        assert r.name == name
        assert r.category in ("elementwise", "compute", "movement"), name
        assert r.doc and "\n" not in r.doc, name
        for s in r.attrs:
            assert s.kind in ("int", "float", "str", "bool", "ints", "floats"), (name, s)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eval_matches_reference(case: Case) -> None:
    got = _run(case)
    want = case.ref(case.inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_infer_matches_eval(case: Case) -> None:
    outs = infer_node_types(case.op, _types(case.inputs), case.attrs)
    got = _run(case)
    assert outs == _types(got)
    cost = get_op(case.op).cost(_types(case.inputs), outs, get_op(case.op).with_defaults(case.attrs))
    assert isinstance(cost, Cost) and cost.flops >= 0 and cost.bytes > 0
    assert all(isinstance(v, int) for v in (cost.flops, cost.bytes))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_expr_matches_eval(case: Case) -> None:
    rules = get_op(case.op)
    if rules.expr is None:
        pytest.skip("no Expr (data-dependent or cast)")
    names = [f"x{k}" for k in range(len(case.inputs))]
    types = _types(case.inputs)
    scope = rules.expr(names, types, rules.with_defaults(case.attrs))
    if scope is None:
        assert rules.category == "movement", "only movement ops may lack an Expr"
        return
    assert not expr_problems(scope, dict(zip(names, types)), case.id)
    xs = [_f64(x) for x in case.inputs]
    want = _run(case, xs)[0]
    got = evaluate_expr(scope, dict(zip(names, xs)), dtype=np.float64)
    if want.dtype.kind == "u":
        got = _to_unsigned(got, want.dtype)  # an expr node's output cast wraps, as NumPy's uint math
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want.astype(np.float64), rtol=1e-9, atol=1e-12)
