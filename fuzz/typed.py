"""Well-typed random graphs with weights: the inputs of pass soundness tests.

Where :mod:`tensoropt.fuzz.generate` builds *syntactic* IR (anything the text
format can hold), this module builds graphs that verify against the op
registry and run in the interpreter. One generator body, :func:`gen_typed_graph`,
draws every decision from a :class:`~tensoropt.fuzz.generate.Source`, so the
hypothesis strategy :func:`typed_graphs` (shrinkable) and the seeded
:func:`random_typed_graph` (reproducible campaigns) explore the same space.

Guarantees of every generated graph:

- It is built with :class:`~tensoropt.builder.GraphBuilder`, so node output
  types come from the registry's inference rules, and ``verify(g, REGISTRY)``
  accepts it. Every tensor is ``f32``; no tensor has a zero-sized dim.
- 1 or 2 graph inputs of rank 1 to 4 with dims 1 to 6; optionally dim 0 of
  every input is the symbol ``batch`` (see :func:`typed_inputs`).
- Every constant has a weight array (uniform in ``[-1, 1]``, from a seed the
  source draws), of at most a few hundred elements.
- Values stay bounded on inputs in ``[-1, 1]``: the generator tracks a rough
  magnitude bound per tensor and squashes an operand through ``tanh`` before
  an op that could blow it up; ``exp`` only sees operands bounded by 3, ``sqrt``
  only ``abs`` of something; no ``log``, ``div``, ``pow`` or ``reciprocal``.
- It deliberately contains pass bait: repeated nodes (same op, inputs and
  attributes: CSE), nodes no output depends on (DCE), constant-only
  subgraphs including input-free ``expr`` nodes (constant folding), and
  elementwise chains and ``expr`` nodes (fusion). ``expr`` nodes include
  einsums and elementwise scopes whose shifted or strided reads go out of
  bounds (reading the pad value).

Ops drawn: unary elementwise (relu, sigmoid, tanh, neg, abs, exp, sqrt,
leaky_relu, clip, erf), binary elementwise with broadcasting (add, sub, mul,
max, min, where), matmul, gemm, softmax, layernorm, reduce_sum / reduce_mean /
reduce_max / reduce_min, transpose, reshape, concat, split (multi-output),
slice, conv2d, maxpool2d / avgpool2d / global pools, and ``expr``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from hypothesis import strategies as st

from tensoropt.builder import GraphBuilder
from tensoropt.errors import ShapeError
from tensoropt.ir.einsum import einsum_to_expr
from tensoropt.ir.expr import Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope
from tensoropt.ir.graph import Graph
from tensoropt.ir.types import Dim
from tensoropt.ops.common import lin

from .generate import RandomSource, Source, _DrawSource

__all__ = [
    "BATCH",
    "gen_typed_graph",
    "random_typed_graph",
    "typed_graphs",
    "typed_inputs",
]

#: The symbolic dim typed graphs may use (dim 0 of every input).
BATCH = "batch"

#: Operands whose magnitude bound exceeds this go through ``tanh`` first.
_SQUASH = 6.0

_UNARY = ("relu", "sigmoid", "tanh", "neg", "abs", "exp", "sqrt", "leaky_relu", "clip", "erf")
_BINARY = ("add", "sub", "mul", "max", "min")
_BODY_FNS = ("tanh", "sigmoid", "relu", "abs", "neg")


class _Gen:
    """State of one graph under construction."""

    def __init__(self, src: Source, max_nodes: int) -> None:
        self.src = src
        self.b = GraphBuilder(src.choice(("typed", "fuzz", "g")))
        self.rng = np.random.default_rng(src.integer(0, 2**32 - 1))
        self.max_nodes = max_nodes
        self.n_nodes = 0
        self.pool: list[str] = []  # float tensors usable as operands
        self.bound: dict[str, float] = {}  # name -> rough bound on |value|
        self.const_only: set[str] = set()  # tensors computed from constants only
        # (bound, op, inputs, attrs) or (bound, "expr", scope): replayed as CSE bait
        self.recipes: list[tuple[Any, ...]] = []

    # -- small helpers ----------------------------------------------------
    def coin(self, num: int = 1, den: int = 2) -> bool:
        """True with probability ``num / den``."""
        return self.src.integer(1, den) <= num

    def shape(self, name: str) -> tuple[Dim, ...]:
        return self.b.type_of(name).shape

    def pick(self) -> str:
        """An operand, biased to the newest tensors (that builds chains)."""
        n = len(self.pool)
        if self.coin(2, 3):
            return self.pool[n - 1 - self.src.integer(0, min(2, n - 1))]
        return self.pool[self.src.integer(0, n - 1)]

    def add(self, name: str, bound: float, const_only: bool) -> str:
        self.pool.append(name)
        self.bound[name] = bound
        if const_only:
            self.const_only.add(name)
        return name

    def const(self, shape: Sequence[int], base: str = "w", scale: float = 1.0) -> str:
        arr = (self.rng.uniform(-1.0, 1.0, size=tuple(shape)) * scale).astype(np.float32)
        name = self.b.const(base, arr)
        return self.add(name, scale, True)

    def node(self, op: str, *inputs: str, bound: float | None = None, operand: bool = True,
             **attrs: Any) -> list[str] | None:
        """Add a registry node if it type-checks with no empty dim; None otherwise.

        ``bound`` defaults to the largest operand bound (right for ops that
        do not grow values). ``operand=False`` keeps the outputs out of the
        operand pool (a bool condition).
        """
        try:
            names = self.b.op_multi(op, *inputs, **attrs)
        except ShapeError:
            return None  # op_multi infers before it adds anything
        if any(0 in self.b.type_of(n).shape for n in names):
            self.b.undo()
            return None
        self.n_nodes += 1
        bd = max((self.bound[i] for i in inputs), default=1.0) if bound is None else bound
        if operand:
            self.recipes.append((bd, op, inputs, attrs))
        co = all(i in self.const_only for i in inputs)
        if not operand:
            return names
        return [self.add(n, bd, co) for n in names]

    def expr(self, scope: Scope, bound: float) -> str:
        name = self.b.expr(scope)
        self.n_nodes += 1
        self.recipes.append((bound, "expr", scope))
        reads = [a.source for a in _accesses(scope)]
        return self.add(name, bound, all(r in self.const_only for r in reads))

    def squash(self, x: str, limit: float = _SQUASH) -> str:
        """``x``, or ``tanh(x)`` when ``x`` may exceed ``limit`` in magnitude."""
        if self.bound[x] <= limit:
            return x
        out = self.node("tanh", x, bound=1.0)
        assert out is not None
        return out[0]

    def bcast_const(self, x: str, base: str = "c") -> str:
        """A new constant that broadcasts (one way) against ``x``'s shape."""
        shape = self.shape(x)
        keep = self.src.integer(0, len(shape))
        dims = [d if isinstance(d, int) and self.coin(2, 3) else 1 for d in shape[len(shape) - keep:]]
        return self.const(dims, base)

    # -- actions: each returns True when it added something ---------------
    def unary(self) -> bool:
        x = self.pick()
        fn = self.src.choice(_UNARY)
        b = self.bound[x]
        if fn == "exp":
            x = self.squash(x, 3.0)
            return self.node("exp", x, bound=math.exp(self.bound[x])) is not None
        if fn == "sqrt":
            a = self.node("abs", x)
            assert a is not None
            return self.node("sqrt", a[0], bound=math.sqrt(b) + 1) is not None
        if fn == "clip":
            lo = self.src.choice((-1.0, -0.5, 0.0))
            return self.node("clip", x, min=lo, max=self.src.choice((0.5, 1.0, 2.0))) is not None
        if fn == "leaky_relu":
            return self.node("leaky_relu", x, alpha=self.src.choice((0.01, 0.2))) is not None
        if fn in ("sigmoid", "tanh", "erf"):
            return self.node(fn, x, bound=1.0) is not None
        return self.node(fn, x) is not None

    def binary(self) -> bool:
        x = self.squash(self.pick())
        how = self.src.integer(0, 3)
        if how == 0:
            y = x  # the same tensor twice
        elif how == 1:
            y = self.squash(self.pick())
        else:
            y = self.bcast_const(x)
        if self.coin():
            x, y = y, x
        op = self.src.choice(_BINARY + ("where",))
        bx, by = self.bound[x], self.bound[y]
        if op == "where":
            cond = self.node("greater", x, y, operand=False)  # a bool tensor
            if cond is None:
                return False
            return self.node("where", cond[0], x, y, bound=max(bx, by)) is not None
        bound = bx * by if op == "mul" else (bx + by if op in ("add", "sub") else max(bx, by))
        return self.node(op, x, y, bound=bound) is not None

    def matmul(self) -> bool:
        x = self.squash(self.pick())
        shape = self.shape(x)
        k = shape[-1] if shape else None
        if self.src.integer(0, 3) == 0 and len(shape) == 2:
            t = self.node("transpose", x)
            assert t is not None
            return self.node("matmul", x, t[0], bound=self.bound[x] ** 2 * _num(shape[-1])) is not None
        if not isinstance(k, int):
            return False
        w = self.const((k, self.src.integer(1, 6)) if self.coin(4, 5) else (k,))
        return self.node("matmul", x, w, bound=self.bound[x] * k) is not None

    def gemm(self) -> bool:
        x = self.squash(self.pick())
        shape = self.shape(x)
        if len(shape) != 2:
            return False
        trans_a = all(isinstance(d, int) for d in shape) and self.coin(1, 3)
        m, k = shape[::-1] if trans_a else shape
        if not isinstance(k, int):
            return False
        n = self.src.integer(1, 6)
        trans_b = self.coin()
        w = self.const((n, k) if trans_b else (k, n))
        ins = [x, w]
        bias = self.src.integer(0, 3)
        if bias == 1:
            ins.append(self.const((n,)))
        elif bias == 2:
            ins.append(self.const((1, n)))
        elif bias == 3 and isinstance(m, int):
            ins.append(self.const((m, n)))
        alpha = self.src.choice((1.0, 0.5, -2.0))
        beta = self.src.choice((1.0, -1.0, 0.25))
        attrs: dict[str, Any] = {}
        if trans_a:
            attrs["trans_a"] = True
        if trans_b:
            attrs["trans_b"] = True
        if alpha != 1.0:
            attrs["alpha"] = alpha
        if beta != 1.0 and len(ins) == 3:
            attrs["beta"] = beta
        return self.node("gemm", *ins, bound=2 * k * self.bound[x] + 1, **attrs) is not None

    def softmax(self) -> bool:
        x = self.squash(self.pick())
        r = len(self.shape(x))
        if r == 0:
            return False
        return self.node("softmax", x, bound=1.0, axis=self.src.integer(-r, r - 1)) is not None

    def layernorm(self) -> bool:
        x = self.squash(self.pick())
        shape = self.shape(x)
        r = len(shape)
        if r == 0:
            return False
        ax = self.src.integer(0, r - 1)
        inner = shape[ax:]
        scale = self.const([d if isinstance(d, int) and self.coin(3, 4) else 1 for d in inner], "gamma")
        ins = [x, scale]
        if self.coin():
            ins.append(self.const([d if isinstance(d, int) else 1 for d in inner][self.src.integer(0, len(inner)):], "beta"))
        attrs: dict[str, Any] = {"axis": ax - r if self.coin() else ax}
        if self.coin(1, 4):
            attrs["epsilon"] = 1e-3
        n = math.prod(_num(d) for d in inner)
        return self.node("layernorm", *ins, bound=math.sqrt(n) + 1, **attrs) is not None

    def reduce(self) -> bool:
        x = self.squash(self.pick())
        shape = self.shape(x)
        r = len(shape)
        op = self.src.choice(("reduce_sum", "reduce_mean", "reduce_max", "reduce_min"))
        axes = tuple(a for a in range(r) if self.coin()) if r else ()
        attrs: dict[str, Any] = {}
        if axes or self.coin():
            attrs["axes"] = tuple(a - r if self.coin(1, 4) else a for a in axes)
        if self.coin(1, 3):
            attrs["keepdims"] = False
        count = math.prod(_num(shape[a]) for a in (axes or range(r)))
        bound = self.bound[x] * (count if op == "reduce_sum" else 1)
        return self.node(op, x, bound=bound, **attrs) is not None

    def transpose(self) -> bool:
        x = self.pick()
        r = len(self.shape(x))
        if r < 2:
            return False
        if self.coin(1, 4):
            return self.node("transpose", x) is not None
        perm = list(range(r))
        for i in range(r - 1, 0, -1):  # Fisher-Yates from the source
            j = self.src.integer(0, i)
            perm[i], perm[j] = perm[j], perm[i]
        return self.node("transpose", x, perm=tuple(perm)) is not None

    def reshape(self) -> bool:
        x = self.pick()
        spec = self.reshape_spec(self.shape(x), self.src.integer(1, 4))
        return spec is not None and self.node("reshape", x, shape=spec) is not None

    def reshape_spec(self, shape: Sequence[Dim], rank: int) -> tuple[int, ...] | None:
        """A reshape ``shape=`` attribute to about ``rank`` dims (0 keeps a symbolic dim 0)."""
        if any(isinstance(d, str) for d in shape[1:]):
            return None
        keep_sym = bool(shape) and isinstance(shape[0], str)
        n = math.prod(int(d) for d in (shape[1:] if keep_sym else shape))
        dims = _factor(n, max(1, rank - keep_sym), self.src)
        if not keep_sym and len(dims) > 1 and self.coin(1, 3):
            dims[self.src.integer(0, len(dims) - 1)] = -1
        return ((0,) if keep_sym else ()) + tuple(dims)

    def concat(self) -> bool:
        x = self.pick()
        shape = self.shape(x)
        axes = [a for a, d in enumerate(shape) if isinstance(d, int)]
        if not axes:
            return False
        ax = self.src.choice(axes)
        ins = [x]
        for _ in range(self.src.integer(1, 2)):
            same = [p for p in self.pool if _concat_ok(self.shape(p), shape, ax)]
            if all(isinstance(d, int) for d in shape) and self.coin():
                dims = list(shape)
                dims[ax] = self.src.integer(1, 3)
                ins.append(self.const([int(d) for d in dims], "cat"))
            else:
                ins.append(self.src.choice(same))
        if self.src.integer(0, 3) == 0:
            ax -= len(shape)
        return self.node("concat", *ins, axis=ax, bound=max(self.bound[i] for i in ins)) is not None

    def split(self) -> bool:
        x = self.pick()
        shape = self.shape(x)
        axes = [a for a, d in enumerate(shape) if isinstance(d, int) and d >= 2]
        if not axes:
            return False
        ax = self.src.choice(axes)
        d = int(shape[ax])
        parts = min(d, self.src.integer(2, 3))
        cuts = sorted({self.src.integer(1, d - 1) for _ in range(parts - 1)})
        sizes = tuple(b - a for a, b in zip([0] + cuts, cuts + [d]))
        attrs: dict[str, Any] = {"split": sizes}
        if ax != 0 or self.coin():
            attrs["axis"] = ax
        return self.node("split", x, **attrs) is not None

    def slice(self) -> bool:
        x = self.pick()
        shape = self.shape(x)
        axes = [a for a, d in enumerate(shape) if isinstance(d, int)]
        if not axes:
            return False
        chosen = sorted({self.src.choice(axes) for _ in range(self.src.integer(1, 2))})
        starts, ends, steps = [], [], []
        for a in chosen:
            d = int(shape[a])
            step = self.src.choice((1, 1, 2, -1))
            if step > 0:
                s = self.src.integer(-d, d - 1)
                e = self.src.choice((self.src.integer(-d, d), 2**31 - 1))
            else:
                s = self.src.choice((-1, d - 1, self.src.integer(0, d - 1)))
                e = self.src.choice((-d - 1, self.src.integer(-d, d - 1)))
            starts.append(s)
            ends.append(e)
            steps.append(step)
        attrs: dict[str, Any] = {"starts": tuple(starts), "ends": tuple(ends)}
        if chosen != list(range(len(chosen))) or self.coin():
            attrs["axes"] = tuple(chosen)
        if any(s != 1 for s in steps) or self.coin(1, 4):
            attrs["steps"] = tuple(steps)
        return self.node("slice", x, **attrs) is not None

    def to4d(self, x: str) -> str | None:
        """``x`` as a 4-D tensor with static channels and spatial dims, or None."""
        shape = self.shape(x)
        if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
            return x
        if any(isinstance(d, str) for d in shape[1:]):
            return None
        keep_sym = bool(shape) and isinstance(shape[0], str)
        n = math.prod(int(d) for d in (shape[1:] if keep_sym else shape))
        dims = _factor(n, 3 if keep_sym else 4, self.src)
        if len(dims) < (3 if keep_sym else 4):
            return None
        out = self.node("reshape", x, shape=((0,) if keep_sym else ()) + tuple(dims))
        return out[0] if out else None

    def conv(self) -> bool:
        x = self.to4d(self.squash(self.pick()))
        if x is None:
            return False
        _, c, h, w = self.shape(x)
        assert isinstance(c, int) and isinstance(h, int) and isinstance(w, int)
        group = c if c > 1 and self.coin(1, 4) else 1
        f = group * self.src.integer(1, 3) if group > 1 else self.src.integer(1, 4)
        kh, kw = self.src.integer(1, min(3, h + 1)), self.src.integer(1, min(3, w + 1))
        ins = [x, self.const((f, c // group, kh, kw), "k", scale=0.5)]
        if self.coin():
            ins.append(self.const((f,), "bias"))
        attrs: dict[str, Any] = {}
        if self.coin():
            attrs["pads"] = tuple(self.src.integer(0, 1) for _ in range(4))
        if self.coin(1, 3):
            attrs["strides"] = (self.src.integer(1, 2), self.src.integer(1, 2))
        if self.coin(1, 5):
            attrs["dilations"] = (self.src.integer(1, 2), self.src.integer(1, 2))
        if group > 1:
            attrs["group"] = group
        bound = self.bound[x] * 0.5 * (c // group) * kh * kw + 1
        return self.node("conv2d", *ins, bound=bound, **attrs) is not None

    def pooling(self) -> bool:
        cands = [p for p in self.pool if len(self.shape(p)) == 4 and all(isinstance(d, int) for d in self.shape(p)[2:])]
        x = self.src.choice(cands) if cands and self.coin(3, 4) else self.to4d(self.pick())
        if x is None:
            return False
        op = self.src.choice(("maxpool2d", "avgpool2d", "maxpool2d", "avgpool2d", "global_avgpool", "global_maxpool"))
        if op.startswith("global"):
            return self.node(op, x) is not None
        _, _, h, w = self.shape(x)
        kh, kw = self.src.integer(1, min(3, int(h))), self.src.integer(1, min(3, int(w)))
        attrs: dict[str, Any] = {"kernel": (kh, kw)}
        if self.coin():
            attrs["strides"] = (self.src.integer(1, 2), self.src.integer(1, 2))
        if self.coin(1, 3):
            attrs["pads"] = (self.src.integer(0, kh - 1), self.src.integer(0, kw - 1),
                             self.src.integer(0, kh - 1), self.src.integer(0, kw - 1))
        if self.coin(1, 4):
            attrs["ceil_mode"] = True
        if op == "avgpool2d" and self.coin(1, 3):
            attrs["count_include_pad"] = True
        return self.node(op, x, **attrs) is not None

    def einsum(self) -> bool:
        x = self.squash(self.pick())
        shape = self.shape(x)
        r = len(shape)
        letters = "abcd"[:r]
        kind = self.src.integer(0, 3)
        if kind == 0 and r >= 1 and isinstance(shape[-1], int):  # contract with a weight
            k = int(shape[-1])
            w = self.const((k, self.src.integer(1, 5)), "e")
            spec = f"{letters},{letters[-1]}z->{letters[:-1]}z"
            scope = einsum_to_expr(spec, [(x, shape), (w, self.shape(w))])
            return bool(self.expr(scope, bound=self.bound[x] * k))
        if kind == 1 and r >= 2:  # a transposition
            out = letters[::-1]
            return bool(self.expr(einsum_to_expr(f"{letters}->{out}", [(x, shape)]), bound=self.bound[x]))
        if kind == 2 and r >= 1:  # rowwise self-dot: reads x twice
            spec = f"{letters},{letters}->{letters[:-1]}"
            scope = einsum_to_expr(spec, [(x, shape), (x, shape)])
            return bool(self.expr(scope, bound=self.bound[x] ** 2 * _num(shape[-1])))
        # a total sum to a scalar (static shapes only keep bounds honest)
        if not all(isinstance(d, int) for d in shape):
            return False
        scope = einsum_to_expr(f"{letters}->", [(x, shape)])
        return bool(self.expr(scope, bound=self.bound[x] * math.prod(int(d) for d in shape)))

    def shifted(self) -> bool:
        """An elementwise scope over ``x``'s shape with shifted/strided reads.

        Half the time ``x`` is a fresh ``sigmoid`` / ``exp`` node: fusing it
        into the out-of-bounds reads must keep reading the pad, not f(0) != 0.
        """
        x = self.squash(self.pick())
        if self.coin():
            fn = self.src.choice(("sigmoid", "exp"))
            x = self.squash(x, 3.0) if fn == "exp" else x
            made = self.node(fn, x, bound=math.exp(self.bound[x]) if fn == "exp" else 1.0)
            assert made is not None
            x = made[0]
        shape = self.shape(x)
        r = len(shape)
        names = [f"i{k}" for k in range(r)]
        travs = []
        idx: list[Expr] = []
        for k, d in enumerate(shape):
            start = self.src.choice((0, 0, 0, 1, -1)) if isinstance(d, int) else 0
            travs.append(IterDef(names[k], d, start))
            it = Iter(names[k])
            idx.append(lin([(it, 1)], -start))  # in bounds: reads position p
        terms: list[Expr] = [Access(x, tuple(idx))]
        for _ in range(self.src.integer(1, 2)):
            moved = list(idx)
            if r:
                a = self.src.integer(0, r - 1)
                how = self.src.integer(0, 2)
                if how == 0:
                    moved[a] = lin([(idx[a], 1)], self.src.choice((-2, -1, 1, 2)))
                elif how == 1:
                    moved[a] = BinOp("*", Const(2), idx[a])
                else:
                    moved[a] = BinOp("-", Const(_num(shape[a]) - 1 if isinstance(shape[a], int) else 0), idx[a])
            pad = self.src.choice((0.0, 0.0, 1.0, -0.5))
            read: Expr = Access(x, tuple(moved), pad)
            if self.coin():
                read = Call(self.src.choice(_BODY_FNS), (read,))
            terms.append(read)
        body = terms[0]
        for t in terms[1:]:
            body = BinOp(self.src.choice(("+", "-", "*")), body, t) if self.coin(2, 3) else Call(
                self.src.choice(("max", "min")), (body, t))
        if self.coin(1, 3):
            body = BinOp("*", body, Const(self.src.choice((0.5, 2.0, -1.0))))
        b = self.bound[x] + 1
        return bool(self.expr(Scope(tuple(travs), (), body), bound=b ** len(terms) * 2))

    def const_chain(self) -> bool:
        """A constant-only subgraph (fold bait) combined with a live tensor."""
        x = self.squash(self.pick())
        c = self.bcast_const(x, "k")
        for _ in range(self.src.integer(1, 3)):
            kind = self.src.integer(0, 3)
            if kind == 0:
                out = self.node(self.src.choice(("tanh", "neg", "relu", "sigmoid")), c)
            elif kind == 1:
                out = self.node(self.src.choice(("add", "mul", "max")), c, self.bcast_const(c, "k"), bound=1.0)
            elif kind == 2:
                out = self.node("exp", c, bound=math.e)
            else:  # an expr node reading no tensor at all: an iota ramp
                shape = self.shape(c)
                travs = tuple(IterDef(f"t{k}", d) for k, d in enumerate(shape))
                body: Expr = Const(0.25)
                for k in range(len(shape)):
                    body = BinOp(self.src.choice(("+", "-")), body, BinOp("*", Iter(f"t{k}"), Const(0.125)))
                ramp = self.expr(Scope(travs, (), body), bound=2.0)
                out = self.node("add", c, ramp, bound=3.0)
            if out is not None:
                c = out[0]
        return self.node(self.src.choice(_BINARY), x, c, bound=self.bound[x] * 3 + 3) is not None

    def duplicate(self) -> bool:
        """Replay an earlier node exactly: CSE bait."""
        if not self.recipes:
            return False
        r = self.src.choice(self.recipes)
        if r[1] == "expr":
            return bool(self.expr(r[2], bound=r[0]))
        bound, op, ins, attrs = r
        return self.node(op, *ins, bound=bound, **attrs) is not None

    def near_duplicate(self) -> bool:
        """An earlier node again with one attribute changed: CSE must keep both."""
        x = self.squash(self.pick())
        r = len(self.shape(x))
        kind = self.src.integer(0, 2)
        if kind == 0 and r >= 2:
            a = self.src.integer(0, r - 1)
            first = self.node("softmax", x, bound=1.0, axis=a)
            return first is not None and self.node("softmax", x, bound=1.0, axis=(a + 1) % r) is not None
        if kind == 1:
            lo = self.src.choice((-1.0, 0.0))
            self.node("clip", x, min=lo, max=0.5)
            return self.node("clip", x, min=lo, max=0.25) is not None
        self.node("leaky_relu", x, alpha=0.5)
        return self.node("leaky_relu", x) is not None

    # -- the whole graph ---------------------------------------------------
    def run(self) -> Graph:
        src = self.src
        sym = src.integer(0, 3) == 0
        for k in range(src.integer(1, 2)):
            r = src.integer(1, 4)
            dims: list[Dim] = [src.integer(1, 6) for _ in range(r)]
            if r == 4 and self.coin():
                dims[2], dims[3] = src.integer(3, 6), src.integer(3, 6)
            if sym:
                dims[0] = BATCH
            name = self.b.input(("x", "y")[k], "f32", dims)
            self.add(name, 1.0, False)
        actions: list[tuple[Callable[[], bool], int]] = [
            (self.unary, 6), (self.binary, 6), (self.matmul, 2), (self.gemm, 1),
            (self.softmax, 2), (self.layernorm, 1), (self.reduce, 2), (self.transpose, 1),
            (self.reshape, 1), (self.concat, 1), (self.split, 1), (self.slice, 1),
            (self.conv, 1), (self.pooling, 1), (self.einsum, 2), (self.shifted, 2),
            (self.const_chain, 2), (self.duplicate, 3), (self.near_duplicate, 1),
        ]
        table = [a for a, w in actions for _ in range(w)]
        target = src.integer(1, max(1, self.max_nodes))
        for _ in range(4 * target):
            if self.n_nodes >= target:
                break
            src.choice(table)()
        produced = [p for p in self.pool if p not in self.const_only or self.coin(1, 4)]
        outs = [produced[-1]] if produced else [self.pool[-1]]
        for _ in range(src.integer(0, 2)):
            outs.append(src.choice(self.pool))  # may repeat a name or return an input
        return self.b.build(*outs)


# ---------------------------------------------------------------- helpers


def _num(d: Dim) -> int:
    """A dim's size for bounds: symbolic dims count as 6 (the largest we bind)."""
    return d if isinstance(d, int) else 6


def _accesses(e: Expr) -> list[Access]:
    """Accesses of named tensors in ``e`` (pre-order)."""
    from tensoropt.ir.expr import walk

    return [n for n in walk(e) if isinstance(n, Access) and isinstance(n.source, str)]


def _concat_ok(shape: Sequence[Dim], ref: Sequence[Dim], ax: int) -> bool:
    return len(shape) == len(ref) and isinstance(shape[ax], int) and all(
        d == e for k, (d, e) in enumerate(zip(shape, ref)) if k != ax)


def _factor(n: int, rank: int, src: Source) -> list[int]:
    """``rank`` positive ints with product ``n`` (fewer when ``n`` runs out of factors early)."""
    dims: list[int] = []
    left = n
    for k in range(rank - 1):
        divs = [d for d in range(1, min(left, 6) + 1) if left % d == 0]
        d = src.choice(divs)
        dims.append(d)
        left //= d
    dims.append(left)
    return dims


# ---------------------------------------------------------------- entry points


def gen_typed_graph(src: Source, max_nodes: int = 12) -> Graph:
    """A well-typed random graph with weights (see the module docstring)."""
    return _Gen(src, max_nodes).run()


@st.composite
def typed_graphs(draw: Any, max_nodes: int = 12) -> Graph:
    """Hypothesis strategy for well-typed graphs with weights."""
    return gen_typed_graph(_DrawSource(draw), max_nodes=max_nodes)


def random_typed_graph(seed: int, max_nodes: int = 12) -> Graph:
    """A reproducible well-typed graph for fuzzing campaigns."""
    return gen_typed_graph(RandomSource(seed), max_nodes=max_nodes)


def typed_inputs(graph: Graph, seed: int, batch: int | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs for ``graph``: uniform in ``[-1, 1]``, in each input's dtype.

    The symbol ``batch`` is bound to ``batch`` (default: 1 to 4 from the seed).
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5)) if batch is None else batch
    out = {}
    for v in graph.inputs:
        shape = v.type.concrete({BATCH: n})
        out[v.name] = rng.uniform(-1.0, 1.0, size=shape).astype(v.type.np_dtype)
    return out
