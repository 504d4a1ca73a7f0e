"""``tensoropt derive``: search derivations of one Expr (or of every matching node of a model).

For an Expr given on the command line (``--shapes`` types its tensors; reads
outside them are zero) it prints the derivation path (each rule and the Expr
after it), the instantiated program, the measured times of the original and
the derived program and the speedup. For a model file it runs the ``derive``
pass and prints one row per rewritten-or-kept node; ``-o`` writes the
optimized graph. Same contract as :mod:`tensoropt.cli`: bad input is one line
and exit 2; ``--json`` prints one JSON object and no progress.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import TensoroptError
from .common import MODEL_HELP, Add, check_output_path, console, status_line, table


class DeriveInputError(TensoroptError):
    """Bad ``tensoropt derive`` arguments."""


def parse_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """``X=1x512x7x7,K=512x512x3x3`` -> {"X": (1, 512, 7, 7), ...}."""
    out: dict[str, tuple[int, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, dims = part.partition("=")
        name = name.strip().lstrip("%")
        try:
            shape = tuple(int(d) for d in dims.split("x")) if dims.strip() else ()
        except ValueError:
            shape = (-1,)
        if not eq or not name or any(d < 1 for d in shape):
            raise DeriveInputError(f"--shapes {part!r}: expected NAME=D1xD2x... with positive integer dims")
        out[name] = shape
    return out


def _is_model(arg: str) -> bool:
    return Path(arg).suffix in (".top", ".onnx", ".pt2") and Path(arg).exists()


def cmd_derive(args: argparse.Namespace) -> int:
    from tensoropt.passes.derive.derive import Derive

    # options are checked before any search starts
    try:
        p = Derive(depth=args.depth, time=args.time, ops=args.ops, measure=not args.no_measure, top=args.top)
    except ValueError as e:
        raise DeriveInputError(str(e)) from None
    progress = status_line("derive", not args.json and sys.stderr.isatty())
    if _is_model(args.target):
        return _derive_model(args, p, progress)
    return _derive_expr(args, p, progress)


def _derive_expr(args: argparse.Namespace, p: Any, progress: Callable[[str], None] | None) -> int:
    from tensoropt.ir.expr import tensor_names
    from tensoropt.ir.parser import parse_expr
    from tensoropt.ir.types import TensorType
    from tensoropt.passes.derive.derive import derive_expr

    if args.output:
        raise DeriveInputError("-o applies to a model argument; for an Expr use --json to keep the result")
    expr = parse_expr(args.target, "<expr>")
    shapes = parse_shapes(args.shapes or "")
    from tensoropt.ir.expr import walk, Scope
    from tensoropt.ir.verify import verify_expr

    names: set[str] = set(tensor_names(expr))  # nested scopes' reads included
    missing = sorted(names - set(shapes))
    if missing:
        raise DeriveInputError(f"--shapes: no shape for tensor %{missing[0]} (the Expr reads "
                               f"{', '.join('%' + n for n in sorted(names))})")
    if not all(isinstance(d.extent, int) for n in walk(expr) if isinstance(n, Scope) for d in n.travs + n.sums):
        raise DeriveInputError("the Expr has a symbolic extent; derive needs integer extents")
    values = {n: TensorType("f32", shapes[n]) for n in sorted(names)}
    verify_expr(expr, values, "<expr>")  # arity, bound iterators, index forms: one located line
    d = derive_expr(expr, values, {}, depth=p.depth, time_limit=p.time, measure=p.measure, top=p.top,
                    progress=progress)
    if progress:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(d.as_json(), indent=2))
        return 0
    _print_derivation(d)
    return 0


def _print_derivation(d: Any) -> None:
    from rich.markup import escape

    from tensoropt.ir.printer import print_expr as _pe, print_graph as _pg

    def print_expr(e: Any) -> str:
        return escape(_pe(e))

    def print_graph(g: Any) -> str:
        return escape(_pg(g))

    con = console()
    con.print(f"[bold]start[/bold]  ({d.start.program})\n  {print_expr(d.start.expr)}")
    s = d.search
    con.print(f"search: {s.states} states, {s.levels} levels, {s.seconds:.2f} s, stopped by {s.stopped}")
    if d.chosen is d.start:
        con.print("no derived program measured faster: the expression is kept")
    else:
        con.print(f"[bold]derivation[/bold] (depth {d.chosen.depth}, {len(d.chosen.path)} steps)")
        for k, step in enumerate(d.chosen.path, 1):
            tag = " (guided)" if step.guided else ""
            con.print(f" {k}. {step.rule} {escape(step.param)}{tag}\n    {print_expr(step.expr)}")
    if d.program is not None:
        con.print(f"[bold]program[/bold] ({d.chosen.program})")
        con.print(print_graph(d.program))
    for c, t in d.measured:
        con.print(f"  measured {c.program}: {t * 1e3:.4g} ms (depth {c.depth})")
    if d.start_s is not None and d.chosen_s is not None:
        con.print(f"original {d.start_s * 1e3:.4g} ms, derived {d.chosen_s * 1e3:.4g} ms, "
                  f"speedup {d.start_s / d.chosen_s:.2f}x")


def _derive_model(args: argparse.Namespace, p: Any, progress: Callable[[str], None] | None) -> int:
    from tensoropt.api import load, save

    if args.shapes:
        raise DeriveInputError("--shapes applies to an Expr argument; a model's shapes come from the model")
    out = check_output_path(args.output, (".top",)) if args.output else None
    graph = load(args.target)
    from tensoropt.passes.derive.derive import ModelCheck

    report: list[tuple[str, Any]] = []
    check = ModelCheck()
    new = p.apply(graph, report, progress, model_check=check)
    if progress:
        print(file=sys.stderr)
    if out is not None:
        save(new, out)

    def derived(d: Any) -> str:
        if d.rewritten:
            return str(d.chosen.program)
        return "(kept: the model was slower with it)" if d.in_model == "reverted" else "(kept)"

    rows = [[name, d.start.program, derived(d), _ms(d.start_s), _ms(d.chosen_s),
             f"{d.speedup:.2f}x" if d.speedup else "-", d.search.states, f"{d.search.seconds:.1f}"]
            for name, d in report]
    cached = check.cached + sum(d.cached for _, d in report)
    if args.json:
        print(json.dumps({"nodes": [{"node": n, **d.as_json()} for n, d in report], "model_check": check.as_json(),
                          "cached_timings": cached, "output": str(out) if out else None}, indent=2))
        return 0
    con = console()
    con.print(table(f"derive on {args.target}: {len(report)} nodes searched",
                     ["node", "original", "derived", "orig ms", "derived ms", "speedup", "states", "search s"],
                     rows))
    if check.summary():
        con.print(check.summary())
    con.print(f"timings served by the cost cache: {cached}")
    if out is not None:
        con.print(f"wrote {out}")
    return 0


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.4g}"


def add_derive(add: Add) -> None:
    s = add("derive", cmd_derive, "search OLLIE-style derivations of an Expr or of a model's compute nodes")
    s.add_argument("target", metavar="EXPR_OR_MODEL",
                   help="an Expr in the text format (quote it), or a model file: " + MODEL_HELP)
    s.add_argument("--shapes", default=None, metavar="X=1x512x7x7,K=512x512x3x3",
                   help="shapes of the tensors an Expr reads (f32)")
    s.add_argument("--depth", type=int, default=6, help="explorative rule applications (default 6)")
    s.add_argument("--time", type=float, default=60.0, help="search seconds per expression (default 60)")
    s.add_argument("--ops", default="conv2d+conv-transpose+matmul",
                   help="models: op sets to derive, +-separated from conv2d, conv-transpose, matmul, band")
    s.add_argument("--top", type=int, default=4, help="candidates measured per expression (default 4)")
    s.add_argument("--no-measure", action="store_true", help="choose by the static estimate, compile nothing")
    s.add_argument("-o", "--output", metavar="OUT.top", help="models: write the derived graph here")
