"""Benchmark: storage and time for 10^5 refused messages from one meter, against the old scheme.

The red team's flood: one compromised meter sends oversized payloads (16 KiB) as fast as it
can. Each refusal used to be one quarantine row (the payload cut to 4 KiB), one security
event and one audit entry (20k messages added 99 MB). Now refusals are counted per (meter,
kind) and (meter, event) and summarised per window (issue 12 item 2).

Both are measured in the same run on SQLite, each in a fresh database:

* **summarised** — the product: ``Store.commit_ingest`` with batches of 500 refusals, the
  flood spread over 17 simulated seconds (about 6 000 messages/s);
* **baseline** — the pre-fix scheme, re-created here with the same tables: a row each in
  ``quarantine`` and ``security_events`` and an audit entry per refusal.

Printed: bytes of database per refused message and the time per message for each, and the
ratios. Run: ``.venv/bin/python bench/refusals.py [--messages N]``. Never part of the tests.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, insert, text

from meterguard.headend.store.audit import Fields
from meterguard.headend.store.db import open_database
from meterguard.headend.store.models import Quarantined, SecurityEvent
from meterguard.headend.store.repository import MAX_QUARANTINE_PAYLOAD, RefusalRow, Store

METER = "MGD0000000001"
PAYLOAD = b"\xdb" * 16_384
BATCH = 500


def size(engine: Engine) -> int:
    with engine.connect() as c:
        c.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        pages = int(c.execute(text("PRAGMA page_count")).scalar() or 0)
        page = int(c.execute(text("PRAGMA page_size")).scalar() or 0)
    return pages * page


def flood(n: int) -> list[list[RefusalRow]]:
    row = RefusalRow(
        f"meters/{METER}/data", "unverified_payload of 16384 bytes", PAYLOAD,
        "oversized_message", METER,
    )  # fmt: skip
    return [[row] * min(BATCH, n - i) for i in range(0, n, BATCH)]


def summarised(store: Store, batches: list[list[RefusalRow]]) -> float:
    start = time.perf_counter()
    for k, batch in enumerate(batches):
        store.commit_ingest([], batch, now=1_800_000_000 + k * 17 // len(batches))
    return time.perf_counter() - start


def baseline(store: Store, batches: list[list[RefusalRow]]) -> float:
    """What each refusal cost before: three rows, in one transaction per batch."""
    start = time.perf_counter()
    for k, batch in enumerate(batches):
        now = 1_800_000_000 + k * 17 // len(batches)
        with store.engine.begin() as conn:
            conn.execute(
                insert(Quarantined),
                [{"at": now, "topic": r.topic, "reason": r.reason,
                  "payload": r.payload[:MAX_QUARANTINE_PAYLOAD]} for r in batch],
            )  # fmt: skip
            conn.execute(
                insert(SecurityEvent),
                [{"at": now, "meter_id": r.meter_id, "event": r.event, "detail": r.reason}
                 for r in batch],
            )  # fmt: skip
            store.audit.append_in(
                conn,
                [Fields(at=now, actor="ingest", target=METER, action="oversized_message",
                        result="refused", detail=r.reason) for r in batch],
            )  # fmt: skip
    return time.perf_counter() - start


def run(kind: str, directory: Path, batches: list[list[RefusalRow]]) -> tuple[int, float]:
    engine = open_database(f"sqlite:///{directory / kind}.db")
    store = Store(engine)
    store.registry.add_meter(METER, serial=METER[3:], system_title=b"MGD\x00\x00\x00\x00\x01",
                             now=0)  # fmt: skip
    before = size(engine)
    took = (summarised if kind == "summarised" else baseline)(store, batches)
    grown = size(engine) - before
    engine.dispose()
    return grown, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    n = parser.parse_args().messages
    batches = flood(n)
    with tempfile.TemporaryDirectory() as tmp:
        base_bytes, base_s = run("baseline", Path(tmp), batches)
        new_bytes, new_s = run("summarised", Path(tmp), batches)
    print(f"{n} refused messages of {len(PAYLOAD)} bytes from one meter, SQLite, same run")
    print(f"baseline (a row each):  {base_bytes / 1e6:9.2f} MB  {base_bytes / n:9.1f} B/msg"
          f"  {base_s / n * 1e6:7.1f} µs/msg")  # fmt: skip
    print(f"summarised:             {new_bytes / 1e6:9.2f} MB  {new_bytes / n:9.1f} B/msg"
          f"  {new_s / n * 1e6:7.1f} µs/msg")  # fmt: skip
    print(f"ratio storage {new_bytes / max(base_bytes, 1):.5f}  time {new_s / base_s:.3f}")


if __name__ == "__main__":
    main()
