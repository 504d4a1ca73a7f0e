"""Fold an inference batch norm into the convolution before it (``fold-batchnorm``).

``batchnorm(conv(x, W, b))`` with constant ``W``, ``b`` and batch-norm
parameters is ``conv(x, W * s, (b - mean) * s + bias)`` with
``s = scale / sqrt(var + eps)`` per output channel: one node and one pass
over the activations fewer, and the convolution keeps its own lowering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tensoropt.ir.graph import Graph, Node, Value, Weights, fresh_name
from tensoropt.ir.types import FLOAT_DTYPES, TensorType

from .pipeline import Pass, register_pass

#: convolution ops -> the weight axis that holds output channels (for group == 1)
CONV_OUT_AXIS = {"conv2d": 0, "conv3d": 0, "conv_transpose2d": 1, "conv_transpose3d": 1}


def folded_weights(w: np.ndarray, b: np.ndarray | None, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                   var: np.ndarray, eps: float, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W * s, (b - mean) * s + bias)`` along ``axis`` of ``W``, computed in float64, cast back."""
    s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    shape = [1] * w.ndim
    shape[axis] = -1
    w2 = w.astype(np.float64) * s.reshape(shape)
    b0 = np.zeros_like(s) if b is None else b.astype(np.float64)
    b2 = (b0 - mean.astype(np.float64)) * s + bias.astype(np.float64)
    return w2.astype(w.dtype), b2.astype(w.dtype)


@register_pass
@dataclass(frozen=True)
class FoldBatchnorm(Pass):
    """Fold each ``batchnorm`` whose input is a convolution's only use into that convolution.

    Applies when the convolution (conv2d, conv3d; conv_transpose2d/3d with
    group 1) is read by the batch norm alone and is not a graph output, and
    its weight, its bias (if any) and all four batch-norm parameters are
    constants with values, all of one float dtype. Guarantees: the folded
    convolution takes the batch norm's output name and type, so every reader
    and the graph outputs are unchanged; values change only by rounding (the
    new weights are computed in float64); the new weights are new constants
    (the old ones are dropped when nothing else reads them); everything else
    is untouched. Returns ``graph`` itself when nothing folds.
    """

    name: ClassVar[str] = "fold-batchnorm"

    def apply(self, graph: Graph) -> Graph:
        consts = {c.name: c for c in graph.constants}
        readers: dict[str, int] = {}
        for n in graph.nodes:
            for i in set(n.inputs):
                readers[i] = readers.get(i, 0) + 1
        made_by = {v.name: n for n in graph.nodes for v in n.outputs}
        taken = set(graph.values())
        new_consts: list[Value] = []
        weights = dict(graph.weights)
        replace: dict[int, Node | None] = {}  # id(node) -> new node (None: removed)
        for bn in graph.nodes:
            conv = made_by.get(bn.inputs[0]) if bn.op == "batchnorm" else None
            if conv is None or conv.op not in CONV_OUT_AXIS or id(conv) in replace:
                continue
            if readers.get(conv.output_names[0]) != 1 or conv.output_names[0] in graph.outputs:
                continue
            params = [*conv.inputs[1:], *bn.inputs[1:]]
            if not all(p in consts and p in graph.weights for p in params):
                continue
            dtypes = {consts[p].type.dtype for p in params}
            if len(dtypes) != 1 or not dtypes <= set(FLOAT_DTYPES):
                continue
            group = int(conv.attrs.get("group", 1))  # type: ignore[arg-type]
            axis = CONV_OUT_AXIS[conv.op]
            if axis == 1 and group != 1:
                continue  # a grouped transposed conv's output channels span two weight axes
            w = np.asarray(graph.weights[conv.inputs[1]])
            b = np.asarray(graph.weights[conv.inputs[2]]) if len(conv.inputs) > 2 else None
            scale, bias, mean, var = (np.asarray(graph.weights[p]) for p in bn.inputs[1:])
            w2, b2 = folded_weights(w, b, scale, bias, mean, var, float(bn.attrs.get("epsilon", 1e-5)), axis)
            out = bn.output_names[0]
            wn, bname = fresh_name(f"{out}.w", taken), fresh_name(f"{out}.b", taken)
            weights[wn], weights[bname] = w2, b2
            (dt,) = dtypes
            new_consts += [Value(wn, TensorType(dt, w2.shape)), Value(bname, TensorType(dt, b2.shape))]
            replace[id(conv)] = None
            replace[id(bn)] = Node(conv.op, (conv.inputs[0], wn, bname), bn.outputs, conv.attrs)
        if not replace:
            return graph
        nodes = tuple(replace.get(id(n), n) for n in graph.nodes)
        kept = tuple(n for n in nodes if n is not None)
        read = {i for n in kept for i in n.inputs} | set(graph.outputs)
        constants = tuple(c for c in graph.constants if c.name in read) + tuple(new_consts)
        return graph.replace(nodes=kept, constants=constants,
                             weights=Weights({c.name: weights[c.name] for c in constants if c.name in weights}))
