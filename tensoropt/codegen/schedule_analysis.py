"""Block analysis shared by the CPU schedule rules.

Everything here reads a `tvm.s_tir.Schedule` without changing it. The rules in
`schedule_rules.py` use it to decide which schedule a PrimFunc gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import s_tir, tirx
from tvm.target import Target
from tvm.target.codegen import llvm_cpu_has_features, llvm_get_vector_width

# TVM 0.27: a BufferLoad is a tvm.ir.expr.TensorLoad whose `.source` is the
# buffer (a Var with .shape); BufferStore keeps `.buffer`.
BufferLoad = tvm.ir.expr.TensorLoad

# IterVar.iter_type codes (tvm/tirx/expr.py: DataPar = 0, CommReduce = 2).
_DATA_PAR = 0
_COMM_REDUCE = 2


@dataclass
class IterInfo:
    """One block iterator: its var, 'S' (spatial), 'R' (reduction) or 'O' (other), extent."""

    var: tirx.Var
    kind: str
    extent: tirx.PrimExpr

    @property
    def static_extent(self) -> int | None:
        """The extent as a Python int, or None when it is symbolic."""
        return int(self.extent) if isinstance(self.extent, tirx.IntImm) else None


@dataclass
class BlockInfo:
    """A root-level block with its iterators and whether its loops map 1:1 onto them."""

    rv: s_tir.SBlockRV
    name: str
    iters: list[IterInfo]
    simple_loops: bool  # loops[i] binds iters[i] directly (true for blocks from te.compute)
    reads: list[tirx.Buffer] = field(default_factory=list)
    writes: list[tirx.Buffer] = field(default_factory=list)

    @property
    def kinds(self) -> str:
        return "".join(it.kind for it in self.iters)

    @property
    def is_reduction(self) -> bool:
        return "R" in self.kinds

    @property
    def is_spatial(self) -> bool:
        return set(self.kinds) <= {"S"}


def root_blocks(sch: s_tir.Schedule) -> list[s_tir.SBlockRV]:
    """The blocks directly under the root block, in program order."""
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def block_info(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> BlockInfo:
    """Describe one block (see BlockInfo)."""
    blk = sch.get(rv)
    iters = []
    for iv in blk.iter_vars:
        kind = {_DATA_PAR: "S", _COMM_REDUCE: "R"}.get(int(iv.iter_type), "O")
        iters.append(IterInfo(iv.var, kind, iv.dom.extent))
    loops = sch.get_loops(rv)
    simple = False
    if loops and len(loops) == len(iters):
        realize = sch.get(loops[-1]).body
        if isinstance(realize, s_tir.SBlockRealize):
            simple = all(
                isinstance(val, tirx.Var) and val.same_as(sch.get(lp).loop_var)
                for val, lp in zip(realize.iter_values, loops)
            )
    return BlockInfo(
        rv=rv,
        name=blk.name_hint,
        iters=iters,
        simple_loops=simple,
        reads=[r.source for r in blk.reads],
        writes=[w.source for w in blk.writes],
    )


def all_blocks(sch: s_tir.Schedule) -> list[BlockInfo]:
    """BlockInfo for each root-level block."""
    return [block_info(sch, rv) for rv in root_blocks(sch)]


def _strip_cast(e: tirx.PrimExpr) -> tirx.PrimExpr:
    while isinstance(e, tirx.Cast):
        e = e.value
    return e


@dataclass
class MulSum:
    """A block whose update is `out[...] = out[...] + X[...] * Y[...]` (matmul, conv, ...),
    possibly times a constant (`X * Y * alpha`)."""

    out: tirx.BufferStore
    lhs: BufferLoad
    rhs: BufferLoad


def match_mul_sum(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> MulSum | None:
    """Recognise a multiply-accumulate reduction body; None for anything else."""
    body = sch.get(rv).body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return None
    a, b = body.value.a, body.value.b
    for acc, prod in ((a, b), (b, a)):
        if isinstance(acc, BufferLoad) and acc.source.same_as(body.buffer):
            prod = _strip_cast(prod)
            if not isinstance(prod, tirx.Mul):
                return None
            x, y = _strip_cast(prod.a), _strip_cast(prod.b)
            # a constant factor on the product (ONNX Gemm's alpha: x * w * 0.5)
            if isinstance(y, (tirx.FloatImm, tirx.IntImm)) and isinstance(x, tirx.Mul):
                x, y = _strip_cast(x.a), _strip_cast(x.b)
            elif isinstance(x, (tirx.FloatImm, tirx.IntImm)) and isinstance(y, tirx.Mul):
                x, y = _strip_cast(y.a), _strip_cast(y.b)
            if isinstance(x, BufferLoad) and isinstance(y, BufferLoad):
                return MulSum(body, x, y)
            return None
    return None


def walk_expr(node: object, visit) -> None:
    """Pre-order walk over a TIR expression (or BufferStore) tree, calling visit(node).

    TVM 0.27 exposes no Python post_order_visit for TIR, so this follows the
    child fields of the expression node kinds that te.compute bodies contain.
    """
    stack = [node]
    while stack:
        cur = stack.pop()
        if cur is None:
            continue
        visit(cur)
        for attr in ("a", "b", "value", "condition", "true_value", "false_value"):
            child = getattr(cur, attr, None)
            if child is not None and not isinstance(child, (int, float, str)):
                stack.append(child)
        for attr in ("args", "indices"):
            seq = getattr(cur, attr, None)
            if seq is not None:
                stack.extend(list(seq))


def uses_var(expr: tirx.PrimExpr, var: tirx.Var) -> bool:
    """Whether `var` occurs in `expr`."""
    return any(v.same_as(var) for v in tirx.analysis.undefined_vars(expr, []))


def has_if_then_else(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> bool:
    """Whether the block body contains a select/if_then_else (e.g. a padding stage)."""
    found = [False]

    def visit(node: object) -> None:
        if isinstance(node, tirx.Select):
            found[0] = True
        elif getattr(getattr(node, "op", None), "name", "") in ("tirx.if_then_else", "tir.if_then_else"):
            found[0] = True

    walk_expr(sch.get(rv).body, visit)
    return found[0]


def buffer_loads(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> list[BufferLoad]:
    """All BufferLoads in the block body (init excluded)."""
    loads: list[BufferLoad] = []

    def visit(node: object) -> None:
        if isinstance(node, BufferLoad):
            loads.append(node)

    walk_expr(sch.get(rv).body, visit)
    return loads


def vector_lanes(target: Target, bits: int = 32) -> int:
    """Number of `bits`-wide lanes in one SIMD register of an llvm target (>= 4).

    Asks LLVM about the target's -mcpu features: `llvm_get_vector_width` in
    0.27 answers 512 for every x86 -mcpu on an AVX-512 host, so it is only
    used for non-x86 targets.
    """
    width = 0
    try:
        if llvm_cpu_has_features(["avx512f"], target):
            width = 512
        elif llvm_cpu_has_features(["avx2"], target) or llvm_cpu_has_features(["avx"], target):
            width = 256
        elif llvm_cpu_has_features(["sse2"], target):
            width = 128
        else:
            width = int(llvm_get_vector_width(target))
    except (RuntimeError, ValueError):
        width = -1
    if width <= 0:
        width = 128
    return max(width // bits, 4)


def num_vector_registers(target: Target) -> int:
    """SIMD register count: 32 with AVX-512, 16 otherwise (AVX2/SSE, conservative)."""
    return 32 if vector_lanes(target) >= 16 else 16


def num_cores(target: Target) -> int:
    """The target's `num-cores` (1 when absent)."""
    val = target.attrs.get("num-cores") if hasattr(target, "attrs") else None
    try:
        return max(int(val), 1) if val is not None else 1
    except (TypeError, ValueError):
        return 1


def loop_extent(sch: s_tir.Schedule, loop: s_tir.LoopRV) -> int | None:
    """Static extent of a loop, or None."""
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None
