"""Read-only access to the records an attack must leave: audit, security events, alarms, refusals.

:class:`EvidenceReader` takes a :class:`Mark` (the newest audit sequence number, security
event, alarm and quarantined-message ids) before an attack, and afterwards returns only what
was written since, bounded in count. It is what ``meterguard attack`` reads to decide that
the system *saw* an attack, in the system's own database; it writes nothing, holds no key.

A summarised security event (one row per meter, event and window) that was opened before the
mark and counted again during the attack is found too: rows whose ``last_at`` moved past the
mark's time are included, unless their count is still what it was at the mark (a row last
counted in the mark's own second, by something before it).

:func:`dump_tables` is the other reader an attack needs: every row of every table, as a
thief with a copy of the database would read it (its bytes are searched for what must not
be there in clear).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, MetaData, func, or_, select

from meterguard.headend.store.models import (
    Alarm,
    AuditRecord,
    Quarantined,
    Reading,
    SecurityEvent,
)

__all__ = ["EvidenceReader", "Mark", "Record", "dump_tables"]

LIMIT = 2000
"""At most this many records of each kind are read per look (an attack may write many)."""


@dataclass(frozen=True, slots=True)
class Mark:
    """Where the records stood before an attack."""

    audit_seq: int
    event_id: int
    alarm_id: int
    quarantine_id: int
    at: int
    """Head-end seconds when the mark was taken (for summarised events counted again)."""
    counted: frozenset[tuple[str, int, int]] = frozenset()
    """Summary rows already counted in the mark's second: (table, id, count). One counted
    again later shows a higher count; one that is not is not the attack's."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record, the same shape for every kind."""

    kind: str
    """``audit`` | ``security_event`` | ``alarm`` | ``quarantine`` (a refused message's kind)"""
    name: str
    """The audit action, the event name, or ``alarm:<code>``."""
    subject: str
    """The meter or target it is about (``""`` if none)."""
    result: str
    """The audit result, the event's count, or the alarm's state."""
    at: int
    detail: str

    def describe(self) -> str:
        """One line for a report."""
        about = f" {self.subject}" if self.subject else ""
        return f"{self.kind} {self.name}{about} [{self.result}] at {self.at}: {self.detail[:160]}"


class EvidenceReader:
    """What was recorded after a mark."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def mark(self, *, now: int) -> Mark:
        """The newest records now."""
        with self.engine.connect() as conn:
            seq = conn.scalar(select(func.max(AuditRecord.seq))) or 0
            ev = conn.scalar(select(func.max(SecurityEvent.id))) or 0
            al = conn.scalar(select(func.max(Alarm.id))) or 0
            qu = conn.scalar(select(func.max(Quarantined.id))) or 0
            counted = {
                ("security_event", int(i), int(n))
                for i, n in conn.execute(
                    select(SecurityEvent.id, SecurityEvent.count).where(
                        SecurityEvent.last_at >= now
                    )
                )
            } | {
                ("quarantine", int(i), int(n))
                for i, n in conn.execute(
                    select(Quarantined.id, Quarantined.count).where(Quarantined.last_at >= now)
                )
            }
        return Mark(int(seq), int(ev), int(al), int(qu), now, frozenset(counted))

    def readings(self) -> int:
        """How many readings are stored (to see that the fleet's data keeps arriving)."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Reading)) or 0)

    def newest_intervals(self) -> dict[str, int]:
        """Each meter's newest stored interval start (to see that a backlog has arrived)."""
        q = select(Reading.meter_id, func.max(Reading.interval_start)).group_by(Reading.meter_id)
        with self.engine.connect() as conn:
            return {str(m): int(t) for m, t in conn.execute(q)}

    def interval_counts(self, start: int, end: int) -> dict[str, int]:
        """How many intervals each meter has stored with a start in ``[start, end]``."""
        q = (
            select(Reading.meter_id, func.count())
            .where(Reading.interval_start >= start, Reading.interval_start <= end)
            .group_by(Reading.meter_id)
        )
        with self.engine.connect() as conn:
            return {str(m): int(n) for m, n in conn.execute(q)}

    def since(self, mark: Mark) -> list[Record]:
        """Everything recorded after ``mark``, oldest first within each kind."""
        audit = (
            select(
                AuditRecord.action,
                AuditRecord.target,
                AuditRecord.result,
                AuditRecord.at,
                AuditRecord.detail,
                AuditRecord.actor,
            )
            .where(AuditRecord.seq > mark.audit_seq)
            .order_by(AuditRecord.seq)
            .limit(LIMIT)
        )
        events = (
            select(
                SecurityEvent.id,
                SecurityEvent.event,
                SecurityEvent.meter_id,
                SecurityEvent.count,
                SecurityEvent.at,
                SecurityEvent.detail,
            )
            .where(or_(SecurityEvent.id > mark.event_id, SecurityEvent.last_at >= mark.at))
            .order_by(SecurityEvent.id)
            .limit(LIMIT)
        )
        alarms = (
            select(Alarm.code, Alarm.meter_id, Alarm.state, Alarm.received_at, Alarm.sequence)
            .where(Alarm.id > mark.alarm_id)
            .order_by(Alarm.id)
            .limit(LIMIT)
        )
        refused = (
            select(
                Quarantined.id,
                Quarantined.kind,
                Quarantined.meter_id,
                Quarantined.count,
                Quarantined.at,
                Quarantined.reason,
            )
            .where(or_(Quarantined.id > mark.quarantine_id, Quarantined.last_at >= mark.at))
            .order_by(Quarantined.id)
            .limit(LIMIT)
        )
        with self.engine.connect() as conn:
            out = [
                Record("audit", a[0], a[1], a[2], int(a[3]), f"by {a[5]}: {a[4]}")
                for a in conn.execute(audit)
            ]
            out.extend(
                Record("security_event", e[1], e[2] or "", f"x{e[3]}", int(e[4]), e[5])
                for e in conn.execute(events)
                if ("security_event", int(e[0]), int(e[3])) not in mark.counted
            )
            out.extend(
                Record("alarm", f"alarm:{r[0]}", r[1], r[2], int(r[3] or 0), f"seq {r[4]}")
                for r in conn.execute(alarms)
            )
            out.extend(
                Record("quarantine", q[1], q[2] or "", f"x{q[3]}", int(q[4]), q[5])
                for q in conn.execute(refused)
                if ("quarantine", int(q[0]), int(q[3])) not in mark.counted
            )
        return out


def dump_tables(engine: Engine, *, batch: int = 5000) -> Iterator[bytes]:
    """Every row of every table (reflected, so tables of later migrations are included)."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            result = conn.execution_options(stream_results=True).execute(select(table))
            for rows in result.partitions(batch):
                yield b"\n".join(
                    b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
                    for row in rows
                )
