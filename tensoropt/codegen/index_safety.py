"""TIR rewrites, applied right before ``tvm.compile``, that keep TVM and LLVM
from miscompiling correct programs.

Two defects of the toolchain, each met by random graphs compiled against the
interpreter (``tests/codegen/test_differential.py``), each fixed here at the
TIR level so that every lowering and schedule is covered:

1. ``//`` and ``%`` of a decreasing index (:func:`nonnegative_div_mod`).
2. Guarded reads that lose their guard (:func:`clamp_guarded_loads`).

Both run on the scheduled module (schedules inline producers, which is what
creates the patterns) and are idempotent.

1. ``//`` and ``%`` of a decreasing index
-----------------------------------------

TVM 0.27's ``FlattenBuffer`` simplifies every flattened buffer offset with
its iterator-map simplifier, which is wrong for a floor division or modulo
of an index that *decreases* with a loop variable: the reversed read
``r[161 - i]`` of a reshaped ``x[6, 3, 3, 3]`` flattens to
``(161 - i) // 27 * 27 + (26 - i) % 27 // 9 * 9 + ...``, which it
"simplifies" to ``135 - i`` (``tvm.sym.iter_map_simplify`` shows the same:
``(8 - i) % 9 // 3 * 3 + (2 - i) % 3`` becomes ``i % -9 * -1``). Such
indices come from fusing a reshape (div/mod of a flat index) with a flip,
a reversed slice or any ``expr`` read ``x[c - i]``; the result reads out of
bounds with no error. Upstream main still has the bug.

The fix is an exact integer identity that leaves every coefficient of the
dividend non-negative, which the simplifier handles correctly. For
``a = sum(c_k v_k) + b`` and ``m > 0``, with ``t_k = ceil(-c_k / m)`` for
each negative ``c_k`` (else 0) and ``T = sum(t_k v_k)``:

    a // m == (a + m T) // m - T        a % m == (a + m T) % m

since ``a + m T`` differs from ``a`` by a multiple of ``m``. It holds for
every integer value of the variables, so it needs no bounds and is safe on
block iterators, loop variables and symbolic shape variables alike.
:func:`nonnegative_div_mod` applies it to every PrimFunc of a module (block
bodies, read/write regions, loop bounds: anywhere the expressions occur).

2. Guarded reads that lose their guard
--------------------------------------

A read that may fall outside its tensor (padding, a concat piece, a shifted
or strided ``expr`` read) is lowered as ``Select(in_bounds, X[clamp(i)],
pad)``: a ``Select`` evaluates both operands (and must, to vectorize), so
the address must be valid whatever the condition. But TVM's simplifier uses
a ``Select``'s condition as a fact inside its true operand, so
``max(min(i, n - 1), 0)`` under ``0 <= i < n`` becomes ``i``: the clamp is
gone by the time the PrimFunc is built (``te.create_prim_func`` already
drops it), and the load reads out of bounds on the lanes the ``Select``
discards. For a buffer allocated inside the kernel LLVM knows the
allocation's size, treats the out-of-bounds load as undefined behaviour and
reasons backwards from it (a concat with a materialized piece computed the
wrong rows: off by 0.05 after ``fuse-elementwise``; a padded ``expr``
conv by 0.3).

:func:`clamp_guarded_loads` puts the clamp back where nothing can remove it:
in every operand of a ``Select``, each index of a load that the block's
iterator domains do not prove in bounds is clamped with LLVM's
``smax``/``smin`` intrinsics, which TVM's simplifier does not look into
(LLVM still vectorizes them). One exception keeps vectorized padding fast:
the innermost index of a *function parameter* stays as it is. Parameters
are passed as plain pointers (no ``dereferenceable`` size in the LLVM
function signature, checked on 0.27), so LLVM can assume nothing from such
a read; its lanes are discarded, and it reaches at most the pad width
beyond the row, inside the buffer except at its first and last row.
"""

from __future__ import annotations

from typing import Any, Callable

import tvm
import tvm_ffi
from tvm import s_tir, tirx


def map_prim_funcs(mod: tvm.IRModule, fn: Callable[[tirx.PrimFunc], tirx.PrimFunc]) -> tvm.IRModule:
    """``mod`` with ``fn`` applied to each PrimFunc (Relax functions kept); ``mod``
    itself when ``fn`` returns every function unchanged (the same object)."""
    funcs = {}
    changed = False
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            new = fn(func)
            changed = changed or not new.same_as(func)
            func = new
        funcs[gv] = func
    if not changed:
        return mod
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos)


def _rewrite(a: tirx.PrimExpr, m: int) -> tuple[tirx.PrimExpr, tirx.PrimExpr] | None:
    """``(a + m T, T)`` for the dividend ``a``, or None when ``a`` needs no rewrite."""
    free = list(tirx.analysis.undefined_vars(a, []))
    if not free:
        return None
    coeffs = tvm.sym.detect_linear_equation(a, free)
    if len(coeffs) != len(free) + 1 or not all(isinstance(c, tirx.IntImm) for c in coeffs[:-1]):
        return None  # not affine with constant coefficients: nothing the rule applies to
    dt = str(a.ty.dtype)
    base = coeffs[-1]
    shifted: tirx.PrimExpr = tirx.const(int(base.value), dt) if isinstance(base, tirx.IntImm) else base
    shift: tirx.PrimExpr | None = None
    for v, c in zip(free, coeffs[:-1]):
        c, t = int(c.value), 0
        if c < 0:
            t = -(c // m)  # ceil(-c / m)
            term = tirx.const(t, dt) * v
            shift = term if shift is None else shift + term
        if c + m * t:
            shifted = shifted + tirx.const(c + m * t, dt) * v
    if shift is None:
        return None
    return shifted, shift


def _fix(node: Any) -> Any:
    b = node.b
    if not isinstance(b, tirx.IntImm) or int(b.value) <= 0:
        return node
    got = _rewrite(node.a, int(b.value))
    if got is None:
        return node
    shifted, shift = got
    if isinstance(node, tirx.FloorDiv):
        return tirx.floordiv(shifted, b) - shift
    return tirx.floormod(shifted, b)


def nonnegative_div_mod(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every ``floordiv``/``floormod`` by a positive constant of an
    affine dividend rewritten to non-negative coefficients (module docstring).

    Relax functions are kept as they are; a PrimFunc without such an
    expression comes back unchanged (the same object).
    """
    return map_prim_funcs(mod, lambda f: tvm_ffi.structural_map(f, [((tirx.FloorDiv, tirx.FloorMod), _fix)]))


# -- 2. guarded reads ---------------------------------------------------------

_SMAX, _SMIN = "llvm.smax", "llvm.smin"


def _as(n: tirx.PrimExpr, dt: str) -> tirx.PrimExpr:
    """An extent in the index dtype ``dt``."""
    if isinstance(n, tirx.IntImm):
        return tirx.const(int(n.value), dt)
    return n if str(n.ty.dtype) == dt else tirx.Cast(dt, n)


def _opaque_clamp(i: tirx.PrimExpr, n: tirx.PrimExpr) -> tirx.PrimExpr:
    """``i`` clamped into ``[0, n)`` by LLVM intrinsics the TVM simplifier leaves alone."""
    dt = str(i.ty.dtype)
    lo = tirx.call_llvm_pure_intrin(dt, _SMAX, i, tirx.const(0, dt))
    return tirx.call_llvm_pure_intrin(dt, _SMIN, lo, _as(n, dt) - tirx.const(1, dt))


def _is_opaque_clamp(i: tirx.PrimExpr) -> bool:
    return isinstance(i, tvm.ir.expr.Call) and getattr(i.op, "name", "") == "tirx.call_llvm_pure_intrin"


def _contains_block(stmt: Any) -> bool:
    found = []

    def seen(block: Any) -> Any:
        found.append(block)
        return block

    tvm_ffi.structural_map(stmt, [(s_tir.SBlock, seen)])
    return bool(found)


class _Guard:
    """The rewrite of one PrimFunc: its parameter buffers, then block by block
    (:meth:`block`), the iterator domains that prove loads in bounds."""

    def __init__(self, func: tirx.PrimFunc) -> None:
        self.params = list(func.params)

    def block(self, blk: Any) -> Any:
        """A leaf block with its guarded loads clamped (other blocks: their
        leaves are visited on their own, each with its own iterators; an
        iterator may occur in two blocks with different domains, e.g. in a
        function specialized for a dim value beside its general form)."""
        if _contains_block(blk.body):
            return blk
        ana = tvm.sym.Analyzer()
        for iv in blk.iter_vars:
            ana.bind(iv.var, iv.dom)
        return tvm_ffi.structural_map(blk, [(tirx.Select, lambda sel: self.select(sel, ana))])

    def load(self, ld: Any, ana: tvm.sym.Analyzer) -> Any:
        buf = ld.source
        shape = list(buf.shape)
        idx = list(ld.indices)
        if len(shape) != len(idx):
            return ld
        param = any(buf.same_as(p) for p in self.params)
        new = []
        changed = False
        for k, (i, n) in enumerate(zip(idx, shape)):
            dt = str(i.ty.dtype)
            keep = (param and k == len(idx) - 1) or _is_opaque_clamp(i) or (
                bool(ana.can_prove(i >= tirx.const(0, dt))) and bool(ana.can_prove(i < _as(n, dt))))
            new.append(i if keep else _opaque_clamp(i, n))
            changed = changed or not keep
        return tirx.BufferLoad(buf, new) if changed else ld

    def select(self, sel: tirx.Select, ana: tvm.sym.Analyzer) -> Any:
        arms = [tvm_ffi.structural_map(v, [(tvm.ir.expr.TensorLoad, lambda ld: self.load(ld, ana))])
                for v in (sel.true_value, sel.false_value)]
        if all(a.same_as(v) for a, v in zip(arms, (sel.true_value, sel.false_value))):
            return sel
        return tirx.Select(sel.condition, arms[0], arms[1])


def clamp_guarded_loads(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the loads in every ``Select`` operand clamped into their
    buffers where the iterator domains do not prove them in bounds (see the
    module docstring, part 2). Values are unchanged: a clamped load is only
    ever discarded by its ``Select``.
    """
    return map_prim_funcs(mod, lambda f: tvm_ffi.structural_map(f, [(s_tir.SBlock, _Guard(f).block)], order="pre"))


def make_safe(mod: tvm.IRModule) -> tvm.IRModule:
    """Both rewrites of this module, in the order ``tvm.compile`` needs them."""
    return clamp_guarded_loads(nonnegative_div_mod(mod))
