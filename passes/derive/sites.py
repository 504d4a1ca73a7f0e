"""Where rules apply: scope *sites* of an expression tree, and rebuilding after a rewrite.

A site is a scope together with the access that reads it. Nested scopes are
read by an ``Access`` in their parent's body; the root is read by a *virtual*
identity access (``root[t0 - start0, ...]``). A rule returns the expression
that replaces the site's access, so rules that change a scope's layout (split
or substitute traversal iterators) adjust the parent's indices in the same
step. When the root's replacement is not the identity, the result keeps the
root's shape through a gather wrapper ``L[root travs] { new[...] }``.

Invariant relied on by every rule: nested scopes produced by derivation are
*closed* (their bodies mention only their own iterators), so a site's body can
be rewritten without looking at the enclosing scopes, and only the access's
indices mention the parent's iterators (whose ranges are ``Site.outer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from tensoropt.ir.expr import (Access, BinOp, Call, Expr, Iter, IterDef, Scope, free_iters,
                               substitute_iters, walk)

from .affine import Affine, Ranges, affine, scope_ranges, simplify_index

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Site:
    """Scope number ``index`` (pre-order; 0 is the root) and how it is read."""

    index: int
    scope: Scope
    access: Access
    outer: Ranges
    shapes: Shapes

    @property
    def is_root(self) -> bool:
        return self.index == 0


def root_access(root: Scope) -> Access:
    return Access(root, tuple(Affine.of({d.name: 1}, -d.start).expr() for d in root.travs))


def map_scope_accesses(e: Expr, ranges: Ranges, visit: Callable[[Access, Ranges], Expr | None]) -> Expr:
    """Pre-order over the accesses of nested scopes, at every depth; ``visit`` gets
    each with the ranges of the scope it sits in and may replace it (no descent then)."""
    if isinstance(e, Access):
        if isinstance(e.source, Scope):
            new = visit(e, ranges)
            if new is not None:
                return new
            src = e.source
            body = map_scope_accesses(src.body, scope_ranges(src), visit)
            if body is not src.body:
                src = Scope(src.travs, src.sums, body, src.reduce)
            return e if src is e.source else Access(src, e.indices, e.pad)
        return e
    if isinstance(e, BinOp):
        lhs, rhs = map_scope_accesses(e.lhs, ranges, visit), map_scope_accesses(e.rhs, ranges, visit)
        return e if lhs is e.lhs and rhs is e.rhs else BinOp(e.op, lhs, rhs)
    if isinstance(e, Call):
        args = tuple(map_scope_accesses(a, ranges, visit) for a in e.args)
        return e if all(a is b for a, b in zip(args, e.args)) else Call(e.fn, args)
    return e


def sites(root: Scope, shapes: Shapes) -> list[Site]:
    """Every scope of ``root`` as a site, root first, then nested in pre-order."""
    out = [Site(0, root, root_access(root), scope_ranges(root), shapes)]

    def visit(a: Access, ranges: Ranges) -> None:
        assert isinstance(a.source, Scope)
        out.append(Site(len(out), a.source, a, dict(ranges), shapes))
        return None

    map_scope_accesses(root.body, scope_ranges(root), visit)
    return out


def _is_identity(a: Access, root: Scope) -> bool:
    src = a.source
    if not isinstance(src, Scope) or src.shape != root.shape or a.pad != 0.0:
        return False
    want = root_access(root).indices
    return all(affine(i) == affine(w) for i, w in zip(a.indices, want))


def replace(root: Scope, index: int, new: Expr) -> Scope:
    """``root`` with site ``index``'s access replaced by ``new``."""
    if index == 0:
        if isinstance(new, Access) and _is_identity(new, root):
            assert isinstance(new.source, Scope)
            return new.source
        return Scope(root.travs, (), new)
    count = [0]

    def visit(a: Access, ranges: Ranges) -> Expr | None:
        count[0] += 1
        return new if count[0] == index else None

    body = map_scope_accesses(root.body, scope_ranges(root), visit)
    return Scope(root.travs, root.sums, body, root.reduce)


def map_own_accesses(e: Expr, fn: Callable[[Access], Expr | None]) -> Expr:
    """Rewrite the accesses of one scope's own body (nested scopes' bodies untouched);
    ``fn`` returns a replacement or None to keep the access."""
    if isinstance(e, Access):
        out = fn(e)
        return e if out is None else out
    if isinstance(e, BinOp):
        return BinOp(e.op, map_own_accesses(e.lhs, fn), map_own_accesses(e.rhs, fn))
    if isinstance(e, Call):
        return Call(e.fn, tuple(map_own_accesses(a, fn) for a in e.args))
    return e


# --------------------------------------------------------------------------
# Helpers shared by rules


def fresh(scope: Scope, base: str, taken: set[str] | None = None) -> str:
    """An iterator name not bound or used in ``scope`` (nor in ``taken``)."""
    used = {d.name for d in scope.travs + scope.sums} | free_iters(scope.body) | (taken or set())
    for n in walk(scope.body):
        if isinstance(n, Scope):
            used |= {d.name for d in n.travs + n.sums}
    if base not in used:
        return base
    k = 1
    while f"{base}{k}" in used:
        k += 1
    return f"{base}{k}"


def reindex(site: Site, new_scope: Scope, values: tuple[Expr, ...]) -> Access:
    """The access reading ``new_scope`` where the site read the old scope.

    ``values[k]`` is the value of ``new_scope.travs[k]`` written in the old
    scope's traversal iterators; they are replaced by the values the parent's
    indices select (``index + start``) and the new start is subtracted.
    """
    old = site.scope
    sub = {d.name: site.access.indices[k] + d.start for k, d in enumerate(old.travs)}
    idx = tuple(simplify_index(substitute_iters(v, sub) - d.start, site.outer)
                for v, d in zip(values, new_scope.travs))
    return Access(new_scope, idx, site.access.pad)


def identity_values(scope: Scope) -> tuple[Expr, ...]:
    return tuple(Iter(d.name) for d in scope.travs)


def with_travs(scope: Scope, travs: tuple[IterDef, ...], body: Expr,
               sums: tuple[IterDef, ...] | None = None) -> Scope:
    return Scope(travs, scope.sums if sums is None else sums, body, scope.reduce)
