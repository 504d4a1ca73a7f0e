"""ATen rules for aliases, dtype changes, elementwise math, comparisons and logic.

Each rule maps one ATen op (or a family) onto registry ops, or onto an
``expr`` node when the registry lacks the function and an Expr body says the
same thing (``sign``, ``trunc``, ``log1p``, ``floor`` division, ...).

Invariants: operands are cast to the dtype torch gives the result before
the op (torch computes ``exp`` of an int tensor in float, compares in the
operands' promoted dtype); arithmetic on :class:`~.torch_values.Affine`
tensors with a Python int stays affine.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import sympy
import torch

from tensoropt.ir.expr import Expr, call
from tensoropt.ir.types import INT_DTYPES
from tensoropt.ops.common import pointwise
from tensoropt.ops.shapes import broadcast

from .torch_context import Ctx, Rule, rule
from .torch_values import DTYPES, TORCH_DTYPES, Affine

# -- aliases and dtype changes --------------------------------------------------------------


@rule("aten.clone", "aten.alias", "aten.lift_fresh_copy", "aten.detach", "aten._unsafe_view.default",
      "aten.contiguous")
def _alias(cx: Ctx, a: dict[str, Any]) -> Any:
    # Copies are values in an SSA graph: the FX node simply names the same tensor.
    return cx.value(a["self"])


@rule("getitem")
def _getitem(cx: Ctx, a: dict[str, Any]) -> Any:
    return cx.value(a["arg0"])[a["arg1"]]


@rule("aten._to_copy.default")
def _to_copy(cx: Ctx, a: dict[str, Any]) -> Any:
    to = cx.out_type().dtype
    v = cx.value(a["self"])
    if isinstance(v, Affine) and to != "bool" and isinstance(v.offset, int):
        return Affine(v.shape, to, v.offset, v.coefs)
    return cx.tensor(a["self"], to)


# -- elementwise -------------------------------------------------------------------------------

#: ATen packet -> registry unary op; the input is cast to the output dtype first
#: (torch computes ``exp`` of an int tensor in float).
_UNARY = {
    "aten.relu": "relu", "aten.sigmoid": "sigmoid", "aten.tanh": "tanh", "aten.exp": "exp",
    "aten.log": "log", "aten.sqrt": "sqrt", "aten.rsqrt": "rsqrt", "aten.neg": "neg",
    "aten.abs": "abs", "aten.erf": "erf", "aten.reciprocal": "reciprocal",
    "aten.sin": "sin", "aten.cos": "cos", "aten.tan": "tan", "aten.sinh": "sinh", "aten.cosh": "cosh",
    "aten.asin": "arcsin", "aten.acos": "arccos", "aten.atan": "arctan",
    "aten.asinh": "arcsinh", "aten.acosh": "arccosh", "aten.atanh": "arctanh",
    "aten.floor": "floor", "aten.ceil": "ceil",
    "aten.round.default": "round",  # half to even, as torch; not round.decimals
}


def _unary(op: str) -> Rule:
    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        return cx.op(op, cx.tensor(a["self"], cx.out_type().dtype))

    return convert


for _packet, _op in _UNARY.items():
    rule(_packet)(_unary(_op))

def _trunc(x: Expr) -> Expr:
    return call("sign", x) * call("floor", call("abs", x))


#: ATen packet -> Expr body for elementwise functions the registry lacks.
_EXPR_UNARY: dict[str, Callable[[Expr], Expr]] = {
    "aten.sign": lambda x: call("sign", x),
    "aten.trunc": _trunc,
    # log1p/expm1 lose the extra precision near 0 that the fused functions have.
    "aten.log1p": lambda x: call("log", x + 1.0),
    "aten.expm1": lambda x: call("exp", x) - 1.0,
    "aten.log2": lambda x: call("log", x) * (1.0 / math.log(2.0)),
    "aten.log10": lambda x: call("log", x) * (1.0 / math.log(10.0)),
}


def _expr_map(cx: Ctx, body: Callable[..., Expr], args: Sequence[Any], dtype: str) -> str:
    """An ``expr`` node applying ``body`` elementwise (with broadcasting) to ``args``.

    The inputs are cast to ``dtype`` first, as torch computes in the result dtype.
    """
    names = [cx.tensor(x, dtype) for x in args]
    ts = [cx.b.type_of(n) for n in names]
    out = broadcast([t.shape for t in ts])
    return cx.expr(pointwise(names, ts, out, body), dtype)


def _expr_unary(body: Callable[[Expr], Expr]) -> Rule:
    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        return _expr_map(cx, body, [a["self"]], cx.out_type().dtype)

    return convert


for _packet, _body in _EXPR_UNARY.items():
    rule(_packet)(_expr_unary(_body))


@rule("aten.gelu.default")
def _gelu(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("gelu", cx.tensor(a["self"]), approximate=a["approximate"])


@rule("aten.leaky_relu.default")
def _leaky_relu(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("leaky_relu", cx.tensor(a["self"]), alpha=cx.float_arg(a["negative_slope"]))


@rule("aten.elu.default")
def _elu(cx: Ctx, a: dict[str, Any]) -> str:
    alpha, scale, in_scale = (cx.float_arg(a[k]) for k in ("alpha", "scale", "input_scale"))
    # scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))
    return _expr_map(cx, lambda x: call("where", call("gt", x, 0.0), x * scale,
                                        (call("exp", x * in_scale) - 1.0) * (alpha * scale)),
                     [a["self"]], cx.out_type().dtype)


@rule("aten.hardtanh.default")
def _hardtanh(cx: Ctx, a: dict[str, Any]) -> str:
    return cx.op("clip", cx.tensor(a["self"]), min=cx.float_arg(a["min_val"]),
                 max=cx.float_arg(a["max_val"]))


@rule("aten.clamp.default")
def _clamp(cx: Ctx, a: dict[str, Any]) -> str:
    lo, hi = cx.scalar(a["min"]), cx.scalar(a["max"])
    x = cx.tensor(a["self"], cx.out_type().dtype)
    return cx.op("clip", x, min=-math.inf if lo is None else float(lo),
                 max=math.inf if hi is None else float(hi))


@rule("aten.clamp.Tensor")
def _clamp_tensor(cx: Ctx, a: dict[str, Any]) -> str:
    dt = cx.out_type().dtype
    x = cx.tensor(a["self"], dt)
    if a["min"] is not None:
        x = cx.op("max", x, cx.tensor(a["min"], dt), name=cx.sub("lo") if a["max"] is not None else None)
    if a["max"] is not None:
        x = cx.op("min", x, cx.tensor(a["max"], dt))
    return x


def _promote(cx: Ctx, x: Any, y: Any) -> str:
    """torch's result dtype of a binary op on ``x`` and ``y`` (tensors or numbers)."""

    def rep(v: Any) -> Any:
        if cx.is_tensor(v):
            t = cx.type_of(v)
            return torch.empty((0,) if t.rank else (), dtype=TORCH_DTYPES[t.dtype])
        value = cx.value(v)
        return 0 if isinstance(value, sympy.Expr) else value  # a symbolic size is an int

    return DTYPES[torch.result_type(rep(x), rep(y))]


#: arithmetic with bool operands, as torch defines it (add is or, mul is and).
_BOOL_ARITH = {"add": "max", "mul": "min", "max": "max", "min": "min"}


def _affine_arith(cx: Ctx, op: str, x: Any, y: Any, alpha: Any) -> Affine | None:
    """``affine op int`` stays affine (arange + 1, 2 * arange)."""
    v, c = cx.value(x), cx.value(y)
    if not isinstance(v, Affine) or alpha != 1:
        return None
    if isinstance(c, bool) or not isinstance(c, int) or v.dtype not in ("i64", "i32"):
        return None
    return {"add": lambda: v.scale_shift(1, c), "sub": lambda: v.scale_shift(1, -c),
            "mul": lambda: v.scale_shift(c, 0)}.get(op, lambda: None)()


def _arith(op: str) -> Rule:
    def convert(cx: Ctx, a: dict[str, Any]) -> Any:
        x, y = a["self"], a["other"]
        alpha = cx.scalar(a.get("alpha", 1))
        affine = _affine_arith(cx, op, x, y, alpha)
        if affine is not None:
            return affine
        dt = cx.out_type().dtype
        if dt == "bool":
            if op not in _BOOL_ARITH:
                raise cx.unsupported(f"{op} of bool tensors")
            return cx.op(_BOOL_ARITH[op], cx.tensor(x, dt), cx.tensor(y, dt))
        ys = cx.tensor(y, dt)
        if alpha not in (None, 1):
            ys = cx.op("mul", ys, cx.scalar_const(alpha, dt), name=cx.sub("alpha"))
        return cx.op(op, cx.tensor(x, dt), ys)

    return convert


for _name in ("add", "sub", "mul"):
    rule(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar")(_arith(_name))
rule("aten.maximum.default")(_arith("max"))
rule("aten.minimum.default")(_arith("min"))


def _binary(cx: Ctx, op: str, a: dict[str, Any], other: str = "other") -> str:
    """Registry ``op`` on ``self`` and ``other``, both cast to the result dtype first."""
    dt = cx.out_type().dtype
    return cx.op(op, cx.tensor(a["self"], dt), cx.tensor(a[other], dt))


@rule("aten.div.Tensor", "aten.div.Scalar")
def _div(cx: Ctx, a: dict[str, Any]) -> str:
    # True division: integer operands are converted to the float result first.
    return _binary(cx, "div", a)


@rule("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div_mode(cx: Ctx, a: dict[str, Any]) -> str:
    mode, dt = a["rounding_mode"], cx.out_type().dtype
    if mode is None or (mode == "trunc" and dt in INT_DTYPES):
        return _div(cx, a)  # the registry's div truncates ints
    if mode == "trunc":
        return _expr_map(cx, lambda x, y: _trunc(x / y), [a["self"], a["other"]], dt)
    # floor: exact in the body's float64 for integers below 2**53
    return _expr_map(cx, lambda x, y: call("floor", x / y), [a["self"], a["other"]], dt)


@rule("aten.remainder.Tensor", "aten.remainder.Scalar")
def _remainder(cx: Ctx, a: dict[str, Any]) -> str:
    return _binary(cx, "mod", a)  # Python's modulo: the result takes the divisor's sign


@rule("aten.fmod.Tensor", "aten.fmod.Scalar")
def _fmod(cx: Ctx, a: dict[str, Any]) -> str:
    return _binary(cx, "fmod", a)  # C's fmod: the result takes the dividend's sign


@rule("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def _pow(cx: Ctx, a: dict[str, Any]) -> str:
    return _binary(cx, "pow", a, other="exponent")


@rule("aten.where.self")
def _where(cx: Ctx, a: dict[str, Any]) -> str:
    dt = cx.out_type().dtype
    return cx.op("where", cx.tensor(a["condition"], "bool"), cx.tensor(a["self"], dt),
                 cx.tensor(a["other"], dt))


# -- comparisons and logic --------------------------------------------------------------------


def _not(cx: Ctx, x: str) -> str:
    return cx.op("equal", x, cx.scalar_const(False, "bool"))


def _not_equal(cx: Ctx, x: str, y: str) -> str:
    return _not(cx, cx.op("equal", x, y, name=cx.sub("eq")))


def _compare(kind: str) -> Rule:
    """eq/ne/lt/gt/le/ge in the operands' promoted dtype.

    ``le`` is ``less or equal`` (not ``not greater``) so that NaN compares
    false, as in torch; ``ne`` is ``not equal`` so that NaN != NaN.
    """

    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        dt = _promote(cx, a["self"], a["other"])
        x, y = cx.tensor(a["self"], dt), cx.tensor(a["other"], dt)
        if kind in ("eq", "lt", "gt"):
            return cx.op({"eq": "equal", "lt": "less", "gt": "greater"}[kind], x, y)
        if kind == "ne":
            return _not_equal(cx, x, y)
        strict = cx.op("less" if kind == "le" else "greater", x, y, name=cx.sub(kind[0] + "t"))
        return cx.op("max", strict, cx.op("equal", x, y, name=cx.sub("eq")))

    return convert


for _kind in ("eq", "ne", "lt", "gt", "le", "ge"):
    rule(f"aten.{_kind}.Tensor", f"aten.{_kind}.Scalar")(_compare(_kind))


def _negate(bitwise: bool) -> Rule:
    """logical_not (nonzero is true), or bitwise_not of bools."""

    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        if bitwise and cx.out_type().dtype != "bool":
            raise cx.unsupported("bitwise_not of integers")
        return _not(cx, cx.tensor(a["self"], "bool"))

    return convert


rule("aten.logical_not.default")(_negate(False))
rule("aten.bitwise_not.default")(_negate(True))


def _logic(op: str, bitwise: str | None) -> Rule:
    """and/or/xor of truth values (nonzero is true): min/max/not-equal on bool.

    ``bitwise`` names the registry op for integer operands.
    """

    def convert(cx: Ctx, a: dict[str, Any]) -> str:
        dt = cx.out_type().dtype
        if bitwise and dt != "bool":
            return cx.op(bitwise, cx.tensor(a["self"], dt), cx.tensor(a["other"], dt))
        x, y = cx.tensor(a["self"], "bool"), cx.tensor(a["other"], "bool")
        if op == "xor":
            return _not_equal(cx, x, y)
        return cx.op(op, x, y)

    return convert


rule("aten.logical_and.default")(_logic("min", None))
rule("aten.logical_or.default")(_logic("max", None))
rule("aten.logical_xor.default")(_logic("xor", None))
rule("aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar")(_logic("min", "bitwise_and"))
rule("aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar")(_logic("max", "bitwise_or"))
rule("aten.bitwise_xor.Tensor", "aten.bitwise_xor.Scalar")(_logic("xor", "bitwise_xor"))
