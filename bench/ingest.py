"""Benchmark: MQTT/TLS → verify → commit ingest, against raw baselines measured in the same run.

Everything is real: the managed Mosquitto (TLS listeners, ACLs), one TLS connection and
certificate per meter, DLMS-protected DataNotifications precomputed by the fleet with each
meter's own keys (1 or 4 load-profile entries per message), and the database (SQLite by default,
``--db postgresql://…`` for a fresh PostgreSQL database per run). Load comes from
``bench/loadgen.py``, a process of its own that writes precomputed PUBLISH frames on schedule
(open loop), so the generator is cheap and never waits for the system under test.

Per mode (readings per message):

1. **paho drain** baseline: a plain paho subscriber drains the burst (no verification, no
   storage) — messages/s.
2. **ingest, max**: one ingest worker (the product's lean MQTT consumer, verification, batched
   commit, acks after commit) takes the same burst — verified-and-committed readings/s, and the
   ratio of its message rate to the paho drain's.
3. **ingest, half load**: the same messages scheduled at half the max rate — p50/p99 latency
   from each message's *scheduled* send time to the commit of its rows.
4. **flood** (``--flood``): half load plus one compromised meter publishing validly protected
   messages at 50x a legit meter's rate; legit delivery ratio and p99 against step 3.
6. **alarm flood** (``--alarm-flood``, alone): the alarm lane, with every meter raising one
   tamper alarm over 10 s while one meter floods its alarms topic at the broker's maximum
   rate (``--flood-alarms`` validly protected alarms); p99 against the same alarms alone.
5. **raw DB** baseline: the same rows written straight into a fresh database (SQLite
   ``executemany`` in one transaction, PostgreSQL ``COPY``) — rows/s.

CPU-µs per reading are given per process (worker, broker, generator).

Run: ``.venv/bin/python bench/ingest.py [--messages 40000] [--meters 50] [--per-msg 1 4] [--at-rest]
[--flood] [--db postgresql://postgres@127.0.0.1:5432/test]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import pickle
import secrets
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mqtt5
from sqlalchemy import create_engine, text

from meterguard.attacks.probe import connect
from meterguard.broker.process import ManagedBroker
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.pki.store import Pki
from meterguard.crypto.vault import ReadingVault
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor
from meterguard.headend.ingest.worker import IngestWorker, WorkerSettings
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import CommitOutcome, Store
from meterguard.meter.device import TamperKind
from meterguard.meter.fleet import Fleet

SIM_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LOADGEN = Path(__file__).with_name("loadgen.py")
CLK = os.sysconf("SC_CLK_TCK")


@dataclass
class World:
    base: Path
    pki: Pki
    broker: ManagedBroker
    root: Path
    ids: list[str]
    identities: list[tuple[str, str]]
    titles: dict[str, tuple[bytes, SecretKey, SecretKey]]
    svc: tuple[Path, Path]
    db: str | None
    runs: int = 0


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1)))]


def build(args: argparse.Namespace) -> World:
    base = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    now = dt.datetime.now(dt.UTC)
    pki = Pki.init(base / "pki", now=now)
    broker = ManagedBroker.prepare(base / "broker", pki, now=now)
    broker.start()
    ids, identities = [], []
    for n in range(args.meters + 1):  # the last one is the flood meter
        mid = f"MGD{1000 + n:010d}"
        d = base / "meters" / mid
        d.mkdir(parents=True)
        cert, key = pki.enrol_meter(mid[3:], d, now=now)
        ids.append(mid)
        identities.append((str(cert), str(key)))
    svc = pki.issue_service_client("bench-ingest", now=now, out=base / "svc")
    broker.sync(pki)
    time.sleep(0.3)
    return World(
        base, pki, broker, base / "pki" / "root" / "root.pem", ids, identities, {}, svc, args.db
    )


def messages(
    world: World, fleet: Fleet, first: int, count: int, per_msg: int
) -> list[tuple[int, bytes]]:
    """``count`` protected pushes, round-robin over the fleet's meters (fleet index + first)."""
    per_meter = -(-count // len(fleet))
    out: list[list[bytes]] = [[] for _ in range(len(fleet))]
    until = SIM_START + dt.timedelta(minutes=15 * per_msg * per_meter)
    fleet.step(until, lambda i, apdu: out[i].append(apdu), per_push=per_msg)
    for i in range(len(fleet)):
        ek, ak, _ = fleet.keys(i)
        world.titles[world.ids[first + i]] = (fleet.system_title(i), ek, ak)
    mixed = [(first + i, out[i][k]) for k in range(per_meter) for i in range(len(fleet))]
    return mixed[:count]


def frames(
    world: World,
    msgs: list[tuple[int, bytes]],
    rate: float | None,
    *,
    topic: str = "data",
    pid: list[int] | None = None,
) -> list[tuple[float, int, bytes]]:
    """PUBLISH frames (QoS 1, packet ids per connection) scheduled at ``rate`` messages/s."""
    pid = pid if pid is not None else [0] * len(world.ids)
    out = []
    for k, (i, apdu) in enumerate(msgs):
        pid[i] = pid[i] % 65535 + 1
        frame = mqtt5.PublishPacket(
            f"meters/{world.ids[i]}/{topic}", apdu, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=pid[i]
        ).write()
        out.append((0.0 if rate is None else k / rate, i, frame))
    return out


def push_counter(apdu: bytes) -> int:
    """The invocation counter of a general-glo push: DB 08 <title> <length> SC IC ..."""
    at = 12 if apdu[10] < 0x80 else 12 + (apdu[10] & 0x7F)
    return int.from_bytes(apdu[at : at + 4], "big")


def alarms(world: World, fleet: Fleet, first: int, per_meter: int) -> list[tuple[int, bytes]]:
    """``per_meter`` protected tamper alarms from each meter of ``fleet`` (index + first)."""
    out: list[tuple[int, bytes]] = []
    for i in range(len(fleet)):
        ek, ak, _ = fleet.keys(i)
        world.titles[world.ids[first + i]] = (fleet.system_title(i), ek, ak)
        for _ in range(per_meter):
            fleet.tamper(
                i, TamperKind.MAIN_COVER_OPEN, lambda j, apdu: out.append((first + j, apdu))
            )
    return out


def alarm_flood(world: World, args: argparse.Namespace) -> None:
    """DOS-3: each legit meter raises one tamper alarm while one meter floods its alarms topic
    as fast as the broker takes it; the alarm lane's p99 against the same alarms without it."""
    legit = alarms(world, Fleet.create(args.meters, now=SIM_START, first_serial=1000), 0, 1)
    spread = 10.0
    legit_plan = [(1.0 + k * spread / len(legit), i, f) for k, (_, i, f) in
                  enumerate(frames(world, legit, None, topic="alarms"))]  # fmt: skip
    flood_fleet = Fleet.create(1, now=SIM_START, first_serial=1000 + args.meters)
    flood = alarms(world, flood_fleet, args.meters, args.flood_alarms)
    # TAMP-3: the flooding meter's own genuine alarm is its flood's last message (its bucket is
    # empty by then, so it is throttled); it stays pending, and the meter re-sends its pending
    # alarms 20 s in (the demo's period): the re-send goes out after the flood.
    flood_fleet.tamper(
        0, TamperKind.MAGNETIC_FIELD, lambda j, apdu: flood.append((args.meters + j, apdu))
    )
    genuine = int(flood_fleet.a["push_seq"][0])
    resend: list[tuple[int, bytes]] = []
    flood_fleet.resend_pending(lambda j, apdu: resend.append((args.meters + j, apdu)))
    pid = [0] * len(world.ids)
    flood_plan = frames(world, flood, None, topic="alarms", pid=pid)  # all due at once
    later = frames(world, resend, None, topic="alarms", pid=pid)
    flood_plan += [(20.0, i, f) for _, i, f in later]
    bucket = (50.0, 500.0)  # the head-end's per-meter contract (system/headend.py)
    print(f"\nalarm lane: {len(legit)} meters raise one tamper alarm each over {spread:.0f} s")
    base = ingest_run(world, legit_plan, per_msg=1, expect_legit=len(legit), bucket=bucket,
                      topics=("alarms",))  # fmt: skip
    report_line("  alarms, no attack (baseline)", base)
    fl = ingest_run(world, legit_plan, per_msg=1, expect_legit=len(legit), bucket=bucket,
                    topics=("alarms",), attacker=flood_plan, watch=genuine)  # fmt: skip
    sent = fl.gen_sent
    report_line(f"  alarms while 1 meter floods ({len(flood):,} alarms at max rate)", fl)
    p99, b99 = percentile(fl.latencies, 0.99), percentile(base.latencies, 0.99)
    print(
        f"    other meters' alarms delivered {fl.legit_stored}/{fl.legit_expected};"
        f" p99 {p99 * 1e3:.0f} ms (target <= 1000 ms), {p99 / b99:.2f}x the baseline's"
        f" {b99 * 1e3:.0f} ms; flood sent {sent:,} in {fl.gen_seconds:.1f} s (up to the"
        f" re-send due at 20 s), throttled before crypto"
        f" {fl.throttled:,}"
    )
    first_ic, resent_ics = push_counter(flood[-1][1]), {push_counter(a) for _, a in resend}
    how = (
        "never"
        if fl.watched_at is None
        else f"stored at t = {fl.watched_at:.1f} s, "
        + (
            "from its re-send (its first send, inside the flood, was throttled)"
            if fl.watched_ic in resent_ics
            else f"from its first send (counter {first_ic}): not throttled"
        )
    )
    print(
        f"    the flooding meter's own alarm (sequence {genuine}, its flood's last message):"
        f" {how}; the meter re-sent its {len(resend)} pending alarms at t = 20 s"
    )


def merge(
    a: list[tuple[float, int, bytes]], b: list[tuple[float, int, bytes]]
) -> list[tuple[float, int, bytes]]:
    return sorted(a + b, key=lambda f: f[0])


class Generator:
    def __init__(self, world: World, plan: list[tuple[float, int, bytes]], lead: float) -> None:
        used = sorted({i for _, i, _ in plan})
        remap = {i: n for n, i in enumerate(used)}
        payload = {
            "host": "127.0.0.1",
            "port": world.broker.layout.device_port,
            "root": str(world.root),
            "client_ids": [world.ids[i] for i in used],
            "identities": [world.identities[i] for i in used],
            "frames": [(due, remap[i], f) for due, i, f in plan],
        }
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, str(LOADGEN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(pickle.dumps(payload))
        self.proc.stdin.flush()
        assert self.proc.stdout.read(1) == b"R"  # every connection is up
        self.start = time.time() + lead
        self.proc.stdin.write(struct.pack("!d", self.start))
        self.proc.stdin.close()

    def report(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read()
        self.proc.wait(60)
        return pickle.loads(data)  # noqa: S301 - our own child process


def paho_drain(world: World, plan: list[tuple[float, int, bytes]]) -> float:
    cert, key = world.svc
    world.runs += 1
    drain = connect(
        world.broker.layout.service_port,
        world.root,
        cert,
        key,
        client_id=f"bench-drain-{world.runs}",
    )
    drain.subscribe(f"$share/drain{world.runs}/meters/+/data")
    gen = Generator(world, plan, 0.2)
    drain.wait_messages(len(plan), timeout=600)
    t = time.time() - gen.start
    got = len(drain.messages)
    gen.report()
    drain.close()
    return got / t


def _vault(world: World, tag: str, sealed: bool) -> ReadingVault | None:
    """A vault over a key store of its own: readings sealed at rest (PRIV-4), or None."""
    if not sealed:
        return None
    keys = KeyStore(world.base / f"{tag}-keys.db", LocalKek(SecretKey.generate(32)))
    return ReadingVault(keys.data_key, keys.data_key_version, clock=time.monotonic)


def fresh_store(world: World, tag: str, *, sealed: bool = False) -> tuple[Store, Any]:
    if world.db is None:
        engine = open_database(f"sqlite:///{world.base / f'{tag}.db'}")
        return Store(engine, vault=_vault(world, tag, sealed)), None
    name = f"mg_bench_{secrets.token_hex(4)}"
    admin = create_engine(
        world.db.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = world.db.rsplit("/", 1)[0] + "/" + name
    return Store(open_database(url), vault=_vault(world, tag, sealed)), (admin, name)


def drop_store(store: Store, handle: Any) -> None:
    store.engine.dispose()
    if handle is not None:
        admin, name = handle
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class IngestResult:
    readings: int
    messages: int
    seconds: float
    latencies: list[float]
    legit_expected: int
    legit_stored: int
    cpu_worker: float
    cpu_broker: float
    cpu_gen: float
    throttled: int
    gen_late_p99: float
    gen_sent: int = 0
    gen_seconds: float = 0.0
    watched_at: float | None = None
    """When the watched alarm (``watch=``) was committed, from the run's start."""
    watched_ic: int | None = None
    """The push counter it was stored under (which of its sends got through)."""


def ingest_run(
    world: World,
    plan: list[tuple[float, int, bytes]],
    *,
    per_msg: int,
    expect_legit: int,
    bucket: tuple[float, float] = (1e9, 1e9),
    topics: tuple[str, ...] = ("data",),
    attacker: list[tuple[float, int, bytes]] | None = None,
    watch: int | None = None,
    sealed: bool = False,
) -> IngestResult:
    """``attacker`` frames come from a generator process of their own (its backpressure must
    not delay the legit meters' sends: latency is measured from their scheduled times).

    ``watch``: an alarm sequence of the flood meter (the last meter) whose commit the run also
    waits for (TAMP-3: its genuine alarm, throttled in its flood, then re-sent)."""
    store, handle = fresh_store(world, f"ingest{world.runs}", sealed=sealed)
    world.runs += 1
    for mid, (title, _, _) in world.titles.items():
        store.registry.add_meter(mid, serial=mid[3:], system_title=title, now=0)
    due_of: dict[tuple[str, int], float] = {}
    # Index the schedule by (meter, counter) to time each commit against its scheduled send.
    for due, i, frame in plan:
        packet, _ = mqtt5.read(memoryview(frame))
        assert isinstance(packet, mqtt5.PublishPacket)
        apdu = packet.payload  # general-glo: DB 08 <title> <length> SC IC ...
        ic = push_counter(apdu)
        due_of[(world.ids[i], ic)] = due
    flood_id = world.ids[-1]
    lat: list[float] = []
    stored = {"legit": 0, "readings": 0, "messages": 0}
    start_box = [0.0]

    watched: list[tuple[float, int]] = []

    def on_commit(out: CommitOutcome, t: float) -> None:
        s0 = start_box[0]
        for p in out.accepted:
            stored["messages"] += 1
            stored["readings"] += len(p.readings)
            if p.meter_id == flood_id and p.alarm is not None and p.alarm[0] == watch:
                watched.append((t - s0, p.ic))
            if p.meter_id != flood_id:
                stored["legit"] += 1
                lat.append(t - s0 - due_of[(p.meter_id, p.ic)])

    processor = IngestProcessor(
        Admission(known=set(world.ids)),
        lambda mid: world.titles[mid],
        store.last_counter,
        rate=bucket[0],
        burst=bucket[1],
    )
    cert, key = world.svc
    worker = IngestWorker(
        WorkerSettings(
            "127.0.0.1",
            world.broker.layout.service_port,
            world.root,
            cert,
            key,
            client_id=f"bench-ingest-{world.runs}",
            group=f"bench{world.runs}",
            session_expiry=0,
            topics=topics,
        ),
        processor,
        store,
        on_commit=on_commit,
    )
    gc.collect()
    gc.freeze()  # the benchmark's own bookkeeping (the schedule index) is not the worker's garbage
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    assert worker.connected.wait(10)
    rogue = Generator(world, attacker, 0.3) if attacker else None
    gen = Generator(world, plan, 0.3)
    start = start_box[0] = gen.start
    broker_pid = world.broker.proc.pid  # type: ignore[union-attr]
    cpu_b0, cpu_w0 = proc_cpu(broker_pid), time.process_time()
    while time.time() < start:
        time.sleep(0.001)
    deadline = time.monotonic() + 600
    last_change, last = time.monotonic(), -1
    idle_limit = 10 if watch is None else 40  # the meter's re-send is due 20 s in
    while (stored["legit"] < expect_legit or (watch is not None and not watched)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.002)
        if stored["messages"] != last:
            last, last_change = stored["messages"], time.monotonic()
        elif time.monotonic() - last_change > idle_limit:
            break  # nothing more is coming (e.g. flood messages throttled)
    t_end = time.time()
    cpu_w, cpu_b = time.process_time() - cpu_w0, proc_cpu(broker_pid) - cpu_b0
    report = gen.report()
    if rogue is not None:
        flood = rogue.report()
        report["sent"], report["seconds"] = flood["sent"], flood["seconds"]
    stop.set()
    thread.join(10)
    drop_store(store, handle)
    gc.unfreeze()
    del per_msg
    return IngestResult(
        readings=stored["readings"],
        messages=stored["messages"],
        seconds=t_end - start,
        latencies=lat,
        legit_expected=expect_legit,
        legit_stored=stored["legit"],
        cpu_worker=cpu_w,
        cpu_broker=cpu_b,
        cpu_gen=report["cpu"],
        throttled=processor.stats["throttled"],
        gen_late_p99=report["late_p99"],
        gen_sent=int(report.get("sent", 0)),
        gen_seconds=float(report.get("seconds", 0.0)),
        watched_at=watched[0][0] if watched else None,
        watched_ic=watched[0][1] if watched else None,
    )


def raw_db(world: World, msgs: list[tuple[int, bytes]], per_msg: int) -> float:
    n = len(msgs) * per_msg
    rows = [
        (world.ids[k % (len(world.ids) - 1)], 1_700_000_000 + 900 * k, k, 0, 0) for k in range(n)
    ]
    store, handle = fresh_store(world, f"raw{world.runs}")
    world.runs += 1
    for mid, (title, _, _) in world.titles.items():
        store.registry.add_meter(mid, serial=mid[3:], system_title=title, now=0)
    if world.db is None:
        path = store.engine.url.database
        store.engine.dispose()
        con = sqlite3.connect(str(path))
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        t0 = time.perf_counter()
        with con:
            con.executemany(
                "INSERT INTO readings (meter_id, interval_start, import_wh, export_wh, "
                "received_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        t = time.perf_counter() - t0
        con.close()
    else:
        raw = store.engine.raw_connection()
        cur = raw.cursor()
        t0 = time.perf_counter()
        with cur.copy(
            "COPY readings (meter_id, interval_start, import_wh, export_wh, received_at) FROM STDIN"
        ) as copy:  # type: ignore[attr-defined]
            for r in rows:
                copy.write_row(r)
        raw.commit()
        t = time.perf_counter() - t0
        raw.close()
    drop_store(store, handle)
    return n / t


def report_line(name: str, r: IngestResult, *, latency: bool = True) -> None:
    lat = (
        f"; latency p50 {percentile(r.latencies, 0.5) * 1e3:.1f} ms p99 {percentile(r.latencies, 0.99) * 1e3:.1f} ms"
        f" (generator late p99 {r.gen_late_p99 * 1e3:.1f} ms)"
        if latency
        else ""
    )
    print(
        f"  {name}: {r.readings:,} readings ({r.messages:,} msgs) in {r.seconds:.2f} s = "
        f"{r.readings / r.seconds:,.0f} readings/s, {r.messages / r.seconds:,.0f} msg/s{lat}"
    )
    if r.readings:
        print(
            f"    CPU µs per reading: worker {r.cpu_worker / r.readings * 1e6:.1f}, "
            f"broker {r.cpu_broker / r.readings * 1e6:.1f}, generator {r.cpu_gen / r.readings * 1e6:.1f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--per-msg", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--flood", action="store_true")
    ap.add_argument(
        "--at-rest",
        action="store_true",
        help="also run ingest max with readings sealed at rest (per-meter data keys, PRIV-4)",
    )
    ap.add_argument(
        "--alarm-flood",
        action="store_true",
        help="only the alarm-lane test: one meter floods its alarms topic (DOS-3)",
    )
    ap.add_argument("--flood-alarms", type=int, default=100_000)
    ap.add_argument(
        "--db", default=None, help="PostgreSQL URL of an admin database (default SQLite)"
    )
    args = ap.parse_args()
    world = build(args)
    try:
        print(
            f"{args.messages:,} messages from {args.meters} meters, TLS 1.3 both sides, QoS 1, "
            f"{'PostgreSQL' if args.db else 'SQLite (WAL)'}; 2 cores shared by broker, generator, worker"
        )
        if args.alarm_flood:
            alarm_flood(world, args)
            return
        for per_msg in args.per_msg:
            fleet = Fleet.create(args.meters, now=SIM_START, first_serial=1000)
            msgs = messages(world, fleet, 0, args.messages, per_msg)
            burst = frames(world, msgs, None)
            print(f"\n{per_msg} reading(s) per message ({len(msgs[0][1])} B APDU):")
            drain = paho_drain(world, burst)
            print(f"  paho drain baseline: {drain:,.0f} msg/s")
            top = ingest_run(world, burst, per_msg=per_msg, expect_legit=len(msgs))
            report_line("ingest, max (one burst)", top, latency=False)
            rate = top.messages / top.seconds
            print(f"    ratio to paho drain (msg/s): {rate / drain:.2f}x")
            if args.at_rest:
                enc = ingest_run(world, burst, per_msg=per_msg, expect_legit=len(msgs), sealed=True)
                report_line("ingest, max, sealed at rest", enc, latency=False)
                plain_us = top.cpu_worker / top.readings * 1e6
                enc_us = enc.cpu_worker / enc.readings * 1e6
                print(
                    f"    encryption at rest: {enc.readings / enc.seconds:,.0f} vs "
                    f"{top.readings / top.seconds:,.0f} readings/s "
                    f"({enc.readings / enc.seconds / (top.readings / top.seconds):.2f}x); worker "
                    f"CPU {enc_us:.1f} vs {plain_us:.1f} µs per reading (+{enc_us - plain_us:.1f})"
                )
            half = ingest_run(
                world, frames(world, msgs, rate / 2), per_msg=per_msg, expect_legit=len(msgs)
            )
            report_line(f"ingest, half load ({rate / 2:,.0f} msg/s offered)", half)
            if args.flood:
                legit_rate = rate / 2 / args.meters
                flood_fleet = Fleet.create(1, now=SIM_START, first_serial=1000 + args.meters)
                n_flood = int(50 * len(msgs) / args.meters)
                flood_msgs = messages(world, flood_fleet, args.meters, n_flood, per_msg)
                plan = merge(
                    frames(world, msgs, rate / 2), frames(world, flood_msgs, 50 * legit_rate)
                )
                bucket = (3 * legit_rate, 50.0)
                fl = ingest_run(world, plan, per_msg=per_msg, expect_legit=len(msgs), bucket=bucket)
                report_line(f"flood (1 meter at 50x = {50 * legit_rate:,.0f} msg/s on top)", fl)
                p99, base = percentile(fl.latencies, 0.99), percentile(half.latencies, 0.99)
                print(
                    f"    legit delivered {fl.legit_stored}/{fl.legit_expected} = {fl.legit_stored / fl.legit_expected:.4f}; "
                    f"p99 {p99 / base:.2f}x the no-attack run; flood messages throttled before crypto: {fl.throttled:,}"
                )
            print(
                f"  raw DB baseline ({'COPY' if args.db else 'executemany'}): {raw_db(world, msgs, per_msg):,.0f} rows/s"
            )
    finally:
        world.broker.stop()


if __name__ == "__main__":
    main()
