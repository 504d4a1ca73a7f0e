"""The compiled model's call path on the CPU: one device buffer per input,
reused from call to call, and outputs handed out without a copy.

An output the VM returns as a view of something the model keeps (an input
buffer, which the next call overwrites; a weight) must be copied, or a
caller's earlier result would change under it.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import tensoropt


def _model(nodes, shapes, inits=()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    outs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, shape) for n, shape in zip(nodes, shapes)]
    graph = helper.make_graph(nodes, "g", [x], outs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _compile(model: onnx.ModelProto):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallbacks expected either
        return tensoropt.compile(model)


def test_output_that_is_the_input_survives_the_next_call() -> None:
    cm = _compile(_model([helper.make_node("Identity", ["x"], ["y"]),
                          helper.make_node("Relu", ["x"], ["r"])], [["batch", 8]] * 2))
    a = np.arange(16, dtype=np.float32).reshape(2, 8) - 5
    b = -a
    y1, r1 = cm(a)
    y2, r2 = cm(b)
    np.testing.assert_array_equal(y1, a)  # not overwritten by the second call's input
    np.testing.assert_array_equal(r1, np.maximum(a, 0))
    np.testing.assert_array_equal(y2, b)
    np.testing.assert_array_equal(r2, np.maximum(b, 0))
    assert not np.shares_memory(r1, r2)  # fresh outputs per call, not one buffer reused


def test_output_that_is_a_weight_cannot_change_the_weight() -> None:
    w = numpy_helper.from_array(np.full(8, 3.0, np.float32), "w")
    cm = _compile(_model([helper.make_node("Identity", ["w"], ["y"]),
                          helper.make_node("Add", ["x", "w"], ["s"])], [[8], ["batch", 8]], [w]))
    x = np.ones((2, 8), np.float32)
    y, s = cm(x)
    y[...] = 100.0  # the caller owns what it got
    y2, s2 = cm(x)
    np.testing.assert_array_equal(y2, 3.0)
    np.testing.assert_array_equal(s2, 4.0)


def test_a_new_input_shape_gets_its_own_buffer() -> None:
    cm = _compile(_model([helper.make_node("Relu", ["x"], ["r"])], [["batch", 8]]))
    for n in (1, 3, 1, 5):
        x = np.linspace(-1, 1, 8 * n, dtype=np.float32).reshape(n, 8)
        np.testing.assert_array_equal(cm(x), np.maximum(x, 0))
