"""The one exception tree of meterguard, grouped by who is at fault.

Every error meterguard raises derives from :class:`MeterguardError`. The tree
separates *our* mistakes from the *peer's* and keeps "the data is bad" apart
from "the network is down" (httpx and h11 draw the same lines)::

    MeterguardError
    ├── LocalError                     we (the caller) did something wrong
    │   ├── ConfigurationError         bad settings, bad key length, unknown option
    │   ├── InvalidValueError          a value out of its type's range (also a ValueError)
    │   ├── LocalProtocolError         asked to send something illegal in this state
    │   ├── NotFoundError              no such object (or not the caller's to see)
    │   ├── ConflictError              the object's state does not allow the operation
    │   └── CounterExhaustedError      our invocation counter ran out: renew the key
    ├── RemoteError                    the peer sent something we refuse
    │   ├── DecodeError                malformed bytes: truncated, over-long, unknown tag
    │   ├── RemoteProtocolError        well-formed but illegal here (wrong state, wrong APDU)
    │   ├── AssociationRejectedError   the peer refused our association (AARE)
    │   ├── ServiceError               the peer answered with an exception or error APDU
    │   └── SecurityError              a security signal: log it as a security event
    │       ├── AuthenticationFailedError   GCM/GMAC tag (or a login step) did not verify
    │       │   └── SessionEndedError       a half-done login ended after wrong codes
    │       ├── ReplayError                 invocation counter not above the last accepted
    │       ├── UnexpectedSystemTitleError  APDU from an originator we did not expect
    │       ├── HlsFailedError              HLS pass 3/4 response did not verify
    │       ├── SignatureInvalidError       ECDSA signature did not verify
    │       ├── InsufficientProtectionError weaker protection than the policy demands
    │       ├── KeyUnwrapError              RFC 3394 unwrap failed (wrong KEK or tampered)
    │       ├── EnrolmentError              a CSR or certificate the PKI refuses
    │       ├── AccessDeniedError           a revoked, disabled or unknown identity
    │       ├── RateLimitedError            too many failures by one identity: wait
    │       ├── BudgetExceededError         a DP release would exceed a consumer's budget
    │       ├── AuditProofError             an audit log proof does not verify (rewrite, deletion)
    │       └── FirmwareRefusedError        a firmware update the meter refuses (FW-2…FW-10),
    │           ├── FirmwareIncompatibleError   another vendor, model or hw revision (FW-9)
    │           ├── FirmwareUntrustedError      not signed by the keys of the pinned root (FW-2)
    │           ├── FirmwareTamperedError       image hash, length or manifest wrong (FW-3)
    │           ├── FirmwareRollbackError       metadata older than what it trusts (FW-4)
    │           ├── FirmwareFrozenError         expired metadata: a frozen channel (FW-5)
    │           ├── FirmwareMixAndMatchError    metadata of different states mixed (FW-6)
    │           ├── FirmwareEndlessDataError    more bytes than the metadata allows (FW-7)
    │           ├── FirmwareDowngradeError      security version below the counter (FW-8)
    │           └── FirmwareHealthError         the trial boot's health check failed (FW-10)
    └── TransportError                 the network, the broker or a service is unreachable

Peers only ever see coarse errors (DLMS result codes); the detail in these
exceptions is for local logs. Messages never contain key material.

This module does not log, and it does not map foreign exceptions: adapters do
that at the edge with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDeniedError",
    "AssociationRejectedError",
    "AuditProofError",
    "AuthenticationFailedError",
    "BudgetExceededError",
    "ConfigurationError",
    "ConflictError",
    "CounterExhaustedError",
    "DecodeError",
    "EnrolmentError",
    "FirmwareDowngradeError",
    "FirmwareEndlessDataError",
    "FirmwareFrozenError",
    "FirmwareHealthError",
    "FirmwareIncompatibleError",
    "FirmwareMixAndMatchError",
    "FirmwareRefusedError",
    "FirmwareRollbackError",
    "FirmwareTamperedError",
    "FirmwareUntrustedError",
    "HlsFailedError",
    "InsufficientProtectionError",
    "InvalidValueError",
    "KeyUnwrapError",
    "LocalError",
    "LocalProtocolError",
    "MeterguardError",
    "NotFoundError",
    "RateLimitedError",
    "RemoteError",
    "RemoteProtocolError",
    "ReplayError",
    "SecurityError",
    "ServiceError",
    "SessionEndedError",
    "SignatureInvalidError",
    "TransportError",
    "UnexpectedSystemTitleError",
]


class MeterguardError(Exception):
    """Root of every error meterguard raises."""


class LocalError(MeterguardError):
    """The local side (the caller) made a mistake."""


class ConfigurationError(LocalError):
    """Settings are invalid: wrong key length, unknown suite, impossible combination."""


class InvalidValueError(LocalError, ValueError):
    """A value does not fit its type: an int8 of 300, a 7-byte OBIS code, a bad date."""


class LocalProtocolError(LocalError):
    """The caller asked for something the protocol does not allow in the current state."""


class NotFoundError(LocalError):
    """The named object (a meter, a command, a user) does not exist, or is not the caller's.

    The two look the same on purpose (API-1: another consumer's meter is no meter).
    """


class ConflictError(LocalError):
    """The object exists but its state does not allow the operation (enable a revoked meter)."""


class CounterExhaustedError(LocalError):
    """Our invocation counter reached 2**32 - 1: the key must be renewed before sending.

    Green Book: an (ST, IC) pair is never reused under one key; when the counter
    cannot advance any more the only safe move is a new key.
    """


class RemoteError(MeterguardError):
    """The peer sent something we refuse."""


class DecodeError(RemoteError):
    """Bytes that do not decode: truncated, over-long, unknown tag, bad length."""


class RemoteProtocolError(RemoteError):
    """Well-formed input that is illegal here: wrong state, unexpected APDU, bad sequence."""


class AssociationRejectedError(RemoteError):
    """The server rejected the association request (AARE result not accepted)."""

    def __init__(self, message: str, *, result: int, diagnostic: int | None) -> None:
        super().__init__(message)
        self.result = result
        self.diagnostic = diagnostic


class ServiceError(RemoteError):
    """The peer answered with an exception-response or a confirmed-service-error."""


class SecurityError(RemoteError):
    """A security signal. Callers record these as security events.

    Attributes:
        event: a stable, machine-readable event name used by audit logs and alarms.
    """

    event: ClassVar[str] = "security_violation"


class AuthenticationFailedError(SecurityError):
    """The GCM/GMAC authentication tag did not verify (tampered data or wrong key)."""

    event: ClassVar[str] = "authentication_failed"


class SessionEndedError(AuthenticationFailedError):
    """A half-done login was ended after too many wrong second-factor codes: log in again."""

    event: ClassVar[str] = "mfa_session_ended"


class ReplayError(SecurityError):
    """Attempt to lower invocation counter: a received IC is not above the last accepted one.

    DH-4 / DM-6: replayed or reordered APDUs are refused; OSGP learned this the hard way.
    """

    event: ClassVar[str] = "attempt_to_lower_invocation_counter"


class UnexpectedSystemTitleError(SecurityError):
    """An APDU came from a system title other than the one the association expects."""

    event: ClassVar[str] = "unexpected_system_title"


class HlsFailedError(SecurityError):
    """HLS pass 3 or pass 4 did not verify; the association stays unestablished."""

    event: ClassVar[str] = "hls_authentication_failed"


class SignatureInvalidError(SecurityError):
    """An ECDSA signature (HLS-7 or general-signing) did not verify."""

    event: ClassVar[str] = "signature_invalid"


class InsufficientProtectionError(SecurityError):
    """The APDU carries weaker protection than the security policy requires."""

    event: ClassVar[str] = "insufficient_protection"


class KeyUnwrapError(SecurityError):
    """RFC 3394 key unwrap failed: wrong key-encryption key or tampered wrapped key."""

    event: ClassVar[str] = "key_unwrap_failed"


class EnrolmentError(SecurityError):
    """The PKI refuses a CSR or certificate (bad signature, names, serial, revoked, expired)."""

    event: ClassVar[str] = "enrolment_refused"


class AccessDeniedError(SecurityError):
    """A message or request from an identity that is revoked, disabled or unknown (PKI-5)."""

    event: ClassVar[str] = "access_denied"


class RateLimitedError(SecurityError):
    """Too many failed attempts by one identity: refused for ``retry_after`` seconds (API-7)."""

    event: ClassVar[str] = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceededError(SecurityError):
    """A differentially private release would exceed a consumer's privacy budget."""


class AuditProofError(SecurityError):
    """An inclusion or consistency proof of the audit log does not verify (LOG-4)."""

    event: ClassVar[str] = "audit_log_inconsistent"


class FirmwareRefusedError(SecurityError):
    """A firmware update the meter refuses; ``requirement`` and ``reason`` name which check.

    The meter writes the refusal to its log book and changes nothing (no slot written, no
    counter moved).
    """

    requirement: ClassVar[str] = "FW-1"
    reason: ClassVar[str] = "refused"


class FirmwareIncompatibleError(FirmwareRefusedError):
    """The image is for another vendor, model or hardware revision (checked first)."""

    requirement = "FW-9"
    reason = "incompatible"


class FirmwareUntrustedError(FirmwareRefusedError):
    """Metadata not signed by the keys the pinned root (or its signed successors) trusts."""

    requirement = "FW-2"
    reason = "untrusted"


class FirmwareTamperedError(FirmwareRefusedError):
    """The image's length or hash is not the signed one, or its manifest disagrees with it."""

    requirement = "FW-3"
    reason = "tampered"


class FirmwareRollbackError(FirmwareRefusedError):
    """Metadata older than the meter already trusts (a rollback attack)."""

    requirement = "FW-4"
    reason = "rollback"


class FirmwareFrozenError(FirmwareRefusedError):
    """Expired metadata: the channel is frozen (or the head-end stopped re-signing)."""

    requirement = "FW-5"
    reason = "frozen"


class FirmwareMixAndMatchError(FirmwareRefusedError):
    """Metadata from different repository states combined (versions that do not agree)."""

    requirement = "FW-6"
    reason = "mix-and-match"


class FirmwareEndlessDataError(FirmwareRefusedError):
    """More bytes than the metadata allows, or a retrieval that never ends."""

    requirement = "FW-7"
    reason = "endless-data"


class FirmwareDowngradeError(FirmwareRefusedError):
    """A signed image whose security version is below the meter's monotonic counter."""

    requirement = "FW-8"
    reason = "downgrade"


class FirmwareHealthError(FirmwareRefusedError):
    """The new image failed its health check at trial boot; the meter went back."""

    requirement = "FW-10"
    reason = "health-check"


class TransportError(MeterguardError):
    """A network peer, broker or service is unreachable or dropped the connection."""
