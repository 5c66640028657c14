"""The man-in-the-middle scenarios' proxy is real: mitmproxy relays for a client that trusts it.

``meterguard attack`` puts mitmproxy (``mitmdump``, installed by ``scripts/bootstrap`` in an
environment of its own) in front of every TLS link with a rogue CA that copies our CA names.
Its scenarios pass when our clients refuse it; these tests show the refusal is the clients'
doing, not a proxy that never works: a client that trusts the rogue CA gets through and the
proxy reads its bytes in clear, while a client pinned to our root is refused and the proxy
reads nothing.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from meterguard.attacks.mitm import Interceptor
from meterguard.crypto.pki.store import Pki, pem

pytestmark = pytest.mark.integration
MITMDUMP = Path(__file__).resolve().parents[2] / ".venv-mitm" / "bin" / "mitmdump"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[int, Path, list[bytes]]]:
    """A TLS server with a certificate of our PKI; it keeps what it receives."""
    pki = Pki.init(tmp_path / "pki", now=dt.datetime.now(dt.UTC))
    cert, key = pki.issue_server("web", hosts=["127.0.0.1"], now=dt.datetime.now(dt.UTC),
                                 out=tmp_path)  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    got.append(tls.recv(100))
                    tls.sendall(b"pong")
            except (ssl.SSLError, OSError):
                continue

    threading.Thread(target=serve, daemon=True).start()
    yield int(server.getsockname()[1]), tmp_path / "pki" / "root" / "root.pem", got
    server.close()


def _talk(port: int, ctx: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"ping: a reading in clear")
        return tls.recv(100)


def test_mitmproxy_reads_a_client_that_trusts_it_and_not_one_that_pins_our_root(
    tmp_path: Path, upstream: tuple[int, Path, list[bytes]]
) -> None:
    assert MITMDUMP.exists(), "mitmproxy is missing: run scripts/bootstrap"
    port, root, got = upstream
    proxy = Interceptor(tmp_path, MITMDUMP, ("127.0.0.1", port), "tls")
    try:
        # The forged leaf's issuer bears our root's name, but it is the attacker's key.
        fooled = ssl.create_default_context(cadata=_rogue_ca(proxy.work / "mitmproxy-ca.pem"))
        assert _talk(proxy.port, fooled) == b"pong"
        assert proxy.handshakes_ok == 1
        assert b"ping: a reading in clear" in b"".join(proxy.plaintext)
        assert got == [b"ping: a reading in clear"]  # relayed to the real server

        pinned = ssl.create_default_context(cafile=str(root))
        with pytest.raises(ssl.SSLCertVerificationError):
            _talk(proxy.port, pinned)
    finally:
        proxy.close()
    assert proxy.handshakes_ok == 1 and len(got) == 1
    assert any("does not trust the proxy's certificate" in f for f in proxy.failures)


def _rogue_ca(path: Path) -> str:
    text = path.read_text()
    cert = x509.load_pem_x509_certificate(text[text.index("-----BEGIN CERTIFICATE") :].encode())
    assert "meterguard root CA" in cert.subject.rfc4514_string()  # our root's name, copied
    return pem(cert).decode()
