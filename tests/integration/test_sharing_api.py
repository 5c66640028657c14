"""Data sharing over the web API and a real database and key store (PRIV-2).

Twelve consumers, a privacy officer and an operator. Consumers consent per use; the
officer defines a recipient and exports; the export holds only the consenting consumers,
under pseudonyms that rotate each day, verifies against the export key, and shows in each
included consumer's access log. A DP release beyond a day's budget is refused (409) and a
repeated one returns the same curve.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.headend.api.app import create_app
from meterguard.headend.api.guard import Limits
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.sharing import DataSharing, verify_export
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import ReadingRow, Store
from meterguard.system.keys import SharedKeyStore
from tests.accounts import test_accounts
from tests.integration.test_api import login

pytestmark = pytest.mark.integration
DAY = 86400
T0 = 1_767_225_600  # 2026-01-01
PASSWORD = "mauve tractor sings at dawn"  # noqa: S105 - test accounts only
PIA = "seven amber foxes cross frozen rivers"
OLGA = "copper kettles whistle in july rain"
IDS = [f"MGD{n:010d}" for n in range(1, 13)]


@pytest.fixture
def site(tmp_path: Path):
    store = Store(open_database(f"sqlite:///{tmp_path / 'headend.db'}"))
    for n, mid in enumerate(IDS, start=1):
        store.registry.add_meter(
            mid, serial=mid[3:], system_title=b"MGD" + n.to_bytes(5, "big"), now=0
        )
        store.add_readings(
            [ReadingRow(mid, T0 + 900 * k, 1000 + (20 + n) * k, 0, 0) for k in range(2 * 96 + 1)]
        )
    accounts = test_accounts(store, tmp_path)
    now = int(time.time())
    for n, mid in enumerate(IDS):
        accounts.create_user(f"home{n}", PASSWORD, "consumer", now=now, meters=(mid,))
    _, pia = accounts.create_user("pia", PIA, "privacy_officer", now=now)
    _, olga = accounts.create_user("olga", OLGA, "operator", now=now)
    keys = SharedKeyStore(KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32))))
    sharing = DataSharing(
        store.sharing, consumption_data(store, accounts), pseudonyms=keys.pseudonyms,
        signing_key=SigningKey.generate(), out_dir=tmp_path / "exports", meters=accounts.meters,
    )  # fmt: skip
    app = create_app(accounts, store, sharing=sharing)
    app.state.limits = Limits(burst=20)  # a dozen people log in from one test address
    return app, sharing, {"pia": pia, "olga": olga}


def _client(app) -> TestClient:
    return TestClient(app, base_url="https://testserver")


def _utility(app, user: str, password: str, totp) -> TestClient:
    c = _client(app)
    login(c, user, password)
    r = c.post("/api/v1/auth/totp", json={"code": totp.code(time.time())})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def _consumer(app, n: int) -> TestClient:
    c = _client(app)
    c.headers["X-CSRF-Token"] = str(login(c, f"home{n}", PASSWORD)["csrf_token"])
    return c


def test_an_export_reaches_its_recipient_under_rotating_pseudonyms(site) -> None:
    app, sharing, totps = site
    pia = _utility(app, "pia", PIA, totps["pia"])
    olga = _utility(app, "olga", OLGA, totps["olga"])
    assert olga.get("/api/v1/sharing/recipients").status_code == 403
    r = pia.post("/api/v1/sharing/recipients", json={"name": "Uni Lab", "use": "research"})
    assert r.status_code == 201
    rid = r.json()["recipient"]
    for n in (0, 1, 2):
        c = _consumer(app, n)
        r = c.put(
            f"/api/v1/meters/{IDS[n]}/sharing", json={"use": "research", "granularity": "hour"}
        )
        assert r.status_code == 200 and r.json()["consents"][0]["given_by"] == f"consumer:{n + 1}"
    # a consumer cannot consent for another's meter (404), nor the officer for anyone (403)
    assert (
        _consumer(app, 3)
        .put(
            f"/api/v1/meters/{IDS[0]}/sharing", json={"use": "research", "granularity": "interval"}
        )
        .status_code
        == 404
    )
    assert (
        pia.put(
            f"/api/v1/meters/{IDS[3]}/sharing", json={"use": "research", "granularity": "interval"}
        ).status_code
        == 403
    )
    body = {
        "recipient_id": rid,
        "start": T0,
        "end": T0 + 2 * DAY,
        "granularity": "hour",
        "rotation": "day",
    }
    assert (
        pia.post("/api/v1/sharing/exports", json={**body, "granularity": "interval"}).json()[
            "included"
        ]
        == 0
    )
    r = pia.post("/api/v1/sharing/exports", json=body)
    assert r.status_code == 201, r.text
    assert (r.json()["included"], r.json()["refused"]) == (3, 9)
    eid = r.json()["export"]
    got = pia.get(f"/api/v1/sharing/exports/{eid}/data.csv")
    assert got.status_code == 200
    rows = list(csv.DictReader(io.StringIO(got.text)))
    by_day: dict[str, set[str]] = {}
    for row in rows:
        by_day.setdefault(row["period"], set()).add(row["pseudonym"])
    assert len(by_day) == 2 and all(len(p) == 3 for p in by_day.values())
    first, second = by_day.values()
    assert not first & second  # the pseudonyms rotate
    assert not any(mid in got.text for mid in IDS)
    delivered = sharing.export_file(_officer(), eid, "data.csv").parent
    assert verify_export(delivered, sharing.verifying_key)["included"] == 3
    assert pia.get(f"/api/v1/sharing/exports/{eid}/..%2Fkeys.db").status_code in (404, 422)
    assert pia.get(f"/api/v1/sharing/exports/{2**60}/data.csv").status_code == 422
    for n in (0, 1, 2):
        log = _consumer(app, n).get(f"/api/v1/meters/{IDS[n]}/access").json()["accesses"]
        assert any(a["actor"] == "pia" and "Uni Lab" in a["what"] for a in log)
    assert not _consumer(app, 5).get(f"/api/v1/meters/{IDS[5]}/access").json()["accesses"]


def _officer() -> Principal:
    return Principal(0, "pia", "privacy_officer")


def test_a_release_beyond_the_budget_is_refused(site) -> None:
    app, _, totps = site
    olga = _utility(app, "olga", OLGA, totps["olga"])
    assert (
        _consumer(app, 0)
        .post("/api/v1/sharing/releases", json={"scope": "all", "day": T0, "epsilon": 1})
        .status_code
        == 403
    )
    r = olga.post("/api/v1/sharing/releases", json={"scope": "all", "day": T0, "epsilon": 8})
    assert r.status_code == 201, r.text
    curve = r.json()["curve"]
    assert len(curve["import_wh"]) == 24 and curve["epsilon_day"] == pytest.approx(8)
    again = olga.post("/api/v1/sharing/releases", json={"scope": "all", "day": T0, "epsilon": 8})
    assert again.json()["curve"] == curve
    r = olga.post("/api/v1/sharing/releases", json={"scope": "all", "day": T0, "epsilon": 3})
    assert r.status_code == 409 and "budget" in r.json()["detail"]
    assert (
        olga.post(
            "/api/v1/sharing/releases", json={"scope": "all", "day": T0, "epsilon": 2}
        ).status_code
        == 201
    )
    assert (
        olga.post(
            "/api/v1/sharing/releases", json={"scope": "feeder:x", "day": T0, "epsilon": 1}
        ).status_code
        == 404
    )
    assert (
        olga.post(
            "/api/v1/sharing/releases", json={"scope": "all; drop", "day": T0, "epsilon": 1}
        ).status_code
        == 422
    )
    assert (
        olga.post(
            "/api/v1/sharing/releases", json={"scope": "all", "day": T0, "epsilon": 1e308}
        ).status_code
        == 422
    )
    assert len(olga.get("/api/v1/sharing/releases").json()["releases"]) == 2
