"""Shared graphs and the interpreter soundness check for pass tests."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from tensoropt.interp import run_graph
from tensoropt.ir.graph import Graph
from tensoropt.ir.parser import parse_graph
from tensoropt.ir.verify import verify
from tensoropt.ops import REGISTRY

#: Graphs that exercise every pass; symbolic ``batch`` is bound to 3.
GRAPHS: dict[str, str] = {
    "mlp": """
graph mlp(%x: f32[batch, 8]) {
  const %w: f32[8, 6]
  const %b: f32[6]
  const %c: f32[6]
  %cb: f32[6] = add(%b, %c)
  %h: f32[batch, 6] = expr(%x, %w) L[i:batch, j:6] Sum[k:8] { %x[i, k] * %w[k, j] }
  %h2: f32[batch, 6] = expr(%x, %w) L[i:batch, j:6] Sum[k:8] { %x[i, k] * %w[k, j] }
  %s: f32[batch, 6] = add(%h, %h2)
  %hb: f32[batch, 6] = add(%s, %cb)
  %r: f32[batch, 6] = relu(%hb)
  %dead: f32[batch, 6] = exp(%r)
  %t: f32[batch, 6] = tanh(%r)
  return %t
}
""",
    "conv": """
graph conv(%x: f32[1, 3, 6, 6]) {
  const %k: f32[4, 3, 3, 3]
  const %s0: f32[4, 1, 1]
  %r: f32[1, 3, 6, 6] = relu(%x)
  %c: f32[1, 4, 6, 6] = conv2d(%r, %k) {pads=[1, 1, 1, 1]}
  %sc: f32[4, 1, 1] = exp(%s0)
  %cs: f32[1, 4, 6, 6] = mul(%c, %sc)
  %g: f32[1, 4, 6, 6] = sigmoid(%cs)
  %m: f32[1, 4, 6, 6] = mul(%g, %cs)
  %m2: f32[1, 4, 6, 6] = mul(%g, %cs)
  %o: f32[1, 4, 6, 6] = sub(%m, %m2)
  return %o, %m
}
""",
    "shift": """
graph shift(%x: f32[5, 7], %y: f32[5, 7]) {
  const %z: f32[7]
  %e: f32[5, 7] = exp(%x)
  %p: f32[5, 7] = expr(%e) L[i:5, j:7] { %e[i, j - 1] + %e[i, j + 1] }
  %q: f32[5, 7] = expr(%y) L[i:5, j:-1..6] { neg(%y[i, j + 1]) }
  %a: f32[5, 7] = add(%p, %q)
  %n: f32[5, 7] = neg(%a)
  %zz: f32[7] = abs(%z)
  %w: f32[5, 7] = add(%n, %zz)
  %sm: f32[5, 7] = softmax(%w) {axis=1}
  %dup: f32[5, 7] = expr(%sm) L[i:5, j:7] { %sm[i, j] * 2.0 }
  %dup2: f32[5, 7] = expr(%sm) L[i:5, j:7] { %sm[i, j] * 2.0 }
  %out: f32[5, 7] = expr(%dup, %dup2) L[i:5, j:7] { %dup[i, j] - %dup2[i, 6 - j] }
  return %out
}
""",
}


def load(name: str, seed: int = 0) -> Graph:
    """A graph from :data:`GRAPHS` with seeded random weights."""
    g = parse_graph(GRAPHS[name], f"<{name}>")
    rng = np.random.default_rng(seed)
    return g.replace(weights={c.name: rng.standard_normal(c.type.shape).astype(c.type.np_dtype) for c in g.constants})


def random_inputs(g: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.concrete({"batch": 3})).astype(v.type.np_dtype) for v in g.inputs}


def assert_sound(before: Graph, after: Graph, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """``after`` verifies and computes what ``before`` does on seeded random inputs."""
    verify(after, REGISTRY)
    assert [v.type for v in before.output_values] == [v.type for v in after.output_values]
    for seed in seeds:
        xs = random_inputs(before, seed)
        want, got = run_graph(before, xs), run_graph(after, xs)
        for a, b in zip(before.outputs, after.outputs):
            np.testing.assert_allclose(got[b], want[a], rtol=1e-5, atol=1e-5)


@pytest.fixture
def sound() -> Callable[[Graph, Graph], None]:
    return assert_sound


@pytest.fixture(params=sorted(GRAPHS))
def any_graph(request: pytest.FixtureRequest) -> Graph:
    return load(request.param)


@pytest.fixture
def load_graph() -> Callable[..., Graph]:
    return load
