"""The fleet view over 10^5 meters in a real SQLite database: search, filters, sort, pages.

The meters, their readings, alarms, feeders and firmware reports are real rows; the answers
are checked against what the rows say (computed here independently), and the rules — who
may look, which values are questions — against the service. How fast it answers is
``bench/fleet_view.py``'s business, not this test's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import event, insert

from meterguard.errors import AccessDeniedError, InvalidValueError, NotFoundError
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.fleet import FleetView, Search
from meterguard.headend.store.db import open_database
from meterguard.headend.store.models import Alarm, Feeder, FeederMember, Meter, MeterFirmware
from meterguard.headend.store.repository import PushRow, ReadingRow, Store

N = 100_000
T0 = 1_800_000_000
OPERATOR = Principal(1, "olga", "operator")


def _id(n: int) -> str:
    return f"MGD{n:010d}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, FleetView]:
    path: Path = tmp_path_factory.mktemp("fleet") / "h.db"
    store = Store(open_database(f"sqlite:///{path}"))
    with store.engine.begin() as c:
        c.execute(
            insert(Meter),
            [
                {"id": _id(n), "serial": f"{n:010d}", "system_title": b"MGD" + n.to_bytes(5, "big"),
                 "state": "disabled" if n % 1000 == 0 else "active", "created_at": 0}
                for n in range(1, N + 1)
            ],
        )  # fmt: skip
        c.execute(
            insert(Feeder), [{"id": 1, "name": "F-north", "meter_id": _id(N), "created_at": 0}]
        )
        c.execute(
            insert(FeederMember), [{"meter_id": _id(n), "feeder_id": 1} for n in range(1, 21)]
        )
        c.execute(
            insert(MeterFirmware),
            [{"meter_id": _id(n), "attestation_key": "k", "version": "1.1.0" if n <= 7 else "1.0.0",
              "attestation": "trusted"} for n in range(1, 31)],
        )  # fmt: skip
        c.execute(
            insert(Alarm),
            [{"meter_id": _id(n), "sequence": 1, "code": 40, "raised_at": T0, "state": st,
              "received_at": T0}
             for n, st in ((5, "open"), (77_777, "acknowledged"), (9, "cleared"))],
        )  # fmt: skip
    # Readings through both store paths: the batch insert and an ingest commit.
    store.add_readings([ReadingRow(_id(n), T0 + 900 * n, n, 0, 0) for n in range(1, 11)])
    late = ReadingRow(_id(3), T0 + 900 * 50, 1, 0, 0)
    store.commit_ingest([PushRow(_id(3), 1, "meters/x/data", b"", readings=(late,))], [], now=T0)
    return store, FleetView(store, meter_clock=lambda: T0 + 900 * 55)


def test_a_page_of_the_fleet_and_its_total(fleet: tuple[Store, FleetView]) -> None:
    _, view = fleet
    first = view.page(OPERATOR, Search(per_page=50))
    assert first.total == N
    assert [r.meter_id for r in first.rows] == [_id(n) for n in range(1, 51)]
    second = view.page(OPERATOR, Search(page=2, per_page=50))
    assert [r.meter_id for r in second.rows] == [_id(n) for n in range(51, 101)]
    beyond = view.page(OPERATOR, Search(page=N // 200 + 1, per_page=200))
    assert beyond.total == N and beyond.rows == []
    last = view.page(OPERATOR, Search(sort="id", order="desc", per_page=1)).rows[0]
    assert (last.meter_id, last.feeder) == (_id(N), None)


def test_search_and_filters_answer_what_the_rows_say(fleet: tuple[Store, FleetView]) -> None:
    _, view = fleet
    found = view.page(OPERATOR, Search(q="0000123", per_page=200))
    assert found.total == sum(1 for n in range(1, N + 1) if "0000123" in _id(n))
    assert view.page(OPERATOR, Search(q="mgd0000077777")).rows[0].open_alarms == 1  # any case
    disabled = view.page(OPERATOR, Search(state="disabled", per_page=200))
    assert disabled.total == N // 1000 and {r.state for r in disabled.rows} == {"disabled"}
    alarming = view.page(OPERATOR, Search(alarms="open"))
    assert [r.meter_id for r in alarming.rows] == [_id(5), _id(77_777)]  # cleared does not count
    assert view.page(OPERATOR, Search(alarms="none")).total == N - 2
    feeder = view.page(OPERATOR, Search(feeder="F-north", per_page=100))
    assert [r.meter_id for r in feeder.rows] == [_id(n) for n in range(1, 21)]
    new = view.page(OPERATOR, Search(firmware="1.1.0"))
    assert [r.meter_id for r in new.rows] == [_id(n) for n in range(1, 8)]
    assert {r.attestation for r in new.rows} == {"trusted"}
    both = view.page(OPERATOR, Search(feeder="F-north", alarms="open"))
    assert [r.meter_id for r in both.rows] == [_id(5)]


def test_last_seen_is_kept_by_ingest_and_sorts_and_filters(fleet: tuple[Store, FleetView]) -> None:
    _, view = fleet
    newest = view.page(OPERATOR, Search(sort="last_reading", order="desc", per_page=3)).rows
    # Meter 3's ingest commit (interval 50) is newer than every batch-inserted reading.
    assert [(r.meter_id, r.last_reading_at) for r in newest] == [
        (_id(3), T0 + 900 * 51),
        (_id(10), T0 + 900 * 11),
        (_id(9), T0 + 900 * 10),
    ]
    # The meters' clock reads interval 55: silent for more than 1 h (4 intervals) are those
    # whose last reading ended before interval 51, and those that never sent one.
    silent = view.page(OPERATOR, Search(silent_hours=1, per_page=1))
    assert silent.total == N - 1
    assert view.page(OPERATOR, Search(silent_hours=3, per_page=1)).total == N - 1
    assert view.page(OPERATOR, Search(q="0000000003", silent_hours=1)).total == 0


def test_rules_who_may_look_and_what_may_be_asked(fleet: tuple[Store, FleetView]) -> None:
    _, view = fleet
    with pytest.raises(AccessDeniedError):
        view.page(Principal(2, "alice", "consumer"), Search())
    for bad in (
        Search(q="'; DROP TABLE meters; --"),
        Search(q="x" * 33),
        Search(sort="password_hash"),
        Search(order="sideways"),
        Search(state="stolen"),
        Search(alarms="maybe"),
        Search(supply="on"),
        Search(per_page=0),
        Search(per_page=201),
        Search(page=0),
        Search(page=10**9),
        Search(silent_hours=-1),
        Search(feeder="<script>"),
    ):
        with pytest.raises(InvalidValueError):
            view.page(OPERATOR, bad)


def test_a_meter_page_has_its_records_and_nothing_secret(fleet: tuple[Store, FleetView]) -> None:
    store, _ = fleet
    view = FleetView(
        store,
        keys=lambda _m: [("global_unicast", 1, "retired"), ("global_unicast", 2, "active")],
        certificates=lambda _s: [{"number": "ab", "kind": "operational",
                                  "not_after": "2030-01-01", "status": "valid"}],
    )  # fmt: skip
    page = view.meter(OPERATOR, _id(5))
    assert page.detail.row.open_alarms == 1 and page.detail.serial == f"{5:010d}"
    assert [a.code for a in page.detail.alarms] == [40]
    assert page.detail.row.feeder == "F-north" and page.detail.row.firmware == "1.1.0"
    assert page.keys[1] == ("global_unicast", 2, "active")
    for missing in (_id(N + 1), "MGD00000000012345678901234567890", "../etc"):
        with pytest.raises(NotFoundError):
            view.meter(OPERATOR, missing)
    with pytest.raises(AccessDeniedError):
        view.meter(Principal(2, "alice", "consumer"), _id(5))


def test_one_look_takes_two_statements_not_one_per_meter(fleet: tuple[Store, FleetView]) -> None:
    """A page is one count and one page query, however many meters match (no N+1)."""
    store, view = fleet
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        t = time.perf_counter()
        view.page(OPERATOR, Search(q="000", alarms="none", sort="last_reading", per_page=200))
        took = time.perf_counter() - t
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert len(statements) == 2, statements
    print(f"a filtered, sorted page of 200 over {N} meters: {took * 1000:.0f} ms")
