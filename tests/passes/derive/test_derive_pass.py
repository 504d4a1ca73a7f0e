"""The derive pass and ``tensoropt derive``: before/after, soundness, options, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tensoropt.builder import GraphBuilder
from tensoropt.errors import PipelineError
from tensoropt.interp import run_graph
from tensoropt.ir.printer import print_graph
from tensoropt.passes import parse_pipeline, run_pipeline
from tensoropt.passes.derive.derive import Derive, derive_expr

CONVT = ("L[n:1, f:2, oh:8, ow:8] Sum[c:3, kh:4, kw:4] { where(eq((oh - kh + 1) % 2, 0) * eq((ow - kw + 1) % 2, 0), "
         "%X[n, c, (oh - kh + 1) // 2, (ow - kw + 1) // 2] * %K[c, f, kh, kw], 0.0) }")


def _convt_graph() -> tuple:
    rng = np.random.default_rng(0)
    b = GraphBuilder("g")
    x = b.input("x", "f32", (1, 16, 6, 6))
    w = b.const("w", rng.standard_normal((16, 8, 4, 4)).astype(np.float32))
    y = b.op("relu", b.op("conv_transpose2d", x, w, strides=[2, 2], pads=[1, 1, 1, 1]))
    return b.build(y), {"x": rng.standard_normal((1, 16, 6, 6)).astype(np.float32)}


def test_pass_rewrites_conv_transpose_into_a_matmul_program_that_computes_the_same(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TENSOROPT_CACHE_DIR", str(tmp_path))
    g, xs = _convt_graph()
    (p,) = parse_pipeline("derive{depth=3,time=20,ops=conv-transpose,measure=false}")
    report: list = []
    out = p.apply(g, report)
    assert [n.op for n in g.nodes] == ["conv_transpose2d", "relu"]
    ops = [n.op for n in out.nodes]
    assert "conv_transpose2d" not in ops and "matmul" in ops, print_graph(out)
    assert ops[-1] == "relu" and out.outputs == g.outputs and out.inputs == g.inputs
    want, got = run_graph(g, xs)[g.outputs[0]], run_graph(out, xs)[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    (name, d), = report
    assert d.search.states > 1 and d.chosen is not d.start


def test_pass_in_a_pipeline_is_verified_and_keeps_unselected_ops(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TENSOROPT_VERIFY", "1")
    monkeypatch.setenv("TENSOROPT_CACHE_DIR", str(tmp_path))
    g, _ = _convt_graph()
    out, _ = run_pipeline(g, parse_pipeline("derive{depth=1,ops=conv2d,measure=false}"))
    assert out is g  # no conv2d node: nothing to derive


def test_measured_pass_keeps_a_node_unless_the_derived_program_is_faster(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TENSOROPT_CACHE_DIR", str(tmp_path))
    g, xs = _convt_graph()
    report: list = []
    out = Derive(depth=2, time=10, ops="conv-transpose", top=2).apply(g, report)
    (_, d), = report
    assert d.start_s is not None and d.start_s > 0 and d.measured
    if d.chosen is d.start:
        assert out is g
    else:
        assert d.chosen_s < d.start_s
        np.testing.assert_allclose(run_graph(out, xs)[g.outputs[0]], run_graph(g, xs)[g.outputs[0]],
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("text, msg", [
    ("derive{depth=-1}", "'depth' of derive must be >= 0"),
    ("derive{time=0}", "'time' of derive must be > 0"),
    ("derive{ops=conv3d}", "unknown op set 'conv3d'; valid: conv2d, conv-transpose, matmul, band"),
])
def test_bad_options_are_one_clear_error(text: str, msg: str) -> None:
    with pytest.raises(PipelineError, match=msg):
        parse_pipeline(text)


def test_derive_expr_path_is_checked_step_by_step() -> None:
    from tensoropt.ir.parser import parse_expr
    from tensoropt.ir.types import TensorType

    values = {"X": TensorType("f32", (1, 3, 4, 4)), "K": TensorType("f32", (3, 2, 4, 4))}
    d = derive_expr(parse_expr(CONVT), values, depth=3, time_limit=20, measure=False, verify=True)
    assert d.chosen.path and "matmul" in d.chosen.kernels


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tensoropt", *args], capture_output=True, text=True)


def test_cli_derive_expr_prints_path_program_and_json() -> None:
    r = _cli("derive", CONVT, "--shapes", "X=1x3x4x4,K=3x2x4x4", "--depth", "3", "--no-measure", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["path"] and "matmul" in doc["program"] and doc["states"] > 1
    assert doc["path"][-1]["expr"].startswith("L[")
    r = _cli("derive", CONVT, "--shapes", "X=1x3x4x4,K=3x2x4x4", "--depth", "3", "--no-measure")
    assert r.returncode == 0 and "derivation (depth" in r.stdout and "matmul(" in r.stdout, r.stdout


@pytest.mark.parametrize("args, msg", [
    (("L[i:3] { %X[i] }",), "no shape for tensor %X"),
    (("L[i:3] { %X[i] }", "--shapes", "X=3xa"), "expected NAME=D1xD2x..."),
    (("L[i:3] { %X[i }", "--shapes", "X=3"), "<expr>:1:"),
    (("L[i:3] { %X[i] }", "--shapes", "X=3", "--ops", "nope"), "unknown op set 'nope'"),
    (("L[i:4] Sum[k:3] { %X[i, 2 * k] * %Y[k] }", "--shapes", "X=8,Y=3"), "<expr>"),
    (("L[i:4] { %X[j] }", "--shapes", "X=4"), "<expr>"),
    (("L[i:4] { %X[i] }", "--shapes", "X=4", "-o", "x.top"), "-o applies to a model"),
    (("L[i:4] { %X[i] }", "--shapes", "X=4", "--top", "0"), "'top' of derive must be >= 1"),
])
def test_cli_derive_bad_input_is_one_line_exit_2(args, msg) -> None:
    r = _cli("derive", *args)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def _conv_relu_add_graph():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    b = GraphBuilder("g")
    x = b.input("x", "f32", (1, 4, 6, 6))
    r = b.input("r", "f32", (1, 8, 6, 6))
    w = b.const("w", rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    s = b.const("s", rng.standard_normal((8, 1, 1)).astype(np.float32))
    y = b.op("conv2d", x, w, pads=[1, 1, 1, 1])
    z = b.op("add", b.op("mul", b.op("relu", y), s), r)
    return b.build(b.op("exp", z)), y


def test_epilogue_is_the_elementwise_chain_codegen_fuses_and_is_measured_with_the_node() -> None:
    from tensoropt.passes.derive.derive import epilogue, in_context, node_graph

    g, y = _conv_relu_add_graph()
    conv = g.nodes[0]
    chain = epilogue(g, conv)
    assert [n.op for n in chain] == ["relu", "mul", "add", "exp"]  # EPILOGUE_MAX = 4
    types = {k: v.type for k, v in g.values().items()}
    ctx = in_context(g, conv, node_graph(conv, types, {"w": g.weights["w"]}), chain)
    assert [v.name for v in ctx.inputs] == ["x", "r"] and {c.name for c in ctx.constants} == {"w", "s"}
    assert ctx.outputs == g.outputs
    rng = np.random.default_rng(0)
    xs = {"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32),
          "r": rng.standard_normal((1, 8, 6, 6)).astype(np.float32)}
    np.testing.assert_array_equal(run_graph(ctx, xs)[ctx.outputs[0]], run_graph(g, xs)[g.outputs[0]])
    # a node read twice has no epilogue: its readers are not fused into it alone
    b = GraphBuilder("h")
    x = b.input("x", "f32", (1, 4, 6, 6))
    c = b.op("conv2d", x, b.const("w", np.ones((4, 4, 1, 1), np.float32)))
    h = b.build(b.op("add", b.op("relu", c), c))
    assert epilogue(h, h.nodes[0]) == ()


def test_whole_model_check_keeps_only_rewrites_that_make_the_model_faster(monkeypatch, tmp_path) -> None:
    """Node-level wins that lose in the whole model are reverted (timer stubbed: the decision logic)."""
    from tensoropt.passes.derive import derive as dmod
    from tensoropt.passes.derive import measure as mmod
    from tensoropt.passes.derive.derive import ModelCheck

    monkeypatch.setenv("TENSOROPT_CACHE_DIR", str(tmp_path))
    g, xs = _convt_graph()
    # node level: any derived program measures 2x faster than the original
    calls: list[str] = []

    def fake_measure(graph, target="llvm", **kw):  # type: ignore[no-untyped-def]
        whole = graph.name == g.name  # node-level graphs are named after the node's op
        derived = not any(n.op == "conv_transpose2d" for n in graph.nodes)
        calls.append("model" if whole else "node")
        t = (3e-3 if derived else 1e-3) if whole else (1e-3 if derived else 2e-3)
        return mmod.Measurement(t, (t,), 0.0, False)

    monkeypatch.setattr(mmod, "measure_graph", fake_measure)
    report: list = []
    check = ModelCheck()
    out = Derive(depth=3, time=10, ops="conv-transpose", top=2).apply(g, report, model_check=check)
    (_, d), = report
    assert d.chosen is not d.start and d.in_model == "reverted"
    assert out is g and check.kept == [] and check.original_ms == 1.0 and [ms for _, ms in check.tried] == [3.0]
    assert "model" in calls and "node" in calls
    # and when the whole model is faster with it, the rewrite stays
    monkeypatch.setattr(mmod, "measure_graph", lambda graph, target="llvm", **kw: mmod.Measurement(
        *(lambda t: (t, (t,), 0.0, True))(1e-3 if any(n.op == "conv_transpose2d" for n in graph.nodes) else 5e-4)))
    report, check = [], ModelCheck()
    out = Derive(depth=3, time=10, ops="conv-transpose", top=2).apply(g, report, model_check=check)
    (_, d), = report
    assert d.in_model == "kept" and check.kept and out is not g and check.cached >= 2 and d.cached >= 2
    np.testing.assert_allclose(run_graph(out, xs)[g.outputs[0]], run_graph(g, xs)[g.outputs[0]], rtol=1e-4, atol=1e-4)
    assert dmod.MARGIN < 1


def test_cli_derive_model_reports_nodes_model_check_and_cache_use(tmp_path) -> None:
    from tensoropt.api import save

    g, _ = _convt_graph()
    src = tmp_path / "g.top"
    save(g, src)
    env_cache = tmp_path / "cache"
    r = subprocess.run([sys.executable, "-m", "tensoropt", "derive", str(src), "--ops", "conv-transpose",
                        "--depth", "2", "--time", "3", "--top", "1", "--json", "-o", str(tmp_path / "d.top")],
                       capture_output=True, text=True, env={**__import__("os").environ,
                                                            "TENSOROPT_CACHE_DIR": str(env_cache)})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (node,) = doc["nodes"]
    assert node["states"] > 1 and node["start_ms"] > 0 and node["cached_timings"] == 0
    assert doc["cached_timings"] == 0 and set(doc["model_check"]) >= {"original_ms", "kept", "tried"}
    if node["in_model"] == "kept":  # rewritten: the whole model measured faster with it
        assert doc["model_check"]["kept"] == [node["node"]]
    else:
        assert doc["model_check"]["kept"] == []
    assert (tmp_path / "d.top").exists()
