"""GEMV CPU rule: a multiply-accumulate with one output row (a batch-1 fully
connected layer, ``y[0, j] = sum_k x[0, k] * W[j, k]``).

The GEMM rule register-tiles output rows; with a single row there is nothing
to tile and it declines. Left to the catch-all rule, the reduction over ``k``
runs as a scalar chain per output (AlexNet's 9216 -> 4096 layer: 42 ms, the
layer being memory-bound at about 10 ms). Here the reduction is split by
the vector width and factored (``rfactor``):

    part[j, l] = sum_o x[0, o*L + l] * W[j, o*L + l]     # l vectorised, j parallel
    y[0, j]    = sum_l part[j, l]                        # L partial sums per output

so every load of ``W`` is a contiguous vector and the products accumulate in
``L`` lanes. Applies when the reduction axis is the last (contiguous) index
of both operands and a multiple of ``L``. With the weights the other way
round (``W[k, j]``, contiguous along the outputs) the outputs are the vector
axis instead: the GEMM rule's micro kernel with one row. Otherwise it
declines and the catch-all rule takes the kernel. The same kernel at any batch goes to the
GEMM rule, and a symbolic batch reaches this rule through its batch-1
specialization (``codegen.specialize``).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.target import Target

from .schedule_analysis import all_blocks, match_mul_sum, vector_lanes
from .schedule_gemm import RuleNotApplicable, schedule_gemm


def _split_width(k_ext: int | None, lanes: int) -> int:
    for width in (max(lanes, 16), lanes):
        if k_ext is not None and k_ext % width == 0 and k_ext >= 2 * width:
            return width
    raise RuleNotApplicable("reduction extent is not a multiple of the vector width")


def schedule_gemv(sch: s_tir.Schedule, target: Target) -> str:
    """Split-K schedule of a one-row multiply-accumulate (module docstring)."""
    from .schedule_rules import schedule_injective_block, schedule_reduce_block  # import cycle

    blocks = all_blocks(sch)
    reds = [b for b in blocks if b.is_reduction]
    if len(reds) != 1:
        raise RuleNotApplicable("needs exactly one reduction block")
    main = reds[0]
    mm = match_mul_sum(sch, main.rv)
    if mm is None or not main.simple_loops or main.kinds != "S" * main.kinds.count("S") + "R":
        raise RuleNotApplicable("not a multiply-accumulate over one trailing reduction axis")
    spatial = [it for it in main.iters if it.kind == "S"]
    if sum(1 for it in spatial if it.static_extent != 1) != 1:
        raise RuleNotApplicable("not one output row")
    k = main.iters[-1]

    def last_is(ld, var: tirx.Var) -> bool:
        last = ld.indices[-1] if len(ld.indices) else None
        return isinstance(last, tirx.Var) and last.same_as(var)

    if not all(last_is(ld, k.var) for ld in (mm.lhs, mm.rhs)):
        # W[k, j]: the output axis is the contiguous one, so the GEMM micro
        # kernel with a single row fits: acc[j:j+nr] += x[k] * W[k, j:j+nr]
        # (the reduce rule's inner form walked W by columns: InfoGAN's batch-1
        # Linear layers ran 4x PyTorch)
        out = next(it for it in spatial if it.static_extent != 1)
        if not any(last_is(ld, out.var) for ld in (mm.lhs, mm.rhs)):
            raise RuleNotApplicable("neither the reduction nor the output axis is contiguous")
        return "gemv(" + schedule_gemm(sch, target, unit_rows=True) + ")"
    lanes = vector_lanes(target)
    width = _split_width(k.static_extent, lanes)
    k_loop = sch.get_loops(main.rv)[-1]
    _, k_lane = sch.split(k_loop, [None, width])
    part = sch.rfactor(k_lane, factor_axis=len(spatial))
    # rfactor puts the lane iterator l first in both blocks: part's iterators
    # become (l, spatial.., o), the final sum's (l, spatial..). The rules
    # expect spatial iterators first, reductions last, loops in that order.
    n = len(spatial)
    sch.reorder_block_iter_var(part, [*range(1, n + 1), 0, n + 1])
    sch.reorder_block_iter_var(main.rv, [*range(1, n + 1), 0])
    loops = sch.get_loops(part)
    sch.reorder(loops[-1], loops[-2])  # (.., o, l) -> (.., l, o)
    # part[..., j, l] = sum_o: the window form of the reduce rule vectorises l
    # (the reduction runs outside it), the final sum over l is a short inner one
    others = [b.name for b in blocks if b.name != main.name]
    labels = [schedule_reduce_block(sch, part, target), schedule_reduce_block(sch, main.rv, target)]
    for name in others:  # producers and the epilogue, each on its own
        rv = sch.get_sblock(name)
        if sch.get_loops(rv):
            schedule_injective_block(sch, rv, target)
    return f"gemv(split={width},{'+'.join(labels)})"
