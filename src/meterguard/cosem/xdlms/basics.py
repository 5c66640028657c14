"""xDLMS basics: invoke-id, result enums, conformance, initiate, errors (Green Book §9.5).

Part of :mod:`meterguard.cosem.xdlms`, which re-exports it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meterguard.cosem._codec import Reader, pack_u16, pack_u32
from meterguard.crypto.keys import SecretKey
from meterguard.errors import DecodeError, InvalidValueError

__all__ = [
    "ActionResult",
    "ConfirmedServiceError",
    "Conformance",
    "DataAccessResult",
    "ExceptionResponse",
    "InitiateRequest",
    "InitiateResponse",
    "invoke_id_and_priority",
]


def invoke_id_and_priority(
    invoke_id: int, *, high_priority: bool = True, confirmed: bool = True
) -> int:
    """Build the Invoke-Id-And-Priority byte: bit 7 priority, bit 6 confirmed, bits 0-3 id."""
    if not 0 <= invoke_id <= 15:
        raise InvalidValueError("invoke id must be 0..15")
    return (0x80 if high_priority else 0) | (0x40 if confirmed else 0) | invoke_id


def _enum_of(cls: type[enum.IntEnum], value: int, what: str) -> int:
    try:
        return cls(value)
    except ValueError:
        raise DecodeError(f"{what}: unknown value {value}") from None


# ------------------------------------------------------------------ enums


class DataAccessResult(enum.IntEnum):
    """Data-Access-Result (Green Book)."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250


class ActionResult(enum.IntEnum):
    """Action-Result (Green Book)."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_ACTION_ABORTED = 15
    NO_LONG_ACTION_IN_PROGRESS = 16
    OTHER_REASON = 250


class Conformance(enum.IntFlag):
    """xDLMS conformance block: bit n of the 24-bit string is ``1 << (23 - n)``."""

    GENERAL_PROTECTION = 1 << 22
    GENERAL_BLOCK_TRANSFER = 1 << 21
    READ = 1 << 20
    WRITE = 1 << 19
    UNCONFIRMED_WRITE = 1 << 18
    DELTA_VALUE_ENCODING = 1 << 17
    ATTRIBUTE0_SUPPORTED_WITH_SET = 1 << 15
    PRIORITY_MGMT_SUPPORTED = 1 << 14
    ATTRIBUTE0_SUPPORTED_WITH_GET = 1 << 13
    BLOCK_TRANSFER_WITH_GET_OR_READ = 1 << 12
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = 1 << 11
    BLOCK_TRANSFER_WITH_ACTION = 1 << 10
    MULTIPLE_REFERENCES = 1 << 9
    INFORMATION_REPORT = 1 << 8
    DATA_NOTIFICATION = 1 << 7
    ACCESS = 1 << 6
    PARAMETERIZED_ACCESS = 1 << 5
    GET = 1 << 4
    SET = 1 << 3
    SELECTIVE_ACCESS = 1 << 2
    EVENT_NOTIFICATION = 1 << 1
    ACTION = 1 << 0

    @classmethod
    def ln_default(cls) -> Conformance:
        """What a logical-name meter typically offers (007E1F, plus general protection)."""
        return (
            cls.GENERAL_PROTECTION
            | cls.PRIORITY_MGMT_SUPPORTED
            | cls.ATTRIBUTE0_SUPPORTED_WITH_GET
            | cls.BLOCK_TRANSFER_WITH_GET_OR_READ
            | cls.BLOCK_TRANSFER_WITH_SET_OR_WRITE
            | cls.BLOCK_TRANSFER_WITH_ACTION
            | cls.MULTIPLE_REFERENCES
            | cls.DATA_NOTIFICATION
            | cls.GET
            | cls.SET
            | cls.SELECTIVE_ACCESS
            | cls.EVENT_NOTIFICATION
            | cls.ACTION
        )


_CONFORMANCE_HEADER = bytes.fromhex("5F1F0400")


def _encode_conformance(c: Conformance) -> bytes:
    return _CONFORMANCE_HEADER + int(c).to_bytes(3, "big")


def _decode_conformance(r: Reader) -> Conformance:
    if r.take(4) != _CONFORMANCE_HEADER:
        raise DecodeError("conformance block: expected 5F1F0400")
    return Conformance(int.from_bytes(r.take(3), "big") & 0xFFFFFF)


# ------------------------------------------------------------------ initiate


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiateRequest:
    """xDLMS-Initiate.request (tag 0x01), carried in the AARQ user information."""

    TAG = 0x01

    dedicated_key: SecretKey | None = None
    response_allowed: bool = True
    proposed_quality_of_service: int | None = None
    proposed_dlms_version: int = 6
    proposed_conformance: Conformance = Conformance.ln_default()
    client_max_receive_pdu_size: int = 0xFFFF

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        out = bytearray((self.TAG,))
        if self.dedicated_key is None:
            out.append(0)
        else:
            raw = self.dedicated_key.expose_secret()
            out += bytes((1, len(raw))) + raw
        # response-allowed has DEFAULT TRUE: 00 means "default" (TRUE).
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        if self.proposed_quality_of_service is None:
            out.append(0)
        else:
            out += bytes((1, self.proposed_quality_of_service & 0xFF))
        out.append(self.proposed_dlms_version)
        out += _encode_conformance(self.proposed_conformance)
        out += pack_u16(self.client_max_receive_pdu_size)
        return bytes(out)

    @classmethod
    def decode(cls, r: Reader) -> InitiateRequest:
        """Decode after the tag byte."""
        dedicated = None
        if r.u8():
            raw = r.sized()
            if len(raw) not in (16, 32):
                raise DecodeError(f"dedicated key must be 16 or 32 bytes, got {len(raw)}")
            dedicated = SecretKey(raw)
        response_allowed = True
        if r.u8():
            response_allowed = r.u8() != 0
        qos = r.i8() if r.u8() else None
        version = r.u8()
        conformance = _decode_conformance(r)
        max_pdu = r.u16()
        return cls(
            dedicated_key=dedicated,
            response_allowed=response_allowed,
            proposed_quality_of_service=qos,
            proposed_dlms_version=version,
            proposed_conformance=conformance,
            client_max_receive_pdu_size=max_pdu,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiateResponse:
    """xDLMS-Initiate.response (tag 0x08), carried in the AARE user information."""

    TAG = 0x08

    negotiated_quality_of_service: int | None = None
    negotiated_dlms_version: int = 6
    negotiated_conformance: Conformance = Conformance.ln_default()
    server_max_receive_pdu_size: int = 1024
    vaa_name: int = 0x0007

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        out = bytearray((self.TAG,))
        if self.negotiated_quality_of_service is None:
            out.append(0)
        else:
            out += bytes((1, self.negotiated_quality_of_service & 0xFF))
        out.append(self.negotiated_dlms_version)
        out += _encode_conformance(self.negotiated_conformance)
        out += pack_u16(self.server_max_receive_pdu_size)
        out += pack_u16(self.vaa_name)
        return bytes(out)

    @classmethod
    def decode(cls, r: Reader) -> InitiateResponse:
        """Decode after the tag byte."""
        qos = r.i8() if r.u8() else None
        version = r.u8()
        conformance = _decode_conformance(r)
        max_pdu = r.u16()
        vaa = r.u16()
        return cls(
            negotiated_quality_of_service=qos,
            negotiated_dlms_version=version,
            negotiated_conformance=conformance,
            server_max_receive_pdu_size=max_pdu,
            vaa_name=vaa,
        )


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError:
    """confirmed-service-error (tag 0x0E): which service failed, error kind and value."""

    TAG = 0x0E

    service: int
    """ConfirmedServiceError CHOICE: 1 initiateError, 2 getStatus, ..., 5 read, 6 write."""
    error_type: int
    """ServiceError CHOICE: 0 application-reference ... 6 initiate ... 10 other."""
    value: int

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.service, self.error_type, self.value))

    @classmethod
    def decode(cls, r: Reader) -> ConfirmedServiceError:
        """Decode after the tag byte."""
        service, error_type, value = r.u8(), r.u8(), r.u8()
        if not 1 <= service <= 12 or error_type > 10:
            raise DecodeError("confirmed-service-error: unknown choice")
        return cls(service, error_type, value)


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """exception-response (tag 0xD8)."""

    TAG = 0xD8

    state_error: int
    """1 service-not-allowed, 2 service-unknown."""
    service_error: int
    """1 operation-not-possible, 2 service-not-supported, 3 other-reason, 4 pdu-too-long,
    5 deciphering-error, 6 invocation-counter-error."""
    invocation_counter: int | None = None

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        out = bytes((self.TAG, self.state_error, self.service_error))
        if self.service_error == 6:
            out += pack_u32(self.invocation_counter or 0)
        return out

    @classmethod
    def decode(cls, r: Reader) -> ExceptionResponse:
        """Decode after the tag byte."""
        state, service = r.u8(), r.u8()
        if state not in (1, 2) or not 1 <= service <= 6:
            raise DecodeError("exception-response: unknown error code")
        ic = r.u32() if service == 6 else None
        return cls(state, service, ic)
