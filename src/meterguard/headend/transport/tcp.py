"""A blocking DLMS/TCP (wrapper) adapter for the sans-IO DLMS ClientConnection.

One socket, one association, one request at a time: it sends whatever the
connection queued, reads wrapper frames until the connection produces events
and has nothing more to send (block transfer and HLS pass 3 happen inside),
and returns those events. Timeouts and closed sockets become
:class:`~meterguard.errors.TransportError`; protocol and security errors from
the connection propagate unchanged, so "the meter's tag failed" never looks
like "the network is down".

This is the on-demand read path (DH-1…DH-7); the asynchronous, pooled
version for many meters belongs to the head-end's ingest and read services.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import TracebackType

from meterguard.cosem.connection import ClientConnection, Event
from meterguard.cosem.wrapper import WrapperDecoder, WrapperFrame
from meterguard.errors import TransportError

__all__ = ["BlockingDlmsClient"]


class BlockingDlmsClient:
    """Drives a :class:`ClientConnection` over one TCP socket."""

    def __init__(
        self, host: str, port: int, connection: ClientConnection, *, timeout: float = 10.0
    ) -> None:
        self.connection = connection
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._decoder = WrapperDecoder()

    def __enter__(self) -> BlockingDlmsClient:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def run(self, action: Callable[[], object] | None = None) -> list[Event]:
        """Queue a request with ``action`` (e.g. ``conn.associate``) and exchange until answered."""
        if self._sock is None:
            raise TransportError("not connected")
        if action is not None:
            action()
        events: list[Event] = []
        s = self.connection.settings
        while out := self.connection.outgoing():
            for apdu in out:
                try:
                    self._sock.sendall(WrapperFrame(s.client_sap, s.server_sap, apdu).to_bytes())
                except OSError as exc:
                    raise TransportError(f"send failed: {exc}") from exc
                events += self._receive_one()
        return events

    def _receive_one(self) -> list[Event]:
        assert self._sock is not None  # noqa: S101
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise TransportError(f"receive failed: {exc}") from exc
            if not chunk:
                raise TransportError("the meter closed the connection")
            frames = self._decoder.feed(chunk)
            if frames:
                events: list[Event] = []
                for frame in frames:
                    events += self.connection.receive(frame.apdu)
                return events
