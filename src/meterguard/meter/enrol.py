"""The meter's EST client (RFC 7030, PKI-4): factory certificate in, operational certificate out.

:class:`EstClient` speaks to the head-end's EST endpoint (:mod:`meterguard.headend.api.est`)
over TLS pinned to the root the meter shipped with (PKI-7), with the standard library's
``http.client`` (one request per connection; enrolment is rare). :meth:`EstClient.enrol`
sends a CSR signed with the meter's own key (PKI-2: the key never leaves the meter) and the
factory certificate; :meth:`EstClient.renew` the same with the current operational
certificate, plus a proof of the old key when the meter rolls its key.
:func:`enrol_into` writes the result where the meter's MQTT link reads it.

Errors: :class:`~meterguard.errors.TransportError` (endpoint unreachable or TLS failure),
:class:`~meterguard.errors.EnrolmentError` (refused), :class:`~meterguard.errors.RateLimitedError`
(asked too often), :class:`~meterguard.errors.DecodeError` (an answer that is not a
certificate for this key).
"""

from __future__ import annotations

import base64
import http.client
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7

from meterguard.crypto.pki.authority import build_csr, possession_proof
from meterguard.crypto.pki.store import pem
from meterguard.errors import DecodeError, EnrolmentError, RateLimitedError, TransportError
from meterguard.files import atomic_file
from meterguard.mqtt.tls import pinned_client_context

__all__ = ["EstClient", "enrol_into"]

_PREFIX = "/.well-known/est"
_CREDENTIAL = "Meterguard-Credential"
_POSSESSION = "Meterguard-Possession"


class EstClient:
    """EST requests to ``host:port``, trusting only ``root``."""

    def __init__(self, host: str, port: int, root: Path, *, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._ctx = pinned_client_context(root)

    def __repr__(self) -> str:
        return f"EstClient({self.host}:{self.port})"

    def _request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self._ctx, timeout=self.timeout
        )
        try:
            conn.request(method, _PREFIX + path, body=body or None, headers=headers or {})
            response = conn.getresponse()
            data = response.read(64 * 1024)
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            raise TransportError(f"EST endpoint {self.host}:{self.port}: {exc}") from None
        finally:
            conn.close()
        if response.status == 403:
            raise EnrolmentError("the EST endpoint refused the request")
        if response.status == 429:
            wait = response.getheader("Retry-After") or "60"
            raise RateLimitedError(
                "the EST endpoint asks to slow down",
                retry_after=int(wait) if wait.isdigit() else 60,
            )
        if response.status != 200:
            raise TransportError(f"EST endpoint answered {response.status}")
        try:
            return base64.b64decode(data)
        except ValueError:
            raise DecodeError("the EST answer is not base64") from None

    @staticmethod
    def _certificates(der: bytes) -> list[x509.Certificate]:
        try:
            return pkcs7.load_der_pkcs7_certificates(der)
        except ValueError:
            raise DecodeError("the EST answer is not a certs-only PKCS#7") from None

    def cacerts(self) -> list[x509.Certificate]:
        """EST /cacerts."""
        return self._certificates(self._request("GET", "/cacerts"))

    def enrol(
        self, key: ec.EllipticCurvePrivateKey, factory: x509.Certificate, serial: str
    ) -> list[x509.Certificate]:
        """EST /simpleenroll with the factory certificate: [operational, device CA]."""
        return self._exchange("/simpleenroll", key, factory, serial, old_key=None)

    def renew(
        self,
        key: ec.EllipticCurvePrivateKey,
        current: x509.Certificate,
        serial: str,
        *,
        old_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> list[x509.Certificate]:
        """EST /simplereenroll; ``old_key`` is the current certificate's key if ``key`` is new."""
        return self._exchange("/simplereenroll", key, current, serial, old_key=old_key)

    def _exchange(
        self,
        path: str,
        key: ec.EllipticCurvePrivateKey,
        credential: x509.Certificate,
        serial: str,
        *,
        old_key: ec.EllipticCurvePrivateKey | None,
    ) -> list[x509.Certificate]:
        csr = build_csr(key, serial)
        headers = {
            "Content-Type": "application/pkcs10",
            "Content-Transfer-Encoding": "base64",
            _CREDENTIAL: base64.b64encode(
                credential.public_bytes(serialization.Encoding.DER)
            ).decode(),
        }
        if old_key is not None:
            headers[_POSSESSION] = base64.b64encode(possession_proof(old_key, csr)).decode()
        body = base64.b64encode(csr.public_bytes(serialization.Encoding.DER))
        certs = self._certificates(self._request("POST", path, body, headers))
        # A certs-only PKCS#7 is a SET: the leaf is the certificate of our key, first.
        mine = [c for c in certs if c.public_key() == key.public_key()]
        if len(mine) != 1:
            raise DecodeError("the EST answer is not a certificate for this meter's key")
        return mine + [c for c in certs if c is not mine[0]]


def enrol_into(client: EstClient, meter_dir: Path, serial: str) -> Path:
    """Enrol the meter in ``meter_dir`` (``tls.key``, ``factory.pem``) over EST.

    Writes ``tls.pem`` (operational certificate + device CA, 0600) and returns its path.
    """
    key = serialization.load_pem_private_key((meter_dir / "tls.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise EnrolmentError("the meter's key is not an EC key")
    factory = x509.load_pem_x509_certificate((meter_dir / "factory.pem").read_bytes())
    chain = client.enrol(key, factory, serial)
    path = meter_dir / "tls.pem"
    with atomic_file(path) as f:
        f.write(b"".join(pem(c) for c in chain))
    return path
