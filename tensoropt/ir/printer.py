"""Canonical printer for the IR text format (docs/ir.md).

Invariants (property-tested in tests/ir/test_text.py):

- ``parse_graph(print_graph(g)) == g`` for every graph, and
  ``print_graph(parse_graph(t)) == t`` for every printer output ``t``; the same
  for scopes with ``print_expr`` / ``parse_expr``.
- Output is canonical: two-space indent, constants before nodes, attributes
  sorted, no redundant parentheses, floats always distinguishable from ints.

Limits: iterator names must be identifiers that a body can mention (not
``inf``, ``nan`` or ``L``), and an iterator with a symbolic extent must start
at 0; the text format has no spelling for anything else.
"""

from __future__ import annotations

import math
import re

from .expr import Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope
from .graph import AttrValue, Graph, Node, Value
from .types import TensorType

__all__ = ["print_expr", "print_graph"]

_BARE_TENSOR = re.compile(r"[A-Za-z0-9_.]+\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: binding strength of binary operators; atoms and calls bind tightest (3).
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}
_ATOM = 3


def _quote(s: str) -> str:
    """A double-quoted string; only ``"`` and ``\\`` are escaped."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor(name: str) -> str:
    """``%x`` or, when the name has other characters, ``%"conv1/7x7"``."""
    return "%" + (name if _BARE_TENSOR.match(name) else _quote(name))


def _name(name: str) -> str:
    """A graph, op or attribute-key name: bare if an identifier, else quoted."""
    return name if _IDENT.match(name) else _quote(name)


def _float(x: float) -> str:
    """``repr`` keeps a ``.``/exponent (``1.0``, ``1e-05``) or is inf/nan."""
    if math.isnan(x):
        return "nan"
    return repr(float(x))


def _number(v: int | float) -> str:
    return _float(v) if isinstance(v, float) else str(int(v))


# ---------------------------------------------------------------- exprs


def _iterdef(d: IterDef) -> str:
    if d.start == 0:
        return f"{d.name}:{d.extent}"
    if isinstance(d.extent, str):
        raise ValueError(f"iterator {d.name!r}: a symbolic extent must start at 0, not {d.start}")
    return f"{d.name}:{d.start}..{d.start + d.extent}"


def _iterdefs(ds: tuple[IterDef, ...]) -> str:
    return "[" + ", ".join(_iterdef(d) for d in ds) + "]"


def _scope(s: Scope) -> str:
    out = "L" + _iterdefs(s.travs)
    # an empty reduction is still written when it is not the default kind,
    # so that `Max[]` survives a round trip
    if s.sums or s.reduce != "Sum":
        out += f" {s.reduce}" + _iterdefs(s.sums)
    return out + " { " + _body(s.body) + " }"


def _prec(e: Expr) -> int:
    return _PREC[e.op] if isinstance(e, BinOp) else _ATOM


def _body(e: Expr) -> str:
    """A body or index expression with minimal parentheses."""
    if isinstance(e, BinOp):
        p = _PREC[e.op]
        lhs, rhs = _body(e.lhs), _body(e.rhs)
        # left-associative: the left child needs parens only when it binds
        # looser; the right child also when it binds equally (a - (b - c))
        if _prec(e.lhs) < p:
            lhs = f"({lhs})"
        if _prec(e.rhs) <= p:
            rhs = f"({rhs})"
        return f"{lhs} {e.op} {rhs}"
    if isinstance(e, Const):
        return _number(e.value)
    if isinstance(e, Iter):
        return e.name
    if isinstance(e, Call):
        return e.fn + "(" + ", ".join(_body(a) for a in e.args) + ")"
    if isinstance(e, Access):
        src = _tensor(e.source) if isinstance(e.source, str) else "(" + _scope(e.source) + ")"
        idx = ", ".join(_body(i) for i in e.indices)
        pad = ""
        if math.isnan(e.pad) or e.pad != 0.0:
            pad = (" | " if idx else "| ") + _float(e.pad)
        return f"{src}[{idx}{pad}]"
    if isinstance(e, Scope):
        return _scope(e)
    raise TypeError(f"cannot print {type(e).__name__}")


def print_expr(e: Expr) -> str:
    """Text of a scope (``L[...] { ... }``) or of any sub-expression (``i + 1``)."""
    return _scope(e) if isinstance(e, Scope) else _body(e)


# ---------------------------------------------------------------- graphs


def _type(t: TensorType) -> str:
    return f"{t.dtype}[{', '.join(str(d) for d in t.shape)}]"


def _value(v: Value) -> str:
    return f"{_tensor(v.name)}: {_type(v.type)}"


def _attr_scalar(v: object) -> str:
    if isinstance(v, bool):  # before int: bool is an int subclass
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _number(v)
    if isinstance(v, str):
        return _quote(v)
    raise TypeError(f"cannot print attribute value {v!r}")


def _attr(v: AttrValue) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_attr_scalar(x) for x in v) + "]"
    return _attr_scalar(v)


def _node(n: Node) -> str:
    if not n.outputs:
        raise ValueError(f"{n.op} node has no outputs; the text format needs at least one")
    out = ", ".join(_value(v) for v in n.outputs)
    out += f" = {_name(n.op)}(" + ", ".join(_tensor(i) for i in n.inputs) + ")"
    if n.expr is not None:
        out += " " + _scope(n.expr)
    if n.attrs:
        out += " {" + ", ".join(f"{_name(k)}={_attr(v)}" for k, v in n.attrs.items()) + "}"
    return out


def print_graph(g: Graph) -> str:
    """Canonical text of ``g`` (newline-terminated). Weights are not printed."""
    lines = [f"graph {_name(g.name)}(" + ", ".join(_value(v) for v in g.inputs) + ") {"]
    lines += [f"  const {_value(v)}" for v in g.constants]
    lines += [f"  {_node(n)}" for n in g.nodes]
    ret = ", ".join(_tensor(o) for o in g.outputs)
    lines.append(f"  return {ret}" if ret else "  return")
    lines.append("}")
    return "\n".join(lines) + "\n"
