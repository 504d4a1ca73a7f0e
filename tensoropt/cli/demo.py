"""CLI command ``demo``: the bundled example end to end (the report itself is
:mod:`tensoropt.demo`)."""

from __future__ import annotations

import argparse

from .common import Add


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(args.file, pipeline=args.pipeline, as_json=args.json)


def add_demo(add: Add) -> None:
    s = add("demo", cmd_demo, "run the bundled example end to end and print a report")
    s.add_argument("file", nargs="?", default=None, help="example to use (default: the bundled conv block)")
    s.add_argument("-p", "--pipeline", default=None, help="pipeline to run (default: the demo's)")
