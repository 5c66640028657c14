"""Stored alarms acknowledged to their meters, off the ingest thread (TAMP-3).

A meter keeps each alarm pending and re-sends it until the head-end acknowledges it; the
head-end acknowledges only what it stored. :class:`AlarmAcks` is an ingest worker's commit
hook: after each commit it notes the (meter, sequence) of every alarm the commit accepted —
new, or a re-sent one already stored — and a thread of its own sends one signed
acknowledgement per meter and round (:meth:`~meterguard.headend.services.commands.Commands.
acknowledge_alarms`), so the alarm lane never waits for a signature, a database transaction
or a publish.

Bounded: at most :data:`MAX_METERS` meters and ``MAX_ACKS`` sequences a meter wait for a round;
beyond that a note is dropped, which costs nothing but a later re-send (the meter keeps the
alarm pending). A round that fails (the database or the broker is down) is logged and dropped
for the same reason. It decides nothing about alarms: the store decides what is stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from meterguard.errors import LocalError, TransportError
from meterguard.headend.services.commands import MAX_ACKS
from meterguard.headend.store.repository import CommitOutcome

__all__ = ["MAX_METERS", "AlarmAcks"]

log = logging.getLogger(__name__)

MAX_METERS = 10_000
"""Meters whose acknowledgements may wait for one round."""

Acknowledge = Callable[..., int]
"""``acknowledge(meter_id, sequences, now=...)`` → command id."""


class AlarmAcks:
    """Collects stored alarms from commits; acknowledges them every ``every`` seconds."""

    def __init__(self, acknowledge: Acknowledge, *, every: float = 0.5) -> None:
        self._acknowledge = acknowledge
        self.every = every
        self._pending: dict[str, set[int]] = {}
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"AlarmAcks(sent={self.sent}, dropped={self.dropped}, failed={self.failed})"

    def offer(self, outcome: CommitOutcome, _at: float = 0.0) -> None:
        """The commit hook: note every alarm the commit accepted (cheap; never blocks on IO)."""
        alarms = [(p.meter_id, p.alarm[0]) for p in outcome.accepted if p.alarm is not None]
        if not alarms:
            return
        with self._lock:
            for meter, seq in alarms:
                seqs = self._pending.get(meter)
                if seqs is None:
                    if len(self._pending) >= MAX_METERS:
                        self.dropped += 1
                        continue
                    seqs = self._pending[meter] = set()
                if len(seqs) < MAX_ACKS:
                    seqs.add(seq)
                else:
                    self.dropped += 1

    def flush(self, *, now: int | None = None) -> int:
        """Send one acknowledgement per meter for what was noted; returns how many were sent."""
        with self._lock:
            batch, self._pending = self._pending, {}
        sent = 0
        for meter, seqs in batch.items():
            try:
                self._acknowledge(meter, sorted(seqs), now=now or int(time.time()))
            except (TransportError, LocalError) as exc:
                # The meter re-sends the alarm while it is pending: the next one is acknowledged.
                self.failed += 1
                log.warning("alarm acknowledgement to %s not sent: %s", meter, exc)
                continue
            sent += 1
        self.sent += sent
        return sent

    def run(self, stop: threading.Event) -> None:
        """Flush every ``every`` seconds until ``stop`` is set, then once more."""
        while not stop.wait(self.every):
            self.flush()
        self.flush()
