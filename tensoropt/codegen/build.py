"""Build a Graph into a TVM executable: lower, fuse, schedule, compile.

Steps (each reported to ``progress`` as it happens):

1. ``to_relax``: one TE kernel per node (generic Expr lowering or the op's TE
   lowering), a Relax ``main`` calling them;
2. TVM's own fusion: ``AnnotateTIROpPattern``, ``FuseOps``, ``FuseTIR`` (an
   elementwise chain joins its producer's kernel), then dead-code removal;
3. tensoropt's schedule rules, kernel by kernel (``schedule.schedule_module``);
4. ``tvm.compile`` for the target (LLVM for the host CPU, or CUDA: the CUDA
   build needs no GPU, only to run it does).

A kernel whose schedule applies but does not build falls back alone (CPU):
only when ``tvm.compile`` of the scheduled module fails are the scheduled
kernels lowered one by one through TVM's TIR pipeline (measured: a fifth of
a whole build), and, if none fails there, built one by one through LLVM
(about one whole build); each kernel that fails gets its family's next rule
(if that builds alone) or its unscheduled original, and the module is
compiled again. A build that does not fail pays nothing for this. Only if that still fails, or no kernel fails alone, is the whole
module built unscheduled. Every such kernel is a ``Fallback`` with stage
``build`` in :attr:`Built.fallbacks`, after the lowering and scheduling
fallbacks (``schedule`` module docstring). A kernel that builds but fails or
computes wrongly when it runs is not detected here. CUDA builds raise one
line instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import tvm
from tvm import relax

from ..errors import TensoroptError
from ..ir.graph import Graph
from .index_safety import make_safe, map_prim_funcs
from .relax_graph import Signature, to_relax

if TYPE_CHECKING:
    from .schedule import Fallback, Scheduled

log = logging.getLogger(__name__)

#: target names a user may give, and what they mean.
TARGETS = ("llvm", "cuda")

Progress = Callable[[str, int, int, str], None]
"""``progress(stage, done, total, item)``: stage is "lower", "schedule" or "compile"."""


class TargetError(TensoroptError):
    """An unknown or unusable target name."""


def make_target(name: str) -> tvm.target.Target:
    """The TVM target for ``name`` ("llvm": this host's CPU and cores, or the CPU
    ``$TENSOROPT_MCPU`` names; "cuda")."""
    from .schedule import cuda_target, host_target

    if name == "llvm":
        try:
            return host_target()
        except ValueError as e:  # a bad $TENSOROPT_MCPU: one line, exit 2
            raise TargetError(str(e)) from None
    if name == "cuda":
        return cuda_target()
    raise TargetError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}")


@dataclass
class Built:
    """A compiled graph: the executable, its calling convention, and build facts.

    ``fallbacks`` lists every kernel (or node) that got slower code than
    tensoropt meant to give it, in pipeline order (lower, schedule /
    unscheduled, build); empty when none did. ``kernels`` gives each
    kernel's final rule label, after any build fallback.
    """

    executable: Any  # tvm.runtime.Executable
    signature: Signature
    target: str
    target_json: Mapping[str, Any]
    kernels: Mapping[str, str] = field(default_factory=dict)  # kernel name -> schedule rule
    seconds: Mapping[str, float] = field(default_factory=dict)
    fallbacks: tuple["Fallback", ...] = ()


def _first_line(e: BaseException) -> str:
    from .schedule import error_line

    return error_line(e)


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


def schedule_kernels(mod: tvm.IRModule, target: tvm.target.Target, progress: Progress | None = None,
                     fallbacks: list["Fallback"] | None = None) -> tuple[tvm.IRModule, dict[str, "Scheduled"]]:
    """Schedule every PrimFunc, one at a time (so progress can name each kernel).

    Returns the module and kernel name -> :class:`~.schedule.Scheduled`; the
    scheduling fallbacks are appended to ``fallbacks``. CUDA goes through
    dlight's GPU rules in one call (its ``Scheduled`` have rule "dlight" or
    "none").
    """
    from .schedule import Scheduled, last_fallbacks, last_report, schedule_kernel, schedule_module

    records = fallbacks if fallbacks is not None else []
    funcs = dict(mod.functions_items())
    if target.kind.name == "cuda":
        out = schedule_module(mod, target)
        records.extend(last_fallbacks)
        done = {gv.name_hint: Scheduled(f, "none" if last_report[gv.name_hint] == "none" else "dlight",
                                        last_report[gv.name_hint], "gpu")
                for gv, f in out.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
        return out, done
    items = [(gv, f) for gv, f in funcs.items() if isinstance(f, tvm.tirx.PrimFunc)]
    chosen: dict[str, Scheduled] = {}
    for k, (gv, func) in enumerate(items):
        if progress is not None:
            progress("schedule", k, len(items), gv.name_hint)
        chosen[gv.name_hint] = schedule_kernel(func, target, gv.name_hint, fallbacks=records)
        funcs[gv] = chosen[gv.name_hint].func
    if progress is not None:
        progress("schedule", len(items), len(items), "")
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos), chosen


#: TVM's TIR lowering passes, without code generation ("default" is what
#: ``tvm.compile`` uses for a Relax module's kernels).
_TIR_PIPELINE = "default"


@tvm.transform.module_pass(opt_level=0, name="tensoropt.NoAliasEverywhere")
def _noalias_everywhere(mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:
    """Mark every PrimFunc ``tirx.noalias`` (the shape functions Relax adds for
    symbolic dims lack it).

    TVM 0.27's LLVM code generation gives kernels their ``noalias``, 64-byte
    aligned parameters (a separate ``_compute_`` function) only when every
    function of the module has the attribute. A model with a symbolic batch
    gets a ``shape_func`` without it, and each of its kernels lost that
    information: SqueezeNet's last conv ran 5.4 ms instead of 2.2 ms, the
    whole model 2x slower than its static twin. The shape function reads and
    writes one buffer (the shape heap), so the attribute is true of it.
    """
    return map_prim_funcs(mod, lambda f: f if f.attrs is not None and "tirx.noalias" in f.attrs
                          else f.with_attr("tirx.noalias", True))


def _compile(module: tvm.IRModule, target: tvm.target.Target) -> Any:
    """``tvm.compile`` with Relax's default pipeline, then :func:`_noalias_everywhere`."""
    pipeline = tvm.transform.Sequential([relax.get_pipeline("default"), _noalias_everywhere])
    return tvm.compile(module, target=target, relax_pipeline=pipeline)


def kernel_build_error(name: str, func: tvm.tirx.PrimFunc, target: tvm.target.Target,
                       codegen: bool) -> str | None:
    """Why ``func`` alone does not build for ``target`` (one line), or None when it does.

    ``codegen=False`` runs TVM's TIR lowering pipeline only (where a bad
    schedule usually fails, at a fifth of the cost); ``True`` also generates
    LLVM code (``tvm.tirx.build``). The kernel goes through
    ``index_safety.make_safe`` first, as it does in the module build.
    """
    one = make_safe(tvm.IRModule({name: func.with_attr("global_symbol", name)}))
    try:
        if codegen:
            tvm.tirx.build(one, target=target)
        else:
            host = target if target.host is not None else target.with_host(target)
            lower, _, _ = tvm.tirx.get_tir_pipeline(_TIR_PIPELINE)
            lower(tvm.tirx.transform.BindTarget(host)(one))
    except Exception as e:  # noqa: BLE001 - TVM raises its own error types; the answer is the message
        return _first_line(e)
    return None


def _replacement(name: str, failed: "Scheduled", original: tvm.tirx.PrimFunc, target: tvm.target.Target,
                 fallbacks: list["Fallback"]) -> "Scheduled":
    """The next rule's schedule of ``original`` that builds alone, else ``original`` unscheduled.

    A candidate is built through code generation (one kernel: cheap), so a
    replacement never fails later. Only bug records of the retried rules are
    kept (a rule not applicable here is not news: the build record says what
    the kernel got).
    """
    from .schedule import Scheduled, schedule_kernel

    tried = {failed.rule}
    while True:
        scratch: list[Fallback] = []
        nxt = schedule_kernel(original, target, name, skip=tried, fallbacks=scratch)
        fallbacks.extend(f for f in scratch if f.bug)
        if nxt.rule == "none":
            return Scheduled(original, "none", "none (schedule failed to build)", failed.family)
        if kernel_build_error(name, nxt.func, target, codegen=True) is None:
            return nxt
        tried.add(nxt.rule)


def _compile_isolating(unscheduled: tvm.IRModule, scheduled: tvm.IRModule, chosen: dict[str, "Scheduled"],
                       target: tvm.target.Target, fallbacks: list["Fallback"]) -> tuple[Any, dict[str, "Scheduled"]]:
    """``tvm.compile`` of ``scheduled``; when it fails, the kernels at fault fall back alone.

    Invariant: the module compiled is always the one returned by
    ``index_safety.make_safe``. Costs nothing extra when the scheduled module
    builds. Returns the executable and the (possibly changed) choices;
    appends one stage-``build`` record per kernel that lost its schedule.
    Raises TensoroptError (one line) only when even the unscheduled module
    does not build.
    """
    from .schedule import Fallback, Scheduled

    try:
        return _compile(scheduled, target), chosen
    except Exception as e:  # noqa: BLE001 - a schedule that applied but does not build: find it
        error = _first_line(e)
    originals = {gv.name_hint: f for gv, f in unscheduled.functions_items()}
    current = dict(scheduled.functions_items())
    chosen = dict(chosen)
    replaced: set[str] = set()  # kernels whose replacement already built alone, code generation included
    for codegen in (False, True):  # cheap lowering first; code generation only if that finds nothing
        culprits = {gv: err for gv, f in current.items()
                    if isinstance(f, tvm.tirx.PrimFunc) and chosen[gv.name_hint].rule != "none"
                    and gv.name_hint not in replaced
                    and (err := kernel_build_error(gv.name_hint, f, target, codegen)) is not None}
        if not culprits:
            continue
        for gv, err in culprits.items():
            name = gv.name_hint
            old = chosen[name]
            new = _replacement(name, old, originals[name], target, fallbacks)
            got = "the unscheduled kernel" if new.rule == "none" else new.label
            fallbacks.append(Fallback(name, "build", f"schedule {old.label} does not build ({err}); "
                                      f"replaced by {got}", bug=True))
            log.info("%s: schedule %s does not build (%s); replaced by %s", name, old.label, err, got)
            chosen[name] = new
            current[gv] = new.func
            replaced.add(name)
        module = make_safe(tvm.IRModule(current, attrs=scheduled.attrs, global_infos=scheduled.global_infos))
        try:
            return _compile(module, target), chosen
        except Exception as e:  # noqa: BLE001 - another kernel at fault, or one that fails only in the module
            error = _first_line(e)
    # No kernel fails alone, or the module still fails: every kernel unscheduled (the old, safe behaviour).
    log.warning("the scheduled module does not build (%s); building every kernel unscheduled", error)
    for name, done in list(chosen.items()):
        if done.rule != "none":
            fallbacks.append(Fallback(name, "build", f"the scheduled module does not build ({error}) and no "
                                      "kernel was found at fault alone; built unscheduled", bug=True))
            chosen[name] = Scheduled(originals[name], "none", "none (schedule failed to build)", done.family)
    try:
        return _compile(make_safe(unscheduled), target), chosen
    except Exception as e:  # noqa: BLE001 - a lowering TVM cannot build at all
        raise TensoroptError(f"the build failed, even unscheduled: {_first_line(e)}") from None


def build(graph: Graph, target: str = "llvm", progress: Progress | None = None) -> Built:
    """Compile ``graph`` for ``target``; :class:`UnsupportedError` names a node that cannot lower.

    Fallbacks (module docstring) are recorded in the result, never raised.
    """
    tgt = make_target(target)
    seconds: dict[str, float] = {}
    fallbacks: list[Fallback] = []
    t0 = time.perf_counter()
    total = len(graph.nodes)
    counter = iter(range(total))

    def on_node(node: Any) -> None:
        if progress is not None:
            progress("lower", next(counter), total, node.label)

    mod, sig = to_relax(graph, on_node=on_node, gpu=target == "cuda", fallbacks=fallbacks)
    if progress is not None:
        progress("lower", total, total, "")
    mod = fuse(mod)
    seconds["lower"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scheduled, chosen = schedule_kernels(mod, tgt, progress, fallbacks)
    scheduled = make_safe(scheduled)
    seconds["schedule"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if progress is not None:
        progress("compile", 0, 1, target)
    if target == "cuda":
        try:
            ex = _compile(scheduled, tgt)
        except Exception as e:  # noqa: BLE001 - dlight's schedules or the NVPTX backend: one line
            raise TensoroptError(f"the CUDA build failed: {_first_line(e)}") from None
    else:
        ex, chosen = _compile_isolating(mod, scheduled, chosen, tgt, fallbacks)
    if progress is not None:
        progress("compile", 1, 1, target)
    seconds["compile"] = time.perf_counter() - t0
    rules = {name: done.label for name, done in chosen.items()}
    return Built(ex, sig, target, plain(tgt.export()), rules, seconds, tuple(fallbacks))
