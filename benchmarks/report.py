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
- ``interp_speed`` (the reference interpreter against PyTorch eager),
- ``onnx_conformance`` (ONNX's node cases through each backend) and
  ``onnx_import_speed`` (import time against an onnxruntime session),
- ``gemm_speed`` (scheduled GEMMs and conv forms against NumPy and PyTorch),
- ``derive_references`` (OLLIE's four derivations found by search),
  ``derive_ops`` (operators, direct against derived) and ``derive_e2e``
  (whole models with and without the ``derive`` pass),

each with the machine and date of its run ("date not recorded" where the JSON
has none).

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
    """CPU (with family/model numbers and LLVM's name for it when recorded) and core count."""
    m = doc.get("machine", {})
    if not isinstance(m, dict):  # older files: one free-text line
        return str(m)
    isa = m.get("isa") or {}
    widest = next((f for f in ("avx512f", "avx2", "sve", "asimd") if f in isa.get("vector_flags", ())), None)
    llvm = ", ".join(x for x in (isa.get("llvm_cpu"), widest and widest.upper().replace("F", "")) if x)
    return f"{m.get('cpu_id') or m.get('cpu', '?')}{f' [{llvm}]' if llvm else ''}, {m.get('cores', '?')} cores"


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
    return "\n".join(lines) + (f"\n\n{_machine(doc)}; {_date(doc)}; {doc.get('rounds', '?')} interleaved rounds; "
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


def _date(doc: dict[str, Any]) -> str:
    """The run's date from ``doc``, or say that the JSON has none."""
    return doc.get("date") or doc.get("meta", {}).get("date") or "date not recorded"


def _secs(s: float) -> str:
    """A search time as the README writes it: 0.004 s, 4.9 s, 101 s."""
    return f"{s:.3g} s" if s < 1 else f"{s:.1f} s" if s < 100 else f"{s:.0f} s"


def _count(n: float) -> str:
    """A state count in thousands or millions: 18K, 2.2M."""
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}K" if n >= 1e3 else f"{n:,.0f}"


#: interp_speed.json's case ids, as the README describes them
INTERP_CASES = {
    "conv3x3-expr-f32": "3x3 conv, 1x64x56x56, 64 filters, as an Expr (`evaluate_expr`, f32)",
    "conv3x3-expr-f64": "same, f64 (PyTorch side f32)",
    "conv3x3-op-f32": "same, `conv2d` op rule (f32)",
    "vgg19": "VGG-19, 1x3x224x224, random He weights (`run_graph`)",
}


def interp_speed() -> str:
    """The reference interpreter against PyTorch eager, medians of the interleaved samples."""
    doc = _load("interp_speed")
    meta = doc["meta"]
    lines = ["| case | tensoropt interpreter (ms) | PyTorch eager (ms) | ratio | samples | max rel diff |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in doc["cases"]:
        lines.append(f"| {INTERP_CASES.get(r['case'], r['case'])} | {r['tensoropt_median_s'] * 1e3:.3g} | "
                     f"{r['torch_median_s'] * 1e3:.3g} | {r['ratio']:.2f} | {len(r['tensoropt_s'])} | "
                     f"{_diff(r['max_rel_diff'])} |")
    cpu = (_machine(doc) if "machine" in doc
           else " ".join(x for x in (meta.get("machine", "?"), meta.get("processor")) if x) + f", {meta.get('cpus', '?')} cores")
    return "\n".join(lines) + (f"\n\n{cpu}; {_date(doc)}; torch "
                               f"{meta.get('torch', '?')} with {meta.get('torch_threads', '?')} threads; medians, ms")


#: onnx_conformance.json's peers, as the README names them
CONFORMANCE_PEERS = {
    "tensoropt": 'tensoropt (`mode="eval"`)',
    "tensoropt-compiled": 'tensoropt (`mode="compiled"`, TVM)',
    "tvm-relax": "TVM Relax `from_onnx`",
}


def onnx_conformance() -> str:
    """ONNX's node test cases through each backend: how many pass, fail, or are refused."""
    doc = _load("onnx_conformance")
    lines = ["| backend | pass | wrong answer | folded at import | unsupported (clear error) | other error | "
             "timeout or crash | ops fully passing | run time (s) |", "|---|---|---|---|---|---|---|---|---:|"]
    for peer, b in doc["backends"].items():
        st = b["statuses"]
        bold = (lambda x: f"**{x}**") if peer.startswith("tensoropt") else (lambda x: x)
        folded = st["folded"] if peer.startswith("tensoropt") else "-"
        passed = f"{st['pass']:,} ({b['pass_rate']:.1%})"
        lines.append(f"| {CONFORMANCE_PEERS.get(peer, peer)} | {bold(passed)} | "
                     f"{bold(st['wrong'])} | {folded} | {st['unsupported']} | {st['error']} | "
                     f"{st['timeout'] + st['crash']} | {len(b['ops_fully_passing'])} of {len(b['per_op'])} | "
                     f"{b['seconds']:.1f} |")
    m = doc.get("machine", "?")
    return "\n".join(lines) + (f"\n\n{m if isinstance(m, str) else _machine(doc)}; {_date(doc)}; "
                               f"{doc['cases']:,} cases, onnx {doc.get('onnx', '?')}, {doc['limit_s']:.0f} s "
                               "limit per case")


def onnx_import_speed() -> str:
    """Import time of each light model against building an onnxruntime session of the same file."""
    doc = _load("onnx_import_speed")
    lines = ["| model | ONNX nodes -> IR nodes | tensoropt import (ms) | onnxruntime session (ms) | ratio |",
             "|---|---|---:|---:|---:|"]
    for r in doc["rows"]:
        lines.append(f"| {r['model']} | {r['nodes_onnx']:,} -> {r['nodes_ir']:,} | "
                     f"{r['tensoropt_median_s'] * 1e3:.0f} | {r['onnxruntime_median_s'] * 1e3:.0f} | "
                     f"{r['ratio']:.2f} |")
    m = doc.get("machine", "?")
    return "\n".join(lines) + (f"\n\n{m if isinstance(m, str) else _machine(doc)}; {_date(doc)}; medians of "
                               f"{doc.get('repeat', '?')}; onnx {doc.get('onnx', '?')}, onnxruntime "
                               f"{doc.get('onnxruntime', '?')}")


def _gf(row: dict[str, Any], side: str) -> str:
    """GFLOP/s at a side's median, and the range its quartile times give: ``184 (170-190)``."""
    st = row.get("sides", {}).get(side)
    if st is None:
        key = {"tensoropt": "ours_gflops"}.get(side, f"{side}_gflops")
        return f"{row[key]:.0f}" if key in row else "-"
    lo, hi = row["flops"] / (st["q3_ms"] * 1e-3) / 1e9, row["flops"] / (st["q1_ms"] * 1e-3) / 1e9
    return f"{st['gflops']:.0f} ({lo:.0f}-{hi:.0f})"


def _native(row: dict[str, Any]) -> str:
    return f"{row['ours_native_gflops']:.0f}" if "ours_native_gflops" in row else "-"


def gemm_speed() -> str:
    """tensoropt's scheduled GEMMs against NumPy (OpenBLAS) and PyTorch, and convolutions against PyTorch (GFLOP/s)."""
    doc = _load("gemm_speed")
    lines = ["| shape (M x N x K) | tensoropt | back to back | NumPy | PyTorch | ratio | schedule |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in doc["rows"]:
        if r["kind"] == "gemm":
            lines.append(f"| {r['name']} | {_gf(r, 'tensoropt')} | {_native(r)} | {_gf(r, 'numpy')} | "
                         f"{_gf(r, 'torch')} | {r['ratio']:.2f} | `{r['rule']}` |")
    lines += ["", "| convolution | direct | im2col + GEMM | tensoropt picks | back to back | PyTorch | ratio |",
              "|---|---:|---:|---|---:|---:|---:|"]
    for r in doc["rows"]:
        if r["kind"] == "conv2d":
            lines.append(f"| {r['name']} | {_gf(r, 'direct')} | {_gf(r, 'im2col')} | {r['auto_form']} | "
                         f"{_native(r)} | {_gf(r, 'torch')} | {r['ratio']:.2f} |")
    return "\n".join(lines) + (f"\n\nGFLOP/s at each side's median (in brackets: at its quartile times); back to "
                               f"back: tensoropt's kernel (the picked form) timed by TVM's timer, not interleaved; ratio: "
                               f"tensoropt / the best peer, medians (above 1: tensoropt is faster). "
                               f"{_machine(doc)}; {_date(doc)}; unscheduled TVM matmul 1024^3: "
                               f"{doc['unscheduled_1024_gflops']:.1f} GFLOP/s")


def derive_references() -> str:
    """OLLIE's four reference derivations: tensoropt's first hit and full search beside OLLIE's figures."""
    doc = _load("derive_references")
    lines = ["| derivation | first hit: depth (steps) | states | time | full search: depth reached | states | "
             "time | goal on the way | OLLIE: hit depth | states | time |",
             "|---|---|---:|---:|---|---:|---:|---|---|---:|---:|"]
    for r in doc["rows"]:
        f = r.get("full")
        if f:
            reach = f"{f['depth_completed']} of {f['depth_target']}" + (
                f" ({_secs(f['time_limit_s'])} limit)" if f["depth_completed"] < f["depth_target"] else "")
            goal = f"depth {f['goal_depth']}, after {f['goal_states']:,} states" if f["goal_found"] else "not found"
            full = f"{reach} | {f['states']:,} | {_secs(f['search_s'])} | {goal}"
        else:
            full = "not run | - | - | -"
        lines.append(f"| {r['derivation']} | {r['depth']} ({r['steps']}) | {r['states']:,} | {_secs(r['search_s'])} | "
                     f"{full} | {r['ollie_depth']} | {_count(r['ollie_states'])} | {_secs(r['ollie_search_s'])} |")
    rates = [f["states"] / f["search_s"] for r in doc["rows"] if (f := r.get("full")) and f["search_s"] > 0]
    ollie = [r["ollie_states"] / r["ollie_search_s"] for r in doc["rows"]]
    speed = (f"; states per second in the full search: tensoropt {min(rates):,.0f}-{max(rates):,.0f}, OLLIE "
             f"{min(ollie):,.0f}-{max(ollie):,.0f}") if rates else ""
    return "\n".join(lines) + (f"\n\n{_machine(doc) if 'machine' in doc else 'machine not recorded'}; "
                               f"{_date(doc)}; OLLIE's figures are its search to depth 7 (its artifact logs, "
                               f"its own machine){speed}")


def _kept(program: str) -> bool:
    """Whether derive kept the original program (no rewrite)."""
    return program in ("(original kept)", "(kept)")


def _ms(x: float) -> str:
    """Milliseconds to 3 significant digits, whole numbers from 1,000 on."""
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}"


def _diff(x: float) -> str:
    """A relative difference: 8.1e-07, or 0."""
    return f"{x:.1e}" if x else "0"


def _speedup(x: float) -> str:
    """A speedup: 743, 91.9, 3.51, 1.00."""
    return f"{x:.3g}" if x >= 10 else f"{x:.2f}"


def _method(doc: dict[str, Any]) -> str:
    """How a derive run timed its sides and which cost cache it used, when its JSON says."""
    if "cost_cache" not in doc:
        return ""
    return ("; every side timed the same way, interleaved (wall clock around a full call); "
            f"cost cache: {doc['cost_cache']}")


def derive_ops() -> str:
    """Each operator compiled directly and as its derived program, with PyTorch eager for context."""
    doc = _load("derive_ops")
    lines = ["| operator | direct ms | derived ms | speedup | PyTorch ms | derived program | depth | "
             "best candidate / original (search) |",
             "|---|---:|---:|---:|---:|---|---|---:|"]
    for r in doc["rows"]:
        derived = "(kept)" if _kept(r["program"]) else _ms(r["derived_ms"])
        torch = "-" if r["torch_ms"] is None else _ms(r["torch_ms"])
        best = min((m["ms"] for m in r.get("measured", [])), default=None)
        rel = f"{best / r['search_direct_ms']:.2f}" if best and r.get("search_direct_ms") else "-"
        lines.append(f"| {r['op']} | {_ms(r['direct_ms'])} | {derived} | {_speedup(r['speedup'])} | {torch} | "
                     f"{r['program']} | {r['depth']} | {rel} |")
    ct = [r["derived_ms"] / r["torch_ms"] for r in doc["rows"] if r["kind"] == "conv_transpose2d" and r["torch_ms"]]
    diff = max(r["max_rel_diff_vs_original"] for r in doc["rows"])
    return "\n".join(lines) + (f"\n\n{_machine(doc)}; {_date(doc)}; depth {doc['depth']}, "
                               f"{doc['search_seconds']:.0f} s of search per op; geometric mean speedup "
                               f"{doc['geomean_speedup']:.2f}x; derived ConvTranspose / PyTorch: "
                               f"{min(ct):.2f}-{max(ct):.2f}x; max rel diff {diff:.1e}" + _method(doc))


def derive_e2e() -> str:
    """Whole models compiled as is and after the derive pass, with PyTorch eager for context."""
    doc = _load("derive_e2e")
    lines = ["| model | direct ms | derived ms | speedup | PyTorch ms | nodes rewritten | max rel diff |",
             "|---|---:|---:|---:|---:|---|---:|"]
    speedups = []
    for r in doc["rows"]:
        won = [n for n in r["nodes"] if not _kept(n["derived"])]  # faster alone
        done = [n for n in won if n.get("in_model") != "reverted"]  # and kept by the whole-model check
        # with nothing rewritten both sides ran the same program: the speedup
        # is 1, and their measured ratio is the noise floor of the timing
        speedups.append(r["speedup"] if done else 1.0)
        cell = _speedup(r["speedup"]) if done else f"1.00 (none rewritten; the same program timed twice: " \
                                                   f"{_speedup(r.get('timed_ratio', r['speedup']))})"
        lines.append(f"| {r['model']} | {_ms(r['direct_ms'])} | {_ms(r['derived_ms'])} | "
                     f"{cell} | {_ms(r['torch_ms'])} | {len(done)} of {len(r['nodes'])}"
                     f"{f' ({len(won) - len(done)} faster alone, reverted: model slower)' if len(won) > len(done) else ''} | "
                     f"{_diff(r['max_rel_diff'])} |")
    # rows of an older, merged file carry their own times; a whole run has one date
    stamps = [] if "date" in doc else [f"{r['model']} measured {r['measured_at']}"
                                         for r in doc["rows"] if "measured_at" in r]
    return "\n".join(lines) + (f"\n\n{_machine(doc)}; {_date(doc)}{''.join(f' ({s})' for s in stamps)}; "
                               f"depth {doc['depth']}, {doc['search_seconds']:.0f} s of search; geometric mean "
                               f"speedup {statistics.geometric_mean(speedups):.2f}x (a model with nothing "
                               "rewritten counts 1.00)" + _method(doc))


TABLES: dict[str, Callable[[], str]] = {
    "model_speed": model_speed, "symbolic_speed": symbolic_speed, "conv_transpose_speed": conv_transpose_speed,
    "conv_transpose_forms": conv_transpose_forms, "interp_speed": interp_speed,
    "onnx_conformance": onnx_conformance, "onnx_import_speed": onnx_import_speed, "gemm_speed": gemm_speed,
    "derive_references": derive_references, "derive_ops": derive_ops, "derive_e2e": derive_e2e,
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
