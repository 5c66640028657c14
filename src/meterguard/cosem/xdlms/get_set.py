"""GET and SET requests and responses, every variant.

Part of :mod:`meterguard.cosem.xdlms`, which re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from meterguard.cosem._codec import Reader, encode_length, pack_u32
from meterguard.cosem.axdr import (
    Data,
    encode_data,
)
from meterguard.cosem.xdlms.basics import DataAccessResult, _enum_of
from meterguard.cosem.xdlms.descriptors import (
    AttributeWithSelection,
    DataBlockG,
    DataBlockSA,
    GetResult,
    _BlockNumber,
    _BlockSA,
    _encode_get_result,
    encode_get_results,
)

__all__ = [
    "GetRequest",
    "GetRequestNext",
    "GetRequestNormal",
    "GetRequestWithList",
    "GetResponse",
    "GetResponseNormal",
    "GetResponseWithDataBlock",
    "GetResponseWithList",
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
]


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
