"""An ingest worker: MQTT v5 shared subscription in, verified rows committed, then acknowledged.

One thread drives the connection (:class:`~meterguard.headend.transport.mqtt.MqttConsumer`)
and the batches. Messages are acknowledged to the broker (QoS 1 PUBACKs, one
write per batch) only after their rows are committed in one transaction
(REL-1); a failed commit acknowledges nothing and keeps the batch for a retry
(the store, not the worker, decides at commit which counters are new, so a
retried batch is judged afresh). The connection is persistent (``clean_start`` false, a session
expiry): what a dead worker received but never acknowledged is redelivered
to it, flagged DUP, when it comes back with the same client id. A lost
broker is retried with jittered back-off; a dead database makes the worker
stop reading (nothing is acknowledged, the broker keeps queueing) and retry
the commit.

Several workers may run side by side, in one process or many, with distinct
client ids in the same share group (MQ-6): the store's ``push_counters``
decide which worker's copy of a counter is the accepted one (ADR 6). A worker
may take one lane only: the demo runs an alarm worker of its own so that
bulk readings can never delay a tamper alarm (DOS-3).

Refused messages are not retried: they are acknowledged, counted, kept in the
quarantine table with their reason, and security-relevant ones are recorded
as security events.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import InterfaceError, OperationalError

from meterguard.errors import RemoteProtocolError, TransportError
from meterguard.headend.ingest.processor import IngestProcessor, Refused
from meterguard.headend.store.repository import CommitOutcome, PushRow, RefusalRow, Store
from meterguard.headend.transport.mqtt import ConsumerSettings, MqttConsumer
from meterguard.mqtt.contract import RESEND, shared_subscription
from meterguard.mqtt.tls import pinned_client_context

__all__ = ["BatchReport", "IngestWorker", "WorkerSettings"]

log = logging.getLogger(__name__)

IDLE_GAP = 0.002
"""Seconds without a message after which a non-empty batch is committed at once."""
PRUNE_EVERY = 30.0
"""Seconds between prunes of old accepted push counters."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Broker address, the worker's service certificate and its share group."""

    host: str
    port: int
    root: Path
    cert: Path
    key: Path
    client_id: str
    group: str = "ingest"
    batch: int = 2000
    max_delay: float = 0.01
    """Seconds a message may wait in a batch before it is committed."""
    session_expiry: int = 3600
    receive_max: int = 8000
    """Unacknowledged messages the broker may have in flight to this worker."""
    topics: tuple[str, ...] = ("data", "alarms", "events", "status")
    """Which upstream topics this worker takes: all, or one lane (e.g. alarms only, DOS-3)."""
    retry_max: float = 5.0


@dataclass
class _Batch:
    pushes: list[PushRow] = field(default_factory=list)
    refusals: list[RefusalRow] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    opened: float = 0.0


CommitHook = Callable[[CommitOutcome, float], None]
"""Called after each commit with its outcome and ``time.time()`` (benchmarks, progress)."""


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one committed batch held and took (for metrics; no content, no meter ids)."""

    messages: int
    readings: int
    refusals: tuple[str, ...]
    """Each refused message's kind (its security event, or a name for the others)."""
    duplicates: int
    commit_seconds: float
    """The database commit alone."""
    delay_seconds: float
    """From the batch's first message taken to its commit done (what a message waits)."""


BatchHook = Callable[[BatchReport], None]


class IngestWorker:
    """Consumes meter messages and stores what verifies."""

    def __init__(
        self,
        settings: WorkerSettings,
        processor: IngestProcessor,
        store: Store,
        *,
        on_commit: CommitHook | None = None,
        on_batch: BatchHook | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.store = store
        self.on_commit = on_commit
        self.on_batch = on_batch
        self.committed = 0
        self.duplicates = 0
        self.db_failures = 0
        self.reconnects = 0
        self._batch = _Batch()
        ctx = pinned_client_context(settings.root, settings.cert, settings.key)
        self._consumer = MqttConsumer(
            ConsumerSettings(
                settings.host,
                settings.port,
                settings.client_id,
                session_expiry=settings.session_expiry,
                receive_max=settings.receive_max,
            ),
            ctx,
        )
        self.connected = threading.Event()
        self._pruned = time.monotonic()
        self._retry_at = 0.0
        self._idle = False
        self._deferred: list[tuple[str, bytes, int | None, bool, bool]] = []
        """Messages not yet judged because the database or key store was down."""

    def __repr__(self) -> str:
        return f"IngestWorker({self.settings.client_id!r}, committed={self.committed})"

    @property
    def pending(self) -> int:
        """Messages taken but not committed yet (the batch and those deferred)."""
        return len(self._batch.acks) + len(self._deferred)

    # ------------------------------------------------------------------ messages

    def _take(
        self, topic: str, payload: bytes, packet_id: int | None, dup: bool, resent: bool = False
    ) -> None:
        try:
            result = self.processor.handle(
                topic, payload, now=time.time(), redelivered=dup, resent=resent
            )
        except TransportError as exc:
            # The meter's state could not be looked up: judge the message later, ack nothing.
            if not self._deferred:
                log.warning("ingest deferred: %s", exc)
            self._deferred.append((topic, payload, packet_id, dup, resent))
            return
        b = self._batch
        if not b.acks:
            b.opened = time.monotonic()
        if packet_id is not None:
            b.acks.append(packet_id)
        if isinstance(result, Refused):
            if not result.duplicate:
                b.refusals.append(
                    RefusalRow(
                        topic, result.reason, payload, result.event, result.meter_id, result.kind
                    )
                )
        else:
            b.pushes.append(result)

    def flush(self) -> bool:
        """Commit the batch, then acknowledge its messages; False if the commit failed."""
        b = self._batch
        if not b.acks and not b.pushes and not b.refusals:
            return True
        now, t0 = time.time(), time.monotonic()
        try:
            outcome = self.store.commit_ingest(b.pushes, b.refusals, now=int(now))
        except (OperationalError, InterfaceError) as exc:
            # The database is down or locked: nothing is acknowledged; the batch is kept and
            # retried (the broker sends at most receive_max unacknowledged messages meanwhile).
            self.db_failures += 1
            log.warning(
                "commit failed (%s); %d messages stay unacknowledged",
                type(exc).__name__,
                len(b.acks),
            )
            return False
        self._batch = _Batch()
        self.processor.committed(outcome.highest)
        self.committed += len(b.acks)
        self.duplicates += outcome.duplicates
        if self.on_commit is not None:
            self.on_commit(outcome, time.time())
        if self.on_batch is not None:
            done = time.monotonic()
            self.on_batch(
                BatchReport(
                    messages=len(b.pushes) + len(b.refusals),
                    readings=sum(len(p.readings) for p in b.pushes),
                    refusals=tuple(r.kind or r.event or "refused" for r in b.refusals),
                    duplicates=outcome.duplicates,
                    commit_seconds=done - t0,
                    delay_seconds=done - b.opened if b.opened else 0.0,
                )
            )
        if self._consumer.connected:
            try:
                self._consumer.ack(b.acks)
            except TransportError as exc:
                # Committed but not acknowledged: redelivered as DUP, stored once (duplicates).
                log.warning("acknowledgement lost: %s", exc)
        return True

    # ------------------------------------------------------------------ loop

    def _connect(self) -> None:
        c = self._consumer
        resumed = c.connect()
        c.subscribe(shared_subscription(self.settings.group, t) for t in self.settings.topics)
        log.info(
            "ingest worker %s connected (session resumed: %s)", self.settings.client_id, resumed
        )
        self.connected.set()

    def _drop_connection(self, reason: Exception) -> None:
        self.connected.clear()
        self._consumer.close()
        log.warning("ingest worker %s lost the broker: %s", self.settings.client_id, reason)
        # Nothing received on the dead connection can be acknowledged any more: commit what
        # verified (a redelivery is then a duplicate), or drop it (then it is new again).
        if not self.flush():
            self._batch = _Batch()
        self._deferred = []  # received on the dead connection: the broker redelivers them

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; reconnect to the broker and retry the database."""
        delay = 0.2
        while not stop.is_set():
            if not self._consumer.connected:
                try:
                    self._connect()
                    delay = 0.2
                except (TransportError, RemoteProtocolError) as exc:
                    self.connected.clear()
                    self._consumer.close()
                    log.warning("ingest worker %s cannot connect: %s", self.settings.client_id, exc)
                    stop.wait(random.uniform(0, delay))  # noqa: S311 - jitter, not crypto
                    delay = min(delay * 2, self.settings.retry_max)
                    continue
                self.reconnects += 1
            try:
                self._step()
            except (TransportError, RemoteProtocolError) as exc:
                self._drop_connection(exc)
        self.flush()  # a last commit; if the database is down, the broker redelivers
        self._consumer.close()
        self.connected.clear()

    def _back_off(self, now: float) -> None:
        self._retry_at = now + min(0.1 * 2**self.db_failures, self.settings.retry_max)

    def _step(self) -> None:
        s = self.settings
        b = self._batch
        now = time.monotonic()
        # Commit when the batch is full, old, or the stream went quiet: batches grow with the
        # load, and a light load is not held back for max_delay.
        due = b.acks and (len(b.acks) >= s.batch or now - b.opened >= s.max_delay or self._idle)
        if due and now >= self._retry_at:
            if self.flush():
                self.db_failures = 0
            else:  # keep the batch and keep the connection alive; retry with back-off
                self._back_off(now)
        if self._deferred and now >= self._retry_at:
            waiting, self._deferred = self._deferred, []
            for item in waiting:
                self._take(*item)
            if self._deferred:
                self.db_failures += 1
                self._back_off(now)
        wait = IDLE_GAP if self._batch.acks else s.max_delay
        received = self._consumer.poll(wait)
        self._idle = not received
        for p in received:
            self._take(
                p.topic,
                p.payload,
                p.packet_id if p.qos else None,
                p.duplicate,
                RESEND in p.user_properties,
            )
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self._pruned = time.monotonic()
            try:
                self.store.prune_push_counters()
                self.store.prune_quarantine(now=int(time.time()))
            except (OperationalError, InterfaceError) as exc:  # housekeeping: retried later
                log.warning("pruning push counters failed: %s", type(exc).__name__)
