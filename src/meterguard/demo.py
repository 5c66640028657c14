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
  verify`` checks it;
* the dashboard at ``https://HOST:PORT/`` with accounts alice (consumer), olga
  (operator) and erik (engineer) — two utility people, so a critical command can
  be proposed by one and approved by the other (API-10); approved commands are
  signed with the head-end's command key (``headend/command-key.pem``; every
  meter holds its public half), published to the meter's command topic by a
  command service identity of its own, executed by the meter and answered;
* billing: a flat and a time-of-use tariff, and signed daily bills for the first
  meter as its days complete (``headend/billing-key.pem``).

Tamper events can be injected from another shell: ``meterguard meter tamper
METER KIND --data DIR`` drops a request into ``DIR/control/``, which the demo
picks up and turns into a protected alarm from that meter.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
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
from meterguard.crypto.keywrap import wrap_key
from meterguard.crypto.pki.store import Pki
from meterguard.errors import ConfigurationError
from meterguard.headend.api.app import create_app
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor
from meterguard.headend.ingest.worker import IngestWorker, WorkerSettings
from meterguard.headend.services.accounts import Accounts
from meterguard.headend.services.billing import Band, Billing, TariffSpec
from meterguard.headend.services.commands import Commands
from meterguard.headend.services.webauthn import Passkeys
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.headend.transport.commands import CommandPublisher, PublisherSettings
from meterguard.meter.device import TamperKind
from meterguard.meter.fleet import Fleet
from meterguard.meter.transport.mqtt import MeterMqttClient, MqttSettings, Outbox

__all__ = ["DemoConfig", "DemoSystem", "make_worker", "request_tamper"]

FIRST_SERIAL = 1
HEADEND_TITLE = b"MGH" + (1).to_bytes(5, "big")
"""The head-end's system title (originator of every command)."""
TARIFFS = (
    TariffSpec("standard", "flat", "EUR", 4500, (Band(0, 24, 2800),)),
    TariffSpec(
        "night-saver", "tou", "EUR", 5500, (Band(0, 7, 1500), Band(7, 23, 3200), Band(23, 24, 1500))
    ),
)
BILL_EVERY = 10.0


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


def serve_https(
    app: Any, host: str, port: int, cert: Path, key: Path
) -> tuple[uvicorn.Server, threading.Thread]:
    """Serve ``app`` over HTTPS in a thread, returning once it listens (API-9).

    TLS 1.2+ with AEAD ECDHE suites only (``WEB_CIPHERS``), no server banner.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
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
    if not server.started:
        raise ConfigurationError(f"the web server did not start on {host}:{port}")
    return server, thread


def meter_id(serial: int) -> str:
    """``MGD`` + 10-digit serial."""
    return f"MGD{serial:010d}"


KEYSTORE_LOCK = threading.Lock()
"""The key store's one SQLite connection is shared by the ingest lanes, the web API and the
command service of this process: every use below holds this lock."""


def meter_keys(
    data: Path, keystore: KeyStore
) -> Callable[[str], tuple[bytes, SecretKey, SecretKey]]:
    """Meter id → (system title, active unicast key, active authentication key)."""
    info = json.loads((data / "demo.json").read_text())
    titles = {mid: bytes.fromhex(t) for mid, t in info["titles"].items()}

    def keys(mid: str) -> tuple[bytes, SecretKey, SecretKey]:
        title = titles.get(mid) or b"MGD" + int(mid[3:]).to_bytes(5, "big")  # provisioned later
        with KEYSTORE_LOCK:
            return (
                title,
                keystore.active(mid, KeyId.GLOBAL_UNICAST),
                keystore.active(mid, KeyId.AUTHENTICATION),
            )

    return keys


def headend_key(data: Path, name: str) -> SigningKey:
    """A head-end signing key of its own (``headend/<name>.pem``), created on first use."""
    d = data / "headend"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = d / f"{name}.pem"
    if not path.exists():
        SigningKey.generate().save(path)
    return SigningKey.load(path)


def make_processor(data: Path, store: Store, keystore: KeyStore) -> IngestProcessor:
    """The ingest processor for a demo's data directory (keys from its key store)."""
    info = json.loads((data / "demo.json").read_text())
    titles = {mid: bytes.fromhex(t) for mid, t in info["titles"].items()}
    keys = meter_keys(data, keystore)
    revoked = {f"MGD{s}" for s in Pki.open(data / "pki").revoked_meters()}
    return IngestProcessor(
        Admission(known=set(titles), revoked=revoked),
        keys,
        store.last_counter,
        rate=50,
        burst=500,
        candidates=lambda mid: _candidates(keystore, mid),
        on_rotated=lambda mid, version: _confirm(keystore, mid, version),
    )


def _candidates(keystore: KeyStore, mid: str) -> list[tuple[int, SecretKey]]:
    with KEYSTORE_LOCK:
        return [(k.version, k.key) for k in keystore.candidates(mid, KeyId.GLOBAL_UNICAST)]


def _confirm(keystore: KeyStore, mid: str, version: int) -> None:
    with KEYSTORE_LOCK:
        keystore.confirm(mid, KeyId.GLOBAL_UNICAST, version)


def rotate_unicast_key(keystore: KeyStore) -> Callable[[str], bytes]:
    """A new unicast key for a meter, kept as ``new``, wrapped under the meter's master key."""

    def rotate(mid: str) -> bytes:
        with KEYSTORE_LOCK:
            new = keystore.begin_rotation(mid, KeyId.GLOBAL_UNICAST)
            return wrap_key(keystore.active(mid, KeyId.MASTER), new.key)

    return rotate


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
    processor: IngestProcessor | None = None
    commands: Commands | None = None
    billing: Billing | None = None
    publisher: CommandPublisher | None = None
    _inbox: queue.Queue[tuple[int, bytes]] = field(default_factory=queue.Queue)
    _last_bills: float = 0.0
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
        for name in ("headend-ingest-1", "headend-commands-1"):
            if not (svc / f"{name}.pem").exists():
                self.pki.issue_service_client(name, now=now, out=svc)
        command_key = headend_key(cfg.data, "command-key")
        self.fleet.trust_commands(command_key.verifying_key(), HEADEND_TITLE)
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
        root = pki_dir / "root" / "root.pem"
        self._write_info(ids)
        self.processor = processor = make_processor(cfg.data, self.store, self.keystore)
        self.publisher = CommandPublisher(
            PublisherSettings(
                cfg.host,
                self.broker.layout.service_port,
                root,
                svc / "headend-commands-1.pem",
                svc / "headend-commands-1.key",
            )
        )
        self.publisher.start()
        self.commands = Commands(
            self.store,
            meter_keys(cfg.data, self.keystore),
            command_key,
            HEADEND_TITLE,
            self.publisher.publish,
            rotate_key=rotate_unicast_key(self.keystore),
        )
        self._start_billing(now, ids)
        self._start_web(now)
        self._write_info(ids)  # now with the web port
        if cfg.workers:
            # Two lanes sharing one processor: bulk readings, and alarms on a worker of their
            # own so that a backlog of readings never delays a tamper alarm (DOS-3).
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
        for i, mid in enumerate(ids):
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
                on_command=self._command_arrived(i),
            )
            link.start()
            self.links.append(link)

    def _write_info(self, ids: list[str]) -> None:
        """``demo.json``: what other processes (ingest workers, the CLI) need to join in."""
        assert self.fleet is not None and self.broker is not None  # noqa: S101
        cfg = self.config
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

    def _command_arrived(self, i: int) -> Callable[[bytes], None]:
        """The meter link's callback (paho's thread): hand the command to the fleet's loop."""

        def arrived(raw: bytes) -> None:
            self._inbox.put((i, raw))

        return arrived

    def _commands(self) -> None:
        """Let the meters verify and execute the commands that arrived (API-10)."""
        assert self.fleet is not None  # noqa: S101
        while True:
            try:
                i, raw = self._inbox.get_nowait()
            except queue.Empty:
                return
            mid = meter_id(int(self.fleet.a["serial"][i]))
            result = self.fleet.command(
                i, raw, result=self._publisher("events"), alarm=self._publisher("alarms")
            )
            if result is None:
                self.log.append(f"meter {mid} refused a command it could not verify (alarmed)")
            else:
                self.log.append(
                    f"meter {mid} executed command {result.counter}: result {result.result},"
                    f" supply {result.control_state.name.lower()}"
                )

    def _start_billing(self, now: dt.datetime, ids: list[str]) -> None:
        """Tariffs on first start: the first meter on time-of-use, the others flat."""
        assert self.store is not None  # noqa: S101
        self.billing = Billing(self.store, headend_key(self.config.data, "billing-key"))
        d = self.config.data / "headend"
        (d / "billing-key.pub").write_text(self.billing.verifying_key.to_bytes().hex() + "\n")
        if self.billing.tariff_of(ids[0]) is None:
            flat, tou = (self.billing.add_tariff(t, now=int(now.timestamp())) for t in TARIFFS)
            for k, mid in enumerate(ids):
                self.billing.assign(mid, tou if k == 0 else flat)

    def bill_days(self) -> int:
        """Issue the first meter's bill for each whole simulated day it has readings for."""
        self._last_bills = time.monotonic()
        if self.billing is None or self.store is None or self.fleet is None:
            return 0
        mid = meter_id(int(self.fleet.a["serial"][0]))
        billed = self.billing.bills(mid)  # newest period first: read only what follows it
        since = billed[0].period_end - 900 if billed else 0
        rows = self.store.readings(mid, since, 2**40)
        if not rows:
            return 0
        ends = {start + 900 for start, _, _ in rows}  # register values are known at these times
        day = -(-min(ends) // 86400) * 86400
        issued = 0
        while day + 86400 <= max(ends):
            edges = day in ends and day + 86400 in ends  # a bill needs both register values
            if edges and not self.billing.bills(mid, period=(day, day + 86400)):
                self.billing.issue(mid, day, day + 86400, now=int(time.time()))
                issued += 1
            day += 86400
        return issued

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
                ("erik", "engineer", ()),
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
        # WebAuthn needs a domain as relying-party id (browsers refuse IP addresses).
        passkeys = Passkeys(
            accounts, rp_id="localhost", origins=[f"https://localhost:{self.web_port}"]
        )
        app = create_app(
            accounts,
            self.store,
            commands=self.commands,
            billing=self.billing,
            revoke=self.revoke,
            provision=self.provision,
            passkeys=passkeys,
        )
        self._web = serve_https(
            app, self.config.host, self.web_port, web / "web.pem", web / "web.key"
        )

    def provision(self, serial: str) -> str:
        """Register a new meter: serial, key set, database row, admission at ingest.

        The serial goes to the PKI's manufacturing registry (so the meter can enrol, PKI-3),
        a fresh DLMS key set to the key store, the meter to the database and to ingest. Its
        keys reach the meter at the factory, out of band (not in this demo, whose fleet has
        a fixed size).
        """
        assert self.pki is not None and self.store is not None  # noqa: S101
        assert self.keystore is not None  # noqa: S101
        mid = f"MGD{serial}"
        self.pki.register(serial)
        with KEYSTORE_LOCK:
            self.keystore.provision(mid)
        title = b"MGD" + int(serial).to_bytes(5, "big")
        self.store.add_meter(mid, serial=serial, system_title=title, now=int(time.time()))
        if self.processor is not None:
            self.processor.admission.known.add(mid)
        return mid

    def revoke(self, mid: str) -> None:
        """Revoke a meter's certificates (CRL to the broker) and refuse it at ingest (PKI-5)."""
        assert self.pki is not None and self.broker is not None  # noqa: S101
        self.pki.revoke_meter(mid[3:], now=dt.datetime.now(dt.UTC))
        self.broker.sync(self.pki)
        if self.processor is not None:
            self.processor.admission.revoked.add(mid)

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
        self._commands()
        self._control()
        self._broker_events()
        if time.monotonic() - self._last_head >= HEAD_EVERY:
            self.sign_head()
        if time.monotonic() - self._last_bills >= BILL_EVERY:
            self.bill_days()
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
        if self.publisher is not None:
            self.publisher.stop()
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
