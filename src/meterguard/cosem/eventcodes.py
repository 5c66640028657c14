"""Event codes of the log books and alarm pushes: the meter's and the head-end's vocabulary.

The codes follow the IDIS numbering where it has one; the sensors IDIS does not number
(current without voltage, reverse energy, module removal) use the manufacturer-specific
range 230+. The meter writes them to its log books and pushes them as alarms; the head-end
names them on the dashboard. Pure: no IO.
"""

from __future__ import annotations

import enum

__all__ = ["EventCode"]


class EventCode(enum.IntEnum):
    """Event codes written to the log books."""

    POWER_DOWN = 1
    POWER_UP = 2
    CLOCK_ADJUSTED = 4
    FIRMWARE_READY_FOR_ACTIVATION = 17
    FIRMWARE_ACTIVATED = 18
    TERMINAL_COVER_REMOVED = 40
    TERMINAL_COVER_CLOSED = 41
    STRONG_DC_FIELD_DETECTED = 42
    STRONG_DC_FIELD_GONE = 43
    METER_COVER_REMOVED = 44
    METER_COVER_CLOSED = 45
    AUTHENTICATION_FAILURE = 46
    DECRYPTION_OR_AUTHENTICATION_FAILURE = 47
    REPLAY_ATTACK = 48
    KEY_CHANGED = 53
    REMOTE_DISCONNECTION = 62
    REMOTE_RECONNECTION = 63
    TAMPER_CLEARED = 229
    CURRENT_WITHOUT_VOLTAGE = 230
    REVERSE_ENERGY = 231
    COMMUNICATION_MODULE_REMOVED = 232
    ASSOCIATION_ESTABLISHED = 233
    ASSOCIATION_RELEASED = 234
    FIRMWARE_INCOMPATIBLE = 240
    FIRMWARE_UNTRUSTED = 241
    FIRMWARE_TAMPERED = 242
    FIRMWARE_ROLLBACK = 243
    FIRMWARE_FROZEN = 244
    FIRMWARE_MIX_AND_MATCH = 245
    FIRMWARE_ENDLESS_DATA = 246
    FIRMWARE_DOWNGRADE = 247
    FIRMWARE_HEALTH_FAILED = 248
    FIRMWARE_CHANNEL_STALE = 249
    FIRMWARE_REVERTED = 250
    FIRMWARE_CONFIRMED = 251
