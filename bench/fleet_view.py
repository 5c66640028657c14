"""Benchmark: the dashboard's fleet list over 10^5 meters, against the list it replaced.

Builds a SQLite head-end database of N meters (default 10^5) with R readings each (default
8), an alarm on every 500th meter, firmware reports and a feeder, then times, through the
real app (FastAPI's test client, an operator's session, the HTML the browser gets):

* **first paint**: the dashboard page and the first page of the fleet panel;
* **a search**: the panel for a part of a meter id, with a filter and a sort;
* the same through the JSON API (``GET /api/v1/fleet/meters``);

and beside them the baseline measured in the same run on the same rows: the query of the list
this replaced (every meter with its newest reading grouped from the readings table and its
open alarms; the old one also joined the supply state, so this baseline flatters it), which
the old panel ran on each two-second refresh and then cut to 50 rows.
The issue's target: first paint and a search under a second on this machine.

Run: ``.venv/bin/python bench/fleet_view.py [--meters N] [--readings R]``. Never in the suite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from meterguard.crypto.keys import SecretKey
from meterguard.crypto.vault import NameVault
from meterguard.headend.api.app import create_app
from meterguard.headend.services.accounts import Accounts
from meterguard.headend.store.db import open_database
from meterguard.headend.store.models import (
    Alarm,
    Feeder,
    FeederMember,
    Meter,
    MeterFirmware,
    Reading,
)
from meterguard.headend.store.repository import ReadingRow, Store
from meterguard.system.keys import SharedKeyStore

T0 = 1_800_000_000
PASSWORD = "bench password for an operator 7"  # noqa: S105 - a benchmark's own account


def build(path: Path, n: int, readings: int) -> Store:
    """The database: ``n`` meters, ``readings`` each, alarms, firmware, a feeder."""
    store = Store(open_database(f"sqlite:///{path}"))
    ids = [f"MGD{k:010d}" for k in range(1, n + 1)]
    with store.engine.begin() as c:
        c.execute(
            insert(Meter),
            [{"id": m, "serial": m[3:], "system_title": b"MGD" + k.to_bytes(5, "big"),
              "state": "active", "created_at": 0} for k, m in enumerate(ids, start=1)],
        )  # fmt: skip
        c.execute(insert(Feeder), [{"id": 1, "name": "F-1", "meter_id": ids[-1], "created_at": 0}])
        c.execute(insert(FeederMember), [{"meter_id": m, "feeder_id": 1} for m in ids[:20]])
        c.execute(
            insert(MeterFirmware),
            [{"meter_id": m, "attestation_key": "k", "version": "1.0.0"} for m in ids[::10]],
        )
        c.execute(
            insert(Alarm),
            [{"meter_id": m, "sequence": 1, "code": 40, "raised_at": T0, "state": "open",
              "received_at": T0} for m in ids[::500]],
        )  # fmt: skip
    batch: list[ReadingRow] = []
    for m in ids:
        batch += [ReadingRow(m, T0 + 900 * i, 1000 + i, 0, 0) for i in range(readings)]
        if len(batch) >= 50_000:
            store.add_readings(batch)
            batch = []
    store.add_readings(batch)
    return store


def old_list(store: Store) -> int:
    """The fleet list before issue 17: every meter, its newest reading grouped from readings."""
    last = (
        select(Reading.meter_id, func.max(Reading.interval_start).label("last"))
        .group_by(Reading.meter_id)
        .subquery()
    )
    alarms = (
        select(Alarm.meter_id, func.count().label("n"))
        .where(Alarm.state != "cleared")
        .group_by(Alarm.meter_id)
        .subquery()
    )
    q = (
        select(Meter.id, Meter.state, last.c.last, alarms.c.n)
        .outerjoin(last, last.c.meter_id == Meter.id)
        .outerjoin(alarms, alarms.c.meter_id == Meter.id)
        .order_by(Meter.id)
    )
    with store.engine.connect() as c:
        return len(c.execute(q).all())


def timed(what: Callable[[], object], runs: int = 5) -> float:
    """Median seconds of ``runs`` calls (after one warm-up)."""
    what()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        what()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    """Build, time, print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=100_000)
    ap.add_argument("--readings", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = build(Path(tmp) / "h.db", args.meters, args.readings)
        print(f"built {args.meters} meters x {args.readings} readings in"
              f" {time.perf_counter() - t:.1f} s")  # fmt: skip
        keys = SharedKeyStore.open(Path(tmp) / "k.db", Path(tmp) / "kek", create=True)
        names = NameVault(keys.data_key, keys.data_key_version, keys.login_hash,
                          clock=time.monotonic)  # fmt: skip
        accounts = Accounts(store.accounts, SecretKey.generate(32), names)
        _, totp = accounts.create_user("olga", PASSWORD, "operator", now=int(time.time()))
        assert totp is not None
        c = TestClient(create_app(accounts, store), base_url="https://testserver")
        c.post("/api/v1/auth/login", json={"username": "olga", "password": PASSWORD})
        c.post("/api/v1/auth/totp", json={"code": totp.code(time.time())})

        def paint() -> None:
            assert c.get("/").status_code == 200
            assert c.get("/ui/panel/fleet?page=1").status_code == 200

        def panels() -> None:  # what else the page loads: health, alarms, events, commands
            for name in ("health", "alarms", "events", "commands", "badge", "activity"):
                assert c.get(f"/ui/panel/{name}").status_code in (200, 404)

        def search() -> None:
            r = c.get("/ui/panel/fleet?q=0000777&alarms=none&sort=last_reading&order=desc")
            assert r.status_code == 200 and "MGD0000077" in r.text

        def api() -> None:
            r = c.get("/api/v1/fleet/meters?q=00012&sort=alarms&order=desc&per_page=200")
            assert r.status_code == 200 and r.json()["total"] > 0

        baseline = timed(lambda: old_list(store))
        rows = [
            ("first paint (page + fleet panel)", timed(paint)),
            ("the page's other panels (health, alarms …)", timed(panels)),
            ("search + filter + sort (panel)", timed(search)),
            ("search + sort (JSON API, 200 rows)", timed(api)),
        ]
        print(f"baseline: the old list's query, same rows: {baseline * 1000:.0f} ms")
        for name, s in rows:
            print(f"{name:44} {s * 1000:7.0f} ms   {baseline / s:5.1f}x faster than the baseline")


if __name__ == "__main__":
    main()
