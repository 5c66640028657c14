"""Benchmark: MQTT/TLS → verify → SQLite ingest, against two baselines measured in the same run.

1. **ingest**: N precomputed protected readings (fleet meters, each with its own keys and
   certificate) are published over TLS to the managed broker; one ingest worker verifies,
   decodes and commits them; we time from the first publish to the last commit.
2. **paho drain** baseline: a plain paho subscriber on the service listener drains the same
   N messages (no verification, no storage).
3. **raw DB** baseline: the same N rows inserted directly in batches of 500.

Reports messages/s for each, the ratios, and CPU-µs per reading of this process. The issue's
targets (1.3x paho drain, 100k readings/s with 4 readings per message, p99 ≤ 50 ms at half load,
flood mode) are not all measured yet; see the notes.

Run: ``.venv/bin/python bench/ingest.py [--messages 20000] [--meters 20]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import threading
import time
from pathlib import Path

from meterguard.attacks.probe import connect
from meterguard.broker.process import ManagedBroker
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.pki.store import Pki
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor
from meterguard.headend.ingest.worker import IngestWorker, WorkerSettings
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import ReadingRow, Store
from meterguard.meter.fleet import Fleet

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def publish_all(world: dict[str, object], messages: list[tuple[int, bytes]]) -> float:
    probes = world["probes"]
    topics = world["topics"]
    t0 = time.perf_counter()
    for i, apdu in messages:
        probes[i].client.publish(topics[i], apdu, qos=1)  # type: ignore[index]
    return t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--meters", type=int, default=20)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    pki = Pki.init(base / "pki", now=dt.datetime.now(dt.UTC))
    broker = ManagedBroker.prepare(base / "broker", pki, now=dt.datetime.now(dt.UTC))
    broker.start()
    root = base / "pki" / "root" / "root.pem"
    try:
        per_meter = -(-args.messages // args.meters)
        fleet = Fleet.create(args.meters, now=NOW, first_serial=1000)
        messages: list[tuple[int, bytes]] = []
        fleet.step(
            NOW + dt.timedelta(minutes=15 * per_meter), lambda i, apdu: messages.append((i, apdu))
        )
        messages = messages[: args.messages]
        ids = [f"MGD{int(s):010d}" for s in fleet.a["serial"]]
        probes, topics = [], []
        for mid in ids:
            d = base / mid
            d.mkdir()
            cert, key = pki.enrol_meter(mid[3:], d, now=dt.datetime.now(dt.UTC))
            p = connect(broker.layout.device_port, root, cert, key, client_id=mid)
            assert p.connected, p.error
            probes.append(p)
            topics.append(f"meters/{mid}/data")
        world: dict[str, object] = {"probes": probes, "topics": topics}
        svc_cert, svc_key = pki.issue_service_client(
            "bench-ingest", now=dt.datetime.now(dt.UTC), out=base / "svc"
        )
        broker.sync(pki)
        time.sleep(0.5)

        # Baseline 1: a plain paho subscriber drains the messages.
        drain = connect(
            broker.layout.service_port, root, svc_cert, svc_key, client_id="bench-drain"
        )
        drain.subscribe("$share/drain/meters/+/data")
        t0 = publish_all(world, messages)
        drain.wait_messages(len(messages), timeout=300)
        paho_s = time.perf_counter() - t0
        got = len(drain.messages)
        drain.close()

        # Ingest: verify + decode + commit, acknowledged after commit.
        store = Store(open_database(f"sqlite:///{base / 'headend.db'}"))
        for i, mid in enumerate(ids):
            store.add_meter(mid, serial=mid[3:], system_title=fleet.system_title(i), now=0)

        def keys(mid: str) -> tuple[bytes, SecretKey, SecretKey]:
            i = ids.index(mid)
            ek, ak, _ = fleet.keys(i)
            return fleet.system_title(i), ek, ak

        processor = IngestProcessor(
            Admission(known=set(ids)), keys, store.last_counter, rate=1e9, burst=1e9
        )
        worker = IngestWorker(
            WorkerSettings(
                "127.0.0.1",
                broker.layout.service_port,
                root,
                svc_cert,
                svc_key,
                client_id="bench-ingest",
            ),
            processor,
            store,
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        worker.connected.wait(10)
        time.sleep(0.3)
        cpu0 = os.times()
        t0 = publish_all(world, messages)
        deadline = time.monotonic() + 300
        while store.counts()["readings"] < len(messages) and time.monotonic() < deadline:
            time.sleep(0.01)
        ingest_s = time.perf_counter() - t0
        cpu1 = os.times()
        stored = store.counts()["readings"]
        stop.set()
        thread.join(10)

        # Baseline 2: the same rows straight into a fresh database.
        raw = Store(open_database(f"sqlite:///{base / 'raw.db'}"))
        for i, mid in enumerate(ids):
            raw.add_meter(mid, serial=mid[3:], system_title=fleet.system_title(i), now=0)
        rows = [
            ReadingRow(ids[i], 1_700_000_000 + n * 900, n, 0, 0)
            for n, (i, _) in enumerate(messages)
        ]
        t0 = time.perf_counter()
        for k in range(0, len(rows), 500):
            raw.add_readings(rows[k : k + 500])
        raw_s = time.perf_counter() - t0
        cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        n = len(messages)
        print(f"{n} messages from {args.meters} meters, 1 reading each, TLS, QoS 1, SQLite")
        print(f"paho drain baseline: {got}/{n} in {paho_s:.2f} s = {got / paho_s:,.0f} msg/s")
        print(
            f"ingest (verify+decode+commit): {stored}/{n} in {ingest_s:.2f} s = {stored / ingest_s:,.0f} readings/s"
            f"  ratio to paho drain {paho_s / ingest_s:.2f}"
        )
        print(f"raw DB insert baseline: {n / raw_s:,.0f} rows/s")
        print(
            f"CPU of this process (publishers and worker; the broker is another process): {cpu / n * 1e6:.0f} µs per reading"
        )
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
