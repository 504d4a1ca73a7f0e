"""conv_transpose2d (NCHW x C F/g KH KW, f32) as TE chains the GEMM rule schedules.

The op's Expr is the gather form of the scatter (a ``%`` test per tap and
output), which the generic lowering leaves an untiled predicated reduction
(< 1 GFLOP/s). Each form here is a chain of injective producers, ONE
multiply-add reduction ``Z[...] += A[...] * B[...]`` whose loops are plain
block iterators (what ``schedule_gemm`` matches: it register-tiles it), and
an injective consumer that writes the output (interleave or tap gather, +
bias). The weight is a run-time parameter of the Relax ``main``, so a
rearranged copy would be redone on every call: the default forms read it in
place through index arithmetic (``subpixel_wcopy`` measures the copy).

Geometry, per spatial axis (input ``I``, kernel ``K``, stride ``s``, dilation
``d``, begin pad ``pb``): output ``o`` receives input ``i`` through tap ``k``
when ``o + pb = i s + k d``.

Forms (``FORMS``):

* ``"subpixel"`` (``d == 1``, ``s > 1``): output phase ``p = o mod s`` sees
  only the taps ``k = phi + s m`` with ``phi = (p + pb) mod s``,
  ``m < ceil(K / s)``, reading inputs ``i = o // s + e(phi) - m``: the op is
  ``s_h s_w`` dense convolutions over the un-dilated input, one batched GEMM
  ``Z[n, phy, phx, f, qy, qx] += W[c, f, phy + s m, phx + s m'] * col[n, phy, phx, c, m, m', qy, qx]``
  (``col``: per-phase im2col, zero for taps past ``K`` when ``K % s != 0``),
  then the interleave ``out[n, f, y, x] = Z[n, phi(y), phi(x), f, y // s, x // s]``.
  No multiply by an inserted zero; M = F/g.
* ``"zero_insert"``: the ordinary im2col conv over the zero-inserted input
  (dilated by the stride, padded by ``d (K - 1) - pad``):
  ``out[n, f, y, x] += W[c, f, r, t] * col[n, c, r, t, y, x]``. (The textbook
  form flips the weight; re-indexing the taps ``k -> K - 1 - k`` on the
  ``col`` side instead reads the weight as stored.) An einsum, so the rule
  pads it itself; ``s^2`` times the useful multiplies, any dilation.
* ``"col2im"``: one GEMM of every (tap, input pixel) product,
  ``T[n, j, y, x] += W[c, j] * X[n, c, y, x]`` over ``j = (f, r, t)`` (the
  weight is ``[C, F K K]`` in memory already), then every output adds up its
  taps from ``T`` (``ceil(K/s)^2`` of them with dilation 1). M = F K K, N = H W.
* ``"col2im_t"``: the same GEMM as ``T[n, y, x, jo, ji]`` (``j = jo J + ji``):
  the weight's contiguous ``j`` is the vector axis, pixels are the rows; for
  tiny inputs (DCGAN's 1x1 z projection is a GEMV streaming the weight).
* ``"subpixel_wcopy"``: subpixel with the per-phase weight copied into a
  plain ``[phy, phx, f, c, m, m']`` producer block. Measured, never chosen:
  the per-call copy costs more than the contiguous weight reads gain (it
  breaks even on DCGAN 128->64 only).

Groups add a group axis ``g`` to every buffer (each group is a batch of the
GEMM); ``output_padding`` and ONNX ``output_shape`` are negative end pads,
handled like any pad. :func:`choose_form` picks per shape (measured; see its
docstring and docs/codegen.md). Two TVM 0.27 behaviours shape the code: see
:func:`_guarded` (clamped reads) and the interleave in :func:`_subpixel`
(a consumer the rule must not reverse-inline).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence, TypeAlias

from tvm import te, tirx

#: an index or value expression (annotation shorthand for the TE body functions)
Expr: TypeAlias = "tirx.PrimExpr"
#: every form :func:`conv_transpose2d_te` knows.
FORMS = ("subpixel", "zero_insert", "col2im", "col2im_t", "subpixel_wcopy")

#: when set (by :func:`use_form`), the FAST lowering uses this form wherever it applies.
_FORCED: list[str] = []


@contextlib.contextmanager
def use_form(form: str) -> Iterator[None]:
    """Force ``form`` for every conv_transpose2d lowered inside the block (benchmarks, tests)."""
    if form not in FORMS:
        raise ValueError(f"unknown conv_transpose form {form!r}; valid: {', '.join(FORMS)}")
    _FORCED.append(form)
    try:
        yield
    finally:
        _FORCED.pop()


def forced_form() -> str | None:
    """The form :func:`use_form` forces now, or None."""
    return _FORCED[-1] if _FORCED else None


@dataclass(frozen=True)
class Geometry:
    """Static geometry of one 2-D transposed convolution.

    Invariants: all fields are ints; ``c == group * cg``, ``f == group * fg``;
    ``oh = (h - 1) sh + (kh - 1) dh + 1 - pt - pb`` (likewise ``ow``) and
    both are >= 1. Pads may be negative (an extension with zeros).
    """

    c: int
    f: int
    group: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    pb: int
    pr: int
    index_dtype: str = "int64"  # of the kernel's shapes and indices (emit_te's: int64)

    def i(self, v: int) -> tirx.PrimExpr:
        """An index constant in ``index_dtype``."""
        return tirx.const(int(v), self.index_dtype)

    @property
    def cg(self) -> int:
        return self.c // self.group

    @property
    def fg(self) -> int:
        return self.f // self.group

    @property
    def oh(self) -> int:
        return (self.h - 1) * self.sh + (self.kh - 1) * self.dh + 1 - self.pt - self.pb

    @property
    def ow(self) -> int:
        return (self.w - 1) * self.sw + (self.kw - 1) * self.dw + 1 - self.pl - self.pr

    @property
    def macs(self) -> int:
        """Useful multiply-adds per image (every input pixel times every tap)."""
        return self.c * self.fg * self.kh * self.kw * self.h * self.w


def geometry(c: int, fg: int, kh: int, kw: int, h: int, w: int, strides: Sequence[int],
             pads: Sequence[int], dilations: Sequence[int], group: int) -> Geometry:
    """Geometry from the op's attributes (pads in ONNX order: begins, then ends)."""
    sh, sw = (int(v) for v in strides)
    dh, dw = (int(v) for v in dilations)
    pt, pl, pb, pr = (int(v) for v in pads)
    return Geometry(int(c), int(fg) * int(group), int(group), int(h), int(w), int(kh), int(kw),
                    sh, sw, dh, dw, pt, pl, pb, pr)


def applicable(geo: Geometry, form: str) -> bool:
    """Whether ``form`` can compute ``geo``.

    subpixel needs dilation 1 and a stride > 1 (with stride 1 it is
    zero_insert, less the rule's own padding).
    """
    if form in ("subpixel", "subpixel_wcopy"):
        return geo.dh == 1 and geo.dw == 1 and geo.sh * geo.sw > 1
    return form in FORMS


# ---------------------------------------------------------------------------------------
# the per-shape choice


#: below this many output channels per group the GEMMs whose rows are output
#: channels (subpixel, zero_insert) get short register tiles (F = 3: mr = 3;
#: F = 1: the rule does not tile at all); col2im's rows are F K K.
MIN_CHANNEL_ROWS = 16
#: subpixel needs a per-phase output grid at least this large (Q_h Q_w) to beat
#: col2im: its weight reads are strided by phase and reused only Q times, while
#: col2im's output gather (guarded per-lane loads) grows with the output.
SUBPIXEL_MIN_GRID = 128


def choose_form(geo: Geometry) -> str:
    """The form that measured fastest for this shape; always one that applies.

    Measured on the kernel alone as single-thread CPU time (process time,
    TVM on one thread: what the other jobs on this shared 2-core Zen 4
    disturb least; the per-layer wall-clock and CPU-time tables of
    benchmarks/conv_transpose_speed.py, in docs/codegen.md, agree), ms, best
    first:

    * input of <= 4 pixels -> col2im_t. DCGAN's 1x1 z projection: col2im_t
      0.044, zero_insert 0.26, col2im 0.30 (a GEMV streaming the weight).
    * stride 1 (only zero_insert and col2im apply; no zeros are inserted, so
      zero_insert is the plain im2col conv) -> zero_insert when F/g >= 16:
      k3 64->64 @16: 0.20 vs col2im 0.23; k3 32->32 @32: 0.26 vs 0.35.
    * subpixel when it applies, K divisible by s (else its zero taps waste
      ceil(K/s)^2 / (K/s)^2: k3 s2 64->32 @16: col2im 0.16, subpixel 0.23),
      F/g >= MIN_CHANNEL_ROWS and the phase grid >= SUBPIXEL_MIN_GRID:
      DCGAN 128->64 @16 (grid 256): subpixel 0.71, col2im 0.75 (A/B medians
      0.73 vs 0.78);
      DCGAN 256->128 @8 (grid 64): col2im 0.70, subpixel 0.75;
      InfoGAN 128->64 @7 (grid 49): a tie (A/B medians 0.198 vs 0.202);
      DCGAN 512->256 @4 (grid 16): col2im 0.96, subpixel 1.14.
    * else col2im: few output channels (DCGAN 64->3: 0.096 vs subpixel 0.34;
      InfoGAN 64->1: 0.010 vs 0.12; FSRCNN 56->1 k9: 0.16 vs 4.5), k8 s4:
      0.086 vs subpixel 0.099, and dilations (subpixel needs dilation 1).

    zero_insert wastes s^2 of its multiplies on inserted zeros (~4x slower
    than subpixel on DCGAN 128->64); subpixel_wcopy's per-call weight copy
    at best breaks even (see FORMS).
    """
    if geo.h * geo.w <= 4:
        return "col2im_t"
    if geo.sh == geo.sw == 1:
        return "zero_insert" if geo.fg >= MIN_CHANNEL_ROWS else "col2im"
    grid = -(-geo.oh // geo.sh) * -(-geo.ow // geo.sw)
    if (applicable(geo, "subpixel") and geo.kh % geo.sh == 0 and geo.kw % geo.sw == 0
            and geo.fg >= MIN_CHANNEL_ROWS and grid >= SUBPIXEL_MIN_GRID):
        return "subpixel"
    return "col2im"


# ---------------------------------------------------------------------------------------
# helpers

#: fused GEMM N extents are padded (by the form itself) to a multiple of this
#: when that wastes little: 16 f32 fill whole vectors with AVX-512 and AVX2
#: alike, which the GEMM rule needs for a full-width register tile (its own
#: padding plan only handles einsum blocks, and these read the weight through
#: index arithmetic).
GRID_MULTIPLE = 16
#: ... as long as the padded grid keeps at least this share of useful work.
GRID_MIN_USEFUL = 0.7


def padded_grid(a: int, b: int) -> tuple[int, int]:
    """(a', b') >= (a, b) with a' b' a multiple of GRID_MULTIPLE and the least padding.

    Unchanged when already a multiple, or when no such grid keeps
    GRID_MIN_USEFUL of the work (the rule then takes the largest divisor).
    """
    if (a * b) % GRID_MULTIPLE == 0:
        return a, b
    best: tuple[int, int, int] | None = None
    for a2 in range(a, a + GRID_MULTIPLE + 1):
        for b2 in range(b, b + GRID_MULTIPLE + 1):
            if (a2 * b2) % GRID_MULTIPLE == 0:
                # least area, then the wider row (contiguous)
                key = (a2 * b2, -b2, a2)
                if best is None or key < best:
                    best = key
    assert best is not None
    area, nb, a2 = best
    if a * b / area < GRID_MIN_USEFUL:
        return a, b
    return a2, -nb


#: col2im's GEMM rows (M = F K K) are padded to a multiple of this when
#: neither it nor 6 divides them: the rule takes the largest register-tile
#: height that divides M and pads only einsum blocks, so FSRCNN's 81 taps
#: would get 3-row tiles. (The GEMM alone, measured: 88 rows 0.057 ms; 81
#: rows as an einsum, which the rule pads around: 0.185 ms.)
ROW_MULTIPLE = 8


def padded_rows(m: int) -> int:
    """``m`` rounded up to ROW_MULTIPLE unless 8 or 6 already divides it (or it is small)."""
    if m <= ROW_MULTIPLE or m % 8 == 0 or m % 6 == 0:
        return m
    return -(-m // ROW_MULTIPLE) * ROW_MULTIPLE


def _zero() -> tirx.PrimExpr:
    return tirx.const(0.0, "float32")


def _clamp(geo: Geometry, e: tirx.PrimExpr, size: int) -> tirx.PrimExpr:
    """``e`` clamped into ``[0, size)``."""
    return tirx.max(tirx.min(e, geo.i(size - 1)), geo.i(0))


def _guarded(ok: tirx.PrimExpr, value: tirx.PrimExpr) -> tirx.PrimExpr:
    """``value`` where ``ok``, else 0; ``value`` must read through clamped indices.

    The condition is wrapped in ``likely``: ``te.create_prim_func`` simplifies
    a Select's true branch under its condition, which deletes the clamps
    (then provably redundant), and a vectorised Select evaluates both
    branches, so the discarded lanes would read out of bounds (the gather of
    col2im read a whole row past its buffer and crashed). ``likely`` is
    opaque to that simplifier and free in the generated code. The price: the
    clamped index is no ramp, so these reads are per-lane loads; every form
    keeps them out of its hot loop (input copies and the output gather only).
    """
    return tirx.Select(tirx.likely(ok), value, _zero())


def _finish(shape: Sequence[Expr], value: Callable[..., Expr], bias: te.Tensor | None) -> te.Tensor:
    """The output block: ``value(n, f, y, x)`` (+ ``bias[f]``)."""
    if bias is None:
        return te.compute(shape, value, name="conv_transpose2d")
    return te.compute(shape, lambda n, f, y, x: value(n, f, y, x) + bias[f], name="conv_transpose2d")


def _window(data: te.Tensor, geo: Geometry, lo: tuple[int, int], size: tuple[int, int],
            stride: tuple[int, int] = (1, 1)) -> tuple[te.Tensor, tuple[int, int]]:
    """The input over rows ``lo[0] .. lo[0] + size[0] - 1`` (and columns), zero outside, dilated by ``stride``.

    ``P[n, c, u, v] = X[n, c, (u + lo0) / s0, (v + lo1) / s1]`` where that
    divides exactly and lies inside X, else 0 (zero insertion + padding in one
    copy). Returns ``(P, lo)``; ``P`` is ``data`` itself (``lo = (0, 0)``)
    when the window is exactly the input. Reads of ``P`` at ``u in [0, size0)``
    are in bounds by construction, so the hot producers need no clamps.
    """
    if lo == (0, 0) and size == (geo.h, geo.w) and stride == (1, 1):
        return data, (0, 0)
    n = data.shape[0]

    def axis(u: tirx.PrimExpr, start: int, s: int, extent: int) -> tuple[tirx.PrimExpr, tirx.PrimExpr]:
        t = u + geo.i(start)
        if s == 1:
            return t, tirx.all(t >= 0, t < extent)
        i = tirx.floordiv(t, geo.i(s))
        return i, tirx.all(tirx.floormod(t, geo.i(s)) == 0, i >= 0, i < extent)

    def body(b: Expr, ch: Expr, u: Expr, v: Expr) -> Expr:
        iy, oky = axis(u, lo[0], stride[0], geo.h)
        ix, okx = axis(v, lo[1], stride[1], geo.w)
        return _guarded(tirx.all(oky, okx), data[b, ch, _clamp(geo, iy, geo.h), _clamp(geo, ix, geo.w)])

    return te.compute((n, geo.i(geo.c), geo.i(size[0]), geo.i(size[1])), body, name="ct_window"), lo


# ---------------------------------------------------------------------------------------
# the forms


def _phase_offsets(s: int, pad: int) -> list[int]:
    """``e(phi)`` per phase: output ``q s + p`` of phase ``phi = (p + pad) mod s``
    reads input ``q + e(phi) - m`` through tap ``phi + s m``."""
    return [((phi - pad) % s + pad - phi) // s for phi in range(s)]


def _subpixel(data: te.Tensor, weight: te.Tensor, geo: Geometry, bias: te.Tensor | None,
              weight_copy: bool = False) -> te.Tensor:
    g1 = geo.group == 1
    n = data.shape[0]
    sh, sw, kh, kw = geo.sh, geo.sw, geo.kh, geo.kw
    mh, mw = -(-kh // sh), -(-kw // sw)  # taps per phase (zero-padded past K)
    qh, qw = padded_grid(-(-geo.oh // sh), -(-geo.ow // sw))
    cg, fg = geo.cg, geo.fg
    eh, ew = _phase_offsets(sh, geo.pt), _phase_offsets(sw, geo.pl)
    # input rows any (phase, q, m) reads: [min e - (M - 1), Q - 1 + max e]
    lo = (min(eh) - (mh - 1), min(ew) - (mw - 1))
    hi = (qh - 1 + max(eh), qw - 1 + max(ew))
    src, lo = _window(data, geo, lo, (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1))

    def offset(phi: tirx.PrimExpr, s: int, pad: int) -> tirx.PrimExpr:
        return tirx.floordiv(tirx.floormod(phi - geo.i(pad % s), geo.i(s)) + geo.i(pad) - phi, geo.i(s))

    def col_body(b: Expr, g: Expr | None, phy: Expr, phx: Expr, ch: Expr, my: Expr, mx: Expr, y: Expr,
                 x: Expr) -> Expr:
        iy = y + offset(phy, sh, geo.pt) - my - lo[0]
        ix = x + offset(phx, sw, geo.pl) - mx - lo[1]
        cin = ch if g is None else g * cg + ch
        v = src[b, cin, iy, ix]
        # taps past K (K % s != 0) are zero; the read itself is in bounds
        ok = []
        if kh % sh:
            ok.append(phy + sh * my < kh)
        if kw % sw:
            ok.append(phx + sw * mx < kw)
        return tirx.Select(tirx.all(*ok), v, _zero()) if ok else v

    rc = te.reduce_axis((0, cg), "rc")
    rm = te.reduce_axis((0, mh), "rm")
    rn = te.reduce_axis((0, mw), "rn")

    def wtap(g: Expr | None, fo: Expr, phy: Expr, phx: Expr, ch: Expr, my: Expr, mx: Expr) -> Expr:
        r = phy + sh * my
        t = phx + sw * mx
        # past K the col entry is 0; any in-bounds weight will do
        r = tirx.min(r, geo.i(kh - 1)) if kh % sh else r
        t = tirx.min(t, geo.i(kw - 1)) if kw % sw else t
        return weight[ch if g is None else g * cg + ch, fo, r, t]

    if weight_copy:
        # measured only (see FORMS): the weight rearranged per phase, a
        # producer over the weight alone, so the GEMM reads plain iterators
        shape = (geo.group, sh, sw, fg, cg, mh, mw) if not g1 else (sh, sw, fg, cg, mh, mw)
        if g1:
            wp = te.compute(tuple(map(geo.i, shape)), lambda phy, phx, fo, ch, my, mx: wtap(
                None, fo, phy, phx, ch, my, mx), name="ct_weight")
        else:
            wp = te.compute(tuple(map(geo.i, shape)), lambda g, phy, phx, fo, ch, my, mx: wtap(
                g, fo, phy, phx, ch, my, mx), name="ct_weight")

        def wread(g: Expr | None, fo: Expr, phy: Expr, phx: Expr) -> Expr:
            return wp[phy, phx, fo, rc, rm, rn] if g is None else wp[g, phy, phx, fo, rc, rm, rn]
    else:
        def wread(g: Expr | None, fo: Expr, phy: Expr, phx: Expr) -> Expr:
            return wtap(g, fo, phy, phx, rc, rm, rn)

    if g1:
        col = te.compute((n, *map(geo.i, (sh, sw, cg, mh, mw, qh, qw))),
                         lambda b, phy, phx, ch, my, mx, y, x: col_body(b, None, phy, phx, ch, my, mx, y, x),
                         name="ct_col")
        z = te.compute((n, *map(geo.i, (sh, sw, fg, qh, qw))),
                       lambda b, phy, phx, fo, y, x: te.sum(
                           wread(None, fo, phy, phx) * col[b, phy, phx, rc, rm, rn, y, x], axis=[rc, rm, rn]),
                       name="ct_gemm")
    else:
        col = te.compute((n, *map(geo.i, (geo.group, sh, sw, cg, mh, mw, qh, qw))), col_body, name="ct_col")
        z = te.compute((n, *map(geo.i, (geo.group, sh, sw, fg, qh, qw))),
                       lambda b, g, phy, phx, fo, y, x: te.sum(
                           wread(g, fo, phy, phx) * col[b, g, phy, phx, rc, rm, rn, y, x], axis=[rc, rm, rn]),
                       name="ct_gemm")

    def out(b: Expr, fo: Expr, y: Expr, x: Expr) -> Expr:
        phy = tirx.floormod(y + geo.i(geo.pt), geo.i(sh))
        phx = tirx.floormod(x + geo.i(geo.pl), geo.i(sw))
        qy, qx = tirx.floordiv(y, geo.i(sh)), tirx.floordiv(x, geo.i(sw))

        def read(py: tirx.PrimExpr, px: tirx.PrimExpr) -> tirx.PrimExpr:
            if g1:
                return z[b, py, px, fo, qy, qx]
            return z[b, tirx.floordiv(fo, geo.i(fg)), py, px, tirx.floormod(fo, geo.i(fg)), qy, qx]

        # One read per phase of the strided axis, picked by a Select: the GEMM
        # rule reverse-inlines a single-read consumer into its copy-out, and
        # TVM 0.27 then stores Z's extra phase rows (Q s > O, or the padded
        # grid) out of bounds, with a wrong inverse index besides. A consumer
        # reading Z at several index tuples cannot be reverse-inlined. (All
        # these reads are in bounds: phase indices are constants.)
        if sw > 1:
            picks = [read(phy, geo.i(p)) for p in range(sw)]
            sel = phx
        else:
            picks = [read(geo.i(p), phx) for p in range(sh)]
            sel = phy
        val = picks[-1]
        for p in range(len(picks) - 2, -1, -1):
            val = tirx.Select(sel == p, picks[p], val)
        return val

    return _finish((n, geo.i(geo.f), geo.i(geo.oh), geo.i(geo.ow)), out, bias)


def _zero_insert(data: te.Tensor, weight: te.Tensor, geo: Geometry, bias: te.Tensor | None) -> te.Tensor:
    g1 = geo.group == 1
    n = data.shape[0]
    kh, kw, cg, fg = geo.kh, geo.kw, geo.cg, geo.fg
    # The dilated (zero-inserted) input, padded by d (K - 1) - pad: output o
    # reads full-resolution row o + pad - k d, from pad - (K - 1) d up.
    lo = (geo.pt - (kh - 1) * geo.dh, geo.pl - (kw - 1) * geo.dw)
    size = (geo.oh + (kh - 1) * geo.dh, geo.ow + (kw - 1) * geo.dw)
    src, lo = _window(data, geo, lo, size, (geo.sh, geo.sw))

    def col_body(b: Expr, g: Expr | None, ch: Expr, r: Expr, t: Expr, y: Expr, x: Expr) -> Expr:
        cin = ch if g is None else g * cg + ch
        return src[b, cin, y + geo.i(geo.pt - lo[0]) - r * geo.dh, x + geo.i(geo.pl - lo[1]) - t * geo.dw]

    # No padding of the grid here: this GEMM is an einsum (plain iterators
    # everywhere), so the rule pads it itself and keeps its crop separate.
    oh, ow = geo.i(geo.oh), geo.i(geo.ow)
    rc = te.reduce_axis((0, cg), "rc")
    rr = te.reduce_axis((0, kh), "rr")
    rs = te.reduce_axis((0, kw), "rs")
    if g1:
        col = te.compute((n, *map(geo.i, (cg, kh, kw)), oh, ow),
                         lambda b, ch, r, t, y, x: col_body(b, None, ch, r, t, y, x), name="ct_col")
        y = te.compute((n, geo.i(fg), oh, ow), lambda b, fo, yy, xx: te.sum(
            weight[rc, fo, rr, rs] * col[b, rc, rr, rs, yy, xx], axis=[rc, rr, rs]), name="ct_gemm")
        if bias is None:
            return y
        return te.compute(y.shape, lambda b, fo, yy, xx: y[b, fo, yy, xx] + bias[fo], name="conv_transpose2d")
    col = te.compute((n, *map(geo.i, (geo.group, cg, kh, kw)), oh, ow), col_body, name="ct_col")
    z = te.compute((n, geo.i(geo.group), geo.i(fg), oh, ow), lambda b, g, fo, yy, xx: te.sum(
        weight[g * cg + rc, fo, rr, rs] * col[b, g, rc, rr, rs, yy, xx], axis=[rc, rr, rs]), name="ct_gemm")
    return _finish((n, geo.i(geo.f), oh, ow),
                   lambda b, fo, yy, xx: z[b, tirx.floordiv(fo, geo.i(fg)), tirx.floormod(fo, geo.i(fg)), yy, xx], bias)


def _gather_taps(geo: Geometry, y: tirx.PrimExpr, x: tirx.PrimExpr,
                 read: Callable[..., tirx.PrimExpr]) -> tirx.PrimExpr:
    """Sum over the taps that reach output ``(y, x)`` of ``read(r, t, iy, ix)`` (unrolled, guarded).

    With dilation 1 only the ``ceil(K/s)`` taps of the output's phase are
    visited per axis, else every tap with a divisibility test. Indices passed
    to ``read`` are clamped into range (see :func:`_guarded`).
    """
    def axis_taps(o: Expr, k: int, s: int, d: int, pad: int, size: int) -> list[tuple[Expr, Expr, Expr]]:
        out = []  # (tap, input index, valid)
        if d == 1:
            phi = tirx.floormod(o + geo.i(pad), geo.i(s))
            a = tirx.floordiv(o + geo.i(pad), geo.i(s))
            for m in range(-(-k // s)):
                r, i = phi + s * m, a - m
                ok = tirx.all(i >= 0, i < size)
                if k % s:
                    ok = tirx.all(ok, r < k)
                    r = tirx.min(r, geo.i(k - 1))
                out.append((r, i, ok))
        else:
            for r in range(k):
                t = o + geo.i(pad - r * d)
                if s == 1:
                    out.append((geo.i(r), t, tirx.all(t >= 0, t < size)))
                else:
                    i = tirx.floordiv(t, geo.i(s))
                    out.append((geo.i(r), i, tirx.all(tirx.floormod(t, geo.i(s)) == 0, i >= 0, i < size)))
        return out

    acc: tirx.PrimExpr | None = None
    for r, iy, oky in axis_taps(y, geo.kh, geo.sh, geo.dh, geo.pt, geo.h):
        for t, ix, okx in axis_taps(x, geo.kw, geo.sw, geo.dw, geo.pl, geo.w):
            term = _guarded(tirx.all(oky, okx), read(r, t, _clamp(geo, iy, geo.h), _clamp(geo, ix, geo.w)))
            acc = term if acc is None else acc + term
    assert acc is not None
    return acc


def _w_flat(weight: te.Tensor, geo: Geometry, cin: tirx.PrimExpr, j: tirx.PrimExpr,
            clamp: bool = False) -> tirx.PrimExpr:
    """``weight[cin]`` read as a flat row of ``fg * kh * kw`` (its memory order, so no copy).

    ``clamp``: ``j`` may run past the row (padded GEMM rows, never read back),
    so clamp it to keep the read in bounds.
    """
    kk = geo.kh * geo.kw
    if clamp:
        j = tirx.min(j, geo.i(geo.fg * kk - 1))
    return weight[cin, tirx.floordiv(j, geo.i(kk)), tirx.floordiv(tirx.floormod(j, geo.i(kk)), geo.i(geo.kw)),
                  tirx.floormod(j, geo.i(geo.kw))]


def _col2im(data: te.Tensor, weight: te.Tensor, geo: Geometry, bias: te.Tensor | None) -> te.Tensor:
    g1 = geo.group == 1
    n = data.shape[0]
    cg, kk = geo.cg, geo.kh * geo.kw
    jn = geo.fg * kk
    jp = padded_rows(jn)
    gh, gw = padded_grid(geo.h, geo.w)
    # a zero-padded copy when the grid grows: the GEMM reads the input with
    # plain iterators, so the rule fuses (y, x) into one vector axis
    src, _ = _window(data, geo, (0, 0), (gh, gw))
    rc = te.reduce_axis((0, cg), "rc")
    if g1:
        tcol = te.compute((n, geo.i(jp), geo.i(gh), geo.i(gw)), lambda b, j, y, x: te.sum(
            _w_flat(weight, geo, rc, j, jp != jn) * src[b, rc, y, x], axis=rc), name="ct_gemm")
    else:
        tcol = te.compute((n, geo.i(geo.group), geo.i(jp), geo.i(gh), geo.i(gw)), lambda b, g, j, y, x: te.sum(
            _w_flat(weight, geo, g * cg + rc, j, jp != jn) * src[b, g * cg + rc, y, x], axis=rc), name="ct_gemm")

    def out(b: Expr, fo: Expr, y: Expr, x: Expr) -> Expr:
        if g1:
            return _gather_taps(geo, y, x, lambda r, t, iy, ix: tcol[b, (fo * geo.kh + r) * geo.kw + t, iy, ix])
        g, fl = tirx.floordiv(fo, geo.i(geo.fg)), tirx.floormod(fo, geo.i(geo.fg))
        return _gather_taps(geo, y, x, lambda r, t, iy, ix: tcol[b, g, (fl * geo.kh + r) * geo.kw + t, iy, ix])

    return _finish((n, geo.i(geo.f), geo.i(geo.oh), geo.i(geo.ow)), out, bias)


#: inner width of col2im_t's split tap-channel axis (two AVX-512 / four AVX2 vectors)
COL2IM_T_LANES = 32


def _col2im_t(data: te.Tensor, weight: te.Tensor, geo: Geometry, bias: te.Tensor | None) -> te.Tensor:
    g1 = geo.group == 1
    n = data.shape[0]
    cg, kk = geo.cg, geo.kh * geo.kw
    jn = geo.fg * kk
    ji = math.gcd(jn, COL2IM_T_LANES)
    jo = jn // ji
    rc = te.reduce_axis((0, cg), "rc")
    if g1:
        tcol = te.compute((n, geo.i(geo.h), geo.i(geo.w), geo.i(jo), geo.i(ji)), lambda b, y, x, a, l: te.sum(
            data[b, rc, y, x] * _w_flat(weight, geo, rc, a * ji + l), axis=rc), name="ct_gemm")
    else:
        tcol = te.compute((n, geo.i(geo.group), geo.i(geo.h), geo.i(geo.w), geo.i(jo), geo.i(ji)),
                          lambda b, g, y, x, a, l: te.sum(
                              data[b, g * cg + rc, y, x] * _w_flat(weight, geo, g * cg + rc, a * ji + l), axis=rc),
                          name="ct_gemm")

    def out(b: Expr, fo: Expr, y: Expr, x: Expr) -> Expr:
        g = None if g1 else tirx.floordiv(fo, geo.i(geo.fg))
        fl = fo if g1 else tirx.floormod(fo, geo.i(geo.fg))

        def read(r: Expr, t: Expr, iy: Expr, ix: Expr) -> Expr:
            j = (fl * geo.kh + r) * geo.kw + t
            a, l = tirx.floordiv(j, geo.i(ji)), tirx.floormod(j, geo.i(ji))
            return tcol[b, iy, ix, a, l] if g is None else tcol[b, g, iy, ix, a, l]

        return _gather_taps(geo, y, x, read)

    return _finish((n, geo.i(geo.f), geo.i(geo.oh), geo.i(geo.ow)), out, bias)


_BUILDERS = {"subpixel": _subpixel, "zero_insert": _zero_insert, "col2im": _col2im, "col2im_t": _col2im_t,
             "subpixel_wcopy": lambda d, w, g, b: _subpixel(d, w, g, b, weight_copy=True)}


def conv_transpose2d_te(data: te.Tensor, weight: te.Tensor, geo: Geometry, bias: te.Tensor | None = None,
                        form: str = "auto") -> te.Tensor:
    """``conv_transpose2d(data, weight) (+ bias)`` as TE in ``form`` ("auto": :func:`choose_form`).

    data: (N, C, H, W) with N possibly symbolic; weight: (C, F/g, KH, KW);
    bias: (F,). The result is (N, F, OH, OW) float32.
    """
    geo = replace(geo, index_dtype=str(data.shape[1].ty.dtype))
    if form == "auto":
        form = forced_form() or choose_form(geo)
        if not applicable(geo, form):
            form = choose_form(geo)
    if not applicable(geo, form):
        raise ValueError(f"conv_transpose form {form!r} does not apply to {geo}")
    return _BUILDERS[form](data, weight, geo, bias)
