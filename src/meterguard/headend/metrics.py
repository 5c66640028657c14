"""Prometheus metrics of a head-end: ingest, the API, and what its records hold.

:class:`Metrics` keeps a registry of its own (not ``prometheus_client``'s global one: one
process may build several head-ends, a test many apps). Ingest workers report each committed
batch (:meth:`Metrics.ingest_batch`), the API's middleware each request
(:meth:`Metrics.api_request`); what the database holds — meters by state, alarms by state,
security events by name, refused messages by kind — and the workers' queues and connections
are read when Prometheus scrapes (:meth:`Metrics.render`), by grouped counts only.

Labels are fixed words (states, reasons, route templates, status classes): never a meter id,
a user name, a key or a value, so a scrape neither leaks nor grows without bound. It does not
serve HTTP: the API's ``/metrics`` route does, behind its own access control.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meterguard.identity import is_meter_id

if TYPE_CHECKING:
    from meterguard.headend.ingest.worker import BatchReport, IngestWorker
    from meterguard.headend.store.repository import Store

__all__ = ["CONTENT_TYPE", "Metrics", "Sample"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format."""
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


SAMPLE_EVERY = 5.0
SAMPLES = 120
"""Ten minutes of samples for the dashboard's live charts."""


@dataclass(frozen=True, slots=True)
class Sample:
    """Running totals at one moment (rates come from the differences of two)."""

    at: float
    readings: int
    refused: int
    meters_online: int | None
    lag_sum: float
    batches: int


class _Records(Collector):
    """What the head-end's records and workers show now (read at each scrape)."""

    def __init__(self, store: Store, workers: Callable[[], Sequence[IngestWorker]]) -> None:
        self.store = store
        self.workers = workers
        self.connections: Callable[[], set[str]] | None = None

    def collect(self) -> Iterator[Metric]:
        g = self.store.gauges()
        meters = GaugeMetricFamily("meterguard_meters", "Meters by state.", labels=["state"])
        for state, n in sorted(g["meters"].items()):
            meters.add_metric([state], n)
        yield meters
        alarms = GaugeMetricFamily(
            "meterguard_alarms", "Alarms by state (open, acknowledged, cleared).", labels=["state"]
        )
        for state in ("open", "acknowledged", "cleared"):
            alarms.add_metric([state], g["alarms"].get(state, 0))
        yield alarms
        events = CounterMetricFamily(
            "meterguard_security_events", "Security events recorded, by name.", labels=["event"]
        )
        for name, n in sorted(g["events"].items()):
            events.add_metric([name], n)
        yield events
        refused = CounterMetricFamily(
            "meterguard_refused_messages",
            "Messages refused by ingest and quarantined (summarised), by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(g["refusals"].items()):
            refused.add_metric([kind], n)
        yield refused
        workers = list(self.workers())
        queue = GaugeMetricFamily(
            "meterguard_ingest_queue_depth",
            "Messages taken by the ingest workers of this process and not committed yet.",
        )
        queue.add_metric([], sum(w.pending for w in workers))
        yield queue
        connected = GaugeMetricFamily(
            "meterguard_ingest_workers_connected",
            "Ingest workers of this process connected to the broker.",
        )
        connected.add_metric([], sum(1 for w in workers if w.connected.is_set()))
        yield connected
        reconnects = CounterMetricFamily(
            "meterguard_ingest_reconnects", "Times this process's ingest workers reconnected."
        )
        reconnects.add_metric([], sum(w.reconnects for w in workers))
        yield reconnects
        if self.connections is not None:
            clients = set(self.connections())
            on_meters = sum(1 for c in clients if is_meter_id(c))
            broker = GaugeMetricFamily(
                "meterguard_broker_connections",
                "Clients connected to the broker, as its log tells, by kind.",
                labels=["kind"],
            )
            broker.add_metric(["meter"], on_meters)
            broker.add_metric(["service"], len(clients) - on_meters)
            yield broker


class Metrics:
    """A head-end's metrics (one registry; see the module docstring)."""

    def __init__(self, store: Store, workers: Callable[[], Sequence[IngestWorker]] = tuple) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "meterguard_ingest_messages",
            "Messages committed by ingest, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.readings = Counter(
            "meterguard_ingest_readings", "Verified readings committed.", registry=r
        )
        self.refusals = Counter(
            "meterguard_ingest_refusals",
            "Messages ingest refused in this process, by kind.",
            ["kind"],
            registry=r,
        )
        self.commit = Histogram(
            "meterguard_ingest_batch_commit_seconds",
            "Time of one ingest batch's database commit.",
            buckets=_FAST,
            registry=r,
        )
        self.delay = Histogram(
            "meterguard_ingest_lag_seconds",
            "From a batch's first message taken by a worker to the batch committed.",
            buckets=_FAST,
            registry=r,
        )
        self.api = Histogram(
            "meterguard_api_request_seconds",
            "API and dashboard requests: time to the response, by route and status class.",
            ["method", "route", "status"],
            buckets=_FAST,
            registry=r,
        )
        self._records = _Records(store, workers)
        r.register(self._records)
        self._lock = threading.Lock()
        self._readings = self._refused = self._lag_n = 0
        self._lag_sum = 0.0
        self._samples: list[Sample] = []

    def __repr__(self) -> str:
        return "Metrics()"

    def sample(self, now: float) -> list[Sample]:
        """Sample the running totals; return the last :data:`SAMPLES` samples.

        At most one sample per :data:`SAMPLE_EVERY` seconds, however many pages ask (the
        dashboard's live charts ask on each refresh).
        """
        with self._lock:
            if not self._samples or now - self._samples[-1].at >= SAMPLE_EVERY:
                connected = self._records.connections
                meters = sum(1 for c in connected() if is_meter_id(c)) if connected else None
                self._samples.append(
                    Sample(now, self._readings, self._refused, meters, self._lag_sum,
                           self._lag_n)
                )  # fmt: skip
                del self._samples[:-SAMPLES]
            return list(self._samples)

    def follow_broker(self, connected: Callable[[], set[str]]) -> None:
        """Report the broker's connections from ``connected`` (the client ids its log shows)."""
        self._records.connections = connected

    def ingest_batch(self, batch: BatchReport) -> None:
        """Count one committed batch (an ingest worker's ``on_batch`` hook)."""
        with self._lock:
            self._readings += batch.readings
            self._refused += len(batch.refusals)
            self._lag_sum += batch.delay_seconds
            self._lag_n += 1
        stored = batch.messages - len(batch.refusals) - batch.duplicates
        self.messages.labels("stored").inc(max(stored, 0))
        self.messages.labels("refused").inc(len(batch.refusals))
        self.messages.labels("duplicate").inc(batch.duplicates)
        self.readings.inc(batch.readings)
        for kind in batch.refusals:
            self.refusals.labels(kind).inc()
        self.commit.observe(batch.commit_seconds)
        self.delay.observe(batch.delay_seconds)

    def api_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request; ``route`` is the route's template (``/api/v1/meters/{meter_id}``)."""
        self.api.labels(method, route, f"{status // 100}xx").observe(seconds)

    def render(self) -> bytes:
        """A scrape, in the Prometheus text format."""
        return generate_latest(self.registry)

    @staticmethod
    def clock() -> float:
        """The monotonic clock request times are measured with."""
        return time.monotonic()
