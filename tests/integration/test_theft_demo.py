"""Issue 14 on a running demo: an h1 thief is a suspect with its feeder's gap; a vacation is not.

The demo runs as a user starts it (a fleet of 11 homes and the feeder meter that measures
them, three weeks of history). From another shell a home's household goes on a three-week
vacation, and a simulated week later another home is made a thief with h1 (about half its
consumption unregistered). The head-end scores the meters from their stored, verified
readings: the thief comes first with its feeder's imbalance and the co-movement of its
readings with the gap as evidence; the vacationer stays clear. Only the investigator sees
suspicion; a case is opened, assigned and closed, each step audited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.integration.test_demo import cli
from tests.integration.test_firmware_demo import _login, _wait, running_demo

pytestmark = pytest.mark.integration
METERS = 12  # 11 homes behind one feeder, the feeder meter last
THIEF, AWAY, FEEDER = "MGD0000000003", "MGD0000000004", "MGD0000000012"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    data = tmp_path_factory.mktemp("theftdemo") / "demo"
    args = ("--meters", str(METERS), "--speed", "21600", "--history-days", "21")
    with running_demo(data, *args, "--duration", "500") as running:
        yield running


def _suspects(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.get("/api/v1/revenue-protection/suspects")
    assert r.status_code == 200, r.text
    return list(r.json()["suspects"])


def test_a_thief_is_found_and_a_vacation_is_not(demo: tuple[Path, dict[str, Any]]) -> None:
    data, info = demo
    rita = _login(data, info["web_port"], "rita")
    feeders = rita.get("/api/v1/grid/feeders").json()["feeders"]
    assert [(f["name"], f["meter_id"], len(f["members"])) for f in feeders] == [
        ("feeder-1", FEEDER, METERS - 1)
    ]
    away = cli("meter", "vacation", AWAY, "--days", "21", "--data", str(data))
    assert away.returncode == 0, away.stderr
    # Score rounds come every 20 s (5 simulated days): watch the vacation while it lasts.
    vacation_scores: list[float] = []

    def watch() -> dict[str, dict[str, Any]]:
        rows = {s["meter_id"]: s for s in _suspects(rita)}
        away_row = rows.get(AWAY)
        if away_row and away_row["evidence"]["level_recent"] < 0.7:  # a week of vacation
            vacation_scores.append(away_row["score"])
        return rows

    # The theft begins a simulated week (28 s) into the vacation. A vacation that begins in
    # the very week a neighbour starts stealing is a known false positive (its readings fall
    # when the feeder's gap rises: scored 0.53 and 0.55 in two of four runs, issue 14's note).
    t0 = time.monotonic()
    _wait(lambda: watch() is None or time.monotonic() - t0 > 28, 60)
    steal = cli("meter", "steal", THIEF, "--model", "h1", "--seed", "1", "--evidence", "0",
                "--data", str(data))  # fmt: skip
    assert steal.returncode == 0, steal.stderr
    bad = cli("meter", "steal", THIEF, "--model", "h9", "--data", str(data))
    assert bad.returncode != 0 and "no theft model" in bad.stderr

    def thief_on_top() -> bool:
        rows = watch()
        top = max(rows.values(), key=lambda s: s["score"], default=None)
        return bool(top and top["meter_id"] == THIEF and top["score"] >= 0.5 and vacation_scores)

    _wait(thief_on_top, 300)
    rows = {s["meter_id"]: s for s in _suspects(rita)}
    thief = rows[THIEF]
    assert thief["evidence"]["feeder"] == "feeder-1"
    assert thief["evidence"]["feeder_gap"] > 0.005  # the feeder measured more than was reported
    # It explains the gap: its readings move with the missing energy, or fell when it rose.
    assert max(thief["evidence"]["comovement"], thief["evidence"]["onset"]) > 0.5, thief
    assert vacation_scores and max(vacation_scores) < 0.5, vacation_scores
    assert FEEDER not in rows  # the feeder meter is the utility's own, not a suspect
    # Suspicion is for investigators only; the consumer, the operator and no session get none.
    olga = _login(data, info["web_port"], "olga")
    assert olga.get("/api/v1/revenue-protection/suspects").status_code == 403
    assert olga.get("/api/v1/grid/feeders").status_code == 200
    assert olga.get("/ui/panel/theft").status_code == 404
    anon = httpx.Client(base_url=f"https://127.0.0.1:{info['web_port']}", verify=False)  # noqa: S501
    assert anon.get("/api/v1/revenue-protection/suspects").status_code == 401
    page = rita.get("/ui/panel/theft")
    assert page.status_code == 200 and THIEF in page.text and "feeder-1" in page.text
    # A case: opened, a second one refused while it is open, assigned, closed; all audited.
    r = rita.post("/api/v1/revenue-protection/cases", json={"meter_id": THIEF, "note": "inspect"})
    assert r.status_code == 201, r.text
    case = r.json()["case"]
    assert (
        rita.post("/api/v1/revenue-protection/cases", json={"meter_id": THIEF}).status_code == 409
    )
    assert olga.post(f"/api/v1/revenue-protection/cases/{case}/close",
                     json={"outcome": "no-theft"}).status_code == 403  # fmt: skip
    assert rita.post(f"/api/v1/revenue-protection/cases/{case}/assign",
                     json={"assignee": "rita"}).status_code == 200  # fmt: skip
    assert rita.post(f"/api/v1/revenue-protection/cases/{case}/close",
                     json={"outcome": "stolen"}).status_code == 422  # fmt: skip
    closed = {"outcome": "confirmed", "note": "shunt found"}
    r = rita.post(f"/api/v1/revenue-protection/cases/{case}/close", json=closed)
    assert r.status_code == 200, r.text
    assert rita.post(f"/api/v1/revenue-protection/cases/{case}/assign",
                     json={"assignee": "rita"}).status_code == 404  # closed  # fmt: skip
    assert rita.post(f"/api/v1/revenue-protection/cases/{2**40}/close",
                     json={"outcome": "confirmed"}).status_code == 404  # fmt: skip
    cases = rita.get("/api/v1/revenue-protection/cases").json()["cases"]
    assert cases[0]["state"] == "closed" and cases[0]["outcome"] == "confirmed"
    engine = create_engine(f"sqlite:///{data / 'headend.db'}")
    with engine.connect() as conn:
        actions = [
            (a, actor)
            for a, actor in conn.execute(
                text("SELECT action, actor FROM audit_entries WHERE action LIKE 'theft.case.%'")
            )
        ]
    assert actions == [
        ("theft.case.open", "rita"),
        ("theft.case.assign", "rita"),
        ("theft.case.close", "rita"),
    ]
