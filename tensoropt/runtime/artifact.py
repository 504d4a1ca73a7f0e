"""The compiled-artifact directory: layout, manifest, atomic write, checked read.

Layout of ``DIR`` (``FORMAT`` version 1)::

    DIR/manifest.json   what this is: inputs/outputs (names, dtypes, shapes with
                        symbolic dims), weights order, target, pipeline, source
                        hash, tensoropt/TVM versions, kernels, fallbacks (kernels
                        that got slower code: kernel, stage, reason, bug), build
                        times, and the SHA-256 of the two files below
    DIR/model.so        the compiled library (Relax VM executable + kernels)
    DIR/weights.npz     the constants, by name (never pickled)

Invariants: a directory is written completely beside its final place and
renamed into it (a reader never sees half an artifact; an existing artifact is
replaced only once the new one is whole). Reading checks the manifest's
schema and both files' hashes before anything is loaded into TVM, so a
truncated or swapped file is one clear :class:`InputFileError`. Keys added
after format version 1 was fixed (``fallbacks``) are optional: a manifest
without them loads as if they were empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import InputFileError
from ..ir.graph import Value
from ..ir.types import DTYPES, TensorType

FORMAT = "tensoropt-artifact"
VERSION = 1
MANIFEST = "manifest.json"
LIBRARY = "model.so"
WEIGHTS = "weights.npz"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def value_json(v: Value) -> dict[str, Any]:
    return {"name": v.name, "dtype": v.type.dtype, "shape": list(v.type.shape)}


@dataclass(frozen=True)
class Manifest:
    """The parsed, validated ``manifest.json``."""

    raw: Mapping[str, Any]
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    weights: tuple[str, ...]

    @property
    def target(self) -> str:
        return str(self.raw["target"]["name"])

    @property
    def name(self) -> str:
        return str(self.raw.get("name", "model"))

    @property
    def fallbacks(self) -> tuple[Mapping[str, Any], ...]:
        """The recorded fallbacks (empty for manifests written before they were recorded)."""
        return tuple(self.raw.get("fallbacks", ()))


#: keys every fallback record has (``bug`` is optional: False when absent).
FALLBACK_KEYS = ("kernel", "stage", "reason")


def _check_fallbacks(raw: Any, path: Path) -> None:
    """InputFileError unless ``raw`` is a list of fallback records (see ``codegen.schedule.Fallback``)."""
    ok = isinstance(raw, list) and all(
        isinstance(f, dict) and all(isinstance(f.get(k), str) for k in FALLBACK_KEYS)
        and isinstance(f.get("bug", False), bool) for f in raw)
    if not ok:
        raise InputFileError(f"{path}: malformed 'fallbacks' (a list of kernel/stage/reason entries)")


def _value(d: Any, where: str) -> Value:
    try:
        name, dtype, shape = d["name"], d["dtype"], d["shape"]
        if not isinstance(name, str) or dtype not in DTYPES or not isinstance(shape, list):
            raise TypeError
        dims = tuple(x for x in shape)
        if not all((isinstance(x, int) and not isinstance(x, bool) and x >= 0) or isinstance(x, str) for x in dims):
            raise TypeError
        return Value(name, TensorType(dtype, dims))
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"{where}: malformed entry {d!r} (need name, dtype, shape)") from None


def is_artifact(directory: Path) -> bool:
    """Whether ``directory`` holds a tensoropt artifact (its manifest says so; a
    ``manifest.json`` of some other tool does not count)."""
    try:
        raw = json.loads((Path(directory) / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT


def check_overwritable(directory: Path) -> None:
    """InputFileError unless ``directory`` is absent, empty, or an artifact (never overwrite other data)."""
    d = Path(directory)
    if d.exists() and not is_artifact(d) and (not d.is_dir() or any(d.iterdir())):
        raise InputFileError(f"{d}: exists and is not a tensoropt artifact; not overwriting it")


def parse_manifest(directory: Path) -> Manifest:
    """Read and validate ``DIR/manifest.json`` (not the files it names)."""
    path = directory / MANIFEST
    if not directory.exists():
        raise InputFileError(f"{directory}: no such artifact directory")
    if not directory.is_dir():
        raise InputFileError(f"{directory}: not a directory (an artifact is a directory written by `tensoropt compile`)")
    if not path.is_file():
        raise InputFileError(f"{path}: missing (not a tensoropt artifact, or an incomplete one)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputFileError(f"{path}: not a tensoropt artifact manifest (format != {FORMAT!r})")
    if raw.get("version") != VERSION:
        raise InputFileError(f"{path}: artifact format version {raw.get('version')!r}; this tensoropt reads {VERSION}")
    for key in ("inputs", "outputs", "weights", "target", "files"):
        if key not in raw:
            raise InputFileError(f"{path}: missing key {key!r}")
    if not isinstance(raw["target"], dict) or "name" not in raw["target"]:
        raise InputFileError(f"{path}: malformed 'target'")
    for key in ("inputs", "outputs"):
        if not isinstance(raw[key], list):
            raise InputFileError(f"{path}: malformed {key!r} (a list of name/dtype/shape entries)")
    inputs = tuple(_value(d, f"{path}: inputs") for d in raw["inputs"])
    outputs = tuple(_value(d, f"{path}: outputs") for d in raw["outputs"])
    weights = raw["weights"]
    if not isinstance(weights, list) or not all(isinstance(w, str) for w in weights):
        raise InputFileError(f"{path}: malformed 'weights' (a list of names)")
    if "fallbacks" in raw:
        _check_fallbacks(raw["fallbacks"], path)
    return Manifest(raw, inputs, outputs, tuple(weights))


def check_files(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest names exists and has its recorded SHA-256."""
    files = manifest.raw["files"]
    if not isinstance(files, dict):
        raise InputFileError(f"{directory / MANIFEST}: malformed 'files'")
    for name in (LIBRARY, WEIGHTS):
        p = directory / name
        want = files.get(name)
        if not isinstance(want, str):
            raise InputFileError(f"{directory / MANIFEST}: no hash recorded for {name}")
        if not p.is_file():
            raise InputFileError(f"{p}: missing from the artifact")
        if sha256_file(p) != want:
            raise InputFileError(f"{p}: corrupt (SHA-256 differs from the manifest's)")


def read_weights(directory: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    from ..ir.io import read_npz

    return read_npz(directory / WEIGHTS, manifest.weights, what="weights")


def write_artifact(directory: Path, manifest: dict[str, Any], weights: Mapping[str, np.ndarray],
                   write_library: Callable[[Path], None]) -> None:
    """Write the whole artifact beside ``directory``, then rename it into place."""
    from ..ir.io import write_npz

    directory = Path(directory)
    parent = directory.parent if str(directory.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    check_overwritable(directory)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        write_library(tmp / LIBRARY)
        write_npz(tmp / WEIGHTS, weights)
        manifest = dict(manifest, files={LIBRARY: sha256_file(tmp / LIBRARY), WEIGHTS: sha256_file(tmp / WEIGHTS)})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{directory.name}.", suffix=".old"))
            os.replace(directory, old / "x")
            try:
                os.replace(tmp, directory)
            except BaseException:
                os.replace(old / "x", directory)  # put the previous artifact back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
