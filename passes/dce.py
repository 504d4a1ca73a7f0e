"""Dead code elimination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tensoropt.ir.graph import Graph

from .pipeline import Pass, register_pass


def live_names(graph: Graph) -> set[str]:
    """Names the graph outputs depend on (reverse sweep over the topological order).

    A multi-output node is live as a whole when any of its outputs is.
    """
    live = set(graph.outputs)
    for node in reversed(graph.nodes):
        if any(o in live for o in node.output_names):
            live.update(node.inputs)
            live.update(node.output_names)
    return live


@register_pass
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Remove nodes and constants the graph outputs do not depend on.

    Guarantees: inputs, outputs and the relative order of the kept nodes are
    unchanged; weights of dropped constants are dropped too; nodes are pure, so
    the outputs compute the same values. Returns ``graph`` itself when nothing
    is dead.
    """

    name: ClassVar[str] = "dce"

    def apply(self, graph: Graph) -> Graph:
        live = live_names(graph)
        nodes = tuple(n for n in graph.nodes if any(o in live for o in n.output_names))
        consts = tuple(c for c in graph.constants if c.name in live)
        if len(nodes) == len(graph.nodes) and len(consts) == len(graph.constants):
            return graph
        return graph.replace(
            nodes=nodes,
            constants=consts,
            weights=graph.weights.only(c.name for c in consts),
        )
