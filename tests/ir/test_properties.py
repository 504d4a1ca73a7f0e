"""IR invariants by property: hash/eq consistency, immutability, traversals,
the verifier on typed graphs, and reproducible seeded generators.

Inputs are the syntactic generators of ``tensoropt.fuzz.generate`` (anything
the text format can hold) and the well-typed ones of ``tensoropt.fuzz.typed``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensoropt.fuzz.generate import exprs, graphs
from tensoropt.fuzz.typed import random_typed_graph, typed_graphs
from tensoropt.ir.expr import Access, Scope, free_iters, tensor_names, walk
from tensoropt.ir.graph import Graph, Weights
from tensoropt.ir.io import load_graph, save_graph
from tensoropt.ir.parser import parse_expr, parse_graph
from tensoropt.ir.printer import print_expr, print_graph
from tensoropt.ir.types import TensorType
from tensoropt.ir.verify import verify, verify_all
from tensoropt.ops import REGISTRY

_PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- hash / eq


@_PROPS
@given(exprs())
def test_expr_eq_is_reflexive_and_survives_the_text_format(e: Scope) -> None:
    assert e == e  # NaN constants included
    back = parse_expr(print_expr(e))
    assert back == e and hash(back) == hash(e)
    assert back is not e


@_PROPS
@given(exprs(max_depth=1), exprs(max_depth=1))
def test_expr_equal_implies_equal_hash(a: Scope, b: Scope) -> None:
    if a == b:
        assert hash(a) == hash(b)
    assert (a == b) == (print_expr(a) == print_expr(b))  # the printer is canonical


@_PROPS
@given(graphs())
def test_graph_hash_survives_the_text_format(g: Graph) -> None:
    back = parse_graph(print_graph(g))
    assert back == g and hash(back) == hash(g)
    for n, m in zip(g.nodes, back.nodes):
        assert n == m and hash(n) == hash(m) and hash(n.attrs) == hash(m.attrs)


@_PROPS
@given(typed_graphs())
def test_weights_take_no_part_in_eq_and_hash(g: Graph) -> None:
    zeroed = g.replace(weights={k: np.zeros_like(a) for k, a in g.weights.items()})
    assert zeroed == g and hash(zeroed) == hash(g)
    assert g.same_as(g.replace())
    if any(np.any(a != 0) for a in g.weights.values()):
        assert not zeroed.same_as(g)


# ---------------------------------------------------------------- immutability


def _fields(obj: object) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]


@_PROPS
@given(exprs())
def test_expr_nodes_are_frozen(e: Scope) -> None:
    for n in walk(e):
        for f in _fields(n):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(n, f, getattr(n, f))
        if isinstance(n, Scope):
            for d in n.travs + n.sums:
                with pytest.raises(dataclasses.FrozenInstanceError):
                    d.extent = 1  # type: ignore[misc]


@_PROPS
@given(typed_graphs())
def test_graphs_are_frozen_and_weights_read_only(g: Graph) -> None:
    for f in _fields(g):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(g, f, getattr(g, f))
    for v in g.inputs + g.constants:
        with pytest.raises(dataclasses.FrozenInstanceError):
            v.name = "other"  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            v.type.shape = ()  # type: ignore[misc]
    for n in g.nodes:
        with pytest.raises(dataclasses.FrozenInstanceError):
            n.op = "relu"  # type: ignore[misc]
        with pytest.raises(TypeError):
            n.attrs["axis"] = 0  # type: ignore[index]
    for name, arr in g.weights.items():
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[...] = 0
        with pytest.raises(TypeError):
            g.weights[name] = arr  # type: ignore[index]


def test_weights_copy_writable_sources() -> None:
    src = np.ones((2, 3), np.float32)
    w = Weights({"a": src})
    src[0, 0] = 5.0
    assert w["a"][0, 0] == 1.0 and not w["a"].flags.writeable


# ---------------------------------------------------------------- traversals


@_PROPS
@given(exprs())
def test_top_level_scopes_have_no_free_iterators(e: Scope) -> None:
    assert free_iters(e) == frozenset()
    # every Iter use is bound by an enclosing scope: free in the body, bound here
    bound = {d.name for d in e.travs + e.sums}
    assert free_iters(e.body) <= bound


@_PROPS
@given(exprs())
def test_tensor_names_are_the_accessed_names_in_first_appearance_order(e: Scope) -> None:
    names = tensor_names(e)
    assert len(names) == len(set(names))
    order = [n.source for n in walk(e) if isinstance(n, Access) and isinstance(n.source, str)]
    assert list(names) == list(dict.fromkeys(order))


@_PROPS
@given(graphs())
def test_expr_nodes_read_exactly_their_inputs(g: Graph) -> None:
    for n in g.nodes:
        if n.expr is not None:
            assert n.inputs == tensor_names(n.expr)
            assert free_iters(n.expr) == frozenset()


# ---------------------------------------------------------------- typed graphs


@_PROPS
@given(typed_graphs())
def test_verify_accepts_every_typed_graph(g: Graph) -> None:
    verify(g, REGISTRY)
    assert verify_all(g, REGISTRY) == []
    assert parse_graph(print_graph(g)) == g
    types = g.values()
    for v in g.constants:
        assert g.weights[v.name].shape == v.type.shape and g.weights[v.name].dtype == np.float32
    for n in g.nodes:
        for v in n.outputs:
            assert 0 not in v.type.shape and types[v.name] == v
    assert all(isinstance(t, TensorType) and t.dtype == "f32" for t in (v.type for v in g.inputs))


def test_typed_graph_save_load_keeps_weights(tmp_path: Path) -> None:
    for seed in range(20):
        g = random_typed_graph(seed)
        path = tmp_path / f"g{seed}.top"
        save_graph(g, path)
        assert load_graph(path).same_as(g)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_seeded_typed_generator_is_deterministic(seed: int) -> None:
    a, b = random_typed_graph(seed), random_typed_graph(seed)
    assert a.same_as(b) and print_graph(a) == print_graph(b)


def test_seeded_typed_generator_varies_with_the_seed() -> None:
    texts = {print_graph(random_typed_graph(seed)) for seed in range(50)}
    assert len(texts) >= 45


def test_signed_zero_constants_are_distinct() -> None:
    """Regression (found by the property above): 0.0 == -0.0 in Python, but
    the printer writes them differently, so the IR must tell them apart."""
    from tensoropt.ir.expr import Const
    from tensoropt.ir.graph import Attrs

    assert Const(0.0) != Const(-0.0) and Const(0) != Const(0.0)
    assert Attrs({"v": 0.0}) != Attrs({"v": -0.0})
    assert Const(float("nan")) == Const(float("nan"))
