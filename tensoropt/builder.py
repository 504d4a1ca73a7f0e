"""GraphBuilder: build a verified Graph op by op from Python.

Output types come from the registry's inference rules, so a builder-made
graph is well-typed by construction; names are made unique automatically.
Frontends, benchmarks and tests use it instead of writing Node tuples.

    b = GraphBuilder("mlp")
    x = b.input("x", "f32", ("batch", 64))
    w = b.const("w", np.zeros((64, 10), np.float32))
    y = b.op("relu", b.op("matmul", x, w))
    g = b.build(y)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .ir.expr import Scope, tensor_names
from .ir.graph import Graph, Node, Value
from .ir.types import Dim, TensorType, dtype_of
from .ops import infer_node_types


class GraphBuilder:
    """Accumulates inputs, constants and nodes; :meth:`build` freezes them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inputs: list[Value] = []
        self._consts: list[Value] = []
        self._nodes: list[Node] = []
        self._weights: dict[str, np.ndarray] = {}
        self._types: dict[str, TensorType] = {}

    def _fresh(self, base: str) -> str:
        if base not in self._types:
            return base
        k = 1
        while f"{base}.{k}" in self._types:
            k += 1
        return f"{base}.{k}"

    def input(self, name: str, dtype: str, shape: Sequence[Dim]) -> str:
        name = self._fresh(name)
        t = TensorType(dtype, tuple(shape))
        self._inputs.append(Value(name, t))
        self._types[name] = t
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        name = self._fresh(name)
        arr = np.asarray(array)
        t = TensorType(dtype_of(arr.dtype), tuple(int(d) for d in arr.shape))
        self._consts.append(Value(name, t))
        self._weights[name] = arr
        self._types[name] = t
        return name

    def type_of(self, name: str) -> TensorType:
        return self._types[name]

    def op(self, op: str, *inputs: str, name: str | None = None, **attrs: object) -> str:
        """Add a registry op with one output; returns the output name."""
        return self.op_multi(op, *inputs, names=(name,) if name else None, **attrs)[0]

    def op_multi(self, op: str, *inputs: str, names: Sequence[str] | None = None, **attrs: object) -> list[str]:
        """Add a registry op; returns its output names (split has several)."""
        # Arity, attribute defaults and kinds, then infer: the verifier's checks.
        # UnknownOpError lists the valid ops.
        out_types = infer_node_types(op, [self._types[i] for i in inputs], attrs)  # type: ignore[arg-type]
        bases = list(names) if names else [f"{op}{len(self._nodes)}"] * len(out_types)
        outs = []
        for k, (base, t) in enumerate(zip(bases, out_types)):
            n = self._fresh(base if len(out_types) == 1 or names else f"{base}_{k}")
            self._types[n] = t
            outs.append(Value(n, t))
        # keep only the attributes the caller gave: the printed graph stays as written
        self._nodes.append(Node(op, tuple(inputs), tuple(outs), attrs))  # type: ignore[arg-type]
        return [v.name for v in outs]

    def expr(self, scope: Scope, dtype: str = "f32", name: str | None = None) -> str:
        """Add an ``expr`` node; its inputs are the tensors the scope reads."""
        out = self._fresh(name or f"expr{len(self._nodes)}")
        t = TensorType(dtype, scope.shape)
        self._types[out] = t
        self._nodes.append(Node("expr", tensor_names(scope), (Value(out, t),), {}, scope))
        return out

    def __len__(self) -> int:
        """Number of nodes added so far (a mark to :meth:`undo` back to)."""
        return len(self._nodes)

    def undo(self) -> None:
        """Remove the last node added (and its output names), as if never added.

        For generators that judge a node by its inferred output (e.g. reject a
        zero-sized tensor) after adding it.
        """
        node = self._nodes.pop()
        for n in node.output_names:
            del self._types[n]

    def build(self, *outputs: str, weights: Mapping[str, np.ndarray] | None = None) -> Graph:
        w = dict(self._weights)
        w.update(weights or {})
        return Graph(self.name, tuple(self._inputs), tuple(self._consts), tuple(self._nodes), tuple(outputs), w)
