"""The ``tensoropt`` argument parser and dispatch: every command module's
``add_<command>`` in ``--help`` order, and the one place that turns an
exception into a message and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from ..errors import TensoroptError
from . import bench, compile, demo, derive, graph, listing, opt
from .common import EXIT_USAGE

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

# The order `tensoropt --help` lists the commands in.
_COMMANDS = (graph.add_show, graph.add_check, graph.add_eval, opt.add_opt, graph.add_export,
             listing.add_passes, listing.add_ops, compile.add_compile, compile.add_run, bench.add_bench,
             derive.add_derive, demo.add_demo)


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

    for add_command in _COMMANDS:
        add_command(add)
    return p


def _version() -> str:
    from .. import __version__

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
