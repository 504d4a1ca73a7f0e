"""Common subexpression elimination over graph nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Hashable

from tensoropt.ir.expr import Scope, rename_tensors, tensor_names
from tensoropt.ir.graph import Graph, Node

from .pipeline import Pass, register_pass


def rename_node_inputs(node: Node, mapping: dict[str, str]) -> Node:
    """``node`` reading ``mapping[x]`` instead of ``x``.

    An ``expr`` node reads tensors by name inside its scope, so the scope is
    renamed too and the inputs recomputed from it (two inputs may become one).
    """
    if not any(i in mapping for i in node.inputs):
        return node
    if node.expr is not None:
        expr = rename_tensors(node.expr, {k: v for k, v in mapping.items() if k in node.inputs})
        assert isinstance(expr, Scope)
        return Node(node.op, tensor_names(expr), node.outputs, node.attrs, expr)
    return Node(node.op, tuple(mapping.get(i, i) for i in node.inputs), node.outputs, node.attrs, None)


def _key(node: Node) -> Hashable:
    # Output types are part of the key: an expr node's dtype is declared, not
    # inferred, so two equal scopes may still define different tensors.
    return (node.op, node.inputs, node.attrs, node.expr, tuple(v.type for v in node.outputs))


@register_pass
@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    """Merge nodes with the same op, inputs, attributes, scope and output types.

    Guarantees: the first of each group of equal nodes is kept and every use
    of a later duplicate's outputs (node inputs, names read inside ``expr``
    scopes, graph outputs) is redirected to it; the node order is otherwise
    unchanged. Nodes are pure, so values are unchanged. Scopes are compared
    structurally (iterator names matter).
    """

    name: ClassVar[str] = "cse"

    def apply(self, graph: Graph) -> Graph:
        seen: dict[Hashable, Node] = {}
        mapping: dict[str, str] = {}
        nodes: list[Node] = []
        for node in graph.nodes:
            node = rename_node_inputs(node, mapping)
            first = seen.get(_key(node))
            if first is None:
                seen[_key(node)] = node
                nodes.append(node)
                continue
            for dup, keep in zip(node.output_names, first.output_names):
                mapping[dup] = keep
        if not mapping:
            return graph
        return graph.replace(nodes=tuple(nodes), outputs=tuple(mapping.get(o, o) for o in graph.outputs))
