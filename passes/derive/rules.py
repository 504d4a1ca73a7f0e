"""Derivation rules (OLLIE's families), one small function each, collected in :data:`RULES`.

Every rule is ``apply(site, param) -> Expr | None``: the expression that
replaces the site's access (see :mod:`.sites`), or None when the rule does not
apply with that parameter; ``params(site)`` lists the parameters worth trying
(derived from the expression itself: iterators, index coefficients, strides
and divisors that occur in it, never fixed factors or shapes).

Shared assumption (OLLIE's, and the reason rules may drop terms): inputs are
finite, so a product with a zero factor is zero. Guards are the zero-padded
reads of a product: ``X[e]`` with pad 0 is zero unless ``0 <= e < dim``.

Families:

- summation splitting (``sum-split``): move a subset of the summation
  iterators into a nested scope, keeping the factors that do not use them
  outside (Sum only; predicates that do not use them stay outside too);
- variable substitution: ``trav-split`` (``i -> p*q + r`` on a traversal
  iterator, relaxing to ``ceil(E/p)*p`` points when ``p`` does not divide the
  extent: the extra points are computed and never read), ``sum-factor`` (the
  same on a summation iterator; relaxing needs a guard that zeroes the added
  terms), ``trav-subst`` (replace a traversal iterator with coefficient +-1 in
  an affine index by a new iterator equal to that index: an injective change of
  layout), ``sum-subst`` (the same for a summation iterator, with an optional
  stride ``m`` taken from a ``% m``/``// m`` predicate pattern: substituting
  ``e = m*u`` makes the predicate true and drops the terms it excluded; needs
  a guard keeping the old range);
- traversal merging (``inline``): inline a summation-free nested scope whose
  reads are provably in bounds;
- data layout (``layout-split``): read an input through a split of one of its
  dims by a stride that occurs in its indices (``X[.., p*q + r, ..]``);
- boundary tightening and relaxing: :func:`normalize` tightens every range to
  where the guards allow non-zero terms (never harmful, so it costs no search
  depth); relaxing is part of the splits above.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from tensoropt.ir.expr import (Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope, free_iters,
                               substitute_iters, walk)

from .affine import Affine, Ranges, affine, bounds, iter_range, scope_ranges, simplify_body, simplify_index
from .sites import Site, fresh, identity_values, map_own_accesses, reindex, replace, sites

# --------------------------------------------------------------------------
# Products, predicates and guards


def factors(e: Expr) -> tuple[list[Expr], list[Expr]]:
    """(predicates, factors) of a body that is a product, seen through ``where(c, x, 0)``."""
    if isinstance(e, BinOp) and e.op == "*":
        m1, f1 = factors(e.lhs)
        m2, f2 = factors(e.rhs)
        return m1 + m2, f1 + f2
    if isinstance(e, Call) and e.fn == "where" and isinstance(e.args[2], Const) and e.args[2].value == 0:
        mx, fx = factors(e.args[1])
        return _mask_factors(e.args[0]) + mx, fx
    return [], [e]


def _mask_factors(c: Expr) -> list[Expr]:
    if isinstance(c, BinOp) and c.op == "*":
        return _mask_factors(c.lhs) + _mask_factors(c.rhs)
    return [c]


def product(masks: list[Expr], terms: list[Expr]) -> Expr:
    """Rebuild ``where(m1 * m2 ..., t1 * t2 ..., 0.0)`` (masks as a select: inf * 0 is nan)."""
    body: Expr = terms[0] if terms else Const(1.0)
    for t in terms[1:]:
        body = body * t
    if masks:
        cond = masks[0]
        for m in masks[1:]:
            cond = cond * m
        body = Call("where", (cond, body, Const(0.0)))
    return body


def _dims(a: Access, site: Site) -> tuple[int, ...] | None:
    if isinstance(a.source, Scope):
        sh = a.source.shape
        return sh if all(isinstance(d, int) for d in sh) else None  # type: ignore[return-value]
    return site.shapes.get(a.source)


def guards(body: Expr, site: Site) -> list[tuple[Affine, int, int]]:
    """``(index, lo, hi)``: the body is zero unless ``lo <= index <= hi`` for each."""
    out = []
    _, terms = factors(body)
    for t in terms:
        if isinstance(t, Access) and t.pad == 0.0:
            dims = _dims(t, site)
            if dims is None:
                continue
            for i, d in zip(t.indices, dims):
                a = affine(i)
                if a is not None and a.terms:
                    out.append((a, 0, d - 1))
    return out


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def guarded_range(name: str, body: Expr, site: Site, ranges: Ranges) -> tuple[int, int]:
    """The range of ``name`` outside which the guards make the body zero."""
    lo, hi = ranges[name]
    for a, glo, ghi in guards(body, site):
        c = a.coeff(name)
        if c == 0:
            continue
        rest = bounds(a.drop(name), ranges)
        if rest is None:
            continue
        # glo <= c*x + rest <= ghi for some rest in [rlo, rhi]
        rlo, rhi = rest
        if c > 0:  # glo - rhi <= c*x <= ghi - rlo
            lo, hi = max(lo, _ceil_div(glo - rhi, c)), min(hi, (ghi - rlo) // c)
        else:  # rlo - ghi <= |c|*x <= rhi - glo
            lo, hi = max(lo, _ceil_div(rlo - ghi, -c)), min(hi, (rhi - glo) // -c)
    return lo, hi


def is_guarded(name: str, body: Expr, site: Site, ranges: Ranges) -> bool:
    """Is every value of ``name`` outside its range a zero term (so the range may grow)?"""
    lo, hi = ranges[name]
    for a, glo, ghi in guards(body, site):
        if a.drop(name).terms or abs(a.coeff(name)) != 1:
            continue
        c = a.coeff(name)
        vals = sorted((c * lo + a.const, c * hi + a.const))
        if vals == [glo, ghi]:
            return True
    return False


def body_constants(e: Expr) -> set[int]:
    """Integer strides and divisors > 1 that occur in index expressions of ``e``."""
    out: set[int] = set()
    for n in walk(e):
        if isinstance(n, BinOp) and n.op in ("//", "%") and isinstance(n.rhs, Const):
            if isinstance(n.rhs.value, int) and n.rhs.value > 1:
                out.add(n.rhs.value)
        if isinstance(n, Access):
            for i in n.indices:
                a = affine(i)
                if a is not None:
                    out.update(abs(c) for _, c in a.terms if abs(c) > 1)
    return out


def index_in_bounds(site: Site, k: int) -> bool:
    """Does the site's access read dim ``k`` of its scope provably in bounds?

    The root's virtual access always does. A rule that makes positions which
    used to be out of bounds (pad) land on computed points needs this.
    """
    if site.is_root:
        return True
    d = site.scope.travs[k]
    a = affine(site.access.indices[k])
    b = bounds(a, site.outer) if a is not None else None
    return b is not None and isinstance(d.extent, int) and b[0] >= 0 and b[1] <= d.extent - 1


def own_accesses(e: Expr) -> Iterator[Access]:
    """Accesses in a scope's own body (not inside nested scopes' bodies)."""
    if isinstance(e, Access):
        yield e
        for i in e.indices:
            yield from own_accesses(i)
        return
    if isinstance(e, Scope):
        return
    for c in (e.lhs, e.rhs) if isinstance(e, BinOp) else e.args if isinstance(e, Call) else ():
        yield from own_accesses(c)


def _sub(scope: Scope, mapping: dict[str, Expr], ranges: Ranges) -> Expr:
    return simplify_body(substitute_iters(scope.body, mapping), ranges)


# --------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class Rule:
    """A derivation rule: its parameters at a site, and the rewrite."""

    name: str
    params: Callable[[Site], Iterable[Any]]
    apply: Callable[[Site, Any], Expr | None]
    doc: str


def _sum_split_params(site: Site) -> Iterable[frozenset[str]]:
    s = site.scope
    if s.reduce != "Sum" or not s.sums:
        return []
    names = [d.name for d in s.sums]
    return [frozenset(c) for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]


def sum_split(site: Site, inner_sums: frozenset[str]) -> Expr | None:
    """Σ_{o,i} f(o)·g(o,i) -> Σ_o f(o)·(L[free(g)] Σ_i g)[...]. Needs Sum; i non-empty."""
    s = site.scope
    if s.reduce != "Sum":
        return None
    masks, terms = factors(s.body)
    uses = [bool(free_iters(t) & inner_sums) for t in terms]
    muses = [bool(free_iters(m) & inner_sums) for m in masks]
    inner_terms = [t for t, u in zip(terms, uses) if u]
    outer_terms = [t for t, u in zip(terms, uses) if not u]
    inner_masks = [m for m, u in zip(masks, muses) if u]
    outer_masks = [m for m, u in zip(masks, muses) if not u]
    rest = tuple(d for d in s.sums if d.name not in inner_sums)
    if not inner_terms or (not rest and not outer_terms and not outer_masks):
        return None
    body = product(inner_masks, inner_terms)
    used = free_iters(body)
    keep = tuple(d for d in s.travs + rest if d.name in used)
    inner = Scope(keep, tuple(d for d in s.sums if d.name in inner_sums), body, "Sum")
    acc = Access(inner, tuple(Affine.of({d.name: 1}, -d.start).expr() for d in keep))
    outer = Scope(s.travs, rest, product(outer_masks, outer_terms + [acc]), "Sum")
    return Access(outer, site.access.indices, site.access.pad)


def _factor_candidates(d: IterDef, body: Expr) -> list[int]:
    e = d.extent
    assert isinstance(e, int)
    if e <= 16:
        return list(range(2, e))
    return sorted(p for p in body_constants(body) if 1 < p < e)


def _trav_split_params(site: Site) -> Iterable[tuple[str, int]]:
    s = site.scope
    consts = body_constants(s.body)
    return [(d.name, p) for d in s.travs if isinstance(d.extent, int)
            for p in sorted(consts) if p < d.extent]


def trav_split(site: Site, param: tuple[str, int]) -> Expr | None:
    """Traversal iterator t (extent E) -> (q: ceil(E/p), r: p), t = start + p*q + r.

    When p does not divide E the extra points are computed; the parent must read
    t provably in bounds so that none of its reads lands on them.
    """
    name, p = param
    s = site.scope
    k = next((i for i, d in enumerate(s.travs) if d.name == name), None)
    if k is None or site.access.pad != 0.0:
        return None
    d = s.travs[k]
    assert isinstance(d.extent, int)
    if d.extent % p and not index_in_bounds(site, k):
        return None  # a read past the end would land on a relaxed (computed) point
    q, r = fresh(s, name + "q"), fresh(s, name + "r", {name + "q"})
    travs = s.travs[:k] + (IterDef(q, -(-d.extent // p)), IterDef(r, p)) + s.travs[k + 1:]
    ranges = scope_ranges(Scope(travs, s.sums, s.body))
    body = _sub(s, {name: Iter(q) * p + Iter(r) + d.start}, ranges)
    new = Scope(travs, s.sums, body, s.reduce)
    off = Iter(name) - d.start
    vals = identity_values(s)
    values = vals[:k] + (off // p, off % p) + vals[k + 1:]
    return reindex(site, new, values)


def _sum_factor_params(site: Site) -> Iterable[tuple[str, int]]:
    s = site.scope
    if s.reduce != "Sum":
        return []
    return [(d.name, p) for d in s.sums if isinstance(d.extent, int) for p in _factor_candidates(d, s.body)]


def sum_factor(site: Site, param: tuple[str, int]) -> Expr | None:
    """Σ_{s:E} f(s) -> Σ_{a:ceil(E/p), b:p} f(start + p*a + b); relaxing needs a guard on s."""
    name, p = param
    s = site.scope
    k = next((i for i, d in enumerate(s.sums) if d.name == name), None)
    if k is None or s.reduce != "Sum":
        return None
    d = s.sums[k]
    assert isinstance(d.extent, int)
    if d.extent % p and not is_guarded(name, s.body, site, scope_ranges(s)):
        return None
    a, b = fresh(s, name + "a"), fresh(s, name + "b", {name + "a"})
    sums = s.sums[:k] + (IterDef(a, -(-d.extent // p)), IterDef(b, p)) + s.sums[k + 1:]
    ranges = scope_ranges(Scope(s.travs, sums, s.body))
    body = _sub(s, {name: Iter(a) * p + Iter(b) + d.start}, ranges)
    return Access(Scope(s.travs, sums, body, s.reduce), site.access.indices, site.access.pad)


def _subst_candidates(site: Site, of: set[str], need_other: set[str]) -> set[tuple[str, Affine]]:
    """(iterator, affine index) pairs: the iterator has coefficient +-1 and the index
    also uses one of ``need_other``."""
    out = set()
    for acc in own_accesses(site.scope.body):
        for i in acc.indices:
            a = affine(i)
            if a is None:
                continue
            for name, c in a.terms:
                if name in of and abs(c) == 1 and any(n != name and n in need_other for n, _ in a.terms):
                    out.add((name, a))
    return out


def trav_subst_params(site: Site) -> Iterable[tuple[str, Affine]]:
    s = site.scope
    travs = {d.name for d in s.travs if isinstance(d.extent, int)}
    projected = set()
    for name, a in _subst_candidates(site, travs, travs):
        projected.add((name, Affine.of({n: c for n, c in a.terms if n in travs}, a.const)))
    return sorted(projected, key=str)


def trav_subst(site: Site, param: tuple[str, Affine]) -> Expr | None:
    """Traversal t with coefficient c = +-1 in affine e over traversal iterators ->
    a new iterator u = e in t's place (injective: the other iterators are kept).
    The parent must read t provably in bounds (else a pad read could become a
    computed one)."""
    name, e = param
    s = site.scope
    k = next((i for i, d in enumerate(s.travs) if d.name == name), None)
    c = e.coeff(name)
    trav_names = {d.name for d in s.travs}
    if k is None or abs(c) != 1 or not set(e.coeffs) <= trav_names or len(e.terms) < 2:
        return None
    if not index_in_bounds(site, k):
        return None  # an out-of-bounds read of t could map to an in-range u
    rng = bounds(e, scope_ranges(s))
    if rng is None:
        return None
    u = fresh(s, "u")
    travs = s.travs[:k] + (IterDef(u, rng[1] - rng[0] + 1, rng[0]),) + s.travs[k + 1:]
    ranges = scope_ranges(Scope(travs, s.sums, s.body))
    # t = c * (u - (e - c*t))
    t_val = (Affine.of({u: 1}) + e.drop(name).scale(-1)).scale(c)
    body = _sub(s, {name: t_val.expr()}, ranges)
    vals = identity_values(s)
    return reindex(site, Scope(travs, s.sums, body, s.reduce), vals[:k] + (e.expr(),) + vals[k + 1:])


def _sum_subst_params(site: Site) -> Iterable[tuple[str, Affine, int]]:
    s = site.scope
    if s.reduce != "Sum":
        return []
    sums = {d.name for d in s.sums if isinstance(d.extent, int)}
    alln = {d.name for d in s.travs + s.sums}
    out: set[tuple[str, Affine, int]] = {(n, a, 1) for n, a in _subst_candidates(site, sums, alln)}
    for node in walk(s.body):
        if isinstance(node, BinOp) and node.op in ("//", "%") and isinstance(node.rhs, Const):
            a = affine(node.lhs)
            m = node.rhs.value
            if a is None or not isinstance(m, int) or m < 2:
                continue
            for name, c in a.terms:
                if name in sums and abs(c) == 1:
                    out.add((name, a, m))
    return sorted(out, key=str)


def sum_subst(site: Site, param: tuple[str, Affine, int]) -> Expr | None:
    """Σ_s f(s) with e = c*s + R (c = +-1) -> Σ_u f(s := c*(m*u - R)) over u covering e/m.

    m = 1 is a plain change of summation variable; m > 1 keeps only the terms
    where ``e % m == 0`` (so it is exact when those are the only non-zero terms:
    a ``where(eq(e % m, 0), ...)`` predicate). Either way s must stay inside its
    old range: a guard must zero the terms outside it.
    """
    name, e, m = param
    s = site.scope
    k = next((i for i, d in enumerate(s.sums) if d.name == name), None)
    c = e.coeff(name)
    if k is None or abs(c) != 1 or s.reduce != "Sum":
        return None
    ranges = scope_ranges(s)
    if not is_guarded(name, s.body, site, ranges):
        return None
    if m > 1 and not _only_multiples(s.body, e, m):
        return None
    rng = bounds(e, ranges)
    if rng is None:
        return None
    lo, hi = -((-rng[0]) // m), rng[1] // m
    if hi < lo:
        return None
    u = fresh(s, "u")
    sums = s.sums[:k] + (IterDef(u, hi - lo + 1, lo),) + s.sums[k + 1:]
    s_val = (Affine.of({u: m}) + e.drop(name).scale(-1)).scale(c)
    body = _sub(s, {name: s_val.expr()}, scope_ranges(Scope(s.travs, sums, s.body)))
    return Access(Scope(s.travs, sums, body, s.reduce), site.access.indices, site.access.pad)


def _only_multiples(body: Expr, e: Affine, m: int) -> bool:
    """Is the body zero unless ``e % m == 0`` (a top-level ``eq(e % m, 0)`` predicate)?"""
    masks, _ = factors(body)
    for p in masks:
        if isinstance(p, Call) and p.fn == "eq":
            x, z = p.args
            if isinstance(z, Const) and z.value == 0 and isinstance(x, BinOp) and x.op == "%" \
                    and x.rhs == Const(m) and affine(x.lhs) == e:
                return True
    return False


def _inline_params(site: Site) -> Iterable[None]:
    return [] if site.is_root or site.scope.sums else [None]


def inline(site: Site, _: None) -> Expr | None:
    """(L[t] {g(t)})[i] -> g(i + start) when the read is provably in bounds."""
    s = site.scope
    if site.is_root or s.sums or not all(isinstance(d.extent, int) for d in s.travs):
        return None
    mapping = {}
    for i, d in zip(site.access.indices, s.travs):
        a = affine(i)
        b = bounds(a, site.outer) if a is not None else None
        assert isinstance(d.extent, int)
        if b is None or b[0] < 0 or b[1] > d.extent - 1:
            return None
        mapping[d.name] = i + d.start
    return simplify_body(substitute_iters(s.body, mapping), site.outer)


def _layout_split_params(site: Site) -> Iterable[tuple[str, int, int]]:
    out = set()
    for acc in own_accesses(site.scope.body):
        if not isinstance(acc.source, str) or acc.source not in site.shapes:
            continue
        dims = site.shapes[acc.source]
        for k, i in enumerate(acc.indices):
            a = affine(i)
            if a is None:
                continue
            for _, c in a.terms:
                if abs(c) > 1 and abs(c) < dims[k]:
                    out.add((acc.source, k, abs(c)))
    return sorted(out)


def layout_split(site: Site, param: tuple[str, int, int]) -> Expr | None:
    """Read X through X'[.., q, r, ..] = X[.., p*q + r, ..]: X[.., e, ..] -> X'[.., e//p, e%p, ..]."""
    name, k, p = param
    dims = site.shapes.get(name)
    if dims is None or not (1 < p < dims[k]):
        return None
    its = [f"x{j}" for j in range(len(dims))]
    q, r = f"x{k}q", f"x{k}r"
    travs = tuple(IterDef(n, d) for n, d in zip(its[:k], dims[:k])) + (
        IterDef(q, -(-dims[k] // p)), IterDef(r, p)) + tuple(
        IterDef(n, d) for n, d in zip(its[k + 1:], dims[k + 1:]))
    idx = tuple(Iter(n) for n in its[:k]) + (Iter(q) * p + Iter(r),) + tuple(Iter(n) for n in its[k + 1:])
    layout = Scope(travs, (), Access(name, idx))
    s = site.scope
    ranges = scope_ranges(s)
    if dims[k] % p and any(a.source == name and a.pad != 0.0 for a in own_accesses(s.body)):
        return None  # the padded copy would read 0 where the access's pad is not 0

    def fn(e: Access) -> Expr | None:
        if e.source == name:
            i = e.indices[k]
            new = e.indices[:k] + (simplify_index(i // p, ranges), simplify_index(i % p, ranges)) + e.indices[k + 1:]
            return Access(layout, new, e.pad)
        return None

    body = map_own_accesses(s.body, fn)
    return Access(Scope(s.travs, s.sums, body, s.reduce), site.access.indices, site.access.pad)


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("sum-split", _sum_split_params, sum_split, sum_split.__doc__ or ""),
    Rule("trav-split", _trav_split_params, trav_split, trav_split.__doc__ or ""),
    Rule("sum-factor", _sum_factor_params, sum_factor, sum_factor.__doc__ or ""),
    Rule("trav-subst", trav_subst_params, trav_subst, trav_subst.__doc__ or ""),
    Rule("sum-subst", _sum_subst_params, sum_subst, sum_subst.__doc__ or ""),
    Rule("inline", _inline_params, inline, inline.__doc__ or ""),
    Rule("layout-split", _layout_split_params, layout_split, layout_split.__doc__ or ""),
)}


# --------------------------------------------------------------------------
# Normalization: exact clean-ups applied after every rule (cost no depth)


def _tighten(d: IterDef, body: Expr, site: Site, ranges: Ranges) -> tuple[IterDef, Expr, Ranges, int] | None:
    """Shrink ``d`` to its guarded range and shift it to start 0 (``x = lo + x'``);
    None when it already is. Returns the new def, body, ranges and ``lo``."""
    lo, hi = guarded_range(d.name, body, site, ranges)
    if hi < lo or ((lo, hi) == iter_range(d) and lo == 0):
        return None
    new_ranges = dict(ranges)
    new_ranges[d.name] = (0, hi - lo)
    body = simplify_body(substitute_iters(body, {d.name: Iter(d.name) + lo}), new_ranges)
    return IterDef(d.name, hi - lo + 1), body, new_ranges, lo


def _normalize_site(site: Site) -> Expr | None:
    """Tighten, shift to start 0 and drop what a nested scope does not need."""
    s = site.scope
    ranges = scope_ranges(s)
    changed = False
    sums = list(s.sums)
    body = s.body
    if s.reduce == "Sum":
        for k, d in enumerate(sums):
            if not isinstance(d.extent, int):
                continue
            got = _tighten(d, body, site, ranges)
            if got is not None:
                sums[k], body, ranges, _ = got
                changed = True
    travs = list(s.travs)
    values = list(identity_values(s))
    if not site.is_root and site.access.pad == 0.0 and s.reduce in ("Sum",) and all(
            isinstance(d.extent, int) for d in travs):
        used = free_iters(body)
        for k in reversed(range(len(travs))):
            d = travs[k]
            if d.name not in used and index_in_bounds(site, k):
                del travs[k], values[k]
                changed = True
                continue
            got = _tighten(d, body, site, ranges)
            if got is not None:
                travs[k], body, ranges, lo = got
                values[k] = Iter(d.name) - lo
                changed = True
    if not changed:
        return None
    new = Scope(tuple(travs), tuple(sums), body, s.reduce)
    if site.is_root or tuple(travs) == s.travs:
        return Access(new, site.access.indices, site.access.pad)
    return reindex(site, new, tuple(values))


def normalize(root: Scope, shapes: Any, limit: int = 50) -> Scope:
    """Apply :func:`_normalize_site` everywhere until nothing changes."""
    for _ in range(limit):
        for site in sites(root, shapes):
            new = _normalize_site(site)
            if new is not None:
                root = replace(root, site.index, new)
                break
        else:
            return root
    return root
