"""IEC 62056-9-7 wrapper framing for DLMS/COSEM over TCP and UDP (port 4059).

Header: ``version 0x0001 ‖ source wPort ‖ destination wPort ‖ length`` (2 bytes
each), then ``length`` bytes of APDU. :class:`WrapperDecoder` is sans-IO: feed
it whatever the socket returned — half a header, three frames at once — and it
returns the complete frames. A wrong version or an APDU above the configured
maximum raises :class:`~meterguard.errors.DecodeError`; the stream cannot be
resynchronised after that and the transport should close it.

This module does not route wPorts to associations; the server does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from meterguard.errors import DecodeError, InvalidValueError

__all__ = [
    "CLIENT_MANAGEMENT",
    "CLIENT_PUBLIC",
    "DLMS_PORT",
    "SERVER_MANAGEMENT",
    "WRAPPER_VERSION",
    "WrapperDecoder",
    "WrapperFrame",
]

DLMS_PORT = 4059
WRAPPER_VERSION = 1
CLIENT_PUBLIC = 0x10
CLIENT_MANAGEMENT = 0x01
SERVER_MANAGEMENT = 0x01

_HEADER = struct.Struct(">HHHH")


@dataclass(frozen=True, slots=True)
class WrapperFrame:
    """One wrapper frame: source and destination wPorts and the APDU."""

    source_wport: int
    destination_wport: int
    apdu: bytes

    def __post_init__(self) -> None:
        for v in (self.source_wport, self.destination_wport):
            if not 0 <= v <= 0xFFFF:
                raise InvalidValueError("wPort must be 0..65535")
        if len(self.apdu) > 0xFFFF:
            raise InvalidValueError("an APDU above 65535 bytes needs block transfer")

    def to_bytes(self) -> bytes:
        """Encode header and APDU."""
        return (
            _HEADER.pack(WRAPPER_VERSION, self.source_wport, self.destination_wport, len(self.apdu))
            + self.apdu
        )


class WrapperDecoder:
    """Reassembles wrapper frames from a byte stream."""

    __slots__ = ("_buffer", "max_apdu_size")

    def __init__(self, max_apdu_size: int = 0xFFFF) -> None:
        self._buffer = bytearray()
        self.max_apdu_size = max_apdu_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[WrapperFrame]:
        """Add received bytes; return every frame now complete.

        Raises:
            DecodeError: wrong wrapper version or an APDU longer than allowed.
        """
        self._buffer += data
        frames: list[WrapperFrame] = []
        while len(self._buffer) >= _HEADER.size:
            version, src, dst, length = _HEADER.unpack_from(self._buffer)
            if version != WRAPPER_VERSION:
                raise DecodeError(f"wrapper version {version} is not 1")
            if length > self.max_apdu_size:
                raise DecodeError(f"wrapper length {length} above the maximum {self.max_apdu_size}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append(WrapperFrame(src, dst, bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return frames
