"""Affine index arithmetic for derivation rules: normal forms, bounds, simplification.

An index expression is *affine* when it is an integer combination of iterators
plus a constant; it is held as :class:`Affine` (terms sorted by iterator name,
no zero coefficients), so two affine indices are equal exactly when their
normal forms are. Bounds are inclusive integer intervals computed from the
ranges of the iterators (:data:`Ranges`). ``//`` and ``%`` by a positive
constant are simplified where that is exact (floor semantics, as NumPy and the
interpreter use): multiples of the divisor move out of the division, and a
remainder whose range lies inside one period folds to a constant quotient.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

from tensoropt.ir.expr import Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope

#: iterator name -> inclusive (lo, hi) range of its values.
Ranges = Mapping[str, tuple[int, int]]


@dataclass(frozen=True)
class Affine:
    """``sum(c * it for it, c in terms) + const``; terms sorted, no zero coefficient."""

    terms: tuple[tuple[str, int], ...]
    const: int = 0

    @staticmethod
    def of(terms: Mapping[str, int], const: int = 0) -> "Affine":
        return Affine(tuple(sorted((k, v) for k, v in terms.items() if v != 0)), const)

    @property
    def coeffs(self) -> dict[str, int]:
        return dict(self.terms)

    def coeff(self, name: str) -> int:
        return self.coeffs.get(name, 0)

    def __add__(self, o: "Affine") -> "Affine":
        t = self.coeffs
        for k, v in o.terms:
            t[k] = t.get(k, 0) + v
        return Affine.of(t, self.const + o.const)

    def scale(self, c: int) -> "Affine":
        return Affine.of({k: v * c for k, v in self.terms}, self.const * c)

    def drop(self, name: str) -> "Affine":
        return Affine.of({k: v for k, v in self.terms if k != name}, self.const)

    def expr(self, order: tuple[str, ...] = ()) -> Expr:
        """The expression ``c1*i1 + ... + const`` (iterators in ``order`` first)."""
        rank = {n: k for k, n in enumerate(order)}
        terms = sorted(self.terms, key=lambda t: (rank.get(t[0], len(rank)), t[0]))
        out: Expr | None = None
        for name, c in terms:
            term: Expr = Iter(name) if abs(c) == 1 else Iter(name) * abs(c)
            if out is None:
                out = term if c > 0 else Const(0) - term
            else:
                out = out + term if c > 0 else out - term
        if out is None:
            return Const(self.const)
        if self.const > 0:
            out = out + self.const
        elif self.const < 0:
            out = out - (-self.const)
        return out


@functools.lru_cache(maxsize=1 << 16)
def affine(e: Expr) -> Affine | None:
    """Normal form of an affine integer index expression, or None (memoized: the
    search asks for the same index nodes many times)."""
    if isinstance(e, Iter):
        return Affine(((e.name, 1),))
    if isinstance(e, Const):
        return Affine((), e.value) if isinstance(e.value, int) else None
    if isinstance(e, BinOp) and e.op in ("+", "-", "*"):
        a, b = affine(e.lhs), affine(e.rhs)
        if a is None or b is None:
            return None
        if e.op == "+":
            return a + b
        if e.op == "-":
            return a + b.scale(-1)
        if not a.terms:
            return b.scale(a.const)
        if not b.terms:
            return a.scale(b.const)
    return None


def bounds(a: Affine, ranges: Ranges) -> tuple[int, int] | None:
    """Inclusive (lo, hi) of ``a`` over ``ranges``; None if an iterator is unknown."""
    lo = hi = a.const
    for name, c in a.terms:
        r = ranges.get(name)
        if r is None:
            return None
        lo += min(c * r[0], c * r[1])
        hi += max(c * r[0], c * r[1])
    return lo, hi


def iter_range(d: IterDef) -> tuple[int, int]:
    """Inclusive value range of a static iterator (extent must be an int)."""
    assert isinstance(d.extent, int), d
    return d.start, d.start + d.extent - 1


def scope_ranges(s: Scope) -> dict[str, tuple[int, int]]:
    return {d.name: iter_range(d) for d in s.travs + s.sums if isinstance(d.extent, int)}


def _floor_parts(a: Affine, p: int, ranges: Ranges) -> tuple[Affine, Affine] | None:
    """(q, r) with ``a == p*q + r`` and ``0 <= r < p`` everywhere, or None."""
    whole = {k: v // p for k, v in a.terms if v % p == 0}
    rest = Affine.of({k: v for k, v in a.terms if v % p != 0}, a.const)
    b = bounds(rest, ranges)
    if b is None:
        return None
    lo_q, hi_q = b[0] // p, b[1] // p
    if lo_q != hi_q:
        return None  # the remainder spans periods: the caller keeps a division
    r = Affine.of(dict(rest.terms), rest.const - lo_q * p)
    return Affine.of(whole, lo_q), r


def simplify_index(e: Expr, ranges: Ranges) -> Expr:
    """Exact simplification of an index: affine normal form, ``//`` and ``%`` folded.

    ``(p*q + r) // p -> q + r // p`` and ``(p*q + r) % p -> r % p`` always hold
    for floor division; when ``r``'s range fits in one period the division
    disappears. Non-index nodes are returned unchanged.
    """
    if isinstance(e, BinOp) and e.op in ("//", "%") and isinstance(e.rhs, Const) \
            and isinstance(e.rhs.value, int) and e.rhs.value > 0:
        p = e.rhs.value
        inner = simplify_index(e.lhs, ranges)
        a = affine(inner)
        if a is None:
            return BinOp(e.op, inner, e.rhs)
        if p == 1:
            return Affine((), 0).expr() if e.op == "%" else a.expr()
        parts = _floor_parts(a, p, ranges)
        if parts is not None:
            q, r = parts
            return q.expr() if e.op == "//" else r.expr()
        whole = {k: v // p for k, v in a.terms if v % p == 0}
        rest = Affine.of({k: v for k, v in a.terms if v % p != 0}, a.const % p)
        shift = a.const // p  # const = p*shift + (const % p)
        if not rest.terms:
            return Affine.of(whole, shift).expr() if e.op == "//" else Const(rest.const)
        if e.op == "%":
            return BinOp("%", rest.expr(), e.rhs)
        q = Affine.of(whole, shift)
        div = BinOp("//", rest.expr(), e.rhs)
        return div if not q.terms and q.const == 0 else q.expr() + div
    a = affine(e)
    if a is not None:
        return a.expr()
    if isinstance(e, BinOp):
        lhs, rhs = simplify_index(e.lhs, ranges), simplify_index(e.rhs, ranges)
        if e.op in ("+", "-") and rhs == Const(0):
            return lhs
        return BinOp(e.op, lhs, rhs)
    return e


def simplify_body(e: Expr, ranges: Ranges) -> Expr:
    """Simplify every access index (and integer predicates) in a scalar body.

    Nested scopes get their own iterator ranges added. ``eq(x, c)`` and
    ``ne`` with both sides constant after simplification fold to 1/0 so that
    predicates made trivially true by a substitution disappear.
    """
    if isinstance(e, Access):
        src = e.source
        if isinstance(src, Scope):
            src = simplify_scope(src, ranges)
        return Access(src, tuple(simplify_index(i, ranges) for i in e.indices), e.pad)
    if isinstance(e, Scope):
        return simplify_scope(e, ranges)
    if isinstance(e, Call):
        args = tuple(simplify_body(a, ranges) for a in e.args)
        if e.fn in ("eq", "ne"):
            args = tuple(simplify_index(a, ranges) for a in args)
            if all(isinstance(a, Const) for a in args):
                # numeric comparison: 0 == 0.0, NaN != NaN (structural Const equality differs)
                same = float(args[0].value) == float(args[1].value)  # type: ignore[union-attr]
                return Const(1.0 if same == (e.fn == "eq") else 0.0)
        if e.fn == "where" and isinstance(args[0], Const):
            return args[1] if args[0].value != 0 else args[2]
        return Call(e.fn, args)
    if isinstance(e, BinOp):
        lhs, rhs = simplify_body(e.lhs, ranges), simplify_body(e.rhs, ranges)
        if e.op == "*":
            # a predicate folded to 1 disappears from a product
            if isinstance(lhs, Const) and lhs.value == 1.0 and isinstance(lhs.value, float):
                return rhs
            if isinstance(rhs, Const) and rhs.value == 1.0 and isinstance(rhs.value, float):
                return lhs
        return BinOp(e.op, lhs, rhs)
    return e


def simplify_scope(s: Scope, outer: Ranges) -> Scope:
    ranges = dict(outer)
    ranges.update(scope_ranges(s))
    return Scope(s.travs, s.sums, simplify_body(s.body, ranges), s.reduce)
