"""PyTorch frontend: ``torch.export`` programs to tensoropt graphs.

Entry points: :func:`from_module` (export, then convert), :func:`from_exported`
(convert an :class:`~torch.export.ExportedProgram`) and :func:`load_pt2` (a
``.pt2`` archive written by ``torch.export.save``).

Invariants of the conversion:

- The program is first lowered to the core ATen op set
  (``ep.run_decompositions()``); each FX node is then converted by one entry
  of :data:`RULES`, a table from ATen overload name (``aten.add.Tensor``) or
  packet name (``aten.add``) to a small function. An op without a rule is an
  :class:`UnsupportedError` naming the op and the node.
- Every node whose inputs are all known at import time (parameters, buffers,
  lifted constants, results of earlier such nodes, Python numbers) and whose
  shape is static is evaluated right away with torch itself and becomes a
  constant. Masks built with ``arange``/``full``/comparisons and transposed
  weights therefore never reach the graph. Constants enter the graph only when
  a converted node reads them, with their own dtype.
- User inputs become graph inputs named after their FX placeholders (the
  ``forward`` argument names); outputs keep the program's order. Only tensors
  cross the boundary.
- A ``torch.export.Dim`` becomes a symbolic dim named after the ``Dim`` when
  known (``dim_names``, or :func:`from_module`'s ``dynamic_shapes``), else after
  torch's symbol (``s77``). A shape holding a derived size (``s0 + 1``,
  ``2*s0``) cannot be written in the IR: :class:`UnsupportedError`.
- Integer tensors that depend only on symbolic sizes (``arange(seq)`` and the
  index tensors derived from it) are tracked symbolically as affine functions
  of their position (:class:`Affine`), so that indexing with them becomes an
  ``expr`` node with affine reads instead of a data-dependent gather.
- Every converted node's type is checked against torch's own metadata for the
  node; a disagreement, like a type or shape rule rejecting the converted op,
  is a :class:`ShapeError` that starts with the node's name.
"""

from __future__ import annotations

import inspect
import math
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import ConstantArgument, InputKind, OutputKind, TensorArgument

from tensoropt.builder import GraphBuilder
from tensoropt.errors import InputFileError, ShapeError, TensoroptError, UnsupportedError
from tensoropt.ir.expr import Access, Const, Expr, Scope, call
from tensoropt.ir.graph import Graph
from tensoropt.ir.types import DTYPES as IR_DTYPES
from tensoropt.ir.types import Dim, Shape, TensorType, is_symbol
from tensoropt.ops import REGISTRY
from tensoropt.ops.common import bcast_index, lin, pointwise, trav
from tensoropt.ops.shapes import broadcast

__all__ = ["RULES", "Affine", "from_exported", "from_module", "load_pt2"]

#: torch dtype -> tensoropt dtype. Anything else (bfloat16, complex, ...) is unsupported.
DTYPES: dict[torch.dtype, str] = {
    torch.float32: "f32", torch.float64: "f64", torch.float16: "f16",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8",
    torch.uint8: "u8", torch.bool: "bool",
}
_TORCH_DTYPES = {v: k for k, v in DTYPES.items()}

DimNames = Mapping[str, Mapping[int, str]]


# -- public API ----------------------------------------------------------------------


def from_module(module: torch.nn.Module, example_inputs: tuple, dynamic_shapes: Any = None,
                name: str | None = None, *, example_kwargs: Mapping[str, Any] | None = None) -> Graph:
    """Export ``module`` with ``torch.export`` (non-strict) and convert it.

    The module runs in eval mode during export (its training flag is restored
    afterwards). ``dynamic_shapes`` is passed to ``torch.export.export``; when
    it is a dict keyed by ``forward`` argument names, or a tuple in argument
    order, each ``Dim`` names its symbolic dim in the graph. An export failure
    is an :class:`UnsupportedError` carrying torch's first message line.
    """
    kwargs = dict(example_kwargs or {})
    was_training = module.training
    module.eval()
    try:
        ep = torch.export.export(module, tuple(example_inputs), kwargs,
                                 dynamic_shapes=dynamic_shapes, strict=False)
    except TensoroptError:
        raise
    except Exception as e:  # torch raises many types here; all mean "cannot export"
        raise UnsupportedError(f"torch frontend: torch.export failed: {_first_line(e)}") from e
    finally:
        module.train(was_training)
    names = _dim_names_from_spec(module, dynamic_shapes)
    return from_exported(ep, name or type(module).__name__, dim_names=names)


def from_exported(ep: ExportedProgram, name: str = "torch", *,
                  dim_names: DimNames | None = None) -> Graph:
    """Convert an exported program (lowered to core ATen first) to a Graph.

    ``dim_names`` names symbolic dims by user input and axis
    (``{"x": {0: "batch"}}``); unnamed symbols keep torch's name (``s77``).
    """
    try:
        ep = ep.run_decompositions()
    except Exception as e:  # a torch failure, not ours: report it on one line
        raise UnsupportedError(f"torch frontend: run_decompositions failed: {_first_line(e)}") from e
    return _Converter(ep, name, dim_names or {}).run()


def load_pt2(path: str | os.PathLike[str]) -> Graph:
    """Load a ``.pt2`` archive written by ``torch.export.save`` and convert it.

    A missing, truncated or foreign file is an :class:`InputFileError` whose
    one-line message starts with the path.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, expected a .pt2 file")
    try:
        ep = torch.export.load(p)
    except Exception as e:  # zipfile, pickle and torch errors alike mean "not a pt2"
        raise InputFileError(f"{p}: not a readable torch.export archive ({_first_line(e)})") from None
    return from_exported(ep, p.stem)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _dim_names_from_spec(module: torch.nn.Module, spec: Any) -> dict[str, dict[int, str]]:
    """``{arg: {axis: Dim name}}`` from a ``dynamic_shapes`` spec.

    Only top-level tensor arguments are named this way (their placeholders
    keep the argument name); nested specs and unnamed hints (``Dim.AUTO``)
    are skipped, so those symbols keep torch's names.
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        by_arg = dict(spec)
    else:
        params = list(inspect.signature(module.forward).parameters)
        by_arg = dict(zip(params, spec))
    out: dict[str, dict[int, str]] = {}
    for arg, sub in by_arg.items():
        if isinstance(sub, Mapping):
            items = list(sub.items())
        elif isinstance(sub, (list, tuple)):
            items = list(enumerate(sub))
        else:
            continue
        for axis, dim in items:
            dname = getattr(dim, "__name__", None)
            if isinstance(axis, int) and isinstance(dname, str) and is_symbol(dname):
                out.setdefault(arg, {})[axis] = dname
    return out


# -- values in the environment ---------------------------------------------------------


@dataclass(eq=False)
class _Const:
    """A tensor known at import time; added to the graph on first use."""

    tensor: torch.Tensor
    name: str
    graph_name: str | None = None


@dataclass(frozen=True)
class Affine:
    """A tensor whose element at position ``p`` is ``offset + sum(coefs[k] * p[k])``.

    Tracks ``arange`` over symbolic sizes (and fills, slices, unsqueezes of it)
    so that indexing with it stays affine. ``offset`` and ``coefs`` are exact
    Python numbers; a non-integer offset is only used for fills.
    """

    shape: Shape
    dtype: str
    offset: int | float
    coefs: tuple[int, ...]

    @property
    def type(self) -> TensorType:
        return TensorType(self.dtype, self.shape)

    def index(self, its: Sequence[Expr]) -> Expr:
        """The value at position ``its`` as an Expr (affine in the iterators)."""
        terms = [(e, c) for e, c in zip(its, self.coefs) if c and not _is_zero(e)]
        return lin(terms, int(self.offset))

    def unsqueeze(self, axis: int) -> Affine:
        return Affine(self.shape[:axis] + (1,) + self.shape[axis:], self.dtype, self.offset,
                      self.coefs[:axis] + (0,) + self.coefs[axis:])

    def squeeze(self, axes: Sequence[int]) -> Affine:
        keep = [k for k in range(len(self.shape)) if k not in axes]
        return Affine(tuple(self.shape[k] for k in keep), self.dtype, self.offset,
                      tuple(self.coefs[k] for k in keep))

    def permute(self, perm: Sequence[int]) -> Affine:
        return Affine(tuple(self.shape[p] for p in perm), self.dtype, self.offset,
                      tuple(self.coefs[p] for p in perm))

    def expand(self, shape: Shape) -> Affine:
        # Broadcast dims always read position 0, so their coefficient is moot: 0.
        lead = len(shape) - len(self.shape)
        coefs = (0,) * lead + tuple(0 if d == 1 and shape[lead + k] != 1 else c
                                    for k, (d, c) in enumerate(zip(self.shape, self.coefs)))
        return Affine(tuple(shape), self.dtype, self.offset, coefs)

    def slice(self, axis: int, start: int, step: int, length: Dim) -> Affine:
        coefs = list(self.coefs)
        coefs[axis] = self.coefs[axis] * step
        shape = list(self.shape)
        shape[axis] = length
        return Affine(tuple(shape), self.dtype, self.offset + self.coefs[axis] * start, tuple(coefs))

    def scale_shift(self, scale: int, shift: int) -> Affine:
        return Affine(self.shape, self.dtype, self.offset * scale + shift,
                      tuple(c * scale for c in self.coefs))

    def scope(self) -> Scope:
        defs, its = trav(self.shape)
        body: Expr = self.index(its) if isinstance(self.offset, int) else Const(float(self.offset))
        return Scope(defs, (), body)


@dataclass(frozen=True)
class _Missing:
    """An output torch computes that tensoropt cannot (pooling indices, ...)."""

    what: str


def _is_zero(e: Expr) -> bool:
    return isinstance(e, Const) and e.value == 0


def _affine_of_const(t: torch.Tensor) -> Affine | None:
    """The affine form of a small integer constant, when it has one."""
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or t.numel() == 0:
        return None
    a = t.detach().to(torch.int64).numpy()
    zero = (0,) * a.ndim
    offset = int(a[zero])
    coefs = []
    for k in range(a.ndim):
        if a.shape[k] > 1:
            at = list(zero)
            at[k] = 1
            coefs.append(int(a[tuple(at)]) - offset)
        else:
            coefs.append(0)
    grid = offset + sum(c * np.arange(n).reshape([-1 if j == k else 1 for j in range(a.ndim)])
                        for k, (c, n) in enumerate(zip(coefs, a.shape)))
    if not np.array_equal(np.broadcast_to(grid, a.shape), a):
        return None
    return Affine(tuple(int(d) for d in a.shape), DTYPES[t.dtype], offset, tuple(coefs))


# -- the converter -------------------------------------------------------------------------

Rule = Callable[["_Converter", dict[str, Any]], Any]

#: ATen overload or packet name -> converter. Filled by :func:`rule` below.
RULES: dict[str, Rule] = {}

#: ops with no value (runtime checks): dropped.
_IGNORED = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default", "aten.sym_constrain_range.default",
    "aten._assert_async.msg", "aten._assert_async.default",
})


def _op_name(target: Any) -> str:
    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def _location(node: fx.Node) -> str:
    """``model.py:42 in forward`` from the node's stack trace, or ''."""
    trace = node.meta.get("stack_trace") or ""
    hits = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', trace)
    if not hits:
        return ""
    path, line, fn = hits[-1]
    return f"{os.path.basename(path)}:{line} in {fn}"


class _Converter:
    """Walks the decomposed FX graph once, filling a GraphBuilder."""

    def __init__(self, ep: ExportedProgram, name: str, dim_names: DimNames) -> None:
        self.ep = ep
        self.b = GraphBuilder(name)
        self.env: dict[fx.Node, Any] = {}
        self.dim_names = dim_names
        self.symbols: dict[str, str] = {}  # torch symbol -> IR dim
        self.node: fx.Node | None = None
        self._scalars: dict[tuple[str, str], str] = {}
        self._casts: dict[tuple[str, str], str] = {}
        self._affines: dict[Affine, str] = {}
        self._const_casts: dict[tuple[int, str], _Const] = {}

    # -- driver ------------------------------------------------------------------------

    def run(self) -> Graph:
        specs = {s.arg.name: s for s in self.ep.graph_signature.input_specs
                 if hasattr(s.arg, "name")}
        outputs: list[str] = []
        for node in self.ep.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                self.env[node] = self.placeholder(node, specs.get(node.name))
            elif node.op == "call_function":
                self.env[node] = self.call(node)
            elif node.op == "output":
                outputs = self.outputs(node)
            else:
                raise UnsupportedError(f"torch frontend: unsupported FX node kind {node.op} "
                                       f"at node %{node.name}")
        return self.b.build(*outputs)

    def placeholder(self, node: fx.Node, spec: Any) -> Any:
        if spec is None:
            raise UnsupportedError(f"torch frontend: placeholder %{node.name} is not in the "
                                   "program's signature")
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            t = self.ep.state_dict.get(spec.target)
            if t is None:  # non-persistent buffers live with the constants
                t = self.ep.constants[spec.target]
            return _Const(t.detach(), spec.target)
        if spec.kind == InputKind.CONSTANT_TENSOR:
            return _Const(self.ep.constants[spec.target].detach(), spec.target)
        if spec.kind != InputKind.USER_INPUT:
            raise UnsupportedError(f"torch frontend: input %{node.name} of kind {spec.kind.name} "
                                   "is not supported (only tensors, parameters, buffers and constants)")
        if isinstance(spec.arg, ConstantArgument):
            return spec.arg.value  # specialized by export (a Python number, None, ...)
        val = node.meta.get("val")
        if not isinstance(spec.arg, TensorArgument) or not isinstance(val, torch.Tensor):
            raise UnsupportedError(f"torch frontend: input %{node.name} is not a tensor "
                                   f"({type(spec.arg).__name__}); only tensor inputs are supported")
        for axis, d in enumerate(val.shape):
            self.name_symbol(d, self.dim_names.get(node.name, {}).get(axis))
        t = self.tensor_type(val)
        return self.b.input(node.name, t.dtype, t.shape)

    def outputs(self, node: fx.Node) -> list[str]:
        specs = self.ep.graph_signature.output_specs
        names: list[str] = []
        for k, (spec, arg) in enumerate(zip(specs, node.args[0])):
            if spec.kind != OutputKind.USER_OUTPUT:
                raise UnsupportedError(
                    f"torch frontend: the program updates {spec.target or 'an input'} in place "
                    f"({spec.kind.name}); tensoropt graphs are pure functions (export in eval mode)")
            value = self.env.get(arg) if isinstance(arg, fx.Node) else arg
            if not isinstance(value, (str, _Const, Affine)):
                raise UnsupportedError(f"torch frontend: output {k} is {_describe(value)}, "
                                       "not a tensor; only tensor outputs are supported")
            out = self.tensor(arg)
            if out in names:  # the IR lists each output once: copy repeats
                out = self.b.op("identity", out, name=f"output{k}")
            names.append(out)
        return names

    def call(self, node: fx.Node) -> Any:
        name = _op_name(node.target)
        val = node.meta.get("val")
        if name in _IGNORED:
            return None
        if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool)):
            return _sym_value(val)  # size arithmetic: sym_size, operator.add, ...
        if self.foldable(node, val):
            return self.fold(node)
        packet = str(node.target.overloadpacket) if isinstance(node.target, torch._ops.OpOverload) else ""
        fn = RULES.get(name) or RULES.get(packet)
        if fn is None:
            where = _location(node)
            raise UnsupportedError(f"torch frontend: unsupported op {name} at node %{node.name}"
                                   + (f" ({where})" if where else ""))
        try:
            out = fn(self, self.args(node))
            self.check(out, val)
        except ShapeError as e:
            raise ShapeError(f"{self.where()}: {e}") from None
        return out

    # -- constant folding -------------------------------------------------------------------

    def foldable(self, node: fx.Node, val: Any) -> bool:
        """All inputs known now, static result, deterministic: evaluate with torch."""
        target = node.target
        if not isinstance(target, torch._ops.OpOverload) or torch.Tag.nondeterministic_seeded in target.tags:
            return False
        leaves = torch.utils._pytree.tree_leaves((node.args, node.kwargs))
        for leaf in leaves:
            if isinstance(leaf, fx.Node):
                v = self.env.get(leaf)
                if not (isinstance(v, _Const) or _is_static_scalar(v) or v is None):
                    return False
        outs = torch.utils._pytree.tree_leaves(val)
        return all(not isinstance(o, torch.Tensor) or all(isinstance(d, int) for d in o.shape)
                   for o in outs)

    def fold(self, node: fx.Node) -> Any:
        def real(a: Any) -> Any:
            if isinstance(a, fx.Node):
                v = self.env[a]
                return v.tensor if isinstance(v, _Const) else v
            return a

        args, kwargs = torch.utils._pytree.tree_map(real, (node.args, node.kwargs))
        with torch.no_grad():
            try:
                out = node.target(*args, **kwargs)
            except Exception as e:  # the program itself fails on its constants
                raise UnsupportedError(f"{self.where()}: evaluating on constants failed: "
                                       f"{_first_line(e)}") from e
        name = self.folded_name(node)
        if isinstance(out, torch.Tensor):
            return _Const(out, name)
        if isinstance(out, (tuple, list)):
            return tuple(_Const(o, f"{name}_{k}") if isinstance(o, torch.Tensor) else o
                         for k, o in enumerate(out))
        return out

    def folded_name(self, node: fx.Node) -> str:
        """``fc.weight.permute`` for a transformed parameter, else the node's name."""
        srcs = [self.env[x] for x in node.all_input_nodes if isinstance(self.env.get(x), _Const)]
        if len(srcs) != 1 or not isinstance(node.target, torch._ops.OpOverload):
            return node.name
        return f"{srcs[0].name}.{node.target.overloadpacket.__name__}"

    # -- arguments ---------------------------------------------------------------------

    def args(self, node: fx.Node) -> dict[str, Any]:
        """Arguments by schema name with defaults filled (``{"self": node, "alpha": 1}``)."""
        target = node.target
        if not isinstance(target, torch._ops.OpOverload):
            return {f"arg{k}": a for k, a in enumerate(node.args)} | dict(node.kwargs)
        out: dict[str, Any] = {}
        for k, s in enumerate(target._schema.arguments):
            if k < len(node.args):
                out[s.name] = node.args[k]
            elif s.name in node.kwargs:
                out[s.name] = node.kwargs[s.name]
            elif s.has_default_value():
                out[s.name] = s.default_value
            else:
                out[s.name] = None
        return out

    def value(self, arg: Any) -> Any:
        """The environment value of ``arg`` (an FX node) or ``arg`` itself."""
        if isinstance(arg, fx.Node):
            return self.env[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        return arg

    def scalar(self, arg: Any) -> int | float | bool | None:
        """A Python number; symbolic sizes used as values are unsupported."""
        v = self.value(arg)
        if isinstance(v, _Const) and v.tensor.numel() == 1:
            return v.tensor.item()
        if v is None or _is_static_scalar(v):
            return v
        raise UnsupportedError(f"{self.where()}: uses the symbolic size {v} as a value; "
                               "only shapes may be symbolic")

    def ints(self, arg: Any) -> list[int]:
        v = self.scalar_list(arg)
        return [int(x) for x in v]

    def scalar_list(self, arg: Any) -> list[Any]:
        if arg is None:
            return []
        if isinstance(arg, (list, tuple)):
            return [self.scalar(a) for a in arg]
        return [self.scalar(arg)]

    def is_tensor(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and isinstance(self.env.get(arg), (str, _Const, Affine))

    def tensor(self, arg: Any, dtype: str | None = None) -> str:
        """The graph tensor for ``arg``, added or cast on demand.

        Python numbers become shared rank-0 constants of ``dtype``.
        """
        v = self.value(arg)
        if isinstance(v, _Missing):
            raise UnsupportedError(f"{self.where()}: reads {v.what}, which tensoropt does not compute")
        if isinstance(v, _Const):
            if dtype is not None and DTYPES.get(v.tensor.dtype) != dtype:
                # converted once at import time, not by a cast node
                key = (id(v), dtype)
                if key not in self._const_casts:
                    self._const_casts[key] = _Const(v.tensor.to(_TORCH_DTYPES[dtype]), f"{v.name}.{dtype}")
                v = self._const_casts[key]
            return self.const(v)
        if isinstance(v, Affine):
            name = self._affines.get(v)
            if name is None:
                base = arg.name if isinstance(arg, fx.Node) else "iota"
                name = self.b.expr(v.scope(), v.dtype, name=base)
                self._affines[v] = name
            return self.cast(name, dtype) if dtype else name
        if isinstance(v, str):
            return self.cast(v, dtype) if dtype else v
        if _is_static_scalar(v):
            if dtype is None:
                raise AssertionError(f"scalar {v!r} needs a dtype")
            return self.scalar_const(v, dtype)
        raise UnsupportedError(f"{self.where()}: expected a tensor, got {_describe(v)}")

    def const(self, c: _Const) -> str:
        if c.graph_name is None:
            dtype = DTYPES.get(c.tensor.dtype)
            if dtype is None:
                raise UnsupportedError(f"{self.where()}: constant {c.name} has unsupported dtype "
                                       f"{c.tensor.dtype}; supported: {_dtype_list()}")
            c.graph_name = self.b.const(c.name, np.ascontiguousarray(c.tensor.detach().cpu().numpy()))
        return c.graph_name

    def scalar_const(self, v: int | float | bool, dtype: str) -> str:
        key = (repr(v), dtype)
        if key not in self._scalars:
            arr = np.asarray(v).astype(IR_DTYPES[dtype])
            self._scalars[key] = self.b.const(f"scalar_{dtype}", arr)
        return self._scalars[key]

    def cast(self, name: str, dtype: str) -> str:
        if self.b.type_of(name).dtype == dtype:
            return name
        key = (name, dtype)
        if key not in self._casts:
            self._casts[key] = self.b.op("cast", name, to=dtype, name=f"{name}.{dtype}")
        return self._casts[key]

    def type_of(self, arg: Any) -> TensorType:
        v = self.value(arg)
        if isinstance(v, _Const):
            return TensorType(_dtype(v.tensor.dtype, self.where()), tuple(int(d) for d in v.tensor.shape))
        if isinstance(v, Affine):
            return v.type
        if isinstance(v, str):
            return self.b.type_of(v)
        raise UnsupportedError(f"{self.where()}: expected a tensor, got {_describe(v)}")

    # -- types, dims and messages ----------------------------------------------------------

    def out_type(self, k: int | None = None) -> TensorType:
        """The type torch gives this node's output (``k``: element of a tuple)."""
        assert self.node is not None
        val = self.node.meta.get("val")
        if k is not None:
            val = val[k]
        return self.tensor_type(val)

    def tensor_type(self, val: torch.Tensor) -> TensorType:
        return TensorType(_dtype(val.dtype, self.where()), tuple(self.dim(d) for d in val.shape))

    def name_symbol(self, d: Any, wanted: str | None) -> None:
        expr = _sym_value(d)
        if isinstance(expr, int) or not getattr(expr, "is_Symbol", False):
            return
        key = str(expr)
        if key not in self.symbols:
            taken = set(self.symbols.values())
            self.symbols[key] = wanted if wanted and wanted not in taken else _ident(key)

    def dim(self, d: Any) -> Dim:
        expr = _sym_value(d)
        if isinstance(expr, int):
            return expr
        if getattr(expr, "is_Symbol", False):
            self.name_symbol(expr, None)
            return self.symbols[str(expr)]
        raise UnsupportedError(f"{self.where()}: has the derived symbolic size {expr}; "
                               "tensoropt dims are ints or single symbols")

    def where(self) -> str:
        """``torch frontend: node %view_3 (aten.view.default, model.py:12 in forward)``."""
        n = self.node
        if n is None:
            return "torch frontend"
        parts = [_op_name(n.target)] if n.op == "call_function" else [n.op]
        if _location(n):
            parts.append(_location(n))
        return f"torch frontend: node %{n.name} ({', '.join(parts)})"

    def check(self, out: Any, val: Any) -> None:
        """The converted value must have the type torch recorded for the node."""
        if isinstance(out, (tuple, list)):
            for k, o in enumerate(out):
                if isinstance(o, (str, _Const, Affine)):
                    self.check(o, val[k])
            return
        if not isinstance(val, torch.Tensor) or not isinstance(out, (str, _Const, Affine)):
            return
        want = self.tensor_type(val)
        got = self.type_of(out)
        if got != want:
            raise ShapeError(f"converted to {got}, but torch says {want}")

    # -- building ------------------------------------------------------------------------

    def sub(self, tag: str) -> str:
        """A name for an intermediate tensor of the current node."""
        assert self.node is not None
        return f"{self.node.name}.{tag}"

    def op(self, op: str, *inputs: str, name: str | None = None, **attrs: Any) -> str:
        assert self.node is not None
        return self.b.op(op, *inputs, name=name or self.node.name, **attrs)

    def expr(self, scope: Scope, dtype: str, name: str | None = None) -> str:
        assert self.node is not None
        return self.b.expr(scope, dtype, name=name or self.node.name)

    def unsupported(self, why: str) -> UnsupportedError:
        return UnsupportedError(f"{self.where()}: {why}")


def _sym_value(v: Any) -> Any:
    """An int for static sizes, else the sympy expression of a SymInt/SymFloat."""
    if isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        e = v.node.expr
        if getattr(e, "is_Integer", False):
            return int(e)
        if getattr(e, "is_Float", False):
            return float(e)
        if e is True or e is False or getattr(e, "is_Boolean", False) and e in (True, False):
            return bool(e)
        return e
    if isinstance(v, (int, float, bool)):
        return v
    e = v
    if getattr(e, "is_Integer", False):
        return int(e)
    return e


def _is_static_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, bool))


def _ident(s: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return out if is_symbol(out) else f"d_{out}"


def _dtype(dt: torch.dtype, where: str) -> str:
    if dt not in DTYPES:
        raise UnsupportedError(f"{where}: dtype {dt} is not supported; supported: {_dtype_list()}")
    return DTYPES[dt]


def _dtype_list() -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in DTYPES)


def _describe(v: Any) -> str:
    if v is None:
        return "None"
    if isinstance(v, _Missing):
        return v.what
    if _is_static_scalar(v):
        return f"the constant {v!r}"
    return f"a {type(v).__name__}"


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Register a converter under ATen overload or packet names."""

    def deco(fn: Rule) -> Rule:
        for n in names:
            if n in RULES:
                raise ValueError(f"torch frontend rule {n} registered twice")
            RULES[n] = fn
        return fn

    return deco


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# -- aliases and dtype changes --------------------------------------------------------------


@rule("aten.clone", "aten.alias", "aten.lift_fresh_copy", "aten.detach", "aten._unsafe_view.default",
      "aten.contiguous")
def _alias(cx: _Converter, a: dict[str, Any]) -> Any:
    # Copies are values in an SSA graph: the FX node simply names the same tensor.
    return cx.value(a["self"])


@rule("getitem")
def _getitem(cx: _Converter, a: dict[str, Any]) -> Any:
    return cx.value(a["arg0"])[a["arg1"]]


@rule("aten._to_copy.default")
def _to_copy(cx: _Converter, a: dict[str, Any]) -> Any:
    to = cx.out_type().dtype
    v = cx.value(a["self"])
    if isinstance(v, Affine) and to != "bool" and isinstance(v.offset, int):
        return Affine(v.shape, to, v.offset, v.coefs)
    return cx.tensor(a["self"], to)


# -- elementwise -------------------------------------------------------------------------------

#: ATen packet -> registry unary op; the input is cast to the output dtype first
#: (torch computes ``exp`` of an int tensor in float).
_UNARY = {
    "aten.relu": "relu", "aten.sigmoid": "sigmoid", "aten.tanh": "tanh", "aten.exp": "exp",
    "aten.log": "log", "aten.sqrt": "sqrt", "aten.rsqrt": "rsqrt", "aten.neg": "neg",
    "aten.abs": "abs", "aten.erf": "erf", "aten.reciprocal": "reciprocal",
}


def _unary(op: str) -> Rule:
    def convert(cx: _Converter, a: dict[str, Any]) -> str:
        return cx.op(op, cx.tensor(a["self"], cx.out_type().dtype))

    return convert


for _packet, _op in _UNARY.items():
    rule(_packet)(_unary(_op))

#: ATen packet -> Expr body for elementwise functions the registry lacks.
_EXPR_UNARY: dict[str, Callable[[Expr], Expr]] = {
    "aten.sin": lambda x: call("sin", x),
    "aten.cos": lambda x: call("cos", x),
    "aten.floor": lambda x: call("floor", x),
    "aten.ceil": lambda x: call("ceil", x),
    "aten.sign": lambda x: call("sign", x),
    "aten.trunc": lambda x: call("sign", x) * call("floor", call("abs", x)),
    # log1p/expm1 lose the extra precision near 0 that the fused functions have.
    "aten.log1p": lambda x: call("log", x + 1.0),
    "aten.expm1": lambda x: call("exp", x) - 1.0,
    "aten.log2": lambda x: call("log", x) * (1.0 / math.log(2.0)),
    "aten.log10": lambda x: call("log", x) * (1.0 / math.log(10.0)),
}


def _expr_map(cx: _Converter, body: Callable[..., Expr], args: Sequence[Any], dtype: str,
              in_dtype: str | None = None) -> str:
    """An ``expr`` node applying ``body`` elementwise (with broadcasting) to ``args``."""
    names = [cx.tensor(x, in_dtype or dtype) for x in args]
    ts = [cx.b.type_of(n) for n in names]
    out = broadcast([t.shape for t in ts])
    return cx.expr(pointwise(names, ts, out, body), dtype)


def _expr_unary(body: Callable[[Expr], Expr]) -> Rule:
    def convert(cx: _Converter, a: dict[str, Any]) -> str:
        return _expr_map(cx, body, [a["self"]], cx.out_type().dtype)

    return convert


for _packet, _body in _EXPR_UNARY.items():
    rule(_packet)(_expr_unary(_body))


@rule("aten.gelu.default")
def _gelu(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("gelu", cx.tensor(a["self"]), approximate=a["approximate"])


@rule("aten.leaky_relu.default")
def _leaky_relu(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("leaky_relu", cx.tensor(a["self"]), alpha=float(cx.scalar(a["negative_slope"]) or 0.0))


@rule("aten.hardtanh.default")
def _hardtanh(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("clip", cx.tensor(a["self"]), min=float(cx.scalar(a["min_val"]) or 0.0),
                 max=float(cx.scalar(a["max_val"]) or 0.0))


@rule("aten.clamp.default")
def _clamp(cx: _Converter, a: dict[str, Any]) -> str:
    lo, hi = cx.scalar(a["min"]), cx.scalar(a["max"])
    x = cx.tensor(a["self"], cx.out_type().dtype)
    return cx.op("clip", x, min=-math.inf if lo is None else float(lo),
                 max=math.inf if hi is None else float(hi))


@rule("aten.clamp.Tensor")
def _clamp_tensor(cx: _Converter, a: dict[str, Any]) -> str:
    dt = cx.out_type().dtype
    x = cx.tensor(a["self"], dt)
    if a["min"] is not None:
        x = cx.op("max", x, cx.tensor(a["min"], dt), name=cx.sub("lo") if a["max"] is not None else None)
    if a["max"] is not None:
        x = cx.op("min", x, cx.tensor(a["max"], dt))
    return x


def _promote(cx: _Converter, x: Any, y: Any) -> str:
    """torch's result dtype of a binary op on ``x`` and ``y`` (tensors or numbers)."""

    def rep(v: Any) -> Any:
        if cx.is_tensor(v):
            t = cx.type_of(v)
            return torch.empty((0,) if t.rank else (), dtype=_TORCH_DTYPES[t.dtype])
        return cx.scalar(v)

    return DTYPES[torch.result_type(rep(x), rep(y))]


#: arithmetic with bool operands, as torch defines it (add is or, mul is and).
_BOOL_ARITH = {"add": "max", "mul": "min", "max": "max", "min": "min"}


def _affine_arith(cx: _Converter, op: str, x: Any, y: Any, alpha: Any) -> Affine | None:
    """``affine op int`` stays affine (arange + 1, 2 * arange)."""
    v = cx.value(x)
    if not isinstance(v, Affine) or cx.is_tensor(y) or alpha != 1:
        return None
    c = cx.scalar(y)
    if isinstance(c, bool) or not isinstance(c, int) or v.dtype not in ("i64", "i32"):
        return None
    return {"add": lambda: v.scale_shift(1, c), "sub": lambda: v.scale_shift(1, -c),
            "mul": lambda: v.scale_shift(c, 0)}.get(op, lambda: None)()


def _arith(op: str) -> Rule:
    def convert(cx: _Converter, a: dict[str, Any]) -> Any:
        x, y = a["self"], a["other"]
        alpha = cx.scalar(a.get("alpha", 1))
        affine = _affine_arith(cx, op, x, y, alpha)
        if affine is not None:
            return affine
        dt = cx.out_type().dtype
        if dt == "bool":
            if op not in _BOOL_ARITH:
                raise cx.unsupported(f"{op} of bool tensors")
            return cx.op(_BOOL_ARITH[op], cx.tensor(x, dt), cx.tensor(y, dt))
        ys = cx.tensor(y, dt)
        if alpha not in (None, 1):
            ys = cx.op("mul", ys, cx.scalar_const(alpha, dt), name=cx.sub("alpha"))
        return cx.op(op, cx.tensor(x, dt), ys)

    return convert


for _name in ("add", "sub", "mul"):
    rule(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar")(_arith(_name))
rule("aten.maximum.default")(_arith("max"))
rule("aten.minimum.default")(_arith("min"))


@rule("aten.div.Tensor", "aten.div.Scalar")
def _div(cx: _Converter, a: dict[str, Any]) -> str:
    # True division: integer operands are converted to the float result first.
    dt = cx.out_type().dtype
    return cx.op("div", cx.tensor(a["self"], dt), cx.tensor(a["other"], dt))


@rule("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div_mode(cx: _Converter, a: dict[str, Any]) -> str:
    mode, dt = a["rounding_mode"], cx.out_type().dtype
    if mode is None:
        return _div(cx, a)
    if mode == "trunc" and dt != "bool" and not dt.startswith("f") and dt != "u8":
        return cx.op("div", cx.tensor(a["self"], dt), cx.tensor(a["other"], dt))  # truncates ints
    if mode == "trunc":
        body = _EXPR_UNARY["aten.trunc"]
        return _expr_map(cx, lambda x, y: body(x / y), [a["self"], a["other"]], dt)
    # floor: exact in the body's float64 for integers below 2**53
    return _expr_map(cx, lambda x, y: call("floor", x / y), [a["self"], a["other"]], dt)


@rule("aten.remainder.Tensor", "aten.remainder.Scalar")
def _remainder(cx: _Converter, a: dict[str, Any]) -> str:
    # Python's modulo: the result takes the divisor's sign.
    return _expr_map(cx, lambda x, y: x - call("floor", x / y) * y, [a["self"], a["other"]],
                     cx.out_type().dtype)


@rule("aten.fmod.Tensor", "aten.fmod.Scalar")
def _fmod(cx: _Converter, a: dict[str, Any]) -> str:
    # C's fmod: the result takes the dividend's sign.
    trunc = _EXPR_UNARY["aten.trunc"]
    return _expr_map(cx, lambda x, y: x - trunc(x / y) * y, [a["self"], a["other"]], cx.out_type().dtype)


@rule("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def _pow(cx: _Converter, a: dict[str, Any]) -> str:
    dt = cx.out_type().dtype
    return cx.op("pow", cx.tensor(a["self"], dt), cx.tensor(a["exponent"], dt))


@rule("aten.where.self")
def _where(cx: _Converter, a: dict[str, Any]) -> str:
    dt = cx.out_type().dtype
    return cx.op("where", cx.tensor(a["condition"], "bool"), cx.tensor(a["self"], dt),
                 cx.tensor(a["other"], dt))


# -- comparisons and logic --------------------------------------------------------------------


def _compare(kind: str) -> Rule:
    """eq/ne/lt/gt/le/ge in the operands' promoted dtype.

    ``le`` is ``less or equal`` (not ``not greater``) so that NaN compares
    false, as in torch; ``ne`` is ``not equal`` so that NaN != NaN.
    """

    def convert(cx: _Converter, a: dict[str, Any]) -> str:
        dt = _promote(cx, a["self"], a["other"])
        x, y = cx.tensor(a["self"], dt), cx.tensor(a["other"], dt)
        if kind in ("eq", "lt", "gt"):
            return cx.op({"eq": "equal", "lt": "less", "gt": "greater"}[kind], x, y)
        if kind == "ne":
            return _not(cx, cx.op("equal", x, y, name=cx.sub("eq")))
        strict = cx.op("less" if kind == "le" else "greater", x, y, name=cx.sub(kind[0] + "t"))
        return cx.op("max", strict, cx.op("equal", x, y, name=cx.sub("eq")))

    return convert


for _kind in ("eq", "ne", "lt", "gt", "le", "ge"):
    rule(f"aten.{_kind}.Tensor", f"aten.{_kind}.Scalar")(_compare(_kind))


def _not(cx: _Converter, x: str, name: str | None = None) -> str:
    return cx.op("equal", x, cx.scalar_const(False, "bool"), name=name)


@rule("aten.logical_not.default", "aten.bitwise_not.default")
def _logical_not(cx: _Converter, a: dict[str, Any]) -> str:
    if cx.type_of(a["self"]).dtype != "bool" and _op_name(cx.node.target).startswith("aten.bitwise"):
        raise cx.unsupported("bitwise_not of integers")
    return _not(cx, cx.tensor(a["self"], "bool"))


def _logic(op: str, bitwise: bool) -> Rule:
    """and/or of truth values: min/max on bool (nonzero is true)."""

    def convert(cx: _Converter, a: dict[str, Any]) -> str:
        if bitwise and cx.out_type().dtype != "bool":
            raise cx.unsupported("bitwise logic on integers")
        return cx.op(op, cx.tensor(a["self"], "bool"), cx.tensor(a["other"], "bool"))

    return convert


rule("aten.logical_and.default")(_logic("min", False))
rule("aten.logical_or.default")(_logic("max", False))
rule("aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar")(_logic("min", True))
rule("aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar")(_logic("max", True))


# -- contractions ----------------------------------------------------------------------------


@rule("aten.mm.default")
def _mm(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("matmul", cx.tensor(a["self"]), cx.tensor(a["mat2"]))


@rule("aten.bmm.default")
def _bmm(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("batch_matmul", cx.tensor(a["self"]), cx.tensor(a["mat2"]))


@rule("aten.addmm.default")
def _addmm(cx: _Converter, a: dict[str, Any]) -> str:
    # beta * self + alpha * (mat1 @ mat2) is exactly ONNX Gemm with C = self.
    return cx.op("gemm", cx.tensor(a["mat1"]), cx.tensor(a["mat2"]), cx.tensor(a["self"]),
                 alpha=float(cx.scalar(a["alpha"])), beta=float(cx.scalar(a["beta"])))


# -- neural-network ops ----------------------------------------------------------------------


def _pair(v: Sequence[int], default: int) -> list[int]:
    v = list(v) or [default]
    return v * 2 if len(v) == 1 else v


@rule("aten.convolution.default")
def _convolution(cx: _Converter, a: dict[str, Any]) -> str:
    if a["transposed"]:
        raise cx.unsupported("transposed convolution (no conv_transpose op in the registry)")
    x, w = a["input"], a["weight"]
    rank = cx.type_of(x).rank
    stride, pad, dil = cx.ints(a["stride"]), cx.ints(a["padding"]), cx.ints(a["dilation"])
    bias = [cx.tensor(a["bias"])] if a["bias"] is not None else []
    group = int(cx.scalar(a["groups"]))
    if rank == 4:
        return cx.op("conv2d", cx.tensor(x), cx.tensor(w), *bias, strides=_pair(stride, 1),
                     pads=_pair(pad, 0) * 2, dilations=_pair(dil, 1), group=group)
    if rank != 3:
        raise cx.unsupported(f"{rank - 2}-D convolution (only 1-D and 2-D map to conv2d)")
    # 1-D: a 2-D convolution over a unit height.
    x2 = cx.op("unsqueeze", cx.tensor(x), axes=[2], name=cx.sub("x2d"))
    w2 = cx.op("unsqueeze", cx.tensor(w), axes=[2], name=cx.sub("w2d"))
    y = cx.op("conv2d", x2, w2, *bias, strides=[1, stride[0]], pads=[0, pad[0], 0, pad[0]],
              dilations=[1, dil[0]], group=group, name=cx.sub("conv2d"))
    return cx.op("squeeze", y, axes=[2])


@rule("aten._native_batch_norm_legit_no_training.default")
def _batch_norm(cx: _Converter, a: dict[str, Any]) -> tuple[Any, ...]:
    x = cx.tensor(a["input"])
    c = cx.type_of(a["input"]).shape[1]
    dt = cx.type_of(a["input"]).dtype
    if not isinstance(c, int):
        raise cx.unsupported("batch norm over a symbolic channel count")
    scale = _param_or(cx, a["weight"], 1.0, c, dt, "scale")
    bias = _param_or(cx, a["bias"], 0.0, c, dt, "bias")
    y = cx.op("batchnorm", x, scale, bias, cx.tensor(a["running_mean"]), cx.tensor(a["running_var"]),
              epsilon=float(cx.scalar(a["eps"])))
    return (y, _Missing("batch norm's saved mean"), _Missing("batch norm's saved inverse std"))


@rule("aten._native_batch_norm_legit.default", "aten._native_batch_norm_legit_functional.default",
      "aten.native_batch_norm.default")
def _batch_norm_train(cx: _Converter, a: dict[str, Any]) -> Any:
    raise cx.unsupported("batch norm in training mode (batch statistics); call module.eval() before export")


def _param_or(cx: _Converter, arg: Any, fill: float, n: int, dtype: str, tag: str) -> str:
    """An optional per-channel parameter, defaulting to a constant ``fill``."""
    if arg is not None:
        return cx.tensor(arg)
    return cx.b.const(cx.sub(tag), np.full((n,), fill, dtype=TensorType(dtype, ()).np_dtype))


@rule("aten.native_layer_norm.default")
def _layer_norm(cx: _Converter, a: dict[str, Any]) -> tuple[Any, ...]:
    t = cx.type_of(a["input"])
    norm = cx.ints(a["normalized_shape"])
    if any(not isinstance(d, int) for d in t.shape[t.rank - len(norm):]):
        raise cx.unsupported("layer norm over a symbolic dim")
    scale = (cx.tensor(a["weight"]) if a["weight"] is not None
             else cx.b.const(cx.sub("scale"), np.ones(norm, TensorType(t.dtype, ()).np_dtype)))
    bias = [cx.tensor(a["bias"])] if a["bias"] is not None else []
    y = cx.op("layernorm", cx.tensor(a["input"]), scale, *bias, axis=-len(norm),
              epsilon=float(cx.scalar(a["eps"])))
    return (y, _Missing("layer norm's mean"), _Missing("layer norm's inverse std"))


@rule("aten.native_group_norm.default")
def _group_norm(cx: _Converter, a: dict[str, Any]) -> tuple[Any, ...]:
    # Normalize [N, G, C/G * HW] rows with layernorm, then the per-channel affine.
    t = cx.type_of(a["input"])
    if not t.is_static:
        raise cx.unsupported("group norm with symbolic sizes")
    n, c = int(t.shape[0]), int(t.shape[1])
    g = int(cx.scalar(a["group"]))
    np_dt = TensorType(t.dtype, ()).np_dtype
    rows = cx.op("reshape", cx.tensor(a["input"]), shape=[n, g, -1], name=cx.sub("rows"))
    ones = cx.b.const(cx.sub("ones"), np.ones((), np_dt))
    y = cx.op("layernorm", rows, ones, axis=2, epsilon=float(cx.scalar(a["eps"])), name=cx.sub("norm"))
    y = cx.op("reshape", y, shape=list(t.shape), name=cx.sub("back") if a["weight"] is not None
              or a["bias"] is not None else None)
    per_channel = [c] + [1] * (t.rank - 2)
    if a["weight"] is not None:
        w = cx.op("reshape", cx.tensor(a["weight"]), shape=per_channel, name=cx.sub("w"))
        y = cx.op("mul", y, w, name=cx.sub("scaled") if a["bias"] is not None else None)
    if a["bias"] is not None:
        bias = cx.op("reshape", cx.tensor(a["bias"]), shape=per_channel, name=cx.sub("b"))
        y = cx.op("add", y, bias)
    return (y, _Missing("group norm's mean"), _Missing("group norm's inverse std"))


@rule("aten._softmax.default")
def _softmax(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("softmax", cx.tensor(a["self"], cx.out_type().dtype), axis=int(cx.scalar(a["dim"])))


@rule("aten._log_softmax.default")
def _log_softmax(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("log_softmax", cx.tensor(a["self"], cx.out_type().dtype), axis=int(cx.scalar(a["dim"])))


def _window(cx: _Converter, a: dict[str, Any]) -> dict[str, Any]:
    kernel = _pair(cx.ints(a["kernel_size"]), 1)
    stride = cx.ints(a["stride"]) or kernel  # torch: an empty stride means the kernel
    return {"kernel": kernel, "strides": _pair(stride, 1), "pads": _pair(cx.ints(a["padding"]), 0) * 2,
            "ceil_mode": bool(a["ceil_mode"])}


@rule("aten.max_pool2d_with_indices.default")
def _max_pool2d(cx: _Converter, a: dict[str, Any]) -> tuple[Any, ...]:
    y = cx.op("maxpool2d", cx.tensor(a["self"]), dilations=_pair(cx.ints(a["dilation"]), 1),
              **_window(cx, a))
    return (y, _Missing("max pooling's indices"))


@rule("aten.avg_pool2d.default")
def _avg_pool2d(cx: _Converter, a: dict[str, Any]) -> str:
    if a["divisor_override"] is not None:
        raise cx.unsupported("avg_pool2d with divisor_override")
    return cx.op("avgpool2d", cx.tensor(a["self"]), count_include_pad=bool(a["count_include_pad"]),
                 **_window(cx, a))


@rule("aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool2d(cx: _Converter, a: dict[str, Any]) -> str:
    x = cx.tensor(a["self"])
    h, w = cx.b.type_of(x).shape[-2:]
    oh, ow = _pair(cx.ints(a["output_size"]), 1)
    if (oh, ow) == (1, 1) and cx.b.type_of(x).rank == 4:
        return cx.op("global_avgpool", x)
    if isinstance(h, int) and isinstance(w, int) and h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]  # equal windows: a plain average pool
        return cx.op("avgpool2d", x, kernel=k, strides=k)
    raise cx.unsupported(f"adaptive average pooling from {h}x{w} to {oh}x{ow} (uneven windows)")


@rule("aten.embedding.default")
def _embedding(cx: _Converter, a: dict[str, Any]) -> str:
    return cx.op("embedding", cx.tensor(a["weight"]), cx.tensor(a["indices"]))


@rule("aten.native_dropout.default")
def _native_dropout(cx: _Converter, a: dict[str, Any]) -> tuple[Any, ...]:
    if a["train"]:
        raise cx.unsupported("dropout in training mode; call module.eval() before export")
    return (cx.value(a["input"]), _Missing("dropout's mask"))


# -- reductions ----------------------------------------------------------------------------


def _reduce(op: str, cast_to_out: bool = True) -> Rule:
    """``sum``/``mean``/``amax``/... over ``dim`` ([] or None: every axis)."""

    def convert(cx: _Converter, a: dict[str, Any]) -> str:
        out = cx.out_type()
        x = cx.tensor(a["self"], out.dtype if cast_to_out else None)
        dims = a.get("dim")
        axes = [] if dims is None else [int(d) for d in cx.scalar_list(dims)]
        keep = bool(a.get("keepdim", False))
        return cx.op(op, x, axes=axes, keepdims=keep)

    return convert


rule("aten.sum.dim_IntList", "aten.sum.default")(_reduce("reduce_sum"))
rule("aten.mean.dim", "aten.mean.default")(_reduce("reduce_mean"))
rule("aten.amax.default")(_reduce("reduce_max"))
rule("aten.amin.default")(_reduce("reduce_min"))
rule("aten.prod.dim_int", "aten.prod.default")(_reduce("reduce_prod"))
rule("aten.any.dim", "aten.any.dims", "aten.any.default")(_reduce("reduce_max"))
rule("aten.all.dim", "aten.all.dims", "aten.all.default")(_reduce("reduce_min"))


def _reduce_with_index(op: str) -> Rule:
    def convert(cx: _Converter, a: dict[str, Any]) -> tuple[Any, ...]:
        y = cx.op(op, cx.tensor(a["self"]), axes=[int(cx.scalar(a["dim"]))],
                  keepdims=bool(a["keepdim"]))
        return (y, _Missing(f"the indices of {op}"))

    return convert


rule("aten.max.dim")(_reduce_with_index("reduce_max"))
rule("aten.min.dim")(_reduce_with_index("reduce_min"))


@rule("aten.var.correction", "aten.var.dim")
def _var(cx: _Converter, a: dict[str, Any]) -> str:
    # sum((x - mean)^2) / (N - correction), N static.
    t = cx.type_of(a["self"])
    axes = [_norm(int(d), t.rank) for d in cx.scalar_list(a["dim"])] or list(range(t.rank))
    sizes = [t.shape[k] for k in axes]
    if not all(isinstance(d, int) for d in sizes):
        raise cx.unsupported("variance over a symbolic dim")
    if "correction" in a:
        corr = cx.scalar(a["correction"])
        corr = 1 if corr is None else corr
    else:
        corr = 1 if a.get("unbiased", True) else 0
    n = math.prod(int(d) for d in sizes)
    x = cx.tensor(a["self"])
    mean = cx.op("reduce_mean", x, axes=axes, keepdims=True, name=cx.sub("mean"))
    d = cx.op("sub", x, mean, name=cx.sub("dev"))
    ss = cx.op("reduce_sum", cx.op("mul", d, d, name=cx.sub("sq")), axes=axes,
               keepdims=bool(a["keepdim"]), name=cx.sub("ss"))
    return cx.op("div", ss, cx.scalar_const(float(max(n - corr, 0)), t.dtype))


# -- shapes and data movement -----------------------------------------------------------------


def _reshape_spec(src: Shape, dst: Shape) -> list[int] | None:
    """A registry ``reshape`` spec giving ``dst``: symbols copy (0) or fill (-1).

    None when more than one symbolic dim would need inferring.
    """
    spec: list[int] = []
    holes = 0
    for k, d in enumerate(dst):
        if isinstance(d, int):
            spec.append(d)
        elif k < len(src) and src[k] == d:
            spec.append(0)
        else:
            spec.append(-1)
            holes += 1
    return spec if holes <= 1 else None


@rule("aten.view.default", "aten.reshape.default", "aten._reshape_alias.default")
def _view(cx: _Converter, a: dict[str, Any]) -> Any:
    src = cx.type_of(a["self"]).shape
    dst = cx.out_type().shape
    v = cx.value(a["self"])
    if src == dst:
        return v
    if isinstance(v, Affine) and [d for d in src if d != 1] == [d for d in dst if d != 1]:
        # only unit dims move: re-seat the coefficients
        nz = iter(c for d, c in zip(src, v.coefs) if d != 1)
        return Affine(dst, v.dtype, v.offset, tuple(0 if d == 1 else next(nz) for d in dst))
    spec = _reshape_spec(src, dst)
    if spec is None:
        raise cx.unsupported(f"reshape {list(src)} -> {list(dst)} has several symbolic dims to infer")
    return cx.op("reshape", cx.tensor(a["self"]), shape=spec)


@rule("aten.permute.default")
def _permute(cx: _Converter, a: dict[str, Any]) -> Any:
    rank = cx.type_of(a["self"]).rank
    perm = [_norm(p, rank) for p in cx.ints(a["dims"])]
    v = cx.value(a["self"])
    if perm == list(range(rank)):
        return v
    if isinstance(v, Affine):
        return v.permute(perm)
    return cx.op("transpose", cx.tensor(a["self"]), perm=perm)


@rule("aten.unsqueeze.default")
def _unsqueeze(cx: _Converter, a: dict[str, Any]) -> Any:
    axis = _norm(int(cx.scalar(a["dim"])), cx.type_of(a["self"]).rank + 1)
    v = cx.value(a["self"])
    if isinstance(v, Affine):
        return v.unsqueeze(axis)
    return cx.op("unsqueeze", cx.tensor(a["self"]), axes=[axis])


@rule("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def _squeeze(cx: _Converter, a: dict[str, Any]) -> Any:
    t = cx.type_of(a["self"])
    dims = a.get("dim")
    wanted = range(t.rank) if dims is None else [_norm(int(d), t.rank) for d in cx.scalar_list(dims)]
    # torch ignores listed axes whose size is not 1
    axes = sorted(k for k in set(wanted) if t.shape[k] == 1)
    v = cx.value(a["self"])
    if not axes:
        return v
    if isinstance(v, Affine):
        return v.squeeze(axes)
    return cx.op("squeeze", cx.tensor(a["self"]), axes=axes)


@rule("aten.expand.default")
def _expand(cx: _Converter, a: dict[str, Any]) -> Any:
    src, dst = cx.type_of(a["self"]).shape, cx.out_type().shape
    v = cx.value(a["self"])
    if src == dst:
        return v
    if isinstance(v, Affine):
        return v.expand(dst)
    return _broadcast_to(cx, cx.tensor(a["self"]), dst)


def _broadcast_to(cx: _Converter, x: str, dst: Shape) -> str:
    """``expand`` when the target is writable as ints, else an ``expr`` broadcast read."""
    src = cx.b.type_of(x).shape
    lead = len(dst) - len(src)
    spec: list[int] = []
    for k, d in enumerate(dst):
        if isinstance(d, int):
            spec.append(d)
        elif k >= lead and src[k - lead] == d:
            spec.append(1)  # the input already has this symbol: broadcasting keeps it
        else:
            defs, its = trav(dst)
            dt = cx.b.type_of(x).dtype
            return cx.expr(Scope(defs, (), Access(x, bcast_index(src, dst, its))), dt)
    return cx.op("expand", x, shape=spec)


@rule("aten.cat.default")
def _cat(cx: _Converter, a: dict[str, Any]) -> str:
    out = cx.out_type()
    axis = _norm(int(cx.scalar(a["dim"])), out.rank)
    parts = [x for x in a["tensors"] if cx.type_of(x).shape != (0,) or out.rank == 1]
    return cx.op("concat", *[cx.tensor(x, out.dtype) for x in parts], axis=axis)


@rule("aten.split_with_sizes.default")
def _split(cx: _Converter, a: dict[str, Any]) -> tuple[str, ...]:
    rank = cx.type_of(a["self"]).rank
    sizes = cx.ints(a["split_sizes"])
    assert cx.node is not None
    names = [f"{cx.node.name}_{k}" for k in range(len(sizes))]
    return tuple(cx.b.op_multi("split", cx.tensor(a["self"]), names=names,
                               axis=_norm(int(cx.scalar(a["dim"])), rank), split=sizes))


@rule("aten.slice.Tensor")
def _slice(cx: _Converter, a: dict[str, Any]) -> Any:
    t = cx.type_of(a["self"])
    axis = _norm(int(cx.scalar(a["dim"])), t.rank)
    out = cx.out_type()
    v = cx.value(a["self"])
    start = _sym_value(cx.value(a["start"])) if a["start"] is not None else 0
    step = int(cx.scalar(a["step"]))
    if out.shape == t.shape:
        return v  # a whole-axis slice
    length = out.shape[axis]
    if isinstance(length, int) and isinstance(t.shape[axis], int):
        end = _sym_value(cx.value(a["end"])) if a["end"] is not None else 2**63 - 1
        if not isinstance(start, int) or not isinstance(end, int):
            raise cx.unsupported("slice bounds that depend on a symbolic size")
        big = 2**31 - 1  # the registry reads ends past this as "to the end"
        return cx.op("slice", cx.tensor(a["self"]), starts=[start], ends=[min(end, big)],
                     axes=[axis], steps=[step])
    # A symbolic length taken from a static axis (position_ids[:, :seq]).
    if not isinstance(start, int) or start < 0 or step < 1:
        raise cx.unsupported("a slice of symbolic length needs a static start >= 0 and step >= 1")
    aff = v if isinstance(v, Affine) else (_affine_of_const(v.tensor) if isinstance(v, _Const) else None)
    if aff is not None:
        return aff.slice(axis, start, step, length)
    defs, its = trav(out.shape)
    idx = list(its)
    idx[axis] = lin([(its[axis], step)], start)
    return cx.expr(Scope(defs, (), Access(cx.tensor(a["self"]), tuple(idx))), out.dtype)


@rule("aten.select.int")
def _select(cx: _Converter, a: dict[str, Any]) -> Any:
    t = cx.type_of(a["self"])
    axis = _norm(int(cx.scalar(a["dim"])), t.rank)
    index = int(cx.scalar(a["index"]))
    size = t.shape[axis]
    if index < 0:
        if not isinstance(size, int):
            raise cx.unsupported("selecting from the end of a symbolic axis")
        index += size
    v = cx.value(a["self"])
    if isinstance(v, Affine):
        return v.slice(axis, index, 1, 1).squeeze([axis])
    if not isinstance(size, int):
        # The registry slices symbolic axes only whole: read the row directly.
        out = cx.out_type()
        defs, its = trav(out.shape)
        idx = tuple(its[:axis]) + (Const(index),) + tuple(its[axis:])
        return cx.expr(Scope(defs, (), Access(cx.tensor(a["self"]), idx)), out.dtype)
    x = cx.op("slice", cx.tensor(a["self"]), starts=[index], ends=[index + 1], axes=[axis],
              name=cx.sub("slice"))
    return cx.op("squeeze", x, axes=[axis])


@rule("aten.constant_pad_nd.default")
def _constant_pad(cx: _Converter, a: dict[str, Any]) -> str:
    t = cx.type_of(a["self"])
    return cx.op("pad", cx.tensor(a["self"]), pads=_torch_pads(cx.ints(a["pad"]), t.rank),
                 value=float(cx.scalar(a["value"]) or 0.0))


def _torch_pads(pad: Sequence[int], rank: int) -> list[int]:
    """torch's ``[last_lo, last_hi, prev_lo, prev_hi, ...]`` as registry begins + ends."""
    begins, ends = [0] * rank, [0] * rank
    for k in range(len(pad) // 2):
        begins[rank - 1 - k], ends[rank - 1 - k] = pad[2 * k], pad[2 * k + 1]
    return begins + ends


def _pad_mode(mode: str) -> Rule:
    def convert(cx: _Converter, a: dict[str, Any]) -> str:
        t = cx.type_of(a["self"])
        return cx.op("pad", cx.tensor(a["self"]), pads=_torch_pads(cx.ints(a["padding"]), t.rank),
                     mode=mode)

    return convert


rule("aten.reflection_pad1d.default", "aten.reflection_pad2d.default",
     "aten.reflection_pad3d.default")(_pad_mode("reflect"))
rule("aten.replication_pad1d.default", "aten.replication_pad2d.default",
     "aten.replication_pad3d.default")(_pad_mode("edge"))


@rule("aten.repeat.default")
def _repeat(cx: _Converter, a: dict[str, Any]) -> str:
    # out[i] = x[i % n] on repeated axes: an affine (mod) read.
    x = cx.tensor(a["self"])
    src = cx.b.type_of(x).shape
    out = cx.out_type()
    reps = cx.ints(a["repeats"])
    lead = len(reps) - len(src)
    defs, its = trav(out.shape)
    idx: list[Expr] = []
    for k, d in enumerate(src):
        it = its[lead + k]
        if reps[lead + k] == 1:
            idx.append(it)
        elif isinstance(d, int):
            idx.append(it % d if d > 1 else Const(0))
        else:
            raise cx.unsupported("repeating a symbolic axis")
    return cx.expr(Scope(defs, (), Access(x, tuple(idx))), out.dtype)


@rule("aten.flip.default")
def _flip(cx: _Converter, a: dict[str, Any]) -> str:
    x = cx.tensor(a["self"])
    t = cx.b.type_of(x)
    axes = {_norm(d, t.rank) for d in cx.ints(a["dims"])}
    defs, its = trav(t.shape)
    idx: list[Expr] = []
    for k, (d, it) in enumerate(zip(t.shape, its)):
        if k not in axes:
            idx.append(it)
        elif isinstance(d, int):
            idx.append(lin([(it, -1)], d - 1))
        else:
            raise cx.unsupported("flipping a symbolic axis")
    return cx.expr(Scope(defs, (), Access(x, tuple(idx))), t.dtype)


@rule("aten.upsample_nearest2d.vec", "aten.upsample_nearest2d.default")
def _upsample_nearest(cx: _Converter, a: dict[str, Any]) -> str:
    # Integer scale factors only: out[h] = x[h // s], an affine (floor-div) read.
    x = cx.tensor(a["input"])
    t = cx.b.type_of(x)
    out = cx.out_type()
    idx: list[Expr] = []
    defs, its = trav(out.shape)
    for k, (d, o, it) in enumerate(zip(t.shape, out.shape, its)):
        if k < 2 or d == o:
            idx.append(it)
        elif isinstance(d, int) and isinstance(o, int) and d > 0 and o % d == 0:
            idx.append(it // (o // d))
        else:
            raise cx.unsupported(f"nearest upsampling from {d} to {o} (integer scales only)")
    return cx.expr(Scope(defs, (), Access(x, tuple(idx))), out.dtype)


# -- indexing -----------------------------------------------------------------------------------


def _affine(cx: _Converter, arg: Any) -> Affine | None:
    v = cx.value(arg)
    if isinstance(v, Affine):
        return v if isinstance(v.offset, int) else None
    if isinstance(v, _Const):
        return _affine_of_const(v.tensor)
    return None


@rule("aten.index.Tensor")
def _index(cx: _Converter, a: dict[str, Any]) -> str:
    """Advanced indexing ``x[i0, i1, ...]`` (None entries keep an axis).

    Affine index tensors (``arange``-like) give an ``expr`` node with affine
    reads; one arbitrary integer index tensor gives ``gather``.
    """
    indices = list(a["indices"])
    used = [k for k, i in enumerate(indices) if i is not None]
    if any(cx.type_of(indices[k]).dtype == "bool" for k in used):
        raise cx.unsupported("boolean mask indexing (its result shape depends on the data)")
    affs = [_affine(cx, indices[k]) for k in used]
    if all(f is not None for f in affs):
        return _index_affine(cx, a["self"], dict(zip(used, affs)))  # type: ignore[arg-type]
    if len(used) == 1:
        return cx.op("gather", cx.tensor(a["self"]), cx.tensor(indices[used[0]]), axis=used[0])
    raise cx.unsupported("indexing with several data-dependent index tensors")


def _index_affine(cx: _Converter, x_arg: Any, by_axis: dict[int, Affine]) -> str:
    x = cx.tensor(x_arg)
    t = cx.b.type_of(x)
    out = cx.out_type()
    axes = sorted(by_axis)
    bshape = broadcast([f.shape for f in by_axis.values()])
    adjacent = axes == list(range(axes[0], axes[-1] + 1))
    # torch puts the broadcast index dims where the indexed axes were when they
    # are adjacent, else in front.
    first = axes[0] if adjacent else 0
    defs, its = trav(out.shape)
    b_its = its[first:first + len(bshape)]
    rest = iter(its[:first] + its[first + len(bshape):])
    idx: list[Expr] = []
    for k in range(t.rank):
        if k in by_axis:
            f = by_axis[k]
            e = f.index(bcast_index(f.shape, bshape, b_its))
            if isinstance(e, Const) and int(e.value) < 0 and isinstance(t.shape[k], int):
                e = Const(int(e.value) + t.shape[k])  # torch wraps a negative index
            idx.append(e)
        else:
            idx.append(next(rest))
    return cx.expr(Scope(defs, (), Access(x, tuple(idx))), out.dtype)


@rule("aten.index_select.default")
def _index_select(cx: _Converter, a: dict[str, Any]) -> str:
    rank = cx.type_of(a["self"]).rank
    return cx.op("gather", cx.tensor(a["self"]), cx.tensor(a["index"]),
                 axis=_norm(int(cx.scalar(a["dim"])), rank))


@rule("aten.gather.default")
def _gather(cx: _Converter, a: dict[str, Any]) -> str:
    """torch.gather (ONNX GatherElements): only with an affine index."""
    f = _affine(cx, a["index"])
    if f is None:
        raise cx.unsupported("torch.gather with a data-dependent index (no gather_elements op "
                             "in the registry)")
    x = cx.tensor(a["self"])
    t = cx.b.type_of(x)
    axis = _norm(int(cx.scalar(a["dim"])), t.rank)
    defs, its = trav(f.shape)
    idx = tuple(f.index(its) if k == axis else its[k] for k in range(t.rank))
    return cx.expr(Scope(defs, (), Access(x, idx)), t.dtype)


# -- tensor creation with symbolic sizes (static ones are folded) ----------------------------


@rule("aten.arange.start_step", "aten.arange.start", "aten.arange.default")
def _arange(cx: _Converter, a: dict[str, Any]) -> Affine:
    out = cx.out_type()
    start = cx.scalar(a["start"]) if "start" in a and a["start"] is not None else 0
    step = cx.scalar(a.get("step", 1)) or 1
    if not isinstance(start, int) or not isinstance(step, int):
        raise cx.unsupported("a float arange of symbolic length")
    return Affine(out.shape, out.dtype, start, (step,))


@rule("aten.full.default", "aten.full_like.default", "aten.empty.memory_format",
      "aten.empty_strided.default", "aten.zeros.default", "aten.ones.default")
def _full(cx: _Converter, a: dict[str, Any]) -> Any:
    out = cx.out_type()
    name = _op_name(cx.node.target) if cx.node is not None else ""
    if "fill_value" in a:
        value = cx.scalar(a["fill_value"])
    else:
        value = 1 if name.startswith("aten.ones") else 0  # empty: any value will do
    if out.dtype == "bool":
        value = int(bool(value))
    elif out.dtype.startswith("f"):
        value = float(value)  # type: ignore[arg-type]
    else:
        value = int(value)  # type: ignore[arg-type]
    return Affine(out.shape, out.dtype, value, (0,) * out.rank)


@rule("aten.scalar_tensor.default")
def _scalar_tensor(cx: _Converter, a: dict[str, Any]) -> Any:
    raise cx.unsupported("a tensor made from a symbolic size")
