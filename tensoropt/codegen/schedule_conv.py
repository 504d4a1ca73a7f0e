"""conv2d (NCHW / OIHW) TE formulations that the GEMM rule schedules well.

`conv2d_te(..., form="auto")` picks, per shape, the formulation that measured
fastest here (benchmarks/gemm_speed.py):
  * "direct": pad stage + `out[n,f,y,x] = sum_{c,r,s} P[n,c,y*sh+r*dh,x*sw+s*dw] * W[f,c,r,s]`.
    The GEMM rule vectorises x and register-blocks f. 1x1/stride-1 convs are
    plain GEMMs in this form (y and x get fused into one contiguous axis).
  * "im2col": pad stage + `col[n,c,r,s,y,x]` + `out = sum W[f,c,r,s] * col[n,c,r,s,y,x]`.
    col's trailing (y, x) axes match the output's, so the rule fuses them into
    one long contiguous axis: good when the output rows are short (14x14, 7x7).
  * "grouped": a GEMM per group over an im2col buffer, for grouped convs with
    several input channels per group (see `_grouped_im2col`).
Depthwise convs (one input channel per group) use the direct form.
"""

from __future__ import annotations

from collections.abc import Sequence

from tvm import te, tirx


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = tuple(int(x) for x in v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _pads(p: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right); accepts an int, (ph, pw) or ONNX-order 4-tuples."""
    if isinstance(p, int):
        return p, p, p, p
    p = tuple(int(x) for x in p)
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    if len(p) == 4:
        return p
    raise ValueError(f"bad pads {p}")


def pad_nchw(data: te.Tensor, pads: tuple[int, int, int, int], value: float = 0.0) -> te.Tensor:
    """Zero (or `value`) padding of the two spatial axes of an NCHW tensor; identity when no pad."""
    pt, pl, pb, pr = pads
    if not any(pads):
        return data
    n, c, h, w = data.shape
    fill = tirx.const(value, data.dtype)

    def body(b, ch, y, x):
        inside = tirx.all(y >= pt, y < h + pt, x >= pl, x < w + pl)
        # Select over clamped indices, not if_then_else: vectorized, both sides are read
        yy = tirx.max(tirx.min(y - pt, h - 1), 0)
        xx = tirx.max(tirx.min(x - pl, w - 1), 0)
        return tirx.Select(inside, data[b, ch, yy, xx], fill)

    return te.compute((n, c, h + pt + pb, w + pl + pr), body, name="pad")


def choose_conv_form(c_in: int, oh: int, ow: int, kh: int, kw: int, stride: tuple[int, int], groups: int) -> str:
    """Formulation that measured fastest for this conv shape (see module docstring)."""
    if groups != 1:
        # Depthwise (one output channel per group) has no channel reduction to
        # tile; other grouped convs are a GEMM per group (_grouped_im2col).
        return "grouped" if c_in // groups > 1 else "direct"
    if kh == 1 and kw == 1 and stride == (1, 1):
        # Already a GEMM over the fused (y, x) axis. When y*x is ragged the GEMM
        # rule pads it, and the im2col copy is the cheaper place for that
        # padding (55x55 96->16: direct 15, im2col 104 GFLOP/s).
        return "direct" if (oh * ow) % 16 == 0 else "im2col"
    # Measured (benchmarks/gemm_speed.py, AVX-512, 2 threads, 2026-11-24, with
    # the GEMM rule padding ragged axes): im2col wins wherever the output rows
    # are ragged. 3x3 64->64 @56: direct 104 vs im2col 199 GFLOP/s; 7x7/2 @224:
    # 83 vs 156; 3x3/2 3->64 @111: 29 vs 87; 3x3 256->256 @14: 155 vs 175;
    # 3x3 64->256 @13: 136 vs 158; 3x3 512->512 @7: 78 vs 154. im2col turns
    # y*x into one long axis the rule pads to whole vectors; the direct form
    # vectorises along x alone.
    # But with rows of whole 16-lane vectors the direct form wins at every size
    # (2026-12-07, Zen 4, the kernel alone, us: 3x3 64->128 @112 16394 vs 23110;
    # 3->64 @224 2164 vs 4119; 256->256 @32 10535 vs 11366; 32->32 @64 700 vs
    # 998; 32->64 @32 348 vs 427; 64->64 @16 178 vs 218; 32->64 @16 90 vs 113):
    # the im2col copy is a pass over K x the output that buys nothing there.
    # 16 is a whole AVX-512 vector and two AVX2 ones, so the choice is the same
    # on either machine. Stride 1 only: strided rows are gathers (3x3/2 64->64
    # @64: direct 1097 vs im2col 890; 7x7/2 3->64 @224: a tie).
    return "direct" if stride[1] == 1 and ow % 16 == 0 else "im2col"


def _grouped_im2col(padded: te.Tensor, weight: te.Tensor, n: tirx.PrimExpr, groups: int, cg: int, fg: int,
                    kh: int, kw: int, oh: tirx.PrimExpr, ow: tirx.PrimExpr, stride: tuple[int, int],
                    dilation: tuple[int, int]) -> te.Tensor:
    """A grouped conv as one GEMM per group, ``out[n, g, f, y, x] = sum_{c,r,s}
    W[g, f, c, r, s] * col[n, g, c, r, s, y, x]``, then viewed as [n, g*fg, y, x].

    Written over a single output-channel axis (the direct form), the input's
    channel ``(o // fg) * cg + c`` moves with the output channel, so the GEMM
    rule cannot tile output channels and tiled rows of the (short) image
    instead: ShuffleNet's 7x7 grouped 1x1 convs got 1x7 register tiles. With
    the group an axis of its own, ``f`` is the tile's rows and the fused
    ``y*x`` its columns, as in an ungrouped im2col conv. The weight is read
    through a 5-D view (a per-call copy the size of the weights) so every
    access is a plain iterator and the rule may pad ragged axes.
    """
    sh, sw = stride
    dh, dw = dilation
    w5 = te.compute((groups, fg, cg, kh, kw), lambda g, f, c, r, s: weight[g * fg + f, c, r, s], name="weight_groups")
    col = te.compute((n, groups, cg, kh, kw, oh, ow),
                     lambda b, g, c, r, s, y, x: padded[b, g * cg + c, y * sh + r * dh, x * sw + s * dw], name="im2col")
    rc = te.reduce_axis((0, cg), "rc")
    rr = te.reduce_axis((0, kh), "rr")
    rs = te.reduce_axis((0, kw), "rs")
    out5 = te.compute((n, groups, fg, oh, ow),
                      lambda b, g, f, y, x: te.sum(w5[g, f, rc, rr, rs] * col[b, g, rc, rr, rs, y, x], axis=[rc, rr, rs]),
                      name="conv2d")
    return te.compute((n, groups * fg, oh, ow), lambda b, o, y, x: out5[b, o // fg, o % fg, y, x], name="conv2d_groups")


def conv2d_te(
    data: te.Tensor,
    weight: te.Tensor,
    strides: int | Sequence[int] = 1,
    pads: int | Sequence[int] = 0,
    dilations: int | Sequence[int] = 1,
    groups: int = 1,
    form: str = "auto",
) -> te.Tensor:
    """NCHW x OIHW conv2d as TE, in the form the GEMM rule schedules best.

    data: (N, C, H, W); weight: (F, C // groups, KH, KW). Static C, KH, KW,
    groups are required; N, H, W may be symbolic only for form="direct".
    form: "auto" (per-shape choice), "direct", "im2col" or "grouped" (groups > 1).
    """
    sh, sw = _pair(strides)
    dh, dw = _pair(dilations)
    pt, pl, pb, pr = _pads(pads)
    n, c, h, w = data.shape
    f, cg, kh, kw = weight.shape
    c_i, cg_i, kh_i, kw_i, f_i = int(c), int(cg), int(kh), int(kw), int(f)
    if c_i != cg_i * groups:
        raise ValueError(f"channels {c_i} != {cg_i} x groups {groups}")
    oh = (h + pt + pb - dh * (kh_i - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw_i - 1) - 1) // sw + 1
    if form == "auto":
        static = all(isinstance(x, (int, tirx.IntImm)) for x in (oh, ow))
        form = choose_conv_form(c_i, int(oh), int(ow), kh_i, kw_i, (sh, sw), groups) if static else "direct"
    padded = pad_nchw(data, (pt, pl, pb, pr))
    if form == "im2col" and groups == 1:
        col = te.compute(
            (n, c, kh, kw, oh, ow),
            lambda b, ch, r, s, y, x: padded[b, ch, y * sh + r * dh, x * sw + s * dw],
            name="im2col",
        )
        rc = te.reduce_axis((0, c_i), "rc")
        rr = te.reduce_axis((0, kh_i), "rr")
        rs = te.reduce_axis((0, kw_i), "rs")
        return te.compute(
            (n, f, oh, ow),
            lambda b, o, y, x: te.sum(weight[o, rc, rr, rs] * col[b, rc, rr, rs, y, x], axis=[rc, rr, rs]),
            name="conv2d",
        )
    if form == "grouped":
        return _grouped_im2col(padded, weight, n, groups, cg_i, f_i // groups, kh_i, kw_i, oh, ow, (sh, sw), (dh, dw))
    if form not in ("direct", "im2col"):
        raise ValueError(f"unknown conv form {form!r}")
    rc = te.reduce_axis((0, cg_i), "rc")
    rr = te.reduce_axis((0, kh_i), "rr")
    rs = te.reduce_axis((0, kw_i), "rs")
    fg = f_i // groups
    if groups == 1 and kh_i == 1 and kw_i == 1:
        # No unit reduction axes: with stride 1 the input is read as [n, c, y, x],
        # which the GEMM rule recognises as contiguous together with the output.
        def body(b, o, y, x):
            return te.sum(padded[b, rc, y * sh, x * sw] * weight[o, rc, 0, 0], axis=rc)
    elif groups == 1:
        def body(b, o, y, x):
            return te.sum(padded[b, rc, y * sh + rr * dh, x * sw + rs * dw] * weight[o, rc, rr, rs],
                          axis=[rc, rr, rs])
    else:
        def body(b, o, y, x):
            return te.sum(
                padded[b, (o // fg) * cg_i + rc, y * sh + rr * dh, x * sw + rs * dw] * weight[o, rc, rr, rs],
                axis=[rc, rr, rs],
            )
    return te.compute((n, f, oh, ow), body, name="conv2d")
