"""tensoropt as a standard ONNX backend (``onnx.backend.base.Backend``).

    import tensoropt.backend as backend
    rep = backend.prepare(model)            # import once
    outputs = rep.run([x])                  # positional, or {"name": x}
    outputs = backend.run_node(node, [x, y])

``mode="eval"`` runs the reference interpreter (float32 in, float32 out, the
model's own dtypes throughout). ``mode="compiled"`` compiles the imported
graph with TVM (:mod:`tensoropt.codegen`, host CPU) on first run and runs the
compiled code. ``onnx.backend.test`` and ``benchmarks/onnx_conformance.py``
drive either, so ONNX's own conformance cases check the importer with the
interpreter, and the importer with codegen.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep

from .errors import EvalError, NeedsInputValueError, UnsupportedError
from .ir.graph import Graph

#: execution modes: the reference interpreter, or TVM-compiled code.
MODES = ("eval", "compiled")
DEVICES = ("CPU",)


class TensoroptRep(BackendRep):
    """A prepared model: the imported graph, run on each call.

    A model whose import needs the *value* of some inputs (a Reshape target
    or Resize scales fed as inputs rather than stored as constants) cannot be
    imported once for all inputs: the importer says which inputs it needs
    (:class:`NeedsInputValueError`), and such a rep imports at run time with
    exactly those inputs bound as constants, keeping one graph per distinct
    binding (``graph`` is None until then). Every other input stays a
    run-time input, so the computation still runs through the interpreter.
    """

    def __init__(self, model: onnx.ModelProto, graph: Graph | None, mode: str,
                 needs: tuple[str, ...] = ()) -> None:
        self.model = model
        self.graph = graph
        self.mode = mode
        self.needs = needs
        self.last_graph = graph
        self._specialized: dict[bytes, Graph] = {}
        self._compiled: dict[int, tuple[Graph, Any]] = {}  # id(graph) -> (graph, CompiledModel)
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [v.name for v in model.graph.input if v.name not in inits]
        self._overridable = [v.name for v in model.graph.input if v.name in inits]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run with ``inputs`` given positionally (model input order), as a
        mapping by name, or as one array for a one-input model."""
        from .interp import run_graph

        names = self.input_names
        if isinstance(inputs, Mapping):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
            for k in feeds:
                if k in self._overridable:
                    raise UnsupportedError(f"input {k!r} has an initializer: tensoropt imports it as a "
                                           "constant and cannot override it at run time")
                if k not in names:
                    raise EvalError(f"{k!r} is not an input of the model (inputs: {', '.join(names)})")
        else:
            seq = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(seq) != len(names):
                raise EvalError(f"model takes {len(names)} inputs ({', '.join(names)}), got {len(seq)}")
            feeds = {n: np.asarray(x) for n, x in zip(names, seq)}
        graph = self.graph or self._specialize(feeds)
        self.last_graph = graph
        feeds = {v.name: feeds[v.name] for v in graph.inputs if v.name in feeds}
        if self.mode == "compiled":
            out = self._compiled_model(graph).run(feeds)
        else:
            out = run_graph(graph, feeds)
        return tuple(out[n] for n in graph.outputs)

    def _compiled_model(self, graph: Graph) -> Any:
        """The graph compiled once (keyed by identity: specialized graphs share structure, not weights)."""
        hit = self._compiled.get(id(graph))
        if hit is None:
            from .compiler import compile as compile_graph

            hit = (graph, compile_graph(graph))
            self._compiled[id(graph)] = hit
        return hit[1]

    def _specialize(self, feeds: Mapping[str, np.ndarray]) -> Graph:
        from .frontends.onnx import from_onnx

        needs = list(self.needs)
        while True:
            missing = [n for n in needs if n not in feeds]
            if missing:
                raise EvalError(f"input {missing[0]!r} is missing (inputs: {', '.join(self.input_names)})")
            key = b"".join(n.encode() + feeds[n].tobytes() + str(feeds[n].shape).encode() + feeds[n].dtype.str.encode()
                           for n in sorted(needs))
            if key in self._specialized:
                return self._specialized[key]
            try:
                g = from_onnx(self.model, constants={n: feeds[n] for n in needs})
            except NeedsInputValueError as e:  # binding some inputs exposed another one
                more = [n for n in e.inputs if n not in needs]
                if not more:
                    raise
                needs += more
                continue
            self._specialized[key] = g
            return g


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
        except NeedsInputValueError as e:
            return TensoroptRep(model, None, mode, e.inputs)  # import once those inputs are known

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
        g = helper.make_graph([node], f"{node.op_type}_node", vis, [])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        # output types: the caller's, else ONNX's own shape inference
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        for k, o in enumerate(o for o in node.output if o):
            if outputs_info and k < len(outputs_info):
                dt, shape = outputs_info[k]
                g.output.append(helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), shape))
            elif o in inferred:
                g.output.append(inferred[o])
            else:
                raise UnsupportedError(f"{node.op_type} node: ONNX cannot infer the type of output {o!r}; "
                                       "pass outputs_info")
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.split(":")[0].upper() in DEVICES


prepare = TensoroptBackend.prepare
run_model = TensoroptBackend.run_model
run_node = TensoroptBackend.run_node
supports_device = TensoroptBackend.supports_device
