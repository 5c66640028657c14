"""One frozen configuration of a system, and what a running one publishes for other processes.

:class:`SystemConfig` is what the operator chooses (data directory, database, host,
fleet size, workers). :class:`RunInfo` is what a running head-end writes to
``system.json`` once it listens — the database URL and the broker's and the web server's
ports — so that ``meterguard ingest run``, ``status``, ``meter revoke`` and the other
commands join that system without being told again. Reading a directory that holds no
system is a :class:`~meterguard.errors.ConfigurationError` with one clear sentence.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from meterguard.errors import ConfigurationError
from meterguard.system.layout import DataLayout

__all__ = ["RunInfo", "SystemConfig"]


@dataclass(frozen=True)
class SystemConfig:
    """What to run and where."""

    data: Path
    meters: int = 200
    speed: float = 900.0
    """Simulated seconds per wall-clock second of the fleet's accelerated clock."""
    db: str | None = None
    host: str = "127.0.0.1"
    workers: int = 1
    """In-process ingest workers (0: run `meterguard ingest run` separately)."""
    watch_every: float = 1.0
    """Seconds between looks at the meter registry (revocations from other processes)."""
    history_days: int = 0
    """A new fleet starts this many simulated days back and catches up on its first step
    (so theft scoring has history at once); at most 56 (ingest refuses older readings)."""
    homes_per_feeder: int = 20
    """Homes behind each feeder meter (the fleet's last meters are the feeder meters)."""
    score_every: float = 20.0
    """Wall seconds between theft-scoring rounds."""
    web_host: str | None = None
    """Where the dashboard and API listen (None: ``host``)."""
    web_port: int = 0
    """The dashboard's port (0: the one this data directory used last, else 8443 if free,
    else any free port)."""

    @property
    def layout(self) -> DataLayout:
        """The data directory's paths."""
        return DataLayout(self.data)

    @property
    def db_url(self) -> str:
        """The database URL (SQLite in the data directory by default)."""
        return self.db or self.layout.sqlite


@dataclass(frozen=True)
class RunInfo:
    """What a running system tells other processes (``system.json``)."""

    db: str
    host: str
    service_port: int
    device_port: int
    web_port: int
    meters: int
    meter_time: float | None = None
    """The meters' simulated clock (Unix seconds) at ``wall_at``; None: they keep wall time."""
    wall_at: float | None = None
    speed: float = 1.0
    est_port: int = 0
    """The EST enrolment endpoint's port (0: none runs)."""
    firmware_port: int = 0
    """The firmware endpoint's port (0: none runs)."""

    def meter_clock(self) -> Callable[[], float]:
        """What the meters' clocks read now: simulated in a demo, the wall clock otherwise."""
        if self.meter_time is None or self.wall_at is None:
            return time.time
        s0, w0, speed = self.meter_time, self.wall_at, self.speed
        return lambda: s0 + (time.time() - w0) * speed

    def write(self, layout: DataLayout) -> None:
        """Publish atomically (readers never see half a file)."""
        tmp = layout.info.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, layout.info)

    @classmethod
    def read(cls, data: Path) -> RunInfo:
        """The running (or last run) system in ``data``.

        Raises:
            ConfigurationError: no system has run in ``data``, or its file is unreadable.
        """
        path = DataLayout(data).info
        try:
            raw = json.loads(path.read_text())
            return cls(
                db=str(raw["db"]),
                host=str(raw["host"]),
                service_port=int(raw["service_port"]),
                device_port=int(raw["device_port"]),
                web_port=int(raw["web_port"]),
                meters=int(raw["meters"]),
                meter_time=None if raw.get("meter_time") is None else float(raw["meter_time"]),
                wall_at=None if raw.get("wall_at") is None else float(raw["wall_at"]),
                speed=float(raw.get("speed", 1.0)),
                est_port=int(raw.get("est_port", 0)),
                firmware_port=int(raw.get("firmware_port", 0)),
            )
        except FileNotFoundError:
            raise ConfigurationError(
                f"no meterguard system in {data} (start one with `meterguard demo --data {data}`)"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{path} is unreadable: {exc}") from None
