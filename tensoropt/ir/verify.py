"""The IR verifier: checks the invariants documented in ``graph.py`` and ``expr.py``.

``verify(graph, registry)`` raises the first problem as a :class:`VerifyError`
(or its subclasses :class:`UnknownOpError` / :class:`ShapeError`);
``verify_all`` returns every message. Each message names where the problem is,
using :attr:`Node.label`::

    expr node %y: in L[i:4, j:5]: iterator 'q' is not bound
    matmul node %h: output 0 %h is declared f32[3, 5] but matmul infers f32[3, 4]

Layering: this module lives in ``tensoropt.ir`` and must not import
``tensoropt.ops``. The op registry is passed in by the caller; with
``registry=None`` the op-rule checks (unknown op, attributes, arity, inferred
output types) are skipped and only structural checks run.

Weights: when ``graph.weights`` is empty (a graph parsed from text without its
``.npz``) constants are not checked against arrays; as soon as any weight is
present, every constant must have an array of the declared shape and dtype.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Protocol, Sequence

from ..errors import ShapeError, TensoroptError, UnknownOpError, VerifyError
from .expr import (
    FUNCTIONS,
    Access,
    BinOp,
    Call,
    Const,
    Expr,
    IterDef,
    Iter,
    Scope,
    tensor_names,
)
from .graph import Attrs, AttrValue, Graph, Node, weight_mismatch
from .printer import print_expr
from .types import TensorType, format_shape



class OpRulesLike(Protocol):
    """What the verifier needs of ``tensoropt.ops.registry.OpRules``.

    A protocol rather than an import so that ``ir`` stays below ``ops`` in the
    layering (the registry is passed in from above).
    """

    @property
    def inputs(self) -> tuple[int, int | None]: ...
    @property
    def num_outputs(self) -> int | None: ...
    def with_defaults(self, attrs: Mapping[str, AttrValue]) -> Attrs: ...
    @property
    def infer(self) -> Callable[[Sequence[TensorType], Attrs], list[TensorType]]: ...

#: The op name of the generic Expr node.
EXPR_OP = "expr"

# A problem found: the error class to raise and its message.
_Problem = tuple[type[VerifyError], str]


def verify(graph: Graph, registry: Mapping[str, OpRulesLike] | None = None) -> None:
    """Raise the first invariant violation of ``graph`` (see the module doc)."""
    for cls, msg in _graph_problems(graph, registry):
        raise cls(msg)


def verify_all(graph: Graph, registry: Mapping[str, OpRulesLike] | None = None) -> list[str]:
    """Every invariant violation of ``graph`` as a message, in graph order."""
    return [msg for _, msg in _graph_problems(graph, registry)]


def verify_expr(scope: Expr, tensor_types: Mapping[str, TensorType], where: str) -> None:
    """Raise :class:`VerifyError` if ``scope`` is not a well-formed top-level Expr.

    ``tensor_types`` gives the types of the tensors the expression may read;
    ``where`` prefixes every message (normally a node label).
    """
    for msg in expr_problems(scope, tensor_types, where):
        raise VerifyError(msg)


def expr_problems(scope: Expr, tensor_types: Mapping[str, TensorType], where: str) -> list[str]:
    """All well-formedness problems of a top-level Expr (see :func:`verify_expr`)."""
    if not isinstance(scope, Scope):
        return [f"{where}: the top level of an expr must be a scope L[...] {{...}}, got {_show(scope)}"]
    checker = _ExprChecker(tensor_types, where)
    checker.scope(scope, {})
    return checker.problems


# --------------------------------------------------------------------------
# Graph level


def _graph_problems(graph: Graph, registry: Mapping[str, OpRulesLike] | None) -> Iterator[_Problem]:
    defined: dict[str, str] = {}  # name -> how it was defined, for messages
    types: dict[str, TensorType] = {}
    # Every name defined anywhere, so that "used before defined" can be told
    # apart from "not defined at all".
    all_defs = set(graph.values())

    def define(name: str, what: str, t: TensorType) -> Iterator[_Problem]:
        if name in defined:
            yield VerifyError, f"%{name} is defined twice: as {defined[name]} and as {what}"
            return
        defined[name] = what
        types[name] = t

    for v in graph.inputs:
        yield from define(v.name, "a graph input", v.type)
    for v in graph.constants:
        yield from define(v.name, "a constant", v.type)
    yield from _weight_problems(graph)

    for node in graph.nodes:
        where = graph.where(node)
        ok_inputs = True
        for k, name in enumerate(node.inputs):
            if name not in defined:
                ok_inputs = False
                why = "is used before it is defined" if name in all_defs else "is not defined"
                yield VerifyError, f"{where}: input {k} %{name} {why}"
        if not node.outputs:
            yield VerifyError, f"{where}: defines no outputs"
        if node.op == EXPR_OP:
            yield from _expr_node_problems(node, types, ok_inputs, where)
        else:
            if node.expr is not None:
                yield VerifyError, f"{where}: only expr nodes carry a scope, but this {node.op} node has one"
            if registry is not None:
                yield from _op_problems(node, registry, types, ok_inputs, where)
        for v in node.outputs:
            yield from define(v.name, f"an output of {where}", v.type)

    for k, name in enumerate(graph.outputs):
        if name not in defined:
            yield VerifyError, f"graph output {k} %{name} is not defined"


def _weight_problems(graph: Graph) -> Iterator[_Problem]:
    if len(graph.weights) == 0:
        return  # parsed from text without weights: allowed
    declared = {v.name for v in graph.constants}
    for v in graph.constants:
        if v.name not in graph.weights:
            yield VerifyError, f"constant %{v.name} has no weight array"
            continue
        problem = weight_mismatch(v, graph.weights[v.name])
        if problem:
            yield VerifyError, problem
    for name in graph.weights:
        if name not in declared:
            yield VerifyError, f"weight %{name} has an array but no const declaration"


def _op_problems(
    node: Node,
    registry: Mapping[str, OpRulesLike],
    types: Mapping[str, TensorType],
    ok_inputs: bool,
    where: str,
) -> Iterator[_Problem]:
    rules = registry.get(node.op)
    if rules is None:
        valid = ", ".join(sorted(set(registry) | {EXPR_OP}))
        yield UnknownOpError, f"{where}: unknown op {node.op!r}; registered ops: {valid}"
        return
    try:
        attrs = rules.with_defaults(node.attrs)
    except TensoroptError as e:
        yield ShapeError, f"{where}: {e}"
        return
    lo, hi = rules.inputs
    n = len(node.inputs)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
        yield ShapeError, f"{where}: {node.op} takes {want} inputs, got {n}"
        return
    if rules.num_outputs is not None and len(node.outputs) != rules.num_outputs:
        yield ShapeError, (
            f"{where}: {node.op} defines {rules.num_outputs} outputs, node declares {len(node.outputs)}"
        )
        return
    if not ok_inputs:
        return  # types of undefined inputs are unknown; already reported
    in_types = [types[i] for i in node.inputs]
    try:
        inferred = list(rules.infer(in_types, attrs))
    except (TensoroptError, ValueError) as e:  # ValueError: e.g. a negative inferred dim
        yield ShapeError, f"{where}: {e}"
        return
    if len(inferred) != len(node.outputs):
        yield ShapeError, f"{where}: {node.op} defines {len(inferred)} outputs, node declares {len(node.outputs)}"
        return
    for k, (v, t) in enumerate(zip(node.outputs, inferred)):
        # TensorType equality compares dtypes and dims; symbolic dims by name.
        if v.type != t:
            yield ShapeError, f"{where}: output {k} %{v.name} is declared {v.type} but {node.op} infers {t}"


def _expr_node_problems(
    node: Node, types: Mapping[str, TensorType], ok_inputs: bool, where: str
) -> Iterator[_Problem]:
    if node.expr is None:
        yield VerifyError, f"{where}: an expr node needs a scope"
        return
    if len(node.outputs) != 1:
        yield VerifyError, f"{where}: an expr node defines exactly 1 output, got {len(node.outputs)}"
    reads = tensor_names(node.expr)
    if tuple(node.inputs) != reads:
        yield VerifyError, (
            f"{where}: inputs ({', '.join('%' + i for i in node.inputs)}) must be the tensors the "
            f"scope reads in order of first appearance ({', '.join('%' + r for r in reads)})"
        )
    # Check the scope against whatever inputs have types; unknown tensors are
    # reported by the expr checker itself.
    avail = {i: types[i] for i in node.inputs if i in types}
    problems = expr_problems(node.expr, avail, where)
    for msg in problems:
        yield VerifyError, msg
    if node.outputs and isinstance(node.expr, Scope):
        out = node.outputs[0]
        if tuple(node.expr.shape) != tuple(out.type.shape):
            yield ShapeError, (
                f"{where}: the scope has shape {format_shape(node.expr.shape)} but output %{out.name} "
                f"is declared {out.type}"
            )


# --------------------------------------------------------------------------
# Expr level


def _show(e: Expr) -> str:
    """Text form of an expression for messages."""
    return print_expr(e)


def _iterdef_str(d: IterDef) -> str:
    if isinstance(d.extent, int) and d.start != 0:
        return f"{d.name}:{d.start}..{d.start + d.extent}"
    return f"{d.name}:{d.extent}"


def scope_header(s: Scope) -> str:
    """``L[i:4, j:5] Sum[k:3]``: how messages say which scope they are in."""
    head = "L[" + ", ".join(_iterdef_str(d) for d in s.travs) + "]"
    if s.sums:
        head += f" {s.reduce}[" + ", ".join(_iterdef_str(d) for d in s.sums) + "]"
    return head


class _ExprChecker:
    """Collects well-formedness problems of one top-level scope.

    ``env`` maps every bound iterator name to its IterDef; nested scopes see
    the iterators of enclosing scopes (free uses refer to them) and may not
    rebind them (no shadowing: passes rely on names being unique).
    """

    def __init__(self, tensor_types: Mapping[str, TensorType], where: str) -> None:
        self.types = tensor_types
        self.where = where
        self.problems: list[str] = []
        self.ctx = ""  # "in L[...]" of the innermost scope

    def add(self, msg: str) -> None:
        self.problems.append(f"{self.where}: {self.ctx}{msg}")

    def scope(self, s: Scope, env: Mapping[str, IterDef]) -> None:
        saved = self.ctx
        self.ctx = f"in {scope_header(s)}: "
        inner = dict(env)
        seen: set[str] = set()
        for d in s.travs + s.sums:
            if d.name in seen:
                self.add(f"iterator {d.name!r} is bound twice")
            elif d.name in env:
                self.add(f"iterator {d.name!r} shadows an enclosing iterator")
            seen.add(d.name)
            self.iterdef(d)
            inner[d.name] = d
        self.body(s.body, inner)
        self.ctx = saved

    def iterdef(self, d: IterDef) -> None:
        if isinstance(d.extent, str):
            if d.start != 0:
                self.add(f"iterator {d.name!r} has symbolic extent {d.extent!r} but starts at {d.start}, not 0")
        elif isinstance(d.extent, bool) or not isinstance(d.extent, int):
            self.add(f"iterator {d.name!r} has extent {d.extent!r}; want an int or a symbol")
        elif d.extent <= 0:
            self.add(f"iterator {d.name!r} has an empty range (extent {d.extent})")

    def body(self, e: Expr, env: Mapping[str, IterDef]) -> None:
        if isinstance(e, Iter):
            if e.name not in env:
                self.add(f"iterator {e.name!r} is not bound")
        elif isinstance(e, Const):
            pass
        elif isinstance(e, BinOp):
            self.body(e.lhs, env)
            self.body(e.rhs, env)
        elif isinstance(e, Call):
            arity = FUNCTIONS.get(e.fn)
            if arity is None:
                self.add(f"unknown function {e.fn!r}; valid: {', '.join(sorted(FUNCTIONS))}")
            elif arity != len(e.args):
                self.add(f"{e.fn} takes {arity} argument(s), got {len(e.args)}")
            for a in e.args:
                self.body(a, env)
        elif isinstance(e, Access):
            self.access(e, env)
        elif isinstance(e, Scope):
            self.add(f"a scope may only be the top level or the source of an access: {_show(e)}")
        else:
            self.add(f"unknown expression node {type(e).__name__}")

    def access(self, a: Access, env: Mapping[str, IterDef]) -> None:
        if isinstance(a.source, Scope):
            self.scope(a.source, env)
            rank, what = a.source.rank, "the nested scope"
        elif a.source not in self.types:
            known = ", ".join("%" + t for t in self.types) or "none"
            self.add(f"unknown tensor %{a.source} (readable: {known})")
            rank, what = -1, ""
        else:
            rank, what = self.types[a.source].rank, f"%{a.source}"
        if rank >= 0 and rank != len(a.indices):
            self.add(f"rank mismatch: {what} has rank {rank} but is read with {len(a.indices)} indices")
        for idx in a.indices:
            self.index(idx, env, idx)

    def index(self, e: Expr, env: Mapping[str, IterDef], whole: Expr) -> None:
        """Check that ``e`` (part of index ``whole``) is affine in the iterators."""
        if isinstance(e, Iter):
            if e.name not in env:
                self.add(f"iterator {e.name!r} is not bound")
        elif isinstance(e, Const):
            if not isinstance(e.value, int):
                self.add(f"non-integer constant {e.value!r} in index {_show(whole)}")
        elif isinstance(e, BinOp):
            self.index(e.lhs, env, whole)
            self.index(e.rhs, env, whole)
            if e.op == "*" and _iter_dependent(e.lhs) and _iter_dependent(e.rhs):
                self.add(f"non-affine index {_show(whole)}: product of two iterator-dependent terms")
            elif e.op in ("//", "%"):
                c = const_int(e.rhs)
                if c is None:
                    self.add(f"non-affine index {_show(whole)}: {e.op} by a non-constant")
                elif c <= 0:
                    self.add(f"non-affine index {_show(whole)}: {e.op} by non-positive constant {c}")
            elif e.op == "/":
                self.add(f"non-affine index {_show(whole)}: true division '/' (use '//')")
        elif isinstance(e, Call):
            self.add(f"non-affine index {_show(whole)}: function call {e.fn}(...) in an index")
        elif isinstance(e, Access):
            self.add(f"non-affine index {_show(whole)}: tensor read inside an index")
        elif isinstance(e, Scope):
            self.add(f"a scope may only be the top level or the source of an access: {_show(e)}")
        else:
            self.add(f"unknown expression node {type(e).__name__} in an index")


def _iter_dependent(e: Expr) -> bool:
    if isinstance(e, Iter):
        return True
    if isinstance(e, BinOp):
        return _iter_dependent(e.lhs) or _iter_dependent(e.rhs)
    if isinstance(e, Call):
        return any(_iter_dependent(a) for a in e.args)
    if isinstance(e, Access):
        return any(_iter_dependent(i) for i in e.indices)
    return False


def const_int(e: Expr) -> int | None:
    """The value of an iterator-free integer index expression, else None."""
    if isinstance(e, Const):
        return e.value if isinstance(e.value, int) else None
    if isinstance(e, BinOp):
        a, b = const_int(e.lhs), const_int(e.rhs)
        if a is None or b is None:
            return None
        if e.op == "+":
            return a + b
        if e.op == "-":
            return a - b
        if e.op == "*":
            return a * b
        if e.op == "//" and b != 0:
            return a // b
        if e.op == "%" and b != 0:
            return a % b
    return None


__all__ = ["verify", "verify_all", "verify_expr", "expr_problems", "scope_header", "const_int", "OpRulesLike"]
