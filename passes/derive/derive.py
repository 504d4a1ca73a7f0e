"""The ``derive`` pass and the driver the CLI shares: search, measure, keep what is faster.

``derive_expr`` searches derivations of one expression, instantiates the
start and the best few candidates (by static estimate, one per distinct
program shape), measures each compiled program with TVM (cached on disk by
printed program, target and machine) and returns a :class:`Derivation` with
the path, the programs and their times. The pass replaces a node by its
derived program only when that measures faster, and checks every step of
the chosen path against the float64 interpreter when ``TENSOROPT_VERIFY=1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from tensoropt.errors import TensoroptError
from tensoropt.ir.expr import Scope
from tensoropt.ir.graph import Graph, Node, Value, Weights, fresh_name
from tensoropt.ir.printer import print_expr, print_graph
from tensoropt.ir.types import TensorType

from ..pipeline import Pass, register_pass, verify_enabled
from .check import check_step
from .instantiate import instantiate
from .search import Candidate, SearchResult, search

#: op-set names accepted by ``ops=`` -> registry ops
OP_SETS = {
    "conv2d": ("conv2d",),
    "conv-transpose": ("conv_transpose2d",),
    "matmul": ("matmul", "batch_matmul"),
    "band": ("g2bmm", "gbmm"),
}
#: a derived program must beat the original by this factor (timer noise)
MARGIN = 0.97


@dataclass
class Derivation:
    """What ``derive_expr`` found and measured for one expression."""

    start: Candidate
    search: SearchResult
    chosen: Candidate
    measured: list[tuple[Candidate, float]] = field(default_factory=list)  # (candidate, median s)
    start_s: float | None = None
    chosen_s: float | None = None
    program: Graph | None = None
    #: what the whole-model check made of a node-level win: None (not checked,
    #: or nothing to check), "kept" or "reverted" (the model was not faster with it)
    in_model: str | None = None
    #: timings served by the cost cache rather than measured in this run
    cached: int = 0

    @property
    def rewritten(self) -> bool:
        """The node was replaced: a candidate was chosen and the whole-model check did not revert it."""
        return self.chosen is not self.start and self.in_model != "reverted"

    @property
    def speedup(self) -> float | None:
        if self.start_s is None or self.chosen_s is None:
            return None
        return self.start_s / self.chosen_s

    def as_json(self) -> dict[str, Any]:
        return {
            "start": print_expr(self.start.expr),
            "start_program": self.start.program,
            "path": [{"rule": s.rule, "param": s.param, "guided": s.guided, "expr": print_expr(s.expr)}
                     for s in self.chosen.path],
            "depth": self.chosen.depth,
            "program": self.chosen.program,
            "program_text": print_graph(self.program) if self.program is not None else None,
            "states": self.search.states,
            "search_s": round(self.search.seconds, 3),
            "stopped": self.search.stopped,
            "start_ms": None if self.start_s is None else self.start_s * 1e3,
            "derived_ms": None if self.chosen_s is None else self.chosen_s * 1e3,
            "speedup": self.speedup,
            "measured": [{"program": c.program, "depth": c.depth, "ms": t * 1e3} for c, t in self.measured],
            "in_model": self.in_model,
            "cached_timings": self.cached,
        }


@dataclass
class ModelCheck:
    """The whole-model check of a derive run: the model timed with and without the rewrites.

    ``original_ms``/``derived_ms`` are medians of the whole graph, compiled
    and timed by :func:`.measure.measure_graph`; ``kept`` names the nodes
    whose rewrites stayed; ``tried`` lists each rewrite set timed, in order.
    ``reason`` says why no check ran (symbolic inputs), else None.
    """

    original_ms: float | None = None
    derived_ms: float | None = None
    kept: list[str] = field(default_factory=list)
    tried: list[tuple[list[str], float]] = field(default_factory=list)
    reason: str | None = None
    #: timings served by the cost cache rather than measured in this run
    cached: int = 0

    def summary(self) -> str | None:
        """One line for reports: the two whole-model times, why none were taken, or None (no check ran)."""
        if self.original_ms is not None and self.derived_ms is not None:
            kept = ", ".join("%" + n for n in self.kept) or "no rewrite"
            return f"whole model: {self.original_ms:.4g} ms as it was, {self.derived_ms:.4g} ms with {kept} derived"
        return self.reason

    def as_json(self) -> dict[str, Any]:
        return {"original_ms": self.original_ms, "derived_ms": self.derived_ms, "kept": self.kept,
                "tried": [{"nodes": n, "ms": ms} for n, ms in self.tried], "reason": self.reason,
                "cached_timings": self.cached}


def _distinct(cands: list[Candidate], top: int) -> list[Candidate]:
    seen, out = set(), []
    for c in sorted(cands, key=lambda c: c.estimate_s):
        if c.program in seen or c.estimate_s == float("inf"):
            continue
        seen.add(c.program)
        out.append(c)
        if len(out) == top:
            break
    return out


def check_path(start: Scope, cand: Candidate, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Every step of ``cand``'s path equal to the one before (float64, whole output)."""
    prev = start
    for k, step in enumerate(cand.path, 1):
        check_step(prev, step.expr, shapes, f"{k} ({step.rule} {step.param})")
        prev = step.expr


def check_program(expr: Scope, program: Graph, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """The instantiated program computes ``expr`` (float64 interpreter, whole output)."""
    from tensoropt.interp import evaluate_expr, run_graph

    from .check import RTOL, DerivationError, random_inputs

    # f32-representable values: the program's weights are f32 constants
    xs = {k: v.astype(np.float32).astype(np.float64) for k, v in random_inputs(shapes, seed=11).items()}
    want = evaluate_expr(expr, xs, dtype=np.float64)
    feed = {v.name: xs[v.name].astype(np.float32) for v in program.inputs}
    consts = Weights({c.name: xs[c.name].astype(np.float32) for c in program.constants})
    try:
        got = run_graph(program.replace(weights=consts), feed, dtype="f64")[program.outputs[0]]
    except TensoroptError as e:
        raise DerivationError(f"the instantiated program does not run: {e}") from None
    d = float(np.max(np.abs(want - got)) / max(1.0, float(np.max(np.abs(want))))) if want.size else 0.0
    if not d <= RTOL:
        raise DerivationError(f"the instantiated program differs from its expression (relative {d:.3g})")


def derive_expr(expr: Scope, values: Mapping[str, TensorType], weights: Mapping[str, np.ndarray] | None = None, *,
                depth: int = 6, time_limit: float = 60.0, measure: bool = True, top: int = 4,
                target: str = "llvm", verify: bool | None = None, original: Graph | None = None,
                context: Callable[[Graph], Graph] | None = None,
                progress: Callable[[str], None] | None = None) -> Derivation:
    """Search, measure and choose (see the module docstring).

    ``original`` is the program the derived ones must beat (a graph node's own
    lowering); by default the start expression's instantiation. ``context``
    wraps each program before it is measured (the pass appends the node's
    elementwise epilogue, so that a derived program is timed with the fusion
    it would get in the model, as the original is); ``original`` is measured
    as given.
    """
    from .measure import measure_graph

    weights = dict(weights or {})
    shapes = {n: tuple(int(d) for d in t.shape) for n, t in values.items()}  # type: ignore[misc]
    res = search(expr, values, weights, depth=depth, time_limit=time_limit,
                 progress=(lambda lvl, n: progress(f"depth {lvl}: {n} states")) if progress else None)
    cands = _distinct(res.candidates, top)
    out = Derivation(res.start, res, res.start)
    if not measure:
        best = min([res.start] + cands, key=lambda c: c.estimate_s)
        out.chosen = best
        out.program = instantiate(best.expr, values, weights)[0]
        return out
    def timed(c: Candidate) -> float:
        g, _ = instantiate(c.expr, values, weights)
        if context is not None:
            g = context(g)
        if progress:
            progress(f"measuring {c.program}")
        m = measure_graph(g, target)
        out.cached += m.cached
        return m.median_s

    if original is not None:
        if progress:
            progress("measuring the original")
        m = measure_graph(original, target)
        out.cached += m.cached
        out.start_s = m.median_s
    else:
        out.start_s = timed(res.start)
    best_s, best = out.start_s, res.start
    for c in cands:
        try:
            t = timed(c)
        except TensoroptError as e:  # a candidate codegen cannot build is skipped, not fatal
            if progress:
                progress(f"skipped {c.program}: {e}")
            continue
        out.measured.append((c, t))
        if t < best_s * MARGIN:
            best_s, best = t, c
    out.chosen, out.chosen_s = best, best_s
    out.program = instantiate(best.expr, values, weights)[0]
    if verify if verify is not None else verify_enabled():
        check_path(expr, best, shapes)
        check_program(expr, out.program, shapes)
    return out


def _expr_of(node: Node, types: Mapping[str, TensorType]) -> Scope | None:
    from tensoropt.ops import REGISTRY

    rules = REGISTRY.get(node.op)
    if rules is None or rules.expr is None:
        return None
    ts = [types[i] for i in node.inputs]
    if not all(isinstance(d, int) for t in ts for d in t.shape) or ts[0].dtype not in ("f32", "f64"):
        return None
    return rules.expr(list(node.inputs), ts, rules.with_defaults(node.attrs))


def node_graph(node: Node, types: Mapping[str, TensorType], weights: Mapping[str, np.ndarray]) -> Graph:
    """A graph of ``node`` alone: its inputs (weights as consts) and its outputs."""
    ins = tuple(Value(i, types[i]) for i in dict.fromkeys(node.inputs) if i not in weights)
    consts = tuple(Value(i, types[i]) for i in dict.fromkeys(node.inputs) if i in weights)
    return Graph(f"{node.op}", ins, consts, (node,), node.output_names, dict(weights))


#: the most elementwise nodes after a derived node that are measured with it
EPILOGUE_MAX = 4


def readers_of(graph: Graph) -> dict[str, list[Node]]:
    """Tensor name -> the nodes that read it (each once, in graph order)."""
    readers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in dict.fromkeys(n.inputs):
            readers.setdefault(i, []).append(n)
    return readers


def epilogue(graph: Graph, node: Node, readers: Mapping[str, list[Node]] | None = None) -> tuple[Node, ...]:
    """The elementwise nodes after ``node`` that codegen fuses into its kernel.

    Each link is the only reader of the previous link's output (which is not
    a graph output) and a single-output registry op of the elementwise
    category; at most :data:`EPILOGUE_MAX` links. Measuring a node with its
    epilogue times the original with the fusion it gets in the model (a conv
    and its relu are one kernel), and a derived program with whatever fusion
    its last kernel allows, instead of crediting a rewrite for a fusion it
    breaks. ``readers`` (:func:`readers_of`) saves rebuilding the map per node.
    """
    from tensoropt.ops import REGISTRY

    if readers is None:
        readers = readers_of(graph)
    chain: list[Node] = []
    out = node.output_names[0]
    while len(chain) < EPILOGUE_MAX and out not in graph.outputs:
        rs = readers.get(out, [])
        if len(rs) != 1:
            break
        rules = REGISTRY.get(rs[0].op)
        if rules is None or rules.category != "elementwise" or len(rs[0].outputs) != 1:
            break
        chain.append(rs[0])
        out = rs[0].output_names[0]
    return tuple(chain)


def in_context(graph: Graph, node: Node, program: Graph, chain: tuple[Node, ...]) -> Graph:
    """``program`` (which computes ``node``) followed by ``chain``, as one graph to measure.

    Tensors the chain reads besides the node's output become inputs of the
    result (constants, with their weights, where ``graph`` has them as such).
    """
    if not chain:
        return program
    nodes = splice(graph, node, program)
    have = {v.name for v in program.inputs} | {c.name for c in program.constants}
    have |= {v.name for n in nodes for v in n.outputs} | {v.name for n in chain for v in n.outputs}
    values = graph.values()
    consts = {c.name for c in graph.constants}
    extra = list(dict.fromkeys(i for n in chain for i in n.inputs if i not in have))
    weights = dict(program.weights)
    weights.update({i: graph.weights[i] for i in extra if i in consts and i in graph.weights})
    return Graph(f"{node.op}_epilogue", program.inputs + tuple(values[i] for i in extra if i not in consts),
                 program.constants + tuple(values[i] for i in extra if i in consts), nodes + chain,
                 (chain[-1].output_names[0],), weights)


def splice(graph: Graph, node: Node, program: Graph) -> tuple[Node, ...]:
    """The program's nodes with fresh internal names; its output renamed to the node's."""
    taken = set(graph.values())
    out = node.output_names[0]
    ren = {program.outputs[0]: out}
    for n in program.nodes:
        for v in n.output_names:
            if v not in ren:
                ren[v] = fresh_name(f"{out}.d.{v}", taken)
    new = []
    for n in program.nodes:
        expr = n.expr
        if expr is not None:
            from tensoropt.ir.expr import rename_tensors

            expr = rename_tensors(expr, {a: ren[a] for a in n.inputs if a in ren})  # type: ignore[assignment]
        outs = tuple(Value(ren[v.name], v.type) for v in n.outputs)
        new.append(Node(n.op, tuple(ren.get(i, i) for i in n.inputs), outs, n.attrs, expr))
    return tuple(new)


def with_rewrites(graph: Graph, rewrites: Mapping[str, tuple[tuple[Node, ...], Derivation]], keep: set[str]) -> Graph:
    """``graph`` with each node named in ``keep`` replaced by its spliced program from ``rewrites``."""
    nodes: list[Node] = []
    for node in graph.nodes:
        name = node.output_names[0]
        nodes.extend(rewrites[name][0] if name in keep else (node,))
    return graph.replace(nodes=tuple(nodes))


@register_pass
@dataclass(frozen=True)
class Derive(Pass):
    """Rewrite compute nodes into derived programs that measure faster (OLLIE style).

    Options: ``depth`` (explorative rule applications), ``time`` (search
    seconds per node), ``ops`` (``+``-separated op sets: conv2d,
    conv-transpose, matmul, band), ``measure`` (false: pick by static estimate
    only), ``top`` (candidates measured per node), ``check`` (time the whole
    model with and without the rewrites and keep only what makes it faster).
    Guarantees: with ``measure``, a node changes only when its derived
    program, timed with the node's elementwise epilogue (:func:`epilogue`),
    measured faster than the node's own lowering with the same epilogue, and,
    with ``check`` and static graph inputs, only when the whole model with
    the rewrites kept measured faster than without (else each rewrite is
    tried alone, and the best that pays is kept, or none); the graph's
    inputs, outputs and values are unchanged; every step is an equality
    (checked numerically when ``TENSOROPT_VERIFY=1``).
    """

    name: ClassVar[str] = "derive"
    depth: int = 6
    time: float = 60.0
    ops: str = "conv2d+conv-transpose+matmul"
    measure: bool = True
    top: int = 4
    check: bool = True

    def __post_init__(self) -> None:
        if self.depth < 0:
            raise ValueError(f"option 'depth' of derive must be >= 0, got {self.depth}")
        if self.top < 1:
            raise ValueError(f"option 'top' of derive must be >= 1, got {self.top}")
        if self.time <= 0:
            raise ValueError(f"option 'time' of derive must be > 0, got {self.time}")
        bad = [o for o in self.ops.split("+") if o not in OP_SETS]
        if bad:
            raise ValueError(f"option 'ops' of derive: unknown op set {bad[0]!r}; valid: {', '.join(OP_SETS)}")

    def op_names(self) -> set[str]:
        return {op for o in self.ops.split("+") for op in OP_SETS[o]}

    def apply(self, graph: Graph, report: list[tuple[str, Derivation]] | None = None,
              progress: Callable[[str], None] | None = None, model_check: ModelCheck | None = None) -> Graph:
        """The derived graph; ``report`` gets each searched node's :class:`Derivation` and
        ``model_check`` (when given) the whole-model check's figures."""
        types = {k: v.type for k, v in graph.values().items()}
        consts = {c.name for c in graph.constants}
        ops = self.op_names()
        readers = readers_of(graph)
        rewrites: dict[str, tuple[tuple[Node, ...], Derivation]] = {}
        for node in graph.nodes:
            expr = _expr_of(node, types) if node.op in ops else None
            if expr is None:
                continue
            values = {i: types[i] for i in dict.fromkeys(node.inputs)}
            weights = {i: np.asarray(graph.weights[i]) for i in values if i in consts and i in graph.weights}
            if progress:
                progress(f"{node.op} %{node.output_names[0]}")
            chain = epilogue(graph, node, readers) if self.measure else ()

            def context(program: Graph, node: Node = node, chain: tuple[Node, ...] = chain) -> Graph:
                return in_context(graph, node, program, chain)

            d = derive_expr(expr, values, weights, depth=self.depth, time_limit=self.time, measure=self.measure,
                            top=self.top, progress=progress, context=context if chain else None,
                            original=context(node_graph(node, types, weights)))
            if report is not None:
                report.append((node.output_names[0], d))
            if d.chosen is d.start or d.program is None:
                continue
            rewrites[node.output_names[0]] = (splice(graph, node, d.program), d)
        if not rewrites:
            return graph
        if self.measure and self.check:
            keep = self._check(graph, rewrites, model_check if model_check is not None else ModelCheck(), progress)
        else:
            keep = set(rewrites)
        return with_rewrites(graph, rewrites, keep) if keep else graph

    def _check(self, graph: Graph, rewrites: Mapping[str, tuple[tuple[Node, ...], Derivation]], check: ModelCheck,
               progress: Callable[[str], None] | None) -> set[str]:
        """The rewrites to keep: all of them if the whole model measures faster with them, else
        the best single one that does, else none (see the class docstring)."""
        from .measure import MeasureError, measure_graph

        if progress:
            progress("whole model: measuring the original")
        try:
            m = measure_graph(graph)
        except MeasureError as e:  # symbolic inputs: the node-level checks stand alone
            check.reason = f"whole model not timed: {e}"
            check.kept = list(rewrites)
            return set(rewrites)  # in_model stays None: not checked
        base = m.median_s
        check.cached += m.cached
        check.original_ms = base * 1e3
        # most promising first: by node-level speedup
        names = sorted(rewrites, key=lambda n: -(rewrites[n][1].speedup or 0.0))
        trials = [names] + ([[n] for n in names] if len(names) > 1 else [])
        best: list[str] = []
        best_s = base
        for keep in trials:
            if progress:
                progress(f"whole model: measuring with {', '.join('%' + n for n in keep)} derived")
            m = measure_graph(with_rewrites(graph, rewrites, set(keep)))
            t = m.median_s
            check.cached += m.cached
            check.tried.append((list(keep), t * 1e3))
            if t < best_s * MARGIN:
                best, best_s = list(keep), t
            if keep is names and best:
                break  # every rewrite together pays: nothing to pick from
        check.derived_ms = best_s * 1e3
        check.kept = best
        for name, (_, d) in rewrites.items():
            d.in_model = "kept" if name in best else "reverted"
        return set(best)
