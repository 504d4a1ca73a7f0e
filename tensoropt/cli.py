"""The ``tensoropt`` command line: a thin layer over :mod:`tensoropt.api`.

Contract: bad input of any kind (unreadable file, malformed text, unknown op,
shape mismatch, bad pipeline, missing input) prints ONE line
``tensoropt: error: ...`` naming what and where, and exits 2. Output files are
written atomically, so a failure never leaves a half-written file. ``--json``
makes every command print one JSON object on stdout instead of tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import EvalError, InputFileError, TensoroptError

EXIT_USAGE = 2


# --------------------------------------------------------------------------
# output helpers


def _console():  # rich is imported lazily: `tensoropt --help` stays fast
    from rich.console import Console

    return Console(highlight=False)


def _emit_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in _NUMERIC_COLUMNS else "left")
    for r in rows:
        t.add_row(*(str(x) for x in r))
    return t


_NUMERIC_COLUMNS = {"ms", "nodes before", "nodes after", "min", "max", "mean", "value", "MFLOP", "KiB", "count"}


def _parse_bindings(items: Sequence[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, val = item.partition("=")
        if not sep or not name or not val.lstrip("-").isdigit() or int(val) < 0:
            raise InputFileError(f"--bind {item!r}: expected SYMBOL=SIZE with SIZE >= 0, e.g. --bind seq=8")
        out[name] = int(val)
    return out


def _check_output_path(out: str, suffixes: Sequence[str], flag: str = "-o") -> Path:
    p = Path(out)
    if p.suffix not in suffixes:
        raise InputFileError(f"{flag} {out}: output must end in {' or '.join(suffixes)}")
    if not p.parent.exists():
        raise InputFileError(f"{flag} {out}: folder {p.parent} does not exist")
    return p


# --------------------------------------------------------------------------
# commands


def cmd_show(args: argparse.Namespace) -> int:
    from . import api
    from .ir.printer import print_graph

    g = api.load(args.file)
    if args.format == "dot":
        from .ir.dot import to_dot

        text = to_dot(g)
    else:
        text = print_graph(g)
    if args.output:
        from .atomic import atomic_write_text

        out = _check_output_path(args.output, (".dot", ".gv") if args.format == "dot" else api.TEXT_SUFFIXES)
        atomic_write_text(out, text)
    if args.json:
        _emit_json({"file": args.file, "format": args.format, "text": text, "summary": api.graph_summary(g)})
    elif not args.output:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from . import api

    g = api.load(args.file)
    api.verify(g)
    s = api.graph_summary(g)
    if args.json:
        _emit_json({"file": args.file, "ok": True, **s})
        return 0
    ins = ", ".join(f"%{k}: {t}" for k, t in s["inputs"].items())
    outs = ", ".join(f"%{k}: {t}" for k, t in s["outputs"].items())
    print(f"{args.file}: ok: graph {g.name}, {s['nodes']} nodes, {s['constants']} constants; inputs {ins}; outputs {outs}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from . import api

    g = api.load(args.file)
    api.verify(g)
    out_path = _check_output_path(args.output, (".npz",)) if args.output else None
    binds = _parse_bindings(args.bind)
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
        _emit_json({"file": args.file, "seconds": seconds, "outputs": rows,
                    "written": str(out_path) if out_path else None})
        return 0
    con = _console()
    con.print(_table(f"{args.file}: {len(g.nodes)} nodes evaluated in {seconds * 1e3:.1f} ms",
                     ["output", "shape", "dtype", "min", "max", "mean"],
                     [[f"%{r['name']}", r["shape"], r["dtype"], _fmt(r.get("min")), _fmt(r.get("max")),
                       _fmt(r.get("mean"))] for r in rows]))
    if out_path:
        con.print(f"wrote {out_path}")
    return 0


def _fmt(x: object) -> str:
    return "-" if x is None else f"{x:.5g}" if isinstance(x, float) else str(x)


def cmd_opt(args: argparse.Namespace) -> int:
    from . import api
    from .passes.pipeline import parse_pipeline

    passes = parse_pipeline(args.pipeline)  # fail on a bad pipeline before loading anything big
    out_path = _check_output_path(args.output, api.TEXT_SUFFIXES) if args.output else None
    g = api.load(args.file)
    api.verify(g)
    new, reports = api.optimize(g, passes)
    if out_path is not None:
        api.save(new, out_path)
    rows = api.report_rows(reports)
    if args.json:
        _emit_json({"file": args.file, "pipeline": args.pipeline, "passes": rows,
                    "written": str(out_path) if out_path else None, "summary": api.graph_summary(new)})
        return 0
    con = _console()
    con.print(_table(f"{args.file}: pipeline {args.pipeline}", ["pass", "ms", "nodes before", "nodes after"],
                     [[r["pass"], f"{r['ms']:.2f}", r["nodes_before"], r["nodes_after"]] for r in rows]))
    if out_path:
        con.print(f"wrote {out_path}")
    else:
        from .ir.printer import print_graph

        sys.stdout.write(print_graph(new))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from . import api

    g = api.load(args.file)
    out = _check_output_path(args.output, (".onnx",))
    api.export_onnx(g, out, opset=args.opset)  # verifies the graph first
    if args.json:
        _emit_json({"file": args.file, "output": str(out), "opset": args.opset, "nodes": len(g.nodes),
                    "bytes": out.stat().st_size})
    else:
        print(f"{args.file}: wrote {out} (ONNX opset {args.opset}, {len(g.nodes)} nodes, "
              f"{out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_passes(args: argparse.Namespace) -> int:
    from .passes.pipeline import PASSES, pass_options

    rows = [{"name": name, "doc": (cls.__doc__ or "").strip().splitlines()[0],
             "options": {o: t for o, t in pass_options(cls).items()}} for name, cls in sorted(PASSES.items())]
    if args.json:
        _emit_json({"passes": rows})
        return 0
    _console().print(_table("passes", ["pass", "options", "what it does"],
                            [[r["name"], ", ".join(f"{k}: {v}" for k, v in r["options"].items()) or "-", r["doc"]]
                             for r in rows]))
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from .ops import REGISTRY

    rows = [{"name": r.name, "category": r.category, "has_expr": r.expr is not None,
             "attrs": [a.name for a in r.attrs], "doc": r.doc} for r in sorted(REGISTRY.values(), key=lambda r: r.name)]
    if args.json:
        _emit_json({"ops": rows})
        return 0
    _console().print(_table(f"{len(rows)} registered ops (plus the generic expr op)",
                            ["op", "category", "expr", "attributes"],
                            [[r["name"], r["category"], "yes" if r["has_expr"] else "-", ", ".join(r["attrs"]) or "-"]
                             for r in rows]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.file, pipeline=args.pipeline, as_json=args.json)


# --------------------------------------------------------------------------
# argument parsing

_EXAMPLES = {
    "show": "tensoropt show examples/conv_block.top --format dot -o conv.dot",
    "check": "tensoropt check examples/mlp.top",
    "eval": "tensoropt eval examples/attention.top --random --bind seq=16 -o out.npz",
    "opt": "tensoropt opt examples/conv_block.top -p 'fold-constants,cse,dce,fuse-elementwise' -o opt.top",
    "export": "tensoropt export examples/mlp.top -o mlp.onnx",
    "passes": "tensoropt passes --json",
    "ops": "tensoropt ops",
    "demo": "tensoropt demo",
    "compile": "tensoropt compile examples/conv_block.top -o conv_block.tvm && tensoropt run conv_block.tvm --bind batch=2",
    "run": "tensoropt run conv_block.tvm --inputs in.npz -o out.npz",
    "derive": "tensoropt derive 'L[n:1, f:64, h:7, w:7] Sum[c:64, r:3, s:3] { %X[n, c, h + r - 1, w + s - 1] * %K[f, c, r, s] }' --shapes X=1x64x7x7,K=64x64x3x3 --depth 2",
    "bench": "tensoropt bench examples/mlp.top --against onnxruntime,tvm-relax -o bench.json --plot bench.png",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tensoropt",
        description="tensoropt: a tensor program optimizer (ONNX/PyTorch/text IR in, passes, reference interpreter, TVM-compiled code and ONNX out).",
        epilog="example: " + _EXAMPLES["opt"],
    )
    p.add_argument("--version", action="version", version=f"tensoropt {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=f"example: {_EXAMPLES[name]}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(func=fn)
        sp.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
        return sp

    model_help = "model file: .top (text IR), .onnx or .pt2 (torch.export.save)"
    s = add("show", cmd_show, "print a graph in the canonical text format or as Graphviz dot")
    s.add_argument("file", help=model_help)
    s.add_argument("--format", choices=("text", "dot"), default="text")
    s.add_argument("-o", "--output", help="write to this file instead of stdout")

    s = add("check", cmd_check, "verify a graph: SSA, types, shapes, op attributes, Expr well-formedness")
    s.add_argument("file", help=model_help)

    s = add("eval", cmd_eval, "evaluate a graph with the NumPy reference interpreter")
    s.add_argument("file", help=model_help)
    src = s.add_mutually_exclusive_group()
    src.add_argument("--inputs", metavar="IN.npz", help="input arrays by input name")
    src.add_argument("--random", action="store_true", help="seeded random inputs")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--bind", action="append", default=[], metavar="SYM=N",
                   help="size of a symbolic dim for --random (default 4)")
    s.add_argument("--f64", action="store_true", help="compute floating tensors in float64")
    s.add_argument("-o", "--output", metavar="OUT.npz", help="write the outputs here")

    s = add("opt", cmd_opt, "run a pass pipeline and write the optimized graph")
    s.add_argument("file", help=model_help)
    s.add_argument("-p", "--pipeline", required=True, help="e.g. 'dce,fold-constants,cse' or 'pass{opt=1}'")
    s.add_argument("-o", "--output", metavar="OUT.top", help="write here (+ OUT.npz weights); else print")

    s = add("export", cmd_export, "write a graph as an ONNX model (for Netron or onnxruntime)")
    s.add_argument("file", help=model_help)
    s.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    s.add_argument("--opset", type=int, default=18, help="ONNX opset to target (default 18)")

    add("passes", cmd_passes, "list the passes and their options")
    add("ops", cmd_ops, "list the registered ops")

    from .cli_compile import add_commands

    add_commands(add, model_help)

    from .cli_derive import add_command as add_derive

    add_derive(add, model_help)

    s = add("demo", cmd_demo, "run the bundled example end to end and print a report")
    s.add_argument("file", nargs="?", default=None, help="example to use (default: the bundled conv block)")
    s.add_argument("-p", "--pipeline", default=None, help="pipeline to run (default: the demo's)")
    return p


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except TensoroptError as e:
        print(f"tensoropt: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # unreadable/unwritable files: name the path
        where = e.filename or getattr(args, "file", "?")
        print(f"tensoropt: error: {where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tensoropt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in tensoropt, not bad input: say so, traceback on request
        if os.environ.get("TENSOROPT_DEBUG"):
            raise
        print(f"tensoropt: internal error: {type(e).__name__}: {_one_line(str(e))} "
              "(set TENSOROPT_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 1


def _one_line(msg: str) -> str:
    return " ".join(msg.split()) if "\n" in msg else msg


if __name__ == "__main__":
    sys.exit(main())
