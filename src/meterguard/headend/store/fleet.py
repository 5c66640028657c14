"""The fleet list for 10^5 meters: search, filter, sort and one page, in SQL.

:func:`fleet_page` answers a :class:`FleetQuery` with the page's rows and the number of
meters that match, in two statements whatever the fleet's size: the meters table (with its
``last_reading`` kept by ingest, migration 0019) joined to small grouped subqueries — alarms
not cleared, the last executed supply command — and to a meter's feeder and reported
firmware. Nothing here groups the readings table.

:func:`meter_detail` gathers one meter's page: identity, firmware and attestation, feeder,
its alarms, security events and commands (bounded, newest first).

It decides nothing about who may see what: :mod:`meterguard.headend.services.fleet` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, case, func, or_, select

from meterguard.headend.store.models import (
    Alarm,
    Command,
    Feeder,
    FeederMember,
    Meter,
    MeterFirmware,
    SecurityEvent,
)

if TYPE_CHECKING:
    from meterguard.headend.store.repository import AlarmView, SecurityEventView

__all__ = [
    "SORTS",
    "FleetPage",
    "FleetQuery",
    "FleetRow",
    "MeterDetail",
    "facets",
    "fleet_page",
    "health",
    "meter_detail",
]

SORTS = ("id", "state", "last_reading", "alarms", "feeder", "firmware", "supply")
"""What the list sorts by."""
INTERVAL = 900


@dataclass(frozen=True, slots=True)
class FleetQuery:
    """What the caller asks of the list (validated by the service)."""

    q: str = ""
    """Part of a meter id (case-insensitive)."""
    meter_id: str = ""
    """Exactly this meter (a meter's page)."""
    state: str = ""
    alarms: str = ""
    """``open`` (an alarm not cleared) or ``none``."""
    supply: int | None = None
    """0 disconnected, 1 connected, 2 ready to reconnect."""
    feeder: str = ""
    """A feeder's name."""
    firmware: str = ""
    """A reported firmware version."""
    silent_since: int | None = None
    """Only meters whose newest reading ended before this time (or that never sent one)."""
    sort: str = "id"
    descending: bool = False
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One meter in the list."""

    meter_id: str
    state: str
    last_reading_at: int | None
    """End of the newest stored interval."""
    open_alarms: int
    supply: int
    feeder: str | None
    firmware: str | None
    attestation: str | None


@dataclass(frozen=True, slots=True)
class FleetPage:
    """A page of the list and how many meters match in all."""

    total: int
    rows: list[FleetRow]


def _joined(q: FleetQuery) -> Any:  # a Select of the row's eight columns
    alarms = (
        select(Alarm.meter_id, func.count().label("n"))
        .where(Alarm.state != "cleared")
        .group_by(Alarm.meter_id)
        .subquery()
    )
    relay = (
        select(Command.meter_id, func.max(Command.counter).label("counter"))
        .where(Command.state == "executed", Command.control_state.is_not(None))
        .group_by(Command.meter_id)
        .subquery()
    )
    supply = func.coalesce(Command.control_state, 1)
    n_alarms = func.coalesce(alarms.c.n, 0)
    stmt = (
        select(
            Meter.id,
            Meter.state,
            Meter.last_reading,
            n_alarms.label("alarms"),
            supply.label("supply"),
            Feeder.name,
            MeterFirmware.version,
            MeterFirmware.attestation,
        )
        .outerjoin(alarms, alarms.c.meter_id == Meter.id)
        .outerjoin(relay, relay.c.meter_id == Meter.id)
        .outerjoin(Command, and_(Command.meter_id == Meter.id, Command.counter == relay.c.counter))
        .outerjoin(FeederMember, FeederMember.meter_id == Meter.id)
        .outerjoin(Feeder, Feeder.id == FeederMember.feeder_id)
        .outerjoin(MeterFirmware, MeterFirmware.meter_id == Meter.id)
    )
    if q.meter_id:
        stmt = stmt.where(Meter.id == q.meter_id)
    if q.q:
        stmt = stmt.where(func.upper(Meter.id).contains(q.q.upper(), autoescape=True))
    if q.state:
        stmt = stmt.where(Meter.state == q.state)
    if q.alarms == "open":
        stmt = stmt.where(n_alarms > 0)
    elif q.alarms == "none":
        stmt = stmt.where(n_alarms == 0)
    if q.supply is not None:
        stmt = stmt.where(supply == q.supply)
    if q.feeder:
        stmt = stmt.where(Feeder.name == q.feeder)
    if q.firmware:
        stmt = stmt.where(MeterFirmware.version == q.firmware)
    if q.silent_since is not None:
        stmt = stmt.where(
            or_(Meter.last_reading.is_(None), Meter.last_reading + INTERVAL < q.silent_since)
        )
    return stmt


def fleet_page(engine: Engine, q: FleetQuery) -> FleetPage:
    """The meters matching ``q``: one page of them, sorted, and their number."""
    stmt = _joined(q)
    key = {
        "id": Meter.id,
        "state": Meter.state,
        "last_reading": func.coalesce(Meter.last_reading, -1),
        "alarms": stmt.selected_columns.alarms,
        "feeder": func.coalesce(Feeder.name, ""),
        "firmware": func.coalesce(MeterFirmware.version, ""),
        "supply": stmt.selected_columns.supply,
    }[q.sort]
    ordered = stmt.order_by(key.desc() if q.descending else key.asc(), Meter.id)
    count = select(func.count()).select_from(stmt.subquery())
    with engine.connect() as conn:
        total = int(conn.scalar(count) or 0)
        rows = _rows(conn, ordered.offset(q.offset).limit(q.limit))
    return FleetPage(total, rows)


def _rows(conn: Connection, stmt: Any) -> list[FleetRow]:
    return [
        FleetRow(
            str(m),
            str(st),
            None if last is None else int(last) + INTERVAL,
            int(n),
            int(sup),
            None if fd is None else str(fd),
            None if fw is None else str(fw),
            None if att is None else str(att),
        )
        for m, st, last, n, sup, fd, fw, att in conn.execute(stmt)
    ]


@dataclass(frozen=True, slots=True)
class MeterDetail:
    """One meter's page (never key material: the key store's facts come from elsewhere)."""

    row: FleetRow
    serial: str
    created_at: int
    firmware_slot: str | None
    firmware_counter: int | None
    firmware_reported_at: int | None
    alarms: list[AlarmView]
    """Newest first."""
    events: list[SecurityEventView]
    """Newest first."""


def meter_detail(engine: Engine, meter_id: str, *, limit: int = 50) -> MeterDetail | None:
    """``meter_id``'s identity, state and recent records, or None if it does not exist."""
    from meterguard.headend.store.repository import (  # noqa: PLC0415 - it imports this module
        AlarmView,
        SecurityEventView,
    )

    with engine.connect() as conn:
        found = _rows(conn, _joined(FleetQuery(meter_id=meter_id)))
        if not found:
            return None
        row = found[0]
        serial, created = conn.execute(
            select(Meter.serial, Meter.created_at).where(Meter.id == meter_id)
        ).one()
        fw = conn.execute(
            select(MeterFirmware.slot, MeterFirmware.counter, MeterFirmware.reported_at).where(
                MeterFirmware.meter_id == meter_id
            )
        ).first()
        alarms = [
            AlarmView(int(i), meter_id, int(seq), int(code), int(raised), str(st), rec)
            for i, seq, code, raised, st, rec in conn.execute(
                select(
                    Alarm.id,
                    Alarm.sequence,
                    Alarm.code,
                    Alarm.raised_at,
                    Alarm.state,
                    Alarm.received_at,
                )
                .where(Alarm.meter_id == meter_id)
                .order_by(Alarm.id.desc())
                .limit(limit)
            )
        ]
        events = [
            SecurityEventView(int(i), int(at), meter_id, str(ev), str(d), int(n), int(last or at))
            for i, at, ev, d, n, last in conn.execute(
                select(
                    SecurityEvent.id,
                    SecurityEvent.at,
                    SecurityEvent.event,
                    SecurityEvent.detail,
                    SecurityEvent.count,
                    SecurityEvent.last_at,
                )
                .where(SecurityEvent.meter_id == meter_id)
                .order_by(SecurityEvent.id.desc())
                .limit(limit)
            )
        ]
    return MeterDetail(
        row,
        str(serial),
        int(created),
        None if fw is None else fw[0],
        None if fw is None else fw[1],
        None if fw is None else fw[2],
        alarms,
        events,
    )


def facets(engine: Engine, *, limit: int = 500) -> tuple[list[str], list[str]]:
    """The feeders' names and the firmware versions reported, for the list's filters."""
    with engine.connect() as conn:
        feeders = [
            str(n) for (n,) in conn.execute(select(Feeder.name).order_by(Feeder.name).limit(limit))
        ]
        versions = [
            str(v)
            for (v,) in conn.execute(
                select(MeterFirmware.version)
                .where(MeterFirmware.version.is_not(None))
                .distinct()
                .order_by(MeterFirmware.version)
                .limit(limit)
            )
        ]
    return feeders, versions


def health(engine: Engine, *, stale_after: int) -> dict[str, int]:
    """Meters reporting, stale, alarmed, and disconnected or retired: one grouped statement.

    Stale is relative to the newest reading anywhere (the meters' clock, whatever it is):
    ``stale_after`` seconds behind it, or never read.
    """
    stmt = _joined(FleetQuery())
    sub = stmt.subquery()
    newest = select(func.max(Meter.last_reading)).scalar_subquery()
    group = case(
        (sub.c.alarms > 0, "alarm"),
        (or_(sub.c.supply == 0, sub.c.state != "active"), "off"),
        (
            or_(sub.c.last_reading.is_(None), sub.c.last_reading < newest - stale_after),
            "stale",
        ),
        else_="ok",
    ).label("g")
    counts = {"ok": 0, "stale": 0, "alarm": 0, "off": 0}
    with engine.connect() as conn:
        for g, n in conn.execute(select(group, func.count()).group_by(group)):
            counts[str(g)] = int(n)
    return counts
