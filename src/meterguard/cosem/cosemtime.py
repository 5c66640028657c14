"""COSEM date, time and date-time (Blue Book 4.1.6.1) with wildcards.

The 12-byte date-time is ``year(2) month day weekday hour minute second
hundredths deviation(2, signed) clock_status``. Every field may be "not
specified" (0xFF, 0xFFFF, deviation 0x8000), which is modelled as ``None``.
Month 0xFD/0xFE and day 0xFD/0xFE (DST end/begin, second-last/last day of the
month) are kept as the raw numbers. Deviation follows the Blue Book sign: the
minutes from *local time to UTC*, so CET (UTC+01:00) has deviation -60.

Conversions to :class:`datetime.datetime` only work for fully specified
values. This module does not read the clock.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from meterguard.cosem._codec import Reader
from meterguard.errors import DecodeError, InvalidValueError

__all__ = ["ClockStatus", "CosemDate", "CosemDateTime", "CosemTime"]

_NS8 = 0xFF
_NS16 = 0xFFFF
_DEVIATION_NS = -0x8000


class ClockStatus(enum.IntFlag):
    """Clock status bits (Blue Book 4.1.6.1)."""

    INVALID_VALUE = 0x01
    DOUBTFUL_VALUE = 0x02
    DIFFERENT_CLOCK_BASE = 0x04
    INVALID_CLOCK_STATUS = 0x08
    DAYLIGHT_SAVING_ACTIVE = 0x80


def _b8(v: int | None) -> int:
    return _NS8 if v is None else v


def _o8(v: int) -> int | None:
    return None if v == _NS8 else v


def _check(name: str, v: int | None, lo: int, hi: int, extra: tuple[int, ...] = ()) -> None:
    if v is None:
        return
    if not (lo <= v <= hi or v in extra):
        raise InvalidValueError(f"{name} {v} out of range {lo}..{hi}")


@dataclass(frozen=True, slots=True)
class CosemDate:
    """A date with optional fields (``None`` = not specified)."""

    year: int | None
    month: int | None
    day: int | None
    weekday: int | None = None

    def __post_init__(self) -> None:
        _check("year", self.year, 0, 0xFFFE)
        _check("month", self.month, 1, 12, (0xFD, 0xFE))
        _check("day", self.day, 1, 31, (0xFD, 0xFE))
        _check("weekday", self.weekday, 1, 7)

    def to_bytes(self) -> bytes:
        """Return the 5-byte wire form."""
        year = _NS16 if self.year is None else self.year
        return bytes((year >> 8, year & 0xFF, _b8(self.month), _b8(self.day), _b8(self.weekday)))

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemDate:
        """Decode the 5-byte wire form.

        Raises:
            DecodeError: wrong length or a field out of range.
        """
        if len(data) != 5:
            raise DecodeError(f"date must be 5 bytes, got {len(data)}")
        year = (data[0] << 8) | data[1]
        try:
            return cls(None if year == _NS16 else year, _o8(data[2]), _o8(data[3]), _o8(data[4]))
        except InvalidValueError as exc:
            raise DecodeError(f"invalid date: {exc}") from None


@dataclass(frozen=True, slots=True)
class CosemTime:
    """A time of day with optional fields (``None`` = not specified)."""

    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None = None

    def __post_init__(self) -> None:
        _check("hour", self.hour, 0, 23)
        _check("minute", self.minute, 0, 59)
        _check("second", self.second, 0, 59)
        _check("hundredths", self.hundredths, 0, 99)

    def to_bytes(self) -> bytes:
        """Return the 4-byte wire form."""
        return bytes((_b8(self.hour), _b8(self.minute), _b8(self.second), _b8(self.hundredths)))

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemTime:
        """Decode the 4-byte wire form.

        Raises:
            DecodeError: wrong length or a field out of range.
        """
        if len(data) != 4:
            raise DecodeError(f"time must be 4 bytes, got {len(data)}")
        try:
            return cls(_o8(data[0]), _o8(data[1]), _o8(data[2]), _o8(data[3]))
        except InvalidValueError as exc:
            raise DecodeError(f"invalid time: {exc}") from None


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """A COSEM date-time: date, time, deviation from local time to UTC, clock status."""

    date: CosemDate
    time: CosemTime
    deviation: int | None = None
    clock_status: int | None = None

    def __post_init__(self) -> None:
        _check("deviation", self.deviation, -720, 720)
        _check("clock_status", self.clock_status, 0, 0xFE)

    def to_bytes(self) -> bytes:
        """Return the 12-byte wire form."""
        dev = _DEVIATION_NS if self.deviation is None else self.deviation
        return (
            self.date.to_bytes()
            + self.time.to_bytes()
            + (dev & 0xFFFF).to_bytes(2, "big")
            + bytes((_b8(self.clock_status),))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemDateTime:
        """Decode the 12-byte wire form.

        Raises:
            DecodeError: wrong length or a field out of range.
        """
        if len(data) != 12:
            raise DecodeError(f"date-time must be 12 bytes, got {len(data)}")
        r = Reader(data)
        date = CosemDate.from_bytes(r.take(5))
        time = CosemTime.from_bytes(r.take(4))
        dev = r.i16()
        status = r.u8()
        try:
            return cls(date, time, None if dev == _DEVIATION_NS else dev, _o8(status))
        except InvalidValueError as exc:
            raise DecodeError(f"invalid date-time: {exc}") from None

    @classmethod
    def from_datetime(cls, value: dt.datetime, *, clock_status: int = 0) -> CosemDateTime:
        """Encode an aware datetime, keeping its UTC offset as the deviation."""
        offset = value.utcoffset()
        if offset is None:
            raise InvalidValueError("CosemDateTime.from_datetime needs an aware datetime")
        deviation = -int(offset.total_seconds() // 60)
        return cls(
            CosemDate(value.year, value.month, value.day, value.isoweekday()),
            CosemTime(value.hour, value.minute, value.second, value.microsecond // 10_000),
            deviation,
            clock_status,
        )

    def to_datetime(self) -> dt.datetime:
        """Return an aware datetime (deviation unspecified is taken as UTC).

        Raises:
            InvalidValueError: a date or time field is not specified or special.
        """
        d, t = self.date, self.time
        fields = (d.year, d.month, d.day, t.hour, t.minute, t.second)
        if any(f is None for f in fields) or (d.month or 0) > 12 or (d.day or 0) > 31:
            raise InvalidValueError("date-time has wildcards; it is not a single instant")
        tz = (
            dt.UTC if self.deviation is None else dt.timezone(dt.timedelta(minutes=-self.deviation))
        )
        assert d.year is not None and d.month is not None and d.day is not None  # noqa: S101
        assert t.hour is not None and t.minute is not None and t.second is not None  # noqa: S101
        try:
            return dt.datetime(
                d.year,
                d.month,
                d.day,
                t.hour,
                t.minute,
                t.second,
                (t.hundredths or 0) * 10_000,
                tzinfo=tz,
            )
        except ValueError as exc:
            raise InvalidValueError(f"not a calendar date: {exc}") from None

    def __str__(self) -> str:
        def f(v: int | None, w: int) -> str:
            return "*" * w if v is None else f"{v:0{w}d}"

        d, t = self.date, self.time
        dev = "dev=?" if self.deviation is None else f"dev={self.deviation:+d}"
        status = "" if not self.clock_status else f" status=0x{self.clock_status:02X}"
        return (
            f"{f(d.year, 4)}-{f(d.month, 2)}-{f(d.day, 2)} "
            f"{f(t.hour, 2)}:{f(t.minute, 2)}:{f(t.second, 2)}.{f(t.hundredths, 2)} {dev}{status}"
        )
