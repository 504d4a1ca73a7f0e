"""run_graph on values that break an op: EvalError naming the node, never a
raw NumPy exception or a RuntimeWarning on stderr.

Also: IEEE semantics (inf, nan) for floats without warnings; integer div by
zero and out-of-range gather/embedding ids are errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tensoropt.builder import GraphBuilder
from tensoropt.errors import EvalError
from tensoropt.interp import run_graph
from tensoropt.ir.types import TensorType


def _one_op(op: str, inputs: dict[str, tuple[str, tuple]], *, name: str = "y", **attrs: object):
    b = GraphBuilder("g")
    names = [b.input(n, dt, shape) for n, (dt, shape) in inputs.items()]
    return b.build(b.op(op, *names, name=name, **attrs))


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_reduce_max_over_empty_axis_is_its_identity() -> None:
    """ONNX: max over no values is -inf (the dtype's minimum for integers)."""
    g = _one_op("reduce_max", {"x": ("f32", (2, "n"))}, axes=[1])
    np.testing.assert_array_equal(run_graph(g, {"x": np.zeros((2, 0), np.float32)})["y"], [[-np.inf], [-np.inf]])
    gi = _one_op("reduce_min", {"x": ("i32", (2, "n"))}, axes=[1])
    np.testing.assert_array_equal(run_graph(gi, {"x": np.zeros((2, 0), np.int32)})["y"], [[2**31 - 1]] * 2)


def test_negative_integer_power_is_an_eval_error() -> None:
    g = _one_op("pow", {"x": ("i64", (2,)), "e": ("i64", (2,))})
    with pytest.raises(EvalError, match=r"pow node %y: .*negative integer powers"):
        run_graph(g, {"x": np.array([2, 3]), "e": np.array([1, -1])})


def test_gather_out_of_range_names_index_axis_and_size() -> None:
    g = _one_op("gather", {"d": ("f32", (5, 2)), "i": ("i64", (3,))})
    d = np.zeros((5, 2), np.float32)
    with pytest.raises(EvalError, match=r"gather node %y: index 7 out of range for axis 0 of size 5"):
        run_graph(g, {"d": d, "i": np.array([0, 7, 1])})
    with pytest.raises(EvalError, match="index -6 out of range for axis 0 of size 5"):
        run_graph(g, {"d": d, "i": np.array([-6, 0, 0])})
    out = run_graph(g, {"d": np.arange(10, dtype=np.float32).reshape(5, 2), "i": np.array([-5, 4, -1])})
    np.testing.assert_array_equal(out["y"][:, 0], [0, 8, 8])  # negatives still count from the end


def test_embedding_out_of_range_ids_are_eval_errors() -> None:
    g = _one_op("embedding", {"t": ("f32", (4, 2)), "i": ("i64", (2,))})
    t = np.zeros((4, 2), np.float32)
    with pytest.raises(EvalError, match=r"embedding node %y: index 4 out of range for the table's rows of size 4"):
        run_graph(g, {"t": t, "i": np.array([0, 4])})
    with pytest.raises(EvalError, match="index -1 out of range"):
        run_graph(g, {"t": t, "i": np.array([-1, 0])})


@pytest.mark.parametrize("dt", ["i32", "i64", "u8"])
def test_integer_div_by_zero_is_an_eval_error(dt: str) -> None:
    g = _one_op("div", {"x": (dt, (3,)), "z": (dt, (3,))})
    x = np.array([1, 2, 3], dtype=TensorType(dt, (3,)).np_dtype)
    with pytest.raises(EvalError, match="div node %y: integer division by zero"):
        run_graph(g, {"x": x, "z": np.array([1, 0, 1], dtype=x.dtype)})
    np.testing.assert_array_equal(run_graph(g, {"x": x, "z": np.ones(3, x.dtype)})["y"], x)


def test_integer_div_of_an_empty_result_is_fine() -> None:
    g = _one_op("div", {"x": ("i64", ("n",)), "z": ("i64", (1,))})
    assert run_graph(g, {"x": np.zeros(0, np.int64), "z": np.array([0])})["y"].shape == (0,)


def test_float_div_by_zero_is_ieee_without_warnings() -> None:
    g = _one_op("div", {"x": ("f32", (3,)), "z": ("f32", (3,))})
    out = run_graph(g, {"x": np.array([1, -1, 0], np.float32), "z": np.zeros(3, np.float32)})["y"]
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])


def test_avgpool_all_pad_window_is_nan_without_warnings() -> None:
    # kernel 1, pad 1, count_include_pad=False: the corner windows see only pads
    g = _one_op("avgpool2d", {"x": ("f32", (1, 1, 2, 2))}, kernel=[1, 1], pads=[1, 1, 1, 1])
    out = run_graph(g, {"x": np.ones((1, 1, 2, 2), np.float32)})["y"]
    assert out.shape == (1, 1, 4, 4)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 1, 1] == 1.0
