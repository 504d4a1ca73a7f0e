"""The interpreter runs whole networks and agrees with PyTorch on them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tensoropt import api
from tensoropt.interp import run_graph
from tensoropt.ir.parser import parse_graph
from tensoropt.ir.printer import print_graph
from tensoropt.zoo import torch_forward, vgg


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("depth", [11, 19])
def test_small_vgg_matches_torch_and_round_trips(depth: int) -> None:
    g = vgg(depth, image=32, width_div=16, classes=10)
    api.verify(g)
    assert parse_graph(print_graph(g)) == g
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = run_graph(g, {"x": x})[g.outputs[0]]
    assert y.shape == (2, 10) and y.dtype == np.float32
    assert rel(y, torch_forward(g, x)) < 1e-4


@pytest.mark.slow
def test_vgg19_full_size_under_a_minute() -> None:
    g = vgg(19)
    x = np.random.default_rng(4).standard_normal((1, 3, 224, 224)).astype(np.float32)
    t0 = time.perf_counter()
    y = run_graph(g, {"x": x})[g.outputs[0]]
    seconds = time.perf_counter() - t0
    assert seconds < 60, seconds
    assert rel(y, torch_forward(g, x)) < 1e-4
