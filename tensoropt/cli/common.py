"""Helpers every CLI command shares: tables and JSON on stdout, the compile
progress bars on stderr, ``--bind`` parsing and output-path checks.

This module imports nothing else of :mod:`tensoropt.cli`, so command modules
import from here and never from each other or from :mod:`tensoropt.cli.main`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..errors import InputFileError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

EXIT_USAGE = 2

#: what ``tensoropt --help`` shows for a command's model-file argument.
MODEL_HELP = "model file: .top (text IR), .onnx or .pt2 (torch.export.save)"

NUMERIC_COLUMNS = {"ms", "nodes before", "nodes after", "min", "max", "mean", "value", "MFLOP", "KiB", "count"}

#: the ``add(name, cmd, help)`` helper of :func:`tensoropt.cli.main.build_parser`: it makes the
#: subparser (with ``--json``) that a command module's ``add_<command>(add)`` fills in.
Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]

STAGE_TEXT = {"lower": "lowering nodes", "schedule": "scheduling kernels", "compile": "building library"}


def console() -> Console:  # rich is imported lazily: `tensoropt --help` stays fast
    from rich.console import Console

    return Console(highlight=False)


def emit_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2, default=str))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in NUMERIC_COLUMNS else "left")
    for r in rows:
        t.add_row(*(str(x) for x in r))
    return t


def add_input_arguments(s: argparse.ArgumentParser, random_help: str, bind_help: str) -> None:
    """``--inputs IN.npz`` or ``--random`` (exclusive), ``--seed`` and ``--bind SYM=N``:
    where a command that runs a model gets its inputs."""
    src = s.add_mutually_exclusive_group()
    src.add_argument("--inputs", metavar="IN.npz", help="input arrays by input name")
    src.add_argument("--random", action="store_true", help=random_help)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--bind", action="append", default=[], metavar="SYM=N", help=bind_help)


def parse_bindings(items: Sequence[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, val = item.partition("=")
        if not sep or not name or not val.lstrip("-").isdigit() or int(val) < 0:
            raise InputFileError(f"--bind {item!r}: expected SYMBOL=SIZE with SIZE >= 0, e.g. --bind seq=8")
        out[name] = int(val)
    return out


def check_output_path(out: str, suffixes: Sequence[str], flag: str = "-o") -> Path:
    p = Path(out)
    if p.suffix not in suffixes:
        raise InputFileError(f"{flag} {out}: output must end in {' or '.join(suffixes)}")
    if not p.parent.exists():
        raise InputFileError(f"{flag} {out}: folder {p.parent} does not exist")
    return p


def status_line(prefix: str, enabled: bool) -> Callable[[str], None] | None:
    """A ``status(msg)`` callback overwriting one line on stderr (None if disabled: not a terminal, --json)."""
    if not enabled:
        return None

    def status(msg: str) -> None:
        print(f"\r{prefix}: {msg[:70]:<70}", end="", file=sys.stderr, flush=True)

    return status


@contextlib.contextmanager
def build_progress(enabled: bool) -> Iterator[Callable[[str, int, int, str], None] | None]:
    """A ``progress(stage, done, total, item)`` callback drawing rich bars on stderr (None if disabled)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    con = Console(stderr=True)
    with Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[item]}"), console=con,
                  transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int, item: str) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_TEXT.get(stage, stage), total=total, item="")
            bar.update(tasks[stage], completed=done, total=total, item=item)

        yield progress
