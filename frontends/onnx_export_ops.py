"""The ONNX export's per-op rule table: :data:`RULES` maps each registry op name to its rule.

A rule is one small function of an :class:`OpCtx` (the node, its attributes
with defaults, an :class:`~tensoropt.frontends.onnx_export_emit.Emitter`) that
emits the ONNX node(s) computing the node's outputs under their IR names.
Ops whose ONNX twin does not exist at the requested opset are decomposed
(``gelu`` below opset 20, in the registry's own operation order), lowered
through their registry Expr definition (``cumprod`` below opset 26; ``g2bmm``
and ``gbmm``, which have no ONNX twin at all), or
refused with an :class:`UnsupportedError` that names the node and says why.

Invariants: every registry op has an entry (a test checks); where ONNX's
meaning differs from the registry's (float Mod, BitShift's out-of-range
amounts, pooling's ceil mode, ConvTranspose's negative pads, ...) the rule
spells the registry's meaning out, so the outputs equal
:func:`tensoropt.interp.run_graph` up to floating-point rounding.

Refused here: ``avgpool2d``/``avgpool3d`` with dilations below opset 19; an
infinite or NaN pad value for an integer tensor. (A dtype the ONNX op does
not take is refused by the emitter, against the op schema.)

This module does not import the Expr compiler: ``OpCtx.lower`` is handed in
by the driver (:mod:`tensoropt.frontends.onnx_export`), which keeps the
modules acyclic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from onnx import TensorProto

from tensoropt.ir.expr import Scope
from tensoropt.ir.graph import Attrs, Node
from tensoropt.ir.types import FLOAT_DTYPES, UNSIGNED_DTYPES, TensorType
from tensoropt.ops import REGISTRY
from tensoropt.ops.common import abool, afloat, aint, aints, astr
from tensoropt.ops.reduce import reduced_axes
from tensoropt.ops.shapes import norm_axes, norm_axis

from .onnx_export_emit import ONNX_DTYPE, Emitter

__all__ = ["RULES", "OpCtx", "Rule"]


@dataclass(frozen=True)
class OpCtx:
    """What a rule sees: the node, its attributes with defaults, an emitter,
    and ``lower(scope)``, which emits a scope computing the node's output the
    way an ``expr`` node is emitted (for ops whose ONNX twin needs a newer opset)."""

    node: Node
    attrs: Attrs
    em: Emitter
    lower: Callable[[Scope], None]

    @property
    def ins(self) -> list[str]:
        return list(self.node.inputs)

    @property
    def outs(self) -> list[str]:
        return list(self.node.output_names)

    @property
    def out(self) -> str:
        return self.node.outputs[0].name

    def type(self, k: int) -> TensorType:
        return self.em.types[self.node.inputs[k]]

    def emit(self, op_type: str, inputs: Sequence[str] | None = None, **attrs: Any) -> None:
        """The node's single ONNX twin: same inputs and outputs unless given."""
        self.em.node(op_type, self.ins if inputs is None else inputs, self.outs, **attrs)


Rule = Callable[[OpCtx], None]


def _direct(op_type: str, **fixed: Any) -> Rule:
    """Rule for an op that is one ONNX op with the same inputs (and fixed attributes)."""
    return lambda c: c.emit(op_type, **fixed)


def _rsqrt(c: OpCtx) -> None:
    c.em.one("Reciprocal", [c.em.one("Sqrt", c.ins)], c.out)


def _leaky_relu(c: OpCtx) -> None:
    c.emit("LeakyRelu", alpha=afloat(c.attrs, "alpha"))


def _gelu(c: OpCtx) -> None:
    tanh = astr(c.attrs, "approximate") == "tanh"
    if c.em.opset >= 20:
        c.emit("Gelu", approximate="tanh" if tanh else "none")
        return
    # Gelu is new in opset 20: spell out the registry's own formula, in the
    # same operation order, so float rounding matches the interpreter's.
    em, x, dt = c.em, c.ins[0], c.type(0).dtype

    def k(v: float, what: str) -> str:
        return em.scalar(v, dt, what)

    if tanh:
        cube = em.one("Mul", [em.one("Mul", [em.one("Mul", [k(0.044715, "c"), x]), x]), x])
        inner = em.one("Mul", [k(math.sqrt(2.0 / math.pi), "sqrt_2_over_pi"), em.one("Add", [x, cube])])
        core = em.one("Tanh", [inner])
    else:
        core = em.one("Erf", [em.one("Mul", [x, k(1.0 / math.sqrt(2.0), "inv_sqrt2")])])
    half_x = em.one("Mul", [k(0.5, "half"), x])
    em.one("Mul", [half_x, em.one("Add", [k(1.0, "one"), core])], c.out)


def _clip(c: OpCtx) -> None:
    lo, hi = afloat(c.attrs, "min"), afloat(c.attrs, "max")
    t = c.type(0)
    if t.dtype in FLOAT_DTYPES or all(_fits_int(v, t.np_dtype) for v in (lo, hi) if math.isfinite(v)):
        bounds = [c.em.scalar(v, t.dtype, what) if math.isfinite(v) else ""
                  for v, what in ((lo, "min"), (hi, "max"))]
        c.emit("Clip", [c.ins[0]] + bounds)
        return
    # A fractional bound on integers: the registry clips in floats and
    # truncates back, so do exactly that.
    em = c.em
    x = em.one("Cast", c.ins, to=TensorProto.DOUBLE)
    bounds = [em.scalar(v, "f64", what) if math.isfinite(v) else "" for v, what in ((lo, "min"), (hi, "max"))]
    em.one("Cast", [em.one("Clip", [x] + bounds)], c.out, to=ONNX_DTYPE[t.dtype])


def _fits_int(v: float, dt: np.dtype) -> bool:
    info = np.iinfo(dt)
    return float(v).is_integer() and info.min <= v <= info.max


def _binary(op_type: str, bool_op: str | None = None) -> Rule:
    """Broadcasting binary op; ``bool_op`` replaces it on bool inputs (Max is Or)."""

    def rule(c: OpCtx) -> None:
        if c.type(0).dtype == "bool" and bool_op is not None:
            c.emit(bool_op)
        else:
            c.emit(op_type)

    return rule


def _compare(op_type: str) -> Rule:
    def rule(c: OpCtx) -> None:
        if c.type(0).dtype != "bool":
            c.emit(op_type)
            return
        # ONNX orders numbers only; False < True as 0 < 1.
        a, b = (c.em.one("Cast", [x], to=TensorProto.INT32) for x in c.ins)
        c.emit(op_type, [a, b])

    return rule


def _mod(c: OpCtx) -> None:
    """Python's ``%``: the remainder takes the divisor's sign."""
    if c.type(0).dtype not in FLOAT_DTYPES:
        c.emit("Mod", fmod=0)  # ONNX integer Mod already follows the divisor
        return
    # ONNX float Mod is C fmod (the dividend's sign); move a nonzero remainder
    # of the wrong sign by one divisor, as NumPy does (exact, unlike a - floor(a/b)*b).
    em, (a, b) = c.em, c.ins
    zero = em.scalar(0.0, c.type(0).dtype, "zero")
    r = em.one("Mod", [a, b], fmod=1)
    wrong = em.one("And", [em.one("Xor", [em.one("Less", [r, zero]), em.one("Less", [b, zero])]),
                           em.one("Not", [em.one("Equal", [r, zero])])])
    em.one("Where", [wrong, em.one("Add", [r, b]), r], c.out)


#: the unsigned type of each integer dtype's width: ONNX BitShift shifts only unsigned integers.
_UNSIGNED: Mapping[str, int] = MappingProxyType({
    "i8": TensorProto.UINT8, "i16": TensorProto.UINT16, "i32": TensorProto.UINT32,
    "i64": TensorProto.UINT64, "u8": TensorProto.UINT8, "u16": TensorProto.UINT16,
    "u32": TensorProto.UINT32, "u64": TensorProto.UINT64,
})


def _shift(direction: str) -> Rule:
    """``shift_left``/``shift_right`` through BitShift on the unsigned twin type.

    The registry's rules: left shifts wrap (two's complement), right shifts of
    signed values are arithmetic, and a shift by < 0 or >= the bit width gives
    0 (left) or the sign fill (right); BitShift leaves those undefined, so the
    amount is made safe first and the result chosen after.
    """

    def rule(c: OpCtx) -> None:
        em, (x, y) = c.em, c.ins
        t = c.type(0)
        signed = t.dtype not in UNSIGNED_DTYPES
        bits = t.np_dtype.itemsize * 8

        def k(v: int, what: str) -> str:
            return em.scalar(v, t.dtype, what)

        zero = k(0, "zero")
        ok = em.one("And", [em.one("GreaterOrEqual", [y, zero]), em.one("Less", [y, k(bits, "width")])])
        amount = em.one("Cast", [em.one("Where", [ok, y, zero])], to=_UNSIGNED[t.dtype])
        ux = em.one("Cast", [x], to=_UNSIGNED[t.dtype]) if signed else x
        if direction == "LEFT" or not signed:
            shifted = em.one("BitShift", [ux, amount], direction=direction)
            fill = zero
        else:
            # Arithmetic shift of a negative x: the complement of the logical
            # shift of its complement (the vacated bits become ones).
            neg = em.one("Less", [x, zero])
            logical = em.one("BitShift", [ux, amount], direction="RIGHT")
            flipped = em.one("BitShift", [em.one("BitwiseNot", [ux]), amount], direction="RIGHT")
            shifted = em.one("Where", [neg, em.one("BitwiseNot", [flipped]), logical])
            fill = em.one("Where", [neg, k(-1, "minus_one"), zero])
        if signed:
            shifted = em.one("Cast", [shifted], to=ONNX_DTYPE[t.dtype])  # wraps, as two's complement
        em.one("Where", [ok, shifted, fill], c.out)

    return rule


def _via_expr(c: OpCtx) -> None:
    """Emit the op through its registry Expr definition (exact by construction)."""
    rules = REGISTRY[c.node.op]
    scope = rules.expr(c.node.inputs, [c.type(k) for k in range(len(c.ins))], c.attrs) if rules.expr else None
    if scope is None:
        raise c.em.refuse(f"{c.node.op} has no ONNX twin at this opset and no Expr definition here")
    c.lower(scope)


def _cumulative(op_type: str, since: int) -> Rule:
    def rule(c: OpCtx) -> None:
        if c.em.opset < since:
            _via_expr(c)  # e.g. CumProd is new in opset 26: a reduction over shifted reads instead
            return
        axis = c.em.const(np.asarray(aint(c.attrs, "axis"), np.int64), "axis")
        c.emit(op_type, [c.ins[0], axis], exclusive=int(abool(c.attrs, "exclusive")),
               reverse=int(abool(c.attrs, "reverse")))

    return rule


def _arg(op_type: str) -> Rule:
    # NaN: the registry (NumPy) takes NaN as the extreme; onnxruntime need not.
    return lambda c: c.emit(op_type, axis=aint(c.attrs, "axis"), keepdims=int(abool(c.attrs, "keepdims")),
                            select_last_index=int(abool(c.attrs, "select_last_index")))


def _topk(c: OpCtx) -> None:
    # ONNX TopK also puts the lower index first among equal values.
    k = c.em.ints([aint(c.attrs, "k")], "k")
    c.emit("TopK", [c.ins[0], k], axis=aint(c.attrs, "axis"), largest=int(abool(c.attrs, "largest")), sorted=1)


def _onehot(c: OpCtx) -> None:
    """``values[1]`` where the index equals the position (or position - depth), else ``values[0]``.

    Spelled out rather than ONNX OneHot, whose meaning is the same but which
    onnxruntime implements for a few index/value/depth dtype triples only.
    """
    em, (idx, values) = c.em, c.ins
    t, depth = c.type(0), aint(c.attrs, "depth")
    ax = norm_axis(aint(c.attrs, "axis"), t.rank + 1)
    at = em.one("Unsqueeze", [idx, em.ints([ax], "axis")])
    # positions along the new axis, laid out to broadcast against ``at``
    pos = np.arange(depth).astype(t.np_dtype).reshape((depth,) + (1,) * (t.rank - ax))
    hit = em.one("Or", [em.one("Equal", [at, em.const(pos, "positions")]),
                        em.one("Equal", [at, em.const(pos - depth, "from_end")])])
    on, off = (em.one("Gather", [values, em.const(np.asarray(k, np.int64), w)], axis=0)
               for k, w in ((1, "on"), (0, "off")))
    em.one("Where", [hit, on, off], c.out)


def _trilu(c: OpCtx) -> None:
    k = c.em.const(np.asarray(aint(c.attrs, "k"), np.int64), "k")
    c.emit("Trilu", [c.ins[0], k], upper=int(abool(c.attrs, "upper")))


def _resize(c: OpCtx) -> None:
    """ONNX Resize with its ``axes`` attribute; the registry keeps one scale
    *and* one size per axis, ONNX takes one of them and derives the other.

    Sizes are passed when ``size / input`` is exactly the scale (ONNX then
    uses that very scale); otherwise scales, when ONNX's ``floor(input *
    scale)`` gives the sizes. Anything else has no ONNX spelling.
    """
    a, t, em = c.attrs, c.type(0), c.em
    axes = [ax % t.rank for ax in (aints(a, "axes") or tuple(range(t.rank)))]
    scales, sizes = [float(v) for v in a["scales"]], list(aints(a, "sizes"))  # type: ignore[union-attr]
    dims = [int(t.shape[ax]) for ax in axes]  # resized axes are static (the registry's rule)
    crop = astr(a, "coordinate_transformation_mode") == "tf_crop_and_resize"
    roi = em.const(np.asarray(a["roi"] or [0.0] * len(axes) + [1.0] * len(axes), np.float32), "roi") if crop else ""
    if all(n / d == sc for n, d, sc in zip(sizes, dims, scales)):
        how = ["", em.ints(sizes, "sizes")]
    elif not crop and all(math.floor(d * np.float32(sc)) == n for n, d, sc in zip(sizes, dims, scales)):
        how = [em.const(np.asarray(scales, np.float32), "scales"), ""]
    else:
        raise em.refuse(f"scales={scales} and sizes={sizes} of axes {axes} disagree; ONNX Resize takes "
                        "one and derives the other")
    attrs: dict[str, Any] = dict(
        axes=axes, mode=astr(a, "mode"),
        coordinate_transformation_mode=astr(a, "coordinate_transformation_mode"),
        nearest_mode=astr(a, "nearest_mode"), cubic_coeff_a=afloat(a, "cubic_coeff_a"),
        exclude_outside=int(abool(a, "exclude_outside")),
        extrapolation_value=afloat(a, "extrapolation_value"), antialias=int(abool(a, "antialias")))
    if t.dtype in FLOAT_DTYPES or astr(a, "mode") == "nearest":
        c.emit("Resize", [c.ins[0], roi] + how, **attrs)
        return
    # Interpolating integers: ONNX rounds the weighted sums half to even and
    # saturates; onnxruntime's integer kernels round differently, so
    # interpolate in f32 (onnxruntime has no f64 Resize) and round here.
    info = np.iinfo(t.np_dtype)
    y = em.one("Round", [em.one("Resize", [em.one("Cast", [c.ins[0]], to=TensorProto.FLOAT), roi] + how, **attrs)])
    lo, hi = (em.const(np.asarray(v, np.float32), w) for v, w in ((info.min, "dtype_min"), (info.max, "dtype_max")))
    em.one("Cast", [em.one("Clip", [y, lo, hi])], c.out, to=ONNX_DTYPE[t.dtype])


def _int64_indices(c: OpCtx, k: int) -> list[str]:
    """The inputs with input ``k`` (indices) as i64: GatherND and ScatterND take no i32."""
    ins = c.ins
    if c.type(k).dtype != "i64":
        ins[k] = c.em.one("Cast", [ins[k]], to=TensorProto.INT64)
    return ins


def _conv(c: OpCtx) -> None:
    # pads are all begins then all ends, ONNX's layout, for every spatial rank.
    c.emit("Conv", kernel_shape=list(c.type(1).shape[2:]), strides=list(aints(c.attrs, "strides")),
           pads=list(aints(c.attrs, "pads")), dilations=list(aints(c.attrs, "dilations")),
           group=aint(c.attrs, "group"))


def _conv_transpose(c: OpCtx) -> None:
    """ONNX ConvTranspose crops its full output by ``pads``; the registry's
    negative pads extend it with zeros instead, so those become a Pad after it
    (and the bias, which the extension also gets, an Add after that)."""
    r = c.type(0).rank - 2
    pads = aints(c.attrs, "pads")
    attrs: dict[str, Any] = dict(
        kernel_shape=list(c.type(1).shape[2:]), strides=list(aints(c.attrs, "strides")),
        dilations=list(aints(c.attrs, "dilations")), group=aint(c.attrs, "group"),
        pads=[max(p, 0) for p in pads])
    grow = [max(-p, 0) for p in pads]
    if not any(grow):
        c.emit("ConvTranspose", **attrs)
        return
    em = c.em
    y = em.one("ConvTranspose", c.ins[:2], **attrs)
    widths = em.ints([0, 0] + grow[:r] + [0, 0] + grow[r:], "extend")
    if len(c.ins) == 2:
        em.one("Pad", [y, widths], c.out)
        return
    bias = em.one("Unsqueeze", [c.ins[2], em.ints(list(range(1, r + 1)), "bias_axes")])
    em.one("Add", [em.one("Pad", [y, widths]), bias], c.out)


def _pool_pads(c: OpCtx) -> tuple[list[int], list[int]]:
    """(pads with the ceil-mode overhang added at the ends, overhang per spatial axis).

    Pools are exported with ``ceil_mode=0`` and the overhang as explicit end
    padding, so the output size is plainly the registry's whatever a
    runtime's ceil-mode rule (ONNX changed it in opset 19). The overhang is
    read off the node's verified output size: how far its last window
    reaches past the padded input. A symbolic axis has a 1x1 unpadded
    window (the registry's rule), which never overhangs.
    """
    x, y = c.type(0).shape[2:], c.node.outputs[0].type.shape[2:]
    kernel, strides = aints(c.attrs, "kernel"), aints(c.attrs, "strides")
    dil, pads = aints(c.attrs, "dilations"), aints(c.attrs, "pads")
    r = len(kernel)
    extra = []
    for k in range(r):
        size, out = x[k], y[k]
        if not (isinstance(size, int) and isinstance(out, int)) or out == 0:
            extra.append(0)
            continue
        reach = (out - 1) * strides[k] + (kernel[k] - 1) * dil[k] + 1
        extra.append(max(0, reach - (size + pads[k] + pads[r + k])))
    return list(pads[:r]) + [pads[r + k] + extra[k] for k in range(r)], extra


def _window(c: OpCtx, pads: list[int]) -> dict[str, Any]:
    return dict(kernel_shape=list(aints(c.attrs, "kernel")), strides=list(aints(c.attrs, "strides")), pads=pads)


def _maxpool(c: OpCtx) -> None:
    pads, _ = _pool_pads(c)  # max ignores padding, so overhang as padding is exact
    c.emit("MaxPool", dilations=list(aints(c.attrs, "dilations")), **_window(c, pads))


def _maxpool_indices(c: OpCtx) -> None:
    # ONNX MaxPool's second output; the overhang as padding is exact here too
    # (padding never wins, and ONNX indices count positions of the unpadded input)
    pads, _ = _pool_pads(c)
    c.em.node("MaxPool", c.ins, [c.em.tmp("values"), c.out], dilations=list(aints(c.attrs, "dilations")),
              storage_order=int(abool(c.attrs, "column_major")), **_window(c, pads))


def _avgpool(c: OpCtx) -> None:
    pads, extra = _pool_pads(c)
    include = abool(c.attrs, "count_include_pad")
    dil = list(aints(c.attrs, "dilations"))
    if any(d != 1 for d in dil) and c.em.opset < 19:
        raise c.em.refuse(f"AveragePool takes dilations={dil} only from opset 19; export with opset >= 19")
    attrs = _window(c, pads) | ({"dilations": dil} if c.em.opset >= 19 else {})
    if not (include and any(extra)):
        # Excluding pads, ONNX counts exactly the input positions a window
        # covers, which is the registry's divisor with or without overhang.
        c.emit("AveragePool", count_include_pad=int(include), **attrs)
        return
    # Counting pads but not the ceil-mode overhang: ONNX would count the
    # overhang too (it is padding now), so rescale by window size / true count.
    em = c.em
    avg = em.one("AveragePool", c.ins, count_include_pad=1, **attrs)
    counts = _counted_taps(c)
    scale = (math.prod(aints(c.attrs, "kernel")) / counts).astype(c.type(0).np_dtype)
    em.one("Mul", [avg, em.const(scale, "count_fix")], c.out)


def _counted_taps(c: OpCtx) -> np.ndarray:
    """Per output position, the taps that land on the input or its explicit
    pads (not the overhang): the registry's count_include_pad divisor. Static
    sizes only (an overhang needs them). Axes are independent, so it is an
    outer product of per-axis counts."""
    x, y = c.type(0).shape[2:], c.node.outputs[0].type.shape[2:]
    kernel, strides = aints(c.attrs, "kernel"), aints(c.attrs, "strides")
    dil, pads = aints(c.attrs, "dilations"), aints(c.attrs, "pads")
    r = len(kernel)
    total = np.ones((), np.float64)
    for k in range(r):
        pos = (np.arange(int(y[k]))[:, None] * strides[k] + np.arange(kernel[k])[None, :] * dil[k]
               - pads[k])  # input coordinate of each (output, tap)
        per_axis = ((pos >= -pads[k]) & (pos < int(x[k]) + pads[r + k])).sum(axis=1)
        total = np.multiply.outer(total, per_axis)
    return total


def _lrn(c: OpCtx) -> None:
    c.emit("LRN", size=aint(c.attrs, "size"), alpha=afloat(c.attrs, "alpha"),
           beta=afloat(c.attrs, "beta"), bias=afloat(c.attrs, "bias"))


def _layernorm(c: OpCtx) -> None:
    # ONNX defines Scale and B by broadcasting Mul/Add, the registry's rule too.
    c.emit("LayerNormalization", axis=norm_axis(aint(c.attrs, "axis"), c.type(0).rank),
           epsilon=afloat(c.attrs, "epsilon"))


def _gemm(c: OpCtx) -> None:
    c.emit("Gemm", alpha=afloat(c.attrs, "alpha"), beta=afloat(c.attrs, "beta"),
           transA=int(abool(c.attrs, "trans_a")), transB=int(abool(c.attrs, "trans_b")))


def _reduce(op_type: str) -> Rule:
    def rule(c: OpCtx) -> None:
        axes = reduced_axes(c.type(0).rank, c.attrs)  # explicit: [] means all here, not "none"
        keep = int(abool(c.attrs, "keepdims"))
        if c.type(0).dtype != "bool":
            c.emit(op_type, [c.ins[0], c.em.ints(axes, "axes")], keepdims=keep)
            return
        # ONNX reductions take no bool (torch's any/all become reduce_max/min
        # on bool): reduce 0/1 as int32, then compare back
        em = c.em
        as_int = em.one("Cast", [c.ins[0]], to=TensorProto.INT32)
        red = em.one(op_type, [as_int, em.ints(axes, "axes")], keepdims=keep)
        em.one("Cast", [red], c.out, to=ONNX_DTYPE[c.node.outputs[0].type.dtype])

    return rule


def _reshape(c: OpCtx) -> None:
    # The registry follows ONNX Reshape (0 copies a dim, -1 infers one).
    c.emit("Reshape", [c.ins[0], c.em.ints(aints(c.attrs, "shape"), "shape")])


def _flatten(c: OpCtx) -> None:
    c.emit("Flatten", axis=aint(c.attrs, "axis"))


def _squeeze(c: OpCtx) -> None:
    t = c.type(0)
    axes = aints(c.attrs, "axes")
    # [] means the statically-1 dims; ONNX would also drop a symbolic dim that is 1 at run time.
    axes = norm_axes(axes, t.rank) if axes else tuple(k for k, d in enumerate(t.shape) if d == 1)
    if not axes:
        c.emit("Identity")
        return
    c.emit("Squeeze", [c.ins[0], c.em.ints(axes, "axes")])


def _unsqueeze(c: OpCtx) -> None:
    c.emit("Unsqueeze", [c.ins[0], c.em.ints(aints(c.attrs, "axes"), "axes")])


def _transpose(c: OpCtx) -> None:
    perm = aints(c.attrs, "perm") or tuple(reversed(range(c.type(0).rank)))
    c.emit("Transpose", perm=list(perm))


def _expand(c: OpCtx) -> None:
    c.emit("Expand", [c.ins[0], c.em.ints(aints(c.attrs, "shape"), "shape")])


def _concat(c: OpCtx) -> None:
    c.emit("Concat", axis=aint(c.attrs, "axis"))


def _split(c: OpCtx) -> None:
    c.emit("Split", [c.ins[0], c.em.ints(aints(c.attrs, "split"), "split")], axis=aint(c.attrs, "axis"))


_INT64 = (-(2**63), 2**63 - 1)


def _int64(vs: Sequence[int]) -> tuple[int, ...]:
    """Slice bounds past int64 mean "to the end" either way: clamp, do not overflow."""
    return tuple(min(max(v, _INT64[0]), _INT64[1]) for v in vs)


def _slice(c: OpCtx) -> None:
    starts, ends = _int64(aints(c.attrs, "starts")), _int64(aints(c.attrs, "ends"))
    axes = aints(c.attrs, "axes") or tuple(range(len(starts)))
    steps = aints(c.attrs, "steps") or (1,) * len(starts)
    em = c.em
    c.emit("Slice", [c.ins[0], em.ints(starts, "starts"), em.ints(ends, "ends"),
                     em.ints(axes, "axes"), em.ints(steps, "steps")])


def _pad(c: OpCtx) -> None:
    mode = astr(c.attrs, "mode")
    t = c.type(0)
    ins = [c.ins[0], c.em.ints(aints(c.attrs, "pads"), "pads")]
    if mode == "constant":
        value = afloat(c.attrs, "value")
        if t.dtype not in FLOAT_DTYPES and t.dtype != "bool" and not math.isfinite(value):
            raise c.em.refuse(f"pad value {value} has no {t.dtype} equivalent")
        ins.append(c.em.scalar(value, t.dtype, "value"))  # NumPy's cast, as np.pad does
    c.emit("Pad", ins, mode=mode)


def _cast(c: OpCtx) -> None:
    c.emit("Cast", to=ONNX_DTYPE[astr(c.attrs, "to")])


def _gather(c: OpCtx) -> None:
    c.emit("Gather", axis=aint(c.attrs, "axis"))


#: registry op name -> how it becomes ONNX. Every registry op has an entry
#: (a test checks); a rule raises UnsupportedError for the cases ONNX cannot
#: express at the requested opset.
RULES: Mapping[str, Rule] = MappingProxyType({
    # elementwise
    "relu": _direct("Relu"), "leaky_relu": _leaky_relu, "sigmoid": _direct("Sigmoid"),
    "tanh": _direct("Tanh"), "exp": _direct("Exp"), "log": _direct("Log"), "sqrt": _direct("Sqrt"),
    "rsqrt": _rsqrt, "neg": _direct("Neg"), "abs": _direct("Abs"), "erf": _direct("Erf"),
    "gelu": _gelu, "clip": _clip, "reciprocal": _direct("Reciprocal"),
    "sin": _direct("Sin"), "cos": _direct("Cos"), "tan": _direct("Tan"), "arcsin": _direct("Asin"),
    "arccos": _direct("Acos"), "arctan": _direct("Atan"), "sinh": _direct("Sinh"), "cosh": _direct("Cosh"),
    "arcsinh": _direct("Asinh"), "arccosh": _direct("Acosh"), "arctanh": _direct("Atanh"),
    "floor": _direct("Floor"), "ceil": _direct("Ceil"),
    "round": _direct("Round"),  # halves to even, as NumPy's rint
    "add": _binary("Add"), "sub": _binary("Sub"), "mul": _binary("Mul"),
    # ONNX integer Div truncates toward zero, as the registry's does.
    "div": _binary("Div"), "pow": _binary("Pow"),
    "max": _binary("Max", "Or"), "min": _binary("Min", "And"),
    "mod": _mod, "fmod": _direct("Mod", fmod=1),  # fmod=1 is C fmod for every dtype
    "bitwise_and": _direct("BitwiseAnd"), "bitwise_or": _direct("BitwiseOr"),
    "bitwise_xor": _direct("BitwiseXor"),
    "shift_left": _shift("LEFT"), "shift_right": _shift("RIGHT"),
    "less": _compare("Less"), "greater": _compare("Greater"), "equal": _direct("Equal"),
    "where": _direct("Where"),
    # nn
    "conv2d": _conv, "conv3d": _conv, "conv_transpose2d": _conv_transpose,
    "conv_transpose3d": _conv_transpose,
    "maxpool2d": _maxpool, "maxpool3d": _maxpool,
    "maxpool2d_indices": _maxpool_indices, "maxpool3d_indices": _maxpool_indices, "avgpool2d": _avgpool, "avgpool3d": _avgpool,
    "global_avgpool": _direct("GlobalAveragePool"), "global_maxpool": _direct("GlobalMaxPool"),
    "lrn": _lrn, "batchnorm": lambda c: c.emit("BatchNormalization", epsilon=afloat(c.attrs, "epsilon")),
    "softmax": lambda c: c.emit("Softmax", axis=aint(c.attrs, "axis")),
    "log_softmax": lambda c: c.emit("LogSoftmax", axis=aint(c.attrs, "axis")),
    "layernorm": _layernorm,
    # linalg: matmul is NumPy matmul, which is ONNX MatMul (1-D operands included)
    "matmul": _direct("MatMul"), "batch_matmul": _direct("MatMul"), "gemm": _gemm,
    "einsum": lambda c: c.emit("Einsum", equation=astr(c.attrs, "equation")),
    # banded attention has no ONNX twin: its Expr (shifted reads, zero past the band edge)
    "g2bmm": _via_expr, "gbmm": _via_expr,
    # reductions
    "reduce_sum": _reduce("ReduceSum"), "reduce_mean": _reduce("ReduceMean"),
    "reduce_max": _reduce("ReduceMax"), "reduce_min": _reduce("ReduceMin"),
    "reduce_prod": _reduce("ReduceProd"),
    # movement
    "reshape": _reshape, "flatten": _flatten, "squeeze": _squeeze, "unsqueeze": _unsqueeze,
    "transpose": _transpose, "identity": _direct("Identity"),
    "dropout": _direct("Identity"),  # inference: dropout is the identity
    "expand": _expand, "concat": _concat, "split": _split, "slice": _slice, "pad": _pad,
    "cast": _cast, "gather": _gather, "embedding": _direct("Gather", axis=0),
    # Duplicate indices with reduction "none": ONNX leaves the winner open;
    # onnxruntime applies updates in order, so the last wins, as in the registry.
    "gather_elements": lambda c: c.emit("GatherElements", axis=aint(c.attrs, "axis")),
    "scatter_elements": lambda c: c.emit("ScatterElements", axis=aint(c.attrs, "axis"),
                                         reduction=astr(c.attrs, "reduction")),
    "gather_nd": lambda c: c.emit("GatherND", _int64_indices(c, 1), batch_dims=aint(c.attrs, "batch_dims")),
    "scatter_nd": lambda c: c.emit("ScatterND", _int64_indices(c, 1), reduction=astr(c.attrs, "reduction")),
    # along one axis
    "argmax": _arg("ArgMax"), "argmin": _arg("ArgMin"),
    "cumsum": _cumulative("CumSum", 14), "cumprod": _cumulative("CumProd", 26),
    "topk": _topk, "onehot": _onehot, "trilu": _trilu,
    "resize": _resize,
})
