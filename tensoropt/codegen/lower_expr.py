"""Generic lowering of a tensor-algebra :class:`Scope` to a TVM TE tensor.

One function covers every op that has an Expr definition and every ``expr``
node a pass produces: no per-op code. The semantics follow the reference
interpreter (``tensoropt.interp``), which stays the oracle:

- a scope becomes one ``te.compute`` over its traversal extents; its reducer
  (Sum/Max/Min/Prod) becomes a TE reduction over the reduction iterators;
- the body computes in one *compute dtype* (floats in their own width, f16 in
  f32; integers and bools in f64, as the interpreter does) and the caller
  casts to the output dtype (:func:`cast_to`);
- an access that may fall outside its tensor reads the access's ``pad``
  value. Inside a reduction the padding is hoisted into a padded copy of the
  tensor (a separate ``te.compute``), so the reduction's inner loop carries no
  bounds test and the schedule can vectorize it; elsewhere the access becomes
  a ``Select`` over clamped indices. Never ``if_then_else``: TVM's simplifier
  uses its condition to drop the clamps inside the branch, and once the loop
  is vectorized both branches are evaluated, reading out of bounds;
- a nested scope that uses no enclosing iterator is materialized once (shared
  by every access to it: softmax reads its max twice); one that uses enclosing
  iterators is inlined when it has no reduction, and otherwise materialized
  over the ranges of the iterators it uses.

Iterator ranges are tracked in a ``tvm.arith.Analyzer`` so that bounds tests
provable away (also for symbolic extents) are never emitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import tvm
from tvm.sym import Analyzer
from tvm import te, tirx

from ..errors import EvalError
from ..ir.expr import Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope, free_iters

I64 = "int64"


def i64(v: int) -> tirx.PrimExpr:
    return tirx.const(int(v), I64)


def clamp(i: tirx.PrimExpr, n: tirx.PrimExpr) -> tirx.PrimExpr:
    """``i`` clamped into ``[0, n)`` (a safe address for a read whose value a Select may discard)."""
    return tirx.max(tirx.min(i, n - i64(1)), i64(0))


def dtype_of(x: tirx.PrimExpr) -> str:
    """The dtype string of a PrimExpr (0.27 keeps it on the expression's type)."""
    return str(x.ty.dtype)


def _is_float(x: tirx.PrimExpr) -> bool:
    return dtype_of(x).startswith("float")


def _nan(x: tirx.PrimExpr) -> tirx.PrimExpr:
    return tirx.isnan(x) if _is_float(x) else tirx.const(False, "bool")


def _cmp(fn: Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr],
         unordered: bool = False) -> Callable[..., tirx.PrimExpr]:
    """A comparison giving 1/0 in the operands' dtype (the interpreter's convention).

    NaN compares false, except ``ne`` (``unordered``), which is true. The
    tests are explicit because TVM's simplifier rewrites ``x == x`` to true
    and ``x != x`` to false.
    """

    def cmp(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
        c = fn(a, b)
        if _is_float(a):
            c = tirx.any(c, _nan(a), _nan(b)) if unordered else tirx.all(c, tirx.Not(_nan(a)), tirx.Not(_nan(b)))
        return tirx.Select(c, tirx.const(1, dtype_of(a)), tirx.const(0, dtype_of(a)))

    return cmp


def _nan_aware(pick: Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr],
               a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """``pick(a, b)`` that returns NaN when either operand is NaN (as np.maximum/np.minimum).

    The GPU form. Each operand is used three times, so a compound one is
    bound to a variable first (``Let``): nested max chains would otherwise
    grow exponentially. Not for CPU code: TVM's loop vectorizer rejects such
    a ``Let`` once an inlined schedule has duplicated it ("Let cannot bind
    the same var to two different values", the whole module then fell back
    to unscheduled code); the CPU form is :func:`_llvm_nan_max`.
    """
    if not _is_float(a):
        return pick(a, b)
    dt = dtype_of(a)
    binds = []
    ops = []
    for x in (a, b):
        if isinstance(x, (tirx.Var, tirx.FloatImm, tirx.IntImm)):
            ops.append(x)
        else:
            v = tirx.Var("m", dt)
            binds.append((v, x))
            ops.append(v)
    x, y = ops
    out = tirx.Select(tirx.isnan(x), x, tirx.Select(tirx.isnan(y), y, pick(x, y)))
    for v, value in reversed(binds):
        out = tirx.Let(v, value, out)
    return out


def _llvm_nan_max(intrinsic: str, pick: Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr]
                  ) -> Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr]:
    """np.maximum/np.minimum for CPU code: LLVM's ``llvm.maximum``/``llvm.minimum``
    (NaN in either operand gives NaN), each operand used once, vectorizable.
    Integers use ``pick``."""

    def fn(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
        if not _is_float(a):
            return pick(a, b)
        return tirx.call_llvm_pure_intrin(dtype_of(a), intrinsic, a, b)

    return fn


_max = _llvm_nan_max("llvm.maximum", tirx.max)
_min = _llvm_nan_max("llvm.minimum", tirx.min)


def _gpu_max(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """np.maximum for GPU code (no LLVM intrinsics in CUDA source)."""
    return _nan_aware(lambda x, y: tirx.max(x, y), a, b)


def _gpu_min(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """np.minimum for GPU code, NaN-propagating like :func:`_gpu_max`."""
    return _nan_aware(lambda x, y: tirx.min(x, y), a, b)


def _fmod(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """C ``fmod`` (the sign of the dividend). LLVM codegen has no ``tirx.fmod``: call libm."""
    dt = dtype_of(a)
    return tirx.call_pure_extern(dt, "fmodf" if dt == "float32" else "fmod", a, b)


def _where(c: tirx.PrimExpr, a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    # "c == 0 picks b" keeps NaN true (as np.where(c != 0, ...)) without a != on
    # booleans, which the simplifier can produce from c != 0 and LLVM codegen rejects
    return tirx.Select(c == tirx.const(0, dtype_of(c)), b, a)


def _sinh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """sinh from exp (LLVM has no vector sinh); a Taylor polynomial near 0 avoids cancellation."""
    dt = dtype_of(x)
    c = lambda v: tirx.const(v, dt)  # noqa: E731
    x2 = x * x
    small = x * (c(1.0) + x2 * (c(1 / 6) + x2 * (c(1 / 120) + x2 * c(1 / 5040))))
    return tirx.Select(tirx.abs(x) < c(0.5), small, (tirx.exp(x) - tirx.exp(-x)) * c(0.5))


def _cosh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """cosh from exp (LLVM has no vector cosh)."""
    return (tirx.exp(x) + tirx.exp(-x)) * tirx.const(0.5, dtype_of(x))


def _sign(x: tirx.PrimExpr) -> tirx.PrimExpr:
    one, zero = tirx.const(1, dtype_of(x)), tirx.const(0, dtype_of(x))
    # x itself where neither test holds: keeps 0 (and NaN, as NumPy does)
    return tirx.Select(x > zero, one, tirx.Select(x < zero, -one, x))


#: Expr function name -> TIR builder (same meaning as interp.FUNCTION_IMPLS).
FUNCTIONS: dict[str, Callable[..., tirx.PrimExpr]] = {
    "neg": lambda x: -x,
    "abs": tirx.abs,
    "exp": tirx.exp,
    "log": tirx.log,
    "sqrt": tirx.sqrt,
    "rsqrt": tirx.rsqrt,
    "tanh": tirx.tanh,
    "sigmoid": tirx.sigmoid,
    "relu": lambda x: _max(x, tirx.const(0, dtype_of(x))),
    "erf": tirx.erf,
    "sin": tirx.sin,
    "cos": tirx.cos,
    "floor": tirx.floor,
    "ceil": tirx.ceil,
    "sign": _sign,
    "reciprocal": lambda x: tirx.const(1, dtype_of(x)) / x,
    "tan": tirx.tan,
    "arcsin": tirx.asin,
    "arccos": tirx.acos,
    "arctan": tirx.atan,
    "sinh": _sinh,
    "cosh": _cosh,
    "arcsinh": tirx.asinh,
    "arccosh": tirx.acosh,
    "arctanh": tirx.atanh,
    "round": tirx.nearbyint,  # halves to even, like np.rint
    "max": _max,
    "min": _min,
    "pow": tirx.power,
    "fmod": _fmod,
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    "eq": _cmp(lambda a, b: a == b),
    "ne": _cmp(lambda a, b: a != b, unordered=True),
    "where": _where,
}

#: GPU replacements for the CPU-only entries of FUNCTIONS.
GPU_FUNCTIONS: dict[str, Callable[..., tirx.PrimExpr]] = {
    "relu": lambda x: _gpu_max(x, tirx.const(0, dtype_of(x))),
    "max": _gpu_max,
    "min": _gpu_min,
}


def _floordiv_value(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """np.floor_divide on floats: NumPy's divmod rule (``1.0 // 0.1`` is 9, not floor(10.000000000000002)).

    ``(a - fmod(a, b)) / b`` is exact up to rounding; one is taken off when
    the remainder's sign differs from the divisor's; the result is rounded to
    the nearest whole number. Division by zero gives ``a / b`` (inf or nan).
    """
    zero = tirx.const(0, dtype_of(a))
    r = _fmod(a, b)
    div = (a - r) / b
    signs_differ = tirx.any(tirx.all(r < zero, b > zero), tirx.all(r > zero, b < zero))
    div = tirx.Select(signs_differ, div - tirx.const(1, dtype_of(a)), div)
    floor = tirx.floor(div)
    whole = tirx.Select(div - floor > tirx.const(0.5, dtype_of(a)), floor + tirx.const(1, dtype_of(a)), floor)
    return tirx.Select(b == zero, a / b, whole)


def _mod_value(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """np.mod on floats: the sign of the divisor (Python's ``%``), from C fmod.

    A non-zero remainder whose sign differs from the divisor's moves by one
    divisor (``-3 % inf`` is inf); a zero remainder takes the divisor's sign.
    """
    r = _fmod(a, b)
    zero = tirx.const(0, dtype_of(a))
    signs_differ = tirx.any(tirx.all(r < zero, b > zero), tirx.all(r > zero, b < zero))
    moved = tirx.Select(signs_differ, r + b, r)
    return tirx.Select(moved == zero, tirx.copysign(zero, b), moved)


_VALUE_BINOPS: dict[str, Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": _floordiv_value,
    "%": _mod_value,
}
_INDEX_BINOPS: dict[str, Callable[[tirx.PrimExpr, tirx.PrimExpr], tirx.PrimExpr]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "//": tirx.floordiv,
    "%": tirx.floormod,
}


def _offset(v: tirx.PrimExpr, lo: tirx.PrimExpr) -> tirx.PrimExpr:
    """``v + lo`` without a ``+ 0`` node (keeps plain axis vars plain for the analyzer)."""
    if isinstance(lo, tirx.IntImm) and lo.value == 0:
        return v
    return v + lo


def _reducer(kind: str, dtype: str, standard: bool = False) -> Callable[..., tirx.PrimExpr]:
    """A TE reducer whose identity matches the interpreter's (Max of nothing is -inf).

    ``standard``: TVM's own ``te.max``/``te.min`` (identity: the dtype's
    lowest/highest finite value), which GPU cross-thread reductions recognise;
    they differ only on empty or all-infinite ranges.
    """
    if kind == "Sum":
        return te.sum
    if standard and kind in ("Max", "Min"):
        return te.max if kind == "Max" else te.min
    ident = {"Max": -math.inf, "Min": math.inf, "Prod": 1.0}[kind]
    if kind == "Prod":
        combine = lambda x, y: x * y  # noqa: E731
    else:
        # Plain max/min: the combiner is instantiated with the body substituted
        # for y, so a NaN-aware form (y used three times) would duplicate the
        # body and any Let in it. Max/Min reductions therefore skip NaNs.
        combine = (lambda x, y: tirx.max(x, y)) if kind == "Max" else (lambda x, y: tirx.min(x, y))  # noqa: E731
    return te.comm_reducer(combine, lambda t: tirx.const(ident, t), name=kind.lower())


@dataclass
class _Env:
    """Iterator name -> its value (int64 PrimExpr) and range (min, extent) of that value."""

    values: dict[str, tirx.PrimExpr] = field(default_factory=dict)
    ranges: dict[str, tuple[tirx.PrimExpr, tirx.PrimExpr]] = field(default_factory=dict)

    def bind(self, name: str, value: tirx.PrimExpr, lo: tirx.PrimExpr, extent: tirx.PrimExpr) -> _Env:
        return _Env({**self.values, name: value}, {**self.ranges, name: (lo, extent)})


class ExprLowerer:
    """Lowers scopes reading ``tensors`` (name -> te.Tensor) to TE tensors.

    ``symbols`` maps each symbolic dim name to its int64 ``tirx.Var``;
    ``dtype`` is the compute dtype (see the module docstring). Intermediate
    tensors get names starting with ``name``. One lowerer per graph node:
    materialized nested scopes and padded copies are cached in it.
    """

    def __init__(self, tensors: Mapping[str, te.Tensor], symbols: Mapping[str, tirx.Var],
                 dtype: str, name: str = "T", standard_reducers: bool = False) -> None:
        self.standard_reducers = standard_reducers
        self.tensors = dict(tensors)
        self.symbols = dict(symbols)
        self.dtype = dtype
        self.name = name
        self._closed: dict[Scope, te.Tensor] = {}
        self._padded: dict[tuple, tuple[te.Tensor, tuple[int, ...]]] = {}
        self._count = 0
        self._ana = Analyzer()

    # -- helpers ----------------------------------------------------------

    def _fresh(self, what: str) -> str:
        self._count += 1
        return f"{self.name}_{what}{self._count}"

    def _extent(self, d: IterDef) -> tirx.PrimExpr:
        if isinstance(d.extent, str):
            if d.extent not in self.symbols:
                raise EvalError(f"symbolic extent {d.extent!r} is not a dim of the graph")
            return self.symbols[d.extent]
        return i64(d.extent)

    def _proved(self, cond: tirx.PrimExpr) -> bool:
        return bool(self._ana.can_prove(cond))

    # -- scopes -------------------------------------------------------------

    def lower(self, scope: Scope, name: str | None = None) -> te.Tensor:
        """``scope`` (no free iterators) as a te.Tensor of its traversal shape."""
        return self._compute(scope, _Env(), (), name or self.name)

    def _compute(self, scope: Scope, outer: _Env, free: tuple[str, ...], name: str) -> te.Tensor:
        """A te.compute over ``free`` outer iterators (their ranges) then the travs."""
        free_ranges = [outer.ranges[f] for f in free]
        shape = [ext for _, ext in free_ranges] + [self._extent(d) for d in scope.travs]

        def body(*axes: tirx.Var) -> tirx.PrimExpr:
            env = _Env()
            for f, (lo, ext), ax in zip(free, free_ranges, axes):
                self._ana.bind(ax, tvm.ir.Range.from_min_extent(i64(0), ext))
                env = env.bind(f, _offset(ax, lo), lo, ext)
            for d, ax in zip(scope.travs, axes[len(free):]):
                ext = self._extent(d)
                self._ana.bind(ax, tvm.ir.Range.from_min_extent(i64(0), ext))
                env = env.bind(d.name, _offset(ax, i64(d.start)), i64(d.start), ext)
            rdoms = []
            for d in scope.sums:
                ext = self._extent(d)
                rv = te.reduce_axis((i64(d.start), i64(d.start) + ext), name=d.name)
                self._ana.bind(rv.var, tvm.ir.Range.from_min_extent(i64(d.start), ext))
                rdoms.append(rv)
                env = env.bind(d.name, rv.var, i64(d.start), ext)
            value = self._value(scope.body, env, in_reduction=bool(rdoms))
            if not rdoms:
                return value
            return _reducer(scope.reduce, self.dtype, self.standard_reducers)(value, axis=rdoms)

        return te.compute(shape, body, name=name)

    # -- values -------------------------------------------------------------

    def _value(self, e: Expr, env: _Env, in_reduction: bool) -> tirx.PrimExpr:
        if isinstance(e, Const):
            return tirx.const(e.value, self.dtype)
        if isinstance(e, Iter):
            return tirx.Cast(self.dtype, self._iter(e.name, env))
        if isinstance(e, BinOp):
            lhs = self._value(e.lhs, env, in_reduction)
            rhs = self._value(e.rhs, env, in_reduction)
            return _VALUE_BINOPS[e.op](lhs, rhs)
        if isinstance(e, Call):
            fn = (self.standard_reducers and GPU_FUNCTIONS.get(e.fn)) or FUNCTIONS.get(e.fn)
            if fn is None:
                raise EvalError(f"function {e.fn!r} has no TVM lowering")
            return fn(*(self._value(a, env, in_reduction) for a in e.args))
        if isinstance(e, Access):
            return self._access(e, env, in_reduction)
        raise EvalError(f"a {type(e).__name__} cannot be used as a value")

    def _iter(self, name: str, env: _Env) -> tirx.PrimExpr:
        if name not in env.values:
            raise EvalError(f"iterator {name!r} is not bound by an enclosing scope")
        return env.values[name]

    def _index(self, e: Expr, env: _Env) -> tirx.PrimExpr:
        if isinstance(e, Const):
            v = e.value
            if isinstance(v, float) and not v.is_integer():
                raise EvalError(f"index constant {v!r} is not an integer")
            return i64(int(v))
        if isinstance(e, Iter):
            return self._iter(e.name, env)
        if isinstance(e, BinOp) and e.op in _INDEX_BINOPS:
            return _INDEX_BINOPS[e.op](self._index(e.lhs, env), self._index(e.rhs, env))
        raise EvalError(f"index {e} is not affine in the iterators")

    def _read(self, t: te.Tensor, idx: list[tirx.PrimExpr]) -> tirx.PrimExpr:
        v = t(*idx)
        return v if str(t.dtype) == self.dtype else tirx.Cast(self.dtype, v)

    def _access(self, a: Access, env: _Env, in_reduction: bool) -> tirx.PrimExpr:
        src = a.source
        if isinstance(src, Scope):
            return self._scope_access(a, src, env, in_reduction)
        if src not in self.tensors:
            raise EvalError(f"tensor %{src} is not an input of the expression")
        t = self.tensors[src]
        if len(a.indices) != len(t.shape):
            raise EvalError(f"access to %{src} has {len(a.indices)} indices but %{src} has rank {len(t.shape)}")
        idx = [self._index(i, env) for i in a.indices]
        return self._bounded_read(t, idx, a.pad, in_reduction, key=src)

    def _bounded_read(self, t: te.Tensor, idx: list[tirx.PrimExpr], pad: float,
                      in_reduction: bool, key: object) -> tirx.PrimExpr:
        """``t[idx]``, or ``pad`` where an index is outside ``t``'s shape."""
        shape = list(t.shape)
        risky = [k for k, (i, n) in enumerate(zip(idx, shape))
                 if not (self._proved(i >= i64(0)) and self._proved(i < n))]
        if not risky:
            return self._read(t, idx)
        if in_reduction:
            hoisted = self._hoist_pad(t, idx, risky, pad, key)
            if hoisted is not None:
                return self._read(*hoisted)
        cond = None
        clamped = list(idx)
        for k in risky:
            n = shape[k]
            c = tirx.all(idx[k] >= i64(0), idx[k] < n)
            cond = c if cond is None else tirx.all(cond, c)
            clamped[k] = clamp(idx[k], n)
        return tirx.Select(cond, self._read(t, clamped), tirx.const(pad, self.dtype))

    def _hoist_pad(self, t: te.Tensor, idx: list[tirx.PrimExpr], risky: list[int], pad: float,
                   key: object) -> tuple[te.Tensor, list[tirx.PrimExpr]] | None:
        """A padded copy of ``t`` that ``idx`` reads in bounds (static shapes only)."""
        if not all(isinstance(n, tirx.IntImm) for n in t.shape):
            return None
        lo_pad, hi_pad = [0] * len(idx), [0] * len(idx)
        for k in risky:
            b = self._ana.const_int_bound(idx[k])
            if b.min_value <= -(2**40) or b.max_value >= 2**40:
                return None  # unbounded: not a window read
            n = int(t.shape[k])
            lo_pad[k] = max(0, -int(b.min_value))
            hi_pad[k] = max(0, int(b.max_value) - (n - 1))
        cache_key = (key, tuple(lo_pad), tuple(hi_pad), repr(pad))
        if cache_key not in self._padded:
            shape = [i64(int(n) + lo + hi) for n, lo, hi in zip(t.shape, lo_pad, hi_pad)]
            dims = [int(n) for n in t.shape]

            def padded(*ax: tirx.Var) -> tirx.PrimExpr:
                src = [a - i64(lo) for a, lo in zip(ax, lo_pad)]
                conds = [tirx.all(s >= i64(0), s < i64(n))
                         for s, n, lo, hi in zip(src, dims, lo_pad, hi_pad) if lo or hi]
                safe = [clamp(s, n) if (lo or hi) else s for s, n, lo, hi in zip(src, dims, lo_pad, hi_pad)]
                v = t(*safe)
                v = v if str(t.dtype) == self.dtype else tirx.Cast(self.dtype, v)
                return tirx.Select(tirx.all(*conds) if len(conds) > 1 else conds[0],
                                   v, tirx.const(pad, self.dtype))

            self._padded[cache_key] = (te.compute(shape, padded, name=self._fresh("pad")), tuple(lo_pad))
        p, los = self._padded[cache_key]
        return p, [i + i64(lo) for i, lo in zip(idx, los)]

    def _scope_access(self, a: Access, src: Scope, env: _Env, in_reduction: bool) -> tirx.PrimExpr:
        if len(a.indices) != src.rank:
            raise EvalError(f"access to a nested scope has {len(a.indices)} indices but the scope has rank {src.rank}")
        idx = [self._index(i, env) for i in a.indices]
        free = tuple(sorted(free_iters(src)))
        if not free:
            if src not in self._closed:
                self._closed[src] = self._compute(src, _Env(), (), self._fresh("s"))
            return self._bounded_read(self._closed[src], idx, a.pad, in_reduction, key=src)
        if not src.sums:
            # inline: bind the nested travs to the access's indices
            inner = env
            conds = []
            for d, i in zip(src.travs, idx):
                ext = self._extent(d)
                if not (self._proved(i >= i64(0)) and self._proved(i < ext)):
                    conds.append(tirx.all(i >= i64(0), i < ext))
                    i = clamp(i, ext)  # the body is evaluated either way: keep its reads in range
                inner = inner.bind(d.name, i + i64(d.start), i64(d.start), ext)
            v = self._value(src.body, inner, in_reduction)
            if conds:
                v = tirx.Select(tirx.all(*conds) if len(conds) > 1 else conds[0], v,
                                tirx.const(a.pad, self.dtype))
            return v
        missing = [f for f in free if f not in env.ranges]
        if missing:
            raise EvalError(f"iterator {missing[0]!r} is not bound by an enclosing scope")
        t = self._compute(src, env, free, self._fresh("s"))
        outer = [env.values[f] - env.ranges[f][0] for f in free]
        return self._bounded_read(t, outer + idx, a.pad, False, key=t)


def cast_to(value: te.Tensor, dtype: str, name: str) -> te.Tensor:
    """``value`` (a compute-dtype tensor) as ``dtype`` with the interpreter's rules.

    Floats cast directly; bool is ``!= 0``; integers truncate toward zero;
    unsigned integers wrap modulo 2**width (through int64, as the
    interpreter's ``_to_unsigned`` does for in-range values).
    """
    if str(value.dtype) == dtype:
        return value

    def fn(*ax: tirx.Var) -> tirx.PrimExpr:
        v = value(*ax)
        if dtype == "bool":
            return v != tirx.const(0, str(value.dtype))
        if dtype.startswith("uint") and str(value.dtype).startswith("float"):
            return _wrap_unsigned(v, dtype, str(value.dtype))
        return tirx.Cast(dtype, v)

    return te.compute(value.shape, fn, name=name)


def _wrap_unsigned(v: tirx.PrimExpr, dtype: str, src: str) -> tirx.PrimExpr:
    """A whole float as an unsigned integer modulo 2**width (``interp._to_unsigned``).

    The remainder by the power of two is exact; a negative one goes through
    int64 (whose cast wraps); one below -2**63 (u64 only) is moved up by
    2**64 first. Non-finite values give 0.
    """
    bits = int(dtype[4:])
    w = tirx.const(float(2 ** bits), src)
    zero = tirx.const(0.0, src)
    finite = tirx.Select(tirx.isfinite(v), v, zero)
    r = finite - tirx.trunc(finite / w) * w
    r = tirx.Select(r < tirx.const(-(2.0 ** 63), src), r + w, r)
    return tirx.Select(r < zero, tirx.Cast(dtype, tirx.Cast(I64, r)), tirx.Cast(dtype, r))
