"""Reading and writing graphs on disk: ``X.top`` text plus ``X.npz`` weights.

- ``X.top`` holds the canonical text (UTF-8). When the graph declares
  constants, ``X.npz`` beside it (``path.with_suffix('.npz')``) holds one array
  per constant, keyed by the tensor name, read with ``allow_pickle=False``.
- ``load_graph`` checks every declared constant against its array (present,
  same dtype, same rank and static dims) and raises ``InputFileError`` naming
  the file and the constant otherwise. Extra arrays in the npz are ignored.
- ``save_graph`` is atomic per file: each file is written to a temporary file
  in the same directory and moved into place with ``os.replace``, so a
  failing save never leaves a half-written ``.top`` or ``.npz``. Both files
  are fully written before either is replaced.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from ..atomic import stage
from ..errors import InputFileError
from .graph import Graph, Value, weight_mismatch
from .parser import parse_graph
from .printer import print_graph

__all__ = ["load_graph", "save_graph", "weights_path"]

PathLike = Union[str, "os.PathLike[str]"]


def weights_path(path: PathLike) -> Path:
    """Where the weights of the graph at ``path`` live: same name, ``.npz``."""
    return Path(path).with_suffix(".npz")


# ---------------------------------------------------------------- loading


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"{path}: cannot read graph file: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None


def read_npz(path: Path, names: Sequence[str] | None = None, what: str = "arrays") -> dict[str, np.ndarray]:
    """Arrays from an ``.npz`` (all, or just ``names``), never unpickling.

    Every way the file can be bad (missing, truncated, not a zip, an object
    array) is one located InputFileError.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            present = set(npz.files)
            for n in names or ():
                if n not in present:
                    raise InputFileError(f"{path}: no array for constant %{n}")
            return {k: npz[k] for k in (names if names is not None else npz.files)}
    except InputFileError:
        raise
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputFileError(f"{path}: cannot read {what}: {e}") from None


def _read_npz(path: Path, consts: tuple[Value, ...]) -> dict[str, np.ndarray]:
    """The arrays for ``consts``, validated against their declared types."""
    names = ", ".join("%" + c.name for c in consts)
    if not path.is_file():
        raise InputFileError(f"{path}: weights file missing; needed for constants {names}")
    out = read_npz(path, [c.name for c in consts], "weights")
    for c in consts:
        _check_array(path, c, out[c.name])
    return out


def _check_array(path: Path, c: Value, arr: np.ndarray) -> None:
    problem = weight_mismatch(c, arr)
    if problem:
        raise InputFileError(f"{path}: {problem}")


def load_graph(path: PathLike) -> Graph:
    """Read ``path`` (text) and, when it declares constants, its ``.npz`` weights."""
    p = Path(path)
    g = parse_graph(_read_text(p), filename=str(p))
    if not g.constants:
        return g
    return g.replace(weights=_read_npz(weights_path(p), g.constants))


# ---------------------------------------------------------------- saving


def write_npz(f: "os.PathLike[str] | str", arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` (no pickles) to a path or file object."""
    # Written entry by entry rather than with np.savez(**arrays): tensor names
    # may be any string, including `file` or `allow_pickle`.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def _weights_for_save(g: Graph) -> dict[str, np.ndarray]:
    missing = [c.name for c in g.constants if c.name not in g.weights]
    if missing:
        raise ValueError(
            f"cannot save graph {g.name!r}: no weight data for constants "
            + ", ".join("%" + m for m in missing)
        )
    return {c.name: np.asarray(g.weights[c.name]) for c in g.constants}


def save_graph(g: Graph, path: PathLike) -> None:
    """Write ``g`` to ``path`` and its constants to ``weights_path(path)``.

    Nothing at ``path`` or beside it changes unless everything was written.
    """
    p = Path(path)
    if g.constants and weights_path(p) == p:
        raise ValueError(f"{p}: graph text and weights would share one file; use another suffix")
    text = print_graph(g).encode("utf-8")
    arrays = _weights_for_save(g) if g.constants else None
    temps: list[tuple[Path, Path]] = []
    try:
        if arrays is not None:
            npz = weights_path(p)
            temps.append((stage(npz, lambda t: write_npz(t, arrays)), npz))
        temps.append((stage(p, lambda t: t.write_bytes(text)), p))
        # weights first: a reader that sees the new text also sees its weights
        for tmp, target in temps:
            os.replace(tmp, target)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
