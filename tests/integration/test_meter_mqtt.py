"""A meter enrolled with the CLI publishes protected data over MQTT/TLS; the head-end receives it.

Also: nothing is lost while offline (persistent outbox), client-id takeover is detected (MQ-4),
and a man-in-the-middle presenting a forged broker certificate is refused by the meter (PKI-7).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterguard.attacks import mitm
from meterguard.attacks.probe import Probe, connect
from meterguard.broker.monitor import ClientIdMismatch, SessionTakeover
from meterguard.broker.process import ManagedBroker
from meterguard.clock import FixedClock
from meterguard.cosem.axdr import DoubleLongUnsigned, Integer, Structure
from meterguard.cosem.counters import ReceiveCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import ApduProtector, ApduUnprotector, SecurityControl
from meterguard.cosem.xdlms import (
    ActionRequestNormal,
    DataNotification,
    MethodDescriptor,
    decode_xdlms,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.pki.store import Pki
from meterguard.errors import AccessDeniedError
from meterguard.headend.ingest.admission import Admission
from meterguard.meter.device import Meter, MeterIdentity, TamperKind
from meterguard.meter.transport.mqtt import MeterMqttClient, MqttSettings, Outbox
from tests.conftest import AK_HEX, EK_HEX

pytestmark = pytest.mark.integration
SERIAL = "0000000101"
METER_ID = f"MGD{SERIAL}"


def cli(*args: str) -> str:
    res = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


@dataclass
class Site:
    base: Path
    pki: Pki
    broker: ManagedBroker

    def headend(self) -> Probe:
        svc = self.base / "svc"
        probe = connect(
            self.broker.layout.service_port,
            self.base / "pki" / "root" / "root.pem",
            svc / "headend-ingest.pem",
            svc / "headend-ingest.key",
            client_id="ingest-1",
        )
        assert probe.connected, probe.error
        for topic in ("$share/ingest/meters/+/data", "$share/ingest/meters/+/alarms"):
            assert not probe.subscribe(topic)[0].is_failure
        return probe

    def settings(
        self, meter_dir: Path, meter_id: str = METER_ID, port: int | None = None
    ) -> MqttSettings:
        return MqttSettings(
            host="127.0.0.1",
            port=port or self.broker.layout.device_port,
            root=meter_dir / "root.pem",
            cert=meter_dir / "tls.pem",
            key=meter_dir / "tls.key",
            meter_id=meter_id,
            backoff_base=0.2,
            backoff_max=2.0,
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("site")
    cli("pki", "init", str(base / "pki"))
    cli("pki", "enroll", str(base / "pki"), "--serial", SERIAL, "--out", str(base / "m1"))
    cli("pki", "service", str(base / "pki"), "--name", "headend-ingest", "--out", str(base / "svc"))
    pki = Pki.open(base / "pki")
    broker = ManagedBroker.prepare(base / "broker", pki, now=dt.datetime.now(dt.UTC))
    broker.start()
    yield Site(base, pki, broker)
    broker.stop()


def make_meter(pushes: list[bytes]) -> Meter:
    return Meter(
        MeterIdentity(SERIAL, b"MGD" + int(SERIAL).to_bytes(5, "big"), 101),
        clock=FixedClock(dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)),
        unicast_key=SecretKey.from_hex(EK_HEX),
        authentication_key=SecretKey.from_hex(AK_HEX),
        master_key=SecretKey(bytes(16)),
        on_push=pushes.append,
    )


def reading(meter: Meter, value: int) -> bytes:
    return meter.protect_push(DataNotification(1, None, Structure((DoubleLongUnsigned(value),))))


def unprotector(meter: Meter) -> ApduUnprotector:
    return ApduUnprotector(
        key=GcmKey(SecretKey.from_hex(EK_HEX)),
        authentication_key=SecretKey.from_hex(AK_HEX),
        peer_system_title=meter.identity.system_title,
    )


def test_enrolled_meter_publishes_protected_data(site: Site, tmp_path: Path) -> None:
    headend = site.headend()
    pushes: list[bytes] = []
    meter = make_meter(pushes)
    commands: list[bytes] = []
    client = MeterMqttClient(
        site.settings(site.base / "m1"), Outbox(tmp_path / "outbox.db"), on_command=commands.append
    )
    client.start()
    try:
        assert client.wait_connected(10), client.last_error
        client.publish("data", reading(meter, 1234))
        meter.tamper(TamperKind.MAIN_COVER_OPEN)  # the alarm takes its own topic
        client.publish("alarms", pushes[-1])
        got = headend.wait_messages(2, timeout=5)
        assert sorted(t for t, _ in got) == [f"meters/{METER_ID}/alarms", f"meters/{METER_ID}/data"]
        counter = ReceiveCounter()
        for topic, payload in sorted(
            got, key=lambda m: m[0], reverse=True
        ):  # data first (lower IC)
            assert b"1234" not in payload  # ciphered on the wire and at the broker
            _, plain = unprotector(meter).unprotect(payload, counter)
            assert isinstance(decode_xdlms(plain), DataNotification), topic
        deadline = time.monotonic() + 5
        while len(client.outbox) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(client.outbox) == 0  # acknowledged, so removed
        # A ciphered command from the head-end reaches the meter on its command topic.
        headend_title = b"HED\x00\x00\x00\x00\x01"
        command = ApduProtector(
            key=GcmKey(SecretKey.from_hex(EK_HEX)),
            authentication_key=SecretKey.from_hex(AK_HEX),
            system_title=headend_title,
            security=SecurityControl(),
        ).protect(
            ActionRequestNormal(
                0xC1, MethodDescriptor(70, Obis(0, 0, 96, 3, 10, 255), 1), Integer(0)
            ).to_bytes(),
            1,
        )
        assert not headend.publish(f"meters/{METER_ID}/commands", command).is_failure
        deadline = time.monotonic() + 5
        while not commands and time.monotonic() < deadline:
            time.sleep(0.05)
        assert commands == [command]
        check = ApduUnprotector(
            key=GcmKey(SecretKey.from_hex(EK_HEX)),
            authentication_key=SecretKey.from_hex(AK_HEX),
            peer_system_title=headend_title,
        )
        assert isinstance(decode_xdlms(check.unprotect(commands[0])[1]), ActionRequestNormal)
    finally:
        client.stop()
        headend.close()


def test_nothing_is_lost_while_offline(site: Site, tmp_path: Path) -> None:
    meter = make_meter([])
    outbox_path = tmp_path / "outbox.db"
    site.broker.stop()  # the broker is down
    offline = MeterMqttClient(site.settings(site.base / "m1"), Outbox(outbox_path))
    offline.start()
    sent = [reading(meter, v) for v in range(5)]
    for apdu in sent:
        offline.publish("data", apdu)
    assert not offline.wait_connected(1.0)
    offline.stop()  # ...and the meter even restarts before the link comes back
    assert len(Outbox(outbox_path)) == 5
    site.broker.start()
    headend = site.headend()
    client = MeterMqttClient(site.settings(site.base / "m1"), Outbox(outbox_path))
    client.start()
    try:
        assert client.wait_connected(10), client.last_error
        got = headend.wait_messages(5, timeout=10)
        assert [p for _, p in got] == sent  # all of them, in order
    finally:
        client.stop()
        headend.close()


def test_what_a_meter_sends_again_from_its_outbox_is_marked_as_resent(
    site: Site, tmp_path: Path
) -> None:
    """REL-1: after a dropped link the outbox's messages go again, marked (contract RESEND),
    so the head-end tells a lost acknowledgement from a replay; fresh ones are not marked."""
    meter = make_meter([])
    outbox = Outbox(tmp_path / "outbox.db")
    headend = site.headend()
    client = MeterMqttClient(site.settings(site.base / "m1"), outbox)
    client.start()
    try:
        assert client.wait_connected(10), client.last_error
        fresh = [reading(meter, v) for v in range(2)]
        for apdu in fresh:
            client.publish("data", apdu)
        headend.wait_messages(2, timeout=10)
        deadline = time.monotonic() + 10  # both acknowledged (else they go again, marked)
        while len(outbox) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(outbox) == 0
        client.stop()  # the link drops; what the meter sends meanwhile waits in its outbox
        queued = reading(meter, 2)
        client.publish("data", queued)
        client = MeterMqttClient(site.settings(site.base / "m1"), outbox)
        client.start()
        got = headend.wait_messages(3, timeout=10)
        assert [p for _, p in got] == [*fresh, queued]
        assert headend.resent == [False, False, True]
    finally:
        client.stop()
        headend.close()


def test_client_id_takeover_is_prevented(site: Site, tmp_path: Path) -> None:
    """MQ-4: another valid meter connecting with the victim's client id gets a session of its
    own name (the broker binds client ids to certificates): the victim stays connected, and
    the broker logs no takeover nor mismatch (it was a detection only, before)."""
    other_dir = tmp_path / "m2"
    cli("pki", "enroll", str(site.base / "pki"), "--serial", "0000000102", "--out", str(other_dir))
    monitor = site.broker.monitor()
    monitor.poll()  # skip what happened before
    victim = MeterMqttClient(site.settings(site.base / "m1"), Outbox(tmp_path / "v.db"))
    victim.start()
    try:
        assert victim.wait_connected(10)
        thief = connect(
            site.broker.layout.device_port,
            site.base / "m1" / "root.pem",
            other_dir / "tls.pem",
            other_dir / "tls.key",
            client_id=METER_ID,
        )
        assert thief.connected
        time.sleep(1.5)
        assert victim.takeovers == 0 and victim.wait_connected(0.1)
        events = monitor.poll()
        assert not [e for e in events if isinstance(e, (ClientIdMismatch, SessionTakeover))]
        # ...and it cannot write as the victim: the ACL is by user name, never by client id.
        rc = thief.publish(f"meters/{METER_ID}/data", b"forged")
        assert rc is not None and rc.is_failure
        thief.close()
    finally:
        victim.stop()


def test_man_in_the_middle_with_a_forged_certificate_is_refused(site: Site) -> None:
    outcome = mitm.run(site.settings(site.base / "m1"))
    assert outcome.passed, outcome.detail


def test_revoked_meter_with_a_live_session_is_refused_by_the_headend(
    site: Site, tmp_path: Path
) -> None:
    """PKI-5: a CRL reload leaves a connected meter up; the head-end refuses its later messages."""
    cli(
        "pki",
        "enroll",
        str(site.base / "pki"),
        "--serial",
        "0000000103",
        "--out",
        str(tmp_path / "m3"),
    )
    headend = site.headend()
    meter_id = "MGD0000000103"
    client = MeterMqttClient(
        site.settings(tmp_path / "m3", meter_id=meter_id), Outbox(tmp_path / "o.db")
    )
    client.start()
    try:
        assert client.wait_connected(10)
        cli("pki", "revoke", str(site.base / "pki"), "--serial", "0000000103")
        pki = Pki.open(site.base / "pki")
        site.broker.sync(pki)  # the broker reloads the CRL...
        time.sleep(0.5)
        client.publish("data", b"\xdb\x08after revocation")
        got = headend.wait_messages(1, timeout=5)
        assert got, "a reload alone does not drop the live session (that is the point)"
        admission = Admission(known={meter_id}, revoked={f"MGD{s}" for s in pki.revoked_meters()})
        with pytest.raises(AccessDeniedError, match="revoked"):
            admission.check(got[-1][0])
        # ...and a new connection with the revoked certificate is refused by the broker itself.
        client.stop()
        again = MeterMqttClient(
            site.settings(tmp_path / "m3", meter_id=meter_id), Outbox(tmp_path / "o2.db")
        )
        again.start()
        assert not again.wait_connected(3)
        again.stop()
    finally:
        client.stop()
        headend.close()
