"""What an ONNX op converter sees: the node, its operands, and a builder.

An operand is one of three things, decided at import time:

- :class:`Tensor`: a value computed at run time, named in the builder;
- a NumPy array: a value known at import time (initializers, ``Constant``,
  anything folded from constants); it becomes a graph constant only when a
  run-time op reads it, so shape arithmetic never reaches the graph;
- :class:`Dims`: a 1-D (or scalar) int64 vector whose entries are known as
  dims but not all as ints (``Shape`` of a tensor with a symbolic batch).
  Reshape, Expand and friends read it as a target shape.

Invariants: a converter returns one operand per ONNX output it defines
(``None`` for an optional output nobody reads); it never mutates its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np
import onnx
from onnx import helper

from ..builder import GraphBuilder
from ..errors import NeedsInputValueError, ShapeError, UnsupportedError
from ..ir.types import Dim, TensorType, dtype_of, is_symbol


@dataclass(frozen=True)
class Tensor:
    """A run-time value: ``name`` in the builder."""

    name: str


@dataclass(frozen=True)
class Dims:
    """An int64 vector (``scalar``: a 0-D value) of dims, some symbolic."""

    dims: tuple[Dim, ...]
    scalar: bool = False

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) for d in self.dims)

    def array(self) -> np.ndarray:
        a = np.array(self.dims, dtype=np.int64)
        return a.reshape(()) if self.scalar else a


Operand = Union[Tensor, np.ndarray, Dims, None]


def normalize(op: Operand) -> Operand:
    """Dims that turned out all-int become an array (one representation per value)."""
    if isinstance(op, Dims) and op.static:
        return op.array()
    return op


@dataclass
class Ctx:
    """One ONNX node being converted.

    ``where`` names the node for messages: ``Conv node 'conv1' (opset 13)``.
    ``env`` is the importer's ONNX-name -> operand map: a constant
    materialized for one reader is recorded there, so every later reader
    shares the one graph constant. ``graph_inputs`` are the model's run-time
    input names (to tell "needs an input's value" from other refusals).
    """

    b: GraphBuilder
    node: onnx.NodeProto
    inputs: list[Operand]
    opset: int
    where: str
    attrs: dict[str, object] = field(default_factory=dict)
    env: dict[str, Operand] = field(default_factory=dict)
    graph_inputs: frozenset[str] = frozenset()

    # -- attributes -------------------------------------------------------------

    def attr(self, name: str, default: object = None) -> object:
        return self.attrs.get(name, default)

    def attr_int(self, name: str, default: int) -> int:
        v = self.attrs.get(name, default)
        return int(v)  # type: ignore[call-overload]

    def attr_float(self, name: str, default: float) -> float:
        v = self.attrs.get(name, default)
        return float(v)  # type: ignore[arg-type]

    def attr_ints(self, name: str, default: Sequence[int] | None = None) -> list[int] | None:
        v = self.attrs.get(name)
        if v is None:
            return None if default is None else list(default)
        return [int(x) for x in v]  # type: ignore[attr-defined]

    def attr_str(self, name: str, default: str) -> str:
        v = self.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else str(v)

    # -- inputs -----------------------------------------------------------------

    def has(self, i: int) -> bool:
        """Is optional input ``i`` given (present and not the empty name)?"""
        return i < len(self.inputs) and self.inputs[i] is not None

    def tensor(self, i: int) -> str:
        """Input ``i`` as a builder name, materializing a constant if needed."""
        op = self.inputs[i]
        if isinstance(op, Tensor):
            return op.name
        if isinstance(op, Dims):
            raise self.unsupported(f"input {i} is a shape with symbolic dims {list(op.dims)} used "
                                   "as run-time data (only shape arguments may be symbolic)")
        if op is None:
            raise self.error(f"input {i} is missing")
        name = self.node.input[i] or f"{self.node.op_type}_in{i}"
        t = self.b.const(name, op)
        self.inputs[i] = Tensor(t)  # reuse the constant if read twice
        if self.node.input[i]:
            self.env[self.node.input[i]] = Tensor(t)  # and in every later node
        return t

    def const(self, i: int) -> np.ndarray | None:
        """Input ``i``'s value when known at import time, else None."""
        op = self.inputs[i] if i < len(self.inputs) else None
        return op if isinstance(op, np.ndarray) else None

    def need_const(self, i: int, what: str) -> np.ndarray:
        v = self.const(i)
        if v is None:
            name = self.node.input[i] if i < len(self.node.input) else ""
            msg = f"{self.where}: input {i} ({what}) must be a constant known at import time"
            if name in self.graph_inputs:
                raise NeedsInputValueError(f"{msg}, not the graph input {name!r}", (name,))
            raise UnsupportedError(msg)
        return v

    def ints(self, i: int, what: str) -> list[int]:
        return [int(x) for x in self.need_const(i, what).reshape(-1)]

    def dims(self, i: int, what: str) -> tuple[Dim, ...]:
        """A shape argument: constant ints or :class:`Dims` with symbols."""
        op = self.inputs[i]
        if isinstance(op, Dims):
            return op.dims
        return tuple(self.ints(i, what))

    def type(self, i: int) -> TensorType:
        op = self.inputs[i]
        if isinstance(op, Tensor):
            return self.b.type_of(op.name)
        if isinstance(op, np.ndarray):
            return TensorType(dtype_of(op.dtype), tuple(int(d) for d in op.shape))
        if isinstance(op, Dims):
            return TensorType("i64", () if op.scalar else (len(op.dims),))
        raise self.error(f"input {i} is missing")

    def shape(self, i: int) -> tuple[Dim, ...]:
        return self.type(i).shape

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def static_shape(self, i: int, why: str) -> tuple[int, ...]:
        s = self.shape(i)
        if not all(isinstance(d, int) for d in s):
            raise self.unsupported(f"input {i} has symbolic shape {list(s)}; {why} needs static dims")
        return tuple(int(d) for d in s)  # type: ignore[arg-type]

    # -- building ---------------------------------------------------------------

    def out_name(self, k: int = 0) -> str | None:
        return self.node.output[k] if k < len(self.node.output) and self.node.output[k] else None

    def op(self, op: str, *inputs: str, out: int | None = None, **attrs: object) -> str:
        """Add a registry op; ``out=k`` names it after ONNX output ``k``."""
        name = self.out_name(out) if out is not None else None
        return self.b.op(op, *inputs, name=name or f"{self.base()}.{op}", **attrs)

    def base(self) -> str:
        return self.node.name or self.out_name(0) or self.node.op_type

    def scalar(self, value: float, like: str) -> str:
        """A 0-D constant of ``like``'s dtype (for arithmetic compositions)."""
        dt = self.b.type_of(like).np_dtype
        return self.b.const(f"{self.base()}.c", np.array(value, dtype=dt))

    # -- errors -----------------------------------------------------------------

    def error(self, msg: str) -> ShapeError:
        return ShapeError(f"{self.where}: {msg}")

    def unsupported(self, msg: str) -> UnsupportedError:
        return UnsupportedError(f"{self.where}: {msg}")


Converter = Callable[[Ctx], Sequence[Operand]]

#: ONNX op type (default domain) -> converter. Filled by the ``onnx_ops*`` modules.
CONVERTERS: dict[str, Converter] = {}


def converter(*op_types: str) -> Callable[[Converter], Converter]:
    """Register ``fn`` as the converter of ``op_types``."""

    def deco(fn: Converter) -> Converter:
        for t in op_types:
            if t in CONVERTERS:
                raise ValueError(f"ONNX op {t} has two converters")
            CONVERTERS[t] = fn
        return fn

    return deco


#: ONNX TensorProto element type -> tensoropt dtype short name.
ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.DOUBLE: "f64", onnx.TensorProto.FLOAT16: "f16",
    onnx.TensorProto.INT64: "i64", onnx.TensorProto.INT32: "i32", onnx.TensorProto.INT16: "i16",
    onnx.TensorProto.INT8: "i8", onnx.TensorProto.UINT8: "u8", onnx.TensorProto.UINT16: "u16",
    onnx.TensorProto.UINT32: "u32", onnx.TensorProto.UINT64: "u64", onnx.TensorProto.BOOL: "bool",
}


def onnx_dtype(elem_type: int, what: str) -> str:
    """Our dtype for an ONNX element type; UnsupportedError names ``what``."""
    try:
        return ONNX_DTYPES[elem_type]
    except KeyError:
        name = helper.tensor_dtype_to_string(elem_type) if elem_type else "undefined"
        valid = ", ".join(helper.tensor_dtype_to_string(k).removeprefix("TensorProto.") for k in ONNX_DTYPES)
        raise UnsupportedError(f"{what}: dtype {name.removeprefix('TensorProto.')} is not supported "
                               f"(supported: {valid})") from None


def symbol_name(raw: str) -> str:
    """A valid IR symbol for an ONNX ``dim_param`` (``batch size`` -> ``batch_size``)."""
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in raw) or "d"
    if not is_symbol(s):
        s = "d_" + s
    return s
