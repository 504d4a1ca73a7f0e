"""The ONNX export's emission machinery: names, node sinks, the per-node emitter, dtype tables.

Every ONNX node and helper value the export writes goes through an
:class:`Emitter` (one per IR node; ``owner`` is the node's first output), so
these rules hold for the whole model:

- IR tensor names are reserved up front (:class:`Names`): a helper value can
  never shadow a tensor the user named. The node that computes an IR tensor
  is named after it; helper nodes and values are named ``<tensor>/<what>``.
- Nodes go to a :class:`Sink`: the main graph, or one local function's body.
  Constants become initializers in the main graph and ``Constant`` nodes in
  a function body, which cannot hold initializers.
- Every input of an emitted node that is an IR tensor is checked against the
  ONNX op schema's type constraints, so a dtype the ONNX op does not take
  (``relu`` of ``u8``) is refused with an :class:`UnsupportedError` naming the
  IR node, rather than failing later inside the checker.
- :data:`ONNX_DTYPE` and the schema spellings cover exactly
  :data:`~tensoropt.ir.types.DTYPES` (asserted at import).

This module imports no other part of the export; the rule table
(:mod:`tensoropt.frontends.onnx_export_ops`), the Expr compiler
(:mod:`tensoropt.frontends.onnx_export_expr`) and the driver
(:mod:`tensoropt.frontends.onnx_export`) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, helper, numpy_helper

from tensoropt.errors import UnsupportedError
from tensoropt.ir.types import DTYPES, TensorType

__all__ = ["DOMAIN", "ONNX_DTYPE", "Emitter", "Names", "Sink"]

#: the custom domain of the local functions that hold ``expr`` nodes.
DOMAIN = "tensoropt"
#: our dtypes as ONNX element types (``TensorProto.DataType``).
ONNX_DTYPE: Mapping[str, int] = MappingProxyType({
    "f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "f16": TensorProto.FLOAT16,
    "i64": TensorProto.INT64, "i32": TensorProto.INT32, "i16": TensorProto.INT16,
    "i8": TensorProto.INT8, "u8": TensorProto.UINT8, "u16": TensorProto.UINT16,
    "u32": TensorProto.UINT32, "u64": TensorProto.UINT64, "bool": TensorProto.BOOL,
})
#: how ONNX schemas spell our dtypes in type constraints.
_SCHEMA_DTYPE: Mapping[str, str] = MappingProxyType({
    "f32": "tensor(float)", "f64": "tensor(double)", "f16": "tensor(float16)",
    "i64": "tensor(int64)", "i32": "tensor(int32)", "i16": "tensor(int16)",
    "i8": "tensor(int8)", "u8": "tensor(uint8)", "u16": "tensor(uint16)",
    "u32": "tensor(uint32)", "u64": "tensor(uint64)", "bool": "tensor(bool)",
})
assert set(ONNX_DTYPE) == set(DTYPES) == set(_SCHEMA_DTYPE), "dtype tables out of step with DTYPES"


class Names:
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
class Sink:
    """Where emitted nodes go: the main graph, or one local function's body.

    A function body cannot hold initializers, so its constants become
    ``Constant`` nodes (``in_function``).
    """

    in_function: bool
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)


@dataclass
class Emitter:
    """Emits the ONNX nodes of one IR node (``owner`` is its first output).

    Every input of an emitted node whose name is an IR tensor is checked
    against the ONNX schema's type constraints, so a dtype ONNX does not take
    fails here with the IR node's name rather than later inside the checker.
    """

    sink: Sink
    values: Names
    node_names: Names
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

