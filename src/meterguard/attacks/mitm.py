"""Man-in-the-middle scenario: a TLS endpoint impersonating the broker with a forged certificate.

:class:`ForgedBroker` presents a certificate for the broker's address issued by a
rogue CA that copies our CA names. A meter that pins our private root (PKI-7)
must refuse the handshake, send nothing, and keep its data for the real
broker. :func:`run` executes that against a meter MQTT client configuration.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meterguard.attacks.mqtt_access import Outcome
from meterguard.crypto.pki.authority import Authority
from meterguard.crypto.pki.store import pem, write_key
from meterguard.meter.transport.mqtt import MeterMqttClient, MqttSettings, Outbox

__all__ = ["ForgedBroker", "run"]


class ForgedBroker:
    """A loopback TLS listener with a forged server certificate; it records what reaches it."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        now = dt.datetime.now(dt.UTC)
        rogue = Authority.create_root("meterguard root CA", now=now).create_intermediate(
            "meterguard service CA", now=now
        )
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


def run(meter: MqttSettings, *, wait: float = 3.0) -> Outcome:
    """Point a meter at the forged broker; passed when it refuses and loses nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rogue = ForgedBroker(work, meter.host)
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
                f"connected={connected} handshakes={rogue.handshakes_ok} "
                f"failures={len(rogue.failures)} kept={kept}",
            )
        finally:
            client.stop()
            client.outbox.close()
            rogue.close()
