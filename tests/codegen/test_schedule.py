"""CPU/CUDA default schedules: correctness against NumPy and rule selection."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, te, tirx

from tensoropt.codegen.schedule import classify, cuda_target, host_target, last_report, schedule_module
from tensoropt.codegen.schedule_conv import conv2d_te, pad_nchw

TARGET = host_target()
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- TE builders
def matmul(a: te.Tensor, b: te.Tensor) -> te.Tensor:
    k = te.reduce_axis((0, a.shape[-1]), "k")
    return te.compute((a.shape[0], b.shape[1]), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="matmul")


def bmm_bcast(a: te.Tensor, b: te.Tensor) -> te.Tensor:
    """(B, M, K) x (1, K, N): broadcast batch on the right operand."""
    k = te.reduce_axis((0, a.shape[-1]), "k")
    return te.compute(
        (a.shape[0], a.shape[1], b.shape[2]),
        lambda n, i, j: te.sum(a[n, i, k] * b[0, k, j], axis=k),
        name="bmm",
    )


def dense(x: te.Tensor, w: te.Tensor) -> te.Tensor:
    k = te.reduce_axis((0, x.shape[1]), "k")
    return te.compute((x.shape[0], w.shape[0]), lambda i, j: te.sum(x[i, k] * w[j, k], axis=k), name="dense")


def bias_add(y: te.Tensor, b: te.Tensor) -> te.Tensor:
    return te.compute(y.shape, lambda i, j: y[i, j] + b[j], name="bias")


def relu(y: te.Tensor) -> te.Tensor:
    return te.compute(y.shape, lambda *i: te.max(y(*i), tirx.const(0.0, "float32")), name="relu")


def maxpool(x: te.Tensor) -> te.Tensor:
    p = pad_nchw(x, (1, 1, 1, 1), value=-np.inf)
    r = te.reduce_axis((0, 3), "r")
    s = te.reduce_axis((0, 3), "s")
    n, c, h, w = x.shape
    return te.compute((n, c, h // 2, w // 2), lambda b, ch, y, xx: te.max(p[b, ch, y * 2 + r, xx * 2 + s], axis=[r, s]),
                      name="maxpool")


def softmax(x: te.Tensor) -> te.Tensor:
    n, m = x.shape
    k1 = te.reduce_axis((0, m), "k1")
    mx = te.compute((n,), lambda i: te.max(x[i, k1], axis=k1), name="max")
    ex = te.compute((n, m), lambda i, j: te.exp(x[i, j] - mx[i]), name="exp")
    k2 = te.reduce_axis((0, m), "k2")
    sm = te.compute((n,), lambda i: te.sum(ex[i, k2], axis=k2), name="sum")
    return te.compute((n, m), lambda i, j: ex[i, j] / sm[i], name="softmax")


def layernorm(x: te.Tensor, g: te.Tensor, b: te.Tensor) -> te.Tensor:
    n, m = x.shape
    k1 = te.reduce_axis((0, m), "k1")
    total = te.compute((n,), lambda i: te.sum(x[i, k1], axis=k1), name="total")
    mean = te.compute((n,), lambda i: total[i] / tirx.const(float(int(m)), "float32"), name="mean")
    k2 = te.reduce_axis((0, m), "k2")
    sq = te.compute((n,), lambda i: te.sum((x[i, k2] - mean[i]) * (x[i, k2] - mean[i]), axis=k2), name="sq")
    return te.compute(
        (n, m),
        lambda i, j: (x[i, j] - mean[i]) / te.sqrt(sq[i] / tirx.const(float(int(m)), "float32") + 1e-5) * g[j] + b[j],
        name="ln",
    )


def reduce_axis1(x: te.Tensor) -> te.Tensor:
    n, c, h, w = x.shape
    r = te.reduce_axis((0, c), "r")
    return te.compute((n, h, w), lambda b, y, xx: te.sum(x[b, r, y, xx], axis=r), name="rsum")


# ---------------------------------------------------------------- harness
def _build(emit, shapes: list[tuple]) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(s, "float32")) for i, s in enumerate(shapes)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(emit(bb, *params))
        bb.emit_func_output(out)
    mod = bb.get()
    for p in (relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps(), relax.transform.FuseTIR()):
        mod = p(mod)
    return mod


def _run(mod: tvm.IRModule, args: list[np.ndarray]) -> np.ndarray:
    scheduled = schedule_module(mod, TARGET)
    ex = tvm.compile(scheduled, target=TARGET)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape, dtype=np.float32)


def _rules() -> list[str]:
    return list(last_report.values())


def _conv_ref(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, f, oh, ow), np.float64)
    fg = f // groups
    for o in range(f):
        g = o // fg
        for r in range(kh):
            for s in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, r:r + stride * oh:stride, s:s + stride * ow:stride]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, r, s])
    return out.astype(np.float32)


# ---------------------------------------------------------------- CPU tests
def test_host_target_has_cpu_and_cores() -> None:
    assert TARGET.kind.name == "llvm"
    assert int(TARGET.attrs["num-cores"]) >= 1


def test_matmul_static() -> None:
    a, b = _rand(64, 96), _rand(96, 80)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_matmul_symbolic_m() -> None:
    m = tirx.Var("m", "int64")
    a, b = _rand(37, 96), _rand(96, 64)
    mod = _build(lambda bb, x, y: bb.emit_te(matmul, x, y), [(m, 96), (96, 64)])
    out = _run(mod, [a, b])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_matmul_packed_b() -> None:
    a, b = _rand(256, 64), _rand(64, 128)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert "pack=yes" in _rules()[0]


def test_batch_matmul_broadcast() -> None:
    a, b = _rand(4, 64, 32), _rand(1, 32, 48)
    out = _run(_build(lambda bb, x, y: bb.emit_te(bmm_bcast, x, y), [a.shape, b.shape]), [a, b])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_dense_bias_relu_epilogue() -> None:
    x, w, b = _rand(32, 64), _rand(48, 64), _rand(48)

    def emit(bb, xv, wv, bv):
        y = bb.emit_te(dense, xv, wv)
        y = bb.emit_te(bias_add, y, bv)
        return bb.emit_te(relu, y)

    mod = _build(emit, [x.shape, w.shape, b.shape])
    assert len([f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)]) == 1  # fused
    out = _run(mod, [x, w, b])
    np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), rtol=1e-4, atol=1e-4)
    assert "pack=yes" in _rules()[0]  # B is transposed: packing makes it contiguous


@pytest.mark.parametrize("form", ["direct", "im2col"])
def test_conv2d_pad_stride(form: str) -> None:
    x, w = _rand(1, 8, 15, 15), _rand(16, 8, 3, 3)
    mod = _build(lambda bb, xv, wv: bb.emit_te(conv2d_te, xv, wv, 2, 1, 1, 1, form), [x.shape, w.shape])
    out = _run(mod, [x, w])
    np.testing.assert_allclose(out, _conv_ref(x, w, 2, 1, 1), rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_conv2d_1x1_fuses_spatial_axes() -> None:
    x, w = _rand(1, 32, 8, 8), _rand(32, 32, 1, 1)
    mod = _build(lambda bb, xv, wv: bb.emit_te(conv2d_te, xv, wv, 1, 0, 1, 1), [x.shape, w.shape])
    out = _run(mod, [x, w])
    np.testing.assert_allclose(out, _conv_ref(x, w, 1, 0, 1), rtol=1e-4, atol=1e-4)
    assert "fuse=2" in _rules()[0]


# Outputs whose fused (y, x) axis is not tiled in whole rows by the vector
# width: the GEMM rule used to copy out whole rows per tile (reading other
# tiles' accumulators), which broke im2col and 1x1 convs above ~16x16.
_FUSED_CONV_CASES = [
    # (C, F, H, K, stride, pad, bias+relu)
    (8, 16, 40, 3, 1, 1, False),     # 40x40 output
    (3, 64, 224, 3, 2, 0, True),     # squeezenet conv1: 111x111 output
    (3, 64, 224, 7, 2, 3, False),    # resnet conv1: 112x112 output
    (64, 64, 56, 3, 1, 1, False),    # resnet 3x3 @56
    (16, 24, 40, 1, 1, 0, True),     # 1x1 direct: fused y*x = 1600
]


def _check_conv_bias_relu(case: tuple, form: str) -> str:
    """Build conv2d (+ bias + relu when the case asks) in ``form``, check it against
    torch, and return the schedule rule the conv kernel got."""
    torch = pytest.importorskip("torch")
    c, f, h, k, stride, pad, epilogue = case
    x, w, b = _rand(1, c, h, h), _rand(f, c, k, k), _rand(f)

    def conv_bias_relu(xt, wt, bt):
        y = conv2d_te(xt, wt, stride, pad, 1, 1, form)
        if not epilogue:
            return y
        return te.compute(y.shape, lambda n, o, i, j: te.max(y[n, o, i, j] + bt[o], tirx.const(0.0, "float32")),
                          name="bias_relu")

    mod = _build(lambda bb, xv, wv, bv: bb.emit_te(conv_bias_relu, xv, wv, bv), [x.shape, w.shape, b.shape])
    out = _run(mod, [x, w, b])
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=pad)
    if epilogue:
        ref = torch.relu(ref + torch.from_numpy(b)[None, :, None, None])
    ref = ref.numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    return _rules()[0]


@pytest.mark.parametrize("form", ["direct", "im2col"])
@pytest.mark.parametrize("case", _FUSED_CONV_CASES, ids=lambda c: "c{}f{}h{}k{}s{}p{}{}".format(*c[:6], "b" * c[6]))
def test_conv2d_large_outputs_match_torch(case, form: str) -> None:
    assert _check_conv_bias_relu(case, form).startswith("gemm")


def test_depthwise_conv_relu() -> None:
    x, w = _rand(1, 8, 20, 20), _rand(8, 1, 3, 3)

    def emit(bb, xv, wv):
        return bb.emit_te(relu, bb.emit_te(conv2d_te, xv, wv, 1, 1, 1, 8))

    out = _run(_build(emit, [x.shape, w.shape]), [x, w])
    np.testing.assert_allclose(out, np.maximum(_conv_ref(x, w, 1, 1, 8), 0), rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_maxpool_neg_inf_pad() -> None:
    x = _rand(1, 4, 16, 16)
    out = _run(_build(lambda bb, xv: bb.emit_te(maxpool, xv), [x.shape]), [x])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ref = np.full((1, 4, 8, 8), -np.inf, np.float32)
    for r in range(3):
        for s in range(3):
            ref = np.maximum(ref, xp[:, :, r:r + 16:2, s:s + 16:2])
    np.testing.assert_allclose(out, ref, rtol=1e-4)
    assert _rules()[0].startswith("reduce")


def test_softmax_rows() -> None:
    x = _rand(32, 256)
    out = _run(_build(lambda bb, xv: bb.emit_te(softmax, xv), [x.shape]), [x])
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert _rules() == ["rows"]


def test_layernorm_rows() -> None:
    x, g, b = _rand(64, 128), _rand(128), _rand(128)
    out = _run(_build(lambda bb, *v: bb.emit_te(layernorm, *v), [x.shape, g.shape, b.shape]), [x, g, b])
    mu = x.mean(axis=1, keepdims=True)
    ref = (x - mu) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5) * g + b
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert _rules() == ["rows"]


def test_reduce_non_last_axis() -> None:
    x = _rand(2, 16, 8, 32)
    out = _run(_build(lambda bb, xv: bb.emit_te(reduce_axis1, xv), [x.shape]), [x])
    np.testing.assert_allclose(out, x.sum(axis=1), rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("reduce")


def test_transpose_elementwise_chain() -> None:
    x = _rand(64, 48, 40)

    def emit(bb, xv):
        t = bb.emit_te(lambda a: te.compute((40, 64, 48), lambda i, j, k: a[j, k, i], name="transpose"), xv)
        t = bb.emit_te(lambda a: te.compute(a.shape, lambda *i: a(*i) * 2.0 + 1.0, name="affine"), t)
        return bb.emit_te(relu, t)

    out = _run(_build(emit, [x.shape]), [x])
    np.testing.assert_allclose(out, np.maximum(x.transpose(2, 0, 1) * 2 + 1, 0), rtol=1e-5)
    assert _rules() == ["injective"]


def test_classify_families() -> None:
    a = te.placeholder((16, 16), name="a")
    b = te.placeholder((16, 16), name="b")
    assert classify(te.create_prim_func([a, b, matmul(a, b)])) == "gemm"
    assert classify(te.create_prim_func([a, softmax(a)])) == "rows"
    assert classify(te.create_prim_func([a, relu(a)])) == "injective"


def test_unschedulable_function_is_left_alone() -> None:
    # A reduction whose body is not a product and whose loops cannot be
    # vectorised/parallelised sensibly must still compile and be correct.
    x = _rand(5, 7)

    def argmaxish(a):
        k = te.reduce_axis((0, 7), "k")
        return te.compute((5,), lambda i: te.sum(te.if_then_else(a[i, k] > 0, a[i, k], 0.0), axis=k), name="possum")

    out = _run(_build(lambda bb, xv: bb.emit_te(argmaxish, xv), [x.shape]), [x])
    np.testing.assert_allclose(out, np.where(x > 0, x, 0).sum(axis=1), rtol=1e-5)


# ---------------------------------------------------------------- CUDA build
def test_cuda_build_matmul_relu_softmax() -> None:
    def emit(bb, xv, wv):
        y = bb.emit_te(relu, bb.emit_te(matmul, xv, wv))
        return bb.emit_te(softmax, y)

    mod = _build(emit, [(64, 128), (128, 256)])
    target = cuda_target()
    scheduled = schedule_module(mod, target)
    assert set(last_report.values()) == {"dlight"}
    ex = tvm.compile(scheduled, target=target)
    assert ex is not None


# ---------------------------------------------------------------- ragged N / M
def _nr(rule: str) -> int:
    return int(rule.split("nr=")[1].split(",")[0].rstrip(")"))


_RAGGED_CONV_CASES = [
    # (C, F, H, K, stride, pad, bias+relu): outputs 111x111, 55x55, 13x13, 7x7
    (3, 64, 224, 3, 2, 0, True),
    (96, 16, 55, 1, 1, 0, False),
    (64, 256, 13, 3, 1, 1, False),
    (512, 512, 7, 3, 1, 1, False),
]


@pytest.mark.parametrize("case", _RAGGED_CONV_CASES, ids=lambda c: "c{}f{}h{}k{}s{}p{}{}".format(*c[:6], "b" * c[6]))
def test_ragged_conv_is_padded_to_full_vectors(case) -> None:
    rule = _check_conv_bias_relu(case, "im2col" if case[3] > 1 else "auto")
    assert rule.startswith("gemm") and "pad=" in rule and _nr(rule) >= 16, rule


@pytest.mark.parametrize("mnk", [(64, 1000, 256), (50, 77, 33)], ids=lambda s: "x".join(map(str, s)))
def test_ragged_matmul_is_padded_to_full_vectors(mnk) -> None:
    m, n, k = mnk
    a, b = _rand(m, k), _rand(k, n)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b])
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    rule = _rules()[0]
    assert rule.startswith("gemm") and _nr(rule) >= 16, rule


def test_divisible_n_is_not_padded() -> None:
    a, b = _rand(64, 96), _rand(96, 128)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b])
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert "pad=" not in _rules()[0]
