"""Issue 16 on a running demo: `meterguard attack run --all` against it, every scenario passing.

The demo runs as a user starts it (twelve meters — eleven homes and their feeder meter — with
three weeks of history, so the theft detector has rounds to score a bypass). From another
shell the attack command plays every scenario of every threat with the reduced, bounded ``ci``
profile; each must end *passed*: the attack refused and the system's own records showing it.
Afterwards the report holds no secret it searched for, the HTML report is self-contained, the
security administrator sees the run on the dashboard and over the API, and nobody else does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meterguard.attacks.catalog import SCENARIOS
from meterguard.attacks.scenario import Threat
from tests.integration.test_demo import cli
from tests.integration.test_firmware_demo import _login, running_demo
from tests.integration.test_mitmproxy import MITMDUMP

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    data = tmp_path_factory.mktemp("attackdemo") / "demo"
    args = ("--meters", "12", "--speed", "21600", "--history-days", "21", "--duration", "900")
    with running_demo(data, *args) as running:
        yield running


def test_no_attack_runs_without_an_explicit_target(tmp_path: Path) -> None:
    r = cli("attack", "run", "--all")
    assert r.returncode == 2 and "--data" in r.stderr
    r = cli("attack", "run", "--all", "--data", str(tmp_path))
    assert r.returncode == 1 and "no meterguard system" in r.stderr
    listed = cli("attack", "list", "--json")
    assert listed.returncode == 0
    assert {s["id"] for s in json.loads(listed.stdout)} == {s.id for s in SCENARIOS}


@pytest.mark.timeout(900)
def test_every_scenario_passes_against_the_demo(
    demo: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    data, info = demo
    report = tmp_path / "report.html"
    r = cli(
        "attack", "run", "--all", "--data", str(data), "--json", "--report", str(report),
        "--mitmdump", str(MITMDUMP), timeout=900,
    )  # fmt: skip
    doc = json.loads(r.stdout)
    failed = [
        (s["id"], s["outcome"], s["detail"], s["evidence_missing"])
        for s in doc["scenarios"]
        if s["outcome"] != "passed"
    ]
    assert not failed and r.returncode == 0 and doc["passed"], failed
    assert {s["id"] for s in doc["scenarios"]} == {s.id for s in SCENARIOS}
    assert set(doc["summary"]) == {t.value for t in Threat}
    with_records = [s for s in doc["scenarios"] if s["evidence_expected"]]
    assert all(s["evidence_found"] and s["time_to_detection_s"] is not None for s in with_records)
    floods = {s["id"]: s["figures"] for s in doc["scenarios"] if "flood" in s["id"]}
    assert all(f["alarm_latency_under_attack_s"] > 0 for f in floods.values()), floods
    by_id = {s["id"]: s for s in doc["scenarios"]}
    # Every forged-certificate link was played through mitmproxy, not a stand-in.
    for sid in ("forged-broker-to-meter", "forged-broker-to-headend", "forged-web-server"):
        assert by_id[sid]["detail"].startswith("mitmproxy"), by_id[sid]["detail"]
    storm = by_id["reconnect-storm"]["figures"]
    assert storm["meters"] == 12 and storm["reconnected_all_s"] > 0, storm
    assert storm["intervals_queued"] > 0 and storm["alarm_latency_under_attack_s"] > 0, storm
    for bad in ("tampered", "downgrade", "wrong-model"):  # refused by a live meter of the fleet
        assert "failed': 1" in by_id[f"firmware-live-{bad}"]["detail"]

    # The report names what it searched for, never the values (passwords, TOTP secrets).
    creds = (data / "web" / "demo-accounts.txt").read_text()
    text = r.stdout + report.read_text() + (data / "attacks" / "last-run.json").read_text()
    for secret in re.findall(r"password: (.*)", creds) + re.findall(r"secret=(\w+)", creds):
        assert secret not in text
    page = report.read_text()
    assert "every scenario passed" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)

    # The security administrator sees the last run; an operator does not.
    sven = _login(data, info["web_port"], "sven")
    got = sven.get("/api/v1/security/attack-report")
    assert got.status_code == 200 and got.json()["passed"] is True
    panel = sven.get("/ui/panel/attacks")
    assert panel.status_code == 200 and "Every scenario passed" in panel.text
    assert "dlms-replayed" in panel.text
    olga = _login(data, info["web_port"], "olga")
    assert olga.get("/api/v1/security/attack-report").status_code == 403
    assert olga.get("/ui/panel/attacks").status_code == 404
