"""The op registry: one rule table keyed by op name.

Each op is one :class:`OpRules` entry registered with :func:`register`; adding
an op means writing its rules (attributes, type inference, reference
evaluation, Expr definition, cost) in one place. Nothing here is a class
hierarchy: passes and backends look rules up by name.

Rule signatures (``ts``: input types, ``xs``: input arrays, ``a``: attributes
with defaults filled in, ``names``: input tensor names):

- ``infer(ts, a) -> list[TensorType]`` raises :class:`ShapeError` with a
  message that does not repeat the node (the caller prefixes it).
- ``eval(xs, a) -> list[np.ndarray]``: NumPy reference, dtype-preserving.
- ``expr(names, ts, a) -> Scope | None``: the tensor-algebra definition of
  output 0 reading ``%names[i]``; ``None`` for ops that are pure data
  movement with data-dependent indices (gather, embedding) or casts.
- ``cost(ts, outs, a) -> Cost``: flops and bytes moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import ShapeError, UnknownOpError
from ..ir.expr import Scope
from ..ir.graph import Attrs, AttrValue
from ..ir.types import TensorType

#: attribute kinds and the Python values they accept.
ATTR_KINDS = ("int", "float", "str", "bool", "ints", "floats")
REQUIRED = object()


@dataclass(frozen=True)
class AttrSpec:
    name: str
    kind: str
    default: object = REQUIRED
    doc: str = ""


@dataclass(frozen=True)
class Cost:
    flops: int
    bytes: int


InferFn = Callable[[Sequence[TensorType], Attrs], list[TensorType]]
EvalFn = Callable[[Sequence[np.ndarray], Attrs], list[np.ndarray]]
ExprFn = Callable[[Sequence[str], Sequence[TensorType], Attrs], "Scope | None"]
CostFn = Callable[[Sequence[TensorType], Sequence[TensorType], Attrs], Cost]


@dataclass(frozen=True)
class OpRules:
    """Everything tensoropt knows about one op.

    ``category`` is one of ``elementwise`` (same-shape map, fusable),
    ``compute`` (has a real Expr definition), ``movement`` (reshape-like),
    ``expr`` (the generic op). ``inputs`` is (min, max) arity; max None means
    variadic.
    """

    name: str
    category: str
    inputs: tuple[int, int | None]
    infer: InferFn
    eval: EvalFn
    expr: ExprFn | None
    cost: CostFn
    attrs: tuple[AttrSpec, ...] = ()
    num_outputs: int | None = 1  # None: decided by attributes (split)
    doc: str = ""

    def attr_spec(self, name: str) -> AttrSpec | None:
        for s in self.attrs:
            if s.name == name:
                return s
        return None

    def with_defaults(self, attrs: Mapping[str, AttrValue]) -> Attrs:
        """Attributes with defaults filled in; ShapeError on unknown/missing ones."""
        known = {s.name for s in self.attrs}
        unknown = sorted(set(attrs) - known)
        if unknown:
            valid = ", ".join(sorted(known)) or "none"
            raise ShapeError(f"unknown attribute {unknown[0]!r} of {self.name} (valid: {valid})")
        out: dict[str, object] = {}
        for s in self.attrs:
            if s.name in attrs:
                check_attr_kind(self.name, s, attrs[s.name])
                out[s.name] = attrs[s.name]
            elif s.default is REQUIRED:
                raise ShapeError(f"{self.name} needs attribute {s.name!r} ({s.kind})")
            else:
                out[s.name] = s.default
        return Attrs(out)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: kind -> does a value have it. ``bool`` also takes 0/1 (ONNX writes flags as
#: ints); ``float`` takes ints (the text format writes ``1`` for ``1.0``).
_KIND_CHECKS: dict[str, Callable[[object], bool]] = {
    "int": _is_int,
    "float": _is_num,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool) or v in (0, 1),
    "ints": lambda v: isinstance(v, tuple) and all(_is_int(x) for x in v),
    "floats": lambda v: isinstance(v, tuple) and all(_is_num(x) for x in v),
}


def check_attr_kind(op: str, spec: AttrSpec, value: object) -> None:
    """ShapeError when ``value`` does not have ``spec.kind`` (lists arrive as tuples)."""
    if isinstance(value, list):
        value = tuple(value)
    if not _KIND_CHECKS[spec.kind](value):
        raise ShapeError(f"attribute {spec.name}={value!r} of {op} must be {spec.kind}")


REGISTRY: dict[str, OpRules] = {}


def register(rules: OpRules) -> OpRules:
    if rules.name in REGISTRY:
        raise ValueError(f"op {rules.name!r} registered twice")
    REGISTRY[rules.name] = rules
    return rules


def get_op(name: str) -> OpRules:
    """The rules for ``name``; UnknownOpError lists the registered ops."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOpError(
            f"unknown op {name!r}; registered ops: {', '.join(sorted(REGISTRY))}"
        ) from None
