"""tensoropt as a standard ONNX backend (``onnx.backend.base.Backend``).

    import tensoropt.backend as backend
    rep = backend.prepare(model)            # import once
    outputs = rep.run([x])                  # positional, or {"name": x}
    outputs = backend.run_node(node, [x, y])

``mode="eval"`` runs the reference interpreter (float32 in, float32 out, the
model's own dtypes throughout). This is what ``onnx.backend.test`` and
``benchmarks/onnx_conformance.py`` drive, so ONNX's own conformance cases check
the importer and the interpreter together.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep

from .errors import EvalError, UnsupportedError
from .ir.graph import Graph

#: execution modes: the reference interpreter now; codegen adds "compiled".
MODES = ("eval",)
DEVICES = ("CPU",)


class TensoroptRep(BackendRep):
    """A prepared model: the imported graph, run on each call.

    A model whose import needs the *value* of an input (a Reshape target or
    Pad amounts fed as an input rather than stored as a constant) cannot be
    imported once for all inputs. Such a rep imports at run time, with its
    integer and scalar inputs bound as constants, and keeps one graph per
    distinct binding (``graph`` is then None until the first run).
    """

    def __init__(self, model: onnx.ModelProto, graph: Graph | None, mode: str) -> None:
        self.model = model
        self.graph = graph
        self.mode = mode
        self._specialized: dict[bytes, Graph] = {}
        self.input_names = [v.name for v in model.graph.input
                            if v.name not in {t.name for t in model.graph.initializer}]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run with ``inputs`` given positionally (model input order), as a
        mapping by name, or as one array for a one-input model."""
        from .interp import run_graph

        names = self.input_names
        if isinstance(inputs, Mapping):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            seq = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(seq) != len(names):
                raise EvalError(f"model takes {len(names)} inputs ({', '.join(names)}), got {len(seq)}")
            feeds = {n: np.asarray(x) for n, x in zip(names, seq)}
        graph = self.graph or self._specialize(feeds)
        out = run_graph(graph, {v.name: feeds[v.name] for v in graph.inputs if v.name in feeds})
        return tuple(out[n] for n in graph.outputs)

    def _specialize(self, feeds: Mapping[str, np.ndarray]) -> Graph:
        from .frontends.onnx import from_onnx

        args = _argument_inputs(self.model)
        bound = {k: v for k, v in feeds.items() if _bindable(v.dtype.kind, v.size) or k in args}
        key = b"".join(k.encode() + v.tobytes() + str(v.shape).encode() for k, v in sorted(bound.items()))
        if key not in self._specialized:
            self._specialized[key] = from_onnx(self.model, constants=bound)
        return self._specialized[key]


#: (op, input slot) whose value is an import-time argument even when it is a
#: float tensor: Resize's roi and scales, Upsample's scales.
_ARGUMENT_SLOTS = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})


def _argument_inputs(model: onnx.ModelProto) -> set[str]:
    return {n.input[k] for n in model.graph.node for (op, k) in _ARGUMENT_SLOTS
            if n.op_type == op and k < len(n.input) and n.input[k]}


def _bindable(kind: str, size: int) -> bool:
    """Inputs bound as constants when a model needs input values at import
    time: integer tensors (shapes, axes, pads) and scalars of any type (a
    OneHot depth or Range bound fed as a float)."""
    return kind in "iu" or size == 1


def _has_argument_inputs(model: onnx.ModelProto) -> bool:
    inits = {t.name for t in model.graph.initializer}
    ints = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}
    args = _argument_inputs(model)
    for v in model.graph.input:
        if v.name in inits or not v.type.HasField("tensor_type"):
            continue
        dims = v.type.tensor_type.shape.dim
        scalar = all(d.HasField("dim_value") and d.dim_value == 1 for d in dims)
        if v.type.tensor_type.elem_type in ints or scalar or v.name in args:
            return True
    return False


def _check_options(device: str, mode: str) -> None:
    if not TensoroptBackend.supports_device(device):
        raise UnsupportedError(f"device {device!r} is not supported (devices: {', '.join(DEVICES)})")
    if mode not in MODES:
        raise UnsupportedError(f"mode {mode!r} is not supported (modes: {', '.join(MODES)})")


class TensoroptBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", mode: str = "eval",
                **kwargs: Any) -> TensoroptRep:
        from .frontends.onnx import from_onnx

        _check_options(device, mode)
        try:
            return TensoroptRep(model, from_onnx(model), mode)
        except UnsupportedError:
            if not _has_argument_inputs(model):
                raise
            return TensoroptRep(model, None, mode)  # import once the integer inputs are known

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run one node: it is wrapped in a one-node model typed from ``inputs``."""
        opset = int(kwargs.pop("opset_version", onnx.defs.onnx_opset_version()))
        arrays = [np.asarray(x) for x in (inputs.values() if isinstance(inputs, Mapping) else inputs)]
        names = [n for n in node.input if n]
        vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in zip(names, arrays)]
        outs = []
        for k, o in enumerate(node.output):
            if outputs_info and k < len(outputs_info):
                dt, shape = outputs_info[k]
                outs.append(helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), shape))
            else:
                outs.append(helper.make_value_info(o, onnx.TypeProto()))
        g = helper.make_graph([node], f"{node.op_type}_node", vis, outs)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.split(":")[0].upper() in DEVICES


prepare = TensoroptBackend.prepare
run_model = TensoroptBackend.run_model
run_node = TensoroptBackend.run_node
supports_device = TensoroptBackend.supports_device
