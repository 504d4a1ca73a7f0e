"""Default schedules for every TIR PrimFunc of a fused Relax module.

Entry points:
    schedule_module(mod, target) -> IRModule   # CPU rules or CUDA dlight rules
    host_target(num_cores=None) -> Target      # llvm for this machine's CPU
    cuda_target(arch="sm_80") -> Target        # cuda with an llvm host
    classify(func) -> str                      # rule family a PrimFunc maps to
    schedule_kernel(func, target, name) -> Scheduled   # one kernel, with its fallback records
    last_report: dict[str, str]                # func name -> rule actually applied
    last_fallbacks: list[Fallback]             # fallbacks of the most recent schedule_module

CPU rule families (tried in order, each on a fresh Schedule, falling back to
the next on any error, finally leaving the function unscheduled):
    gemm       one multiply-accumulate reduction (+ injective pro/epilogues);
               one with a single output row (a batch-1 dense layer): split-K gemv
    rows       softmax / layernorm style chains of row reductions
    reduce     other reductions (pooling, reduce over any axes)
    injective  elementwise / transpose / gather chains
    generic    each block on its own (parallel + vectorise)

Fallbacks (what is counted; :class:`Fallback` records, surfaced by
``codegen.build.Built.fallbacks``, the artifact manifest, ``tensoropt
compile``, a ``FallbackWarning`` from ``tensoropt.compile`` and bench JSON).
A fallback is a kernel that gets slower code than tensoropt meant to give it:

- stage ``schedule``: the kernel is scheduled by the catch-all ``generic``
  rule although ``classify`` put it in a family with a specialised rule
  (gemm, rows, reduce, injective), because every specialised rule of that
  family raised; or any rule raised an exception other than
  ``RuleNotApplicable``/``ScheduleError`` (a bug in the rule, ``bug=True``,
  even when a later specialised rule then scheduled the kernel), or
  ``classify`` itself raised (a bug);
- stage ``unscheduled``: no rule applied; the kernel runs as lowered;
- stage ``build`` (``codegen.build``): the kernel's schedule applied but does
  not build, so it was replaced by the next rule's schedule or by the
  unscheduled kernel (``bug=True``);
- stage ``lower`` (``codegen.relax_graph``): a specialised ``te_fast``
  lowering declined a node it is meant for, and the node was lowered
  through its generic Expr.

Not a fallback: a family trying its next specialised rule because the first
raised ``RuleNotApplicable``/``ScheduleError`` (that rule is not for this kind
of kernel), a kernel that was already scheduled, and a TE extern kernel (no
``root`` block: its lowering wrote its loops itself, as ``te_ops``' scatters
do), which no rule can schedule and none is meant to.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import s_tir, tirx
from tvm.target import Target

from .schedule_analysis import all_blocks, match_mul_sum
from .schedule_gemm import RuleNotApplicable, schedule_gemm
from .schedule_gemv import schedule_gemv
from .schedule_rules import (
    PARALLEL_MIN_WORK,
    inline_spatial_chain,
    schedule_generic,
    schedule_injective_block,
    schedule_reduce_block,
    schedule_rows,
)
from .specialize import specialize_unit

log = logging.getLogger(__name__)

#: Rule applied to each PrimFunc by the most recent `schedule_module` call.
last_report: dict[str, str] = {}

#: Stages a :class:`Fallback` can come from, in pipeline order (see the module docstring).
STAGES = ("lower", "schedule", "unscheduled", "build")


@dataclass(frozen=True)
class Fallback:
    """One kernel (or node) that got slower code than tensoropt meant to give it.

    Invariants: ``stage`` is one of :data:`STAGES`; ``reason`` is one line
    that names the rule or lowering and what happened; ``kernel`` is the
    PrimFunc's name (stages schedule/unscheduled/build) or the node's label
    (stage lower: kernels do not exist yet). ``bug`` is True when the cause is
    a defect (a rule raised an exception it must not raise, a schedule
    applied but does not build), not a kernel outside what a rule handles.
    """

    kernel: str
    stage: str
    reason: str
    bug: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"fallback stage {self.stage!r}; valid: {', '.join(STAGES)}")

    def __str__(self) -> str:
        return f"{self.kernel}: {self.reason}" + (" [bug]" if self.bug else "")

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "stage": self.stage, "reason": self.reason, "bug": self.bug}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Fallback":
        return cls(str(d["kernel"]), str(d["stage"]), str(d["reason"]), bool(d.get("bug", False)))


#: Fallbacks of the most recent `schedule_module` call (kernel = PrimFunc name).
last_fallbacks: list[Fallback] = []

#: Longest exception text kept in a fallback reason (TVM's messages can be pages long).
_MAX_REASON = 200


def error_line(err: BaseException) -> str:
    """One line saying what ``err`` is about.

    TVM's ``ScheduleError`` starts with a generic header and prints the IR
    before its ``Error message:`` line; TVM's other errors put the message
    last, after a traceback. Python exceptions say it in their first line.
    """
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    marked = [ln for ln in lines if ln.startswith("Error message:")]
    if marked:
        text = marked[-1].removeprefix("Error message:").strip()
    elif type(err).__module__.startswith(("tvm", "tvm_ffi")):
        text = lines[-1]
    else:
        text = lines[0]
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def describe_error(err: BaseException) -> str:
    """``"TypeName: one line"`` for a fallback reason."""
    return f"{type(err).__name__}: {error_line(err)}"


_SCHEDULED_ATTR = "tirx.is_scheduled"


#: environment variable that pins the CPU the llvm target compiles for (an LLVM
#: -mcpu name such as ``x86-64-v3`` for AVX2 or ``x86-64-v4`` for AVX-512):
#: code and tile choices for another machine, e.g. an AVX2 run on an AVX-512 host.
MCPU_ENV = "TENSOROPT_MCPU"


def host_target(num_cores: int | None = None, mcpu: str | None = None) -> Target:
    """LLVM target for the host CPU (its -mcpu, so AVX2/AVX-512 are used when present).

    ``mcpu`` (else ``$TENSOROPT_MCPU``, else the host's own CPU) pins the
    instruction set; an unknown name is a :class:`ValueError` naming it.
    """
    if num_cores is None:
        try:
            num_cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            num_cores = os.cpu_count() or 1
    cfg: dict[str, object] = {"kind": "llvm", "num-cores": int(num_cores)}
    cpu = mcpu or os.environ.get(MCPU_ENV) or None
    if cpu is not None:
        triple = str(tvm.target.codegen.llvm_get_system_triple())
        if not tvm.target.codegen.llvm_is_valid_cpu(cpu, triple):
            raise ValueError(f"unknown LLVM CPU {cpu!r} (from {'mcpu' if mcpu else MCPU_ENV})")
        cfg["mcpu"] = cpu
        return Target(cfg)
    try:
        cpu = tvm.target.codegen.llvm_get_system_cpu()
        if cpu and cpu != "generic":
            cfg["mcpu"] = str(cpu)
    except (RuntimeError, AttributeError):
        pass
    return Target(cfg)


def cuda_target(arch: str = "sm_80") -> Target:
    """CUDA target with an llvm host; building needs no GPU (only nvcc-free NVPTX codegen)."""
    return Target({"kind": "cuda", "arch": arch}, host=Target({"kind": "llvm"}))


def _is_cuda(target: Target) -> bool:
    return str(target.kind.name) in ("cuda", "rocm", "vulkan", "metal", "opencl", "webgpu")


def classify(func: tirx.PrimFunc) -> str:
    """Rule family for a PrimFunc: 'gemm', 'rows', 'reduce' or 'injective'."""
    sch = s_tir.Schedule(func)
    blocks = all_blocks(sch)
    reds = [b for b in blocks if b.is_reduction]
    if len(reds) == 1 and match_mul_sum(sch, reds[0].rv) is not None:
        return "gemm"
    if reds and len(blocks) >= 2 and blocks[-1].is_spatial and len(reds) >= 1 and _rowlike(blocks):
        return "rows"
    if reds:
        return "reduce"
    return "injective"


def _rowlike(blocks) -> bool:
    """Every reduction runs over its block's trailing axes and keeps >= 1 leading axis."""
    for b in blocks:
        if b.is_reduction:
            k = b.kinds
            if not k.startswith("S") or k != k.rstrip("R") + "R" * k.count("R"):
                return False
    return True


def _rule_injective(sch: s_tir.Schedule, target: Target) -> str:
    inline_spatial_chain(sch)
    blocks = all_blocks(sch)
    if any(b.is_reduction for b in blocks):
        raise RuleNotApplicable("has reductions")
    for b in blocks:
        schedule_injective_block(sch, b.rv, target)
    return "injective"


def _rule_reduce(sch: s_tir.Schedule, target: Target) -> str:
    """Reductions (pooling, reduce over any axes), each block on its own.

    Several reductions are fine (an average pool that excludes padding sums
    its window and counts it); they are scheduled one by one, as are their
    injective producers and consumers.
    """
    blocks = all_blocks(sch)
    if not any(b.is_reduction for b in blocks):
        raise RuleNotApplicable("no reduction block")
    # Producers (pads) stay materialised: inlined, their bounds checks sit in
    # the vectorised window loop and made a 3x3/2 maxpool 2x slower.
    labels = []
    for b in blocks:
        if b.is_reduction:
            labels.append(schedule_reduce_block(sch, b.rv, target))
        else:
            schedule_injective_block(sch, b.rv, target)
    return labels[0] if len(set(labels)) == 1 else "+".join(labels)


_CPU_RULES: dict[str, list[tuple[str, Callable[[s_tir.Schedule, Target], str]]]] = {
    "gemm": [("gemm", schedule_gemm), ("gemv", schedule_gemv), ("generic", schedule_generic)],
    # a kernel whose reductions do not share its rows (a padded avgpool: the pad
    # block's extents differ) is the reduce rule's
    "rows": [("rows", schedule_rows), ("reduce", _rule_reduce), ("generic", schedule_generic)],
    "reduce": [("reduce", _rule_reduce), ("generic", schedule_generic)],
    "injective": [("injective", _rule_injective), ("generic", schedule_generic)],
}

#: What a rule raises to say "this kernel is not my shape". Any other exception
#: from a rule is a bug in it: compilation still goes on (with the next rule),
#: and the kernel's fallback record says ``bug``.
_NOT_APPLICABLE = (RuleNotApplicable, s_tir.ScheduleError)

#: The catch-all rule every family ends with: a kernel it schedules has lost
#: its family's specialised schedule (a fallback).
CATCH_ALL = "generic"


@dataclass(frozen=True)
class Scheduled:
    """One kernel after `schedule_kernel`.

    ``rule`` is the rule-table name that scheduled it (``"gemm"``,
    ``"generic"``, ...) or ``"none"``, in which case ``func`` is the input
    function unchanged; otherwise ``func`` is marked ``tirx.is_scheduled``.
    ``label`` is what the rule reports (e.g. ``gemm(mr=8,nr=32,...)``).
    """

    func: tirx.PrimFunc
    rule: str
    label: str
    family: str


def is_extern(func: tirx.PrimFunc) -> bool:
    """Whether ``func`` is a TE extern kernel: its body is one opaque block
    with hand-written loops, not TE's ``root`` block over compute blocks, so
    there is nothing for a rule to schedule."""
    body = func.body
    return not (isinstance(body, s_tir.SBlockRealize) and body.block.name_hint == "root")


def _is_bug(err: BaseException) -> bool:
    return not isinstance(err, _NOT_APPLICABLE)


def _rule_fallback(kernel: str, chosen: str, failed: list[tuple[str, BaseException]]) -> Fallback | None:
    """The fallback record for a kernel scheduled by ``chosen`` after the rules in ``failed`` raised.

    None when nothing fell back (see the module docstring): no rule raised,
    or only specialised rules that are not for this kind of kernel raised and
    a later specialised rule took it.
    """
    if not failed:
        return None  # rules skipped by the caller (a schedule that did not build) are its record, not ours
    bug = any(_is_bug(e) for _, e in failed)
    if chosen not in (CATCH_ALL, "none") and not bug:
        return None
    what = "; ".join(f"rule {n} raised {describe_error(e)}" + (" (a bug)" if _is_bug(e) else "") for n, e in failed)
    if chosen == "none":
        return Fallback(kernel, "unscheduled", f"{what}; left unscheduled", bug)
    return Fallback(kernel, "schedule", f"{what}; scheduled by {chosen}", bug)


def schedule_kernel(func: tirx.PrimFunc, target: Target, kernel: str = "", *,
                    skip: Collection[str] = (), fallbacks: list[Fallback] | None = None) -> Scheduled:
    """Schedule one PrimFunc for an llvm target with its family's rules, in order.

    ``skip``: rule names not to try (``codegen.build`` skips a rule whose
    schedule did not build). Appends to ``fallbacks`` the records defined in
    the module docstring, naming ``kernel``. Never raises for a rule's sake:
    whatever a rule raises, the next one is tried, and finally the function
    is left unscheduled.
    """
    records = fallbacks if fallbacks is not None else []
    if is_extern(func):
        return Scheduled(func, "none", "none", "extern")
    try:
        family = classify(func)
    except Exception as err:  # noqa: BLE001 - analysis must never break compilation
        family = "injective"
        records.append(Fallback(kernel, "schedule", f"classify raised {describe_error(err)} (a bug); "
                                "tried the injective rules", True))
    failed: list[tuple[str, BaseException]] = []
    for name, rule in _CPU_RULES[family]:
        if name in skip:
            continue
        sch = s_tir.Schedule(func)
        try:
            label = rule(sch, target)
        except Exception as err:  # noqa: BLE001 - a rule's failure is a record, not a crash
            log.debug("%s: rule %s raised %s", kernel, name, describe_error(err))
            failed.append((name, err))
            continue
        record = _rule_fallback(kernel, name, failed)
        if record is not None:
            records.append(record)
        scheduled = sch.mod["main"]
        branch: list[Fallback] = []

        def at_one(f: tirx.PrimFunc, t: Target) -> tuple[tirx.PrimFunc, str]:
            done = schedule_kernel(f, t, f"{kernel} (its dim-1 branch)", skip=skip, fallbacks=branch)
            return done.func, done.label

        special = specialize_unit(func, scheduled, label, target, at_one, PARALLEL_MIN_WORK)
        if special is not None:
            scheduled, label = special
            if record is None:  # one record per kernel: the branch's only when the kernel has none
                records.extend(branch)
        return Scheduled(scheduled.with_attr(_SCHEDULED_ATTR, True), name, label, family)
    record = _rule_fallback(kernel, "none", failed)
    if record is not None:
        records.append(record)
    return Scheduled(func, "none", "none", family)


def schedule_prim_func(func: tirx.PrimFunc, target: Target) -> tuple[tirx.PrimFunc, str]:
    """Schedule one PrimFunc for an llvm target; returns (new func, rule label).

    The fallback records of :func:`schedule_kernel` are dropped here; use it
    (or `schedule_module` and `last_fallbacks`) to see them.
    """
    done = schedule_kernel(func, target)
    return done.func, done.label


def _schedule_cuda(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    from tvm.s_tir import dlight

    rules = dlight.ApplyDefaultSchedule(
        dlight.gpu.Matmul(),
        dlight.gpu.GEMV(),
        dlight.gpu.Reduction(),
        dlight.gpu.GeneralReduction(),
        dlight.gpu.Fallback(),
    )
    with target:
        out = rules(mod)
    for gv, func in out.functions_items():
        if isinstance(func, tirx.PrimFunc):
            done = func.attrs is not None and _SCHEDULED_ATTR in func.attrs
            last_report[gv.name_hint] = "dlight" if done else "none"
            if not done and not is_extern(func):
                last_fallbacks.append(Fallback(gv.name_hint, "unscheduled", "no dlight rule applied; left unscheduled"))
    return out


def schedule_module(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    """Schedule every tirx PrimFunc of `mod` (a Relax IRModule after
    relax.transform.AnnotateTIROpPattern, FuseOps, FuseTIR) for `target`;
    Relax functions untouched. Returns a new module. Functions already marked
    `tirx.is_scheduled` are kept. `last_report` records the rule per function,
    `last_fallbacks` the fallbacks (module docstring)."""
    last_report.clear()
    last_fallbacks.clear()
    if _is_cuda(target):
        return _schedule_cuda(mod, target)
    funcs = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and not (
            func.attrs is not None and _SCHEDULED_ATTR in func.attrs and bool(func.attrs[_SCHEDULED_ATTR])
        ):
            done = schedule_kernel(func, target, gv.name_hint, fallbacks=last_fallbacks)
            func = done.func
            last_report[gv.name_hint] = done.label
        funcs[gv] = func
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos)
