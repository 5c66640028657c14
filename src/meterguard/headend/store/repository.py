"""Repositories: the only place that writes SQL for the head-end (services call these).

* :meth:`Store.add_readings` inserts a batch in one transaction and ignores
  rows already stored (same meter and interval) — ingest may see a message
  twice (QoS 1) and must store it once (REL-1).
* :meth:`Store.commit_ingest` commits one ingest batch in one transaction:
  the pushes' invocation counters are inserted into ``push_counters`` first,
  and only the pushes whose counter is new there keep their readings and
  alarms. That primary key is the anti-replay check shared by every worker
  process and lane (ADR 6): a counter already accepted is a broker
  redelivery (DUP) or a replay (a security event), whoever accepted it.
* Alarms are idempotent by (meter, sequence); security events and quarantined
  messages are append-only.

Works on SQLite and PostgreSQL alike (dialect-specific ``ON CONFLICT DO NOTHING``). On
PostgreSQL, ``readings`` gets one partition per month, created as ingest first meets it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from meterguard.errors import TransportError
from meterguard.headend.store import fleet
from meterguard.headend.store.accounts import AccountRepository
from meterguard.headend.store.audit import AuditWriter, Fields, count_in_window
from meterguard.headend.store.billing import BillingRepository
from meterguard.headend.store.commands import CommandRepository
from meterguard.headend.store.fleet import FleetPage, FleetQuery, MeterDetail
from meterguard.headend.store.meters import MeterRepository
from meterguard.headend.store.models import (
    Alarm,
    Command,
    Counter,
    Meter,
    PushCounter,
    Quarantined,
    Reading,
    SecurityEvent,
)
from meterguard.headend.store.privacy import AccessLogRepository, ConsentRepository
from meterguard.headend.store.retention import RetentionStore
from meterguard.headend.store.sealing import Vault, open_values, seal_row
from meterguard.headend.store.sharing import SharingStore
from meterguard.headend.store.webauthn import WebAuthnRepository

__all__ = [
    "AlarmView",
    "CommitOutcome",
    "PushRow",
    "ReadingRow",
    "RefusalRow",
    "SecurityEventView",
    "Store",
]

MAX_QUARANTINE_PAYLOAD = 4096
QUARANTINE_KEEP = 30 * 86400
"""Seconds quarantined samples are kept for analysis."""
BATCH = 500
RESEND_WINDOW = 64
"""How far below a meter's highest accepted counter a message it marks as resent may be and
still count as a duplicate: more than a meter has in flight when its connection drops."""
PUSH_WINDOW = 256
"""How far below a meter's highest push counter a late push is still accepted (ADR 6)."""
PUSH_KEEP = 8 * PUSH_WINDOW
"""Accepted push counters kept below the highest one; older rows are pruned."""


class ReadingRow(NamedTuple):
    """One reading to store (a tuple: it goes to the database as it is)."""

    meter_id: str
    interval_start: int
    import_wh: int
    export_wh: int
    received_at: int


log = logging.getLogger(__name__)


def _month(ts: int) -> int:
    """Months since year 0 of a Unix time (UTC): year * 12 + month - 1."""
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.year * 12 + d.month - 1


_READINGS_QMARK = (
    "INSERT INTO readings (meter_id, interval_start, import_wh, export_wh, received_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (meter_id, interval_start) DO NOTHING"
)
_READINGS_FORMAT = _READINGS_QMARK.replace("?", "%s")
_SEALED_QMARK = (
    "INSERT INTO readings (meter_id, interval_start, import_wh, export_wh, received_at,"
    " key_version, sealed) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (meter_id, interval_start) DO NOTHING"
)
_SEALED_FORMAT = _SEALED_QMARK.replace("?", "%s")


@dataclass(frozen=True, slots=True)
class PushRow:
    """A push whose tag verified; whether its counter is new is decided at commit."""

    meter_id: str
    ic: int
    topic: str
    payload: bytes
    redelivered: bool = False
    readings: tuple[ReadingRow, ...] = ()
    alarm: tuple[int, int, int] | None = None
    """(sequence, event code, raised at)."""
    result: tuple[int, int, int, int | None] | None = None
    """A command's outcome: (counter, DLMS result code, disconnect control state, value read)."""
    resent: bool = False
    """The meter marked it as sent again from its outbox (the contract's ``RESEND``)."""


@dataclass(frozen=True, slots=True)
class RefusalRow:
    """A refused message to quarantine, with its security event if it is one."""

    topic: str
    reason: str
    payload: bytes
    event: str | None = None
    meter_id: str | None = None
    kind: str = ""
    """What it is counted under (default: its event, or "refused")."""


@dataclass(frozen=True, slots=True)
class AlarmView:
    """An alarm as the API shows it."""

    id: int
    meter_id: str
    sequence: int
    code: int
    raised_at: int
    """Meter time: the meter's own clock when the sensor fired."""
    state: str
    received_at: int | None = None
    """Head-end time: when ingest stored it (the clock of events, commands and logins)."""
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    cleared_by: str | None = None
    cleared_at: int | None = None


@dataclass(frozen=True, slots=True)
class SecurityEventView:
    """A security event as the API shows it."""

    id: int
    at: int
    meter_id: str | None
    event: str
    detail: str
    count: int = 1
    """Repeats summarised on this row (first seen ``at``, last seen ``last_at``)."""
    last_at: int = 0


@dataclass
class CommitOutcome:
    """What :meth:`Store.commit_ingest` stored and what it refused."""

    accepted: list[PushRow] = field(default_factory=list)
    duplicates: int = 0
    replays: list[PushRow] = field(default_factory=list)
    readings: int = 0
    highest: dict[str, int] = field(default_factory=dict)
    """The highest accepted push counter per meter after the commit (for the floor)."""


_LAST_READING = (
    update(Meter)
    .where(
        Meter.id == bindparam("m"),
        or_(Meter.last_reading.is_(None), Meter.last_reading < bindparam("t")),
    )
    .values(last_reading=bindparam("t"))
)


def _raise_last_reading(conn: Connection, readings: Sequence[ReadingRow]) -> None:
    """Raise each meter's ``last_reading`` to its newest interval in ``readings``.

    One statement per batch, a row per meter: the fleet list reads it, not the readings.
    """
    newest: dict[str, int] = {}
    for r in readings:
        if r.interval_start > newest.get(r.meter_id, -1):
            newest[r.meter_id] = r.interval_start
    conn.execute(_LAST_READING, [{"m": m, "t": t} for m, t in sorted(newest.items())])


def _alarm_filter(
    meters: Sequence[str] | None,
    states: Sequence[str] | None,
    codes: Sequence[int] | None,
    except_codes: Sequence[int],
) -> list[Any]:
    where: list[Any] = []
    if meters is not None:
        where.append(Alarm.meter_id.in_(list(meters)))
    if states is not None:
        where.append(Alarm.state.in_(list(states)))
    if codes is not None:
        where.append(Alarm.code.in_(list(codes)))
    if except_codes:
        where.append(Alarm.code.not_in(list(except_codes)))
    return where


_ALARM_STEP = {
    "acknowledged": lambda who, at: {"acknowledged_by": who[:64], "acknowledged_at": at},
    "cleared": lambda who, at: {"cleared_by": who[:64], "cleared_at": at},
}
"""Who took an alarm to a state, and when, kept on its row (the audit log has it too)."""


class Store:
    """Head-end repositories over one engine."""

    def __init__(self, engine: Engine, *, vault: Vault | None = None) -> None:
        self.engine = engine
        self.vault = vault
        """Seals readings at rest under per-meter data keys (None: stored in clear)."""
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._qmark = engine.dialect.paramstyle == "qmark"
        self._partitioned = engine.dialect.name == "postgresql"
        self.audit = AuditWriter(engine)
        self.registry = MeterRepository(engine)
        self.consents = ConsentRepository(engine)
        self.access = AccessLogRepository(engine)
        self.commands = CommandRepository(engine, self.audit)
        self.billing = BillingRepository(engine, self._values)
        self.webauthn = WebAuthnRepository(engine)
        self.accounts = AccountRepository(engine, self.audit)
        self.sharing = SharingStore(engine, self.audit)
        self.retention = RetentionStore(engine, self.audit)
        self._months: set[int] = set()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)})"

    # -- readings

    def add_readings(self, rows: Sequence[ReadingRow]) -> int:
        """Insert a batch; rows already present are skipped. Returns rows newly stored."""
        if not rows:
            return 0
        stored = 0
        cols: tuple[str, ...] = ("meter_id", "interval_start", "import_wh", "export_wh")
        cols += ("received_at",)
        if self.vault is not None:
            cols += ("key_version", "sealed")
        values = [dict(zip(cols, self._row(r), strict=True)) for r in rows]
        with self.engine.begin() as conn:
            for i in range(0, len(rows), BATCH):
                # One multi-row INSERT per chunk; RETURNING yields only the rows really inserted
                # (executemany row counts are not reliable across drivers).
                stmt = (
                    self._insert(Reading)
                    .values(values[i : i + BATCH])
                    .on_conflict_do_nothing(index_elements=["meter_id", "interval_start"])
                    .returning(Reading.interval_start)
                )
                stored += len(conn.execute(stmt).all())
            _raise_last_reading(conn, rows)
        return stored

    def _row(self, r: ReadingRow) -> tuple[Any, ...]:
        """The row the database keeps for ``r``: as it is, or sealed."""
        if self.vault is None:
            return r
        return seal_row(self.vault, *r)

    def _values(
        self, meter_id: str, start: int, imp: int, exp: int, ver: int | None, sealed: bytes | None
    ) -> tuple[int, int] | None:
        return open_values(self.vault, meter_id, start, imp, exp, ver, sealed)

    def readings(self, meter_id: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """(interval start, import Wh, export Wh) in ``[start, end)``; shredded ones are gone.

        Raises:
            AuthenticationFailedError: a sealed reading was altered in the database.
        """
        with Session(self.engine) as s:
            q = (
                select(
                    Reading.interval_start, Reading.import_wh, Reading.export_wh,
                    Reading.key_version, Reading.sealed,
                )
                .where(
                    Reading.meter_id == meter_id,
                    Reading.interval_start >= start,
                    Reading.interval_start < end,
                )
                .order_by(Reading.interval_start)
            )  # fmt: skip
            rows = s.execute(q).all()
        out = []
        for t, imp, exp, ver, sealed in rows:
            v = self._values(meter_id, int(t), imp, exp, ver, sealed)
            if v is not None:
                out.append((int(t), v[0], v[1]))
        return out

    # -- counters

    def last_counter(self, meter_id: str, key_kind: int = 0) -> int | None:
        """The highest accepted invocation counter, or None.

        Raises:
            TransportError: the database is unreachable (callers retry; it is not "no counter").
        """
        try:
            with Session(self.engine) as s:
                value = s.scalar(
                    select(Counter.last_ic).where(
                        Counter.meter_id == meter_id, Counter.key_kind == key_kind
                    )
                )
        except (OperationalError, InterfaceError) as exc:
            raise TransportError(f"database unavailable: {type(exc).__name__}") from exc
        return None if value is None else int(value)

    # -- ingest

    def commit_ingest(
        self, pushes: Sequence[PushRow], refusals: Sequence[RefusalRow], *, now: int
    ) -> CommitOutcome:
        """Commit one ingest batch atomically: new pushes' rows, counters, refusals.

        A push is accepted if its counter is above the meter's highest accepted one minus
        :data:`PUSH_WINDOW` and not in ``push_counters`` yet (not accepted by any worker). A
        push already accepted is a duplicate if the broker flagged it as redelivered, else a
        replay: quarantined with an ``attempt_to_lower_invocation_counter`` security event
        (DH-4, DH-7). Rows are written in key order, so concurrent workers on PostgreSQL
        lock in the same order and cannot deadlock.
        """
        out = CommitOutcome()
        if self._partitioned:
            starts = [r.interval_start for p in pushes for r in p.readings]
            if starts:
                self._ensure_partitions(min(starts), max(starts))
        with self.engine.begin() as conn:
            self._accept_pushes(conn, pushes, out)
            # Accepted pushes are disjoint across workers (push_counters decided), so their
            # readings need no lock order; ReadingRow is already the row tuple.
            readings = [r for p in out.accepted for r in p.readings]
            if readings:
                # One prepared single-row statement, executemany on the DB-API cursor: the
                # drivers' fast path (row counts are summed correctly by sqlite3 and psycopg 3).
                cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    if self.vault is None:
                        sql = _READINGS_QMARK if self._qmark else _READINGS_FORMAT
                        cur.executemany(sql, readings)
                    else:
                        sql = _SEALED_QMARK if self._qmark else _SEALED_FORMAT
                        cur.executemany(sql, [self._row(r) for r in readings])
                    out.readings = max(cur.rowcount, 0)
                finally:
                    cur.close()
                _raise_last_reading(conn, readings)
            alarms = [
                {
                    "meter_id": p.meter_id,
                    "sequence": a[0],
                    "code": a[1],
                    "raised_at": a[2],
                    "state": "open",
                    "received_at": now,
                }
                for p in out.accepted
                if (a := p.alarm) is not None
            ]
            if alarms:
                stored = conn.execute(
                    self._insert(Alarm)
                    .on_conflict_do_nothing()
                    .returning(Alarm.meter_id, Alarm.code),
                    alarms,
                ).all()
                self.audit.append_in(  # LOG-1: tamper alarms, in the same transaction
                    conn,
                    [
                        Fields(
                            at=now,
                            actor="meter",
                            target=meter,
                            action="alarm_raised",
                            result="open",
                            detail=f"event code {code}",
                        )
                        for meter, code in stored
                    ],
                )
            self._command_results(conn, out.accepted, now)
            if out.highest:
                ins = self._insert(Counter)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["meter_id", "key_kind"],
                        set_={
                            "last_ic": case(
                                (ins.excluded.last_ic > Counter.last_ic, ins.excluded.last_ic),
                                else_=Counter.last_ic,
                            )
                        },
                    ),
                    [
                        {"meter_id": m, "key_kind": 0, "last_ic": ic}
                        for m, ic in sorted(out.highest.items())
                    ],
                )
            quarantined = [*refusals] + [
                RefusalRow(
                    p.topic,
                    f"push counter {p.ic} already accepted: replayed",
                    p.payload,
                    "attempt_to_lower_invocation_counter",
                    p.meter_id,
                )
                for p in out.replays
            ]
            self._refusals(conn, quarantined, now)
        return out

    def _command_results(self, conn: Connection, accepted: Sequence[PushRow], now: int) -> None:
        """Answer sent commands from the meters' verified result pushes (API-10), audited."""
        entries: list[Fields] = []
        for p in accepted:
            if p.result is None:
                continue
            counter, code, state, value = p.result
            row = conn.execute(
                update(Command)
                .where(
                    Command.meter_id == p.meter_id,
                    Command.counter == counter,
                    Command.state == "sent",
                )
                .values(
                    state="executed" if code == 0 else "failed",
                    result=code,
                    control_state=state,
                    answered_at=now,
                    reading=value,
                )
                .returning(Command.id, Command.kind)
            ).first()
            if row is None:
                log.warning("result for no sent command: %s counter %d", p.meter_id, counter)
                continue
            entries.append(
                Fields(
                    at=now,
                    actor="meter",
                    target=p.meter_id,
                    action=f"command_result:{row.kind}",
                    result="executed" if code == 0 else f"failed_{code}",
                    request_id=f"command-{row.id}",
                    detail=f"counter {counter}, control state {state}",
                )
            )
        self.audit.append_in(conn, entries)

    def _ensure_partitions(self, first: int, last: int) -> None:
        """Create the monthly partitions of ``readings`` from ``first``'s month to ``last``'s.

        PostgreSQL only; one short transaction per new month, before the batch, so that the
        batch itself never takes the parent table's DDL lock. A month whose rows already went
        to the default partition (created before its partition existed) stays there: moving
        them is an operator's job, and nothing is lost.
        """
        months = set(range(_month(first), _month(last) + 1)) - self._months
        for key in sorted(months):
            year, month = divmod(key, 12)
            lo = int(dt.datetime(year, month + 1, 1, tzinfo=dt.UTC).timestamp())
            ny, nm = divmod(key + 1, 12)
            hi = int(dt.datetime(ny, nm + 1, 1, tzinfo=dt.UTC).timestamp())
            name = f"readings_{year:04d}_{month + 1:02d}"
            try:
                with self.engine.begin() as conn:
                    # Workers meeting a new month together: one creates it, the others wait
                    # (CREATE ... IF NOT EXISTS alone is not safe against a concurrent create).
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7295001)")
                    conn.exec_driver_sql(
                        # The name and bounds are digits computed here, never data.
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings"
                        f" FOR VALUES FROM ({lo}) TO ({hi})"
                    )
            except IntegrityError as exc:
                if getattr(exc.orig, "sqlstate", None) != "23514":  # check_violation
                    raise
                log.warning("%s: rows of that month are in readings_default; kept there", name)
            self._months.add(key)

    def _accept_pushes(
        self, conn: Connection, pushes: Sequence[PushRow], out: CommitOutcome
    ) -> None:
        if not pushes:
            return
        meters = sorted({p.meter_id for p in pushes})
        highest: dict[str, int] = {}
        for i in range(0, len(meters), BATCH):
            q = select(Counter.meter_id, Counter.last_ic).where(
                Counter.key_kind == 0, Counter.meter_id.in_(meters[i : i + BATCH])
            )
            highest.update((m, int(v)) for m, v in conn.execute(q))
        candidates: dict[tuple[str, int], PushRow] = {}
        late: list[PushRow] = []
        for p in pushes:
            key = (p.meter_id, p.ic)
            floor = highest.get(p.meter_id, -1) - PUSH_WINDOW
            if p.ic <= floor or key in candidates:
                late.append(p)  # older than the window, or twice in this batch
            else:
                candidates[key] = p
        new: set[tuple[str, int]] = set()
        if candidates:
            returned = self._insert_returning(
                conn,
                "push_counters (meter_id, ic)",
                sorted(candidates),
                "ON CONFLICT (meter_id, ic) DO NOTHING RETURNING meter_id, ic",
            )
            new = {(m, int(ic)) for m, ic in returned}
        for key, p in candidates.items():
            if key in new:
                out.accepted.append(p)
                if p.ic > highest.get(p.meter_id, -1):
                    highest[p.meter_id] = p.ic
                    out.highest[p.meter_id] = p.ic
            else:
                late.append(p)
        for p in late:
            if p.redelivered:
                out.duplicates += 1  # stored before a crash, delivered again by the broker
            elif p.resent and p.ic > highest.get(p.meter_id, -1) - RESEND_WINDOW:
                # Sent again by the meter (its broker acknowledgement was lost in an outage),
                # among its latest: a duplicate. Older ones, resent mark or not, are replays.
                out.duplicates += 1
            else:
                out.replays.append(p)

    def _insert_returning(
        self, conn: Connection, into: str, rows: Sequence[tuple[Any, ...]], tail: str
    ) -> list[tuple[Any, ...]]:
        """Multi-row ``INSERT INTO {into} VALUES … {tail}`` in chunks; what RETURNING returned.

        On the DB-API cursor, as plain tuples: on the ingest hot path SQLAlchemy's per-row
        parameter and result processing cost more than the database. The statements are built
        from fixed table and column names only; values are always bound parameters.
        """
        width = len(rows[0])
        one = "(" + ", ".join(["?" if self._qmark else "%s"] * width) + ")"
        step = max(1, 30_000 // width)  # under SQLite's and PostgreSQL's bound-parameter limits
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        returned: list[tuple[Any, ...]] = []
        try:
            for i in range(0, len(rows), step):
                chunk = rows[i : i + step]
                sql = f"INSERT INTO {into} VALUES {', '.join([one] * len(chunk))} {tail}"  # noqa: S608 - fixed names
                cur.execute(sql, [v for row in chunk for v in row])
                returned += cur.fetchall()
        finally:
            cur.close()
        return returned

    def _refusals(self, conn: Connection, refusals: Sequence[RefusalRow], now: int) -> None:
        """Count refusals per (meter, kind) and per (meter, event), summarised (DOS-1).

        Per meter, kind and window one quarantine row keeps the first payload as a sample
        (at most ``MAX_QUARANTINE_PAYLOAD`` bytes) and counts the rest; security events are
        summarised the same way (:meth:`AuditWriter.security_event_in`). Storage grows with
        meters, kinds and time, not with what a meter sends.
        """
        if not refusals:
            return
        by_kind: dict[tuple[str | None, str], list[RefusalRow]] = {}
        by_event: dict[tuple[str | None, str], list[RefusalRow]] = {}
        for r in refusals:
            by_kind.setdefault((r.meter_id, r.kind or r.event or "refused"), []).append(r)
            if r.event is not None:
                by_event.setdefault((r.meter_id, r.event), []).append(r)
        for (meter, kind), rows in by_kind.items():
            if count_in_window(
                conn,
                Quarantined,
                Quarantined.kind == kind,
                meter_id=meter,
                count=len(rows),
                now=now,
            ):
                continue
            first = rows[0]
            conn.execute(
                insert(Quarantined).values(
                    at=now,
                    last_at=now,
                    topic=first.topic[:128],
                    reason=first.reason[:1000],
                    payload=first.payload[:MAX_QUARANTINE_PAYLOAD],
                    meter_id=meter,
                    kind=kind[:64],
                    count=len(rows),
                )
            )
        for (meter, event), rows in by_event.items():
            self.audit.security_event_in(  # LOG-1: security events go to the audit log too
                conn,
                at=now,
                event=event,
                detail=rows[0].reason,
                meter_id=meter,
                count=len(rows),
                summarise=True,
                actor="ingest",
                result="refused",
            )

    def prune_quarantine(self, *, now: int, keep: int = QUARANTINE_KEEP) -> int:
        """Drop quarantined samples older than ``keep`` seconds (their counts go with them)."""
        with self.engine.begin() as conn:
            return max(
                conn.execute(delete(Quarantined).where(Quarantined.at < now - keep)).rowcount, 0
            )

    def prune_push_counters(self, keep: int = PUSH_KEEP) -> int:
        """Drop accepted push counters more than ``keep`` below each meter's highest one."""
        top = (
            select(Counter.last_ic)
            .where(Counter.meter_id == PushCounter.meter_id, Counter.key_kind == 0)
            .scalar_subquery()
        )
        with self.engine.begin() as conn:
            return max(
                conn.execute(delete(PushCounter).where(PushCounter.ic < top - keep)).rowcount, 0
            )

    # -- alarms, events, quarantine

    def alarm_rows(
        self,
        meters: Sequence[str] | None = None,
        *,
        states: Sequence[str] | None = None,
        codes: Sequence[int] | None = None,
        except_codes: Sequence[int] = (),
        limit: int = 500,
    ) -> list[AlarmView]:
        """Alarms with their ids, newest first, at most ``limit``.

        Only of ``meters``, in ``states`` and of ``codes`` when given, never of
        ``except_codes``.
        """
        with Session(self.engine) as s:
            q = (
                select(
                    Alarm.id,
                    Alarm.meter_id,
                    Alarm.sequence,
                    Alarm.code,
                    Alarm.raised_at,
                    Alarm.state,
                    Alarm.received_at,
                    Alarm.acknowledged_by,
                    Alarm.acknowledged_at,
                    Alarm.cleared_by,
                    Alarm.cleared_at,
                )
                .order_by(Alarm.id.desc())
                .limit(limit)
            )
            q = q.where(*_alarm_filter(meters, states, codes, except_codes))
            return [
                AlarmView(int(i), m, int(sq), int(c), int(r), st, rc, ab, aa, cb, ca)
                for i, m, sq, c, r, st, rc, ab, aa, cb, ca in s.execute(q)
            ]

    def count_alarms(
        self, meters: Sequence[str] | None = None, *, states: Sequence[str] | None = None
    ) -> int:
        """How many alarms (of ``meters``, in ``states`` when given)."""
        q = select(func.count()).select_from(Alarm).where(*_alarm_filter(meters, states, None, ()))
        with Session(self.engine) as s:
            return int(s.scalar(q) or 0)

    def move_alarm(
        self, alarm_id: int, *, from_states: tuple[str, ...], to: str, actor: str, now: int
    ) -> str | None:
        """Change an alarm's state if it is in one of ``from_states``; audit it (TAMP-2).

        Returns the meter id, or None if there is no such alarm in those states.
        """
        with self.engine.begin() as conn:
            meter = conn.execute(
                update(Alarm)
                .where(Alarm.id == alarm_id, Alarm.state.in_(from_states))
                .values(state=to, **_ALARM_STEP[to](actor, now))
                .returning(Alarm.meter_id)
            ).scalar()
            if meter is not None:
                self.audit.append_in(
                    conn,
                    [
                        Fields(
                            at=now,
                            actor=actor,
                            target=str(meter),
                            action=f"alarm_{to}",
                            result="ok",
                            detail=f"alarm {alarm_id}",
                        )
                    ],
                )
        return None if meter is None else str(meter)

    def security_event(
        self,
        *,
        at: int,
        event: str,
        detail: str,
        meter_id: str | None = None,
        summarise: bool = False,
    ) -> None:
        """Append a security event (the detail must not contain key material; callers pass ours).

        With ``summarise``, repeats of (meter, event) within a window count on one row.
        """
        with self.engine.begin() as conn:
            self.audit.security_event_in(
                conn, at=at, event=event, detail=detail, meter_id=meter_id, summarise=summarise
            )

    def security_events(self) -> list[tuple[str | None, str]]:
        """(meter, event) of every security event, oldest first; a summary's repeats count."""
        with Session(self.engine) as s:
            return [
                (m, e)
                for m, e, n in s.execute(
                    select(
                        SecurityEvent.meter_id, SecurityEvent.event, SecurityEvent.count
                    ).order_by(SecurityEvent.id)
                )
                for _ in range(int(n))
            ]

    def latest_interval(self, meter_id: str) -> int | None:
        """Start of the meter's newest stored interval, or None (one index lookup)."""
        with Session(self.engine) as s:
            value = s.scalar(
                select(func.max(Reading.interval_start)).where(Reading.meter_id == meter_id)
            )
        return None if value is None else int(value)

    def security_event_rows(self, limit: int = 200) -> list[SecurityEventView]:
        """The newest security events first."""
        q = select(SecurityEvent).order_by(SecurityEvent.id.desc()).limit(limit)
        with Session(self.engine) as s:
            return [
                SecurityEventView(
                    e.id, e.at, e.meter_id, e.event, e.detail, e.count, e.last_at or e.at
                )
                for e in s.scalars(q)
            ]

    def security_event_groups(
        self, *, since: int, event: str = "", limit: int = 100
    ) -> list[tuple[str | None, str, int, int, int, int, str]]:
        """Security events since ``since`` grouped by meter and event, newest first.

        Each: (meter, event, times, rows, first seen, last seen, newest detail). The time bound
        keeps the grouping to recent rows (the table only ever grows).
        """
        last = func.max(func.coalesce(SecurityEvent.last_at, SecurityEvent.at))
        q = (
            select(
                SecurityEvent.meter_id,
                SecurityEvent.event,
                func.sum(SecurityEvent.count),
                func.count(),
                func.min(SecurityEvent.at),
                last,
                func.max(SecurityEvent.id),
            )
            .where(SecurityEvent.at >= since)
            .group_by(SecurityEvent.meter_id, SecurityEvent.event)
            .order_by(last.desc())
            .limit(limit)
        )
        if event:
            q = q.where(SecurityEvent.event == event)
        with Session(self.engine) as s:
            rows = list(s.execute(q))
            details = {
                int(i): str(d)
                for i, d in s.execute(
                    select(SecurityEvent.id, SecurityEvent.detail).where(
                        SecurityEvent.id.in_([r[6] for r in rows])
                    )
                )
            }
        return [
            (m, str(e), int(n or 0), int(k), int(first), int(lst), str(details.get(i, "")))
            for m, e, n, k, first, lst, i in rows
        ]

    def security_event_names(self, *, since: int) -> list[str]:
        """The names of the security events recorded since ``since`` (for a filter)."""
        q = select(SecurityEvent.event).where(SecurityEvent.at >= since).distinct()
        with Session(self.engine) as s:
            return [str(e) for (e,) in s.execute(q)]

    def fleet_page(self, q: FleetQuery) -> FleetPage:
        """One page of the fleet list (see :mod:`meterguard.headend.store.fleet`)."""
        return fleet.fleet_page(self.engine, q)

    def fleet_health(self, *, stale_after: int) -> dict[str, int]:
        """Meters by health (ok, stale, alarm, off), counted in one statement."""
        return fleet.health(self.engine, stale_after=stale_after)

    def fleet_facets(self) -> tuple[list[str], list[str]]:
        """Feeder names and reported firmware versions (the fleet list's filters)."""
        return fleet.facets(self.engine)

    def meter_detail(self, meter_id: str) -> MeterDetail | None:
        """One meter's page, or None if it does not exist."""
        return fleet.meter_detail(self.engine, meter_id)

    def healthy(self) -> bool:
        """Whether the database answers now."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError:
            return False
        return True

    def gauges(self) -> dict[str, dict[str, int]]:
        """What a metrics scrape reads: grouped counts, never a row's content.

        ``meters`` by state, ``alarms`` by state, ``events`` (security events, summed
        counts) by name, ``refusals`` (quarantined messages, summed counts) by kind.
        """
        queries = {
            "meters": select(Meter.state, func.count()).group_by(Meter.state),
            "alarms": select(Alarm.state, func.count()).group_by(Alarm.state),
            "events": select(SecurityEvent.event, func.sum(SecurityEvent.count)).group_by(
                SecurityEvent.event
            ),
            "refusals": select(Quarantined.kind, func.sum(Quarantined.count)).group_by(
                Quarantined.kind
            ),
        }
        with Session(self.engine) as s:
            return {
                name: {str(k): int(n or 0) for k, n in s.execute(q)} for name, q in queries.items()
            }

    def counts(self) -> dict[str, int]:
        """Row counts for status displays."""
        with Session(self.engine) as s:
            return {
                "meters": int(s.scalar(select(func.count()).select_from(Meter)) or 0),
                "readings": int(s.scalar(select(func.count()).select_from(Reading)) or 0),
                "alarms": int(s.scalar(select(func.count()).select_from(Alarm)) or 0),
                "security_events": int(
                    s.scalar(select(func.coalesce(func.sum(SecurityEvent.count), 0))) or 0
                ),
                "rejected_messages": int(
                    s.scalar(select(func.coalesce(func.sum(Quarantined.count), 0))) or 0
                ),
            }
