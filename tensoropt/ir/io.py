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
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Union

import numpy as np

from ..errors import InputFileError
from .graph import Graph, Value
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


def _read_npz(path: Path, consts: tuple[Value, ...]) -> dict[str, np.ndarray]:
    """The arrays for ``consts``, validated against their declared types."""
    names = ", ".join("%" + c.name for c in consts)
    if not path.is_file():
        raise InputFileError(f"{path}: weights file missing; needed for constants {names}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            present = set(npz.files)
            out: dict[str, np.ndarray] = {}
            for c in consts:
                if c.name not in present:
                    raise InputFileError(f"{path}: no array for constant %{c.name}")
                out[c.name] = npz[c.name]
    except InputFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputFileError(f"{path}: cannot read weights: {e}") from None
    for c in consts:
        _check_array(path, c, out[c.name])
    return out


def _check_array(path: Path, c: Value, arr: np.ndarray) -> None:
    want = c.type
    if arr.dtype != want.np_dtype:
        raise InputFileError(
            f"{path}: constant %{c.name} is declared {want} but the array has dtype {arr.dtype}"
        )
    shape_ok = arr.ndim == want.rank and all(
        isinstance(d, str) or d == n for d, n in zip(want.shape, arr.shape)
    )
    if not shape_ok:
        raise InputFileError(
            f"{path}: constant %{c.name} is declared {want} but the array has shape {list(arr.shape)}"
        )


def load_graph(path: PathLike) -> Graph:
    """Read ``path`` (text) and, when it declares constants, its ``.npz`` weights."""
    p = Path(path)
    g = parse_graph(_read_text(p), filename=str(p))
    if not g.constants:
        return g
    return g.replace(weights=_read_npz(weights_path(p), g.constants))


# ---------------------------------------------------------------- saving


def _write_npz(f: "os.PathLike[str] | str", arrays: Mapping[str, np.ndarray]) -> None:
    # Written entry by entry rather than with np.savez(**arrays): tensor names
    # may be any string, including `file` or `allow_pickle`.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def _write_bytes(f: Path, data: bytes) -> None:
    f.write_bytes(data)


def _temp_for(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _write_temp(target: Path, write: Callable[[Path], None]) -> Path:
    """Write via ``write`` into a fresh temp file beside ``target``; fsync it.

    The temp file gets the target's current mode (0o644 for a new file), since
    ``mkstemp`` creates it private and ``os.replace`` keeps that mode.
    """
    tmp = _temp_for(target)
    try:
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = 0o644
        os.chmod(tmp, mode)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


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
            temps.append((_write_temp(npz, lambda t: _write_npz(t, arrays)), npz))
        temps.append((_write_temp(p, lambda t: _write_bytes(t, text)), p))
        # weights first: a reader that sees the new text also sees its weights
        for tmp, target in temps:
            os.replace(tmp, target)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
