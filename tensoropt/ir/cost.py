"""Cost of an Expr: arithmetic operations and bytes read, from its structure.

Counts one flop per binary operator or function call in the body, per point
of the iteration space (traversal x reduction extents), plus one per point for
the reduction itself; nested scopes are costed once each (the interpreter and
codegen materialize a nested scope that does not depend on enclosing
iterators). Symbolic extents count as ``symbol_size``. This is a static
estimate for reports and search heuristics, not a measurement.
"""

from __future__ import annotations

from .expr import Access, BinOp, Call, Expr, Scope, children
from .types import Dim


def _extent(d: Dim, symbol_size: int) -> int:
    return d if isinstance(d, int) else symbol_size


def _body_ops(e: Expr, nested: list[Scope]) -> int:
    """Operators in a scalar body; nested scopes are collected, not descended."""
    if isinstance(e, Scope):
        nested.append(e)
        return 0
    own = 1 if isinstance(e, (BinOp, Call)) else 0
    if isinstance(e, Access):
        # index arithmetic is address computation, not flops
        if isinstance(e.source, Scope):
            nested.append(e.source)
        return 0
    return own + sum(_body_ops(c, nested) for c in children(e))


def expr_flops(scope: Scope, symbol_size: int = 1) -> int:
    """Estimated floating-point operations to evaluate ``scope`` once."""
    points = 1
    for d in scope.travs + scope.sums:
        points *= _extent(d.extent, symbol_size)
    nested: list[Scope] = []
    per_point = _body_ops(scope.body, nested) + (1 if scope.sums else 0)
    return points * per_point + sum(expr_flops(s, symbol_size) for s in nested)
