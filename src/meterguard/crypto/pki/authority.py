"""Certificate authorities and the profiles they issue (PKI-1…4, PKI-6, PKI-7).

Everything is ECDSA P-256 with SHA-256 (PKI-2, as GB smart metering does).

* Two **roots**, each signing one intermediate CA (path length 1): the
  infrastructure root signs the service CA and is what every client pins to
  authenticate a server; the **device root** signs the device CA and is what the
  broker's device listener trusts. Separate roots keep the two populations apart on
  the broker (a meter certificate does not chain on the service listener, a service
  certificate not on the device listener: MQ-4). In production the root keys stay
  offline; here they are separate files a deployment can move away.
* The **device CA** signs meter certificates (clientAuth) and publishes the CRL
  that the broker enforces. The **service CA** signs server certificates
  (serverAuth: broker, web) and head-end client certificates (clientAuth).
* CA certificates carry critical basic constraints and keyCertSign|cRLSign;
  leaves are never CAs.
* A **meter certificate**'s subject CN is the meter id (``MGD`` + 10-digit
  serial, the MQTT user name) and its SAN carries the serial as
  ``urn:meterguard:meter:<serial>`` (PKI-3).

CSR checks before anything is signed: the CSR's own signature (proof of
possession), a P-256 key, CN and SAN agreeing, and the serial registered.
Failures raise :class:`~meterguard.errors.EnrolmentError`. This module does
no IO; :mod:`.store` persists.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meterguard.errors import EnrolmentError

__all__ = [
    "METER_URN_PREFIX",
    "Authority",
    "build_csr",
    "meter_id",
    "meter_serial_from_certificate",
    "possession_proof",
    "subject_name",
    "verify_possession",
]

METER_URN_PREFIX = "urn:meterguard:meter:"
ENROLMENT_EKU = x509.ObjectIdentifier("2.25.218902070330560900936852736606278880607")
"""The extended key usage of factory certificates: enrolment only (a UUID OID, X.667).

Without clientAuth, TLS stacks refuse a factory certificate as a client identity (OpenSSL
checks the ``ssl_client`` purpose), so only operational certificates reach the broker."""
_HASH = hashes.SHA256()


def meter_id(serial: str) -> str:
    """The meter id used as certificate CN and MQTT user name."""
    return f"MGD{serial}"


def subject_name(common_name: str, org: str = "meterguard") -> x509.Name:
    """``O=meterguard, CN=<common_name>``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise EnrolmentError("exactly one common name is required")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def build_csr(key: ec.EllipticCurvePrivateKey, serial: str) -> x509.CertificateSigningRequest:
    """The CSR a meter sends: CN = meter id, SAN = its serial URN, signed with its own key."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject_name(meter_id(serial)))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(METER_URN_PREFIX + serial)]
            ),
            critical=False,
        )
        .sign(key, _HASH)
    )


POSSESSION_DOMAIN = b"meterguard est possession v1\x00"
"""Domain of :func:`possession_proof` signatures (they sign nothing else)."""


def possession_proof(key: ec.EllipticCurvePrivateKey, csr: x509.CertificateSigningRequest) -> bytes:
    """A signature by the authenticating certificate's key over a CSR for a *new* key.

    With a CSR for the same key, the CSR's own signature proves possession; a meter that rolls
    its key at (re-)enrolment adds this signature, so the request proves both keys (DER
    ECDSA-SHA256 over :data:`POSSESSION_DOMAIN` + the CSR's DER).
    """
    return key.sign(
        POSSESSION_DOMAIN + csr.public_bytes(serialization.Encoding.DER), ec.ECDSA(_HASH)
    )


def verify_possession(
    public_key: ec.EllipticCurvePublicKey, csr: x509.CertificateSigningRequest, proof: bytes
) -> bool:
    """Check a :func:`possession_proof`."""
    try:
        public_key.verify(
            proof, POSSESSION_DOMAIN + csr.public_bytes(serialization.Encoding.DER), ec.ECDSA(_HASH)
        )
    except InvalidSignature:
        return False
    return True


def meter_serial_from_certificate(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """Check CN and SAN agree and return the serial (PKI-3).

    Raises:
        EnrolmentError: names missing or disagreeing.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise EnrolmentError("no subject alternative name with the meter serial") from None
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(METER_URN_PREFIX)
    ]
    if len(uris) != 1:
        raise EnrolmentError("exactly one meter serial URN is required in the SAN")
    serial = uris[0][len(METER_URN_PREFIX) :]
    if not (serial.isdigit() and len(serial) == 10):
        raise EnrolmentError("meter serial must be 10 digits")
    if _cn(cert.subject) != meter_id(serial):
        raise EnrolmentError("certificate CN and SAN serial disagree")
    return serial


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:
        return f"Authority({self.certificate.subject.rfc4514_string()}, key=<redacted>)"

    @property
    def name(self) -> x509.Name:
        """The CA's subject."""
        return self.certificate.subject

    @classmethod
    def create_root(cls, common_name: str, *, now: dt.datetime, years: int = 20) -> Authority:
        """A self-signed root CA, path length 1."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = subject_name(common_name)
        cert = (
            _base(subject, subject, key.public_key(), now, dt.timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, _HASH)
        )
        return cls(cert, key)

    def create_intermediate(
        self, common_name: str, *, now: dt.datetime, years: int = 10
    ) -> Authority:
        """A CA signed by this one, path length 0 (it signs leaves only)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _base(
                subject_name(common_name),
                self.name,
                key.public_key(),
                now,
                dt.timedelta(days=365 * years),
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(self._aki(), critical=False)
            .sign(self.key, _HASH)
        )
        return Authority(cert, key)

    def _aki(self) -> x509.AuthorityKeyIdentifier:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def issue_leaf(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        *,
        now: dt.datetime,
        validity: dt.timedelta,
        usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None = None,
    ) -> x509.Certificate:
        """A non-CA certificate for ``usage`` (clientAuth or serverAuth)."""
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise EnrolmentError("only P-256 keys are accepted (PKI-2)")
        builder = (
            _base(subject, self.name, public_key, now, validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._aki(), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, _HASH)

    def issue_meter(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        now: dt.datetime,
        validity: dt.timedelta,
        usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    ) -> x509.Certificate:
        """A meter certificate from a checked CSR (the caller checks registration).

        ``usage``: clientAuth for operational certificates, :data:`ENROLMENT_EKU` for factory
        ones.
        """
        if not csr.is_signature_valid:
            raise EnrolmentError("CSR signature does not verify (no proof of possession)")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise EnrolmentError("meter keys must be ECDSA P-256")
        serial = meter_serial_from_certificate(csr)
        return self.issue_leaf(
            subject_name(meter_id(serial)),
            key,
            now=now,
            validity=validity,
            usage=usage,
            san=[x509.UniformResourceIdentifier(METER_URN_PREFIX + serial)],
        )

    def crl(
        self,
        revoked: list[tuple[int, dt.datetime]],
        *,
        now: dt.datetime,
        next_update: dt.timedelta,
        held: Sequence[tuple[int, dt.datetime]] = (),
    ) -> x509.CertificateRevocationList:
        """A CRL listing ``(certificate serial number, revocation time)``.

        ``held`` are suspended certificates: listed with reason ``certificateHold`` (RFC 5280
        §5.3.1), which a later CRL may drop again when the hold is released.
        """
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.name)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + next_update)
            .add_extension(self._aki_self(), critical=False)
        )
        for number, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(number).revocation_date(when).build()
            )
        hold = x509.CRLReason(x509.ReasonFlags.certificate_hold)
        for number, when in held:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(number)
                .revocation_date(when)
                .add_extension(hold, critical=False)
                .build()
            )
        return builder.sign(self.key, _HASH)

    def _aki_self(self) -> x509.AuthorityKeyIdentifier:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    validity: dt.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
    )
