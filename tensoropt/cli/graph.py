"""CLI commands on one graph file: ``show``, ``check``, ``eval`` (the NumPy
reference interpreter) and ``export`` (to ONNX)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import EvalError
from .common import MODEL_HELP, Add, add_input_arguments, check_output_path, console, emit_json, parse_bindings, table


def cmd_show(args: argparse.Namespace) -> int:
    from .. import api
    from ..ir.printer import print_graph

    g = api.load(args.file)
    if args.format == "dot":
        from ..ir.dot import to_dot

        text = to_dot(g)
    else:
        text = print_graph(g)
    if args.output:
        from ..atomic import atomic_write_text

        out = check_output_path(args.output, (".dot", ".gv") if args.format == "dot" else api.TEXT_SUFFIXES)
        atomic_write_text(out, text)
    if args.json:
        emit_json({"file": args.file, "format": args.format, "text": text, "summary": api.graph_summary(g)})
    elif not args.output:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .. import api

    g = api.load(args.file)
    api.verify(g)
    s = api.graph_summary(g)
    if args.json:
        emit_json({"file": args.file, "ok": True, **s})
        return 0
    ins = ", ".join(f"%{k}: {t}" for k, t in s["inputs"].items())
    outs = ", ".join(f"%{k}: {t}" for k, t in s["outputs"].items())
    print(f"{args.file}: ok: graph {g.name}, {s['nodes']} nodes, {s['constants']} constants; inputs {ins}; outputs {outs}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .. import api

    g = api.load(args.file)
    api.verify(g)
    out_path = check_output_path(args.output, (".npz",)) if args.output else None
    binds = parse_bindings(args.bind)
    api.check_bindings(g, binds)
    if args.inputs and binds:
        raise EvalError("--bind sizes symbolic dims of --random inputs; with --inputs they come from the arrays")
    if args.inputs:
        inputs = api.read_inputs(args.inputs, g)
    elif args.random:
        inputs = api.random_inputs(g, seed=args.seed, bindings=binds)
    else:
        raise EvalError("eval needs --inputs FILE.npz or --random")
    t0 = time.perf_counter()
    outs = api.evaluate(g, inputs, dtype="f64" if args.f64 else None)
    seconds = time.perf_counter() - t0
    if out_path is not None:
        api.write_npz(out_path, outs)
    rows = api.summarize(outs)
    if args.json:
        emit_json({"file": args.file, "seconds": seconds, "outputs": rows,
                   "written": str(out_path) if out_path else None})
        return 0
    con = console()
    con.print(table(f"{args.file}: {len(g.nodes)} nodes evaluated in {seconds * 1e3:.1f} ms",
                    ["output", "shape", "dtype", "min", "max", "mean"],
                    [[f"%{r['name']}", r["shape"], r["dtype"], _fmt(r.get("min")), _fmt(r.get("max")),
                      _fmt(r.get("mean"))] for r in rows]))
    if out_path:
        con.print(f"wrote {out_path}")
    return 0


def _fmt(x: object) -> str:
    return "-" if x is None else f"{x:.5g}" if isinstance(x, float) else str(x)


def cmd_export(args: argparse.Namespace) -> int:
    from .. import api

    g = api.load(args.file)
    out = check_output_path(args.output, (".onnx",))
    api.export_onnx(g, out, opset=args.opset)  # verifies the graph first
    if args.json:
        emit_json({"file": args.file, "output": str(out), "opset": args.opset, "nodes": len(g.nodes),
                   "bytes": out.stat().st_size})
    else:
        print(f"{args.file}: wrote {out} (ONNX opset {args.opset}, {len(g.nodes)} nodes, "
              f"{out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def add_show(add: Add) -> None:
    s = add("show", cmd_show, "print a graph in the canonical text format or as Graphviz dot")
    s.add_argument("file", help=MODEL_HELP)
    s.add_argument("--format", choices=("text", "dot"), default="text")
    s.add_argument("-o", "--output", help="write to this file instead of stdout")


def add_check(add: Add) -> None:
    s = add("check", cmd_check, "verify a graph: SSA, types, shapes, op attributes, Expr well-formedness")
    s.add_argument("file", help=MODEL_HELP)


def add_eval(add: Add) -> None:
    s = add("eval", cmd_eval, "evaluate a graph with the NumPy reference interpreter")
    s.add_argument("file", help=MODEL_HELP)
    add_input_arguments(s, "seeded random inputs", "size of a symbolic dim for --random (default 4)")
    s.add_argument("--f64", action="store_true", help="compute floating tensors in float64")
    s.add_argument("-o", "--output", metavar="OUT.npz", help="write the outputs here")


def add_export(add: Add) -> None:
    s = add("export", cmd_export, "write a graph as an ONNX model (for Netron or onnxruntime)")
    s.add_argument("file", help=MODEL_HELP)
    s.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    s.add_argument("--opset", type=int, default=18, help="ONNX opset to target (default 18)")
