"""The meter's rules that every form of the meter shares: who it is and what it exposes.

One meter, two forms: the DLMS/TCP device (:mod:`meterguard.meter.device`) and the compact
fleet (:mod:`meterguard.meter.fleet`) take from here the meter's identity (serial, system
title from :mod:`meterguard.identity`, household seed), the logical names of its COSEM
objects, its log books, its tamper sensors with their fraud-log codes and alarm-register
bits (TAMP-1/2), and the alarm bits of refused commands. Pure: no IO.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from meterguard.cosem.axdr import DoubleLongUnsigned, LongUnsigned, OctetString, Structure
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.eventcodes import EventCode
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import DataNotification
from meterguard.errors import ConfigurationError
from meterguard.identity import system_title

__all__ = [
    "ALARM_AUTHENTICATION_FAILURE",
    "ALARM_DECRYPTION_FAILURE",
    "ALARM_REPLAY",
    "DAILY_PROFILE_DAYS",
    "LOAD_PROFILE_DAYS",
    "LOAD_PROFILE_PERIOD",
    "LOG_BOOKS",
    "MANAGEMENT",
    "OBIS",
    "PUBLIC",
    "MeterIdentity",
    "TamperKind",
    "alarm_notification",
    "seed_reading",
]


class OBIS:
    """The logical names this meter exposes."""

    CLOCK = Obis(0, 0, 1, 0, 0, 255)
    LOGICAL_DEVICE_NAME = Obis(0, 0, 42, 0, 0, 255)
    INVOCATION_COUNTER = Obis(0, 0, 43, 1, 0, 255)
    SECURITY_SETUP = Obis(0, 0, 43, 0, 0, 255)
    SERIAL = Obis(0, 0, 96, 1, 0, 255)
    STATUS = Obis(0, 0, 96, 10, 1, 255)
    ALARM_REGISTER = Obis(0, 0, 97, 98, 0, 255)
    DISCONNECT = Obis(0, 0, 96, 3, 10, 255)
    IMAGE_TRANSFER = Obis(0, 0, 44, 0, 0, 255)
    ACTIVE_IMPORT = Obis(1, 0, 1, 8, 0, 255)
    ACTIVE_EXPORT = Obis(1, 0, 2, 8, 0, 255)
    REACTIVE_IMPORT = Obis(1, 0, 3, 8, 0, 255)
    REACTIVE_EXPORT = Obis(1, 0, 4, 8, 0, 255)
    POWER_IMPORT = Obis(1, 0, 1, 7, 0, 255)
    VOLTAGE_L1 = Obis(1, 0, 32, 7, 0, 255)
    CURRENT_L1 = Obis(1, 0, 31, 7, 0, 255)
    LOAD_PROFILE = Obis(1, 0, 99, 1, 0, 255)
    DAILY_PROFILE = Obis(1, 0, 98, 1, 0, 255)
    STANDARD_EVENT_LOG = Obis(0, 0, 99, 98, 0, 255)
    FRAUD_LOG = Obis(0, 0, 99, 98, 1, 255)
    DISCONNECTOR_LOG = Obis(0, 0, 99, 98, 2, 255)
    FIRMWARE_LOG = Obis(0, 0, 99, 98, 3, 255)
    COMMUNICATION_LOG = Obis(0, 0, 99, 98, 4, 255)
    POWER_FAILURE_LOG = Obis(1, 0, 99, 97, 0, 255)


# Log book name -> (profile OBIS, event-code object E group)
LOG_BOOKS = {
    "standard": (OBIS.STANDARD_EVENT_LOG, 0),
    "fraud": (OBIS.FRAUD_LOG, 1),
    "disconnector": (OBIS.DISCONNECTOR_LOG, 2),
    "firmware": (OBIS.FIRMWARE_LOG, 3),
    "communication": (OBIS.COMMUNICATION_LOG, 4),
    "power-failure": (OBIS.POWER_FAILURE_LOG, 5),
}


class TamperKind(enum.Enum):
    """Tamper sensors (TAMP-1) with their fraud-log code and alarm-register bit."""

    MAIN_COVER_OPEN = ("main-cover-open", EventCode.METER_COVER_REMOVED, 0)
    TERMINAL_COVER_OPEN = ("terminal-cover-open", EventCode.TERMINAL_COVER_REMOVED, 1)
    MAGNETIC_FIELD = ("magnetic-field", EventCode.STRONG_DC_FIELD_DETECTED, 2)
    CURRENT_WITHOUT_VOLTAGE = ("current-without-voltage", EventCode.CURRENT_WITHOUT_VOLTAGE, 3)
    REVERSE_ENERGY = ("reverse-energy", EventCode.REVERSE_ENERGY, 4)
    MODULE_REMOVED = ("module-removed", EventCode.COMMUNICATION_MODULE_REMOVED, 5)

    def __init__(self, label: str, code: EventCode, bit: int) -> None:
        self.label = label
        self.code = code
        self.bit = bit

    @classmethod
    def parse(cls, text: str) -> TamperKind:
        """Find a sensor by its label (e.g. ``cover-open`` or ``main-cover-open``)."""
        aliases = {"cover-open": cls.MAIN_COVER_OPEN, "magnet": cls.MAGNETIC_FIELD}
        for k in cls:
            if k.label == text:
                return k
        if text in aliases:
            return aliases[text]
        raise ConfigurationError(
            f"unknown tamper sensor {text!r}; known: {', '.join(k.label for k in cls)}"
        )


ALARM_DECRYPTION_FAILURE = 8
ALARM_REPLAY = 9
ALARM_AUTHENTICATION_FAILURE = 10


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """Who the meter is: serial, system title (FLAG id "MGD" + 5 bytes) and seed."""

    serial: str
    system_title: bytes
    seed: int

    @classmethod
    def from_serial(cls, serial: int) -> MeterIdentity:
        """A meter identity derived from a numeric serial (fleets, tests)."""
        return cls(f"{serial:010d}", system_title(serial), serial)


PUBLIC, MANAGEMENT = 16, 1
"""Client SAPs (DM-1): the public association and the management association (HLS-GMAC)."""
LOAD_PROFILE_PERIOD = 900
"""Seconds per load-profile interval (15 minutes), the pushes' and the profile's."""
LOAD_PROFILE_DAYS = 10
DAILY_PROFILE_DAYS = 31


def seed_reading(seed: int) -> int:
    """Wh already on a new meter's import register (each form of the meter starts from it)."""
    return 1_000_000 + (seed * 7919) % 40_000_000


def alarm_notification(serial: str, sequence: int, code: int, at: dt.datetime) -> DataNotification:
    """An alarm push (TAMP-2): serial, push sequence, event code and the meter's time of it.

    The head-end's ingest decodes exactly this layout; the sequence lets it tell a re-sent
    pending alarm (TAMP-3) from a new one.
    """
    stamp = CosemDateTime.from_datetime(at)
    body = Structure(
        (
            OctetString(serial.encode()),
            DoubleLongUnsigned(sequence),
            LongUnsigned(code),
            OctetString(stamp.to_bytes()),
        )
    )
    return DataNotification(sequence & 0x00FFFFFF, stamp, body)
