"""Issue 13 on a running demo: a dual-controlled campaign updates the fleet; bad ones change none.

The demo runs as a user starts it; two utility people (olga, erik) drive campaigns over the
HTTPS API: distribution and activation each need the second person. The fleet goes from the
factory image (1.0.0) to 1.1.0, attests to it, and the dashboard shows it. Then a wrong-model
image, a tampered image (the endpoint's file changed on disk) and a rollback to 1.0.0 are
campaigned: every meter refuses, nothing changes, the refusals are security events.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text

from meterguard.firmware.attestation import Attestation
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.meter.firmware import HttpsFetcher
from tests.integration.test_demo import cli

pytestmark = pytest.mark.integration
METERS = 6


def _login(data: Path, port: int, user: str) -> httpx.Client:
    creds = (data / "web" / "demo-accounts.txt").read_text()
    password = re.search(rf"{user} \(\w+\) password: (.*)", creds)
    secret = re.search(rf"{user} TOTP .*secret=([A-Z2-7]+)", creds)
    assert password and secret
    tls = ssl.create_default_context(cafile=str(data / "pki" / "root" / "root.pem"))
    c = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls, timeout=30)
    r = c.post("/api/v1/auth/login", json={"username": user, "password": password[1]})
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/auth/totp", json={"code": pyotp.TOTP(secret[1]).now()})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = str(r.json()["csrf_token"])
    return c


def _wait(what: Callable[[], Any], timeout: float = 90) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"timed out waiting: {what()}")


@contextlib.contextmanager
def running_demo(data: Path, *args: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`meterguard demo --data DATA ARGS…` as a user starts it; Ctrl-C when done."""
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", "demo", "--data", str(data), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait((data / "system.json").exists, 120)
        yield data, json.loads((data / "system.json").read_text())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    data = tmp_path_factory.mktemp("fwdemo") / "demo"
    with running_demo(data, "--meters", str(METERS), "--duration", "400") as running:
        yield running


def _campaign(c: httpx.Client, cid: int) -> dict[str, Any]:
    for item in c.get("/api/v1/firmware/campaigns").json()["campaigns"]:
        if item["campaign"]["id"] == cid:
            return dict(item)
    raise AssertionError(f"no campaign {cid}")


def _run(olga: httpx.Client, erik: httpx.Client, image: str) -> dict[str, Any]:
    r = olga.post(
        "/api/v1/firmware/campaigns",
        json={"image": image, "meters": "all", "deadline_hours": 2, "reason": "test"},
    )
    assert r.status_code == 201, r.text
    cid = r.json()["campaign"]["id"]
    assert olga.post(f"/api/v1/firmware/campaigns/{cid}/approve").status_code == 403  # same person
    assert erik.post(f"/api/v1/firmware/campaigns/{cid}/approve").status_code == 200
    _wait(lambda: sum(_campaign(olga, cid)["counts"].get(s, 0) for s in ("staged", "failed"))
          == METERS)  # fmt: skip
    return _campaign(olga, cid)


def test_a_campaign_updates_the_fleet_under_dual_control(demo: tuple[Path, dict[str, Any]]) -> None:
    data, info = demo
    olga, erik = _login(data, info["web_port"], "olga"), _login(data, info["web_port"], "erik")
    images = {i["version"]: i for i in olga.get("/api/v1/firmware/images").json()}
    assert {"1.0.0", "1.1.0"} <= set(images)
    started = time.monotonic()
    staged = _run(olga, erik, images["1.1.0"]["name"])
    cid = staged["campaign"]["id"]
    assert staged["counts"] == {"staged": METERS}, staged
    meters = olga.get("/api/v1/firmware/meters").json()["meters"]
    assert {m["version"] for m in meters} == {"1.0.0"}  # staged, not yet running
    assert olga.post(f"/api/v1/firmware/campaigns/{cid}/activate").status_code == 200
    assert olga.post(f"/api/v1/firmware/campaigns/{cid}/approve-activation").status_code == 403
    assert erik.post(f"/api/v1/firmware/campaigns/{cid}/approve-activation").status_code == 200
    _wait(lambda: _campaign(olga, cid)["counts"].get("updated") == METERS)
    took = time.monotonic() - started
    meters = olga.get("/api/v1/firmware/meters").json()["meters"]
    assert {(m["version"], m["slot"], m["counter"]) for m in meters} == {("1.1.0", "b", 2)}
    print(f"campaign of {METERS} meters: {took:.1f} s from proposal to all confirmed")
    # FW-11: each meter answers a fresh nonce with a measurement the repository expects.
    assert olga.post("/api/v1/firmware/attest", json={"meters": "all"}).status_code == 202
    _wait(lambda: {m["attestation"] for m in olga.get("/api/v1/firmware/meters").json()["meters"]}
          == {"trusted"})  # fmt: skip
    panel = olga.get("/ui/panel/firmware").text
    assert "1.1.0" in panel and "updated" in panel and "trusted" in panel
    assert _wait(lambda: _campaign(olga, cid)["campaign"]["state"] == "done")

    # Bad campaigns: every meter refuses, none changes.
    repo = data / "firmware"
    wrong = data / "wrong-model.mgfw"
    assert cli("firmware", "build", str(wrong), "--version", "1.2.0", "--security-version", "3",
               "--model", "MG-2").returncode == 0  # fmt: skip
    assert cli("firmware", "add", str(wrong), "--repo", str(repo)).returncode == 0
    tampered = data / "tampered.mgfw"
    assert cli("firmware", "build", str(tampered), "--version", "1.3.0",
               "--security-version", "3").returncode == 0  # fmt: skip
    added = cli("firmware", "add", str(tampered), "--repo", str(repo))
    assert added.returncode == 0, added.stderr
    served = next((repo / "targets").glob("*.MGD-MG-1-A-1.3.0.mgfw"))
    blob = bytearray(served.read_bytes())
    blob[-10] ^= 0x40  # malware written into what the endpoint serves
    served.write_bytes(bytes(blob))
    expected = {"MGD-MG-2-A-1.2.0.mgfw": "refused:incompatible",
                "MGD-MG-1-A-1.3.0.mgfw": "refused:tampered",
                images["1.0.0"]["name"]: "refused:downgrade"}  # fmt: skip
    for name, reason in expected.items():
        result = _run(olga, erik, name)
        assert result["counts"] == {"failed": METERS}, result
        assert {why for _, why in result["failures"]} == {reason}, result
    meters = olga.get("/api/v1/firmware/meters").json()["meters"]
    assert {(m["version"], m["slot"], m["counter"]) for m in meters} == {("1.1.0", "b", 2)}
    events = Store(open_database(info["db"])).security_events()
    refused = [m for m, e in events if e == "firmware_refused"]
    assert len(set(refused)) == METERS, events

    # FW-12: a report not signed by the meter's attestation key is refused (and an event).
    me = data / "meters" / "MGD0000000002"
    fetcher = HttpsFetcher(data / "pki" / "root" / "root.pem", me / "tls.pem", me / "tls.key")
    base = f"https://127.0.0.1:{info['firmware_port']}/firmware/reports"
    forged_key = ec.generate_private_key(ec.SECP256R1())
    body = {"kind": "status", "meter": "MGD0000000002", "at": "2030-01-01T00:00:00+00:00",
            "version": "9.9.9", "firmware_sha256": "00" * 32, "slot": "a", "counter": 99,
            "result": "confirmed", "target": "x"}  # fmt: skip
    doc = Attestation(body, b"")
    forged = Attestation(body, forged_key.sign(doc.payload(), ec.ECDSA(hashes.SHA256())))
    assert fetcher.post(base, json.dumps(forged.to_json()).encode()) == 403
    assert fetcher.post(base, b"{" * 5000) == 413
    assert fetcher.post(base, b"not json") == 400
    # one identity's flood of reports is cut off before any signature check or write
    flood = [fetcher.post(base, json.dumps(forged.to_json()).encode()) for _ in range(40)]
    assert 429 in flood and set(flood) <= {403, 429}, flood
    # FW-11: malware written into a meter's flash shows in its measurement: quarantined.
    slot = data / "meters" / "MGD0000000003" / "firmware" / "slots" / "slot-b.bin"
    blob = bytearray(slot.read_bytes())
    blob[-5] ^= 0x01
    slot.write_bytes(bytes(blob))
    assert olga.post("/api/v1/firmware/attest", json={"meters": "MGD0000000003"}).status_code == 202

    def attestation(mid: str) -> str:
        rows = olga.get("/api/v1/firmware/meters").json()["meters"]
        return str(next(m["attestation"] for m in rows if m["meter_id"] == mid))

    _wait(lambda: attestation("MGD0000000003") == "mismatch")
    assert attestation("MGD0000000002") == "trusted"
    events = Store(open_database(info["db"])).security_events()
    assert ("MGD0000000003", "attestation_mismatch") in events
    assert ("MGD0000000002", "firmware_report_forged") in events
    with create_engine(info["db"]).connect() as c:
        state = c.scalar(text("SELECT state FROM meters WHERE id = 'MGD0000000003'"))
    assert state == "quarantined"
