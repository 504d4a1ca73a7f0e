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

from tvm import s_tir, tirx
from tvm.target import Target

from .schedule_analysis import (
    BlockInfo,
    all_blocks,
    block_info,
    match_mul_sum,
    num_vector_registers,
    uses_var,
    vector_lanes,
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


def schedule_gemm(sch: s_tir.Schedule, target: Target) -> str:
    """Apply the register-tiled GEMM schedule in place; returns a rule-variant label.

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
        if not cands:
            raise RuleNotApplicable("no second spatial axis to block")
        m_pos = cands[-1]
    m_it = s_iters[m_pos]

    lanes = vector_lanes(target)
    regs = num_vector_registers(target)
    n_ext = n_it.static_extent
    nr = _choose_nr(n_ext, lanes)
    if len(fuse_pos) > 1:
        exts = [s_iters[p].static_extent for p in fuse_pos]
        f_ext = math.prod(exts) if None not in exts else None
        f_nr = _choose_nr(f_ext, lanes)
        if f_ext is not None and _nr_quality(f_nr, lanes) > _nr_quality(nr, lanes):
            n_ext, nr = f_ext, f_nr
        else:
            fuse_pos = [n_pos]
    mr = _choose_mr(m_it.static_extent, nr, lanes, regs)
    # Micro-tiles per panel: enough to amortise the Y panel, not so many that
    # small problems lose parallelism.
    m_ext = m_it.static_extent
    # A divisor of the tile count, so only a ragged mr tile (if any) is predicated.
    if m_ext is None:
        mm_count = 8
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
    out_buf = mm.out.buffer
    acc = sch.cache_write(main.rv, 0, "local")
    changed = True
    while changed:
        changed = False
        for cons in sch.get_consumers(acc):
            try:
                sch.reverse_compute_inline(cons)
                changed = True
                break
            except s_tir.ScheduleError:
                continue
    del out_buf

    if len(fuse_pos) > 1:
        # Fuse the contiguous axes in the *block* iterators and the accumulator's
        # layout, not only in the loops: an nr-wide tile of a fused (y, x) axis
        # is a ragged slice of rows whenever nr is not a multiple of the row
        # length, and reverse_compute_at would relax it to a box of whole rows,
        # so the copy-out of one tile would read (uninitialised) accumulators
        # of its neighbours and store them over their results.
        _fuse_block_axes(sch, main.rv, acc, fuse_pos[0], len(fuse_pos),
                         [int(s_iters[p].static_extent) for p in fuse_pos])
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
    sch.reorder(*others, m_o, n_o, m_m, *r_loops, m_i, n_i)
    sch.parallel(sch.fuse(*others, m_o, n_o))
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
            schedule_injective_block(sch, info.rv, target)
    del fused_vars
    return f"gemm(mr={mr},nr={nr},pack={'yes' if pack_rv is not None else 'no'},fuse={k})"


def _fold(dims, exts: list[int]):
    """Row-major linear index of `dims` within extents `exts`."""
    idx = dims[0]
    for d, e in zip(dims[1:], exts[1:]):
        idx = idx * e + d
    return idx


def _fuse_block_axes(sch: s_tir.Schedule, main: s_tir.SBlockRV, acc: s_tir.SBlockRV,
                     first: int, k: int, exts: list[int]) -> None:
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


def _is_scheduled_loop(sch: s_tir.Schedule, rv: s_tir.SBlockRV) -> bool:
    """Whether the block already sits under a parallel loop (i.e. was placed by the rule)."""
    for lp in sch.get_loops(rv):
        if int(sch.get(lp).kind) != 0:  # ForKind.SERIAL == 0
            return True
    return False
