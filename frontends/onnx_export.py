"""Graph -> ONNX export: :func:`to_onnx` builds a ``ModelProto``, :func:`save_onnx` writes it.

This module is the driver: it checks the opset and the weights' size, turns
constants into initializers, hands every node to its emitter, declares the
graph's inputs, outputs and value infos, and runs the ONNX checker. The
per-node work lives beside it:

- :mod:`tensoropt.frontends.onnx_export_emit`: naming and emission shared by
  all of the export (one emitter per IR node), and the dtype tables.
- :mod:`tensoropt.frontends.onnx_export_ops`: registry ops go through
  :data:`RULES`, one small function per op name that emits the ONNX node(s).
- :mod:`tensoropt.frontends.onnx_export_expr`: ``expr`` nodes compiled from
  their Expr into ONNX ops, as local functions or inline.

What the model looks like (so a user recognizes their graph in Netron):

- Every IR tensor keeps its name as the ONNX value name; graph inputs keep
  their symbolic dims as ``dim_param`` with the symbol's name; constants
  become initializers of the same dtype; every tensor gets a typed
  ``value_info``. The node that computes an IR tensor is named after it;
  helper nodes and values are named ``<tensor>/<what>``.
- Registry ops whose ONNX twin does not exist at the requested opset are
  decomposed (``gelu`` below opset 20) or refused with an
  :class:`UnsupportedError` that names the node and says why.
- ``expr`` nodes become Gather, Einsum, Reduce* and elementwise ops, each
  expr node as an ONNX local function in the ``tensoropt`` domain
  (onnxruntime inlines them), or inline with ``local_functions=False``.

Invariants of the result: it passes ``onnx.checker.check_model(full_check=True)``
(strict shape inference), or :func:`to_onnx` raises a one-line
:class:`TensoroptError`; its outputs equal :func:`tensoropt.interp.run_graph`
up to floating-point rounding. Supported opsets: ``MIN_OPSET`` to the newest
one the installed ``onnx`` knows (onnxruntime 1.31 runs up to 26).

Refused here: opsets out of range, constants without data, and weights of
2 GiB or more (that needs ONNX external data). What a node cannot become is
refused by its rule or by the Expr compiler (see their modules), with an
:class:`UnsupportedError` naming the node.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
from onnx import FunctionProto, ModelProto, TensorProto, helper, numpy_helper

from tensoropt.atomic import atomic_write
from tensoropt.errors import TensoroptError, UnsupportedError
from tensoropt.ir.expr import Scope, tensor_names
from tensoropt.ir.graph import Attrs, Graph, Node
from tensoropt.ir.types import TensorType
from tensoropt.ops import REGISTRY

from .onnx_export_emit import DOMAIN, ONNX_DTYPE, Emitter, Names, Sink
from .onnx_export_expr import emit_expr
from .onnx_export_ops import RULES, OpCtx

__all__ = ["DOMAIN", "MAX_OPSET", "MIN_OPSET", "RULES", "save_onnx", "to_onnx"]

#: 18 is the first opset where every reduction takes its axes as an input,
#: so one rule per op suffices from here on.
MIN_OPSET = 18
MAX_OPSET = onnx.defs.onnx_opset_version()
#: protobuf cannot serialize a message of 2 GiB or more.
_PROTO_LIMIT = 2**31 - 1


def _value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    # Symbolic dims keep their names: ONNX reads equal dim_params as equal sizes.
    return helper.make_tensor_value_info(name, ONNX_DTYPE[t.dtype], list(t.shape))


def _check_opset(opset: int) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError(f"cannot export to ONNX opset {opset!r}: tensoropt exports opsets "
                               f"{MIN_OPSET} to {MAX_OPSET} (the newest this onnx {onnx.__version__} knows)")


def _initializers(graph: Graph) -> list[TensorProto]:
    out = []
    for c in graph.constants:
        if c.name not in graph.weights:
            raise UnsupportedError(f"graph {graph.name}: constant %{c.name} has no data "
                                   "(load the graph with its .npz weights to export it)")
        out.append(numpy_helper.from_array(np.array(graph.weights[c.name], order="C"), c.name))
    return out


def to_onnx(graph: Graph, *, opset: int = 18, local_functions: bool = True) -> ModelProto:
    """``graph`` as a checked ONNX model at ``opset`` (see the module docstring).

    ``local_functions=False`` inlines ``expr`` nodes into the main graph, for
    consumers that do not support ONNX local functions.

    Raises :class:`VerifyError` for a graph that does not verify,
    :class:`UnsupportedError` naming the node (and why) for anything ONNX
    cannot express at ``opset``, and :class:`TensoroptError` if the model
    fails the ONNX checker.
    """
    from tensoropt.ir.verify import verify

    _check_opset(opset)
    verify(graph, REGISTRY)
    weight_bytes = sum(int(a.nbytes) for a in graph.weights.values())
    if weight_bytes >= _PROTO_LIMIT:
        raise UnsupportedError(f"graph {graph.name} has {weight_bytes / 2**30:.1f} GiB of weights; "
                               "ONNX models over 2 GiB need external data, which is not supported yet")
    types = MappingProxyType({k: v.type for k, v in graph.values().items()})
    values, node_names, fn_names = Names(types), Names(), Names()
    sink = Sink(in_function=False, initializers=_initializers(graph))
    functions: list[FunctionProto] = []
    for node in graph.nodes:
        em = Emitter(sink, values, node_names, node.outputs[0].name, graph.where(node), opset, types)
        if node.op == "expr":
            try:
                emit_expr(node, em, graph, local_functions, functions, fn_names)
            except RecursionError:  # the compiler recurses over the Expr tree
                raise em.refuse("its Expr is nested too deeply to export") from None
            continue
        rule = RULES.get(node.op)
        if rule is None:
            raise em.refuse(f"op {node.op!r} has no ONNX export rule")

        def lower(scope: Scope, node: Node = node, em: Emitter = em) -> None:
            lowered = Node("expr", tensor_names(scope), node.outputs, Attrs(), scope)
            emit_expr(lowered, em, graph, local_functions, functions, fn_names, kind=node.op)

        rule(OpCtx(node, REGISTRY[node.op].with_defaults(node.attrs), em, lower))
    outputs = set(graph.outputs)
    g = helper.make_graph(
        sink.nodes, graph.name,
        [_value_info(v.name, v.type) for v in graph.inputs],
        # A tensor returned twice is listed twice: the checker and onnxruntime accept that.
        [_value_info(v.name, v.type) for v in graph.output_values],
        initializer=sink.initializers,
        value_info=[_value_info(v.name, v.type) for n in graph.nodes for v in n.outputs
                    if v.name not in outputs],
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(DOMAIN, 1)] if functions else [])
    model = helper.make_model(g, opset_imports=opsets, functions=functions,
                              producer_name="tensoropt", producer_version=_version())
    # The lowest IR version that holds this opset (and local functions, from
    # IR 8): newer runtimes read old IR versions, not the other way round.
    model.ir_version = max(8, helper.find_min_ir_version_for(list(model.opset_import), True))
    _check(model, graph.name, opset)
    return model


def _version() -> str:
    from tensoropt import __version__

    return __version__


def _check(model: ModelProto, graph_name: str, opset: int) -> None:
    """Run the full ONNX checker; its failures become one-line TensoroptErrors."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises ValidationError, InferenceError, ValueError, RuntimeError
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise TensoroptError(f"graph {graph_name}: the exported ONNX model (opset {opset}) fails "
                             f"onnx.checker: {lines[0] if lines else type(e).__name__}") from e


def save_onnx(graph: Graph, path: str | os.PathLike[str], *, opset: int = 18,
              local_functions: bool = True) -> None:
    """Export ``graph`` (:func:`to_onnx`) and write it to ``path`` atomically.

    The model is built and checked before the file is touched, and written
    through a temporary file renamed into place: on any failure ``path`` is
    left as it was (absent if it was absent). Raises what :func:`to_onnx`
    raises, or OSError (naming the path) when it cannot be written.
    """
    model = to_onnx(graph, opset=opset, local_functions=local_functions)
    data = model.SerializeToString()
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
