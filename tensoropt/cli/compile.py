"""CLI commands around compiled models: ``compile`` and ``run``.

Same contract as :mod:`tensoropt.cli`: bad input is one line and exit 2; the
artifact directory is written atomically; ``--json`` prints one JSON object
and no progress.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .common import (
    MODEL_HELP,
    Add,
    add_input_arguments,
    build_progress,
    check_output_path,
    console,
    parse_bindings,
    table,
)


def fallback_lines(fallbacks: list[dict[str, Any]]) -> list[str]:
    """What ``tensoropt compile`` prints about fallbacks: a count, then one line each (none when empty)."""
    if not fallbacks:
        return []
    bugs = sum(1 for f in fallbacks if f.get("bug"))
    n = len(fallbacks)
    head = (f"  {n} fallback{'s' if n != 1 else ''} (kernels that run slower code than planned"
            + (f"; {bugs} from bugs in tensoropt or TVM" if bugs else "") + "):")
    return [head] + [f"    {f['kernel']} [{f['stage']}{', bug' if f.get('bug') else ''}]: {f['reason']}"
                     for f in fallbacks]


def cmd_compile(args: argparse.Namespace) -> int:
    from ..compiler import FallbackWarning
    from ..compiler import compile as compile_model

    from ..runtime.artifact import check_overwritable

    out = Path(args.output)
    check_overwritable(out)  # before the (long) compile, not after
    t0 = time.perf_counter()
    with build_progress(not args.json and sys.stderr.isatty()) as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)  # listed below, one line each, not as a Python warning
        model = compile_model(args.file, pipeline=args.pipeline, target=args.target, progress=progress)
    model.save(out)
    seconds = time.perf_counter() - t0
    m = model.manifest
    fallbacks = list(m.get("fallbacks", []))
    if args.json:
        print(json.dumps({"artifact": str(out), "seconds": round(seconds, 3), "target": args.target,
                          "inputs": m["inputs"], "outputs": m["outputs"], "kernels": m["kernels"],
                          "fallbacks": fallbacks, "build_seconds": m["build_seconds"]}, indent=2))
        return 0
    from rich.console import Console

    c = Console(highlight=False, markup=False)
    rules: dict[str, int] = {}
    for r in m["kernels"].values():
        rules[r] = rules.get(r, 0) + 1
    ins = ", ".join(f"{d['name']}: {d['dtype']}[{', '.join(map(str, d['shape']))}]" for d in m["inputs"])
    c.print(f"compiled {args.file} for {args.target} in {seconds:.2f} s -> {out}/")
    c.print(f"  inputs: {ins}")
    c.print(f"  {len(m['kernels'])} kernels: " + ", ".join(f"{n} {r}" for r, n in sorted(rules.items())))
    for k, line in enumerate(fallback_lines(fallbacks)):
        c.print(line, style="bold yellow" if k == 0 else "yellow", soft_wrap=True)
    c.print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in m["build_seconds"].items()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .. import api
    from ..compiler import load_compiled

    model = load_compiled(args.artifact)
    if args.inputs:
        from ..ir.io import read_npz

        inputs = read_npz(Path(args.inputs), what="inputs")
    else:
        binds = parse_bindings(args.bind)
        api.check_bindings(model.inputs, binds, what="compiled model")
        inputs = api.random_values(model.inputs, seed=args.seed, bindings=binds)
    t0 = time.perf_counter()
    outputs = model.run(inputs)
    ms = (time.perf_counter() - t0) * 1e3
    if args.output:
        api.write_npz(check_output_path(args.output, (".npz",)), outputs)
    rows = api.summarize(outputs)
    if args.json:
        print(json.dumps({"artifact": str(args.artifact), "ms": round(ms, 3), "outputs": rows,
                          "written": args.output}, indent=2, default=str))
        return 0
    c = console()
    c.print(table(f"{model.name} ({model.target}, {ms:.2f} ms)", list(rows[0]) if rows else ["name"],
                   [list(r.values()) for r in rows]))
    if args.output:
        c.print(f"wrote {args.output}")
    return 0


def add_compile(add: Add) -> None:
    s = add("compile", cmd_compile, "compile a model with TVM into an artifact directory")
    s.add_argument("file", help=MODEL_HELP)
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="artifact directory to write")
    s.add_argument("-p", "--pipeline", default=None, help="passes to run first (as for `tensoropt opt`)")
    s.add_argument("--target", choices=("llvm", "cuda"), default="llvm",
                   help="llvm: this CPU (its features and cores); cuda: NVIDIA GPUs (builds without one)")


def add_run(add: Add) -> None:
    s = add("run", cmd_run, "run a compiled artifact on inputs")
    s.add_argument("artifact", metavar="DIR", help="directory written by `tensoropt compile`")
    add_input_arguments(s, "seeded random inputs (the default)", "size of a symbolic dim for random inputs (default 4)")
    s.add_argument("-o", "--output", metavar="OUT.npz", help="write the outputs here")
