"""Meter enrolment over EST (RFC 7030, PKI-4): the one place a certificate request is judged.

A meter exchanges its 20-year factory certificate for a 14-day operational one
(``simpleenroll``) and renews that before it expires (``simplereenroll``). The factory
certificate's usage is enrolment only, so a TLS stack refuses it as a client certificate:
this exchange therefore runs over server-authenticated TLS (the meter pins the root), and
the request carries the authenticating certificate beside the CSR. Possession of that
certificate's key is proven by the CSR's own signature (same key) or, when the meter rolls
its key, by a signature over the CSR with the old key
(:func:`~meterguard.crypto.pki.authority.possession_proof`): a copied certificate enrols
nothing.

:class:`Enrolment` parses, rate-limits per authenticating identity, asks the PKI (which holds
every rule of what may be certified), audits each certificate issued (LOG-1) and records each
refusal as a summarised security event. It answers a refusal with one generic reason — the
detail (unregistered serial, revoked, wrong CA) goes to the security event, not to the asker.
It does no IO of its own: the HTTPS edge is :mod:`meterguard.headend.api.est`.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from meterguard.crypto.pki.authority import meter_serial_from_certificate
from meterguard.errors import DecodeError, EnrolmentError, RateLimitedError
from meterguard.headend.services.records import AuditLog, SecurityEvents
from meterguard.identity import meter_id

__all__ = ["ENROL_BURST", "ENROL_RATE", "Enrolment", "Issued"]

ENROL_RATE = 1 / 60
"""Requests per second one authenticating identity may make, after its burst."""
ENROL_BURST = 5.0
MAX_TRACKED = 100_000
"""Identities whose request buckets are kept (the oldest are forgotten first)."""


class Authority(Protocol):
    """The PKI's EST side (:class:`~meterguard.crypto.pki.store.Pki`)."""

    def cacerts(self) -> list[x509.Certificate]:
        """The CA certificates a meter needs."""

    def simpleenroll(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        factory: x509.Certificate,
        now: dt.datetime,
        proof: bytes | None = None,
    ) -> x509.Certificate:
        """Factory → operational."""

    def simplereenroll(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        current: x509.Certificate,
        now: dt.datetime,
        proof: bytes | None = None,
    ) -> x509.Certificate:
        """Operational → renewed operational."""


@dataclass(frozen=True, slots=True)
class Issued:
    """An issued operational certificate and the chain the meter presents with it."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]


class Enrolment:
    """The EST service: cacerts, simpleenroll, simplereenroll."""

    def __init__(
        self,
        pki: Authority,
        events: SecurityEvents,
        audit: AuditLog,
        *,
        device_ca: x509.Certificate,
    ) -> None:
        self._pki, self._events, self._audit, self._device_ca = pki, events, audit, device_ca
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __repr__(self) -> str:
        return "Enrolment()"

    def cacerts(self) -> list[x509.Certificate]:
        """EST /cacerts."""
        return self._pki.cacerts()

    def enrol(
        self,
        csr_der: bytes,
        credential_der: bytes,
        *,
        renew: bool,
        now: float,
        proof: bytes | None = None,
        peer: str = "",
    ) -> Issued:
        """Judge one request: ``renew`` False for simpleenroll (factory), True for renewal.

        Raises:
            DecodeError: the CSR or the credential is not DER of the right kind.
            RateLimitedError: this identity asked too often.
            EnrolmentError: refused (a generic reason; the detail is in the security event).
        """
        try:
            csr = x509.load_der_x509_csr(csr_der)
            credential = x509.load_der_x509_certificate(credential_der)
        except ValueError:
            raise DecodeError("not a DER CSR and certificate") from None
        who = self._identity(credential)
        at = int(now)
        self._take(who or "?", now)
        kind = "renewal" if renew else "enrolment"
        try:
            when = dt.datetime.fromtimestamp(now, dt.UTC)
            cert = (
                self._pki.simplereenroll(csr, current=credential, now=when, proof=proof)
                if renew
                else self._pki.simpleenroll(csr, factory=credential, now=when, proof=proof)
            )
        except EnrolmentError as exc:
            self._events.security_event(
                at=at,
                event="enrolment_refused",
                detail=f"{kind} from {peer or 'unknown'}: {exc}"[:500],
                meter_id=who,
                summarise=True,
            )
            raise EnrolmentError(f"{kind} refused") from None
        self._audit.append(
            at=at,
            actor=who or "?",
            target=who or "?",
            action="certificate_issued",
            result="done",
            detail=(
                f"operational certificate {cert.serial_number:x} by {kind} (EST), valid until "
                f"{cert.not_valid_after_utc.isoformat(timespec='minutes')}"
            ),
        )
        return Issued(cert, (cert, self._device_ca))

    @staticmethod
    def _identity(credential: x509.Certificate) -> str | None:
        try:
            return meter_id(meter_serial_from_certificate(credential))
        except (EnrolmentError, ValueError):
            return None

    def _take(self, who: str, now: float) -> None:
        tokens, last = self._buckets.pop(who, (ENROL_BURST, now))
        tokens = min(ENROL_BURST, tokens + (now - last) * ENROL_RATE)
        if tokens < 1:
            self._buckets[who] = (tokens, now)
            wait = int((1 - tokens) / ENROL_RATE) + 1
            raise RateLimitedError(
                f"enrolment requests of {who[:20]} over the rate", retry_after=wait
            )
        self._buckets[who] = (tokens - 1, now)
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
