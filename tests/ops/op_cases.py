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


