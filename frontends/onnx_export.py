"""Graph -> ONNX export: :func:`to_onnx` builds a ``ModelProto``, :func:`save_onnx` writes it.

What the model looks like (so a user recognizes their graph in Netron):

- Every IR tensor keeps its name as the ONNX value name; graph inputs keep
  their symbolic dims as ``dim_param`` with the symbol's name; constants
  become initializers of the same dtype; every tensor gets a typed
  ``value_info``. The node that computes an IR tensor is named after it;
  helper nodes and values are named ``<tensor>/<what>``.
- Registry ops go through :data:`RULES`, one small function per op name that
  emits the ONNX node(s). Ops whose ONNX twin does not exist at the requested
  opset are decomposed (``gelu`` below opset 20) or refused with an
  :class:`UnsupportedError` that names the node and says why.
- ``expr`` nodes are compiled from their Expr (see :class:`_ScopeCompiler`)
  into elementwise ops, Gather (shifted or strided reads, padding),
  Einsum (a ``Sum`` over a product) and Reduce* ops, each expr node as an ONNX
  local function in the ``tensoropt`` domain (onnxruntime inlines them), or
  inline with ``local_functions=False``.

Invariants of the result: it passes ``onnx.checker.check_model(full_check=True)``
(strict shape inference), or :func:`to_onnx` raises a one-line
:class:`TensoroptError`; its outputs equal :func:`tensoropt.interp.run_graph`
up to floating-point rounding. Supported opsets: ``MIN_OPSET`` to the newest
one the installed ``onnx`` knows (onnxruntime 1.31 runs up to 26).

Refused, with an :class:`UnsupportedError` naming the node: a nested scope
that reads an enclosing iterator (a tensor per outer position, which no ONNX
op builds); ``avgpool2d``/``avgpool3d`` with dilations below opset 19; a dtype the ONNX op
does not take (``relu`` of ``u8``, checked against the op schema); an infinite
or NaN pad value for an integer tensor. Also refused: opsets out of range,
constants without data, and weights of 2 GiB or more (that needs ONNX
external data).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import FunctionProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper

from tensoropt.atomic import atomic_write
from tensoropt.errors import TensoroptError, UnsupportedError
from tensoropt.ir.expr import (
    Access,
    BinOp,
    Call,
    Const,
    Expr,
    Iter,
    IterDef,
    Scope,
    free_iters,
    tensor_names,
)
from tensoropt.ir.graph import Attrs, Graph, Node
from tensoropt.ir.printer import print_expr
from tensoropt.ir.types import DTYPES, FLOAT_DTYPES, Dim, TensorType
from tensoropt.ops import REGISTRY
from tensoropt.ops.common import abool, afloat, aint, aints, astr
from tensoropt.ops.reduce import reduced_axes
from tensoropt.ops.shapes import norm_axes, norm_axis

__all__ = ["DOMAIN", "MAX_OPSET", "MIN_OPSET", "RULES", "save_onnx", "to_onnx"]

#: the custom domain of the local functions that hold ``expr`` nodes.
DOMAIN = "tensoropt"
#: 18 is the first opset where every reduction takes its axes as an input,
#: so one rule per op suffices from here on.
MIN_OPSET = 18
MAX_OPSET = onnx.defs.onnx_opset_version()
#: protobuf cannot serialize a message of 2 GiB or more.
_PROTO_LIMIT = 2**31 - 1

_ONNX_DTYPE: Mapping[str, int] = MappingProxyType({
    "f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "f16": TensorProto.FLOAT16,
    "i64": TensorProto.INT64, "i32": TensorProto.INT32, "i16": TensorProto.INT16,
    "i8": TensorProto.INT8, "u8": TensorProto.UINT8, "bool": TensorProto.BOOL,
})
#: how ONNX schemas spell our dtypes in type constraints.
_SCHEMA_DTYPE: Mapping[str, str] = MappingProxyType({
    "f32": "tensor(float)", "f64": "tensor(double)", "f16": "tensor(float16)",
    "i64": "tensor(int64)", "i32": "tensor(int32)", "i16": "tensor(int16)",
    "i8": "tensor(int8)", "u8": "tensor(uint8)", "bool": "tensor(bool)",
})
assert set(_ONNX_DTYPE) == set(DTYPES) == set(_SCHEMA_DTYPE), "dtype tables out of step with DTYPES"


# ----------------------------------------------------------------------------
# Names and emission


class _Names:
    """Hands out names no one has: IR tensor names are reserved up front, so a
    helper value can never shadow a tensor the user named."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name


@dataclass
class _Sink:
    """Where emitted nodes go: the main graph, or one local function's body.

    A function body cannot hold initializers, so its constants become
    ``Constant`` nodes (``in_function``).
    """

    in_function: bool
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)


@dataclass
class _Emitter:
    """Emits the ONNX nodes of one IR node (``owner`` is its first output).

    Every input of an emitted node whose name is an IR tensor is checked
    against the ONNX schema's type constraints, so a dtype ONNX does not take
    fails here with the IR node's name rather than later inside the checker.
    """

    sink: _Sink
    values: _Names
    node_names: _Names
    owner: str
    where: str
    opset: int
    types: Mapping[str, TensorType]

    def tmp(self, what: str) -> str:
        return self.values.fresh(f"{self.owner}/{what}")

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
             *, domain: str = "", doc: str = "", **attrs: Any) -> list[str]:
        """Emit one node; ``outputs=None`` makes one fresh output. Returns the outputs."""
        if domain == "":
            self._check_types(op_type, inputs)
        outs = list(outputs) if outputs is not None else [self.tmp(op_type)]
        main = self.owner in outs
        name = self.node_names.fresh(self.owner if main else f"{self.owner}/{op_type}")
        n = helper.make_node(op_type, list(inputs), outs, name=name, domain=domain or None,
                             **{k: v for k, v in attrs.items() if v is not None})
        if doc:
            n.doc_string = doc
        self.sink.nodes.append(n)
        return outs

    def one(self, op_type: str, inputs: Sequence[str], output: str | None = None, **attrs: Any) -> str:
        return self.node(op_type, inputs, None if output is None else [output], **attrs)[0]

    def const(self, array: np.ndarray, what: str) -> str:
        name = self.tmp(what)
        t = numpy_helper.from_array(np.array(array, order="C"), name)  # ascontiguousarray would make 0-d 1-d
        if self.sink.in_function:
            self.sink.nodes.append(helper.make_node(
                "Constant", [], [name], name=self.node_names.fresh(f"{self.owner}/{what}"), value=t))
        else:
            self.sink.initializers.append(t)
        return name

    def ints(self, values: Sequence[int], what: str) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), what)

    def scalar(self, value: float, dtype: str, what: str) -> str:
        return self.const(np.asarray(value).astype(DTYPES[dtype]), what)

    def refuse(self, why: str) -> UnsupportedError:
        return UnsupportedError(f"{self.where}: cannot export to ONNX (opset {self.opset}): {why}")

    def _check_types(self, op_type: str, inputs: Sequence[str]) -> None:
        try:
            schema = onnx.defs.get_schema(op_type, self.opset)
        except onnx.defs.SchemaError:
            raise self.refuse(f"ONNX has no {op_type} op at this opset") from None
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        formals = list(schema.inputs)
        for k, name in enumerate(inputs):
            t = self.types.get(name)
            if t is None or not formals:
                continue  # a helper value (its type is ours to get right) or an omitted optional
            formal = formals[min(k, len(formals) - 1)]  # the last formal may be variadic
            ok = allowed.get(formal.type_str, {formal.type_str})
            if _SCHEMA_DTYPE[t.dtype] not in ok:
                kinds = ", ".join(sorted(s[7:-1] for s in ok))
                raise self.refuse(f"ONNX {op_type} does not take {t.dtype} for its input "
                                  f"{formal.name!r} (%{name}); it takes {kinds}")


# ----------------------------------------------------------------------------
# Registry op rules


@dataclass(frozen=True)
class _OpCtx:
    """What a rule sees: the node, its attributes with defaults, an emitter,
    and ``lower(scope)``, which emits a scope computing the node's output the
    way an ``expr`` node is emitted (for ops whose ONNX twin needs a newer opset)."""

    node: Node
    attrs: Attrs
    em: _Emitter
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


Rule = Callable[[_OpCtx], None]


def _direct(op_type: str, **fixed: Any) -> Rule:
    """Rule for an op that is one ONNX op with the same inputs (and fixed attributes)."""
    return lambda c: c.emit(op_type, **fixed)


def _rsqrt(c: _OpCtx) -> None:
    c.em.one("Reciprocal", [c.em.one("Sqrt", c.ins)], c.out)


def _leaky_relu(c: _OpCtx) -> None:
    c.emit("LeakyRelu", alpha=afloat(c.attrs, "alpha"))


def _gelu(c: _OpCtx) -> None:
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


def _clip(c: _OpCtx) -> None:
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
    em.one("Cast", [em.one("Clip", [x] + bounds)], c.out, to=_ONNX_DTYPE[t.dtype])


def _fits_int(v: float, dt: np.dtype) -> bool:
    info = np.iinfo(dt)
    return float(v).is_integer() and info.min <= v <= info.max


def _binary(op_type: str, bool_op: str | None = None) -> Rule:
    """Broadcasting binary op; ``bool_op`` replaces it on bool inputs (Max is Or)."""

    def rule(c: _OpCtx) -> None:
        if c.type(0).dtype == "bool" and bool_op is not None:
            c.emit(bool_op)
        else:
            c.emit(op_type)

    return rule


def _compare(op_type: str) -> Rule:
    def rule(c: _OpCtx) -> None:
        if c.type(0).dtype != "bool":
            c.emit(op_type)
            return
        # ONNX orders numbers only; False < True as 0 < 1.
        a, b = (c.em.one("Cast", [x], to=TensorProto.INT32) for x in c.ins)
        c.emit(op_type, [a, b])

    return rule


def _mod(c: _OpCtx) -> None:
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
    "i64": TensorProto.UINT64, "u8": TensorProto.UINT8,
})


def _shift(direction: str) -> Rule:
    """``shift_left``/``shift_right`` through BitShift on the unsigned twin type.

    The registry's rules: left shifts wrap (two's complement), right shifts of
    signed values are arithmetic, and a shift by < 0 or >= the bit width gives
    0 (left) or the sign fill (right); BitShift leaves those undefined, so the
    amount is made safe first and the result chosen after.
    """

    def rule(c: _OpCtx) -> None:
        em, (x, y) = c.em, c.ins
        t = c.type(0)
        signed = not t.dtype.startswith("u")
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
            shifted = em.one("Cast", [shifted], to=_ONNX_DTYPE[t.dtype])  # wraps, as two's complement
        em.one("Where", [ok, shifted, fill], c.out)

    return rule


def _via_expr(c: _OpCtx) -> None:
    """Emit the op through its registry Expr definition (exact by construction)."""
    rules = REGISTRY[c.node.op]
    scope = rules.expr(c.node.inputs, [c.type(k) for k in range(len(c.ins))], c.attrs) if rules.expr else None
    if scope is None:
        raise c.em.refuse(f"{c.node.op} has no ONNX twin at this opset and no Expr definition here")
    c.lower(scope)


def _cumulative(op_type: str, since: int) -> Rule:
    def rule(c: _OpCtx) -> None:
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


def _topk(c: _OpCtx) -> None:
    # ONNX TopK also puts the lower index first among equal values.
    k = c.em.ints([aint(c.attrs, "k")], "k")
    c.emit("TopK", [c.ins[0], k], axis=aint(c.attrs, "axis"), largest=int(abool(c.attrs, "largest")), sorted=1)


def _onehot(c: _OpCtx) -> None:
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


def _trilu(c: _OpCtx) -> None:
    k = c.em.const(np.asarray(aint(c.attrs, "k"), np.int64), "k")
    c.emit("Trilu", [c.ins[0], k], upper=int(abool(c.attrs, "upper")))


def _resize(c: _OpCtx) -> None:
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
    em.one("Cast", [em.one("Clip", [y, lo, hi])], c.out, to=_ONNX_DTYPE[t.dtype])


def _int64_indices(c: _OpCtx, k: int) -> list[str]:
    """The inputs with input ``k`` (indices) as i64: GatherND and ScatterND take no i32."""
    ins = c.ins
    if c.type(k).dtype != "i64":
        ins[k] = c.em.one("Cast", [ins[k]], to=TensorProto.INT64)
    return ins


def _conv(c: _OpCtx) -> None:
    # pads are all begins then all ends, ONNX's layout, for every spatial rank.
    c.emit("Conv", kernel_shape=list(c.type(1).shape[2:]), strides=list(aints(c.attrs, "strides")),
           pads=list(aints(c.attrs, "pads")), dilations=list(aints(c.attrs, "dilations")),
           group=aint(c.attrs, "group"))


def _conv_transpose(c: _OpCtx) -> None:
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


def _pool_pads(c: _OpCtx) -> tuple[list[int], list[int]]:
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


def _window(c: _OpCtx, pads: list[int]) -> dict[str, Any]:
    return dict(kernel_shape=list(aints(c.attrs, "kernel")), strides=list(aints(c.attrs, "strides")), pads=pads)


def _maxpool(c: _OpCtx) -> None:
    pads, _ = _pool_pads(c)  # max ignores padding, so overhang as padding is exact
    c.emit("MaxPool", dilations=list(aints(c.attrs, "dilations")), **_window(c, pads))


def _avgpool(c: _OpCtx) -> None:
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


def _counted_taps(c: _OpCtx) -> np.ndarray:
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


def _lrn(c: _OpCtx) -> None:
    c.emit("LRN", size=aint(c.attrs, "size"), alpha=afloat(c.attrs, "alpha"),
           beta=afloat(c.attrs, "beta"), bias=afloat(c.attrs, "bias"))


def _layernorm(c: _OpCtx) -> None:
    # ONNX defines Scale and B by broadcasting Mul/Add, the registry's rule too.
    c.emit("LayerNormalization", axis=norm_axis(aint(c.attrs, "axis"), c.type(0).rank),
           epsilon=afloat(c.attrs, "epsilon"))


def _gemm(c: _OpCtx) -> None:
    c.emit("Gemm", alpha=afloat(c.attrs, "alpha"), beta=afloat(c.attrs, "beta"),
           transA=int(abool(c.attrs, "trans_a")), transB=int(abool(c.attrs, "trans_b")))


def _reduce(op_type: str) -> Rule:
    def rule(c: _OpCtx) -> None:
        axes = reduced_axes(c.type(0).rank, c.attrs)  # explicit: [] means all here, not "none"
        c.emit(op_type, [c.ins[0], c.em.ints(axes, "axes")], keepdims=int(abool(c.attrs, "keepdims")))

    return rule


def _reshape(c: _OpCtx) -> None:
    # The registry follows ONNX Reshape (0 copies a dim, -1 infers one).
    c.emit("Reshape", [c.ins[0], c.em.ints(aints(c.attrs, "shape"), "shape")])


def _flatten(c: _OpCtx) -> None:
    c.emit("Flatten", axis=aint(c.attrs, "axis"))


def _squeeze(c: _OpCtx) -> None:
    t = c.type(0)
    axes = aints(c.attrs, "axes")
    # [] means the statically-1 dims; ONNX would also drop a symbolic dim that is 1 at run time.
    axes = norm_axes(axes, t.rank) if axes else tuple(k for k, d in enumerate(t.shape) if d == 1)
    if not axes:
        c.emit("Identity")
        return
    c.emit("Squeeze", [c.ins[0], c.em.ints(axes, "axes")])


def _unsqueeze(c: _OpCtx) -> None:
    c.emit("Unsqueeze", [c.ins[0], c.em.ints(aints(c.attrs, "axes"), "axes")])


def _transpose(c: _OpCtx) -> None:
    perm = aints(c.attrs, "perm") or tuple(reversed(range(c.type(0).rank)))
    c.emit("Transpose", perm=list(perm))


def _expand(c: _OpCtx) -> None:
    c.emit("Expand", [c.ins[0], c.em.ints(aints(c.attrs, "shape"), "shape")])


def _concat(c: _OpCtx) -> None:
    c.emit("Concat", axis=aint(c.attrs, "axis"))


def _split(c: _OpCtx) -> None:
    c.emit("Split", [c.ins[0], c.em.ints(aints(c.attrs, "split"), "split")], axis=aint(c.attrs, "axis"))


def _slice(c: _OpCtx) -> None:
    starts, ends = aints(c.attrs, "starts"), aints(c.attrs, "ends")
    axes = aints(c.attrs, "axes") or tuple(range(len(starts)))
    steps = aints(c.attrs, "steps") or (1,) * len(starts)
    em = c.em
    c.emit("Slice", [c.ins[0], em.ints(starts, "starts"), em.ints(ends, "ends"),
                     em.ints(axes, "axes"), em.ints(steps, "steps")])


def _pad(c: _OpCtx) -> None:
    mode = astr(c.attrs, "mode")
    t = c.type(0)
    ins = [c.ins[0], c.em.ints(aints(c.attrs, "pads"), "pads")]
    if mode == "constant":
        value = afloat(c.attrs, "value")
        if t.dtype not in FLOAT_DTYPES and t.dtype != "bool" and not math.isfinite(value):
            raise c.em.refuse(f"pad value {value} has no {t.dtype} equivalent")
        ins.append(c.em.scalar(value, t.dtype, "value"))  # NumPy's cast, as np.pad does
    c.emit("Pad", ins, mode=mode)


def _cast(c: _OpCtx) -> None:
    c.emit("Cast", to=_ONNX_DTYPE[astr(c.attrs, "to")])


def _gather(c: _OpCtx) -> None:
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
    "maxpool2d": _maxpool, "maxpool3d": _maxpool, "avgpool2d": _avgpool, "avgpool3d": _avgpool,
    "global_avgpool": _direct("GlobalAveragePool"), "global_maxpool": _direct("GlobalMaxPool"),
    "lrn": _lrn, "batchnorm": lambda c: c.emit("BatchNormalization", epsilon=afloat(c.attrs, "epsilon")),
    "softmax": lambda c: c.emit("Softmax", axis=aint(c.attrs, "axis")),
    "log_softmax": lambda c: c.emit("LogSoftmax", axis=aint(c.attrs, "axis")),
    "layernorm": _layernorm,
    # linalg: matmul is NumPy matmul, which is ONNX MatMul (1-D operands included)
    "matmul": _direct("MatMul"), "batch_matmul": _direct("MatMul"), "gemm": _gemm,
    "einsum": lambda c: c.emit("Einsum", equation=astr(c.attrs, "equation")),
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


# ----------------------------------------------------------------------------
# expr nodes: the Expr -> ONNX compiler


@dataclass(frozen=True)
class _Val:
    """A body expression's value over a scope's frame.

    Invariant: the ONNX tensor ``name`` has one axis per iterator in ``axes``
    (a subsequence of the frame, in frame order), each of that iterator's full
    extent; it is constant along every other frame iterator. ``cond`` is the
    same value as a bool tensor when it came from a comparison (so ``where``
    needs no Cast back).
    """

    name: str
    axes: tuple[str, ...]
    cond: str | None = None


@dataclass(frozen=True, eq=False)
class _Read:
    """An access before it is laid out in frame order.

    The ONNX tensor ``name`` has one axis per iterator in ``axes``, in the
    order the source stores them. ``mask`` is True where the read is in
    bounds: a constant table over ``mask_axes`` (frame order), a run-time
    bool value when sizes are symbolic, or None when every read is in bounds.
    """

    name: str
    axes: tuple[str, ...]
    mask: np.ndarray | _Val | None = None
    mask_axes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Frame:
    """The iterators of one scope: traversal then reduction, in order."""

    defs: tuple[IterDef, ...]

    @cached_property
    def pos(self) -> Mapping[str, int]:
        return {d.name: k for k, d in enumerate(self.defs)}

    def get(self, name: str) -> IterDef:
        return self.defs[self.pos[name]]

    def order(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(set(names), key=self.pos.__getitem__))


_UNARY_FNS: Mapping[str, str] = MappingProxyType({
    "neg": "Neg", "abs": "Abs", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
    "sigmoid": "Sigmoid", "relu": "Relu", "erf": "Erf", "sin": "Sin", "cos": "Cos",
    "floor": "Floor", "ceil": "Ceil", "sign": "Sign", "reciprocal": "Reciprocal",
    "tan": "Tan", "arcsin": "Asin", "arccos": "Acos", "arctan": "Atan", "sinh": "Sinh", "cosh": "Cosh",
    "arcsinh": "Asinh", "arccosh": "Acosh", "arctanh": "Atanh",
    "round": "Round",  # halves to even, as NumPy's rint
})
_BINARY_FNS: Mapping[str, str] = MappingProxyType({"max": "Max", "min": "Min", "pow": "Pow"})
#: comparisons give bool in ONNX; bodies read them as 1.0 / 0.0.
_COMPARE_FNS: Mapping[str, str] = MappingProxyType({
    "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal", "ne": "Equal",
})
_ARITH: Mapping[str, str] = MappingProxyType({"+": "Add", "-": "Sub", "*": "Mul", "/": "Div"})
_REDUCE_OPS: Mapping[str, str] = MappingProxyType({
    "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd",
})
_IDENTITY: Mapping[str, float] = MappingProxyType({"Sum": 0.0, "Prod": 1.0, "Max": -math.inf, "Min": math.inf})
#: Einsum subscripts (lowercase only: the portable subset).
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _compute_dtype(t: TensorType) -> str:
    """The dtype an expr node computes in: the interpreter's rule (floats in
    their own dtype, f16 in f32; integer and bool results in f64, cast at the end)."""
    if t.dtype not in FLOAT_DTYPES:
        return "f64"
    return "f32" if t.dtype == "f16" else t.dtype


def _product_factors(e: Expr) -> list[Expr]:
    if isinstance(e, BinOp) and e.op == "*":
        return _product_factors(e.lhs) + _product_factors(e.rhs)
    return [e]


class _ScopeCompiler:
    """Compiles one expr node's scope to ONNX nodes.

    Each scope is evaluated over its *frame* (traversal then reduction
    iterators); a value carries the frame iterators it varies along
    (:class:`_Val`), so broadcasting only ever materializes what a body uses.
    Accesses become Squeeze/Transpose when indices are plain iterators, and
    one Gather through an index tensor (plus a Where for the pad value) when
    they are shifted, strided or reshaped: a constant table for static sizes,
    int64 arithmetic at run time for symbolic ones. ``Sum`` over a product
    becomes Einsum, other reductions Reduce*. A nested scope must be closed
    (use no enclosing iterator): it is compiled once to a tensor and read like
    any other. ``dim_of(symbol)`` names a tensor and axis whose size is the
    symbol, for the few places that need a symbolic extent at run time.
    """

    def __init__(self, em: _Emitter, tensors: Mapping[str, TensorType], compute: str,
                 dim_of: Callable[[str], tuple[str, int]]) -> None:
        self.em = em
        self.tensors = tensors
        self.compute = compute
        self.dim_of = dim_of
        self._memo: dict[tuple[_Frame, Expr], _Val] = {}
        self._reads: dict[tuple[_Frame, Access], _Read] = {}
        self._iotas: dict[tuple[int, Dim, str], str] = {}
        self._closed: dict[Scope, str] = {}
        self._dims: dict[str, str] = {}
        self._consts: dict[tuple[str, str], str] = {}
        self._int_consts: dict[int, str] = {}

    # -- entry ------------------------------------------------------------

    def tensor(self, s: Scope) -> str:
        """``s`` as a tensor of its full shape, in the compute dtype."""
        if s not in self._closed:
            self._closed[s] = self._materialize(s, self._scope(s))
        return self._closed[s]

    # -- scopes -------------------------------------------------------------

    def _scope(self, s: Scope) -> _Val:
        frame = _Frame(s.travs + s.sums)
        if any(d.extent == 0 for d in s.sums):
            return _Val(self._k(_IDENTITY[s.reduce]), ())  # an empty reduction is its identity
        if s.reduce == "Sum" and s.sums:
            out = self._einsum(s, frame)
            if out is not None:
                return out
        body = self._value(s.body, frame)
        present = [d.name for d in s.sums if d.name in body.axes]
        name = body.name
        if present:
            axes = [body.axes.index(n) for n in present]
            name = self.em.one(_REDUCE_OPS[s.reduce], [name, self.em.ints(axes, "axes")], keepdims=0)
        kept = tuple(a for a in body.axes if a not in present)
        absent = [d for d in s.sums if d.name not in body.axes]
        return self._repeat(_Val(name, kept), absent, s.reduce)

    def _einsum(self, s: Scope, frame: _Frame) -> _Val | None:
        """``Sum[...] { f1 * f2 * ... }`` as one Einsum over the factors' axes, or None."""
        if len(frame.defs) > len(_LETTERS):
            return None
        factors: list[_Val] = []
        for f in _product_factors(s.body):
            r = self._read(f, frame) if isinstance(f, Access) else None
            # Einsum subscripts can follow a tensor's own axis order: no Transpose.
            factors.append(_Val(r.name, r.axes) if r is not None and r.mask is None else self._value(f, frame))
        tensors = [f for f in factors if f.axes]
        if len(tensors) < 2:
            return None
        travs = [d.name for d in s.travs]
        out_axes = tuple(t for t in travs if any(t in f.axes for f in tensors))

        def sub(axes: Sequence[str]) -> str:
            return "".join(_LETTERS[frame.pos[a]] for a in axes)

        eq = ",".join(sub(f.axes) for f in tensors) + "->" + sub(out_axes)
        name = self.em.one("Einsum", [f.name for f in tensors], equation=eq)
        for v in factors:
            if not v.axes:  # scalar factors: applied once, after the contraction
                name = self.em.one("Mul", [name, v.name])
        used = {a for v in tensors for a in v.axes}
        return self._repeat(_Val(name, out_axes), [d for d in s.sums if d.name not in used], "Sum")

    def _repeat(self, v: _Val, absent: Sequence[IterDef], reduce: str) -> _Val:
        """Reduce ``v`` over iterators it does not depend on: the value repeats
        ``extent`` times (Sum multiplies, Prod raises to a power, Max/Min keep it)."""
        if not absent or reduce in ("Max", "Min"):
            return v
        static = math.prod(int(d.extent) for d in absent if isinstance(d.extent, int))
        symbolic = [d.extent for d in absent if isinstance(d.extent, str)]
        count = self._k(float(static)) if static != 1 or not symbolic else None
        for sym in symbolic:
            n = self.em.one("Cast", [self._int_dim(sym)], to=_ONNX_DTYPE[self.compute])
            count = n if count is None else self.em.one("Mul", [count, n])
        assert count is not None
        op = "Mul" if reduce == "Sum" else "Pow"
        return _Val(self.em.one(op, [v.name, count]), v.axes)

    def _materialize(self, s: Scope, v: _Val) -> str:
        """``v`` laid out as ``s``'s full shape."""
        return self._fill(v, s.travs)

    def _fill(self, v: _Val, defs: tuple[IterDef, ...]) -> str:
        """``v`` with one full axis per iterator of ``defs`` (Unsqueeze + Expand
        for those it does not vary along). ``v.axes`` must be a subsequence of them."""
        names = tuple(d.name for d in defs)
        if v.axes == names:
            return v.name
        missing = [k for k, t in enumerate(names) if t not in v.axes]
        name = self.em.one("Unsqueeze", [v.name, self.em.ints(missing, "axes")])
        # Expand broadcasts both ways: 1 keeps a present axis as it is.
        shape = [d.extent if d.name not in v.axes else 1 for d in defs]
        return self.em.one("Expand", [name, self._shape(shape)])

    # -- bodies -------------------------------------------------------------

    def _value(self, e: Expr, frame: _Frame) -> _Val:
        # Keyed by the frame's iterators (not its identity): a value depends on
        # nothing else, and the same subexpression (a re-read access) is built once.
        key = (frame, e)
        if key not in self._memo:
            self._memo[key] = self._build(e, frame)
        return self._memo[key]

    def _build(self, e: Expr, frame: _Frame) -> _Val:
        if isinstance(e, Const):
            return _Val(self._k(float(e.value)), ())
        if isinstance(e, Iter):
            return self._iota(frame.get(e.name))
        if isinstance(e, Access):
            return self._access(e, frame)
        if isinstance(e, BinOp):
            a, b = self._value(e.lhs, frame), self._value(e.rhs, frame)
            if e.op in _ARITH:
                return self._map(_ARITH[e.op], [a, b], frame)
            q = self._map("Floor", [self._map("Div", [a, b], frame)], frame)
            if e.op == "//":
                return q
            # ``%`` keeps the divisor's sign (Python, like NumPy's mod): a - floor(a / b) * b
            return self._map("Sub", [a, self._map("Mul", [q, b], frame)], frame)
        if isinstance(e, Call):
            return self._call(e, frame)
        raise self.em.refuse(f"a {type(e).__name__} cannot be a value in a body")

    def _call(self, e: Call, frame: _Frame) -> _Val:
        args = [self._value(a, frame) for a in e.args]
        if e.fn in _UNARY_FNS:
            return self._map(_UNARY_FNS[e.fn], args, frame)
        if e.fn == "rsqrt":
            return self._map("Reciprocal", [self._map("Sqrt", args, frame)], frame)
        if e.fn in _BINARY_FNS:
            return self._map(_BINARY_FNS[e.fn], args, frame)
        if e.fn == "fmod":  # C remainder (the dividend's sign); float Mod needs fmod=1
            return self._map("Mod", args, frame, fmod=1)
        if e.fn in _COMPARE_FNS:
            test = self._map(_COMPARE_FNS[e.fn], args, frame)
            if e.fn == "ne":
                test = self._map("Not", [test], frame)
            num = self.em.one("Cast", [test.name], to=_ONNX_DTYPE[self.compute])
            return _Val(num, test.axes, cond=test.name)
        if e.fn == "where":
            c, x, y = args
            # The interpreter tests ``c != 0``, which is what Cast to bool does.
            cond = c.cond or self.em.one("Cast", [c.name], to=TensorProto.BOOL)
            return self._map("Where", [_Val(cond, c.axes), x, y], frame)
        raise self.em.refuse(f"function {e.fn!r} has no ONNX equivalent here")

    def _map(self, op_type: str, args: Sequence[_Val], frame: _Frame, **attrs: Any) -> _Val:
        """An elementwise ONNX op over ``args``, broadcast on the union of their axes."""
        axes = frame.order(a for v in args for a in v.axes)
        return _Val(self.em.one(op_type, [self._align(v, axes) for v in args], **attrs), axes)

    def _align(self, v: _Val, axes: tuple[str, ...]) -> str:
        """``v``'s tensor with size-1 axes inserted so it broadcasts against ``axes``.

        ONNX broadcasting aligns trailing dims, so a scalar or a trailing run
        of ``axes`` needs nothing; otherwise the missing axes after ``v``'s
        first one are inserted.
        """
        if not v.axes or v.axes == axes[len(axes) - len(v.axes):]:
            return v.name
        first = axes.index(v.axes[0])
        missing = [p - first for p in range(first, len(axes)) if axes[p] not in v.axes]
        return self.em.one("Unsqueeze", [v.name, self.em.ints(missing, "axes")])

    def _iota(self, d: IterDef) -> _Val:
        """An iterator used as a number: its values along its own axis.

        Iterators with the same range share one tensor (only the label differs).
        """
        return _Val(self._range(d, self.compute), (d.name,))

    def _range(self, d: IterDef, dtype: str) -> str:
        """The values of ``d``'s range as a 1-D ``dtype`` tensor, one per range."""
        key = (d.start, d.extent, dtype)
        if key not in self._iotas:
            if isinstance(d.extent, int):
                vals = np.arange(d.start, d.start + d.extent).astype(DTYPES[dtype])
                self._iotas[key] = self.em.const(vals, d.name)
            else:
                # symbolic extents start at 0
                r = self.em.one("Range", [self._int(0), self._int_dim(d.extent), self._int(1)])
                self._iotas[key] = r if dtype == "i64" else self.em.one("Cast", [r], to=_ONNX_DTYPE[dtype])
        return self._iotas[key]

    # -- accesses -----------------------------------------------------------

    def _access(self, a: Access, frame: _Frame) -> _Val:
        """``a`` in frame order, with the pad value where it reads out of bounds."""
        r = self._read(a, frame)
        name, ordered = r.name, frame.order(r.axes)
        if r.axes != ordered:
            name = self.em.one("Transpose", [name], perm=[r.axes.index(x) for x in ordered])
        if r.mask is None:
            return _Val(name, ordered)
        if isinstance(r.mask, _Val):
            m = self._align(r.mask, ordered)
        else:
            # The mask table varies along ``mask_axes`` only; shaped against
            # ``ordered`` here, it broadcasts without an Unsqueeze.
            layout = [r.mask.shape[r.mask_axes.index(x)] if x in r.mask_axes else 1 for x in ordered]
            m = self.em.const(r.mask.reshape(layout), "in_bounds")
        return _Val(self.em.one("Where", [m, name, self._k(a.pad)]), ordered)

    def _read(self, a: Access, frame: _Frame) -> _Read:
        key = (frame, a)
        if key not in self._reads:
            self._reads[key] = self._build_read(a, frame)
        return self._reads[key]

    def _build_read(self, a: Access, frame: _Frame) -> _Read:
        """Plain-iterator axes are kept as they are, size-1 broadcast axes
        squeezed, and every other axis read through :meth:`_gather`."""
        name, shape, dtype = self._source(a)
        if len(a.indices) != len(shape):
            raise self.em.refuse(f"an access has {len(a.indices)} indices into a rank-{len(shape)} tensor")
        for e in a.indices:
            for it in free_iters(e):
                if it not in frame.pos:
                    raise self.em.refuse(f"iterator {it!r} in {print_expr(a)} is not bound by its scope")
        if any(d == 0 for d in shape):
            return _Read(self._k(a.pad), ())  # nothing to read: every read is out of bounds
        if dtype != self.compute:
            # Cast first: Squeeze and friends do not take every dtype (bool).
            name = self.em.one("Cast", [name], to=_ONNX_DTYPE[self.compute])
        uses = Counter(it for e in a.indices for it in free_iters(e))
        labels: list[str | None] = []  # per source axis: its iterator, or None to drop it
        cplx: list[int] = []
        for k, (e, d) in enumerate(zip(a.indices, shape)):
            if isinstance(e, Iter) and uses[e.name] == 1 and frame.get(e.name).start == 0 \
                    and frame.get(e.name).extent == d:
                labels.append(e.name)  # plain: the whole axis, in order
            elif isinstance(e, Const) and e.value == 0 and d == 1:
                labels.append(None)  # a broadcast read of a size-1 axis
            else:
                labels.append(None)
                cplx.append(k)
        if cplx:
            return self._gather(a, name, shape, labels, cplx, frame)
        drop = [k for k, lab in enumerate(labels) if lab is None]
        if drop:
            name = self.em.one("Squeeze", [name, self.em.ints(drop, "axes")])
        return _Read(name, tuple(lab for lab in labels if lab is not None))

    def _source(self, a: Access) -> tuple[str, tuple[Dim, ...], str]:
        """(ONNX name, shape, dtype) of what ``a`` reads."""
        if isinstance(a.source, Scope):
            if free_iters(a.source):
                its = ", ".join(sorted(free_iters(a.source)))
                raise self.em.refuse(f"a nested scope reads the enclosing iterator(s) {its}; "
                                     "only closed nested scopes (a tensor of their own) are exported")
            return self.tensor(a.source), a.source.shape, self.compute
        t = self.tensors[a.source]
        return a.source, t.shape, t.dtype

    def _gather(self, a: Access, name: str, shape: Sequence[Dim], labels: list[str | None],
                cplx: list[int], frame: _Frame) -> _Read:
        """Read the non-plain axes ``cplx`` through one Gather on the merged axes.

        The index tensor is indexed by the iterators those indices use (``U``,
        frame order) and holds the flat offset into the merged ``cplx`` axes,
        clipped into bounds; the mask says where the pad value applies
        instead. With static sizes both are constant tables (computed here);
        with symbolic ones they are computed at run time.
        """
        used = frame.order(it for k in cplx for it in free_iters(a.indices[k]))
        static = all(isinstance(shape[k], int) for k in cplx) and \
            all(isinstance(frame.get(it).extent, int) for it in used)
        index, mask = (self._static_index(a, shape, cplx, used, frame) if static
                       else self._dynamic_index(a, shape, cplx, used, frame))
        em = self.em
        # Drop broadcast size-1 axes first, then bring the computed axes last and merge them.
        drop = [k for k, lab in enumerate(labels) if lab is None and k not in cplx]
        if drop:
            name = em.one("Squeeze", [name, em.ints(drop, "axes")])
        keep = [k for k in range(len(shape)) if k not in drop]
        lead = [k for k in keep if k not in cplx]
        if len(cplx) == 1:
            axis = keep.index(cplx[0])
            axes = [labels[k] for k in keep[:axis]] + list(used) + [labels[k] for k in keep[axis + 1:]]
        else:
            perm = [keep.index(k) for k in lead + cplx]
            if perm != sorted(perm):
                name = em.one("Transpose", [name], perm=perm)
            # Reshape's 0 copies the (possibly symbolic) leading dims in place; -1 is the merged size.
            name = em.one("Reshape", [name, em.ints([0] * len(lead) + [-1], "merged")])
            axis = len(lead)
            axes = [labels[k] for k in lead] + list(used)
        name = em.one("Gather", [name, index], axis=axis)
        return _Read(name, tuple(x for x in axes if x is not None), mask, used)

    def _static_index(self, a: Access, shape: Sequence[Dim], cplx: list[int], used: tuple[str, ...],
                      frame: _Frame) -> tuple[str, np.ndarray | None]:
        """The index table as a constant, and the mask (None when all reads are in bounds)."""
        ext = [int(frame.get(it).extent) for it in used]
        grids = {it: np.arange(frame.get(it).start, frame.get(it).start + n).reshape(
            [n if j == p else 1 for j in range(len(used))]) for p, (it, n) in enumerate(zip(used, ext))}
        flat = np.zeros(ext, np.int64)
        inside = np.ones(ext, bool)
        for k in cplx:
            d = int(shape[k])
            ix = np.broadcast_to(self._index(a.indices[k], grids), ext)
            inside &= (ix >= 0) & (ix < d)
            flat = flat * d + np.clip(ix, 0, d - 1)
        return self.em.const(flat, "index"), None if inside.all() else inside

    def _dynamic_index(self, a: Access, shape: Sequence[Dim], cplx: list[int], used: tuple[str, ...],
                       frame: _Frame) -> tuple[str, _Val]:
        """The index tensor and mask computed at run time, in int64 ONNX ops."""
        flat: _Val | None = None
        inside: _Val | None = None
        zero = _Val(self._int(0), ())
        for k in cplx:
            ix = self._index_val(a.indices[k], frame)
            d = _Val(self._int_dim(shape[k]), ())
            last = _Val(self.em.one("Sub", [d.name, self._int(1)]), ())
            ok = self._map("And", [self._map("GreaterOrEqual", [ix, zero], frame),
                                   self._map("Less", [ix, d], frame)], frame)
            inside = ok if inside is None else self._map("And", [inside, ok], frame)
            clipped = self._map("Clip", [ix, zero, last], frame)
            flat = clipped if flat is None else self._map("Add", [self._map("Mul", [flat, d], frame), clipped], frame)
        assert flat is not None and inside is not None
        # Gather's index must span every iterator of ``U`` (its axes become the result's).
        full = self._fill(flat, tuple(frame.get(it) for it in used))
        return full, inside

    def _index_val(self, e: Expr, frame: _Frame) -> _Val:
        """An index expression as an int64 run-time value (Python ``//`` and ``%``)."""
        if isinstance(e, Const) and float(e.value).is_integer():
            return _Val(self._int(int(e.value)), ())
        if isinstance(e, Iter):
            return _Val(self._range(frame.get(e.name), "i64"), (e.name,))
        if isinstance(e, BinOp) and e.op in ("+", "-", "*"):
            a, b = self._index_val(e.lhs, frame), self._index_val(e.rhs, frame)
            return self._map(_ARITH[e.op], [a, b], frame)
        if isinstance(e, BinOp) and e.op in ("//", "%"):
            a, b = self._index_val(e.lhs, frame), self._index_val(e.rhs, frame)
            # Integer Mod with fmod=0 takes the divisor's sign, as Python does;
            # a - a mod b is then an exact multiple of b, so Div cannot truncate.
            rem = self._map("Mod", [a, b], frame)
            if e.op == "%":
                return rem
            return self._map("Div", [self._map("Sub", [a, rem], frame), b], frame)
        raise self.em.refuse(f"index {print_expr(e)} is not affine in the iterators")

    def _int_dim(self, d: Dim) -> str:
        """A dim as an int64 scalar tensor (one per symbol)."""
        if isinstance(d, int):
            return self._int(d)
        key = f"scalar:{d}"
        if key not in self._dims:
            self._dims[key] = self.em.one("Squeeze", [self._dim(d)])
        return self._dims[key]

    def _index(self, e: Expr, grids: Mapping[str, np.ndarray]) -> np.ndarray | int:
        """An index expression over the iterator grids (Python ``//`` and ``%``, as the interpreter)."""
        if isinstance(e, Const) and float(e.value).is_integer():
            return int(e.value)
        if isinstance(e, Iter):
            return grids[e.name]
        if isinstance(e, BinOp) and e.op in ("+", "-", "*", "//", "%"):
            lhs, rhs = self._index(e.lhs, grids), self._index(e.rhs, grids)
            ops: Mapping[str, Callable] = {"+": np.add, "-": np.subtract, "*": np.multiply,
                                           "//": np.floor_divide, "%": np.mod}
            return ops[e.op](lhs, rhs)
        raise self.em.refuse(f"index {print_expr(e)} is not affine in the iterators")

    # -- constants and shapes -------------------------------------------------

    def _int(self, v: int) -> str:
        """An int64 scalar (one per distinct value)."""
        if v not in self._int_consts:
            self._int_consts[v] = self.em.const(np.asarray(v, np.int64), "i")
        return self._int_consts[v]

    def _k(self, v: float) -> str:
        """A scalar in the compute dtype (one per distinct value)."""
        key = (self.compute, repr(float(v)))
        if key not in self._consts:
            self._consts[key] = self.em.scalar(v, self.compute, "c")
        return self._consts[key]

    def _dim(self, symbol: str) -> str:
        """A 1-D int64 tensor holding the run-time size of ``symbol``."""
        if symbol not in self._dims:
            src, axis = self.dim_of(symbol)
            self._dims[symbol] = self.em.one("Shape", [src], start=axis, end=axis + 1)
        return self._dims[symbol]

    def _shape(self, dims: Sequence[Dim]) -> str:
        """A 1-D int64 shape tensor (Concat of static runs and run-time symbols)."""
        if all(isinstance(d, int) for d in dims):
            return self.em.ints([int(d) for d in dims], "shape")
        parts: list[str] = []
        run: list[int] = []
        for d in dims:
            if isinstance(d, int):
                run.append(d)
                continue
            if run:
                parts.append(self.em.ints(run, "dims"))
                run = []
            parts.append(self._dim(d))
        if run:
            parts.append(self.em.ints(run, "dims"))
        return self.em.one("Concat", parts, axis=0)


def _symbol_carriers(graph: Graph, node: Node, types: Mapping[str, TensorType]) -> dict[str, tuple[str, int]]:
    """symbol -> (tensor, axis) of that size: the node's inputs first, then the graph's."""
    out: dict[str, tuple[str, int]] = {}
    for name in list(node.inputs) + [v.name for v in graph.inputs]:
        for axis, d in enumerate(types[name].shape):
            if isinstance(d, str):
                out.setdefault(d, (name, axis))
    return out


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _compile_expr(node: Node, em: _Emitter, carriers: Mapping[str, tuple[str, int]]) -> list[str]:
    """Emit ``node``'s scope computing its output tensor; returns the tensors it reads
    (its inputs, plus any graph input it needs for a symbolic size)."""
    assert node.expr is not None
    out = node.outputs[0]
    compute = _compute_dtype(out.type)
    read: list[str] = list(node.inputs)

    def dim_of(symbol: str) -> tuple[str, int]:
        if symbol not in carriers:
            raise em.refuse(f"no input carries symbolic dim {symbol!r}, which the expression needs at run time")
        src, axis = carriers[symbol]
        if src not in read:
            read.append(src)  # a function needs it as an extra input
        return src, axis

    sc = _ScopeCompiler(em, em.types, compute, dim_of)
    value = sc.tensor(node.expr)
    if compute != out.type.dtype:
        value = em.one("Cast", [value], to=_ONNX_DTYPE[out.type.dtype])
    _rename_result(em, value, out.name)
    return read


def _rename_result(em: _Emitter, value: str, target: str) -> None:
    """Make ``target`` the name of ``value``: rename the producing node's output
    (and every use) when it is ours, else an Identity (a body that only reads an input)."""
    if value in em.types or not any(value in n.output for n in em.sink.nodes):
        em.one("Identity", [value], target)
        return
    for n in em.sink.nodes:
        for k, o in enumerate(n.output):
            if o == value:
                n.output[k] = target
                n.name = em.node_names.fresh(target)  # it is the node computing the tensor now
        for k, i in enumerate(n.input):
            if i == value:
                n.input[k] = target


def _emit_expr(node: Node, em: _Emitter, graph: Graph, local_functions: bool,
               functions: list[FunctionProto], fn_names: _Names, kind: str = "expr") -> None:
    """Emit an ``expr`` node, as a local function ``<kind>_<output>`` or inline.

    ``kind`` names what the scope came from: ``expr``, or a registry op
    lowered through its Expr definition (the function is then ``cumprod_y``).
    """
    assert node.expr is not None
    carriers = _symbol_carriers(graph, node, em.types)
    doc = f"{node.label}: {print_expr(node.expr)}"
    if not local_functions:
        _compile_expr(node, em, carriers)
        return
    body = _Sink(in_function=True)
    inner = _Emitter(body, _Names(em.types), _Names(), node.outputs[0].name, em.where, em.opset, em.types)
    read = _compile_expr(node, inner, carriers)
    fname = fn_names.fresh(f"{kind}_{_sanitize(node.outputs[0].name)}")
    fn = helper.make_function(DOMAIN, fname, read, [node.outputs[0].name], body.nodes,
                              [helper.make_opsetid("", em.opset)])
    fn.doc_string = doc
    functions.append(fn)
    em.node(fname, read, [node.outputs[0].name], domain=DOMAIN, doc=doc)


# ----------------------------------------------------------------------------
# The model


def _value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    # Symbolic dims keep their names: ONNX reads equal dim_params as equal sizes.
    return helper.make_tensor_value_info(name, _ONNX_DTYPE[t.dtype], list(t.shape))


def _check_opset(opset: int) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError(f"cannot export to ONNX opset {opset!r}: tensoropt exports opsets "
                               f"{MIN_OPSET} to {MAX_OPSET} (the newest this onnx {onnx.__version__} knows)")


def _initializers(graph: Graph) -> list[TensorProto]:
    out = []
    for c in graph.constants:
        if c.name not in graph.weights:
            raise UnsupportedError(f"graph {graph.name}: constant %{c.name} has no data "
                                   "(load the graph with its .npz weights to export it)")
        out.append(numpy_helper.from_array(np.array(graph.weights[c.name], order="C"), c.name))
    return out


def to_onnx(graph: Graph, *, opset: int = 18, local_functions: bool = True) -> ModelProto:
    """``graph`` as a checked ONNX model at ``opset`` (see the module docstring).

    ``local_functions=False`` inlines ``expr`` nodes into the main graph, for
    consumers that do not support ONNX local functions.

    Raises :class:`VerifyError` for a graph that does not verify,
    :class:`UnsupportedError` naming the node (and why) for anything ONNX
    cannot express at ``opset``, and :class:`TensoroptError` if the model
    fails the ONNX checker.
    """
    from tensoropt.ir.verify import verify

    _check_opset(opset)
    verify(graph, REGISTRY)
    weight_bytes = sum(int(a.nbytes) for a in graph.weights.values())
    if weight_bytes >= _PROTO_LIMIT:
        raise UnsupportedError(f"graph {graph.name} has {weight_bytes / 2**30:.1f} GiB of weights; "
                               "ONNX models over 2 GiB need external data, which is not supported yet")
    types = MappingProxyType({k: v.type for k, v in graph.values().items()})
    values, node_names, fn_names = _Names(types), _Names(), _Names()
    sink = _Sink(in_function=False, initializers=_initializers(graph))
    functions: list[FunctionProto] = []
    for node in graph.nodes:
        em = _Emitter(sink, values, node_names, node.outputs[0].name, graph.where(node), opset, types)
        if node.op == "expr":
            _emit_expr(node, em, graph, local_functions, functions, fn_names)
            continue
        rule = RULES.get(node.op)
        if rule is None:
            raise em.refuse(f"op {node.op!r} has no ONNX export rule")

        def lower(scope: Scope, node: Node = node, em: _Emitter = em) -> None:
            lowered = Node("expr", tensor_names(scope), node.outputs, Attrs(), scope)
            _emit_expr(lowered, em, graph, local_functions, functions, fn_names, kind=node.op)

        rule(_OpCtx(node, REGISTRY[node.op].with_defaults(node.attrs), em, lower))
    outputs = set(graph.outputs)
    g = helper.make_graph(
        sink.nodes, graph.name,
        [_value_info(v.name, v.type) for v in graph.inputs],
        # A tensor returned twice is listed twice: the checker and onnxruntime accept that.
        [_value_info(v.name, v.type) for v in graph.output_values],
        initializer=sink.initializers,
        value_info=[_value_info(v.name, v.type) for n in graph.nodes for v in n.outputs
                    if v.name not in outputs],
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(DOMAIN, 1)] if functions else [])
    model = helper.make_model(g, opset_imports=opsets, functions=functions,
                              producer_name="tensoropt", producer_version=_version())
    # The lowest IR version that holds this opset (and local functions, from
    # IR 8): newer runtimes read old IR versions, not the other way round.
    model.ir_version = max(8, helper.find_min_ir_version_for(list(model.opset_import), True))
    _check(model, graph.name, opset)
    return model


def _version() -> str:
    from tensoropt import __version__

    return __version__


def _check(model: ModelProto, graph_name: str, opset: int) -> None:
    """Run the full ONNX checker; its failures become one-line TensoroptErrors."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises ValidationError, InferenceError, ValueError, RuntimeError
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise TensoroptError(f"graph {graph_name}: the exported ONNX model (opset {opset}) fails "
                             f"onnx.checker: {lines[0] if lines else type(e).__name__}") from e


def save_onnx(graph: Graph, path: str | os.PathLike[str], *, opset: int = 18,
              local_functions: bool = True) -> None:
    """Export ``graph`` (:func:`to_onnx`) and write it to ``path`` atomically.

    The model is built and checked before the file is touched, and written
    through a temporary file renamed into place: on any failure ``path`` is
    left as it was (absent if it was absent). Raises what :func:`to_onnx`
    raises, or OSError (naming the path) when it cannot be written.
    """
    model = to_onnx(graph, opset=opset, local_functions=local_functions)
    data = model.SerializeToString()
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
