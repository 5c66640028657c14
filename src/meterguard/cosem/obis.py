"""OBIS codes (IEC 62056-6-1) as a validated, hashable value type.

``Obis.parse`` accepts the dotted form ``1.0.1.8.0.255``, the display form
``1-0:1.8.0.255`` (also ``*255`` and ``&255``), a missing F group (``1-0:1.8.0``
means F = 255) and 12 hex digits. ``str()`` gives the dotted form used across
meterguard. This module does not know what a code means; the object model does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meterguard.errors import DecodeError, InvalidValueError

__all__ = ["Obis"]

_DISPLAY = re.compile(r"^(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[.*&](\d{1,3}))?$")
_DOTTED = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_HEX = re.compile(r"^[0-9A-Fa-f]{12}$")


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """A six-group OBIS code, each group 0..255."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d", "e", "f"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 255:
                raise InvalidValueError(f"OBIS group {name.upper()} must be 0..255, got {v!r}")

    @classmethod
    def parse(cls, text: str) -> Obis:
        """Parse any of the accepted textual forms.

        Raises:
            InvalidValueError: not an OBIS code.
        """
        t = text.strip()
        m = _DOTTED.match(t) or _DISPLAY.match(t)
        if m:
            groups = [int(g) if g is not None else 255 for g in m.groups()]
            return cls(*groups)
        if _HEX.match(t):
            return cls.from_bytes(bytes.fromhex(t))
        raise InvalidValueError(f"not an OBIS code: {text!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Obis:
        """Decode the 6-byte wire form.

        Raises:
            DecodeError: not exactly 6 bytes.
        """
        if len(data) != 6:
            raise DecodeError(f"OBIS code must be 6 bytes, got {len(data)}")
        return cls(*data)

    def to_bytes(self) -> bytes:
        """Return the 6-byte wire form."""
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def __str__(self) -> str:
        return f"{self.a}.{self.b}.{self.c}.{self.d}.{self.e}.{self.f}"

    def display(self) -> str:
        """Return the IEC display form ``A-B:C.D.E.F``."""
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}.{self.f}"
