"""ACSE APDUs in BER: AARQ, AARE, RLRQ and RLRE (IEC 62056-5-3 §9.3 / ISO 8650).

Only the fields DLMS/COSEM uses are modelled; optional ACSE fields that DLMS
does not use (called/calling AE invocation ids, implementation information)
are accepted and ignored on decode. Lengths follow BER (short form below 128,
long form above), which strict peers such as dlms-cosem check (DM-13).

User information is kept as raw bytes: it holds an xDLMS InitiateRequest /
InitiateResponse, ciphered or not, which :mod:`meterguard.cosem.xdlms` and
:mod:`meterguard.cosem.security` decode. This module does no cryptography.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meterguard.cosem._codec import Reader, encode_length
from meterguard.errors import DecodeError

__all__ = [
    "AARE",
    "AARQ",
    "RLRE",
    "RLRQ",
    "AcseServiceProviderDiagnostic",
    "AcseServiceUserDiagnostic",
    "ApplicationContext",
    "AssociationResult",
    "Mechanism",
    "ReleaseRequestReason",
    "ReleaseResponseReason",
]

_OID_PREFIX_CONTEXT = bytes.fromhex("60857405080100")[:-1]  # 2.16.756.5.8.1.x
_OID_PREFIX_MECHANISM = bytes.fromhex("60857405080200")[:-1]  # 2.16.756.5.8.2.x


class ApplicationContext(enum.IntEnum):
    """Application context name, last arc of 2.16.756.5.8.1.x."""

    LN = 1
    SN = 2
    LN_CIPHERED = 3
    SN_CIPHERED = 4


class Mechanism(enum.IntEnum):
    """Authentication mechanism name, last arc of 2.16.756.5.8.2.x."""

    LOWEST = 0
    LLS = 1
    HLS_MANUFACTURER = 2
    HLS_MD5 = 3
    HLS_SHA1 = 4
    HLS_GMAC = 5
    HLS_SHA256 = 6
    HLS_ECDSA = 7


class AssociationResult(enum.IntEnum):
    """AARE result."""

    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class AcseServiceUserDiagnostic(enum.IntEnum):
    """AARE result-source-diagnostic when the source is acse-service-user [1]."""

    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AP_TITLE_NOT_RECOGNIZED = 3
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


class AcseServiceProviderDiagnostic(enum.IntEnum):
    """AARE result-source-diagnostic when the source is acse-service-provider [2]."""

    NULL = 0
    NO_REASON_GIVEN = 1
    NO_COMMON_ACSE_VERSION = 2


class ReleaseRequestReason(enum.IntEnum):
    """RLRQ reason."""

    NORMAL = 0
    URGENT = 1
    USER_DEFINED = 30


class ReleaseResponseReason(enum.IntEnum):
    """RLRE reason."""

    NORMAL = 0
    NOT_FINISHED = 1
    USER_DEFINED = 30


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(value)) + value


def _read_tlvs(r: Reader) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    while not r.at_end():
        tag = r.u8()
        if tag & 0x1F == 0x1F:
            raise DecodeError(f"multi-byte BER tags are not used by ACSE (0x{tag:02X})")
        out.append((tag, r.sized()))
    return out


def _oid_arc(value: bytes, prefix: bytes, what: str) -> int:
    r = Reader(value)
    if r.u8() != 0x06:
        raise DecodeError(f"{what}: expected an OBJECT IDENTIFIER")
    return _implicit_oid_arc(r.sized(), prefix, what)


def _implicit_oid_arc(oid: bytes, prefix: bytes, what: str) -> int:
    if len(oid) != len(prefix) + 1 or not oid.startswith(prefix):
        raise DecodeError(f"{what}: not a DLMS object identifier ({oid.hex()})")
    return oid[-1]


def _enum(cls: type[enum.IntEnum], value: int, what: str) -> enum.IntEnum:
    try:
        return cls(value)
    except ValueError:
        raise DecodeError(f"{what}: unknown value {value}") from None


def _ap_title(value: bytes, what: str) -> bytes:
    r = Reader(value)
    if r.u8() != 0x04:
        raise DecodeError(f"{what}: expected an OCTET STRING")
    title = r.sized()
    r.expect_end(what)
    return title


def _user_information(value: bytes) -> bytes:
    r = Reader(value)
    if r.u8() != 0x04:
        raise DecodeError("user-information: expected an OCTET STRING")
    data = r.sized()
    r.expect_end("user-information")
    return data


def _auth_value(value: bytes, what: str) -> bytes:
    r = Reader(value)
    if r.u8() != 0x80:
        raise DecodeError(f"{what}: only charstring [0] authentication values are supported")
    data = r.sized()
    r.expect_end(what)
    return data


def _integer(value: bytes, what: str) -> int:
    r = Reader(value)
    if r.u8() != 0x02:
        raise DecodeError(f"{what}: expected an INTEGER")
    raw = r.sized()
    r.expect_end(what)
    if not 1 <= len(raw) <= 4:
        raise DecodeError(f"{what}: bad INTEGER length {len(raw)}")
    return int.from_bytes(raw, "big", signed=True)


def _acse_requirements(value: bytes, what: str) -> bool:
    # BIT STRING {authentication(0)}: 07 80 = 7 unused bits, bit 0 set.
    if len(value) != 2:
        raise DecodeError(f"{what}: bad acse-requirements length")
    return bool(value[1] & 0x80)


_ACSE_REQ_AUTH = bytes((0x07, 0x80))


def _outer(r: Reader, expected: int, what: str) -> Reader:
    tag = r.u8()
    if tag != expected:
        raise DecodeError(f"{what}: expected tag 0x{expected:02X}, got 0x{tag:02X}")
    body = r.sized()
    r.expect_end(what)
    return Reader(body)


@dataclass(frozen=True, slots=True, kw_only=True)
class AARQ:
    """A-ASSOCIATE request (tag 0x60)."""

    TAG = 0x60

    application_context: ApplicationContext = ApplicationContext.LN
    calling_ap_title: bytes | None = None
    calling_ae_qualifier: bytes | None = None
    authentication: bool = False
    mechanism: Mechanism | None = None
    calling_authentication_value: bytes | None = None
    user_information: bytes | None = None

    def to_bytes(self) -> bytes:
        """Encode in BER."""
        parts = [_tlv(0xA1, _tlv(0x06, _OID_PREFIX_CONTEXT + bytes((self.application_context,))))]
        if self.calling_ap_title is not None:
            parts.append(_tlv(0xA6, _tlv(0x04, self.calling_ap_title)))
        if self.calling_ae_qualifier is not None:
            parts.append(_tlv(0xA7, _tlv(0x04, self.calling_ae_qualifier)))
        if self.authentication:
            parts.append(_tlv(0x8A, _ACSE_REQ_AUTH))
        if self.mechanism is not None:
            parts.append(_tlv(0x8B, _OID_PREFIX_MECHANISM + bytes((self.mechanism,))))
        if self.calling_authentication_value is not None:
            parts.append(_tlv(0xAC, _tlv(0x80, self.calling_authentication_value)))
        if self.user_information is not None:
            parts.append(_tlv(0xBE, _tlv(0x04, self.user_information)))
        return _tlv(self.TAG, b"".join(parts))

    @classmethod
    def from_bytes(cls, data: bytes) -> AARQ:
        """Decode from BER.

        Raises:
            DecodeError: malformed BER or missing application context.
        """
        body = _outer(Reader(data), cls.TAG, "AARQ")
        fields: dict[str, object] = {}
        for tag, value in _read_tlvs(body):
            if tag == 0xA1:
                arc = _oid_arc(value, _OID_PREFIX_CONTEXT, "application-context-name")
                fields["application_context"] = _enum(
                    ApplicationContext, arc, "application context"
                )
            elif tag == 0xA6:
                fields["calling_ap_title"] = _ap_title(value, "calling-AP-title")
            elif tag == 0xA7:
                fields["calling_ae_qualifier"] = _ap_title(value, "calling-AE-qualifier")
            elif tag == 0x8A:
                fields["authentication"] = _acse_requirements(value, "sender-acse-requirements")
            elif tag == 0x8B:
                arc = _implicit_oid_arc(value, _OID_PREFIX_MECHANISM, "mechanism-name")
                fields["mechanism"] = _enum(Mechanism, arc, "mechanism")
            elif tag == 0xAC:
                fields["calling_authentication_value"] = _auth_value(value, "authentication value")
            elif tag == 0xBE:
                fields["user_information"] = _user_information(value)
            elif tag in (0x80, 0xA2, 0xA3, 0xA4, 0xA5, 0xA8, 0xA9, 0xBD):
                continue  # protocol-version, called-*, invocation ids, implementation info
            else:
                raise DecodeError(f"AARQ: unexpected field tag 0x{tag:02X}")
        if "application_context" not in fields:
            raise DecodeError("AARQ: application-context-name is mandatory")
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class AARE:
    """A-ASSOCIATE response (tag 0x61)."""

    TAG = 0x61

    application_context: ApplicationContext = ApplicationContext.LN
    result: AssociationResult = AssociationResult.ACCEPTED
    diagnostic_source: int = 1
    """1 = acse-service-user, 2 = acse-service-provider."""
    diagnostic: int = 0
    responding_ap_title: bytes | None = None
    responding_ae_qualifier: bytes | None = None
    authentication: bool = False
    mechanism: Mechanism | None = None
    responding_authentication_value: bytes | None = None
    user_information: bytes | None = None

    def to_bytes(self) -> bytes:
        """Encode in BER."""
        parts = [
            _tlv(0xA1, _tlv(0x06, _OID_PREFIX_CONTEXT + bytes((self.application_context,)))),
            _tlv(0xA2, _tlv(0x02, bytes((self.result,)))),
            _tlv(0xA3, _tlv(0xA0 | self.diagnostic_source, _tlv(0x02, bytes((self.diagnostic,))))),
        ]
        if self.responding_ap_title is not None:
            parts.append(_tlv(0xA4, _tlv(0x04, self.responding_ap_title)))
        if self.responding_ae_qualifier is not None:
            parts.append(_tlv(0xA5, _tlv(0x04, self.responding_ae_qualifier)))
        if self.authentication:
            parts.append(_tlv(0x88, _ACSE_REQ_AUTH))
        if self.mechanism is not None:
            parts.append(_tlv(0x89, _OID_PREFIX_MECHANISM + bytes((self.mechanism,))))
        if self.responding_authentication_value is not None:
            parts.append(_tlv(0xAA, _tlv(0x80, self.responding_authentication_value)))
        if self.user_information is not None:
            parts.append(_tlv(0xBE, _tlv(0x04, self.user_information)))
        return _tlv(self.TAG, b"".join(parts))

    @classmethod
    def from_bytes(cls, data: bytes) -> AARE:
        """Decode from BER.

        Raises:
            DecodeError: malformed BER or a mandatory field missing.
        """
        body = _outer(Reader(data), cls.TAG, "AARE")
        fields: dict[str, object] = {}
        for tag, value in _read_tlvs(body):
            if tag == 0xA1:
                arc = _oid_arc(value, _OID_PREFIX_CONTEXT, "application-context-name")
                fields["application_context"] = _enum(
                    ApplicationContext, arc, "application context"
                )
            elif tag == 0xA2:
                fields["result"] = _enum(AssociationResult, _integer(value, "result"), "result")
            elif tag == 0xA3:
                r = Reader(value)
                source = r.u8()
                if source not in (0xA1, 0xA2):
                    raise DecodeError("result-source-diagnostic: unknown source")
                fields["diagnostic_source"] = source & 0x0F
                fields["diagnostic"] = _integer(r.sized(), "diagnostic") & 0xFF
                r.expect_end("result-source-diagnostic")
            elif tag == 0xA4:
                fields["responding_ap_title"] = _ap_title(value, "responding-AP-title")
            elif tag == 0xA5:
                fields["responding_ae_qualifier"] = _ap_title(value, "responding-AE-qualifier")
            elif tag == 0x88:
                fields["authentication"] = _acse_requirements(value, "responder-acse-requirements")
            elif tag == 0x89:
                arc = _implicit_oid_arc(value, _OID_PREFIX_MECHANISM, "mechanism-name")
                fields["mechanism"] = _enum(Mechanism, arc, "mechanism")
            elif tag == 0xAA:
                fields["responding_authentication_value"] = _auth_value(
                    value, "authentication value"
                )
            elif tag == 0xBE:
                fields["user_information"] = _user_information(value)
            elif tag in (0x80, 0xA6, 0xA7, 0xBD):
                continue
            else:
                raise DecodeError(f"AARE: unexpected field tag 0x{tag:02X}")
        for mandatory in ("application_context", "result"):
            if mandatory not in fields:
                raise DecodeError(f"AARE: {mandatory} is mandatory")
        return cls(**fields)  # type: ignore[arg-type]


def _encode_release(tag: int, reason: int | None, info: bytes | None) -> bytes:
    parts = []
    if reason is not None:
        parts.append(_tlv(0x80, bytes((reason,))))
    if info is not None:
        parts.append(_tlv(0xBE, _tlv(0x04, info)))
    return _tlv(tag, b"".join(parts))


def _decode_release(data: bytes, tag: int, what: str) -> tuple[int | None, bytes | None]:
    body = _outer(Reader(data), tag, what)
    reason: int | None = None
    info = None
    for field_tag, value in _read_tlvs(body):
        if field_tag == 0x80:
            if len(value) != 1:
                raise DecodeError(f"{what}: bad reason length")
            reason = value[0]
        elif field_tag == 0xBE:
            info = _user_information(value)
        else:
            raise DecodeError(f"{what}: unexpected field tag 0x{field_tag:02X}")
    return reason, info


@dataclass(frozen=True, slots=True, kw_only=True)
class RLRQ:
    """A-RELEASE request (tag 0x62)."""

    TAG = 0x62

    reason: ReleaseRequestReason | None = ReleaseRequestReason.NORMAL
    user_information: bytes | None = None

    def to_bytes(self) -> bytes:
        """Encode in BER."""
        return _encode_release(self.TAG, self.reason, self.user_information)

    @classmethod
    def from_bytes(cls, data: bytes) -> RLRQ:
        """Decode from BER.

        Raises:
            DecodeError: malformed BER or unknown reason.
        """
        reason, info = _decode_release(data, cls.TAG, "RLRQ")
        value = (
            None
            if reason is None
            else ReleaseRequestReason(_enum(ReleaseRequestReason, reason, "RLRQ reason"))
        )
        return cls(reason=value, user_information=info)


@dataclass(frozen=True, slots=True, kw_only=True)
class RLRE:
    """A-RELEASE response (tag 0x63)."""

    TAG = 0x63

    reason: ReleaseResponseReason | None = ReleaseResponseReason.NORMAL
    user_information: bytes | None = None

    def to_bytes(self) -> bytes:
        """Encode in BER."""
        return _encode_release(self.TAG, self.reason, self.user_information)

    @classmethod
    def from_bytes(cls, data: bytes) -> RLRE:
        """Decode from BER.

        Raises:
            DecodeError: malformed BER or unknown reason.
        """
        reason, info = _decode_release(data, cls.TAG, "RLRE")
        value = (
            None
            if reason is None
            else ReleaseResponseReason(_enum(ReleaseResponseReason, reason, "RLRE reason"))
        )
        return cls(reason=value, user_information=info)
