"""Benchmark: meters per process, memory per meter at rest, simulation and push throughput.

Baselines in the same run: a fully materialised ``Meter`` (object model, keys,
counters, log books) per meter, against the fleet's compact record; and the
bare metrology (no protection) against the fleet step that protects every
15-minute reading. Goal from the issue: 100k meters in one process at <= 2 KiB
each at rest.

Run: ``.venv/bin/python bench/fleet.py [--meters 100000]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import resource
import time
import tracemalloc

from meterguard.analytics.household import HouseholdModel
from meterguard.clock import FixedClock
from meterguard.crypto.keys import SecretKey
from meterguard.meter.device import Meter, MeterIdentity
from meterguard.meter.fleet import Fleet

NOW = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=100_000)
    ap.add_argument("--step-meters", type=int, default=500)
    args = ap.parse_args()

    # Year of one home.
    m = HouseholdModel.for_meter(42)
    t = time.perf_counter()
    m.days(dt.date(2026, 1, 1), 365)
    year_s = time.perf_counter() - t
    print(f"metrology: one home, one year at 1-minute resolution: {year_s * 1000:.0f} ms")

    # Fleet records at rest.
    gc.collect()
    before = rss_kib()
    tracemalloc.start()
    t = time.perf_counter()
    fleet = Fleet.create(args.meters, now=NOW)
    build_s = time.perf_counter() - t
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"fleet: {args.meters:,} meters built in {build_s:.2f} s; records {fleet.nbytes / args.meters:.0f} B/meter;"
        f" traced {traced / args.meters:.0f} B/meter; max RSS grew {(rss_kib() - before) / 1024:.1f} MiB"
    )

    # Baseline: fully materialised Meter objects.
    n_full = 200
    gc.collect()
    tracemalloc.start()
    clock = FixedClock(NOW)
    meters = [
        Meter(
            MeterIdentity.from_serial(i + 1),
            clock=clock,
            unicast_key=SecretKey.generate(),
            authentication_key=SecretKey.generate(),
            master_key=SecretKey.generate(),
        )
        for i in range(n_full)
    ]
    full, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_full = full / n_full
    print(
        f"baseline: a materialised Meter object holds {per_full / 1024:.1f} KiB "
        f"-> fleet record is {per_full / (fleet.nbytes / args.meters):.0f}x smaller"
    )
    del meters

    # Step throughput: one simulated day for step-meters meters, every reading protected.
    small = Fleet.create(args.step_meters, now=NOW)
    pushes = 0

    def count(_i: int, _apdu: bytes) -> None:
        nonlocal pushes
        pushes += 1

    t = time.perf_counter()
    small.step(NOW + dt.timedelta(days=1), count)
    step_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(args.step_meters):
        HouseholdModel.for_meter(i + 1).day(NOW.date())
    bare_s = time.perf_counter() - t
    print(
        f"step: {args.step_meters} meter-days with {pushes:,} protected pushes in {step_s:.2f} s "
        f"= {args.step_meters / step_s:,.0f} meter-days/s, {pushes / step_s:,.0f} pushes/s; "
        f"bare metrology {args.step_meters / bare_s:,.0f} meter-days/s (ratio {bare_s / step_s:.2f})"
    )


if __name__ == "__main__":
    main()
