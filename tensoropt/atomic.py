"""Atomic file writes: a reader sees the old file or the whole new one, never half.

Content goes to a temporary file beside the target (same filesystem, so
``os.replace`` is atomic), is fsynced, and only then renamed over the target.
The temp file is removed if anything fails. This module imports nothing of
tensoropt, so every layer (``ir`` included) may use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def stage(target: Path, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a fresh temp file beside ``target``; return ``tmp``.

    The caller renames it into place (``os.replace``) or deletes it. The temp
    file gets the target's current mode, since
    ``mkstemp`` creates it private and ``os.replace`` keeps that mode. A new
    file gets what ``open()`` would give it: 0o666 less the umask.
    """
    target = Path(target)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Write ``target`` through ``write(tmp_path)``, all or nothing."""
    tmp = stage(target, write)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write(target, lambda p: p.write_bytes(text.encode("utf-8")))
