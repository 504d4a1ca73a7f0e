"""conv_transpose2d's GEMM forms (codegen/conv_transpose.py): equal to the interpreter, scheduled by the GEMM rule.

Every case goes into one graph per form, compiled once (``use_form`` forces a
form wherever it applies; elsewhere the per-shape choice stands in). Shapes
are small (channels of a few), but their geometry covers what the benchmark
models use (DCGAN/InfoGAN k4 s2 p1, FSRCNN k9 s2 p4 output_padding 1, a 1x1
input) and the attribute cases: strides 1-4 and mixed, kernels not divisible
by the stride or smaller than it, asymmetric and negative pads, dilation,
groups, depthwise, bias, batch > 1 and a symbolic batch. The real layers of
those models are compiled in the ``slow`` tests.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensoropt
from tensoropt.codegen import conv_transpose as ct
from tensoropt.codegen.te_fast import FAST
from tensoropt.ir.graph import Attrs, Graph, Node, Value, Weights
from tensoropt.ir.types import TensorType
from tensoropt.ops import infer_node_types

RNG = np.random.default_rng(7)

#: id -> (input shape, weight shape [C, F/g, kh, kw], strides, pads (t, l, b, r), dilations, group, bias)
CASES: dict[str, tuple] = {
    "dcgan-k4s2p1": ((1, 6, 4, 4), (6, 8, 4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 1, False),
    "infogan-k4s2p1-7x7-bias": ((1, 8, 7, 7), (8, 4, 4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 1, True),
    "dcgan-last-f3": ((1, 8, 8, 8), (8, 3, 4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 1, False),
    "fsrcnn-k9s2p4-op1": ((1, 5, 6, 6), (5, 1, 9, 9), (2, 2), (4, 4, 3, 3), (1, 1), 1, True),
    "fsrcnn-x3-k9s3p4-op2": ((1, 4, 5, 4), (4, 2, 9, 9), (3, 3), (4, 4, 2, 2), (1, 1), 1, True),
    "z-projection-1x1-s1": ((1, 10, 1, 1), (10, 8, 4, 4), (1, 1), (0, 0, 0, 0), (1, 1), 1, False),
    "stride1-k3p1": ((2, 4, 5, 6), (4, 6, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),
    "stride1-f16-ragged": ((1, 4, 6, 6), (4, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, False),
    "stride4-k5-asym": ((1, 3, 4, 4), (3, 5, 5, 3), (4, 4), (2, 1, 1, 0), (1, 1), 1, True),
    "stride3-negpad": ((1, 3, 4, 6), (3, 5, 4, 4), (3, 3), (0, 1, -1, 2), (1, 1), 1, False),
    "mixed-strides": ((1, 3, 5, 5), (3, 4, 3, 3), (1, 2), (1, 0, 1, 0), (1, 1), 1, False),
    "k-smaller-than-s": ((1, 8, 3, 3), (8, 4, 1, 1), (2, 2), (0, 0, -1, -1), (1, 1), 1, True),
    "k-equals-s": ((1, 8, 3, 3), (8, 4, 2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1, True),
    "dilation2": ((1, 3, 6, 5), (3, 2, 3, 3), (2, 2), (1, 1, 1, 1), (2, 2), 1, False),
    "groups2-batch2": ((2, 4, 5, 4), (4, 3, 3, 3), (2, 2), (1, 1, 0, 0), (1, 1), 2, True),
    "depthwise": ((1, 4, 6, 6), (4, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 4, True),
}
IDS = list(CASES)


def _case_graph(ids: list[str], batch: str | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """One graph holding one conv_transpose2d node per case (weights and bias as constants)."""
    inputs, consts, nodes, outputs, weights, feeds = [], [], [], [], {}, {}
    for k, cid in enumerate(ids):
        xs, ws, strides, pads, dils, group, bias = CASES[cid]
        x = RNG.standard_normal(xs, dtype=np.float32)
        w = RNG.standard_normal(ws, dtype=np.float32)
        shape = (batch, *xs[1:]) if batch else xs
        xv = Value(f"x{k}", TensorType("f32", shape))
        wv = Value(f"w{k}", TensorType("f32", ws))
        ins = [xv, wv]
        weights[wv.name] = w
        if bias:
            bv = Value(f"b{k}", TensorType("f32", (ws[1] * group,)))
            weights[bv.name] = RNG.standard_normal((ws[1] * group,), dtype=np.float32)
            ins.append(bv)
        attrs: dict[str, Any] = {"strides": strides, "pads": pads, "dilations": dils, "group": group}
        (out,) = infer_node_types("conv_transpose2d", [v.type for v in ins], attrs)
        yv = Value(f"y{k}", out)
        inputs.append(xv)
        consts += ins[1:]
        nodes.append(Node("conv_transpose2d", tuple(v.name for v in ins), (yv,), Attrs(attrs)))
        outputs.append(yv.name)
        feeds[xv.name] = x
    return Graph("ct", tuple(inputs), tuple(consts), tuple(nodes), tuple(outputs), weights=Weights(weights)), feeds


def _check(graph: Graph, feeds: dict[str, np.ndarray], model) -> None:  # type: ignore[no-untyped-def]
    want = tensoropt.evaluate(graph, feeds)
    got = model.run(feeds)
    for name in graph.outputs:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)


def _ct_kernels(model) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in model.manifest["kernels"].items() if k.startswith("conv_transpose2d")}


@pytest.fixture(scope="module")
def case_graph() -> tuple[Graph, dict[str, np.ndarray]]:
    return _case_graph(IDS)


def test_default_path_matches_interpreter_and_gets_the_gemm_rule(case_graph) -> None:  # type: ignore[no-untyped-def]
    graph, feeds = case_graph
    model = tensoropt.compile(graph)
    _check(graph, feeds, model)
    kernels = _ct_kernels(model)
    assert len(kernels) == len(IDS)
    assert all(v.startswith("gemm(") for v in kernels.values()), kernels


@pytest.mark.parametrize("form", ct.FORMS)
def test_every_form_matches_interpreter(case_graph, form: str) -> None:  # type: ignore[no-untyped-def]
    graph, feeds = case_graph
    with ct.use_form(form):
        model = tensoropt.compile(graph)
    _check(graph, feeds, model)
    # Forms with a GEMM of M >= 2 rows always get the rule; zero_insert's
    # GEMM has M = F / group, which the rule does not tile when it is 1.
    for k, cid in enumerate(IDS):
        xs, ws, *_ = CASES[cid]
        label = _ct_kernels(model)[f"conv_transpose2d{k if k else ''}"]
        if not (form == "zero_insert" and ws[1] == 1):
            assert label.startswith("gemm("), (cid, label)


@pytest.mark.parametrize("form", [None, *ct.FORMS])
def test_symbolic_batch(form: str | None) -> None:
    """One compile serves every batch size; form None is the default path."""
    ids = ["infogan-k4s2p1-7x7-bias", "fsrcnn-k9s2p4-op1", "groups2-batch2", "stride1-f16-ragged"]
    graph, _ = _case_graph(ids, batch="N")
    with ct.use_form(form) if form else contextlib.nullcontext():
        model = tensoropt.compile(graph)
    assert all(v.startswith("gemm(") for v in _ct_kernels(model).values()), _ct_kernels(model)
    for n in (1, 3):
        feeds = {v.name: RNG.standard_normal((n, *map(int, v.type.shape[1:])), dtype=np.float32) for v in graph.inputs}
        _check(graph, feeds, model)


def test_fast_entry_declines_what_it_does_not_cover() -> None:
    """f64 (or a symbolic channel count) keeps the Expr path: the entry returns None."""
    attrs = Attrs({"strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1})
    f32 = [TensorType("f32", (1, 4, 5, 5)), TensorType("f32", (4, 3, 4, 4))]
    f64 = [TensorType("f64", (1, 4, 5, 5)), TensorType("f64", (4, 3, 4, 4))]
    out = infer_node_types("conv_transpose2d", f32, dict(attrs))
    assert FAST["conv_transpose2d"](f32, out, attrs) is not None
    assert FAST["conv_transpose2d"](f64, out, attrs) is None


def test_f64_falls_back_to_the_expr_path() -> None:
    x = Value("x", TensorType("f64", (1, 3, 4, 4)))
    w = Value("w", TensorType("f64", (3, 2, 4, 4)))
    attrs: dict[str, Any] = {"strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1}
    (out,) = infer_node_types("conv_transpose2d", [x.type, w.type], attrs)
    g = Graph("f64", (x,), (w,), (Node("conv_transpose2d", ("x", "w"), (Value("y", out),), Attrs(attrs)),), ("y",),
              weights=Weights({"w": RNG.standard_normal((3, 2, 4, 4))}))
    model = tensoropt.compile(g)
    assert not any(v.startswith("gemm(") for v in _ct_kernels(model).values())
    _check(g, {"x": RNG.standard_normal((1, 3, 4, 4))}, model)


# ------------------------------------------------------------------ the per-shape choice (no compiling)

#: the benchmark models' layers: (C, F, k, s, pad, output_padding, input size) -> chosen form
MODEL_LAYERS = {
    "dcgan1": ((100, 512, 4, 1, 0, 0, 1), "col2im_t"),
    "dcgan2": ((512, 256, 4, 2, 1, 0, 4), "col2im"),
    "dcgan3": ((256, 128, 4, 2, 1, 0, 8), "col2im"),
    "dcgan4": ((128, 64, 4, 2, 1, 0, 16), "subpixel"),
    "dcgan5": ((64, 3, 4, 2, 1, 0, 32), "col2im"),
    "infogan1": ((128, 64, 4, 2, 1, 0, 7), "col2im"),
    "infogan2": ((64, 1, 4, 2, 1, 0, 14), "col2im"),
    "fsrcnn": ((56, 1, 9, 2, 4, 1, 32), "col2im"),
}


def _geo(c: int, f: int, k: int, s: int, p: int, op: int, hw: int, group: int = 1, d: int = 1) -> ct.Geometry:
    return ct.geometry(c, f // group, k, k, hw, hw, (s, s), (p, p, p - op, p - op), (d, d), group)


@pytest.mark.parametrize("layer", list(MODEL_LAYERS))
def test_choice_for_the_benchmark_layers(layer: str) -> None:
    args, form = MODEL_LAYERS[layer]
    assert ct.choose_form(_geo(*args)) == form


def test_choice_always_applies() -> None:
    for args in [a for a, _ in MODEL_LAYERS.values()] + [(4, 4, 3, 1, 1, 0, 8), (8, 8, 3, 2, 1, 0, 8, 1, 2),
                                                          (8, 8, 3, 2, 1, 0, 8, 8)]:
        geo = _geo(*args)
        assert ct.applicable(geo, ct.choose_form(geo)), geo


def test_subpixel_needs_a_stride_and_no_dilation() -> None:
    assert ct.applicable(_geo(4, 4, 4, 2, 1, 0, 8), "subpixel")
    assert not ct.applicable(_geo(4, 4, 4, 1, 1, 0, 8), "subpixel")
    assert not ct.applicable(_geo(4, 4, 3, 2, 1, 0, 8, d=2), "subpixel")


def test_padded_grid_and_rows() -> None:
    assert ct.padded_grid(8, 8) == (8, 8)
    a, b = ct.padded_grid(7, 7)
    assert a >= 7 and b >= 7 and (a * b) % ct.GRID_MULTIPLE == 0 and 49 / (a * b) >= ct.GRID_MIN_USEFUL
    assert ct.padded_grid(3, 3) == (3, 3)  # padding would waste too much
    assert ct.padded_rows(81) == 88 and ct.padded_rows(48) == 48 and ct.padded_rows(6) == 6


def test_use_form_rejects_unknown_forms() -> None:
    with pytest.raises(ValueError, match="valid: subpixel"):
        with ct.use_form("winograd"):
            pass


# ------------------------------------------------------------------ the real layers (slow)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "infogan", "fsrcnn"])
def test_benchmark_models_match_torch(model: str) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from derive_models import MODELS

    module, inputs = MODELS[model]()
    with torch.no_grad():
        want = module(*inputs).numpy()
    compiled = tensoropt.compile(module, example_inputs=inputs)
    got = compiled(inputs[0].numpy())
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    kernels = {k: v for k, v in compiled.manifest["kernels"].items() if "conv_transpose2d" in k}
    assert kernels and all(v.startswith("gemm(") for v in kernels.values()), kernels


@pytest.mark.slow
@pytest.mark.parametrize("form", ct.FORMS)
def test_benchmark_layers_every_form(form: str) -> None:
    """Each benchmark layer alone, with its real channels, in every form that applies."""
    import torch

    for layer, ((c, f, k, s, p, op, hw), _) in MODEL_LAYERS.items():
        torch.manual_seed(0)
        m = torch.nn.ConvTranspose2d(c, f, k, s, p, output_padding=op, bias=layer.startswith(("infogan", "fsrcnn")))
        x = torch.randn(2, c, hw, hw)
        with torch.no_grad():
            want = m(x).numpy()
        with ct.use_form(form):
            compiled = tensoropt.compile(m.eval(), example_inputs=(x,))
        got = compiled(x.numpy())
        assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want)), layer
