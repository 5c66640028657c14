"""DLMS/COSEM over TCP for one meter: IEC 62056-9-7 wrapper frames on port 4059 (DM-1).

An asyncio adapter around the sans-IO :class:`~meterguard.cosem.connection.ServerConnection`:
it reassembles wrapper frames from whatever TCP delivers (split or merged
segments), drops frames for any destination wPort other than the management
logical device (1), feeds the APDUs in and writes the answers out.

Bad input never takes the server down: a security failure is recorded on the
meter (fraud log, alarm bit) and the connection carries on with the meter's
refusal already sent; malformed framing closes that one connection; an idle
connection is closed after ``idle_timeout``; at most ``max_connections`` are
served at once. Nothing secret is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from meterguard.cosem.wrapper import SERVER_MANAGEMENT, WrapperDecoder, WrapperFrame
from meterguard.errors import DecodeError, MeterguardError, SecurityError
from meterguard.meter.device import Meter

__all__ = ["DlmsTcpServer"]

log = logging.getLogger(__name__)


class DlmsTcpServer:
    """Serves one meter's logical device over TCP."""

    def __init__(
        self,
        meter: Meter,
        *,
        host: str = "127.0.0.1",
        port: int = 4059,
        max_connections: int = 16,
        idle_timeout: float = 120.0,
        max_receive_pdu_size: int = 1024,
    ) -> None:
        self.meter = meter
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_receive_pdu_size = max_receive_pdu_size
        self._server: asyncio.Server | None = None
        self._active = 0
        self.security_events = 0

    async def start(self) -> tuple[str, int]:
        """Bind and start accepting; return the bound address (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        return str(sock[0]), self.port

    async def serve_forever(self) -> None:
        """Run until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None  # noqa: S101
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting and close the listener."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._active >= self.max_connections:
            log.warning("refusing connection from %s: %d connections already", peer, self._active)
            writer.close()
            return
        self._active += 1
        conn = self.meter.connection(max_receive_pdu_size=self.max_receive_pdu_size)
        decoder = WrapperDecoder(max_apdu_size=max(self.max_receive_pdu_size, 2048))
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
                except TimeoutError:
                    log.info("closing idle connection from %s", peer)
                    break
                if not data:
                    break
                try:
                    frames = decoder.feed(data)
                except DecodeError as exc:
                    log.warning("bad wrapper framing from %s: %s; closing", peer, exc)
                    break
                for frame in frames:
                    if frame.destination_wport != SERVER_MANAGEMENT:
                        # DM-1: an unknown destination wPort reaches no association.
                        log.info(
                            "dropping frame for unknown wPort %d from %s",
                            frame.destination_wport,
                            peer,
                        )
                        continue
                    try:
                        conn.receive(frame.apdu, client_sap=frame.source_wport)
                    except SecurityError as exc:
                        self.security_events += 1
                        self.meter.record_security_event(exc)
                        log.warning("security event %s from %s: %s", exc.event, peer, exc)
                    except MeterguardError as exc:
                        log.info("refused request from %s: %s", peer, exc)
                    for apdu in conn.outgoing():
                        writer.write(
                            WrapperFrame(SERVER_MANAGEMENT, frame.source_wport, apdu).to_bytes()
                        )
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("connection from %s lost: %s", peer, exc)
        except Exception:  # a bug must not take the meter down; it is logged with its traceback
            log.exception("unexpected error serving %s", peer)
        finally:
            self._active -= 1
            conn.abort()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
