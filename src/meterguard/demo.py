"""`meterguard demo`: the whole system on one machine — PKI, broker, head-end and a meter fleet.

The head-end is assembled by :mod:`meterguard.system` exactly as any deployment's; this
module keeps what is specific to a demonstration: a broker and a fleet in the same process,
the fleet's factory keys imported into the key store, demo accounts, demo tariffs and a
daily bill, tamper requests from another shell. :class:`DemoSystem` builds (or reopens)
everything under one data directory (:class:`~meterguard.system.layout.DataLayout`):

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
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from meterguard.broker.monitor import LogMonitor
from meterguard.broker.process import ManagedBroker, free_port
from meterguard.clock import SimulatedClock
from meterguard.crypto.pki.store import Pki
from meterguard.errors import ConfigurationError, TransportError
from meterguard.firmware.image import build_image, image_name
from meterguard.headend.services.accounts import Accounts
from meterguard.headend.services.billing import Band, Billing, TariffSpec
from meterguard.headend.services.commands import Commands
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.identity import meter_id
from meterguard.meter.device import TamperKind
from meterguard.meter.enrol import EstClient, enrol_into
from meterguard.meter.firmware import FirmwareAgent, Hardware, HttpsFetcher
from meterguard.meter.fleet import FLEET_FILE, Fleet
from meterguard.meter.transport.mqtt import MeterMqttClient, MqttSettings, Outbox
from meterguard.system.config import RunInfo, SystemConfig
from meterguard.system.headend import (
    HEADEND_TITLE,
    LANES,
    SERVICE_IDENTITIES,
    HeadEnd,
    service_identity,
    signing_key,
)
from meterguard.system.layout import DataLayout
from meterguard.system.lock import DataLock

__all__ = ["REQUESTS", "SYSTEM_REQUESTS", "DemoConfig", "DemoSystem", "request", "request_tamper"]

DemoConfig = SystemConfig
"""A demo is configured like any system."""
FIRST_SERIAL = 1
TARIFFS = (
    TariffSpec("standard", "flat", "EUR", 4500, (Band(0, 24, 2800),)),
    TariffSpec(
        "night-saver", "tou", "EUR", 5500, (Band(0, 7, 1500), Band(7, 23, 3200), Band(23, 24, 1500))
    ),
)
BILL_EVERY = 10.0
FIRMWARE_EVERY = 2.0
"""Wall seconds between steps of the firmware campaigns."""
DEMO_IMAGES = (("1.1.0", 2, 2),)
"""Images the demo publishes beside the factory one: (version, security version, creep W)."""
ALARM_RESEND_EVERY = 20.0
"""Wall seconds between re-sends of the meters' unacknowledged alarms (TAMP-3)."""
DEMO_USERS = (
    ("alice", "consumer", (meter_id(FIRST_SERIAL),)),
    ("olga", "operator", ()),
    ("erik", "engineer", ()),
    ("rita", "investigator", ()),
    ("pia", "privacy_officer", ()),
    # An insider with a utility account of their own: what `meterguard attack` plays with
    # (a role escalation, a TOTP replay and brute force that lock this account, not olga's).
    ("mallory", "operator", ()),
    ("sven", "security_admin", ()),
)
DEMO_ACTOR = "system:demo"
REQUESTS = ("tamper", "steal", "honest", "vacation_days", "link")
"""What a control request (:func:`request`) may ask of one meter, one at a time (``link``:
``"off"`` unplugs the meter's MQTT link — its readings wait in its outbox — ``"on"`` plugs it
back; ``meterguard attack`` uses it to take a meter's place without a session takeover)."""
SYSTEM_REQUESTS = ("broker",)
"""What a control request may ask of the whole system (no ``meter``): ``{"broker":
"restart"}`` stops the broker and starts it again, dropping every meter's and worker's session
at once, as a crash or an outage of its host would (``meterguard attack``'s reconnect storm)."""


def request_tamper(data: Path, meter: str, kind: TamperKind) -> Path:
    """Ask a running demo to fire a tamper sensor on ``meter``."""
    return request(data, {"meter": meter, "tamper": kind.label})


def request(data: Path, payload: dict[str, Any]) -> Path:
    """Drop a control request (tamper, steal, honest, vacation) for a running demo."""
    control = DataLayout(data).control
    control.mkdir(parents=True, exist_ok=True)
    path = control / f"{time.time_ns()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)
    return path


PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 - an alphabet, not a password
"""Letters and digits a person reads back without doubt (no 0/o, 1/l/i)."""


def demo_password() -> str:
    """Four groups of five (about 99 bits), e.g. ``k7mqx-3fp9w-rth2z-d4s8n``."""
    return "-".join("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(5)) for _ in range(4))


DEFAULT_WEB_PORT = 8443


def _web_port(cfg: SystemConfig, host: str) -> int:
    """The dashboard's port: as asked, else the last one of this directory, 8443, any free.

    Raises:
        ConfigurationError: the asked port is taken.
    """
    if cfg.web_port:
        if not _free(host, cfg.web_port):
            raise ConfigurationError(f"port {cfg.web_port} on {host} is taken (--port)")
        return cfg.web_port
    try:
        last = int((cfg.layout.web / "port").read_text().strip())
    except (FileNotFoundError, ValueError):
        last = 0
    for port in (last, DEFAULT_WEB_PORT):
        if port and _free(host, port):
            return port
    return free_port(host)


def _free(host: str, port: int) -> bool:
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


def write_demo_accounts(accounts: Accounts, path: Path, *, now: int) -> None:
    """Create the demo's accounts and write their credentials to ``path`` (mode 0600)."""
    lines = [
        "# meterguard demo accounts (this file is mode 0600; delete it after use)",
        "# A password is everything after 'password: ' (no spaces; letters and digits that",
        "# cannot be mistaken for each other: no 0/O, 1/l/I; dashes between groups).",
    ]
    for name, role, meters in DEMO_USERS:
        password = demo_password()
        _, totp = accounts.create_user(name, password, role, now=now, meters=meters)
        lines.append(f"{name} ({role}) password: {password}")
        if totp is not None:
            lines.append(f"{name} TOTP (enrol in an app): {totp.provisioning_uri(name)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


@dataclass
class DemoSystem:
    """Everything the demo runs: a broker, a head-end and a fleet on one machine."""

    config: SystemConfig
    pki: Pki | None = None
    broker: ManagedBroker | None = None
    fleet: Fleet | None = None
    headend: HeadEnd | None = None
    links: list[MeterMqttClient] = field(default_factory=list)
    web_port: int = 0
    _inbox: queue.Queue[tuple[int, bytes]] = field(default_factory=queue.Queue)
    _last_bills: float = 0.0
    _last_resend: float = 0.0
    _last_firmware: float = 0.0
    _monitor: LogMonitor | None = None
    log: list[str] = field(default_factory=list)
    _lock: DataLock | None = None
    meter_time: SimulatedClock | None = None
    """The fleet's accelerated clock (started with the system)."""

    @property
    def store(self) -> Store | None:
        """The head-end's store."""
        return self.headend.store if self.headend is not None else None

    @property
    def commands(self) -> Commands | None:
        """The head-end's command service."""
        return self.headend.commands if self.headend is not None else None

    @property
    def billing(self) -> Billing | None:
        """The head-end's billing service."""
        return self.headend.billing if self.headend is not None else None

    # ------------------------------------------------------------------ start

    def start(self, *, now: dt.datetime) -> None:
        """Create or reopen everything and start it; on any failure, stop what started.

        Raises:
            ConfigurationError: another system runs on the data directory, or bad settings.
            TransportError: the database cannot be reached (checked before anything starts).
        """
        self._lock = DataLock(self.config.data)
        self._lock.acquire()  # REL: two demos on one directory would replay each other
        try:
            # The database first: a wrong URL answers at once, before a broker is started.
            open_database(self.config.db_url).dispose()
            self._start(now)
        except BaseException:
            self.stop()
            raise

    def _start(self, now: dt.datetime) -> None:
        cfg, layout = self.config, self.config.layout
        cfg.data.mkdir(parents=True, exist_ok=True)
        self.pki = (
            Pki.open(layout.pki)
            if (layout.pki / "device-ca.pem").exists()
            else Pki.init(layout.pki, now=now)
        )
        if not 0 <= cfg.history_days <= 56:
            raise ConfigurationError("history is 0 to 56 days (ingest refuses older readings)")
        new = not (layout.fleet / FLEET_FILE).exists()
        history = dt.timedelta(days=cfg.history_days if new else 0)
        self.fleet = Fleet.open(layout.fleet, cfg.meters, now=now - history)
        feeders = self.fleet.use_grid(cfg.homes_per_feeder)
        # The fleet's accelerated clock, from where the fleet stands (a new fleet with history
        # catches up from its start on the first step): the head-end judges the readings'
        # times against it (and `ingest run` processes too, from system.json).
        wall_at = time.time()
        meter_at = self.fleet.now + history
        self.meter_time = SimulatedClock(meter_at, cfg.speed)
        meter_time = self.meter_time
        ids = [meter_id(int(s)) for s in self.fleet.a["serial"]]
        for mid in ids:  # manufacturing: key, registered serial, factory certificate
            if not (layout.meter(mid) / "factory.pem").exists():
                self.pki.manufacture(mid[3:], layout.meter(mid), now=now)
        for name in SERVICE_IDENTITIES:
            service_identity(self.pki, layout, name, now=now)
        command_key = signing_key(layout.headend, "command-key")
        self.fleet.trust_commands(command_key.verifying_key(), HEADEND_TITLE)
        self.broker = ManagedBroker.prepare(layout.broker, self.pki, host=cfg.host, now=now)
        self.broker.start()
        self._monitor = self.broker.monitor()
        self._monitor.skip_existing()
        self.headend = he = HeadEnd.open(
            layout,
            cfg.db_url,
            create_keys=True,
            watch_every=cfg.watch_every,
            on_registry_change=self._registry_changed,
            meter_clock=lambda: meter_time.now().timestamp(),
        )
        if he.metrics is not None:
            monitor = self._monitor
            he.metrics.follow_broker(lambda: monitor.connected)
        he.start_audit(signing_key(layout.audit, "audit-key"), witness=layout.witness)
        stamp = int(now.timestamp())
        for i, mid in enumerate(ids):
            he.store.registry.add_meter(
                mid, serial=mid[3:], system_title=self.fleet.system_title(i), now=stamp
            )
            he.keys.import_factory_keys(mid, *self.fleet.keys(i))
        he.start_watch()
        # PKI-4: each meter exchanges its factory certificate for an operational one over EST.
        est_port = he.start_est(cfg.host, free_port(cfg.host), now=now)
        est = EstClient(cfg.host, est_port, layout.trust_root)
        for mid in ids:
            if not (layout.meter(mid) / "tls.pem").exists():
                enrol_into(est, layout.meter(mid), mid[3:])
        self._start_grid(he, feeders, ids, stamp)
        he.start_commands(cfg.host, self.broker.layout.service_port, command_key)
        firmware_port = self._start_firmware(he, now, ids)
        self._start_billing(he, now, ids)
        accounts = he.open_accounts()
        creds = layout.web / "demo-accounts.txt"
        if not creds.exists():
            write_demo_accounts(accounts, creds, now=stamp)
        he.open_sharing()
        he.start_retention(lambda: meter_time.now().timestamp())
        web_host = cfg.web_host or cfg.host
        self.web_port = he.start_web(web_host, _web_port(cfg, web_host), now=now)
        (layout.web / "port").write_text(f"{self.web_port}\n")
        info = RunInfo(
            db=cfg.db_url,
            host=cfg.host,
            service_port=self.broker.layout.service_port,
            device_port=self.broker.layout.device_port,
            web_port=self.web_port,
            est_port=est_port,
            firmware_port=firmware_port,
            meters=cfg.meters,
            meter_time=meter_at.timestamp(),
            wall_at=wall_at,
            speed=cfg.speed,
        )
        info.write(layout)
        if cfg.workers:
            he.start_lanes(info, LANES)
        he.start_theft(lambda: meter_time.now().timestamp(), every=cfg.score_every)
        for i, mid in enumerate(ids):
            d = layout.meter(mid)
            link = MeterMqttClient(
                MqttSettings(
                    host=cfg.host,
                    port=self.broker.layout.device_port,
                    root=layout.trust_root,
                    cert=d / "tls.pem",
                    key=d / "tls.key",
                    meter_id=mid,
                ),
                Outbox(layout.outbox, owner=mid),
                on_command=self._command_arrived(i),
            )
            link.start()
            self.links.append(link)

    def _start_grid(self, he: HeadEnd, feeders: list[int], ids: list[str], now: int) -> None:
        """Record the fleet's feeders and the homes behind them in the head-end (THEFT-1)."""
        assert self.fleet is not None  # noqa: S101
        theft = he.open_theft()
        for n, row in enumerate(feeders, start=1):
            homes = [ids[i] for i in range(len(ids)) if self.fleet.feeder_of(i) == row]
            theft.set_feeder(f"feeder-{n}", ids[row], homes, actor=DEMO_ACTOR, now=now)

    def _registry_changed(self) -> None:
        """The registry changed (from any process): the broker reloads the CRL (PKI-5)."""
        if self.pki is not None and self.broker is not None:
            self.pki.refresh()
            self.broker.sync(self.pki)
            self.log.append("meter registry changed: broker reloaded its CRL")

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

    def _start_firmware(self, he: HeadEnd, now: dt.datetime, ids: list[str]) -> int:
        """The firmware repository, its endpoint, and each meter's firmware agent.

        The repository holds the factory image and the next version (ready for a campaign);
        each agent's attestation key is registered at the head-end (manufacture).
        """
        fleet, cfg, layout = self.fleet, self.config, self.config.layout
        assert fleet is not None  # noqa: S101
        service = he.open_firmware(now=now)
        repo = he.repository
        assert repo is not None  # noqa: S101
        names = {t.name for t in repo.targets()}
        for version, sv, creep in DEMO_IMAGES:
            image = build_image(
                vendor="MGD", model="MG-1", hw_revision="A", version=version,
                security_version=sv,
                settings={"creep_threshold_w": creep, "power_quality": True},
            )  # fmt: skip
            if image_name("MGD", "MG-1", "A", version) not in names:
                repo.add_image(image, now=now)
        port = he.start_firmware(cfg.host, free_port(cfg.host), now=now)
        base = f"https://{cfg.host}:{port}/firmware/"
        agents: dict[int, FirmwareAgent] = {}
        for i, mid in enumerate(ids):
            d = layout.meter(mid)
            shipped = d / "firmware" / "shipped-root.json"
            if not shipped.exists():  # the root the meter leaves the factory with (FW-2)
                shipped.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                shipped.write_bytes(repo.root_bytes())
            fetcher = HttpsFetcher(layout.trust_root, d / "tls.pem", d / "tls.key", timeout=10)
            agents[i] = FirmwareAgent(
                d / "firmware",
                meter=mid,
                hardware=Hardware(),
                bootstrap=shipped.read_bytes(),
                fetcher=fetcher,
                base_url=base,
                log=partial(fleet.log_firmware, i),
                alarm=partial(self._firmware_alarm, i),
                report=partial(fetcher.report, base + "reports"),
            )
            service.register(mid, agents[i].attestation_public_pem())
        fleet.use_firmware(agents.__getitem__)
        return port

    def _firmware_alarm(self, i: int, bit: int) -> None:
        assert self.fleet is not None  # noqa: S101
        self.fleet.firmware_alarm(i, bit, self._publisher("alarms"))

    def _firmware_step(self) -> None:
        """Campaigns' next waves; the timestamp re-signed before it gets old (FW-5)."""
        he = self.headend
        if he is None or he.firmware is None or he.repository is None:
            return
        if time.monotonic() - self._last_firmware < FIRMWARE_EVERY:
            return
        self._last_firmware = time.monotonic()
        sent = he.firmware.advance(now=int(time.time()))
        if sent:
            self.log.append(f"firmware campaigns: {sent} command(s) sent")
        he.repository.refresh_timestamp_if_due(now=dt.datetime.now(dt.UTC))

    def _start_billing(self, he: HeadEnd, now: dt.datetime, ids: list[str]) -> None:
        """Tariffs on first start: the first meter on time-of-use, the others flat."""
        he.billing = billing = Billing(
            he.store.billing, signing_key(he.layout.headend, "billing-key")
        )
        if billing.tariff_of(ids[0]) is None:
            flat, tou = (billing.add_tariff(t, now=int(now.timestamp())) for t in TARIFFS)
            for k, mid in enumerate(ids):
                billing.assign(mid, tou if k == 0 else flat)

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

    # ------------------------------------------------------------------ run

    def tick(self, sim_now: dt.datetime) -> int:
        """Advance the fleet to ``sim_now`` (publishing readings) and serve tamper requests."""
        assert self.fleet is not None  # noqa: S101
        # A catch-up (a new fleet's history, or after a pause) travels a day per push.
        behind = sim_now - self.fleet.now > dt.timedelta(hours=6)
        stats = self.fleet.step(sim_now, self._publisher("data"), per_push=96 if behind else 1)
        self._commands()
        self._firmware_step()
        self._control()
        self._broker_events()
        if time.monotonic() - self._last_resend >= ALARM_RESEND_EVERY:
            self._last_resend = time.monotonic()
            self.fleet.resend_pending(self._publisher("alarms"))
        if time.monotonic() - self._last_bills >= BILL_EVERY:
            self.bill_days()
        return stats.readings

    def _broker_events(self) -> None:
        """Hand what the broker's log shows of sessions to the head-end's guard (MQ-4)."""
        if self._monitor is None or self.headend is None:
            return
        self.log.extend(self.headend.guard.observe(self._monitor.poll(), now=int(time.time())))

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
                if "broker" in req:
                    self.log.append(self._broker_request(str(req["broker"])))
                    path.unlink(missing_ok=True)
                    continue
                index = int(str(req["meter"])[3:]) - int(self.fleet.a["serial"][0])
                if not 0 <= index < len(self.fleet):
                    raise ValueError(f"no meter {req['meter']} in this fleet")
                self.log.append(self._act(index, str(req["meter"]), req))
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
                self.log.append(f"ignored control request {path.name}: {exc}")
            except ConfigurationError as exc:
                self.log.append(f"refused control request {path.name}: {exc}")
            except TransportError as exc:  # the broker did not come back: say so
                self.log.append(f"control request {path.name} failed: {exc}")
            path.unlink(missing_ok=True)

    def _act(self, i: int, mid: str, req: dict[str, Any]) -> str:
        """One control request on meter ``i``: a tamper, theft, honesty again, a vacation."""
        assert self.fleet is not None  # noqa: S101
        alarms = self._publisher("alarms")
        if "tamper" in req:
            kind = TamperKind.parse(str(req["tamper"]))
            self.fleet.tamper(i, kind, alarms)
            return f"tamper {kind.label} on {mid}"
        if "steal" in req:
            name = str(req["steal"])
            seed = int(req.get("seed", secrets.randbits(32)))
            evidence = float(req.get("evidence", 0.3))
            left = self.fleet.steal(i, name, seed=seed, evidence=evidence, push=alarms)
            return f"{mid} now steals ({name}){'; it left tamper evidence' if left else ''}"
        if "honest" in req:
            self.fleet.stop_stealing(i)
            return f"{mid} registers honestly again"
        if "link" in req:
            return self._link(i, mid, str(req["link"]))
        if "vacation_days" in req:
            days = float(req["vacation_days"])
            self.fleet.vacation(i, days)
            return f"{mid}'s household is away for {days:g} days"
        raise ValueError(f"a request is one of {', '.join(REQUESTS)}")

    def _broker_request(self, what: str) -> str:
        """Restart the broker: every session drops at once and reconnects (a reconnect storm).

        Mosquitto saves its sessions and queued messages on a graceful stop (REL-1); the
        meters keep what they send meanwhile in their outboxes and come back with their own
        jittered back-off; the ingest workers reconnect and subscribe again.
        """
        if what != "restart" or self.broker is None:
            raise ValueError('a broker request is {"broker": "restart"}')
        t0 = time.monotonic()
        self.broker.stop()
        self.broker.start()
        return f"broker restarted in {time.monotonic() - t0:.1f} s: every session dropped at once"

    def _link(self, i: int, mid: str, state: str) -> str:
        """Unplug (``off``) or plug back (``on``) meter ``i``'s MQTT link."""
        old = self.links[i]
        if state == "off":
            old.stop()
            return f"{mid}'s link is unplugged (its outbox keeps what it sends)"
        if state != "on":
            raise ValueError("a link is 'on' or 'off'")
        old.stop()  # (idempotent: a link plugged in twice stays one session)
        self.links[i] = MeterMqttClient(
            old.settings, old.outbox, on_command=self._command_arrived(i)
        )
        self.links[i].start()
        return f"{mid}'s link is plugged back in"

    def status(self) -> dict[str, Any]:
        """Counts and liveness."""
        counts = self.store.counts() if self.store is not None else {}
        counts["meters_online"] = sum(1 for link in self.links if link.connected.is_set())
        return counts

    def stop(self) -> None:
        """Stop everything that was started, saving the fleet state (also after a failed start)."""
        for link in self.links:
            link.stop()
        if self.headend is not None:
            self.headend.stop()
        if self.fleet is not None:
            self.fleet.save()
        if self.broker is not None:
            self.broker.stop()
        if self._lock is not None:
            self._lock.release()
