"""Elementwise ops: unary maps, broadcasting binary ops, comparisons, ``where``.

Every op here is a map over the (broadcast) output shape, so its Expr is one
scope ``L[out] { f(reads) }`` and its category is ``elementwise`` (fusable).
Cost: one flop per output element (``gelu``/``sigmoid`` are counted as one
too: costs rank candidates, they do not model transcendental throughput).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import special

from ..errors import EvalError, ShapeError
from ..ir.expr import Expr, Scope, call
from ..ir.graph import Attrs
from ..ir.types import INT_DTYPES, TensorType
from .common import choice, need_float, need_numeric, need_signed, per_output_cost, pointwise
from .common import same_dtype
from .common import afloat
from .registry import AttrSpec, OpRules, register
from .shapes import broadcast

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

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


#: name -> (NumPy rule, Expr body, float-only?, attrs, doc)
UNARY: dict[str, tuple[NpUnary, ExprUnary, bool, tuple[AttrSpec, ...], str]] = {
    "relu": (lambda x, a: np.maximum(x, 0), lambda x, a: call("relu", x), False, (),
             "max(x, 0)"),
    "leaky_relu": (lambda x, a: np.where(x >= 0, x, x * afloat(a, "alpha")),
                   lambda x, a: call("max", x, 0.0) + call("min", x, 0.0) * afloat(a, "alpha"),
                   True, (AttrSpec("alpha", "float", 0.01, "slope for x < 0"),),
                   "x for x >= 0, alpha * x otherwise"),
    "sigmoid": (lambda x, a: special.expit(x), lambda x, a: call("sigmoid", x), True, (),
                "1 / (1 + exp(-x))"),
    "tanh": (lambda x, a: np.tanh(x), lambda x, a: call("tanh", x), True, (), "tanh(x)"),
    "exp": (lambda x, a: np.exp(x), lambda x, a: call("exp", x), True, (), "e ** x"),
    "log": (lambda x, a: np.log(x), lambda x, a: call("log", x), True, (), "natural log"),
    "sqrt": (lambda x, a: np.sqrt(x), lambda x, a: call("sqrt", x), True, (), "square root"),
    "rsqrt": (lambda x, a: 1.0 / np.sqrt(x), lambda x, a: call("rsqrt", x), True, (),
              "1 / sqrt(x)"),
    "neg": (lambda x, a: np.negative(x), lambda x, a: call("neg", x), False, (), "-x"),
    "abs": (lambda x, a: np.abs(x), lambda x, a: call("abs", x), False, (), "|x|"),
    "erf": (lambda x, a: special.erf(x), lambda x, a: call("erf", x), True, (),
            "the Gauss error function"),
    "gelu": (_gelu_np, _gelu_expr, True,
             (AttrSpec("approximate", "str", "none", '"none" (erf) or "tanh"'),),
             "x * Phi(x), exact (erf) or tanh-approximated"),
    "clip": (lambda x, a: np.minimum(np.maximum(x, afloat(a, "min")), afloat(a, "max")),
             lambda x, a: call("min", call("max", x, afloat(a, "min")), afloat(a, "max")),
             False, (AttrSpec("min", "float", -math.inf, "lower bound"),
                     AttrSpec("max", "float", math.inf, "upper bound")),
             "min(max(x, min), max)"),
    "reciprocal": (lambda x, a: 1.0 / x, lambda x, a: call("reciprocal", x), True, (), "1 / x"),
}

#: ops that would wrap an unsigned input (-x of u8 is 256 - x): rejected by infer.
_SIGNED_ONLY = frozenset({"neg"})

#: attribute checks beyond kinds, run by infer.
_UNARY_CHECKS: dict[str, Callable[[Attrs], None]] = {"gelu": _check_gelu}


def _register_unary(name: str) -> None:
    fn, body, float_only, attrs, doc = UNARY[name]

    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        if float_only:
            need_float(ts, 0)
        elif name in _SIGNED_ONLY:
            need_signed(ts, 0, name)
        else:
            need_numeric(ts, 0, name)
        if name in _UNARY_CHECKS:
            _UNARY_CHECKS[name](a)
        return [ts[0]]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        x = xs[0]
        return [np.asarray(fn(x, a)).astype(x.dtype, copy=False)]

    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        return pointwise(names, ts, ts[0].shape, lambda r: body(r, a))

    register(OpRules(name=name, category="elementwise", inputs=(1, 1), infer=infer, eval=ev,
                     expr=expr, cost=per_output_cost(1), attrs=attrs, doc=doc))


for _n in UNARY:
    _register_unary(_n)


# -- binary --------------------------------------------------------------------


def _int_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # ONNX integer Div truncates toward zero (C semantics), unlike numpy's //.
    q = np.abs(x) // np.abs(y)
    return np.where((x < 0) != (y < 0), -q, q)


def _trunc_div(x: Expr, y: Expr) -> Expr:
    # Bodies compute in floats; integer Div truncates toward zero.
    q = x / y
    return call("sign", q) * call("floor", call("abs", q))


def _div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        # Floats divide by zero to inf/nan (IEEE); integers have no such value.
        if np.broadcast(x, y).size and np.any(y == 0):
            raise EvalError("integer division by zero")
        return _int_div(x, y)
    return x / y


#: binary ops that do arithmetic: bool inputs are rejected by infer (NumPy has
#: no bool subtract; ONNX has no bool Add/Mul/Div/Pow either). max/min and the
#: comparisons are fine on bool.
_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "pow"})

#: name -> (NumPy rule, Expr body, result is bool?, doc)
BINARY: dict[str, tuple[Callable, Callable[[Expr, Expr], Expr], bool, str]] = {
    "add": (np.add, lambda x, y: x + y, False, "x + y with broadcasting"),
    "sub": (np.subtract, lambda x, y: x - y, False, "x - y with broadcasting"),
    "mul": (np.multiply, lambda x, y: x * y, False, "x * y with broadcasting"),
    "div": (_div, lambda x, y: x / y, False,
            "x / y with broadcasting (integers truncate toward zero)"),
    "pow": (np.power, lambda x, y: call("pow", x, y), False, "x ** y with broadcasting"),
    "max": (np.maximum, lambda x, y: call("max", x, y), False, "elementwise maximum"),
    "min": (np.minimum, lambda x, y: call("min", x, y), False, "elementwise minimum"),
    "less": (np.less, lambda x, y: call("lt", x, y), True, "x < y (bool)"),
    "greater": (np.greater, lambda x, y: call("gt", x, y), True, "x > y (bool)"),
    "equal": (np.equal, lambda x, y: call("eq", x, y), True, "x == y (bool)"),
}


def _register_binary(name: str) -> None:
    fn, body, to_bool, doc = BINARY[name]

    def infer(ts: Sequence[TensorType], a: Attrs) -> list[TensorType]:
        same_dtype(ts, [1])
        if name in _ARITHMETIC:
            need_numeric(ts, 0, name)
        shape = broadcast([ts[0].shape, ts[1].shape])
        return [TensorType("bool" if to_bool else ts[0].dtype, shape)]

    def ev(xs: Sequence[np.ndarray], a: Attrs) -> list[np.ndarray]:
        out = np.asarray(fn(xs[0], xs[1]))
        return [out if to_bool else out.astype(xs[0].dtype, copy=False)]

    def expr(names: Sequence[str], ts: Sequence[TensorType], a: Attrs) -> Scope:
        out = broadcast([ts[0].shape, ts[1].shape])
        if name == "div" and ts[0].dtype in INT_DTYPES:
            return pointwise(names, ts, out, _trunc_div)
        return pointwise(names, ts, out, body)

    register(OpRules(name=name, category="elementwise", inputs=(2, 2), infer=infer, eval=ev,
                     expr=expr, cost=per_output_cost(1), doc=doc))


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
