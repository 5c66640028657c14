"""MQ-1, API-9: sslyze scans of the device listener and the web server find TLS 1.2/1.3 with
AEAD ECDHE suites only."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI

from meterguard.broker.process import free_port
from meterguard.system.web import serve_https
from tests.integration.conftest import World

pytestmark = pytest.mark.integration
SSLYZE = Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "sslyze"
ALLOWED_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}
ALLOWED_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def assert_modern_aead_only(port: int, *client: str) -> None:
    """sslyze ``127.0.0.1:port`` (``client``: its --cert/--key, if the server asks for one):
    no SSL, TLS 1.0 or 1.1; TLS 1.2 and 1.3 with the allowed AEAD suites only."""
    assert SSLYZE.exists(), "scripts/bootstrap installs sslyze into .venv-tools"
    res = subprocess.run(  # noqa: S603 - the pinned sslyze with fixed arguments
        [
            str(SSLYZE),
            *client,
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            "--json_out=-",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout[res.stdout.index("{") :])
    [server] = report["server_scan_results"]
    assert server["scan_status"] == "COMPLETED", server.get("connectivity_error_trace")
    scans = server["scan_result"]

    def accepted(name: str) -> set[str]:
        result = scans[name].get("result") or {}
        return {c["cipher_suite"]["name"] for c in result.get("accepted_cipher_suites", [])}

    for legacy in (
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ):
        assert accepted(legacy) == set(), legacy
    tls12, tls13 = accepted("tls_1_2_cipher_suites"), accepted("tls_1_3_cipher_suites")
    assert tls12 and tls12 <= ALLOWED_TLS12, tls12
    assert tls13 and tls13 <= ALLOWED_TLS13, tls13


def test_device_listener_offers_only_modern_aead_suites(world: World) -> None:
    """MQ-1: the broker's device listener (it requires a meter's client certificate)."""
    cert, key = world.meter("0000000077")
    assert_modern_aead_only(world.broker.layout.device_port, "--cert", str(cert), "--key", str(key))


def test_web_listener_offers_only_modern_aead_suites(world: World, tmp_path: Path) -> None:
    """API-9: the dashboard's HTTPS server, as the demo runs it."""
    cert, key = world.pki.issue_server(
        "web-scan", hosts=["127.0.0.1"], now=dt.datetime.now(dt.UTC), out=tmp_path
    )
    port = free_port("127.0.0.1")
    server, thread = serve_https(FastAPI(), "127.0.0.1", port, cert, key)
    try:
        assert_modern_aead_only(port)
    finally:
        server.should_exit = True
        thread.join(10)
