"""PKI-1…4: CA profiles, CSR checks, factory → operational enrolment, renewal, revocation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from meterguard.crypto.pki.authority import (
    ENROLMENT_EKU,
    METER_URN_PREFIX,
    build_csr,
    meter_id,
    possession_proof,
)
from meterguard.crypto.pki.store import OPERATIONAL_VALIDITY, Pki
from meterguard.errors import ConfigurationError, EnrolmentError

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
SERIAL = "0000000123"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    p = Pki.init(tmp_path / "pki", now=NOW)
    p.register(SERIAL)
    return p


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_ca_profiles(pki: Pki) -> None:
    for ca in (pki.root, pki.device_root, pki.device.certificate, pki.service.certificate):
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
        assert bc.critical and bc.value.ca
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
        assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    assert pki.service.certificate.issuer == pki.root.subject
    # MQ-4: meters under a root of their own, so a meter certificate never chains to the root
    # the service listener trusts (nor a service certificate to the device listener's).
    assert pki.device.certificate.issuer == pki.device_root.subject != pki.root.subject
    assert pki.device_root.public_key() != pki.root.public_key()
    for name in ("root.key", "device-root.key"):
        assert (pki.directory / "root" / name).stat().st_mode & 0o777 == 0o600
    reopened = Pki.open(pki.directory)
    assert reopened.roots_separated and reopened.device_root == pki.device_root


def test_meter_certificate_profile(pki: Pki) -> None:
    k = key()
    cert = pki.issue_factory(build_csr(k, SERIAL), now=NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == meter_id(SERIAL)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [METER_URN_PREFIX + SERIAL]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ENROLMENT_EKU]  # PKI-4: a factory certificate only enrols
    assert cert.public_key() == k.public_key()  # the CA never saw the private key
    op = pki.simpleenroll(build_csr(k, SERIAL), factory=cert, now=NOW)
    eku = op.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # the operational one is the client


def test_unregistered_serial_is_refused(pki: Pki) -> None:
    with pytest.raises(EnrolmentError, match="not registered"):
        pki.issue_factory(build_csr(key(), "0000000999"), now=NOW)


def test_disagreeing_names_are_refused(pki: Pki) -> None:
    k = key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MGD0000000999")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(METER_URN_PREFIX + SERIAL)]
            ),
            critical=False,
        )
        .sign(k, hashes.SHA256())
    )
    with pytest.raises(EnrolmentError, match="disagree"):
        pki.issue_factory(csr, now=NOW)


def test_csr_signature_is_checked(pki: Pki) -> None:
    der = bytearray(build_csr(key(), SERIAL).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # corrupt the signature
    csr = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(EnrolmentError, match="proof of possession"):
        pki.issue_factory(csr, now=NOW)


def test_rsa_keys_are_refused(pki: Pki) -> None:
    rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, meter_id(SERIAL))]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(METER_URN_PREFIX + SERIAL)]
            ),
            critical=False,
        )
        .sign(rk, hashes.SHA256())
    )
    with pytest.raises(EnrolmentError):
        pki.issue_factory(csr, now=NOW)


def test_enrolment_and_renewal(pki: Pki) -> None:
    k = key()
    factory = pki.issue_factory(build_csr(k, SERIAL), now=NOW)
    op = pki.simpleenroll(build_csr(k, SERIAL), factory=factory, now=NOW)
    assert op.not_valid_after_utc - op.not_valid_before_utc <= OPERATIONAL_VALIDITY + dt.timedelta(
        minutes=5
    )
    assert pki.verify_meter(op, now=NOW) == SERIAL
    assert not Pki.needs_renewal(op, now=NOW)
    later = NOW + dt.timedelta(days=11)
    assert Pki.needs_renewal(op, now=later)
    k2 = key()  # the meter may roll its key at renewal, proving both keys
    new_csr = build_csr(k2, SERIAL)
    with pytest.raises(EnrolmentError, match="possession"):
        pki.simplereenroll(new_csr, current=op, now=later)  # a copy of `op` is not enough
    with pytest.raises(EnrolmentError, match="possession"):
        pki.simplereenroll(new_csr, current=op, now=later, proof=possession_proof(key(), new_csr))
    renewed = pki.simplereenroll(new_csr, current=op, now=later, proof=possession_proof(k, new_csr))
    assert renewed.not_valid_after_utc > op.not_valid_after_utc
    # An operational certificate cannot stand in for a factory one, nor the reverse.
    with pytest.raises(EnrolmentError, match="factory"):
        pki.simpleenroll(build_csr(k, SERIAL), factory=op, now=NOW)
    with pytest.raises(EnrolmentError, match=r"does not verify|operational"):
        pki.simplereenroll(build_csr(k, SERIAL), current=factory, now=NOW)
    # An expired certificate cannot renew.
    with pytest.raises(EnrolmentError, match="does not verify"):
        pki.simplereenroll(build_csr(k, SERIAL), current=op, now=NOW + dt.timedelta(days=30))


def test_enrolling_for_another_meter_is_refused(pki: Pki) -> None:
    pki.register("0000000124")
    k = key()
    factory = pki.issue_factory(build_csr(k, SERIAL), now=NOW)
    with pytest.raises(EnrolmentError, match="another meter"):
        pki.simpleenroll(build_csr(k, "0000000124"), factory=factory, now=NOW)


def test_revocation_and_crl(pki: Pki) -> None:
    k = key()
    factory = pki.issue_factory(build_csr(k, SERIAL), now=NOW)
    op = pki.simpleenroll(build_csr(k, SERIAL), factory=factory, now=NOW)
    assert pki.revoke_meter(SERIAL, now=NOW) == 2
    with pytest.raises(EnrolmentError, match="revoked"):
        pki.verify_meter(op, now=NOW)
    with pytest.raises(EnrolmentError, match="revoked"):
        pki.simpleenroll(build_csr(k, SERIAL), factory=factory, now=NOW)
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert crl.is_signature_valid(pki.device.certificate.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(op.serial_number) is not None
    # State survives reopening.
    assert Pki.open(pki.directory).registry.revoked == pki.registry.revoked


def test_a_meter_certificate_does_not_chain_to_the_service_root(pki: Pki) -> None:
    op = pki.simpleenroll(
        build_csr(k := key(), SERIAL),
        factory=pki.issue_factory(build_csr(k, SERIAL), now=NOW),
        now=NOW,
    )
    assert pki.verify_meter(op, now=NOW) == SERIAL
    verifier = PolicyBuilder().store(Store([pki.root])).time(NOW).build_client_verifier()
    with pytest.raises(VerificationError):
        verifier.verify(op, [pki.device.certificate])


def test_hold_and_release(pki: Pki) -> None:
    """Quarantine (MQ-4): operational certificates on hold, listed as certificateHold."""
    k = key()
    factory = pki.issue_factory(build_csr(k, SERIAL), now=NOW)
    op = pki.simpleenroll(build_csr(k, SERIAL), factory=factory, now=NOW)
    assert pki.hold_meter(SERIAL, now=NOW) == 1  # the factory certificate is not a TLS identity
    assert pki.hold_meter(SERIAL, now=NOW) == 0
    with pytest.raises(EnrolmentError, match="on hold"):
        pki.verify_meter(op, now=NOW)
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(op.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.certificate_hold
    assert Pki.open(pki.directory).registry.held == pki.registry.held
    assert pki.release_meter(SERIAL, now=NOW) == 1
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(op.serial_number) is None
    assert pki.verify_meter(op, now=NOW) == SERIAL


def test_service_certificates_and_names(pki: Pki, tmp_path: Path) -> None:
    cert_path, key_path = pki.issue_server(
        "broker", hosts=["127.0.0.1", "localhost"], now=NOW, out=tmp_path
    )
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert [c.issuer for c in chain] == [
        pki.service.name,
        pki.root.subject,
    ]  # no root in the chain (MQ-1)
    eku = chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert key_path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigurationError):
        pki.issue_service_client("MGD0000000123", now=NOW, out=tmp_path)  # meter names are reserved
    with pytest.raises(EnrolmentError, match=r"device CA|does not verify"):
        pki.verify_meter(chain[0], now=NOW)


def test_cacerts_and_init_twice(pki: Pki) -> None:
    assert pki.cacerts() == [pki.device.certificate, pki.device_root, pki.root]
    with pytest.raises(ConfigurationError):
        Pki.init(pki.directory, now=NOW)
    with pytest.raises(ConfigurationError, match="holds no PKI"):
        Pki.open(pki.directory / "nowhere")
