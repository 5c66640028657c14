"""One running system per data directory: an exclusive lock that names who holds it.

Two demos on one data directory would share meter state and counters: the second's meters
would reuse the first's invocation counters and every message would look like a replay.
:class:`DataLock` takes a non-blocking ``flock`` on ``DATA/.lock`` and writes the holder's
PID into it; a second start is refused with that PID. The lock goes with the process (the
kernel releases it even after a crash), so a stale file never blocks a new start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from meterguard.errors import ConfigurationError

__all__ = ["DataLock"]


class DataLock:
    """The data directory's lock, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, data: Path) -> None:
        self.path = data / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            ConfigurationError: another process holds it (its PID in the message).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigurationError(
                f"a meterguard system already runs on {self.path.parent} (PID {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
