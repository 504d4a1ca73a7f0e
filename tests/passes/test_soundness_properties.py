"""Property tests: every registered pass, and the default pipeline, is sound on
well-typed random graphs (``tensoropt.fuzz.typed``).

For each pass (default options) the output graph must verify, round-trip
through the text format, keep the signature (inputs, output count and types),
and compute the same outputs as the input graph on seeded random inputs.

How values are compared depends on what the pass promises (:data:`ORACLE`):

- ``exact``: the pass only removes, merges or precomputes nodes with the
  interpreter's own float32 code path (dce, cse, fold-constants), so running
  both graphs in their declared dtypes must give bit-identical outputs.
- ``f64``: the pass rewrites computations (fusion changes evaluation order and
  swaps an op's NumPy rule for its Expr), so both graphs run in float64 mode
  and must agree to 1e-9. This is also the default for a pass not listed.

The pipeline is checked stage by stage with those oracles, and end to end in
float64 at 1e-5 (folded constants are float32-rounded, so the end-to-end
float64 comparison cannot be sharper than float32).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tensoropt.fuzz.typed import random_typed_graph, typed_graphs, typed_inputs
from tensoropt.interp import run_graph
from tensoropt.ir.graph import Graph
from tensoropt.ir.parser import parse_graph
from tensoropt.ir.printer import print_graph
from tensoropt.ir.verify import verify
from tensoropt.ops import REGISTRY
from tensoropt.passes import PASSES, Pass, PassReport, parse_pipeline, run_pipeline

PIPELINE = "fold-constants,cse,dce,fuse-elementwise"

#: pass name -> how its output is compared with its input (see the module doc).
ORACLE: dict[str, str] = {
    "dce": "exact",
    "cse": "exact",
    "fold-constants": "exact",
    "fuse-elementwise": "f64",
    "derive": "f64",
    # folded weights are float32-rounded products: exact only to float32
    "fold-batchnorm": "f64-loose",
}

#: options a property test runs a pass with (the defaults of ``derive`` search for a
#: minute and compile candidates per node; here a one-level search chosen by estimate)
TEST_SPEC: dict[str, str] = {"derive": "derive{depth=1,time=2,measure=false}"}


def _pass(name: str) -> Pass:
    return parse_pipeline(TEST_SPEC.get(name, name))[0]

#: passes known never to add nodes (fuse replaces a producer/consumer pair by one node).
NEVER_GROW = ("dce", "cse", "fold-constants", "fuse-elementwise")

#: the product's passes: those registered by ``tensoropt.passes`` modules (tests
#: register throwaway passes such as ``test-breaker`` into the same table).
#: ``bind-dims`` changes the signature by design (its own property test is in test_bind_dims.py).
PRODUCT_PASSES = sorted(n for n, cls in PASSES.items() if cls.__module__.startswith("tensoropt.passes.")
                        and n != "bind-dims")

_PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FEW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: (input seed, batch) pairs every comparison runs on: two bindings of ``batch``.
_RUNS = ((0, 1), (1, 3))


def _check_structure(before: Graph, after: Graph) -> None:
    verify(after, REGISTRY)
    assert parse_graph(print_graph(after)) == after
    assert after.inputs == before.inputs
    assert len(after.outputs) == len(before.outputs)
    assert [v.type for v in after.output_values] == [v.type for v in before.output_values]


def _close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    # atol scaled to the output's magnitude: cancellation near 0 stays tolerated
    scale = float(np.max(np.abs(want), initial=1.0))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(scale, 1.0))


def _check_values(before: Graph, after: Graph, oracle: str) -> None:
    for seed, batch in _RUNS:
        xs = typed_inputs(before, seed, batch)
        if oracle == "exact":
            want, got = run_graph(before, xs), run_graph(after, xs)
        else:
            want, got = run_graph(before, xs, dtype="f64"), run_graph(after, xs, dtype="f64")
        for a, b in zip(before.outputs, after.outputs):
            assert got[b].dtype == want[a].dtype and got[b].shape == want[a].shape
            if oracle == "exact":
                np.testing.assert_array_equal(got[b], want[a], err_msg=f"output %{a}")
            elif oracle == "f64":
                _close(got[b], want[a], 1e-9)
            else:  # "f64-loose": float32-rounded constants on the way
                _close(got[b], want[a], 1e-5)


def _sound(before: Graph, after: Graph, oracle: str) -> None:
    _check_structure(before, after)
    _check_values(before, after, oracle)


# ---------------------------------------------------------------- single passes


@pytest.mark.parametrize("name", PRODUCT_PASSES)
@_PROPS
@given(g=typed_graphs())
def test_pass_is_sound(name: str, g: Graph) -> None:
    verify(g, REGISTRY)
    out = _pass(name).apply(g)
    _sound(g, out, ORACLE.get(name, "f64"))
    if name in NEVER_GROW:
        assert len(out.nodes) <= len(g.nodes)


@_FEW
@given(g=typed_graphs())
def test_fold_constants_size_limit_is_sound(g: Graph) -> None:
    """A tiny ``max_bytes`` leaves some constant nodes unfolded: still exact."""
    (p,) = parse_pipeline("fold-constants{max_bytes=16}")
    out = p.apply(g)
    _sound(g, out, "exact")
    consts = {c.name for c in out.constants}
    small = [n for n in out.nodes if all(i in consts for i in n.inputs)
             and all(v.type.is_static for v in n.outputs)
             and sum((v.type.numel() or 0) * v.type.np_dtype.itemsize for v in n.outputs) <= 16]
    assert not small, f"foldable nodes left: {[n.label for n in small]}"


# ---------------------------------------------------------------- the pipeline


@_PROPS
@given(g=typed_graphs())
def test_pipeline_is_sound(g: Graph) -> None:
    stages: list[tuple[Pass, Graph]] = []

    def keep(p: Pass, graph: Graph, report: PassReport) -> None:
        stages.append((p, graph))

    out, reports = run_pipeline(g, parse_pipeline(PIPELINE), verify=True, on_pass=keep)
    assert [r.name for r in reports] == PIPELINE.split(",")
    prev = g
    for p, graph in stages:
        _sound(prev, graph, ORACLE.get(p.name, "f64"))
        prev = graph
    assert prev is out
    _sound(g, out, "f64-loose")
    assert len(out.nodes) <= len(g.nodes)


# ---------------------------------------------------------------- algebraic properties


@pytest.mark.parametrize("name", ["dce", "cse", "fuse-elementwise", "fold-constants"])
@_FEW
@given(g=typed_graphs())
def test_idempotent(name: str, g: Graph) -> None:
    p = PASSES[name]()
    once = p.apply(g)
    twice = p.apply(once)
    assert twice == once and twice.weights.digest() == once.weights.digest()
    if name in ("dce", "cse"):
        assert twice is once  # "returns the graph itself when nothing changed"


@pytest.mark.parametrize("name", ["dce", "cse"])
@_FEW
@given(g=typed_graphs())
def test_kept_nodes_keep_their_order(name: str, g: Graph) -> None:
    """dce keeps a subsequence of the nodes; cse too, up to renamed inputs."""
    out = PASSES[name]().apply(g)
    order = {n.output_names: k for k, n in enumerate(g.nodes)}
    ks = [order[n.output_names] for n in out.nodes]
    assert ks == sorted(ks)
    if name == "dce":
        assert set(out.nodes) <= set(g.nodes)


def test_product_passes_are_all_checked() -> None:
    assert {"dce", "cse", "fold-constants", "fuse-elementwise", "fold-batchnorm", "derive"} <= set(PRODUCT_PASSES)


def test_dce_leaves_no_dead_node_and_cse_no_duplicate() -> None:
    from tensoropt.passes.cse import _key
    from tensoropt.passes.dce import live_names

    for seed in range(100):
        g = random_typed_graph(seed)
        d = PASSES["dce"]().apply(g)
        live = live_names(d)
        assert all(any(o in live for o in n.output_names) for n in d.nodes)
        c = PASSES["cse"]().apply(g)
        keys = [_key(n) for n in c.nodes]
        assert len(keys) == len(set(keys))


# ---------------------------------------------------------------- seeded sweep


@pytest.mark.parametrize("chunk", range(4))
def test_seeded_pipeline_sweep(chunk: int) -> None:
    """Campaign-style: fixed seeds, independent of hypothesis's database."""
    passes = parse_pipeline(PIPELINE)
    for seed in range(chunk * 250, chunk * 250 + 250):
        g = random_typed_graph(seed)
        out, _ = run_pipeline(g, passes, verify=True)
        _sound(g, out, "f64-loose")
