"""`meterguard demo`: the whole system on one machine — PKI, broker, head-end and a meter fleet.

:class:`DemoSystem` builds (or reopens) everything under one data directory:

* a PKI, one certificate per meter (each meter's key generated in its own
  directory), a head-end ingest certificate;
* the managed Mosquitto broker (TLS listeners, CRL, ACLs by name);
* a fleet of meters with their own DLMS keys, publishing every 15-minute
  reading as a DLMS-protected DataNotification over MQTT/TLS with their own
  identity (a persistent outbox each);
* the head-end: key store (envelope-encrypted, KEK file in the data
  directory), database (SQLite by default, or a PostgreSQL URL), and an
  ingest worker that verifies and stores;
* the web API over HTTPS (a server certificate from the PKI), with a consumer
  and an operator demo account whose credentials go to ``web/demo-accounts.txt``
  (mode 0600);
* the audit log (alarms and security events), with a tree head signed every
  ten seconds by an audit key of its own (``audit/``); ``meterguard audit
  verify`` checks it.

Tamper events can be injected from another shell: ``meterguard meter tamper
METER KIND --data DIR`` drops a request into ``DIR/control/``, which the demo
picks up and turns into a protected alarm from that meter.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from meterguard.broker.monitor import LogMonitor, SessionTakeover
from meterguard.broker.process import ManagedBroker, free_port
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek, read_key_file
from meterguard.crypto.pki.store import Pki
from meterguard.errors import ConfigurationError
from meterguard.headend.api.app import create_app
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor
from meterguard.headend.ingest.worker import IngestWorker, WorkerSettings
from meterguard.headend.services.accounts import Accounts
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.meter.device import TamperKind
from meterguard.meter.fleet import Fleet
from meterguard.meter.transport.mqtt import MeterMqttClient, MqttSettings, Outbox

__all__ = ["DemoConfig", "DemoSystem", "make_worker", "request_tamper"]

FIRST_SERIAL = 1


@dataclass(frozen=True)
class DemoConfig:
    """What to run and where."""

    data: Path
    meters: int = 200
    speed: float = 900.0
    db: str | None = None
    host: str = "127.0.0.1"
    workers: int = 1
    """In-process ingest workers (0: run `meterguard ingest run` separately)."""

    @property
    def db_url(self) -> str:
        """The database URL (SQLite in the data directory by default)."""
        return self.db or f"sqlite:///{self.data / 'headend.db'}"


HEAD_EVERY = 10.0
"""Seconds between signed tree heads of the audit log."""


def audit_key(data: Path) -> SigningKey:
    """The demo's audit signing key (a key of its own, LOG-3), created on first use.

    Its public half is written beside it (``audit/audit-key.pub``, hex x||y) for auditors.
    """
    d = data / "audit"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = d / "audit-key.pem"
    if not path.exists():
        SigningKey.generate().save(path)
    key = SigningKey.load(path)
    (d / "audit-key.pub").write_text(key.verifying_key().to_bytes().hex() + "\n")
    return key


WEB_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites for the web (AEAD with forward secrecy; TLS 1.3 suites are AEAD anyway)."""


def meter_id(serial: int) -> str:
    """``MGD`` + 10-digit serial."""
    return f"MGD{serial:010d}"


def make_processor(data: Path, store: Store, keystore: KeyStore) -> IngestProcessor:
    """The ingest processor for a demo's data directory (keys from its key store)."""
    info = json.loads((data / "demo.json").read_text())
    titles = {mid: bytes.fromhex(t) for mid, t in info["titles"].items()}

    def keys(mid: str) -> tuple[bytes, SecretKey, SecretKey]:
        return (
            titles[mid],
            keystore.active(mid, KeyId.GLOBAL_UNICAST),
            keystore.active(mid, KeyId.AUTHENTICATION),
        )

    revoked = {f"MGD{s}" for s in Pki.open(data / "pki").revoked_meters()}
    return IngestProcessor(
        Admission(known=set(titles), revoked=revoked), keys, store.last_counter, rate=50, burst=500
    )


def make_worker(
    data: Path,
    client_id: str,
    *,
    store: Store | None = None,
    keystore: KeyStore | None = None,
    processor: IngestProcessor | None = None,
    topics: tuple[str, ...] = ("data", "alarms", "events", "status"),
) -> IngestWorker:
    """An ingest worker for a demo's data directory (in-process or `meterguard ingest run`)."""
    info = json.loads((data / "demo.json").read_text())
    store = store or Store(open_database(info["db"]))
    keystore = keystore or KeyStore(data / "keys.db", LocalKek.from_file(data / "kek.bin"))
    processor = processor or make_processor(data, store, keystore)
    svc = data / "headend"
    settings = WorkerSettings(
        info["host"],
        int(info["service_port"]),
        data / "pki" / "root" / "root.pem",
        svc / "headend-ingest-1.pem",
        svc / "headend-ingest-1.key",
        client_id=client_id,
        topics=topics,
    )
    return IngestWorker(settings, processor, store)


def request_tamper(data: Path, meter: str, kind: TamperKind) -> Path:
    """Ask a running demo to fire a tamper sensor on ``meter``."""
    control = data / "control"
    control.mkdir(parents=True, exist_ok=True)
    path = control / f"{time.time_ns()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meter": meter, "tamper": kind.label}))
    tmp.replace(path)
    return path


@dataclass
class DemoSystem:
    """Everything the demo runs."""

    config: DemoConfig
    pki: Pki | None = None
    broker: ManagedBroker | None = None
    fleet: Fleet | None = None
    store: Store | None = None
    keystore: KeyStore | None = None
    links: list[MeterMqttClient] = field(default_factory=list)
    worker: IngestWorker | None = None
    web_port: int = 0
    _web: Any = None
    _monitor: LogMonitor | None = None
    _audit_key: SigningKey | None = None
    _last_head: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ start

    def start(self, *, now: dt.datetime) -> None:
        """Create or reopen everything and start it."""
        cfg = self.config
        cfg.data.mkdir(parents=True, exist_ok=True)
        pki_dir = cfg.data / "pki"
        self.pki = (
            Pki.open(pki_dir)
            if (pki_dir / "device-ca.pem").exists()
            else Pki.init(pki_dir, now=now)
        )
        self.fleet = Fleet.open(cfg.data / "fleet", cfg.meters, now=now)
        ids = [meter_id(int(s)) for s in self.fleet.a["serial"]]
        for mid in ids:
            self._enrol(mid, now)
        svc = cfg.data / "headend"
        if not (svc / "headend-ingest-1.pem").exists():
            self.pki.issue_service_client("headend-ingest-1", now=now, out=svc)
        self.broker = ManagedBroker.prepare(cfg.data / "broker", self.pki, host=cfg.host, now=now)
        self.broker.start()
        self._monitor = self.broker.monitor()
        self._monitor.skip_existing()
        self.keystore = KeyStore(
            cfg.data / "keys.db", LocalKek.from_file(cfg.data / "kek.bin", create=True)
        )
        self.store = Store(open_database(cfg.db_url))
        self._audit_key = audit_key(cfg.data)
        for i, mid in enumerate(ids):
            self.store.add_meter(
                mid,
                serial=mid[3:],
                system_title=self.fleet.system_title(i),
                now=int(now.timestamp()),
            )
            try:
                self.keystore.active(mid, KeyId.GLOBAL_UNICAST)
            except ConfigurationError:  # no active key yet: import the meter's factory keys
                ek, ak, kek = self.fleet.keys(i)
                for kind, key in (
                    (KeyId.GLOBAL_UNICAST, ek),
                    (KeyId.AUTHENTICATION, ak),
                    (KeyId.MASTER, kek),
                ):
                    self.keystore.import_active(mid, kind, key)
        self._start_web(now)
        root = pki_dir / "root" / "root.pem"
        (cfg.data / "demo.json").write_text(
            json.dumps(
                {
                    "db": cfg.db_url,
                    "meters": cfg.meters,
                    "host": cfg.host,
                    "service_port": self.broker.layout.service_port,
                    "device_port": self.broker.layout.device_port,
                    "web_port": self.web_port,
                    "titles": {mid: self.fleet.system_title(i).hex() for i, mid in enumerate(ids)},
                }
            )
        )
        if cfg.workers:
            # Two lanes sharing one processor: bulk readings, and alarms on a worker of their
            # own so that a backlog of readings never delays a tamper alarm (DOS-3).
            processor = make_processor(cfg.data, self.store, self.keystore)
            self.worker = make_worker(
                cfg.data,
                "headend-ingest-1",
                store=self.store,
                processor=processor,
                topics=("data", "events", "status"),
            )
            alarm_worker = make_worker(
                cfg.data,
                "headend-alarms-1",
                store=self.store,
                processor=processor,
                topics=("alarms",),
            )
            for w in (self.worker, alarm_worker):
                thread = threading.Thread(target=w.run, args=(self._stop,), daemon=True)
                thread.start()
                self._threads.append(thread)
                w.connected.wait(10)
        outbox = cfg.data / "outbox.db"
        for mid in ids:
            d = cfg.data / "meters" / mid
            link = MeterMqttClient(
                MqttSettings(
                    host=cfg.host,
                    port=self.broker.layout.device_port,
                    root=root,
                    cert=d / "tls.pem",
                    key=d / "tls.key",
                    meter_id=mid,
                ),
                Outbox(outbox, owner=mid),
            )
            link.start()
            self.links.append(link)

    def _start_web(self, now: dt.datetime) -> None:
        """Serve the web API over HTTPS (API-9) with demo accounts (created on first start)."""
        assert self.pki is not None and self.store is not None  # noqa: S101
        web = self.config.data / "web"
        web.mkdir(mode=0o700, exist_ok=True)
        if not (web / "web.pem").exists():
            self.pki.issue_server("web", hosts=[self.config.host, "localhost"], now=now, out=web)
        accounts = Accounts(self.store.engine, read_key_file(web / "secrets.key", create=True))
        creds = web / "demo-accounts.txt"
        if not creds.exists():
            lines = ["# meterguard demo accounts (this file is mode 0600; delete it after use)"]
            for name, role, meters in (
                ("alice", "consumer", (meter_id(FIRST_SERIAL),)),
                ("olga", "operator", ()),
            ):
                password = "demo " + secrets.token_urlsafe(12)
                _, totp = accounts.create_user(
                    name, password, role, now=int(now.timestamp()), meters=meters
                )
                lines.append(f"{name} ({role}) password: {password}")
                if totp is not None:
                    lines.append(f"{name} TOTP (enrol in an app): {totp.provisioning_uri(name)}")
            fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("\n".join(lines) + "\n")
        self.web_port = free_port(self.config.host)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(accounts, self.store),
                host=self.config.host,
                port=self.web_port,
                ssl_certfile=str(web / "web.pem"),
                ssl_keyfile=str(web / "web.key"),
                ssl_ciphers=WEB_CIPHERS,
                server_header=False,
                date_header=False,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self._web = (server, thread)

    def _enrol(self, mid: str, now: dt.datetime) -> None:
        assert self.pki is not None  # noqa: S101
        d = self.config.data / "meters" / mid
        if not (d / "tls.pem").exists():
            self.pki.enrol_meter(mid[3:], d, now=now)

    # ------------------------------------------------------------------ run

    def tick(self, sim_now: dt.datetime) -> int:
        """Advance the fleet to ``sim_now`` (publishing readings) and serve tamper requests."""
        assert self.fleet is not None  # noqa: S101
        stats = self.fleet.step(sim_now, self._publisher("data"))
        self._control()
        self._broker_events()
        if time.monotonic() - self._last_head >= HEAD_EVERY:
            self.sign_head()
        return stats.readings

    def sign_head(self) -> None:
        """Sign a tree head of the audit log if it grew (LOG-3: on a schedule)."""
        self._last_head = time.monotonic()
        if self.store is not None and self._audit_key is not None:
            self.store.audit.sign_head(self._audit_key, now=int(time.time()))

    def _broker_events(self) -> None:
        """Record what the broker's log shows of client-id takeovers (MQ-4) as security events."""
        if self._monitor is None or self.store is None:
            return
        now = int(time.time())
        for ev in self._monitor.poll():
            if isinstance(ev, SessionTakeover):
                event, detail = "session_taken_over", f"client id {ev.client_id} connected again"
            else:
                event = "client_id_mismatch"
                detail = f"{ev.username} connected from {ev.peer} as client id {ev.client_id}"
            self.store.security_event(at=now, event=event, detail=detail, meter_id=ev.client_id)
            self.log.append(f"security: {event} ({ev.client_id})")

    def _publisher(self, topic: str) -> Callable[[int, bytes], None]:
        def publish(i: int, apdu: bytes) -> None:
            self.links[i].publish(topic, apdu)

        return publish

    def _control(self) -> None:
        assert self.fleet is not None  # noqa: S101
        control = self.config.data / "control"
        if not control.exists():
            return
        for path in sorted(control.glob("*.json")):
            try:
                req = json.loads(path.read_text())
                kind = TamperKind.parse(str(req["tamper"]))
                index = int(str(req["meter"])[3:]) - int(self.fleet.a["serial"][0])
                if not 0 <= index < len(self.fleet):
                    raise ValueError(f"no meter {req['meter']} in this fleet")
                self.fleet.tamper(index, kind, self._publisher("alarms"))
                self.log.append(f"tamper {kind.label} on {req['meter']}")
            except (ValueError, KeyError, json.JSONDecodeError) as exc:
                self.log.append(f"ignored control request {path.name}: {exc}")
            path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        """Counts and liveness."""
        counts = self.store.counts() if self.store is not None else {}
        counts["meters_online"] = sum(1 for link in self.links if link.connected.is_set())
        return counts

    def stop(self) -> None:
        """Stop everything, saving the fleet state."""
        for link in self.links:
            link.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        if self.fleet is not None:
            self.fleet.save()
        self.sign_head()
        if self._web is not None:
            server, thread = self._web
            server.should_exit = True
            thread.join(10)
        if self.broker is not None:
            self.broker.stop()
