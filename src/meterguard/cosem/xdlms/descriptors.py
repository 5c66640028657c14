"""Attribute and method descriptors, selective access, data blocks, GET results.

Part of :mod:`meterguard.cosem.xdlms`, which re-exports it.
"""

from __future__ import annotations

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
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms.basics import DataAccessResult, _enum_of
from meterguard.errors import DecodeError

__all__ = [
    "AttributeDescriptor",
    "AttributeWithSelection",
    "CaptureObject",
    "DataBlockG",
    "DataBlockSA",
    "EntryDescriptor",
    "GetResult",
    "MethodDescriptor",
    "RangeDescriptor",
    "SelectiveAccess",
    "decode_get_results",
    "encode_get_results",
]


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
