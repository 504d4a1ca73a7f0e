"""Fallbacks: a kernel whose schedule fails falls back alone, and every fallback is counted and shown.

The failures are forced, so the tests do not depend on which schedules this
host's rules happen to get wrong: a rule is put in front of the ``rows``
family (the bundled MLP's softmax is its only kernel there) that applies to
any kernel but leaves a schedule that TVM cannot build, either in its TIR
lowering (a pragma with a string where TVM wants an integer) or only in LLVM
code generation (a loop bound to a GPU thread). Labels are compared with a
clean build on the same host, never with fixed tile sizes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from tvm import s_tir
from tvm.target import Target

import tensoropt
from tensoropt.builder import GraphBuilder
from tensoropt.codegen import schedule
from tensoropt.codegen.build import build
from tensoropt.codegen.relax_graph import to_relax
from tensoropt.codegen.schedule import Fallback, RuleNotApplicable, schedule_kernel
from tensoropt.codegen.schedule_analysis import all_blocks
from tensoropt.compiler import FallbackWarning
from tensoropt.demo import EXAMPLES
from tensoropt.ir.graph import Graph

MLP = EXAMPLES / "mlp.top"
Rule = Callable[[s_tir.Schedule, Target], str]


def _outer_loop(sch: s_tir.Schedule) -> s_tir.LoopRV:
    return sch.get_loops(all_blocks(sch)[-1].rv)[0]


def breaks_lowering(sch: s_tir.Schedule, target: Target) -> str:
    """Applies to anything; TVM's TIR lowering then fails (it wants an integer here)."""
    sch.annotate(_outer_loop(sch), "pragma_auto_unroll_max_step", "x")
    return "breaks-lowering"


def breaks_codegen(sch: s_tir.Schedule, target: Target) -> str:
    """Applies to anything and lowers; LLVM code generation then fails (a GPU thread on a CPU)."""
    sch.bind(_outer_loop(sch), "threadIdx.x")
    return "breaks-codegen"


def raises(err: Exception) -> Rule:
    def rule(sch: s_tir.Schedule, target: Target) -> str:
        raise err

    return rule


def _rows_rules(monkeypatch: pytest.MonkeyPatch, rules: list[tuple[str, Rule]], keep: bool = True) -> None:
    """The ``rows`` family tries ``rules`` first (then its own rules too, if ``keep``)."""
    own = list(schedule._CPU_RULES["rows"]) if keep else []
    monkeypatch.setitem(schedule._CPU_RULES, "rows", rules + own)


@pytest.fixture(scope="module")
def mlp() -> Graph:
    return tensoropt.load(MLP)


@pytest.fixture(scope="module")
def clean(mlp) -> dict[str, str]:
    """Each kernel's rule label in a build with nothing forced, on this host."""
    built = build(mlp)
    rows = [k for k, r in built.kernels.items() if r.startswith("rows")]
    assert rows == ["softmax"], built.kernels  # the kernel the tests break, and the only one of its family
    return dict(built.kernels)


def _check_outputs(model, graph) -> None:
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    want = tensoropt.evaluate(graph, {"x": x})[graph.outputs[0]]
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ one kernel falls back alone


@pytest.mark.parametrize("broken", [breaks_lowering, breaks_codegen])
def test_a_schedule_that_does_not_build_falls_back_alone(monkeypatch, mlp, clean, broken) -> None:
    _rows_rules(monkeypatch, [("broken", broken)])
    built = build(mlp)
    # the culprit got its family's next rule (the real rows rule); every other kernel kept its own
    assert built.kernels == clean
    (fb,) = built.fallbacks
    assert (fb.kernel, fb.stage, fb.bug) == ("softmax", "build", True)
    # the MLP's batch is symbolic: its softmax carries a batch-1 branch, broken too
    name = broken.__name__.replace('_', '-')
    assert fb.reason.startswith(f"schedule {name} | batch=1: {name} does not build ("), fb.reason
    assert fb.reason.endswith(f"replaced by {clean['softmax']}") and "\n" not in fb.reason


def test_with_no_rule_that_builds_the_kernel_runs_unscheduled(monkeypatch, mlp, clean) -> None:
    _rows_rules(monkeypatch, [("broken", breaks_lowering), ("broken2", breaks_codegen)], keep=False)
    with pytest.warns(FallbackWarning, match=r"^tensoropt: 1 fallback \(1 from bugs\).*softmax: schedule "):
        model = tensoropt.compile(mlp)
    kernels = model.manifest["kernels"]
    assert kernels["softmax"] == "none (schedule failed to build)"
    assert {k: r for k, r in kernels.items() if k != "softmax"} == {k: r for k, r in clean.items() if k != "softmax"}
    (fb,) = model.manifest["fallbacks"]
    assert fb["kernel"] == "softmax" and fb["stage"] == "build" and fb["bug"] is True
    assert fb["reason"].endswith("replaced by the unscheduled kernel")
    _check_outputs(model, mlp)


def test_results_still_equal_the_interpreter(monkeypatch, mlp) -> None:
    _rows_rules(monkeypatch, [("broken", breaks_codegen)])
    with pytest.warns(FallbackWarning) as caught:
        model = tensoropt.compile(mlp)
    # the warning points at the user's call, not into tensoropt
    assert [w.filename for w in caught if w.category is FallbackWarning] == [__file__]
    _check_outputs(model, mlp)


# ------------------------------------------------------------ schedule rules that raise


def test_a_rule_raising_type_error_is_a_bug_type_fallback(monkeypatch, mlp) -> None:
    _rows_rules(monkeypatch, [("rows", raises(TypeError("boom\nsecond line"))),
                              ("generic", schedule.schedule_generic)], keep=False)
    built = build(mlp)
    assert built.kernels["softmax"].startswith("generic")
    (fb,) = built.fallbacks
    assert fb == Fallback("softmax", "schedule", "rule rows raised TypeError: boom (a bug); scheduled by generic",
                          bug=True)
    assert str(fb) == "softmax: rule rows raised TypeError: boom (a bug); scheduled by generic [bug]"


def _softmax_func(mlp: Graph) -> Any:
    """The MLP's softmax kernel, fused and unscheduled."""
    from tensoropt.codegen.build import fuse

    mod, _ = to_relax(mlp)
    return {gv.name_hint: f for gv, f in fuse(mod).functions_items()}["softmax"]


def test_what_counts_as_a_schedule_fallback(monkeypatch, mlp) -> None:
    """Per the schedule module's docstring: a specialised rule that is not for
    this kernel is no fallback; the catch-all, no rule at all, or a bug are."""
    func = _softmax_func(mlp)
    tgt = schedule.host_target()
    cases = [
        # a specialised rule not for this kind of kernel, then the family's rule: not a fallback
        ([("other", raises(RuleNotApplicable("not mine"))), *schedule._CPU_RULES["rows"]], "rows", None),
        # the family's rule does not apply: the catch-all schedules it
        ([("rows", raises(RuleNotApplicable("leading extents differ"))), ("generic", schedule.schedule_generic)],
         "generic", ("schedule", "rule rows raised RuleNotApplicable: leading extents differ; scheduled by generic",
                     False)),
        # a bug in a rule counts even when the next specialised rule takes the kernel
        ([("other", raises(AssertionError("tile"))), *schedule._CPU_RULES["rows"]], "rows",
         ("schedule", "rule other raised AssertionError: tile (a bug); scheduled by rows", True)),
        # nothing applies: left unscheduled
        ([("rows", raises(RuleNotApplicable("a"))), ("generic", raises(RuleNotApplicable("b")))], "none",
         ("unscheduled", "rule rows raised RuleNotApplicable: a; rule generic raised RuleNotApplicable: b; "
                         "left unscheduled", False)),
    ]
    for rules, rule, want in cases:
        monkeypatch.setitem(schedule._CPU_RULES, "rows", rules)
        records: list[Fallback] = []
        done = schedule_kernel(func, tgt, "softmax", fallbacks=records)
        assert done.rule == rule
        assert records == ([] if want is None else [Fallback("softmax", *want)])


def test_an_extern_kernel_is_no_fallback() -> None:
    """scatter_nd's kernel writes its own loops (a TE extern): no rule is meant to schedule it."""
    from tensoropt.codegen.build import fuse

    b = GraphBuilder("g")
    data, idx, upd = b.input("d", "f32", (4, 3)), b.const("i", np.array([[1], [3]])), b.input("u", "f32", (2, 3))
    mod, _ = to_relax(b.build(b.op("scatter_nd", data, idx, upd)))
    func = {gv.name_hint: f for gv, f in fuse(mod).functions_items()}["scatter_nd"]
    records: list[Fallback] = []
    assert schedule.is_extern(func)
    assert schedule_kernel(func, schedule.host_target(), "scatter_nd", fallbacks=records).rule == "none"
    assert records == []


def test_classify_raising_is_a_bug(monkeypatch, mlp) -> None:
    def broken(func):
        raise IndexError("no such block")

    monkeypatch.setattr(schedule, "classify", broken)
    records: list[Fallback] = []
    schedule_kernel(_softmax_func(mlp), schedule.host_target(), "softmax", fallbacks=records)
    assert records[0] == Fallback("softmax", "schedule", "classify raised IndexError: no such block (a bug); "
                                  "tried the injective rules", bug=True)


def test_schedule_module_reports_last_fallbacks(monkeypatch, mlp) -> None:
    from tensoropt.codegen.build import fuse

    _rows_rules(monkeypatch, [("rows", raises(ValueError("bad"))), ("generic", schedule.schedule_generic)],
                keep=False)
    mod, _ = to_relax(mlp)
    schedule.schedule_module(fuse(mod), schedule.host_target())
    assert [(f.kernel, f.stage, f.bug) for f in schedule.last_fallbacks] == [("softmax", "schedule", True)]


# ------------------------------------------------------------ specialised lowerings that decline


def test_a_declined_fast_lowering_is_recorded() -> None:
    rng = np.random.default_rng(0)
    b = GraphBuilder("g")
    x = b.input("x", "f64", (1, 3, 8, 8))
    c = b.op("conv2d", x, b.const("w", rng.standard_normal((4, 3, 3, 3))), pads=[1, 1, 1, 1], name="c3")
    f = b.input("f", "f32", (1, 20))
    fc = b.op("gemm", f, b.const("wf", rng.standard_normal((8, 20)).astype(np.float32)), trans_b=True, name="fc")
    records: list[Fallback] = []
    to_relax(b.build(c, fc), fallbacks=records)
    assert records == [
        Fallback("conv2d node %c3", "lower", "fast lowering declined (f64 dtype); generic Expr lowering"),
        # gemm has no specialised lowering (its batch-1 form is a schedule rule): no record
    ]


# ------------------------------------------------------------ where fallbacks show


def test_no_fallbacks_no_warning(mlp) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        model = tensoropt.compile(mlp)
    assert model.manifest["fallbacks"] == []


def test_the_warning_counts_and_names_the_first_few() -> None:
    from tensoropt.compiler import fallback_summary

    recs = [{"kernel": f"k{i}", "stage": "schedule", "reason": f"r{i}", "bug": i == 0} for i in range(5)]
    line = fallback_summary(recs)
    assert "\n" not in line
    assert line.startswith("tensoropt: 5 fallbacks (1 from bugs), ")
    assert "k0: r0; k1: r1; k2: r2; and 2 more" in line and "k3" not in line


def test_cli_prints_them_and_the_manifest_keeps_them(monkeypatch, tmp_path: Path, capsys) -> None:
    from tensoropt.cli import main

    _rows_rules(monkeypatch, [("broken", breaks_lowering)])
    out = tmp_path / "mlp.tvm"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # the CLI lists them itself, not as a Python warning
        assert main(["compile", str(MLP), "-o", str(out)]) == 0
    text, err = capsys.readouterr()
    lines = text.splitlines()
    k = next(i for i, ln in enumerate(lines) if "1 fallback (" in ln)
    assert lines[k + 1].strip().startswith("softmax [build, bug]: schedule breaks-lowering | batch=1: breaks-lowering "
                                          "does not build (")
    m = json.loads((out / "manifest.json").read_text())
    assert [(f["kernel"], f["stage"], f["bug"]) for f in m["fallbacks"]] == [("softmax", "build", True)]
    # it loads back with them, and a manifest written before they were recorded loads too
    assert tensoropt.load(out).manifest["fallbacks"] == m["fallbacks"]
    del m["fallbacks"]
    (out / "manifest.json").write_text(json.dumps(m))
    _check_outputs(tensoropt.load(out), tensoropt.load(MLP))
    assert main(["compile", str(MLP), "-o", str(tmp_path / "j.tvm"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fallbacks"][0]["kernel"] == "softmax"


def test_a_malformed_fallbacks_entry_is_one_line(tmp_path: Path, mlp, capsys) -> None:
    from tensoropt.cli import main

    out = tmp_path / "mlp.tvm"
    tensoropt.compile(mlp).save(out)
    m = json.loads((out / "manifest.json").read_text())
    m["fallbacks"] = [{"kernel": "softmax"}]
    (out / "manifest.json").write_text(json.dumps(m))
    assert main(["run", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "malformed 'fallbacks'" in err[0], err


def test_bench_report_records_them(monkeypatch, mlp) -> None:
    from rich.console import Console

    from tensoropt import bench

    _rows_rules(monkeypatch, [("broken", breaks_lowering)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # recorded in the report instead
        report = bench.bench(mlp, against=[], repeat=1, warmup=0, bindings={"batch": 2})
    assert [(f["kernel"], f["stage"]) for f in report["fallbacks"]] == [("softmax", "build")]
    assert report["results"][0]["side"] == "tensoropt" and report["results"][0]["fallbacks"] == 1
    json.dumps(report, default=str)  # what write_json writes
    con = Console(width=300, record=True)
    con.print(bench.table(report))
    assert "tensoropt: 1 kernel fallback(s)" in con.export_text()
