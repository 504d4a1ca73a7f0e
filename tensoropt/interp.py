"""The NumPy reference interpreter: the oracle for every pass and backend.

Two entry points:

- :func:`evaluate_expr` evaluates a :class:`~tensoropt.ir.expr.Scope` per the
  semantics in ``tensoropt.ir.expr``'s module docstring.
- :func:`run_graph` runs a whole :class:`~tensoropt.ir.graph.Graph`.

How a scope is evaluated (never a Python loop per element):

- Every iterator in play is one axis of a *frame*. An iterator's value is an
  ``np.arange`` reshaped onto its own axis (an index *grid*); every
  intermediate array has either the frame's full ndim (size 1 on the axes it
  does not depend on) or is 0-d. Broadcasting therefore materializes only the
  iterators an expression actually uses.
- An access evaluates its indices to integer grids, gathers with fancy
  indexing, and applies the pad where the (clipped) index was out of bounds.
- A ``Sum`` over a product of factors gathers each factor over only its own
  iterators and contracts them with ``np.einsum(optimize=True)`` (im2col
  style: this is what makes convs and matmuls fast). Other bodies are
  evaluated by broadcasting and then reduced.
- Before a node runs, its declared output sizes are checked against the
  evaluation budget (:func:`evaluation_budget`, a share of the memory this
  process may use); :func:`run_graph` checks every node before running any,
  so a graph that cannot fit fails with one :class:`BudgetError` line naming
  the node and the size, never a ``MemoryError`` or the OOM killer.
- When the largest intermediate would exceed ``CHUNK_ELEMENTS``, the scope is
  split along one of its iterators (a traversal axis when possible, else a
  reduction axis whose partial results are combined) and each piece evaluated
  recursively.
- A nested scope that uses no enclosing iterator is evaluated once per call
  and cached. One that does is evaluated in the enclosing frame, i.e. with the
  enclosing iterators it uses as extra leading axes: vectorized over both.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.special

from .errors import BudgetError, EvalError, TensoroptError
from .ir.expr import FUNCTIONS, Access, BinOp, Call, Const, Expr, Iter, IterDef, Scope, free_iters
from .ir.graph import Graph, Node, Value, weight_mismatch
from .ir.types import DTYPES, FLOAT_DTYPES, UNSIGNED_DTYPES, TensorType

__all__ = [
    "CHUNK_ELEMENTS",
    "EVAL_BUDGET_FRACTION",
    "FUNCTION_IMPLS",
    "available_memory",
    "check_budget",
    "evaluate_expr",
    "evaluate_node",
    "evaluation_budget",
    "run_graph",
]

#: Upper bound on the elements of one intermediate before a scope is split.
CHUNK_ELEMENTS = 64 * 1024 * 1024

#: Share of the memory this process may use (:func:`available_memory`) that
#: one node's outputs may take. A quarter, because evaluating a node holds its
#: inputs and the other live tensors too, and NumPy's temporaries (a cast, a
#: broadcast, an einsum) can be a few times the output; a graph whose declared
#: sizes cannot fit then fails up front with one line instead of a MemoryError.
EVAL_BUDGET_FRACTION = 0.25


# --------------------------------------------------------------------------
# The memory budget


@functools.lru_cache(maxsize=1)
def _machine_memory() -> int | None:
    """Physical RAM, lowered to a cgroup's ``memory.max`` (containers); None if unknown."""
    limits: list[int] = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass  # no sysconf (Windows) or no such name
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) means no limit
            limits.append(int(text))
    positive = [n for n in limits if n > 0]
    return min(positive) if positive else None


def available_memory() -> int:
    """Bytes this process may use: the least of physical RAM, a cgroup memory
    limit, and the address-space and data rlimits (read at each call: a test
    or a supervisor may lower them). 64 GiB when none of these is known."""
    limits = [n for n in (_machine_memory(),) if n]
    try:
        import resource

        for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            soft, _ = resource.getrlimit(which)
            if soft != resource.RLIM_INFINITY and soft > 0:
                limits.append(int(soft))
    except (ImportError, OSError, ValueError):
        pass  # no resource module (Windows)
    return min(limits) if limits else 64 << 30


def evaluation_budget() -> int:
    """Bytes one node's outputs may take: :data:`EVAL_BUDGET_FRACTION` of :func:`available_memory`."""
    return int(available_memory() * EVAL_BUDGET_FRACTION)


def format_bytes(n: int) -> str:
    """``n`` bytes for a message: ``37.3 GiB``, ``64.0 MiB``, ``12 B``."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        size /= 1024
        if size < 1024 or unit == "PiB":
            break
    return f"{size:.1f} {unit}" if size < 10_000 else f"{size:.3g} {unit}"  # hostile dims: 7.56e+22 PiB


def _node_bytes(node: Node, symbols: Mapping[str, int], f64: bool) -> tuple[int, str] | None:
    """Bytes a node's outputs take when computed, and their types as text;
    None when a dim is unbound (the shape check after evaluation names it).

    Python ints: a product of hostile dims cannot wrap around. ``expr`` nodes
    count their compute dtype when it is wider (integers compute in f64).
    """
    total, parts = 0, []
    for v in node.outputs:
        try:
            shape = v.type.concrete(dict(symbols))
        except KeyError:
            return None
        itemsize = _output_dtype(v.type, f64).itemsize
        if node.op == "expr":
            itemsize = max(itemsize, _compute_dtype(v.type, f64).itemsize)
        total += math.prod(shape) * itemsize
        parts.append(str(TensorType(v.type.dtype, shape)))
    return total, ", ".join(parts)


def check_budget(node: Node, symbols: Mapping[str, int] | None = None, *, f64: bool = False,
                 max_bytes: int | None = None) -> None:
    """Raise :class:`BudgetError` when ``node``'s declared outputs (symbols
    bound) are over ``max_bytes`` (default :func:`evaluation_budget`).

    Allocates nothing: it reads only the declared types.
    """
    size = _node_bytes(node, symbols or {}, f64)
    if size is None:
        return
    nbytes, types = size
    budget = evaluation_budget() if max_bytes is None else max_bytes
    if nbytes <= budget:
        return
    why = (f" ({EVAL_BUDGET_FRACTION:.0%} of the {format_bytes(available_memory())} this process may use)"
           if max_bytes is None else "")
    raise BudgetError(f"{node.label}: declares {types} ({format_bytes(nbytes)}): over the "
                      f"{format_bytes(budget)} evaluation budget{why}")


# --------------------------------------------------------------------------
# Elementwise functions


def _compare(ufunc: np.ufunc) -> Callable[[Any, Any], np.ndarray]:
    """A comparison giving 1.0/0.0 in the operands' (compute) dtype."""

    def cmp(a: Any, b: Any) -> np.ndarray:
        return np.asarray(ufunc(a, b)).astype(np.result_type(a, b))

    cmp.__name__ = ufunc.__name__
    return cmp


def _relu(x: Any) -> Any:
    # Python 0 is a "weak" scalar under NEP 50: the dtype of x is kept.
    return np.maximum(x, 0)


def _rsqrt(x: Any) -> Any:
    return np.reciprocal(np.sqrt(x))


def _where(c: Any, a: Any, b: Any) -> Any:
    return np.where(np.asarray(c) != 0, a, b)


#: NumPy meaning of every name in ``tensoropt.ir.expr.FUNCTIONS`` (same arity).
FUNCTION_IMPLS: dict[str, Callable[..., Any]] = {
    "neg": np.negative,
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": _rsqrt,
    "tanh": np.tanh,
    "sigmoid": scipy.special.expit,
    "relu": _relu,
    "erf": scipy.special.erf,
    "sin": np.sin,
    "cos": np.cos,
    "floor": np.floor,
    "ceil": np.ceil,
    "sign": np.sign,
    "reciprocal": np.reciprocal,
    "tan": np.tan,
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "arcsinh": np.arcsinh,
    "arccosh": np.arccosh,
    "arctanh": np.arctanh,
    "round": np.rint,  # halves to even, as ONNX Round
    "max": np.maximum,
    "min": np.minimum,
    "pow": np.power,
    "fmod": np.fmod,  # C remainder: the sign of the dividend
    "lt": _compare(np.less),
    "le": _compare(np.less_equal),
    "gt": _compare(np.greater),
    "ge": _compare(np.greater_equal),
    "eq": _compare(np.equal),
    "ne": _compare(np.not_equal),
    "where": _where,
}
assert set(FUNCTION_IMPLS) == set(FUNCTIONS), "FUNCTION_IMPLS out of step with FUNCTIONS"


# --------------------------------------------------------------------------
# Reductions

#: reducer -> (NumPy reduction, identity of an empty range, pairwise combine).
_REDUCERS: dict[str, tuple[Callable[..., Any], float, Callable[[Any, Any], Any]]] = {
    "Sum": (np.sum, 0.0, np.add),
    "Prod": (np.prod, 1.0, np.multiply),
    "Max": (np.max, -math.inf, np.maximum),
    "Min": (np.min, math.inf, np.minimum),
}


def _reduce_tail(arr: np.ndarray, extents: Sequence[int], kind: str) -> np.ndarray:
    """Reduce the last ``len(extents)`` axes of ``arr`` with ``kind``.

    An axis of size 1 stands for a body that does not depend on that iterator:
    the value is repeated ``extent`` times (Sum multiplies, Prod raises to a
    power, Max/Min keep it). Extents are all > 0 here (empty ranges are
    handled before the body is evaluated).
    """
    n = len(extents)
    if n == 0:
        return arr
    lead = arr.ndim - n
    full = tuple(lead + k for k, e in enumerate(extents) if arr.shape[lead + k] == e and e != 1)
    reduce_fn = _REDUCERS[kind][0]
    out = reduce_fn(arr, axis=full, keepdims=True) if full else arr
    repeat = math.prod(e for k, e in enumerate(extents) if arr.shape[lead + k] != e)
    if repeat != 1 and kind == "Sum":
        out = out * out.dtype.type(repeat)
    elif repeat != 1 and kind == "Prod":
        out = out ** out.dtype.type(repeat)
    return out.reshape(out.shape[:lead])


# --------------------------------------------------------------------------
# Evaluation context and frames


@dataclass
class _Ctx:
    """Per-call state: inputs, symbol bindings, compute dtype, closed-scope cache."""

    tensors: Mapping[str, np.ndarray]
    symbols: Mapping[str, int]
    dtype: np.dtype
    chunk_elements: int
    closed: dict[Scope, np.ndarray] = field(default_factory=dict)

    def scalar(self, v: float) -> Any:
        return self.dtype.type(v)


@dataclass(frozen=True)
class _Frame:
    """Iterator grids of one evaluation site.

    Invariant: every grid has ndim ``self.ndim`` and size > 1 at most on its own
    axis; ``extents[name]`` is its length on that axis.
    """

    ndim: int
    grids: Mapping[str, np.ndarray]
    extents: Mapping[str, int]

    def extend(self, ranges: Sequence[tuple[str, int, int]]) -> _Frame:
        """A frame with one new trailing axis per ``(name, lo, hi)`` range."""
        n = self.ndim + len(ranges)
        pad = (1,) * len(ranges)
        grids = {k: g.reshape(g.shape + pad) for k, g in self.grids.items()}
        extents = dict(self.extents)
        for k, (name, lo, hi) in enumerate(ranges):
            shape = [1] * n
            shape[self.ndim + k] = hi - lo
            grids[name] = np.arange(lo, hi, dtype=np.int64).reshape(shape)
            extents[name] = hi - lo
        return _Frame(n, grids, extents)


_EMPTY_FRAME = _Frame(0, {}, {})


def _extent(d: IterDef, ctx: _Ctx) -> int:
    """The concrete extent of an iterator; EvalError for an unbound symbol."""
    if isinstance(d.extent, str):
        if d.extent not in ctx.symbols:
            bound = ", ".join(sorted(ctx.symbols)) or "none"
            raise EvalError(
                f"unbound symbol {d.extent!r} (extent of iterator {d.name!r}); bound symbols: {bound}"
            )
        return int(ctx.symbols[d.extent])
    return int(d.extent)


def _full_ndim(x: Any, ndim: int) -> np.ndarray:
    """``x`` as an array of exactly ``ndim`` dims (0-d values get leading 1s)."""
    a = np.asarray(x)
    return a.reshape((1,) * (ndim - a.ndim) + a.shape) if a.ndim < ndim else a


# --------------------------------------------------------------------------
# Scopes


def _eval_scope(
    scope: Scope, ctx: _Ctx, outer: _Frame, ranges: Sequence[tuple[str, int, int]] | None = None
) -> np.ndarray:
    """Evaluate ``scope`` in the frame ``outer``.

    Returns an array of ndim ``outer.ndim + scope.rank``, broadcastable to
    ``outer``'s axis lengths followed by the traversal extents. ``ranges``
    overrides the ``(name, lo, hi)`` value range of each traversal then
    reduction iterator (used when chunking).
    """
    if ranges is None:
        ranges = [(d.name, d.start, d.start + _extent(d, ctx)) for d in scope.travs + scope.sums]
    nt = len(scope.travs)
    sum_ext = [hi - lo for _, lo, hi in ranges[nt:]]
    if any(e == 0 for e in sum_ext):
        # An empty reduction is the reducer's identity everywhere.
        return np.full((1,) * (outer.ndim + nt), ctx.scalar(_REDUCERS[scope.reduce][1]))
    frame = outer.extend(ranges)
    factors = _product_factors(scope.body) if scope.reduce == "Sum" and sum_ext else None
    terms = factors if factors is not None and len(factors) > 1 else [scope.body]
    split = _choose_split(terms, frame, ranges, nt, ctx.chunk_elements)
    if split is not None:
        return _eval_split(scope, ctx, outer, ranges, split)
    if factors is not None and len(factors) > 1:
        out = _contract(factors, ctx, frame, outer.ndim + nt, sum_ext)
        if out is not None:
            return out
    body = _full_ndim(_eval_value(scope.body, ctx, frame), frame.ndim)
    return _reduce_tail(body, sum_ext, scope.reduce)


def _product_factors(e: Expr) -> list[Expr]:
    """Flatten a ``*`` tree into its factors (a single factor if not a product)."""
    if isinstance(e, BinOp) and e.op == "*":
        return _product_factors(e.lhs) + _product_factors(e.rhs)
    return [e]


def _term_size(e: Expr, frame: _Frame) -> tuple[int, list[str]]:
    """Elements of ``e`` evaluated in ``frame``, and the frame iterators it uses."""
    used = [n for n in free_iters(e) if n in frame.extents]
    return math.prod(frame.extents[n] for n in used), used


def _choose_split(
    terms: Sequence[Expr],
    frame: _Frame,
    ranges: Sequence[tuple[str, int, int]],
    nt: int,
    limit: int,
) -> tuple[int, int] | None:
    """``(range index, pieces)`` to split on when the largest term is too big.

    Prefers the first traversal iterator the largest term uses; falls back to a
    reduction iterator (partial results are combined by the reducer).
    """
    size, used = max((_term_size(t, frame) for t in terms), key=lambda su: su[0])
    if size <= limit:
        return None
    pieces = -(-size // limit)
    order = list(range(nt)) + list(range(nt, len(ranges)))
    for k in order:
        name, lo, hi = ranges[k]
        if name in used and hi - lo > 1:
            return k, min(pieces, hi - lo)
    return None  # nothing left to split: evaluate as is


def _eval_split(
    scope: Scope,
    ctx: _Ctx,
    outer: _Frame,
    ranges: Sequence[tuple[str, int, int]],
    split: tuple[int, int],
) -> np.ndarray:
    """Evaluate ``scope`` piecewise along ``ranges[k]`` and join the pieces."""
    k, pieces = split
    name, lo, hi = ranges[k]
    bounds = np.linspace(lo, hi, pieces + 1).round().astype(int)
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        sub = list(ranges)
        sub[k] = (name, int(a), int(b))
        parts.append(_eval_scope(scope, ctx, outer, sub))
    if k >= len(scope.travs):
        combine = _REDUCERS[scope.reduce][2]
        out = parts[0]
        for p in parts[1:]:
            out = combine(out, p)
        return np.asarray(out)
    axis = outer.ndim + k
    # A piece may not depend on the split iterator (size 1): widen it first.
    widened = []
    for p, a, b in zip(parts, bounds[:-1], bounds[1:]):
        shape = list(p.shape)
        shape[axis] = int(b - a)
        widened.append(np.broadcast_to(p, shape))
    return np.concatenate(widened, axis=axis)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _contract(
    factors: Sequence[Expr], ctx: _Ctx, frame: _Frame, nkeep: int, sum_ext: Sequence[int]
) -> np.ndarray | None:
    """Sum of a product over the trailing reduction axes via ``np.einsum``.

    Each factor is gathered over only the iterators it uses (its size-1 axes
    are squeezed away). The first ``nkeep`` frame axes are kept. Returns None
    when the frame has more axes than einsum has letters.
    """
    if frame.ndim > len(_LETTERS):
        return None
    scale: Any = ctx.scalar(1)
    operands: list[np.ndarray] = []
    subscripts: list[str] = []
    present: set[int] = set()
    for f in factors:
        v = np.asarray(_eval_value(f, ctx, frame))
        if v.ndim == 0:
            scale = scale * v
            continue
        v = _full_ndim(v, frame.ndim)
        axes = [a for a in range(frame.ndim) if v.shape[a] != 1]
        operands.append(v.reshape([v.shape[a] for a in axes]))
        subscripts.append("".join(_LETTERS[a] for a in axes))
        present.update(axes)
    kept = [a for a in range(nkeep) if a in present]
    # Reduction axes no factor depends on repeat the product extent times.
    repeat = math.prod(e for k, e in enumerate(sum_ext) if nkeep + k not in present)
    if operands:
        spec = ",".join(subscripts) + "->" + "".join(_LETTERS[a] for a in kept)
        out = np.asarray(np.einsum(spec, *operands, optimize=True))
    else:
        out = np.asarray(ctx.scalar(1))
    out = out * (scale * ctx.scalar(repeat))
    shape = [1] * nkeep
    for a, n in zip(kept, out.shape):
        shape[a] = n
    return np.asarray(out, dtype=ctx.dtype).reshape(shape)


# --------------------------------------------------------------------------
# Bodies and indices

_VALUE_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "//": np.floor_divide,
    "%": np.mod,  # Python sign convention, like ``%`` in the text format
}
_INDEX_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "//": np.floor_divide,
    "%": np.mod,
}


def _iter_grid(name: str, frame: _Frame) -> np.ndarray:
    try:
        return frame.grids[name]
    except KeyError:
        raise EvalError(f"iterator {name!r} is not bound by any enclosing scope") from None


def _eval_value(e: Expr, ctx: _Ctx, frame: _Frame) -> Any:
    """A body expression as a compute-dtype array (full frame ndim or 0-d)."""
    if isinstance(e, Const):
        return ctx.scalar(e.value)
    if isinstance(e, Iter):
        return _iter_grid(e.name, frame).astype(ctx.dtype)
    if isinstance(e, BinOp):
        lhs, rhs = _eval_value(e.lhs, ctx, frame), _eval_value(e.rhs, ctx, frame)
        return _VALUE_BINOPS[e.op](lhs, rhs)
    if isinstance(e, Call):
        impl = FUNCTION_IMPLS.get(e.fn)
        if impl is None:
            raise EvalError(f"unknown function {e.fn!r}; valid: {', '.join(FUNCTIONS)}")
        if len(e.args) != FUNCTIONS[e.fn]:
            raise EvalError(f"{e.fn} takes {FUNCTIONS[e.fn]} argument(s), got {len(e.args)}")
        return impl(*(_eval_value(a, ctx, frame) for a in e.args))
    if isinstance(e, Access):
        return _eval_access(e, ctx, frame)
    raise EvalError(f"a {type(e).__name__} cannot be used as a value (a nested scope must be read with [...])")


def _eval_index(e: Expr, ctx: _Ctx, frame: _Frame) -> Any:
    """An index expression as an int64 grid (or a Python int)."""
    if isinstance(e, Const):
        if isinstance(e.value, int):
            return e.value
        if float(e.value).is_integer():
            return int(e.value)
        raise EvalError(f"index constant {e.value!r} is not an integer")
    if isinstance(e, Iter):
        return _iter_grid(e.name, frame)
    if isinstance(e, BinOp) and e.op in _INDEX_BINOPS:
        lhs, rhs = _eval_index(e.lhs, ctx, frame), _eval_index(e.rhs, ctx, frame)
        return _INDEX_BINOPS[e.op](lhs, rhs)
    raise EvalError(f"index {e} is not affine in the iterators (allowed: + - * and // % by constants)")


def _source_array(a: Access, ctx: _Ctx, frame: _Frame) -> tuple[np.ndarray, int, str]:
    """The array an access reads, how many leading axes are frame-aligned, its label."""
    src = a.source
    if isinstance(src, str):
        if src not in ctx.tensors:
            have = ", ".join(f"%{k}" for k in sorted(ctx.tensors)) or "none"
            raise EvalError(f"tensor %{src} is not provided (provided: {have})")
        return np.asarray(ctx.tensors[src]), 0, f"%{src}"
    if not free_iters(src):
        cached = ctx.closed.get(src)
        if cached is None:
            shape = tuple(_extent(d, ctx) for d in src.travs)
            cached = np.broadcast_to(_eval_scope(src, ctx, _EMPTY_FRAME), shape)
            ctx.closed[src] = cached
        return cached, 0, "a nested scope"
    # Uses enclosing iterators: evaluate with the frame's axes in front. The
    # result may be size 1 on a traversal axis its body does not use; widen it
    # to the declared extents, or in-bounds reads would look out of bounds.
    out = _eval_scope(src, ctx, frame)
    travs = tuple(_extent(d, ctx) for d in src.travs)
    return np.broadcast_to(out, out.shape[: frame.ndim] + travs), frame.ndim, "a nested scope"


def _eval_access(a: Access, ctx: _Ctx, frame: _Frame) -> Any:
    """Gather ``a`` over the frame; out-of-bounds positions read ``a.pad``."""
    arr, aligned, label = _source_array(a, ctx, frame)
    rank = arr.ndim - aligned
    if len(a.indices) != rank:
        raise EvalError(
            f"access to {label} has {len(a.indices)} indices but {label} has rank {rank} "
            f"(shape {tuple(arr.shape[aligned:])})"
        )
    index: list[Any] = []
    for ax in range(aligned):
        if arr.shape[ax] == 1:
            index.append(0)
        else:
            shape = [1] * frame.ndim
            shape[ax] = arr.shape[ax]
            index.append(np.arange(arr.shape[ax]).reshape(shape))
    mask: Any = True
    for k, ie in enumerate(a.indices):
        ix = _eval_index(ie, ctx, frame)
        dim = arr.shape[aligned + k]
        lo, hi = (int(np.min(ix)), int(np.max(ix))) if np.size(ix) else (0, 0)
        if lo < 0 or hi >= dim:
            mask = mask & (ix >= 0) & (ix < dim)
            ix = np.clip(ix, 0, max(dim - 1, 0))
        index.append(ix)
    pad = ctx.scalar(a.pad)
    if 0 in arr.shape[aligned:]:
        # Nothing to gather from: every read is out of bounds.
        return np.full(np.broadcast_shapes(*(np.shape(i) for i in index)), pad)
    val = arr[tuple(index)].astype(ctx.dtype, copy=False)
    if mask is not True:
        val = np.where(mask, val, pad)
    return val


# --------------------------------------------------------------------------
# Public: expressions


def _as_np_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    return np.dtype(dtype)


def evaluate_expr(
    scope: Scope,
    tensors: Mapping[str, np.ndarray],
    symbols: Mapping[str, int] | None = None,
    dtype: Any = np.float64,
    *,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> np.ndarray:
    """Evaluate ``scope`` reading ``tensors`` by name; symbolic extents from ``symbols``.

    Computes in ``dtype`` (a NumPy dtype or a short name like ``"f32"``): every
    read value, constant and iterator-as-value is cast to it. Returns a fresh,
    writable array of shape = the traversal extents and dtype ``dtype``.
    Raises :class:`EvalError` for a missing tensor, an unbound symbol or
    iterator, or an access whose arity does not match the array's rank.
    """
    if not isinstance(scope, Scope):
        raise EvalError(f"evaluate_expr needs a Scope, got {type(scope).__name__}")
    ctx = _Ctx(tensors, dict(symbols or {}), _as_np_dtype(dtype), chunk_elements)
    shape = tuple(_extent(d, ctx) for d in scope.travs)
    with np.errstate(all="ignore"):  # IEEE results (inf, nan) are the semantics
        out = _eval_scope(scope, ctx, _EMPTY_FRAME)
        return np.array(np.broadcast_to(out, shape), dtype=ctx.dtype)


# --------------------------------------------------------------------------
# Public: graphs


def _default_registry() -> Mapping[str, Any]:
    # Lazy: the ops package builds on ir (and may import this module); importing
    # it registers every op into the registry module's table.
    from . import ops  # noqa: F401
    from .ops.registry import REGISTRY

    return REGISTRY


def _compute_dtype(t: TensorType, f64: bool) -> np.dtype:
    """The dtype an ``expr`` node computes in for an output of type ``t``.

    Floats compute in their own dtype (f16 in f32: NumPy has no f16 math
    worth the name) or f64 in f64 mode; integer and bool outputs compute in
    f64 and are cast (exact for values below 2**53 in magnitude: every
    i8..i32 and u8..u32 value, not every i64/u64 one). Unsigned outputs wrap
    modulo 2**width on that cast (:func:`_to_unsigned`), as NumPy's unsigned
    arithmetic does.
    """
    if f64 or t.dtype not in FLOAT_DTYPES:
        return np.dtype(np.float64)
    return np.dtype(np.float32) if t.dtype == "f16" else t.np_dtype


def _output_dtype(t: TensorType, f64: bool) -> np.dtype:
    return np.dtype(np.float64) if f64 and t.dtype in FLOAT_DTYPES else t.np_dtype


def _to_unsigned(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Whole floats -> the unsigned ``dt``, wrapping modulo 2**width (``-1`` -> the max).

    A plain float -> unsigned cast is undefined out of range (NumPy gives 0 or
    garbage, differently per width). ``fmod`` by the power of two is exact,
    and so are the casts below: a negative remainder goes through int64, whose
    cast to ``dt`` wraps; one below -2**63 (u64 only) is moved up by 2**64
    first (exact: Sterbenz). Non-finite values give 0.
    """
    w = float(2 ** (dt.itemsize * 8))
    r = np.fmod(np.where(np.isfinite(x), x, 0.0), w)
    r = np.where(r < -(2.0 ** 63), r + w, r)
    neg = r < 0
    return np.where(neg, np.where(neg, r, 0.0).astype(np.int64).astype(dt),
                    np.where(neg, 0.0, r).astype(dt))


def _cast_output(o: Any, t: TensorType, f64: bool) -> np.ndarray:
    """An op's output as ``t`` declares it (see :func:`_output_dtype`)."""
    arr = np.asarray(o)
    if t.dtype in UNSIGNED_DTYPES and arr.dtype.kind == "f":
        return _to_unsigned(arr, t.np_dtype)
    return arr.astype(_output_dtype(t, f64), copy=False)


def evaluate_node(
    node: Node,
    xs: Sequence[np.ndarray],
    symbols: Mapping[str, int] | None = None,
    registry: Mapping[str, Any] | None = None,
    *,
    f64: bool = False,
    max_bytes: int | None = None,
) -> list[np.ndarray]:
    """Evaluate one node on its input arrays (in ``node.inputs`` order).

    Outputs are cast to the declared dtypes (floats to float64 when ``f64``).
    Declared outputs over ``max_bytes`` (default :func:`evaluation_budget`)
    raise :class:`BudgetError` before anything is computed (:func:`check_budget`).
    Errors from the op are re-raised with the node's label in front; NumPy
    failures inside a registry op's eval (an empty ``max``, a negative integer
    power, ...) come from the input values, so they become :class:`EvalError`.

    Floating-point arithmetic follows IEEE semantics: overflow gives inf,
    0/0 gives nan, with no warning (``np.errstate(all="ignore")``), exactly as
    in :func:`evaluate_expr`. Ops that have no IEEE answer raise instead
    (integer ``div`` by zero, out-of-range ``gather``/``embedding`` ids).
    """
    if len(xs) != len(node.inputs):
        raise EvalError(f"{node.label}: expects {len(node.inputs)} input(s), got {len(xs)}")
    check_budget(node, symbols, f64=f64, max_bytes=max_bytes)
    with np.errstate(all="ignore"):
        return _evaluate_node(node, xs, symbols, registry, f64)


def _evaluate_node(
    node: Node,
    xs: Sequence[np.ndarray],
    symbols: Mapping[str, int] | None,
    registry: Mapping[str, Any] | None,
    f64: bool,
) -> list[np.ndarray]:
    try:
        if node.op == "expr":
            if node.expr is None:
                raise EvalError("expr node has no scope")
            t = node.outputs[0].type
            tensors = dict(zip(node.inputs, xs))
            outs = [evaluate_expr(node.expr, tensors, symbols, _compute_dtype(t, f64))]
        else:
            reg = _default_registry() if registry is None else registry
            rules = reg.get(node.op)
            if rules is None:
                raise EvalError(f"unknown op {node.op!r}; registered ops: {', '.join(sorted(reg))}")
            a = rules.with_defaults(node.attrs)
            try:
                outs = list(rules.eval(list(xs), a))
            except (ValueError, TypeError, IndexError, FloatingPointError, ZeroDivisionError) as e:
                raise EvalError(f"{node.label}: {e}") from e
    except TensoroptError as e:
        msg = str(e) if str(e).startswith(node.label) else f"{node.label}: {e}"
        raise type(e)(msg) from e
    if len(outs) != len(node.outputs):
        raise EvalError(f"{node.label}: produced {len(outs)} output(s), declared {len(node.outputs)}")
    return [_cast_output(o, v.type, f64) for o, v in zip(outs, node.outputs)]


def _bind_inputs(
    graph: Graph, inputs: Mapping[str, np.ndarray], f64: bool
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    return bind_inputs(graph.inputs, inputs, graph.name, f64=f64)


def bind_inputs(
    declared_inputs: Sequence[Value], inputs: Mapping[str, np.ndarray], graph_name: str, *, f64: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Check ``inputs`` against the declared input values and bind their symbols.

    In f64 mode a floating input may be given in any float dtype (it is cast
    to float64); otherwise dtypes must match exactly. Errors are
    :class:`EvalError` naming the input, what was expected and what came.
    """
    declared = {v.name: v for v in declared_inputs}
    extra = sorted(set(inputs) - set(declared))
    if extra:
        names = ", ".join(f"%{n}" for n in declared) or "none"
        raise EvalError(f"unknown input %{extra[0]}; graph {graph_name} takes {names}")
    symbols: dict[str, int] = {}
    bound_by: dict[str, str] = {}
    values: dict[str, np.ndarray] = {}
    for v in declared_inputs:
        if v.name not in inputs:
            raise EvalError(f"missing input %{v.name} (expected {v.type})")
        x = np.asarray(inputs[v.name])
        t = v.type
        is_float = t.dtype in FLOAT_DTYPES and x.dtype.kind == "f"
        if x.dtype != t.np_dtype and not (f64 and is_float):
            raise EvalError(f"input %{v.name}: expected dtype {t.dtype} ({t}), got {x.dtype}")
        if x.ndim != t.rank:
            raise EvalError(f"input %{v.name}: expected rank {t.rank} ({t}), got shape {x.shape}")
        for axis, (d, n) in enumerate(zip(t.shape, x.shape)):
            if isinstance(d, int) and d != n:
                raise EvalError(f"input %{v.name}: dim {axis} expected {d} ({t}), got {n} (shape {x.shape})")
            if isinstance(d, str):
                if d in symbols and symbols[d] != n:
                    raise EvalError(
                        f"input %{v.name}: symbolic dim {d!r} (dim {axis}) is {n} here "
                        f"but input %{bound_by[d]} bound it to {symbols[d]}"
                    )
                symbols[d], bound_by[d] = n, v.name
        values[v.name] = x.astype(np.float64) if (f64 and is_float) else x
    return values, symbols


def _bind_weights(graph: Graph, f64: bool) -> dict[str, np.ndarray]:
    """Constants from ``graph.weights``, checked against their declared types."""
    out: dict[str, np.ndarray] = {}
    for c in graph.constants:
        if c.name not in graph.weights:
            raise EvalError(f"constant %{c.name} has no data in the graph's weights")
        w = graph.weights[c.name]
        problem = weight_mismatch(c, w)
        if problem:
            raise EvalError(problem)
        out[c.name] = w.astype(np.float64) if (f64 and c.type.dtype in FLOAT_DTYPES) else w
    return out


def _last_uses(graph: Graph) -> dict[int, list[str]]:
    """Node index -> tensors no later node (nor the outputs) reads."""
    last: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for name in n.inputs:
            last[name] = i
    keep = set(graph.outputs)
    out: dict[int, list[str]] = {}
    for name, i in last.items():
        if name not in keep:
            out.setdefault(i, []).append(name)
    return out


def run_graph(
    graph: Graph,
    inputs: Mapping[str, np.ndarray],
    *,
    dtype: str | None = None,
    registry: Mapping[str, Any] | None = None,
    max_bytes: int | None = None,
) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs`` (by name); return its outputs by name.

    - Symbolic dims are bound from the input shapes; a mismatch (missing or
      unknown input, wrong rank, static dim, dtype, conflicting symbol) raises
      :class:`EvalError` naming the input, expected and got.
    - ``dtype=None`` computes every tensor in its declared dtype (float32
      models in float32). ``dtype="f64"`` computes floating tensors in
      float64: float inputs and weights are cast up, and floating outputs are
      *returned in float64* (the point of the mode is a high-precision
      reference). Integer tensors keep their dtypes in both modes.
    - Registry ops run ``registry[op].eval``; ``expr`` nodes run
      :func:`evaluate_expr`. Each intermediate is freed once its last user
      has run.
    - Floating-point results follow IEEE semantics (inf, nan; no warnings);
      see :func:`evaluate_node` for the errors raised instead.
    - Before any node runs (and before weights are cast in f64 mode), every
      node's declared outputs, with the symbols bound, are checked against
      ``max_bytes`` (default :func:`evaluation_budget`): :class:`BudgetError`
      names the first node over it.
    """
    if dtype not in (None, "f64"):
        raise EvalError(f"unknown run_graph dtype mode {dtype!r}; valid: None, 'f64'")
    f64 = dtype == "f64"
    env, symbols = _bind_inputs(graph, inputs, f64)
    for node in graph.nodes:  # all of them first: fail before computing anything
        check_budget(node, symbols, f64=f64, max_bytes=max_bytes)
    env.update(_bind_weights(graph, f64))
    frees = _last_uses(graph)
    for i, node in enumerate(graph.nodes):
        missing = [n for n in node.inputs if n not in env]
        if missing:
            raise EvalError(f"{node.label}: input %{missing[0]} is not defined before it")
        outs = evaluate_node(node, [env[n] for n in node.inputs], symbols, registry, f64=f64, max_bytes=max_bytes)
        for v, o in zip(node.outputs, outs):
            _check_shape(node, v.name, v.type, o, symbols)
            env[v.name] = o
        for name in frees.get(i, ()):
            env.pop(name, None)
    missing = [o for o in graph.outputs if o not in env]
    if missing:
        raise EvalError(f"graph output %{missing[0]} is never defined")
    return {o: env[o] for o in graph.outputs}


def _check_shape(node: Node, name: str, t: TensorType, x: np.ndarray, symbols: Mapping[str, int]) -> None:
    """A node's result must have its declared shape (an op or pass bug otherwise)."""
    try:
        want = t.concrete(dict(symbols))
    except KeyError as e:
        raise EvalError(f"{node.label}: output %{name}: {e.args[0]}") from None
    if x.shape != want:
        raise EvalError(f"{node.label}: output %{name} has shape {x.shape}, declared {t} = {want}")
