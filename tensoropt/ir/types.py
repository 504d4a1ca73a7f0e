"""Tensor types: dtypes and shapes, with symbolic dims.

Invariants:
- A dtype is one of the short names in ``DTYPES`` (``f32``, ``i64``, ...); the
  text format uses exactly these names.
- A dim is a non-negative ``int`` or a symbol: a ``str`` that is a valid
  identifier (``batch``, ``seq``). Symbols are bound to ints at evaluation time.
- ``TensorType`` is frozen and hashable; equality is structural.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import numpy as np

Dim = Union[int, str]
Shape = tuple[Dim, ...]

#: short dtype name -> NumPy dtype. Order is the order shown in error messages.
DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("float32"),
    "f64": np.dtype("float64"),
    "f16": np.dtype("float16"),
    "i64": np.dtype("int64"),
    "i32": np.dtype("int32"),
    "i16": np.dtype("int16"),
    "i8": np.dtype("int8"),
    "u8": np.dtype("uint8"),
    "u16": np.dtype("uint16"),
    "u32": np.dtype("uint32"),
    "u64": np.dtype("uint64"),
    "bool": np.dtype("bool"),
}
FLOAT_DTYPES = frozenset({"f16", "f32", "f64"})
INT_DTYPES = frozenset({"i64", "i32", "i16", "i8", "u8", "u16", "u32", "u64"})
#: the unsigned integer dtypes: arithmetic on them wraps modulo 2**width (as NumPy's).
UNSIGNED_DTYPES = frozenset({"u8", "u16", "u32", "u64"})

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_symbol(d: object) -> bool:
    """True when ``d`` is a symbolic dim (an identifier string)."""
    return isinstance(d, str) and _IDENT.match(d) is not None


def dtype_of(np_dtype: np.dtype | type) -> str:
    """Short name of a NumPy dtype; raises ValueError for unsupported ones."""
    want = np.dtype(np_dtype)
    for name, dt in DTYPES.items():
        if dt == want:
            return name
    raise ValueError(f"unsupported dtype {want}; supported: {', '.join(DTYPES)}")


def format_shape(shape: tuple[Dim, ...] | tuple[int, ...]) -> str:
    """``[batch, 784]``: how shapes appear in text and messages."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorType:
    """A dtype and a shape. ``f32[batch, 784]`` in the text format."""

    dtype: str
    shape: Shape

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if not isinstance(self.shape, tuple):
            object.__setattr__(self, "shape", tuple(self.shape))
        for d in self.shape:
            if isinstance(d, bool) or not (
                (isinstance(d, int) and d >= 0) or is_symbol(d)
            ):
                raise ValueError(f"bad dim {d!r} in shape {self.shape}: want an int >= 0 or a symbol")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def symbols(self) -> frozenset[str]:
        return frozenset(d for d in self.shape if isinstance(d, str))

    def concrete(self, bindings: dict[str, int]) -> tuple[int, ...]:
        """The shape with symbols replaced; KeyError names an unbound symbol."""
        out = []
        for d in self.shape:
            if isinstance(d, str):
                if d not in bindings:
                    raise KeyError(f"symbolic dim {d!r} is not bound")
                out.append(bindings[d])
            else:
                out.append(d)
        return tuple(out)

    def numel(self) -> int | None:
        """Element count, or None when the shape is symbolic."""
        if not self.is_static:
            return None
        n = 1
        for d in self.shape:
            assert isinstance(d, int)
            n *= d
        return n

    def __str__(self) -> str:
        return f"{self.dtype}{format_shape(self.shape)}"
