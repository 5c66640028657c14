"""Atomic persistence of a meter's non-volatile state (its "NVM") as one JSON file.

:func:`write_atomic` writes a temporary file in the same directory, fsyncs it,
renames it over the old file and fsyncs the directory, so a crash leaves either
the old or the new state, never half of one. The file is created with mode
0600: it holds the meter's own keys, as a real meter's secure element would
(the head-end's key store, with envelope encryption, is a separate component).

This module does not interpret the state; :mod:`meterguard.meter.device` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_file", "load_state", "write_atomic"]

STATE_FILE = "meter.json"


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends, atomically and durably.

    The data is fsynced, renamed over ``path``, then the directory is fsynced (so the
    rename survives a power cut); an exception leaves ``path`` as it was. Mode 0600.
    Every form of the meter persists its counters' reservations through this (DM-6).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically and durably."""
    with atomic_file(path) as f:
        f.write(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())


def load_state(path: Path) -> dict[str, Any] | None:
    """Return the stored state, or None if there is none yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError(f"{path}: not a meter state object")
    return data
