"""The system an attack runs against, and the attacker's tools: a recording relay, web clients.

:class:`Target` is what the CLI hands the plays: loopback ports of a running system, the
public trust root, and — for each attacker capability a scenario names — where that
capability's material is (a compromised meter's TLS identity, the head-end service identity a
compromised broker host holds, the demo's accounts file an insider's credentials come from).
It also carries what the plays must search captured bytes for (:class:`Secrets`: reading
values, keys, names, passwords; never printed), and a way to ask the running demo for a
physical act (a tamper sensor, a bypass).

:class:`Relay` is a real TCP relay on loopback that forwards a connection to a real listener
and records every byte both ways (the passive attacker on the path). :func:`search` looks
for secrets in bytes in the encodings a reader would try.

Only loopback targets are accepted (:func:`loopback`); nothing here retries without bound.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp

from meterguard.attacks.firmware import Range
from meterguard.errors import ConfigurationError
from meterguard.headend.store.evidence import EvidenceReader

__all__ = ["Relay", "Secrets", "Target", "loopback", "search"]


def loopback(host: str) -> str:
    """``host`` if it is a loopback address; attacks run against nothing else.

    Raises:
        ConfigurationError: any other address.
    """
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ConfigurationError(f"attacks target loopback only, not {host}")
    return host


@dataclass
class Secrets:
    """What must never be readable from a capture or a copy (kept out of every report)."""

    values: dict[str, list[bytes]] = field(default_factory=dict)
    """A label (``"alice's reading values"``) → the byte strings to look for."""
    series: dict[str, list[int]] = field(default_factory=dict)
    """A label → integers of a few significant bytes (reading values), looked for as text and
    as 8-byte integers, and judged against decoys of the same size (see :func:`search`)."""

    def __repr__(self) -> str:
        return f"Secrets({len(self.values) + len(self.series)} kinds)"

    def add(self, label: str, *items: bytes) -> None:
        """Add byte strings under ``label`` (short ones are ignored: they match by chance)."""
        self.values.setdefault(label, []).extend(i for i in items if len(i) >= 5)

    def add_series(self, label: str, numbers: list[int]) -> None:
        """Add integers under ``label`` (each of them alone could match by chance)."""
        self.series.setdefault(label, []).extend(numbers)

    def labels(self) -> list[str]:
        """What is looked for (never the values)."""
        return [*self.values, *self.series]


def _forms(item: bytes) -> set[bytes]:
    import base64  # noqa: PLC0415 - only the searches need it

    forms = {item, item.hex().encode(), item.hex().upper().encode()}
    if len(item) >= 8:
        forms.add(base64.b64encode(item).rstrip(b"="))
    return forms


def _numbers_found(data: bytes, numbers: list[int]) -> int:
    return sum(1 for n in numbers if any(f in data for i in _number(n) for f in _forms(i)))


def _number(n: int) -> tuple[bytes, ...]:
    return str(n).encode(), n.to_bytes(8, "big"), n.to_bytes(8, "little")


def search(data: bytes, secrets: Secrets) -> list[str]:
    """The labels of the secrets found in ``data`` (raw, hex and base64 forms are tried).

    A series of small integers (a meter's reading values: three significant bytes, seven
    digits) is found when more of its values appear than of as many decoys of the same size
    (the real values shifted by a prime): in megabytes of database pages one value of three
    bytes turns up by chance, while a readable copy of the series shows most of them.
    """
    found = []
    for label, items in secrets.values.items():
        if any(f in data for item in items for f in _forms(item)):
            found.append(label)
    for label, numbers in secrets.series.items():
        real = set(numbers)
        decoys = [n + 7919 * (k + 1) for k, n in enumerate(numbers)]
        decoys = [d for d in decoys if d not in real]
        hits, chance = _numbers_found(data, numbers), _numbers_found(data, decoys)
        if hits > chance + max(3, len(numbers) // 20):
            found.append(f"{label} ({hits} of {len(numbers)}; decoys {chance})")
    return found


@dataclass
class Target:
    """A running system on loopback and the material of each attacker capability."""

    host: str
    device_port: int
    service_port: int
    web_port: int
    firmware_port: int
    root: Path
    """The public trust root (every client pins it)."""
    db_file: Path | None
    """The SQLite database file (None: the system runs on PostgreSQL)."""
    keystore: Path
    kek: Path
    broker_log: Path
    accounts_file: Path
    firmware_dir: Path
    meter_dir: Callable[[str], Path]
    service_identity: tuple[Path, Path]
    """The ingest service identity: what a compromised broker host (or head-end host) holds."""
    roles: dict[str, str]
    """victim, compromised, neighbour, thief (meter ids) and insider, consumer (accounts)."""
    secrets: Secrets
    request: Callable[[dict[str, Any]], None]
    """Ask the running system for a physical act on a meter (tamper, steal, honest), or for
    a broker restart (an outage)."""
    evidence: EvidenceReader
    """The system's own records (read-only)."""
    db_url: str
    workdir: Path
    release: Callable[[str], str] | None = None
    """Release a quarantined meter through the lifecycle service (restores a clone attack)."""
    firmware_range: Callable[[], AbstractContextManager[Range]] | None = None
    """A firmware range of the attack's own (a repository, an endpoint, one meter agent)."""
    speed: float = 1.0
    """Simulated seconds per wall second of the meters' clocks."""
    fleet: tuple[str, ...] = ()
    """Every meter of the running system (a reconnect storm waits for each)."""
    mitmdump: Path | None = None
    """mitmproxy's ``mitmdump``, the intercepting proxy of the man-in-the-middle plays (None:
    a forged TLS listener of our own stands in, and the report says so)."""

    _codes_used: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        loopback(self.host)

    def fresh_code(self, user: str, secret: str) -> str:
        """A TOTP code of ``user`` not used yet (each code works once: wait for the next)."""
        totp = pyotp.TOTP(secret)
        code = totp.now()
        while code == self._codes_used.get(user):
            time.sleep(1.0)
            code = totp.now()
        self._codes_used[user] = code
        return code

    def role(self, name: str) -> str:
        """The meter or account playing ``name`` (``""`` for ``""``)."""
        return self.roles.get(name, "") if name else ""

    @contextmanager
    def seized(self, role: str = "compromised") -> Iterator[tuple[Path, Path]]:
        """The meter playing ``role`` taken over: its own link unplugged, its identity ours.

        A compromised meter *is* that meter: its real link stays off while the attacker
        speaks with its identity (otherwise each connection would be a session takeover,
        which :meth:`~meterguard.headend.services` guard counts as a clone), and is plugged
        back in afterwards.
        """
        mid = self.role(role)
        offset = self.broker_log_size()
        self.request({"meter": mid, "link": "off"})
        gone = re.compile(rf"Client {mid} (disconnected|closed its connection)")
        deadline = time.monotonic() + 20
        while not gone.search(self.broker_log_since(offset)):
            if time.monotonic() > deadline:
                self.request({"meter": mid, "link": "on"})
                raise TimeoutError(f"the running system did not unplug {mid}'s link in 20 s")
            time.sleep(0.1)
        d = self.meter_dir(mid)
        try:
            yield d / "tls.pem", d / "tls.key"
        finally:  # plugged back in, and connected before the next attack unplugs it again
            offset = self.broker_log_size()
            self.request({"meter": mid, "link": "on"})
            back = re.compile(rf"New client connected from \S+ as {mid} ")
            deadline = time.monotonic() + 20
            while not back.search(self.broker_log_since(offset)) and time.monotonic() < deadline:
                time.sleep(0.1)

    # ------------------------------------------------------------------ broker log

    def broker_log_size(self) -> int:
        """Where the broker's log ends now."""
        try:
            return self.broker_log.stat().st_size
        except FileNotFoundError:
            return 0

    def broker_log_since(self, offset: int) -> str:
        """What the broker logged after ``offset`` (at most 4 MB)."""
        try:
            with self.broker_log.open("rb") as f:
                f.seek(offset)
                return f.read(4 << 20).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ web

    def tls(self) -> ssl.SSLContext:
        """A client context pinned to the system's root."""
        return ssl.create_default_context(cafile=str(self.root))

    def web(self, *, port: int | None = None, source: str | None = None) -> httpx.Client:
        """An HTTPS client for the web API (through ``port``, e.g. a relay; from ``source``)."""
        transport = httpx.HTTPTransport(verify=self.tls(), local_address=source)
        return httpx.Client(
            base_url=f"https://{self.host}:{port or self.web_port}",
            transport=transport,
            timeout=15,
            headers={"Host": f"{self.host}:{self.web_port}"},
        )

    def credentials(self, user: str) -> tuple[str, str | None]:
        """``user``'s password and TOTP secret from the accounts file (an insider's own)."""
        text = self.accounts_file.read_text(encoding="utf-8")
        password = re.search(rf"^{re.escape(user)} \(\w+\) password: (.*)$", text, re.M)
        totp = re.search(rf"^{re.escape(user)} TOTP .*secret=([A-Z2-7]+)", text, re.M)
        if password is None:
            raise ConfigurationError(f"no account {user} in {self.accounts_file.name}")
        return password[1], totp[1] if totp else None

    def login(
        self, c: httpx.Client, user: str, *, code: str | None = None, patience: float = 40.0
    ) -> httpx.Response:
        """Log ``user`` in on ``c`` (password, then the TOTP code if the role has one).

        A 429 is waited out (the login rate limit is a defence, not an obstacle to hide), for
        at most ``patience`` seconds in all. Returns the last response.
        """
        password, secret = self.credentials(user)
        deadline = time.monotonic() + patience
        while True:
            r = c.post("/api/v1/auth/login", json={"username": user, "password": password})
            if r.status_code != 429 or time.monotonic() >= deadline:
                break
            time.sleep(min(float(r.headers.get("Retry-After", "5")), 10.0))
        if r.status_code != 200 or not r.json().get("mfa_required"):
            if r.status_code == 200:
                c.headers["X-CSRF-Token"] = str(r.json()["csrf_token"])
            return r
        if secret is None:
            raise ConfigurationError(f"{user} needs a second factor the accounts file lacks")
        if code is None:
            code = self.fresh_code(user, secret)
        else:
            self._codes_used[user] = code
        r = c.post("/api/v1/auth/totp", json={"code": code})
        if r.status_code == 200:
            c.headers["X-CSRF-Token"] = str(r.json()["csrf_token"])
        return r


class Relay:
    """A loopback TCP relay to ``(host, port)`` that records every byte in both directions."""

    def __init__(self, host: str, port: int, *, limit: int = 32 << 20) -> None:
        self.upstream = (loopback(host), port)
        self.sock = socket.create_server((host, 0))
        self.port = int(self.sock.getsockname()[1])
        self.captured = bytearray()
        self.connections = 0
        self._limit = limit
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                down.close()
                continue
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                with self._lock:
                    if len(self.captured) < self._limit:
                        self.captured += chunk
                dst.sendall(chunk)
        except OSError:
            pass  # either side closed: the relay's copy of this direction ends here
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    s.close()

    def bytes(self) -> bytes:
        """Everything captured so far."""
        with self._lock:
            return bytes(self.captured)

    def close(self) -> None:
        """Stop accepting (open connections end with their peers)."""
        self.sock.close()
