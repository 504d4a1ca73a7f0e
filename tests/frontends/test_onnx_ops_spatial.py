"""Converters of frontends/onnx_ops_spatial.py, one ONNX node at a time.

Each node runs through ``tensoropt.backend`` (import + reference interpreter)
and is compared with ONNX's own reference evaluator, or with PyTorch where
ONNX's reference is known to be wrong (grouped ConvTranspose). Inputs the
importer must know (scales, roi, shapes) are initializers. Cases ONNX's
conformance suite does not cover come first; refusals must be
UnsupportedError naming the attribute.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from tensoropt.frontends import onnx_ops_spatial as spatial
from tensoropt.frontends.onnx_context import CONVERTERS, Converter

from tensoropt import backend
from tensoropt.errors import UnsupportedError

OPSET = 22
rng = np.random.default_rng(7)


def rnd(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def model_of(op: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray] | None = None,
             n_out: int = 1, opset: int = OPSET, **attrs: Any) -> onnx.ModelProto:
    """One ``op`` node: ``inputs`` are graph inputs, ``consts`` initializers (a name starting
    with ``_skip``: an omitted optional input). Outputs are typed from ONNX's reference run,
    because the checker wants typed graph outputs."""
    untyped = _model(op, inputs, consts, [onnx.TypeProto()] * n_out, opset, attrs)
    outs = reference(untyped, inputs)
    types = [helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(o.dtype), o.shape) for o in outs]
    return _model(op, inputs, consts, types, opset, attrs)


def like(x: np.ndarray, shape: tuple[int, ...] | None = None) -> onnx.TypeProto:
    """An output type with ``x``'s dtype and ``shape`` (default: ``x``'s)."""
    return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(x.dtype), x.shape if shape is None else shape)


def _model(op: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray] | None,
           types: list[onnx.TypeProto], opset: int, attrs: dict[str, Any]) -> onnx.ModelProto:
    n_out = len(types)
    consts = dict(consts or {})
    names = list(inputs) + list(consts)
    node = helper.make_node(op, [n if not n.startswith("_skip") else "" for n in names],
                            [f"y{k}" for k in range(n_out)], **attrs)
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in inputs.items()]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items() if not k.startswith("_skip")]
    outs = [helper.make_value_info(f"y{k}", t) for k, t in enumerate(types)]
    g = helper.make_graph([node], op, ins, outs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def ours(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return list(backend.prepare(model).run(dict(inputs)))


def reference(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, dict(inputs))]


def check(op: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray] | None = None,
          n_out: int = 1, opset: int = OPSET, rtol: float = 1e-5, **attrs: Any) -> None:
    m = model_of(op, inputs, consts, n_out, opset, **attrs)
    got, want = ours(m, inputs), reference(m, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)


def _for_3d(fn: Converter, old: Converter) -> Converter:
    return lambda cx: fn(cx) if cx.rank(0) == 5 else old(cx)


@pytest.fixture
def nd_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route 3-D Conv / MaxPool / AveragePool to the rank-generic converters (as onnx_ops should)."""
    for op, fn in (("Conv", spatial.conv_nd), ("AveragePool", spatial.pool_nd)):
        monkeypatch.setitem(CONVERTERS, op, _for_3d(fn, CONVERTERS[op]))
    monkeypatch.setitem(CONVERTERS, "MaxPool", spatial.pool_nd)  # every rank: the Indices output


# -- ConvTranspose --------------------------------------------------------------------------


@pytest.mark.parametrize("attrs", [
    dict(strides=[2], pads=[1, 0], output_padding=[1]),
    dict(strides=[3], auto_pad="SAME_LOWER"),
    dict(strides=[2], output_shape=[8], auto_pad="SAME_UPPER"),
])
def test_conv_transpose_1d_against_reference(attrs: dict) -> None:
    check("ConvTranspose", {"x": rnd(2, 3, 5)}, {"w": rnd(3, 2, 3)}, **attrs)


@pytest.mark.parametrize("out, pads", [(12, [1, 0]), (11, [1, 1]), (15, [-1, -1])])
def test_conv_transpose_output_shape_is_the_spec_pads(out: int, pads: list[int]) -> None:
    """output_shape sets total = full - out, the larger half first (NOTSET); ONNX's reference
    ignores output_shape's pads, so compare with explicit pads (negative: our extension)."""
    x, w = rnd(2, 3, 5), rnd(3, 2, 3)  # full length (5 - 1) * 2 + (3 - 1) * 2 + 1 = 13
    shaped = _model("ConvTranspose", {"x": x}, {"w": w}, [like(x, (2, 2, out))], OPSET,
                    dict(strides=[2], dilations=[2], output_shape=[out]))
    got = ours(shaped, {"x": x})[0]
    assert got.shape == (2, 2, out)
    lo, hi = max(pads[0], 0), max(pads[1], 0)
    base = reference(model_of("ConvTranspose", {"x": x}, {"w": w}, strides=[2], dilations=[2],
                              pads=[lo, hi]), {"x": x})[0]
    want = np.pad(base, [(0, 0), (0, 0), (max(-pads[0], 0), max(-pads[1], 0))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_transpose_2d_group_bias_against_torch() -> None:
    x, w, b = rnd(2, 4, 3, 5), rnd(4, 3, 3, 2), rnd(6)
    # ONNX's reference mishandles group > 1: type the output by hand
    m = _model("ConvTranspose", {"x": x}, {"w": w, "b": b}, [like(x, (2, 6, 8, 16))], OPSET,
               dict(strides=[2, 3], pads=[1, 0, 1, 0], output_padding=[1, 2], dilations=[2, 1], group=2))
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=(2, 3),
                              padding=(1, 0), output_padding=(1, 2), dilation=(2, 1), groups=2).numpy()
    np.testing.assert_allclose(ours(m, {"x": x})[0], want, rtol=1e-5, atol=1e-5)


def test_conv_transpose_3d_against_torch() -> None:
    x, w = rnd(1, 2, 3, 2, 4), rnd(2, 3, 2, 2, 3)
    m = model_of("ConvTranspose", {"x": x}, {"w": w}, strides=[2, 1, 2], pads=[1, 0, 1, 1, 0, 1])
    want = F.conv_transpose3d(torch.from_numpy(x), torch.from_numpy(w), stride=(2, 1, 2), padding=(1, 0, 1))
    np.testing.assert_allclose(ours(m, {"x": x})[0], want.numpy(), rtol=1e-5, atol=1e-5)


# -- 3-D windows, LpPool ----------------------------------------------------------------------


@pytest.mark.usefixtures("nd_windows")
@pytest.mark.parametrize("op, attrs", [
    ("Conv", dict(strides=[2, 1, 1], pads=[1, 0, 1, 0, 1, 1], dilations=[1, 2, 1], group=2)),
    ("Conv", dict(auto_pad="SAME_LOWER", strides=[2, 2, 1])),
    ("MaxPool", dict(kernel_shape=[2, 3, 2], strides=[2, 1, 2], pads=[1, 1, 0, 0, 1, 1], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 2, 2], strides=[1, 2, 1], pads=[1, 0, 1, 1, 1, 0],
                         count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 2, 3], auto_pad="SAME_UPPER", strides=[2, 2, 2])),
])
def test_3d_windows_against_reference(op: str, attrs: dict) -> None:
    x = rnd(2, 4, 5, 6, 5)
    consts = {"w": rnd(6, 2, 3, 2, 2)} if op == "Conv" and "group" in attrs else (
        {"w": rnd(3, 4, 2, 3, 2)} if op == "Conv" else {})
    check(op, {"x": x}, consts, **attrs)


@pytest.mark.usefixtures("nd_windows")
@pytest.mark.parametrize("x, attrs", [
    (rnd(2, 3, 5, 6), dict(kernel_shape=[2, 3], strides=[2, 1], pads=[1, 1, 0, 1], storage_order=1)),
    (rnd(2, 3, 7), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    (rnd(1, 2, 4, 5, 4), dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2], ceil_mode=1)),
])
def test_maxpool_indices_against_reference(x: np.ndarray, attrs: dict) -> None:
    check("MaxPool", {"x": x}, n_out=2, **attrs)


@pytest.mark.parametrize("p, attrs", [
    (1, dict(kernel_shape=[3, 2], pads=[1, 0, 1, 1], strides=[2, 1])),
    (3, dict(kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 0, 0, 1])),
    (3, dict(kernel_shape=[2, 3], auto_pad="SAME_UPPER")),  # ONNX's reference drops dilations under SAME
    (2, dict(kernel_shape=[3], pads=[1, 2])),
])
def test_lppool_against_reference(p: int, attrs: dict) -> None:
    x = rnd(2, 3, 6, 5) if len(attrs["kernel_shape"]) == 2 else rnd(2, 3, 7)
    check("LpPool", {"x": x}, p=p, rtol=1e-4, **attrs)


def test_global_lppool() -> None:
    x = rnd(2, 3, 4, 5)
    m = _model("GlobalLpPool", {"x": x}, {}, [like(x, (2, 3, 1, 1))], OPSET, dict(p=3))
    want = (np.abs(x.astype(np.float64)) ** 3).sum(axis=(2, 3), keepdims=True) ** (1 / 3)
    np.testing.assert_allclose(ours(m, {"x": x})[0], want, rtol=1e-5)


def test_lppool_ceil_mode_is_unsupported() -> None:
    m = model_of("LpPool", {"x": rnd(1, 1, 5, 5)}, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    with pytest.raises(UnsupportedError, match="ceil_mode"):
        backend.prepare(m)


# -- gathers and scatters ------------------------------------------------------------------------


def test_gather_elements_negative_indices() -> None:
    idx = np.array([[-1, 0], [2, -3], [1, 1]], np.int64)
    check("GatherElements", {"x": rnd(3, 4)}, {"i": idx}, axis=1)


_FOLD: dict[str, Any] = {"none": lambda a, b: b, "add": np.add, "mul": np.multiply, "max": np.maximum,
                         "min": np.minimum}


def _untyped(op: str, inputs: Mapping[str, np.ndarray], consts: Mapping[str, np.ndarray], **attrs: Any) -> onnx.ModelProto:
    return _model(op, inputs, consts, [like(next(iter(inputs.values())))], OPSET, attrs)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_duplicates(reduction: str) -> None:
    """Duplicates fold in index order; the last write wins without a reduction."""
    x, u = rnd(4, 3), rnd(3, 2)
    idx = np.array([[0, -1], [0, 2], [2, 2]], np.int64)
    want = x.copy()
    for i, j in np.ndindex(idx.shape):
        want[idx[i, j], j] = _FOLD[reduction](want[idx[i, j], j], u[i, j])
    got = ours(_untyped("ScatterElements", {"x": x}, {"i": idx, "u": u}, axis=0, reduction=reduction),
               {"x": x})[0]
    np.testing.assert_array_equal(got, want)


def test_gather_nd_batch_dims() -> None:
    idx = np.array([[[1, -1], [0, 0]], [[2, 3], [-3, 1]]], np.int64)
    check("GatherND", {"x": rnd(2, 3, 4, 5)}, {"i": idx}, batch_dims=1)


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
def test_scatter_nd_slices(reduction: str) -> None:
    x, u = rnd(3, 4), rnd(3, 1, 4)
    idx = np.array([[[1]], [[-2]], [[1]]], np.int64)
    want = x.copy()
    for i in range(3):
        want[idx[i, 0, 0]] = _FOLD[reduction](want[idx[i, 0, 0]], u[i, 0])
    got = ours(_untyped("ScatterND", {"x": x}, {"i": idx, "u": u}, reduction=reduction), {"x": x})[0]
    np.testing.assert_array_equal(got, want)


def test_gather_elements_out_of_range_is_an_eval_error() -> None:
    m = model_of("GatherElements", {"x": rnd(3, 4), "i": np.zeros((3, 4), np.int64)}, axis=0)
    with pytest.raises(Exception, match="out of range"):
        ours(m, {"x": rnd(3, 4), "i": np.full((3, 4), 3, np.int64)})


# -- Resize / Upsample ---------------------------------------------------------------------------

_EMPTY = np.zeros((0,), np.float32)


@pytest.mark.parametrize("attrs, scales, sizes", [
    (dict(mode="nearest", nearest_mode="ceil", coordinate_transformation_mode="align_corners"),
     np.array([1, 1, 1.6, 0.7], np.float32), None),
    (dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), None,
     np.array([1, 2, 1, 7], np.int64)),
    (dict(mode="cubic", exclude_outside=1, coordinate_transformation_mode="asymmetric", axes=[3]),
     np.array([2.5], np.float32), None),
    (dict(mode="linear", antialias=1, keep_aspect_ratio_policy="not_larger", axes=[2, 3]), None,
     np.array([2, 4], np.int64)),
    (dict(mode="nearest", keep_aspect_ratio_policy="not_smaller", axes=[3, 2]), None,
     np.array([9, 5], np.int64)),
])
def test_resize_against_reference(attrs: dict, scales: np.ndarray | None, sizes: np.ndarray | None) -> None:
    consts: dict[str, Any] = {"_skip_roi": _EMPTY, "scales": scales} if sizes is None else {
        "_skip_roi": _EMPTY, "_skip_scales": _EMPTY, "sizes": sizes}
    check("Resize", {"x": rnd(1, 2, 4, 6)}, consts, opset=19, **attrs)


def test_resize_tf_crop_and_resize() -> None:
    roi = np.array([0.1, -0.2, 0.8, 1.1], np.float32)
    check("Resize", {"x": rnd(1, 1, 5, 4)}, {"roi": roi, "_skip_scales": _EMPTY, "sizes": np.array([3, 6], np.int64)},
          opset=19, mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
          extrapolation_value=2.5, axes=[2, 3])


def test_upsample_nearest_repeats() -> None:
    x = rnd(1, 2, 2, 3)
    m = model_of("Upsample", {"x": x}, {"s": np.array([1, 1, 2, 3], np.float32)}, opset=9, mode="nearest")
    want = x.repeat(2, axis=2).repeat(3, axis=3)
    np.testing.assert_array_equal(ours(m, {"x": x})[0], want)


def test_resize_nearest_antialias_is_unsupported() -> None:
    x = rnd(1, 1, 4, 4)
    m = _model("Resize", {"x": x}, {"_skip_roi": _EMPTY, "s": np.array([1, 1, 2, 2], np.float32)}, [like(x, (1, 1, 8, 8))], 19,
               dict(mode="nearest", antialias=1))
    with pytest.raises(UnsupportedError, match="antialias"):
        backend.prepare(m)


# -- Attention -----------------------------------------------------------------------------------


def test_attention_gqa_causal_bool_mask_past_present() -> None:
    inputs = {"q": rnd(2, 4, 3, 8), "k": rnd(2, 2, 3, 8), "v": rnd(2, 2, 3, 5),
              "m": rng.random((3, 5)) > 0.3, "pk": rnd(2, 2, 2, 8), "pv": rnd(2, 2, 2, 5)}
    check("Attention", inputs, n_out=4, opset=23, is_causal=1, qk_matmul_output_mode=3, rtol=1e-4)


def test_attention_3d_softcap_scale_float_mask_short() -> None:
    inputs = {"q": rnd(2, 3, 12), "k": rnd(2, 5, 12), "v": rnd(2, 5, 6), "m": rnd(3, 4)}
    check("Attention", inputs, n_out=1, opset=23, q_num_heads=2, kv_num_heads=2, softcap=1.5, scale=0.3,
          rtol=1e-4)


def test_attention_window_and_nonpad() -> None:
    inputs = {"q": rnd(2, 2, 3, 4), "k": rnd(2, 2, 6, 4), "v": rnd(2, 2, 6, 4)}
    consts: dict[str, np.ndarray] = {"_skip3": _EMPTY, "_skip4": _EMPTY, "_skip5": _EMPTY,
                                     "n": np.array([4, 6], np.int64)}
    check("Attention", inputs, consts, opset=25, is_causal=1, left_window_size=1, right_window_size=0,
          rtol=1e-4)


def test_attention_mode0_with_softcap_is_unsupported() -> None:
    m = model_of("Attention", {"q": rnd(1, 1, 2, 4), "k": rnd(1, 1, 2, 4), "v": rnd(1, 1, 2, 4)}, n_out=4,
                 opset=23, softcap=2.0)
    with pytest.raises(UnsupportedError, match="qk_matmul_output_mode=0"):
        backend.prepare(m)


# -- the rest ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, axes", [([3, 7], None), ([2, 5], [-2, -1]), ([6], [1])])
def test_center_crop_pad(shape: list[int], axes: list[int] | None) -> None:
    extra: dict[str, Any] = {"axes": axes} if axes else {}
    x = rnd(5, 4) if axes is None else rnd(2, 5, 4)
    check("CenterCropPad", {"x": x}, {"s": np.array(shape, np.int64)}, opset=18, **extra)


def test_reverse_sequence_batch_major() -> None:
    check("ReverseSequence", {"x": rnd(3, 4, 2)}, {"n": np.array([4, 1, 0], np.int64)}, batch_axis=0,
          time_axis=1)


def test_max_unpool_3d() -> None:
    x = rnd(1, 2, 2, 2, 2)
    idx = (np.arange(16).reshape(1, 2, 2, 2, 2) * 8 + rng.integers(0, 8, (1, 2, 2, 2, 2))).astype(np.int64)
    m = model_of("MaxUnpool", {"x": x}, {"i": idx}, kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    want = np.zeros(2 * 4 * 4 * 4, np.float32)
    want[idx.reshape(-1)] = x.reshape(-1)
    np.testing.assert_array_equal(ours(m, {"x": x})[0], want.reshape(1, 2, 4, 4, 4))


def test_max_unpool_other_output_shape_is_unsupported() -> None:
    m = model_of("MaxUnpool", {"x": rnd(1, 1, 2, 2)}, {"i": np.zeros((1, 1, 2, 2), np.int64),
                                                        "o": np.array([1, 1, 5, 5], np.int64)},
                 kernel_shape=[2, 2], strides=[2, 2])
    with pytest.raises(UnsupportedError, match="output_shape"):
        backend.prepare(m)


def test_col2im_strided_dilated_padded() -> None:
    x = rnd(2, 2 * 6, 12)
    check("Col2Im", {"x": x}, {"img": np.array([5, 7], np.int64), "blk": np.array([2, 3], np.int64)},
          opset=18, strides=[2, 1], dilations=[1, 2], pads=[1, 0, 0, 1])


@pytest.mark.parametrize("op, inputs, consts, attrs", [
    ("ConvTranspose", {"x": rnd(2, 3, 4, 5)}, {"w": rnd(3, 2, 3, 3)}, dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ("Resize", {"x": rnd(2, 3, 4, 5)}, {"_skip_roi": _EMPTY, "s": np.array([2.0, 1.5], np.float32)},
     dict(mode="linear", axes=[2, 3])),
    ("Attention", {"q": rnd(2, 3, 8), "k": rnd(2, 4, 4), "v": rnd(2, 4, 6)}, {},
     dict(q_num_heads=2, kv_num_heads=1, is_causal=1)),
    ("LpPool", {"x": rnd(2, 3, 6, 5)}, {}, dict(kernel_shape=[2, 2], p=2, auto_pad="SAME_LOWER")),
])
def test_symbolic_batch(op: str, inputs: dict, consts: dict, attrs: dict) -> None:
    """A symbolic batch dim imports (only the dims a converter computes with must be static)."""
    m = model_of(op, inputs, consts, opset=23 if op == "Attention" else 19, **attrs)
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    want = reference(m, inputs)[0]
    g = backend.prepare(m).graph
    assert g is not None and g.inputs[0].type.shape[0] == "batch"
    np.testing.assert_allclose(ours(m, inputs)[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation, past", [("silu", True), ("none", False)])
def test_causal_conv_with_state(activation: str, past: bool) -> None:
    inputs = {"x": rnd(2, 3, 5)}
    consts = {"w": rnd(3, 1, 3), "b": rnd(3)} | ({"s": rnd(2, 3, 2)} if past else {})
    check("CausalConvWithState", inputs, consts, n_out=2, opset=27, activation=activation)


def test_tensor_scatter_circular() -> None:
    check("TensorScatter", {"c": rnd(2, 3, 5, 4)}, {"u": rnd(2, 3, 3, 4), "i": np.array([3, 1], np.int64)},
          opset=24, mode="circular")


def test_conv_integer_per_channel_zero_points() -> None:
    x = rng.integers(0, 255, (1, 2, 5, 5)).astype(np.uint8)
    consts = {"w": rng.integers(0, 255, (3, 2, 2, 2)).astype(np.uint8), "xz": np.array(128, np.uint8),
              "wz": np.array([1, 200, 7], np.uint8)}
    check("ConvInteger", {"x": x}, consts, opset=10, pads=[1, 0, 0, 1], strides=[2, 1])
