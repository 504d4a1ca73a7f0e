"""The graph level of the IR: SSA over named, typed tensors.

Invariants (checked by ``tensoropt.ir.verify``):

- Every tensor name is defined once: as a graph input, a constant (weight) or a
  node output. Nodes are in topological order: a node reads only names defined
  before it.
- A node is a registry op (``matmul``, ``conv2d``, ...) with attributes, or
  the generic ``expr`` op, whose ``expr`` is a :class:`Scope` reading its
  inputs by name; non-``expr`` nodes have ``expr is None``.
- Everything is frozen and hashable; equality is structural. Weight *data* is
  carried beside the structure (``Graph.weights``) and does not take part in
  equality or hashing: the text format names constants, and their arrays live
  in a ``.npz`` file next to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Union

import numpy as np

from .expr import Scope
from .types import TensorType, dtype_of, format_shape

AttrScalar = Union[int, float, str, bool]
AttrValue = Union[AttrScalar, tuple[AttrScalar, ...]]


@dataclass(frozen=True)
class Value:
    """A named, typed tensor: ``%x: f32[batch, 784]``."""

    name: str
    type: TensorType


def _nan_safe(v: object) -> object:
    """Comparison key of an attribute value: values that print differently
    differ (``1``, ``1.0``, ``True``; ``0.0`` and ``-0.0``); NaN equals NaN."""
    if isinstance(v, tuple):
        return tuple(_nan_safe(x) for x in v)
    if isinstance(v, float):
        return ("float", repr(v))  # -0.0 is not 0.0; NaN is NaN
    return (type(v).__name__, v)


class Attrs(Mapping[str, AttrValue]):
    """An immutable, hashable attribute mapping with keys kept sorted.

    Lists become tuples so that every value is hashable.
    """

    __slots__ = ("_items", "_key", "_hash")

    def __init__(self, items: Mapping[str, object] | Iterable[tuple[str, object]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        norm: list[tuple[str, AttrValue]] = []
        for k, v in pairs:
            if isinstance(v, list):
                v = tuple(v)
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, tuple):
                v = tuple(x.item() if isinstance(x, np.generic) else x for x in v)
            norm.append((k, v))  # type: ignore[arg-type]  # values checked by the op's AttrSpec
        self._items: tuple[tuple[str, AttrValue], ...] = tuple(sorted(norm, key=lambda kv: kv[0]))
        self._key = tuple((k, _nan_safe(v)) for k, v in self._items)
        self._hash = hash(self._key)

    def __getitem__(self, key: str) -> AttrValue:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attrs):
            return self._key == other._key
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Attrs({dict(self._items)!r})"



@dataclass(frozen=True)
class Node:
    """``%y: f32[...] = op(%a, %b) {attr=...}`` or an ``expr`` node with a scope."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[Value, ...]
    attrs: Attrs = field(default_factory=Attrs)
    expr: Scope | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, tuple):
            object.__setattr__(self, "inputs", tuple(self.inputs))
        if not isinstance(self.outputs, tuple):
            object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.attrs, Attrs):
            object.__setattr__(self, "attrs", Attrs(self.attrs))

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.outputs)

    @property
    def label(self) -> str:
        """How error messages name this node: its op and first output."""
        first = self.outputs[0].name if self.outputs else "?"
        return f"{self.op} node %{first}"


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base.1``, ``base.2``, ... : the first not in ``taken``, which it is added to."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}.{k}"
    taken.add(name)
    return name


def weight_mismatch(const: Value, arr: np.ndarray) -> str | None:
    """Why ``arr`` cannot be the data of ``const`` (None when it can).

    Constants have static shapes; the array must match dtype and shape exactly.
    The one rule shared by the loader, the verifier and the interpreter.
    """
    if not const.type.is_static:
        return f"constant %{const.name} has symbolic type {const.type}; constants need static shapes"
    try:
        dt = dtype_of(arr.dtype)
    except ValueError:
        dt = str(arr.dtype)
    if dt != const.type.dtype or tuple(arr.shape) != const.type.shape:
        return f"constant %{const.name} is declared {const.type} but its array is {dt}{format_shape(arr.shape)}"
    return None


class Weights(Mapping[str, np.ndarray]):
    """Read-only name -> array mapping for a graph's constants.

    Arrays are copied once and frozen (``writeable=False``) so that no pass or
    caller can mutate a weight under another graph that shares it.
    """

    __slots__ = ("_arrays",)

    def __init__(self, arrays: Mapping[str, np.ndarray] | None = None) -> None:
        frozen: dict[str, np.ndarray] = {}
        for k, a in (arrays or {}).items():
            if isinstance(a, np.ndarray) and not a.flags.writeable:
                frozen[k] = a
                continue
            arr = np.array(a, copy=True)
            arr.flags.writeable = False
            frozen[k] = arr
        self._arrays = frozen

    def __getitem__(self, key: str) -> np.ndarray:
        return self._arrays[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"Weights({', '.join(f'{k}: {a.dtype}{list(a.shape)}' for k, a in self._arrays.items())})"

    def digest(self) -> str:
        """SHA-256 over names, dtypes, shapes and bytes: content identity."""
        h = hashlib.sha256()
        for k in sorted(self._arrays):
            a = np.ascontiguousarray(self._arrays[k])
            h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
        return h.hexdigest()


    def only(self, names: Iterable[str]) -> Weights:
        keep = set(names)
        return Weights({k: v for k, v in self._arrays.items() if k in keep})


@dataclass(frozen=True)
class Graph:
    """A function from ``inputs`` to ``outputs``; see the module docstring."""

    name: str
    inputs: tuple[Value, ...]
    constants: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    weights: Weights = field(default_factory=Weights, compare=False, hash=False)
    #: where each node was written (``file:line:col``), keyed by its first
    #: output; filled by the parser and used only to locate error messages.
    locations: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        for f in ("inputs", "constants", "nodes", "outputs"):
            v = getattr(self, f)
            if not isinstance(v, tuple):
                object.__setattr__(self, f, tuple(v))
        if not isinstance(self.weights, Weights):
            object.__setattr__(self, "weights", Weights(self.weights))
        if not isinstance(self.locations, MappingProxyType):
            object.__setattr__(self, "locations", MappingProxyType(dict(self.locations)))

    # -- lookups ---------------------------------------------------------
    def values(self) -> dict[str, Value]:
        """Every defined tensor by name (inputs, constants, node outputs)."""
        out = {v.name: v for v in self.inputs}
        out.update((v.name, v) for v in self.constants)
        for n in self.nodes:
            out.update((v.name, v) for v in n.outputs)
        return out

    def type_of(self, name: str) -> TensorType:
        return self.values()[name].type

    def producers(self) -> dict[str, Node]:
        """Tensor name -> the node that defines it (inputs/constants absent)."""
        return {v.name: n for n in self.nodes for v in n.outputs}

    def users(self) -> dict[str, list[Node]]:
        """Tensor name -> nodes that read it, in graph order."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in dict.fromkeys(n.inputs):
                out.setdefault(i, []).append(n)
        return out

    @property
    def output_values(self) -> tuple[Value, ...]:
        vals = self.values()
        return tuple(vals[o] for o in self.outputs)

    def replace(self, **changes: object) -> Graph:
        """A copy with fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def where(self, node: Node) -> str:
        """How messages name ``node``: ``file:line:col: relu node %y`` when known."""
        loc = self.locations.get(node.outputs[0].name) if node.outputs else None
        return f"{loc}: {node.label}" if loc else node.label

    def same_as(self, other: Graph) -> bool:
        """Structural equality *and* equal weight contents."""
        return self == other and self.weights.digest() == other.weights.digest()

    def to_networkx(self) -> Any:  # networkx.DiGraph; the import is lazy for start-up time
        """Dataflow DiGraph: tensor and node vertices, ``('t', name)`` / ``('n', index)``."""
        import networkx as nx

        g = nx.DiGraph()
        for v in self.inputs + self.constants:
            g.add_node(("t", v.name), value=v)
        for i, n in enumerate(self.nodes):
            g.add_node(("n", i), node=n)
            for inp in n.inputs:
                g.add_edge(("t", inp), ("n", i))
            for o in n.outputs:
                g.add_node(("t", o.name), value=o)
                g.add_edge(("n", i), ("t", o.name))
        return g
