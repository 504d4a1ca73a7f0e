"""MetaSchedule's JSON database, made safe to resume after ``kill -9``.

TVM 0.27's ``JSONDatabase`` keeps two files in a work directory, one JSON
value per line: ``database_workload.json`` (``[shash, base64 module]``; a
record names its workload by line number) and
``database_tuning_record.json`` (``[workload index, [trace, run_secs,
target, args_info]]``). It appends each line with open / write / close and
no fsync, and reads every line back at open with no per-line recovery
(``docs/tune-research.md``, section 2). A run killed mid-append leaves

- a partial last line: the next open fails (``Unexpected EOF``), so every
  record is unreachable;
- a complete last line without its newline: the next append is glued onto
  it, and TVM's reader keeps only the first value of a line, silently
  dropping the glued record (in the workload file, shifting every later
  workload index).

:func:`repair` runs before every open: it splits glued values onto lines of
their own, drops a partial tail (the write the kill interrupted, counted and
reported), drops records whose workload line is gone, and rewrites the files
atomically only when something changed. Damage anywhere but the tail (a
line that is not JSON in the middle of the workload file, which would shift
indices) is a :class:`RecordsError` naming the file and line, with the files
left as they are: never a silent loss. A bad record line in the middle is
dropped, counted, and the original file kept beside it as ``.bak``.
:func:`locked` holds an exclusive lock on the directory for a run, and
:func:`measured` counts, per workload, the valid and failed measurements
already on disk (a failed build or run is stored with ``run_secs`` ``[1e10]``),
so a resumed run spends only its remaining budget.

Invariant: every record whose line was completely written (its bytes and its
newline) before a kill is present after :func:`repair`, in order, with the
workload index it was written with.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from tensoropt.errors import TensoroptError

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
LOCK = ".tensoropt-tune.lock"
#: run_secs MetaSchedule stores for a candidate that failed to build or run
FAILED_SECS = 1e10


class RecordsError(TensoroptError):
    """A tuning database that cannot be used as it is (damage not at the tail, a held lock)."""


@dataclass
class Repair:
    """What :func:`repair` found and did. ``changed``: the files were rewritten."""

    workloads: int = 0
    records: int = 0
    glued_split: int = 0
    tail_bytes_dropped: dict[str, int] = field(default_factory=dict)
    bad_records_dropped: list[int] = field(default_factory=list)  # 1-based line numbers in the record file
    orphan_records_dropped: int = 0
    changed: bool = False

    def summary(self) -> str:
        """One line for progress output: what was repaired, or "intact"."""
        parts = [f"{self.workloads} workloads, {self.records} records"]
        if self.glued_split:
            parts.append(f"{self.glued_split} glued lines split")
        for name, n in self.tail_bytes_dropped.items():
            parts.append(f"{n} bytes of an interrupted write dropped from {name}")
        if self.bad_records_dropped:
            parts.append(f"{len(self.bad_records_dropped)} unreadable records dropped (lines "
                         f"{', '.join(map(str, self.bad_records_dropped[:5]))}; original kept as .bak)")
        if self.orphan_records_dropped:
            parts.append(f"{self.orphan_records_dropped} records of a lost workload dropped")
        return "; ".join(parts) + ("" if self.changed else " (intact)")


_DECODER = json.JSONDecoder()


def _values(line: str) -> tuple[list[Any], int]:
    """Every JSON value on ``line`` (glued ones too), and where parsing stopped (len(line) if it did not)."""
    out: list[Any] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t\r":
            i += 1
        if i == n:
            return out, n
        try:
            value, i = _DECODER.raw_decode(line, i)
        except json.JSONDecodeError:
            return out, i
        out.append(value)


class _File(NamedTuple):
    """One database file as read: its values as (1-based line, value), the bytes of a partial tail,
    how many glued values were split off, the unreadable lines, and whether it ends with a newline."""

    values: list[tuple[int, Any]]
    dropped: int
    glued: int
    bad: list[int]
    clean_end: bool


def _read(path: Path) -> _File:
    """``path`` as :class:`_File` (empty and clean when it does not exist)."""
    if not path.exists():
        return _File([], 0, 0, [], True)
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    tail = lines.pop()  # after the last newline: "" when the file ends with one
    values: list[tuple[int, Any]] = []
    glued, bad = 0, []
    for k, line in enumerate(lines, 1):
        vs, stop = _values(line)
        if stop != len(line) or not vs:
            bad.append(k)
            continue
        glued += len(vs) - 1
        values += [(k, v) for v in vs]
    dropped = 0
    if tail.strip():
        vs, stop = _values(tail)
        values += [(len(lines) + 1, v) for v in vs]  # complete values without their newline are kept
        glued += max(len(vs) - 1, 0)
        dropped = len(tail[stop:].encode("utf-8"))  # the write the kill interrupted
    return _File(values, dropped, glued, bad, tail == "")


def _is_workload(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)


def _is_record(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 2 and isinstance(v[0], int) and isinstance(v[1], list)
            and len(v[1]) == 4 and isinstance(v[1][1], list))


def _write(path: Path, values: list[Any]) -> None:
    """Replace ``path`` atomically with one compact JSON value per line (fsynced)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for v in values:
            f.write(json.dumps(v, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def repair(work_dir: str | os.PathLike[str]) -> Repair:
    """Make ``work_dir``'s MetaSchedule database openable and complete (module docstring).

    Raises :class:`RecordsError` naming file and line for damage it cannot
    repair without losing or misplacing records; the files are then untouched.
    """
    d = Path(work_dir)
    rep = Repair()
    wl_path, rec_path = d / WORKLOADS, d / RECORDS
    wls, wl_tail, wl_glued, wl_bad, wl_clean = _read(wl_path)
    if wl_bad:
        raise RecordsError(f"{wl_path}:{wl_bad[0]}: not a JSON workload line (later workload indices would "
                           f"shift); move the directory aside to start afresh")
    for line, v in wls:
        if not _is_workload(v):
            raise RecordsError(f"{wl_path}:{line}: not a [hash, module] workload entry")
    recs, rec_tail, rec_glued, rec_bad, rec_clean = _read(rec_path)
    n = len(wls)
    kept: list[Any] = []
    last_line = max((line for line, _ in recs), default=0)
    for line, v in recs:
        if not _is_record(v):
            rec_bad.append(line)
            continue
        if not 0 <= v[0] < n:
            # a record of the workload whose line the kill cut short can only be at the tail
            if wl_tail and line == last_line:
                rep.orphan_records_dropped += 1
                continue
            raise RecordsError(f"{rec_path}:{line}: record of workload {v[0]}, but {wl_path.name} has {n}")
        kept.append(v)
    rep.workloads, rep.records = n, len(kept)
    rep.glued_split = wl_glued + rec_glued
    rep.tail_bytes_dropped = {name: b for name, b in ((WORKLOADS, wl_tail), (RECORDS, rec_tail)) if b}
    rep.bad_records_dropped = sorted(rec_bad)
    rewrite_wl = bool(wl_tail or wl_glued) or not wl_clean
    rewrite_rec = bool(rec_tail or rec_glued or rec_bad or rep.orphan_records_dropped) or not rec_clean
    if rec_bad and rec_path.exists():
        bak = rec_path.with_name(rec_path.name + ".bak")
        bak.write_bytes(rec_path.read_bytes())
    if rewrite_wl:
        _write(wl_path, [v for _, v in wls])
    if rewrite_rec:
        _write(rec_path, kept)
    rep.changed = rewrite_wl or rewrite_rec
    return rep


def measured(work_dir: str | os.PathLike[str]) -> dict[int, tuple[int, int]]:
    """Per workload index: (valid measurements, failed ones) already in the record file."""
    out: dict[int, tuple[int, int]] = {}
    path = Path(work_dir) / RECORDS
    if not path.exists():
        return out
    for _, v in _read(path).values:
        if not _is_record(v):
            continue
        secs = [float(x) for x in v[1][1]]
        ok = bool(secs) and all(0 < s < FAILED_SECS for s in secs)
        valid, failed = out.get(v[0], (0, 0))
        out[v[0]] = (valid + ok, failed + (not ok))
    return out


@contextmanager
def locked(work_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``work_dir`` (created if missing) for one tuning run.

    MetaSchedule numbers workloads from memory, so two writers would misplace
    records; a second run on the same directory is a :class:`RecordsError`
    naming the process that holds it. The lock dies with its process (kill -9
    included): nothing stale to clean up.
    """
    d = Path(work_dir)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", errors="replace").strip() or "another process"
            raise RecordsError(f"{d}: tuning database in use by pid {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield d
    finally:
        os.close(fd)
