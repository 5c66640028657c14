"""The Clock protocol: the one place where wall time enters meterguard.

Code below the adapters (``cosem/``, ``crypto/``, the meter model, services)
never reads the system clock; it takes ``now`` as an argument. Adapters and
command-line entry points hold a :class:`Clock` and pass ``clock.now()`` down.
This makes protocol behaviour reproducible in tests and lets the meter fleet
run on accelerated time.

This module does not schedule anything and does not sleep.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "FixedClock", "SimulatedClock", "SystemClock"]


class Clock(Protocol):
    """Something that tells the current UTC time."""

    def now(self) -> dt.datetime:
        """Return the current time as an aware UTC datetime."""
        ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> dt.datetime:
        """Return the current UTC time."""
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            msg = "FixedClock needs an aware datetime"
            raise ValueError(msg)
        self._now = start

    def now(self) -> dt.datetime:
        """Return the clock's current time."""
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self._now += delta


class SimulatedClock:
    """Simulated time: ``start``, then ``speed`` simulated seconds per wall-clock second.

    The fleet's accelerated time (the demo runs 15 simulated minutes a second) is this, never
    the wall clock: what is stamped with it is meter time, and says so.
    """

    def __init__(
        self,
        start: dt.datetime,
        speed: float = 1.0,
        *,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        if start.tzinfo is None:
            msg = "SimulatedClock needs an aware datetime"
            raise ValueError(msg)
        self.start, self.speed, self._wall = start, speed, wall
        self._t0 = wall()

    def now(self) -> dt.datetime:
        """The simulated time now."""
        return self.start + dt.timedelta(seconds=(self._wall() - self._t0) * self.speed)
