"""Every op case of tests/ops/op_cases.py, compiled with TVM, matches the reference interpreter.

All cases go into ONE graph (inputs renamed per case), compiled once: one
``tvm.compile`` instead of 200 keeps this fast. A case whose op cannot lower
fails its own lowering test first (``test_each_case_lowers``), which names it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
from op_cases import CASES, Case  # noqa: E402

from tensoropt.codegen.relax_graph import to_relax  # noqa: E402
from tensoropt.ir.graph import Attrs, Graph, Node, Value  # noqa: E402
from tensoropt.ir.types import TensorType, dtype_of  # noqa: E402
from tensoropt.ops import get_op, infer_node_types  # noqa: E402

IDS = [c.id for c in CASES]


def _node(case: Case, k: int) -> tuple[list[Value], Node, list[str]]:
    ins = [Value(f"c{k}_x{i}", TensorType(dtype_of(x.dtype), x.shape)) for i, x in enumerate(case.inputs)]
    outs = infer_node_types(case.op, [v.type for v in ins], case.attrs)
    vals = tuple(Value(f"c{k}_y{j}", t) for j, t in enumerate(outs))
    return ins, Node(case.op, tuple(v.name for v in ins), vals, Attrs(case.attrs)), [v.name for v in vals]


def _graph(cases: list[Case]) -> Graph:
    inputs, nodes, outputs = [], [], []
    for k, c in enumerate(cases):
        ins, node, outs = _node(c, k)
        inputs += ins
        nodes.append(node)
        outputs += outs
    return Graph("cases", tuple(inputs), (), tuple(nodes), tuple(outputs))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_case_lowers(case: Case) -> None:
    mod, sig = to_relax(_graph([case]))
    assert sig.inputs == tuple(f"c0_x{i}" for i in range(len(case.inputs)))
    assert any(gv.name_hint.startswith(case.op) for gv in mod.functions)


@pytest.fixture(scope="module")
def compiled():
    from tensoropt.compiler import compile as compile_graph

    g = _graph(CASES)
    return g, compile_graph(g)


def _tolerance(case: Case) -> tuple[float, float]:
    # transcendental functions in LLVM's vector math differ from NumPy's in the last bits
    return 2e-5, 2e-5


@pytest.mark.parametrize("k", range(len(CASES)), ids=IDS)
def test_compiled_matches_interpreter(compiled, k: int) -> None:
    g, model = compiled
    case = CASES[k]
    rules = get_op(case.op)
    want = rules.eval(case.inputs, rules.with_defaults(case.attrs))
    got = _run_one(model, g, k)
    assert len(got) == len(want)
    rtol, atol = _tolerance(case)
    for gw, ww in zip(got, want):
        ww = np.asarray(ww)
        assert gw.shape == ww.shape and gw.dtype == ww.dtype, (gw.shape, gw.dtype, ww.shape, ww.dtype)
        if ww.dtype.kind == "f":
            np.testing.assert_allclose(gw, ww, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(gw, ww)


_RESULTS: dict[int, dict[str, np.ndarray]] = {}


def _run_one(model, g: Graph, k: int) -> list[np.ndarray]:
    """Run the whole case graph once (all cases' inputs), then pick case k's outputs."""
    if not _RESULTS:
        all_feeds = {}
        for j, c in enumerate(CASES):
            for i, x in enumerate(c.inputs):
                all_feeds[f"c{j}_x{i}"] = x
        _RESULTS[0] = model.run(all_feeds)
    out = _RESULTS[0]
    return [out[name] for name in g.outputs if name.startswith(f"c{k}_y")]


def test_an_op_without_lowering_is_named_with_its_node() -> None:
    from dataclasses import replace

    from tensoropt.errors import UnsupportedError
    from tensoropt.ops import REGISTRY

    registry = dict(REGISTRY)
    registry["relu"] = replace(REGISTRY["relu"], expr=None)  # as a new op without an Expr would be
    x = Value("x", TensorType("f32", (2, 3)))
    g = Graph("g", (x,), (), (Node("relu", ("x",), (Value("y", x.type),)),), ("y",))
    with pytest.raises(UnsupportedError, match=r"relu node %y: op relu has no TVM lowering"):
        to_relax(g, registry=registry)


@pytest.mark.parametrize("alpha,beta,bias_shape", [(1.0, 1.0, (32,)), (0.5, 2.0, (1, 32)), (1.0, 1.0, None)])
def test_batch1_gemm_gets_the_split_k_gemv_schedule(alpha: float, beta: float, bias_shape) -> None:
    from tensoropt.compiler import compile as compile_graph

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64)).astype(np.float32)
    w = rng.standard_normal((32, 64)).astype(np.float32)
    ins = [x, w] + ([rng.standard_normal(bias_shape).astype(np.float32)] if bias_shape else [])
    case = Case("gemm", ins, lambda xs: [], {"trans_b": True, "alpha": alpha, "beta": beta})
    g = _graph([case])
    model = compile_graph(g)
    assert model.manifest["kernels"]["gemm"].startswith("gemv(split="), model.manifest["kernels"]
    got = model.run({f"c0_x{i}": a for i, a in enumerate(ins)})["c0_y0"]
    want = alpha * x @ w.T + (beta * ins[2] if bias_shape else 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)