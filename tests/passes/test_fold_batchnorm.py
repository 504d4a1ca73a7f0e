"""fold-batchnorm: a batch norm after a convolution folds into its weights;
the folded graph computes the same values (to float32 rounding) and leaves
everything it cannot fold alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensoropt.builder import GraphBuilder
from tensoropt.interp import run_graph
from tensoropt.ir.graph import Graph
from tensoropt.ir.verify import verify
from tensoropt.passes.fold_batchnorm import FoldBatchnorm


def _graph(op: str = "conv2d", *, c: int = 4, f: int = 6, group: int = 1, bias: bool = True, const_bn: bool = True,
           extra_reader: bool = False, seed: int = 0) -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("g")
    x = b.input("x", "f32", (2, c, 7, 7))
    wshape = (f, c // group, 3, 3) if op == "conv2d" else (c, f // group, 3, 3)
    ins = [x, b.const("w", rng.standard_normal(wshape).astype(np.float32))]
    if bias:
        ins.append(b.const("b", rng.standard_normal(f).astype(np.float32)))
    attrs = {"group": group, "pads": [1, 1, 1, 1]}
    y = b.op(op, *ins, **attrs)
    params = [rng.standard_normal(f).astype(np.float32), rng.standard_normal(f).astype(np.float32),
              rng.standard_normal(f).astype(np.float32), rng.uniform(0.5, 2.0, f).astype(np.float32)]
    if const_bn:
        ps = [b.const(n, a) for n, a in zip(("scale", "beta", "mean", "var"), params)]
    else:
        ps = [b.input("scale", "f32", (f,))] + [b.const(n, a) for n, a in zip(("beta", "mean", "var"), params[1:])]
    z = b.op("batchnorm", y, *ps, epsilon=1e-3)
    out = b.op("relu", z)
    outs = (out, b.op("exp", y)) if extra_reader else (out,)
    xs = {"x": rng.standard_normal((2, c, 7, 7)).astype(np.float32)}
    if not const_bn:
        xs["scale"] = params[0]
    return b.build(*outs), xs


def _same(g: Graph, out: Graph, xs: dict[str, np.ndarray]) -> None:
    verify(out)
    assert out.inputs == g.inputs and out.outputs == g.outputs
    want, got = run_graph(g, xs, dtype="f64"), run_graph(out, xs, dtype="f64")
    for k in g.outputs:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want[k]))))


def test_conv_and_batchnorm_become_one_conv_with_new_weights() -> None:
    g, xs = _graph()
    out = FoldBatchnorm().apply(g)
    assert [n.op for n in g.nodes] == ["conv2d", "batchnorm", "relu"]
    assert [n.op for n in out.nodes] == ["conv2d", "relu"]
    conv = out.nodes[0]
    assert conv.output_names == g.nodes[1].output_names  # the batch norm's name, which relu reads
    assert {c.name for c in out.constants} == set(conv.inputs[1:]) and "w" not in conv.inputs
    _same(g, out, xs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(["conv2d", "conv_transpose2d"]), group=st.sampled_from([1, 2]), bias=st.booleans(),
       seed=st.integers(0, 1000))
def test_folding_is_sound(op: str, group: int, bias: bool, seed: int) -> None:
    g, xs = _graph(op, group=group, bias=bias, seed=seed)
    out = FoldBatchnorm().apply(g)
    folded = not (op == "conv_transpose2d" and group > 1)
    assert ("batchnorm" not in [n.op for n in out.nodes]) == folded
    _same(g, out, xs)


@pytest.mark.parametrize("kw", [{"const_bn": False}, {"extra_reader": True}])
def test_leaves_what_it_cannot_fold(kw: dict) -> None:
    g, _ = _graph(**kw)
    assert FoldBatchnorm().apply(g) is g


def test_bundled_example_folds_its_batchnorm() -> None:
    from tensoropt.api import load
    from tensoropt.demo import EXAMPLES

    g = load(EXAMPLES / "small_cnn.onnx")
    out = FoldBatchnorm().apply(g)
    assert len(out.nodes) == len(g.nodes) - 1 and "batchnorm" not in {n.op for n in out.nodes}
