"""A-XDR encoding of COSEM ``Data`` (IEC 62056-6-2 / Green Book §9.5).

Every COSEM data type is a frozen, slotted dataclass; :data:`Data` is their
union. ``encode_data`` and ``decode_data`` are exact inverses: decoding then
encoding returns the same bytes, and decoding never raises anything but
:class:`~meterguard.errors.DecodeError` (checked by Hypothesis).

Covered: null-data, array, structure, boolean, bit-string, double-long(-unsigned),
octet-string, visible-string, utf8-string, bcd, integer, long, unsigned,
long-unsigned, compact-array, long64(-unsigned), enum, float32, float64,
date-time, date, time and dont-care. Nesting depth is bounded to keep hostile
input from exhausting the stack.

This module does not interpret values (units, OBIS semantics); the object model does.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, TypeAlias, cast

from meterguard.cosem._codec import Reader, encode_length
from meterguard.cosem.cosemtime import CosemDate, CosemDateTime, CosemTime
from meterguard.errors import DecodeError, InvalidValueError

__all__ = [
    "Array",
    "Bcd",
    "BitString",
    "Boolean",
    "CompactArray",
    "Data",
    "DataType",
    "DateData",
    "DateTimeData",
    "DontCare",
    "DoubleLong",
    "DoubleLongUnsigned",
    "Enum",
    "Float32",
    "Float64",
    "Integer",
    "Long",
    "Long64",
    "Long64Unsigned",
    "LongUnsigned",
    "NullData",
    "OctetString",
    "Structure",
    "TimeData",
    "TypeDescription",
    "Unsigned",
    "Utf8String",
    "VisibleString",
    "decode_data",
    "decode_data_bytes",
    "encode_data",
]

MAX_DEPTH = 32
"""Deepest nesting of arrays/structures accepted from the wire."""


class DataType(enum.IntEnum):
    """A-XDR type tags of COSEM Data."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DONT_CARE = 255


@dataclass(frozen=True, slots=True)
class NullData:
    """null-data [0]."""

    TAG: ClassVar[DataType] = DataType.NULL_DATA


@dataclass(frozen=True, slots=True)
class DontCare:
    """dont-care [255] (used in selective access filters)."""

    TAG: ClassVar[DataType] = DataType.DONT_CARE


@dataclass(frozen=True, slots=True)
class Boolean:
    """boolean [3]: one byte, zero is false."""

    value: bool
    TAG: ClassVar[DataType] = DataType.BOOLEAN


@dataclass(frozen=True, slots=True)
class BitString:
    """bit-string [4]: ``bits`` as a string of '0'/'1', first bit is the MSB of byte 0."""

    bits: str
    TAG: ClassVar[DataType] = DataType.BIT_STRING

    def __post_init__(self) -> None:
        if any(c not in "01" for c in self.bits):
            raise InvalidValueError("bit-string must contain only '0' and '1'")

    def to_bytes(self) -> bytes:
        """Pack the bits, MSB first, zero-padded to whole bytes."""
        padded = self.bits + "0" * (-len(self.bits) % 8)
        return int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""


@dataclass(frozen=True, slots=True)
class _Int:
    value: int
    TAG: ClassVar[DataType]
    FMT: ClassVar[struct.Struct]
    LO: ClassVar[int]
    HI: ClassVar[int]

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise InvalidValueError(f"{type(self).__name__} needs an int, got {self.value!r}")
        if not self.LO <= self.value <= self.HI:
            raise InvalidValueError(
                f"{type(self).__name__} must be in {self.LO}..{self.HI}, got {self.value}"
            )


class Integer(_Int):
    """integer [15]: int8."""

    __slots__ = ()
    TAG = DataType.INTEGER
    FMT = struct.Struct(">b")
    LO = -(1 << 7)
    HI = (1 << 7) - 1


class Long(_Int):
    """long [16]: int16."""

    __slots__ = ()
    TAG = DataType.LONG
    FMT = struct.Struct(">h")
    LO = -(1 << 15)
    HI = (1 << 15) - 1


class DoubleLong(_Int):
    """double-long [5]: int32."""

    __slots__ = ()
    TAG = DataType.DOUBLE_LONG
    FMT = struct.Struct(">i")
    LO = -(1 << 31)
    HI = (1 << 31) - 1


class Long64(_Int):
    """long64 [20]: int64."""

    __slots__ = ()
    TAG = DataType.LONG64
    FMT = struct.Struct(">q")
    LO = -(1 << 63)
    HI = (1 << 63) - 1


class Unsigned(_Int):
    """unsigned [17]: uint8."""

    __slots__ = ()
    TAG = DataType.UNSIGNED
    FMT = struct.Struct(">B")
    LO = 0
    HI = (1 << 8) - 1


class LongUnsigned(_Int):
    """long-unsigned [18]: uint16."""

    __slots__ = ()
    TAG = DataType.LONG_UNSIGNED
    FMT = struct.Struct(">H")
    LO = 0
    HI = (1 << 16) - 1


class DoubleLongUnsigned(_Int):
    """double-long-unsigned [6]: uint32."""

    __slots__ = ()
    TAG = DataType.DOUBLE_LONG_UNSIGNED
    FMT = struct.Struct(">I")
    LO = 0
    HI = (1 << 32) - 1


class Long64Unsigned(_Int):
    """long64-unsigned [21]: uint64."""

    __slots__ = ()
    TAG = DataType.LONG64_UNSIGNED
    FMT = struct.Struct(">Q")
    LO = 0
    HI = (1 << 64) - 1


class Enum(_Int):
    """enum [22]: uint8."""

    __slots__ = ()
    TAG = DataType.ENUM
    FMT = struct.Struct(">B")
    LO = 0
    HI = (1 << 8) - 1


class Bcd(_Int):
    """bcd [13]: one signed byte, as IEC 62056-6-2 encodes it."""

    __slots__ = ()
    TAG = DataType.BCD
    FMT = struct.Struct(">b")
    LO = -(1 << 7)
    HI = (1 << 7) - 1


@dataclass(frozen=True, slots=True)
class Float32:
    """float32 [23]: IEEE 754 single, big-endian."""

    value: float
    TAG: ClassVar[DataType] = DataType.FLOAT32


@dataclass(frozen=True, slots=True)
class Float64:
    """float64 [24]: IEEE 754 double, big-endian."""

    value: float
    TAG: ClassVar[DataType] = DataType.FLOAT64


@dataclass(frozen=True, slots=True)
class OctetString:
    """octet-string [9]."""

    value: bytes
    TAG: ClassVar[DataType] = DataType.OCTET_STRING


@dataclass(frozen=True, slots=True)
class VisibleString:
    """visible-string [10]: ASCII."""

    value: str
    TAG: ClassVar[DataType] = DataType.VISIBLE_STRING

    def __post_init__(self) -> None:
        if not self.value.isascii():
            raise InvalidValueError("visible-string must be ASCII")


@dataclass(frozen=True, slots=True)
class Utf8String:
    """utf8-string [12]."""

    value: str
    TAG: ClassVar[DataType] = DataType.UTF8_STRING


@dataclass(frozen=True, slots=True)
class DateTimeData:
    """date-time [25]: the 12-byte COSEM date-time, untagged length."""

    value: CosemDateTime
    TAG: ClassVar[DataType] = DataType.DATE_TIME


@dataclass(frozen=True, slots=True)
class DateData:
    """date [26]: 5 bytes."""

    value: CosemDate
    TAG: ClassVar[DataType] = DataType.DATE


@dataclass(frozen=True, slots=True)
class TimeData:
    """time [27]: 4 bytes."""

    value: CosemTime
    TAG: ClassVar[DataType] = DataType.TIME


@dataclass(frozen=True, slots=True)
class Array:
    """array [1]: a SEQUENCE OF Data, usually of one type."""

    items: tuple[Data, ...]
    TAG: ClassVar[DataType] = DataType.ARRAY


@dataclass(frozen=True, slots=True)
class Structure:
    """structure [2]: a SEQUENCE OF Data of mixed types."""

    items: tuple[Data, ...]
    TAG: ClassVar[DataType] = DataType.STRUCTURE


@dataclass(frozen=True, slots=True)
class TypeDescription:
    """The type of compact-array elements.

    A simple type is just its tag; an array carries ``count`` and ``element``;
    a structure carries ``fields``.
    """

    tag: DataType
    count: int = 0
    element: TypeDescription | None = None
    fields: tuple[TypeDescription, ...] = ()

    def __post_init__(self) -> None:
        if self.tag is DataType.ARRAY and self.element is None:
            raise InvalidValueError("array type description needs an element type")
        if self.tag in (DataType.COMPACT_ARRAY, DataType.DONT_CARE):
            raise InvalidValueError(f"{self.tag.name} cannot be described inside a compact array")


@dataclass(frozen=True, slots=True)
class CompactArray:
    """compact-array [19]: element type described once, values without tags."""

    description: TypeDescription
    items: tuple[Data, ...]
    TAG: ClassVar[DataType] = DataType.COMPACT_ARRAY


Data: TypeAlias = (
    NullData
    | DontCare
    | Boolean
    | BitString
    | Integer
    | Long
    | DoubleLong
    | Long64
    | Unsigned
    | LongUnsigned
    | DoubleLongUnsigned
    | Long64Unsigned
    | Enum
    | Bcd
    | Float32
    | Float64
    | OctetString
    | VisibleString
    | Utf8String
    | DateTimeData
    | DateData
    | TimeData
    | Array
    | Structure
    | CompactArray
)

_INT_TYPES: dict[DataType, type[_Int]] = {
    c.TAG: c
    for c in (
        Integer,
        Long,
        DoubleLong,
        Long64,
        Unsigned,
        LongUnsigned,
        DoubleLongUnsigned,
        Long64Unsigned,
        Enum,
        Bcd,
    )
}
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")

# --------------------------------------------------------------------- encoding


def _encode_value(d: Data, out: bytearray) -> None:
    """Append ``d``'s value without its tag (the compact-array form, and the tail of tagged)."""
    if isinstance(d, _Int):
        out += d.FMT.pack(d.value)
    elif isinstance(d, OctetString):
        out += encode_length(len(d.value))
        out += d.value
    elif isinstance(d, VisibleString):
        raw = d.value.encode("ascii")
        out += encode_length(len(raw))
        out += raw
    elif isinstance(d, Utf8String):
        raw = d.value.encode("utf-8")
        out += encode_length(len(raw))
        out += raw
    elif isinstance(d, Boolean):
        out.append(1 if d.value else 0)
    elif isinstance(d, BitString):
        out += encode_length(len(d.bits))
        out += d.to_bytes()
    elif isinstance(d, Float32):
        out += _F32.pack(d.value)
    elif isinstance(d, Float64):
        out += _F64.pack(d.value)
    elif isinstance(d, DateTimeData | DateData | TimeData):
        out += d.value.to_bytes()
    elif isinstance(d, NullData | DontCare):
        pass
    else:  # containers are handled by their callers
        raise InvalidValueError(f"{type(d).__name__} has no untagged scalar form")


def _encode(d: Data, out: bytearray) -> None:
    out.append(d.TAG)
    if isinstance(d, Array | Structure):
        out += encode_length(len(d.items))
        for item in d.items:
            _encode(item, out)
    elif isinstance(d, CompactArray):
        _encode_description(d.description, out)
        body = bytearray()
        for item in d.items:
            _encode_untagged(item, d.description, body)
        out += encode_length(len(body))
        out += body
    else:
        _encode_value(d, out)


def _encode_description(t: TypeDescription, out: bytearray) -> None:
    out.append(t.tag)
    if t.tag is DataType.ARRAY:
        assert t.element is not None  # noqa: S101 - enforced in __post_init__
        out += t.count.to_bytes(2, "big")
        _encode_description(t.element, out)
    elif t.tag is DataType.STRUCTURE:
        out += encode_length(len(t.fields))
        for f in t.fields:
            _encode_description(f, out)


def _encode_untagged(d: Data, t: TypeDescription, out: bytearray) -> None:
    if t.tag != d.TAG:
        raise InvalidValueError(f"compact-array element {type(d).__name__} is not {t.tag.name}")
    if isinstance(d, Array):
        if len(d.items) != t.count or t.element is None:
            raise InvalidValueError("compact-array nested array length does not match its type")
        for item in d.items:
            _encode_untagged(item, t.element, out)
    elif isinstance(d, Structure):
        if len(d.items) != len(t.fields):
            raise InvalidValueError("compact-array structure does not match its type")
        for item, ft in zip(d.items, t.fields, strict=True):
            _encode_untagged(item, ft, out)
    else:
        _encode_value(d, out)


def encode_data(d: Data) -> bytes:
    """Encode ``d`` with its type tag (the normal A-XDR form)."""
    out = bytearray()
    _encode(d, out)
    return bytes(out)


# --------------------------------------------------------------------- decoding


def _decode_scalar(tag: DataType, r: Reader) -> Data:
    int_type = _INT_TYPES.get(tag)
    if int_type is not None:
        raw = r.take(int_type.FMT.size)
        return cast("Data", int_type(int(int_type.FMT.unpack(raw)[0])))
    if tag is DataType.OCTET_STRING:
        return OctetString(r.sized())
    if tag is DataType.VISIBLE_STRING:
        raw = r.sized()
        try:
            return VisibleString(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise DecodeError("visible-string is not ASCII") from None
    if tag is DataType.UTF8_STRING:
        raw = r.sized()
        try:
            return Utf8String(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DecodeError("utf8-string is not valid UTF-8") from None
    if tag is DataType.BOOLEAN:
        return Boolean(r.u8() != 0)
    if tag is DataType.BIT_STRING:
        nbits = r.length()
        raw = r.take((nbits + 7) // 8)
        bits = "".join(f"{b:08b}" for b in raw)[:nbits]
        return BitString(bits)
    if tag is DataType.FLOAT32:
        return Float32(r.f32())
    if tag is DataType.FLOAT64:
        return Float64(r.f64())
    if tag is DataType.DATE_TIME:
        return DateTimeData(CosemDateTime.from_bytes(r.take(12)))
    if tag is DataType.DATE:
        return DateData(CosemDate.from_bytes(r.take(5)))
    if tag is DataType.TIME:
        return TimeData(CosemTime.from_bytes(r.take(4)))
    if tag is DataType.NULL_DATA:
        return NullData()
    if tag is DataType.DONT_CARE:
        return DontCare()
    raise DecodeError(f"unexpected type tag {tag.name}")


def _tag(b: int) -> DataType:
    try:
        return DataType(b)
    except ValueError:
        raise DecodeError(f"unknown A-XDR type tag 0x{b:02X}") from None


def _decode(r: Reader, depth: int) -> Data:
    if depth > MAX_DEPTH:
        raise DecodeError(f"data nested deeper than {MAX_DEPTH} levels")
    tag = _tag(r.u8())
    if tag is DataType.ARRAY or tag is DataType.STRUCTURE:
        n = r.count(1)
        items = tuple(_decode(r, depth + 1) for _ in range(n))
        return Array(items) if tag is DataType.ARRAY else Structure(items)
    if tag is DataType.COMPACT_ARRAY:
        desc = _decode_description(r, depth + 1)
        body = Reader(r.sized())
        items_list: list[Data] = []
        while not body.at_end():
            before = body.pos
            items_list.append(_decode_untagged(body, desc, depth + 1))
            if body.pos == before:
                raise DecodeError("compact-array element type has no size")
        return CompactArray(desc, tuple(items_list))
    return _decode_scalar(tag, r)


def _decode_description(r: Reader, depth: int) -> TypeDescription:
    if depth > MAX_DEPTH:
        raise DecodeError(f"type description nested deeper than {MAX_DEPTH} levels")
    tag = _tag(r.u8())
    try:
        if tag is DataType.ARRAY:
            count = r.u16()
            return TypeDescription(tag, count=count, element=_decode_description(r, depth + 1))
        if tag is DataType.STRUCTURE:
            n = r.count(1)
            return TypeDescription(
                tag, fields=tuple(_decode_description(r, depth + 1) for _ in range(n))
            )
        return TypeDescription(tag)
    except InvalidValueError as exc:
        raise DecodeError(f"invalid compact-array type description: {exc}") from None


def _decode_untagged(r: Reader, t: TypeDescription, depth: int) -> Data:
    if depth > MAX_DEPTH:
        raise DecodeError(f"data nested deeper than {MAX_DEPTH} levels")
    if t.tag is DataType.ARRAY:
        assert t.element is not None  # noqa: S101 - enforced in __post_init__
        size = _fixed_size(t.element)
        if size == 0 or t.count * size > r.remaining():
            raise DecodeError("compact-array nested array cannot fit in the bytes left")
        return Array(tuple(_decode_untagged(r, t.element, depth + 1) for _ in range(t.count)))
    if t.tag is DataType.STRUCTURE:
        return Structure(tuple(_decode_untagged(r, f, depth + 1) for f in t.fields))
    return _decode_scalar(t.tag, r)


def _fixed_size(t: TypeDescription) -> int:
    """Bytes one untagged value of ``t`` takes at least (0 for null types)."""
    if t.tag in (DataType.NULL_DATA, DataType.DONT_CARE):
        return 0
    if t.tag is DataType.ARRAY:
        return t.count * _fixed_size(t.element) if t.element is not None else 0
    if t.tag is DataType.STRUCTURE:
        return sum(_fixed_size(f) for f in t.fields)
    return 1


def decode_data(r: Reader) -> Data:
    """Decode one tagged Data value from ``r``.

    Raises:
        DecodeError: malformed, truncated or too deeply nested input.
    """
    return _decode(r, 0)


def decode_data_bytes(data: bytes) -> Data:
    """Decode exactly one tagged Data value from ``data`` (no trailing bytes).

    Raises:
        DecodeError: malformed input or trailing bytes.
    """
    r = Reader(data)
    d = _decode(r, 0)
    r.expect_end("data")
    return d
