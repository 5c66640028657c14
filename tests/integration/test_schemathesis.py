"""Schemathesis against the OpenAPI document, over real HTTPS, as two consumers.

The API runs in uvicorn with TLS (a throwaway PKI's server certificate); the schemathesis
CLI logs in as alice and as bob through the login endpoint (Web Fuzzing Commons auth with
cookies) and runs every check — including ``object_level_authorization`` with alice and
bob as peers, ``ignored_auth``, undocumented status codes, the Allow header, response
schemas and server errors — in the coverage, fuzzing and stateful phases. Any failure
fails this test with schemathesis's report. A second run against the same API with
consumer scoping deliberately broken must report the object-level authorization bypass
(so the check is known to bite here).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from meterguard.broker.process import free_port
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.pki.store import Pki
from meterguard.headend.api.app import create_app
from meterguard.headend.services.billing import Billing
from meterguard.headend.services.commands import Commands
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import ReadingRow, Store
from tests.accounts import test_accounts

pytestmark = pytest.mark.integration

USERS = {
    "alice": ("mauve tractor sings at dawn", "MGD0000000001"),  # test accounts only
    "bob": ("quiet lanterns drift over 7 dunes", "MGD0000000002"),
}


@pytest.fixture(params=["as built", "seeded BOLA"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    now = dt.datetime.now(dt.UTC)
    pki = Pki.init(tmp_path / "pki", now=now)
    pki.issue_server("web", hosts=["127.0.0.1"], now=now, out=tmp_path / "web")
    store = Store(open_database(f"sqlite:///{tmp_path / 'headend.db'}"))
    keys = {}
    for n in (1, 2):
        mid, title = f"MGD{n:010d}", b"MGD" + n.to_bytes(5, "big")
        store.registry.add_meter(mid, serial=mid[3:], system_title=title, now=0)
        store.add_readings(
            [ReadingRow(mid, 1_800_000_000 + 900 * k, 100 * n + k, 0, 0) for k in range(4)]
        )
        keys[mid] = (title, SecretKey.generate(16), SecretKey.generate(16))
    accounts = test_accounts(store, tmp_path)
    for name, (password, meter) in USERS.items():
        accounts.create_user(name, password, "consumer", now=int(time.time()), meters=(meter,))
    if request.param == "seeded BOLA":  # the check must be able to fail: break scoping here
        accounts.visible_meter = lambda _who, meter_id: meter_id in keys  # type: ignore[method-assign]
    commands = Commands(
        store.commands,
        keys.__getitem__,
        SigningKey.generate(),
        b"MGH\0\0\0\0\1",
        lambda _m, _e: True,
        reads=consumption_data(store, accounts),
    )
    app = create_app(
        accounts,
        store,
        commands=commands,
        billing=Billing(store.billing, SigningKey.generate()),
        api_rate=1e6,
        api_burst=1e6,
    )
    app.state.limits = type(app.state.limits)(rate=1e6, burst=1e6)  # fuzzing logs in often
    port = free_port("127.0.0.1")
    srv = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(tmp_path / "web" / "web.pem"),
            ssl_keyfile=str(tmp_path / "web" / "web.key"),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    try:
        yield f"https://127.0.0.1:{port}", tmp_path, request.param
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.mark.timeout(600)
def test_openapi_document_holds_under_schemathesis(server: tuple[str, Path, str]) -> None:
    url, d, variant = server
    auth = {
        "auth": [
            {
                "name": name,
                "loginEndpointAuth": {
                    "endpoint": "/api/v1/auth/login",
                    "verb": "POST",
                    "contentType": "application/json",
                    "payloadRaw": json.dumps({"username": name, "password": password}),
                    "expectCookies": True,
                },
            }
            for name, (password, _) in USERS.items()
        ]
    }
    (d / "auth.json").write_text(json.dumps(auth))
    (d / "schemathesis.toml").write_text(
        '[auth.wfc]\npath = "auth.json"\npeers = ["alice", "bob"]\n'
    )
    cli = Path(sys.executable).with_name("schemathesis")
    res = subprocess.run(  # noqa: S603 - the locked environment's schemathesis
        [
            str(cli),
            "--config-file",
            str(d / "schemathesis.toml"),
            "run",
            f"{url}/openapi.json",
            "--tls-verify",
            str(d / "pki" / "root" / "root.pem"),
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--generation-deterministic",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        cwd=d,
    )
    if variant == "seeded BOLA":  # bob reads alice's meter: schemathesis must say so
        assert res.returncode != 0 and "ST402 Object-level authorization bypass" in res.stdout
        return
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", res.stdout)
    assert tested and int(tested[1]) >= 20, res.stdout[-3000:]  # every API operation ran
