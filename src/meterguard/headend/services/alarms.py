"""What an alarm means: its name, its severity for the utility, and words for the consumer.

One table, :data:`ALARMS`, keyed by the meter's event code (Blue Book event codes, the
tamper and firmware codes of :class:`~meterguard.cosem.eventcodes.EventCode`): the
operator's list sorts and filters by severity, the consumer's page explains in plain words
what happened at their meter and what to do. Unknown codes get a neutral name and severity.
It holds no state and reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterguard.cosem.eventcodes import EventCode

__all__ = ["ALARMS", "SEVERITIES", "AlarmMeaning", "meaning"]

SEVERITIES = ("critical", "major", "minor")
"""Most urgent first."""


@dataclass(frozen=True, slots=True)
class AlarmMeaning:
    """An alarm's name, severity, and the consumer's explanation."""

    name: str
    severity: str
    explanation: str


_TAMPER = (
    "Someone may have tampered with the meter. If it was not you or the utility's staff, do"
    " not touch it: the utility has been told and will contact you."
)
_FIRMWARE = (
    "The meter refused a software update that did not pass its security checks. It keeps"
    " running its current software; nothing is needed from you."
)
ALARMS: dict[int, AlarmMeaning] = {
    EventCode.METER_COVER_REMOVED: AlarmMeaning(
        "meter cover removed", "critical", "The meter's cover was opened. " + _TAMPER
    ),
    EventCode.TERMINAL_COVER_REMOVED: AlarmMeaning(
        "terminal cover removed",
        "critical",
        "The cover over the meter's cable terminals was opened. " + _TAMPER,
    ),
    EventCode.STRONG_DC_FIELD_DETECTED: AlarmMeaning(
        "strong magnetic field",
        "critical",
        "A strong magnet was held near the meter (it can disturb measuring). " + _TAMPER,
    ),
    EventCode.COMMUNICATION_MODULE_REMOVED: AlarmMeaning(
        "communication module removed",
        "critical",
        "The meter's communication module was taken out. " + _TAMPER,
    ),
    EventCode.REVERSE_ENERGY: AlarmMeaning(
        "reverse energy flow",
        "major",
        "Energy flowed back through the meter. With solar panels this can be normal; if you"
        " have none, the wiring may be wrong: the utility will check.",
    ),
    EventCode.CURRENT_WITHOUT_VOLTAGE: AlarmMeaning(
        "current without voltage",
        "major",
        "The meter measured current but no voltage, which can mean a wiring fault. The"
        " utility will check; call an electrician if you notice anything unusual.",
    ),
    EventCode.AUTHENTICATION_FAILURE: AlarmMeaning(
        "authentication failure",
        "major",
        "Something tried to talk to the meter without the right credentials and was refused.",
    ),
    EventCode.DECRYPTION_OR_AUTHENTICATION_FAILURE: AlarmMeaning(
        "message failed its security check",
        "major",
        "The meter refused a message that failed its security check. It is protected;"
        " nothing is needed from you.",
    ),
    EventCode.REPLAY_ATTACK: AlarmMeaning(
        "replayed message",
        "major",
        "The meter refused an old message sent to it again. It is protected; nothing is"
        " needed from you.",
    ),
    EventCode.FIRMWARE_CHANNEL_STALE: AlarmMeaning(
        "update channel unreachable",
        "minor",
        "The meter could not check for software updates for a while. It keeps working.",
    ),
}
for _code in (
    EventCode.FIRMWARE_INCOMPATIBLE,
    EventCode.FIRMWARE_UNTRUSTED,
    EventCode.FIRMWARE_TAMPERED,
    EventCode.FIRMWARE_ROLLBACK,
    EventCode.FIRMWARE_FROZEN,
    EventCode.FIRMWARE_MIX_AND_MATCH,
    EventCode.FIRMWARE_ENDLESS_DATA,
    EventCode.FIRMWARE_DOWNGRADE,
):
    ALARMS[_code] = AlarmMeaning(
        f"firmware refused: {_code.name.removeprefix('FIRMWARE_').replace('_', ' ').lower()}",
        "major",
        _FIRMWARE,
    )


def meaning(code: int) -> AlarmMeaning:
    """The meaning of event ``code`` (a neutral one for a code not in :data:`ALARMS`)."""
    known = ALARMS.get(code)
    if known is not None:
        return known
    try:
        name = EventCode(code).name.replace("_", " ").lower()
    except ValueError:
        name = f"event {code}"
    return AlarmMeaning(name, "minor", "The meter reported an event; the utility looks at it.")
