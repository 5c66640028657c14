"""Repositories: the only place that writes SQL for the head-end (services call these).

* :meth:`Store.add_readings` inserts a batch in one transaction and ignores
  rows already stored (same meter and interval) — ingest may see a message
  twice (QoS 1) and must store it once (REL-1).
* :meth:`Store.advance_counter` moves a meter's accepted invocation counter
  forward atomically and refuses to move it back (DH-4), across processes:
  the update only applies ``WHERE last_ic < :new``.
* Alarms are idempotent by (meter, sequence); security events and quarantined
  messages are append-only.

Works on SQLite and PostgreSQL alike (dialect-specific ``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from meterguard.headend.store.models import (
    Alarm,
    Counter,
    Meter,
    Quarantined,
    Reading,
    SecurityEvent,
)

__all__ = ["ReadingRow", "Store"]

MAX_QUARANTINE_PAYLOAD = 4096
BATCH = 500


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One reading to store."""

    meter_id: str
    interval_start: int
    import_wh: int
    export_wh: int
    received_at: int


class Store:
    """Head-end repositories over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)})"

    # -- meters

    def add_meter(self, meter_id: str, *, serial: str, system_title: bytes, now: int) -> None:
        """Register a meter (idempotent)."""
        stmt = (
            self._insert(Meter)
            .values(
                id=meter_id,
                serial=serial,
                system_title=system_title,
                state="active",
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def meters(self) -> list[tuple[str, bytes, str]]:
        """(id, system title, state) of every meter."""
        with Session(self.engine) as s:
            return [(m.id, m.system_title, m.state) for m in s.scalars(select(Meter))]

    def set_state(self, meter_id: str, state: str) -> None:
        """Disable, re-enable or decommission a meter."""
        with self.engine.begin() as conn:
            conn.execute(update(Meter).where(Meter.id == meter_id).values(state=state))

    # -- readings

    def add_readings(self, rows: Sequence[ReadingRow]) -> int:
        """Insert a batch; rows already present are skipped. Returns rows newly stored."""
        if not rows:
            return 0
        stored = 0
        with self.engine.begin() as conn:
            for i in range(0, len(rows), BATCH):
                # One multi-row INSERT per chunk; RETURNING yields only the rows really inserted
                # (executemany row counts are not reliable across drivers).
                stmt = (
                    self._insert(Reading)
                    .values([_row(r) for r in rows[i : i + BATCH]])
                    .on_conflict_do_nothing(index_elements=["meter_id", "interval_start"])
                    .returning(Reading.interval_start)
                )
                stored += len(conn.execute(stmt).all())
        return stored

    def readings(self, meter_id: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """(interval start, import Wh, export Wh) in ``[start, end)``."""
        with Session(self.engine) as s:
            q = (
                select(Reading.interval_start, Reading.import_wh, Reading.export_wh)
                .where(
                    Reading.meter_id == meter_id,
                    Reading.interval_start >= start,
                    Reading.interval_start < end,
                )
                .order_by(Reading.interval_start)
            )
            return [(int(a), int(b), int(c)) for a, b, c in s.execute(q)]

    # -- counters

    def last_counter(self, meter_id: str, key_kind: int = 0) -> int | None:
        """The highest accepted invocation counter, or None."""
        with Session(self.engine) as s:
            value = s.scalar(
                select(Counter.last_ic).where(
                    Counter.meter_id == meter_id, Counter.key_kind == key_kind
                )
            )
        return None if value is None else int(value)

    def advance_counter(self, meter_id: str, value: int, key_kind: int = 0) -> bool:
        """Record ``value`` if it is above the stored one; False if that would lower it (DH-4)."""
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(Counter)
                .where(
                    Counter.meter_id == meter_id,
                    Counter.key_kind == key_kind,
                    Counter.last_ic < value,
                )
                .values(last_ic=value)
            ).rowcount
            if moved:
                return True
            inserted = conn.execute(
                self._insert(Counter)
                .values(meter_id=meter_id, key_kind=key_kind, last_ic=value)
                .on_conflict_do_nothing()
                .returning(Counter.last_ic)
            ).first()
            return inserted is not None

    # -- alarms, events, quarantine

    def add_alarm(self, meter_id: str, *, sequence: int, code: int, raised_at: int) -> bool:
        """Store an alarm once per (meter, sequence); True if new."""
        stmt = (
            self._insert(Alarm)
            .values(
                meter_id=meter_id, sequence=sequence, code=code, raised_at=raised_at, state="open"
            )
            .on_conflict_do_nothing()
            .returning(Alarm.id)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).first() is not None

    def alarms(self, *, state: str | None = None) -> list[tuple[str, int, int, str]]:
        """(meter, sequence, code, state), optionally filtered by state."""
        with Session(self.engine) as s:
            q = select(Alarm.meter_id, Alarm.sequence, Alarm.code, Alarm.state).order_by(Alarm.id)
            if state is not None:
                q = q.where(Alarm.state == state)
            return [(m, int(seq), int(c), st) for m, seq, c, st in s.execute(q)]

    def security_event(
        self, *, at: int, event: str, detail: str, meter_id: str | None = None
    ) -> None:
        """Append a security event (the detail must not contain key material; callers pass ours)."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(SecurityEvent).values(
                    at=at, meter_id=meter_id, event=event, detail=detail[:1000]
                )
            )

    def security_events(self) -> list[tuple[str | None, str]]:
        """(meter, event) of every security event, oldest first."""
        with Session(self.engine) as s:
            return [
                (m, e) for m, e in s.execute(select(SecurityEvent.meter_id, SecurityEvent.event))
            ]

    def quarantine(self, *, at: int, topic: str, reason: str, payload: bytes) -> None:
        """Keep a refused message (truncated) with its reason."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(Quarantined).values(
                    at=at,
                    topic=topic[:128],
                    reason=reason[:1000],
                    payload=payload[:MAX_QUARANTINE_PAYLOAD],
                )
            )

    def counts(self) -> dict[str, int]:
        """Row counts for status displays."""
        with Session(self.engine) as s:
            return {
                "meters": int(s.scalar(select(func.count()).select_from(Meter)) or 0),
                "readings": int(s.scalar(select(func.count()).select_from(Reading)) or 0),
                "alarms": int(s.scalar(select(func.count()).select_from(Alarm)) or 0),
                "security_events": int(
                    s.scalar(select(func.count()).select_from(SecurityEvent)) or 0
                ),
                "rejected_messages": int(
                    s.scalar(select(func.count()).select_from(Quarantined)) or 0
                ),
            }


def _row(r: ReadingRow) -> dict[str, Any]:
    return {
        "meter_id": r.meter_id,
        "interval_start": r.interval_start,
        "import_wh": r.import_wh,
        "export_wh": r.export_wh,
        "received_at": r.received_at,
    }
