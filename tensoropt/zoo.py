"""Reference networks built directly in the IR, for tests and benchmarks.

``vgg`` builds VGG-11/13/16/19 (Simonyan & Zisserman's configurations A/B/D/E)
with seeded He-scaled random weights; ``width_div`` and ``image`` shrink it for
fast tests. ``torch_forward`` runs the same graph's weights through PyTorch's
own ``conv2d``/``max_pool2d``/``linear``: an independent implementation to
compare the reference interpreter against.
"""

from __future__ import annotations

import numpy as np

from .builder import GraphBuilder
from .ir.graph import Graph

#: conv widths per configuration; "M" is a 2x2 max-pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


def vgg(depth: int = 19, *, image: int = 224, width_div: int = 1, classes: int = 1000,
        seed: int = 0) -> Graph:
    """VGG-``depth`` on ``1x3ximagexximage`` inputs (batch is symbolic)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"vgg{depth}")
    x = b.input("x", "f32", ("batch", 3, image, image))
    ch, hw = 3, image
    for k, item in enumerate(VGG_CONFIGS[depth]):
        if item == "M":
            x = b.op("maxpool2d", x, kernel=[2, 2], strides=[2, 2], name=f"pool{k}")
            hw //= 2
            continue
        assert isinstance(item, int)
        f = max(item // width_div, 1)
        w = b.const(f"conv{k}.w", _he(rng, (f, ch, 3, 3), ch * 9))
        bias = b.const(f"conv{k}.b", np.zeros(f, np.float32) + 0.01)
        x = b.op("relu", b.op("conv2d", x, w, bias, pads=[1, 1, 1, 1], name=f"conv{k}"), name=f"relu{k}")
        ch = f
    x = b.op("flatten", x, axis=1, name="flat")
    hidden = max(4096 // width_div, 1)
    for k, (fan_in, fan_out) in enumerate([(ch * hw * hw, hidden), (hidden, hidden), (hidden, classes)]):
        w = b.const(f"fc{k}.w", _he(rng, (fan_out, fan_in), fan_in))
        bias = b.const(f"fc{k}.b", np.zeros(fan_out, np.float32) + 0.01)
        x = b.op("gemm", x, w, bias, trans_b=1, name=f"fc{k}")
        if k < 2:
            x = b.op("relu", x, name=f"fc{k}.relu")
    return b.build(x)


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def torch_forward(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Run a :func:`vgg` graph's weights through PyTorch (float32, CPU)."""
    import torch
    import torch.nn.functional as F

    w = {k: torch.from_numpy(np.array(v)) for k, v in graph.weights.items()}
    t = torch.from_numpy(x)
    with torch.no_grad():
        for n in graph.nodes:
            if n.op == "conv2d":
                t = F.conv2d(t, w[n.inputs[1]], w[n.inputs[2]], padding=1)
            elif n.op == "relu":
                t = F.relu(t)
            elif n.op == "maxpool2d":
                t = F.max_pool2d(t, 2, 2)
            elif n.op == "flatten":
                t = torch.flatten(t, 1)
            elif n.op == "gemm":
                t = F.linear(t, w[n.inputs[1]], w[n.inputs[2]])
            else:
                raise ValueError(f"torch_forward does not know op {n.op!r}")
    return t.numpy()
