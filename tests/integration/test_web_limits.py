"""Request limits in the web server (issue 12, item 3): what a first-time attacker tried.

A 64 MiB body to the public login route was read in full; a 30-digit id gave an unhandled
OverflowError and a bare 500 without security headers; ``X-Forwarded-For`` from a loopback
client gave a fresh login bucket per spoofed address and put the spoofed address in the
audit log. Each is refused now, and every error carries the security headers (API-8).
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from meterguard.broker.process import free_port
from meterguard.crypto.pki.store import Pki
from meterguard.headend.api.app import HEADERS, create_app
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.system.web import serve_https
from tests.accounts import test_accounts

pytestmark = pytest.mark.integration
PASSWORD = "mauve tractor sings at dawn"  # noqa: S105 - test accounts only


@pytest.fixture
def app_and_store(tmp_path: Path) -> tuple[object, Store]:
    store = Store(open_database(f"sqlite:///{tmp_path / 'h.db'}"))
    store.registry.add_meter(
        "MGD0000000001", serial="0000000001", system_title=b"MGD\0\0\0\0\1", now=0
    )
    accounts = test_accounts(store, tmp_path)
    accounts.create_user(
        "alice", PASSWORD, "consumer", now=int(time.time()), meters=("MGD0000000001",)
    )
    return create_app(accounts, store), store


def has_security_headers(r: httpx.Response) -> bool:
    return all(r.headers.get(k) == v for k, v in HEADERS.items())


def test_oversized_and_unframed_bodies_are_refused_before_they_are_read(
    app_and_store: tuple[object, Store],
) -> None:
    app, _ = app_and_store
    c = TestClient(app, base_url="https://testserver")  # type: ignore[arg-type]
    big = b'{"username": "alice", "password": "' + b"x" * (100 * 1024) + b'"}'
    r = c.post("/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and has_security_headers(r)

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"username": "alice", '
        yield b'"password": "x"}'

    r = c.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 411 and has_security_headers(r)
    ok = c.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert ok.status_code == 200  # an ordinary body still goes through


def test_out_of_range_numbers_answer_422_with_headers(app_and_store: tuple[object, Store]) -> None:
    app, _ = app_and_store
    c = TestClient(app, base_url="https://testserver")  # type: ignore[arg-type]
    csrf = c.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    huge = "1" * 30
    for method, path, params in (
        ("POST", f"/api/v1/alarms/{huge}/acknowledge", {}),
        ("GET", "/api/v1/meters/MGD0000000001/usage", {"start": huge}),
        ("GET", "/api/v1/meters/MGD0000000001/readings", {"end": "-1"}),
    ):
        r = c.request(method, path, params=params, headers={"X-CSRF-Token": csrf["csrf_token"]})
        assert r.status_code in (403, 422), (path, r.status_code)  # never a 500
        assert r.status_code == 422 or path.startswith("/api/v1/alarms"), path
        assert has_security_headers(r), path


def test_an_unexpected_failure_is_a_generic_500_with_the_headers(
    app_and_store: tuple[object, Store],
) -> None:
    app, _ = app_and_store

    def broken() -> None:
        raise OverflowError("a bug")

    app.add_api_route("/api/v1/broken", broken)  # type: ignore[attr-defined]
    c = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)  # type: ignore[arg-type]
    r = c.get("/api/v1/broken")
    assert r.status_code == 500 and r.json() == {"error": "request failed"}
    assert has_security_headers(r) and "a bug" not in r.text


def test_x_forwarded_for_is_not_believed_from_a_client(
    app_and_store: tuple[object, Store], tmp_path: Path
) -> None:
    app, store = app_and_store
    now = dt.datetime.now(dt.UTC)
    pki = Pki.init(tmp_path / "pki", now=now)
    cert, key = pki.issue_server("web", hosts=["127.0.0.1"], now=now, out=tmp_path)
    port = free_port("127.0.0.1")
    server, thread = serve_https(app, "127.0.0.1", port, cert, key)
    tls = ssl.create_default_context(cafile=str(tmp_path / "pki" / "root" / "root.pem"))
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls, timeout=10) as c:
            codes = [
                c.post(
                    "/api/v1/auth/login",
                    json={"username": f"nobody{k}", "password": "wrong password"},
                    headers={"X-Forwarded-For": f"203.0.113.{k}"},
                ).status_code
                for k in range(7)
            ]
    finally:
        server.should_exit = True
        thread.join(10)
    # One address, one bucket: spoofed names do not buy fresh attempts (API-7).
    assert codes[:5] == [401] * 5 and 429 in codes[5:], codes
    with store.engine.connect() as conn:
        details = [d for (d,) in conn.execute(text("SELECT detail FROM audit_entries"))]
    assert details and all(d == "from 127.0.0.1" for d in details), details
