"""PKI-5 across processes: the CLI's lifecycle commands reach a running head-end and broker.

A demo runs in one process (broker, in-process ingest lanes, fleet); ``meterguard meter
revoke|disable|enable`` runs in another, through the same service the API calls. Within a
few seconds the running ingest refuses the meter's later messages — also those on the TLS
session it opened before — the broker refuses a new session with its certificate, and the
audit log names who did it. A separate ``meterguard ingest run`` worker follows the same way.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from meterguard.attacks.probe import connect
from meterguard.headend.store.repository import Store
from meterguard.system.config import RunInfo
from tests.integration.stores import system_store

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def start_demo(data: Path, *extra: str) -> subprocess.Popen[str]:
    data.mkdir(parents=True)
    out = (data.parent / "demo.out").open("w")  # a file: an unread pipe would fill and block
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "meterguard",
            "demo",
            "--data",
            str(data),
            "--meters",
            "4",
            "--duration",
            "120",
            *extra,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert wait_for(lambda: (data / "system.json").exists() or proc.poll() is not None, 90)
    assert proc.poll() is None, (data.parent / "demo.out").read_text()
    return proc


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    data = tmp_path / "demo"
    proc = start_demo(data)
    try:
        yield data, system_store(data)
    finally:
        proc.terminate()
        proc.wait(30)


def readings_of(store: Store, mid: str) -> int:
    return len(store.readings(mid, 0, 2**40))


def refusals_of(store: Store, mid: str) -> int:
    return sum(1 for m, e in store.security_events() if m == mid and e == "access_denied")


def trail(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT actor, target, action FROM audit_entries ORDER BY seq"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_cli_revocation_reaches_the_running_headend_and_broker(
    running: tuple[Path, Store],
) -> None:
    data, store = running
    victim, other = "MGD0000000003", "MGD0000000001"
    assert wait_for(lambda: readings_of(store, victim) > 3, 60)
    info = RunInfo.read(data)
    me = data / "meters" / victim
    root = data / "pki" / "root" / "root.pem"
    before = connect(info.device_port, root, me / "tls.pem", me / "tls.key", client_id="probe-1")
    assert before.connected  # the certificate works before the revocation
    before.close()

    res = cli("meter", "revoke", victim, "--data", str(data))
    assert res.returncode == 0, res.stderr
    revoked_at = time.monotonic()
    # The running ingest refuses the meter's later messages, on the session it opened before.
    assert wait_for(lambda: refusals_of(store, victim) > 0, 10), "ingest did not learn of it"
    detected = time.monotonic() - revoked_at
    stored = readings_of(store, victim)
    others = readings_of(store, other)
    time.sleep(3)
    assert readings_of(store, victim) == stored, "readings of a revoked meter were stored"
    assert readings_of(store, other) > others, "the other meters must keep going"
    assert refusals_of(store, victim) > 1
    # The broker reloaded its CRL: a new session with the revoked certificate is refused.
    assert wait_for(
        lambda: (
            not connect(
                info.device_port, root, me / "tls.pem", me / "tls.key", client_id="probe-2"
            ).connected
        ),
        10,
    ), "the broker still accepts the revoked certificate"
    assert (f"cli:{getpass.getuser()}", victim, "certificate_revoked") in trail(store)
    states = {m: s for m, _, s in store.registry.meters()}
    assert states[victim] == "revoked" and states[other] == "active"
    print(f"revocation reached ingest in {detected:.1f} s")  # the note's figure
    # A second revocation is a clear one-line refusal, not a traceback.
    again = cli("meter", "revoke", victim, "--data", str(data))
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "is revoked" in again.stderr


def test_cli_disable_and_enable_reach_the_running_headend(running: tuple[Path, Store]) -> None:
    data, store = running
    mid = "MGD0000000002"
    assert wait_for(lambda: readings_of(store, mid) > 3, 60)
    assert cli("meter", "disable", mid, "--data", str(data)).returncode == 0
    assert wait_for(lambda: refusals_of(store, mid) > 0, 10)
    time.sleep(1.5)
    stored = readings_of(store, mid)
    time.sleep(2)
    assert readings_of(store, mid) == stored
    assert cli("meter", "enable", mid, "--data", str(data)).returncode == 0
    # Enabled again: its later readings are accepted (the meter kept its outbox).
    assert wait_for(lambda: readings_of(store, mid) > stored, 15)
    actions = [a for _, t, a in trail(store) if t == mid and a.startswith("meter_")]
    assert actions == ["meter_disabled", "meter_enabled"]


def test_a_separate_ingest_worker_follows_a_revocation(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = start_demo(data, "--workers", "0", "--history-days", "0")
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "meterguard",
            "ingest",
            "run",
            "--data",
            str(data),
            "--client-id",
            "headend-ingest-7",
            "--duration",
            "60",
        ],
        stdout=(tmp_path / "worker.out").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        store = system_store(data)
        victim = "MGD0000000004"
        assert wait_for(lambda: readings_of(store, victim) > 3, 60)
        assert cli("meter", "revoke", victim, "--data", str(data)).returncode == 0
        assert wait_for(lambda: refusals_of(store, victim) > 0, 10)
        stored = readings_of(store, victim)
        time.sleep(2)
        assert readings_of(store, victim) == stored
    finally:
        for p in (worker, proc):
            p.terminate()
            p.wait(30)


def test_lifecycle_commands_on_a_directory_without_a_system(tmp_path: Path) -> None:
    res = cli("meter", "revoke", "MGD0000000001", "--data", str(tmp_path))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "no meterguard system" in res.stderr
