"""Derivation search: explorative breadth-first derivation plus guided steps.

Each state is an expression equal to the start; a step applies one rule of
:data:`.rules.RULES` at one site, then :func:`.rules.normalize` (tightening,
exact clean-ups) and the *guided* steps that bring contraction scopes toward an
operator's iterator table (``trav-subst`` on an index whose traversal
iterators appear nowhere else): both cost no depth and are recorded in the
path. States are deduplicated by :func:`.canon.canonical_key` (exact text,
never a hash). The search goes level by level (so the depth at which a
program is found is the least depth that reaches it), stops at ``depth``, at
``time_limit`` seconds, or when ``goal`` accepts a candidate, and returns the
best candidates found so far by the static estimate of :func:`estimate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from tensoropt.ir.expr import Scope
from tensoropt.ir.types import TensorType

from .canon import canonical_key
from .instantiate import describe, instantiate_estimated
from .rules import RULES, normalize, own_accesses, trav_subst, trav_subst_params
from .affine import affine
from .sites import Site, replace, sites



@dataclass(frozen=True)
class Step:
    """One derivation step: the rule, its parameter, the site, the expression after."""

    rule: str
    param: str
    site: int
    expr: Scope
    guided: bool = False


@dataclass
class Candidate:
    expr: Scope
    path: tuple[Step, ...]
    estimate_s: float
    kernels: list[str]

    @property
    def depth(self) -> int:
        return sum(1 for s in self.path if not s.guided and s.rule != "normalize")

    @property
    def program(self) -> str:
        return describe(self.kernels)


@dataclass
class SearchResult:
    start: Candidate
    candidates: list[Candidate]
    states: int
    seconds: float
    levels: int
    stopped: str  # "depth", "time", "goal", "exhausted"
    found: Candidate | None = None
    per_level: list[int] = field(default_factory=list)
    #: seconds from the start to the end of each completed level (level 0: the start state)
    level_s: list[float] = field(default_factory=list)
    #: seconds from the start to the first goal hit (set with ``stop_on_goal=False`` too)
    found_s: float | None = None
    #: states explored when the goal was first hit
    found_states: int | None = None

    def states_to(self, level: int) -> int:
        """States explored by the end of ``level`` (a completed level: ``level < len(level_s)``)."""
        return sum(self.per_level[: level + 1])

    @property
    def best(self) -> Candidate:
        return min([self.start] + self.candidates, key=lambda c: c.estimate_s)


def estimate(root: Scope, values: Mapping[str, TensorType], weights: Mapping[str, np.ndarray]) -> tuple[float, list[str]]:
    """Static time estimate (seconds) of the instantiated program and its kernels."""
    _, kinds, cost = instantiate_estimated(root, values, weights)
    return cost, kinds


def guided(root: Scope, shapes: Mapping[str, tuple[int, ...]]) -> tuple[Scope, list[Step]]:
    """Apply guided ``trav-subst`` steps until no contraction scope has one left."""
    steps: list[Step] = []
    for _ in range(16):
        for site in sites(root, shapes):
            p = _guided_param(site)
            if p is None:
                continue
            new = trav_subst(site, p)
            if new is None:
                continue
            root = normalize(replace(root, site.index, new), shapes)
            steps.append(Step("trav-subst", _fmt(p), site.index, root, guided=True))
            break
        else:
            break
    return root, steps


def _guided_param(site: Site) -> object | None:
    s = site.scope
    if site.is_root or s.reduce != "Sum" or not s.sums:
        return None
    uses: dict[str, int] = {}
    for acc in own_accesses(s.body):
        for i in acc.indices:
            a = affine(i)
            for n, _ in (a.terms if a is not None else ()):
                uses[n] = uses.get(n, 0) + 1
    for name, a in trav_subst_params(site):
        if uses.get(name) == 1:
            return (name, a)
    return None


def _fmt(p: object) -> str:
    if isinstance(p, tuple):
        return ", ".join(_fmt(x) for x in p)
    if isinstance(p, frozenset):
        return "{" + ", ".join(sorted(p)) + "}"
    if hasattr(p, "expr") and callable(getattr(p, "expr")):
        from tensoropt.ir.printer import print_expr

        return print_expr(p.expr())  # type: ignore[union-attr]
    return str(p)


def search(root: Scope, values: Mapping[str, TensorType], weights: Mapping[str, np.ndarray] | None = None, *,
           depth: int = 6, time_limit: float = 60.0, keep: int = 8,
           goal: Callable[[Candidate], bool] | None = None,
           rules: tuple[str, ...] | None = None,
           progress: Callable[[int, int], None] | None = None,
           stop_on_goal: bool = True) -> SearchResult:
    """Search derivations of ``root`` (reading tensors typed by ``values``).

    With ``stop_on_goal=False`` a goal hit is recorded (``found``, ``found_s``,
    ``found_states``) and the search goes on to ``depth`` or ``time_limit``:
    the full search to a given depth that OLLIE's published figures count.
    """
    weights = weights or {}
    shapes = {n: tuple(int(d) for d in t.shape) for n, t in values.items()}  # type: ignore[misc]
    use = [RULES[r] for r in (rules or tuple(RULES))]
    t0 = time.monotonic()
    start_expr = normalize(root, shapes)
    start_path: tuple[Step, ...] = ()
    if start_expr != root:
        start_path = (Step("normalize", "", 0, start_expr, guided=True),)
    try:
        est, kinds = estimate(start_expr, values, weights)
    except Exception:  # noqa: BLE001 - the search can still find an instantiable form
        est, kinds = float("inf"), ["?"]
    start = Candidate(start_expr, start_path, est, kinds)
    seen = {canonical_key(start_expr)}
    best: list[Candidate] = []
    frontier = [start]
    states, level, stopped = 1, 0, "depth"
    per_level = [1]
    shown = t0
    level_s = [time.monotonic() - t0]
    found: Candidate | None = None
    found_s: float | None = None
    found_states: int | None = None
    if goal is not None and goal(start):
        if stop_on_goal:
            return SearchResult(start, [], 1, time.monotonic() - t0, 0, "goal", start, per_level, level_s,
                                level_s[0], 1)
        found, found_s, found_states = start, level_s[0], 1
    while frontier and level < depth:
        level += 1
        nxt: list[Candidate] = []
        for cand in frontier:
            for site in sites(cand.expr, shapes):
                for rule in use:
                    for p in rule.params(site):
                        if time.monotonic() - t0 > time_limit:
                            stopped = "time"
                            break
                        new = rule.apply(site, p)
                        if new is None:
                            continue
                        expr = normalize(replace(cand.expr, site.index, new), shapes)
                        step = Step(rule.name, _fmt(p), site.index, expr)
                        expr, gsteps = guided(expr, shapes)
                        key = canonical_key(expr)
                        if key in seen:
                            continue
                        seen.add(key)
                        states += 1
                        try:
                            est, kinds = estimate(expr, values, weights)
                        except Exception:  # noqa: BLE001 - an uninstantiable state is still explored
                            est, kinds = float("inf"), ["?"]
                        c = Candidate(expr, cand.path + (step, *gsteps), est, kinds)
                        nxt.append(c)
                        best = sorted(best + [c], key=lambda x: x.estimate_s)[:keep]
                        if found is None and goal is not None and goal(c):
                            found, found_s, found_states = c, time.monotonic() - t0, states
                            if stop_on_goal:
                                return SearchResult(start, best, states, found_s, level, "goal", c,
                                                    per_level + [len(nxt)], level_s, found_s, states)
                    if stopped == "time":
                        break
                if stopped == "time":
                    break
            if stopped == "time":
                break
            if progress is not None and time.monotonic() - shown > 0.5:
                shown = time.monotonic()
                progress(level, states)
        per_level.append(len(nxt))
        if stopped == "time":
            break
        level_s.append(time.monotonic() - t0)
        frontier = nxt
    else:
        if not frontier:
            stopped = "exhausted"
    return SearchResult(start, best, states, time.monotonic() - t0, level, stopped, found, per_level, level_s,
                        found_s, found_states)
