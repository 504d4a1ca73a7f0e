"""tensoropt.backend as an onnx.backend.base.Backend: prepare/run, run_node,
import-time values fed as inputs, and bad feeds."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tensoropt.backend as backend
from tensoropt.errors import EvalError, UnsupportedError


def _model(nodes: list, inputs: list, outputs: list, inits: list = ()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_run_node_types_its_outputs_by_onnx_inference() -> None:
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32)
    (y,) = backend.run_node(helper.make_node("Relu", ["x"], ["y"]), [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    (m,) = backend.run_node(helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0), [x])
    assert m.shape == () and m == 3.0


def test_supports_device_and_modes() -> None:
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    m = _model([helper.make_node("Relu", ["x"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(UnsupportedError, match="mode 'jit'"):
        backend.prepare(m, mode="jit")
    x = np.array([-1.0, 2.0], np.float32)
    rep = backend.prepare(m, mode="compiled")  # TVM codegen behind the same interface
    np.testing.assert_array_equal(rep.run([x])[0], np.maximum(x, 0))


def _reshape_model() -> onnx.ModelProto:
    """Reshape whose target shape is a graph input (as ONNX's own test cases do)."""
    return _model([helper.make_node("Reshape", ["x", "shape"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                   helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                  [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, None])])


def test_input_needed_at_import_time_is_bound_and_the_rest_stays_run_time() -> None:
    rep = backend.prepare(_reshape_model())
    assert rep.graph is None and rep.needs == ("shape",)
    x = np.arange(12, dtype=np.float32).reshape(2, 6) - 6
    (z,) = rep.run([x, np.array([3, 4], np.int64)])
    np.testing.assert_array_equal(z, np.maximum(x.reshape(3, 4), 0))
    # only the shape was bound: x is still an input and the ops still run
    assert [v.name for v in rep.last_graph.inputs] == ["x"] and rep.last_graph.nodes
    (z2,) = rep.run([x, np.array([4, 3], np.int64)])  # another binding, another graph
    assert z2.shape == (4, 3)


def test_unknown_feed_names_are_refused() -> None:
    rep = backend.prepare(_reshape_model())
    with pytest.raises(EvalError, match="'image' is not an input of the model"):
        rep.run({"image": np.zeros((2, 6), np.float32), "shape": np.array([3, 4])})


def test_feeding_an_initializer_is_refused_not_ignored() -> None:
    m = _model([helper.make_node("Add", ["x", "b"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
               [numpy_helper.from_array(np.ones(2, np.float32), "b")])
    rep = backend.prepare(m)
    np.testing.assert_array_equal(rep.run({"x": np.array([1, 2], np.float32)})[0], [2, 3])
    with pytest.raises(UnsupportedError, match="'b' has an initializer"):
        rep.run({"x": np.zeros(2, np.float32), "b": np.zeros(2, np.float32)})


def test_unsupported_op_is_not_hidden_by_binding_inputs() -> None:
    """An op tensoropt lacks stays unsupported even when every input is an integer."""
    m = _model([helper.make_node("NonZero", ["x"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.INT64, [4])],
               [helper.make_tensor_value_info("y", TensorProto.INT64, [1, None])])
    with pytest.raises(UnsupportedError, match="unsupported op NonZero"):
        backend.prepare(m)
