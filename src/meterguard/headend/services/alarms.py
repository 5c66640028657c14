"""Alarms: what each means, who may handle it, and which of them a caller sees.

One table, :data:`ALARMS`, keyed by the meter's event code (Blue Book event codes, the
tamper and firmware codes of :class:`~meterguard.cosem.eventcodes.EventCode`): the
operator's list filters by severity, the consumer's page explains in plain words what
happened at their meter and what to do. Unknown codes get a neutral name and severity.

:class:`Alarms` is the one place that decides which alarms a caller sees (a consumer: their
own meters'), which questions a list answers (:data:`SHOW`, a severity), and how many are
open; the API, the dashboard and its badge all call it. Who acknowledges and who clears
(:data:`ACK_ROLES`, :data:`CLEAR_ROLES`) is the API's guards' table. It holds no SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterguard.cosem.eventcodes import EventCode
from meterguard.errors import InvalidValueError

if TYPE_CHECKING:
    from meterguard.headend.services.accounts import Accounts, Principal
    from meterguard.headend.store.repository import AlarmView, Store

__all__ = [
    "ACK_ROLES",
    "ALARMS",
    "CLEAR_ROLES",
    "SEVERITIES",
    "SHOW",
    "AlarmMeaning",
    "Alarms",
    "meaning",
]

ACK_ROLES = frozenset({"operator", "engineer", "security_admin"})
"""Who acknowledges an alarm ("seen, on it")."""
CLEAR_ROLES = frozenset({"engineer", "security_admin"})
"""Who clears one ("dealt with"; the meter latched it until then, TAMP-2)."""
SHOW: dict[str, tuple[str, ...] | None] = {
    "active": ("open", "acknowledged"),
    "all": None,
    "cleared": ("cleared",),
}
"""Which alarm states a list shows."""

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


def _codes(severity: str) -> tuple[list[int] | None, list[int]]:
    """(codes to show, codes never to show) for ``severity``: unknown codes are minor."""
    if not severity:
        return None, []
    if severity == "minor":
        return None, [c for c, m in ALARMS.items() if m.severity != "minor"]
    return [c for c, m in ALARMS.items() if m.severity == severity], []


class Alarms:
    """The alarms a caller sees, as the API, the dashboard and its badge ask for them."""

    def __init__(self, store: Store, accounts: Accounts) -> None:
        self._store = store
        self._accounts = accounts

    def __repr__(self) -> str:
        return "Alarms()"

    def _scope(self, who: Principal, meter: str = "") -> list[str] | None:
        """API-1: a consumer sees their own meters' alarms (one of them if asked); staff all."""
        if who.role != "consumer":
            return None
        return [m for m in self._accounts.meters(who) if not meter or m == meter]

    def list(
        self,
        who: Principal,
        *,
        meter: str = "",
        show: str = "all",
        severity: str = "",
        limit: int = 500,
    ) -> list[tuple[AlarmView, AlarmMeaning]]:
        """Alarms newest first, at most ``limit``, with what each means.

        Raises:
            InvalidValueError: ``show`` not one of :data:`SHOW`, or an unknown severity.
        """
        if show not in SHOW or (severity and severity not in SEVERITIES):
            raise InvalidValueError(f"show is one of {', '.join(SHOW)}; severity one of "
                                    f"{', '.join(SEVERITIES)}")  # fmt: skip
        codes, never = _codes(severity)
        rows = self._store.alarm_rows(
            self._scope(who, meter), states=SHOW[show], codes=codes, except_codes=never,
            limit=limit,
        )  # fmt: skip
        return [(a, meaning(a.code)) for a in rows]

    def open_count(self, who: Principal) -> int:
        """How many alarms the caller sees are open (not yet acknowledged)."""
        return self._store.count_alarms(self._scope(who), states=("open",))
