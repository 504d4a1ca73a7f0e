"""bind-dims: symbolic dims bound to sizes; the bound graph computes what the
symbolic one computes at that size; bad options and unknown symbols are one
clear error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensoropt.errors import PipelineError, VerifyError
from tensoropt.fuzz.typed import BATCH, typed_graphs, typed_inputs
from tensoropt.interp import run_graph
from tensoropt.ir.graph import Graph
from tensoropt.ir.parser import parse_graph
from tensoropt.ir.printer import print_graph
from tensoropt.ir.verify import verify
from tensoropt.passes import parse_pipeline
from tensoropt.passes.bind_dims import BindDims, parse_dims

SCOPED = """
graph g(%x: f32[batch, 4], %y: f32[seq, 4]) {
  %s: f32[batch, 4] = expr(%x) L[i:batch, j:4] { relu(%x[i, j]) }
  %t: f32[batch] = expr(%s) L[i:batch] Sum[j:4] { %s[i, j] }
  %u: f32[seq, 4] = exp(%y)
  return %t, %u
}
"""


def test_binds_values_and_expr_extents_and_keeps_other_symbols() -> None:
    g = parse_graph(SCOPED)
    out = BindDims(dims="batch=3").apply(g)
    assert str(out.inputs[0].type) == "f32[3, 4]" and str(out.inputs[1].type) == "f32[seq, 4]"
    text = print_graph(out)
    assert "batch" not in text and "L[i:3, j:4]" in text and "L[i:3] Sum[j:4]" in text
    verify(out)
    assert parse_graph(text) == out
    xs = {"x": np.arange(12, dtype=np.float32).reshape(3, 4) - 5, "y": np.ones((2, 4), np.float32)}
    want, got = run_graph(g, xs), run_graph(out, xs)
    for k in g.outputs:
        np.testing.assert_array_equal(got[k], want[k])


def test_static_graph_in_those_dims_is_an_error_naming_the_symbols() -> None:
    g = parse_graph(SCOPED)
    with pytest.raises(VerifyError, match=r"no symbolic dim 'n' \(its symbols: batch, seq\)"):
        BindDims(dims="n=2").apply(g)


@pytest.mark.parametrize("text, msg", [
    ('bind-dims{dims="batch"}', "'batch' is not NAME=SIZE"),
    ('bind-dims{dims="batch=0"}', "batch must be >= 1, got 0"),
    ('bind-dims{dims="batch=1,batch=2"}', "batch given twice"),
    ('bind-dims{dims=""}', "option 'dims' of bind-dims is empty"),
])
def test_bad_options_are_one_clear_error(text: str, msg: str) -> None:
    with pytest.raises(PipelineError, match=msg):
        parse_pipeline(text)


def test_parse_dims_accepts_commas_and_spaces() -> None:
    assert parse_dims("batch=2, seq=128") == {"batch": 2, "seq": 128}
    assert parse_dims("a=1 b=2") == {"a": 1, "b": 2}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=typed_graphs(), size=st.integers(1, 4))
def test_bound_graph_computes_the_symbolic_graph_at_that_size(g: Graph, size: int) -> None:
    symbols = {s for v in g.values().values() for s in v.type.symbols()}
    p = BindDims(dims=f"{BATCH}={size}")
    if BATCH not in symbols:
        with pytest.raises(VerifyError):
            p.apply(g)
        return
    out = p.apply(g)
    verify(out)
    assert all(BATCH not in v.type.symbols() for v in out.values().values())
    assert parse_graph(print_graph(out)) == out
    xs = typed_inputs(g, 0, size)
    want, got = run_graph(g, xs), run_graph(out, xs)
    for k in g.outputs:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"output %{k}")
