"""ONNX models into the tensoropt IR.

    from tensoropt.frontends.onnx import load_onnx
    graph = load_onnx("resnet50.onnx")

The onnx package does the checking: ``onnx.checker`` (structure),
``onnx.version_converter`` (models older than opset 13 are lifted to 13, so
converters see one Softmax semantics), strict ``onnx.shape_inference`` (bad
shapes are reported by ONNX before we build anything). The conversion itself
walks the nodes once, keeping every value known at import time (initializers,
``Constant``, ``ConstantOfShape`` weights, shape arithmetic) as a NumPy array
or a vector of symbolic dims, so none of that reaches the graph: only run-time
computation becomes nodes (see :mod:`.onnx_context`).

Invariants:
- Weights stay NumPy arrays with their ONNX dtype; nothing is pickled.
- External data is read only from files inside the model's own directory.
- Every failure is a :class:`TensoroptError` naming the file, the node, its op
  and the opset; nothing from protobuf or onnx escapes as a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import onnx
import onnx.inliner
from onnx import helper, numpy_helper

from ..builder import GraphBuilder
from ..errors import InputFileError, NeedsInputValueError, ShapeError, TensoroptError, UnsupportedError
from ..ir.graph import Graph
from ..ir.types import Dim, dtype_of
from . import onnx_ops, onnx_ops_math, onnx_ops_spatial  # noqa: F401  (register converters)
from .onnx_context import CONVERTERS, Ctx, Dims, Operand, Tensor, normalize, onnx_dtype, symbol_name
from .onnx_dims import DIMS_OPS

#: models below this opset are converted up to it (one Softmax/Reshape semantics).
CANONICAL_OPSET = 13

#: ops never folded at import time even with constant inputs (results are random).
_NO_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                      "Bernoulli", "Multinomial"})


# -- reading files -----------------------------------------------------------------------


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers and attribute tensors, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _all_tensors(a.g)
            for g in a.graphs:
                yield from _all_tensors(g)


def read_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Parse an ``.onnx`` file and its external data (only from its own directory)."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends: the bytes are not a model
        raise InputFileError(f"{p}: not a valid ONNX model (truncated or malformed protobuf: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not model.graph.node and not model.graph.output:
        raise InputFileError(f"{p}: not a valid ONNX model (no graph: empty or truncated file?)")
    base = p.parent.resolve()
    for t in _all_tensors(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = {e.key: e.value for e in t.external_data}.get("location", "")
        target = (base / loc).resolve()
        if not loc or not target.is_relative_to(base):
            raise InputFileError(f"{p}: external data {loc!r} of tensor {t.name!r} is outside the "
                                 f"model's directory {base}; refusing to read it")
        if not target.is_file():
            raise InputFileError(f"{p}: external data file {loc!r} of tensor {t.name!r} is missing")
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(base))
    except Exception as e:
        raise InputFileError(f"{p}: cannot read external data: {e}") from None
    return model


def load_onnx(path: str | os.PathLike[str], *, name: str | None = None) -> Graph:
    """Read and import an ``.onnx`` file."""
    p = Path(path)
    return from_onnx(read_model(p), name=name or p.stem, where=str(p))


# -- checking and normalizing ------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


#: initializers with more elements than this are checked as typed inputs (below).
_SKELETON_MIN = 4096


def _skeleton(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[onnx.TensorProto]]:
    """The model with its large initializers turned into typed graph inputs.

    ONNX's checker, version converter and shape inference copy and serialize
    the whole model; with the weights held aside they run on kilobytes
    instead of hundreds of megabytes (VGG-19: 11 s -> 0.1 s). Small
    initializers stay, because shape arithmetic reads their values.
    """
    big = [t for t in model.graph.initializer if int(np.prod(t.dims, dtype=np.int64)) > _SKELETON_MIN]
    if not big:
        return model, []
    names = {t.name for t in big}
    listed = {v.name for v in model.graph.input}
    sk = onnx.ModelProto()
    sk.ir_version = model.ir_version
    sk.opset_import.extend(model.opset_import)
    sk.functions.extend(model.functions)
    g = sk.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.initializer.extend(t for t in model.graph.initializer if t.name not in names)
    g.input.extend(model.graph.input)
    g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in big if t.name not in listed)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    return sk, big


def _checked(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """Checker, version conversion, strict shape inference; ONNX's words in one line.

    Runs on the skeleton (see :func:`_skeleton`); the held-aside initializers
    are put back into the result.
    """
    model, big = _skeleton(model)
    model = _checked_skeleton(model, where)
    if big:
        names = {t.name for t in big}
        listed = [v for v in model.graph.input if v.name not in names]
        ir3 = model.ir_version < 4
        keep = [v for v in model.graph.input if ir3 or v.name not in names]
        del model.graph.input[:]
        model.graph.input.extend(keep if ir3 else listed)
        model.graph.initializer.extend(big)
    return model


def _checked_skeleton(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise InputFileError(f"{where}: invalid ONNX model: {_first_line(e)}") from None
    if model.functions:
        # model-local functions (torch.onnx's dynamo exporter, our own export of
        # expr nodes): ONNX's inliner replaces each call by the function's body
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:
            raise InputFileError(f"{where}: cannot inline the model's local functions: {_first_line(e)}") from None
    if default_opset(model) < CANONICAL_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, CANONICAL_OPSET)
        except Exception:
            pass  # converters read the older forms too (see onnx_ops)
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:
        msg = _first_line(e)
        if "No Op registered" in msg or "not a registered" in msg:
            return model  # an op ONNX itself does not know: the importer names it below
        raise ShapeError(f"{where}: ONNX shape inference failed: {msg}") from None
    return model


# -- conversion --------------------------------------------------------------------------


def _input_dims(v: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for k, d in enumerate(v.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(symbol_name(d.dim_param))
        else:
            dims.append(symbol_name(f"{v.name}_{k}"))
    return tuple(dims)


def _attrs(node: onnx.NodeProto, where: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnsupportedError(f"{where}: control flow (subgraph attribute {a.name!r}) is not supported")
        v = helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


def _constant(node: onnx.NodeProto, attrs: dict[str, object], where: str) -> np.ndarray:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    raise UnsupportedError(f"{where}: Constant with {', '.join(attrs) or 'no value'} "
                           "(string and sparse constants are not supported)")


def _fold(node: onnx.NodeProto, arrays: list[np.ndarray | None], model: onnx.ModelProto) -> list[np.ndarray]:
    """Run one node on constant inputs with ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if a is not None else "" for k, a in enumerate(arrays)]
    outs = [f"o{k}" for k in range(len(node.output))]
    n = helper.make_node(node.op_type, names, outs, domain=node.domain)
    n.attribute.extend(node.attribute)
    inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for nm, a in zip(names, arrays) if a is not None]
    g = helper.make_graph([n], "fold", inputs, [helper.make_value_info(o, onnx.TypeProto()) for o in outs])
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    feeds = {nm: a for nm, a in zip(names, arrays) if a is not None}
    res = ReferenceEvaluator(m).run(None, feeds)
    return [np.asarray(r) for r in res]


def _dims_data(op_type: str, inputs: list[Operand]) -> bool:
    """Is this node computing on symbolic shape values (not merely reading a
    shape argument, like Reshape's target)?"""
    if op_type in ("Concat", "Add", "Sub", "Mul", "Div"):
        return any(isinstance(op, Dims) for op in inputs)
    return bool(inputs) and isinstance(inputs[0], Dims)


class _Importer:
    """One import: the builder, the operand environment and the model's opset."""

    def __init__(self, model: onnx.ModelProto, name: str, where: str,
                 constants: Mapping[str, np.ndarray] | None = None) -> None:
        self.model = model
        self.constants = dict(constants or {})
        self.where = where
        self.opset = default_opset(model)
        self.b = GraphBuilder(name)
        self.env: dict[str, Operand] = {}
        inits = {t.name for t in model.graph.initializer}
        self.input_names = frozenset(v.name for v in model.graph.input
                                     if v.name not in inits and v.name not in self.constants)

    def run(self) -> Graph:
        g = self.model.graph
        inits = {t.name for t in g.initializer}
        for t in g.initializer:
            self.env[t.name] = numpy_helper.to_array(t)
        for v in g.input:
            if v.name in self.constants:
                self.env[v.name] = np.asarray(self.constants[v.name])
                continue
            if v.name in inits:
                continue  # IR < 4 lists initializers as inputs too
            tt = v.type.tensor_type
            if not v.type.HasField("tensor_type"):
                raise UnsupportedError(f"{self.where}: input {v.name!r} is not a tensor "
                                       "(sequences, maps and optionals are not supported)")
            dtype = onnx_dtype(tt.elem_type, f"{self.where}: input {v.name!r}")
            self.env[v.name] = Tensor(self.b.input(v.name, dtype, _input_dims(v)))
        for k, node in enumerate(g.node):
            self._node(k, node)
        outs = []
        for v in g.output:
            op = self.env.get(v.name)
            if isinstance(op, Tensor):
                outs.append(op.name)
            elif isinstance(op, np.ndarray):
                outs.append(self._const(v.name, op))
            else:
                raise UnsupportedError(f"{self.where}: output {v.name!r} is a shape with symbolic "
                                       f"dims {list(op.dims) if isinstance(op, Dims) else op}")
        return self.b.build(*outs)

    def _const(self, name: str, arr: np.ndarray) -> str:
        try:
            dtype_of(arr.dtype)
        except ValueError:
            raise UnsupportedError(f"{self.where}: constant {name!r} has dtype {arr.dtype}, "
                                   "which tensoropt does not support") from None
        return self.b.const(name, arr)

    def _where(self, k: int, node: onnx.NodeProto) -> str:
        label = node.name or (node.output[0] if node.output else f"#{k}")
        return f"{self.where}: {node.op_type} node {label!r} (opset {self.opset})"

    def _node(self, k: int, node: onnx.NodeProto) -> None:
        where = self._where(k, node)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedError(f"{where}: op {node.domain}.{node.op_type} is outside the default "
                                   "ONNX domain")
        attrs = _attrs(node, where)
        for n in node.input:
            if n and n not in self.env:
                raise InputFileError(f"{where}: input {n!r} is not defined before the node")
        inputs: list[Operand] = [self.env[n] if n else None for n in node.input]
        outs = self._convert(node, attrs, inputs, where)
        for name, op in zip(node.output, outs):
            if name:
                self.env[name] = normalize(op)

    def _convert(self, node: onnx.NodeProto, attrs: dict[str, object], inputs: list[Operand],
                 where: str) -> list[Operand]:
        t = node.op_type
        if t == "Constant":
            return [_constant(node, attrs, where)]
        given = [op for op in inputs if op is not None]
        if t == "ConstantOfShape" and all(isinstance(op, np.ndarray) for op in given):
            value = attrs.get("value", np.zeros(1, np.float32))
            shape = tuple(int(d) for d in np.asarray(given[0]).reshape(-1))
            return [np.full(shape, np.asarray(value).reshape(-1)[0], dtype=np.asarray(value).dtype)]
        if given and t not in _NO_FOLD and all(isinstance(op, np.ndarray) for op in given):
            try:
                return list(_fold(node, [op if isinstance(op, np.ndarray) else None for op in inputs],
                                  self.model))
            except Exception:
                pass  # the converter below gives the precise error (or handles it)
        cx = Ctx(self.b, node, inputs, self.opset, where, attrs, self.env, self.input_names)
        if t in DIMS_OPS and _dims_data(t, inputs):
            return DIMS_OPS[t](cx)
        conv = CONVERTERS.get(t)
        if conv is None:
            raise UnsupportedError(f"{where}: unsupported op {t}")
        try:
            return list(conv(cx))
        except NeedsInputValueError:
            raise
        except TensoroptError as e:
            msg = str(e)
            if msg.startswith(self.where):
                raise
            raise type(e)(f"{where}: {msg}") from None


def from_onnx(model: onnx.ModelProto | str | os.PathLike[str], *, name: str | None = None,
              where: str = "<model>", constants: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Import an ONNX model (a ``ModelProto`` or a path) as a Graph.

    ``constants`` binds graph inputs to fixed values: they become constants,
    not inputs (for models that feed shape arguments, such as Reshape's
    target, as inputs; see :mod:`tensoropt.backend`).
    """
    if not isinstance(model, onnx.ModelProto):
        return load_onnx(model, name=name)
    model = _checked(model, where)
    gname = name or symbol_name(model.graph.name or "onnx")
    return _Importer(model, gname, where, constants).run()
