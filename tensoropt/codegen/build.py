"""Build a Graph into a TVM executable: lower, fuse, schedule, compile.

Steps (each reported to ``progress`` as it happens):

1. ``to_relax``: one TE kernel per node (generic Expr lowering or the op's TE
   lowering), a Relax ``main`` calling them;
2. TVM's own fusion: ``AnnotateTIROpPattern``, ``FuseOps``, ``FuseTIR`` (an
   elementwise chain joins its producer's kernel), then dead-code removal;
3. tensoropt's schedule rules, kernel by kernel (``schedule.schedule_module``);
4. ``tvm.compile`` for the target (LLVM for the host CPU, or CUDA: the CUDA
   build needs no GPU, only to run it does).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import tvm
from tvm import relax

from ..errors import TensoroptError
from ..ir.graph import Graph
from .relax_graph import Signature, to_relax

log = logging.getLogger(__name__)

#: target names a user may give, and what they mean.
TARGETS = ("llvm", "cuda")

Progress = Callable[[str, int, int, str], None]
"""``progress(stage, done, total, item)``: stage is "lower", "schedule" or "compile"."""


class TargetError(TensoroptError):
    """An unknown or unusable target name."""


def make_target(name: str) -> tvm.target.Target:
    """The TVM target for ``name`` ("llvm": this host's CPU and cores; "cuda")."""
    from .schedule import cuda_target, host_target

    if name == "llvm":
        return host_target()
    if name == "cuda":
        return cuda_target()
    raise TargetError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}")


@dataclass
class Built:
    """A compiled graph: the executable, its calling convention, and build facts."""

    executable: Any  # tvm.runtime.Executable
    signature: Signature
    target: str
    target_json: Mapping[str, Any]
    kernels: Mapping[str, str] = field(default_factory=dict)  # kernel name -> schedule rule
    seconds: Mapping[str, float] = field(default_factory=dict)


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def plain(obj: Any) -> Any:
    """TVM containers (Array, Map, String, IntImm) as plain JSON-able Python values."""
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    if hasattr(obj, "items"):
        return {str(k): plain(v) for k, v in obj.items()}
    if hasattr(obj, "__iter__"):
        return [plain(v) for v in obj]
    if hasattr(obj, "value"):
        return plain(obj.value)
    return str(obj)


def fuse(mod: tvm.IRModule) -> tvm.IRModule:
    """TVM's fusion passes: elementwise consumers join their producers' kernels."""
    seq = tvm.transform.Sequential([
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ])
    return seq(mod)


def schedule_kernels(mod: tvm.IRModule, target: tvm.target.Target,
                     progress: Progress | None = None) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every PrimFunc, one at a time (so progress can name each kernel).

    Returns the module and kernel name -> rule label. CUDA goes through
    dlight's GPU rules in one call.
    """
    from .schedule import last_report, schedule_module, schedule_prim_func

    if target.kind.name == "cuda":
        out = schedule_module(mod, target)
        return out, dict(last_report)
    funcs = dict(mod.functions_items())
    items = [(gv, f) for gv, f in funcs.items() if isinstance(f, tvm.tirx.PrimFunc)]
    rules: dict[str, str] = {}
    for k, (gv, func) in enumerate(items):
        if progress is not None:
            progress("schedule", k, len(items), gv.name_hint)
        funcs[gv], rules[gv.name_hint] = schedule_prim_func(func, target)
    if progress is not None:
        progress("schedule", len(items), len(items), "")
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos), rules


def build(graph: Graph, target: str = "llvm", progress: Progress | None = None) -> Built:
    """Compile ``graph`` for ``target``; :class:`UnsupportedError` names a node that cannot lower."""
    tgt = make_target(target)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    total = len(graph.nodes)
    counter = iter(range(total))

    def on_node(node: Any) -> None:
        if progress is not None:
            progress("lower", next(counter), total, node.label)

    mod, sig = to_relax(graph, on_node=on_node, gpu=target == "cuda")
    if progress is not None:
        progress("lower", total, total, "")
    mod = fuse(mod)
    seconds["lower"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scheduled, rules = schedule_kernels(mod, tgt, progress)
    seconds["schedule"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if progress is not None:
        progress("compile", 0, 1, target)
    try:
        ex = tvm.compile(scheduled, target=tgt)
    except Exception as e:  # a schedule that applied but does not build: keep going without it
        if target == "cuda":
            raise TensoroptError(f"the CUDA build failed: {_first_line(e)}") from None
        log.warning("build of the scheduled module failed (%s); building unscheduled kernels", _first_line(e))
        rules = {k: "none (schedule failed to build)" for k in rules}
        ex = tvm.compile(mod, target=tgt)
    if progress is not None:
        progress("compile", 1, 1, target)
    seconds["compile"] = time.perf_counter() - t0
    return Built(ex, sig, target, plain(tgt.export()), rules, seconds)
