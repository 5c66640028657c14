"""ACTION requests and responses, and the data and event notifications.

Part of :mod:`meterguard.cosem.xdlms`, which re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from meterguard.cosem._codec import Reader, encode_length, pack_u32
from meterguard.cosem.axdr import (
    Data,
    decode_data,
    encode_data,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.xdlms.basics import (
    ActionResult,
    ConfirmedServiceError,
    ExceptionResponse,
    InitiateRequest,
    InitiateResponse,
    _enum_of,
)
from meterguard.cosem.xdlms.descriptors import (
    AttributeDescriptor,
    DataBlockSA,
    GetResult,
    MethodDescriptor,
    _BlockNumber,
    _BlockSA,
    _decode_get_result,
    _encode_get_result,
)
from meterguard.cosem.xdlms.get_set import GetRequest, GetResponse, SetRequest, SetResponse
from meterguard.errors import DecodeError

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
    "ActionReturn",
    "DataNotification",
    "EventNotification",
    "XdlmsApdu",
]


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
