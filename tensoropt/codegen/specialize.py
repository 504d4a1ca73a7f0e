"""Run-time specialization of a kernel on a symbolic dim equal to 1.

A kernel with a symbolic batch is scheduled for any batch: the GEMM rule pads
the symbolic rows to a multiple of the register tile (a padded copy of the
input and a crop of the output), and a row reduction is parallel because its
row count is unknown. At batch 1, the most common inference batch, that is
several times the static twin's time on small kernels: the final fully
connected layer of a CNN (a 64 -> 10 GEMM took 21 us symbolic, 1.4 us
static), its softmax (7.7 us against 1.0 us).

:func:`specialize_unit` gives such a kernel both schedules in one PrimFunc:

    if batch == 1: <the kernel specialized to batch 1, scheduled as static>
    else:          <the general schedule>

The branch is taken once per call, outside every loop. Only kernels with
exactly one symbolic dim are specialized, and only where it changes
something: the rule chose another schedule for the static kernel, or the
kernel is small at dim 1 (its output under the parallel threshold, where
fork/join costs more than the work). Everything else keeps one body.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.target import Target

#: schedule_prim_func's signature: (func, target) -> (scheduled func, rule label)
Scheduler = Callable[[tirx.PrimFunc, Target], "tuple[tirx.PrimFunc, str]"]


def _symbols(func: tirx.PrimFunc) -> list[tirx.Var]:
    """The symbolic dims of the function's parameter shapes, in order of first use."""
    out: list[tirx.Var] = []
    for p in func.params:
        for d in getattr(p, "shape", ()):
            if isinstance(d, tirx.IntImm):
                continue
            for v in tirx.analysis.undefined_vars(d, []):
                if not any(v.same_as(o) for o in out):
                    out.append(v)
    return out


def _at_one(func: tirx.PrimFunc, var: tirx.Var) -> tirx.PrimFunc | None:
    """``func`` with ``var`` bound to 1 (TVM's ``specialize`` through a parameter
    buffer that has ``var`` as a plain dim), or None when no buffer does."""
    for p in func.params:
        shape = list(getattr(p, "shape", ()))
        if not any(isinstance(d, tirx.Var) and d.same_as(var) for d in shape):
            continue
        one = tirx.const(1, str(var.ty.dtype))
        dims = [one if isinstance(d, tirx.Var) and d.same_as(var) else d for d in shape]
        return func.specialize({p: tirx.decl_buffer(dims, str(p.dtype), name=str(p.name))})
    return None


def _allocated(body: Any) -> list[Any]:
    """The buffers the blocks of ``body`` allocate."""
    out: list[Any] = []

    def visit(block: Any) -> Any:
        out.extend(block.alloc_buffers)
        return block

    tvm_ffi.structural_map(body, [(s_tir.SBlock, visit)])
    return out


def _family(label: str) -> str:
    """A rule label without what only the symbolic version has (the padding)."""
    return label.split(",pad=")[0].rstrip(")")


def _output_numel(func: tirx.PrimFunc) -> int | None:
    shape = list(getattr(func.params[-1], "shape", ()))
    if not all(isinstance(d, tirx.IntImm) for d in shape):
        return None
    return math.prod(int(d) for d in shape)


def specialize_unit(func: tirx.PrimFunc, general: tirx.PrimFunc, label: str, target: Target,
                    schedule: Scheduler, parallel_min_work: int) -> tuple[tirx.PrimFunc, str] | None:
    """``general`` (``func`` scheduled, with rule ``label``) given a batch-1
    branch (module docstring) and its label ("<label> | <dim>=1: <static
    label>"); None when specializing does not apply or would change nothing.
    ``schedule`` schedules the specialized (static) function."""
    syms = _symbols(func)
    if len(syms) != 1:
        return None
    var = syms[0]
    one = _at_one(func, var)
    if one is None:
        return None
    special, label1 = schedule(one, target)
    small = (_output_numel(one) or parallel_min_work) < parallel_min_work
    if _family(label) == _family(label1) and not small:
        return None
    # The specialized body reads the specialized parameters; point it at the
    # general ones (same data, same strides: only the shapes' dim differs,
    # and it is 1 on this branch).
    # Matched by name: specializing drops a scalar parameter that carried the
    # dim (a kernel whose inputs do not hold it gets it as an int argument).
    by_name = {str(p.name): p for p in general.params}
    remap = [(a, by_name[str(a.name)]) for a in special.params if not a.same_as(by_name[str(a.name)])]
    # Buffers allocated inside: the same objects in both schedules; TVM wants
    # one definition each, so the specialized side gets its own.
    for b in _allocated(special.body):
        remap.append((b, tirx.decl_buffer(b.shape, str(b.dtype), f"{b.name}_1", scope=b.scope())))

    def param(v: Any) -> Any:
        for a, b in remap:
            if v.same_as(a):
                return b
        return v

    body = tvm_ffi.structural_map(special.body, [(tvm.ir.expr.Var, param)])
    cond = tirx.EQ(var, tirx.const(1, str(var.ty.dtype)))
    # TVM's lowering wants the function body to be one root block: the two
    # schedules' root blocks become opaque blocks on either side of the branch.
    root = s_tir.SBlock([], [], [], "root", tirx.IfThenElse(cond, body, general.body))
    merged = general.with_body(s_tir.SBlockRealize([], True, root))
    # Both schedules come from one function: their loop and block variables
    # are the same objects with different ranges; rename one side's.
    merged = s_tir.transform.ConvertSSA()(tvm.IRModule({"main": merged}))["main"]
    return merged, f"{label} | {var.name}=1: {label1}"
