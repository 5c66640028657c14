"""The head-end store on SQLite and a real PostgreSQL: idempotent readings, monotonic counters."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from meterguard.errors import TransportError
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import ReadingRow, Store

pytestmark = pytest.mark.integration
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store(open_database(f"sqlite:///{tmp_path_factory.mktemp('db') / 'headend.db'}"))
        return
    name = f"mg_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = open_database(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        yield Store(engine)
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _rows(meter: str, n: int, start: int = 1_800_000_000) -> list[ReadingRow]:
    return [ReadingRow(meter, start + 900 * i, 1000 + i, 0, start) for i in range(n)]


def test_readings_are_stored_exactly_once(store: Store) -> None:
    store.add_meter(
        "MGD0000000001", serial="0000000001", system_title=b"MGD\x00\x00\x00\x00\x01", now=1
    )
    assert store.add_readings(_rows("MGD0000000001", 10)) == 10
    assert store.add_readings(_rows("MGD0000000001", 12)) == 2  # 10 duplicates ignored
    got = store.readings("MGD0000000001", 0, 2**40)
    assert len(got) == 12 and got[0] == (1_800_000_000, 1000, 0)
    assert store.counts()["readings"] == 12


def test_counter_never_goes_back(store: Store) -> None:
    store.add_meter(
        "MGD0000000002", serial="0000000002", system_title=b"MGD\x00\x00\x00\x00\x02", now=1
    )
    assert store.last_counter("MGD0000000002") is None
    assert store.advance_counter("MGD0000000002", 10)
    assert store.advance_counter("MGD0000000002", 11)
    assert not store.advance_counter("MGD0000000002", 11)
    assert not store.advance_counter("MGD0000000002", 3)
    assert store.last_counter("MGD0000000002") == 11


def test_alarms_events_quarantine(store: Store) -> None:
    store.add_meter(
        "MGD0000000003", serial="0000000003", system_title=b"MGD\x00\x00\x00\x00\x03", now=1
    )
    assert store.add_alarm("MGD0000000003", sequence=1, code=44, raised_at=5)
    assert not store.add_alarm("MGD0000000003", sequence=1, code=44, raised_at=5)  # re-sent alarm
    store.security_event(
        at=6, event="authentication_failed", detail="tag mismatch", meter_id="MGD0000000003"
    )
    store.quarantine(
        at=7, topic="meters/MGD0000000003/data", reason="bad tag", payload=b"x" * 10_000
    )
    c = store.counts()
    assert (c["alarms"], c["security_events"], c["rejected_messages"]) == (1, 1, 1)
    assert store.alarms(state="open") == [("MGD0000000003", 1, 44, "open")]


def test_unknown_meter_readings_are_refused(store: Store) -> None:
    with pytest.raises(IntegrityError):
        store.add_readings(_rows("MGD0000000099", 1))


def test_postgres_readings_are_partitioned() -> None:
    name = f"mg_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = open_database(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        with engine.connect() as c:
            kind = c.execute(
                text("SELECT relkind FROM pg_class WHERE relname = 'readings'")
            ).scalar()
        assert kind == "p"
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(TransportError, match="unreachable"):
        open_database("postgresql://postgres@127.0.0.1:1/none")
