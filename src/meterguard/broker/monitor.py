"""Security events read from Mosquitto's connection log (MQ-4).

Mosquitto 2.0 disconnects a client when another connects with the same
client id, without telling the victim why. Our meters always use their meter
id as client id *and* certificate CN (the MQTT user name), so two log facts
expose a takeover: a connection whose client id differs from its user name
(someone impersonating a client id) and "already connected, closing old
connection". Head-end workers connect with client ids of their own choosing
under their service name, so a mismatch only counts where a meter identity is
involved, as client id or as user name. :class:`LogMonitor` turns the broker's
log into these events; the head-end records them as security events. It
parses text only and keeps its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BrokerEvent", "ClientIdMismatch", "LogMonitor", "SessionTakeover", "parse_line"]

_CONNECTED = re.compile(r"New client connected from (\S+) as (\S+) \(.*?u'([^']*)'\)")
_TAKEOVER = re.compile(r"Client (\S+) already connected, closing old connection")
_GONE = re.compile(
    r"Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)"
    r"|Socket error on client (\S+),|Client (\S+) \[\S+\] disconnected"
)
_STARTING = re.compile(r"mosquitto version \S+ starting")
_METER = re.compile(r"^MGD\d{10}$")


@dataclass(frozen=True, slots=True)
class ClientIdMismatch:
    """A client connected with a client id other than its certificate identity."""

    client_id: str
    username: str
    peer: str


@dataclass(frozen=True, slots=True)
class SessionTakeover:
    """The broker closed an existing connection because the same client id connected again."""

    client_id: str


BrokerEvent = ClientIdMismatch | SessionTakeover


def parse_line(line: str) -> BrokerEvent | None:
    """Return the security event in one log line, if any."""
    m = _CONNECTED.search(line)
    if m:
        peer, client_id, username = m.groups()
        meterish = _METER.match(client_id) or _METER.match(username)
        return (
            ClientIdMismatch(client_id, username, peer)
            if meterish and client_id != username
            else None
        )
    m = _TAKEOVER.search(line)
    if m:
        return SessionTakeover(m.group(1))
    return None


class LogMonitor:
    """Follows a broker log file and returns new security events on each poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.connected: set[str] = set()
        """Client ids connected now, as the log tells (for the connections gauge); only
        those seen connecting since this monitor started reading."""

    def skip_existing(self) -> None:
        """Start after what the log already holds (a restarted head-end recorded it before)."""
        try:
            self._offset = self.path.stat().st_size
        except FileNotFoundError:
            self._offset = 0

    def poll(self) -> list[BrokerEvent]:
        """Events logged since the last poll."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        events = []
        for raw in data[:complete].decode(errors="replace").splitlines():
            self._follow(raw)
            event = parse_line(raw)
            if event is not None:
                events.append(event)
        return events

    def _follow(self, line: str) -> None:
        """Keep :attr:`connected` in step with one log line."""
        if m := _CONNECTED.search(line):
            self.connected.add(m.group(2))
        elif m := _GONE.search(line):
            self.connected.discard(next(g for g in m.groups() if g))
        elif _STARTING.search(line):
            self.connected.clear()  # a restarted broker starts with no client
