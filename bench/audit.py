"""Benchmark: `audit verify` on a large log, full and incremental, against the same-run floor.

Builds a SQLite audit log of N entries (default 10^6) with a signed tree head every 10^5
entries, then times:

* a full verification with no pin (every entry read, re-hashed, every head checked), and
* after 10^4 more entries and a new head, the incremental run from the pin.

The baseline beside each is the floor measured in the same run on the same rows: reading
the rows and computing their leaf hashes, nothing else. The issue's targets: 10^6 entries
in under a minute, 10^4 new entries in under a second.

Run: ``.venv/bin/python bench/audit.py [--entries N]``. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, text

from meterguard.audit.auditor import Auditor
from meterguard.audit.log import AuditEntry
from meterguard.crypto.ecc import SigningKey
from meterguard.headend.store.db import open_database
from meterguard.headend.store.models import AuditRecord
from meterguard.headend.store.repository import Store

HEAD_EVERY = 100_000
NEW = 10_000


def fill(store: Store, key: SigningKey, start: int, count: int) -> None:
    """Append ``count`` entries after ``start`` in bulk, signing a head every HEAD_EVERY."""
    done = 0
    while done < count:
        n = min(HEAD_EVERY - (start + done) % HEAD_EVERY, count - done)
        rows = []
        for seq in range(start + done + 1, start + done + n + 1):
            e = AuditEntry(seq, 1_800_000_000 + seq, f"operator-{seq % 7}", f"MGD{seq:010d}",
                           "login_failed", "refused", f"req-{seq}", "")  # fmt: skip
            rows.append({**dataclasses.asdict(e), "leaf": e.leaf()})
        with store.engine.begin() as c:
            c.execute(insert(AuditRecord), rows)
        done += n
        store.audit.sign_head(key, now=1_800_000_000 + start + done)


def floor(store: Store, after: int) -> float:
    """Seconds to read the entries after ``after`` and hash them: the least a verifier does."""
    t = time.perf_counter()
    with store.engine.connect() as c:
        rows = c.execution_options(stream_results=True, yield_per=20_000).execute(
            text(
                "SELECT seq, at, actor, target, action, result, request_id, detail, leaf"
                " FROM audit_entries WHERE seq > :a ORDER BY seq"
            ),
            {"a": after},
        )
        for r in rows:
            AuditEntry(int(r[0]), int(r[1]), *(str(v) for v in r[2:8])).leaf()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    args = ap.parse_args()
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(open_database(f"sqlite:///{Path(tmp) / 'audit.db'}"))
        t = time.perf_counter()
        fill(store, key, 0, args.entries)
        print(f"built {args.entries:,} entries in {time.perf_counter() - t:.1f} s")
        auditor = Auditor(store.engine, key.verifying_key(), Path(tmp) / "auditor.json")

        t = time.perf_counter()
        report = auditor.run()
        full = time.perf_counter() - t
        base = floor(store, 0)
        assert report.verified and report.checked == args.entries, report.problems
        print(f"full verify, no pin: {full:6.2f} s  ({args.entries / full:,.0f} entries/s)")
        print(f"  floor (read + leaf hash): {base:6.2f} s  ratio {full / base:.2f}")

        fill(store, key, args.entries, NEW)
        t = time.perf_counter()
        report = auditor.run()
        inc = time.perf_counter() - t
        base = floor(store, args.entries)
        assert report.verified and report.checked == NEW, report.problems
        print(f"incremental, {NEW:,} new since the pin: {inc * 1000:7.1f} ms")
        print(
            f"  floor (read + leaf hash of the new): {base * 1000:7.1f} ms  ratio {inc / base:.2f}"
        )
        store.engine.dispose()


if __name__ == "__main__":
    main()
