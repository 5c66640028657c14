"""One meter message through ingest: admit, throttle, verify, decode (DOS-1, DH-4, REL-2).

:class:`IngestProcessor` turns ``(topic, payload)`` from the broker into
reading rows or an alarm, or a typed refusal, without doing any network IO:

1. **admission** by meter id (unknown, revoked, disabled → refused, PKI-5);
2. **size** bound and a **per-meter token bucket**, both before any
   cryptography, so a chatty or compromised meter costs almost nothing; a
   meter that keeps exceeding its contract is reported once per window as
   ``chatty_or_compromised`` (DOS-2);
3. **verification** with the meter's own keys: originator system title,
   authenticated encryption, counter never accepted before (an anti-replay window
   over the meter's push counter, persisted as its highest value, so the bulk and
   the alarm lanes may see one meter's pushes out of order), GCM tag;
4. **decoding** of the DataNotification into a reading (load-profile entry) or
   an alarm.

Refusals come back as :class:`Refused` with the security event to record; the
message itself is never retried. The adapter commits accepted rows in
batches and acknowledges messages to the broker only after the commit.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from meterguard.cosem.axdr import DoubleLongUnsigned, LongUnsigned, OctetString, Structure
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.counters import ReplayWindow
from meterguard.cosem.security import ApduUnprotector
from meterguard.cosem.xdlms import DataNotification, decode_xdlms
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import DecodeError, MeterguardError, ReplayError, SecurityError
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.store.repository import ReadingRow

__all__ = ["Accepted", "IngestProcessor", "Refused", "TokenBucket"]

MAX_PAYLOAD = 4096


@dataclass
class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified message: readings to store, or an alarm."""

    meter_id: str
    invocation_counter: int
    readings: tuple[ReadingRow, ...] = ()
    alarm: tuple[int, int, int] | None = None
    """(sequence, event code, raised at)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused message and the security event (if it is one) to record."""

    meter_id: str | None
    reason: str
    event: str | None


@dataclass
class _Meter:
    unprotector: ApduUnprotector
    counter: ReplayWindow
    bucket: TokenBucket
    throttled: int = 0


KeyLookup = Callable[[str], tuple[bytes, SecretKey, SecretKey]]
"""meter id -> (system title, unicast key, authentication key)."""


@dataclass
class IngestProcessor:
    """Per-worker ingest state: admission, keys, counters, buckets."""

    admission: Admission
    keys: KeyLookup
    last_counter: Callable[[str], int | None]
    rate: float = 1.0
    burst: float = 50.0
    chatty_after: int = 20
    _meters: dict[str, _Meter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stats: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "refused": 0, "throttled": 0}
    )

    def _meter(self, meter_id: str) -> _Meter:
        m = self._meters.get(meter_id)
        if m is None:
            title, ek, ak = self.keys(meter_id)
            m = _Meter(
                ApduUnprotector(key=GcmKey(ek), authentication_key=ak, peer_system_title=title),
                ReplayWindow(self.last_counter(meter_id)),
                TokenBucket(self.rate, self.burst),
            )
            self._meters[meter_id] = m
        return m

    def forget(self, meter_id: str) -> None:
        """Drop cached keys and counters (after a key rotation or a state change)."""
        self._meters.pop(meter_id, None)

    def handle(
        self, topic: str, payload: bytes, *, now: float, redelivered: bool = False
    ) -> Accepted | Refused:
        """Process one message (thread-safe: the bulk and the alarm lane share one processor)."""
        with self._lock:
            return self._handle(topic, payload, now=now, redelivered=redelivered)

    def _handle(
        self, topic: str, payload: bytes, *, now: float, redelivered: bool
    ) -> Accepted | Refused:
        """Process one message; never raises for bad input.

        ``redelivered`` is the broker's DUP flag: the broker delivers again what a worker
        received but did not acknowledge (it died between commit and ack). Such a message
        with an already-accepted counter is a duplicate delivery, not a replay attack.
        """
        try:
            meter_id = self.admission.check(topic)
        except SecurityError as exc:
            return self._refuse(None, str(exc), exc.event)
        except DecodeError as exc:
            return self._refuse(None, str(exc), None)
        if len(payload) > MAX_PAYLOAD:
            return self._refuse(meter_id, f"payload of {len(payload)} bytes", "oversized_message")
        m = self._meter(meter_id)
        if not m.bucket.allow(now):
            # DOS-2: refused before any cryptography; reported once per `chatty_after` refusals.
            self.stats["throttled"] += 1
            m.throttled += 1
            event = "chatty_or_compromised" if m.throttled % self.chatty_after == 1 else None
            return Refused(meter_id, "over its contract rate", event)
        try:
            ic, plain = m.unprotector.unprotect(payload, m.counter)
            note = decode_xdlms(plain)
            if not isinstance(note, DataNotification):
                raise DecodeError(f"{type(note).__name__} is not a data-notification")
            accepted = self._decode(meter_id, ic, note, now)
        except ReplayError as exc:
            if redelivered:
                self.stats["duplicates"] = self.stats.get("duplicates", 0) + 1
                return Refused(meter_id, "duplicate delivery of a stored message", None)
            return self._refuse(meter_id, str(exc), exc.event)
        except SecurityError as exc:
            return self._refuse(meter_id, str(exc), exc.event)
        except MeterguardError as exc:
            return self._refuse(meter_id, str(exc), None)
        self.stats["accepted"] += 1
        return accepted

    def _refuse(self, meter_id: str | None, reason: str, event: str | None) -> Refused:
        self.stats["refused"] += 1
        return Refused(meter_id, reason, event)

    @staticmethod
    def _decode(meter_id: str, ic: int, note: DataNotification, now: float) -> Accepted:
        body = note.body
        if not isinstance(body, Structure):
            raise DecodeError("notification body is not a structure")
        items = body.items
        if (
            len(items) == 3
            and isinstance(items[0], OctetString)
            and isinstance(items[1], DoubleLongUnsigned)
            and isinstance(items[2], DoubleLongUnsigned)
        ):
            end = CosemDateTime.from_bytes(items[0].value).to_datetime()
            start = int((end - dt.timedelta(minutes=15)).timestamp())
            row = ReadingRow(meter_id, start, items[1].value, items[2].value, int(now))
            return Accepted(meter_id, ic, readings=(row,))
        if (
            len(items) == 4
            and isinstance(items[1], DoubleLongUnsigned)
            and isinstance(items[2], LongUnsigned)
            and isinstance(items[3], OctetString)
        ):
            raised = int(CosemDateTime.from_bytes(items[3].value).to_datetime().timestamp())
            return Accepted(meter_id, ic, alarm=(items[1].value, items[2].value, raised))
        raise DecodeError("unknown notification layout")
