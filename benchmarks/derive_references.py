"""OLLIE's four reference derivations, found by search alone: first hit and full search, on equal terms.

For each reference operator (at the benchmark shapes) two searches run:

(a) **first hit**: the breadth-first search stops when the goal program
    appears; reports the explorative depth, the steps counting guided ones,
    the states explored and the time to that point;
(b) **full search**: the same search without stopping at the goal, to the
    depth OLLIE's own search ran (7), or as deep as completes within
    ``--full-limit`` seconds (default 600: the issue's 10 minutes); reports
    the deepest completed level, the states explored to it, its time, and
    whether (and after how many states) the goal appeared on the way.

OLLIE's figures (from its artifact logs: its search to depth 7, its depth
counting explorative steps only) are beside them. tensoropt's depth also
counts explorative steps only (guided ``trav-subst`` steps and
normalization cost none, as in OLLIE's guided derivation); "steps" counts
them all. Every step of each first-hit path is checked against the float64
interpreter. Times are process wall clock (``time.monotonic``) of the
search alone, one search at a time, no cache of any kind. Writes
benchmarks/results/derive_references.json (atomically).

    python benchmarks/derive_references.py                   # ~30 min on 2 cores
    python benchmarks/derive_references.py --full-limit 30   # a quick look (-o required with --only too)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tensoropt.ir.graph import Attrs  # noqa: E402
from tensoropt.ir.types import TensorType  # noqa: E402
from tensoropt.ops import REGISTRY  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: the depth OLLIE's published search ran to
OLLIE_DEPTH = 7

#: name -> (op, shapes, attrs, goal on kernel kinds, OLLIE: depth of the hit, seconds, states)
REFS: dict[str, tuple[str, list[tuple[int, ...]], dict[str, Any], Callable[[list[str]], bool], tuple[int, float, int]]] = {
    "conv 3x3 -> matmul + offset-reduce": (
        "conv2d", [(1, 512, 7, 7), (512, 512, 3, 3)], {"pads": [1, 1, 1, 1]},
        lambda k: sorted(k) == ["eop", "matmul"], (4, 7.2, 158_000)),
    "ConvTranspose 4x4 s2 -> matmul + reduce": (
        "conv_transpose2d", [(1, 512, 4, 4), (512, 256, 4, 4)], {"strides": [2, 2], "pads": [1, 1, 1, 1]},
        lambda k: sorted(k) == ["eop", "matmul"], (6, 53.6, 901_000)),
    "conv 5x5 -> conv 3x3 (4x filters) + reduce": (
        "conv2d", [(1, 1, 32, 32), (56, 1, 5, 5)], {"pads": [2, 2, 2, 2]},
        lambda k: "conv2d 3x3" in k, (7, 101.0, 2_200_000)),
    "dilated G2BMM -> G2BMM (dilation 1)": (
        "g2bmm", [(8, 512, 64), (8, 512, 64)], {"width": 32, "dilation": 4},
        lambda k: "g2bmm" in k, (4, 0.7, 18_000)),
}

METHOD = ("process wall clock (time.monotonic) of each search alone, one at a time, in one process; states: "
          "distinct expressions by exact canonical text; no cost model timing and no cache (the search ranks by "
          "the static estimate); depth: explorative steps (guided trav-subst and normalization cost none), steps: "
          "all of them")


def _first_hit(name: str, expr: Any, values: dict, goal: Callable[[list[str]], bool]) -> dict[str, Any]:
    from tensoropt.passes.derive.check import check_step
    from tensoropt.passes.derive.search import search

    res = search(expr, values, depth=8, time_limit=600, goal=lambda c: goal(c.kernels))
    found = res.found
    if found is None:
        raise SystemExit(f"derive_references: {name}: no first hit in 600 s / depth 8 (stopped: {res.stopped})")
    prev = expr
    for k, s in enumerate(found.path, 1):
        check_step(prev, s.expr, {n: tuple(t.shape) for n, t in values.items()}, f"{k} of {name}")
        prev = s.expr
    return {"depth": found.depth, "steps": len(found.path), "states": res.states, "search_s": round(res.seconds, 3),
            "program": found.program,
            "path": [f"{s.rule} {s.param}" + (" (guided)" if s.guided else "") for s in found.path]}


def _full(name: str, expr: Any, values: dict, goal: Callable[[list[str]], bool], limit: float) -> dict[str, Any]:
    from tensoropt.passes.derive.search import search

    def progress(level: int, states: int) -> None:
        print(f"  {name}: full search at depth {level}, {states:,} states", end="\r", file=sys.stderr, flush=True)

    res = search(expr, values, depth=OLLIE_DEPTH, time_limit=limit, goal=lambda c: goal(c.kernels),
                 stop_on_goal=False, progress=progress)
    print(file=sys.stderr)
    done = len(res.level_s) - 1  # the deepest completed level
    hit = res.found
    return {"depth_target": OLLIE_DEPTH, "depth_completed": done, "stopped": res.stopped, "time_limit_s": limit,
            "states": res.states_to(done), "search_s": round(res.level_s[done], 3),
            "states_total": res.states, "seconds_total": round(res.seconds, 3), "per_level": res.per_level,
            "level_s": [round(t, 3) for t in res.level_s],
            "goal_found": hit is not None, "goal_depth": hit.depth if hit else None,
            "goal_states": res.found_states, "goal_s": round(res.found_s, 3) if res.found_s is not None else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full-limit", type=float, default=600.0, help="seconds for each full search (default 600)")
    ap.add_argument("--only", default=None, help="regex: run only derivations whose name matches")
    ap.add_argument("-o", "--output", type=Path, default=None,
                    help="results file (default benchmarks/results/derive_references.json; required with --only "
                         "or a --full-limit other than 600, so a partial run never replaces the full results)")
    args = ap.parse_args()
    partial = args.only is not None or args.full_limit != 600.0
    if partial and args.output is None:
        ap.error("--only and --full-limit other than 600 need -o: the default results file holds full runs only")
    out = args.output or RESULTS / "derive_references.json"

    from tensoropt.atomic import atomic_write_text
    from tensoropt.bench import machine_info

    rows = []
    for name, (op, shapes, attrs, goal, ollie) in REFS.items():
        if args.only and not re.search(args.only, name):
            continue
        rules = REGISTRY[op]
        names = [f"X{i}" for i in range(len(shapes))]
        ts = [TensorType("f32", s) for s in shapes]
        expr = rules.expr(names, ts, rules.with_defaults(Attrs(attrs)))
        values = dict(zip(names, ts))
        first = _first_hit(name, expr, values, goal)
        print(f"{name}: first hit at depth {first['depth']} ({first['steps']} steps), {first['states']:,} states, "
              f"{first['search_s']} s", flush=True)
        full = _full(name, expr, values, goal, args.full_limit)
        print(f"{name}: full search to depth {full['depth_completed']} of {OLLIE_DEPTH} ({full['stopped']}), "
              f"{full['states']:,} states, {full['search_s']} s; goal "
              f"{'found at depth %s' % full['goal_depth'] if full['goal_found'] else 'not found'}  | OLLIE: "
              f"hit at depth {ollie[0]}, {ollie[2]:,} states, {ollie[1]} s (search to depth {OLLIE_DEPTH})",
              flush=True)
        rows.append({"derivation": name, **first, "full": full,
                     "ollie_depth": ollie[0], "ollie_search_s": ollie[1], "ollie_states": ollie[2],
                     "ollie_search_depth": OLLIE_DEPTH})
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine_info(), "timing": METHOD,
           "cache": "none", "ollie": "figures from OLLIE's artifact logs (its search to depth 7)", "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
