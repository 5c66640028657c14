"""The access matrix on a real Mosquitto: every attack scenario is stopped (MQ-1…4, PKI-5/7)."""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from meterguard.attacks.mqtt_access import SCENARIOS, AccessScenario, Setting, run
from meterguard.attacks.probe import connect
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.pki.authority import Authority
from meterguard.crypto.pki.store import pem
from meterguard.errors import AccessDeniedError, NotFoundError
from meterguard.headend.services.meters import Meters
from meterguard.headend.services.sessions import TAKEOVER_LIMIT, TakeoverGuard
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from tests.integration.conftest import World

pytestmark = pytest.mark.integration
_serials = itertools.count(2000)


@pytest.fixture(scope="module")
def setting(world: World) -> Setting:
    victim = world.meter("0000000001")
    return Setting(world.pki, world.broker, world.base / "attacks", victim, "MGD0000000001", "")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_scenario_is_stopped(scenario: AccessScenario, setting: Setting) -> None:
    setting.attacker_serial = f"{next(_serials):010d}"
    outcome = run(scenario, setting)
    assert outcome.passed, (
        f"{scenario.id} ({scenario.requirement}) was not stopped: {outcome.detail}"
    )


def test_valid_meter_publishes_and_the_headend_receives(world: World) -> None:
    """The positive case: a meter writes its own topic; a head-end worker on the service listener,
    subscribed through an MQTT v5 shared subscription (MQ-6), receives it."""
    cert, key = world.meter("0000000042")
    svc_cert, svc_key = world.service_client("headend-ingest-1")
    worker = connect(
        world.broker.layout.service_port, world.root, svc_cert, svc_key, client_id="ingest-1"
    )
    assert worker.connected, worker.error
    granted = worker.subscribe("$share/ingest/meters/+/data")
    assert granted and not granted[0].is_failure
    meter = connect(
        world.broker.layout.device_port, world.root, cert, key, client_id="MGD0000000042"
    )
    assert meter.connected, meter.error
    rc = meter.publish("meters/MGD0000000042/data", b"\xdb\x08protected")
    assert rc is not None and not rc.is_failure
    [(topic, payload)] = worker.wait_messages(1)
    assert topic == "meters/MGD0000000042/data" and payload == b"\xdb\x08protected"
    # ...and the head-end can command it, which the meter (only) reads.
    assert not meter.subscribe("meters/MGD0000000042/commands")[0].is_failure
    assert not worker.publish("meters/MGD0000000042/commands", b"cmd").is_failure
    assert meter.wait_messages(1)[-1] == ("meters/MGD0000000042/commands", b"cmd")
    meter.close()
    worker.close()


def test_device_listener_refuses_plain_mqtt(world: World) -> None:
    with socket.create_connection(("127.0.0.1", world.broker.layout.device_port), timeout=3) as s:
        s.sendall(bytes.fromhex("101000044d5154540502003c00000000"))  # a plaintext MQTT CONNECT
        s.settimeout(3)
        try:
            data = s.recv(100)
        except (ConnectionResetError, TimeoutError):
            data = b""
    assert not data.startswith(b"\x20")  # never a CONNACK


def test_a_meter_certificate_does_not_chain_on_the_service_listener(world: World) -> None:
    # MQ-4: meters have a root of their own, which the service listener does not trust: a
    # meter certificate cannot even open a TLS session there (it was let in and given nothing).
    cert, key = world.meter("0000000043")
    probe = connect(world.broker.layout.service_port, world.root, cert, key, client_id="m43")
    assert not probe.connected
    probe.close()
    ok = connect(world.broker.layout.device_port, world.root, cert, key)
    assert ok.connected, ok.error  # the same certificate is fine where it belongs
    ok.close()


def test_a_cloned_meter_identity_is_quarantined(world: World, tmp_path: Path) -> None:
    """MQ-4: two devices with one meter's key keep taking its session over; the head-end's
    guard quarantines the identity (certificates on hold) and the broker then refuses it."""
    cert, key = world.meter("0000000046")
    mid = "MGD0000000046"
    store = Store(open_database(f"sqlite:///{tmp_path / 'q.db'}"))
    keys = KeyStore(tmp_path / "q-keys.db", LocalKek(SecretKey.generate(32)))
    meters = Meters(store.registry, world.pki, keys, store.audit)
    store.registry.add_meter(mid, serial=mid[3:], system_title=b"MGD" + bytes(5), now=0)
    guard = TakeoverGuard(meters, store)
    monitor = world.broker.monitor()
    monitor.skip_existing()
    port = world.broker.layout.device_port
    genuine = connect(port, world.root, cert, key, client_id=mid)
    assert genuine.connected, genuine.error
    clones = []
    for _ in range(TAKEOVER_LIMIT):
        clones.append(connect(port, world.root, cert, key, client_id="clone"))
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while not guard.quarantined and time.monotonic() < deadline:
        guard.observe(monitor.poll(), now=int(time.time()))
        time.sleep(0.1)
    for c in (genuine, *clones):
        c.close()
    assert guard.quarantined == [mid]
    assert store.registry.state(mid) == "quarantined"
    world.broker.sync(world.pki)  # the head-end that owns the broker reloads on the change
    time.sleep(0.5)  # SIGHUP is asynchronous
    again = connect(port, world.root, cert, key)
    assert not again.connected  # on hold: the CRL lists it
    again.close()
    meters.move("sam", "security_admin", mid, "release", now=int(time.time()))
    world.broker.sync(world.pki)
    time.sleep(0.5)
    released = connect(port, world.root, cert, key)
    assert released.connected, released.error
    released.close()


def test_broker_pins_only_our_root(world: World) -> None:
    # PKI-7: a client that trusts only a foreign root refuses the broker.
    other = Authority.create_root("someone else", now=dt.datetime.now(dt.UTC))
    path = world.base / "other-root.pem"
    path.write_bytes(pem(other.certificate))
    cert, key = world.meter("0000000044")
    probe = connect(world.broker.layout.device_port, path, cert, key)
    assert not probe.connected and probe.error and "CERTIFICATE_VERIFY_FAILED" in probe.error


def test_a_revoked_service_identity_is_refused_on_the_service_listener(world: World) -> None:
    """Item 11: the service listener checks the service CA's CRL too (it had none)."""
    cert, key = world.service_client("headend-rogue-1")
    other_cert, other_key = world.service_client("headend-ingest-7")
    port = world.broker.layout.service_port
    before = connect(port, world.root, cert, key, client_id="rogue-1")
    assert before.connected, before.error
    before.close()
    # Through the lifecycle service every entry point uses: the role is checked, it is audited.
    store = Store(open_database(f"sqlite:///{world.base / 'svc-revoke.db'}"))
    keys = KeyStore(world.base / "svc-revoke-keys.db", LocalKek(SecretKey.generate(32)))
    meters = Meters(store.registry, world.pki, keys, store.audit)
    with pytest.raises(AccessDeniedError):
        meters.revoke_service("olga", "operator", "headend-rogue-1", now=int(time.time()))
    assert (
        meters.revoke_service("sam", "security_admin", "headend-rogue-1", now=int(time.time())) == 1
    )
    with store.engine.connect() as c:
        trail = c.execute(text("SELECT actor, target, action FROM audit_entries")).all()
    assert [tuple(r) for r in trail] == [("sam", "service:headend-rogue-1", "service_revoked")]
    assert "headend-rogue-1" not in world.pki.registry.services
    world.broker.sync(world.pki)
    time.sleep(0.5)  # SIGHUP is asynchronous
    after = connect(port, world.root, cert, key, client_id="rogue-1")
    assert not after.connected
    still = connect(port, world.root, other_cert, other_key, client_id="ingest-7")
    assert still.connected, still.error
    still.close()
    with pytest.raises(NotFoundError):
        world.pki.revoke_service("never-issued", now=dt.datetime.now(dt.UTC))


def test_a_factory_certificate_is_not_an_operational_identity(world: World) -> None:
    """Item 5 (PKI-4): the 20-year factory certificate (same key, same CN) was accepted on the
    device listener. It is now enrolment-only (no clientAuth): the TLS handshake refuses it,
    while the operational certificate made from it connects."""
    cert, key = world.meter("0000000051")
    factory = cert.parent / "factory-chain.pem"
    factory.write_bytes(
        (cert.parent / "factory.pem").read_bytes() + pem(world.pki.device.certificate)
    )
    port = world.broker.layout.device_port
    refused = connect(port, world.root, factory, key, client_id="MGD0000000051")
    assert not refused.connected
    ok = connect(port, world.root, cert, key, client_id="MGD0000000051")
    assert ok.connected, ok.error
    ok.close()
