"""CLI commands that list the registries: ``passes`` (with their options)
and ``ops``."""

from __future__ import annotations

import argparse

from .common import Add, console, emit_json, table


def cmd_passes(args: argparse.Namespace) -> int:
    from ..passes.pipeline import PASSES, pass_options

    rows = [{"name": name, "doc": (cls.__doc__ or "").strip().splitlines()[0],
             "options": {o: t for o, t in pass_options(cls).items()}} for name, cls in sorted(PASSES.items())]
    if args.json:
        emit_json({"passes": rows})
        return 0
    console().print(table("passes", ["pass", "options", "what it does"],
                          [[r["name"], ", ".join(f"{k}: {v}" for k, v in r["options"].items()) or "-", r["doc"]]
                           for r in rows]))
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from ..ops import REGISTRY

    rows = [{"name": r.name, "category": r.category, "has_expr": r.expr is not None,
             "attrs": [a.name for a in r.attrs], "doc": r.doc} for r in sorted(REGISTRY.values(), key=lambda r: r.name)]
    if args.json:
        emit_json({"ops": rows})
        return 0
    console().print(table(f"{len(rows)} registered ops (plus the generic expr op)",
                          ["op", "category", "expr", "attributes"],
                          [[r["name"], r["category"], "yes" if r["has_expr"] else "-", ", ".join(r["attrs"]) or "-"]
                           for r in rows]))
    return 0


def add_passes(add: Add) -> None:
    add("passes", cmd_passes, "list the passes and their options")


def add_ops(add: Add) -> None:
    add("ops", cmd_ops, "list the registered ops")
