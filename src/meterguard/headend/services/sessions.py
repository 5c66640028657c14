"""What the head-end does about the broker's sessions (MQ-4): record takeovers, quarantine clones.

The broker makes every client id its certificate's name (``use_username_as_clientid``), so no
identity can take another's session: a takeover the broker still logs ("already connected,
closing old connection") is the *same* certificate connecting twice. Now and then that is a
meter reconnecting before the broker noticed its old connection died; again and again it is
two devices holding one meter's key — a cloned or stolen identity fighting the genuine meter.

:class:`TakeoverGuard` records each takeover as a security event (summarised per meter and
window by the store, so a flapping clone cannot grow storage without bound) and, once one meter
identity is taken over :data:`TAKEOVER_LIMIT` times within :data:`TAKEOVER_WINDOW` seconds,
quarantines it through the lifecycle service (its certificates go on hold, ingest refuses its
messages; a security administrator releases it or revokes it and re-enrols the meter). A
service identity is never quarantined automatically — that would let whoever holds a copy of
a worker's key stop ingest — its takeovers are recorded for the security administrator.

It reads no log and holds no SQL: :mod:`meterguard.broker.monitor` parses the broker's log, the
store and :class:`~meterguard.headend.services.meters.Meters` are given to it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from meterguard.broker.monitor import BrokerEvent, SessionTakeover
from meterguard.errors import ConflictError, NotFoundError
from meterguard.headend.services.meters import SYSTEM_ROLE, Meters
from meterguard.headend.services.records import SecurityEvents
from meterguard.identity import is_meter_id

__all__ = ["GUARD_ACTOR", "MAX_TRACKED", "TAKEOVER_LIMIT", "TAKEOVER_WINDOW", "TakeoverGuard"]

TAKEOVER_LIMIT = 3
"""Takeovers of one meter identity within the window that quarantine it."""
TAKEOVER_WINDOW = 300
"""Seconds."""
MAX_TRACKED = 100_000
"""Identities whose recent takeovers are remembered (the oldest are forgotten first)."""
GUARD_ACTOR = "system:broker-monitor"


class TakeoverGuard:
    """Turns the broker's session events into security events and quarantines."""

    def __init__(
        self,
        meters: Meters,
        events: SecurityEvents,
        *,
        limit: int = TAKEOVER_LIMIT,
        window: int = TAKEOVER_WINDOW,
    ) -> None:
        self._meters, self._events = meters, events
        self.limit, self.window = limit, window
        self._recent: OrderedDict[str, deque[int]] = OrderedDict()
        self.quarantined: list[str] = []

    def __repr__(self) -> str:
        return f"TakeoverGuard(limit={self.limit} in {self.window} s)"

    def observe(self, events: Iterable[BrokerEvent], *, now: int) -> list[str]:
        """Record ``events`` and apply the quarantine rule; return one line per action taken."""
        lines = []
        for ev in events:
            if isinstance(ev, SessionTakeover):
                lines += self._takeover(ev.client_id, now)
            else:
                # Only possible on a broker without client-id binding (a hand-made config).
                detail = f"{ev.username} connected from {ev.peer} as client id {ev.client_id}"
                self._events.security_event(
                    at=now,
                    event="client_id_mismatch",
                    detail=detail,
                    meter_id=ev.client_id,
                    summarise=True,
                )
                lines.append(f"security: client_id_mismatch ({ev.client_id})")
        return lines

    def _takeover(self, identity: str, now: int) -> list[str]:
        meter = is_meter_id(identity)
        self._events.security_event(
            at=now,
            event="session_taken_over",
            detail=f"{identity} connected again while connected (same certificate)",
            meter_id=identity if meter else None,
            summarise=True,
        )
        lines = [f"security: session_taken_over ({identity})"]
        if not meter:
            return lines
        recent = self._recent.pop(identity, None) or deque(maxlen=self.limit)
        recent.append(now)
        self._recent[identity] = recent
        while len(self._recent) > MAX_TRACKED:
            self._recent.popitem(last=False)
        if len(recent) == self.limit and now - recent[0] <= self.window:
            del self._recent[identity]
            lines.append(self._quarantine(identity, now))
        return lines

    def _quarantine(self, mid: str, now: int) -> str:
        try:
            self._meters.move(GUARD_ACTOR, SYSTEM_ROLE, mid, "quarantine", now=now)
        except (ConflictError, NotFoundError) as exc:
            # Already quarantined, retired, or not ours: nothing more to do than say so.
            return f"security: {mid} keeps taking over its session; not quarantined: {exc}"
        self.quarantined.append(mid)
        self._events.security_event(
            at=now,
            event="identity_quarantined",
            detail=(
                f"{self.limit} session takeovers within {self.window} s: two devices hold this "
                "identity; certificates on hold, messages refused"
            ),
            meter_id=mid,
        )
        return f"security: {mid} quarantined (repeated session takeovers)"
