"""Plays of data theft and man-in-the-middle against a running system.

* **Captures**: a real TCP relay (:class:`~meterguard.attacks.target.Relay`) sits in the path
  of a web session, of a meter's link and of a head-end worker's link, records every byte,
  and the capture is searched for what the session carried in clear at its ends (readings,
  names, passwords, the session token, the APDUs and their topics).
* **Copies**: the database (every table, and the SQLite file with its free pages) and the key
  store are copied and searched for reading values, keys, names and passwords; the key store
  is opened under a wrong key-encryption key.
* **Forged endpoints**: a TLS listener with a certificate from a rogue CA that copies our
  names stands in for the broker (to a meter and to a head-end worker) and for the web server.
* **A compromised broker**: it sees every APDU (here: the head-end service identity its host
  holds) and writes what it likes on a meter's topic (here: through that meter's identity,
  which the broker would not need). It alters, truncates, replays and delays APDUs inside a
  valid TLS session; the head-end's DLMS layer must refuse every one.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx

from meterguard.attacks import mitm
from meterguard.attacks.live_access import OUTSIDER
from meterguard.attacks.probe import Probe, connect
from meterguard.attacks.scenario import Attempt, Profile
from meterguard.attacks.target import Relay, Target, search
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.errors import MeterguardError
from meterguard.headend.store.db import open_database
from meterguard.headend.store.evidence import dump_tables
from meterguard.meter.transport.mqtt import MqttSettings
from meterguard.mqtt.contract import upstream_topic
from meterguard.mqtt.tls import pinned_client_context

__all__ = [
    "capture_meter_link",
    "capture_service_link",
    "capture_web_session",
    "copy_database",
    "copy_keystore",
    "dlms_altered",
    "dlms_delayed",
    "dlms_replayed",
    "dlms_truncated",
    "forged_broker_to_headend",
    "forged_broker_to_meter",
    "forged_web_server",
]


def _identity(t: Target, role: str) -> tuple[Path, Path]:
    d = t.meter_dir(t.role(role))
    return d / "tls.pem", d / "tls.key"


def _tap(t: Target, port: int | None = None) -> Probe:
    """The compromised broker's view: a subscription to every meter's data."""
    cert, key = t.service_identity
    probe = connect(port or t.service_port, t.root, cert, key, client_id="attacker-broker-tap")
    if probe.connected:
        probe.subscribe(upstream_topic("+", "data"))
    return probe


def _apdus(t: Target, n: int, *, timeout: float = 20.0) -> list[bytes]:
    """``n`` real APDUs of the compromised meter, as the broker relays them."""
    tap = _tap(t)
    if not tap.connected:
        raise ConnectionError(f"the broker tap could not connect: {tap.error} {tap.connect_rc}")
    topic = upstream_topic(t.role("compromised"), "data")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mine = [p for tp, p in tap.messages if tp == topic]
            if len(mine) >= n:
                return mine[:n]
            time.sleep(0.05)
    finally:
        tap.close()
    raise TimeoutError(f"the compromised meter published fewer than {n} APDUs in {timeout:.0f} s")


def _inject(t: Target, payloads: list[bytes], *, port: int | None = None) -> list[str]:
    """Write ``payloads`` on the compromised meter's data topic; the PUBACKs."""
    with t.seized() as identity:
        probe = connect(port or t.device_port, t.root, *identity)
        if not probe.connected:
            raise ConnectionError(f"could not write as the meter: {probe.error} {probe.connect_rc}")
        try:
            topic = upstream_topic(t.role("compromised"), "data")
            return [str(probe.publish(topic, p)) for p in payloads]
        finally:
            probe.close()


# ---------------------------------------------------------------------- captures


def capture_web_session(t: Target, _p: Profile) -> Attempt:
    """A consumer logs in and reads her readings through a recording relay."""
    relay = Relay(t.host, t.web_port)
    try:
        with t.web(port=relay.port) as c:
            user = t.role("consumer")
            password, _ = t.credentials(user)
            r = t.login(c, user)
            readings = c.get(f"/api/v1/meters/{t.role('victim')}/readings")
            token = next(iter(c.cookies.values()), "")
        time.sleep(0.2)
        captured = relay.bytes()
    finally:
        relay.close()
    if r.status_code != 200 or readings.status_code != 200:
        return Attempt(False, f"the session did not work through the relay: {r.status_code}")
    rows = readings.json()["readings"][-50:]
    values = [str(row["import_wh"]).encode() for row in rows if row["import_wh"] >= 10_000]
    secrets = replace(t.secrets)
    secrets.values = {
        **t.secrets.values,
        "the consumer's password": [password.encode()],
        "the session token": [token.encode()],
        "the readings shown": values,
        "the consumer's name": [user.encode()],
    }
    found = search(captured, secrets)
    return Attempt(
        not found and len(captured) > 2000 and len(values) > 0,
        f"{len(captured)} bytes captured, {len(values)} readings read through the relay;"
        f" found in clear: {found or 'nothing'}",
    )


def capture_meter_link(t: Target, _p: Profile) -> Attempt:
    """A meter's MQTT session (its real APDU re-sent) through a recording relay."""
    apdus = _apdus(t, 1)
    relay = Relay(t.host, t.device_port)
    try:
        acks = _inject(t, apdus, port=relay.port)
        time.sleep(0.2)
        captured = relay.bytes()
    finally:
        relay.close()
    topic = upstream_topic(t.role("compromised"), "data").encode()
    leaks = [n for n, b in (("the APDU", apdus[0]), ("the topic", topic)) if b in captured]
    leaks += search(captured, t.secrets)
    return Attempt(
        not leaks and len(captured) > 1000,
        f"{len(captured)} bytes captured (PUBACK {acks}); found in clear: {leaks or 'nothing'}",
    )


def capture_service_link(t: Target, _p: Profile) -> Attempt:
    """A head-end worker's subscription, 3 s of it, through a recording relay."""
    relay = Relay(t.host, t.service_port)
    tap = _tap(t, relay.port)
    try:
        if not tap.connected:
            return Attempt(False, f"could not subscribe through the relay: {tap.error}")
        got = tap.wait_messages(5, timeout=5.0)
    finally:
        tap.close()
        time.sleep(0.2)
        relay.close()
    captured = relay.bytes()
    leaks = sorted({"an APDU" for _, p in got if p in captured})
    leaks += sorted({"a topic" for tp, _ in got if tp.encode() in captured})
    leaks += search(captured, t.secrets)
    return Attempt(
        not leaks and len(got) > 0,
        f"{len(captured)} bytes captured carrying {len(got)} messages;"
        f" found in clear: {leaks or 'nothing'}",
    )


# ---------------------------------------------------------------------- copies


def copy_database(t: Target, _p: Profile) -> Attempt:
    """A copy of the head-end database: every table's rows, and the file with its free pages."""
    engine = open_database(t.db_url, migrate_schema=False)
    try:
        rows = b"\n".join(dump_tables(engine))
    finally:
        engine.dispose()
    found = search(rows, t.secrets)
    raw = b""
    if t.db_file is not None:
        with tempfile.TemporaryDirectory() as tmp:
            for suffix in ("", "-wal"):
                src = Path(f"{t.db_file}{suffix}")
                if src.exists():
                    shutil.copy(src, Path(tmp) / src.name)
                    raw += (Path(tmp) / src.name).read_bytes()
        found += [f"{f} (file)" for f in search(raw, t.secrets) if f not in found]
    return Attempt(
        not found and len(rows) > 0,
        f"{len(rows)} bytes of rows, {len(raw)} bytes of file searched for"
        f" {', '.join(t.secrets.labels())}; found: {found or 'nothing'}",
    )


def copy_keystore(t: Target, _p: Profile) -> Attempt:
    """A copy of the key store without its key-encryption key, searched and opened."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "keys.db"
        shutil.copy(t.keystore, copy)
        wal = Path(f"{t.keystore}-wal")
        raw = copy.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        found = search(raw, t.secrets)
        store = KeyStore(copy, LocalKek(SecretKey.generate(32)))
        try:
            store.active(t.role("victim"), KeyId.GLOBAL_UNICAST)
            opened = "yes: the victim's key unwrapped under a wrong KEK"
        except MeterguardError as exc:
            opened = ""
            refusal = f"no ({type(exc).__name__}: {exc})"
        finally:
            store.close()
    return Attempt(
        not found and not opened,
        f"{len(raw)} bytes searched; found: {found or 'nothing'};"
        f" opened under a wrong KEK: {opened or refusal}",
    )


# ---------------------------------------------------------------------- forged endpoints


def forged_broker_to_meter(t: Target, _p: Profile) -> Attempt:
    """A meter is pointed at a broker with a forged certificate (DNS or ARP spoofing)."""
    cert, key = _identity(t, "compromised")
    settings = MqttSettings(
        host=t.host, port=t.device_port, root=t.root, cert=cert, key=key,
        meter_id=t.role("compromised"),
    )  # fmt: skip
    outcome = mitm.run(settings, wait=3.0, mitmdump=t.mitmdump)
    return Attempt(outcome.passed, outcome.detail)


def _forged_listener(t: Target, work: Path, port: int, scheme: str) -> mitm.Impostor:
    return mitm.impostor(work, (t.host, port), scheme=scheme, mitmdump=t.mitmdump)


def _against_impostor(
    t: Target, port: int, scheme: str, who: str, attempt: Callable[[int], str]
) -> Attempt:
    """Send ``who``'s client to an impostor in front of ``port``.

    ``attempt`` connects to the impostor's port and returns the refusal ("" if it got
    through). Passed when the client refused and the impostor got nothing.
    """
    with tempfile.TemporaryDirectory() as tmp:
        rogue = _forged_listener(t, Path(tmp), port, scheme)
        try:
            refused = attempt(rogue.port)
            time.sleep(0.3)
        finally:
            rogue.close()
        seen, got, handshakes = rogue.failures, rogue.plaintext, rogue.handshakes_ok
    return Attempt(
        bool(refused) and handshakes == 0 and not got,
        f"{rogue.name}: the {who} refused: {refused or 'no'}; the impostor got"
        f" {got}; it saw the handshake fail: {'; '.join(seen)[:160] or '-'}",
    )


def forged_broker_to_headend(t: Target, _p: Profile) -> Attempt:
    """A head-end worker's connection is sent to a forged broker."""

    def connect(port: int) -> str:
        ctx = pinned_client_context(t.root, *t.service_identity)
        try:
            with (
                socket.create_connection((t.host, port), timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname=t.host) as tls,
            ):
                tls.sendall(b"\x10would-be CONNECT")
        except ssl.SSLError as exc:
            return f"{type(exc).__name__}: {exc.reason}"
        return ""

    return _against_impostor(t, t.service_port, "tls", "worker", connect)


def forged_web_server(t: Target, _p: Profile) -> Attempt:
    """A user's client is sent to a web server with a forged certificate (it would phish)."""

    def log_in(port: int) -> str:
        with t.web(port=port, source=OUTSIDER) as c:
            try:
                c.post("/api/v1/auth/login", json={"username": "olga", "password": "x"})
            except httpx.ConnectError as exc:
                return str(exc)[:120]
        return ""

    return _against_impostor(t, t.web_port, "https", "client", log_in)


# ---------------------------------------------------------------------- compromised broker


def dlms_altered(t: Target, _p: Profile) -> Attempt:
    """One bit of a real APDU's ciphertext flipped, and one of its tag."""
    apdu = _apdus(t, 1)[0]
    body, tag = bytearray(apdu), bytearray(apdu)
    body[len(body) // 2] ^= 0x01
    tag[-1] ^= 0x80
    acks = _inject(t, [bytes(body), bytes(tag)])
    return Attempt(True, f"2 altered APDUs written (PUBACK {acks}); the head-end must refuse them")


def dlms_truncated(t: Target, _p: Profile) -> Attempt:
    """A real APDU cut short by 5 bytes, and cut to its header."""
    apdu = _apdus(t, 1)[0]
    acks = _inject(t, [apdu[:-5], apdu[:8]])
    return Attempt(True, f"2 truncated APDUs written (PUBACK {acks})")


def dlms_replayed(t: Target, _p: Profile) -> Attempt:
    """A real APDU written again once the meter has sent newer ones."""
    old = _apdus(t, 1)[0]
    _apdus(t, 2)  # the meter moves on
    acks = _inject(t, [old])
    return Attempt(True, f"an older APDU replayed (PUBACK {acks})")


def dlms_delayed(t: Target, _p: Profile) -> Attempt:
    """Two APDUs held back 5 s and delivered in reverse order."""
    held = _apdus(t, 2)
    time.sleep(5.0)
    acks = _inject(t, held[::-1])
    return Attempt(True, f"2 held APDUs delivered late and reordered (PUBACK {acks})")
