"""Converters of frontends/onnx_ops_math.py, one ONNX node at a time.

Each node is imported and run by ``tensoropt.backend`` (the reference
interpreter) and compared with ONNX's own reference evaluator on inputs the
conformance suite does not use: ties, NaN and infinities, wrap-around,
in-range ignore_index, symbolic batch dims. Inputs whose value the importer
must know (axis, k, depth) are initializers; refusals are UnsupportedError
naming what is missing.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from tensoropt import backend
from tensoropt.errors import UnsupportedError
from tensoropt.frontends.onnx import from_onnx
from tensoropt.interp import run_graph

OPSET = 22
rng = np.random.default_rng(11)


def _model(op: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray],
           n_out: int, opset: int, attrs: Mapping[str, Any],
           dims: Mapping[str, list[Any]] | None = None) -> onnx.ModelProto:
    """One ``op`` node over graph ``inputs`` then initializers ``consts``
    (declared dims from ``dims`` where given: symbols allowed). The checker
    wants typed outputs: their dtypes come from ONNX's reference run."""
    untyped = _graph(op, inputs, consts, [onnx.TypeProto()] * n_out, opset, attrs, dims or {})
    with np.errstate(all="ignore"):
        outs = ReferenceEvaluator(untyped).run(None, dict(inputs))
    types = [helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(np.asarray(o).dtype),
                                           [None] * np.ndim(o)) for o in outs]  # dims left to inference
    return _graph(op, inputs, consts, types, opset, attrs, dims or {})


def _graph(op: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray],
           types: list[onnx.TypeProto], opset: int, attrs: Mapping[str, Any],
           dims: Mapping[str, list[Any]]) -> onnx.ModelProto:
    names = list(inputs) + list(consts)
    node = helper.make_node(op, names, [f"y{k}" for k in range(len(types))], **attrs)
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), dims.get(k, v.shape))
           for k, v in inputs.items()]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    outs = [helper.make_value_info(f"y{k}", t) for k, t in enumerate(types)]
    g = helper.make_graph([node], op, ins, outs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def check(op: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray] | None = None,
          n_out: int = 1, opset: int = OPSET, rtol: float = 1e-5, **attrs: Any) -> list[np.ndarray]:
    """Run ``op`` through the backend and ONNX's reference; they must agree exactly in
    shape and dtype, and in value up to ``rtol`` (NaN where NaN)."""
    m = _model(op, inputs, consts or {}, n_out, opset, attrs)
    with np.errstate(all="ignore"):
        want = ReferenceEvaluator(m).run(None, dict(inputs))
    got = backend.prepare(m).run(dict(inputs))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)
    return list(got)


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5, 3.5, 1e-4, np.inf, -np.inf, np.nan],
                   np.float32)


@pytest.mark.parametrize("op", ["Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
                                "Acosh", "Atanh", "Floor", "Ceil", "Round"])
def test_unary_math_on_special_values(op: str) -> None:
    with np.errstate(all="ignore"):
        check(op, {"x": SPECIAL})


def test_round_halves_to_even_in_f64() -> None:
    y, = check("Round", {"x": np.array([-3.5, -2.5, -0.5, 0.5, 1.5, 2.5, 2.4999999], np.float64)})
    assert y.tolist() == [-4.0, -2.0, -0.0, 0.0, 2.0, 2.0, 2.0]


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.float32, np.float64])
def test_mod_signs(fmod: int, dtype: Any) -> None:
    x = np.array([7, -7, 7, -7, 5, -4, 0, 9], dtype)
    y = np.array([[3], [-3]], dtype)  # broadcasts against x
    check("Mod", {"x": x, "y": y}, fmod=fmod)


def test_isinf_flags_and_isnan() -> None:
    for pos, neg in [(1, 1), (1, 0), (0, 1), (0, 0)]:
        check("IsInf", {"x": SPECIAL}, detect_positive=pos, detect_negative=neg)
    check("IsNaN", {"x": SPECIAL.astype(np.float16)})


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic_broadcasts(op: str) -> None:
    a = np.array([[True, False, True], [False, False, True]])
    check(op, {"a": a, "b": np.array([True, False, False])})


def test_not_and_bitwise_not_wrap_around() -> None:
    check("Not", {"x": np.array([[True, False]])})
    check("BitwiseNot", {"x": np.array([0, 1, -1, 127, -128], np.int8)})
    check("BitwiseNot", {"x": np.array([0, 1, 254, 255], np.uint8)})
    y, = check("BitwiseNot", {"x": np.array([np.iinfo(np.int64).min, 5], np.int64)})
    assert y[0] == np.iinfo(np.int64).max


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_wide_unsigned_bitwise_not_shift_mod(dtype: Any) -> None:
    mx = int(np.iinfo(dtype).max)
    y, = check("BitwiseNot", {"x": np.array([0, 1, mx - 1, mx], dtype)})
    assert y.tolist() == [mx, mx - 1, 1, 0]  # the dtype's max - x, exact even for u64
    x, s = np.array([1, mx, 2**15, 7], dtype), np.array([3, 1, 15, 0], dtype)
    for direction in ("LEFT", "RIGHT"):
        check("BitShift", {"x": x, "y": s}, direction=direction)
    check("BitwiseXor", {"a": np.array([[mx, 0, 12345]], dtype), "b": np.array([1, mx, 54321], dtype)})
    check("Mod", {"x": np.array([7, mx, 0, 9], dtype), "y": np.array([3, 10, 5, mx], dtype)})


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
def test_bitwise_on_negative_and_unsigned(op: str) -> None:
    check(op, {"a": np.array([[-1, -128, 85], [7, 0, -86]], np.int16),
               "b": np.array([-2, 127, -1], np.int16)})
    check(op, {"a": np.array([0, 255, 170, 15], np.uint8), "b": np.array([255, 85, 51, 240], np.uint8)})


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bitshift_out_of_width_and_wrap(direction: str) -> None:
    x = np.array([1, -1, 64, -128, 127, 3, -5, 9], np.int8)
    y = np.array([1, 7, 1, 1, 3, 8, -1, 0], np.int8)
    check("BitShift", {"x": x, "y": y}, opset=OPSET + 6, direction=direction)
    check("BitShift", {"x": np.array([1, 255, 16], np.uint8), "y": np.array([3, 1, 8], np.uint8)},
          direction=direction)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_reductions_break_ties_and_see_nan(op: str, last: int) -> None:
    x = np.round(rng.standard_normal((3, 4, 5))).astype(np.float32)  # many ties
    for axis, keep in [(1, 1), (-1, 0), (0, 1)]:
        check(op, {"x": x}, axis=axis, keepdims=keep, select_last_index=last)
    x[1, 2, 3] = np.nan  # NaN is the extreme, as in NumPy
    check(op, {"x": x}, axis=2, select_last_index=last)


@pytest.mark.parametrize("op", ["CumSum", "CumProd"])
@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumulative_with_constant_axis(op: str, exclusive: int, reverse: int) -> None:
    x = rng.uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    check(op, {"x": x}, {"axis": np.array(-2, np.int64)}, opset=OPSET + 4, exclusive=exclusive,
          reverse=reverse)


def test_topk_with_run_time_k_and_ties() -> None:
    x = np.array([[2, 1, 2, 3, 1], [0, 0, 0, 0, 0], [5, -1, 5, 5, 2]], np.int32)
    for largest in (0, 1):
        # k is a graph input: the backend imports once it knows the integer inputs
        check("TopK", {"x": x, "k": np.array([3], np.int64)}, n_out=2, axis=-1, largest=largest)
    check("TopK", {"x": rng.standard_normal((4, 3)).astype(np.float32)}, {"k": np.array([4], np.int64)},
          n_out=2, axis=0)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [-7, -1, 0, 2])
def test_trilu(upper: int, k: int) -> None:
    check("Trilu", {"x": rng.standard_normal((2, 3, 4)).astype(np.float32)}, {"k": np.array(k, np.int64)},
          upper=upper)


def test_onehot_with_constant_depth() -> None:
    ind = np.array([[0, -1, 5], [2, -4, -5]], np.int64)
    for axis in (-1, 0, 1):
        check("OneHot", {"i": ind}, {"depth": np.array(4.0, np.float32),
                                     "values": np.array([-2.0, 3.5], np.float32)}, axis=axis)


def test_hardmax_first_maximum_wins() -> None:
    x = np.array([[[1, 3, 3, 0], [2, 2, 1, 2]], [[0, 0, 0, 0], [-1, 5, 5, -1]]], np.float32)
    for axis in (-1, 0, 1):
        check("Hardmax", {"x": x}, axis=axis)


def test_eyelike_is_a_constant() -> None:
    y, = check("EyeLike", {"x": np.zeros((3, 5), np.int32)}, dtype=onnx.TensorProto.DOUBLE, k=-1)
    assert y.dtype == np.float64


def test_normalizations() -> None:
    x = rng.standard_normal((2, 6, 3, 2)).astype(np.float32)
    check("RMSNormalization", {"x": x, "s": rng.standard_normal((3, 2)).astype(np.float32)}, opset=23,
          axis=-2)
    check("GroupNormalization", {"x": x, "s": rng.standard_normal(6).astype(np.float32),
                                 "b": rng.standard_normal(6).astype(np.float32)}, num_groups=3,
          epsilon=1e-3, rtol=1e-4)
    # f16 statistics are computed in the stash type (f32) and cast back
    h = x.astype(np.float16)
    check("GroupNormalization", {"x": h, "s": rng.standard_normal(6).astype(np.float16),
                                 "b": rng.standard_normal(6).astype(np.float16)}, num_groups=2, rtol=2e-3)
    check("RMSNormalization", {"x": h, "s": rng.standard_normal(2).astype(np.float16)}, opset=23, rtol=2e-3)
    xz = np.concatenate([x[:1], 0 * x[:1]])  # a zero vector normalizes to zeros
    check("LpNormalization", {"x": xz}, axis=1, p=2)
    # p=1: ONNX's reference sums x, not |x|; the L1 norm (and onnxruntime) sums |x|
    m = _model("LpNormalization", {"x": xz}, {}, 1, OPSET, {"axis": 1, "p": 1})
    norm = np.abs(xz).sum(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        want = np.where(norm == 0, 0, xz / norm)
    np.testing.assert_allclose(backend.prepare(m).run({"x": xz})[0], want, rtol=1e-6)
    check("Swish", {"x": x}, opset=24, alpha=0.7)
    # explicit axes: with the default, ONNX's own shape inference fails (its function body
    # reads the attribute default; see test_mvn in the conformance suite)
    check("MeanVarianceNormalization", {"x": x}, opset=13, rtol=1e-4, axes=[0, 2, 3])


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ii", [None, 1, -3])
@pytest.mark.parametrize("weighted", [False, True])
def test_losses(reduction: str, ii: int | None, weighted: bool) -> None:
    scores = rng.standard_normal((3, 4, 2)).astype(np.float32)
    target = np.array([[0, 1], [3, 1], [2, 0]], np.int64)
    if ii == -3:
        target[1, 0] = -3  # out of range: ignored only because it is ignore_index
    extra = {"ignore_index": ii} if ii is not None else {}
    consts = {"w": rng.uniform(0.5, 2.0, 4).astype(np.float32)} if weighted else {}
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    check("NegativeLogLikelihoodLoss", {"x": logp, "t": target}, consts, reduction=reduction, **extra)
    check("SoftmaxCrossEntropyLoss", {"x": scores, "t": target}, consts, n_out=2, reduction=reduction,
          rtol=1e-4, **extra)


def test_symbolic_batch_runs_at_two_sizes() -> None:
    """The batch dim stays a symbol: one import serves every batch size."""
    m = _model("CumSum", {"x": np.zeros((2, 5), np.float32)}, {"axis": np.array(1, np.int64)}, 1, OPSET,
               {"reverse": 1}, dims={"x": ["N", 5]})
    g = from_onnx(m)
    assert g.inputs[0].type.shape == ("N", 5)
    for n in (1, 3):
        x = rng.standard_normal((n, 5)).astype(np.float32)
        y = next(iter(run_graph(g, {"x": x}).values()))
        np.testing.assert_allclose(y, np.flip(np.cumsum(np.flip(x, 1), 1), 1), rtol=1e-6)
    m = _model("ArgMax", {"x": np.zeros((2, 5), np.float32)}, {}, 1, OPSET, {"axis": 0, "keepdims": 0},
               dims={"x": ["N", 5]})
    g = from_onnx(m)
    x = np.array([[0, 2, 1, 1, 5], [3, 2, 0, 1, 5], [1, 0, 1, 9, 5]], np.float32)
    np.testing.assert_array_equal(next(iter(run_graph(g, {"x": x}).values())), [1, 0, 0, 2, 0])


@pytest.mark.parametrize("op, inputs, consts, attrs, match", [
    ("OneHot", {"i": np.array([1, 2], np.int64), "depth": np.array(3.0, np.float32)},
     {"values": np.array([0, 1], np.float32)}, {}, r"input 1 \(depth\) must be a constant"),
    ("LpNormalization", {"x": np.ones((2, 3), np.float32)}, {}, {"p": 3}, "p=3"),
    ("Range", {"a": np.array(0.0, np.float32), "b": np.array(3.0, np.float32),
               "c": np.array(1.0, np.float32)}, {}, {}, r"input 0 \(start\) must be a constant"),
    ("CumSum", {"x": np.ones((2, 3), np.float32), "axis": np.array(0, np.int64)}, {}, {},
     r"input 1 \(axis\) must be a constant"),
])
def test_refusals_name_what_is_missing(op: str, inputs: dict, consts: dict, attrs: dict, match: str) -> None:
    with pytest.raises(UnsupportedError, match=match):
        from_onnx(_model(op, inputs, consts, 1, OPSET, attrs))
