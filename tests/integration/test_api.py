"""The web API over a real database: roles on every route, BOLA, MFA, sessions, CSRF, limits."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text

from meterguard.clock import FixedClock
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.pki.store import Pki
from meterguard.errors import ConfigurationError
from meterguard.headend.api.app import COOKIE, HEADERS, PUBLIC, create_app, route_table
from meterguard.headend.services.accounts import (
    MFA_ACCOUNT_ATTEMPTS,
    MFA_SESSION_ATTEMPTS,
    Accounts,
    Principal,
)
from meterguard.headend.services.auth import TotpSecret
from meterguard.headend.services.billing import Band, Billing, TariffSpec
from meterguard.headend.services.commands import Commands
from meterguard.headend.services.meters import Meters
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import PushRow, ReadingRow, Store
from tests.accounts import test_accounts

pytestmark = pytest.mark.integration
PASSWORD = "mauve tractor sings at dawn"  # noqa: S105 - test accounts only
BOB = "quiet lanterns drift over 7 dunes"
OLGA = "copper kettles whistle in july rain"
ERIK = "seven amber foxes cross frozen rivers"
TARIFF = TariffSpec("standard", "flat", "EUR", 4500, (Band(0, 24, 2800),))


@dataclass
class Site:
    app: object
    accounts: Accounts
    store: Store
    operator_totp: TotpSecret
    engineer_totp: TotpSecret
    sent: list[tuple[str, bytes]]
    pki: Pki
    keystore: KeyStore

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="https://testserver")  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    store = Store(open_database(f"sqlite:///{tmp_path / 'headend.db'}"))
    for n in (1, 2):
        mid = f"MGD{n:010d}"
        store.registry.add_meter(
            mid, serial=mid[3:], system_title=b"MGD" + n.to_bytes(5, "big"), now=0
        )
        store.add_readings(
            [ReadingRow(mid, 1_800_000_000 + 900 * k, 100 * n + k, 0, 0) for k in range(4)]
        )
    accounts = test_accounts(store, tmp_path)
    now = int(time.time())
    accounts.create_user("alice", PASSWORD, "consumer", now=now, meters=("MGD0000000001",))
    accounts.create_user("bob", BOB, "consumer", now=now, meters=("MGD0000000002",))
    _, totp = accounts.create_user("olga", OLGA, "operator", now=now)
    _, etotp = accounts.create_user("erik", ERIK, "engineer", now=now)
    assert totp is not None and etotp is not None
    keys = {
        f"MGD{n:010d}": (
            b"MGD" + n.to_bytes(5, "big"),
            SecretKey.generate(16),
            SecretKey.generate(16),
        )
        for n in (1, 2)
    }
    sent: list[tuple[str, bytes]] = []
    commands = Commands(
        store.commands,
        keys.__getitem__,
        SigningKey.generate(),
        b"MGH\x00\x00\x00\x00\x01",
        lambda m, e: sent.append((m, e)) is None,
        reads=consumption_data(store, accounts),
    )
    billing = Billing(store.billing, SigningKey.generate())
    pki = Pki.init(tmp_path / "pki", now=dt.datetime.now(dt.UTC))
    for n in (1, 2):
        pki.enrol_meter(f"{n:010d}", tmp_path / f"m{n}", now=dt.datetime.now(dt.UTC))
    keystore = KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32)))
    meters = Meters(store.registry, pki, keystore, store.audit)
    app = create_app(accounts, store, commands=commands, billing=billing, meters=meters)
    return Site(app, accounts, store, totp, etotp, sent, pki, keystore)


def login(c: TestClient, user: str, password: str) -> dict[str, object]:
    r = c.post("/api/v1/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_every_route_declares_its_roles_and_refuses_strangers(site: Site) -> None:
    app = site.app
    declared = app.state.route_roles  # type: ignore[attr-defined]
    routes = [r for r in app.routes if isinstance(r, APIRoute)]  # type: ignore[attr-defined]
    assert routes
    # Every route the app serves is walked: none hides from the table (e.g. in an included
    # router, which FastAPI does not list in ``app.routes``).
    documented = set(app.openapi()["paths"])  # type: ignore[attr-defined]
    assert documented <= {r.path for r in routes}, documented - {r.path for r in routes}
    assert "/api/v1/meters/{meter_id}/readings" in declared
    c = site.client()
    for route in routes:
        assert route.path in declared, f"{route.path} declares no roles (API-2)"
        if declared[route.path] == PUBLIC:
            continue
        for method in route.methods:
            path = route.path.replace("{meter_id}", "MGD0000000001").replace("{alarm_id}", "1")
            path = path.replace("{command_id}", "1").replace("{name}", "alarms")
            path = path.replace("{user_id}", "1")
            r = c.request(method, path, follow_redirects=False)
            if route.path == "/" or route.path.startswith("/ui/"):  # pages: to the login page
                assert (r.status_code, r.headers.get("location")) == (303, "/login"), route.path
            else:
                assert r.status_code == 401, (method, route.path, r.status_code)


def test_an_unguarded_route_stops_the_app_from_being_built(site: Site) -> None:
    app = site.app
    app.add_api_route("/api/v1/forgotten", lambda: {"open": True})  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="/api/v1/forgotten declares no roles"):
        route_table(app)  # type: ignore[arg-type]


def test_consumers_see_only_their_own_meters(site: Site) -> None:
    c = site.client()
    login(c, "alice", PASSWORD)
    assert c.get("/api/v1/meters").json() == {"meters": [{"meter_id": "MGD0000000001"}]}
    own = c.get("/api/v1/meters/MGD0000000001/readings")
    assert own.status_code == 200 and len(own.json()["readings"]) == 4
    # BOLA: bob's meter answers exactly like a meter that does not exist.
    other, none = (
        c.get("/api/v1/meters/MGD0000000002/readings"),
        c.get("/api/v1/meters/MGD0000000099/readings"),
    )
    assert other.status_code == none.status_code == 404
    assert other.json() == none.json() == {"error": "not found"}
    assert c.get("/api/v1/fleet").status_code == 403  # utility data is not for consumers


def test_operators_need_totp_each_code_once_and_sessions_rotate(site: Site) -> None:
    c = site.client()
    step1 = login(c, "olga", OLGA)
    assert step1["mfa_required"] is True
    half = c.cookies[COOKIE]
    assert c.get("/api/v1/me").status_code == 401  # the password alone is not enough
    code = site.operator_totp.code(time.time())
    r = c.post("/api/v1/auth/totp", json={"code": code})
    assert r.status_code == 200, r.text
    assert c.cookies[COOKIE] != half  # rotated at login
    assert c.get("/api/v1/me").json() == {"username": "olga", "role": "operator"}
    assert c.get("/api/v1/fleet").json()["meters"] == 2
    # The same code again, on a fresh login: refused (replay), even inside its 30 s.
    c2 = site.client()
    login(c2, "olga", OLGA)
    assert c2.post("/api/v1/auth/totp", json={"code": code}).status_code == 401
    # The half-done session of step 1 died when it was rotated.
    c3 = site.client()
    c3.cookies.set(COOKIE, half)
    assert c3.get("/api/v1/me").status_code == 401


def test_unknown_fields_are_refused(site: Site) -> None:
    r = site.client().post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD, "role": "operator"}
    )
    assert r.status_code == 422 and r.json() == {"error": "invalid request"}


def test_state_changes_need_the_csrf_token_and_logout_ends_the_session(site: Site) -> None:
    c = site.client()
    csrf = str(login(c, "alice", PASSWORD)["csrf_token"])
    assert c.post("/api/v1/auth/logout").status_code == 403
    assert c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    token = c.cookies[COOKIE]
    assert c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    c.cookies.set(COOKIE, token)
    assert c.get("/api/v1/me").status_code == 401


def test_disabling_an_account_kills_its_sessions(site: Site) -> None:
    c = site.client()
    login(c, "bob", BOB)
    assert c.get("/api/v1/me").status_code == 200
    uid = next(
        u for u in (1, 2, 3) if site.accounts.meters(_principal(site, u)) == ["MGD0000000002"]
    )
    site.accounts.set_disabled(uid, disabled=True)
    assert c.get("/api/v1/me").status_code == 401
    r = c.post("/api/v1/auth/login", json={"username": "bob", "password": BOB})
    assert r.status_code == 401


def _principal(site: Site, uid: int) -> Principal:
    del site
    return Principal(uid, "?", "consumer")


def test_idle_and_absolute_timeouts(site: Site) -> None:
    info = site.accounts.login("alice", PASSWORD, now=1000)
    site.accounts.session(info.token, now=1000 + 14 * 60)
    with pytest.raises(Exception, match="expired"):
        site.accounts.session(info.token, now=1000 + 30 * 60)
    info = site.accounts.login("alice", PASSWORD, now=1000)
    for t in range(1000, 1000 + 8 * 3600, 10 * 60):
        site.accounts.session(info.token, now=t)
    with pytest.raises(Exception, match="expired"):
        site.accounts.session(info.token, now=1000 + 8 * 3600 + 60)


def test_the_api_keeps_time_by_the_clock_it_is_given(site: Site) -> None:
    """One notion of time: sessions, the access log and audit entries all take the head-end
    clock the app was built with (a fixed clock here), never the wall clock behind it."""
    clock = FixedClock(dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    app = create_app(site.accounts, site.store, clock=clock)
    c = TestClient(app, base_url="https://testserver")
    login(c, "alice", PASSWORD)
    assert c.get("/api/v1/meters").status_code == 200
    clock.advance(dt.timedelta(minutes=16))  # past the idle timeout, on that clock
    assert c.get("/api/v1/meters").status_code == 401
    with site.store.engine.connect() as conn:
        at = conn.execute(text("SELECT max(at) FROM audit_entries")).scalar_one()
    assert at == int(dt.datetime(2031, 1, 1, tzinfo=dt.UTC).timestamp())  # the login's entry


def test_login_is_rate_limited_before_any_hash(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = site.accounts.login
    monkeypatch.setattr(site.accounts, "login", lambda *a, **k: calls.append(1) or real(*a, **k))
    c = site.client()
    codes = [
        c.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "wrong password"}
        ).status_code
        for _ in range(8)
    ]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
    assert len(calls) == 5  # the limited attempts never reached the password check
    r = c.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_security_headers_on_every_response(site: Site) -> None:
    c = site.client()
    responses = [
        c.get("/api/v1/me"),
        c.get("/nowhere"),
        c.post("/api/v1/auth/login", json={"nope": 1}),
        c.get("/openapi.json"),
    ]
    login(c, "alice", PASSWORD)
    responses.append(c.get("/api/v1/meters"))
    for r in responses:
        for k, v in HEADERS.items():
            assert r.headers.get(k) == v, (r.url, k)
        assert "server" not in {h.lower() for h in r.headers}
    cookie = responses[-1].request.headers.get("cookie", "")
    assert COOKIE in cookie


def operator_client(site: Site) -> TestClient:
    c = site.client()
    login(c, "olga", OLGA)
    assert (
        c.post("/api/v1/auth/totp", json={"code": site.operator_totp.code(time.time())}).status_code
        == 200
    )
    return c


def consent(site: Site, granularity: str) -> None:
    """alice lets the utility see her meter's data as finely as ``granularity``."""
    alice = site.client()
    csrf = login(alice, "alice", PASSWORD)["csrf_token"]
    r = alice.put(
        "/api/v1/meters/MGD0000000001/consent",
        json={"granularity": granularity},
        headers={"X-CSRF-Token": str(csrf)},
    )
    assert r.status_code == 200, r.text


def test_consumers_see_who_read_their_data(site: Site) -> None:
    consent(site, "interval")
    op = operator_client(site)
    assert op.get("/api/v1/meters/MGD0000000001/readings?start=0&end=9999999999").status_code == 200
    assert op.get("/api/v1/meters/MGD0000000001/access").status_code == 403  # not the owner's view
    alice = site.client()
    login(alice, "alice", PASSWORD)
    alice.get("/api/v1/meters/MGD0000000001/readings")  # her own reads are not listed
    log = alice.get("/api/v1/meters/MGD0000000001/access").json()["accesses"]
    assert [(a["actor"], a["role"]) for a in log] == [("olga", "operator")]
    bob = site.client()
    login(bob, "bob", BOB)
    assert bob.get("/api/v1/meters/MGD0000000001/access").status_code == 404


def test_consent_holds_on_every_route_that_returns_consumption_data(site: Site) -> None:
    """PRIV-1 on readings, usage and on-demand reads alike: raw 15-minute readings are
    interval data, refused (and audited) to the utility without interval consent."""
    olga = utility(site, "olga", OLGA, site.operator_totp)
    base = "/api/v1/meters/MGD0000000001"
    assert olga.get(f"{base}/readings").status_code == 403  # default consent: day
    assert olga.get(f"{base}/usage", params={"granularity": "hour"}).status_code == 403
    assert olga.get(f"{base}/usage", params={"granularity": "day"}).status_code == 200
    denials = [r for r in _trail(site) if r[:2] == ("olga", "access_denied")]
    assert len(denials) == 2
    # On-demand reads: once per consented period (two reads an hour apart are hourly data).
    assert olga.post(f"{base}/read").status_code == 202
    assert olga.post(f"{base}/read").status_code == 403
    consent(site, "interval")
    assert olga.get(f"{base}/readings").status_code == 200
    # The consumer herself sees her own data at any granularity, and it is not logged.
    alice = site.client()
    login(alice, "alice", PASSWORD)
    assert alice.get(f"{base}/readings").status_code == 200
    whats = [a["what"] for a in alice.get(f"{base}/access").json()["accesses"]]
    assert "on-demand read" in whats and any(w.startswith("readings") for w in whats)
    assert all(a["actor"] == "olga" for a in alice.get(f"{base}/access").json()["accesses"])


def test_staff_reads_of_bills_are_in_the_consumers_access_log(site: Site) -> None:
    """API-11: a bill read by utility staff appears in the consumer's access log."""
    erik = utility(site, "erik", ERIK, site.engineer_totp)
    assert site.app.state.services.billing is not None  # type: ignore[attr-defined]
    billing = site.app.state.services.billing  # type: ignore[attr-defined]
    billing.assign("MGD0000000001", billing.add_tariff(TARIFF, now=0))
    r = erik.post(
        "/api/v1/meters/MGD0000000001/bills", json={"start": 1_800_000_900, "end": 1_800_003_600}
    )
    assert r.status_code == 201, r.text
    olga = utility(site, "olga", OLGA, site.operator_totp)
    assert len(olga.get("/api/v1/meters/MGD0000000001/bills").json()["bills"]) == 1
    alice = site.client()
    login(alice, "alice", PASSWORD)
    assert len(alice.get("/api/v1/meters/MGD0000000001/bills").json()["bills"]) == 1
    log = alice.get("/api/v1/meters/MGD0000000001/access").json()["accesses"]
    assert [(a["actor"], a["what"]) for a in log] == [("olga", "1 bill(s)"), ("erik", "1 bill(s)")]


def test_logins_are_audited(site: Site) -> None:
    c = site.client()
    assert (
        c.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "not it at all"}
        ).status_code
        == 401
    )
    login(c, "alice", PASSWORD)
    c.post("/api/v1/auth/login", json={"username": "mallory", "password": "guess guess 1"})
    with site.store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT actor, action, result FROM audit_entries ORDER BY seq")
        ).all()
    # A consumer is recorded by pseudonym (PRIV-4); a name no account has, by a keyed hash:
    # attempts on one name correlate, and what was typed is not stored.
    unknown = rows[-1][0]
    assert [tuple(r) for r in rows] == [
        ("consumer:1", "login", "failed"),
        ("consumer:1", "login", "password_ok"),
        (unknown, "login", "failed"),
    ]
    assert unknown.startswith("login:") and unknown == site.accounts.actor_for("mallory")
    assert unknown != site.accounts.actor_for("mallory2")


def utility_client(
    site: Site, user: str, password: str, totp: TotpSecret
) -> tuple[TestClient, str]:
    c = site.client()
    login(c, user, password)
    r = c.post("/api/v1/auth/totp", json={"code": totp.code(time.time())})
    assert r.status_code == 200, r.text
    return c, str(r.json()["csrf_token"])


def test_tamper_alarms_stay_latched_until_an_authorised_role_clears_them(site: Site) -> None:
    m = "MGD0000000001"
    site.store.commit_ingest(
        [PushRow(m, 50, "t", b"", False, (), (1, 40, 1_800_000_000))], [], now=1
    )
    alice = site.client()
    csrf_a = str(login(alice, "alice", PASSWORD)["csrf_token"])
    [alarm] = alice.get("/api/v1/alarms").json()["alarms"]
    assert (alarm["meter_id"], alarm["state"]) == (m, "open")
    # Two clocks, each labelled: the meter's time of the event and the head-end's of receipt.
    assert (alarm["raised_at"], alarm["received_at"]) == (1_800_000_000, 1)
    bob = site.client()
    login(bob, "bob", BOB)
    assert bob.get("/api/v1/alarms").json() == {"alarms": []}
    path = f"/api/v1/alarms/{alarm['id']}"
    assert alice.post(f"{path}/acknowledge", headers={"X-CSRF-Token": csrf_a}).status_code == 403
    op, csrf_o = utility_client(site, "olga", OLGA, site.operator_totp)
    assert op.post(f"{path}/acknowledge").status_code == 403  # no CSRF token
    assert op.post(f"{path}/acknowledge", headers={"X-CSRF-Token": csrf_o}).status_code == 204
    assert op.post(f"{path}/clear", headers={"X-CSRF-Token": csrf_o}).status_code == 403
    assert alice.get("/api/v1/alarms").json()["alarms"][0]["state"] == "acknowledged"  # latched
    eng, csrf_e = utility_client(site, "erik", ERIK, site.engineer_totp)
    assert eng.post(f"{path}/clear", headers={"X-CSRF-Token": csrf_e}).status_code == 204
    assert eng.post(f"{path}/clear", headers={"X-CSRF-Token": csrf_e}).status_code == 404
    done = alice.get("/api/v1/alarms").json()["alarms"][0]
    assert done["state"] == "cleared"
    # Who handled it and when, on the alarm itself (head-end time), as in the audit log.
    assert (done["acknowledged_by"], done["cleared_by"]) == ("olga", "erik")
    assert 0 < done["acknowledged_at"] <= done["cleared_at"] <= time.time() + 1
    panel = op.get("/ui/panel/alarms", params={"show": "all"})
    assert "acknowledged by olga" in panel.text and "cleared by erik" in panel.text
    assert "critical" in panel.text and "meter cover" not in panel.text  # code 40: terminal
    assert "terminal cover removed" in panel.text
    assert "MGD0000000001" not in op.get("/ui/panel/alarms").text  # active only by default
    assert op.get("/ui/panel/alarms", params={"show": "everything"}).status_code == 422
    mine = alice.get("/ui/panel/alarms", params={"meter": m, "show": "all"}).text
    assert "Someone may have tampered with the meter" in mine  # in plain words for her
    assert "acknowledged by" not in mine  # staff names are not the consumer's business
    with site.store.engine.connect() as conn:
        acts = [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT actor, action FROM audit_entries"
                    " WHERE action LIKE 'alarm_%' ORDER BY seq"
                )
            )
        ]
    assert acts == [
        ("meter", "alarm_raised"),
        ("olga", "alarm_acknowledged"),
        ("erik", "alarm_cleared"),
    ]


def utility(site: Site, user: str, password: str, totp: TotpSecret, *, step: int = 0) -> TestClient:
    """A fully logged-in utility client (the TOTP step of ``step`` periods ago, each used once)."""
    c = site.client()
    login(c, user, password)
    r = c.post("/api/v1/auth/totp", json={"code": totp.code(time.time() - 30 * step)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def _trail(site: Site) -> list[tuple[str, str, str]]:
    with site.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT actor, action, result FROM audit_entries ORDER BY seq"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_dual_control_over_http(site: Site) -> None:
    olga = utility(site, "olga", OLGA, site.operator_totp)
    erik = utility(site, "erik", ERIK, site.engineer_totp)
    body = {"meter_id": "MGD0000000002", "kind": "disconnect", "reason": "safety visit"}
    r = olga.post("/api/v1/commands", json=body)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert olga.post(f"/api/v1/commands/{cid}/approve").status_code == 403  # own proposal
    assert site.sent == []
    r = erik.post(f"/api/v1/commands/{cid}/approve")
    assert r.status_code == 200 and r.json()["state"] == "sent"
    assert r.json()["approved_by"] == "erik" and r.json()["proposed_by"] == "olga"
    assert [m for m, _ in site.sent] == ["MGD0000000002"]
    assert erik.post(f"/api/v1/commands/{cid}/approve").status_code == 404  # not pending now
    # Mass assignment: a client cannot set who approved or the counter.
    forged = {**body, "approved_by": "erik", "counter": 7}
    assert olga.post("/api/v1/commands", json=forged).status_code == 422
    # Consumers cannot see or issue commands; the denial is audited.
    alice = site.client()
    csrf = login(alice, "alice", PASSWORD)["csrf_token"]
    assert alice.get("/api/v1/commands").status_code == 403
    r = alice.post("/api/v1/commands", json=body, headers={"X-CSRF-Token": str(csrf)})
    assert r.status_code == 403
    trail = _trail(site)
    assert ("olga", "command_approved:disconnect", "denied_same_person") in trail
    assert ("consumer:1", "access_denied", "denied") in trail  # a pseudonym (PRIV-4)


def test_utility_sees_usage_only_as_finely_as_the_consumer_consented(site: Site) -> None:
    olga = utility(site, "olga", OLGA, site.operator_totp)
    url = "/api/v1/meters/MGD0000000001/usage"
    assert olga.get(url, params={"granularity": "day"}).status_code == 200
    assert olga.get(url, params={"granularity": "interval"}).status_code == 403  # no consent
    alice = site.client()
    csrf = str(login(alice, "alice", PASSWORD)["csrf_token"])
    own = alice.get(url, params={"granularity": "interval"})
    assert own.status_code == 200
    assert [b["import_wh"] for b in own.json()["buckets"]] == [1, 1, 1]
    r = alice.put(
        "/api/v1/meters/MGD0000000001/consent",
        json={"granularity": "interval"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and r.json()["given_by"] == "consumer:1"  # a pseudonym (PRIV-4)
    assert olga.get(url, params={"granularity": "interval"}).status_code == 200
    # Another consumer's consent is not theirs to give (404, like a missing meter).
    bob = site.client()
    bcsrf = str(login(bob, "bob", BOB)["csrf_token"])
    r = bob.put(
        "/api/v1/meters/MGD0000000001/consent",
        json={"granularity": "month"},
        headers={"X-CSRF-Token": bcsrf},
    )
    assert r.status_code == 404
    accesses = alice.get("/api/v1/meters/MGD0000000001/access").json()["accesses"]
    assert {a["actor"] for a in accesses} == {"olga"}
    assert ("consumer:1", "consent_changed", "interval") in _trail(site)


def test_decommissioning_is_for_engineers_and_revokes(site: Site) -> None:
    olga = utility(site, "olga", OLGA, site.operator_totp)
    erik = utility(site, "erik", ERIK, site.engineer_totp)
    assert olga.post("/api/v1/meters/MGD0000000002/decommission").status_code == 403
    assert erik.post("/api/v1/meters/MGD0000000002/revoke").status_code == 403  # security admin
    assert erik.post("/api/v1/meters/MGD0000000002/decommission").status_code == 204
    assert site.pki.revoked_meters() == {"0000000002"}  # PKI-5: its certificates, at the CA
    states = {m: s for m, _, s in site.store.registry.meters()}
    assert states["MGD0000000002"] == "decommissioned"
    assert erik.post("/api/v1/meters/MGD0000000099/decommission").status_code == 404
    r = olga.post(
        "/api/v1/commands",
        json={"meter_id": "MGD0000000002", "kind": "reconnect", "reason": "retired meter"},
    )
    assert r.status_code == 422  # no commands to a retired meter


def test_api_calls_are_rate_limited_per_user(site: Site) -> None:
    site.app.state.api_limits = type(site.app.state.api_limits)(rate=0.01, burst=5)  # type: ignore[attr-defined]
    alice = site.client()
    login(alice, "alice", PASSWORD)
    codes = [alice.get("/api/v1/me").status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3
    r = alice.get("/api/v1/me")
    assert int(r.headers["Retry-After"]) >= 1


def test_dashboard_pages_render_under_the_strict_csp(site: Site) -> None:
    c = site.client()
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    page = c.get("/login")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    for k, v in HEADERS.items():
        assert page.headers[k] == v
    js = c.get("/static/app.js")
    assert (
        js.status_code == 200
        and js.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
    )
    login(c, "alice", PASSWORD)
    home = c.get("/")
    assert home.status_code == 200 and "Meter MGD0000000001" in home.text
    assert "MGD0000000002" not in home.text
    chart = c.get("/ui/panel/usage", params={"meter": "MGD0000000001", "period": "day"})
    assert chart.status_code == 200 and chart.text.count('class="bar"') == 3
    assert c.get("/ui/panel/usage", params={"meter": "MGD0000000002"}).status_code == 404
    assert c.get("/ui/panel/fleet").status_code == 404  # utility panels do not exist for her


def test_security_admins_manage_accounts_and_it_is_audited(site: Site) -> None:
    _, stotp = site.accounts.create_user(
        "sam", "violet harbours hum at noon", "security_admin", now=int(time.time())
    )
    assert stotp is not None
    sam = utility(site, "sam", "violet harbours hum at noon", stotp)
    olga = utility(site, "olga", OLGA, site.operator_totp)
    assert olga.get("/api/v1/users").status_code == 403
    listed = {u["username"]: u for u in sam.get("/api/v1/users").json()["users"]}
    assert set(listed) == {"alice", "bob", "olga", "erik", "sam"}
    assert "password_hash" not in listed["olga"] and "totp_secret" not in listed["olga"]
    r = sam.post(
        "/api/v1/users",
        json={"username": "otto", "password": "blue pianos drift east", "role": "operator"},
    )
    assert r.status_code == 201 and r.json()["totp_uri"].startswith("otpauth://totp/")
    weak = {"username": "carl", "password": "password1", "role": "consumer"}
    assert sam.post("/api/v1/users", json=weak).status_code == 422
    taken = {"username": "otto", "password": "green lanterns hum twice", "role": "auditor"}
    assert sam.post("/api/v1/users", json=taken).status_code == 422
    escalate = {"username": "eve", "password": "lilac comets sing low", "role": "root"}
    assert sam.post("/api/v1/users", json=escalate).status_code == 422
    # Meters belong to consumers only, and must exist (the accounts service's rule).
    for role, meters in (("operator", ["MGD0000000001"]), ("consumer", ["MGD0000000099"])):
        body = {"username": "ivy", "password": "lilac comets sing low", "role": role}
        assert sam.post("/api/v1/users", json=body | {"meters": meters}).status_code == 422
    assert sam.post("/api/v1/users/999999/disable").status_code == 404
    # Disabling kills the victim's live session at once.
    oid = listed["olga"]["id"]
    assert sam.post(f"/api/v1/users/{oid}/disable").status_code == 204
    assert olga.get("/api/v1/me").status_code == 401
    assert sam.post(f"/api/v1/users/{listed['sam']['id']}/disable").status_code == 409
    trail = _trail(site)
    assert ("sam", "user_created", "operator") in trail
    assert ("sam", "user_disabled", "done") in trail
    assert ("olga", "access_denied", "denied") in trail


def test_engineers_provision_meters(site: Site) -> None:
    olga = utility(site, "olga", OLGA, site.operator_totp)
    erik = utility(site, "erik", ERIK, site.engineer_totp)
    assert olga.post("/api/v1/meters", json={"serial": "0000000042"}).status_code == 403
    r = erik.post("/api/v1/meters", json={"serial": "0000000042"})
    assert r.status_code == 201 and r.json() == {"meter_id": "MGD0000000042"}
    assert erik.post("/api/v1/meters", json={"serial": "0000000042"}).status_code == 409
    for bad in ({"serial": "42"}, {"serial": "0000000043", "keys": "00"}):
        assert erik.post("/api/v1/meters", json=bad).status_code == 422
    assert "MGD0000000042" in {m for m, _, _ in site.store.registry.meters()}
    assert ("erik", "meter_provisioned", "done") in _trail(site)


def _wrong_code(totp: TotpSecret) -> str:
    valid = {totp.code(time.time() + 30 * k) for k in (-2, -1, 0, 1, 2)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


def test_a_flood_of_wrong_totp_codes_ends_the_login_then_locks_the_account(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 4 (API-5/7): the red team's 150 wrong codes on one half-done login, in parallel."""
    verified = []
    real = TotpSecret.verify

    def counting(self: TotpSecret, code: str, *, now: float, last_step: int | None) -> int:
        verified.append(code)
        return real(self, code, now=now, last_step=last_step)

    monkeypatch.setattr(TotpSecret, "verify", counting)
    wrong = _wrong_code(site.operator_totp)
    c = site.client()
    login(c, "olga", OLGA)
    token = c.cookies[COOKIE]

    def attempt(_: int) -> tuple[int, str]:
        with site.client() as one:
            one.cookies.set(COOKIE, token)
            r = one.post("/api/v1/auth/totp", json={"code": wrong})
            return r.status_code, str(r.json().get("detail", ""))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(150)))
    assert len(verified) <= MFA_SESSION_ATTEMPTS  # the rest were refused without a look
    # 401 (wrong, or the login ended); 429 if concurrent attempts already reached the
    # account's limit (each attempt is counted, also those that find the session ending).
    assert {s for s, _ in answers} <= {401, 429}
    assert any("log in again" in d or "try again" in d for _, d in answers)
    # The session is gone: the right code no longer works on it.
    c.cookies.set(COOKIE, token)
    r = c.post("/api/v1/auth/totp", json={"code": site.operator_totp.code(time.time())})
    assert r.status_code == 401
    events = [e for _, e in site.store.security_events()]
    assert events.count("mfa_session_ended") + events.count("mfa_locked") >= 1
    # New logins go on guessing: the account's second factor locks at its limit,
    # and then the right code is refused too (429 with Retry-After), even on a new login.
    statuses = []
    for _ in range(3):
        fresh = site.client()
        login(fresh, "olga", OLGA)
        for _ in range(MFA_SESSION_ATTEMPTS):
            r = fresh.post("/api/v1/auth/totp", json={"code": wrong})
            statuses.append(r.status_code)
            if r.status_code != 401 or "log in again" in r.text:
                break
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and int(r.headers["Retry-After"]) > 0
    assert "try again in" in r.json()["detail"]
    locked = site.client()
    login(locked, "olga", OLGA)
    r = locked.post("/api/v1/auth/totp", json={"code": site.operator_totp.code(time.time())})
    assert r.status_code == 429
    events = [e for _, e in site.store.security_events()]
    assert events.count("mfa_locked") == 1 and events.count("mfa_session_ended") <= 2
    assert len(verified) <= MFA_ACCOUNT_ATTEMPTS
    trail = _trail(site)
    assert ("headend", "mfa_locked", "detected") in trail
    assert ("?", "login_totp", "rate_limited") in trail
    # The security administrator sees it on the accounts list and the dashboard panel.
    _, stotp = site.accounts.create_user(
        "sam", "violet harbours hum at noon", "security_admin", now=int(time.time())
    )
    assert stotp is not None
    sam = utility(site, "sam", "violet harbours hum at noon", stotp)
    olga = next(u for u in sam.get("/api/v1/users").json()["users"] if u["username"] == "olga")
    assert olga["mfa_failures"] >= MFA_ACCOUNT_ATTEMPTS and olga["mfa_locked_until"] > time.time()
    panel = sam.get("/ui/panel/accounts")
    assert panel.status_code == 200 and 'class="locked"' in panel.text and "olga" in panel.text
    erik = utility(site, "erik", ERIK, site.engineer_totp)
    assert erik.get("/ui/panel/accounts").status_code == 404
    # Only a security administrator lifts the lock (audited); then olga's right code works.
    assert erik.post(f"/api/v1/users/{olga['id']}/unlock").status_code == 403
    me = next(u for u in sam.get("/api/v1/users").json()["users"] if u["username"] == "sam")
    assert sam.post(f"/api/v1/users/{me['id']}/unlock").status_code == 409  # not oneself
    assert sam.post("/api/v1/users/999999/unlock").status_code == 404
    assert sam.post(f"/api/v1/users/{olga['id']}/unlock").status_code == 204
    assert ("sam", "user_mfa_unlocked", "done") in _trail(site)
    after = next(u for u in sam.get("/api/v1/users").json()["users"] if u["id"] == olga["id"])
    assert (after["mfa_failures"], after["mfa_locked_until"]) == (0, None)


def test_a_right_code_resets_the_count_and_a_lock_expires(site: Site) -> None:
    wrong = _wrong_code(site.operator_totp)
    now = int(time.time())
    for _ in range(2):  # 8 wrong codes over two logins: below the account's limit
        c = site.client()
        login(c, "olga", OLGA)
        for _ in range(4):
            assert c.post("/api/v1/auth/totp", json={"code": wrong}).status_code == 401
        if _ == 0:
            assert any(a.mfa_failures for a in site.accounts.accounts(now=now))
    olga = utility(site, "olga", OLGA, site.operator_totp)  # the right code: in, count reset
    assert olga.get("/api/v1/me").status_code == 200
    assert all(
        (a.mfa_failures, a.mfa_last_failure, a.mfa_locked_until) == (0, None, None)
        for a in site.accounts.accounts(now=now)
    )
    # A lock ends by itself after MFA_LOCKOUT.
    uid = next(i for i, n, _, _ in site.accounts.users() if n == "erik")
    with site.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE users SET mfa_locked_until = :t WHERE id = :u"), {"t": now - 1, "u": uid}
        )
    assert utility(site, "erik", ERIK, site.engineer_totp).get("/api/v1/me").status_code == 200
