"""REL-1 and DOS-3 under real outages: the broker restarts, the database goes away, a lane stops.

Meters publish through their real MQTT links (persistent outboxes, reconnect with back-off)
to a managed Mosquitto; an ingest worker verifies and commits. Afterwards every reading
the fleet produced is stored exactly once and no security event was raised: an outage is
not an attack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from meterguard.broker.process import ManagedBroker
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.pki.store import Pki
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor
from meterguard.headend.ingest.worker import IngestWorker, WorkerSettings
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.meter.device import TamperKind
from meterguard.meter.fleet import Fleet
from meterguard.meter.transport.mqtt import MeterMqttClient, MqttSettings, Outbox

pytestmark = pytest.mark.integration
SIM = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
METERS = 6


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class DbProxy:
    """A TCP relay to PostgreSQL that can be cut: live connections die, new ones are refused."""

    def __init__(self, target: int = 5432) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.down = True
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


WORKERS = ("ingest-restart", "ingest-db-outage", "ingest-bulk", "ingest-alarms")
"""The workers' service identities, issued before the broker starts."""


@dataclass
class Rig:
    base: Path
    pki: Pki
    broker: ManagedBroker
    fleet: Fleet
    ids: list[str]
    links: list[MeterMqttClient] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    workers: list[IngestWorker] = field(default_factory=list)
    clock: list[dt.datetime] = field(default_factory=lambda: [SIM])
    phases: list[int] = field(default_factory=list)
    """The interval index at which each publishing phase began (diagnostics)."""

    def keys(self, mid: str) -> tuple[bytes, SecretKey, SecretKey]:
        i = self.ids.index(mid)
        ek, ak, _ = self.fleet.keys(i)
        return self.fleet.system_title(i), ek, ak

    def worker(
        self, store: Store, client_id: str, *, topics: tuple[str, ...], processor: IngestProcessor
    ) -> IngestWorker:
        # Each worker its own identity: the broker makes the certificate's name the client id.
        assert client_id in WORKERS
        cert, key = self.base / "svc" / f"{client_id}.pem", self.base / "svc" / f"{client_id}.key"
        w = IngestWorker(
            WorkerSettings(
                "127.0.0.1",
                self.broker.layout.service_port,
                self.base / "pki" / "root" / "root.pem",
                cert,
                key,
                client_id=client_id,
                topics=topics,
                retry_max=1.0,
            ),
            processor,
            store,
        )
        self.workers.append(w)
        return w

    def run(self, w: IngestWorker, stop: threading.Event | None = None) -> threading.Thread:
        t = threading.Thread(target=w.run, args=(stop or self.stop,), daemon=True)
        t.start()
        self.threads.append(t)
        assert w.connected.wait(15)
        return t

    def publish_for(self, seconds: float) -> int:
        """Step the fleet 15 simulated minutes every 20 ms, publishing each reading."""
        self.phases.append(int(self.fleet.a["last_period"][0] - SIM.timestamp()) // 900)
        produced = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.clock[0] += dt.timedelta(minutes=15)
            stats = self.fleet.step(
                self.clock[0], lambda i, apdu: self.links[i].publish("data", apdu)
            )
            produced += stats.readings
            time.sleep(0.02)
        return produced


def processor(rig: Rig, store: Store) -> IngestProcessor:
    return IngestProcessor(
        Admission(known=set(rig.ids)), rig.keys, store.last_counter, rate=1e6, burst=1e6
    )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    now = dt.datetime.now(dt.UTC)
    pki = Pki.init(tmp_path / "pki", now=now)
    for name in WORKERS:
        pki.issue_service_client(name, now=now, out=tmp_path / "svc")
    broker = ManagedBroker.prepare(tmp_path / "broker", pki, now=now)
    broker.start()
    fleet = Fleet.create(METERS, now=SIM, first_serial=500)
    ids = [f"MGD{int(s):010d}" for s in fleet.a["serial"]]
    r = Rig(tmp_path, pki, broker, fleet, ids)
    for mid in ids:
        cert, key = pki.enrol_meter(mid[3:], tmp_path / mid, now=now)
        link = MeterMqttClient(
            MqttSettings(
                host="127.0.0.1",
                port=broker.layout.device_port,
                root=tmp_path / "pki" / "root" / "root.pem",
                cert=cert,
                key=key,
                meter_id=mid,
                backoff_max=1.0,
            ),
            Outbox(tmp_path / "outbox.db", owner=mid),
        )
        link.start()
        r.links.append(link)
    assert all(link.wait_connected(15) for link in r.links)
    yield r
    for link in r.links:
        link.stop()
    r.stop.set()
    for t in r.threads:
        t.join(15)
    broker.stop()


def sqlite_store(rig: Rig) -> Store:
    store = Store(open_database(f"sqlite:///{rig.base / 'headend.db'}"))
    for i, mid in enumerate(rig.ids):
        store.registry.add_meter(mid, serial=mid[3:], system_title=rig.fleet.system_title(i), now=0)
    return store


def assert_exactly_once(rig: Rig, store: Store, produced: int) -> None:
    first = int(SIM.timestamp())
    if not wait_for(lambda: store.counts()["readings"] == produced, 60):
        missing = {
            mid: sorted(
                (set(range(first, int(rig.fleet.a["last_period"][i]), 900)))
                - {r[0] for r in store.readings(mid, 0, 2**40)}
            )
            for i, mid in enumerate(rig.ids)
        }
        gaps = {
            m: ((v[0] - first) // 900, (v[-1] - first) // 900, len(v))
            for m, v in missing.items()
            if v
        }
        pytest.fail(
            f"{store.counts()} of {produced}; missing (first, last, n) per meter: {gaps};"
            f" phases began at intervals {rig.phases}"
        )
    for i, mid in enumerate(rig.ids):
        starts = [r[0] for r in store.readings(mid, 0, 2**40)]
        last = int(rig.fleet.a["last_period"][i])
        assert starts == list(range(first, last, 900)), mid  # every interval, once, in order
    assert store.security_events() == []  # an outage is not an attack
    assert store.counts()["rejected_messages"] == 0


def test_broker_restart_mid_stream_loses_nothing(rig: Rig) -> None:
    store = sqlite_store(rig)
    shared = processor(rig, store)
    first_stop = threading.Event()
    w = rig.worker(store, "ingest-restart", topics=("data",), processor=shared)
    t = rig.run(w, first_stop)
    produced = rig.publish_for(1.5)
    rig.broker.stop()  # graceful: Mosquitto saves sessions and queued messages
    produced += rig.publish_for(1.5)  # meanwhile the meters keep readings in their outboxes
    assert not any(link.connected.is_set() for link in rig.links)
    first_stop.set()
    t.join(15)
    rig.broker.start()
    assert all(link.wait_connected(20) for link in rig.links)
    # The meters are back before the head-end: Mosquitto 2.0 restored the worker's session but
    # not its shared subscription, so it drops these ("no matching subscribers"); the meters
    # keep them in their outboxes and retry.
    produced += rig.publish_for(1.5)
    again = rig.worker(store, "ingest-restart", topics=("data",), processor=shared)
    rig.run(again)
    produced += rig.publish_for(1.0)
    assert_exactly_once(rig, store, produced)


def test_database_outage_loses_nothing(rig: Rig) -> None:
    name = f"mg_outage_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    proxy = DbProxy()
    try:
        store = Store(open_database(f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}"))
        for i, mid in enumerate(rig.ids):
            store.registry.add_meter(
                mid, serial=mid[3:], system_title=rig.fleet.system_title(i), now=0
            )
        w = rig.worker(store, "ingest-db-outage", topics=("data",), processor=processor(rig, store))
        rig.run(w)
        produced = rig.publish_for(1.0)
        proxy.cut()  # the database is gone: connections die, reconnects are refused
        produced += rig.publish_for(2.5)
        assert w.db_failures >= 1
        proxy.restore()
        produced += rig.publish_for(1.0)
        assert_exactly_once(rig, store, produced)
        store.engine.dispose()
    finally:
        proxy.close()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_alarms_do_not_wait_behind_a_reading_backlog(rig: Rig) -> None:
    # DOS-3: the data lane is down with a backlog queued for it; the alarm lane still delivers.
    store = sqlite_store(rig)
    shared = processor(rig, store)
    data_stop = threading.Event()
    data = rig.worker(store, "ingest-bulk", topics=("data",), processor=shared)
    data_thread = rig.run(data, data_stop)
    data_stop.set()  # the bulk lane goes away; its persistent session keeps queueing
    data_thread.join(15)
    alarms = rig.worker(store, "ingest-alarms", topics=("alarms",), processor=shared)
    rig.run(alarms)
    produced = rig.publish_for(2.0)
    assert produced > 100
    rig.fleet.tamper(
        2, TamperKind.MAIN_COVER_OPEN, lambda i, apdu: rig.links[i].publish("alarms", apdu)
    )
    assert wait_for(lambda: store.counts()["alarms"] == 1, 10)
    assert store.counts()["readings"] == 0  # the whole backlog is still waiting for its lane
    again = rig.worker(store, "ingest-bulk", topics=("data",), processor=shared)
    rig.run(again)
    assert_exactly_once(rig, store, produced)
