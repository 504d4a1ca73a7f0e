"""Test cases for every registered op: inputs, attributes and an independent reference.

References never call tensoropt's eval: they are torch.nn.functional, plain
NumPy formulas, or naive loops, so a shared bug cannot hide. Shapes are tiny
so the whole table runs in seconds.
"""

from __future__ import annotations

import itertools

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Ref = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


@dataclass
class Case:
    op: str
    inputs: list[np.ndarray]
    ref: Ref
    attrs: dict = field(default_factory=dict)
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.label}" if self.label else self.op


_rng = np.random.default_rng(1234)


def rnd(*shape: int, dtype=np.float32, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return _rng.uniform(lo, hi, size=shape).astype(dtype)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def n(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy()


def torch1(fn: Callable[..., torch.Tensor]) -> Ref:
    """Reference from a torch function of the inputs (as tensors)."""
    return lambda xs: [n(fn(*[t(x) for x in xs]))]


CASES: list[Case] = []


def add(op: str, inputs: list[np.ndarray], ref: Ref, label: str = "", **attrs: object) -> None:
    CASES.append(Case(op, inputs, ref, attrs, label))


# -- elementwise -------------------------------------------------------------------

x34 = rnd(3, 4)
pos34 = rnd(3, 4, lo=0.1, hi=3.0)
add("relu", [x34], torch1(torch.relu))
add("leaky_relu", [x34], torch1(lambda x: F.leaky_relu(x, 0.2)), alpha=0.2)
add("sigmoid", [x34], torch1(torch.sigmoid))
add("tanh", [x34], torch1(torch.tanh))
add("exp", [x34], torch1(torch.exp))
add("log", [pos34], torch1(torch.log))
add("sqrt", [pos34], torch1(torch.sqrt))
add("rsqrt", [pos34], torch1(torch.rsqrt))
add("neg", [x34], torch1(torch.neg))
add("neg", [np.arange(-3, 3, dtype=np.int64)], lambda xs: [-xs[0]], "int")
add("abs", [x34], torch1(torch.abs))
add("erf", [x34], torch1(torch.erf))
add("gelu", [x34], torch1(lambda x: F.gelu(x)))
add("gelu", [x34], torch1(lambda x: F.gelu(x, approximate="tanh")), "tanh", approximate="tanh")
add("clip", [x34], torch1(lambda x: torch.clamp(x, -0.5, 1.0)), min=-0.5, max=1.0)
add("clip", [x34], torch1(lambda x: torch.clamp(x, min=0.0)), "lo", min=0.0)
add("reciprocal", [pos34], torch1(torch.reciprocal))

a3 = rnd(2, 1, 4)
b3 = rnd(3, 1)
add("add", [a3, b3], torch1(torch.add))
add("sub", [a3, b3], torch1(torch.sub))
add("mul", [a3, b3], torch1(torch.mul))
add("div", [a3, rnd(3, 1, lo=0.5, hi=2.0)], torch1(torch.div))
add("div", [np.array([7, -7, 7, -7], np.int64), np.array([2, 2, -2, -2], np.int64)],
    torch1(lambda x, y: torch.div(x, y, rounding_mode="trunc")), "int")
add("pow", [rnd(2, 3, lo=0.5, hi=2.0), rnd(3)], torch1(torch.pow))
add("max", [a3, b3], torch1(torch.maximum))
add("min", [a3, b3], torch1(torch.minimum))
add("less", [a3, b3], torch1(torch.lt))
add("greater", [a3, b3], torch1(torch.gt))
add("equal", [np.array([[1.0, 2.0, 3.0]], np.float32), np.array([[1.0], [3.0]], np.float32)],
    torch1(torch.eq))
add("add", [rnd(4), rnd(2, 3, 1)], torch1(torch.add), "rank")
add("where", [rnd(3, 1) > 0, rnd(1, 4), rnd(3, 4)], torch1(torch.where))

# -- nn -------------------------------------------------------------------------------


def conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides=(1, 1),
             pads=(0, 0, 0, 0), dil=(1, 1), group=1) -> list[np.ndarray]:
    """torch conv2d after an explicit (possibly asymmetric) zero pad."""
    top, left, bottom, right = pads
    xp = F.pad(t(x), (left, right, top, bottom))
    y = F.conv2d(xp, t(w), None if b is None else t(b), stride=strides, dilation=dil, groups=group)
    return [n(y)]


def naive_conv(x, w, b, strides, pads, dil, group):
    """Loop-over-everything conv: the second, torch-free opinion."""
    N, C, H, W = x.shape
    Fo, Cg, KH, KW = w.shape
    sh, sw = strides
    top, left, bottom, right = pads
    OH = (H + top + bottom - (KH - 1) * dil[0] - 1) // sh + 1
    OW = (W + left + right - (KW - 1) * dil[1] - 1) // sw + 1
    y = np.zeros((N, Fo, OH, OW))
    per = Fo // group
    for nn_, f, i, j in itertools.product(range(N), range(Fo), range(OH), range(OW)):
        acc = 0.0 if b is None else float(b[f])
        for c, r, s in itertools.product(range(Cg), range(KH), range(KW)):
            hi, wi = i * sh + r * dil[0] - top, j * sw + s * dil[1] - left
            if 0 <= hi < H and 0 <= wi < W:
                acc += x[nn_, (f // per) * Cg + c, hi, wi] * w[f, c, r, s]
        y[nn_, f, i, j] = acc
    return [y.astype(x.dtype)]


xc = rnd(2, 4, 7, 6)
add("conv2d", [xc, rnd(3, 4, 3, 3), rnd(3)], lambda xs: conv_ref(*xs), "plain")
add("conv2d", [xc, rnd(6, 2, 3, 2)],
    lambda xs: conv_ref(xs[0], xs[1], None, (2, 1), (1, 0, 2, 1), (1, 2), 2), "group-stride-dil",
    strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=2)
add("conv2d", [xc, rnd(4, 1, 3, 3), rnd(4)],
    lambda xs: naive_conv(xs[0], xs[1], xs[2], (1, 2), (1, 1, 1, 1), (1, 1), 4), "depthwise",
    strides=[1, 2], pads=[1, 1, 1, 1], group=4)
add("conv2d", [xc, rnd(5, 4, 1, 1)], lambda xs: conv_ref(xs[0], xs[1], None), "1x1")


def pool_naive(x, k, s, pads, out, reduce, divisor):
    """Naive window loop; ``divisor(i, j, taps_in_input, taps_in_padded)``."""
    N, C, H, W = x.shape
    top, left, bottom, right = pads
    y = np.zeros((N, C) + out, x.dtype)
    for i, j in itertools.product(range(out[0]), range(out[1])):
        vals, inpad = [], 0
        for r, q in itertools.product(range(k[0]), range(k[1])):
            hi, wi = i * s[0] + r - top, j * s[1] + q - left
            if -top <= hi < H + bottom and -left <= wi < W + right:
                inpad += 1
            if 0 <= hi < H and 0 <= wi < W:
                vals.append(x[:, :, hi, wi])
        stack = np.stack(vals)
        y[:, :, i, j] = stack.max(0) if reduce == "max" else stack.sum(0) / divisor(len(vals), inpad)
    return y


xp = rnd(2, 3, 7, 7)
add("maxpool2d", [xp], torch1(lambda x: F.max_pool2d(x, 3, 2, 1)), "pad", kernel=[3, 3],
    strides=[2, 2], pads=[1, 1, 1, 1])
add("maxpool2d", [xp], torch1(lambda x: F.max_pool2d(x, 2, 2, ceil_mode=True)), "ceil",
    kernel=[2, 2], strides=[2, 2], ceil_mode=True)
add("maxpool2d", [xp], lambda xs: [pool_naive(xs[0], (3, 2), (2, 1), (0, 1, 1, 0), (3, 7), "max",
                                              None)], "asym", kernel=[3, 2], strides=[2, 1],
    pads=[0, 1, 1, 0])
add("avgpool2d", [xp], torch1(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)),
    "incl", kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=True)
add("avgpool2d", [xp], torch1(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
    "excl", kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
add("avgpool2d", [xp], torch1(lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True)), "ceil",
    kernel=[2, 2], strides=[2, 2], ceil_mode=True)
add("avgpool2d", [xp], torch1(lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                      count_include_pad=True)), "ceil-incl",
    kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=True, count_include_pad=True)
add("avgpool2d", [xp], torch1(lambda x: F.avg_pool2d(x, 7)), "whole", kernel=[7, 7])
add("global_avgpool", [xp], torch1(lambda x: F.adaptive_avg_pool2d(x, 1)))
add("global_maxpool", [xp], torch1(lambda x: F.adaptive_max_pool2d(x, 1)))
add("lrn", [rnd(2, 7, 3, 3)], torch1(lambda x: F.local_response_norm(x, 5, 1e-2, 0.75, 2.0)),
    size=5, alpha=1e-2, beta=0.75, bias=2.0)
add("lrn", [rnd(1, 4, 2, 2)], torch1(lambda x: F.local_response_norm(x, 3)), "defaults", size=3)
add("batchnorm", [rnd(2, 3, 4, 2), rnd(3), rnd(3), rnd(3), rnd(3, lo=0.5, hi=2.0)],
    torch1(lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, training=False, eps=1e-3)),
    epsilon=1e-3)
add("softmax", [rnd(2, 3, 5)], torch1(lambda x: torch.softmax(x, -1)))
add("softmax", [rnd(2, 3, 5)], torch1(lambda x: torch.softmax(x, 1)), "axis1", axis=1)
add("log_softmax", [rnd(2, 3, 5)], torch1(lambda x: torch.log_softmax(x, 0)), axis=0)
add("layernorm", [rnd(2, 3, 4), rnd(4), rnd(4)],
    torch1(lambda x, s, b: F.layer_norm(x, (4,), s, b, 1e-5)))
add("layernorm", [rnd(2, 3, 4), rnd(3, 4)],
    torch1(lambda x, s: F.layer_norm(x, (3, 4), s, None, 1e-3)), "axis1-nobias", axis=1,
    epsilon=1e-3)

# -- linalg -----------------------------------------------------------------------------

add("matmul", [rnd(3, 4), rnd(4, 5)], torch1(torch.matmul), "2d")
add("matmul", [rnd(2, 1, 3, 4), rnd(3, 4, 2)], torch1(torch.matmul), "batch-bcast")
add("matmul", [rnd(4), rnd(2, 4, 3)], torch1(torch.matmul), "vec-left")
add("matmul", [rnd(2, 3, 4), rnd(4)], torch1(torch.matmul), "vec-right")
add("matmul", [rnd(4), rnd(4)], torch1(torch.matmul), "dot")
add("batch_matmul", [rnd(2, 3, 4), rnd(2, 4, 5)], torch1(torch.bmm))
add("einsum", [rnd(2, 3, 4), rnd(2, 4, 5)], torch1(lambda a, b: torch.einsum("bik,bkj->bij", a, b)), "bmm",
    equation="bik,bkj->bij")
add("einsum", [rnd(3, 3)], lambda xs: [np.array(np.trace(xs[0]), np.float32)], "trace", equation="ii")
add("einsum", [rnd(2, 3, 4), rnd(4)], torch1(lambda a, b: torch.einsum("...k,k->...", a, b)), "ellipsis",
    equation="...k,k->...")
add("gemm", [rnd(3, 4), rnd(4, 5), rnd(5)],
    lambda xs: [0.5 * xs[0] @ xs[1] + 2.0 * xs[2]], "bias", alpha=0.5, beta=2.0)
add("gemm", [rnd(4, 3), rnd(5, 4)], lambda xs: [xs[0].T @ xs[1].T], "trans",
    trans_a=True, trans_b=True)
add("gemm", [rnd(3, 4), rnd(5, 4), rnd(3, 1)], lambda xs: [xs[0] @ xs[1].T + xs[2]], "col",
    trans_b=1)

# -- banded attention (Longformer) ----------------------------------------------------------


def naive_g2bmm(width: int, dilation: int = 1) -> Ref:
    """Y[b, i, w] = A[b, i, :] . B[b, i + D*(w - W), :], rows outside [0, m) reading 0."""

    def ref(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        a, b = xs
        nb, m, k = a.shape
        y = np.zeros((nb, m, 2 * width + 1))
        for bb, i, w in itertools.product(range(nb), range(m), range(2 * width + 1)):
            r = i + dilation * (w - width)
            if 0 <= r < m:
                y[bb, i, w] = sum(float(a[bb, i, kk]) * float(b[bb, r, kk]) for kk in range(k))
        return [y.astype(a.dtype)]

    return ref


def naive_gbmm(width: int, dilation: int = 1) -> Ref:
    """Y[b, i, j] = sum_w P[b, i, w] * V[b, i + D*(w - W), j], rows outside [0, m) reading 0."""

    def ref(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        p, v = xs
        nb, m, n = v.shape
        y = np.zeros((nb, m, n))
        for bb, i, j in itertools.product(range(nb), range(m), range(n)):
            for w in range(2 * width + 1):
                r = i + dilation * (w - width)
                if 0 <= r < m:
                    y[bb, i, j] += float(p[bb, i, w]) * float(v[bb, r, j])
        return [y.astype(v.dtype)]

    return ref


add("g2bmm", [rnd(2, 7, 4), rnd(2, 7, 4)], naive_g2bmm(2), "w2", width=2)
add("g2bmm", [rnd(1, 9, 3), rnd(1, 9, 3)], naive_g2bmm(2, 3), "w2-dil3", width=2, dilation=3)
add("g2bmm", [rnd(2, 5, 3), rnd(2, 5, 3)], naive_g2bmm(0), "w0", width=0)
add("g2bmm", [rnd(1, 3, 2), rnd(1, 3, 2)], naive_g2bmm(4, 2), "band-past-rows", width=4, dilation=2)
add("gbmm", [rnd(2, 7, 5), rnd(2, 7, 3)], naive_gbmm(2), "w2", width=2)
add("gbmm", [rnd(1, 9, 5), rnd(1, 9, 4)], naive_gbmm(2, 3), "w2-dil3", width=2, dilation=3)
add("gbmm", [rnd(2, 5, 1), rnd(2, 5, 3)], naive_gbmm(0), "w0", width=0)
add("gbmm", [rnd(1, 3, 9), rnd(1, 3, 2)], naive_gbmm(4, 2), "band-past-rows", width=4, dilation=2)

# -- reduce ---------------------------------------------------------------------------------

xr = rnd(2, 3, 4)
add("reduce_sum", [xr], torch1(lambda x: torch.sum(x, (0, 2), keepdim=True)), axes=[0, -1])
add("reduce_mean", [xr], torch1(lambda x: torch.mean(x, 1)), axes=[1], keepdims=False)
add("reduce_max", [xr], torch1(lambda x: torch.amax(x, (0, 1, 2), keepdim=True)))
add("reduce_min", [xr], torch1(lambda x: torch.amin(x, (1, 2))), axes=[2, 1], keepdims=False)
add("reduce_prod", [rnd(2, 3)], torch1(lambda x: torch.prod(x, 1, keepdim=True)), axes=[1])

# -- movement ---------------------------------------------------------------------------------

xm = rnd(2, 3, 4)
add("reshape", [xm], lambda xs: [xs[0].reshape(2, 12)], shape=[0, -1])
add("reshape", [xm], lambda xs: [np.reshape(xs[0], (4, 1, 6))], "split", shape=[4, 1, -1])
add("reshape", [rnd(6, 4)], lambda xs: [np.reshape(xs[0], (3, 8))], "regroup", shape=[3, 8])
add("transpose", [xm], torch1(lambda x: x.permute(2, 0, 1)), perm=[2, 0, 1])
add("transpose", [xm], torch1(lambda x: x.permute(2, 1, 0)), "default")
add("flatten", [rnd(2, 3, 1, 2)], torch1(lambda x: torch.flatten(x, 1)))
add("flatten", [xm], lambda xs: [xs[0].reshape(1, 24)], "axis0", axis=0)
add("squeeze", [rnd(1, 3, 1, 2)], torch1(lambda x: x.squeeze()))
add("squeeze", [rnd(1, 3, 1, 2)], torch1(lambda x: x.squeeze(2)), "axis", axes=[-2])
add("unsqueeze", [rnd(3, 2)], torch1(lambda x: x[None, :, None, :]), axes=[0, 2])
add("concat", [rnd(2, 1, 3), rnd(2, 4, 3), rnd(2, 2, 3)], torch1(lambda *x: torch.cat(x, 1)),
    axis=1)
add("split", [rnd(2, 7)], lambda xs: [xs[0][:, :2], xs[0][:, 2:3], xs[0][:, 3:]], axis=1,
    split=[2, 1, 4])
add("slice", [rnd(5, 6)], lambda xs: [xs[0][1:4, 0:6:2]], starts=[1, 0], ends=[-1, 100],
    steps=[1, 2])
add("slice", [rnd(5, 6)], lambda xs: [xs[0][:, [5, 3, 1]]], "neg-step", starts=[-1],
    ends=[-(2**63)], axes=[1], steps=[-2])
add("slice", [rnd(5, 6)], lambda xs: [xs[0][[3, 2], :]], "neg-end", starts=[3], ends=[1],
    axes=[0], steps=[-1])
add("slice", [rnd(5, 6)], lambda xs: [xs[0][:, 0:0]], "empty", starts=[4], ends=[2], axes=[-1])
add("gather", [rnd(4, 3), np.array([[0, 3], [-1, 1]], np.int64)],
    lambda xs: [xs[0][[[0, 3], [3, 1]], :]])
add("gather", [rnd(2, 5, 3), np.array([4, 0], np.int64)],
    torch1(lambda x, i: torch.index_select(x, 1, i)), "axis1", axis=1)
add("embedding", [rnd(10, 4), np.array([[1, 9, 0]], np.int64)], torch1(lambda tb, ids: F.embedding(ids, tb)))
add("pad", [rnd(2, 3)], lambda xs: [np.pad(xs[0], ((1, 0), (2, 3)), constant_values=1.5)],
    pads=[1, 2, 0, 3], value=1.5)
add("pad", [rnd(3, 4)], lambda xs: [np.pad(xs[0], ((0, 0), (2, 0)))[:, :5][1:]], "crop",
    pads=[-1, 2, 0, -1])
add("pad", [rnd(1, 1, 3, 4)], torch1(lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect")),
    "reflect", pads=[0, 0, 2, 1, 0, 0, 1, 2], mode="reflect")
add("pad", [rnd(1, 1, 3, 4)], torch1(lambda x: F.pad(x, (1, 2, 2, 1), mode="replicate")),
    "edge", pads=[0, 0, 2, 1, 0, 0, 1, 2], mode="edge")
add("cast", [rnd(2, 3) * 3], torch1(lambda x: x.to(torch.int32)), to="i32")
add("cast", [np.array([0, 1, 2], np.int64)], lambda xs: [xs[0].astype(bool)], "bool", to="bool")
add("expand", [rnd(3, 1)], torch1(lambda x: x.expand(2, 3, 4)), shape=[2, 1, 4])
add("identity", [xm], lambda xs: [xs[0]])
add("dropout", [xm], lambda xs: [xs[0]], ratio=0.1)



# == spatial (3-D windows, transposed conv) and indexing ops: tensoropt/ops/spatial.py, indexing.py ==

x3d = rnd(2, 4, 5, 6, 4)
add("conv3d", [x3d, rnd(6, 2, 3, 2, 2), rnd(6)],
    torch1(lambda x, w, b: F.conv3d(F.pad(x, (1, 0, 0, 0, 1, 2)), w, b, stride=(2, 1, 1),
                                    dilation=(1, 2, 1), groups=2)),
    "group-stride-dil-asym", strides=[2, 1, 1], pads=[1, 0, 1, 2, 0, 0], dilations=[1, 2, 1], group=2)
add("conv3d", [x3d, rnd(3, 4, 1, 1, 1)], torch1(lambda x, w: F.conv3d(x, w)), "1x1x1")
add("maxpool3d", [x3d], torch1(lambda x: F.max_pool3d(x, (3, 2, 2), (2, 1, 2), (1, 0, 1), ceil_mode=True)),
    "ceil-pad", kernel=[3, 2, 2], strides=[2, 1, 2], pads=[1, 0, 1, 1, 0, 1], ceil_mode=True)
add("maxpool3d", [x3d], torch1(lambda x: F.max_pool3d(x, 2, 1, dilation=(2, 1, 2))), "dil",
    kernel=[2, 2, 2], dilations=[2, 1, 2])
add("avgpool3d", [x3d], torch1(lambda x: F.avg_pool3d(x, (3, 2, 2), (2, 1, 2), (1, 0, 1), ceil_mode=True,
                                                    count_include_pad=False)),
    "excl-ceil", kernel=[3, 2, 2], strides=[2, 1, 2], pads=[1, 0, 1, 1, 0, 1], ceil_mode=True)
add("avgpool3d", [x3d], torch1(lambda x: F.avg_pool3d(x, (3, 2, 2), (2, 1, 2), (1, 0, 1), count_include_pad=True)),
    "incl", kernel=[3, 2, 2], strides=[2, 1, 2], pads=[1, 0, 1, 1, 0, 1], count_include_pad=True)
add("avgpool3d", [x3d], torch1(lambda x: F.avg_pool3d(x, 2)), "plain", kernel=[2, 2, 2], strides=[2, 2, 2])


def naive_conv_transpose(x, w, b, strides, pads, dil, group):
    """Scatter loop: every input pixel adds its weighted kernel into the full output,
    which ``pads`` (begins + ends; negative = extend with zeros) then crops."""
    r = x.ndim - 2
    n_, c = x.shape[:2]
    fg, kernel = w.shape[1], w.shape[2:]
    full = [(x.shape[2 + k] - 1) * strides[k] + (kernel[k] - 1) * dil[k] + 1 for k in range(r)]
    y = np.zeros((n_, fg * group) + tuple(full))
    cg = c // group
    for ci in range(c):
        g = ci // cg
        for pos in itertools.product(*(range(d) for d in x.shape[2:])):
            for tap in itertools.product(*(range(d) for d in kernel)):
                o = tuple(pos[k] * strides[k] + tap[k] * dil[k] for k in range(r))
                for fo in range(fg):
                    y[(slice(None), g * fg + fo) + o] += x[(slice(None), ci) + pos] * w[(ci, fo) + tap]
    grow = [(0, 0), (0, 0)] + [(max(-pads[k], 0), max(-pads[r + k], 0)) for k in range(r)]
    y = np.pad(y, grow)
    y = y[(slice(None), slice(None)) + tuple(slice(max(pads[k], 0), y.shape[2 + k] - max(pads[r + k], 0))
                                             for k in range(r))]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * r)
    return [y.astype(x.dtype)]


xct = rnd(2, 4, 3, 4)
add("conv_transpose2d", [xct, rnd(4, 3, 3, 2), rnd(6)],
    torch1(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
                                              groups=2, dilation=(2, 1))),
    "group-stride-outpad", strides=[2, 3], pads=[1, 0, 0, -2], group=2, dilations=[2, 1])
add("conv_transpose2d", [xct, rnd(4, 2, 3, 3)],
    lambda xs: naive_conv_transpose(xs[0], xs[1], None, (2, 2), (0, 2, 1, 1), (1, 1), 1), "asym-pads",
    strides=[2, 2], pads=[0, 2, 1, 1])
add("conv_transpose2d", [xct, rnd(4, 1, 2, 2), rnd(4)],
    torch1(lambda x, w, b: F.conv_transpose2d(x, w, b, groups=4)), "depthwise-stride1", group=4)
add("conv_transpose3d", [rnd(1, 2, 3, 2, 3), rnd(2, 3, 2, 3, 2)],
    lambda xs: naive_conv_transpose(xs[0], xs[1], None, (1, 2, 2), (1, 0, 0, 0, 1, -1), (1, 1, 2), 1),
    "stride-pads", strides=[1, 2, 2], pads=[1, 0, 0, 0, 1, -1], dilations=[1, 1, 2])


def naive_gather_elements(data, idx, axis):
    out = np.empty(idx.shape, data.dtype)
    for p in np.ndindex(idx.shape):
        q = list(p)
        q[axis] = idx[p] % data.shape[axis]
        out[p] = data[tuple(q)]
    return [out]


def naive_scatter_elements(data, idx, upd, axis, reduction="none"):
    fold = {"none": lambda a, b: b, "add": lambda a, b: a + b, "mul": lambda a, b: a * b,
            "max": max, "min": min}[reduction]
    out = data.copy()
    for p in np.ndindex(idx.shape):
        q = list(p)
        q[axis] = idx[p] % data.shape[axis]
        out[tuple(q)] = fold(out[tuple(q)], upd[p])
    return [out]


dge = rnd(3, 4)
ige = np.array([[0, -1, 2], [2, 0, -3]], np.int64)
add("gather_elements", [dge, ige.T.copy()], lambda xs: naive_gather_elements(xs[0], xs[1], 0), "axis0-neg")
add("gather_elements", [rnd(2, 3, 4), np.array([[[3, 0], [1, 1]]], np.int32)],
    lambda xs: naive_gather_elements(xs[0], xs[1], -1), "axis-1-smaller", axis=-1)
for _red in ("none", "add", "mul", "max", "min"):
    add("scatter_elements", [dge, np.array([[1, 1, -1], [1, 0, 1]], np.int64), rnd(2, 3)],
        (lambda red: lambda xs: naive_scatter_elements(xs[0], xs[1], xs[2], 1, red))(_red),
        f"axis1-dup-{_red}", axis=1, reduction=_red)
add("scatter_elements", [np.arange(12, dtype=np.int64).reshape(4, 3), np.array([[3, -4]], np.int64),
                         np.array([[100, 200]], np.int64)],
    lambda xs: naive_scatter_elements(xs[0], xs[1], xs[2], 0), "int-axis0")


def naive_gather_nd(data, idx, b=0):
    out = []
    for p in np.ndindex(idx.shape[:-1]):
        out.append(data[p[:b] + tuple(idx[p])])
    return [np.array(out, data.dtype).reshape(idx.shape[:-1] + data.shape[b + idx.shape[-1]:])]


def naive_scatter_nd(data, idx, upd, reduction="none"):
    fold = {"none": lambda a, b: b, "add": np.add, "mul": np.multiply, "max": np.maximum,
            "min": np.minimum}[reduction]
    out = data.copy()
    for p in np.ndindex(idx.shape[:-1]):
        q = tuple(idx[p])
        out[q] = fold(out[q], upd[p])
    return [out]


dnd = rnd(2, 3, 4)
add("gather_nd", [dnd, np.array([[0, 1], [1, -1]], np.int64)], lambda xs: naive_gather_nd(*xs), "slices")
add("gather_nd", [dnd, np.array([[[1, 2, 3]], [[0, -3, 0]]], np.int64)], lambda xs: naive_gather_nd(*xs), "elements")
add("gather_nd", [dnd, np.array([[[2], [0]], [[1], [1]]], np.int64)],
    lambda xs: naive_gather_nd(xs[0], xs[1], 1), "batch1", batch_dims=1)
add("gather_nd", [dnd, np.array([[[1, 3]], [[2, 0]]], np.int32)],
    lambda xs: naive_gather_nd(xs[0], xs[1], 1), "batch1-elements", batch_dims=1)
for _red in ("none", "add", "mul", "max", "min"):
    add("scatter_nd", [dnd, np.array([[1, 0], [0, 2], [1, 0]], np.int64), rnd(3, 4)],
        (lambda red: lambda xs: naive_scatter_nd(xs[0], xs[1], xs[2], red))(_red), f"rows-dup-{_red}",
        reduction=_red)
add("scatter_nd", [dnd, np.array([[[0, -1, 3]], [[1, 2, 0]]], np.int64), rnd(2, 1)],
    lambda xs: naive_scatter_nd(*xs), "elements")


# -- math, bitwise and scan ops (onnx_ops_math) ------------------------------------------


def _naive_shift(x: np.ndarray, y: np.ndarray, left: bool) -> np.ndarray:
    """Shifts on Python ints, wrapped to x's width; out-of-width shifts per ONNX."""
    bits = np.iinfo(x.dtype).bits
    signed = x.dtype.kind == "i"
    out = []
    for a, s in zip(x.tolist(), np.broadcast_to(y, x.shape).tolist()):
        if not 0 <= s < bits:
            v = 0 if left else (-1 if a < 0 else 0)
        else:
            v = (a << s) if left else (a >> s)
            v &= (1 << bits) - 1
            if signed and v >= 1 << (bits - 1):
                v -= 1 << bits
        out.append(v)
    return np.array(out, x.dtype)


def _naive_arg(x: np.ndarray, axis: int, largest: bool, last: bool, keep: bool) -> np.ndarray:
    """Index of the extreme along ``axis`` by a loop over each line."""
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1], np.int64)
    for pos in np.ndindex(*moved.shape[:-1]):
        line = list(moved[pos])
        best = max(line) if largest else min(line)
        hits = [k for k, v in enumerate(line) if v == best]
        out[pos] = hits[-1] if last else hits[0]
    return np.expand_dims(out, axis) if keep else out


def _naive_cum(x: np.ndarray, axis: int, prod: bool, exclusive: bool, reverse: bool) -> np.ndarray:
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros_like(moved)
    n = moved.shape[-1]
    for pos in np.ndindex(*moved.shape[:-1]):
        for i in range(n):
            if reverse:
                span = range(i + (1 if exclusive else 0), n)
            else:
                span = range(0, i + (0 if exclusive else 1))
            acc = moved.dtype.type(1 if prod else 0)
            for j in span:
                acc = acc * moved[pos + (j,)] if prod else acc + moved[pos + (j,)]
            out[pos + (i,)] = acc
    return np.moveaxis(out, -1, axis)


def _naive_topk(x: np.ndarray, k: int, axis: int, largest: bool) -> list[np.ndarray]:
    """Sort each line by (value, index), largest first with _m_ties by lower index."""
    moved = np.moveaxis(x, axis, -1)
    vals = np.zeros(moved.shape[:-1] + (k,), x.dtype)
    idx = np.zeros(moved.shape[:-1] + (k,), np.int64)
    for pos in np.ndindex(*moved.shape[:-1]):
        line = list(enumerate(moved[pos].tolist()))
        line.sort(key=lambda iv: ((-iv[1] if largest else iv[1]), iv[0]))
        for j, (i, v) in enumerate(line[:k]):
            vals[pos + (j,)], idx[pos + (j,)] = v, i
    return [np.moveaxis(vals, -1, axis), np.moveaxis(idx, -1, axis)]


def _naive_onehot(ind: np.ndarray, values: np.ndarray, depth: int, axis: int) -> np.ndarray:
    axis = axis % (ind.ndim + 1)
    out = np.full(ind.shape + (depth,), values[0], values.dtype)
    for pos in np.ndindex(*ind.shape):
        v = int(ind[pos]) if float(ind[pos]).is_integer() else None
        if v is not None and -depth <= v < depth:
            out[pos + (v % depth,)] = values[1]
    return np.moveaxis(out, -1, axis)


_m_unit = rnd(3, 4, lo=-0.95, hi=0.95)
for _op, _fn, _x in [
        ("sin", torch.sin, x34), ("cos", torch.cos, x34), ("tan", torch.tan, _m_unit),
        ("arcsin", torch.asin, _m_unit), ("arccos", torch.acos, _m_unit), ("arctan", torch.atan, x34),
        ("sinh", torch.sinh, x34), ("cosh", torch.cosh, x34), ("arcsinh", torch.asinh, x34),
        ("arccosh", torch.acosh, rnd(3, 4, lo=1.0, hi=4.0)), ("arctanh", torch.atanh, _m_unit),
        ("floor", torch.floor, x34 * 3), ("ceil", torch.ceil, x34 * 3)]:
    add(_op, [_x], torch1(_fn))
_m_halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6, 7.5000005], np.float32)
add("round", [_m_halves], torch1(torch.round), "halves-to-even")
add("round", [rnd(2, 3, dtype=np.float64) * 10], torch1(torch.round), "f64")

_m_ia = np.array([[7, -7, 7, -7, 0, 5], [3, -4, 9, -1, 6, -6]], np.int32)
_m_ib = np.array([2, 2, -2, -2, 3, -4], np.int32)
add("mod", [_m_ia, _m_ib], torch1(torch.remainder), "int")
add("mod", [rnd(2, 3, dtype=np.float64) * 5, rnd(3, dtype=np.float64, lo=0.5) * np.array([1, -1, 1])],
    torch1(torch.remainder), "float")
add("fmod", [_m_ia, _m_ib], torch1(torch.fmod), "int")
add("fmod", [rnd(2, 3) * 5, np.array([1.5, -2.0, 0.75], np.float32)], torch1(torch.fmod), "float")
_m_bits_a = np.array([[5, -6, 0, -1], [127, -128, 12, 33]], np.int8)
_m_bits_b = np.array([3, -3, -1, 85], np.int8)
for _op, _fn in [("bitwise_and", torch.bitwise_and), ("bitwise_or", torch.bitwise_or),
                 ("bitwise_xor", torch.bitwise_xor)]:
    add(_op, [_m_bits_a, _m_bits_b], torch1(_fn), "i8")
    add(_op, [_m_bits_a.astype(np.int64) * 1000003, _m_bits_b.astype(np.int64) * -999],
        torch1(_fn), "i64")
    add(_op, [np.array([0, 255, 170, 15], np.uint8), np.array([[255], [85]], np.uint8)],
        torch1(_fn), "u8")
_m_shift_x = np.array([1, -1, 64, -128, 127, 3, -5, 9], np.int8)
_m_shift_y = np.array([1, 7, 1, 1, 3, 8, -1, 0], np.int8)
add("shift_left", [_m_shift_x, _m_shift_y], lambda xs: [_naive_shift(*xs, left=True)], "i8")
add("shift_right", [_m_shift_x, _m_shift_y], lambda xs: [_naive_shift(*xs, left=False)], "i8")
add("shift_left", [np.array([1, 255, 16, 7], np.uint8), np.array([3, 1, 4, 9], np.uint8)],
    lambda xs: [_naive_shift(*xs, left=True)], "u8")
add("shift_right", [np.array([1, 255, 16, 7], np.uint8), np.array([3, 1, 4, 9], np.uint8)],
    lambda xs: [_naive_shift(*xs, left=False)], "u8")


def _naive_wrapping(fn: Callable[[int, int], int]) -> Ref:
    """``fn`` on Python ints, elementwise with broadcasting, wrapped to input 0's width."""
    def ref(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        a, b = np.broadcast_arrays(*xs)
        mask = (1 << np.iinfo(xs[0].dtype).bits) - 1
        vals = [fn(int(p), int(q)) & mask for p, q in zip(a.ravel().tolist(), b.ravel().tolist())]
        return [np.array(vals, xs[0].dtype).reshape(a.shape)]

    return ref


# u16/u32/u64: torch has no add on them, so the references are Python ints. u64
# values stay below 2**53 where the Expr (float64) test must be exact, except the
# ones float64 holds exactly (2**63 + 2**40: the u64 bitwise body reads all 64 bits).
for _dt in (np.uint16, np.uint32, np.uint64):
    _mx = int(np.iinfo(_dt).max)
    _hi = 2**63 + 2**40 if _dt == np.uint64 else _mx
    _lbl = np.dtype(_dt).name.replace("uint", "u")
    if _dt == np.uint64:  # wraps at 2**64 - 2**12 + 2**12, exact in float64
        _a, _b = [[0, 1, 2**64 - 2**12, 2**52], [7, 2**52 + 1, 3, 9]], [5, 2**13, 2**12, 2**52]
    else:
        _a, _b = [[0, 1, _mx, 2**15], [7, _mx - 1, 3, 9]], [5, _mx, 1, 2**15]
    add("add", [np.array(_a, _dt), np.array(_b, _dt)], _naive_wrapping(lambda p, q: p + q), f"{_lbl}-wraps")
    add("bitwise_and", [np.array([[0, _hi, 0xF0F0, 12345], [_mx if _dt != np.uint64 else 2**52 + 3, 255, 1, 6]], _dt),
                        np.array([_hi, 0x0FF0, 0xFFFF, 2**13 + 57], _dt)],
        _naive_wrapping(lambda p, q: p & q), _lbl)
    _bits = np.iinfo(_dt).bits
    add("shift_left", [np.array([1, 3, 2**15 + 5, 7, 1, 9, 2**12 - 1, 0], _dt),
                       np.array([_bits - 1, _bits - 1, 1, _bits, 0, _bits + 3, _bits - 8, 5], _dt)],
        lambda xs: [_naive_shift(*xs, left=True)], _lbl)
    add("shift_right", [np.array([_hi, 3, 2**15 + 5, 7], _dt), np.array([_bits - 1, 1, _bits, 0], _dt)],
        lambda xs: [_naive_shift(*xs, left=False)], _lbl)

# casts wrap modulo 2**width between integer dtypes (NumPy and ONNX Cast)
_m_cast_i = np.array([-1, 0, 70000, -(2**40) - 3, 2**62 + 1], np.int64)


def _naive_cast_unsigned(bits: int) -> Ref:
    return lambda xs: [np.array([v % 2**bits for v in xs[0].tolist()], f"uint{bits}")]


for _to in ("u16", "u32", "u64"):
    add("cast", [_m_cast_i], _naive_cast_unsigned(int(_to[1:])), f"i64-to-{_to}", to=_to)
_m_cast_u64 = np.array([0, 2**63, 2**64 - 1, 12345], np.uint64)
add("cast", [_m_cast_u64], lambda xs: [np.array([v - 2**64 if v >= 2**63 else v for v in xs[0].tolist()],
                                                 np.int64)], "u64-to-i64", to="i64")
add("cast", [_m_cast_u64], lambda xs: [np.array([float(v) for v in xs[0].tolist()], np.float64)],
    "u64-to-f64", to="f64")
add("cast", [np.array([0.0, 1.0, 65535.0, 300.0], np.float32)],
    lambda xs: [np.array([0, 1, 65535, 300], np.uint16)], "f32-to-u16", to="u16")

_m_ties = np.round(rnd(3, 4, 5)).astype(np.float32)  # many ties
add("argmax", [x34], torch1(lambda x: torch.argmax(x, 1)), "axis1", axis=1, keepdims=False)
add("argmin", [rnd(2, 3, 4)], torch1(lambda x: torch.argmin(x, 0, keepdim=True)), "keep")
for _op in ("argmax", "argmin"):
    for _last in (False, True):
        _ref = (lambda op, last: lambda xs: [_naive_arg(xs[0], 1, op == "argmax", last, True)])(
            _op, _last)
        add(_op, [_m_ties], _ref, f"ties-last{int(_last)}", axis=-2, select_last_index=_last)
add("argmax", [np.array([[3, 1, 3], [-2, -2, 0]], np.int32)],
    lambda xs: [_naive_arg(xs[0], 1, True, True, False)], "int-last", axis=1, keepdims=False,
    select_last_index=True)

add("cumsum", [rnd(2, 5)], torch1(lambda x: torch.cumsum(x, 1)), axis=1)
add("cumprod", [rnd(3, 2, lo=0.5, hi=1.5)], torch1(lambda x: torch.cumprod(x, 0)))
for _op in ("cumsum", "cumprod"):
    for _ex, _rev in itertools.product((False, True), repeat=2):
        _ref = (lambda op, ex, rev: lambda xs: [_naive_cum(xs[0], 1, op == "cumprod", ex, rev)])(
            _op, _ex, _rev)
        add(_op, [rnd(2, 4, 3, lo=0.5, hi=1.5)], _ref, f"ex{int(_ex)}-rev{int(_rev)}", axis=-2,
            exclusive=_ex, reverse=_rev)
add("cumsum", [np.array([[1, -2, 3], [4, 5, -6]], np.int32)],
    lambda xs: [_naive_cum(xs[0], 0, False, True, True)], "int", exclusive=True, reverse=True)

add("topk", [x34], lambda xs: [n(v) for v in torch.topk(t(xs[0]), 2, dim=1)], "largest", k=2, axis=1)
add("topk", [x34], lambda xs: [n(v) for v in torch.topk(t(xs[0]), 3, dim=0, largest=False)], "smallest",
    k=3, axis=0, largest=False)
add("topk", [np.array([[2, 1, 2, 3, 1], [0, 0, 0, 0, 0]], np.int64)],
    lambda xs: _naive_topk(xs[0], 4, 1, True), "ties-largest", k=4)
add("topk", [np.array([[2, 1, 2, 3, 1], [0, 0, 0, 0, 0]], np.int64)],
    lambda xs: _naive_topk(xs[0], 3, 1, False), "ties-smallest", k=3, largest=False)

add("onehot", [np.array([[0, 3], [2, 1]], np.int64), np.array([0.0, 1.0], np.float32)],
    torch1(lambda i, v: F.one_hot(i, 4).to(torch.float32)), depth=4)
add("onehot", [np.array([[0, -1, 5], [2, -4, -5]], np.int32), np.array([-2, 7], np.int64)],
    lambda xs: [_naive_onehot(xs[0], xs[1], 4, 1)], "neg-oob-axis1", depth=4, axis=1)
add("onehot", [np.array([1.0, 2.5, -1.0], np.float32), np.array([0.5, 3.0], np.float32)],
    lambda xs: [_naive_onehot(xs[0], xs[1], 3, -2)], "float-indices", depth=3, axis=-2)

add("trilu", [rnd(2, 4, 5)], torch1(torch.triu))
add("trilu", [rnd(4, 3)], torch1(lambda x: torch.tril(x, -1)), "lower", upper=False, k=-1)
add("trilu", [rnd(3, 5) > 0], torch1(lambda x: torch.triu(x, 2)), "bool", k=2)


def onnx_node_ref(op_type: str, extra: Sequence[np.ndarray | None] = (), **attrs: object) -> Ref:
    """Reference from ONNX's own evaluator on one node: the case inputs, then ``extra``
    constant inputs (None: an omitted optional input)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    def ref(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = list(xs) + list(extra)
        names = [f"i{k}" if a is not None else "" for k, a in enumerate(arrays)]
        node = helper.make_node(op_type, names, ["y"], **attrs)
        ins = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for nm, a in zip(names, arrays) if a is not None]
        g = helper.make_graph([node], "ref", ins, [helper.make_value_info("y", __import__("onnx").TypeProto())])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
        return [np.asarray(ReferenceEvaluator(m).run(None, {nm: a for nm, a in zip(names, arrays)
                                                            if a is not None})[0])]

    return ref


xrs = rnd(1, 2, 4, 5)
_f = lambda *v: np.array(v, np.float32)  # noqa: E731
add("resize", [xrs], torch1(lambda x: F.interpolate(x, size=(8, 10), mode="nearest")), "nearest-x2",
    coordinate_transformation_mode="asymmetric", nearest_mode="floor", axes=[2, 3], scales=[2.0, 2.0],
    sizes=[8, 10])
add("resize", [xrs], torch1(lambda x: F.interpolate(x, size=(7, 3), mode="bilinear", align_corners=False)),
    "linear-half-pixel", mode="linear", axes=[2, 3], scales=[7 / 4, 3 / 5], sizes=[7, 3])
add("resize", [xrs], torch1(lambda x: F.interpolate(x, size=(3, 9), mode="bilinear", align_corners=True)),
    "linear-align-corners", mode="linear", coordinate_transformation_mode="align_corners", axes=[2, 3],
    scales=[3 / 4, 9 / 5], sizes=[3, 9])
add("resize", [xrs], torch1(lambda x: F.interpolate(x, size=(6, 7), mode="bicubic", align_corners=False)),
    "cubic", mode="cubic", axes=[2, 3], scales=[6 / 4, 7 / 5], sizes=[6, 7])
# torch's antialias renormalizes over the taps inside the input: ONNX's exclude_outside
add("resize", [rnd(1, 1, 9, 8)], torch1(lambda x: F.interpolate(x, size=(4, 3), mode="bilinear", antialias=True)),
    "linear-antialias", mode="linear", antialias=True, exclude_outside=True, axes=[2, 3], scales=[4 / 9, 3 / 8],
    sizes=[4, 3])
add("resize", [xrs], onnx_node_ref("Resize", [None, _f(1, 1, 0.6, 1.7)], mode="nearest",
                                   nearest_mode="round_prefer_ceil"),
    "nearest-ceil-scales", nearest_mode="round_prefer_ceil", scales=[1.0, 1.0, float(np.float32(0.6)),
                                                                      float(np.float32(1.7))],
    sizes=[1, 2, 2, 8])
add("resize", [xrs], onnx_node_ref("Resize", [None, _f(0.6, 1.3)], mode="cubic", cubic_coeff_a=-0.5,
                                   exclude_outside=1, axes=[3, 2]),
    "cubic-exclude-axes32", mode="cubic", cubic_coeff_a=-0.5, exclude_outside=True, axes=[3, 2],
    scales=[float(np.float32(0.6)), float(np.float32(1.3))], sizes=[3, 5])
add("resize", [xrs], onnx_node_ref("Resize", [_f(0.2, 0.1, 0.9, 1.2), None, np.array([3, 4], np.int64)],
                                   mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                                   extrapolation_value=-1.5, axes=[2, 3]),
    "tf-crop-extrapolate", mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
    extrapolation_value=-1.5, axes=[2, 3], scales=[3 / 4, 4 / 5], sizes=[3, 4], roi=[0.2, 0.1, 0.9, 1.2])
add("resize", [xrs], onnx_node_ref("Resize", [None, None, np.array([3, 2], np.int64)], mode="cubic",
                                   antialias=1, coordinate_transformation_mode="half_pixel_symmetric",
                                   axes=[2, 3]),
    "cubic-antialias-symmetric", mode="cubic", antialias=True, coordinate_transformation_mode="half_pixel_symmetric",
    axes=[2, 3], scales=[3 / 4, 2 / 5], sizes=[3, 2])
add("resize", [np.arange(20, dtype=np.int32).reshape(1, 4, 5) * 7],
    onnx_node_ref("Resize", [None, None, np.array([3], np.int64)], mode="linear", axes=[2]),
    "int-linear", mode="linear", axes=[-1], scales=[3 / 5], sizes=[3])
add("resize", [xrs], torch1(lambda x: F.interpolate(x, size=(2, 5), mode="nearest")), "nearest-down2",
    coordinate_transformation_mode="asymmetric", nearest_mode="floor", axes=[2], scales=[0.5], sizes=[2])
add("resize", [xrs], torch1(lambda x: F.interpolate(x, size=(12, 10), mode="nearest-exact")), "nearest-exact-x3",
    nearest_mode="round_prefer_ceil", axes=[2, 3], scales=[3.0, 2.0], sizes=[12, 10])


def torch_pool_indices(x: np.ndarray, kernel, stride, padding, column_major=False, **kw) -> list[np.ndarray]:
    """torch's per-plane argmax positions made flat over N, C (and column-major if asked)."""
    fn = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    _, idx = fn(t(x), kernel, stride, padding, return_indices=True, **kw)
    idx = n(idx).astype(np.int64)
    spatial = x.shape[2:]
    if column_major:
        coords = np.unravel_index(idx, spatial)
        idx = np.ravel_multi_index(coords, spatial, order="F")
    plane = int(np.prod(spatial))
    base = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * len(spatial)) * plane
    return [(idx + base).astype(np.int64)]


add("maxpool2d_indices", [xp], lambda xs: torch_pool_indices(xs[0], 3, 2, 1), "pad",
    kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
add("maxpool2d_indices", [xp], lambda xs: torch_pool_indices(xs[0], 2, 2, 0, True, ceil_mode=True),
    "ceil-column-major", kernel=[2, 2], strides=[2, 2], ceil_mode=True, column_major=True)
add("maxpool2d_indices", [xp], lambda xs: torch_pool_indices(xs[0], (2, 3), 1, (0, 1), dilation=(2, 1)),
    "dil", kernel=[2, 3], dilations=[2, 1], pads=[0, 1, 0, 1])
add("maxpool3d_indices", [x3d], lambda xs: torch_pool_indices(xs[0], (3, 2, 2), (2, 1, 2), (1, 0, 1)),
    "pad", kernel=[3, 2, 2], strides=[2, 1, 2], pads=[1, 0, 1, 1, 0, 1])
add("maxpool3d_indices", [x3d], lambda xs: torch_pool_indices(xs[0], 2, 2, 0, True), "column-major",
    kernel=[2, 2, 2], strides=[2, 2, 2], column_major=True)
