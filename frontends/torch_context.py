"""What an ATen rule sees: the node being converted, its operands, and a builder.

A rule is a small function ``(cx, args) -> value`` registered in :data:`RULES`
under an ATen overload name (``aten.add.Tensor``) or packet name
(``aten.add``) with :func:`rule`. ``args`` holds the node's arguments by
schema name, still as FX nodes or Python values; the :class:`Ctx` turns them
into graph tensors (:meth:`Ctx.tensor`), numbers (:meth:`Ctx.scalar`) and
types (:meth:`Ctx.type_of`, :meth:`Ctx.out_type`), and adds nodes named after
the FX node (:meth:`Ctx.op`, :meth:`Ctx.expr`).

Invariants:

- A rule returns one value per output of its node (see
  :mod:`.torch_values`) and never mutates its operands.
- Constants, casts of constants, shared scalar constants, casts and affine
  tensors are added to the graph at most once, on first use.
- Torch's symbols are named once, from the inputs, before any node is
  converted (:meth:`Ctx.name_symbol`); a dim that is a new symbol (an unbacked,
  data-dependent size) or a derived expression (``s0 + 1``) is an
  :class:`UnsupportedError`.
- Every message starts with :meth:`Ctx.where`, naming the node, its op and
  its source line.
"""

from __future__ import annotations

import operator
import os
import re
from typing import Any, Callable

import numpy as np
import sympy
import torch
from torch import fx

from tensoropt.builder import GraphBuilder
from tensoropt.errors import ShapeError, UnsupportedError
from tensoropt.ir.expr import Access, Const, Expr, IterDef, Scope
from tensoropt.ir.types import DTYPES as IR_DTYPES
from tensoropt.ir.types import Dim, TensorType, is_symbol

from .torch_values import (DTYPES, TORCH_DTYPES, Affine, ConstTensor, Missing, describe, is_static_scalar,
                           is_tensor_value, sym_value)

Rule = Callable[["Ctx", dict[str, Any]], Any]

#: ATen overload or packet name -> converter. Filled by :func:`rule` in the ``torch_ops*`` modules.
RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Register a converter under ATen overload or packet names."""

    def deco(fn: Rule) -> Rule:
        for n in names:
            if n in RULES:
                raise ValueError(f"torch frontend rule {n} registered twice")
            RULES[n] = fn
        return fn

    return deco


def norm_axis(axis: int, rank: int) -> int:
    """A torch axis, negative ones counted from the end."""
    return axis + rank if axis < 0 else axis


def op_name(target: Any) -> str:
    """``aten.add.Tensor`` for an ATen overload, ``getitem``, or the target's name."""
    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def location(node: fx.Node) -> str:
    """``model.py:42 in forward`` from the node's stack trace, or ''."""
    trace = node.meta.get("stack_trace") or ""
    hits = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', trace)
    if not hits:
        return ""
    path, line, fn = hits[-1]
    return f"{os.path.basename(path)}:{line} in {fn}"


class Ctx:
    """The state of one conversion: the builder, the environment and the node at hand.

    The driver sets :attr:`node` before it converts each node and stores each
    result in :attr:`env`; rules only read both.
    """

    def __init__(self, name: str) -> None:
        self.b = GraphBuilder(name)
        self.env: dict[fx.Node, Any] = {}
        self.symbols: dict[str, str] = {}  # torch symbol -> IR dim
        self.node: fx.Node | None = None
        self._scalars: dict[tuple[str, str], str] = {}
        self._casts: dict[tuple[str, str], str] = {}
        self._affines: dict[Affine, str] = {}
        self._const_casts: dict[tuple[int, str], ConstTensor] = {}

    # -- arguments ---------------------------------------------------------------------

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
        if isinstance(v, ConstTensor) and v.tensor.numel() == 1:
            return v.tensor.item()
        if v is None or is_static_scalar(v):
            return v
        if isinstance(v, sympy.Expr):
            raise self.unsupported(f"needs the symbolic size {self.show(v)} as a fixed number "
                                   "(an attribute); only shapes may be symbolic")
        raise self.unsupported(f"expected a number, got {describe(v)}")

    def int_arg(self, arg: Any) -> int:
        v = self.scalar(arg)
        if v is None:
            raise self.unsupported("a required integer argument is None")
        return int(v)

    def float_arg(self, arg: Any, default: float | None = None) -> float:
        v = self.scalar(arg)
        if v is None:
            if default is None:
                raise self.unsupported("a required number argument is None")
            return default
        return float(v)

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
        return isinstance(arg, fx.Node) and is_tensor_value(self.env.get(arg))

    # -- graph tensors -------------------------------------------------------------------

    def tensor(self, arg: Any, dtype: str | None = None) -> str:
        """The graph tensor for ``arg``, added or cast on demand.

        Python numbers become shared rank-0 constants of ``dtype``.
        """
        v = self.value(arg)
        if isinstance(v, Missing):
            raise UnsupportedError(f"{self.where()}: reads {v.what}, which tensoropt does not compute")
        if isinstance(v, ConstTensor):
            if dtype is not None and DTYPES.get(v.tensor.dtype) != dtype:
                # converted once at import time, not by a cast node
                key = (id(v), dtype)
                if key not in self._const_casts:
                    self._const_casts[key] = ConstTensor(v.tensor.to(TORCH_DTYPES[dtype]),
                                                         f"{v.name}.{dtype}")
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
        if is_static_scalar(v):
            if dtype is None:
                raise AssertionError(f"scalar {v!r} needs a dtype")
            return self.scalar_const(v, dtype)
        if isinstance(v, sympy.Expr) and dtype is not None:
            return self.expr(Scope((), (), self.size_expr(v)), dtype, name=self.sub("size"))
        raise UnsupportedError(f"{self.where()}: expected a tensor, got {describe(v)}")

    def size_expr(self, e: sympy.Expr) -> Expr:
        """A symbolic size as an Expr value.

        A body cannot name a symbol, but it can count to it: ``seq`` is the
        sum of 1 over ``c:seq``. Sums and products of those compose.
        """
        if e.is_Integer:
            return Const(int(e))
        if e.is_Symbol:
            it = f"c_{self.dim(e)}"
            return Access(Scope((), (IterDef(it, self.dim(e)),), Const(1)), ())
        if isinstance(e, (sympy.Add, sympy.Mul)):
            parts = [self.size_expr(x) for x in e.args]
            out = parts[0]
            for p in parts[1:]:
                out = out + p if isinstance(e, sympy.Add) else out * p
            return out
        raise self.unsupported(f"uses the symbolic size {self.show(e)} as a value "
                               "(only sums and products of sizes are supported)")

    def const(self, c: ConstTensor) -> str:
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
        if isinstance(v, ConstTensor):
            return TensorType(_dtype(v.tensor.dtype, self.where()), tuple(int(d) for d in v.tensor.shape))
        if isinstance(v, Affine):
            return v.type
        if isinstance(v, str):
            return self.b.type_of(v)
        raise UnsupportedError(f"{self.where()}: expected a tensor, got {describe(v)}")

    # -- types, dims and messages ----------------------------------------------------------

    def out_type(self, k: int | None = None) -> TensorType:
        """The type torch gives this node's output (``k``: element of a tuple)."""
        assert self.node is not None
        val = self.node.meta.get("val")
        if k is not None and isinstance(val, (tuple, list)):
            val = val[k]
        if not isinstance(val, torch.Tensor):
            raise self.unsupported(f"torch recorded no tensor type for this node ({type(val).__name__})")
        return self.tensor_type(val)

    def tensor_type(self, val: torch.Tensor) -> TensorType:
        return TensorType(_dtype(val.dtype, self.where()), tuple(self.dim(d) for d in val.shape))

    def name_symbol(self, d: Any, wanted: str | None) -> None:
        """Name the symbol of input dim ``d`` (inputs come first in the graph)."""
        expr = sym_value(d)
        if isinstance(expr, int) or not getattr(expr, "is_Symbol", False):
            return
        key = str(expr)
        if key not in self.symbols:
            taken = set(self.symbols.values())
            self.symbols[key] = wanted if wanted and wanted not in taken else _ident(key)

    def dim(self, d: Any) -> Dim:
        expr = sym_value(d)
        if isinstance(expr, int):
            return expr
        if getattr(expr, "is_Symbol", False):
            if str(expr) not in self.symbols:
                # Every input's symbols are named before the first node; a new
                # one is an "unbacked" size torch learns from data (nonzero, ...).
                raise UnsupportedError(f"{self.where()}: has the data-dependent size {expr} "
                                       "(no input dim determines it)")
            return self.symbols[str(expr)]
        raise UnsupportedError(f"{self.where()}: has the derived symbolic size {self.show(expr)}; "
                               "tensoropt dims are ints or single symbols")

    def show(self, expr: sympy.Expr) -> str:
        """A size expression with torch's symbols replaced by the IR's dim names."""
        names = {s: sympy.Symbol(self.symbols[str(s)]) for s in expr.free_symbols if str(s) in self.symbols}
        return str(expr.xreplace(names))

    def where(self) -> str:
        """``torch frontend: node %view_3 (aten.view.default, model.py:12 in forward)``."""
        n = self.node
        if n is None:
            return "torch frontend"
        if n.op == "placeholder":
            return f"torch frontend: input %{n.name}"
        parts = [op_name(n.target)] if n.op == "call_function" else [n.op]
        if location(n):
            parts.append(location(n))
        return f"torch frontend: node %{n.name} ({', '.join(parts)})"

    def check(self, out: Any, val: Any) -> None:
        """The converted value must have the type torch recorded for the node."""
        if isinstance(out, (tuple, list)):
            for k, o in enumerate(out):
                if is_tensor_value(o):
                    self.check(o, val[k])
            return
        if not isinstance(val, torch.Tensor) or not is_tensor_value(out):
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


def _ident(s: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return out if is_symbol(out) else f"d_{out}"


def _dtype(dt: torch.dtype, where: str) -> str:
    if dt not in DTYPES:
        raise UnsupportedError(f"{where}: dtype {dt} is not supported; supported: {_dtype_list()}")
    return DTYPES[dt]


def _dtype_list() -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in DTYPES)
