"""Durable, atomic replacement of a small file: a meter's state, an auditor's pin, a witness's view.

It does not decide what goes in the file, nor lock it against other writers (callers that race
hold a lock of their own).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file"]


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends, atomically and durably.

    The data is fsynced, renamed over ``path``, then the directory is fsynced (so the
    rename survives a power cut); an exception leaves ``path`` as it was. Mode 0600.
    Every form of the meter persists its counters' reservations through this (DM-6); the
    auditor its pin and the witness what it saw.
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
