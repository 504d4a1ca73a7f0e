"""Default schedules for every TIR PrimFunc of a fused Relax module.

Entry points:
    schedule_module(mod, target) -> IRModule   # CPU rules or CUDA dlight rules
    host_target(num_cores=None) -> Target      # llvm for this machine's CPU
    cuda_target(arch="sm_80") -> Target        # cuda with an llvm host
    classify(func) -> str                      # rule family a PrimFunc maps to
    last_report: dict[str, str]                # func name -> rule actually applied

CPU rule families (tried in order, each on a fresh Schedule, falling back to
the next on any error, finally leaving the function unscheduled):
    gemm       one multiply-accumulate reduction (+ injective pro/epilogues)
    rows       softmax / layernorm style chains of row reductions
    reduce     other reductions (pooling, reduce over any axes)
    injective  elementwise / transpose / gather chains
    generic    each block on its own (parallel + vectorise)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import tvm
from tvm import s_tir, tirx
from tvm.target import Target

from .schedule_analysis import all_blocks, match_mul_sum
from .schedule_gemm import RuleNotApplicable, schedule_gemm
from .schedule_rules import (
    inline_spatial_chain,
    schedule_generic,
    schedule_injective_block,
    schedule_reduce_block,
    schedule_rows,
)

log = logging.getLogger(__name__)

#: Rule applied to each PrimFunc by the most recent `schedule_module` call.
last_report: dict[str, str] = {}

_SCHEDULED_ATTR = "tirx.is_scheduled"


def host_target(num_cores: int | None = None) -> Target:
    """LLVM target for the host CPU (its -mcpu, so AVX2/AVX-512 are used when present)."""
    if num_cores is None:
        try:
            num_cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            num_cores = os.cpu_count() or 1
    cfg: dict[str, object] = {"kind": "llvm", "num-cores": int(num_cores)}
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
    blocks = all_blocks(sch)
    reds = [b for b in blocks if b.is_reduction]
    if len(reds) != 1:
        raise RuleNotApplicable("needs one reduction block")
    # Producers (pads) stay materialised: inlined, their bounds checks sit in
    # the vectorised window loop and made a 3x3/2 maxpool 2x slower.
    label = None
    for b in all_blocks(sch):
        if b.is_reduction:
            label = schedule_reduce_block(sch, b.rv, target)
        else:
            schedule_injective_block(sch, b.rv, target)
    return label or "reduce"


_CPU_RULES: dict[str, list[tuple[str, Callable[[s_tir.Schedule, Target], str]]]] = {
    "gemm": [("gemm", schedule_gemm), ("generic", schedule_generic)],
    "rows": [("rows", schedule_rows), ("generic", schedule_generic)],
    "reduce": [("reduce", _rule_reduce), ("generic", schedule_generic)],
    "injective": [("injective", _rule_injective), ("generic", schedule_generic)],
}

# Errors a rule may raise on an unexpected function shape. Anything else is a bug
# in a rule, but compilation must still go on, so it is caught too (and logged).
_EXPECTED = (RuleNotApplicable, s_tir.ScheduleError, RuntimeError, ValueError, TypeError,
             IndexError, AssertionError, AttributeError)


def schedule_prim_func(func: tirx.PrimFunc, target: Target) -> tuple[tirx.PrimFunc, str]:
    """Schedule one PrimFunc for an llvm target; returns (new func, rule label)."""
    try:
        family = classify(func)
    except Exception as err:  # noqa: BLE001 - analysis must never break compilation
        log.debug("classify failed: %s", err)
        family = "injective"
    for name, rule in _CPU_RULES[family]:
        sch = s_tir.Schedule(func)
        try:
            label = rule(sch, target)
        except _EXPECTED as err:
            log.debug("rule %s failed: %s", name, str(err).splitlines()[0] if str(err) else err)
            continue
        except Exception as err:  # noqa: BLE001
            log.warning("rule %s raised %r; falling back", name, err)
            continue
        return sch.mod["main"].with_attr(_SCHEDULED_ATTR, True), label
    return func, "none"


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
    return out


def schedule_module(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    """Schedule every tirx PrimFunc of `mod` (a Relax IRModule after
    relax.transform.AnnotateTIROpPattern, FuseOps, FuseTIR) for `target`;
    Relax functions untouched. Returns a new module. Functions already marked
    `tirx.is_scheduled` are kept. `last_report` records the rule per function."""
    last_report.clear()
    if _is_cuda(target):
        return _schedule_cuda(mod, target)
    funcs = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and not (
            func.attrs is not None and _SCHEDULED_ATTR in func.attrs and bool(func.attrs[_SCHEDULED_ATTR])
        ):
            func, label = schedule_prim_func(func, target)
            last_report[gv.name_hint] = label
        funcs[gv] = func
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos)
