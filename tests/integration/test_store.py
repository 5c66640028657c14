"""The head-end store on SQLite and a real PostgreSQL: idempotent readings, monotonic counters."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from meterguard.errors import TransportError
from meterguard.headend.store.audit import SUMMARY_WINDOW
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import (
    QUARANTINE_KEEP,
    RESEND_WINDOW,
    CommitOutcome,
    PushRow,
    ReadingRow,
    RefusalRow,
    Store,
)

pytestmark = pytest.mark.integration


def _rows(meter: str, n: int, start: int = 1_800_000_000) -> list[ReadingRow]:
    return [ReadingRow(meter, start + 900 * i, 1000 + i, 0, start) for i in range(n)]


def test_readings_are_stored_exactly_once(store: Store) -> None:
    store.registry.add_meter(
        "MGD0000000001", serial="0000000001", system_title=b"MGD\x00\x00\x00\x00\x01", now=1
    )
    assert store.add_readings(_rows("MGD0000000001", 10)) == 10
    assert store.add_readings(_rows("MGD0000000001", 12)) == 2  # 10 duplicates ignored
    got = store.readings("MGD0000000001", 0, 2**40)
    assert len(got) == 12 and got[0] == (1_800_000_000, 1000, 0)
    assert store.counts()["readings"] == 12


def test_alarms_events_quarantine(store: Store) -> None:
    m = "MGD0000000003"
    store.registry.add_meter(m, serial=m[3:], system_title=b"MGD\x00\x00\x00\x00\x03", now=1)
    alarm = PushRow(m, 5, f"meters/{m}/alarms", b"", False, (), (1, 44, 5))
    store.commit_ingest([alarm], [], now=5)
    again = store.commit_ingest([PushRow(m, 5, alarm.topic, b"", True, (), (1, 44, 5))], [], now=6)
    assert again.duplicates == 1  # the re-sent alarm is stored once
    store.security_event(at=6, event="authentication_failed", detail="tag mismatch", meter_id=m)
    store.commit_ingest([], [RefusalRow(f"meters/{m}/data", "bad tag", b"x" * 10_000)], now=7)
    c = store.counts()
    assert (c["alarms"], c["security_events"], c["rejected_messages"]) == (1, 1, 1)
    [view] = store.alarm_rows()
    assert (view.meter_id, view.sequence, view.code, view.state) == (m, 1, 44, "open")
    with store.engine.connect() as conn:
        kept = conn.execute(text("SELECT length(payload) FROM quarantine")).scalar()
    assert kept == 4096  # quarantined payloads are bounded


def test_unknown_meter_readings_are_refused(store: Store) -> None:
    with pytest.raises(IntegrityError):
        store.add_readings(_rows("MGD0000000099", 1))


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_postgres_readings_are_partitioned(store: Store) -> None:
    with store.engine.connect() as c:
        kind = c.execute(text("SELECT relkind FROM pg_class WHERE relname = 'readings'")).scalar()
    assert kind == "p"


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(TransportError, match="unreachable"):
        open_database("postgresql://postgres@127.0.0.1:1/none")


def _push(meter: str, ic: int, *, dup: bool = False, alarm: bool = False) -> PushRow:
    start = 1_800_000_000 + 900 * ic
    return PushRow(
        meter,
        ic,
        f"meters/{meter}/data",
        b"\xdb" + ic.to_bytes(4, "big"),
        dup,
        () if alarm else (ReadingRow(meter, start, ic, 0, start),),
        (ic, 1, start) if alarm else None,
    )


def _meter(store: Store, n: int) -> str:
    mid = f"MGD{n:010d}"
    store.registry.add_meter(mid, serial=mid[3:], system_title=b"MGD" + n.to_bytes(5, "big"), now=1)
    return mid


def test_commit_accepts_each_push_counter_once(store: Store) -> None:
    m = _meter(store, 1)
    out = store.commit_ingest([_push(m, 10), _push(m, 11), _push(m, 11)], [], now=5)
    assert [p.ic for p in out.accepted] == [10, 11] and out.readings == 2
    assert len(out.replays) == 1 and out.highest == {m: 11}
    # The broker's redelivery of a stored message (DUP) is a duplicate, not an attack ...
    dup = store.commit_ingest([_push(m, 10, dup=True)], [], now=6)
    assert dup.duplicates == 1 and not dup.accepted and not dup.replays
    # ... the same counter without DUP is a replay: quarantined, a security event (DH-7).
    replay = store.commit_ingest([_push(m, 11)], [], now=7)
    assert [p.ic for p in replay.replays] == [11]
    assert store.security_events() == [(m, "attempt_to_lower_invocation_counter")] * 2
    counts = store.counts()
    assert counts["readings"] == 2 and counts["rejected_messages"] == 2
    assert store.last_counter(m) == 11


def test_a_meters_own_resend_after_an_outage_is_a_duplicate_not_a_replay(store: Store) -> None:
    """REL-1: the meter's acknowledgement was lost with its connection; it sends again."""
    m = _meter(store, 4)
    store.commit_ingest([_push(m, ic) for ic in range(100, 200)], [], now=1)
    again = [dataclasses.replace(_push(m, ic), resent=True) for ic in (195, 199)]
    out = store.commit_ingest(again, [], now=2)
    assert out.duplicates == 2 and not out.replays and store.security_events() == []
    # The mark does not excuse an old counter (a broker replaying history with it) ...
    old = dataclasses.replace(_push(m, 199 - RESEND_WINDOW), resent=True)
    assert [p.ic for p in store.commit_ingest([old], [], now=3).replays] == [135]
    # ... nor is anything stored twice, nor a counter without the mark excused.
    assert [p.ic for p in store.commit_ingest([_push(m, 199)], [], now=4).replays] == [199]
    assert store.security_events() == [(m, "attempt_to_lower_invocation_counter")] * 2
    assert store.counts()["readings"] == 100


def test_commit_takes_late_pushes_within_the_window_only(store: Store) -> None:
    m = _meter(store, 2)
    store.commit_ingest([_push(m, 1000)], [], now=1)
    late = store.commit_ingest([_push(m, 1000 - 100, alarm=True), _push(m, 1000 - 256)], [], now=2)
    assert [p.ic for p in late.accepted] == [900]  # an out-of-order alarm, inside the window
    assert [p.ic for p in late.replays] == [744]  # older than the window: refused
    assert [(a.meter_id, a.sequence, a.code, a.state) for a in store.alarm_rows()] == [
        (m, 900, 1, "open")
    ]
    assert store.last_counter(m) == 1000  # a late push never lowers the counter


def test_refusals_are_quarantined_with_their_events(store: Store) -> None:
    store.commit_ingest(
        [],
        [
            RefusalRow("meters/MGD0000000009/data", "not registered", b"x", "access_denied"),
            RefusalRow("meters/MGD0000000001/data", "malformed", b"y"),
        ],
        now=3,
    )
    assert store.counts()["rejected_messages"] == 2
    assert store.security_events() == [(None, "access_denied")]


def test_pruning_keeps_the_window(store: Store) -> None:
    m = _meter(store, 3)
    store.commit_ingest([_push(m, ic) for ic in range(1, 3001)], [], now=1)
    assert store.prune_push_counters(keep=2048) == 3000 - 2049 + 1 - 1
    # Everything inside the window is still known: a replay there is still caught.
    assert len(store.commit_ingest([_push(m, 2990)], [], now=2).replays) == 1


def test_workers_in_separate_processes_agree_on_each_counter(store: Store) -> None:
    # Two stores (two engines: two processes' worth of connections) commit overlapping
    # batches at the same time; every counter is accepted by exactly one of them. (All
    # counters lie within one push window, so none is refused for being late.)
    other = Store(open_database(store.engine.url.render_as_string(hide_password=False)))
    meters = [_meter(store, 10 + k) for k in range(4)]
    batches = [
        [_push(m, ic) for m in meters for ic in range(1 + k, 200, 2 if k < 2 else 1)]
        for k in range(4)
    ]
    outcomes: list[CommitOutcome] = []
    errors: list[BaseException] = []

    def commit(s: Store, batch: list[PushRow]) -> None:
        try:
            outcomes.extend(
                s.commit_ingest(batch[i : i + 100], [], now=1) for i in range(0, len(batch), 100)
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=commit, args=(s, b))
        for s, b in zip((store, other, store, other), batches, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    accepted = [(p.meter_id, p.ic) for o in outcomes for p in o.accepted]
    assert len(accepted) == len(set(accepted)) == 4 * 199
    assert store.counts()["readings"] == 4 * 199
    other.engine.dispose()


def test_readings_go_to_monthly_partitions_on_postgresql(store: Store) -> None:
    m = _meter(store, 20)
    jan, feb = 1_800_000_000, 1_800_000_000 + 40 * 86_400  # 2027-01-15 and 2027-02-24 (UTC)
    rows = [
        PushRow(m, 1, "t", b"", False, (ReadingRow(m, jan, 1, 0, 0), ReadingRow(m, feb, 2, 0, 0)))
    ]
    assert store.commit_ingest(rows, [], now=1).readings == 2
    assert [r[0] for r in store.readings(m, 0, 2**40)] == [jan, feb]
    if store.engine.dialect.name != "postgresql":
        return
    with store.engine.connect() as c:
        placed = dict(
            c.execute(text("SELECT interval_start, tableoid::regclass::text FROM readings")).all()
        )
    assert placed == {jan: "readings_2027_01", feb: "readings_2027_02"}


def test_the_database_file_is_private(tmp_path: Path) -> None:
    """Issue 12, item 11: personal data and the audit log in a 0600 file (and its WAL)."""
    path = tmp_path / "h.db"
    store = Store(open_database(f"sqlite:///{path}"))
    store.registry.add_meter(
        "MGD0000000001", serial="0000000001", system_title=b"MGD\0\0\0\0\1", now=0
    )
    for p in (path, path.with_name("h.db-wal")):
        assert p.exists() and p.stat().st_mode & 0o777 == 0o600, (p, oct(p.stat().st_mode))


def test_a_flood_of_refusals_is_counted_not_stored(store: Store) -> None:
    """Item 2 (DOS-1): 20 000 oversized messages from one meter made 99 MB of rows. Now a
    meter, kind and window is one quarantined sample and one security event with a count."""
    m = _meter(store, 5)
    topic = f"meters/{m}/data"
    flood = [
        RefusalRow(topic, "unverified_payload of 16384 bytes", b"\xdb" * 16384,
                   "oversized_message", m)
        for _ in range(500)
    ]  # fmt: skip
    for k in range(10):  # 5 000 refusals in 10 batches, within one window
        store.commit_ingest([], flood, now=1_000 + k)
    with store.engine.connect() as conn:
        q = conn.execute(
            text("SELECT count(*), sum(count), max(length(payload)) FROM quarantine")
        ).one()
        e = conn.execute(text("SELECT count(*), sum(count) FROM security_events")).one()
        audited = conn.execute(text("SELECT count(*) FROM audit_entries")).scalar()
    assert tuple(q) == (1, 5000, 4096) and tuple(e) == (1, 5000) and audited == 1
    counts = store.counts()
    assert counts["rejected_messages"] == 5000 and counts["security_events"] == 5000
    [view] = store.security_event_rows()
    assert (view.count, view.at, view.last_at) == (5000, 1_000, 1_009)
    # Another meter, or another window, is a row of its own; the summary is per meter.
    other = _meter(store, 6)
    store.commit_ingest([], [RefusalRow(f"meters/{other}/data", "x", b"", "oversized_message",
                                        other)], now=1_010)  # fmt: skip
    store.commit_ingest([], flood[:3], now=1_000 + SUMMARY_WINDOW + 1)
    assert len(store.security_event_rows()) == 3
    # Samples are kept for QUARANTINE_KEEP seconds.
    assert store.prune_quarantine(now=1_011 + QUARANTINE_KEEP) == 2
    assert store.counts()["rejected_messages"] == 3


def test_security_events_are_grouped_across_windows_for_the_operator(store: Store) -> None:
    a, b = _meter(store, 21), _meter(store, 22)
    for at in (100, 110, 120, 100 + 3 * 300, 100 + 3 * 300 + 5):  # two summary windows
        store.security_event(at=at, event="authentication_failed", detail=f"bad tag at {at}",
                             meter_id=a, summarise=True)  # fmt: skip
    store.security_event(at=2000, event="session_taken_over", detail="x", meter_id=b)
    groups = store.security_event_groups(since=0)
    assert [(m, e, n, rows, first, last) for m, e, n, rows, first, last, _ in groups] == [
        (b, "session_taken_over", 1, 1, 2000, 2000),
        (a, "authentication_failed", 5, 2, 100, 1005),
    ]
    assert groups[1][6] == "bad tag at 1000"  # the newest row's detail
    only = store.security_event_groups(since=0, event="session_taken_over")
    assert [g[0] for g in only] == [b]
    assert sorted(store.security_event_names(since=0)) == [
        "authentication_failed",
        "session_taken_over",
    ]
    # Only recent rows are grouped: the window opened at 1000 holds two of a's five.
    recent = store.security_event_groups(since=1_000)
    assert [(m, n, rows) for m, _, n, rows, *_ in recent] == [(b, 1, 1), (a, 2, 1)]
    assert store.security_event_names(since=1_001) == ["session_taken_over"]
