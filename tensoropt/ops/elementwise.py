"""Elementwise ops: unary maps, broadcasting binary ops, comparisons, ``where``.

Every op here is a map over the (broadcast) output shape, so its Expr is one
scope ``L[out] { f(reads) }`` and its category is ``elementwise`` (fusable);
the bitwise and/or/xor sum over the bits of their dtype, ``L[out] Sum[b] {...}``,
and are ``compute``. Integer bodies compute in float64 (the interpreter's
rule), so they are exact for values below 2**53 in magnitude.
Cost: one flop per output element (``gelu``/``sigmoid`` are counted as one
too: costs rank candidates, they do not model transcendental throughput).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import special

from ..errors import EvalError, ShapeError
from ..ir.expr import Expr, Iter, IterDef, Scope, call
from ..ir.graph import Attrs
from ..ir.types import INT_DTYPES, UNSIGNED_DTYPES, TensorType
from .common import choice, need_float, need_numeric, need_signed, per_output_cost, pointwise
from .common import same_dtype
from .common import afloat
from .registry import AttrSpec, OpRules, register
from .shapes import broadcast

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# -- input dtype classes --------------------------------------------------------


def _need_int_dtype(ts: Sequence[TensorType], i: int, op: str) -> None:
    if ts[i].dtype not in INT_DTYPES:
        raise ShapeError(f"input {i} has dtype {ts[i].dtype}; {op} needs an integer dtype "
                         f"({', '.join(sorted(INT_DTYPES))})")


def _any_dtype(ts: Sequence[TensorType], i: int, op: str) -> None:
    return None


#: what an op accepts as input 0 -> the check infer runs. ``signed``: ``-x`` of
#: an unsigned input would wrap around (256 - x for u8, 2**width - x for any).
InputCheck = Callable[[Sequence[TensorType], int, str], None]
_ACCEPTS: dict[str, InputCheck] = {
    "float": lambda ts, i, op: need_float(ts, i),
    "numeric": need_numeric,
    "signed": need_signed,
    "int": _need_int_dtype,
    "any": _any_dtype,
}


# -- unary ---------------------------------------------------------------------

NpUnary = Callable[[np.ndarray, Attrs], np.ndarray]
ExprUnary = Callable[[Expr, Attrs], Expr]


def _gelu_np(x: np.ndarray, a: Attrs) -> np.ndarray:
    if a["approximate"] == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + special.erf(x * _INV_SQRT2))


def _gelu_expr(x: Expr, a: Attrs) -> Expr:
    if a["approximate"] == "tanh":
        inner = (x + x * x * x * 0.044715) * _SQRT_2_OVER_PI
        return x * 0.5 * (call("tanh", inner) + 1.0)
    return x * 0.5 * (call("erf", x * _INV_SQRT2) + 1.0)


def _check_gelu(a: Attrs) -> None:
    choice(a, "approximate", ("none", "tanh"))


@dataclass(frozen=True)
class Unary:
    """One unary map: NumPy rule, Expr body, accepted inputs (a key of ``_ACCEPTS``)."""

    np_fn: NpUnary
    body: ExprUnary
    accepts: str
    doc: str
    attrs: tuple[AttrSpec, ...] = ()


def _math(np_fn: Callable[[np.ndarray], np.ndarray], fn: str, doc: str) -> Unary:
    """A float-only map that is one Expr function (sin, floor, ...)."""
    return Unary(lambda x, a: np_fn(x), lambda x, a: call(fn, x), "float", doc)


UNARY: dict[str, Unary] = {
    "relu": Unary(lambda x, a: np.maximum(x, 0), lambda x, a: call("relu", x), "numeric",
                  "max(x, 0)"),
    "leaky_relu": Unary(lambda x, a: np.where(x >= 0, x, x * afloat(a, "alpha")),
                        lambda x, a: call("max", x, 0.0) + call("min", x, 0.0) * afloat(a, "alpha"),
                        "float", "x for x >= 0, alpha * x otherwise",
                        (AttrSpec("alpha", "float", 0.01, "slope for x < 0"),)),
    "sigmoid": _math(special.expit, "sigmoid", "1 / (1 + exp(-x))"),
    "tanh": _math(np.tanh, "tanh", "tanh(x)"),
    "exp": _math(np.exp, "exp", "e ** x"),
    "log": _math(np.log, "log", "natural log"),
    "sqrt": _math(np.sqrt, "sqrt", "square root"),
    "rsqrt": Unary(lambda x, a: 1.0 / np.sqrt(x), lambda x, a: call("rsqrt", x), "float",
                   "1 / sqrt(x)"),
    "neg": Unary(lambda x, a: np.negative(x), lambda x, a: call("neg", x), "signed", "-x"),
    "abs": Unary(lambda x, a: np.abs(x), lambda x, a: call("abs", x), "numeric", "|x|"),
    "erf": _math(special.erf, "erf", "the Gauss error function"),
    "gelu": Unary(_gelu_np, _gelu_expr, "float", "x * Phi(x), exact (erf) or tanh-approximated",
                  (AttrSpec("approximate", "str", "none", '"none" (erf) or "tanh"'),)),
    "clip": Unary(lambda x, a: np.minimum(np.maximum(x, afloat(a, "min")), afloat(a, "max")),
                  lambda x, a: call("min", call("max", x, afloat(a, "min")), afloat(a, "max")),
                  "numeric", "min(max(x, min), max)",
                  (AttrSpec("min", "float", -math.inf, "lower bound"),
                   AttrSpec("max", "float", math.inf, "upper bound"))),
    "reciprocal": Unary(lambda x, a: 1.0 / x, lambda x, a: call("reciprocal", x), "float", "1 / x"),
    # trigonometric and hyperbolic maps (NaN outside their domains, as IEEE)
    "sin": _math(np.sin, "sin", "sine"),
    "cos": _math(np.cos, "cos", "cosine"),
    "tan": _math(np.tan, "tan", "tangent"),
    "arcsin": _math(np.arcsin, "arcsin", "arcsine (nan outside [-1, 1])"),
    "arccos": _math(np.arccos, "arccos", "arccosine (nan outside [-1, 1])"),
    "arctan": _math(np.arctan, "arctan", "arctangent"),
    "sinh": _math(np.sinh, "sinh", "hyperbolic sine"),
    "cosh": _math(np.cosh, "cosh", "hyperbolic cosine"),
    "arcsinh": _math(np.arcsinh, "arcsinh", "inverse hyperbolic sine"),
    "arccosh": _math(np.arccosh, "arccosh", "inverse hyperbolic cosine (nan below 1)"),
    "arctanh": _math(np.arctanh, "arctanh", "inverse hyperbolic tangent (nan outside [-1, 1])"),
    # rounding (float only, as in ONNX: integers are already whole)
    "floor": _math(np.floor, "floor", "largest integer <= x"),
    "ceil": _math(np.ceil, "ceil", "smallest integer >= x"),
    "round": _math(np.rint, "round", "nearest integer, halves to even"),
}

#: attribute checks beyond kinds, run by infer.
_UNARY_CHECKS: dict[str, Callable[[Attrs], None]] = {"gelu": _check_gelu}


def _register_unary(name: str) -> None:
    u = UNARY[name]
    check = _ACCEPTS[u.accepts]

    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        check(ts, 0, name)
        if name in _UNARY_CHECKS:
            _UNARY_CHECKS[name](a)
        return [ts[0]]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        return [np.asarray(u.np_fn(x, a)).astype(x.dtype, copy=False)]

    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        return pointwise(names, ts, ts[0].shape, lambda r: u.body(r, a))

    register(OpRules(name=name, category="elementwise", inputs=(1, 1), infer=infer, eval=ev,
                     expr=expr, cost=per_output_cost(1), attrs=u.attrs, doc=u.doc))


for _n in UNARY:
    _register_unary(_n)


# -- binary --------------------------------------------------------------------


def _int_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # ONNX integer Div truncates toward zero (C semantics), unlike numpy's //.
    q = np.abs(x) // np.abs(y)
    return np.where((x < 0) != (y < 0), -q, q)


def _no_int_zero(x: np.ndarray, y: np.ndarray) -> None:
    # Floats divide by zero to inf/nan (IEEE); integers have no such value.
    if np.issubdtype(x.dtype, np.integer) and np.broadcast(x, y).size and np.any(y == 0):
        raise EvalError("integer division by zero")


def _div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    _no_int_zero(x, y)
    return _int_div(x, y) if np.issubdtype(x.dtype, np.integer) else x / y


def _div_body(x: Expr, y: Expr, dtype: str) -> Expr:
    if dtype not in INT_DTYPES:
        return x / y
    # Bodies compute in floats; integer Div truncates toward zero.
    q = x / y
    return call("sign", q) * call("floor", call("abs", q))


def _mod(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    _no_int_zero(x, y)
    return np.mod(x, y)


def _fmod(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    _no_int_zero(x, y)
    return np.fmod(x, y)


#: bits an integer dtype holds, and the ones a body can see: bodies compute in
#: float64, exact for |values| < 2**53, so an i64 is read as a 54-bit two's
#: complement number (the same bits, sign-extended, for every such value).
#: Every u8/u16/u32 value is exact in float64. A u64 body is like an i64 one:
#: exact for values below 2**53 (larger ones are rounded when read); it sums
#: over all 64 positions (no sign bit to place), which reads every float64
#: value below 2**64 bit for bit and is exact wherever the values are.
_INT_BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64, "u8": 8, "u16": 16, "u32": 32, "u64": 64}
_BODY_BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 54, "u8": 8, "u16": 16, "u32": 32, "u64": 64}
assert set(_INT_BITS) == set(_BODY_BITS) == INT_DTYPES, "bit tables out of step with INT_DTYPES"
_BIT = Iter("b")  # the bit-position iterator of the bitwise ops' Sum


def _bit(x: Expr, k: Expr) -> Expr:
    """Bit ``k`` (0 or 1) of the two's complement integer ``x`` (exact in floats)."""
    return call("floor", x / call("pow", 2.0, k)) - call("floor", x / call("pow", 2.0, k + 1)) * 2.0


def _bit_weight(dtype: str) -> Expr:
    """The value of bit ``b`` of ``dtype``: 2**b, but -2**(w-1) for a sign bit."""
    w = _BODY_BITS[dtype]
    p = call("pow", 2.0, _BIT)
    return p if dtype in UNSIGNED_DTYPES else p - call("eq", _BIT, float(w - 1)) * float(2 ** w)


def _bitwise(combine: Callable[[Expr, Expr], Expr]) -> Callable[[Expr, Expr, str], Expr]:
    """Body of a bitwise op: ``Sum[b] { combine(bit_b(x), bit_b(y)) * weight_b }``."""
    return lambda x, y, dtype: combine(_bit(x, _BIT), _bit(y, _BIT)) * _bit_weight(dtype)


def _shift_right(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # A shift by < 0 or >= the width fills with the sign (ONNX), where C is undefined.
    w = np.iinfo(x.dtype).bits
    ok = (y >= 0) & (y < w)
    fill = np.where(x < 0, -1, 0).astype(x.dtype)
    return np.where(ok, np.right_shift(x, np.where(ok, y, 0).astype(x.dtype)), fill)


def _shift_left(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Bits shifted past the width are lost (two's complement wrap-around); a
    # shift by < 0 or >= the width gives 0.
    w = np.iinfo(x.dtype).bits
    ok = (y >= 0) & (y < w)
    u = np.dtype(f"u{x.dtype.itemsize}")  # shift the bits unsigned: no signed overflow
    shifted = np.left_shift(x.astype(u), np.where(ok, y, 0).astype(u)).astype(x.dtype)
    return np.where(ok, shifted, np.zeros((), x.dtype))


def _out_of_width(y: Expr, dtype: str) -> Expr:
    """1.0 where a shift by ``y`` is < 0 or >= the width of ``dtype``."""
    return call("max", call("lt", y, 0.0), call("ge", y, float(_INT_BITS[dtype])))


def _shift_right_body(x: Expr, y: Expr, dtype: str) -> Expr:
    # floor(x / 2**y) is the arithmetic shift; by the full width it is the sign fill.
    amount = call("where", _out_of_width(y, dtype), float(_INT_BITS[dtype]), y)
    return call("floor", x / call("pow", 2.0, amount))


def _wrap(v: Expr, dtype: str) -> Expr:
    """``v`` reduced to ``dtype``'s range modulo 2**width (exact for powers of two)."""
    w = float(2 ** _INT_BITS[dtype])
    half = 0.0 if dtype in UNSIGNED_DTYPES else w / 2
    s = v + half
    return s - call("floor", s / w) * w - half


def _shift_left_body(x: Expr, y: Expr, dtype: str) -> Expr:
    shifted = _wrap(x * call("pow", 2.0, y), dtype)
    return call("where", _out_of_width(y, dtype), 0.0, shifted)


@dataclass(frozen=True)
class Binary:
    """One broadcasting binary map.

    ``body(x, y, dtype)`` is the Expr of one element given the input dtype;
    ``bits`` ops sum their body over the bit positions ``b`` of that dtype.
    """

    np_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    body: Callable[[Expr, Expr, str], Expr]
    accepts: str
    doc: str
    to_bool: bool = False
    bits: bool = False


def _plain(body: Callable[[Expr, Expr], Expr]) -> Callable[[Expr, Expr, str], Expr]:
    return lambda x, y, dtype: body(x, y)


#: arithmetic rejects bool inputs (NumPy has no bool subtract; ONNX has no bool
#: Add/Mul/Div/Pow either). max/min and the comparisons are fine on bool.
BINARY: dict[str, Binary] = {
    "add": Binary(np.add, _plain(lambda x, y: x + y), "numeric", "x + y with broadcasting"),
    "sub": Binary(np.subtract, _plain(lambda x, y: x - y), "numeric", "x - y with broadcasting"),
    "mul": Binary(np.multiply, _plain(lambda x, y: x * y), "numeric", "x * y with broadcasting"),
    "div": Binary(_div, _div_body, "numeric",
                  "x / y with broadcasting (integers truncate toward zero)"),
    "pow": Binary(np.power, _plain(lambda x, y: call("pow", x, y)), "numeric",
                  "x ** y with broadcasting"),
    "max": Binary(np.maximum, _plain(lambda x, y: call("max", x, y)), "any", "elementwise maximum"),
    "min": Binary(np.minimum, _plain(lambda x, y: call("min", x, y)), "any", "elementwise minimum"),
    "less": Binary(np.less, _plain(lambda x, y: call("lt", x, y)), "any", "x < y (bool)", True),
    "greater": Binary(np.greater, _plain(lambda x, y: call("gt", x, y)), "any", "x > y (bool)",
                      True),
    "equal": Binary(np.equal, _plain(lambda x, y: call("eq", x, y)), "any", "x == y (bool)", True),
    "mod": Binary(_mod, _plain(lambda x, y: x % y), "numeric",
                  "remainder with the sign of the divisor (Python %)"),
    "fmod": Binary(_fmod, _plain(lambda x, y: call("fmod", x, y)), "numeric",
                   "remainder with the sign of the dividend (C fmod)"),
    "bitwise_and": Binary(np.bitwise_and, _bitwise(lambda p, q: call("min", p, q)), "int",
                          "x & y (two's complement bits)", bits=True),
    "bitwise_or": Binary(np.bitwise_or, _bitwise(lambda p, q: call("max", p, q)), "int",
                         "x | y (two's complement bits)", bits=True),
    "bitwise_xor": Binary(np.bitwise_xor, _bitwise(lambda p, q: call("ne", p, q)), "int",
                          "x ^ y (two's complement bits)", bits=True),
    "shift_left": Binary(_shift_left, _shift_left_body, "int",
                         "x << y, wrapping; 0 for shifts < 0 or >= the bit width"),
    "shift_right": Binary(_shift_right, _shift_right_body, "int",
                          "x >> y (arithmetic); the sign fill for shifts < 0 or >= the bit width"),
}


def _register_binary(name: str) -> None:
    op = BINARY[name]
    check = _ACCEPTS[op.accepts]

    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        same_dtype(ts, [1])
        check(ts, 0, name)
        shape = broadcast([ts[0].shape, ts[1].shape])
        return [TensorType("bool" if op.to_bool else ts[0].dtype, shape)]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        out = np.asarray(op.np_fn(xs[0], xs[1]))
        return [out if op.to_bool else out.astype(xs[0].dtype, copy=False)]

    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        out = broadcast([ts[0].shape, ts[1].shape])
        dtype = ts[0].dtype
        s = pointwise(names, ts, out, lambda x, y: op.body(x, y, dtype))
        if op.bits:
            return Scope(s.travs, (IterDef(_BIT.name, _BODY_BITS[dtype]),), s.body)
        return s

    # A bitwise op's Expr sums over bits: a reduction, so not a plain map.
    category = "compute" if op.bits else "elementwise"
    register(OpRules(name=name, category=category, inputs=(2, 2), infer=infer, eval=ev,
                     expr=expr, cost=per_output_cost(1), doc=op.doc))


for _n in BINARY:
    _register_binary(_n)


# -- where ---------------------------------------------------------------------


def _where_infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
    if ts[0].dtype != "bool":
        raise ShapeError(f"input 0 has dtype {ts[0].dtype}, expected bool (the condition)")
    same_dtype(ts, [2], ref=1)
    return [TensorType(ts[1].dtype, broadcast([t.shape for t in ts]))]


def _where_expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
    # The interpreter reads bool as 1.0/0.0, which is what where() tests.
    out = broadcast([t.shape for t in ts])
    return pointwise(names, ts, out, lambda c, x, y: call("where", c, x, y))


register(OpRules(
    name="where", category="elementwise", inputs=(3, 3), infer=_where_infer,
    eval=lambda xs, a: [np.where(xs[0], xs[1], xs[2]).astype(xs[1].dtype, copy=False)],
    expr=_where_expr, cost=per_output_cost(1),
    doc="x where cond else y, with broadcasting over all three",
))
