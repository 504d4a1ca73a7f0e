"""Shape arithmetic shared by the op rules.

Invariants:
- Dims are ``int >= 0`` or symbols (``str``); nothing here invents a symbol.
  Where a result cannot be written as one dim (``batch * 2``), the helpers
  raise :class:`ShapeError` instead of guessing.
- Every error message names the offending input index and shows shapes in the
  text format's spelling (``[batch, 784]``).
"""

from __future__ import annotations

import math
from typing import Sequence

from ..errors import ShapeError
from ..ir.types import Dim, Shape


def fmt_shape(shape: Sequence[Dim]) -> str:
    """``[batch, 784]``: shapes as the text format writes them."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast(shapes: Sequence[Shape], indices: Sequence[int] | None = None) -> Shape:
    """NumPy-style broadcast of ``shapes`` (right-aligned).

    A symbol broadcasts with 1 or with itself; a symbol against a different
    int > 1 or a different symbol is an error, because the result would depend
    on the binding. ``indices`` are the input positions used in messages.
    """
    idx = list(indices) if indices is not None else list(range(len(shapes)))
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for k in range(rank):
        dim: Dim = 1
        owner = -1  # which input decided ``dim`` (for the message)
        for i, s in zip(idx, shapes):
            j = len(s) - rank + k
            if j < 0:
                continue
            d = s[j]
            if d == 1 or d == dim:
                continue
            if dim == 1:
                dim, owner = d, i
                continue
            other = shapes[idx.index(owner)]
            raise ShapeError(
                f"cannot broadcast input {owner} shape {fmt_shape(other)} with input {i} "
                f"shape {fmt_shape(s)}: {dim} vs {d} in output dim {k}"
            )
        out.append(dim)
    return tuple(out)


def broadcast_to(shape: Shape, target: Shape, index: int) -> None:
    """Check that input ``index`` with ``shape`` broadcasts (one way) to ``target``."""
    ok = len(shape) <= len(target) and all(
        d == 1 or d == t for d, t in zip(reversed(shape), reversed(target))
    )
    if not ok:
        raise ShapeError(
            f"input {index} has shape {fmt_shape(shape)}, expected a shape that "
            f"broadcasts to {fmt_shape(target)}"
        )


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in ``[-rank, rank)`` mapped to ``[0, rank)``."""
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for rank {rank} (valid: {-rank}..{rank - 1})")
    return axis % rank


def norm_axes(axes: Sequence[int], rank: int, what: str = "axes") -> tuple[int, ...]:
    """Normalized, sorted axes; duplicates are an error."""
    out = [norm_axis(a, rank, what) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"{what} {list(axes)} repeat an axis (rank {rank})")
    return tuple(sorted(out))


def dim_product(dims: Sequence[Dim], what: str) -> Dim:
    """The product of ``dims`` as one dim.

    Symbolic only when exactly one symbol is multiplied by ones; anything else
    symbolic (``batch * 2``, ``a * b``) cannot be written and is an error.
    """
    syms = [d for d in dims if isinstance(d, str)]
    ints = [d for d in dims if isinstance(d, int)]
    n = math.prod(ints)
    if not syms:
        return n
    if len(syms) == 1 and n == 1:
        return syms[0]
    if n == 0:
        return 0
    raise ShapeError(f"{what} {fmt_shape(dims)} multiplies to a non-simple symbolic size")


def window_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int,
               dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a conv/pool window sweep (ONNX/PyTorch rule).

    With ``ceil_mode`` a last partial window is kept only if it starts inside
    the input or the low padding (PyTorch's rule, which ONNX opset 19 adopts).
    """
    span = (kernel - 1) * dilation + 1
    room = size + pad_lo + pad_hi - span
    if room < 0:
        return 0
    if ceil_mode:
        out = -(-room // stride) + 1
        if (out - 1) * stride >= size + pad_lo:
            out -= 1
        return out
    return room // stride + 1


def numel1(shape: Sequence[Dim]) -> int:
    """Element count with every symbol taken as 1 (for costs, which are ints)."""
    return math.prod(d if isinstance(d, int) else 1 for d in shape)


def reshape_spec(src: Sequence[Dim], dst: Sequence[Dim]) -> tuple[int, ...] | None:
    """The ``reshape`` op's ``shape`` attribute (ints, ONNX 0/-1 rules) that
    turns ``src`` into ``dst``: a symbol at the same position as in ``src``
    copies it (0), another one is inferred (-1). None when more than one dim
    would need inferring (the attribute cannot say which symbol goes where).
    An int 0 in ``dst`` would read as "copy": callers refuse zero-size dims.
    """
    spec: list[int] = []
    for k, d in enumerate(dst):
        if isinstance(d, int):
            spec.append(d)
        elif k < len(src) and src[k] == d:
            spec.append(0)
        else:
            spec.append(-1)
    return tuple(spec) if spec.count(-1) <= 1 else None


def expand_spec(src: Sequence[Dim], dst: Sequence[Dim]) -> tuple[int, ...] | None:
    """The ``expand`` op's ``shape`` attribute (ints) that broadcasts ``src`` to
    ``dst``: a symbol in ``dst`` is written 1 where the right-aligned input dim
    is that same symbol (broadcasting keeps it). None when a symbol of ``dst``
    is not the input's dim there (the attribute cannot name it).
    """
    spec: list[int] = []
    for k, d in enumerate(dst):
        j = k - (len(dst) - len(src))
        if isinstance(d, int):
            spec.append(d)
        elif 0 <= j < len(src) and src[j] == d:
            spec.append(1)
        else:
            return None
    return tuple(spec)
