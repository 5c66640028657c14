"""Byte reader and length codecs shared by every COSEM decoder.

:class:`Reader` walks a bytes object and raises
:class:`~meterguard.errors.DecodeError` on any truncation, so decoders never
raise ``IndexError`` or ``struct.error``. Lengths use the A-XDR/BER form: one
byte below 0x80, else ``0x80 | n`` followed by ``n`` big-endian bytes.

This module does not know any COSEM type or APDU.
"""

from __future__ import annotations

import struct

from meterguard.errors import DecodeError

__all__ = ["MAX_LENGTH_OCTETS", "Reader", "encode_length"]

MAX_LENGTH_OCTETS = 4
"""Longest length-of-length we accept; anything above cannot fit in memory anyway."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")


def encode_length(n: int) -> bytes:
    """Encode a length in A-XDR/BER form."""
    if n < 0:
        raise DecodeError("negative length")
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


class Reader:
    """A cursor over bytes that raises :class:`DecodeError` instead of running off the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        """Bytes left to read."""
        return len(self.data) - self.pos

    def at_end(self) -> bool:
        """True once every byte was consumed."""
        return self.pos >= len(self.data)

    def expect_end(self, what: str) -> None:
        """Raise if bytes are left over after a complete structure."""
        if self.pos != len(self.data):
            raise DecodeError(f"{what}: {len(self.data) - self.pos} trailing bytes")

    def take(self, n: int) -> bytes:
        """Return the next ``n`` bytes."""
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise DecodeError(f"truncated: need {n} bytes, have {len(self.data) - self.pos}")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def rest(self) -> bytes:
        """Return every remaining byte."""
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def peek(self) -> int:
        """Return the next byte without consuming it."""
        if self.pos >= len(self.data):
            raise DecodeError("truncated: need 1 byte, have 0")
        return self.data[self.pos]

    def u8(self) -> int:
        """Read an unsigned byte."""
        if self.pos >= len(self.data):
            raise DecodeError("truncated: need 1 byte, have 0")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def i8(self) -> int:
        """Read a signed byte."""
        b = self.u8()
        return b - 256 if b > 127 else b

    def _unpack(self, st: struct.Struct) -> int:
        return int(st.unpack(self.take(st.size))[0])

    def u16(self) -> int:
        """Read a big-endian unsigned 16-bit integer."""
        return self._unpack(_U16)

    def u32(self) -> int:
        """Read a big-endian unsigned 32-bit integer."""
        return self._unpack(_U32)

    def u64(self) -> int:
        """Read a big-endian unsigned 64-bit integer."""
        return self._unpack(_U64)

    def i16(self) -> int:
        """Read a big-endian signed 16-bit integer."""
        return self._unpack(_I16)

    def i32(self) -> int:
        """Read a big-endian signed 32-bit integer."""
        return self._unpack(_I32)

    def i64(self) -> int:
        """Read a big-endian signed 64-bit integer."""
        return self._unpack(_I64)

    def f32(self) -> float:
        """Read a big-endian IEEE 754 single."""
        return float(_F32.unpack(self.take(4))[0])

    def f64(self) -> float:
        """Read a big-endian IEEE 754 double."""
        return float(_F64.unpack(self.take(8))[0])

    def length(self) -> int:
        """Read an A-XDR/BER length and check that that many bytes could follow."""
        first = self.u8()
        if first < 0x80:
            n = first
        else:
            count = first & 0x7F
            if count == 0 or count > MAX_LENGTH_OCTETS:
                raise DecodeError(f"unsupported length-of-length {count}")
            n = int.from_bytes(self.take(count), "big")
        return n

    def sized(self) -> bytes:
        """Read a length followed by that many bytes (an A-XDR octet-string body)."""
        return self.take(self.length())

    def count(self, min_item_size: int = 1) -> int:
        """Read an element count and reject counts that cannot fit in the remaining bytes."""
        n = self.length()
        if n * min_item_size > self.remaining():
            raise DecodeError(f"count {n} exceeds the {self.remaining()} bytes left")
        return n


def pack_u16(v: int) -> bytes:
    """Big-endian unsigned 16-bit."""
    return _U16.pack(v)


def pack_u32(v: int) -> bytes:
    """Big-endian unsigned 32-bit."""
    return _U32.pack(v)


def pack_sized(data: bytes) -> bytes:
    """Length-prefixed bytes (an A-XDR octet-string body)."""
    return encode_length(len(data)) + data
