"""PKI-4 (issue 12 item 5): enrolment over an EST endpoint of its own, against a real broker.

A factory certificate is good for one thing: the EST exchange (RFC 7030 paths over HTTPS,
the meter pinning the root). What comes back connects to the broker; the factory certificate
itself never does. Requests without proof of the key, with the wrong kind of certificate,
malformed, oversized or too frequent are refused with a typed error, recorded as security
events; what is issued is audited.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from meterguard.attacks.probe import connect
from meterguard.broker.process import free_port
from meterguard.crypto.pki.authority import Authority, build_csr
from meterguard.crypto.pki.store import pem
from meterguard.errors import EnrolmentError, RateLimitedError
from meterguard.headend.api.est import CREDENTIAL_HEADER, create_est_app
from meterguard.headend.services.enrolment import ENROL_BURST, Enrolment
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.meter.enrol import EstClient, enrol_into
from meterguard.mqtt.tls import pinned_client_context
from meterguard.system.web import serve_https
from tests.integration.conftest import World

pytestmark = pytest.mark.integration


class Est:
    def __init__(self, world: World, store: Store, port: int) -> None:
        self.world, self.store, self.port = world, store, port
        self.client = EstClient("127.0.0.1", port, world.root)

    def manufacture(self, serial: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
        d = self.world.base / f"est-{serial}"
        key, factory = self.world.pki.manufacture(serial, d, now=dt.datetime.now(dt.UTC))
        return d, key, factory

    def raw(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=pinned_client_context(self.world.root), timeout=10
        )
        try:
            conn.request("POST", f"/.well-known/est{path}", body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def est(world: World) -> Iterator[Est]:
    store = Store(open_database(f"sqlite:///{world.base / 'est.db'}"))
    now = dt.datetime.now(dt.UTC)
    cert, key = world.pki.issue_server("est", hosts=["127.0.0.1"], now=now, out=world.base)
    enrolment = Enrolment(world.pki, store, store.audit, device_ca=world.pki.device.certificate)
    port = free_port()
    server, thread = serve_https(create_est_app(enrolment), "127.0.0.1", port, cert, key)
    yield Est(world, store, port)
    server.should_exit = True
    thread.join(10)


def _events(store: Store) -> list[tuple[str | None, str]]:
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(text("SELECT meter_id, event FROM security_events"))]  # type: ignore[misc]


def test_a_factory_certificate_enrols_over_est_and_the_result_connects(est: Est) -> None:
    world = est.world
    cas = est.client.cacerts()
    # A certs-only PKCS#7 is a SET: the order is the encoder's.
    assert set(cas) == {world.pki.device.certificate, world.pki.device_root, world.pki.root}
    d, _, factory = est.manufacture("0000000201")
    tls = enrol_into(est.client, d, "0000000201")
    chain = x509.load_pem_x509_certificates(tls.read_bytes())
    assert chain[1] == world.pki.device.certificate
    assert world.pki.verify_meter(chain[0], now=dt.datetime.now(dt.UTC)) == "0000000201"
    assert (tls.stat().st_mode & 0o777) == 0o600
    port = world.broker.layout.device_port
    meter = connect(port, world.root, tls, d / "tls.key", client_id="MGD0000000201")
    assert meter.connected, meter.error
    meter.close()
    (d / "factory-chain.pem").write_bytes(pem(factory) + pem(world.pki.device.certificate))
    refused = connect(port, world.root, d / "factory-chain.pem", d / "tls.key")
    assert not refused.connected  # the factory certificate is still no TLS identity
    with est.store.engine.connect() as c:
        trail = c.execute(text("SELECT actor, action FROM audit_entries")).all()
    assert ("MGD0000000201", "certificate_issued") in [tuple(r) for r in trail]
    # Renewal with the operational certificate, also rolling the key (proving both).
    old_key = serialization.load_pem_private_key((d / "tls.key").read_bytes(), None)
    assert isinstance(old_key, ec.EllipticCurvePrivateKey)
    renewed = est.client.renew(old_key, chain[0], "0000000201")
    assert renewed[0].not_valid_after_utc >= chain[0].not_valid_after_utc
    new_key = ec.generate_private_key(ec.SECP256R1())
    rolled = est.client.renew(new_key, chain[0], "0000000201", old_key=old_key)
    assert rolled[0].public_key() == new_key.public_key()


def test_est_refuses_what_proves_nothing(est: Est) -> None:
    _, key, factory = est.manufacture("0000000202")
    stranger = ec.generate_private_key(ec.SECP256R1())
    # A copy of the factory certificate without its key: a CSR signed by another key.
    with pytest.raises(EnrolmentError):
        est.client.enrol(stranger, factory, "0000000202")
    # The factory certificate cannot renew; an operational certificate cannot enrol.
    with pytest.raises(EnrolmentError):
        est.client.renew(key, factory, "0000000202")
    op = est.client.enrol(key, factory, "0000000202")[0]
    with pytest.raises(EnrolmentError):
        est.client.enrol(key, op, "0000000202")
    # A key roll without the old key's proof.
    with pytest.raises(EnrolmentError):
        est.client.renew(stranger, op, "0000000202")
    # Another CA's certificate with the same names (of another registered meter: each identity
    # has a small request budget, which this one has used up).
    _, key5, _ = est.manufacture("0000000205")
    rogue = Authority.create_root("meterguard device CA", now=dt.datetime.now(dt.UTC))
    forged = rogue.issue_meter(
        x509.load_der_x509_csr(_csr(key5, "0000000205")), now=dt.datetime.now(dt.UTC),
        validity=dt.timedelta(days=1),
    )  # fmt: skip
    with pytest.raises(EnrolmentError):
        est.client.enrol(key5, forged, "0000000205")
    events = _events(est.store)
    assert ("MGD0000000202", "enrolment_refused") in events
    assert ("MGD0000000205", "enrolment_refused") in events
    assert (
        len([e for e in events if e == ("MGD0000000202", "enrolment_refused")]) == 1
    )  # one summary
    # Malformed and oversized requests: typed answers, nothing read beyond the limit.
    cred = base64.b64encode(factory.public_bytes(serialization.Encoding.DER)).decode()
    status, _ = est.raw("/simpleenroll", b"not a csr!", {CREDENTIAL_HEADER: cred})
    assert status == 400
    status, _ = est.raw("/simpleenroll", base64.b64encode(_csr(key, "0000000202")), {})
    assert status == 400  # no credential
    status, _ = est.raw("/simpleenroll", b"A" * 20_000, {CREDENTIAL_HEADER: cred})
    assert status == 413


def test_est_rate_limits_one_identity(est: Est) -> None:
    _, key, factory = est.manufacture("0000000203")
    stranger = ec.generate_private_key(ec.SECP256R1())
    for _ in range(int(ENROL_BURST)):
        with pytest.raises(EnrolmentError):
            est.client.enrol(stranger, factory, "0000000203")
    with pytest.raises(RateLimitedError) as info:
        est.client.enrol(key, factory, "0000000203")  # even the right one, until it refills
    assert info.value.retry_after > 0
    _, key2, factory2 = est.manufacture("0000000204")
    t0 = time.monotonic()
    assert est.client.enrol(key2, factory2, "0000000204")  # another identity is not held up
    assert time.monotonic() - t0 < 10


def _csr(key: ec.EllipticCurvePrivateKey, serial: str) -> bytes:
    return build_csr(key, serial).public_bytes(serialization.Encoding.DER)
