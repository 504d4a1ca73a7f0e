"""``tensoropt bench``: a compiled model's speed side by side with onnxruntime, PyTorch and TVM's own path.

Same contract as :mod:`tensoropt.cli`: bad options are one line and exit 2
(checked before anything is compiled); the JSON and PNG are written
atomically; ``--json`` prints one JSON object and no progress. A peer that
fails is a row of the report, not an error.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..bench import DEFAULT_PEERS, PEERS
from .common import MODEL_HELP, Add, build_progress, check_output_path, console, parse_bindings


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import bench

    peers = bench.parse_against(args.against)
    binds = parse_bindings(args.bind)
    json_out = check_output_path(args.output, (".json",)) if args.output else None
    png_out = check_output_path(args.plot, (".png",), flag="--plot") if args.plot else None
    if args.threads is not None and args.threads < 1:
        raise bench.BenchError(f"--threads {args.threads}: must be >= 1")
    interactive = not args.json and sys.stderr.isatty()

    def log(msg: str) -> None:
        if interactive:
            print(f"bench: {msg}", file=sys.stderr, flush=True)

    with build_progress(interactive) as progress:
        report = bench.bench(args.file, against=peers, repeat=args.repeat, warmup=args.warmup, seed=args.seed,
                             bindings=binds, threads=args.threads, pipeline=args.pipeline,
                             random_weights=args.random_weights, log=log, compile_progress=progress)
    if json_out is not None:
        bench.write_json(report, json_out)
    if png_out is not None:
        bench.write_plot(report, png_out)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    con = console()
    con.print(bench.table(report))
    m = report["machine"]
    con.print(f"  machine: {m['cpu']}, {m['cores']} cores; TVM {m['tvm']}, onnxruntime {m['onnxruntime']}, "
              f"torch {m['torch']}")
    for path in (json_out, png_out):
        if path is not None:
            con.print(f"wrote {path}")
    return 0


def add_bench(add: Add) -> None:
    s = add("bench", cmd_bench, "time a model compiled by tensoropt against onnxruntime, PyTorch and TVM's default path")
    s.add_argument("file", help=MODEL_HELP)
    s.add_argument("--against", default=",".join(DEFAULT_PEERS), metavar="PEERS",
                   help=f"comma-separated peers from {', '.join(PEERS)} (default: {','.join(DEFAULT_PEERS)}; "
                        "tvm-relax builds slowly)")
    s.add_argument("--repeat", type=int, default=20, help="timed calls per side (default 20)")
    s.add_argument("--warmup", type=int, default=3, help="untimed calls per side first (default 3)")
    s.add_argument("--bind", action="append", default=[], metavar="SYM=N",
                   help="size of a symbolic dim of the random inputs (default 4)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random inputs (and weights)")
    s.add_argument("--random-weights", action="store_true",
                   help="ONNX models: seeded He-scaled random weights, final Softmax cut (for models whose "
                        "weights are constants, such as the ONNX wheel's light models)")
    s.add_argument("--threads", type=int, default=None,
                   help="threads for every side (default: all cores)")
    s.add_argument("-p", "--pipeline", default=None, help="passes to run before compiling (as for `tensoropt opt`)")
    s.add_argument("-o", "--output", metavar="OUT.json", help="write the report as JSON here")
    s.add_argument("--plot", metavar="OUT.png", help="write a bar chart of the medians here")
