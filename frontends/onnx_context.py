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

Import-time values are bounded (:class:`FoldBudget`): a model is untrusted
input, and a 166-byte file can declare a ``ConstantOfShape`` of 37 GiB. A value
is materialized only when its size, known *before* any allocation, fits the
budget; one that does not stays a run-time op (``ConstantOfShape`` becomes
``expand`` of a scalar), or, where there is no run-time form, the import
fails with one line naming the node and the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np
import onnx
from onnx import helper

from ..builder import GraphBuilder
from ..errors import NeedsInputValueError, ShapeError, UnsupportedError
from ..interp import format_bytes
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


# -- the import-time budget ----------------------------------------------------------------

#: Largest single value (bytes) that the importer computes as a NumPy array.
#: 64 MiB: every computed weight of the onnx wheel's light models fits except
#: the first fully connected layer of VGG-19 (392 MiB), ZFNet-512 (288 MiB)
#: and AlexNet (144 MiB); those three are uniform dummies (ConstantOfShape)
#: that become one ``expand`` of a scalar each, computed when the graph runs
#: (a few hundred MB written per run, where folding them held that much in
#: memory and in every saved weights file). Real weights are initializers,
#: which the budget does not touch, and a value no larger than the arrays it
#: is computed from (a transposed or cast weight) is not limited per value.
FOLD_MAX_BYTES = 64 << 20

#: Total bytes one import may compute into NumPy arrays. Past it, values stay
#: run-time ops even when each one fits :data:`FOLD_MAX_BYTES`, so a model of
#: many medium constants (or of many copies of one weight) is bounded too.
#: The light models compute 5-156 MiB each under the per-value budget
#: (ResNet-50 98 MiB, VGG-19 156 MiB).
FOLD_TOTAL_BYTES = 1 << 30

#: A model's own weights raise its total to this many times their bytes: a
#: big real model folds its weight transposes and casts as before (allocating
#: a multiple of what the file itself holds is not an amplification).
FOLD_WEIGHTS_FACTOR = 2


def format_type(dtype: np.dtype, shape: Sequence[int]) -> str:
    """``f32[100000, 100000]`` (the IR's dtype names where there is one)."""
    try:
        name = dtype_of(dtype)
    except ValueError:
        name = str(dtype)
    return f"{name}[{', '.join(str(int(d)) for d in shape)}]"


def nbytes_of(shape: Sequence[int], dtype: np.dtype) -> int:
    """Bytes of a ``dtype`` array of ``shape``, in Python ints (no int64 overflow)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


@dataclass
class FoldBudget:
    """What one import may still compute into NumPy arrays.

    Invariant: ``used`` only grows, by the bytes of each value the importer
    materialized after :meth:`refusal` allowed its size (known before the
    allocation); so no value over ``max_bytes`` is ever allocated, and none
    once ``used`` has reached ``total_bytes``.
    """

    max_bytes: int = FOLD_MAX_BYTES
    total_bytes: int = FOLD_TOTAL_BYTES
    used: int = 0

    def refusal(self, nbytes: int, inputs: int = 0) -> str | None:
        """Why a value of ``nbytes`` may not be materialized now (None: it may).

        ``inputs``: bytes of the arrays it is computed from, already in memory;
        a value no larger (a transpose, a slice of a weight) is not limited per
        value, only by the total.
        """
        if nbytes > max(self.max_bytes, inputs):
            return f"over the {format_bytes(self.max_bytes)} budget for one value computed at import time"
        if self.used + nbytes > self.total_bytes:
            return (f"over the {format_bytes(self.total_bytes)} budget for all values computed at import "
                    f"time ({format_bytes(self.used)} used)")
        return None

    def take(self, nbytes: int) -> None:
        """Record ``nbytes`` materialized (checked first with :meth:`refusal`)."""
        self.used += nbytes


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
    budget: FoldBudget = field(default_factory=FoldBudget)

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

    # -- bounded import-time values ------------------------------------------------

    def filled(self, shape: Sequence[int], value: np.ndarray, out: int | None = 0) -> Operand:
        """A ``shape`` array of the 0-D ``value``: a NumPy array within the budget,
        else a run-time ``expand`` of the scalar (nothing of ``shape``'s size is
        allocated here). ``out`` names the run-time op after that ONNX output."""
        v = np.asarray(value).reshape(())
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise self.error(f"shape {list(shape)} has a negative dim")
        size = nbytes_of(shape, v.dtype)
        if self.budget.refusal(size) is None:
            self.budget.take(size)
            return np.full(shape, v, dtype=v.dtype)
        scalar = self.b.const(f"{self.base()}.value", v)
        return Tensor(self.op("expand", scalar, out=out, shape=shape))

    def allocation(self, shape: Sequence[int], dtype: object, what: str) -> None:
        """Charge a constant of ``shape`` that this converter is about to build
        (a mask, an index table); UnsupportedError naming the node and the size
        when it is over the budget (such constants have no run-time form)."""
        dt = np.dtype(dtype)  # type: ignore[call-overload]
        size = nbytes_of(shape, dt)
        why = self.budget.refusal(size)
        if why is not None:
            raise self.unsupported(f"{what} would be {format_type(dt, shape)} ({format_bytes(size)}), {why}")
        self.budget.take(size)

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
