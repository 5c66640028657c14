"""Ingest end to end: fleet meters publish over MQTT/TLS, a worker verifies and stores them."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from meterguard.attacks.probe import Probe, connect
from meterguard.crypto.keys import SecretKey
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor
from meterguard.headend.ingest.worker import IngestWorker, WorkerSettings
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.meter.device import TamperKind
from meterguard.meter.fleet import Fleet
from tests.integration.conftest import World

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)
SERIALS = itertools.count(300, 10)  # each rig's meters are new identities


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def rig(world: World, tmp_path: Path) -> Iterator[tuple[Fleet, Store, IngestWorker, list[Probe]]]:
    fleet = Fleet.create(3, now=NOW, first_serial=next(SERIALS))
    store = Store(open_database(f"sqlite:///{tmp_path / 'headend.db'}"))
    ids = [f"MGD{int(fleet.a['serial'][i]):010d}" for i in range(3)]
    for i, meter_id in enumerate(ids[:2]):  # the third meter is not registered at the head-end
        store.registry.add_meter(
            meter_id, serial=meter_id[3:], system_title=fleet.system_title(i), now=0
        )

    def keys(meter_id: str) -> tuple[bytes, SecretKey, SecretKey]:
        i = ids.index(meter_id)
        ek, ak, _ = fleet.keys(i)
        return fleet.system_title(i), ek, ak

    processor = IngestProcessor(
        Admission(known=set(ids[:2])), keys, store.last_counter, rate=100, burst=100
    )
    cert, key = world.service_client("headend-ingest-test")
    worker = IngestWorker(
        WorkerSettings(
            "127.0.0.1",
            world.broker.layout.service_port,
            world.root,
            cert,
            key,
            client_id="ingest-test-1",
        ),
        processor,
        store,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    assert worker.connected.wait(10)
    probes = []
    for meter_id in ids:
        c, k = world.meter(meter_id[3:])
        probe = connect(world.broker.layout.device_port, world.root, c, k, client_id=meter_id)
        assert probe.connected
        probes.append(probe)
    yield fleet, store, worker, probes
    for p in probes:
        p.close()
    stop.set()
    thread.join(10)


def test_readings_alarms_and_refusals(rig: tuple[Fleet, Store, IngestWorker, list[Probe]]) -> None:
    fleet, store, _worker, probes = rig
    m0 = f"MGD{int(fleet.a['serial'][0]):010d}"
    sent: list[tuple[int, bytes]] = []
    fleet.step(NOW + dt.timedelta(hours=2), lambda i, apdu: sent.append((i, apdu)))
    fleet.tamper(0, TamperKind.MAIN_COVER_OPEN, lambda i, apdu: sent.append((i, apdu)))
    for i, apdu in sent:
        kind = "alarms" if apdu is sent[-1][1] else "data"
        probes[i].publish(f"meters/MGD{int(fleet.a['serial'][i]):010d}/{kind}", apdu)
    # Duplicates are harmless: the same reading again is replayed (refused) and never stored twice.
    i0, first = sent[0]
    probes[i0].publish(f"meters/MGD{int(fleet.a['serial'][i0]):010d}/data", first)
    # A forged reading with a fresh counter (flipped tag bit) is refused and recorded.
    fresh: list[tuple[int, bytes]] = []
    fleet.step(NOW + dt.timedelta(hours=2, minutes=15), lambda i, apdu: fresh.append((i, apdu)))
    new = next(apdu for i, apdu in fresh if i == 0)
    probes[0].publish(f"meters/{m0}/data", new[:-1] + bytes((new[-1] ^ 1,)))
    assert wait_for(
        lambda: store.counts()["readings"] == 16 and store.counts()["rejected_messages"] >= 10
    )
    counts = store.counts()
    assert counts["readings"] == 16  # 2 registered meters x 8 intervals, each once
    assert counts["alarms"] == 1 and store.alarm_rows()[0].code == int(
        TamperKind.MAIN_COVER_OPEN.code
    )
    events = {e for _, e in store.security_events()}
    assert {
        "access_denied",
        "attempt_to_lower_invocation_counter",
        "authentication_failed",
    } <= events
    # Counters are persisted per meter and only move forward.
    assert (store.last_counter(m0) or 0) >= 9
    readings = store.readings(m0, 0, 2**40)
    assert [r[1] for r in readings] == sorted(r[1] for r in readings)


def test_one_meter_flooding_its_alarms_delays_no_other_meters_alarm(
    rig: tuple[Fleet, Store, IngestWorker, list[Probe]],
) -> None:
    """Item 1 (DOS-3): a meter floods its alarms topic with validly protected alarms; another
    meter's tamper alarm raised in the middle of the flood is stored, the flood is throttled
    before any cryptography, and what the flood leaves in storage is a count, not rows.
    (How fast, under a flood at the broker's maximum rate: ``bench/ingest.py --alarm-flood``.)"""
    fleet, store, worker, probes = rig
    m0, m1 = (f"MGD{int(fleet.a['serial'][i]):010d}" for i in range(2))
    flood: list[bytes] = []
    for _ in range(3000):
        fleet.tamper(1, TamperKind.MAGNETIC_FIELD, lambda _i, apdu: flood.append(apdu))
    genuine: list[bytes] = []
    fleet.tamper(0, TamperKind.MAIN_COVER_OPEN, lambda _i, apdu: genuine.append(apdu))
    for k, apdu in enumerate(flood):  # QoS 0, as fast as the client can write
        probes[1].client.publish(f"meters/{m1}/alarms", apdu, qos=0)
        if k == len(flood) // 2:
            ack = probes[0].publish(f"meters/{m0}/alarms", genuine[0])
            assert ack is not None, (probes[0].disconnect_rc, probes[0].error)
    assert wait_for(lambda: any(a.meter_id == m0 for a in store.alarm_rows()), timeout=30)
    seen = -1
    while worker.processor.stats["throttled"] != seen:  # until the flood is drained
        seen = worker.processor.stats["throttled"]
        time.sleep(0.5)
    flooded = sum(1 for a in store.alarm_rows() if a.meter_id == m1)
    assert seen > 0 and flooded < len(flood) // 2, (seen, flooded)
    with store.engine.connect() as c:
        rows = c.execute(text("SELECT count(*) FROM quarantine")).scalar()
        events = c.execute(text("SELECT count(*) FROM security_events")).scalar()
    assert int(rows or 0) <= 3 and int(events or 0) <= 3, (rows, events)
