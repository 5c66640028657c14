"""An ingest worker: MQTT v5 shared subscription in, verified rows committed, then acknowledged.

One thread drives the paho client (``loop()``) and the batches, so no lock is
ever held across paho calls. Messages are acknowledged to the broker (manual
QoS 1 acks) only after their rows are committed (REL-1); a failed commit
acknowledges nothing, and the worker forgets the cached counters of the meters
involved so that a redelivery is judged against what the database holds.
Several workers may run side by side with distinct client ids in the same
share group (MQ-6). A worker may take one lane only: the demo runs an alarm
worker of its own so that bulk readings can never delay a tamper alarm (DOS-3).

Refused messages are not retried: they are acknowledged, counted, kept in the
quarantine table with their reason, and security-relevant ones are recorded as
security events.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from meterguard.headend.ingest.processor import Accepted, IngestProcessor, Refused
from meterguard.headend.store.repository import ReadingRow, Store

__all__ = ["IngestWorker", "WorkerSettings"]

log = logging.getLogger(__name__)


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
    batch: int = 500
    max_delay: float = 0.05
    session_expiry: int = 3600
    topics: tuple[str, ...] = ("data", "alarms", "events", "status")
    """Which upstream topics this worker takes: all, or one lane (e.g. alarms only, DOS-3)."""


@dataclass
class _Batch:
    readings: list[ReadingRow] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    alarms: list[tuple[str, int, int, int]] = field(default_factory=list)
    refusals: list[tuple[str, Refused, bytes]] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)
    opened: float = 0.0

    def __len__(self) -> int:
        return len(self.acks)


class IngestWorker:
    """Consumes meter messages and stores what verifies."""

    def __init__(self, settings: WorkerSettings, processor: IngestProcessor, store: Store) -> None:
        self.settings = settings
        self.processor = processor
        self.store = store
        self.committed = 0
        self._batch = _Batch()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile=str(settings.root))
        ctx.load_cert_chain(str(settings.cert), str(settings.key))
        c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self._client = c
        self.connected = threading.Event()

    def _on_connect(
        self, c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the ingest worker: %s", rc)
            return
        for topic in self.settings.topics:
            c.subscribe(f"$share/{self.settings.group}-{topic}/meters/+/{topic}", qos=1)
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        result = self.processor.handle(
            msg.topic, bytes(msg.payload), now=now, redelivered=bool(msg.dup)
        )
        b = self._batch
        if not b.acks:
            b.opened = time.monotonic()
        b.acks.append((msg.mid, msg.qos))
        if isinstance(result, Accepted):
            b.readings += result.readings
            b.counters[result.meter_id] = max(
                b.counters.get(result.meter_id, 0), result.invocation_counter
            )
            if result.alarm is not None:
                b.alarms.append((result.meter_id, *result.alarm))
        elif result.reason.startswith("duplicate delivery"):
            pass  # already stored before a crash: acknowledge and move on
        else:
            b.refusals.append((msg.topic, result, bytes(msg.payload)))
        if len(b) >= self.settings.batch:
            self.flush()

    def flush(self) -> None:
        """Commit the batch, then acknowledge its messages."""
        b, self._batch = self._batch, _Batch()
        if not b.acks:
            return
        now = int(time.time())
        try:
            self.store.add_readings(b.readings)
            for meter, (seq, code, raised) in ((a[0], a[1:]) for a in b.alarms):
                self.store.add_alarm(meter, sequence=seq, code=code, raised_at=raised)
            for meter, ic in b.counters.items():
                self.store.advance_counter(meter, ic)
            for topic, refused, payload in b.refusals:
                self.store.quarantine(at=now, topic=topic, reason=refused.reason, payload=payload)
                if refused.event is not None:
                    self.store.security_event(
                        at=now,
                        event=refused.event,
                        detail=refused.reason,
                        meter_id=refused.meter_id,
                    )
        except Exception:  # the database failed: acknowledge nothing, the broker redelivers
            log.exception("commit failed; %d messages stay unacknowledged", len(b.acks))
            for meter in b.counters:
                self.processor.forget(meter)
            return
        for mid, qos in b.acks:
            self._client.ack(mid, qos)
        self.committed += len(b.acks)

    def run(self, stop: threading.Event) -> None:
        """Connect and consume until ``stop`` is set."""
        # A persistent session: messages delivered but not yet acknowledged (not committed)
        # when a worker dies are redelivered when it comes back with the same client id (REL-1).
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry
        self._client.connect(
            self.settings.host,
            self.settings.port,
            keepalive=30,
            clean_start=False,
            properties=props,
        )
        while not stop.is_set():
            self._client.loop(timeout=self.settings.max_delay)
            if (
                self._batch.acks
                and time.monotonic() - self._batch.opened >= self.settings.max_delay
            ):
                self.flush()
        self.flush()
        self._client.disconnect()
