"""Shape inference with symbolic dims, error messages, costs, and symbolic Exprs."""

from __future__ import annotations

import numpy as np
import pytest

from tensoropt.errors import ShapeError, UnknownOpError
from tensoropt.interp import evaluate_expr
from tensoropt.ir.types import TensorType
from tensoropt.ops import get_op, infer_node_types
from tensoropt.ops.movement import split_expr
from tensoropt.ops.shapes import broadcast, window_out


def T(s: str) -> TensorType:
    """``T("f32[batch, 3]")``."""
    dt, dims = s.rstrip("]").split("[")
    return TensorType(dt, tuple(int(d) if d.strip().isdigit() else d.strip()
                                for d in dims.split(",") if d.strip()))


def shape_of(op: str, ins: list[str], **attrs: object) -> str:
    return str(infer_node_types(op, [T(s) for s in ins], attrs)[0])


# -- broadcasting ---------------------------------------------------------------------


def test_broadcast_symbols() -> None:
    assert broadcast([("batch", 3), (1, 3)]) == ("batch", 3)
    assert broadcast([("batch", 1), (4,)]) == ("batch", 4)
    assert broadcast([("batch", 3), ("batch", 1)]) == ("batch", 3)
    with pytest.raises(ShapeError, match=r"input 0 shape \[batch, 3\] with input 1 shape \[seq, 3\]: batch vs seq"):
        broadcast([("batch", 3), ("seq", 3)])
    with pytest.raises(ShapeError, match="batch vs 4"):
        broadcast([("batch",), (4,)])


def test_broadcast_error_through_infer() -> None:
    with pytest.raises(ShapeError, match=r"input 1 shape \[4, seq\]"):
        shape_of("add", ["f32[batch, seq]", "f32[4, seq]"])
    with pytest.raises(ShapeError, match="3 vs 4"):
        shape_of("mul", ["f32[2, 3]", "f32[4]"])


# -- symbolic inference -----------------------------------------------------------------


@pytest.mark.parametrize("op, ins, attrs, want", [
    ("matmul", ["f32[batch, 512]", "f32[512, 256]"], {}, "f32[batch, 256]"),
    ("einsum", ["f32[batch, seq, 64]", "f32[64, 32]"], {"equation": "bsk,kn->bsn"}, "f32[batch, seq, 32]"),
    ("matmul", ["f32[batch, heads, seq, 64]", "f32[batch, heads, 64, seq]"], {},
     "f32[batch, heads, seq, seq]"),
    ("reshape", ["f32[batch, 12, 64]"], {"shape": [0, -1]}, "f32[batch, 768]"),
    ("reshape", ["f32[batch, seq, 768]"], {"shape": [0, 0, 12, 64]}, "f32[batch, seq, 12, 64]"),
    ("reshape", ["f32[2, seq, 4]"], {"shape": [8, -1]}, "f32[8, seq]"),
    ("flatten", ["f32[batch, 512, 1, 1]"], {}, "f32[batch, 512]"),
    ("conv2d", ["f32[batch, 3, 224, 224]", "f32[64, 3, 7, 7]"],
     {"strides": [2, 2], "pads": [3, 3, 3, 3]}, "f32[batch, 64, 112, 112]"),
    ("conv2d", ["f32[1, 8, h, w]", "f32[4, 8, 1, 1]"], {}, "f32[1, 4, h, w]"),
    ("maxpool2d", ["f32[batch, 64, 112, 112]"],
     {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, "f32[batch, 64, 56, 56]"),
    ("maxpool2d", ["f32[1, 96, 109, 109]"], {"kernel": [3, 3], "strides": [2, 2], "ceil_mode": True},
     "f32[1, 96, 54, 54]"),
    ("global_avgpool", ["f32[batch, 1024, h, w]"], {}, "f32[batch, 1024, 1, 1]"),
    ("softmax", ["f32[batch, heads, seq, seq]"], {}, "f32[batch, heads, seq, seq]"),
    ("slice", ["f32[batch, 10]"], {"starts": [0, 2], "ends": [2**63 - 1, 5]}, "f32[batch, 3]"),
    ("concat", ["f32[batch, 3]", "f32[batch, 5]"], {"axis": -1}, "f32[batch, 8]"),
    ("split", ["f32[batch, seq, 2304]"], {"axis": 2, "split": [768, 768, 768]},
     "f32[batch, seq, 768]"),
    ("gather", ["f32[50257, 768]", "i64[batch, seq]"], {}, "f32[batch, seq, 768]"),
    ("embedding", ["f32[50257, 768]", "i64[batch, seq]"], {}, "f32[batch, seq, 768]"),
    ("where", ["bool[1, 1, seq, seq]", "f32[batch, 12, seq, seq]", "f32[]"], {},
     "f32[batch, 12, seq, seq]"),
    ("reduce_mean", ["f32[batch, seq, 768]"], {"axes": [-1]}, "f32[batch, seq, 1]"),
    ("squeeze", ["f32[batch, 1, seq]"], {}, "f32[batch, seq]"),
    ("unsqueeze", ["f32[batch, seq]"], {"axes": [1, -1]}, "f32[batch, 1, seq, 1]"),
    ("transpose", ["f32[batch, seq, 12, 64]"], {"perm": [0, 2, 1, 3]}, "f32[batch, 12, seq, 64]"),
    ("expand", ["f32[batch, 1]"], {"shape": [1, 4]}, "f32[batch, 4]"),
    ("less", ["f32[batch]", "f32[1]"], {}, "bool[batch]"),
    ("cast", ["i64[batch]"], {"to": "f16"}, "f16[batch]"),
    ("gemm", ["f32[batch, 256]", "f32[10, 256]", "f32[10]"], {"trans_b": 1}, "f32[batch, 10]"),
])
def test_symbolic_infer(op: str, ins: list[str], attrs: dict, want: str) -> None:
    assert shape_of(op, ins, **attrs) == want


def test_split_infers_every_output() -> None:
    outs = infer_node_types("split", [T("f32[4, 7]")], {"axis": 1, "split": [2, 5]})
    assert [str(o) for o in outs] == ["f32[4, 2]", "f32[4, 5]"]


def test_window_out_ceil_mode() -> None:
    assert window_out(7, 2, 2, 0, 0, ceil_mode=True) == 4
    assert window_out(7, 2, 2, 0, 0) == 3
    # The last window would start in the high pad: dropped (PyTorch rule).
    assert window_out(6, 3, 2, 1, 1, ceil_mode=True) == 4
    assert window_out(5, 2, 2, 0, 1, ceil_mode=True) == 3


# -- error messages -----------------------------------------------------------------------


@pytest.mark.parametrize("op, ins, attrs, msg", [
    ("matmul", ["f32[batch, 512]", "f32[784, 256]"], {},
     r"input 1 has shape \[784, 256\], expected dim 0 == 512"),
    ("matmul", ["f32[512]", "f32[2, 3, 4]"], {}, r"input 1 has shape \[2, 3, 4\], expected dim 1 == 512"),
    ("gemm", ["f32[batch, 512]", "f32[784, 256]"], {},
     r"input 1 has shape \[784, 256\], expected 2-D with dim 0 == 512"),
    ("batch_matmul", ["f32[2, 3, 4]", "f32[3, 4, 5]"], {}, r"input 1 has shape \[3, 4, 5\]"),
    ("einsum", ["f32[2, 3]", "f32[4, 5]"], {"equation": "ij,jk->ik"}, r"j"),
    ("einsum", ["f32[2, 3]"], {"equation": "ijk->i"}, r"rank|ndim|dims"),
    ("matmul", ["f32[2, 3]", "f64[3, 4]"], {}, "input 1 has dtype f64, expected f32"),
    ("conv2d", ["f32[1, 3, 8, 8]", "f32[4, 2, 3, 3]"], {},
     r"input 1 has shape \[4, 2, 3, 3\], expected dim 1 == 3"),
    ("conv2d", ["f32[1, 6, 8, 8]", "f32[4, 6, 3, 3]"], {"group": 2},
     r"input 1 has shape \[4, 6, 3, 3\], expected dim 1 == 3 \(input channels 6 / group 2\)"),
    ("conv2d", ["f32[1, 3, 8, 8]", "f32[4, 1, 3, 3]"], {"group": 2}, "group=2 must be >= 1 and divide"),
    ("conv2d", ["f32[1, 3, 8]", "f32[4, 3, 3, 3]"], {}, r"input 0 has shape \[1, 3, 8\], expected 4-D"),
    ("conv2d", ["f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", "f32[3]"], {}, r"input 2 has shape \[3\], expected \[4\]"),
    ("conv2d", ["f32[1, 3, h, 8]", "f32[4, 3, 3, 3]"], {}, "symbolic spatial dim 'h'"),
    ("conv2d", ["f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]"], {"pads": [1, 1]}, r"pads=\[1, 1\] needs 4 values"),
    ("conv2d", ["i64[1, 3, 8, 8]", "i64[4, 3, 3, 3]"], {}, "input 0 has dtype i64, expected a float"),
    ("reshape", ["f32[2, 3]"], {"shape": [4, -1]}, r"cannot reshape input 0 of shape \[2, 3\] to shape=\[4, -1\]"),
    ("reshape", ["f32[2, 3]"], {"shape": [-1, -1]}, "more than one -1"),
    ("reshape", ["f32[batch, 4]"], {"shape": [-1]}, r"cannot reshape input 0 of shape \[batch, 4\]"),
    ("reshape", ["f32[batch, 4]"], {"shape": [4, 0, 0]}, "0 at position 2 has no input dim"),
    ("relu", ["f32[2]"], {"foo": 1}, r"unknown attribute 'foo' of relu \(valid: none\)"),
    ("softmax", ["f32[2]"], {"axes": 1}, r"unknown attribute 'axes' of softmax \(valid: axis\)"),
    ("reshape", ["f32[2]"], {}, "reshape needs attribute 'shape' \\(ints\\)"),
    ("maxpool2d", ["f32[1, 1, 4, 4]"], {}, "maxpool2d needs attribute 'kernel'"),
    ("transpose", ["f32[2, 3]"], {"perm": "x"}, "attribute perm='x' of transpose must be ints"),
    ("transpose", ["f32[2, 3]"], {"perm": [0, 0]}, r"perm=\[0, 0\] is not a permutation"),
    ("add", ["f32[2]"], {}, "add takes 2 inputs, got 1"),
    ("concat", [], {"axis": 0}, "concat takes at least 1 inputs, got 0"),
    ("concat", ["f32[2, 3]", "f32[3, 3]"], {"axis": 1}, r"input 1 has shape \[3, 3\], expected \[2, 3\] outside axis 1"),
    ("split", ["f32[2, 7]"], {"axis": 1, "split": [3, 3]}, r"split=\[3, 3\] must be non-negative sizes summing"),
    ("softmax", ["f32[2, 3]"], {"axis": 2}, r"axis 2 is out of range for rank 2"),
    ("gelu", ["f32[2]"], {"approximate": "fast"}, "approximate='fast' is not one of: none, tanh"),
    ("cast", ["f32[2]"], {"to": "float"}, "to='float' is not one of: f32"),
    ("gather", ["f32[4, 3]", "f32[2]"], {}, "input 1 has dtype f32, expected i64 or i32"),
    ("where", ["f32[2]", "f32[2]", "f32[2]"], {}, "input 0 has dtype f32, expected bool"),
    ("batchnorm", ["f32[1, 3, 2, 2]", "f32[3]", "f32[3]", "f32[4]", "f32[3]"], {},
     r"input 3 has shape \[4\], expected \[3\] \(mean per channel\)"),
    ("layernorm", ["f32[2, 4]", "f32[5]"], {}, r"input 1 has shape \[5\], expected a shape that broadcasts to \[4\]"),
    ("gemm", ["f32[3, 4]", "f32[4, 5]", "f32[4, 5]"], {}, r"input 2 has shape \[4, 5\]"),
    ("slice", ["f32[batch, 4]"], {"starts": [1], "ends": [3]}, "symbolic dim 'batch' can only be sliced whole"),
    ("slice", ["f32[5]"], {"starts": [1], "ends": [3], "steps": [0]}, "has a 0 step"),
    ("squeeze", ["f32[2, 3]"], {"axes": [0]}, r"expected dim 0 == 1 \(squeezed\)"),
    ("expand", ["f32[3]"], {"shape": [2, 4]}, r"input 0 has shape \[3\], which does not broadcast with shape=\[2, 4\]"),
    ("pad", ["f32[2, 3]"], {"pads": [1, 1]}, r"pads=\[1, 1\] needs 4 values"),
    ("flatten", ["f32[batch, seq, 4]"], {}, "multiplies to a non-simple symbolic size"),
])
def test_shape_errors(op: str, ins: list[str], attrs: dict, msg: str) -> None:
    with pytest.raises(ShapeError, match=msg):
        shape_of(op, ins, **attrs)


def test_unknown_op() -> None:
    with pytest.raises(UnknownOpError, match="unknown op 'convolution'; registered ops: abs, add"):
        infer_node_types("convolution", [], {})


def test_bool_attrs_accept_onnx_ints() -> None:
    assert shape_of("gemm", ["f32[4, 3]", "f32[4, 5]"], trans_a=1) == "f32[3, 5]"
    with pytest.raises(ShapeError, match="must be bool"):
        shape_of("gemm", ["f32[4, 3]", "f32[4, 5]"], trans_a=2)


# -- costs ---------------------------------------------------------------------------------


def _cost(op: str, ins: list[str], **attrs: object):
    r = get_op(op)
    ts = [T(s) for s in ins]
    a = r.with_defaults(attrs)
    return r.cost(ts, r.infer(ts, a), a)


def test_costs() -> None:
    c = _cost("matmul", ["f32[2, 3]", "f32[3, 4]"])
    assert (c.flops, c.bytes) == (2 * 2 * 3 * 4, (6 + 12 + 8) * 4)
    c = _cost("conv2d", ["f32[1, 64, 56, 56]", "f32[64, 64, 3, 3]"], pads=[1, 1, 1, 1])
    assert c.flops == 2 * 56 * 56 * 64 * 64 * 9
    c = _cost("add", ["f32[2, 3]", "f32[3]"])
    assert (c.flops, c.bytes) == (6, (6 + 3 + 6) * 4)
    c = _cost("reshape", ["f64[2, 3]"], shape=[6])
    assert (c.flops, c.bytes) == (0, 12 * 8)
    # Symbols count as 1: costs stay ints.
    c = _cost("matmul", ["f32[batch, 3]", "f32[3, 4]"])
    assert (c.flops, c.bytes) == (2 * 3 * 4, (3 + 12 + 4) * 4)


# -- Exprs over symbolic shapes ------------------------------------------------------------

SYMBOLIC = [
    ("softmax", ["f32[batch, seq]"], {}),
    ("log_softmax", ["f32[batch, seq]"], {"axis": 0}),
    ("reduce_mean", ["f32[batch, seq, 4]"], {"axes": [1, 2]}),
    ("layernorm", ["f32[batch, seq]", "f32[seq]", "f32[seq]"], {}),
    ("global_avgpool", ["f32[batch, 2, h, w]"], {}),
    ("reshape", ["f32[batch, 3, 4]"], {"shape": [0, -1]}),
    ("reshape", ["f32[batch, 6, seq]"], {"shape": [0, 2, 3, -1]}),
    ("flatten", ["f32[batch, 3, 1, 1]"], {}),
    ("matmul", ["f32[batch, 3]", "f32[3, 2]"], {}),
    ("conv2d", ["f32[batch, 4, h, w]", "f32[2, 4, 1, 1]", "f32[2]"], {}),
    ("add", ["f32[batch, seq]", "f32[seq]"], {}),
    ("concat", ["f32[batch, 2]", "f32[batch, 3]"], {"axis": 1}),
    ("transpose", ["f32[batch, seq, 3]"], {"perm": [2, 0, 1]}),
    ("squeeze", ["f32[batch, 1, seq]"], {}),
    ("where", ["bool[batch, 1]", "f32[batch, seq]", "f32[1]"], {}),
]


@pytest.mark.parametrize("op, ins, attrs", SYMBOLIC, ids=[s[0] + "-" + ",".join(s[1]) for s in SYMBOLIC])
def test_symbolic_expr_matches_eval(op: str, ins: list[str], attrs: dict) -> None:
    binding = {"batch": 2, "seq": 3, "h": 2, "w": 3}
    rules = get_op(op)
    ts = [T(s) for s in ins]
    a = rules.with_defaults(attrs)
    scope = rules.expr([f"x{k}" for k in range(len(ts))], ts, a)
    assert scope is not None
    assert scope.shape == rules.infer(ts, a)[0].shape
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1, 1, t.concrete(binding)) > 0 if t.dtype == "bool"
          else rng.uniform(-1, 1, t.concrete(binding)) for t in ts]
    want = rules.eval(xs, a)[0]
    got = evaluate_expr(scope, {f"x{k}": x for k, x in enumerate(xs)}, binding)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_split_expr_for_every_output() -> None:
    r = get_op("split")
    x = np.arange(14.0).reshape(2, 7)
    a = r.with_defaults({"axis": 1, "split": [2, 1, 4]})
    outs = r.eval([x], a)
    for k, want in enumerate(outs):
        got = evaluate_expr(split_expr(["x"], [T("f64[2, 7]")], a, k), {"x": x})
        np.testing.assert_array_equal(got, want)
