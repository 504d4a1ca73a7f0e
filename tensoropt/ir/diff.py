"""What a pass pipeline changed in a graph: nodes removed, added and rewritten, values retyped.

Nodes are matched by their first output's name, which the passes keep for
every node they do not remove (a folded or fused node's survivor takes the
name its readers use). The diff is for reports; it makes no claim about
values (the soundness check does that).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import Graph, Node


@dataclass(frozen=True)
class GraphDiff:
    """``removed``/``added``: ``(output name, op)`` in node order; ``rewritten``:
    ``(output name, op before, op after)`` for nodes whose op, inputs, attributes or
    Expr changed; ``retyped``: ``(value name, type before, type after)``."""

    removed: tuple[tuple[str, str], ...] = ()
    added: tuple[tuple[str, str], ...] = ()
    rewritten: tuple[tuple[str, str, str], ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.rewritten or self.retyped)

    def as_json(self) -> dict[str, list[list[str]]]:
        return {k: [list(t) for t in getattr(self, k)] for k in ("removed", "added", "rewritten", "retyped")}


def _key(n: Node) -> str:
    return n.outputs[0].name if n.outputs else ""


def graph_diff(before: Graph, after: Graph) -> GraphDiff:
    """The changes from ``before`` to ``after`` (see the module docstring)."""
    a = {_key(n): n for n in before.nodes}
    b = {_key(n): n for n in after.nodes}
    removed = tuple((k, n.op) for k, n in a.items() if k not in b)
    added = tuple((k, n.op) for k, n in b.items() if k not in a)
    rewritten = tuple((k, a[k].op, n.op) for k, n in b.items()
                      if k in a and (a[k].op, a[k].inputs, a[k].attrs, a[k].expr) != (n.op, n.inputs, n.attrs, n.expr))
    ta = {k: v.type for k, v in before.values().items()}
    retyped = tuple((k, str(ta[k]), str(v.type)) for k, v in after.values().items() if k in ta and ta[k] != v.type)
    return GraphDiff(removed, added, rewritten, retyped)
