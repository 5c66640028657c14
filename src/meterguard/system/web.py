"""The web server: the API and dashboard over HTTPS in a thread (API-9).

TLS 1.2+ with AEAD ECDHE suites only, no server banner; the certificate comes from the
PKI's service CA. This module only serves; the app is built by
:func:`meterguard.headend.api.app.create_app`.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from meterguard.errors import ConfigurationError

__all__ = ["WEB_CIPHERS", "serve_https"]

WEB_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites for the web (AEAD with forward secrecy; TLS 1.3 suites are AEAD anyway)."""


def serve_https(
    app: Any,
    host: str,
    port: int,
    cert: Path,
    key: Path,
    *,
    trusted_proxies: Sequence[str] = (),
    client_ca: Path | None = None,
) -> tuple[uvicorn.Server, threading.Thread]:
    """Serve ``app`` over HTTPS in a thread, returning once it listens.

    ``X-Forwarded-For`` is believed only from ``trusted_proxies`` (none by default): a client
    naming another address would otherwise get a fresh login bucket per name and put that
    name in the audit log (API-7, LOG-1). With ``client_ca`` every client must present a
    certificate chaining to it (the firmware endpoint: meters only).

    Raises:
        ConfigurationError: the server did not start within 15 s.
    """
    mutual: dict[str, Any] = {}
    if client_ca is not None:
        mutual = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(client_ca)}
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            ssl_ciphers=WEB_CIPHERS,
            server_header=False,
            date_header=False,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies) or None,
            log_level="warning",
            **mutual,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise ConfigurationError(f"the web server did not start on {host}:{port}")
    return server, thread
