"""Man-in-the-middle on a TLS link: an impostor with a forged certificate, and what reached it.

Two impostors present a certificate for the real endpoint's address issued by a rogue CA
that copies our CA's name (what an attacker who spoofs DNS or ARP would present):

* :class:`Interceptor` runs **mitmproxy** (``mitmdump``, a real intercepting proxy, as a
  process of its own) in reverse mode in front of the real endpoint, with the rogue CA as its
  CA; a small addon records every TLS handshake a client completed or refused and every byte
  or request it would have relayed;
* :class:`ForgedBroker` is a plain TLS listener of our own, for a machine without mitmproxy.

A client that pins our private root (PKI-7) must refuse the handshake and send nothing.
:func:`run` plays that against a meter's MQTT client configuration (the meter must also keep
its data for the real broker). It does not decide what is recorded elsewhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meterguard.attacks.mqtt_access import Outcome
from meterguard.broker.process import stop_process
from meterguard.crypto.pki.authority import Authority
from meterguard.crypto.pki.store import pem, write_key
from meterguard.meter.transport.mqtt import MeterMqttClient, MqttSettings, Outbox

__all__ = ["ForgedBroker", "Impostor", "Interceptor", "impostor", "run"]


class Impostor(Protocol):
    """A forged endpoint: what clients did with it."""

    port: int
    name: str

    @property
    def handshakes_ok(self) -> int:
        """Client handshakes completed (a client that trusted the forgery)."""

    @property
    def plaintext(self) -> list[bytes]:
        """What reached it in clear."""

    @property
    def failures(self) -> list[str]:
        """Handshakes that failed."""

    def close(self) -> None:
        """Stop it."""


def _rogue_ca(now: dt.datetime) -> Authority:
    """A CA of the attacker's that copies our CAs' names (a name check alone would pass)."""
    return Authority.create_root("meterguard root CA", now=now).create_intermediate(
        "meterguard service CA", now=now
    )


class ForgedBroker:
    """A loopback TLS listener with a forged server certificate; it records what reaches it."""

    name = "a TLS listener of our own with a rogue CA's certificate"

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        now = dt.datetime.now(dt.UTC)
        rogue = _rogue_ca(now)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = rogue.issue_leaf(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]),
            key.public_key(),
            now=now,
            validity=dt.timedelta(days=1),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=[x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")],
        )
        (workdir / "forged.pem").write_bytes(pem(cert) + pem(rogue.certificate))
        write_key(workdir / "forged.key", key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(workdir / "forged.pem"), str(workdir / "forged.key"))
        self.sock = socket.create_server((host, 0))
        self.port = int(self.sock.getsockname()[1])
        self.handshakes_ok = 0
        self.plaintext: list[bytes] = []
        self.failures: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes_ok += 1
                    tls.settimeout(1)
                    self.plaintext.append(tls.recv(4096))
            except (ssl.SSLError, OSError) as exc:
                self.failures.append(str(exc))

    def close(self) -> None:
        """Stop listening."""
        self.sock.close()


_ADDON = """\
# Written by meterguard attack: records what mitmproxy saw (runs inside mitmdump).
import pathlib

HERE = pathlib.Path(__file__).parent


def _add(name, text):
    with (HERE / name).open("a", encoding="utf-8") as f:
        f.write(text.replace("\\n", " ") + "\\n")


def tls_established_client(data):
    _add("handshakes", "ok")


def tls_failed_client(data):
    _add("failures", str(data.conn.error))


def tcp_message(flow):
    _add("seen", flow.messages[-1].content.hex())


def request(flow):
    _add("seen", (flow.request.method + " " + flow.request.path).encode().hex())
"""


class Interceptor:
    """mitmproxy (``mitmdump``) in reverse mode in front of ``upstream``, with a rogue CA.

    ``scheme`` is ``tls`` (raw TLS: MQTT) or ``https``. The proxy does not verify the real
    endpoint (an attacker would not) and connects to it only when a client gets through.
    """

    name = "mitmproxy (mitmdump) with a rogue CA"

    def __init__(
        self, workdir: Path, mitmdump: Path, upstream: tuple[str, int], scheme: str = "tls"
    ) -> None:
        host, port = upstream
        self.work = workdir / "mitmproxy"
        self.work.mkdir()
        # A root of the attacker's under our root's name (mitmproxy's CA must be a root).
        ca = Authority.create_root("meterguard root CA", now=dt.datetime.now(dt.UTC))
        # mitmproxy's CA file holds the key and the certificate (its confdir format).
        write_key(self.work / "mitmproxy-ca.pem", ca.key)
        with (self.work / "mitmproxy-ca.pem").open("ab") as f:
            f.write(pem(ca.certificate))
        (self.work / "record.py").write_text(_ADDON, encoding="utf-8")
        with socket.create_server((host, 0)) as s:
            self.port = int(s.getsockname()[1])
        self._log = (self.work / "mitmdump.log").open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - the configured mitmdump, our arguments
            [
                str(mitmdump),
                "--mode", f"reverse:{scheme}://{host}:{port}@{host}:{self.port}",
                "--set", f"confdir={self.work}",
                "--set", "ssl_insecure=true",
                "--set", "connection_strategy=lazy",
                "--set", "termlog_verbosity=info",
                "-s", str(self.work / "record.py"),
            ],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while "listening at" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise ConnectionError(f"mitmdump did not start: {self.log()[-300:]}")
            time.sleep(0.1)

    def log(self) -> str:
        """What mitmdump printed."""
        return (self.work / "mitmdump.log").read_text(errors="replace")

    def _lines(self, name: str) -> list[str]:
        try:
            return (self.work / name).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    @property
    def handshakes_ok(self) -> int:
        """Client handshakes the proxy completed (a client that trusted the forgery)."""
        return len(self._lines("handshakes"))

    @property
    def failures(self) -> list[str]:
        """Client handshakes that failed, as mitmproxy saw them."""
        return self._lines("failures")

    @property
    def plaintext(self) -> list[bytes]:
        """What the proxy read in clear from clients (bytes, requests)."""
        return [bytes.fromhex(line) for line in self._lines("seen")]

    def close(self) -> None:
        """Stop mitmdump (by its PID) and wait for it."""
        stop_process(self.proc)
        self._log.close()


def impostor(
    workdir: Path,
    upstream: tuple[str, int],
    *,
    scheme: str = "tls",
    mitmdump: Path | None = None,
) -> Impostor:
    """Mitmproxy in front of ``upstream`` if ``mitmdump`` is given, else a forged listener."""
    if mitmdump is not None:
        return Interceptor(workdir, mitmdump, upstream, scheme)
    return ForgedBroker(workdir, upstream[0])


def run(meter: MqttSettings, *, wait: float = 3.0, mitmdump: Path | None = None) -> Outcome:
    """Point a meter at a forged broker; passed when it refuses and loses nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rogue = impostor(work, (meter.host, meter.port), mitmdump=mitmdump)
        client = MeterMqttClient(replace(meter, port=rogue.port), Outbox(work / "outbox.db"))
        client.start()
        try:
            client.publish("data", b"\xdb\x08would-be reading")
            connected = client.wait_connected(wait)
            deadline = time.monotonic() + wait
            while not rogue.failures and time.monotonic() < deadline:
                time.sleep(0.05)
            kept = len(client.outbox)
            ok = not connected and rogue.handshakes_ok == 0 and not rogue.plaintext and kept == 1
            return Outcome(
                ok,
                f"{rogue.name}: connected={connected} handshakes={rogue.handshakes_ok} "
                f"failures={len(rogue.failures)} ({'; '.join(rogue.failures)[:160]}) kept={kept}",
            )
        finally:
            client.stop()
            client.outbox.close()
            rogue.close()
