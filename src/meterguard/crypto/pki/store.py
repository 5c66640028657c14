"""A directory-backed PKI with EST-shaped enrolment (RFC 7030 cacerts, simple(re)enroll).

Layout of the PKI directory::

    root/root.pem, root/root.key   the infrastructure root: signs the service CA; every
                                   client pins it to authenticate servers (move the key
                                   offline once the CAs exist)
    root/device-root.pem, .key     the device root: signs the device CA only (MQ-4: meter
                                   certificates do not chain on the service listener)
    device-ca.pem, device-ca.key   signs meters; its CRL is crl.pem
    service-ca.pem, service-ca.key signs the broker's and web's server certificates
                                   and head-end client certificates
    registry.json                  registered meter serials, issued and revoked certificates
    crl.pem                        the device CA's CRL, re-published on every revocation
    service-crl.pem                the service CA's CRL (the broker's service listener)

Enrolment (PKI-4): a meter holds a long-lived **factory** certificate issued at
manufacturing for a registered serial (usage: enrolment only, never a TLS client); it
exchanges it for a short-lived **operational** certificate (``simpleenroll``,
authenticated by the factory certificate) and renews that before expiry
(``simplereenroll``, authenticated by the current one). Each request is a CSR signed with
the meter's own key (PKI-2: the key never leaves the meter), whose names must match the
authenticating certificate's.

Private keys are written with mode 0600. This module does file IO only under
the PKI directory; it does not talk to the network (the head-end serves EST).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from meterguard.crypto.pki.authority import (
    ENROLMENT_EKU,
    Authority,
    build_csr,
    meter_serial_from_certificate,
    subject_name,
    verify_possession,
)
from meterguard.errors import ConfigurationError, EnrolmentError, NotFoundError

__all__ = [
    "FACTORY_VALIDITY",
    "OPERATIONAL_VALIDITY",
    "Pki",
    "load_certificates",
    "pem",
    "write_key",
]

FACTORY_VALIDITY = dt.timedelta(days=365 * 20)
OPERATIONAL_VALIDITY = dt.timedelta(days=14)
SERVER_VALIDITY = dt.timedelta(days=90)
CRL_NEXT_UPDATE = dt.timedelta(days=1)


def pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key (PKCS#8 PEM, unencrypted) readable only by its owner."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{path} is not an EC private key")
    return key


def load_certificates(path: Path) -> list[x509.Certificate]:
    """All PEM certificates in a file."""
    return x509.load_pem_x509_certificates(path.read_bytes())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Registry:
    """Registered serials and the certificates issued and revoked."""

    serials: set[str] = field(default_factory=set)
    issued: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked: dict[str, str] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    service_issued: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Service client certificates: serial (hex) -> {"name", "not_after"}."""
    service_revoked: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)
    """Suspended meter certificates (quarantine): serial (hex) -> when; on the CRL as
    ``certificateHold`` until released."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "serials": sorted(self.serials),
            "issued": self.issued,
            "revoked": self.revoked,
            "services": sorted(self.services),
            "service_issued": self.service_issued,
            "service_revoked": self.service_revoked,
            "held": self.held,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Registry:
        """Parse :meth:`to_json`."""
        return cls(
            set(data["serials"]),
            dict(data["issued"]),
            dict(data["revoked"]),
            set(data.get("services", [])),
            dict(data.get("service_issued", {})),
            dict(data.get("service_revoked", {})),
            dict(data.get("held", {})),
        )


def _load_registry(directory: Path) -> Registry:
    return Registry.from_json(json.loads((directory / "registry.json").read_text()))


class Pki:
    """The two roots, device CA, service CA and the registry, on disk."""

    def __init__(
        self,
        directory: Path,
        *,
        root: x509.Certificate,
        device: Authority,
        service: Authority,
        registry: Registry,
        device_root: x509.Certificate | None = None,
    ) -> None:
        self.directory = directory
        self.root = root
        """The infrastructure root (service CA; what clients pin to authenticate servers)."""
        self.device_root = device_root or root
        """The device CA's root (the same as :attr:`root` in a PKI made before the split)."""
        self.device = device
        self.service = service
        self.registry = registry

    def __repr__(self) -> str:
        return f"Pki({self.directory})"

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def init(cls, directory: Path, *, now: dt.datetime) -> Pki:
        """Create a new PKI in an empty or new directory."""
        if (directory / "device-ca.pem").exists():
            raise ConfigurationError(f"{directory} already holds a PKI")
        root = Authority.create_root("meterguard root CA", now=now)
        device_root = Authority.create_root("meterguard device root CA", now=now)
        device = device_root.create_intermediate("meterguard device CA", now=now)
        service = root.create_intermediate("meterguard service CA", now=now)
        _write(directory / "root" / "root.pem", pem(root.certificate))
        write_key(directory / "root" / "root.key", root.key)
        _write(directory / "root" / "device-root.pem", pem(device_root.certificate))
        write_key(directory / "root" / "device-root.key", device_root.key)
        for name, auth in (("device-ca", device), ("service-ca", service)):
            _write(directory / f"{name}.pem", pem(auth.certificate))
            write_key(directory / f"{name}.key", auth.key)
        pki = cls(
            directory,
            root=root.certificate,
            device=device,
            service=service,
            registry=Registry(),
            device_root=device_root.certificate,
        )
        pki._save_registry()
        pki.publish_crl(now=now)
        pki.publish_service_crl(now=now)
        return pki

    @classmethod
    def open(cls, directory: Path) -> Pki:
        """Open an existing PKI (the root key is not needed and may be offline)."""
        if not (directory / "device-ca.pem").exists():
            raise ConfigurationError(
                f"{directory} holds no PKI; run `meterguard pki init {directory}`"
            )
        device = Authority(
            load_certificates(directory / "device-ca.pem")[0],
            _read_key(directory / "device-ca.key"),
        )
        service = Authority(
            load_certificates(directory / "service-ca.pem")[0],
            _read_key(directory / "service-ca.key"),
        )
        registry = _load_registry(directory)
        root = load_certificates(directory / "root" / "root.pem")[0]
        device_root = directory / "root" / "device-root.pem"
        if device_root.exists():
            return cls(
                directory,
                root=root,
                device=device,
                service=service,
                registry=registry,
                device_root=load_certificates(device_root)[0],
            )
        return cls(directory, root=root, device=device, service=service, registry=registry)

    def certificates_of(self, serial: str) -> list[dict[str, str]]:
        """A meter's certificates: number, kind, expiry and status (valid, held or revoked).

        As of the registry this object last read (:meth:`refresh` reads it again).
        """
        reg = self.registry
        out = []
        for number, rec in reg.issued.items():
            if rec["meter"] != serial:
                continue
            status = (
                "revoked" if number in reg.revoked else "held" if number in reg.held else "valid"
            )
            out.append(
                {
                    "number": number,
                    "kind": rec["kind"],
                    "not_after": rec["not_after"],
                    "status": status,
                }
            )
        return sorted(out, key=lambda c: c["not_after"])

    def _save_registry(self) -> None:
        _write(
            self.directory / "registry.json", json.dumps(self.registry.to_json(), indent=1).encode()
        )

    @contextlib.contextmanager
    def _update(self) -> Iterator[Registry]:
        """Change the registry under an exclusive lock, starting from what is on disk.

        Several processes share one PKI directory (the running head-end provisions, the CLI
        revokes): each change re-reads the registry under the lock, so none is lost.
        """
        with (self.directory / ".lock").open("a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.registry = _load_registry(self.directory)
            yield self.registry
            self._save_registry()

    def refresh(self) -> None:
        """Re-read the registry (another process may have changed it)."""
        self.registry = _load_registry(self.directory)

    @property
    def roots_separated(self) -> bool:
        """False for a PKI made before the device root existed (one root for both CAs)."""
        return self.device_root != self.root

    @property
    def crl_path(self) -> Path:
        """Where the device CA's CRL is published."""
        return self.directory / "crl.pem"

    @property
    def service_crl_path(self) -> Path:
        """Where the service CA's CRL is published (checked by the broker's service listener)."""
        return self.directory / "service-crl.pem"

    # ------------------------------------------------------------------ meters

    def register(self, serial: str) -> None:
        """Register a meter serial (manufacturing record) so the CA will certify it."""
        if not (serial.isdigit() and len(serial) == 10):
            raise ConfigurationError("a meter serial is 10 digits")
        with self._update() as registry:
            registry.serials.add(serial)

    def _record(self, cert: x509.Certificate, kind: str, serial: str) -> None:
        with self._update() as registry:
            registry.issued[format(cert.serial_number, "x")] = {
                "meter": serial,
                "kind": kind,
                "not_after": cert.not_valid_after_utc.isoformat(),
            }

    def issue_factory(
        self, csr: x509.CertificateSigningRequest, *, now: dt.datetime
    ) -> x509.Certificate:
        """Manufacturing: a long-lived factory certificate for a registered serial.

        Raises:
            EnrolmentError: bad CSR, disagreeing names or unregistered serial (PKI-3).
        """
        serial = meter_serial_from_certificate(csr)
        if serial not in self.registry.serials:
            raise EnrolmentError(f"serial {serial} is not registered")
        cert = self.device.issue_meter(csr, now=now, validity=FACTORY_VALIDITY, usage=ENROLMENT_EKU)
        self._record(cert, "factory", serial)
        return cert

    def manufacture(
        self, serial: str, out: Path, *, now: dt.datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """Simulate manufacturing into the meter's own directory ``out``.

        Registers the serial, generates the meter's key in ``out`` (PKI-2: where the meter
        keeps it; the CA only ever sees CSRs), issues the factory certificate and writes
        ``tls.key``, ``factory.pem`` and ``root.pem`` (the pinned root). The meter then enrols
        over EST (:mod:`meterguard.meter.enrol`) or through :meth:`simpleenroll`.
        """
        self.register(serial)
        key = ec.generate_private_key(ec.SECP256R1())
        write_key(out / "tls.key", key)
        factory = self.issue_factory(build_csr(key, serial), now=now)
        _write(out / "factory.pem", pem(factory))
        _write(out / "root.pem", pem(self.root))
        return key, factory

    def enrol_meter(self, serial: str, out: Path, *, now: dt.datetime) -> tuple[Path, Path]:
        """Simulate a meter's whole enrolment into ``out``, in process (tests, ``pki enroll``).

        :meth:`manufacture`, then the factory certificate exchanged for an operational one
        (``simpleenroll``), written as ``tls.pem`` (certificate + device CA). Returns
        ``(tls.pem, tls.key)``.
        """
        key, factory = self.manufacture(serial, out, now=now)
        operational = self.simpleenroll(build_csr(key, serial), factory=factory, now=now)
        _write(out / "tls.pem", pem(operational) + pem(self.device.certificate))
        return out / "tls.pem", out / "tls.key"

    def cacerts(self) -> list[x509.Certificate]:
        """EST /cacerts: the device CA, its root, and the root a meter pins for servers (PKI-7)."""
        roots = [self.device_root] if self.roots_separated else []
        return [self.device.certificate, *roots, self.root]

    def simpleenroll(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        factory: x509.Certificate,
        now: dt.datetime,
        proof: bytes | None = None,
    ) -> x509.Certificate:
        """EST /simpleenroll: exchange a valid factory certificate for an operational one.

        ``proof``: a :func:`~meterguard.crypto.pki.authority.possession_proof` by the factory
        key, needed only when the CSR is for another key.
        """
        return self._enroll(csr, factory, "factory", now, proof)

    def simplereenroll(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        current: x509.Certificate,
        now: dt.datetime,
        proof: bytes | None = None,
    ) -> x509.Certificate:
        """EST /simplereenroll: renew an operational certificate before it expires."""
        return self._enroll(csr, current, "operational", now, proof)

    def _enroll(
        self,
        csr: x509.CertificateSigningRequest,
        auth: x509.Certificate,
        kind: str,
        now: dt.datetime,
        proof: bytes | None,
    ) -> x509.Certificate:
        self.refresh()  # another process may have manufactured, revoked or held meanwhile
        serial = (
            self._verify_factory(auth, now=now)
            if kind == "factory"
            else self.verify_meter(auth, now=now)
        )
        record = self.registry.issued.get(format(auth.serial_number, "x"))
        if record is None or record["kind"] != kind:
            raise EnrolmentError(
                f"the authenticating certificate is not a {kind} certificate of this PKI"
            )
        if meter_serial_from_certificate(csr) != serial:
            raise EnrolmentError("the CSR names another meter than the authenticating certificate")
        # Proof of possession of the authenticating certificate's key (a copied certificate
        # enrols nothing): the CSR is signed with it (checked at issuance), or, for a new key,
        # the request carries a signature over the CSR by the authenticating key.
        auth_key = auth.public_key()
        if csr.public_key() != auth_key and not (
            proof is not None
            and isinstance(auth_key, ec.EllipticCurvePublicKey)
            and verify_possession(auth_key, csr, proof)
        ):
            raise EnrolmentError("no proof of possession of the authenticating certificate's key")
        cert = self.device.issue_meter(csr, now=now, validity=OPERATIONAL_VALIDITY)
        self._record(cert, "operational", serial)
        return cert

    @staticmethod
    def needs_renewal(cert: x509.Certificate, *, now: dt.datetime) -> bool:
        """True once a third or less of the validity remains."""
        total = cert.not_valid_after_utc - cert.not_valid_before_utc
        return cert.not_valid_after_utc - now <= total / 3

    def verify_meter(self, cert: x509.Certificate, *, now: dt.datetime) -> str:
        """Verify a meter certificate: chain to our root via the device CA, clientAuth, not revoked.

        Returns the meter serial.

        Raises:
            EnrolmentError: anything wrong, with the reason.
        """
        verifier = (
            PolicyBuilder().store(Store([self.device_root])).time(now).build_client_verifier()
        )
        try:
            verifier.verify(cert, [self.device.certificate])
        except VerificationError as exc:
            raise EnrolmentError(f"certificate does not verify: {exc}") from None
        if cert.issuer != self.device.name:
            raise EnrolmentError("not issued by the device CA")
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise EnrolmentError("not a client certificate")
        if format(cert.serial_number, "x") in self.registry.revoked:
            raise EnrolmentError("certificate is revoked")
        if format(cert.serial_number, "x") in self.registry.held:
            raise EnrolmentError("certificate is on hold (quarantined)")
        return meter_serial_from_certificate(cert)

    def _verify_factory(self, cert: x509.Certificate, *, now: dt.datetime) -> str:
        """Verify a factory certificate for enrolment: ours, in date, enrolment-only, live.

        A path validator for TLS clients refuses it (it is not a client certificate, PKI-4),
        so this checks it directly: issued by our device CA (whose chain to the root is ours),
        within its validity, with the enrolment usage, not revoked. Returns the serial.

        Raises:
            EnrolmentError: anything wrong, with the reason.
        """
        try:
            cert.verify_directly_issued_by(self.device.certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise EnrolmentError(
                "certificate does not verify: not issued by the device CA"
            ) from None
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise EnrolmentError("certificate does not verify: expired or not yet valid")
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise EnrolmentError("not a factory certificate (no key usage)") from None
        if list(eku) != [ENROLMENT_EKU]:
            raise EnrolmentError("not a factory certificate (its usage is not enrolment only)")
        if format(cert.serial_number, "x") in self.registry.revoked:
            raise EnrolmentError("certificate is revoked")
        return meter_serial_from_certificate(cert)

    # ------------------------------------------------------------------ revocation

    def revoke_meter(self, serial: str, *, now: dt.datetime) -> int:
        """Revoke every unexpired certificate of a meter and re-publish the CRL (PKI-5)."""
        count = 0
        with self._update() as registry:
            for number, rec in registry.issued.items():
                live = dt.datetime.fromisoformat(rec["not_after"]) > now
                if rec["meter"] == serial and number not in registry.revoked and live:
                    registry.revoked[number] = now.isoformat()
                    count += 1
            self.publish_crl(now=now)
        return count

    def hold_meter(self, serial: str, *, now: dt.datetime) -> int:
        """Suspend a meter's live operational certificates (quarantine); re-publish the CRL.

        They are listed with reason ``certificateHold``: the broker refuses them from its next
        reload, and :meth:`release_meter` can lift the hold. Returns how many were held.
        """
        count = 0
        with self._update() as registry:
            for number, rec in registry.issued.items():
                live = dt.datetime.fromisoformat(rec["not_after"]) > now
                if (
                    rec["meter"] == serial
                    and rec["kind"] == "operational"
                    and live
                    and number not in registry.revoked
                    and number not in registry.held
                ):
                    registry.held[number] = now.isoformat()
                    count += 1
            self.publish_crl(now=now)
        return count

    def release_meter(self, serial: str, *, now: dt.datetime) -> int:
        """Lift a hold (:meth:`hold_meter`); the next CRL no longer lists those certificates."""
        with self._update() as registry:
            mine = [n for n in registry.held if registry.issued[n]["meter"] == serial]
            for number in mine:
                del registry.held[number]
            self.publish_crl(now=now)
        return len(mine)

    def revoked_meters(self) -> set[str]:
        """Serials of the meters that have a revoked certificate (as on disk now)."""
        self.refresh()
        return {
            rec["meter"]
            for number, rec in self.registry.issued.items()
            if number in self.registry.revoked
        }

    def publish_crl(self, *, now: dt.datetime) -> Path:
        """Write the device CA's CRL (PEM) and return its path."""
        revoked = [
            (int(n, 16), dt.datetime.fromisoformat(t)) for n, t in self.registry.revoked.items()
        ]
        held = [(int(n, 16), dt.datetime.fromisoformat(t)) for n, t in self.registry.held.items()]
        crl = self.device.crl(revoked, now=now, next_update=CRL_NEXT_UPDATE, held=held)
        _write(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path

    # ------------------------------------------------------------------ services

    def issue_server(
        self, name: str, *, hosts: list[str], now: dt.datetime, out: Path
    ) -> tuple[Path, Path]:
        """Server certificate (serverAuth, service CA) for the broker or the web.

        Writes ``<name>.pem`` (the certificate followed by the service CA: the chain
        without the root, MQ-1) and ``<name>.key`` into ``out``; returns their paths.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        subject = subject_name(name)
        cert = self.service.issue_leaf(
            subject,
            key.public_key(),
            now=now,
            validity=SERVER_VALIDITY,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=sans,
        )
        return self._write_pair(out, name, cert, key)

    def issue_service_client(self, name: str, *, now: dt.datetime, out: Path) -> tuple[Path, Path]:
        """Client certificate (clientAuth, service CA) for a head-end worker named ``name``.

        Service names live in their own namespace: nothing that looks like a meter id
        (``MGD`` + digits) is accepted, so a name can never grant meter rights or the reverse.
        """
        if (
            not name
            or name.upper().startswith("MGD")
            or not all(c.isalnum() or c in "-_." for c in name)
        ):
            raise ConfigurationError(f"invalid service client name {name!r}")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = subject_name(name)
        cert = self.service.issue_leaf(
            subject,
            key.public_key(),
            now=now,
            validity=SERVER_VALIDITY,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        with self._update() as registry:
            registry.services.add(name)
            registry.service_issued[f"{cert.serial_number:x}"] = {
                "name": name,
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
        return self._write_pair(out, name, cert, key)

    def revoke_service(self, name: str, *, now: dt.datetime) -> int:
        """Revoke every live client certificate of service ``name``; re-publish its CRL.

        The name also leaves the broker's service ACL (after :meth:`ManagedBroker.sync`),
        so even a stale CRL grants it nothing. Returns how many certificates were revoked.

        Raises:
            NotFoundError: no such service identity was ever issued.
        """
        count = 0
        with self._update() as registry:
            mine = [n for n, rec in registry.service_issued.items() if rec["name"] == name]
            if not mine and name not in registry.services:
                raise NotFoundError(f"no service identity {name[:64]!r}")
            for number in mine:
                rec = registry.service_issued[number]
                live = dt.datetime.fromisoformat(rec["not_after"]) > now
                if number not in registry.service_revoked and live:
                    registry.service_revoked[number] = now.isoformat()
                    count += 1
            registry.services.discard(name)
            self.publish_service_crl(now=now)
        return count

    def publish_service_crl(self, *, now: dt.datetime) -> Path:
        """Write the service CA's CRL (PEM) and return its path."""
        revoked = [
            (int(n, 16), dt.datetime.fromisoformat(t))
            for n, t in self.registry.service_revoked.items()
        ]
        crl = self.service.crl(revoked, now=now, next_update=CRL_NEXT_UPDATE)
        _write(self.service_crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return self.service_crl_path

    def _write_pair(
        self, out: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> tuple[Path, Path]:
        cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
        _write(cert_path, pem(cert) + pem(self.service.certificate))
        write_key(key_path, key)
        return cert_path, key_path
