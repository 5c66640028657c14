"""Broker access-matrix scenarios (MQ-1…4, PKI-5, PKI-7): who may connect, publish, subscribe.

Each :class:`AccessScenario` is data — an attacker's credential, what they
try, and what must happen — and :func:`run` executes it against a running
broker and PKI. The test suite drives every scenario; a failed expectation is
a security regression.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from meterguard.attacks.probe import Probe, connect
from meterguard.broker.process import ManagedBroker
from meterguard.crypto.pki.authority import Authority, build_csr
from meterguard.crypto.pki.store import Pki, pem, write_key
from meterguard.mqtt.contract import command_topic, upstream_topic

__all__ = ["SCENARIOS", "AccessScenario", "Outcome", "Setting", "run"]


@dataclass(frozen=True)
class AccessScenario:
    """One attempt and its required result."""

    id: str
    threat: str
    requirement: str
    description: str
    credential: str
    """none | valid | expired | revoked | foreign-ca | server-cert | service-client"""
    action: str
    """connect | publish-other | subscribe-all | read-other-commands | takeover |
    takeover-worker"""
    expect: str
    """refused | denied | victim-undisturbed"""


SCENARIOS: tuple[AccessScenario, ...] = (
    AccessScenario(
        "no-certificate",
        "unauthorized access",
        "MQ-2",
        "TLS without a client certificate",
        "none",
        "connect",
        "refused",
    ),
    AccessScenario(
        "expired-certificate",
        "unauthorized access",
        "MQ-2",
        "a meter certificate past its validity",
        "expired",
        "connect",
        "refused",
    ),
    AccessScenario(
        "revoked-certificate",
        "unauthorized access",
        "PKI-5",
        "a meter certificate on the CRL",
        "revoked",
        "connect",
        "refused",
    ),
    AccessScenario(
        "wrong-ca",
        "man-in-the-middle",
        "PKI-7",
        "a certificate from another CA with the same names",
        "foreign-ca",
        "connect",
        "refused",
    ),
    AccessScenario(
        "server-cert-as-client",
        "unauthorized access",
        "PKI-1",
        "the broker's own serverAuth certificate presented as a client",
        "server-cert",
        "connect",
        "refused",
    ),
    AccessScenario(
        "other-meters-topic",
        "data theft / injection",
        "MQ-3",
        "a valid meter publishes on another meter's data topic",
        "valid",
        "publish-other",
        "denied",
    ),
    AccessScenario(
        "subscribe-everything",
        "data theft",
        "MQ-3",
        "a valid meter subscribes to '#'",
        "valid",
        "subscribe-all",
        "denied",
    ),
    AccessScenario(
        "read-other-commands",
        "data theft",
        "MQ-3",
        "a valid meter subscribes to another meter's command topic",
        "valid",
        "read-other-commands",
        "denied",
    ),
    AccessScenario(
        "client-id-takeover",
        "denial of service / spoofing",
        "MQ-4",
        "a valid meter connects with the victim's client id",
        "valid",
        "takeover",
        "victim-undisturbed",
    ),
    AccessScenario(
        "worker-client-id-takeover",
        "denial of service",
        "MQ-4",
        "a valid meter connects with a head-end ingest worker's client id",
        "valid",
        "takeover-worker",
        "victim-undisturbed",
    ),
    AccessScenario(
        "service-cert-on-device-listener",
        "unauthorized access",
        "MQ-4",
        "a head-end service certificate presented on the device listener",
        "service-client",
        "connect",
        "refused",
    ),
)


@dataclass
class Setting:
    """The deployment a scenario runs against."""

    pki: Pki
    broker: ManagedBroker
    workdir: Path
    victim: tuple[Path, Path]
    victim_id: str
    attacker_serial: str

    @property
    def root(self) -> Path:
        """The pinned root."""
        return self.pki.directory / "root" / "root.pem"


@dataclass(frozen=True)
class Outcome:
    """What happened, and whether it is what the scenario requires."""

    passed: bool
    detail: str


def _meter_files(
    setting: Setting, name: str, issue: Callable[[ec.EllipticCurvePrivateKey], bytes]
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    d = setting.workdir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "cert.pem").write_bytes(issue(key))
    write_key(d / "key.pem", key)
    return d / "cert.pem", d / "key.pem"


def _credential(s: AccessScenario, setting: Setting) -> tuple[Path | None, Path | None]:
    pki, now, serial = setting.pki, dt.datetime.now(dt.UTC), setting.attacker_serial
    if s.credential == "none":
        return None, None
    if s.credential == "valid":
        return pki.enrol_meter(serial, setting.workdir / f"{s.id}-valid", now=now)
    if s.credential == "expired":

        def expired(key: ec.EllipticCurvePrivateKey) -> bytes:
            then = now - dt.timedelta(days=30)
            cert = pki.device.issue_meter(
                build_csr(key, serial), now=then, validity=dt.timedelta(days=1)
            )
            return pem(cert) + pem(pki.device.certificate)

        return _meter_files(setting, s.id, expired)
    if s.credential == "revoked":
        files = pki.enrol_meter(serial, setting.workdir / s.id, now=now)
        pki.revoke_meter(serial, now=now)
        setting.broker.sync(pki)  # CRL changes reload the broker
        time.sleep(0.5)
        return files
    if s.credential == "foreign-ca":
        rogue_root = Authority.create_root("meterguard root CA", now=now)
        rogue = rogue_root.create_intermediate("meterguard device CA", now=now)

        def foreign(key: ec.EllipticCurvePrivateKey) -> bytes:
            cert = rogue.issue_meter(
                build_csr(key, serial), now=now, validity=dt.timedelta(days=14)
            )
            return pem(cert) + pem(rogue.certificate)

        return _meter_files(setting, s.id, foreign)
    if s.credential == "server-cert":
        return setting.broker.layout.server_cert, setting.broker.layout.server_key
    if s.credential == "service-client":
        return _service_client(setting, "headend-probe")
    raise ValueError(f"unknown credential {s.credential}")


def run(s: AccessScenario, setting: Setting) -> Outcome:
    """Execute one scenario against a running broker; report whether it was stopped."""
    cert, key = _credential(s, setting)
    port = setting.broker.layout.device_port
    if s.action == "connect":
        probe = connect(port, setting.root, cert, key)
        try:
            ok = not probe.connected
            return Outcome(
                ok, f"connected={probe.connected} rc={probe.connect_rc} error={probe.error}"
            )
        finally:
            probe.close()
    attacker = connect(port, setting.root, cert, key, client_id=f"attacker-{s.id}")
    if not attacker.connected:
        return Outcome(
            False, f"a valid meter could not connect: {attacker.error} {attacker.connect_rc}"
        )
    try:
        return _act(s, setting, attacker)
    finally:
        attacker.close()


def _act(s: AccessScenario, setting: Setting, attacker: Probe) -> Outcome:
    port, victim_id = setting.broker.layout.device_port, setting.victim_id
    if s.action == "publish-other":
        rc = attacker.publish(upstream_topic(victim_id, "data"), b"forged reading")
        return Outcome(rc is not None and rc.is_failure, f"PUBACK {rc}")
    if s.action in ("subscribe-all", "read-other-commands"):
        topic = "#" if s.action == "subscribe-all" else command_topic(victim_id)
        granted = attacker.subscribe(topic)
        # Mosquitto may grant a wildcard and filter each message by the read ACL instead:
        # what matters is that nothing of the victim's ever reaches the attacker.
        leaked = _victim_traffic(setting, attacker)
        refused = bool(granted) and all(g.is_failure for g in granted)
        return Outcome(refused or not leaked, f"SUBACK {granted}; received {leaked}")
    if s.action == "takeover":
        victim = connect(port, setting.root, *setting.victim, client_id=victim_id)
        return _takeover(setting, s, victim, victim_id)
    if s.action == "takeover-worker":
        cert, key = _service_client(setting, "headend-ingest-probe")
        worker = connect(
            setting.broker.layout.service_port,
            setting.root,
            cert,
            key,
            client_id="headend-ingest-probe",
        )
        return _takeover(setting, s, worker, "headend-ingest-probe")
    return Outcome(False, f"unknown action {s.action}")


def _takeover(setting: Setting, s: AccessScenario, victim: Probe, victim_id: str) -> Outcome:
    """The attacker (another valid meter) reconnects with the victim's client id.

    MQ-4: the broker makes every client id its certificate's name, so the impostor gets a
    session of its own: the victim stays connected, and nothing can be written as the victim.
    """
    try:
        if not victim.connected:
            return Outcome(False, f"the victim could not connect: {victim.error}")
        impostor = connect(
            setting.broker.layout.device_port,
            setting.root,
            *_credential_files(setting, s),
            client_id=victim_id,
        )
        try:
            deadline = time.monotonic() + 2
            while victim.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            rc = impostor.publish(upstream_topic(victim_id, "data"), b"forged reading")
        finally:
            impostor.close()
        ok = victim.connected and rc is not None and rc.is_failure
        return Outcome(
            ok, f"victim connected={victim.connected} rc={victim.disconnect_rc}; impostor {rc}"
        )
    finally:
        victim.close()


def _service_client(setting: Setting, name: str) -> tuple[Path, Path]:
    files = setting.pki.issue_service_client(
        name, now=dt.datetime.now(dt.UTC), out=setting.workdir / "svc"
    )
    setting.broker.sync(setting.pki)
    time.sleep(0.3)  # SIGHUP is asynchronous
    return files


def _victim_traffic(setting: Setting, attacker: Probe) -> list[tuple[str, bytes]]:
    """Make the victim publish a reading and the head-end send it a command; return what leaked."""
    layout = setting.broker.layout
    victim = connect(
        layout.device_port, setting.root, *setting.victim, client_id=f"{setting.victim_id}-probe"
    )
    cert, key = _service_client(setting, "headend-probe")
    headend = connect(layout.service_port, setting.root, cert, key, client_id="headend-probe")
    try:
        victim.publish(upstream_topic(setting.victim_id, "data"), b"victim reading")
        headend.publish(command_topic(setting.victim_id), b"victim command")
        time.sleep(1.0)
        return [m for m in attacker.messages if setting.victim_id in m[0]]
    finally:
        victim.close()
        headend.close()


def _credential_files(setting: Setting, s: AccessScenario) -> tuple[Path, Path]:
    d = setting.workdir / f"{s.id}-valid"
    return d / "tls.pem", d / "tls.key"
