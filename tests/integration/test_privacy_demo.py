"""Issue 15 on a running demo: an export reaches its recipient; a DP release beyond budget fails.

The demo runs as a user starts it (eleven homes behind a feeder, three days of history).
Alice consents to research use of her hourly data on the dashboard's API; the privacy
officer, from the CLI, defines a research recipient and exports two days by the hour with
pseudonyms rotated daily. The export verifies with the published export key, carries only
Alice's meter (the others gave no consent), under a different pseudonym each day and no
meter id, and Alice's access log shows it. A DP aggregate of the homes for one day is
released; the same request returns the same curve; one that would take the homes' day
beyond its budget is refused. Alice downloads a copy of all her data; then she is erased:
her meter's data keys are destroyed, so her stored readings are unreadable, she cannot log
in, and her bills, fetched by the operator, still verify with the billing key.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterguard.system.config import RunInfo
from meterguard.system.headend import HeadEnd
from tests.integration.test_demo import cli
from tests.integration.test_firmware_demo import _login, _wait, running_demo

pytestmark = pytest.mark.integration
ALICE_METER = "MGD0000000001"
DAY = 86400


def _consumer(data: Path, port: int, user: str) -> httpx.Client:
    creds = (data / "web" / "demo-accounts.txt").read_text()
    password = re.search(rf"{user} \(consumer\) password: (.*)", creds)
    assert password
    tls = ssl.create_default_context(cafile=str(data / "pki" / "root" / "root.pem"))
    c = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls, timeout=30)
    r = c.post("/api/v1/auth/login", json={"username": user, "password": password[1]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = str(r.json()["csrf_token"])
    return c


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    data = tmp_path_factory.mktemp("privacydemo") / "demo"
    args = ("--meters", "12", "--history-days", "3", "--duration", "300")
    with running_demo(data, *args) as running:
        yield running


def test_an_export_and_a_dp_release_from_the_cli(demo: tuple[Path, dict[str, Any]]) -> None:
    data, info = demo
    alice = _consumer(data, info["web_port"], "alice")
    r = alice.put(
        f"/api/v1/meters/{ALICE_METER}/sharing", json={"use": "research", "granularity": "hour"}
    )
    assert r.status_code == 200, r.text
    first_day = (int(info["meter_time"]) // DAY - 3) * DAY + DAY  # the first whole day stored
    start = dt.datetime.fromtimestamp(first_day, dt.UTC).date()
    end = start + dt.timedelta(days=2)

    def stored() -> bool:
        u = alice.get(f"/api/v1/meters/{ALICE_METER}/usage", params={
            "granularity": "hour", "start": first_day, "end": first_day + 2 * DAY,
        })  # fmt: skip
        return u.status_code == 200 and len(u.json()["buckets"]) >= 47

    _wait(stored, 120)
    add = cli("privacy", "recipient-add", "Uni Lab", "--use", "research", "--data", str(data))
    assert add.returncode == 0, add.stderr
    rid = re.search(r"recipient (\d+)", add.stdout)
    assert rid
    out = cli("privacy", "export", "--recipient", rid[1], "--start", str(start),
              "--end", str(end), "--granularity", "hour", "--rotation", "day",
              "--data", str(data))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "1 consumers included, 11 refused" in out.stdout  # 10 homes and the feeder meter
    directory = Path(out.stdout.rsplit("files in ", 1)[1].strip())
    check = cli("privacy", "verify-export", str(directory), "--key",
                str(data / "headend" / "export-key.pub"))  # fmt: skip
    assert check.returncode == 0 and "verifies" in check.stdout, check.stderr
    with (directory / "data.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 47
    assert len({r["pseudonym"] for r in rows}) == 2  # one meter, a pseudonym per day
    assert ALICE_METER not in (directory / "data.csv").read_text()
    log = alice.get(f"/api/v1/meters/{ALICE_METER}/access").json()["accesses"]
    assert any("Uni Lab" in a["what"] and a["actor"].startswith("cli:") for a in log)
    # a DP aggregate of the homes' day, accounted
    day = str(start)
    one = cli("privacy", "release", "--day", day, "--epsilon", "6", "--json", "--data", str(data))
    assert one.returncode == 0, one.stderr
    again = cli("privacy", "release", "--day", day, "--epsilon", "6", "--json", "--data", str(data))
    assert again.stdout == one.stdout  # stored: no fresh noise, no budget spent
    over = cli("privacy", "release", "--day", day, "--epsilon", "5", "--data", str(data))
    assert over.returncode == 1 and "budget" in over.stderr
    tampered = directory / "data.csv"
    tampered.write_text(tampered.read_text().replace("2", "3", 1))
    bad = cli("privacy", "verify-export", str(directory), "--key",
              str(data / "headend" / "export-key.pub"))  # fmt: skip
    assert bad.returncode == 1 and "differs" in bad.stderr


def test_an_erased_consumer_is_gone_and_her_bills_still_verify(
    demo: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    data, info = demo
    alice = _consumer(data, info["web_port"], "alice")
    olga = _login(data, info["web_port"], "olga")

    def billed() -> list[Any]:
        return list(olga.get(f"/api/v1/meters/{ALICE_METER}/bills").json()["bills"])

    _wait(billed, 120)
    mine = alice.get(f"/api/v1/meters/{ALICE_METER}/my-data")
    assert mine.status_code == 200 and "attachment" in mine.headers["content-disposition"]
    copy = mine.json()
    assert copy["readings"] and copy["bills"] and copy["access_log"]
    assert olga.get(f"/api/v1/meters/{ALICE_METER}/my-data").status_code == 403
    oldest = copy["readings"][0]["interval_start"]
    erased = cli("privacy", "erase", "alice", "--yes", "--data", str(data))
    assert erased.returncode == 0, erased.stderr
    assert "destroyed" in erased.stdout
    assert cli("privacy", "erase", "alice", "--yes", "--data", str(data)).returncode == 1
    # her readings, sealed under the destroyed key, are unreadable to anyone holding the data
    he, _ = HeadEnd.join(data)
    try:
        assert he.store.readings(ALICE_METER, oldest, oldest + 2 * DAY) == []
        assert he.store.readings("MGD0000000002", oldest, oldest + 2 * DAY)  # others' stay
    finally:
        he.stop()
    r = httpx.post(
        f"https://127.0.0.1:{info['web_port']}/api/v1/auth/login",
        json={"username": "alice", "password": "x"},
        verify=ssl.create_default_context(cafile=str(data / "pki" / "root" / "root.pem")),
    )
    assert r.status_code == 401
    bills = olga.get(f"/api/v1/meters/{ALICE_METER}/bills")
    assert bills.status_code == 200 and bills.json()["bills"]
    (tmp_path / "bills.json").write_text(bills.text)
    check = cli("bill", "verify", str(tmp_path / "bills.json"), "--key",
                str(data / "headend" / "billing-key.pub"))  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "INVALID" not in check.stdout
    # A copy of the database (and its WAL) shows no consumer's name: names are sealed, records
    # say consumer:N (PRIV-4). Staff are named: who approved what must be readable.
    db = Path(RunInfo.read(data).db.removeprefix("sqlite:///"))
    files = [f for f in db.parent.iterdir() if f.name.startswith(db.name)]
    raw = b"".join(f.read_bytes() for f in files)
    assert b"alice" not in raw and b"consumer:" in raw
