"""REL-1: kill -9 an ingest worker mid-stream; after a restart no accepted reading is missing."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meterguard.broker.process import free_port
from tests.integration.stores import system_store

pytestmark = pytest.mark.integration


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def assert_every_interval_once(data: Path) -> None:
    """Per meter, contiguous from the first reading the head-end saw to the last interval the
    meter pushed; nothing twice; no security event (a redelivery is not a replay attack)."""
    store = system_store(data)
    with np.load(data / "fleet" / "fleet.npz") as fleet:
        last = {
            f"MGD{int(s):010d}": int(t)
            for s, t in zip(fleet["serial"], fleet["last_period"], strict=True)
        }
    total = 0
    for meter, end in last.items():
        starts = [r[0] for r in store.readings(meter, 0, 2**40)]
        assert starts, meter
        assert starts == list(range(starts[0], end, 900)), meter
        total += len(starts)
    counts = store.counts()
    assert counts["readings"] == total
    assert counts["security_events"] == 0, "a redelivery must not look like a replay attack"


def test_worker_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    demo = spawn(
        "demo",
        "--data",
        str(data),
        "--meters",
        "8",
        "--duration",
        "16",
        "--workers",
        "0",
        "--history-days",  # no catch-up burst before the separate worker has subscribed
        "0",
        "--speed",
        "1800",
    )
    try:
        deadline = time.monotonic() + 60
        while not (data / "system.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = spawn("ingest", "run", "--data", str(data), "--client-id", "ingest-a")
        time.sleep(6)
        worker.send_signal(signal.SIGKILL)  # kill -9, mid-stream
        worker.wait(10)
        time.sleep(3)  # meanwhile the meters keep publishing into the worker's persistent session
        again = spawn(
            "ingest", "run", "--data", str(data), "--client-id", "ingest-a", "--duration", "20"
        )
        demo_out, _ = demo.communicate(timeout=120)
        assert demo.returncode == 0, demo_out
        out, _ = again.communicate(timeout=60)
        assert again.returncode == 0, out
        committed = int(re.findall(r"ingest worker ingest-a: (\d+) messages committed", out)[0])
        assert committed > 0, out  # the restarted worker received what queued up while it was dead
    finally:
        for p in (demo,):
            if p.poll() is None:
                p.kill()
    assert_every_interval_once(data)


def test_two_worker_processes_share_one_stream_exactly_once(tmp_path: Path) -> None:
    # MQ-6 scale-out: two `meterguard ingest run` processes in one share group, one database.
    # Each meter's pushes are split between them; the store decides each counter once.
    data = tmp_path / "d"
    demo = spawn(
        "demo", "--data", str(data), "--meters", "8", "--duration", "14", "--workers", "0",
        "--history-days", "0",
        "--speed", "1800",
    )  # fmt: skip
    workers: list[subprocess.Popen[str]] = []
    try:
        deadline = time.monotonic() + 60
        while not (data / "system.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        port = free_port()
        workers.extend(
            spawn("ingest", "run", "--data", str(data), "--client-id", name, "--duration", "24",
                  *(("--metrics-port", str(port)) if name == "ingest-a" else ()))
            for name in ("ingest-a", "ingest-b")
        )  # fmt: skip
        demo_out, _ = demo.communicate(timeout=120)
        assert demo.returncode == 0, demo_out
        # A separate worker answers its own scrape (issue 17): its readings, with the token only.
        tls = ssl.create_default_context(cafile=str(data / "pki" / "root" / "root.pem"))
        token = (data / "web" / "metrics-token").read_text().strip()
        url = f"https://127.0.0.1:{port}/metrics"
        assert httpx.get(url, verify=tls).status_code == 401
        scrape = httpx.get(url, verify=tls, headers={"Authorization": f"Bearer {token}"})
        assert scrape.status_code == 200, scrape.text
        readings = [
            s.value
            for f in text_string_to_metric_families(scrape.text)
            for s in f.samples
            if s.name == "meterguard_ingest_readings_total"
        ]
        assert readings and readings[0] > 0, scrape.text[:500]
        outs = [w.communicate(timeout=60)[0] for w in workers]
    finally:
        for p in (demo, *workers):
            if p.poll() is None:
                p.kill()
    for w, out in zip(workers, outs, strict=True):
        assert w.returncode == 0, out
        committed = re.findall(r"ingest worker ingest-[ab]: (\d+) messages committed", out)
        assert committed and int(committed[0]) > 0, out  # both took part
    assert_every_interval_once(data)
