"""Tensor-algebra expressions (OLLIE style).

An expression is a *scope*: traversal iterators, optional reduction iterators
and a scalar body. Text form::

    L[n:N, f:F, h:H, w:W] Sum[c:C, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }

Semantics (the reference interpreter is the oracle):

- A scope denotes a tensor whose shape is the extents of its traversal
  iterators; element ``p`` is the body reduced (``Sum``/``Max``/``Min``/``Prod``)
  over all reduction iterator values, with each traversal iterator ``t`` set to
  ``t.start + p_t``.
- An iterator ``r:-1..2`` ranges over ``[-1, 2)``; ``i:N`` over ``[0, N)``. A
  symbolic extent (``i:seq``) is bound from the graph's symbolic dims.
- An ``Access`` reads a named tensor (``%X[...]``) or a nested scope
  (``(L[...] {...})[...]``). A read outside the tensor's bounds yields the
  access's ``pad`` value (0 unless written ``%X[i | -inf]``): this is how
  padding is expressed.
- Index expressions are affine in the iterators, plus ``//`` and ``%`` by
  positive integer constants (reshape-like access). The verifier checks this.
- Nodes are immutable, hashable, and compare structurally; hashes are cached
  because passes hash the same subtrees many times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Mapping, Union

from .types import Dim

#: binary operators, in the text format's spelling.
BINOPS = ("+", "-", "*", "/", "//", "%")
#: Reduction kinds of a scope, in the text format's spelling.
REDUCERS = ("Sum", "Max", "Min", "Prod")
#: elementwise functions usable in a body: name -> arity. Their NumPy meaning
#: lives in ``tensoropt.interp.FUNCTION_IMPLS`` (a test keeps the two in step).
FUNCTIONS: dict[str, int] = {
    "neg": 1, "abs": 1, "exp": 1, "log": 1, "sqrt": 1, "rsqrt": 1,
    "tanh": 1, "sigmoid": 1, "relu": 1, "erf": 1, "sin": 1, "cos": 1,
    "floor": 1, "ceil": 1, "sign": 1, "reciprocal": 1,
    "tan": 1, "arcsin": 1, "arccos": 1, "arctan": 1, "sinh": 1, "cosh": 1,
    "arcsinh": 1, "arccosh": 1, "arctanh": 1, "round": 1,
    "max": 2, "min": 2, "pow": 2, "fmod": 2,
    "lt": 2, "le": 2, "gt": 2, "ge": 2, "eq": 2, "ne": 2,
    "where": 3,
}


class Expr:
    """Base of every expression node. Cached structural hash and equality."""

    __slots__ = ()

    def _key(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((type(self).__name__,) + self._key())
            object.__setattr__(self, "_hash", h)
        return h

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(self) is not type(other) or hash(self) != hash(other):
            return False
        assert isinstance(other, Expr)
        return self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        return not self == other

    # Builder sugar: ``Iter("i") * 2 + 1``. Python numbers are wrapped in Const.
    def __add__(self, o: ExprLike) -> BinOp:
        return BinOp("+", self, wrap(o))

    def __radd__(self, o: ExprLike) -> BinOp:
        return BinOp("+", wrap(o), self)

    def __sub__(self, o: ExprLike) -> BinOp:
        return BinOp("-", self, wrap(o))

    def __rsub__(self, o: ExprLike) -> BinOp:
        return BinOp("-", wrap(o), self)

    def __mul__(self, o: ExprLike) -> BinOp:
        return BinOp("*", self, wrap(o))

    def __rmul__(self, o: ExprLike) -> BinOp:
        return BinOp("*", wrap(o), self)

    def __truediv__(self, o: ExprLike) -> BinOp:
        return BinOp("/", self, wrap(o))

    def __floordiv__(self, o: ExprLike) -> BinOp:
        return BinOp("//", self, wrap(o))

    def __mod__(self, o: ExprLike) -> BinOp:
        return BinOp("%", self, wrap(o))

    def __neg__(self) -> Call:
        return Call("neg", (self,))

    def __str__(self) -> str:
        from .printer import print_expr

        return print_expr(self)


ExprLike = Union[Expr, int, float]


def wrap(x: ExprLike) -> Expr:
    """Wrap a Python number as a ``Const``; pass expressions through."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return Const(x)
    raise TypeError(f"cannot use {x!r} in an expression")


@dataclass(frozen=True, eq=False)
class Iter(Expr):
    """A use of an iterator bound by an enclosing scope."""

    name: str


@dataclass(frozen=True, eq=False)
class Const(Expr):
    """A number. ``int`` in index expressions; ``int`` or ``float`` in bodies.

    ``Const(1)`` and ``Const(1.0)`` are different nodes (the printer writes
    ``1`` and ``1.0``); so are ``0.0`` and ``-0.0``. NaN equals NaN so that
    structural equality is reflexive.
    """

    value: int | float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise TypeError(f"Const needs an int or float, got {self.value!r}")

    def _key(self) -> tuple:
        v = self.value
        if isinstance(v, float):
            # repr tells -0.0 from 0.0 (they print differently) and makes NaN equal NaN
            return ("float", repr(v))
        return ("int", v)


@dataclass(frozen=True, eq=False)
class BinOp(Expr):
    """``lhs op rhs`` with ``op`` one of ``BINOPS``."""

    op: str
    lhs: Expr
    rhs: Expr

    def __post_init__(self) -> None:
        if self.op not in BINOPS:
            raise ValueError(f"unknown operator {self.op!r}; valid: {' '.join(BINOPS)}")


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """An elementwise function from ``FUNCTIONS`` applied to scalar args."""

    fn: str
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.args, tuple):
            object.__setattr__(self, "args", tuple(self.args))


@dataclass(frozen=True)
class IterDef:
    """An iterator binding ``name`` over ``[start, start + extent)``.

    ``extent`` may be a symbol (then ``start`` must be 0: the text form
    ``a..b`` only takes integers).
    """

    name: str
    extent: Dim
    start: int = 0

    @property
    def stop(self) -> Dim:
        if isinstance(self.extent, str):
            return self.extent
        return self.start + self.extent


@dataclass(frozen=True, eq=False)
class Scope(Expr):
    """``L[travs] Red[sums] { body }``: a tensor of shape ``extents(travs)``."""

    travs: tuple[IterDef, ...]
    sums: tuple[IterDef, ...]
    body: Expr
    reduce: str = "Sum"

    def __post_init__(self) -> None:
        if not isinstance(self.travs, tuple):
            object.__setattr__(self, "travs", tuple(self.travs))
        if not isinstance(self.sums, tuple):
            object.__setattr__(self, "sums", tuple(self.sums))
        if self.reduce not in REDUCERS:
            raise ValueError(f"unknown reduction {self.reduce!r}; valid: {', '.join(REDUCERS)}")

    @property
    def shape(self) -> tuple[Dim, ...]:
        return tuple(t.extent for t in self.travs)

    @property
    def rank(self) -> int:
        return len(self.travs)


@dataclass(frozen=True, eq=False)
class Access(Expr):
    """``%name[indices]`` or ``(scope)[indices]``; out-of-bounds reads ``pad``."""

    source: str | Scope
    indices: tuple[Expr, ...]
    pad: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.indices, tuple):
            object.__setattr__(self, "indices", tuple(self.indices))

    def _key(self) -> tuple:
        pad = "nan" if math.isnan(self.pad) else float(self.pad)
        return (self.source, self.indices, pad)


# --------------------------------------------------------------------------
# Builders and traversals


def iters(*names: str) -> tuple[Iter, ...]:
    """``i, j, k = iters("i", "j", "k")``."""
    return tuple(Iter(n) for n in names)


def access(name: str | Scope, *indices: ExprLike, pad: float = 0.0) -> Access:
    return Access(name, tuple(wrap(i) for i in indices), pad)


def call(fn: str, *args: ExprLike) -> Call:
    return Call(fn, tuple(wrap(a) for a in args))


def children(e: Expr) -> tuple[Expr, ...]:
    """Direct sub-expressions (a nested scope source counts as a child)."""
    if isinstance(e, BinOp):
        return (e.lhs, e.rhs)
    if isinstance(e, Call):
        return e.args
    if isinstance(e, Access):
        return ((e.source,) if isinstance(e.source, Scope) else ()) + e.indices
    if isinstance(e, Scope):
        return (e.body,)
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """Pre-order traversal of every node."""
    stack = [e]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def transform(e: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """Bottom-up rewrite: rebuild children, then apply ``fn`` (None keeps the node)."""
    if isinstance(e, BinOp):
        lhs, rhs = transform(e.lhs, fn), transform(e.rhs, fn)
        e = e if (lhs is e.lhs and rhs is e.rhs) else BinOp(e.op, lhs, rhs)
    elif isinstance(e, Call):
        args = tuple(transform(a, fn) for a in e.args)
        e = e if all(a is b for a, b in zip(args, e.args)) else Call(e.fn, args)
    elif isinstance(e, Access):
        src = transform(e.source, fn) if isinstance(e.source, Scope) else e.source
        idx = tuple(transform(i, fn) for i in e.indices)
        if src is not e.source or any(a is not b for a, b in zip(idx, e.indices)):
            assert isinstance(src, (str, Scope))
            e = Access(src, idx, e.pad)
    elif isinstance(e, Scope):
        body = transform(e.body, fn)
        e = e if body is e.body else Scope(e.travs, e.sums, body, e.reduce)
    out = fn(e)
    return e if out is None else out


def free_iters(e: Expr) -> frozenset[str]:
    """Iterator names used in ``e`` and not bound by a scope inside ``e``."""
    if isinstance(e, Iter):
        return frozenset({e.name})
    if isinstance(e, Scope):
        return free_iters(e.body) - {d.name for d in e.travs + e.sums}
    out: frozenset[str] = frozenset()
    for c in children(e):
        out |= free_iters(c)
    return out


def tensor_names(e: Expr) -> tuple[str, ...]:
    """Named tensors read by ``e``, in order of first appearance (pre-order)."""
    seen: dict[str, None] = {}
    for n in walk(e):
        if isinstance(n, Access) and isinstance(n.source, str):
            seen.setdefault(n.source, None)
    return tuple(seen)


def rename_tensors(e: Expr, mapping: Mapping[str, str | Scope]) -> Expr:
    """Replace accessed tensor names; a name may map to a scope (inlining)."""

    def fn(n: Expr) -> Expr | None:
        if isinstance(n, Access) and isinstance(n.source, str) and n.source in mapping:
            return Access(mapping[n.source], n.indices, n.pad)
        return None

    return transform(e, fn)


def substitute_iters(e: Expr, mapping: Mapping[str, Expr]) -> Expr:
    """Replace free iterator uses. Scopes that rebind a name shadow it."""
    if not mapping:
        return e
    if isinstance(e, Iter):
        return mapping.get(e.name, e)
    if isinstance(e, Scope):
        inner = {k: v for k, v in mapping.items() if k not in {d.name for d in e.travs + e.sums}}
        body = substitute_iters(e.body, inner)
        return e if body is e.body else Scope(e.travs, e.sums, body, e.reduce)
    if isinstance(e, BinOp):
        return BinOp(e.op, substitute_iters(e.lhs, mapping), substitute_iters(e.rhs, mapping))
    if isinstance(e, Call):
        return Call(e.fn, tuple(substitute_iters(a, mapping) for a in e.args))
    if isinstance(e, Access):
        src = substitute_iters(e.source, mapping) if isinstance(e.source, Scope) else e.source
        assert isinstance(src, (str, Scope))
        return Access(src, tuple(substitute_iters(i, mapping) for i in e.indices), e.pad)
    return e
