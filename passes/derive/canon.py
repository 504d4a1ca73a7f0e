"""Exact canonical form of an expression, the search's deduplication key.

Two expressions with the same canonical text are the same program up to
iterator names, the order of summation iterators and the order of the
operands of commutative ``+``/``*`` chains in bodies: the key *is* an
expression (printed), never a hash, so unequal states never merge. It can
miss some equivalences (then the search explores a state twice, which only
costs time).

Iterators are renamed by nesting depth and order: traversal iterators keep
their position (it is the layout), summation iterators are ordered by first
use in the body, and renaming, operand sorting and index normalization repeat
a fixed number of rounds (names and operand order depend on each other).
"""

from __future__ import annotations

from tensoropt.ir.expr import Access, BinOp, Call, Expr, Iter, IterDef, Scope, substitute_iters, walk
from tensoropt.ir.printer import print_expr

from .affine import affine
from .sites import map_own_accesses


def _first_use(body: Expr) -> list[str]:
    order: dict[str, None] = {}
    for n in walk(body):
        if isinstance(n, Iter):
            order.setdefault(n.name, None)
    return list(order)


def _rename(s: Scope, depth: int) -> Scope:
    body = map_own_accesses(s.body, lambda a: Access(_rename(a.source, depth + 1), a.indices, a.pad)
                            if isinstance(a.source, Scope) else None)
    seen = _first_use(body)
    sums = sorted(s.sums, key=lambda d: seen.index(d.name) if d.name in seen else len(seen))
    names = {d.name: f"t{depth}_{k}" for k, d in enumerate(s.travs)}
    names.update({d.name: f"s{depth}_{k}" for k, d in enumerate(sums)})
    body = substitute_iters(body, {k: Iter(v) for k, v in names.items()})
    travs = tuple(IterDef(names[d.name], d.extent, d.start) for d in s.travs)
    sdefs = tuple(IterDef(names[d.name], d.extent, d.start) for d in sums)
    return Scope(travs, sdefs, _normal(body), s.reduce)


def _chain(e: Expr, op: str) -> list[Expr]:
    if isinstance(e, BinOp) and e.op == op:
        return _chain(e.lhs, op) + _chain(e.rhs, op)
    return [e]


def _normal(e: Expr) -> Expr:
    """Affine indices in normal form; commutative body chains sorted by text."""
    if isinstance(e, Access):
        idx = []
        for i in e.indices:
            a = affine(i)
            idx.append(a.expr() if a is not None else i)
        return Access(e.source, tuple(idx), e.pad)
    if isinstance(e, BinOp) and e.op in ("+", "*"):
        parts = sorted((_normal(p) for p in _chain(e, e.op)), key=print_expr)
        out = parts[0]
        for p in parts[1:]:
            out = BinOp(e.op, out, p)
        return out
    if isinstance(e, BinOp):
        return BinOp(e.op, _normal(e.lhs), _normal(e.rhs))
    if isinstance(e, Call):
        return Call(e.fn, tuple(_normal(a) for a in e.args))
    return e


def canonical(s: Scope, rounds: int = 2) -> Scope:
    """``rounds`` of renaming + sorting (two settle every case the tests meet;
    any number is sound: each round is an exact rename and reorder)."""
    for _ in range(rounds):
        s = _rename(s, 0)
    return s


def canonical_key(s: Scope) -> str:
    """The canonical text of ``s`` (see the module docstring)."""
    return print_expr(canonical(s))
