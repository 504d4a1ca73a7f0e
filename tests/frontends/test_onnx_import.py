"""The ONNX importer on models built here: dynamic shapes, external data, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tensoropt import api
from tensoropt.errors import EvalError, InputFileError, ShapeError, UnsupportedError
from tensoropt.frontends.onnx import from_onnx, load_onnx
from tensoropt.interp import run_graph

from onnx_models import light_path

rng = np.random.default_rng(7)


def _init(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, inits)
    # IR 10: the newest this onnxruntime reads
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    onnx.checker.check_model(m)
    return m


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _dynamic_cnn() -> onnx.ModelProto:
    """Conv -> flatten via Shape/Gather/Concat/Reshape (as exporters write it) -> Gemm,
    with a symbolic batch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["y"], transB=1),
    ]
    inits = [_init("w", 4, 3, 3, 3), _init("b", 4), _init("fc", 10, 256), _init("fcb", 10),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    return _model(nodes, [x], [y], inits)


def test_dynamic_batch_imports_once_and_runs_at_two_sizes() -> None:
    model = _dynamic_cnn()
    g = from_onnx(model)
    api.verify(g)
    assert g.inputs[0].type.shape == ("batch", 3, 8, 8)
    assert g.output_values[0].type.shape == ("batch", 10)
    assert not any(n.op in ("gather", "concat") for n in g.nodes)  # shape arithmetic folded away
    for batch in (1, 5):
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        ref = _ort(model, {"x": x})[0]
        np.testing.assert_allclose(run_graph(g, {"x": x})["y"], ref, rtol=1e-4, atol=1e-5)


def test_dynamic_sequence_attention_block() -> None:
    """Softmax(Q K^T / sqrt(d)) V with a symbolic sequence length."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "seq", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seq", 16])
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Div", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    inits = [_init("wq", 16, 16), _init("wk", 16, 16), _init("wv", 16, 16),
             numpy_helper.from_array(np.array(4.0, np.float32), "scale")]
    model = _model(nodes, [x], [y], inits)
    g = from_onnx(model)
    assert g.inputs[0].type.shape == (1, "seq", 16)
    for seq in (3, 11):
        xv = rng.standard_normal((1, seq, 16)).astype(np.float32)
        np.testing.assert_allclose(run_graph(g, {"x": xv})["y"], _ort(model, {"x": xv})[0], rtol=1e-4, atol=1e-5)


def test_unnamed_dynamic_dim_gets_a_symbol() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    g = from_onnx(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], []))
    (d0, d1) = g.inputs[0].type.shape
    assert isinstance(d0, str) and d1 == 4


def test_external_data_inside_the_model_directory(tmp_path: Path) -> None:
    model = _dynamic_cnn()
    saved = onnx.ModelProto()
    saved.CopyFrom(model)  # save_model moves the data of the proto it is given
    onnx.save_model(saved, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    g = load_onnx(tmp_path / "m.onnx")
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_graph(g, {"x": x})["y"], _ort(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


def _with_location(tmp_path: Path, location: str) -> Path:
    model = _dynamic_cnn()
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    m = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save_model(m, str(tmp_path / "m.onnx"))
    return tmp_path / "m.onnx"


def test_external_data_outside_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    sub = tmp_path / "model"
    sub.mkdir()
    path = _with_location(sub, "../secret.bin")
    with pytest.raises(InputFileError, match="outside the model's directory"):
        load_onnx(path)


def test_missing_external_data_file(tmp_path: Path) -> None:
    path = _with_location(tmp_path, "nowhere.bin")
    with pytest.raises(InputFileError, match="external data file 'nowhere.bin' .* is missing"):
        load_onnx(path)


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    data = light_path("squeezenet").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xfe not a protobuf at all" * 10)
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("cut", "junk", "empty"):
        with pytest.raises(InputFileError, match=f"{name}.onnx: not a valid ONNX model"):
            load_onnx(tmp_path / f"{name}.onnx")


def test_unsupported_op_names_op_node_and_opset() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None])
    m = _model([helper.make_node("NonZero", ["x"], ["nz"], name="find"),
                helper.make_node("Cast", ["nz"], ["y"], to=TensorProto.FLOAT)], [x], [y], [], opset=17)
    with pytest.raises(UnsupportedError, match=r"NonZero node 'find' \(opset 17\): unsupported op NonZero"):
        from_onnx(m)


def test_custom_domain_op_is_named() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    g = helper.make_graph([helper.make_node("FusedGelu", ["x"], ["y"], domain="com.example")], "m", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedError, match="com.example.FusedGelu"):
        from_onnx(m)


def test_bad_shapes_are_reported_by_onnx_inference() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])
    m = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "m", [x], [y],
                                            [_init("w", 4, 5)]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ShapeError, match="shape inference failed"):
        from_onnx(m)


def test_wrong_input_names_and_shapes_at_evaluation() -> None:
    g = from_onnx(_dynamic_cnn())
    with pytest.raises(EvalError, match="x"):
        run_graph(g, {"image": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(EvalError):
        run_graph(g, {"x": np.zeros((1, 3, 9, 8), np.float32)})


def test_unsupported_dtype_names_the_input() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [4])
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [4])
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], [])
    with pytest.raises(UnsupportedError, match="input 'x': dtype BFLOAT16 is not supported"):
        from_onnx(m)


# -- regressions found in review -------------------------------------------------------


def _ref(node: onnx.NodeProto, *xs: np.ndarray) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    names = list(node.input)
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
           for n, x in zip(names, xs)]
    m = helper.make_model(helper.make_graph([node], "r", vis, [helper.make_value_info(o, onnx.TypeProto())
                                                               for o in node.output]),
                          opset_imports=[helper.make_opsetid("", 18)])
    return ReferenceEvaluator(m).run(None, dict(zip(names, xs)))


@pytest.mark.parametrize("op", ["LessOrEqual", "GreaterOrEqual"])
def test_or_equal_comparisons_are_false_for_nan(op: str) -> None:
    from tensoropt import backend

    a = np.array([np.nan, 1.0, 2.0, np.nan], np.float32)
    b = np.array([1.0, np.nan, 2.0, np.nan], np.float32)
    node = helper.make_node(op, ["a", "b"], ["y"])
    np.testing.assert_array_equal(backend.run_node(node, [a, b])[0], _ref(node, a, b)[0])


def test_sign_keeps_nan() -> None:
    from tensoropt import backend

    x = np.array([-2.0, 0.0, 3.0, np.nan], np.float32)
    node = helper.make_node("Sign", ["x"], ["y"])
    np.testing.assert_array_equal(backend.run_node(node, [x])[0], _ref(node, x)[0])


def test_reduce_l2_with_no_axes_and_noop_is_the_absolute_value() -> None:
    from tensoropt import backend

    x = np.array([-1.5, 2.0, -3.0], np.float32)
    node = helper.make_node("ReduceL2", ["x"], ["y"], noop_with_empty_axes=1)
    np.testing.assert_array_equal(backend.run_node(node, [x], opset_version=18)[0], [1.5, 2.0, 3.0])


def test_reduce_log_sum_exp_without_keepdims_on_a_symbolic_batch() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    m = _model([helper.make_node("ReduceLogSumExp", ["x", "axes"], ["y"], keepdims=0)], [x], [y], [axes], opset=18)
    g = from_onnx(m)
    xv = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(run_graph(g, {"x": xv})["y"], _ort(m, {"x": xv})[0], rtol=1e-5)


def test_a_weight_read_by_several_nodes_is_one_constant() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["a", "w"], ["b"]),
             helper.make_node("MatMul", ["b", "w"], ["y"])]
    g = from_onnx(_model(nodes, [x], [y], [_init("w", 4, 4)]))
    assert [c.name for c in g.constants] == ["w"]


def test_unsqueezing_a_symbolic_shape_vector_is_refused_not_flattened() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [2])
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Unsqueeze", ["s", "axes"], ["u"]),
             helper.make_node("Shape", ["u"], ["y"])]
    with pytest.raises(UnsupportedError, match="unsqueeze of a symbolic shape vector"):
        from_onnx(_model(nodes, [x], [y], [axes]))


def test_tile_with_a_zero_repeat_is_refused_clearly() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 0])
    reps = numpy_helper.from_array(np.array([1, 0], np.int64), "reps")
    with pytest.raises(UnsupportedError, match="zero repeat"):
        from_onnx(_model([helper.make_node("Tile", ["x", "reps"], ["y"])], [x], [y], [reps]))


def test_local_functions_are_inlined_so_our_own_export_imports_back(tmp_path: Path) -> None:
    """A fused graph exports its expr nodes as ONNX local functions; importing
    that model inlines them and computes the same thing."""
    from tensoropt.frontends.onnx_export import save_onnx

    root = Path(__file__).resolve().parents[2]
    g = api.load(root / "examples" / "conv_block.top")
    fused, _ = api.optimize(g, "fold-constants,cse,fuse-elementwise,dce")
    assert any(n.op == "expr" for n in fused.nodes)
    save_onnx(fused, tmp_path / "fused.onnx")
    assert onnx.load(str(tmp_path / "fused.onnx")).functions
    back = load_onnx(tmp_path / "fused.onnx")
    inputs = api.random_inputs(g, seed=3, bindings={s: 2 for s in api.symbols_of(g)})
    want = run_graph(g, inputs)
    got = run_graph(back, inputs)
    for name in g.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
