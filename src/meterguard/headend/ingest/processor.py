"""One meter message through ingest: admit, throttle, verify, decode (DOS-1, DH-4, REL-2).

:class:`IngestProcessor` turns ``(topic, unverified_payload)`` from the broker into
reading rows or an alarm, or a typed refusal, without doing any network IO:

1. **admission** by meter id (unknown, revoked, disabled → refused, PKI-5), after the
   bucket of step 2;
2. a **per-identity token bucket** first (for every message, also ones refused later),
   then admission and the **size** bound, all before any cryptography, so a chatty or
   compromised meter costs almost nothing; a meter that keeps exceeding its contract is
   reported as ``chatty_or_compromised`` (DOS-2);
3. **verification** with the meter's own keys: originator system title,
   authenticated encryption, a counter not older than the push window (checked
   before the tag, :class:`~meterguard.cosem.counters.PushFloor`), GCM tag;
4. **decoding** of the DataNotification into readings (one load-profile entry,
   or an array of them), an alarm, or a command's result (API-10);
5. **plausibility**: with a ``meter_clock``, readings stamped far from what the meters'
   clocks should read (a reading from 2001, or from next year) are refused.

Whether a verified push's counter is *new* is decided when its batch commits,
by the store that every worker shares (``push_counters``, ADR 6): so several
worker processes and lanes may consume one meter's pushes, out of order, and a
counter is still accepted at most once. Refusals come back as :class:`Refused`
with the security event to record; the message itself is never retried. The
adapter commits accepted rows in batches and acknowledges messages to the
broker only after the commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from meterguard.cosem.axdr import (
    Array,
    DoubleLongUnsigned,
    LongUnsigned,
    OctetString,
    Structure,
)
from meterguard.cosem.command import parse_result
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.counters import PushFloor
from meterguard.cosem.push import profile_entries
from meterguard.cosem.security import ApduUnprotector
from meterguard.cosem.xdlms import DataNotification, decode_xdlms
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AuthenticationFailedError,
    DecodeError,
    MeterguardError,
    ReplayError,
    SecurityError,
    TransportError,
)
from meterguard.headend.ingest.admission import Admission, meter_id_from_topic
from meterguard.headend.store.repository import PUSH_WINDOW, PushRow, ReadingRow

log = logging.getLogger(__name__)

__all__ = ["Accepted", "IngestProcessor", "Refused", "TokenBucket"]

MAX_PAYLOAD = 4096
FIRST_COUNTER = 1
"""The first invocation counter a meter uses under a new key (our meters never use 0)."""
MAX_AHEAD = 3600
"""Seconds a reading's interval may start after the meters' clock (drift, an open interval)."""
MAX_AGE = 62 * 86400
"""Seconds back a reading may be (a meter's load-profile buffer: a backlog after an outage)."""
MAX_BUCKETS = 1_000_000
"""Token buckets kept (one per identity that sent something)."""
MAX_ENTRIES = 96
"""Load-profile entries one push may carry (a day of 15-minute intervals)."""
_PERIOD = dt.timedelta(minutes=15)

Accepted = PushRow
"""A verified push: readings or an alarm, its counter judged new or not at commit."""


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
class Refused:
    """A refused message and the security event (if it is one) to record."""

    meter_id: str | None
    reason: str
    event: str | None
    duplicate: bool = False
    """A broker redelivery of something already stored: acknowledge, keep nothing."""
    kind: str = ""
    """What refusals are counted under (per meter): the event, or a name for the others."""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", self.event or "refused")


@dataclass
class _Sender:
    bucket: TokenBucket
    throttled: int = 0


@dataclass
class _Meter:
    unprotector: ApduUnprotector
    floor: PushFloor
    title: bytes
    unicast_key: SecretKey
    authentication_key: SecretKey
    candidates_checked: float = -1e9


KeyLookup = Callable[[str], tuple[bytes, SecretKey, SecretKey]]
"""meter id -> (system title, unicast key, authentication key)."""
CandidateLookup = Callable[[str], list[tuple[int, SecretKey]]]
"""meter id -> (version, unicast key) of keys a rotation in flight may have given the meter."""
CANDIDATE_EVERY = 5.0
"""Seconds between key-store lookups of rotation candidates for one meter (bad tags are cheap)."""


@dataclass
class IngestProcessor:
    """Per-worker ingest state: admission, keys, counters, buckets."""

    admission: Admission
    keys: KeyLookup
    last_counter: Callable[[str], int | None]
    rate: float = 1.0
    burst: float = 50.0
    chatty_after: int = 20
    candidates: CandidateLookup | None = None
    """Keys a meter may hold after a key change (KEY-2): tried when the active key's tag fails."""
    on_rotated: Callable[[str, int], None] | None = None
    """Called with (meter id, key version) when a meter proved it switched to a new key."""
    meter_clock: Callable[[], float] | None = None
    """What the meters' clocks should read now (Unix seconds): the wall clock in a deployment,
    the simulated clock in the demo. With it, readings stamped outside ``[meter_clock() -
    MAX_AGE, meter_clock() + MAX_AHEAD]`` are refused (``implausible_time``)."""
    _meters: dict[str, _Meter] = field(default_factory=dict)
    _senders: dict[str, _Sender] = field(default_factory=dict)
    """Per meter id (also refused ones): its token bucket and how often it was throttled."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stats: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "refused": 0, "throttled": 0}
    )

    def _meter(self, meter_id: str) -> _Meter:
        m = self._meters.get(meter_id)
        if m is None:
            title, ek, ak = self.keys(meter_id)  # TransportError if the key store is down
            m = _Meter(
                ApduUnprotector(key=GcmKey(ek), authentication_key=ak, peer_system_title=title),
                PushFloor(self.last_counter(meter_id), size=PUSH_WINDOW, minimum=FIRST_COUNTER),
                title,
                ek,
                ak,
            )
            self._meters[meter_id] = m
        return m

    def forget(self, meter_id: str) -> None:
        """Drop cached keys and counters (after a key rotation or a state change)."""
        with self._lock:
            self._meters.pop(meter_id, None)

    def committed(self, highest: dict[str, int]) -> None:
        """Raise the meters' push floors after a commit (the store's highest counters)."""
        with self._lock:
            for meter_id, ic in highest.items():
                m = self._meters.get(meter_id)
                if m is not None:
                    m.floor.advance(ic)

    def handle(
        self,
        topic: str,
        unverified_payload: bytes,
        *,
        now: float,
        redelivered: bool = False,
        resent: bool = False,
    ) -> Accepted | Refused:
        """Process one message (thread-safe: the bulk and the alarm lane share one processor).

        ``resent`` is the meter's own mark (:data:`~meterguard.mqtt.contract.RESEND`) on a
        message sent again from its outbox; the store decides at commit what it excuses.

        Raises:
            TransportError: the meter's keys or counter could not be looked up (database or
                key store down); the message was not judged and must be retried.
        """
        with self._lock:
            row = self._handle(topic, unverified_payload, now=now, redelivered=redelivered)
        if resent and isinstance(row, PushRow):
            return dataclasses.replace(row, resent=True)
        return row

    def _handle(
        self, topic: str, unverified_payload: bytes, *, now: float, redelivered: bool
    ) -> Accepted | Refused:
        """Process one message; never raises for bad input.

        ``redelivered`` is the broker's DUP flag: the broker delivers again what a worker
        received but did not acknowledge (it died between commit and ack). Such a message
        with an already-accepted counter is a duplicate delivery, not a replay attack; the
        store tells them apart at commit.
        """
        try:
            # The broker's ACL ties the topic to the certificate's CN: the id names the sender.
            claimed, _ = meter_id_from_topic(topic)
        except DecodeError as exc:
            return self._refuse(None, str(exc), None, kind="bad_topic")
        # Every message of an identity passes its bucket first (DOS-1/2): refused ones too,
        # so an oversized flood or a revoked meter's flood costs a dict lookup, not storage.
        sender = self._sender(claimed)
        if not sender.bucket.allow(now):
            # DOS-2: refused before any cryptography; reported once per `chatty_after` refusals.
            self.stats["throttled"] += 1
            sender.throttled += 1
            event = "chatty_or_compromised" if sender.throttled % self.chatty_after == 1 else None
            return Refused(claimed, "over its contract rate", event, kind="throttled")
        try:
            meter_id = self.admission.check(topic)
        except SecurityError as exc:  # the event names the refused meter (PKI-5)
            return self._refuse(claimed, str(exc), exc.event)
        if len(unverified_payload) > MAX_PAYLOAD:
            return self._refuse(
                meter_id,
                f"unverified_payload of {len(unverified_payload)} bytes",
                "oversized_message",
            )
        try:
            m = self._meter(meter_id)
        except TransportError:
            raise  # the database or key store is down: the worker retries, nothing is lost
        except SecurityError as exc:  # e.g. the meter's key record does not unwrap
            return self._refuse(meter_id, str(exc), exc.event)
        except MeterguardError as exc:  # e.g. no active key for this meter
            return self._refuse(meter_id, f"no usable keys: {exc}", None, kind="no_keys")
        try:
            ic, plain = self._unprotect(meter_id, m, unverified_payload, now)
            entries = profile_entries(plain)  # the common shape, decoded fast
            if entries is not None and len(entries) <= MAX_ENTRIES:
                readings, alarm = _rows(meter_id, entries, int(now)), None
            else:
                note = decode_xdlms(plain)
                if not isinstance(note, DataNotification):
                    raise DecodeError(f"{type(note).__name__} is not a data-notification")
                result = parse_result(note.body)
                if result is not None:
                    self.stats["accepted"] += 1
                    code = (result.counter, result.result, int(result.control_state), result.value)
                    return PushRow(
                        meter_id, ic, topic, unverified_payload, redelivered, result=code
                    )
                readings, alarm = self._decode(meter_id, note, now)
        except ReplayError as exc:
            if redelivered:
                self.stats["duplicates"] = self.stats.get("duplicates", 0) + 1
                return Refused(meter_id, "duplicate delivery of a stored message", None, True)
            return self._refuse(meter_id, str(exc), exc.event)
        except SecurityError as exc:
            return self._refuse(meter_id, str(exc), exc.event)
        except MeterguardError as exc:
            return self._refuse(meter_id, str(exc), None, kind="malformed")
        if readings and self.meter_clock is not None:
            t = self.meter_clock()
            bad = next(
                (r for r in readings if not t - MAX_AGE <= r.interval_start <= t + MAX_AHEAD),
                None,
            )
            if bad is not None:  # verified, so the meter's own clock (or its keys) is wrong
                try:
                    at = dt.datetime.fromtimestamp(bad.interval_start, dt.UTC).isoformat()
                except (ValueError, OverflowError, OSError):  # past year 9999
                    at = f"at {bad.interval_start} s"
                return self._refuse(
                    meter_id,
                    f"a reading of the interval from {at} is outside the plausible window"
                    " around the meters' clock",
                    "implausible_time",
                )
        self.stats["accepted"] += 1
        return PushRow(meter_id, ic, topic, unverified_payload, redelivered, readings, alarm)

    def _unprotect(
        self, meter_id: str, m: _Meter, unverified_payload: bytes, now: float
    ) -> tuple[int, bytes]:
        """Verify with the active key; after a key change, with the key the meter moved to.

        A meter switches its unicast key right after answering a key_change command, so its
        next pushes may arrive before the head-end has seen the answer. If the active key's
        tag fails, the key store's rotation candidates are tried (looked up at most every
        :data:`CANDIDATE_EVERY` seconds per meter); the one that verifies becomes this
        meter's key and ``on_rotated`` confirms it in the key store (KEY-2).
        """
        try:
            return m.unprotector.unprotect(unverified_payload, m.floor)
        except AuthenticationFailedError:
            if self.candidates is None or now - m.candidates_checked < CANDIDATE_EVERY:
                raise
            m.candidates_checked = now
            for version, key in self.candidates(meter_id):
                if key == m.unicast_key:
                    continue
                trial = ApduUnprotector(
                    key=GcmKey(key),
                    authentication_key=m.authentication_key,
                    peer_system_title=m.title,
                )
                try:
                    out = trial.unprotect(unverified_payload, m.floor)
                except AuthenticationFailedError:
                    continue
                m.unprotector, m.unicast_key = trial, key
                log.info("meter %s moved to unicast key version %d", meter_id, version)
                if self.on_rotated is not None:
                    self.on_rotated(meter_id, version)
                return out
            raise

    def _refuse(
        self, meter_id: str | None, reason: str, event: str | None, *, kind: str = ""
    ) -> Refused:
        self.stats["refused"] += 1
        return Refused(meter_id, reason, event, kind=kind)

    def _sender(self, meter_id: str) -> _Sender:
        """The identity's bucket (kept across key rotations; bounded in number)."""
        got = self._senders.get(meter_id)
        if got is None:
            if len(self._senders) >= MAX_BUCKETS:  # ids are tied to certificates: rare
                self._senders.clear()
            got = self._senders[meter_id] = _Sender(TokenBucket(self.rate, self.burst))
        return got

    @staticmethod
    def _decode(
        meter_id: str, note: DataNotification, now: float
    ) -> tuple[tuple[ReadingRow, ...], tuple[int, int, int] | None]:
        body = note.body
        if isinstance(body, Array):
            # A load-profile block: an array of (end of interval, import Wh, export Wh).
            if not 0 < len(body.items) <= MAX_ENTRIES:
                raise DecodeError(f"a push of {len(body.items)} profile entries")
            return tuple(_entry(meter_id, e, int(now)) for e in body.items), None
        if not isinstance(body, Structure):
            raise DecodeError("notification body is not a structure")
        items = body.items
        if len(items) == 3:
            return (_entry(meter_id, body, int(now)),), None
        if (
            len(items) == 4
            and isinstance(items[1], DoubleLongUnsigned)
            and isinstance(items[2], LongUnsigned)
            and isinstance(items[3], OctetString)
        ):
            raised = int(CosemDateTime.from_bytes(items[3].value).to_datetime().timestamp())
            return (), (items[1].value, items[2].value, raised)
        raise DecodeError("unknown notification layout")


def _rows(
    meter_id: str, entries: list[tuple[int, int, int, int]], received: int
) -> tuple[ReadingRow, ...]:
    """Readings from :func:`profile_entries` output, with the generic path's interval start."""
    out = []
    for end, hundredths, imp, exp in entries:
        start = end - 900
        if start < 0 and hundredths:
            start += 1  # int() of a negative float truncates towards zero
        out.append(ReadingRow(meter_id, start, imp, exp, received))
    return tuple(out)


def _entry(meter_id: str, entry: object, received: int) -> ReadingRow:
    """One load-profile entry: (end of interval as date-time, import Wh, export Wh).

    Raises:
        DecodeError: any other layout, or a date-time that is not a full one.
    """
    if isinstance(entry, Structure) and len(entry.items) == 3:
        stamp, imp, exp = entry.items
        if (
            isinstance(stamp, OctetString)
            and isinstance(imp, DoubleLongUnsigned)
            and isinstance(exp, DoubleLongUnsigned)
        ):
            end = CosemDateTime.from_bytes(stamp.value).to_datetime()
            start = int((end - _PERIOD).timestamp())
            return ReadingRow(meter_id, start, imp.value, exp.value, received)
    raise DecodeError("a load-profile entry is not (date-time, import, export)")
