"""Who a meter is, in one place: serial, meter id, system title (PKI-3, DM-3).

A meter's **serial** is 10 decimal digits (the manufacturing record); its **meter id** is
``MGD`` + serial (the certificate CN, the MQTT user name, the topic segment, the database
key); its DLMS **system title** is the FLAG id ``MGD`` followed by the serial as 5 big-endian
bytes. The PKI, the meter, the broker's ACLs, ingest and the API all take these forms from
here. Pure functions: no IO.
"""

from __future__ import annotations

import re

from meterguard.errors import InvalidValueError

__all__ = [
    "METER_ID",
    "is_meter_id",
    "meter_id",
    "serial_of",
    "system_title",
]

FLAG_ID = b"MGD"
"""The manufacturer's FLAG id, first three bytes of every meter's system title."""
METER_ID = r"MGD\d{10}"
"""The meter id's pattern (for topics, ACLs and route parameters)."""
_METER_ID = re.compile(rf"^{METER_ID}$")
_SERIAL = re.compile(r"^\d{10}$")


def _serial(serial: str | int) -> str:
    text = f"{serial:010d}" if isinstance(serial, int) else serial
    if not _SERIAL.match(text):
        raise InvalidValueError(f"a meter serial is 10 digits, not {text[:20]!r}")
    return text


def meter_id(serial: str | int) -> str:
    """``MGD`` + the 10-digit serial.

    Raises:
        InvalidValueError: not a 10-digit serial.
    """
    return f"MGD{_serial(serial)}"


def is_meter_id(text: str) -> bool:
    """Does ``text`` have the form of a meter id?"""
    return _METER_ID.match(text) is not None


def serial_of(mid: str) -> str:
    """The serial inside a meter id.

    Raises:
        InvalidValueError: not a meter id.
    """
    if not is_meter_id(mid):
        raise InvalidValueError(f"not a meter id: {mid[:20]!r}")
    return mid[3:]


def system_title(serial: str | int) -> bytes:
    """The meter's DLMS system title: ``MGD`` + the serial as 5 big-endian bytes."""
    return FLAG_ID + int(_serial(serial)).to_bytes(5, "big")
