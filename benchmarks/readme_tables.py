"""The README's codegen tables, rendered from the benchmark results JSON.

README figures are never typed by hand: after a benchmark run, this prints
the markdown the README carries for

- ``model_speed.json`` (whole models against onnxruntime and PyTorch),
- ``symbolic_speed.json`` (symbolic dims against their static twins),
- ``conv_transpose_speed.json`` (every ConvTranspose layer and model against
  PyTorch; and, for docs/codegen.md, every form of each layer),

each with the date and machine of its run.

    python benchmarks/readme_tables.py [model_speed|symbolic_speed|conv_transpose_speed|conv_transpose_forms ...]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


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


def main() -> None:
    sys.path.insert(0, str(HERE))
    names = sys.argv[1:] or list(TABLES)
    bad = [n for n in names if n not in TABLES]
    if bad:
        sys.exit(f"readme_tables: unknown table {bad[0]!r}; known: {', '.join(TABLES)}")
    for n in names:
        print(f"<!-- {n}: python benchmarks/readme_tables.py {n} -->\n{TABLES[n]()}\n")


if __name__ == "__main__":
    main()
