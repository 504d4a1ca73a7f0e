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
computation becomes nodes (see :mod:`.onnx_context`). Folding is bounded: a
value is computed only when its size, known from ONNX's shape inference on the
node *before* anything is allocated, fits the import's
:class:`~.onnx_context.FoldBudget`; a larger one stays a run-time op.

Invariants:
- Weights stay NumPy arrays with their ONNX dtype; nothing is pickled.
- External data is read only from files inside the model's own directory.
- Every failure is a :class:`TensoroptError` naming the file, the node, its op
  and the opset; nothing from protobuf or onnx escapes as a traceback.
- Values computed at import time are bounded whatever sizes the file
  declares: each by :data:`~.onnx_context.FOLD_MAX_BYTES` (or by the bytes of
  the arrays it is computed from, when larger), all together by
  :data:`~.onnx_context.FOLD_TOTAL_BYTES` or
  :data:`~.onnx_context.FOLD_WEIGHTS_FACTOR` times the file's initializers.
  (ONNX's reference evaluator may need temporaries beyond a fold's output;
  its failures, MemoryError included, leave the node to its converter.)
"""

from __future__ import annotations

import math
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
from .onnx_context import (CONVERTERS, FOLD_TOTAL_BYTES, FOLD_WEIGHTS_FACTOR, Ctx, Dims, FoldBudget, Operand,
                           Tensor, format_bytes, format_type, nbytes_of, normalize, onnx_dtype, symbol_name)
from .onnx_dims import DIMS_OPS

#: models below this opset are converted up to it (one Softmax/Reshape semantics).
CANONICAL_OPSET = 13

#: ops never folded at import time even with constant inputs (results are random).
_NO_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                      "Bernoulli", "Multinomial"})

#: ops whose converter computes constant inputs itself, within the fold budget
#: (the generic fold below would first ask ONNX for a model and an evaluator).
_CONVERTER_FOLDS = frozenset({"ConstantOfShape"})


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
    # math.prod: dims are int64 and a hostile product must not wrap to a small one
    big = [t for t in model.graph.initializer if math.prod(int(d) for d in t.dims) > _SKELETON_MIN]
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


#: fold inputs up to this many elements are given to ONNX as initializers, so
#: that its shape inference reads their values (a shape, a Range bound, Tile's
#: repeats, Resize's scales: all short vectors); larger ones go in as typed inputs.
_FOLD_VALUE_MAX = 4096


def _fold_model(node: onnx.NodeProto, arrays: list[np.ndarray | None],
                model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-node model of ``node`` on ``arrays`` and its feeds (the large inputs)."""
    names = [f"i{k}" if a is not None else "" for k, a in enumerate(arrays)]
    outs = [f"o{k}" for k in range(len(node.output))]
    n = helper.make_node(node.op_type, names, outs, domain=node.domain)
    n.attribute.extend(node.attribute)
    given = [(nm, a) for nm, a in zip(names, arrays) if a is not None]
    inits = [numpy_helper.from_array(a, nm) for nm, a in given if a.size <= _FOLD_VALUE_MAX]
    feeds = {nm: a for nm, a in given if a.size > _FOLD_VALUE_MAX}
    inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for nm, a in feeds.items()]
    g = helper.make_graph([n], "fold", inputs, [helper.make_value_info(o, onnx.TypeProto()) for o in outs],
                          initializer=inits)
    # IR >= 4: before it, shape inference ignores initializers not also listed as inputs
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, 4))
    return m, feeds


def _fold_outputs(m: onnx.ModelProto, arrays: list[np.ndarray | None]) -> list[tuple[np.dtype, tuple[int, ...]]] | None:
    """Each output's dtype and an upper bound of its shape, from ONNX's shape
    inference on the one-node model (which reads the small inputs' values), or
    None when some output's rank or dtype is unknown.

    A dim that inference leaves unknown is data-dependent (NonZero, Unique,
    Compress: their outputs count elements of an input), so it is bounded by
    the largest input's element count.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:
        return None
    bound = max((a.size for a in arrays if a is not None), default=1)
    out: list[tuple[np.dtype, tuple[int, ...]]] = []
    for v in inferred.graph.output:
        tt = v.type.tensor_type
        if not v.type.HasField("tensor_type") or not tt.elem_type or not tt.HasField("shape"):
            return None
        try:
            dt = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:
            return None
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else bound for d in tt.shape.dim)
        if any(d < 0 for d in shape):
            return None
        out.append((dt, shape))
    return out


def _fold(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a one-node model (see :func:`_fold_model`) with ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

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
                 constants: Mapping[str, np.ndarray] | None = None, budget: FoldBudget | None = None) -> None:
        self.model = model
        self.constants = dict(constants or {})
        self.where = where
        self.opset = default_opset(model)
        self.b = GraphBuilder(name)
        self.env: dict[str, Operand] = {}
        self.budget = budget if budget is not None else FoldBudget()
        self.default_budget = budget is None
        inits = {t.name for t in model.graph.initializer}
        self.input_names = frozenset(v.name for v in model.graph.input
                                     if v.name not in inits and v.name not in self.constants)

    def run(self) -> Graph:
        g = self.model.graph
        inits = {t.name for t in g.initializer}
        for t in g.initializer:
            self.env[t.name] = numpy_helper.to_array(t)
        if self.default_budget:
            # the weights the file really holds (decoded, not declared dims)
            held = sum(int(a.nbytes) for a in self.env.values() if isinstance(a, np.ndarray))
            self.budget.total_bytes = max(FOLD_TOTAL_BYTES, FOLD_WEIGHTS_FACTOR * held)
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
        over_budget: str | None = None
        if (given and t not in _NO_FOLD and t not in _CONVERTER_FOLDS
                and all(isinstance(op, np.ndarray) for op in given)):
            folded, over_budget = self._fold(node, inputs)
            if folded is not None:
                return folded
        cx = Ctx(self.b, node, inputs, self.opset, where, attrs, self.env, self.input_names, self.budget)
        if over_budget is not None:
            # Too big to compute now: the converter makes it a run-time op, or
            # (an op with no run-time form, such as Range) the budget is the reason.
            try:
                return self._convert_with(cx, t, inputs, where)
            except NeedsInputValueError:
                raise
            except TensoroptError as e:
                raise UnsupportedError(f"{where}: {over_budget}; "
                                       f"{_first_line(e).removeprefix(where + ': ')}") from None
        return self._convert_with(cx, t, inputs, where)

    def _fold(self, node: onnx.NodeProto, inputs: list[Operand]) -> tuple[list[Operand] | None, str | None]:
        """``node``'s outputs computed now (None when it cannot be), and why not
        when the reason is the budget: the output sizes are checked before any
        evaluation, and what was computed is charged to the budget."""
        arrays = [op if isinstance(op, np.ndarray) else None for op in inputs]
        try:
            m, feeds = _fold_model(node, arrays, self.model)
        except Exception:
            return None, None  # the converter below gives the precise error
        outs = _fold_outputs(m, arrays)
        if outs is None:
            return None, None  # unknown output types: not computed blindly
        size = sum(nbytes_of(shape, dt) for dt, shape in outs)
        why = self.budget.refusal(size, inputs=sum(int(a.nbytes) for a in arrays if a is not None))
        if why is not None:
            what = ", ".join(format_type(dt, shape) for dt, shape in outs)
            return None, f"declares {what} ({format_bytes(size)}), {why}"
        try:
            res = _fold(m, feeds)
        except Exception:
            return None, None  # the converter below gives the precise error (or handles it)
        self.budget.take(sum(int(r.nbytes) for r in res))
        return list(res), None

    def _convert_with(self, cx: Ctx, t: str, inputs: list[Operand], where: str) -> list[Operand]:
        if t in DIMS_OPS and _dims_data(t, inputs):
            return list(DIMS_OPS[t](cx))
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
              where: str = "<model>", constants: Mapping[str, np.ndarray] | None = None,
              fold_budget: FoldBudget | None = None) -> Graph:
    """Import an ONNX model (a ``ModelProto`` or a path) as a Graph.

    ``constants`` binds graph inputs to fixed values: they become constants,
    not inputs (for models that feed shape arguments, such as Reshape's
    target, as inputs; see :mod:`tensoropt.backend`). ``fold_budget`` bounds
    the values computed at import time (default: the module's limits, the
    total raised to :data:`~.onnx_context.FOLD_WEIGHTS_FACTOR` times the
    initializers' bytes when that is more); it records what was used.
    """
    if not isinstance(model, onnx.ModelProto):
        return load_onnx(model, name=name)
    model = _checked(model, where)
    gname = name or symbol_name(model.graph.name or "onnx")
    return _Importer(model, gname, where, constants, fold_budget).run()
