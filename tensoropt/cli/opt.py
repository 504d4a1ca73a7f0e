"""CLI command ``opt``: run a pass pipeline over a graph file and write (or
print) the optimized graph, with one row per pass."""

from __future__ import annotations

import argparse
import sys

from .common import MODEL_HELP, Add, check_output_path, console, emit_json, table


def cmd_opt(args: argparse.Namespace) -> int:
    from .. import api
    from ..passes.pipeline import parse_pipeline

    passes = parse_pipeline(args.pipeline)  # fail on a bad pipeline before loading anything big
    out_path = check_output_path(args.output, api.TEXT_SUFFIXES) if args.output else None
    g = api.load(args.file)
    api.verify(g)
    new, reports = api.optimize(g, passes)
    if out_path is not None:
        api.save(new, out_path)
    rows = api.report_rows(reports)
    if args.json:
        emit_json({"file": args.file, "pipeline": args.pipeline, "passes": rows,
                   "written": str(out_path) if out_path else None, "summary": api.graph_summary(new)})
        return 0
    con = console()
    con.print(table(f"{args.file}: pipeline {args.pipeline}", ["pass", "ms", "nodes before", "nodes after"],
                    [[r["pass"], f"{r['ms']:.2f}", r["nodes_before"], r["nodes_after"]] for r in rows]))
    if out_path:
        con.print(f"wrote {out_path}")
    else:
        from ..ir.printer import print_graph

        sys.stdout.write(print_graph(new))
    return 0


def add_opt(add: Add) -> None:
    s = add("opt", cmd_opt, "run a pass pipeline and write the optimized graph")
    s.add_argument("file", help=MODEL_HELP)
    s.add_argument("-p", "--pipeline", required=True, help="e.g. 'dce,fold-constants,cse' or 'pass{opt=1}'")
    s.add_argument("-o", "--output", metavar="OUT.top", help="write here (+ OUT.npz weights); else print")
