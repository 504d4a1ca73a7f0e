"""Specialise symbolic dims to sizes (``bind-dims``).

A model exported with a symbolic batch (``f32[batch, 3, 64, 64]``) runs at
every batch size; bound to one size it becomes a static graph, which the
passes that need static extents (``derive``) can work on and codegen can
tile for that size alone, like onnxruntime's free-dimension overrides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Mapping

from tensoropt.errors import VerifyError
from tensoropt.ir.expr import Expr, IterDef, Scope, transform
from tensoropt.ir.graph import Graph, Node, Value
from tensoropt.ir.types import TensorType
from tensoropt.ir.verify import verify

from .pipeline import Pass, register_pass

_ITEM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([0-9]+)\s*$")


def parse_dims(text: str) -> dict[str, int]:
    """``"batch=1,seq=128"`` (commas or spaces between) -> ``{"batch": 1, "seq": 128}``; ValueError naming the bad item."""
    out: dict[str, int] = {}
    for item in (t for t in re.split(r"[,\s]+", text.strip()) if t):
        m = _ITEM.match(item)
        if m is None:
            raise ValueError(f"option 'dims' of bind-dims: {item!r} is not NAME=SIZE")
        name, size = m[1], int(m[2])
        if size < 1:
            raise ValueError(f"option 'dims' of bind-dims: {name} must be >= 1, got {size}")
        if name in out:
            raise ValueError(f"option 'dims' of bind-dims: {name} given twice")
        out[name] = size
    if not out:
        raise ValueError("option 'dims' of bind-dims is empty: give NAME=SIZE, e.g. dims=\"batch=1\"")
    return out


def bind_type(t: TensorType, dims: Mapping[str, int]) -> TensorType:
    """``t`` with each symbol named in ``dims`` replaced by its size."""
    if not t.symbols() & dims.keys():
        return t
    return TensorType(t.dtype, tuple(dims.get(d, d) if isinstance(d, str) else d for d in t.shape))


def _bind_defs(defs: tuple[IterDef, ...], dims: Mapping[str, int]) -> tuple[IterDef, ...]:
    return tuple(IterDef(d.name, dims[d.extent], d.start) if isinstance(d.extent, str) and d.extent in dims else d
                 for d in defs)


def bind_expr(e: Expr, dims: Mapping[str, int]) -> Expr:
    """``e`` with every iterator extent named in ``dims`` replaced by its size."""
    def fn(x: Expr) -> Expr | None:
        if not isinstance(x, Scope):
            return None
        travs, sums = _bind_defs(x.travs, dims), _bind_defs(x.sums, dims)
        if travs == x.travs and sums == x.sums:
            return None
        return Scope(travs, sums, x.body, x.reduce)

    return transform(e, fn)


@register_pass
@dataclass(frozen=True)
class BindDims(Pass):
    """Bind symbolic dims to sizes: ``bind-dims{dims="batch=1,seq=128"}``.

    Guarantees: every input, constant and node output type has each named
    symbol replaced by its size, and so has every ``expr`` node's iterator
    extents; op attributes, names and values are unchanged; the result
    verifies (a size the graph contradicts is a :class:`VerifyError` naming
    the node). Naming a symbol the graph does not have is an error, not a
    silent no-op. Returns ``graph`` itself when it is already static in the
    named dims.
    """

    name: ClassVar[str] = "bind-dims"
    dims: str = "batch=1"

    def __post_init__(self) -> None:
        parse_dims(self.dims)  # bad text fails at pipeline-parse time

    def apply(self, graph: Graph) -> Graph:
        dims = parse_dims(self.dims)
        have = {s for v in graph.values().values() for s in v.type.symbols()}
        unknown = sorted(dims.keys() - have)
        if unknown:
            raise VerifyError(f"bind-dims: graph {graph.name} has no symbolic dim {unknown[0]!r}"
                              f" (its symbols: {', '.join(sorted(have)) or 'none'})")

        def value(v: Value) -> Value:
            t = bind_type(v.type, dims)
            return v if t is v.type else Value(v.name, t)

        nodes = []
        for n in graph.nodes:
            outs = tuple(value(v) for v in n.outputs)
            expr = bind_expr(n.expr, dims) if n.expr is not None else None
            nodes.append(Node(n.op, n.inputs, outs, n.attrs, expr))  # type: ignore[arg-type]
        out = graph.replace(inputs=tuple(value(v) for v in graph.inputs),
                            constants=tuple(value(v) for v in graph.constants), nodes=tuple(nodes))
        verify(out)
        return out
