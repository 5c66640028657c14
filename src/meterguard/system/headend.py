"""Builders of the head-end from one configuration: every process assembles it here.

* :func:`signing_key` — a head-end signing key of its own (command, billing, audit keys);
* :class:`HeadEnd` — the database, the key store, the PKI and the services over them
  (:class:`~meterguard.headend.services.meters.Meters`, commands, billing, accounts), the
  ingest processor with its :class:`~meterguard.system.watch.RegistryWatch`, ingest lanes,
  the command publisher, the audit signer with its witness, and the web app. ``meterguard
  demo`` starts all of it beside a broker and a fleet; ``meterguard ingest run`` only the
  processor, the watch and a worker; the CLI's administrative commands only the services.

This module assembles; it decides no rule (the services do) and runs no broker or meter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from meterguard.audit.witness import Witness
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keystore import read_key_file
from meterguard.crypto.pki.store import Pki, pem
from meterguard.crypto.vault import NameVault, ReadingVault
from meterguard.errors import ConfigurationError, MeterguardError
from meterguard.firmware.repository import FirmwareRepository
from meterguard.headend.api.app import create_app
from meterguard.headend.api.est import create_est_app
from meterguard.headend.api.firmware import create_firmware_app
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor
from meterguard.headend.ingest.worker import CommitHook, IngestWorker, WorkerSettings
from meterguard.headend.metrics import Metrics
from meterguard.headend.services.accounts import Accounts
from meterguard.headend.services.billing import Billing
from meterguard.headend.services.commands import Commands
from meterguard.headend.services.enrolment import Enrolment
from meterguard.headend.services.firmware import FirmwareUpdates
from meterguard.headend.services.fleet import FleetView
from meterguard.headend.services.meters import SYSTEM_ROLE, Meters
from meterguard.headend.services.redteam import AttackReports
from meterguard.headend.services.retention import Retention
from meterguard.headend.services.sessions import TakeoverGuard
from meterguard.headend.services.sharing import DataSharing
from meterguard.headend.services.theft import RevenueProtection
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.services.webauthn import Passkeys
from meterguard.headend.store.db import open_database
from meterguard.headend.store.firmware import FirmwareStore
from meterguard.headend.store.repository import Store
from meterguard.headend.store.theft import TheftStore
from meterguard.headend.transport.commands import CommandPublisher, PublisherSettings
from meterguard.meter.firmware import Hardware, factory_image
from meterguard.system.acks import AlarmAcks
from meterguard.system.config import RunInfo
from meterguard.system.keys import SharedKeyStore
from meterguard.system.layout import DataLayout
from meterguard.system.watch import RegistryWatch
from meterguard.system.web import serve_https
from meterguard.system.witness import AuditSigner, WitnessLink

log = logging.getLogger(__name__)

__all__ = [
    "HEADEND_TITLE",
    "LANES",
    "SERVICE_IDENTITIES",
    "HeadEnd",
    "scrape_token",
    "service_identity",
    "signing_key",
]

HEADEND_TITLE = b"MGH" + (1).to_bytes(5, "big")
"""The head-end's system title (originator of every command)."""
LANES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("headend-ingest-1", ("data", "events", "status")),
    # Alarms on a worker of their own: a backlog of readings never delays a tamper alarm (DOS-3).
    ("headend-alarms-1", ("alarms",)),
)
"""Each lane's client id and topics."""
FIRMWARE_ACTOR = "system:firmware"
"""Who quarantines a meter whose attestation does not match (FW-11)."""
INGEST_IDENTITY = "headend-ingest-1"
"""The service certificate every ingest worker presents (its client id is its own)."""
COMMANDS_IDENTITY = "headend-commands-1"
SERVICE_IDENTITIES = (INGEST_IDENTITY, COMMANDS_IDENTITY)
"""The identities a head-end issues before its broker starts (the service ACL names them)."""


def service_identity(pki: Pki, layout: DataLayout, name: str, *, now: dt.datetime) -> bool:
    """Issue the service identity ``name`` into the head-end directory unless it exists.

    Returns True if it was issued now (the broker's service ACL names it after its next sync:
    the registry watch of the process that owns the broker sees the PKI registry change).

    Raises:
        ConfigurationError: not a valid service name (a meter id, or odd characters).
    """
    if layout.service(name)[0].exists():
        return False
    pki.issue_service_client(name, now=now, out=layout.headend)
    return True


def scrape_token(web: Path) -> str:
    """The bearer token Prometheus scrapes ``/metrics`` with (``<web>/metrics-token``, 0600).

    Created on first use; give it to the scraper (``authorization: credentials_file``).
    """
    path = web / "metrics-token"
    if not path.exists():
        web.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def signing_key(path_dir: Path, name: str) -> SigningKey:
    """A signing key of its own (``<dir>/<name>.pem``, 0600), created on first use.

    Its public half is written beside it (``<name>.pub``, hex x||y) for verifiers.
    """
    path_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = path_dir / f"{name}.pem"
    if not path.exists():
        SigningKey.generate().save(path)
    key = SigningKey.load(path)
    (path_dir / f"{name}.pub").write_text(key.verifying_key().to_bytes().hex() + "\n")
    return key


@dataclass
class HeadEnd:
    """The head-end's parts over one data directory."""

    layout: DataLayout
    store: Store
    keys: SharedKeyStore
    pki: Pki
    meters: Meters
    processor: IngestProcessor
    watch: RegistryWatch
    guard: TakeoverGuard
    """What the broker's log shows of sessions: recorded, repeat takeovers quarantined (MQ-4)."""
    names: NameVault
    """People's names sealed at rest under their own data keys, found by keyed hash (PRIV-4)."""
    commands: Commands | None = None
    billing: Billing | None = None
    accounts: Accounts | None = None
    publisher: CommandPublisher | None = None
    workers: list[IngestWorker] = field(default_factory=list)
    signer: AuditSigner | None = None
    acks: AlarmAcks | None = None
    firmware: FirmwareUpdates | None = None
    repository: FirmwareRepository | None = None
    theft: RevenueProtection | None = None
    sharing: DataSharing | None = None
    retention: Retention | None = None
    web_port: int = 0
    metrics: Metrics | None = None
    """This process's metrics (ingest batches, API requests, the records at a scrape)."""
    _web: Any = None
    _est: Any = None
    _fw: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        layout: DataLayout,
        db_url: str,
        *,
        create_keys: bool = False,
        watch_every: float = 1.0,
        on_registry_change: Callable[[], None] | None = None,
        meter_clock: Callable[[], float] = time.time,
    ) -> HeadEnd:
        """Open the database (migrated), the key store and the PKI, and build the services.

        ``meter_clock`` is what the meters' clocks read (readings far from it are refused).

        Raises:
            TransportError: the database cannot be reached.
            ConfigurationError: no PKI or key store where the layout says.
        """
        keys = SharedKeyStore.open(layout.keystore, layout.kek, create=create_keys)
        # PRIV-4: readings are sealed at rest under per-meter data keys from the key store.
        store = Store(
            open_database(db_url),
            vault=ReadingVault(keys.data_key, keys.data_key_version, clock=time.monotonic),
        )
        pki = Pki.open(layout.pki)
        processor = IngestProcessor(
            Admission(),
            keys.meter_keys,
            store.last_counter,
            rate=50,
            burst=500,
            candidates=keys.candidates,
            on_rotated=keys.confirm,
            meter_clock=meter_clock,
        )
        watch = RegistryWatch(
            store.registry,
            processor.admission,
            pki_files=(pki.crl_path, pki.service_crl_path),
            revoked_by_pki=pki.revoked_meters,
            on_change=on_registry_change,
            every=watch_every,
        )
        meters = Meters(store.registry, pki, keys, store.audit)
        guard = TakeoverGuard(meters, store)
        names = NameVault(
            keys.data_key, keys.data_key_version, keys.login_hash, clock=time.monotonic
        )
        he = cls(layout, store, keys, pki, meters, processor, watch, guard, names)
        he.metrics = Metrics(store, lambda: he.workers)
        return he

    @classmethod
    def join(cls, data: Path, *, watch_every: float = 1.0) -> tuple[HeadEnd, RunInfo]:
        """Open the head-end of the system that runs (or ran) in ``data``.

        Raises:
            ConfigurationError: no system in ``data``.
            TransportError: its database cannot be reached.
        """
        info = RunInfo.read(data)
        layout = DataLayout(data)
        he = cls.open(layout, info.db, watch_every=watch_every, meter_clock=info.meter_clock())
        return he, info

    # ------------------------------------------------------------------ parts

    def start_watch(self) -> None:
        """Load the registry into ingest admission now, then follow it (PKI-5)."""
        self._threads.append(self.watch.start(self._stop))

    def worker(
        self,
        info: RunInfo,
        client_id: str,
        topics: Sequence[str],
        *,
        on_commit: CommitHook | None = None,
    ) -> IngestWorker:
        """An ingest worker on the service listener, sharing this head-end's processor.

        Every worker presents the ingest identity; ``client_id`` is its own (the same id
        resumes that worker's broker session).
        """
        cert, key = self.layout.service(INGEST_IDENTITY)
        settings = WorkerSettings(
            info.host,
            info.service_port,
            self.layout.trust_root,
            cert,
            key,
            client_id=client_id,
            topics=tuple(topics),
        )
        return IngestWorker(
            settings,
            self.processor,
            self.store,
            on_commit=on_commit,
            on_batch=self.metrics.ingest_batch if self.metrics is not None else None,
        )

    def start_lanes(self, info: RunInfo, lanes: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Start ingest workers in threads and wait until each is connected.

        With the command service started, stored alarms are acknowledged to their meters
        (TAMP-3) by an :class:`~meterguard.system.acks.AlarmAcks` of this head-end's.
        """
        hook = None
        if self.commands is not None:
            self.acks = AlarmAcks(self.commands.acknowledge_alarms)
            thread = threading.Thread(target=self.acks.run, args=(self._stop,), daemon=True)
            thread.start()
            self._threads.append(thread)
            hook = self.acks.offer
        for client_id, topics in lanes:
            w = self.worker(info, client_id, topics, on_commit=hook)
            thread = threading.Thread(target=w.run, args=(self._stop,), daemon=True)
            thread.start()
            self._threads.append(thread)
            self.workers.append(w)
            w.connected.wait(10)

    def start_commands(self, host: str, service_port: int, command_key: SigningKey) -> Commands:
        """The command service and its publisher (its own service identity, API-10)."""
        cert, key = self.layout.service(COMMANDS_IDENTITY)
        self.publisher = CommandPublisher(
            PublisherSettings(host, service_port, self.layout.trust_root, cert, key)
        )
        self.publisher.start()
        self.commands = Commands(
            self.store.commands,
            self.keys.meter_keys,
            command_key,
            HEADEND_TITLE,
            self.publisher.publish,
            rotate_key=self.keys.rotate_unicast_key,
            reads=consumption_data(self.store, self.accounts or self.open_accounts()),
        )
        return self.commands

    def start_audit(
        self, key: SigningKey, *, witness: Path | None = None, every: float = 10.0
    ) -> AuditSigner:
        """Sign tree heads every ``every`` s (LOG-3), cosigned by the witness in ``witness``.

        The witness runs as a process of its own (``meterguard audit witness serve``); it is
        created on first use, knowing only the audit public key.
        """
        link = None
        if witness is not None:
            w = Witness.init(witness, key.verifying_key())
            command = [sys.executable, "-m", "meterguard", "audit", "witness", "serve"]
            link = WitnessLink([*command, "--state", str(witness)], w.public_key)
        signer = AuditSigner(self.store, key, witness=link, every=every)
        thread = threading.Thread(target=signer.run, args=(self._stop,), daemon=True)
        thread.start()
        self._threads.append(thread)
        self.signer = signer
        return signer

    def open_accounts(self) -> Accounts:
        """The accounts service (its secrets key in the web directory)."""
        web = self.layout.web
        web.mkdir(mode=0o700, exist_ok=True)
        self.accounts = Accounts(
            self.store.accounts, read_key_file(web / "secrets.key", create=True), self.names
        )
        self.accounts.seal_clear_names()  # accounts from before migration 0018 (PRIV-4)
        return self.accounts

    def start_est(self, host: str, port: int, *, now: dt.datetime) -> int:
        """Serve EST enrolment (PKI-4) over HTTPS on a port of its own; returns the port.

        Its server certificate comes from the service CA, so meters authenticate it with the
        root they pin; meters present no TLS certificate there (a factory certificate cannot
        be a TLS client), the request carries it.
        """
        est = self.layout.headend / "est"
        if not (est / "est.pem").exists():
            est.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.pki.issue_server("est", hosts=[host, "localhost"], now=now, out=est)
        enrolment = Enrolment(
            self.pki, self.store, self.store.audit, device_ca=self.pki.device.certificate
        )
        self._est = serve_https(
            create_est_app(enrolment), host, port, est / "est.pem", est / "est.key"
        )
        return port

    def open_theft(self) -> RevenueProtection:
        """Revenue protection (the grid, theft scores, cases) over this head-end's store."""
        if self.theft is None:
            self.theft = RevenueProtection(
                TheftStore(self.store.engine, self.store.audit), self.store.readings
            )
        return self.theft

    def open_sharing(self) -> DataSharing:
        """Data sharing (consents per use, exports, DP releases) over this head-end's store.

        Exports are written under ``DATA/exports``, their manifests signed with
        ``headend/export-key.pem`` (its public half beside it, for recipients).
        """
        if self.sharing is None:
            accounts = self.accounts or self.open_accounts()
            grid = TheftStore(self.store.engine, self.store.audit)
            self.sharing = DataSharing(
                self.store.sharing,
                consumption_data(self.store, accounts),
                pseudonyms=self.keys.pseudonyms,
                signing_key=signing_key(self.layout.headend, "export-key"),
                out_dir=self.layout.root / "exports",
                meters=accounts.meters,
                groups=lambda: {f.name: list(f.members) for f in grid.feeders()},
            )
        return self.sharing

    def open_retention(self) -> Retention:
        """Retention limits and erasure; shredding destroys data keys and forgets them here."""
        if self.retention is None:
            vault = self.store.vault

            def shred(subject: str, now: int) -> int:
                n = self.keys.shred(subject, now=now)
                if vault is not None:
                    vault.forget(subject)
                self.names.forget(subject)
                return n

            self.retention = Retention(self.store.retention, shred, self.names.lookup)
        return self.retention

    def start_retention(self, clock: Callable[[], float], *, every: float = 3600.0) -> None:
        """Apply the retention limits now and then every ``every`` wall seconds.

        ``clock`` is the time the limits are measured in (the meters' in the demo).
        """
        retention = self.open_retention()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    retention.apply(now=int(clock()))
                except (MeterguardError, SQLAlchemyError):
                    log.exception("retention round failed; the next one runs")  # logged
                self._stop.wait(every)

        thread = threading.Thread(target=run, name="retention", daemon=True)
        thread.start()
        self._threads.append(thread)

    def start_theft(self, meter_clock: Callable[[], float], *, every: float = 30.0) -> None:
        """Score every meter behind a feeder now and then every ``every`` wall seconds.

        The first round trains the fused detector on synthetic homes (about 15 s); a failed
        round is logged and the next one runs.
        """
        theft = self.open_theft()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    theft.score(meter_now=meter_clock(), now=int(time.time()))
                except (MeterguardError, ValueError, ArithmeticError):
                    log.exception("theft scoring round failed; the next one runs")  # logged
                if self._stop.wait(every):
                    return

        thread = threading.Thread(target=run, name="theft-scoring", daemon=True)
        thread.start()
        self._threads.append(thread)

    def open_firmware(self, *, now: dt.datetime) -> FirmwareUpdates:
        """The firmware repository (created with the factory image on first use) and service.

        Needs the command service (campaigns send signed commands).
        """
        if self.commands is None:
            raise ConfigurationError("start the command service before the firmware service")
        path = self.layout.firmware
        if not (path / "metadata" / "root.json").exists():
            repo = FirmwareRepository.create(path, now=now)
            repo.add_image(factory_image(Hardware()), now=now)
        self.repository = repo = FirmwareRepository(path)
        meters = self.meters

        def quarantine(mid: str, at: int) -> None:
            meters.move(FIRMWARE_ACTOR, SYSTEM_ROLE, mid, "quarantine", now=at)

        self.firmware = FirmwareUpdates(
            FirmwareStore(self.store.engine, self.store.audit),
            repo,
            self.commands,
            quarantine=quarantine,
            security_event=self.store.security_event,
        )
        return self.firmware

    def start_firmware(self, host: str, port: int, *, now: dt.datetime) -> int:
        """Serve the firmware endpoint (ADR 13) over mutual TLS on a port of its own.

        Meters present their operational certificates (the device CA is the only client
        trust); the server certificate comes from the service CA, like EST's.
        """
        firmware = self.firmware or self.open_firmware(now=now)
        d = self.layout.headend / "firmware"
        if not (d / "firmware.pem").exists():
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.pki.issue_server("firmware", hosts=[host, "localhost"], now=now, out=d)
        trust = d / "device-trust.pem"
        trust.write_bytes(pem(self.pki.device_root) + pem(self.pki.device.certificate))
        app = create_firmware_app(
            self.layout.firmware, lambda body, at: firmware.receive(body, now=at)
        )
        self._fw = serve_https(
            app, host, port, d / "firmware.pem", d / "firmware.key", client_ca=trust
        )
        return port

    def start_web(self, host: str, port: int, *, now: dt.datetime) -> int:
        """Serve the API and dashboard over HTTPS (a server certificate from the PKI)."""
        web = self.layout.web
        accounts = self.accounts or self.open_accounts()
        if not (web / "web.pem").exists():
            self.pki.issue_server("web", hosts=[host, "localhost"], now=now, out=web)
        self.web_port = port
        # WebAuthn needs a domain as relying-party id (browsers refuse IP addresses).
        passkeys = Passkeys(
            accounts,
            self.store.webauthn,
            rp_id="localhost",
            origins=[f"https://localhost:{port}"],
        )
        app = create_app(
            accounts,
            self.store,
            meters=self.meters,
            commands=self.commands,
            billing=self.billing,
            passkeys=passkeys,
            firmware=self.firmware,
            theft=self.theft,
            sharing=self.sharing,
            retention=self.retention,
            attacks=AttackReports(self.layout.root / "attacks" / "last-run.json"),
            metrics=self.metrics,
            scrape_token_sha256=hashlib.sha256(scrape_token(web).encode()).digest(),
            fleet=FleetView(
                self.store,
                keys=self.keys.describe,
                certificates=self.pki.certificates_of,
                meter_clock=self.processor.meter_clock or time.time,
            ),
        )
        self._web = serve_https(app, host, port, web / "web.pem", web / "web.key")
        return port

    def stop(self) -> None:
        """Stop what this head-end started.

        The publisher last: the threads' final rounds still publish (alarm acknowledgements).
        """
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        if self.publisher is not None:
            self.publisher.stop()
        for served in (self._web, self._est, self._fw):
            if served is not None:
                server, thread = served
                server.should_exit = True
                thread.join(10)
