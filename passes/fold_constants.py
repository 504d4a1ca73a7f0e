"""Constant folding: evaluate nodes whose inputs are all constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tensoropt.errors import TensoroptError
from tensoropt.ir.graph import Graph, Node, Value

from .pipeline import Pass, register_pass


def declared_bytes(node: Node) -> int | None:
    """Bytes of ``node``'s outputs from their declared types (None if a dim is
    symbolic). Python ints: hostile dims cannot overflow into a small size."""
    total = 0
    for v in node.outputs:
        n = v.type.numel()
        if n is None:
            return None
        total += n * v.type.np_dtype.itemsize
    return total


def _fold_node(node: Node, weights: dict[str, np.ndarray], max_bytes: int) -> dict[str, np.ndarray] | None:
    """The output arrays of ``node`` if it can be folded within ``max_bytes``, else None.

    The size is checked from the declared types before anything is evaluated,
    so a node over the budget allocates nothing.
    """
    if not all(i in weights for i in node.inputs):
        return None
    size = declared_bytes(node)
    if size is None or size > max_bytes:
        return None
    from tensoropt.interp import evaluate_node

    # The interpreter is the oracle: one code path for registry ops and expr
    # nodes alike, outputs cast to the declared dtypes. It also refuses a node
    # over its own evaluation budget (BudgetError, a TensoroptError), so even
    # a huge max_bytes option cannot make folding exhaust memory.
    try:
        outs = evaluate_node(node, [weights[i] for i in node.inputs])
    except TensoroptError:
        return None  # leave it to fail (with its message) when the graph runs
    return {v.name: o for v, o in zip(node.outputs, outs)}


@register_pass
@dataclass(frozen=True)
class FoldConstants(Pass):
    """Replace nodes whose inputs are all constants by constants holding their values.

    Guarantees: a folded node's outputs keep their names and types and become
    constants with weights computed by the reference interpreter; folding runs
    in graph order, so whole constant subgraphs collapse. Constants that only
    fed folded nodes are dropped (pre-existing unused constants are left for
    ``dce``). Nodes with symbolic output shapes, or whose outputs would exceed
    ``max_bytes``, are kept. Graphs without weight arrays (parsed without an
    ``.npz``) are returned unchanged.

    Bounded: sizes come from the declared types and are checked before a node
    is evaluated; one application folds at most :attr:`max_total_bytes` of new
    constants in all (later nodes are kept), and never a node over the
    interpreter's evaluation budget, whatever ``max_bytes`` says.
    """

    name: ClassVar[str] = "fold-constants"
    #: Total bytes of new constants one application may fold. A class constant,
    #: not an option: it bounds what an untrusted graph of many small constant
    #: nodes (say 10,000 expands of 4 MiB each) can make the pass allocate.
    max_total_bytes: ClassVar[int] = 1 << 30
    max_bytes: int = 1 << 22

    def __post_init__(self) -> None:
        if self.max_bytes < 0:
            raise ValueError(f"option 'max_bytes' of {self.name} must be >= 0, got {self.max_bytes}")

    def apply(self, graph: Graph) -> Graph:
        if graph.constants and len(graph.weights) == 0:
            return graph  # no arrays to fold with
        weights: dict[str, np.ndarray] = dict(graph.weights)
        new_consts: list[Value] = []
        nodes: list[Node] = []
        folded_inputs: set[str] = set()
        folded_bytes = 0
        for node in graph.nodes:
            arrays = _fold_node(node, weights, min(self.max_bytes, self.max_total_bytes - folded_bytes))
            if arrays is None:
                nodes.append(node)
                continue
            folded_bytes += sum(int(a.nbytes) for a in arrays.values())
            weights.update(arrays)
            new_consts.extend(node.outputs)
            folded_inputs.update(node.inputs)
        if not new_consts:
            return graph
        still_read = {i for n in nodes for i in n.inputs} | set(graph.outputs)
        # Old constants go only when folding consumed their last use; new ones
        # (a folded chain's intermediates included) stay only while read.
        consts = tuple(c for c in graph.constants if c.name in still_read or c.name not in folded_inputs)
        consts += tuple(c for c in new_consts if c.name in still_read)
        return graph.replace(
            nodes=tuple(nodes),
            constants=consts,
            weights={c.name: weights[c.name] for c in consts},
        )
