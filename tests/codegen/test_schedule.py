"""CPU/CUDA default schedules: correctness against NumPy and rule selection.

Every CPU test runs once per instruction set this host can execute (AVX2
and, where present, AVX-512: see ``tests/codegen/isa.py``), so a tile
choice that is wrong for the other kind of machine fails here too.
Expectations about tile sizes come from the target's own vector width,
never from the host's.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, te, tirx

from tensoropt.codegen.schedule import classify, cuda_target, last_report, schedule_module
from tensoropt.codegen.schedule_analysis import vector_lanes
from tensoropt.codegen.schedule_conv import conv2d_te, pad_nchw

from isa import runnable_targets

RNG = np.random.default_rng(0)


@pytest.fixture(params=sorted(runnable_targets()), scope="module")
def target(request):
    """The llvm target of one instruction set this host runs (module docstring)."""
    return runnable_targets()[request.param]


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


def _run(mod: tvm.IRModule, args: list[np.ndarray], target) -> np.ndarray:
    scheduled = schedule_module(mod, target)
    ex = tvm.compile(scheduled, target=target)
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
def test_host_target_has_cpu_and_cores(target) -> None:
    assert target.kind.name == "llvm"
    assert int(target.attrs["num-cores"]) >= 1


def test_matmul_static(target) -> None:
    a, b = _rand(64, 96), _rand(96, 80)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b], target)
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def _run_sizes(mod: tvm.IRModule, shapes_for, target) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Schedule and build ``mod`` once; run it on ``shapes_for(n)`` for several n."""
    ex = tvm.compile(schedule_module(mod, target), target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = []
    for n in (1, 5, 37):
        args = [_rand(*s) for s in shapes_for(n)]
        out.append((vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy(), args))
    return out


def test_matmul_symbolic_m_is_padded_not_predicated(target) -> None:
    # A symbolic row count is padded to whole register tiles: a predicate on
    # each row of the micro kernel kept the accumulator from shrinking to the
    # tile (2-6x slower than the static GEMM).
    m = tirx.Var("m", "int64")
    mod = _build(lambda bb, x, y: bb.emit_te(matmul, x, y), [(m, 96), (96, 64)])
    for out, (a, b) in _run_sizes(mod, lambda n: [(n, 96), (96, 64)], target):
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    rule = _rules()[0]
    assert rule.startswith("gemm") and "pad=m->" in rule, rule


def test_batch_matmul_symbolic_m_and_n(target) -> None:
    # attention scores: [h, seq, d] x [h, d, seq], both output axes symbolic
    s = tirx.Var("s", "int64")

    def scores(q, k):
        r = te.reduce_axis((0, 16), "r")
        return te.compute((4, q.shape[1], k.shape[2]), lambda h, i, j: te.sum(q[h, i, r] * k[h, r, j], axis=r),
                          name="scores")

    mod = _build(lambda bb, q, k: bb.emit_te(scores, q, k), [(4, s, 16), (4, 16, s)])
    for out, (q, k) in _run_sizes(mod, lambda n: [(4, n, 16), (4, 16, n)], target):
        np.testing.assert_allclose(out, q @ k, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm"), _rules()


def test_softmax_symbolic_rows(target) -> None:
    s = tirx.Var("s", "int64")
    mod = _build(lambda bb, xv: bb.emit_te(softmax, xv), [(8, s)])
    for out, (x,) in _run_sizes(mod, lambda n: [(8, n)], target):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    # small at s = 1 (8 rows of 1): specialized, both sides by the rows rule
    assert _rules() == ["rows | s=1: rows"]


def test_symbolic_batch_gemm_is_specialized_for_batch_one(target) -> None:
    # A fully connected layer with a symbolic batch: the general schedule pads
    # the batch to register tiles; batch 1 takes the static kernel's schedule.
    b = tirx.Var("b", "int64")
    mod = _build(lambda bb, xv, wv: bb.emit_te(dense, xv, wv), [(b, 64), (48, 64)])
    for out, (x, w) in _run_sizes(mod, lambda n: [(n, 64), (48, 64)], target):
        np.testing.assert_allclose(out, x @ w.T, rtol=1e-4, atol=1e-4)
    general, special = _rules()[0].split(" | ")
    assert general.startswith("gemm") and "pad=b->" in general, general
    assert special.startswith("b=1: "), special


def test_symbolic_elementwise_vectorizes_its_static_axis(target) -> None:
    # [seq, 48]: the symbolic axis stays out of the vector loop (no per-lane
    # predicate, no symbolic div/mod in every lane's index)
    s = tirx.Var("s", "int64")
    mod = _build(lambda bb, xv: bb.emit_te(relu, xv), [(s, 48)])
    scheduled = schedule_module(mod, target)
    func = next(f for f in scheduled.functions.values() if isinstance(f, tirx.PrimFunc))
    text = func.script()
    assert "T.vectorized" in text and "T.where" not in text, text
    for out, (x,) in _run_sizes(mod, lambda n: [(n, 48)], target):
        np.testing.assert_allclose(out, np.maximum(x, 0))


def test_matmul_packed_b(target) -> None:
    a, b = _rand(256, 64), _rand(64, 128)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b], target)
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert "pack=yes" in _rules()[0]


def test_batch_matmul_broadcast(target) -> None:
    a, b = _rand(4, 64, 32), _rand(1, 32, 48)
    out = _run(_build(lambda bb, x, y: bb.emit_te(bmm_bcast, x, y), [a.shape, b.shape]), [a, b], target)
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_dense_bias_relu_epilogue(target) -> None:
    x, w, b = _rand(32, 64), _rand(48, 64), _rand(48)

    def emit(bb, xv, wv, bv):
        y = bb.emit_te(dense, xv, wv)
        y = bb.emit_te(bias_add, y, bv)
        return bb.emit_te(relu, y)

    mod = _build(emit, [x.shape, w.shape, b.shape])
    assert len([f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)]) == 1  # fused
    out = _run(mod, [x, w, b], target)
    np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), rtol=1e-4, atol=1e-4)
    assert "pack=yes" in _rules()[0]  # B is transposed: packing makes it contiguous


@pytest.mark.parametrize("form", ["direct", "im2col"])
def test_conv2d_pad_stride(form: str, target) -> None:
    x, w = _rand(1, 8, 15, 15), _rand(16, 8, 3, 3)
    mod = _build(lambda bb, xv, wv: bb.emit_te(conv2d_te, xv, wv, 2, 1, 1, 1, form), [x.shape, w.shape])
    out = _run(mod, [x, w], target)
    np.testing.assert_allclose(out, _conv_ref(x, w, 2, 1, 1), rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_conv2d_1x1_fuses_spatial_axes(target) -> None:
    x, w = _rand(1, 32, 8, 8), _rand(32, 32, 1, 1)
    mod = _build(lambda bb, xv, wv: bb.emit_te(conv2d_te, xv, wv, 1, 0, 1, 1), [x.shape, w.shape])
    out = _run(mod, [x, w], target)
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


def _check_conv_bias_relu(case: tuple, form: str, target) -> str:
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
    out = _run(mod, [x, w, b], target)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=pad)
    if epilogue:
        ref = torch.relu(ref + torch.from_numpy(b)[None, :, None, None])
    ref = ref.numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    return _rules()[0]


@pytest.mark.parametrize("form", ["direct", "im2col"])
@pytest.mark.parametrize("case", _FUSED_CONV_CASES, ids=lambda c: "c{}f{}h{}k{}s{}p{}{}".format(*c[:6], "b" * c[6]))
def test_conv2d_large_outputs_match_torch(case, form: str, target) -> None:
    assert _check_conv_bias_relu(case, form, target).startswith("gemm")


def test_depthwise_conv_relu(target) -> None:
    x, w = _rand(1, 8, 20, 20), _rand(8, 1, 3, 3)

    def emit(bb, xv, wv):
        return bb.emit_te(relu, bb.emit_te(conv2d_te, xv, wv, 1, 1, 1, 8))

    out = _run(_build(emit, [x.shape, w.shape]), [x, w], target)
    np.testing.assert_allclose(out, np.maximum(_conv_ref(x, w, 1, 1, 8), 0), rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm")


def test_maxpool_neg_inf_pad(target) -> None:
    x = _rand(1, 4, 16, 16)
    out = _run(_build(lambda bb, xv: bb.emit_te(maxpool, xv), [x.shape]), [x], target)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ref = np.full((1, 4, 8, 8), -np.inf, np.float32)
    for r in range(3):
        for s in range(3):
            ref = np.maximum(ref, xp[:, :, r:r + 16:2, s:s + 16:2])
    np.testing.assert_allclose(out, ref, rtol=1e-4)
    assert _rules()[0].startswith("reduce")


def test_softmax_rows(target) -> None:
    x = _rand(32, 256)
    out = _run(_build(lambda bb, xv: bb.emit_te(softmax, xv), [x.shape]), [x], target)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert _rules() == ["rows"]


def test_layernorm_rows(target) -> None:
    x, g, b = _rand(64, 128), _rand(128), _rand(128)
    out = _run(_build(lambda bb, *v: bb.emit_te(layernorm, *v), [x.shape, g.shape, b.shape]), [x, g, b], target)
    mu = x.mean(axis=1, keepdims=True)
    ref = (x - mu) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5) * g + b
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert _rules() == ["rows"]


def test_reduce_non_last_axis(target) -> None:
    x = _rand(2, 16, 8, 32)
    out = _run(_build(lambda bb, xv: bb.emit_te(reduce_axis1, xv), [x.shape]), [x], target)
    np.testing.assert_allclose(out, x.sum(axis=1), rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("reduce")


def _global_reduce(x: te.Tensor, kind: str) -> te.Tensor:
    """sum / max over the two trailing axes, or a reducer rfactor does not know."""
    n, c, h, w = x.shape
    r, s = te.reduce_axis((0, h), "r"), te.reduce_axis((0, w), "s")
    if kind == "sum":
        return te.compute((n, c), lambda i, j: te.sum(x[i, j, r, s], axis=[r, s]), name="gsum")
    if kind == "max":
        return te.compute((n, c), lambda i, j: te.max(x[i, j, r, s], axis=[r, s]), name="gmax")
    # |a| + |b| is commutative and associative, but not one of rfactor's reducers
    absum = te.comm_reducer(lambda a, b: tvm.tirx.abs(a) + tvm.tirx.abs(b),
                            lambda t: tvm.tirx.const(0, t), name="absum")
    return te.compute((n, c), lambda i, j: absum(x[i, j, r, s], axis=[r, s]), name="gabs")


@pytest.mark.parametrize("kind", ["sum", "max", "absum"])
def test_long_contiguous_reduction_splits_by_lanes(target, kind: str) -> None:
    # a global pool over 16x16 summed one scalar chain per channel (10 us of
    # the demo's 90); split by the vector width and factored, the partial sums
    # are vectors. A reducer rfactor does not know keeps the inner form.
    x = _rand(2, 24, 16, 16)
    out = _run(_build(lambda bb, xv: bb.emit_te(_global_reduce, xv, kind), [x.shape]), [x], target)
    ref = {"sum": lambda: x.sum(axis=(2, 3)), "max": lambda: x.max(axis=(2, 3)),
           "absum": lambda: np.abs(x).sum(axis=(2, 3))}[kind]()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    lanes = vector_lanes(target)
    if kind == "absum":
        assert _rules() == ["reduce(inner)"]
    else:
        assert _rules() == [f"reduce(split={lanes},reduce(window)+reduce(inner))"]


def test_transpose_elementwise_chain(target) -> None:
    x = _rand(64, 48, 40)

    def emit(bb, xv):
        t = bb.emit_te(lambda a: te.compute((40, 64, 48), lambda i, j, k: a[j, k, i], name="transpose"), xv)
        t = bb.emit_te(lambda a: te.compute(a.shape, lambda *i: a(*i) * 2.0 + 1.0, name="affine"), t)
        return bb.emit_te(relu, t)

    out = _run(_build(emit, [x.shape]), [x], target)
    np.testing.assert_allclose(out, np.maximum(x.transpose(2, 0, 1) * 2 + 1, 0), rtol=1e-5)
    assert _rules() == ["injective"]


def test_classify_families() -> None:
    a = te.placeholder((16, 16), name="a")
    b = te.placeholder((16, 16), name="b")
    assert classify(te.create_prim_func([a, b, matmul(a, b)])) == "gemm"
    assert classify(te.create_prim_func([a, softmax(a)])) == "rows"
    assert classify(te.create_prim_func([a, relu(a)])) == "injective"


def test_unschedulable_function_is_left_alone(target) -> None:
    # A reduction whose body is not a product and whose loops cannot be
    # vectorised/parallelised sensibly must still compile and be correct.
    x = _rand(5, 7)

    def argmaxish(a):
        k = te.reduce_axis((0, 7), "k")
        return te.compute((5,), lambda i: te.sum(te.if_then_else(a[i, k] > 0, a[i, k], 0.0), axis=k), name="possum")

    out = _run(_build(lambda bb, xv: bb.emit_te(argmaxish, xv), [x.shape]), [x], target)
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


def _padded_extents(rule: str) -> dict[int, int]:
    """Original -> padded extent of each iterator the GEMM rule padded ("pad=64->66x...")."""
    if "pad=" not in rule:
        return {}
    spec = rule.split("pad=")[1].rstrip(")")
    return {int(a): int(b) for a, b in (p.split("->") for p in spec.split("x"))}


_RAGGED_CONV_CASES = [
    # (C, F, H, K, stride, pad, bias+relu): outputs 111x111, 55x55, 13x13, 7x7
    (3, 64, 224, 3, 2, 0, True),
    (96, 16, 55, 1, 1, 0, False),
    (64, 256, 13, 3, 1, 1, False),
    (512, 512, 7, 3, 1, 1, False),
]


@pytest.mark.parametrize("case", _RAGGED_CONV_CASES, ids=lambda c: "c{}f{}h{}k{}s{}p{}{}".format(*c[:6], "b" * c[6]))
def test_ragged_conv_is_padded_to_full_vectors(case, target) -> None:
    rule = _check_conv_bias_relu(case, "im2col" if case[3] > 1 else "auto", target)
    # full vectors of the target's own width, whatever the host
    assert rule.startswith("gemm") and "pad=" in rule and _nr(rule) % vector_lanes(target) == 0, rule


@pytest.mark.parametrize("mnk", [(64, 1000, 256), (50, 77, 33)], ids=lambda s: "x".join(map(str, s)))
def test_ragged_matmul_is_padded_to_full_vectors(mnk, target) -> None:
    m, n, k = mnk
    a, b = _rand(m, k), _rand(k, n)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b], target)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    rule = _rules()[0]
    assert rule.startswith("gemm") and _nr(rule) % vector_lanes(target) == 0, rule


def test_divisible_n_is_not_padded(target) -> None:
    a, b = _rand(64, 96), _rand(96, 128)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b], target)
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    # N = 128 is a multiple of any vector tile: never padded. M may be, to a
    # multiple of the register-tile height the target's register count allows
    # (AVX2: 6 rows of 2 vectors, 64 -> 66; AVX-512: 8 rows, none).
    rule = _rules()[0]
    assert 128 not in _padded_extents(rule), rule
    assert all(b % int(rule.split("mr=")[1].split(",")[0]) == 0 for b in _padded_extents(rule).values()), rule


def test_specialized_kernel_whose_dim_is_a_scalar_argument(target) -> None:
    # BERT's position ids: the kernel's only tensor is its output, its symbolic
    # length also comes as an int argument, which specializing removes.
    from tensoropt.codegen.schedule import schedule_prim_func

    n = tirx.Var("n", "int64")
    out = te.compute((n, 3), lambda i, j: (i * 3 + j).astype("float32"), name="iota")
    func = te.create_prim_func([n, out])
    scheduled, label = schedule_prim_func(func, target)
    assert "n=1:" in label, label
    ex = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target=target)
    for k in (1, 5):
        y = tvm.runtime.tensor(np.zeros((k, 3), np.float32))
        ex["main"](k, y)
        np.testing.assert_array_equal(y.numpy(), np.arange(k * 3, dtype=np.float32).reshape(k, 3))


def test_interleaving_epilogue_is_not_inlined_into_the_gemm(target) -> None:
    # out[f, y, x] = Z[(y + 1) % 2, f, y // 2, x], Z a GEMM over fused (row, x)
    # axes (a sub-pixel ConvTranspose's phases): TVM inverted this read wrongly
    # when it inlined the interleave into the GEMM's copy-out and stored out of
    # bounds (heap corruption); reads through // or % now stay a separate pass.
    def phases(w, col):
        k = te.reduce_axis((0, w.shape[1]), "k")
        z = te.compute((2, w.shape[0], 4, 8), lambda p, f, i, x: te.sum(w[f, k] * col[p, k, i, x], axis=k), name="z")
        return te.compute((w.shape[0], 7, 8), lambda f, y, x: z[(y + 1) % 2, f, (y + 1) // 2, x], name="interleave")

    w, col = _rand(4, 8), _rand(2, 8, 4, 8)
    out = _run(_build(lambda bb, a, c: bb.emit_te(phases, a, c), [w.shape, col.shape]), [w, col], target)
    z = np.einsum("fk,pkix->pfix", w, col)
    want = np.stack([z[(y + 1) % 2, :, (y + 1) // 2] for y in range(7)], axis=1)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemm"), _rules()


def test_symbolic_rows_over_fused_axes(target) -> None:
    # One output channel: the GEMM rule tiles the (symbolic) batch as rows and
    # the fused y*x as columns. Cropping the padded batch tile by tile over a
    # fused axis read neighbouring tiles' unwritten values (a wrong answer at
    # batch 3, found by the ConvTranspose tests).
    torch = pytest.importorskip("torch")
    n = tirx.Var("n", "int64")
    mod = _build(lambda bb, xv, wv: bb.emit_te(conv2d_te, xv, wv, 1, 1, 1, 1, "im2col"), [(n, 4, 6, 6), (1, 4, 3, 3)])
    for out, (x, w) in _run_sizes(mod, lambda k: [(k, 4, 6, 6), (1, 4, 3, 3)], target):
        ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert "fuse=2" in _rules()[0] and "pad=n->" in _rules()[0], _rules()


def test_one_row_gemm_with_ragged_columns_is_a_gemv(target) -> None:
    # GPT-2's output layer at one token: x[1, 64] @ W[64, 1001], W contiguous
    # along its (ragged, padded) columns: the one-row micro kernel, no fallback
    a, b = _rand(1, 64), _rand(64, 1001)
    out = _run(_build(lambda bb, x, y: bb.emit_te(matmul, x, y), [a.shape, b.shape]), [a, b], target)
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    assert _rules()[0].startswith("gemv(gemm(mr=1,"), _rules()
