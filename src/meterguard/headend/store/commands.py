"""The SQL of dual-control commands: rows, the per-meter counter, one unit of work per step.

:meth:`CommandRepository.transaction` opens a :class:`CommandUnit`: the command row locked for
the step, the next counter of its meter (unique per meter by constraint), the meter's state,
and the audit entries of the step — all committed together or not at all. The rules (who may
approve, when a proposal expires, what is signed) are the command service's
(:mod:`meterguard.headend.services.commands`), not this module's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from meterguard.headend.store.audit import AuditWriter, Fields
from meterguard.headend.store.models import Command, Meter

__all__ = ["CommandRepository", "CommandUnit", "CommandView"]


@dataclass(frozen=True, slots=True)
class CommandView:
    """A command as the API shows it: one field per column of ``commands``."""

    id: int
    meter_id: str
    kind: str
    value: int | None
    state: str
    reason: str
    proposed_by: str
    proposed_at: int
    approved_by: str | None
    approved_at: int | None
    counter: int | None
    result: int | None
    control_state: int | None
    answered_at: int | None
    reading: int | None = None


class CommandUnit:
    """One step's transaction."""

    def __init__(self, conn: Connection, audit: AuditWriter) -> None:
        self._conn, self._audit = conn, audit

    def meter_state(self, meter_id: str) -> str | None:
        """The meter's lifecycle state (None: no such meter)."""
        return self._conn.scalar(select(Meter.state).where(Meter.id == meter_id))

    def add(self, **values: Any) -> int:
        """Insert a command; its id."""
        return int(
            self._conn.execute(insert(Command).values(**values).returning(Command.id)).scalar_one()
        )

    def locked(self, command_id: int) -> CommandView | None:
        """The command, locked until the end of this step (None: no such command)."""
        row = self._conn.execute(
            select(Command).where(Command.id == command_id).with_for_update()
        ).first()
        return None if row is None else CommandView(**row._asdict())

    def set(self, command_id: int, **values: Any) -> None:
        """Change columns of a command."""
        self._conn.execute(update(Command).where(Command.id == command_id).values(**values))

    def next_counter(self, meter_id: str) -> int:
        """The meter's next command counter."""
        last = self._conn.scalar(
            select(func.coalesce(func.max(Command.counter), 0)).where(Command.meter_id == meter_id)
        )
        return 1 + int(last or 0)

    def audit(self, entries: Sequence[Fields]) -> None:
        """LOG-1 entries, in this step's transaction."""
        self._audit.append_in(self._conn, entries)


class CommandRepository:
    """Commands over one engine."""

    def __init__(self, engine: Engine, audit: AuditWriter) -> None:
        self.engine, self._audit = engine, audit

    def __repr__(self) -> str:
        return "CommandRepository()"

    @contextmanager
    def transaction(self) -> Iterator[CommandUnit]:
        """One step, committed at the end of the block (rolled back on an exception)."""
        with self.engine.begin() as conn:
            yield CommandUnit(conn, self._audit)

    def get(self, command_id: int) -> CommandView | None:
        """One command, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(Command).where(Command.id == command_id)).first()
        return None if row is None else CommandView(**row._asdict())

    def list(self, *, meter_id: str | None = None, limit: int = 100) -> list[CommandView]:
        """Newest first."""
        q = select(Command).order_by(Command.id.desc()).limit(limit)
        if meter_id is not None:
            q = q.where(Command.meter_id == meter_id)
        with self.engine.connect() as conn:
            return [CommandView(**r._asdict()) for r in conn.execute(q)]

    def mark_undelivered(self, command_id: int) -> None:
        """A sent command no meter subscription took."""
        with self.engine.begin() as conn:
            conn.execute(
                update(Command)
                .where(Command.id == command_id, Command.state == "sent")
                .values(state="undelivered")
            )
