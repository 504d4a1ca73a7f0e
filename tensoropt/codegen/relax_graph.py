"""A tensoropt Graph as a Relax IRModule: one ``call_tir`` per node.

Invariants of the module built here:

- ``main`` takes the graph inputs, then the constants (weights), in graph
  order, and returns the outputs (a tuple when there are several, a single
  tensor otherwise). Weights stay parameters, not embedded constants: the
  library stays small and the artifact keeps them in ``weights.npz``.
- every symbolic dim is one int64 ``tirx.Var`` shared by every tensor that
  uses it, so a dynamic dim compiles once;
- a node lowers through its op's TE lowering in ``te_ops.LOWERINGS`` when it
  has one (ops without an Expr, multi-output ops), through ``te_fast.FAST``
  where a specialised form pays (conv2d, batch-1 gemm, integer bit ops), else through the generic
  :class:`ExprLowerer` on its Expr (``expr`` nodes on ``node.expr``), and for
  attribute cases an Expr cannot state, through ``te_tables``. The
  PrimFunc is named after the op, so profiles and progress read naturally.

A ``te_fast`` entry that returns None for a node it is meant for (see
:func:`fast_declined`) is a fallback: the node gets its generic Expr
lowering, and a ``schedule.Fallback`` with stage ``lower`` is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from tvm import relax, te, tirx

from ..errors import TensoroptError, UnsupportedError
from ..ir.graph import Attrs, Graph, Node
from ..ir.types import DTYPES, FLOAT_DTYPES, TensorType
from .lower_expr import ExprLowerer, cast_to, i64
from .schedule import Fallback
from .te_fast import FAST

#: IR dtype -> TVM dtype string (NumPy's names, which TVM shares).
TVM_DTYPES: dict[str, str] = {k: str(v) for k, v in DTYPES.items()}


def compute_dtype(t: TensorType) -> str:
    """The dtype a node's Expr computes in (the interpreter's rule: f16 in f32, ints in f64)."""
    if t.dtype in FLOAT_DTYPES:
        return "float32" if t.dtype == "f16" else TVM_DTYPES[t.dtype]
    return "float64"


@dataclass(frozen=True)
class Signature:
    """The calling convention of ``main``: graph inputs, then ``weights``, in this order."""

    inputs: tuple[str, ...]
    weights: tuple[str, ...]
    outputs: tuple[str, ...]


def graph_symbols(graph: Graph) -> dict[str, tirx.Var]:
    """One int64 ``tirx.Var`` per symbolic dim of the graph's inputs."""
    names: dict[str, None] = {}
    for v in graph.inputs:
        for d in v.type.shape:
            if isinstance(d, str):
                names.setdefault(d, None)
    return {n: tirx.Var(n, "int64") for n in names}


def tvm_shape(t: TensorType, symbols: dict[str, tirx.Var]) -> list[tirx.PrimExpr]:
    out = []
    for d in t.shape:
        if isinstance(d, str):
            if d not in symbols:
                raise UnsupportedError(f"dim {d!r} is not a dim of any graph input")
            out.append(symbols[d])
        else:
            out.append(i64(d))
    return out


def _struct(t: TensorType, symbols: dict[str, tirx.Var]) -> relax.TensorType:
    return relax.TensorType(tvm_shape(t, symbols), TVM_DTYPES[t.dtype])


def local_symbols(in_types: list[TensorType], xs: tuple[te.Tensor, ...],
                  symbols: dict[str, tirx.Var]) -> dict[str, tirx.PrimExpr]:
    """Symbol name -> the variable the kernel's own inputs carry for it.

    ``emit_te`` gives each kernel fresh shape variables (a PrimFunc must not
    share variables with its caller). Expressing output extents with those
    same variables keeps ``i < batch`` provable, so reads need no bounds
    tests and TVM can classify (and fuse) the kernel as elementwise.
    Symbols no input carries keep the graph-level variable.
    """
    local: dict[str, tirx.PrimExpr] = dict(symbols)
    for t, x in zip(in_types, xs):
        for d, e in zip(t.shape, x.shape):
            if isinstance(d, str):
                local[d] = e
    return local


#: The nodes a ``te_fast`` entry is meant for, where that is not every node of
#: the op: the native integer forms are for integer operands. Ops not listed:
#: every node of the op.
_INTEGER_FAST = frozenset({"shift_left", "shift_right", "bitwise_and", "bitwise_or", "bitwise_xor"})
_FAST_DOMAIN: dict[str, Callable[[Sequence[TensorType], Sequence[TensorType], Attrs], bool]] = {
    **{op: (lambda ins, outs, a: all(t.dtype[0] in "iu" for t in (*ins, *outs))) for op in _INTEGER_FAST},
}


def fast_declined(op: str, in_types: Sequence[TensorType], out_types: Sequence[TensorType],
                  attrs: Attrs) -> str | None:
    """Why ``FAST[op]``, having returned None, declined this node; None when the
    node is not one the entry is meant for (then it is no fallback).

    ``te_fast`` entries say None without a reason, so the reason is read off
    the node's types: the first dtype the specialised forms do not take
    (they are f32 or signed-integer forms), else the input types.
    """
    domain = _FAST_DOMAIN.get(op)
    if domain is not None and not domain(in_types, out_types, attrs):
        return None
    dtypes = sorted({t.dtype for t in in_types})
    odd = [d for d in dtypes if (d.startswith("u") if op in _INTEGER_FAST else d != "f32")]
    if odd:
        return f"{', '.join(odd)} dtype"
    return "inputs " + ", ".join(str(t) for t in in_types)


def node_lowering(graph: Graph, node: Node, symbols: dict[str, tirx.Var],
                  registry: dict, gpu: bool = False,
                  fallbacks: list[Fallback] | None = None) -> Callable[..., list[te.Tensor]]:
    """A TE function of the node's input tensors returning one tensor per output.

    Raises :class:`UnsupportedError` naming the node when no lowering applies.
    A returned function may carry ``tables``: NumPy constants to pass after
    the node's inputs. A specialised lowering that declines the node is
    appended to ``fallbacks`` (stage ``lower``, named by the node's label).
    """
    from .te_ops import LOWERINGS

    out_types = [v.type for v in node.outputs]
    out_dtypes = [TVM_DTYPES[t.dtype] for t in out_types]
    in_types = [graph.type_of(i) for i in node.inputs]
    name = node.op

    def shapes(xs: tuple[te.Tensor, ...]) -> list[tuple]:
        local = local_symbols(in_types, xs, symbols)
        return [tuple(tvm_shape(t, local)) for t in out_types]  # type: ignore[arg-type]

    if out_types and all(0 in t.shape for t in out_types):
        return _fallback(node, in_types, out_types, out_dtypes, symbols, registry, shapes)  # nothing to compute
    if node.op in LOWERINGS:
        attrs = registry[node.op].with_defaults(node.attrs)
        fn = LOWERINGS[node.op]
        return lambda *xs: list(fn(list(xs), shapes(xs), out_dtypes, attrs))
    if node.op in FAST:
        attrs = registry[node.op].with_defaults(node.attrs)
        fast = FAST[node.op](in_types, out_types, attrs)
        if fast is not None:
            return fast
        why = fast_declined(node.op, in_types, out_types, attrs)
        if why is not None and fallbacks is not None:
            fallbacks.append(Fallback(node.label, "lower", f"fast lowering declined ({why}); generic Expr lowering"))
    if node.op == "expr":
        scope = node.expr
    else:
        rules = registry[node.op]
        scope = (rules.expr(list(node.inputs), in_types, rules.with_defaults(node.attrs))
                 if rules.expr is not None else None)
    if scope is None:
        return _fallback(node, in_types, out_types, out_dtypes, symbols, registry, shapes)
    if len(node.outputs) != 1:
        raise UnsupportedError(f"{node.label}: op {node.op} has no TVM lowering for several outputs")
    inputs = list(node.inputs)
    cdt = compute_dtype(out_types[0])

    def lower(*xs: te.Tensor) -> list[te.Tensor]:
        lowerer = ExprLowerer(dict(zip(inputs, xs)), local_symbols(in_types, xs, symbols), cdt, name,
                              standard_reducers=gpu)
        value = lowerer.lower(scope, name=f"{name}_value" if cdt != out_dtypes[0] else name)
        return [cast_to(value, out_dtypes[0], name)]

    return lower


def _fallback(node: Node, in_types: list[TensorType], out_types: list[TensorType], out_dtypes: list[str],
              symbols: dict[str, tirx.Var], registry: dict,
              shapes: Callable[[tuple[te.Tensor, ...]], list[tuple]]) -> Callable[..., list[te.Tensor]]:
    """The ``te_tables`` lowering for attribute cases the op's Expr cannot state."""
    from .te_tables import FALLBACKS, GENERIC_FALLBACKS

    attrs = registry[node.op].with_defaults(node.attrs)
    graph_shapes = [tuple(tvm_shape(t, symbols)) for t in out_types]
    tried = ([FALLBACKS[node.op]] if node.op in FALLBACKS else []) + list(GENERIC_FALLBACKS)
    for fb in tried:
        got = fb(in_types, out_types, out_dtypes, graph_shapes, attrs)
        if got is None:
            continue
        tables = got[0]

        def lower(*args: te.Tensor, fb=fb) -> list[te.Tensor]:  # noqa: B023 - fb is bound per loop
            xs = args[: len(in_types)]
            local = fb(in_types, out_types, out_dtypes, shapes(xs), attrs)
            assert local is not None
            return local[1](*args)

        lower.tables = tables  # type: ignore[attr-defined]  # passed as constants by to_relax
        return lower
    raise UnsupportedError(f"{node.label}: op {node.op} has no TVM lowering for these attributes")


def to_relax(graph: Graph, registry: dict | None = None,
             on_node: Callable[[Node], None] | None = None, gpu: bool = False,
             fallbacks: list[Fallback] | None = None) -> tuple[object, Signature]:
    """The Relax IRModule computing ``graph`` and its :class:`Signature`.

    Raises :class:`UnsupportedError` naming the node when an op cannot be
    lowered. ``on_node`` is called before each node (progress). ``gpu``:
    TVM's standard max/min reducers, which its GPU reduction rules need.
    ``fallbacks`` receives one record per node whose specialised lowering
    declined it (see :func:`fast_declined`).
    """
    if registry is None:
        from .. import ops  # noqa: F401  (registers every op)
        from ..ops.registry import REGISTRY as registry  # noqa: N811
    symbols = graph_symbols(graph)
    values = graph.inputs + graph.constants
    params = [relax.Var(v.name, _struct(v.type, symbols)) for v in values]
    env: dict[str, relax.Expr] = {v.name: p for v, p in zip(values, params)}
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            for node in graph.nodes:
                if on_node is not None:
                    on_node(node)
                fn = node_lowering(graph, node, symbols, registry, gpu, fallbacks)
                args = [env[i] for i in node.inputs]
                args += [relax.const(t) for t in getattr(fn, "tables", ())]
                try:
                    call = bb.emit_te(fn, *args, primfunc_name_hint=node.op)
                except TensoroptError as e:
                    raise type(e)(f"{node.label}: {e}") from None
                except Exception as e:  # TVM's own errors: name the node, keep one line
                    first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                    raise UnsupportedError(f"{node.label}: cannot lower {node.op} to TVM: {first}") from None
                if len(node.outputs) == 1:
                    env[node.outputs[0].name] = call
                else:
                    for k, v in enumerate(node.outputs):
                        env[v.name] = bb.emit(relax.TupleGetItem(call, k))
            outs = [env[o] for o in graph.outputs]
            result = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(result)
    sig = Signature(tuple(v.name for v in graph.inputs), tuple(v.name for v in graph.constants),
                    tuple(graph.outputs))
    return bb.get(), sig

