"""Elementwise fusion: inline a producer's scope into its only consumer's Expr."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from tensoropt.errors import TensoroptError
from tensoropt.ir.expr import (
    Access,
    BinOp,
    Call,
    Const,
    Expr,
    Iter,
    IterDef,
    Scope,
    rename_tensors,
    substitute_iters,
    tensor_names,
    transform,
    walk,
)
from tensoropt.ir.graph import Attrs, Graph, Node
from tensoropt.ir.types import FLOAT_DTYPES, TensorType
from tensoropt.ir.verify import expr_problems
from tensoropt.ops.common import lin

from .pipeline import Pass, register_pass

EXPR_OP = "expr"
Interval = tuple[int, int]


# --------------------------------------------------------------------------
# Scopes of nodes


def node_scope(node: Node, types: Mapping[str, TensorType], registry: Mapping[str, Any]) -> Scope | None:
    """The Expr defining ``node``'s single output, or None when it has none."""
    if len(node.outputs) != 1:
        return None
    if node.op == EXPR_OP:
        return node.expr
    rules = registry.get(node.op)
    if rules is None or rules.expr is None:
        return None
    try:
        s = rules.expr(node.inputs, [types[i] for i in node.inputs], rules.with_defaults(node.attrs))
    except (TensoroptError, TypeError, ValueError):
        # TensoroptError: a node the verifier would reject. TypeError and
        # ValueError: an Expr rule that cannot describe this instance (say
        # integer arithmetic on a symbolic dim) and fails instead of raising
        # ShapeError. Either way the node simply has no scope: leaving it
        # unfused is always sound, and a rule bug must not fail the pass.
        return None
    return s if isinstance(s, Scope) else None


def _all_float(node: Node, types: Mapping[str, TensorType]) -> bool:
    # Fused bodies are evaluated in one floating-point type; integer or bool
    # intermediates would lose their rounding/truncation, so leave them alone.
    return all(types[n].dtype in FLOAT_DTYPES for n in node.inputs + node.output_names)


def _is_producer(node: Node, registry: Mapping[str, Any]) -> bool:
    if node.op == EXPR_OP:
        return True
    rules = registry.get(node.op)
    return rules is not None and rules.category == "elementwise" and rules.expr is not None


# --------------------------------------------------------------------------
# Iterator renaming


def binders(e: Expr) -> set[str]:
    """Every iterator name bound by a scope anywhere in ``e``."""
    return {d.name for n in walk(e) if isinstance(n, Scope) for d in n.travs + n.sums}


def freshen(s: Scope, taken: set[str]) -> Scope:
    """``s`` with every bound iterator renamed to a name not in ``taken`` (updated).

    Inlining puts the producer's scope inside the consumer's; unique names
    keep the verifier's no-shadowing rule and make later substitution
    capture-free.
    """

    def fresh(base: str) -> str:
        k = 1
        while f"{base}{k}" in taken:
            k += 1
        taken.add(f"{base}{k}")
        return f"{base}{k}"

    def fn(e: Expr) -> Expr | None:
        if not isinstance(e, Scope):
            return None
        ren = {d.name: fresh(d.name) for d in e.travs + e.sums}
        travs = tuple(IterDef(ren[d.name], d.extent, d.start) for d in e.travs)
        sums = tuple(IterDef(ren[d.name], d.extent, d.start) for d in e.sums)
        body = substitute_iters(e.body, {k: Iter(v) for k, v in ren.items()})
        return Scope(travs, sums, body, e.reduce)

    out = transform(s, fn)
    assert isinstance(out, Scope)
    return out


def depth(e: Expr) -> int:
    """Scope nesting depth: 1 for a flat scope."""
    if isinstance(e, Scope):
        return 1 + depth(e.body)
    if isinstance(e, Access) and isinstance(e.source, Scope):
        return max([depth(e.source)] + [depth(i) for i in e.indices])
    if isinstance(e, (BinOp, Call, Access)):
        kids = (e.lhs, e.rhs) if isinstance(e, BinOp) else (e.args if isinstance(e, Call) else e.indices)
        return max((depth(k) for k in kids), default=0)
    return 0


# --------------------------------------------------------------------------
# Flattening nested accesses


def interval(e: Expr, env: Mapping[str, IterDef]) -> Interval | None:
    """Inclusive integer bounds of index ``e`` over the iterator ranges, or None."""
    if isinstance(e, Iter):
        d = env.get(e.name)
        if d is None or not isinstance(d.extent, int):
            return None
        return (d.start, d.start + d.extent - 1)
    if isinstance(e, Const):
        return (e.value, e.value) if isinstance(e.value, int) else None
    if not isinstance(e, BinOp):
        return None
    a, b = interval(e.lhs, env), interval(e.rhs, env)
    if a is None or b is None:
        return None
    if e.op == "+":
        return (a[0] + b[0], a[1] + b[1])
    if e.op == "-":
        return (a[0] - b[1], a[1] - b[0])
    if e.op == "*":
        ps = [x * y for x in a for y in b]
        return (min(ps), max(ps))
    if e.op in ("//", "%") and b[0] == b[1] and b[0] > 0:
        c = b[0]
        if e.op == "//":
            return (a[0] // c, a[1] // c)
        return a if 0 <= a[0] and a[1] < c else (0, c - 1)
    return None


def _in_bounds(idx: Expr, d: IterDef, env: Mapping[str, IterDef]) -> bool:
    """True when ``idx`` provably lies in ``[0, d.extent)`` (an output position)."""
    if isinstance(d.extent, str):
        # Symbolic: only the identity access by an iterator over the same symbol.
        if not isinstance(idx, Iter):
            return False
        src = env.get(idx.name)
        return src is not None and src.extent == d.extent and src.start == 0
    r = interval(idx, env)
    return r is not None and 0 <= r[0] and r[1] < d.extent


def _inline(src: Scope, idx: tuple[Expr, ...], env: Mapping[str, IterDef]) -> Expr | None:
    """``src[idx]`` as ``src``'s body with iterators substituted, or None if unsafe.

    Needs: no reduction (a reduction cannot be substituted away), no nested
    scope left in the body (substitution would put free iterators into it),
    and every index provably in bounds (out of bounds reads give the pad
    value, which the body would not).
    """
    if src.sums or any(isinstance(n, Scope) for n in walk(src.body)):
        return None
    if not all(_in_bounds(i, d, env) for i, d in zip(idx, src.travs)):
        return None
    # Output position p of traversal iterator t has t = start + p.
    # ``lin`` writes ``i - 1``, not ``i + -1`` (the text form reads ``-1`` as ``neg(1)``).
    mapping = {d.name: lin([(i, 1)], d.start) for d, i in zip(src.travs, idx)}
    return substitute_iters(src.body, mapping)


def flatten(s: Scope, outer: Mapping[str, IterDef] | None = None) -> Scope:
    """Replace nested-scope accesses by their bodies wherever :func:`_inline` allows."""
    env = dict(outer or {})
    env.update((d.name, d) for d in s.travs + s.sums)
    body = _flatten_body(s.body, env)
    return s if body is s.body else Scope(s.travs, s.sums, body, s.reduce)


def _flatten_body(e: Expr, env: Mapping[str, IterDef]) -> Expr:
    if isinstance(e, BinOp):
        lhs, rhs = _flatten_body(e.lhs, env), _flatten_body(e.rhs, env)
        return e if (lhs is e.lhs and rhs is e.rhs) else BinOp(e.op, lhs, rhs)
    if isinstance(e, Call):
        args = tuple(_flatten_body(a, env) for a in e.args)
        return e if all(a is b for a, b in zip(args, e.args)) else Call(e.fn, args)
    if isinstance(e, Access) and isinstance(e.source, Scope):
        src = flatten(e.source, env)  # innermost first: it may make src flat
        inl = _inline(src, e.indices, env)
        if inl is not None:
            return inl
        return e if src is e.source else Access(src, e.indices, e.pad)
    return e


# --------------------------------------------------------------------------
# The rewrite


def op_count(e: Expr) -> int:
    """Operations (``BinOp`` and ``Call`` nodes, index arithmetic included) in ``e``."""
    return sum(1 for n in walk(e) if isinstance(n, (BinOp, Call)))


def value_ops(e: Expr) -> tuple[int, frozenset[str]]:
    """(operations outside index expressions, tensors read outside them) of ``e``.

    Inlining never lowers the first number: renaming a tensor read to a scope
    adds the scope's, and flattening keeps a nested body's value operations
    (substitution only replaces iterator leaves). So for a producer ``p`` read
    by ``c``, ``ops(c) + (ops(p) if p's tensor is read in c)`` is a lower bound
    on :func:`op_count` of the fused scope, cheap enough to reject hopeless
    pairs before building them.
    """
    count, reads = 0, set()
    stack = [e]
    while stack:
        n = stack.pop()
        if isinstance(n, BinOp):
            count += 1
            stack += (n.lhs, n.rhs)
        elif isinstance(n, Call):
            count += 1
            stack += n.args
        elif isinstance(n, Scope):
            stack.append(n.body)
        elif isinstance(n, Access):
            if isinstance(n.source, Scope):
                stack.append(n.source)
            else:
                reads.add(n.source)
    return count, frozenset(reads)


def fuse_pair(
    producer: Node,
    consumer: Node,
    types: Mapping[str, TensorType],
    registry: Mapping[str, Any],
    max_depth: int,
    recompute: bool = False,
    max_ops: int | None = None,
) -> Node | None:
    """``consumer`` as an ``expr`` node with ``producer`` inlined, or None.

    A consumer that reads the producer at several places would evaluate the
    producer's body once per read; that happens only with ``recompute``.
    None also when the fused scope would hold more than ``max_ops``
    operations (see :func:`op_count`; None = no limit).
    """
    if not (_all_float(producer, types) and _all_float(consumer, types)):
        return None
    ps = node_scope(producer, types, registry)
    cs = node_scope(consumer, types, registry)
    if ps is None or cs is None or tuple(cs.shape) != tuple(consumer.outputs[0].type.shape):
        return None
    out = producer.outputs[0].name
    reads = sum(1 for n in walk(cs) if isinstance(n, Access) and n.source == out)
    if reads > 1 and (ps.sums or not recompute):
        return None  # would recompute the producer once per read (a reduction: never)
    ps = freshen(ps, binders(cs) | binders(ps))
    # Always exact: an out-of-bounds read of a nested scope gives the pad value
    # just like a read of the tensor it defines.
    fused = rename_tensors(cs, {out: ps})
    assert isinstance(fused, Scope)
    fused = flatten(fused)
    if max_ops is not None and op_count(fused) > max_ops:
        return None
    if depth(fused) > max_depth:
        return None
    inputs = tensor_names(fused)
    if expr_problems(fused, {i: types[i] for i in inputs}, consumer.label):
        return None  # an op's expr rule gave something we cannot vouch for
    return Node(EXPR_OP, inputs, consumer.outputs, Attrs(), fused)


@register_pass
@dataclass(frozen=True)
class FuseElementwise(Pass):
    """Fuse elementwise ops (and ``expr`` nodes) into their only consumer.

    A producer is an elementwise registry op with an Expr rule, or an ``expr``
    node, whose single output is read by exactly one node and is not a graph
    output. The consumer (an ``expr`` node, or any registry op with an Expr
    rule) becomes an ``expr`` node whose scope reads the producer's scope as a
    nested access; nested accesses are flattened by substitution when the
    producer has no reduction and every index is provably in bounds.

    Guarantees: graph inputs and outputs, the consumer's output name and type
    are unchanged; values are unchanged (inlining is exact); only float
    tensors are fused; no fused scope nests deeper than ``max_depth`` (1 = a
    flat scope) or holds more than ``max_ops`` operations (``BinOp``/``Call``
    nodes, index arithmetic included: long chains become several ``expr``
    nodes, which keeps every body within the printer's and interpreter's
    recursion limits); no work is duplicated unless ``recompute`` is set
    (then an elementwise producer read k times is evaluated k times).
    Fusion is greedy in graph order: the first producer (in node order) that
    can fuse does, until none can.
    """

    name: ClassVar[str] = "fuse-elementwise"
    max_depth: int = 2
    #: also fuse into a consumer that reads the producer more than once,
    #: recomputing it per read (saves a tensor's memory traffic, costs flops)
    recompute: bool = False
    #: the most operations one fused scope may hold
    max_ops: int = 64

    def __post_init__(self) -> None:
        if self.max_depth < 1:
            raise ValueError(f"option 'max_depth' of {self.name} must be >= 1, got {self.max_depth}")
        if self.max_ops < 1:
            raise ValueError(f"option 'max_ops' of {self.name} must be >= 1, got {self.max_ops}")

    def apply(self, graph: Graph) -> Graph:
        from tensoropt.ops import REGISTRY

        return self._fuse_all(graph, REGISTRY)

    def _fuse_all(self, graph: Graph, registry: Mapping[str, Any]) -> Graph:
        """Fuse until no pair can; the result of repeating "fuse the first
        fusable producer in node order, then rescan" without the rescans.

        Nodes live in slots keyed by their original position; a fused node
        takes its consumer's slot (the producer's is emptied), so slot order
        is node order throughout. A heap holds the slots whose producer pair
        may have changed since it was last tried; everything else already
        failed and would fail again, because a pair's outcome depends only on
        the two nodes and the user count of the producer's output, and a
        fusion changes those only around the tensors it reads.
        """
        types = {n: v.type for n, v in graph.values().items()}  # fusion keeps every surviving type
        outputs = set(graph.outputs)
        slots: dict[int, Node] = dict(enumerate(graph.nodes))
        made_by: dict[str, int] = {v.name: k for k, n in slots.items() for v in n.outputs}
        users: dict[str, set[int]] = {}
        for k, n in slots.items():
            for i in n.inputs:
                users.setdefault(i, set()).add(k)
        # (producer, consumer) pairs known not to fuse; the nodes are kept as
        # values so that their ids cannot be reused by new nodes.
        failed: dict[tuple[int, int], tuple[Node, Node]] = {}
        # id(node) -> (node, value_ops of its scope): a node stays alive while cached
        vops: dict[int, tuple[Node, tuple[int, frozenset[str]] | None]] = {}

        def value_ops_of(n: Node) -> tuple[int, frozenset[str]] | None:
            hit = vops.get(id(n))
            if hit is None:
                sc = node_scope(n, types, registry)
                hit = vops[id(n)] = (n, None if sc is None else value_ops(sc))
            return hit[1]

        def hopeless(p: Node, c: Node) -> bool:
            """True when the fused scope would surely exceed ``max_ops``."""
            pv, cv = value_ops_of(p), value_ops_of(c)
            if pv is None or cv is None:
                return False  # fuse_pair decides
            return cv[0] + (pv[0] if p.outputs[0].name in cv[1] else 0) > self.max_ops

        todo = list(slots)
        heapq.heapify(todo)
        queued = set(todo)
        changed = False
        while todo:
            k = heapq.heappop(todo)
            queued.discard(k)
            producer = slots.get(k)
            if producer is None or len(producer.outputs) != 1 or not _is_producer(producer, registry):
                continue
            out = producer.outputs[0].name
            us = users.get(out, ())
            if out in outputs or len(us) != 1:
                continue
            (ck,) = us
            consumer = slots[ck]
            if (id(producer), id(consumer)) in failed:
                continue
            new = None
            if not hopeless(producer, consumer):
                new = fuse_pair(producer, consumer, types, registry, self.max_depth, self.recompute, self.max_ops)
            if new is None:
                failed[(id(producer), id(consumer))] = (producer, consumer)
                continue
            changed = True
            del slots[k]
            slots[ck] = new
            del made_by[out]
            touched = set(producer.inputs) | set(consumer.inputs) | set(new.inputs)
            for i in set(producer.inputs):
                users[i].discard(k)
            for i in set(consumer.inputs):
                users[i].discard(ck)
            for i in new.inputs:
                users.setdefault(i, set()).add(ck)
            users.pop(out, None)
            # Revisit every slot whose pair may now differ: the producers of
            # the tensors whose users changed, and the new node itself.
            for j in {made_by[i] for i in touched if i in made_by} | {ck}:
                if j not in queued:
                    queued.add(j)
                    heapq.heappush(todo, j)
        if not changed:
            return graph
        return graph.replace(nodes=tuple(slots[k] for k in sorted(slots)))
