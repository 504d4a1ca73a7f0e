"""The ONNX export's Expr compiler: ``expr`` nodes (scopes) to ONNX ops and local functions.

An ``expr`` node's Expr is compiled (:class:`_ScopeCompiler`) into
elementwise ops, Gather (shifted or strided reads, padding), Einsum (a
``Sum`` over a product) and Reduce* ops; :func:`emit_expr` emits it as an
ONNX local function ``expr_<output>`` in the ``tensoropt`` domain
(onnxruntime inlines them), or inline with ``local_functions=False``.
Registry ops with no ONNX twin at the requested opset come through here too,
lowered through their registry Expr definition (function ``<op>_<output>``).

Invariants: a scope computes in the interpreter's dtype (floats in their own
dtype, f16 in f32, integer and bool results in f64, cast at the end), so its
result equals :func:`tensoropt.interp.run_graph` up to floating-point
rounding; the value it computes is named after the node's output tensor; a
local function's inputs are the node's inputs plus any graph input that
carries a symbolic size the body needs at run time.

Refused, with an :class:`UnsupportedError` naming the node: a nested scope
that reads an enclosing iterator (a tensor per outer position, which no ONNX
op builds); an index that is not affine in the iterators; a function with no
ONNX equivalent; a symbolic size no input carries.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from onnx import FunctionProto, TensorProto, helper

from tensoropt.ir.expr import (
    Access,
    BinOp,
    Call,
    Const,
    Expr,
    Iter,
    IterDef,
    Scope,
    free_iters,
)
from tensoropt.ir.graph import Graph, Node
from tensoropt.ir.printer import print_expr
from tensoropt.ir.types import DTYPES, FLOAT_DTYPES, UNSIGNED_DTYPES, Dim, TensorType

from .onnx_export_emit import DOMAIN, ONNX_DTYPE, Emitter, Names, Sink

__all__ = ["emit_expr"]


@dataclass(frozen=True)
class _Val:
    """A body expression's value over a scope's frame.

    Invariant: the ONNX tensor ``name`` has one axis per iterator in ``axes``
    (a subsequence of the frame, in frame order), each of that iterator's full
    extent; it is constant along every other frame iterator. ``cond`` is the
    same value as a bool tensor when it came from a comparison (so ``where``
    needs no Cast back).
    """

    name: str
    axes: tuple[str, ...]
    cond: str | None = None


@dataclass(frozen=True, eq=False)
class _Read:
    """An access before it is laid out in frame order.

    The ONNX tensor ``name`` has one axis per iterator in ``axes``, in the
    order the source stores them. ``mask`` is True where the read is in
    bounds: a constant table over ``mask_axes`` (frame order), a run-time
    bool value when sizes are symbolic, or None when every read is in bounds.
    """

    name: str
    axes: tuple[str, ...]
    mask: np.ndarray | _Val | None = None
    mask_axes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Frame:
    """The iterators of one scope: traversal then reduction, in order."""

    defs: tuple[IterDef, ...]

    @cached_property
    def pos(self) -> Mapping[str, int]:
        return {d.name: k for k, d in enumerate(self.defs)}

    def get(self, name: str) -> IterDef:
        return self.defs[self.pos[name]]

    def order(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(set(names), key=self.pos.__getitem__))


_UNARY_FNS: Mapping[str, str] = MappingProxyType({
    "neg": "Neg", "abs": "Abs", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
    "sigmoid": "Sigmoid", "relu": "Relu", "erf": "Erf", "sin": "Sin", "cos": "Cos",
    "floor": "Floor", "ceil": "Ceil", "sign": "Sign", "reciprocal": "Reciprocal",
    "tan": "Tan", "arcsin": "Asin", "arccos": "Acos", "arctan": "Atan", "sinh": "Sinh", "cosh": "Cosh",
    "arcsinh": "Asinh", "arccosh": "Acosh", "arctanh": "Atanh",
    "round": "Round",  # halves to even, as NumPy's rint
})
_BINARY_FNS: Mapping[str, str] = MappingProxyType({"max": "Max", "min": "Min", "pow": "Pow"})
#: comparisons give bool in ONNX; bodies read them as 1.0 / 0.0.
_COMPARE_FNS: Mapping[str, str] = MappingProxyType({
    "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal", "ne": "Equal",
})
_ARITH: Mapping[str, str] = MappingProxyType({"+": "Add", "-": "Sub", "*": "Mul", "/": "Div"})
_REDUCE_OPS: Mapping[str, str] = MappingProxyType({
    "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd",
})
_IDENTITY: Mapping[str, float] = MappingProxyType({"Sum": 0.0, "Prod": 1.0, "Max": -math.inf, "Min": math.inf})
#: Einsum subscripts (lowercase only: the portable subset).
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _compute_dtype(t: TensorType) -> str:
    """The dtype an expr node computes in: the interpreter's rule (floats in
    their own dtype, f16 in f32; integer and bool results in f64, cast at the end)."""
    if t.dtype not in FLOAT_DTYPES:
        return "f64"
    return "f32" if t.dtype == "f16" else t.dtype


def _product_factors(e: Expr) -> list[Expr]:
    if isinstance(e, BinOp) and e.op == "*":
        return _product_factors(e.lhs) + _product_factors(e.rhs)
    return [e]


class _ScopeCompiler:
    """Compiles one expr node's scope to ONNX nodes.

    Each scope is evaluated over its *frame* (traversal then reduction
    iterators); a value carries the frame iterators it varies along
    (:class:`_Val`), so broadcasting only ever materializes what a body uses.
    Accesses become Squeeze/Transpose when indices are plain iterators, and
    one Gather through an index tensor (plus a Where for the pad value) when
    they are shifted, strided or reshaped: a constant table for static sizes,
    int64 arithmetic at run time for symbolic ones. ``Sum`` over a product
    becomes Einsum, other reductions Reduce*. A nested scope must be closed
    (use no enclosing iterator): it is compiled once to a tensor and read like
    any other. ``dim_of(symbol)`` names a tensor and axis whose size is the
    symbol, for the few places that need a symbolic extent at run time.
    """

    def __init__(self, em: Emitter, tensors: Mapping[str, TensorType], compute: str,
                 dim_of: Callable[[str], tuple[str, int]]) -> None:
        self.em = em
        self.tensors = tensors
        self.compute = compute
        self.dim_of = dim_of
        self._memo: dict[tuple[_Frame, Expr], _Val] = {}
        self._reads: dict[tuple[_Frame, Access], _Read] = {}
        self._iotas: dict[tuple[int, Dim, str], str] = {}
        self._closed: dict[Scope, str] = {}
        self._dims: dict[str, str] = {}
        self._consts: dict[tuple[str, str], str] = {}
        self._int_consts: dict[int, str] = {}

    # -- entry ------------------------------------------------------------

    def tensor(self, s: Scope) -> str:
        """``s`` as a tensor of its full shape, in the compute dtype."""
        if s not in self._closed:
            self._closed[s] = self._materialize(s, self._scope(s))
        return self._closed[s]

    # -- scopes -------------------------------------------------------------

    def _scope(self, s: Scope) -> _Val:
        frame = _Frame(s.travs + s.sums)
        if any(d.extent == 0 for d in s.sums):
            return _Val(self._k(_IDENTITY[s.reduce]), ())  # an empty reduction is its identity
        if s.reduce == "Sum" and s.sums:
            out = self._einsum(s, frame)
            if out is not None:
                return out
        body = self._value(s.body, frame)
        present = [d.name for d in s.sums if d.name in body.axes]
        name = body.name
        if present:
            axes = [body.axes.index(n) for n in present]
            name = self.em.one(_REDUCE_OPS[s.reduce], [name, self.em.ints(axes, "axes")], keepdims=0)
        kept = tuple(a for a in body.axes if a not in present)
        absent = [d for d in s.sums if d.name not in body.axes]
        return self._repeat(_Val(name, kept), absent, s.reduce)

    def _einsum(self, s: Scope, frame: _Frame) -> _Val | None:
        """``Sum[...] { f1 * f2 * ... }`` as one Einsum over the factors' axes, or None."""
        if len(frame.defs) > len(_LETTERS):
            return None
        factors: list[_Val] = []
        for f in _product_factors(s.body):
            r = self._read(f, frame) if isinstance(f, Access) else None
            # Einsum subscripts can follow a tensor's own axis order: no Transpose.
            factors.append(_Val(r.name, r.axes) if r is not None and r.mask is None else self._value(f, frame))
        tensors = [f for f in factors if f.axes]
        if len(tensors) < 2:
            return None
        travs = [d.name for d in s.travs]
        out_axes = tuple(t for t in travs if any(t in f.axes for f in tensors))

        def sub(axes: Sequence[str]) -> str:
            return "".join(_LETTERS[frame.pos[a]] for a in axes)

        eq = ",".join(sub(f.axes) for f in tensors) + "->" + sub(out_axes)
        name = self.em.one("Einsum", [f.name for f in tensors], equation=eq)
        for v in factors:
            if not v.axes:  # scalar factors: applied once, after the contraction
                name = self.em.one("Mul", [name, v.name])
        used = {a for v in tensors for a in v.axes}
        return self._repeat(_Val(name, out_axes), [d for d in s.sums if d.name not in used], "Sum")

    def _repeat(self, v: _Val, absent: Sequence[IterDef], reduce: str) -> _Val:
        """Reduce ``v`` over iterators it does not depend on: the value repeats
        ``extent`` times (Sum multiplies, Prod raises to a power, Max/Min keep it)."""
        if not absent or reduce in ("Max", "Min"):
            return v
        static = math.prod(int(d.extent) for d in absent if isinstance(d.extent, int))
        symbolic = [d.extent for d in absent if isinstance(d.extent, str)]
        count = self._k(float(static)) if static != 1 or not symbolic else None
        for sym in symbolic:
            n = self.em.one("Cast", [self._int_dim(sym)], to=ONNX_DTYPE[self.compute])
            count = n if count is None else self.em.one("Mul", [count, n])
        assert count is not None
        op = "Mul" if reduce == "Sum" else "Pow"
        return _Val(self.em.one(op, [v.name, count]), v.axes)

    def _materialize(self, s: Scope, v: _Val) -> str:
        """``v`` laid out as ``s``'s full shape."""
        return self._fill(v, s.travs)

    def _fill(self, v: _Val, defs: tuple[IterDef, ...]) -> str:
        """``v`` with one full axis per iterator of ``defs`` (Unsqueeze + Expand
        for those it does not vary along). ``v.axes`` must be a subsequence of them."""
        names = tuple(d.name for d in defs)
        if v.axes == names:
            return v.name
        missing = [k for k, t in enumerate(names) if t not in v.axes]
        name = self.em.one("Unsqueeze", [v.name, self.em.ints(missing, "axes")])
        # Expand broadcasts both ways: 1 keeps a present axis as it is.
        shape = [d.extent if d.name not in v.axes else 1 for d in defs]
        return self.em.one("Expand", [name, self._shape(shape)])

    # -- bodies -------------------------------------------------------------

    def _value(self, e: Expr, frame: _Frame) -> _Val:
        # Keyed by the frame's iterators (not its identity): a value depends on
        # nothing else, and the same subexpression (a re-read access) is built once.
        key = (frame, e)
        if key not in self._memo:
            self._memo[key] = self._build(e, frame)
        return self._memo[key]

    def _build(self, e: Expr, frame: _Frame) -> _Val:
        if isinstance(e, Const):
            return _Val(self._k(float(e.value)), ())
        if isinstance(e, Iter):
            return self._iota(frame.get(e.name))
        if isinstance(e, Access):
            return self._access(e, frame)
        if isinstance(e, BinOp):
            a, b = self._value(e.lhs, frame), self._value(e.rhs, frame)
            if e.op in _ARITH:
                return self._map(_ARITH[e.op], [a, b], frame)
            q = self._map("Floor", [self._map("Div", [a, b], frame)], frame)
            if e.op == "//":
                return q
            # ``%`` keeps the divisor's sign (Python, like NumPy's mod): a - floor(a / b) * b
            return self._map("Sub", [a, self._map("Mul", [q, b], frame)], frame)
        if isinstance(e, Call):
            return self._call(e, frame)
        raise self.em.refuse(f"a {type(e).__name__} cannot be a value in a body")

    def _call(self, e: Call, frame: _Frame) -> _Val:
        args = [self._value(a, frame) for a in e.args]
        if e.fn in _UNARY_FNS:
            return self._map(_UNARY_FNS[e.fn], args, frame)
        if e.fn == "rsqrt":
            return self._map("Reciprocal", [self._map("Sqrt", args, frame)], frame)
        if e.fn in _BINARY_FNS:
            return self._map(_BINARY_FNS[e.fn], args, frame)
        if e.fn == "fmod":  # C remainder (the dividend's sign); float Mod needs fmod=1
            return self._map("Mod", args, frame, fmod=1)
        if e.fn in _COMPARE_FNS:
            test = self._map(_COMPARE_FNS[e.fn], args, frame)
            if e.fn == "ne":
                test = self._map("Not", [test], frame)
            num = self.em.one("Cast", [test.name], to=ONNX_DTYPE[self.compute])
            return _Val(num, test.axes, cond=test.name)
        if e.fn == "where":
            c, x, y = args
            # The interpreter tests ``c != 0``, which is what Cast to bool does.
            cond = c.cond or self.em.one("Cast", [c.name], to=TensorProto.BOOL)
            return self._map("Where", [_Val(cond, c.axes), x, y], frame)
        raise self.em.refuse(f"function {e.fn!r} has no ONNX equivalent here")

    def _map(self, op_type: str, args: Sequence[_Val], frame: _Frame, **attrs: Any) -> _Val:
        """An elementwise ONNX op over ``args``, broadcast on the union of their axes."""
        axes = frame.order(a for v in args for a in v.axes)
        return _Val(self.em.one(op_type, [self._align(v, axes) for v in args], **attrs), axes)

    def _align(self, v: _Val, axes: tuple[str, ...]) -> str:
        """``v``'s tensor with size-1 axes inserted so it broadcasts against ``axes``.

        ONNX broadcasting aligns trailing dims, so a scalar or a trailing run
        of ``axes`` needs nothing; otherwise the missing axes after ``v``'s
        first one are inserted.
        """
        if not v.axes or v.axes == axes[len(axes) - len(v.axes):]:
            return v.name
        first = axes.index(v.axes[0])
        missing = [p - first for p in range(first, len(axes)) if axes[p] not in v.axes]
        return self.em.one("Unsqueeze", [v.name, self.em.ints(missing, "axes")])

    def _iota(self, d: IterDef) -> _Val:
        """An iterator used as a number: its values along its own axis.

        Iterators with the same range share one tensor (only the label differs).
        """
        return _Val(self._range(d, self.compute), (d.name,))

    def _range(self, d: IterDef, dtype: str) -> str:
        """The values of ``d``'s range as a 1-D ``dtype`` tensor, one per range."""
        key = (d.start, d.extent, dtype)
        if key not in self._iotas:
            if isinstance(d.extent, int):
                vals = np.arange(d.start, d.start + d.extent).astype(DTYPES[dtype])
                self._iotas[key] = self.em.const(vals, d.name)
            else:
                # symbolic extents start at 0
                r = self.em.one("Range", [self._int(0), self._int_dim(d.extent), self._int(1)])
                self._iotas[key] = r if dtype == "i64" else self.em.one("Cast", [r], to=ONNX_DTYPE[dtype])
        return self._iotas[key]

    # -- accesses -----------------------------------------------------------

    def _access(self, a: Access, frame: _Frame) -> _Val:
        """``a`` in frame order, with the pad value where it reads out of bounds."""
        r = self._read(a, frame)
        name, ordered = r.name, frame.order(r.axes)
        if r.axes != ordered:
            name = self.em.one("Transpose", [name], perm=[r.axes.index(x) for x in ordered])
        if r.mask is None:
            return _Val(name, ordered)
        if isinstance(r.mask, _Val):
            m = self._align(r.mask, ordered)
        else:
            # The mask table varies along ``mask_axes`` only; shaped against
            # ``ordered`` here, it broadcasts without an Unsqueeze.
            layout = [r.mask.shape[r.mask_axes.index(x)] if x in r.mask_axes else 1 for x in ordered]
            m = self.em.const(r.mask.reshape(layout), "in_bounds")
        return _Val(self.em.one("Where", [m, name, self._k(a.pad)]), ordered)

    def _read(self, a: Access, frame: _Frame) -> _Read:
        key = (frame, a)
        if key not in self._reads:
            self._reads[key] = self._build_read(a, frame)
        return self._reads[key]

    def _build_read(self, a: Access, frame: _Frame) -> _Read:
        """Plain-iterator axes are kept as they are, size-1 broadcast axes
        squeezed, and every other axis read through :meth:`_gather`."""
        name, shape, dtype = self._source(a)
        if len(a.indices) != len(shape):
            raise self.em.refuse(f"an access has {len(a.indices)} indices into a rank-{len(shape)} tensor")
        for e in a.indices:
            for it in free_iters(e):
                if it not in frame.pos:
                    raise self.em.refuse(f"iterator {it!r} in {print_expr(a)} is not bound by its scope")
        if any(d == 0 for d in shape):
            return _Read(self._k(a.pad), ())  # nothing to read: every read is out of bounds
        if dtype != self.compute:
            # Cast first: Squeeze and friends do not take every dtype (bool).
            name = self.em.one("Cast", [name], to=ONNX_DTYPE[self.compute])
        uses = Counter(it for e in a.indices for it in free_iters(e))
        labels: list[str | None] = []  # per source axis: its iterator, or None to drop it
        cplx: list[int] = []
        for k, (e, d) in enumerate(zip(a.indices, shape)):
            if isinstance(e, Iter) and uses[e.name] == 1 and frame.get(e.name).start == 0 \
                    and frame.get(e.name).extent == d:
                labels.append(e.name)  # plain: the whole axis, in order
            elif isinstance(e, Const) and e.value == 0 and d == 1:
                labels.append(None)  # a broadcast read of a size-1 axis
            else:
                labels.append(None)
                cplx.append(k)
        if cplx:
            return self._gather(a, name, shape, labels, cplx, frame)
        drop = [k for k, lab in enumerate(labels) if lab is None]
        if drop:
            name = self.em.one("Squeeze", [name, self.em.ints(drop, "axes")])
        return _Read(name, tuple(lab for lab in labels if lab is not None))

    def _source(self, a: Access) -> tuple[str, tuple[Dim, ...], str]:
        """(ONNX name, shape, dtype) of what ``a`` reads."""
        if isinstance(a.source, Scope):
            if free_iters(a.source):
                its = ", ".join(sorted(free_iters(a.source)))
                raise self.em.refuse(f"a nested scope reads the enclosing iterator(s) {its}; "
                                     "only closed nested scopes (a tensor of their own) are exported")
            return self.tensor(a.source), a.source.shape, self.compute
        t = self.tensors[a.source]
        return a.source, t.shape, t.dtype

    def _gather(self, a: Access, name: str, shape: Sequence[Dim], labels: list[str | None],
                cplx: list[int], frame: _Frame) -> _Read:
        """Read the non-plain axes ``cplx`` through one Gather on the merged axes.

        The index tensor is indexed by the iterators those indices use (``U``,
        frame order) and holds the flat offset into the merged ``cplx`` axes,
        clipped into bounds; the mask says where the pad value applies
        instead. With static sizes both are constant tables (computed here);
        with symbolic ones they are computed at run time.
        """
        used = frame.order(it for k in cplx for it in free_iters(a.indices[k]))
        static = all(isinstance(shape[k], int) for k in cplx) and \
            all(isinstance(frame.get(it).extent, int) for it in used)
        index, mask = (self._static_index(a, shape, cplx, used, frame) if static
                       else self._dynamic_index(a, shape, cplx, used, frame))
        em = self.em
        # Drop broadcast size-1 axes first, then bring the computed axes last and merge them.
        drop = [k for k, lab in enumerate(labels) if lab is None and k not in cplx]
        if drop:
            name = em.one("Squeeze", [name, em.ints(drop, "axes")])
        keep = [k for k in range(len(shape)) if k not in drop]
        lead = [k for k in keep if k not in cplx]
        if len(cplx) == 1:
            axis = keep.index(cplx[0])
            axes = [labels[k] for k in keep[:axis]] + list(used) + [labels[k] for k in keep[axis + 1:]]
        else:
            perm = [keep.index(k) for k in lead + cplx]
            if perm != sorted(perm):
                name = em.one("Transpose", [name], perm=perm)
            # Reshape's 0 copies the (possibly symbolic) leading dims in place; -1 is the merged size.
            name = em.one("Reshape", [name, em.ints([0] * len(lead) + [-1], "merged")])
            axis = len(lead)
            axes = [labels[k] for k in lead] + list(used)
        name = em.one("Gather", [name, index], axis=axis)
        return _Read(name, tuple(x for x in axes if x is not None), mask, used)

    def _static_index(self, a: Access, shape: Sequence[Dim], cplx: list[int], used: tuple[str, ...],
                      frame: _Frame) -> tuple[str, np.ndarray | None]:
        """The index table as a constant, and the mask (None when all reads are in bounds)."""
        ext = [int(frame.get(it).extent) for it in used]
        grids = {it: np.arange(frame.get(it).start, frame.get(it).start + n).reshape(
            [n if j == p else 1 for j in range(len(used))]) for p, (it, n) in enumerate(zip(used, ext))}
        flat = np.zeros(ext, np.int64)
        inside = np.ones(ext, bool)
        for k in cplx:
            d = int(shape[k])
            ix = np.broadcast_to(self._index(a.indices[k], grids), ext)
            inside &= (ix >= 0) & (ix < d)
            flat = flat * d + np.clip(ix, 0, d - 1)
        return self.em.const(flat, "index"), None if inside.all() else inside

    def _dynamic_index(self, a: Access, shape: Sequence[Dim], cplx: list[int], used: tuple[str, ...],
                       frame: _Frame) -> tuple[str, _Val]:
        """The index tensor and mask computed at run time, in int64 ONNX ops."""
        flat: _Val | None = None
        inside: _Val | None = None
        zero = _Val(self._int(0), ())
        for k in cplx:
            ix = self._index_val(a.indices[k], frame)
            d = _Val(self._int_dim(shape[k]), ())
            last = _Val(self.em.one("Sub", [d.name, self._int(1)]), ())
            ok = self._map("And", [self._map("GreaterOrEqual", [ix, zero], frame),
                                   self._map("Less", [ix, d], frame)], frame)
            inside = ok if inside is None else self._map("And", [inside, ok], frame)
            clipped = self._map("Clip", [ix, zero, last], frame)
            flat = clipped if flat is None else self._map("Add", [self._map("Mul", [flat, d], frame), clipped], frame)
        assert flat is not None and inside is not None
        # Gather's index must span every iterator of ``U`` (its axes become the result's).
        full = self._fill(flat, tuple(frame.get(it) for it in used))
        return full, inside

    def _index_val(self, e: Expr, frame: _Frame) -> _Val:
        """An index expression as an int64 run-time value (Python ``//`` and ``%``)."""
        if isinstance(e, Const) and float(e.value).is_integer():
            return _Val(self._int(int(e.value)), ())
        if isinstance(e, Iter):
            return _Val(self._range(frame.get(e.name), "i64"), (e.name,))
        if isinstance(e, BinOp) and e.op in ("+", "-", "*"):
            a, b = self._index_val(e.lhs, frame), self._index_val(e.rhs, frame)
            return self._map(_ARITH[e.op], [a, b], frame)
        if isinstance(e, BinOp) and e.op in ("//", "%"):
            a, b = self._index_val(e.lhs, frame), self._index_val(e.rhs, frame)
            # Integer Mod with fmod=0 takes the divisor's sign, as Python does;
            # a - a mod b is then an exact multiple of b, so Div cannot truncate.
            rem = self._map("Mod", [a, b], frame)
            if e.op == "%":
                return rem
            return self._map("Div", [self._map("Sub", [a, rem], frame), b], frame)
        raise self.em.refuse(f"index {print_expr(e)} is not affine in the iterators")

    def _int_dim(self, d: Dim) -> str:
        """A dim as an int64 scalar tensor (one per symbol)."""
        if isinstance(d, int):
            return self._int(d)
        key = f"scalar:{d}"
        if key not in self._dims:
            self._dims[key] = self.em.one("Squeeze", [self._dim(d)])
        return self._dims[key]

    def _index(self, e: Expr, grids: Mapping[str, np.ndarray]) -> np.ndarray | int:
        """An index expression over the iterator grids (Python ``//`` and ``%``, as the interpreter)."""
        if isinstance(e, Const) and float(e.value).is_integer():
            return int(e.value)
        if isinstance(e, Iter):
            return grids[e.name]
        if isinstance(e, BinOp) and e.op in ("+", "-", "*", "//", "%"):
            lhs, rhs = self._index(e.lhs, grids), self._index(e.rhs, grids)
            ops: Mapping[str, Callable] = {"+": np.add, "-": np.subtract, "*": np.multiply,
                                           "//": np.floor_divide, "%": np.mod}
            return ops[e.op](lhs, rhs)
        raise self.em.refuse(f"index {print_expr(e)} is not affine in the iterators")

    # -- constants and shapes -------------------------------------------------

    def _int(self, v: int) -> str:
        """An int64 scalar (one per distinct value)."""
        if v not in self._int_consts:
            self._int_consts[v] = self.em.const(np.asarray(v, np.int64), "i")
        return self._int_consts[v]

    def _k(self, v: float) -> str:
        """A scalar in the compute dtype (one per distinct value)."""
        key = (self.compute, repr(float(v)))
        if key not in self._consts:
            self._consts[key] = self.em.scalar(v, self.compute, "c")
        return self._consts[key]

    def _dim(self, symbol: str) -> str:
        """A 1-D int64 tensor holding the run-time size of ``symbol``."""
        if symbol not in self._dims:
            src, axis = self.dim_of(symbol)
            self._dims[symbol] = self.em.one("Shape", [src], start=axis, end=axis + 1)
        return self._dims[symbol]

    def _shape(self, dims: Sequence[Dim]) -> str:
        """A 1-D int64 shape tensor (Concat of static runs and run-time symbols)."""
        if all(isinstance(d, int) for d in dims):
            return self.em.ints([int(d) for d in dims], "shape")
        parts: list[str] = []
        run: list[int] = []
        for d in dims:
            if isinstance(d, int):
                run.append(d)
                continue
            if run:
                parts.append(self.em.ints(run, "dims"))
                run = []
            parts.append(self._dim(d))
        if run:
            parts.append(self.em.ints(run, "dims"))
        return self.em.one("Concat", parts, axis=0)


def _symbol_carriers(graph: Graph, node: Node, types: Mapping[str, TensorType]) -> dict[str, tuple[str, int]]:
    """symbol -> (tensor, axis) of that size: the node's inputs first, then the graph's."""
    out: dict[str, tuple[str, int]] = {}
    for name in list(node.inputs) + [v.name for v in graph.inputs]:
        for axis, d in enumerate(types[name].shape):
            if isinstance(d, str):
                out.setdefault(d, (name, axis))
    return out


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _compile_expr(node: Node, em: Emitter, carriers: Mapping[str, tuple[str, int]]) -> list[str]:
    """Emit ``node``'s scope computing its output tensor; returns the tensors it reads
    (its inputs, plus any graph input it needs for a symbolic size)."""
    assert node.expr is not None
    out = node.outputs[0]
    compute = _compute_dtype(out.type)
    read: list[str] = list(node.inputs)

    def dim_of(symbol: str) -> tuple[str, int]:
        if symbol not in carriers:
            raise em.refuse(f"no input carries symbolic dim {symbol!r}, which the expression needs at run time")
        src, axis = carriers[symbol]
        if src not in read:
            read.append(src)  # a function needs it as an extra input
        return src, axis

    sc = _ScopeCompiler(em, em.types, compute, dim_of)
    value = sc.tensor(node.expr)
    if out.type.dtype in UNSIGNED_DTYPES:
        value = _to_unsigned(em, value, out.type)
    elif compute != out.type.dtype:
        value = em.one("Cast", [value], to=ONNX_DTYPE[out.type.dtype])
    _rename_result(em, value, out.name)
    return read


def _to_unsigned(em: Emitter, value: str, t: TensorType) -> str:
    """f64 whole numbers -> the unsigned ``t``, wrapping modulo 2**width as the
    interpreter's output cast does (a float -> unsigned Cast out of range is
    undefined: onnxruntime gives 0). Every step is exact: ``fmod`` by the power
    of two; a u64 remainder outside int64's range moved by 2**64 (Sterbenz);
    then through int64, whose Cast to ``t`` wraps. NaN and infinities give 0."""
    bits = t.np_dtype.itemsize * 8
    width = em.scalar(float(2 ** bits), "f64", "width")
    r = em.one("Mod", [value, width], fmod=1)
    r = em.one("Where", [em.one("IsNaN", [r]), em.scalar(0.0, "f64", "zero"), r])  # fmod(inf) is NaN
    if bits == 64:
        half = 2.0 ** 63
        up = em.one("Cast", [em.one("Less", [r, em.scalar(-half, "f64", "neg_half")])], to=TensorProto.DOUBLE)
        down = em.one("Cast", [em.one("GreaterOrEqual", [r, em.scalar(half, "f64", "half")])],
                      to=TensorProto.DOUBLE)
        r = em.one("Add", [r, em.one("Mul", [em.one("Sub", [up, down]), width])])
    return em.one("Cast", [em.one("Cast", [r], to=TensorProto.INT64)], to=ONNX_DTYPE[t.dtype])


def _rename_result(em: Emitter, value: str, target: str) -> None:
    """Make ``target`` the name of ``value``: rename the producing node's output
    (and every use) when it is ours, else an Identity (a body that only reads an input)."""
    if value in em.types or not any(value in n.output for n in em.sink.nodes):
        em.one("Identity", [value], target)
        return
    for n in em.sink.nodes:
        for k, o in enumerate(n.output):
            if o == value:
                n.output[k] = target
                n.name = em.node_names.fresh(target)  # it is the node computing the tensor now
        for k, i in enumerate(n.input):
            if i == value:
                n.input[k] = target


def emit_expr(node: Node, em: Emitter, graph: Graph, local_functions: bool,
               functions: list[FunctionProto], fn_names: Names, kind: str = "expr") -> None:
    """Emit an ``expr`` node, as a local function ``<kind>_<output>`` or inline.

    ``kind`` names what the scope came from: ``expr``, or a registry op
    lowered through its Expr definition (the function is then ``cumprod_y``).
    """
    assert node.expr is not None
    carriers = _symbol_carriers(graph, node, em.types)
    doc = f"{node.label}: {print_expr(node.expr)}"
    if not local_functions:
        _compile_expr(node, em, carriers)
        return
    body = Sink(in_function=True)
    inner = Emitter(body, Names(em.types), Names(), node.outputs[0].name, em.where, em.opset, em.types)
    read = _compile_expr(node, inner, carriers)
    fname = fn_names.fresh(f"{kind}_{_sanitize(node.outputs[0].name)}")
    fn = helper.make_function(DOMAIN, fname, read, [node.outputs[0].name], body.nodes,
                              [helper.make_opsetid("", em.opset)])
    fn.doc_string = doc
    functions.append(fn)
    em.node(fname, read, [node.outputs[0].name], domain=DOMAIN, doc=doc)
