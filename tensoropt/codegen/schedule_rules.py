"""Non-GEMM CPU rules: row reductions (softmax, layernorm), window/axis reductions
(pooling, reduce over a non-contiguous axis) and the injective fallback.

Every rule mutates a `tvm.s_tir.Schedule` in place and raises (RuleNotApplicable
or a TVM error) when it cannot apply; `schedule.py` catches that and falls back.

Symbolic extents (a batch, a sequence length) are never split by the vector
width: the split needs a per-lane predicate, which TVM's vectorizer turns
back into scalar code. Such a loop stays serial and innermost, and LLVM's
own loop vectorizer handles its run-time trip count (a [64, n] elementwise
loop: 582 us split and predicated, 23 us serial, 24 us with n static). An
elementwise nest keeps its static trailing loops apart from the symbolic
ones for the same reason (``_fuse_static_tail``).
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx
from tvm.ir.prim import expr_deep_equal
from tvm.target import Target

from .schedule_analysis import all_blocks, block_info, buffer_loads, loop_extent, num_cores, uses_var, vector_lanes
from .schedule_gemm import RuleNotApplicable, reverse_inline

# Below this many output elements a parallel loop costs more than it saves
# (thread-pool wake-up is a few microseconds).
PARALLEL_MIN_WORK = 16384


def _static_product(sch: s_tir.Schedule, loops: list[s_tir.LoopRV]) -> int | None:
    total = 1
    for lp in loops:
        ext = loop_extent(sch, lp)
        if ext is None:
            return None
        total *= ext
    return total


def _vectorize_inner(sch: s_tir.Schedule, loop: s_tir.LoopRV, lanes: int) -> s_tir.LoopRV | None:
    """Vectorise `loop` (splitting off `lanes` when it divides); returns the outer rest or None.

    A symbolic loop stays serial (module docstring: symbolic extents).
    """
    ext = loop_extent(sch, loop)
    if ext is None:
        return None
    if ext <= 1:
        return None
    if ext <= lanes * 2 and ext >= 4:
        sch.vectorize(loop)
        return None
    for width in (lanes, lanes // 2, lanes // 4):
        if width >= 4 and ext % width == 0:
            outer, inner = sch.split(loop, [None, width])
            sch.vectorize(inner)
            return outer
    return None


def schedule_injective_block(sch: s_tir.Schedule, rv: s_tir.SBlockRV, target: Target) -> None:
    """Spatial block: parallel over the fused outer loops when there is enough work,
    vectorise by SIMD lanes along the output's contiguous axis.

    Pure elementwise blocks (every load indexed exactly like the store, in a
    buffer of the same shape) are fused completely first, so short trailing
    axes (7x7) still vectorise: flattened, the fused index is the same plain
    offset on both sides. A pad (the same indices into a smaller buffer) is
    not one: fused, each lane's load needed its own div/mod (a 3x3/2 maxpool's
    padded copy took 2.3 ms, the pool itself 0.15).
    Other blocks (pads, transposes, broadcasts) vectorise their innermost loop
    only, because a fused index with div/mod makes TVM scalarise the vector.
    """
    info = block_info(sch, rv)
    loops = sch.get_loops(rv)
    if not loops:
        return
    lanes = vector_lanes(target)
    work = _static_product(sch, loops)
    store = sch.get(rv).body
    if not (info.simple_loops and isinstance(store, tirx.BufferStore) and len(store.indices) > 0):
        contiguous = elementwise = False
    else:
        idx = list(store.indices)
        contiguous = isinstance(idx[-1], tirx.Var) and idx[-1].same_as(info.iters[-1].var)
        elementwise = contiguous and len(idx) == len(info.iters) and all(
            isinstance(v, tirx.Var) and v.same_as(it.var) for v, it in zip(idx, info.iters)
        ) and all(
            len(ld.indices) == len(idx) and all(a.same_as(b) for a, b in zip(ld.indices, idx))
            and _same_shape(ld.source, store.buffer)
            for ld in buffer_loads(sch, rv)
        )
    if elementwise and len(loops) > 1:
        loops = _fuse_static_tail(sch, loops)
    outer = loops[:-1]
    inner = loops[-1]
    if contiguous:
        ext = loop_extent(sch, inner)
        if ext is None:
            pass  # serial: LLVM vectorizes it (module docstring)
        elif ext % lanes == 0:
            rest, vec = sch.split(inner, [None, lanes])
            sch.vectorize(vec)
            outer = outer + [rest]
        elif 4 <= ext <= lanes:
            sch.vectorize(inner)
        elif ext < 8:
            outer = outer + [inner]
        # else: a serial inner loop (fusing it into the parallel loop would
        # put a div/mod per element into the index arithmetic)
    else:
        ext = loop_extent(sch, inner)
        if ext is not None and ext < 8:
            outer = outer + [inner]
    if not outer or not (work is None or work >= PARALLEL_MIN_WORK) or num_cores(target) < 2:
        return
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    ext = loop_extent(sch, fused)
    if ext is None or ext >= 2:
        sch.parallel(fused)


def _same_shape(a, b) -> bool:
    sa, sb = list(a.shape), list(b.shape)
    return len(sa) == len(sb) and all(expr_deep_equal(x, y) for x, y in zip(sa, sb))


def _fuse_static_tail(sch: s_tir.Schedule, loops: list[s_tir.LoopRV]) -> list[s_tir.LoopRV]:
    """An elementwise nest as [inner] (all static), [symbolic outer, static inner],
    or unchanged when the innermost loop is symbolic.

    Fusing a symbolic batch or sequence loop into the vectorised one puts a
    symbolic div/mod into every lane's index (measured 1.7x slower on a
    [seq, 768] exp); the static trailing loops fused alone keep it a plain
    contiguous vector.
    """
    tail = 0
    for lp in reversed(loops):
        if loop_extent(sch, lp) is None:
            break
        tail += 1
    if tail == len(loops):
        return [sch.fuse(*loops)]
    if tail == 0:
        return loops  # a symbolic innermost loop stays alone and serial (module docstring)
    head, rest = loops[:-tail], loops[-tail:]
    outer = sch.fuse(*head) if len(head) > 1 else head[0]
    inner = sch.fuse(*rest) if len(rest) > 1 else rest[0]
    return [outer, inner]


def _leading_spatial(info) -> int:
    kinds = info.kinds
    return len(kinds) - len(kinds.lstrip("S"))


def schedule_rows(sch: s_tir.Schedule, target: Target) -> str:
    """Row-wise fused reductions (softmax, log_softmax, layernorm, rmsnorm).

    Expects >= 2 blocks, at least one reduction over trailing axes, the last
    block spatial, and all blocks sharing their leading spatial extents. Every
    block is computed per row under one parallel row loop; elementwise parts
    are vectorised and the reductions are split by the vector width and
    unrolled (an rfactor would need each reduction first under its loop).
    """
    blocks = all_blocks(sch)
    if len(blocks) < 2 or not any(b.is_reduction for b in blocks) or not blocks[-1].is_spatial:
        raise RuleNotApplicable("not a row-reduction chain")
    if not all(b.simple_loops for b in blocks):
        raise RuleNotApplicable("non-trivial loop bindings")
    # Elementwise blocks between the reductions and the output (softmax's
    # divide before a masking where) go into their consumers: otherwise each
    # row is written to a row buffer and read back, and with a symbolic row
    # length that buffer is a heap allocation per row.
    for b in blocks[:-1]:
        if b.is_spatial:
            try:
                sch.compute_inline(b.rv)
            except s_tir.ScheduleError:
                pass
    blocks = all_blocks(sch)
    lead = min(_leading_spatial(b) for b in blocks)
    if lead < 1:
        raise RuleNotApplicable("a block has no leading spatial axis")
    # Leading extents must agree (structurally) across blocks for compute_at to keep rows.
    ref = [it.extent for it in blocks[-1].iters[:lead]]
    for b in blocks:
        for e, r in zip(b.iters[:lead], ref):
            if not expr_deep_equal(e.extent, r):
                raise RuleNotApplicable("leading extents differ")
    # The reductions must not run over the leading (row) axes: the reduced
    # axes of each reduction block are all trailing.
    for b in blocks:
        if b.is_reduction and b.kinds != b.kinds.rstrip("R") + "R" * b.kinds.count("R"):
            raise RuleNotApplicable("reduction interleaved with spatial axes")
    lanes = vector_lanes(target)
    last = blocks[-1]
    loops = sch.get_loops(last.rv)
    rows = sch.fuse(*loops[:lead]) if lead > 1 else loops[0]
    row_count = loop_extent(sch, rows)
    total = _static_product(sch, sch.get_loops(last.rv))
    if (total is None or total >= PARALLEL_MIN_WORK) and (row_count is None or row_count >= 2):
        sch.parallel(rows)
    inner = sch.get_loops(last.rv)[1:]
    if inner:
        _vectorize_inner(sch, inner[-1], lanes)
    for b in reversed(blocks[:-1]):
        sch.compute_at(b.rv, rows, preserve_unit_loops=True)
    for b in blocks[:-1]:
        bl = sch.get_loops(b.rv)[1:]
        if not bl:
            continue
        if b.is_spatial:
            _vectorize_inner(sch, bl[-1], lanes)
        else:
            ext = loop_extent(sch, bl[-1])
            if ext is not None and ext > lanes:  # a symbolic one stays serial
                _, ki = sch.split(bl[-1], [None, lanes])
                sch.unroll(ki)
    return "rows"


def schedule_reduce_block(sch: s_tir.Schedule, rv: s_tir.SBlockRV, target: Target) -> str:
    """One reduction block (pooling, reduce_sum/mean/max over any axes).

    If the innermost spatial iterator indexes the last (contiguous) dimension
    of the inputs, the reduction loops are moved outside it so that it can be
    vectorised ("window": pooling, reductions over non-last axes); otherwise
    the reduction stays innermost under parallel outer loops ("inner").
    """
    info = block_info(sch, rv)
    if not info.simple_loops or info.kinds.rstrip("R") != "S" * info.kinds.rstrip("R").count("S"):
        raise RuleNotApplicable("reduction iterators must come last")
    lanes = vector_lanes(target)
    loops = sch.get_loops(rv)
    n_s = info.kinds.count("S")
    s_loops, r_loops = loops[:n_s], loops[n_s:]
    blk = sch.get(rv)
    last_var = info.iters[n_s - 1].var if n_s else None
    window = False
    if last_var is not None:
        out_buf = blk.writes[0].source
        loads = [ld for ld in buffer_loads(sch, rv) if not ld.source.same_as(out_buf)]
        # Unit stride only: a strided window (pooling with stride 2) becomes
        # gathers when vectorised and ran 2x slower than a scalar inner window.
        ana = tvm.sym.Analyzer()
        window = bool(loads) and all(
            len(ld.indices) > 0 and uses_var(ld.indices[-1], last_var)
            and not uses_var(ana.simplify(ld.indices[-1] - last_var), last_var)
            for ld in loads
        )
    work = _static_product(sch, s_loops)
    red = _static_product(sch, r_loops)
    if window and n_s >= 1:
        sch.reorder(*s_loops[:-1], *r_loops, s_loops[-1])
        outer = sch.fuse(*s_loops[:-1]) if n_s > 2 else (s_loops[0] if n_s == 2 else None)
        vec_rest = _vectorize_inner(sch, s_loops[-1], lanes)
        del vec_rest
        if outer is not None and (work is None or work >= PARALLEL_MIN_WORK):
            sch.parallel(outer)
        if red is not None and red <= 16:
            for lp in r_loops:
                sch.unroll(lp)
        init = sch.decompose_reduction(rv, r_loops[0])
        il = sch.get_loops(init)
        _vectorize_inner(sch, il[-1], lanes)
        return "reduce(window)"
    if _lane_split_applies(sch, rv, info, r_loops, red, lanes):
        label = _schedule_lane_split(sch, rv, info, target)
        if label is not None:
            return label
    if n_s:
        # Keep the innermost spatial loop serial when it is long: fusing it too
        # puts a div/mod per output element into the index arithmetic.
        last_ext = loop_extent(sch, s_loops[-1])
        par = s_loops if (n_s == 1 or (last_ext is not None and last_ext < 8)) else s_loops[:-1]
        outer = sch.fuse(*par) if len(par) > 1 else par[0]
        if work is None or work * (red or 1) >= PARALLEL_MIN_WORK:
            sch.parallel(outer)
    if r_loops and red is not None and red <= 16:
        for lp in r_loops:
            sch.unroll(lp)
    elif r_loops:
        ext = loop_extent(sch, r_loops[-1])
        if ext is not None and ext > lanes:  # a symbolic one stays serial
            _, ki = sch.split(r_loops[-1], [None, lanes])
            sch.unroll(ki)
    return "reduce(inner)"


def _lane_split_applies(sch: s_tir.Schedule, rv: s_tir.SBlockRV, info, r_loops: list[s_tir.LoopRV],
                        red: int | None, lanes: int) -> bool:
    """A long reduction whose innermost axis walks every input contiguously
    and is a whole number of vectors (a global pool over 16x16, a sum over
    the last axis). Short ones (at most 16: the unrolled inner form, and the
    final sum of a split) are left alone."""
    if not r_loops or red is None or red <= 16:
        return False
    ext = loop_extent(sch, r_loops[-1])
    if ext is None or ext % lanes:
        return False
    r_var = info.iters[-1].var
    blk = sch.get(rv)
    loads = [ld for ld in buffer_loads(sch, rv) if not ld.source.same_as(blk.writes[0].source)]
    return bool(loads) and all(
        len(ld.indices) > 0 and isinstance(ld.indices[-1], tirx.Var) and ld.indices[-1].same_as(r_var)
        for ld in loads
    )


def _lane_split(sch: s_tir.Schedule, rv: s_tir.SBlockRV, n_s: int, lanes: int) -> s_tir.SBlockRV:
    r_loop = sch.get_loops(rv)[-1]
    _, lane = sch.split(r_loop, [None, lanes])
    return sch.rfactor(lane, factor_axis=n_s)


def _schedule_lane_split(sch: s_tir.Schedule, rv: s_tir.SBlockRV, info, target: Target) -> str | None:
    """Split the innermost reduction by the vector width and factor it:

        part[.., l] = sum_{r.., o} x[.., r.., o*L + l]    # l vectorised (the window form)
        out[..]     = sum_l part[.., l]                   # L partial sums, unrolled

    The inner form summed one scalar chain per output (the demo's global
    average pool over 64x16x16: 10 us). None, with ``sch`` untouched, when
    rfactor does not know the reducer: tried on a copy first, because a
    failed primitive half-way through would leave the split behind."""
    n_s, n_r = info.kinds.count("S"), info.kinds.count("R")
    lanes = vector_lanes(target)
    try:
        _lane_split(sch.copy(), rv, n_s, lanes)
    except (s_tir.ScheduleError, tvm.error.InternalError):
        return None
    part = _lane_split(sch, rv, n_s, lanes)
    # as in the GEMV rule: rfactor puts the lane iterator first in both
    # blocks; the rules want spatial iterators first, reductions last
    sch.reorder_block_iter_var(part, [*range(1, n_s + 1), 0, *range(n_s + 1, n_s + 1 + n_r)])
    sch.reorder_block_iter_var(rv, [*range(1, n_s + 1), 0])
    loops = sch.get_loops(part)
    sch.reorder(loops[-1], *loops[n_s:-1])  # (s.., r.., o, l) -> (s.., l, r.., o)
    labels = [schedule_reduce_block(sch, part, target), schedule_reduce_block(sch, rv, target)]
    return f"reduce(split={lanes},{'+'.join(labels)})"


def schedule_generic(sch: s_tir.Schedule, target: Target) -> str:
    """Last resort for any function: each root block alone (injective or reduction)."""
    labels = []
    for info in all_blocks(sch):
        if info.is_spatial:
            schedule_injective_block(sch, info.rv, target)
            labels.append("injective")
        elif info.is_reduction:
            labels.append(schedule_reduce_block(sch, info.rv, target))
    if not labels:
        raise RuleNotApplicable("no blocks")
    if all(lbl == "injective" for lbl in labels):
        return "injective"
    return "generic[" + ",".join(sorted(set(labels))) + "]"


def inline_spatial_chain(sch: s_tir.Schedule) -> None:
    """Inline every spatial block that TVM lets us inline (into consumers, else into
    producers), so an elementwise chain becomes one loop nest."""
    changed = True
    while changed:
        changed = False
        blocks = all_blocks(sch)
        if len(blocks) <= 1:
            return
        for b in blocks:
            if not b.is_spatial:
                continue
            try:
                sch.compute_inline(b.rv)
                changed = True
                break
            except s_tir.ScheduleError:
                pass
            if reverse_inline(sch, b.rv):
                changed = True
                break


__all__ = [
    "PARALLEL_MIN_WORK",
    "schedule_injective_block",
    "schedule_rows",
    "schedule_reduce_block",
    "schedule_generic",
    "inline_spatial_chain",
]
