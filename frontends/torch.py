"""PyTorch frontend: ``torch.export`` programs to tensoropt graphs.

Entry points: :func:`from_module` (export, then convert), :func:`from_exported`
(convert an :class:`~torch.export.ExportedProgram`) and :func:`load_pt2` (a
``.pt2`` archive written by ``torch.export.save``).

This module holds the entry points and the driver that walks the FX graph
(signature, constant folding, outputs). What a node's value can be is in
:mod:`.torch_values`; what a rule sees, and the rule table, in
:mod:`.torch_context`; the rules themselves in :mod:`.torch_ops` (elementwise,
comparisons, logic), :mod:`.torch_ops_nn` (contractions, layers, reductions)
and :mod:`.torch_ops_movement` (shapes, indexing, creation).

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
- A symbolic size used as a value (``x / x.shape[1]``) becomes a rank-0
  ``expr`` node that counts to it (``L[] Sum[c:seq] {1}``); sizes known only
  from data (``nonzero``) are unsupported.
- Each ATen op maps onto the registry op that computes it; an ``expr`` node
  stands in only for functions the registry has no op for (``sign``,
  ``log1p``, floor division, affine reads over symbolic sizes, ...). 1-D
  convolutions, plain and transposed, run on the 2-D ops over a unit height.
- Every converted node's type is checked against torch's own metadata for the
  node; a disagreement, like a type or shape rule rejecting the converted op,
  is a :class:`ShapeError` that starts with the node's name.
"""

from __future__ import annotations

import inspect
import logging
import os
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import ConstantArgument, InputKind, OutputKind, TensorArgument

from tensoropt.errors import InputFileError, ShapeError, TensoroptError, UnsupportedError
from tensoropt.ir.graph import Graph
from tensoropt.ir.types import is_symbol

from . import torch_ops, torch_ops_movement, torch_ops_nn  # noqa: F401  (they register the rules)
from .torch_context import RULES, Ctx, location, op_name
from .torch_context import Rule, rule  # noqa: F401  (re-exported: extension points)
from .torch_values import DTYPES  # noqa: F401  (re-exported)
from .torch_values import Affine, ConstTensor, describe, is_static_scalar, is_tensor_value, sym_value

__all__ = ["RULES", "Affine", "from_exported", "from_module", "load_pt2"]

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
    _check_pt2_container(p)
    try:
        # torch logs a full traceback before raising on a bad archive; the
        # error below says it on one line instead.
        with _silenced("torch.export"), _no_pickles():
            ep = torch.export.load(p)
    except _PickleRefused as e:
        raise InputFileError(f"{p}: {e}") from None
    except Exception as e:  # zipfile and torch errors alike mean "not a pt2"
        raise InputFileError(f"{p}: not a readable torch.export archive ({_first_line(e)})") from None
    if not isinstance(ep, ExportedProgram):
        raise InputFileError(f"{p}: holds a {type(ep).__name__}, not an ExportedProgram")
    return from_exported(ep, p.stem)


class _PickleRefused(Exception):
    """A .pt2 archive asked to unpickle something other than plain tensors."""


@contextmanager
def _no_pickles() -> Iterator[None]:
    """No arbitrary unpickling while a .pt2 archive loads.

    ``torch.export.load`` reads pickled weights with torch's loader in its
    ``weights_only=False`` mode and custom or opaque constants with ``pickle``: a
    crafted archive could run code. Here ``torch.load`` is forced to
    ``weights_only=True`` (tensors and plain containers only) and the other
    two unpicklers refuse, so an archive of ordinary weights loads and
    anything else is an error naming why.
    """
    from torch.export.pt2_archive import _package

    real_load, real_obj = torch.load, torch._C._pickle_load_obj
    real_pickle = _package.pickle

    def safe_load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            return real_load(f, *args, **kwargs)
        except Exception as e:
            raise _PickleRefused(f"refusing to unpickle a non-tensor payload ({_first_line(e)})") from None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _PickleRefused("holds a pickled custom or opaque object; tensoropt does not unpickle "
                             "objects from model files")

    class _Pickle:
        loads = staticmethod(refuse)
        load = staticmethod(refuse)

    torch.load, torch._C._pickle_load_obj, _package.pickle = safe_load, refuse, _Pickle  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load, torch._C._pickle_load_obj, _package.pickle = real_load, real_obj, real_pickle  # type: ignore[assignment]


def _check_pt2_container(p: Path) -> None:
    """InputFileError unless ``p`` is a zip with a pt2 ``archive_format`` entry."""
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise InputFileError(f"{p}: not a .pt2 archive (not a readable zip file: {_first_line(e)}; "
                             "truncated, or another format)") from None
    if not any(n == "archive_format" or n.endswith("/archive_format") for n in names):
        raise InputFileError(f"{p}: a zip file but not a torch.export .pt2 archive "
                             "(no archive_format entry)")


@contextmanager
def _silenced(logger: str) -> Iterator[None]:
    log = logging.getLogger(logger)
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


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


# -- the driver ----------------------------------------------------------------------------

#: ops with no value (runtime checks): dropped.
_IGNORED = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default", "aten.sym_constrain_range.default",
    "aten._assert_async.msg", "aten._assert_async.default",
})


class _Converter:
    """Walks the decomposed FX graph once; the rules fill the context's builder."""

    def __init__(self, ep: ExportedProgram, name: str, dim_names: DimNames) -> None:
        self.ep = ep
        self.dim_names = dim_names
        self.cx = Ctx(name)

    def run(self) -> Graph:
        cx = self.cx
        specs = {s.arg.name: s for s in self.ep.graph_signature.input_specs
                 if hasattr(s.arg, "name")}
        outputs: list[str] = []
        for node in self.ep.graph.nodes:
            cx.node = node
            if node.op == "placeholder":
                cx.env[node] = self.placeholder(node, specs.get(node.name))
            elif node.op == "call_function":
                cx.env[node] = self.call(node)
            elif node.op == "output":
                outputs = self.outputs(node)
            else:
                raise UnsupportedError(f"torch frontend: unsupported FX node kind {node.op} "
                                       f"at node %{node.name}")
        return cx.b.build(*outputs)

    def placeholder(self, node: fx.Node, spec: Any) -> Any:
        if spec is None:
            raise UnsupportedError(f"torch frontend: placeholder %{node.name} is not in the "
                                   "program's signature")
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            t = self.ep.state_dict.get(spec.target)
            if t is None:  # non-persistent buffers live with the constants
                t = self.ep.constants[spec.target]
            return ConstTensor(t.detach().cpu(), spec.target)
        if spec.kind == InputKind.CONSTANT_TENSOR:
            return ConstTensor(self.ep.constants[spec.target].detach().cpu(), spec.target)
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
            self.cx.name_symbol(d, self.dim_names.get(node.name, {}).get(axis))
        t = self.cx.tensor_type(val)
        return self.cx.b.input(node.name, t.dtype, t.shape)

    def outputs(self, node: fx.Node) -> list[str]:
        cx = self.cx
        specs = self.ep.graph_signature.output_specs
        names: list[str] = []
        results = node.args[0]
        assert isinstance(results, (tuple, list))
        for k, (spec, arg) in enumerate(zip(specs, results)):
            if spec.kind != OutputKind.USER_OUTPUT:
                raise UnsupportedError(
                    f"torch frontend: the program updates {spec.target or 'an input'} in place "
                    f"({spec.kind.name}); tensoropt graphs are pure functions (export in eval mode)")
            value = cx.env.get(arg) if isinstance(arg, fx.Node) else arg
            if not is_tensor_value(value):
                raise UnsupportedError(f"torch frontend: output {k} is {describe(value)}, "
                                       "not a tensor; only tensor outputs are supported")
            out = cx.tensor(arg)
            if out in names:  # the IR lists each output once: copy repeats
                out = cx.b.op("identity", out, name=f"output{k}")
            names.append(out)
        return names

    def call(self, node: fx.Node) -> Any:
        cx = self.cx
        name = op_name(node.target)
        val = node.meta.get("val")
        if name in _IGNORED:
            return None
        if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool)):
            return sym_value(val)  # size arithmetic: sym_size, operator.add, ...
        if self.foldable(node, val):
            return self.fold(node)
        packet = str(node.target.overloadpacket) if isinstance(node.target, torch._ops.OpOverload) else ""
        fn = RULES.get(name) or RULES.get(packet)
        if fn is None:
            where = location(node)
            raise UnsupportedError(f"torch frontend: unsupported op {name} at node %{node.name}"
                                   + (f" ({where})" if where else ""))
        try:
            out = fn(cx, _schema_args(node))
            cx.check(out, val)
        except ShapeError as e:
            raise ShapeError(f"{cx.where()}: {e}") from None
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
                v = self.cx.env.get(leaf)
                if not (isinstance(v, ConstTensor) or is_static_scalar(v) or v is None):
                    return False
        outs = torch.utils._pytree.tree_leaves(val)
        return all(not isinstance(o, torch.Tensor) or all(isinstance(d, int) for d in o.shape)
                   for o in outs)

    def fold(self, node: fx.Node) -> Any:
        env = self.cx.env

        def real(a: Any) -> Any:
            if isinstance(a, fx.Node):
                v = env[a]
                return v.tensor if isinstance(v, ConstTensor) else v
            if isinstance(a, torch.device):
                return torch.device("cpu")  # a GPU export still folds here
            return a

        args, kwargs = torch.utils._pytree.tree_map(real, (node.args, node.kwargs))
        target = node.target
        assert isinstance(target, torch._ops.OpOverload)  # foldable() checked
        with torch.no_grad():
            try:
                out = target(*args, **kwargs)
            except Exception as e:  # the program itself fails on its constants
                raise UnsupportedError(f"{self.cx.where()}: evaluating on constants failed: "
                                       f"{_first_line(e)}") from e
        name = self.folded_name(node)
        if isinstance(out, torch.Tensor):
            return ConstTensor(out, name)
        if isinstance(out, (tuple, list)):
            return tuple(ConstTensor(o, f"{name}_{k}") if isinstance(o, torch.Tensor) else o
                         for k, o in enumerate(out))
        return out

    def folded_name(self, node: fx.Node) -> str:
        """``fc.weight.permute`` for a transformed parameter, else the node's name."""
        env = self.cx.env
        srcs = [env[x] for x in node.all_input_nodes if isinstance(env.get(x), ConstTensor)]
        if len(srcs) != 1 or not isinstance(node.target, torch._ops.OpOverload):
            return node.name
        return f"{srcs[0].name}.{node.target.overloadpacket.__name__}"


def _schema_args(node: fx.Node) -> dict[str, Any]:
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
