"""`meterguard demo` as a user runs it: readings arrive, a tamper is an alarm, restart resumes."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyotp
import pytest
from sqlalchemy import create_engine, text

from meterguard.attacks.probe import connect
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store

pytestmark = pytest.mark.integration


def cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def status(data: Path) -> dict[str, int]:
    res = cli("status", "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    parsed: dict[str, int] = json.loads(res.stdout)
    return parsed


def web_checks(data: Path, port: int) -> None:
    """The demo's HTTPS API with its demo accounts: a consumer sees only her meter, the
    operator gets in with password and TOTP."""
    creds = (data / "web" / "demo-accounts.txt").read_text()
    assert (data / "web" / "demo-accounts.txt").stat().st_mode & 0o777 == 0o600
    alice = re.search(r"alice \(consumer\) password: (.*)", creds)
    olga = re.search(r"olga \(operator\) password: (.*)", creds)
    secret = re.search(r"secret=([A-Z2-7]+)", creds)
    assert alice and olga and secret
    tls = ssl.create_default_context(cafile=str(data / "pki" / "root" / "root.pem"))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls, timeout=10) as c:
        r = c.post("/api/v1/auth/login", json={"username": "alice", "password": alice[1]})
        assert r.status_code == 200 and r.json()["mfa_required"] is False
        assert c.get("/api/v1/meters").json() == {"meters": [{"meter_id": "MGD0000000001"}]}
        assert c.get("/api/v1/meters/MGD0000000002/readings").status_code == 404
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls, timeout=10) as c:
        r = c.post("/api/v1/auth/login", json={"username": "olga", "password": olga[1]})
        assert r.json()["mfa_required"] is True
        code = pyotp.TOTP(secret[1]).now()
        assert c.post("/api/v1/auth/totp", json={"code": code}).status_code == 200
        assert c.get("/api/v1/fleet").json()["meters"] == 10


def test_demo_runs_stores_readings_and_shows_a_tamper_alarm(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "meterguard",
            "demo",
            "--data",
            str(data),
            "--meters",
            "10",
            "--duration",
            "90",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (data / "system.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(5)
        res = cli("meter", "tamper", "MGD0000000004", "cover-open", "--data", str(data))
        assert res.returncode == 0, res.stderr
        # MQ-4: a valid meter (its own certificate) connects with another meter's client id: the
        # broker makes it its own, so it takes over only its own session (what a clone does).
        info = json.loads((data / "system.json").read_text())
        me = data / "meters" / "MGD0000000002"
        impostor = connect(
            int(info["device_port"]),
            data / "pki" / "root" / "root.pem",
            me / "tls.pem",
            me / "tls.key",
            client_id="MGD0000000004",
        )
        assert impostor.connected
        time.sleep(1.5)
        impostor.close()
        web_checks(data, int(info["web_port"]))
        # Stopped like an operator stops it (Ctrl-C), not by a duration the checks could outlast.
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    first = status(data)
    assert first["meters"] == 10 and first["readings"] > 20 and first["alarms"] == 1, first
    assert first["rejected_messages"] == 0
    events = Store(open_database(info["db"])).security_events()
    assert ("MGD0000000002", "session_taken_over") in events, events
    assert not [e for m, e in events if m == "MGD0000000004"], events  # undisturbed
    assert {e for _, e in events} <= {"client_id_mismatch", "session_taken_over"}, events
    # A second run on the same data resumes: counters persisted, nothing refused as a replay.
    res = cli("demo", "--data", str(data), "--meters", "10", "--duration", "6")
    assert res.returncode == 0, res.stdout + res.stderr
    second = status(data)
    assert second["readings"] > first["readings"]
    # Nothing refused as a replay, and the old takeover is not reported twice.
    assert second["security_events"] == first["security_events"]
    assert second["rejected_messages"] == 0
    # LOG-1…4: the alarm and the takeover are in the audit log, under signed tree heads.
    state = tmp_path / "auditor-elsewhere.json"
    audited = cli("audit", "verify", "--data", str(data), "--state", str(state))
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "audit log verified" in audited.stdout
    assert "nothing was pinned before this run" in audited.stdout
    again = cli("audit", "verify", "--data", str(data), "--state", str(state))
    assert again.returncode == 0 and "nothing was pinned" not in again.stdout, again.stdout
    # Without --state, the pin goes to the auditor's own state directory, not into DATA.
    home = tmp_path / "auditor-home"
    mine = cli("audit", "verify", "--data", str(data), env={"XDG_STATE_HOME": str(home)})
    assert mine.returncode == 0, mine.stdout + mine.stderr
    assert len(list((home / "meterguard" / "auditor").glob("*.json"))) == 1
    assert not list(data.rglob("state.json"))
    entries = int(audited.stdout.split(" entries")[0])
    assert entries >= 2, audited.stdout  # the alarm and at least the takeover
    engine = create_engine(info["db"])
    with engine.begin() as c:
        # Item 10: the demo's witness (a process of its own) cosigned the heads it signed.
        assert int(c.scalar(text("SELECT count(*) FROM audit_cosignatures"))) >= 1
        c.execute(text("UPDATE audit_entries SET result = 'cleared' WHERE seq = 1"))
    engine.dispose()
    tampered = cli("audit", "verify", "--data", str(data), "--state", str(state), "--full")
    assert tampered.returncode == 1 and "entry 1 does not match" in tampered.stdout


def test_demo_on_postgresql(tmp_path: Path) -> None:
    name = f"mg_demo_{secrets.token_hex(4)}"
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        res = cli(
            "demo",
            "--data",
            str(tmp_path / "pg"),
            "--meters",
            "5",
            "--duration",
            "6",
            "--db",
            f"postgresql://postgres@127.0.0.1:5432/{name}",
        )
        assert res.returncode == 0, res.stdout + res.stderr
        counts = status(tmp_path / "pg")
        assert counts["meters"] == 5 and counts["readings"] > 0
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
