"""GEMM-like CPU rule: matmul, batch matmul, dense, conv2d (direct or im2col), depthwise.

Expects a PrimFunc with exactly one multiply-accumulate reduction block
(`out[s...] += X[...] * Y[...]`, see `match_mul_sum`) built by `te.compute`
(loops map 1:1 onto block iterators), optionally with injective producer
blocks (pad, im2col, transposes) and injective consumer blocks (bias, relu,
clip) around it. The output's last index must be a spatial iterator: that
axis ("n") is vectorised.

Schedule (per output tile):
    parallel(fused outer spatial, m_o, n_o)
      m_m                          # micro-tiles sharing one packed Y panel
        init acc[mr, nr] = 0       # local accumulator: lives in registers
        for reduction axes:        # full reduction: no K blocking
          unroll m_i (mr): vector acc[m_i, :] += X[m_i, k] * Y[k, n_i:nr]
        out[mr, nr] = epilogue(acc) (vectorised, reverse-inlined consumers)
Y is packed into [.., n // nr, k.., n % nr] when its layout allows, so the
inner loop reads it contiguously (this took 1024^3 from 150 to 230 GFLOP/s).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import tvm
from tvm import s_tir, tirx
from tvm.target import Target

from .schedule_analysis import (
    BlockInfo,
    all_blocks,
    block_info,
    buffer_loads,
    match_mul_sum,
    num_vector_registers,
    uses_var,
    vector_lanes,
    walk_expr,
)


class RuleNotApplicable(Exception):
    """Raised by a rule when the function does not have the shape it expects."""


def _choose_nr(extent: int | None, lanes: int) -> int:
    """Width of the vectorised micro-tile (elements of the contiguous output axis).

    Measured here (AVX-512, 64x768x256): widths 16/32/64 run at 210-230
    GFLOP/s, but 48 or 40 (non power-of-two multi-register vectors) drop to
    8 GFLOP/s, and so does a predicated tail tile (TVM scalarises it). So take
    the widest of 2L, L, L/2, L/4 that divides the extent, or the whole axis
    when it fits one register (7, 14 are fine), or else the largest divisor.
    """
    if extent is None:
        return 2 * lanes  # symbolic: the predicate is unavoidable
    for nr in (2 * lanes, lanes):
        if extent % nr == 0:
            return nr
    if extent <= lanes:
        return extent
    for nr in (lanes // 2, lanes // 4):
        if nr >= 4 and extent % nr == 0:
            return nr
    return max(d for d in range(1, lanes + 1) if extent % d == 0)


def _nr_quality(nr: int, lanes: int) -> float:
    """How well a width uses SIMD: lane fill x (up to) two registers per row."""
    regs = math.ceil(nr / lanes)
    return nr / (regs * lanes) * min(regs, 2) / 2


def _choose_mr(extent: int | None, nr: int, lanes: int, regs: int) -> int:
    """Rows in the register tile: as many as the accumulators fit (leave 4 registers free)."""
    vecs = max(math.ceil(nr / lanes), 1)
    cap = max((regs - 4) // vecs, 1)
    cands = [m for m in (8, 6, 4, 3, 2, 1) if m <= cap]
    if extent is None:
        return cands[0]
    for m in cands:  # prefer a divisor: no predicated tail tile
        if extent % m == 0 and m <= extent:
            return m
    return min(cands[0], extent)


def _try_pack(sch: s_tir.Schedule, main: s_tir.SBlockRV, y_index: int, n_var: tirx.Var,
              red_vars: list[tirx.Var], nr: int) -> s_tir.SBlockRV | None:
    """Pack operand Y into [other dims.., n // nr, reduction dims.., n % nr].

    Only when every index of Y is a plain block iterator and the n-dimension is
    static and divisible by nr. Returns the packing block or None.
    """
    load = match_mul_sum(sch, main)
    y = load.lhs if y_index == 0 else load.rhs
    buf = y.source
    idx = list(y.indices)
    if not all(isinstance(i, tirx.Var) for i in idx):
        return None
    n_dims = [d for d, i in enumerate(idx) if i.same_as(n_var)]
    if len(n_dims) != 1:
        return None
    nd = n_dims[0]
    n_ext = buf.shape[nd]
    if not isinstance(n_ext, tirx.IntImm) or int(n_ext) % nr != 0:
        return None
    if not all(isinstance(s, tirx.IntImm) for s in buf.shape):
        return None
    red_dims = [d for d, i in enumerate(idx) if any(i.same_as(r) for r in red_vars)]
    other_dims = [d for d in range(len(idx)) if d != nd and d not in red_dims]
    # Read-buffer index in the block's read regions.
    reads = sch.get(main).reads
    read_pos = [p for p, r in enumerate(reads) if r.source.same_as(buf)]
    if len(read_pos) != 1:
        return None
    pack = sch.cache_read(main, read_pos[0], "global")

    def index_map(*dims: tirx.Var) -> list[tirx.PrimExpr]:
        out = [dims[d] for d in other_dims]
        out.append(tirx.floordiv(dims[nd], nr))
        out += [dims[d] for d in red_dims]
        out.append(tirx.floormod(dims[nd], nr))
        return out

    sch.transform_layout(pack, ("write", 0), index_map)
    return pack


def _contiguous_suffix(mm, s_iters, n_pos: int) -> list[int]:
    """Positions (in s_iters) of the trailing output axes that stay contiguous when fused.

    Always contains n_pos. Extends to the axis before it while the output and one
    operand both index their trailing dimensions with exactly these iterators and
    the operand's inner dimension sizes equal the output's.
    """
    out_idx, out_shape = list(mm.out.indices), list(mm.out.buffer.shape)
    best = [n_pos]
    for ld in (mm.lhs, mm.rhs):
        idx, shape = list(ld.indices), list(ld.source.shape)
        t = 1
        while True:
            t2 = t + 1
            if t2 > len(out_idx) or t2 > len(idx):
                break
            ok = all(isinstance(out_idx[-q], tirx.Var) and isinstance(idx[-q], tirx.Var)
                     and out_idx[-q].same_as(idx[-q]) for q in range(1, t2 + 1))
            ok = ok and all(isinstance(out_shape[-q], tirx.IntImm) and isinstance(shape[-q], tirx.IntImm)
                            and int(out_shape[-q]) == int(shape[-q]) for q in range(1, t2))
            if not ok:
                break
            pos = [p for p, it in enumerate(s_iters) if it.var.same_as(out_idx[-t2])]
            if not pos or pos[0] != n_pos - t2 + 1:
                break
            t = t2
        if t > len(best):
            best = list(range(n_pos - t + 1, n_pos + 1))
    return best


def _inline_producers(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> None:
    """Inline injective producers of `rv` (recursively) where TVM allows it."""
    changed = True
    while changed:
        changed = False
        for prod in sch.get_producers(rv):
            info = block_info(sch, prod)
            if not info.is_spatial:
                continue
            try:
                sch.compute_inline(prod)
                changed = True
                break
            except s_tir.ScheduleError:
                continue



def _has_div_mod(e: tirx.PrimExpr) -> bool:
    found = []

    def visit(node: object) -> None:
        if isinstance(node, (tirx.FloorDiv, tirx.FloorMod, tirx.Div, tirx.Mod)):
            found.append(node)

    walk_expr(e, visit)
    return bool(found)


def reverse_inline(sch: s_tir.Schedule, block: Any) -> bool:
    """``reverse_compute_inline(block)`` where it is sound; whether it happened.

    TVM 0.27 inlines a consumer into its producer even when another block
    still reads the producer's output, and then drops that buffer: the other
    reader is left reading an undefined buffer ("conv2d_bias_intermediate is
    used before its definition", the build fails). So only a consumer that
    is the sole reader of each of its producers is inlined.
    """
    producers = sch.get_producers(block)
    if any(len(sch.get_consumers(p)) != 1 for p in producers):
        return False
    # It also inverts the consumer's read of the producer to find where each
    # producer iteration stores; for a read through // or % (an interleave
    # Z[(y + 1) % 2, y // 2]) that inverse came out wrong and stored out of
    # bounds (heap corruption). Plain and affine reads it inverts correctly,
    # adding a predicate for a consumer that reads only part (a crop).
    written = {w.source for p in producers for w in sch.get(p).writes}
    for ld in buffer_loads(sch, block):
        if any(ld.source.same_as(w) for w in written) and any(_has_div_mod(i) for i in ld.indices):
            return False
    try:
        sch.reverse_compute_inline(block)
    except s_tir.ScheduleError:
        return False
    except tvm.error.InternalError:
        # 0.27 crashes ("Cannot dispatch a null expression") instead of
        # refusing a consumer that broadcasts the producer's output; the
        # analysis fails before the schedule is changed
        return False
    return True


def _downstream(sch: s_tir.Schedule, block: Any) -> list[Any]:
    """Every block that (transitively) reads what ``block`` writes, nearest first."""
    seen: list[Any] = []
    todo = list(sch.get_consumers(block))
    while todo:
        b = todo.pop(0)
        if any(sch.get(b).same_as(sch.get(s)) for s in seen):
            continue
        seen.append(b)
        todo.extend(sch.get_consumers(b))
    return seen


def inline_consumers(sch: s_tir.Schedule, block: Any, keep: Sequence[str] = ()) -> None:
    """Inline every consumer of ``block`` that can be (repeatedly: inlining one
    exposes its own consumers), except blocks named in ``keep``.

    An epilogue that reads ``block``'s output twice (PReLU: ``where(x > 0,
    x, a * x)``) has several consumer blocks; they are first inlined into
    one another (forward, ``compute_inline``), so that a single consumer is
    left to inline into ``block`` (see :func:`reverse_inline`).
    """
    for b in _downstream(sch, block):
        if sch.get(b).name_hint in keep or not block_info(sch, b).is_spatial:
            continue
        try:
            sch.compute_inline(b)
        except s_tir.ScheduleError:
            continue
    changed = True
    while changed:
        changed = False
        for cons in sch.get_consumers(block):
            if sch.get(cons).name_hint in keep:
                continue
            if reverse_inline(sch, cons):
                changed = True
                break


def schedule_gemm(sch: s_tir.Schedule, target: Target, pad: bool = True, keep: tuple[str, ...] = (),
                  unit_rows: bool = False) -> str:
    """Apply the register-tiled GEMM schedule in place; returns a rule-variant label.

    pad: when the contiguous output axis (or the row axis m) has no good tile
    divisor, pad the block's iteration domain first (`_plan_padding`).
    keep: names of consumer blocks not to inline into the copy-out (crops of a
    padded output: TVM inlines them without a bounds predicate).
    unit_rows: with no other axis to tile, tile an extent-1 one (one output
    row: the ``gemv`` rule's ``W[k, j]`` case, a micro kernel of one row).
    Raises RuleNotApplicable (or a TVM ScheduleError) when the function does not fit.
    """
    blocks = all_blocks(sch)
    reds = [b for b in blocks if b.is_reduction]
    if len(reds) != 1:
        raise RuleNotApplicable("needs exactly one reduction block")
    main: BlockInfo = reds[0]
    mm = match_mul_sum(sch, main.rv)
    if mm is None or not main.simple_loops or set(main.kinds) != {"S", "R"}:
        raise RuleNotApplicable("reduction is not a multiply-accumulate")
    s_iters = [it for it in main.iters if it.kind == "S"]
    r_iters = [it for it in main.iters if it.kind == "R"]
    if main.kinds != "S" * len(s_iters) + "R" * len(r_iters):
        raise RuleNotApplicable("reduction iterators must come last")
    out_idx = list(mm.out.indices)
    if not out_idx or not isinstance(out_idx[-1], tirx.Var):
        raise RuleNotApplicable("output's last index is not an iterator")
    n_pos = [p for p, it in enumerate(s_iters) if it.var.same_as(out_idx[-1])]
    if not n_pos:
        raise RuleNotApplicable("output's last index is not a spatial iterator")
    n_pos = n_pos[0]
    n_it = s_iters[n_pos]
    # Trailing output axes that are also the trailing axes of some operand with
    # the same inner extents (y, x of a 1x1 conv or of an im2col buffer) are
    # contiguous together: fuse them into one long vectorisable axis.
    fuse_pos = _contiguous_suffix(mm, s_iters, n_pos)
    # Y: the operand that moves with n (its vector is reused across the mr rows).
    fused_vars = [s_iters[p].var for p in fuse_pos]
    y_cands = [p for p, ld in enumerate((mm.lhs, mm.rhs)) if any(uses_var(i, n_it.var) for i in ld.indices)]
    if not y_cands:
        raise RuleNotApplicable("no operand depends on the vectorised axis")
    y_index = y_cands[-1]
    y_load = (mm.lhs, mm.rhs)[y_index]
    # m: innermost spatial iterator that Y does not depend on; else the one before n.
    m_pos = None
    for p in reversed(range(len(s_iters))):
        if p not in fuse_pos and not any(uses_var(i, s_iters[p].var) for i in y_load.indices):
            if s_iters[p].static_extent != 1:
                m_pos = p
                break
    if m_pos is None:
        cands = [p for p in range(len(s_iters)) if p not in fuse_pos and s_iters[p].static_extent != 1]
        if not cands and unit_rows:
            cands = [p for p in range(len(s_iters)) if p not in fuse_pos]
        if not cands:
            raise RuleNotApplicable("no second spatial axis to block")
        m_pos = cands[-1]
    m_it = s_iters[m_pos]

    lanes = vector_lanes(target)
    regs = num_vector_registers(target)
    if pad:
        padding = _plan_padding(sch, main, s_iters, r_iters, fuse_pos, m_pos, lanes, regs)
        if padding is not None:
            return _pad_and_schedule(sch, main, padding, target, unit_rows)
    fused, n_ext, nr = _pick_width([s_iters[p].static_extent for p in fuse_pos], lanes)
    if not fused:
        fuse_pos = [n_pos]
    mr = _choose_mr(m_it.static_extent, nr, lanes, regs)
    # Micro-tiles per panel: enough to amortise the Y panel, not so many that
    # small problems lose parallelism.
    m_ext = m_it.static_extent
    # A divisor of the tile count, so only a ragged mr tile (if any) is predicated.
    if m_ext is None:
        # symbolic (padded to a multiple of mr): one tile per panel, so the
        # split divides exactly and no row of the micro kernel is predicated
        mm_count = 1
    else:
        tiles = math.ceil(m_ext / mr)
        mm_count = max(d for d in range(1, min(8, tiles) + 1) if tiles % d == 0)

    # Pack Y when its n axis is not already contiguous in memory, or when the
    # problem is large enough that strided panel reads cost more than the copy.
    pack_rv = None
    y_last_is_n = isinstance(y_load.indices[-1], tirx.Var) and y_load.indices[-1].same_as(n_it.var)
    flops_per_y = 1 if m_ext is None else m_ext
    if (len(fuse_pos) == 1 and n_ext is not None and n_ext % nr == 0
            and (not y_last_is_n or flops_per_y >= 128)):
        pack_rv = _try_pack(sch, main.rv, y_index, n_it.var, [it.var for it in r_iters], nr)

    # Consumers: write through a local accumulator, then inline the epilogue
    # into the copy-out block so the result is written once.
    acc = sch.cache_write(main.rv, 0, "local")
    inline_consumers(sch, acc, keep)

    if len(fuse_pos) > 1:
        # Fuse the contiguous axes in the *block* iterators and the accumulator's
        # layout, not only in the loops: an nr-wide tile of a fused (y, x) axis
        # is a ragged slice of rows whenever nr is not a multiple of the row
        # length, and reverse_compute_at would relax it to a box of whole rows,
        # so the copy-out of one tile would read (uninitialised) accumulators
        # of its neighbours and store them over their results.
        _fuse_block_axes(sch, main.rv, acc, fuse_pos[0], len(fuse_pos),
                         [int(s_iters[p].static_extent) for p in fuse_pos], padded_out=bool(keep))
        k = len(fuse_pos)
        m_pos = m_pos if m_pos < fuse_pos[0] else m_pos - k + 1
        fuse_pos = [fuse_pos[0]]
        n_pos = fuse_pos[0]
        n_s = len(s_iters) - k + 1
    else:
        k, n_s = 1, len(s_iters)
    loops = sch.get_loops(main.rv)
    s_loops = loops[:n_s]
    r_loops = loops[n_s:]
    n_loop = s_loops[n_pos]
    n_o, n_i = sch.split(n_loop, [None, nr])
    m_o, m_m, m_i = sch.split(s_loops[m_pos], [None, mm_count, mr])
    others = [lp for p, lp in enumerate(s_loops) if p not in fuse_pos and p != m_pos]
    # With one micro-tile per panel (a symbolic m) nothing reuses a Y panel
    # but the next tile: walk m inside n, so each panel is read from memory
    # once (GPT-2's 256 x 50257 output layer at 64 tokens: 44 -> 27.5 ms, the
    # static twin's 24.7; with m outside, Y was streamed once per 8 rows).
    tiles = (n_o, m_o) if m_ext is None else (m_o, n_o)
    sch.reorder(*others, *tiles, m_m, *r_loops, m_i, n_i)
    sch.parallel(sch.fuse(*others, *tiles))
    sch.reverse_compute_at(acc, m_m, preserve_unit_loops=True)
    sch.unroll(m_i)
    sch.vectorize(n_i)
    # The copy-out (with epilogue) block: vectorise its innermost axis.
    acc_loops = sch.get_loops(acc)
    if len(acc_loops) >= 2:
        sch.vectorize(acc_loops[-1])
    init = sch.decompose_reduction(main.rv, r_loops[0])
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    sch.unroll(init_loops[-2])

    # Remaining root blocks (packing, pads, im2col, unfused consumers).
    from .schedule_rules import schedule_injective_block  # local: avoid import cycle

    if pack_rv is not None:
        _inline_producers(sch, pack_rv)
    for info in all_blocks(sch):
        if info.name == sch.get(main.rv).name_hint:
            continue
        if info.is_spatial and sch.get_loops(info.rv) and not _is_scheduled_loop(sch, info.rv):
            if info.name in keep and m_ext is None and k == 1:
                # (not over fused axes: a tile of them is a ragged slice of
                # rows, which compute-at would relax to whole rows and copy
                # neighbouring tiles' unwritten values: see _fuse_block_axes)
                _crop_per_tile(sch, info.rv, m_m)
            elif info.name in keep:
                _schedule_crop(sch, info.rv, lanes)
            else:
                schedule_injective_block(sch, info.rv, target)
    del fused_vars
    return f"gemm(mr={mr},nr={nr},pack={'yes' if pack_rv is not None else 'no'},fuse={k})"


def _pick_width(exts: list[int | None], lanes: int) -> tuple[bool, int | None, int]:
    """(fuse, extent, nr) for the contiguous output axes `exts` (outer..inner).

    The innermost axis alone, or all of them fused into one when that gives a
    better-filled register tile (see `_nr_quality`).
    """
    n_ext = exts[-1]
    nr = _choose_nr(n_ext, lanes)
    if len(exts) > 1 and None not in exts:
        f_ext = math.prod(exts)
        f_nr = _choose_nr(f_ext, lanes)
        if _nr_quality(f_nr, lanes) > _nr_quality(nr, lanes):
            return True, f_ext, f_nr
    return False, n_ext, nr


def _width_speed(nr: int, lanes: int) -> float:
    """Relative speed of the micro-kernel for tile width nr (measured, AVX-512 2 cores:
    nr=32 ~220, 16 ~180, partial registers 13/11/9/7 ~ 0.75 x lane fill x 220 GFLOP/s)."""
    if nr >= 2 * lanes:
        return 1.0
    if nr == lanes:
        return 0.8
    return 0.75 * nr / lanes


def _rows_speed(mr: int) -> float:
    """Relative speed for mr accumulator rows (a Y vector load is shared by mr FMAs)."""
    return min(1.0, mr / 6)


#: padding is only worth it when the estimated speed-up (after the wasted work) exceeds this.
PAD_MIN_GAIN = 1.15


def _plan_padding(sch: s_tir.Schedule, main: BlockInfo, s_iters, r_iters, fuse_pos: list[int], m_pos: int,
                  lanes: int, regs: int) -> list[int] | None:
    """Padding multiples for the block iterators (for `pad_einsum`), or None to keep the block.

    The contiguous axis (or the fused y*x axes, padded separately so their
    product divides) is padded to the width that maximises
    speed(nr) x useful / padded work; the row axis m to a multiple of the
    register-tile height when its best divisor is small. A symbolic axis
    (a batch or a sequence length) is always padded to a multiple of its
    tile: the alternative, a predicate on every row or lane of the micro
    kernel, also keeps the accumulator from shrinking to the register tile
    (TVM then allocates it at the full symbolic size), which measured
    2-6x slower than the same GEMM with static extents. Only einsum-form
    blocks (every access indexed by plain iterators or constants).
    """
    exts = [s_iters[p].static_extent for p in fuse_pos]
    m_ext = s_iters[m_pos].static_extent
    if not _is_einsum(sch, main.rv):
        return None
    if None in exts:
        if len(exts) > 1:
            return None  # never fused: _contiguous_suffix needs static extents
        best_exts, best_nr = [2 * lanes], 2 * lanes
    else:
        best_exts, best_nr = _plan_width(exts, lanes)
    # Rows: the widest register tile that fits, padding m to a multiple of it
    # when its largest divisor would give a much shorter tile.
    mr_cap = _choose_mr(None, best_nr, lanes, regs)
    if m_ext is None:
        m_pad = mr_cap
    else:
        mr_div = _choose_mr(m_ext, best_nr, lanes, regs)
        m_pad = m_ext
        if m_ext > mr_cap and m_ext % mr_cap != 0:
            padded_m = -(-m_ext // mr_cap) * mr_cap
            if _rows_speed(mr_cap) * m_ext / padded_m > _rows_speed(mr_div) * PAD_MIN_GAIN:
                m_pad = padded_m
        if best_exts == exts and m_pad == m_ext:
            return None
    padding = [1] * (len(s_iters) + len(r_iters))
    for p, e in zip(fuse_pos, best_exts):
        padding[p] = e
    padding[m_pos] = m_pad
    return padding


def _plan_width(exts: list[int], lanes: int) -> tuple[list[int], int]:
    """Padded static extents of the contiguous axes and their tile width nr.

    Padding is kept only when speed(nr) x useful / padded work gains
    :data:`PAD_MIN_GAIN` over the unpadded extents.
    """
    useful = math.prod(exts)

    def score(pexts: list[int]) -> tuple[float, int]:
        _, _, nr = _pick_width(pexts, lanes)
        return _width_speed(nr, lanes) * useful / math.prod(pexts), nr

    base, nr0 = score(exts)
    best, best_exts, best_nr = base, exts, nr0
    if len(exts) == 1:
        cands = [[-(-exts[0] // w) * w] for w in (2 * lanes, lanes)]
    else:
        inner = [[e + d for d in range(0, 2 * lanes + 1)] for e in exts[-2:]]
        cands = [[*exts[:-2], a, b] for a in inner[0] for b in inner[1]]
    for c in cands:
        sc, nr = score(c)
        if sc > best * 1.001:
            best, best_exts, best_nr = sc, c, nr
    if best < base * PAD_MIN_GAIN:
        return exts, nr0
    return best_exts, best_nr


def _is_einsum(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> bool:
    """Every buffer access of the block is indexed by plain iterators or constants."""
    body = sch.get(rv).body
    if not isinstance(body, tirx.BufferStore):
        return False
    accesses = [body, *buffer_loads(sch, rv)]
    return all(isinstance(i, (tirx.Var, tirx.IntImm)) for a in accesses for i in a.indices)


def _pad_and_schedule(sch: s_tir.Schedule, main: BlockInfo, padding: list[int], target: Target,
                      unit_rows: bool = False) -> str:
    """pad_einsum the main block, fold each padded input's producer into its padding
    block, then schedule the padded function (the crop is inlined into the copy-out)."""
    name = sch.get(main.rv).name_hint
    old_iters = [_extent_text(iv.dom.extent) for iv in sch.get(main.rv).iter_vars]
    sch.pad_einsum(main.rv, padding)
    main_rv = sch.get_sblock(name)
    for pad_blk in sch.get_producers(main_rv):
        for prod in sch.get_producers(pad_blk):
            if block_info(sch, prod).is_spatial and len(sch.get_consumers(prod)) == 1:
                try:
                    sch.compute_inline(prod)
                except s_tir.ScheduleError:
                    pass
    new_iters = [_extent_text(iv.dom.extent) for iv in sch.get(main_rv).iter_vars]
    # The crop back to the real extents stays a separate (vectorised, parallel)
    # pass with the epilogue inlined into it: inlined into the copy-out it
    # would store the padded tile out of bounds (no predicate is added).
    crops = [sch.get(c).name_hint for c in sch.get_consumers(main_rv)]
    for crop in crops:
        inline_consumers(sch, sch.get_sblock(crop))
    label = schedule_gemm(sch, target, pad=False, keep=tuple(crops), unit_rows=unit_rows)
    grown = "x".join(f"{a}->{b}" for a, b in zip(old_iters, new_iters) if a != b)
    return label[:-1] + f",pad={grown})"


def _extent_text(e: tirx.PrimExpr) -> str:
    """An iterator extent for a rule label: the number, or the symbol's name."""
    return str(int(e)) if isinstance(e, tirx.IntImm) else str(e)


def _crop_per_tile(sch: s_tir.Schedule, rv: s_tir.SBlockRV, tile_loop: s_tir.LoopRV) -> None:
    """Crop of a symbolically padded output (+ epilogue) done tile by tile,
    right after the tile's copy-out: ``reverse_compute_at`` bounds each
    tile's rows by the real (symbolic) extent, so nothing is stored out of
    bounds, the padded output shrinks to one tile, and no second parallel
    pass over the output is needed (each parallel region costs a fork and
    join: with the padded input's copy, a symbolic BERT's GEMMs took 1.35x
    their static twins' time in the model, 1.1x alone)."""
    sch.reverse_compute_at(rv, tile_loop, preserve_unit_loops=True)
    loops = sch.get_loops(rv)
    inner = loops[-1]
    ext = sch.get(inner).extent
    if isinstance(ext, tirx.IntImm) and int(ext) > 1:
        sch.vectorize(inner)


def _schedule_crop(sch: s_tir.Schedule, rv: s_tir.SBlockRV, lanes: int) -> None:
    """Crop of a padded output (+ epilogue): parallel over the outer axes, the
    whole (ragged, e.g. 111-wide) row vectorised at once; LLVM splits it into
    full registers plus a short tail, which a split by the lane count cannot."""
    loops = sch.get_loops(rv)
    ext_expr = sch.get(loops[-1]).extent
    if not isinstance(ext_expr, tirx.IntImm):
        # a symbolic row (a sequence length): a serial loop with a run-time
        # trip count, which LLVM's own loop vectorizer turns into full
        # vectors plus a scalar tail (a TVM vectorized split would be
        # predicated per lane and scalarised)
        if len(loops) > 1:
            sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
        return
    ext = int(ext_expr)
    width = max(d for d in range(1, min(ext, 8 * lanes) + 1) if ext % d == 0)
    outer = list(loops[:-1])
    if width < ext:
        o, inner = sch.split(loops[-1], [None, width])
        outer.append(o)
    else:
        inner = loops[-1]
    if outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    sch.vectorize(inner)


def _fold(dims, exts: list[int]):
    """Row-major linear index of `dims` within extents `exts`."""
    idx = dims[0]
    for d, e in zip(dims[1:], exts[1:]):
        idx = idx * e + d
    return idx


def _fuse_block_axes(sch: s_tir.Schedule, main: s_tir.SBlockRV, acc: s_tir.SBlockRV,
                     first: int, k: int, exts: list[int], padded_out: bool = False) -> None:
    """Fold iterators first..first+k-1 of `main` (and the trailing k axes of its
    accumulator buffer and of the copy-out block `acc`) into one iterator.

    Afterwards the tile region of the accumulator is an exact interval of the
    fused axis, so compute-at placement of the copy-out covers exactly the tile.
    """
    def buf_map(*d):
        return [*d[:-k], _fold(d[-k:], exts)]

    def main_map(*v):
        return [*v[:first], _fold(v[first:first + k], exts), *v[first + k:]]

    def block_map(rv: s_tir.SBlockRV, fn) -> tirx.IndexMap:
        blk = sch.get(rv)
        dtype = str(blk.iter_vars[0].var.ty) if blk.iter_vars else "int64"
        return tirx.IndexMap.from_func(fn, ndim=len(blk.iter_vars), index_dtype=dtype)

    sch.transform_layout(main, ("write", 0), buf_map)
    sch.transform_block_layout(main, block_map(main, main_map))
    sch.transform_block_layout(acc, block_map(acc, buf_map))  # acc's iterators are the buffer's axes
    if padded_out:  # the copy-out writes the padded intermediate: fold it too (contiguous stores)
        sch.transform_layout(acc, ("write", 0), buf_map)


def _is_scheduled_loop(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> bool:
    """Whether the block already sits under a parallel loop (i.e. was placed by the rule)."""
    for lp in sch.get_loops(rv):
        if int(sch.get(lp).kind) != 0:  # ForKind.SERIAL == 0
            return True
    return False
