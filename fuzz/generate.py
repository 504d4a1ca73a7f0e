"""Random IR generators: hypothesis strategies and seeded plain-``random`` ones.

One generator body serves both: it draws every decision from a small
:class:`Source` (``RandomSource`` wraps ``random.Random``, ``_DrawSource``
wraps a hypothesis ``draw``), so ``exprs()`` / ``graphs()`` (property tests,
shrinkable) and ``random_expr(seed)`` / ``random_graph(seed)`` (campaigns,
reproducible from the seed) explore the same space.

Guarantees (structure only, not types or shapes):

- Scopes: iterator uses (``Iter``) name only iterators bound by an enclosing
  scope; nested scopes are read with as many indices as they have travs;
  ``//`` and ``%`` in indices divide by positive int constants; iterators
  with a symbolic extent start at 0.
- Graphs: SSA (every name defined once; a node reads only names defined
  before it); ``expr`` nodes have ``inputs == tensor_names(scope)`` and read
  only defined tensors; outputs name defined tensors.
- Everything the generators build is printable, so it round-trips through the
  text format.
"""

from __future__ import annotations

import math
import random
from typing import Any, Protocol, Sequence, TypeVar

from hypothesis import strategies as st

from tensoropt.ir.expr import (
    BINOPS,
    FUNCTIONS,
    REDUCERS,
    Access,
    BinOp,
    Call,
    Const,
    Expr,
    Iter,
    IterDef,
    Scope,
    tensor_names,
)
from tensoropt.ir.graph import Attrs, AttrScalar, AttrValue, Graph, Node, Value
from tensoropt.ir.types import DTYPES, Dim, TensorType

__all__ = [
    "Source",
    "RandomSource",
    "exprs",
    "graphs",
    "random_expr",
    "random_graph",
    "gen_scope",
    "gen_graph",
]

T = TypeVar("T")

# Names chosen to poke at the lexer: keywords valid only in other contexts
# (`Sum`, `true`, `const`), function names used as iterators (`max`), names
# that need quoting, and quote/backslash characters.
ITER_NAMES = ("i", "j", "k", "n", "c", "h", "w", "r", "s", "x_1", "Sum", "Max", "max", "exp", "true", "graph", "_")
SYMBOLS = ("batch", "seq", "N", "Sum", "inf", "L", "true")
TENSOR_BASES = ("x", "w", "X", "K", "a.b", "1", "conv1/7x7_s2", "a b", 'q"t', "b\\s", "", "%", "π", "inf")
OP_NAMES = ("matmul", "add", "relu", "conv2d", "split", "concat", "reshape", "transpose", "softmax", "graph", "we ird")
ATTR_KEYS = ("axis", "split", "perm", "alpha", "mode", "keepdims", "pads", "true", "const", "a key", 'q"k')
GRAPH_NAMES = ("g", "mlp", "graph", "my model", 'q"g\\')
STRINGS = ("", "nearest", 'say "hi"', "back\\slash", "a#b", "two\nlines", "ünï", "\\\"")
FLOATS = (0.0, -0.0, 0.5, -1.5, 1.0, 1e-05, 1e20, -3.25e-7, math.inf, -math.inf, math.nan)


class Source(Protocol):
    """Where a generator gets its random decisions."""

    def integer(self, lo: int, hi: int) -> int:
        """Uniform-ish int in ``[lo, hi]``."""
        ...

    def choice(self, items: Sequence[T]) -> T:
        ...

    def real(self) -> float:
        """A float, biased to interesting values (signed zero, inf, nan)."""
        ...

    def text(self) -> str:
        """A short arbitrary string (no surrogates: it must encode as UTF-8)."""
        ...


class RandomSource:
    """A :class:`Source` over ``random.Random(seed)``: reproducible campaigns."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def real(self) -> float:
        if self.rng.random() < 0.5:
            return self.choice(FLOATS)
        return self.rng.uniform(-1e3, 1e3)

    def text(self) -> str:
        alphabet = 'ab %"\\#/\n.é'
        return "".join(self.choice(alphabet) for _ in range(self.rng.randint(0, 6)))


class _DrawSource:
    """A :class:`Source` over a hypothesis ``draw``: shrinkable decisions."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def choice(self, items: Sequence[T]) -> T:
        return items[self.draw(st.integers(0, len(items) - 1))]

    def real(self) -> float:
        return float(self.draw(st.one_of(st.sampled_from(FLOATS), st.floats())))

    def text(self) -> str:
        chars = st.characters(exclude_categories=["Cs"])
        return str(self.draw(st.text(chars, max_size=6)))


# ---------------------------------------------------------------- exprs


class _Ctx:
    """Per-expression state: fresh iterator names and the readable tensors."""

    def __init__(self, src: Source, tensors: Sequence[str]) -> None:
        self.src = src
        self.tensors = tuple(tensors)
        self.counter = 0

    def fresh_iter(self, taken: set[str]) -> str:
        name = self.src.choice(ITER_NAMES)
        while name in taken:
            self.counter += 1
            name = f"{name}{self.counter}"
        taken.add(name)
        return name


def _iterdef(cx: _Ctx, taken: set[str]) -> IterDef:
    name = cx.fresh_iter(taken)
    kind = cx.src.integer(0, 3)
    if kind == 0:
        return IterDef(name, cx.src.choice(SYMBOLS))
    if kind == 1:
        return IterDef(name, cx.src.integer(0, 8), cx.src.integer(-4, 4))
    return IterDef(name, cx.src.integer(0, 64))


def _const(src: Source) -> Const:
    if src.integer(0, 1):
        return Const(src.integer(-5, 100))
    return Const(src.real())


def _index(cx: _Ctx, bound: Sequence[str], depth: int) -> Expr:
    """An affine index, possibly wrapped in ``// k`` or ``% k`` (k > 0)."""
    src = cx.src
    terms: list[Expr] = []
    for _ in range(src.integer(1, 3)):
        if bound and src.integer(0, 2):
            it: Expr = Iter(src.choice(bound))
            coef = src.integer(-2, 3)
            terms.append(it if coef == 1 else BinOp("*", Const(coef), it))
        else:
            terms.append(Const(src.integer(-3, 5)))
    e = terms[0]
    for t in terms[1:]:
        e = BinOp(src.choice(("+", "-")), e, t)
    if depth > 0 and src.integer(0, 3) == 0:
        e = BinOp(src.choice(("//", "%")), e, Const(src.integer(1, 8)))
    return e


def _access(cx: _Ctx, bound: Sequence[str], depth: int) -> Access:
    src = cx.src
    pad = 0.0 if src.integer(0, 2) else src.real()
    if depth > 0 and src.integer(0, 4) == 0:
        inner = _scope(cx, depth - 1, set(bound))
        idx = tuple(_index(cx, bound, depth) for _ in inner.travs)
        return Access(inner, idx, pad)
    name = src.choice(cx.tensors)
    idx = tuple(_index(cx, bound, depth) for _ in range(src.integer(0, 3)))
    return Access(name, idx, pad)


def _body(cx: _Ctx, bound: Sequence[str], depth: int) -> Expr:
    src = cx.src
    kind = src.integer(0, 5) if depth > 0 else src.integer(0, 2)
    if kind == 0:
        return _const(src)
    if kind == 1 and bound:
        return Iter(src.choice(bound))
    if kind <= 2 and cx.tensors:
        return _access(cx, bound, depth)
    if kind == 3:
        fn = src.choice(tuple(FUNCTIONS))
        return Call(fn, tuple(_body(cx, bound, depth - 1) for _ in range(FUNCTIONS[fn])))
    if kind >= 4:
        return BinOp(src.choice(BINOPS), _body(cx, bound, depth - 1), _body(cx, bound, depth - 1))
    return _const(src)


def _scope(cx: _Ctx, depth: int, outer: set[str]) -> Scope:
    """A scope whose body may use ``outer`` iterators and its own."""
    taken = set(outer)
    travs = tuple(_iterdef(cx, taken) for _ in range(cx.src.integer(0, 3)))
    sums = tuple(_iterdef(cx, taken) for _ in range(cx.src.integer(0, 2)))
    reduce = cx.src.choice(REDUCERS)
    bound = sorted(outer) + [d.name for d in travs + sums]
    return Scope(travs, sums, _body(cx, bound, depth), reduce)


def gen_scope(src: Source, tensors: Sequence[str] = ("X", "K", "a/b"), max_depth: int = 3) -> Scope:
    """A random scope reading only ``tensors`` (may read none)."""
    return _scope(_Ctx(src, tensors), max_depth, set())


# ---------------------------------------------------------------- graphs


def _fresh_tensor(src: Source, taken: set[str]) -> str:
    base = src.text() if src.integer(0, 5) == 0 else src.choice(TENSOR_BASES)
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}{k}"
    taken.add(name)
    return name


def _type(src: Source) -> TensorType:
    dims: list[Dim] = [src.choice(SYMBOLS) if src.integer(0, 3) == 0 else src.integer(0, 1024) for _ in range(src.integer(0, 3))]
    return TensorType(src.choice(tuple(DTYPES)), tuple(dims))


def _attr_scalar(src: Source) -> AttrScalar:
    kind = src.integer(0, 3)
    if kind == 0:
        return src.integer(-(2**40), 2**40) if src.integer(0, 3) == 0 else src.integer(-3, 8)
    if kind == 1:
        # no NaN: Attrs compares values with ==, so a NaN attribute would make
        # a graph unequal to its own round trip (Expr consts handle NaN)
        x = src.real()
        return 0.25 if math.isnan(x) else x
    if kind == 2:
        return src.choice(STRINGS) if src.integer(0, 1) else src.text()
    return bool(src.integer(0, 1))


def _attrs(src: Source) -> Attrs:
    out: dict[str, AttrValue] = {}
    for _ in range(src.integer(0, 4)):
        key = src.choice(ATTR_KEYS)
        out[key] = tuple(_attr_scalar(src) for _ in range(src.integer(0, 3))) if src.integer(0, 2) == 0 else _attr_scalar(src)
    return Attrs(out)


def _node(src: Source, defined: list[str], taken: set[str]) -> Node:
    op = src.choice(OP_NAMES + ("expr", "expr"))
    scope = None
    if op == "expr":
        scope = gen_scope(src, tuple(defined), max_depth=2)
        ins = tensor_names(scope)
    else:
        ins = tuple(src.choice(defined) for _ in range(src.integer(0, 3))) if defined else ()
    outs = tuple(Value(_fresh_tensor(src, taken), _type(src)) for _ in range(src.integer(1, 3)))
    return Node(op, ins, outs, _attrs(src), scope)


def gen_graph(src: Source, max_nodes: int = 5) -> Graph:
    """A random SSA graph (structurally valid, not type-correct)."""
    taken: set[str] = set()
    inputs = tuple(Value(_fresh_tensor(src, taken), _type(src)) for _ in range(src.integer(0, 3)))
    consts = tuple(Value(_fresh_tensor(src, taken), _type(src)) for _ in range(src.integer(0, 2)))
    defined = [v.name for v in inputs + consts]
    nodes = []
    for _ in range(src.integer(0, max_nodes)):
        n = _node(src, defined, taken)
        nodes.append(n)
        defined.extend(n.output_names)
    outputs = tuple(src.choice(defined) for _ in range(src.integer(0, 3))) if defined else ()
    name = src.choice(GRAPH_NAMES) if src.integer(0, 3) else src.text()
    return Graph(name, inputs, consts, tuple(nodes), outputs)


# ---------------------------------------------------------------- entry points


@st.composite
def exprs(draw: Any, max_depth: int = 3) -> Scope:
    """Hypothesis strategy for random scopes (see module docstring)."""
    return gen_scope(_DrawSource(draw), max_depth=max_depth)


@st.composite
def graphs(draw: Any, max_nodes: int = 5) -> Graph:
    """Hypothesis strategy for random graphs (see module docstring)."""
    return gen_graph(_DrawSource(draw), max_nodes=max_nodes)


def random_expr(seed: int, max_depth: int = 3) -> Scope:
    """A reproducible random scope for fuzzing campaigns."""
    return gen_scope(RandomSource(seed), max_depth=max_depth)


def random_graph(seed: int, max_nodes: int = 5) -> Graph:
    """A reproducible random graph for fuzzing campaigns."""
    return gen_graph(RandomSource(seed), max_nodes=max_nodes)
