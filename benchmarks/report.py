"""The performance tables of README.md and docs/, rendered from the results JSON.

Figures are never typed by hand. Each table lives in a document between two
markers,

    <!-- report:NAME -->
    ...generated...
    <!-- /report:NAME -->

and this script rewrites what is between them from ``benchmarks/results/``:

- ``model_speed`` (whole models against onnxruntime and PyTorch),
- ``symbolic_speed`` (symbolic dims against their static twins),
- ``conv_transpose_speed`` (every ConvTranspose layer and model against
  PyTorch) and ``conv_transpose_forms`` (every form of each layer),

each with the machine and date of its run.

    python benchmarks/report.py            # rewrite every marked table in README.md and docs/*.md
    python benchmarks/report.py --check    # exit 1 naming each table that differs from its JSON
    python benchmarks/report.py --print NAME...   # print tables

``tests/test_report.py`` runs the check, so a README cannot drift from its
data. A marker naming an unknown table, or an unclosed one, is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
if str(HERE) not in sys.path:  # the benchmark scripts' own markdown helpers
    sys.path.insert(0, str(HERE))


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"


def model_speed() -> str:
    import model_speed as ms

    doc = _load("model_speed")
    rows = [r for r in doc["models"] if "error" not in r]
    ratios = [ms.side(r, "onnxruntime")["ratio"] for r in rows
              if ms.side(r, "onnxruntime") and ms.side(r, "onnxruntime")["status"] == "ok"]
    return (ms.markdown(doc["models"]) + f"\n\n{_machine(doc)}; {doc['date']}; ratio vs onnxruntime: worst "
            f"{max(ratios):.2f}, geometric mean {statistics.geometric_mean(ratios):.2f}")


def symbolic_speed() -> str:
    import symbolic_speed as ss

    doc = _load("symbolic_speed")
    ratios = [s["ratio"] for r in doc["models"] if "error" not in r for s in r["sizes"]]
    return (ss.markdown(doc["models"]) + f"\n\n{_machine(doc)}; {doc['date']}; worst ratio {max(ratios):.2f}, "
            f"geometric mean {statistics.geometric_mean(ratios):.2f}")


def _cell(side: dict[str, Any] | None) -> str:
    return "-" if side is None else f"{side['median_ms']:.3g} ({side['min_ms']:.3g})"


def conv_transpose_speed() -> str:
    doc = _load("conv_transpose_speed")
    lines = ["| layer | chosen form | tensoropt ms | PyTorch ms | ratio | Expr path before (ms) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in [*doc["layers"], *doc["models"]]:
        s = row["sides"]
        to, pt = s.get("tensoropt"), s.get("pytorch")
        ratio = f"**{to['median_ms'] / pt['median_ms']:.2f}**" if to and pt else "-"
        gen = s.get("generic")
        lines.append(f"| {row['name']} | {row.get('chosen_form', '(model)')} | {_cell(to)} | {_cell(pt)} | {ratio} | "
                     f"{'-' if gen is None else format(gen['median_ms'], '.4g')} |")
    return "\n".join(lines) + (f"\n\n{_machine(doc)}; {doc.get('rounds', '?')} interleaved rounds; "
                               "median (min) ms, 2 threads per side")


#: the forms in conv_transpose_speed.json, in docs/codegen.md's column order
CT_FORMS = ("subpixel", "zero_insert", "col2im", "col2im_t", "subpixel_wcopy")


def conv_transpose_forms() -> str:
    """docs/codegen.md's per-form tables: 2-thread wall clock and 1-thread CPU time."""
    doc = _load("conv_transpose_speed")
    out = []
    for title, rows, key in (("Wall clock, 2 threads, ms: median (min)", doc["layers"], "wall"),
                             (f"Single-thread CPU time per call, ms ({doc.get('cpu1_timing', '')})",
                              doc.get("cpu1", []), "cpu1")):
        out += [title + ":", "", "| layer | tensoropt | PyTorch | ratio | " + " | ".join(CT_FORMS) + " |",
                "|---|---|---|---|" + "---|" * len(CT_FORMS)]
        for row in rows:
            s = row["sides"]

            def cell(name: str) -> str:
                side = s.get(name)
                if side is None:
                    return "n/a"
                return f"{side['median_ms']:.3g}" + (f" ({side['min_ms']:.3g})" if key == "wall" else "")

            ratio = s["tensoropt"]["median_ms"] / s["pytorch"]["median_ms"]
            out.append(f"| {row['name']} | {cell('tensoropt')} | {cell('pytorch')} | {ratio:.2f} | "
                       + " | ".join(cell(f) for f in CT_FORMS) + " |")
        out.append("")
    return "\n".join(out) + f"{_machine(doc)}; {doc.get('rounds', '?')} interleaved rounds"


TABLES: dict[str, Callable[[], str]] = {
    "model_speed": model_speed, "symbolic_speed": symbolic_speed, "conv_transpose_speed": conv_transpose_speed,
    "conv_transpose_forms": conv_transpose_forms,
}


#: the documents whose marked tables this script keeps
DOCS = (HERE.parent / "README.md", *sorted((HERE.parent / "docs").glob("*.md")))

_MARK = re.compile(r"^<!-- report:(?P<name>[a-z0-9_]+) -->$\n(?P<body>.*?)^<!-- /report:(?P=name) -->$",
                   re.M | re.S)


class ReportError(Exception):
    """A document's markers are wrong (unknown table, unclosed block)."""


def blocks(text: str, where: str) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of each marked table body in ``text``."""
    out = [(m["name"], m.start("body"), m.end("body")) for m in _MARK.finditer(text)]
    for name, *_ in out:
        if name not in TABLES:
            raise ReportError(f"{where}: unknown table {name!r} (known: {', '.join(TABLES)})")
    opened = re.findall(r"^<!-- report:([a-z0-9_]+) -->$", text, re.M)
    if len(opened) != len(out):
        closed = {n for n, *_ in out}
        raise ReportError(f"{where}: table {next(n for n in opened if n not in closed)!r} has no "
                          "<!-- /report:NAME --> end marker")
    return out


def render(text: str, where: str) -> tuple[str, list[str]]:
    """``text`` with every marked table regenerated, and the names of those that changed."""
    changed, pieces, last = [], [], 0
    for name, start, end in blocks(text, where):
        new = TABLES[name]().rstrip("\n") + "\n"
        if text[start:end] != new:
            changed.append(name)
        pieces += [text[last:start], new]
        last = end
    return "".join(pieces) + text[last:], changed


def stale() -> list[str]:
    """``doc: table`` for every marked table that differs from what its JSON renders."""
    out = []
    for doc in DOCS:
        _, changed = render(doc.read_text(), doc.name)
        out += [f"{doc.relative_to(HERE.parent)}: {n}" for n in changed]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from its JSON")
    ap.add_argument("--print", nargs="+", metavar="NAME", dest="names", help=f"print tables: {', '.join(TABLES)}")
    args = ap.parse_args()
    try:
        if args.names:
            bad = [n for n in args.names if n not in TABLES]
            if bad:
                print(f"report: unknown table {bad[0]!r}; known: {', '.join(TABLES)}", file=sys.stderr)
                return 2
            for n in args.names:
                print(TABLES[n]())
            return 0
        if args.check:
            out = stale()
            for line in out:
                print(f"stale: {line} (run python benchmarks/report.py)")
            return 1 if out else 0
        for doc in DOCS:
            new, changed = render(doc.read_text(), doc.name)
            if changed:
                tmp = doc.with_suffix(doc.suffix + ".tmp")
                tmp.write_text(new)
                os.replace(tmp, doc)  # atomic: a reader never sees half a README
                print(f"{doc.relative_to(HERE.parent)}: regenerated {', '.join(changed)}")
        return 0
    except ReportError as e:
        print(f"report: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
