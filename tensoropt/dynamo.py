"""``torch.compile(model, backend="tensoropt")``: the ``torch._dynamo`` backend.

Dynamo captures the model's Python code as FX graphs (one per region between
graph breaks) and hands each to :func:`backend` with example inputs. Each
graph is exported with ``torch.export``, converted by the torch frontend and
built by :func:`tensoropt.compiler.compile`; the returned callable runs the
compiled code.

Invariants:

- The backend never raises into the user's loop: any failure to convert or
  build a graph (an unsupported op, a graph the frontend rejects, a TVM
  error, non-tensor outputs, in-place buffer updates), and every case
  tensoropt does not handle (training: an input or parameter that requires
  grad while grad mode is on; dynamic shapes; inputs off the CPU), returns
  ``gm.forward``, so that graph runs eagerly. Each such fallback is counted
  in :func:`stats` with a one-line reason and emits one
  :class:`DynamoFallbackWarning`.
- Parameters and buffers, whether dynamo passes them as graph inputs (its
  default: inlined ``nn.Module`` s) or as attributes of the graph module,
  become constants (weights) of the compiled graph. A compiled callable
  remembers each such tensor and its version counter; if a call passes a
  different tensor or one changed in place since the compile
  (``load_state_dict``, an optimizer step), that callable runs eagerly from
  then on (one more counted fallback) instead of using stale weights.
- A graph is compiled for the concrete shapes of its example inputs; dynamo
  guards on those shapes (and on grad mode), so a call with other shapes
  recompiles. A graph dynamo made dynamic (``SymInt`` inputs) falls back;
  ``torch.compile(..., dynamic=False)`` compiles once per shape instead.
  Should a compiled callable still see other shapes, it runs eagerly
  (counted once per callable) rather than giving wrong answers.
- The callable returns what the graph module returns: a tuple of CPU torch
  tensors of the graph's dtypes. They are fresh tensors: where eager returns
  a view of an input (``x.view(-1)``) this returns an equal copy. (An input
  returned unchanged never reaches a graph: dynamo passes it through itself.)

Registration: the ``torch_dynamo_backends`` entry point in ``pyproject.toml``
names :func:`backend`, and importing this module registers it explicitly (a
no-op when the name is already taken).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import fx

__all__ = ["BACKEND_NAME", "DynamoFallbackWarning", "DynamoStats", "backend", "reset_stats", "stats"]

#: the name ``torch.compile(backend=...)`` knows this backend by.
BACKEND_NAME = "tensoropt"


class DynamoFallbackWarning(UserWarning):
    """A graph captured by ``torch.compile`` runs eagerly instead of compiled.

    One per fallback; the message names the graph and the reason on one line.
    Filter it with ``warnings.simplefilter("ignore", DynamoFallbackWarning)``.
    """


@dataclass
class DynamoStats:
    """What the backend did since the last :func:`reset_stats`.

    ``graphs`` counts graphs dynamo handed over; each ends up either in
    ``compiled`` or in ``fallbacks`` (one-line reasons, in order). A compiled
    graph that later goes eager (changed weights, other shapes) adds a
    fallback too, so ``compiled + len(fallbacks)`` may exceed ``graphs``.
    """

    graphs: int = 0
    compiled: int = 0
    fallbacks: list[str] = field(default_factory=list)

    @property
    def fallen_back(self) -> int:
        return len(self.fallbacks)


_lock = threading.Lock()
_stats = DynamoStats()


def stats() -> DynamoStats:
    """A snapshot of the counters (a copy: later graphs do not change it)."""
    with _lock:
        return DynamoStats(_stats.graphs, _stats.compiled, list(_stats.fallbacks))


def reset_stats() -> None:
    """Zero the counters."""
    global _stats
    with _lock:
        _stats = DynamoStats()


def _first_line(e: BaseException) -> str:
    """``Type: first line`` of an error's message, skipping a traceback TVM may lead with."""
    lines = [ln for ln in str(e).strip().splitlines()
             if ln.strip() and not ln.startswith((" ", "\t", "Traceback"))]
    line = lines[0] if lines else ""
    return f"{type(e).__name__}: {line}"[:300] if line else type(e).__name__


def _fall_back(name: str, reason: str) -> None:
    """Count a fallback and warn once about it."""
    with _lock:
        _stats.fallbacks.append(f"{name}: {reason}")
    warnings.warn(DynamoFallbackWarning(f"tensoropt torch.compile backend: {name} runs eagerly: {reason}"),
                  stacklevel=3)


def _version(t: torch.Tensor) -> int:
    """``t``'s version counter (bumped by every in-place change); -1 for an
    inference-mode tensor, which has none (and cannot be changed in place
    outside inference mode)."""
    try:
        return int(t._version)
    except RuntimeError:
        return -1


def _is_weight(placeholder: fx.Node | None, x: Any) -> bool:
    """Whether an example input (with its graph placeholder) is a parameter or buffer dynamo lifted to an input."""
    if isinstance(x, torch.nn.Parameter):
        return True
    arg = placeholder.meta.get("grapharg") if placeholder is not None else None
    source = getattr(arg, "source", None)
    if source is None:
        return False
    try:
        from torch._dynamo.source import is_from_unspecialized_param_buffer_source

        return bool(is_from_unspecialized_param_buffer_source(source))
    except Exception:  # a private helper: without it, fall back on the source's name
        return "_buffers" in source.name or "_parameters" in source.name


class _Baked(torch.nn.Module):
    """``gm`` with its weight inputs held as this module's parameters/buffers,
    so that ``torch.export`` lifts them as weights: ``forward`` takes the other
    inputs, in their order."""

    def __init__(self, gm: fx.GraphModule, example_inputs: Sequence[Any], weight: Sequence[bool]) -> None:
        super().__init__()
        self.gm = gm
        self.slots: list[str | None] = []
        for k, (x, w) in enumerate(zip(example_inputs, weight)):
            if not w:
                self.slots.append(None)
                continue
            slot = f"w{k}"
            if isinstance(x, torch.nn.Parameter):
                self.register_parameter(slot, x)
            else:
                self.register_buffer(slot, x)
            self.slots.append(slot)

    def forward(self, *args: Any) -> Any:
        it = iter(args)
        full = [next(it) if s is None else getattr(self, s) for s in self.slots]
        return self.gm(*full)


class _Compiled:
    """The callable handed back to dynamo for one compiled graph.

    Runs the compiled model on the non-weight inputs while the weights are the
    same tensors, unchanged, and the inputs have the compiled shapes; else
    runs ``gm`` eagerly from then on (one counted fallback).
    """

    def __init__(self, name: str, gm: fx.GraphModule, model: Any, example_inputs: Sequence[torch.Tensor],
                 weight: Sequence[bool]) -> None:
        self.name = name
        self.gm = gm
        self.model = model
        self.weight = list(weight)
        self.weights = [(k, x, _version(x)) for k, (x, w) in enumerate(zip(example_inputs, weight)) if w]
        self.attrs = [(t, _version(t)) for t in list(gm.parameters()) + list(gm.buffers())]
        self.shapes = [(tuple(x.shape), x.dtype) for x, w in zip(example_inputs, weight) if not w]
        self.eager = False

    def _why_not(self, args: Sequence[Any]) -> str | None:
        for k, t, version in self.weights:
            if args[k] is not t or _version(t) != version:
                return "a parameter or buffer changed after compiling (stale weights)"
        for t, version in self.attrs:
            if _version(t) != version:
                return "a parameter or buffer changed after compiling (stale weights)"
        ins = [a for a, w in zip(args, self.weight) if not w]
        if [(tuple(a.shape), a.dtype) for a in ins] != self.shapes:
            return "called with other input shapes or dtypes than it was compiled for"
        if torch.is_grad_enabled() and any(a.requires_grad for a in args):
            return "called with inputs that require grad (training)"
        return None

    def __call__(self, *args: Any) -> tuple[torch.Tensor, ...]:
        if not self.eager:
            why = self._why_not(args)
            if why is None:
                out = self.model(*[a for a, w in zip(args, self.weight) if not w])
                outs = out if isinstance(out, tuple) else (out,)
                # torch tensors in give torch tensors out; a graph with no
                # tensor inputs (all weights) gets NumPy arrays back
                return tuple(o if isinstance(o, torch.Tensor) else torch.as_tensor(o) for o in outs)
            self.eager = True
            _fall_back(self.name, why)
        return self.gm(*args)


def _refusal(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> str | None:
    """Why this graph is not for tensoropt, before trying to convert it; None if it may be."""
    for x in example_inputs:
        if not isinstance(x, torch.Tensor):
            return (f"dynamic shapes (a {type(x).__name__} graph input); "
                    "torch.compile(..., dynamic=False) compiles once per shape")
        if x.device.type != "cpu":
            return f"an input on {x.device}; this backend compiles for the CPU"
    if torch.is_grad_enabled():
        tensors = list(example_inputs) + list(gm.parameters())
        if any(t.requires_grad for t in tensors):
            return "an input or parameter requires grad with grad mode on (training); tensoropt is inference only"
    return None


def backend(gm: fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., Any]:
    """The ``torch._dynamo`` backend: a callable for ``gm``, compiled when possible.

    Returns a callable taking ``gm``'s inputs and returning its output tuple;
    ``gm.forward`` itself (eager) when the graph cannot be compiled. Never
    raises for a graph it cannot handle (see the module docstring).
    """
    with _lock:
        _stats.graphs += 1
        name = f"graph {_stats.graphs}"
    why = _refusal(gm, example_inputs)
    if why is not None:
        _fall_back(name, why)
        return gm.forward
    try:
        from .compiler import compile as compile_graph
        from .frontends.torch import from_module

        phs: list[fx.Node | None] = [n for n in gm.graph.nodes if n.op == "placeholder"]
        phs += [None] * (len(example_inputs) - len(phs))
        weight = [_is_weight(ph, x) for ph, x in zip(phs, example_inputs)]
        user = [x for x, w in zip(example_inputs, weight) if not w]
        with torch.no_grad():
            graph = from_module(_Baked(gm, example_inputs, weight), tuple(user), name="dynamo_graph")
            model = compile_graph(graph)
    except Exception as e:  # the project's errors, torch's and TVM's alike: fall back, one line
        _fall_back(name, _first_line(e))
        return gm.forward
    with _lock:
        _stats.compiled += 1
    return _Compiled(name, gm, model, example_inputs, weight)


def _register() -> None:
    """Register :func:`backend` under :data:`BACKEND_NAME` when no entry point names it.

    With the package installed, torch finds the entry point itself and
    registers what it loads; registering here as well would make torch's own
    registration fail on a duplicate name. Without it (a source checkout not
    installed), this is what makes the name known. A name taken already is
    left alone.
    """
    from importlib.metadata import entry_points

    from torch._dynamo.backends.registry import _COMPILER_FNS, register_backend

    if entry_points(group="torch_dynamo_backends", name=BACKEND_NAME) or BACKEND_NAME in _COMPILER_FNS:
        return
    try:
        register_backend(compiler_fn=backend, name=BACKEND_NAME)
    except AssertionError:  # registered meanwhile (a duplicate name)
        pass


_register()
