"""Measured cost of a candidate program: compile it with TVM, time it, cache the time.

The derivation search ranks equivalent programs by what they really cost on
this machine, not by a model. :func:`measure_graph` is that oracle:

1. **Fold what only weights feed.** ``fold-constants`` (no size limit) then
   ``dce`` run first, so a layout transform of a weight, which a deployed
   model computes once at load time, is neither compiled nor timed. Constants
   without arrays get random ones first (their values cannot change the time,
   and folding needs arrays).
2. **Compile** with :func:`tensoropt.runtime.measure.compile_graph` (the
   build ``tensoropt.compile`` does) for ``target``.
3. **Time** ``main`` with TVM's ``time_evaluator`` on seeded random inputs of
   the graph's (static) input types; ``number`` calls per repeat are chosen so
   that the ``repeat`` repeats together take about ``min_seconds``.

Results are kept in a :class:`CostCache`, keyed by the *structure* of the
folded graph (its printed text: ops, attributes, names, shapes, dtypes; never
weight values, see :func:`cache_key`), the target, the machine and the TVM
version. A cached answer costs no compilation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Mapping, TypeGuard

from tensoropt.errors import TensoroptError
from tensoropt.ir.graph import Graph
from tensoropt.runtime.measure import compile_graph, cpu_model, device_model, random_values, threads, time_model

__all__ = [
    "CostCache",
    "CostCacheWarning",
    "DEFAULT",
    "Measurement",
    "MeasureError",
    "cache_key",
    "default_cache",
    "default_cache_path",
    "measure_graph",
    "prepare_for_measurement",
]

#: Bump when the meaning of a cached time changes (a new timing protocol, a
#: codegen change that makes old times stale); it is part of every key, so old
#: records are simply never matched again.
KEY_SCHEMA: Final = 1

#: Environment variable naming the cache directory; ``off`` disables the default cache.
CACHE_DIR_ENV: Final = "TENSOROPT_CACHE_DIR"
CACHE_FILE: Final = "derive-costs.jsonl"

#: The name every graph is printed under for its key: a graph's name does not
#: change its time, so two candidates that differ only in name share a record.
_KEY_GRAPH_NAME: Final = "candidate"


class MeasureError(TensoroptError):
    """A graph that cannot be measured (symbolic input dims, bad options)."""


class CostCacheWarning(UserWarning):
    """The cost cache file had unreadable records, or could not be written."""


@dataclass(frozen=True)
class Measurement:
    """One measured program.

    Invariants: ``runs_s`` is non-empty and holds seconds *per call* of the
    compiled ``main`` (each the mean over one repeat's ``number`` calls);
    ``median_s == statistics.median(runs_s)``; ``compile_s`` is the wall time
    the compilation took when the program was measured (also when the answer
    now comes from the cache); ``cached`` says whether this answer came from a
    :class:`CostCache` (no compilation happened in this call).
    """

    median_s: float
    runs_s: tuple[float, ...]
    compile_s: float
    cached: bool


# --------------------------------------------------------------------------
# the cache


def _valid_seconds(x: object) -> TypeGuard[float]:
    # JSON true/false load as bool, a subclass of int: not a time.
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _record_measurement(rec: object) -> tuple[str, Measurement] | None:
    """(key, measurement) of one parsed record, or None when it is malformed."""
    if not isinstance(rec, dict):
        return None
    key, median, runs, comp = rec.get("key"), rec.get("median_s"), rec.get("runs_s"), rec.get("compile_s")
    if not isinstance(key, str) or not key:
        return None
    if not _valid_seconds(median) or not _valid_seconds(comp):
        return None
    if not isinstance(runs, list) or not runs or not all(_valid_seconds(r) for r in runs):
        return None
    return key, Measurement(float(median), tuple(float(r) for r in runs), float(comp), cached=True)


class CostCache:
    """Measured times on disk (one JSON-lines file) and in memory.

    Invariants:

    - Each line of the file is one JSON object ``{"key", "median_s", "runs_s",
      "compile_s", ...}`` (extra fields describe the record for humans and are
      ignored on read). A record is appended with one ``write`` of the whole
      line on an ``O_APPEND`` descriptor, so concurrent writers do not
      interleave and a crash leaves at most one partial *last* line; the next
      append starts on a fresh line so that partial line never swallows a
      good record.
    - Reading never fails on content: a line that is not a valid record is
      skipped and counted in :attr:`corrupt_lines`, with one
      :class:`CostCacheWarning` per load naming the file and the first bad line.
      An unreadable file is treated as empty (with a warning).
    - The file is read once, lazily, on first use; later records for a key win
      over earlier ones. :meth:`put` updates memory first, so a failed disk
      write (read-only directory, full disk) only warns, once.
    - Everything returned by :meth:`get` has ``cached=True``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.corrupt_lines = 0
        self._entries: dict[str, Measurement] | None = None
        self._lock = threading.Lock()  # candidates may be measured from several threads
        self._write_failed = False

    def __repr__(self) -> str:
        n = "unloaded" if self._entries is None else f"{len(self._entries)} records"
        return f"CostCache({str(self.path)!r}, {n})"

    def _load(self) -> dict[str, Measurement]:
        """The in-memory records, reading the file on first use (call with the lock held)."""
        if self._entries is not None:
            return self._entries
        entries: dict[str, Measurement] = {}
        bad: list[int] = []
        try:
            data = self.path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # no file yet: nothing to read, nothing to warn about
            data = b""
        except OSError as e:
            warnings.warn(f"{self.path}: cannot read the cost cache ({e.strerror or e}); starting empty",
                          CostCacheWarning, stacklevel=4)
            data = b""
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                parsed = _record_measurement(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
                parsed = None
            if parsed is None:
                bad.append(lineno)
                continue
            key, m = parsed
            entries[key] = m  # later records win
        self.corrupt_lines = len(bad)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            warnings.warn(f"{self.path}:{bad[0]}: skipped a corrupt cost-cache record{more}",
                          CostCacheWarning, stacklevel=4)
        self._entries = entries
        return entries

    def get(self, key: str) -> Measurement | None:
        """The measurement recorded for ``key`` (``cached=True``), or None."""
        with self._lock:
            return self._load().get(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._load()

    def __len__(self) -> int:
        with self._lock:
            return len(self._load())

    def put(self, key: str, m: Measurement, meta: Mapping[str, Any] | None = None) -> None:
        """Record ``m`` for ``key`` in memory and append it to the file.

        ``meta`` (JSON-serialisable) is stored beside the record for people
        reading the file; it never affects lookups.
        """
        stored = Measurement(m.median_s, tuple(m.runs_s), m.compile_s, cached=True)
        rec: dict[str, Any] = dict(meta or {})
        rec.update(key=key, median_s=stored.median_s, runs_s=list(stored.runs_s), compile_s=stored.compile_s)
        line = json.dumps(rec, sort_keys=True, allow_nan=False).encode("utf-8") + b"\n"
        with self._lock:
            self._load()[key] = stored
            if self._write_failed:
                return
            try:
                self._append(line)
            except OSError as e:
                self._write_failed = True
                warnings.warn(f"{self.path}: cannot write the cost cache ({e.strerror or e}); "
                              "keeping measurements in memory only", CostCacheWarning, stacklevel=3)

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Read-write: the last byte is checked before appending (O_APPEND still puts
        # every write at the end).
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # A crash mid-append (or a foreign writer) may have left a partial
            # last line: start a new one so only that fragment is lost.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            # One write of the whole record; no user-space buffer, so nothing
            # is left to flush. A short write (disk full) is finished in place:
            # at worst a crash then leaves one partial last line, which is skipped.
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)


class _Default:
    """Type of :data:`DEFAULT` (its only instance): "use :func:`default_cache`"."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: ``measure_graph(cache=DEFAULT)``: the process-wide cache of :func:`default_cache`.
DEFAULT: Final = _Default()

_default_cache: CostCache | None = None
_default_lock = threading.Lock()


def default_cache_path() -> Path | None:
    """Where the default cache lives, or None when ``TENSOROPT_CACHE_DIR=off``.

    ``$TENSOROPT_CACHE_DIR/derive-costs.jsonl`` when the variable is set (and
    not empty), else ``~/.cache/tensoropt/derive-costs.jsonl``.
    """
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    if env.lower() == "off":
        return None
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "tensoropt"
    return base / CACHE_FILE


def default_cache() -> CostCache | None:
    """The process-wide :class:`CostCache`, made on first use (None when disabled).

    The environment is consulted on every call: if ``TENSOROPT_CACHE_DIR``
    changed since the object was made, a cache for the new path replaces it
    (a long-lived process, or a test, can redirect it).
    """
    global _default_cache
    path = default_cache_path()
    if path is None:
        return None
    with _default_lock:
        if _default_cache is None or _default_cache.path != path:
            _default_cache = CostCache(path)
        return _default_cache


# --------------------------------------------------------------------------
# keys


def cache_key(graph: Graph, target: str = "llvm") -> str:
    """SHA-256 key for the measured time of ``graph`` on this machine.

    Covers: the printed graph (renamed to a fixed name; ``print_graph`` prints
    shapes, dtypes, attributes and Exprs but never weight values, so the key is
    structural), the target string, the device model (CPU, and GPU for GPU
    targets), TVM's thread count, the TVM version and :data:`KEY_SCHEMA`.
    Pass the graph as measured, i.e. after :func:`prepare_for_measurement`.
    """
    import tvm

    from tensoropt.ir.printer import print_graph

    parts = {
        "schema": KEY_SCHEMA,
        "graph": print_graph(graph.replace(name=_KEY_GRAPH_NAME)),
        "target": target,
        "device": device_model(target),
        "threads": threads(),
        "tvm": str(tvm.__version__),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# measuring


def _check_static(graph: Graph) -> None:
    for v in graph.inputs:
        syms = v.type.symbols()
        if syms:
            raise MeasureError(
                f"cannot measure graph {graph.name!r}: input %{v.name} has symbolic dims "
                f"({v.type}; symbols {', '.join(sorted(syms))}); every input dim must be a static int, "
                "so bind them before measuring")


def prepare_for_measurement(graph: Graph) -> Graph:
    """``graph`` as it is compiled and timed: weights-only subgraphs folded away.

    Guarantees: every constant has an array (missing ones are filled with
    seeded random values, which cannot change the time); every node whose
    inputs are all constants is folded, whatever its size (a deployed model
    computes it once, at load time); then dead nodes and constants go. Inputs
    and outputs are unchanged.
    """
    from tensoropt.passes.dce import DeadCodeElimination
    from tensoropt.passes.fold_constants import FoldConstants
    from tensoropt.passes.pipeline import run_pipeline

    missing = [c for c in graph.constants if c.name not in graph.weights]
    if missing:
        weights = dict(graph.weights)
        weights.update(random_values(missing, seed=1))
        graph = graph.replace(weights=weights)
    # No size limit: a large transposed weight is still computed once, not per call.
    folded, _ = run_pipeline(graph, [FoldConstants(max_bytes=1 << 62), DeadCodeElimination()])
    return folded


def measure_graph(graph: Graph, target: str = "llvm", *, repeat: int = 15, min_seconds: float = 0.2,
                  cache: CostCache | None | _Default = DEFAULT) -> Measurement:
    """Median measured seconds per call of ``graph`` compiled for ``target``.

    ``graph``'s inputs must have static dims (:class:`MeasureError` otherwise).
    The graph is first reduced by :func:`prepare_for_measurement`, and that
    reduced graph is what is keyed, compiled and timed. ``cache`` is
    :data:`DEFAULT` (the process-wide :func:`default_cache`), a
    :class:`CostCache`, or None (always measure, record nothing). A cache hit
    returns the recorded measurement with ``cached=True`` without compiling;
    otherwise the program is compiled and timed (``repeat`` repeats of
    ``number`` calls, ``number`` chosen so that all repeats together take about
    ``min_seconds``) and the result recorded. Compilation errors propagate.
    """
    if repeat < 1:
        raise MeasureError(f"measure_graph: repeat must be >= 1, got {repeat}")
    if not (min_seconds >= 0 and math.isfinite(min_seconds)):
        raise MeasureError(f"measure_graph: min_seconds must be a finite number >= 0, got {min_seconds}")
    _check_static(graph)
    store = default_cache() if isinstance(cache, _Default) else cache
    prepared = prepare_for_measurement(graph)
    key = cache_key(prepared, target) if store is not None else ""
    if store is not None:
        hit = store.get(key)
        if hit is not None:
            return hit

    t0 = time.perf_counter()
    model = compile_graph(prepared, target)
    compile_s = time.perf_counter() - t0
    runs = time_model(model, random_values(prepared.inputs, seed=0), repeat, min_seconds)
    m = Measurement(float(statistics.median(runs)), tuple(runs), compile_s, cached=False)
    if store is not None:
        store.put(key, m, meta={"graph": graph.name, "nodes": len(prepared.nodes), "target": target,
                                "cpu": cpu_model(), "threads": threads(), "repeat": repeat,
                                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return m
