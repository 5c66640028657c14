"""Plain xDLMS APDUs (Green Book §9.5, A-XDR): initiate, GET, SET, ACTION, notifications, errors.

Every APDU is a frozen dataclass with ``to_bytes()``; :func:`decode_xdlms` turns
bytes into the right class and raises only
:class:`~meterguard.errors.DecodeError`. Ciphered wrappers (glo/ded/general)
live in :mod:`meterguard.cosem.security`; :mod:`meterguard.cosem.apdu`
dispatches over both.

Service variants: GET normal/next/with-list and responses normal/with-datablock/
with-list; SET normal/with-first-datablock/with-datablock/with-list/
with-list-and-first-datablock and every response; ACTION normal/next-pblock/
with-list/with-first-pblock/with-list-and-first-pblock/with-pblock and every
response; DataNotification, EventNotification, ExceptionResponse,
ConfirmedServiceError; range and entry selective-access descriptors.

This module does not decide what a request means; the association and the
object model do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from meterguard.cosem._codec import Reader, encode_length, pack_u16, pack_u32
from meterguard.cosem.axdr import (
    Array,
    Data,
    DoubleLongUnsigned,
    Integer,
    LongUnsigned,
    OctetString,
    Structure,
    decode_data,
    encode_data,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.obis import Obis
from meterguard.crypto.keys import SecretKey
from meterguard.errors import DecodeError, InvalidValueError

__all__ = [
    "ActionRequest",
    "ActionRequestNextPblock",
    "ActionRequestNormal",
    "ActionRequestWithFirstPblock",
    "ActionRequestWithList",
    "ActionRequestWithListAndFirstPblock",
    "ActionRequestWithPblock",
    "ActionResponse",
    "ActionResponseNextPblock",
    "ActionResponseNormal",
    "ActionResponseWithList",
    "ActionResponseWithPblock",
    "ActionResult",
    "ActionReturn",
    "AttributeDescriptor",
    "AttributeWithSelection",
    "CaptureObject",
    "ConfirmedServiceError",
    "Conformance",
    "DataAccessResult",
    "DataBlockG",
    "DataBlockSA",
    "DataNotification",
    "EntryDescriptor",
    "EventNotification",
    "ExceptionResponse",
    "GetRequest",
    "GetRequestNext",
    "GetRequestNormal",
    "GetRequestWithList",
    "GetResponse",
    "GetResponseNormal",
    "GetResponseWithDataBlock",
    "GetResponseWithList",
    "GetResult",
    "InitiateRequest",
    "InitiateResponse",
    "MethodDescriptor",
    "RangeDescriptor",
    "SelectiveAccess",
    "SetRequest",
    "SetRequestNormal",
    "SetRequestWithDataBlock",
    "SetRequestWithFirstDataBlock",
    "SetRequestWithList",
    "SetRequestWithListAndFirstDataBlock",
    "SetResponse",
    "SetResponseDataBlock",
    "SetResponseLastDataBlock",
    "SetResponseLastDataBlockWithList",
    "SetResponseNormal",
    "SetResponseWithList",
    "XdlmsApdu",
    "decode_xdlms",
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


# ------------------------------------------------------------------ descriptors


@dataclass(frozen=True, slots=True)
class AttributeDescriptor:
    """Cosem-Attribute-Descriptor: class id, logical name, attribute id."""

    class_id: int
    instance: Obis
    attribute: int

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return pack_u16(self.class_id) + self.instance.to_bytes() + bytes((self.attribute & 0xFF,))

    @classmethod
    def decode(cls, r: Reader) -> AttributeDescriptor:
        """Decode from the reader."""
        return cls(r.u16(), Obis.from_bytes(r.take(6)), r.i8())

    def __str__(self) -> str:
        return f"class {self.class_id} {self.instance} attr {self.attribute}"


@dataclass(frozen=True, slots=True)
class MethodDescriptor:
    """Cosem-Method-Descriptor: class id, logical name, method id."""

    class_id: int
    instance: Obis
    method: int

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return pack_u16(self.class_id) + self.instance.to_bytes() + bytes((self.method & 0xFF,))

    @classmethod
    def decode(cls, r: Reader) -> MethodDescriptor:
        """Decode from the reader."""
        return cls(r.u16(), Obis.from_bytes(r.take(6)), r.i8())

    def __str__(self) -> str:
        return f"class {self.class_id} {self.instance} method {self.method}"


@dataclass(frozen=True, slots=True)
class SelectiveAccess:
    """Selective-Access-Descriptor: selector and its parameters."""

    selector: int
    parameters: Data


@dataclass(frozen=True, slots=True)
class AttributeWithSelection:
    """Cosem-Attribute-Descriptor with an optional selective access."""

    descriptor: AttributeDescriptor
    access: SelectiveAccess | None = None

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return self.descriptor.to_bytes() + _encode_access(self.access)

    @classmethod
    def decode(cls, r: Reader) -> AttributeWithSelection:
        """Decode from the reader."""
        return cls(AttributeDescriptor.decode(r), _decode_access(r))


def _encode_access(a: SelectiveAccess | None) -> bytes:
    if a is None:
        return b"\x00"
    return bytes((1, a.selector)) + encode_data(a.parameters)


def _decode_access(r: Reader) -> SelectiveAccess | None:
    if not r.u8():
        return None
    return SelectiveAccess(r.u8(), decode_data(r))


@dataclass(frozen=True, slots=True)
class CaptureObject:
    """A capture object definition: class, logical name, attribute and data index."""

    class_id: int
    instance: Obis
    attribute: int
    data_index: int = 0

    def to_data(self) -> Structure:
        """Encode as the COSEM structure used in profile generic attribute 3."""
        return Structure(
            (
                LongUnsigned(self.class_id),
                OctetString(self.instance.to_bytes()),
                Integer(self.attribute),
                LongUnsigned(self.data_index),
            )
        )

    @classmethod
    def from_data(cls, d: Data) -> CaptureObject:
        """Decode from the COSEM structure.

        Raises:
            DecodeError: not a capture object definition.
        """
        if not isinstance(d, Structure) or len(d.items) != 4:
            raise DecodeError("capture object must be a structure of 4")
        c, o, a, i = d.items
        if not (
            isinstance(c, LongUnsigned)
            and isinstance(o, OctetString)
            and isinstance(a, Integer)
            and isinstance(i, LongUnsigned)
        ):
            raise DecodeError("capture object fields have the wrong types")
        return cls(c.value, Obis.from_bytes(o.value), a.value, i.value)


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    """Profile generic selective access by range (selector 1)."""

    restricting_object: CaptureObject
    from_value: Data
    to_value: Data
    selected_values: tuple[CaptureObject, ...] = ()

    SELECTOR = 1

    def to_access(self) -> SelectiveAccess:
        """Wrap as a selective access descriptor."""
        return SelectiveAccess(
            self.SELECTOR,
            Structure(
                (
                    self.restricting_object.to_data(),
                    self.from_value,
                    self.to_value,
                    Array(tuple(c.to_data() for c in self.selected_values)),
                )
            ),
        )

    @classmethod
    def from_access(cls, access: SelectiveAccess) -> RangeDescriptor:
        """Parse selector 1 parameters.

        Raises:
            DecodeError: parameters do not form a range descriptor.
        """
        p = access.parameters
        if access.selector != cls.SELECTOR or not isinstance(p, Structure) or len(p.items) != 4:
            raise DecodeError("range descriptor must be selector 1 with a structure of 4")
        restricting, lo, hi, selected = p.items
        if not isinstance(selected, Array):
            raise DecodeError("range descriptor selected values must be an array")
        return cls(
            CaptureObject.from_data(restricting),
            lo,
            hi,
            tuple(CaptureObject.from_data(s) for s in selected.items),
        )


@dataclass(frozen=True, slots=True)
class EntryDescriptor:
    """Profile generic selective access by entry (selector 2); entries and columns from 1."""

    from_entry: int = 1
    to_entry: int = 0
    """0 means "to the last entry"."""
    from_selected_value: int = 1
    to_selected_value: int = 0
    """0 means "to the last column"."""

    SELECTOR = 2

    def to_access(self) -> SelectiveAccess:
        """Wrap as a selective access descriptor."""
        return SelectiveAccess(
            self.SELECTOR,
            Structure(
                (
                    DoubleLongUnsigned(self.from_entry),
                    DoubleLongUnsigned(self.to_entry),
                    LongUnsigned(self.from_selected_value),
                    LongUnsigned(self.to_selected_value),
                )
            ),
        )

    @classmethod
    def from_access(cls, access: SelectiveAccess) -> EntryDescriptor:
        """Parse selector 2 parameters.

        Raises:
            DecodeError: parameters do not form an entry descriptor.
        """
        p = access.parameters
        if access.selector != cls.SELECTOR or not isinstance(p, Structure) or len(p.items) != 4:
            raise DecodeError("entry descriptor must be selector 2 with a structure of 4")
        a, b, c, d = p.items
        if not (
            isinstance(a, DoubleLongUnsigned)
            and isinstance(b, DoubleLongUnsigned)
            and isinstance(c, LongUnsigned)
            and isinstance(d, LongUnsigned)
        ):
            raise DecodeError("entry descriptor fields have the wrong types")
        return cls(a.value, b.value, c.value, d.value)


# ------------------------------------------------------------------ data blocks


@dataclass(frozen=True, slots=True)
class DataBlockG:
    """DataBlock-G of GET responses: last flag, block number, raw data or an error."""

    last_block: bool
    block_number: int
    raw_data: bytes | None = None
    error: DataAccessResult | None = None

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        head = bytes((1 if self.last_block else 0,)) + pack_u32(self.block_number)
        if self.error is not None:
            return head + bytes((1, self.error))
        return head + b"\x00" + encode_length(len(self.raw_data or b"")) + (self.raw_data or b"")

    @classmethod
    def decode(cls, r: Reader) -> DataBlockG:
        """Decode from the reader."""
        last = r.u8() != 0
        number = r.u32()
        choice = r.u8()
        if choice == 0:
            return cls(last, number, raw_data=r.sized())
        if choice == 1:
            err = DataAccessResult(_enum_of(DataAccessResult, r.u8(), "data-access-result"))
            return cls(last, number, error=err)
        raise DecodeError(f"DataBlock-G: unknown result choice {choice}")


@dataclass(frozen=True, slots=True)
class DataBlockSA:
    """DataBlock-SA of SET and ACTION: last flag, block number, raw data."""

    last_block: bool
    block_number: int
    raw_data: bytes

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((1 if self.last_block else 0,))
            + pack_u32(self.block_number)
            + encode_length(len(self.raw_data))
            + self.raw_data
        )

    @classmethod
    def decode(cls, r: Reader) -> DataBlockSA:
        """Decode from the reader."""
        return cls(r.u8() != 0, r.u32(), r.sized())


@dataclass(frozen=True, slots=True)
class _BlockNumber:
    """Shape of the APDUs that carry only a block number: invoke ‖ block-number (u32)."""

    TAG: ClassVar[int]
    CHOICE: ClassVar[int]

    invoke_id_and_priority: int
    block_number: int

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + pack_u32(
            self.block_number
        )


@dataclass(frozen=True, slots=True)
class _BlockSA:
    """Shape of the APDUs that carry one DataBlock-SA: invoke ‖ block."""

    TAG: ClassVar[int]
    CHOICE: ClassVar[int]

    invoke_id_and_priority: int
    block: DataBlockSA

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + self.block.to_bytes()


GetResult: TypeAlias = Data | DataAccessResult
"""Get-Data-Result: the data, or why there is none."""


def _encode_get_result(res: GetResult) -> bytes:
    if isinstance(res, DataAccessResult):
        return bytes((1, res))
    return b"\x00" + encode_data(res)


def _decode_get_result(r: Reader) -> GetResult:
    choice = r.u8()
    if choice == 0:
        return decode_data(r)
    if choice == 1:
        return DataAccessResult(_enum_of(DataAccessResult, r.u8(), "data-access-result"))
    raise DecodeError(f"Get-Data-Result: unknown choice {choice}")


def encode_get_results(results: tuple[GetResult, ...]) -> bytes:
    """Encode a SEQUENCE OF Get-Data-Result (the body of get-response-with-list)."""
    return encode_length(len(results)) + b"".join(_encode_get_result(x) for x in results)


def decode_get_results(r: Reader) -> tuple[GetResult, ...]:
    """Decode a SEQUENCE OF Get-Data-Result."""
    return tuple(_decode_get_result(r) for _ in range(r.count(2)))


# ------------------------------------------------------------------ GET


@dataclass(frozen=True, slots=True)
class GetRequestNormal:
    """get-request-normal (C0 01)."""

    TAG = 0xC0
    CHOICE = 1

    invoke_id_and_priority: int
    attribute: AttributeWithSelection

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + self.attribute.to_bytes()
        )


@dataclass(frozen=True, slots=True)
class GetRequestNext(_BlockNumber):
    """get-request-next (C0 02): ask for the block after ``block_number``."""

    TAG = 0xC0
    CHOICE = 2


@dataclass(frozen=True, slots=True)
class GetRequestWithList:
    """get-request-with-list (C0 03)."""

    TAG = 0xC0
    CHOICE = 3

    invoke_id_and_priority: int
    attributes: tuple[AttributeWithSelection, ...]

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + encode_length(len(self.attributes))
            + b"".join(a.to_bytes() for a in self.attributes)
        )


GetRequest: TypeAlias = GetRequestNormal | GetRequestNext | GetRequestWithList


@dataclass(frozen=True, slots=True)
class GetResponseNormal:
    """get-response-normal (C4 01)."""

    TAG = 0xC4
    CHOICE = 1

    invoke_id_and_priority: int
    result: GetResult

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + _encode_get_result(
            self.result
        )


@dataclass(frozen=True, slots=True)
class GetResponseWithDataBlock:
    """get-response-with-datablock (C4 02)."""

    TAG = 0xC4
    CHOICE = 2

    invoke_id_and_priority: int
    block: DataBlockG

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + self.block.to_bytes()


@dataclass(frozen=True, slots=True)
class GetResponseWithList:
    """get-response-with-list (C4 03)."""

    TAG = 0xC4
    CHOICE = 3

    invoke_id_and_priority: int
    results: tuple[GetResult, ...]

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + encode_get_results(
            self.results
        )


GetResponse: TypeAlias = GetResponseNormal | GetResponseWithDataBlock | GetResponseWithList


# ------------------------------------------------------------------ SET


@dataclass(frozen=True, slots=True)
class SetRequestNormal:
    """set-request-normal (C1 01)."""

    TAG = 0xC1
    CHOICE = 1

    invoke_id_and_priority: int
    attribute: AttributeWithSelection
    value: Data

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + self.attribute.to_bytes()
            + encode_data(self.value)
        )


@dataclass(frozen=True, slots=True)
class SetRequestWithFirstDataBlock:
    """set-request-with-first-datablock (C1 02)."""

    TAG = 0xC1
    CHOICE = 2

    invoke_id_and_priority: int
    attribute: AttributeWithSelection
    block: DataBlockSA

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + self.attribute.to_bytes()
            + self.block.to_bytes()
        )


@dataclass(frozen=True, slots=True)
class SetRequestWithDataBlock(_BlockSA):
    """set-request-with-datablock (C1 03)."""

    TAG = 0xC1
    CHOICE = 3


@dataclass(frozen=True, slots=True)
class SetRequestWithList:
    """set-request-with-list (C1 04)."""

    TAG = 0xC1
    CHOICE = 4

    invoke_id_and_priority: int
    attributes: tuple[AttributeWithSelection, ...]
    values: tuple[Data, ...]

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + encode_length(len(self.attributes))
            + b"".join(a.to_bytes() for a in self.attributes)
            + encode_length(len(self.values))
            + b"".join(encode_data(v) for v in self.values)
        )


@dataclass(frozen=True, slots=True)
class SetRequestWithListAndFirstDataBlock:
    """set-request-with-list-and-first-datablock (C1 05)."""

    TAG = 0xC1
    CHOICE = 5

    invoke_id_and_priority: int
    attributes: tuple[AttributeWithSelection, ...]
    block: DataBlockSA

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + encode_length(len(self.attributes))
            + b"".join(a.to_bytes() for a in self.attributes)
            + self.block.to_bytes()
        )


SetRequest: TypeAlias = (
    SetRequestNormal
    | SetRequestWithFirstDataBlock
    | SetRequestWithDataBlock
    | SetRequestWithList
    | SetRequestWithListAndFirstDataBlock
)


def _results(rs: tuple[DataAccessResult, ...]) -> bytes:
    return encode_length(len(rs)) + bytes(rs)


def _decode_results(r: Reader) -> tuple[DataAccessResult, ...]:
    return tuple(
        DataAccessResult(_enum_of(DataAccessResult, r.u8(), "data-access-result"))
        for _ in range(r.count(1))
    )


@dataclass(frozen=True, slots=True)
class SetResponseNormal:
    """set-response-normal (C5 01)."""

    TAG = 0xC5
    CHOICE = 1

    invoke_id_and_priority: int
    result: DataAccessResult

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority, self.result))


@dataclass(frozen=True, slots=True)
class SetResponseDataBlock(_BlockNumber):
    """set-response-datablock (C5 02): block ``block_number`` received."""

    TAG = 0xC5
    CHOICE = 2


@dataclass(frozen=True, slots=True)
class SetResponseLastDataBlock:
    """set-response-last-datablock (C5 03)."""

    TAG = 0xC5
    CHOICE = 3

    invoke_id_and_priority: int
    result: DataAccessResult
    block_number: int

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority, self.result)) + pack_u32(
            self.block_number
        )


@dataclass(frozen=True, slots=True)
class SetResponseLastDataBlockWithList:
    """set-response-last-datablock-with-list (C5 04)."""

    TAG = 0xC5
    CHOICE = 4

    invoke_id_and_priority: int
    results: tuple[DataAccessResult, ...]
    block_number: int

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + _results(self.results)
            + pack_u32(self.block_number)
        )


@dataclass(frozen=True, slots=True)
class SetResponseWithList:
    """set-response-with-list (C5 05)."""

    TAG = 0xC5
    CHOICE = 5

    invoke_id_and_priority: int
    results: tuple[DataAccessResult, ...]

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + _results(self.results)


SetResponse: TypeAlias = (
    SetResponseNormal
    | SetResponseDataBlock
    | SetResponseLastDataBlock
    | SetResponseLastDataBlockWithList
    | SetResponseWithList
)


# ------------------------------------------------------------------ ACTION


def _encode_optional_data(d: Data | None) -> bytes:
    return b"\x00" if d is None else b"\x01" + encode_data(d)


def _decode_optional_data(r: Reader) -> Data | None:
    return decode_data(r) if r.u8() else None


@dataclass(frozen=True, slots=True)
class ActionRequestNormal:
    """action-request-normal (C3 01)."""

    TAG = 0xC3
    CHOICE = 1

    invoke_id_and_priority: int
    method: MethodDescriptor
    parameters: Data | None = None

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + self.method.to_bytes()
            + _encode_optional_data(self.parameters)
        )


@dataclass(frozen=True, slots=True)
class ActionRequestNextPblock(_BlockNumber):
    """action-request-next-pblock (C3 02)."""

    TAG = 0xC3
    CHOICE = 2


@dataclass(frozen=True, slots=True)
class ActionRequestWithList:
    """action-request-with-list (C3 03)."""

    TAG = 0xC3
    CHOICE = 3

    invoke_id_and_priority: int
    methods: tuple[MethodDescriptor, ...]
    parameters: tuple[Data, ...]

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + encode_length(len(self.methods))
            + b"".join(m.to_bytes() for m in self.methods)
            + encode_length(len(self.parameters))
            + b"".join(encode_data(p) for p in self.parameters)
        )


@dataclass(frozen=True, slots=True)
class ActionRequestWithFirstPblock:
    """action-request-with-first-pblock (C3 04)."""

    TAG = 0xC3
    CHOICE = 4

    invoke_id_and_priority: int
    method: MethodDescriptor
    block: DataBlockSA

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + self.method.to_bytes()
            + self.block.to_bytes()
        )


@dataclass(frozen=True, slots=True)
class ActionRequestWithListAndFirstPblock:
    """action-request-with-list-and-first-pblock (C3 05)."""

    TAG = 0xC3
    CHOICE = 5

    invoke_id_and_priority: int
    methods: tuple[MethodDescriptor, ...]
    block: DataBlockSA

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + encode_length(len(self.methods))
            + b"".join(m.to_bytes() for m in self.methods)
            + self.block.to_bytes()
        )


@dataclass(frozen=True, slots=True)
class ActionRequestWithPblock(_BlockSA):
    """action-request-with-pblock (C3 06)."""

    TAG = 0xC3
    CHOICE = 6


ActionRequest: TypeAlias = (
    ActionRequestNormal
    | ActionRequestNextPblock
    | ActionRequestWithList
    | ActionRequestWithFirstPblock
    | ActionRequestWithListAndFirstPblock
    | ActionRequestWithPblock
)


@dataclass(frozen=True, slots=True)
class ActionReturn:
    """Action-Response-With-Optional-Data: result and optional return parameters."""

    result: ActionResult
    return_parameters: GetResult | None = None

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        out = bytes((self.result,))
        if self.return_parameters is None:
            return out + b"\x00"
        return out + b"\x01" + _encode_get_result(self.return_parameters)

    @classmethod
    def decode(cls, r: Reader) -> ActionReturn:
        """Decode from the reader."""
        result = ActionResult(_enum_of(ActionResult, r.u8(), "action-result"))
        ret = _decode_get_result(r) if r.u8() else None
        return cls(result, ret)


@dataclass(frozen=True, slots=True)
class ActionResponseNormal:
    """action-response-normal (C7 01)."""

    TAG = 0xC7
    CHOICE = 1

    invoke_id_and_priority: int
    response: ActionReturn

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority)) + self.response.to_bytes()
        )


@dataclass(frozen=True, slots=True)
class ActionResponseWithPblock(_BlockSA):
    """action-response-with-pblock (C7 02)."""

    TAG = 0xC7
    CHOICE = 2


@dataclass(frozen=True, slots=True)
class ActionResponseWithList:
    """action-response-with-list (C7 03)."""

    TAG = 0xC7
    CHOICE = 3

    invoke_id_and_priority: int
    responses: tuple[ActionReturn, ...]

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        return (
            bytes((self.TAG, self.CHOICE, self.invoke_id_and_priority))
            + encode_length(len(self.responses))
            + b"".join(x.to_bytes() for x in self.responses)
        )


@dataclass(frozen=True, slots=True)
class ActionResponseNextPblock(_BlockNumber):
    """action-response-next-pblock (C7 04)."""

    TAG = 0xC7
    CHOICE = 4


ActionResponse: TypeAlias = (
    ActionResponseNormal
    | ActionResponseWithPblock
    | ActionResponseWithList
    | ActionResponseNextPblock
)


# ------------------------------------------------------------------ notifications


@dataclass(frozen=True, slots=True)
class DataNotification:
    """data-notification (0x0F): push of a Data body with an optional date-time."""

    TAG = 0x0F

    long_invoke_id_and_priority: int
    date_time: CosemDateTime | None
    body: Data

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        stamp = b"\x00" if self.date_time is None else b"\x0c" + self.date_time.to_bytes()
        return (
            bytes((self.TAG,))
            + pack_u32(self.long_invoke_id_and_priority)
            + stamp
            + encode_data(self.body)
        )

    @classmethod
    def decode(cls, r: Reader) -> DataNotification:
        """Decode after the tag byte."""
        invoke = r.u32()
        raw = r.sized()
        if raw and len(raw) != 12:
            raise DecodeError(f"data-notification date-time must be 0 or 12 bytes, got {len(raw)}")
        stamp = CosemDateTime.from_bytes(raw) if raw else None
        return cls(invoke, stamp, decode_data(r))


@dataclass(frozen=True, slots=True)
class EventNotification:
    """event-notification-request (0xC2): an attribute value pushed by the server."""

    TAG = 0xC2

    time: CosemDateTime | None
    attribute: AttributeDescriptor
    value: Data

    def to_bytes(self) -> bytes:
        """Encode in A-XDR."""
        stamp = b"\x00" if self.time is None else b"\x01\x0c" + self.time.to_bytes()
        return bytes((self.TAG,)) + stamp + self.attribute.to_bytes() + encode_data(self.value)

    @classmethod
    def decode(cls, r: Reader) -> EventNotification:
        """Decode after the tag byte."""
        stamp = None
        if r.u8():
            raw = r.sized()
            stamp = CosemDateTime.from_bytes(raw)
        return cls(stamp, AttributeDescriptor.decode(r), decode_data(r))


XdlmsApdu: TypeAlias = (
    InitiateRequest
    | InitiateResponse
    | ConfirmedServiceError
    | ExceptionResponse
    | GetRequest
    | GetResponse
    | SetRequest
    | SetResponse
    | ActionRequest
    | ActionResponse
    | DataNotification
    | EventNotification
)


# ------------------------------------------------------------------ decoding


def _decode_get_request(choice: int, inv: int, r: Reader) -> GetRequest:
    if choice == 1:
        return GetRequestNormal(inv, AttributeWithSelection.decode(r))
    if choice == 2:
        return GetRequestNext(inv, r.u32())
    if choice == 3:
        return GetRequestWithList(
            inv, tuple(AttributeWithSelection.decode(r) for _ in range(r.count(10)))
        )
    raise DecodeError(f"get-request: unknown choice {choice}")


def _decode_get_response(choice: int, inv: int, r: Reader) -> GetResponse:
    if choice == 1:
        return GetResponseNormal(inv, _decode_get_result(r))
    if choice == 2:
        return GetResponseWithDataBlock(inv, DataBlockG.decode(r))
    if choice == 3:
        return GetResponseWithList(inv, decode_get_results(r))
    raise DecodeError(f"get-response: unknown choice {choice}")


def _decode_set_request(choice: int, inv: int, r: Reader) -> SetRequest:
    if choice == 1:
        return SetRequestNormal(inv, AttributeWithSelection.decode(r), decode_data(r))
    if choice == 2:
        return SetRequestWithFirstDataBlock(
            inv, AttributeWithSelection.decode(r), DataBlockSA.decode(r)
        )
    if choice == 3:
        return SetRequestWithDataBlock(inv, DataBlockSA.decode(r))
    if choice == 4:
        attrs = tuple(AttributeWithSelection.decode(r) for _ in range(r.count(10)))
        values = tuple(decode_data(r) for _ in range(r.count(1)))
        return SetRequestWithList(inv, attrs, values)
    if choice == 5:
        attrs = tuple(AttributeWithSelection.decode(r) for _ in range(r.count(10)))
        return SetRequestWithListAndFirstDataBlock(inv, attrs, DataBlockSA.decode(r))
    raise DecodeError(f"set-request: unknown choice {choice}")


def _decode_set_response(choice: int, inv: int, r: Reader) -> SetResponse:
    if choice == 1:
        return SetResponseNormal(
            inv, DataAccessResult(_enum_of(DataAccessResult, r.u8(), "result"))
        )
    if choice == 2:
        return SetResponseDataBlock(inv, r.u32())
    if choice == 3:
        res = DataAccessResult(_enum_of(DataAccessResult, r.u8(), "result"))
        return SetResponseLastDataBlock(inv, res, r.u32())
    if choice == 4:
        return SetResponseLastDataBlockWithList(inv, _decode_results(r), r.u32())
    if choice == 5:
        return SetResponseWithList(inv, _decode_results(r))
    raise DecodeError(f"set-response: unknown choice {choice}")


def _decode_action_request(choice: int, inv: int, r: Reader) -> ActionRequest:
    if choice == 1:
        return ActionRequestNormal(inv, MethodDescriptor.decode(r), _decode_optional_data(r))
    if choice == 2:
        return ActionRequestNextPblock(inv, r.u32())
    if choice == 3:
        methods = tuple(MethodDescriptor.decode(r) for _ in range(r.count(9)))
        params = tuple(decode_data(r) for _ in range(r.count(1)))
        return ActionRequestWithList(inv, methods, params)
    if choice == 4:
        return ActionRequestWithFirstPblock(inv, MethodDescriptor.decode(r), DataBlockSA.decode(r))
    if choice == 5:
        methods = tuple(MethodDescriptor.decode(r) for _ in range(r.count(9)))
        return ActionRequestWithListAndFirstPblock(inv, methods, DataBlockSA.decode(r))
    if choice == 6:
        return ActionRequestWithPblock(inv, DataBlockSA.decode(r))
    raise DecodeError(f"action-request: unknown choice {choice}")


def _decode_action_response(choice: int, inv: int, r: Reader) -> ActionResponse:
    if choice == 1:
        return ActionResponseNormal(inv, ActionReturn.decode(r))
    if choice == 2:
        return ActionResponseWithPblock(inv, DataBlockSA.decode(r))
    if choice == 3:
        return ActionResponseWithList(inv, tuple(ActionReturn.decode(r) for _ in range(r.count(2))))
    if choice == 4:
        return ActionResponseNextPblock(inv, r.u32())
    raise DecodeError(f"action-response: unknown choice {choice}")


_SERVICE_DECODERS = {
    0xC0: _decode_get_request,
    0xC4: _decode_get_response,
    0xC1: _decode_set_request,
    0xC5: _decode_set_response,
    0xC3: _decode_action_request,
    0xC7: _decode_action_response,
}

XDLMS_TAGS = frozenset({0x01, 0x08, 0x0E, 0xD8, 0x0F, 0xC2, *_SERVICE_DECODERS})


def decode_xdlms(data: bytes) -> XdlmsApdu:
    """Decode one plain xDLMS APDU; the whole input must be consumed.

    Raises:
        DecodeError: unknown tag, malformed or truncated input, trailing bytes.
    """
    r = Reader(data)
    tag = r.u8()
    apdu: XdlmsApdu
    service = _SERVICE_DECODERS.get(tag)
    if service is not None:
        choice = r.u8()
        inv = r.u8()
        apdu = service(choice, inv, r)
    elif tag == InitiateRequest.TAG:
        apdu = InitiateRequest.decode(r)
    elif tag == InitiateResponse.TAG:
        apdu = InitiateResponse.decode(r)
    elif tag == ConfirmedServiceError.TAG:
        apdu = ConfirmedServiceError.decode(r)
    elif tag == ExceptionResponse.TAG:
        apdu = ExceptionResponse.decode(r)
    elif tag == DataNotification.TAG:
        apdu = DataNotification.decode(r)
    elif tag == EventNotification.TAG:
        apdu = EventNotification.decode(r)
    else:
        raise DecodeError(f"unknown xDLMS APDU tag 0x{tag:02X}")
    r.expect_end(type(apdu).__name__)
    return apdu
