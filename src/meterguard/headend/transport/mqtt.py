"""A lean MQTT v5 subscriber over TLS for ingest workers: one socket, one thread, batched acks.

:class:`MqttConsumer` is the head-end's broker adapter. Packets are framed
here and encoded and decoded by the ``mqtt5`` sans-IO codec (Rust, strict
validation); this module adds only what an ingest worker needs:

* CONNECT with a persistent session (``clean_start`` false, a session expiry)
  so messages received but not acknowledged come back after a crash (REL-1),
  a receive maximum that bounds what is in flight, a maximum packet size the
  broker must respect (anything larger is dropped by the broker, DOS-1);
* SUBSCRIBE with every granted QoS checked (a refused subscription is an
  error, not silence);
* :meth:`MqttConsumer.poll` returns the PUBLISH packets that arrived, and
  :meth:`MqttConsumer.ack` writes the PUBACKs of a committed batch in one
  TLS write — the acknowledgement is the caller's decision, made after its
  database commit;
* keepalive pings, DISCONNECT from the broker (e.g. session taken over) and
  every socket or TLS failure become :class:`~meterguard.errors.TransportError`;
  malformed packets from the broker become
  :class:`~meterguard.errors.RemoteProtocolError`.

It does not reconnect (the worker owns the retry policy), publish, or speak
QoS 2, and it does not verify anything about the payloads: that is ingest's
job. Why not paho: its per-message cost in Python capped ingest at about half
of the broker's delivery rate (bench/ingest.py).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import mqtt5

from meterguard.errors import RemoteProtocolError, TransportError

__all__ = ["ConsumerSettings", "MqttConsumer", "Publish"]

Publish = mqtt5.PublishPacket
"""A received PUBLISH: ``topic``, ``payload``, ``qos``, ``packet_id``, ``duplicate``."""

_RECV = 262_144
_P = TypeVar("_P", mqtt5.ConnAckPacket, mqtt5.SubAckPacket)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Where to connect and the session to ask for."""

    host: str
    port: int
    client_id: str
    session_expiry: int = 3600
    keepalive: int = 30
    receive_max: int = 65_535
    """How many unacknowledged QoS 1 messages the broker may have in flight to us."""
    max_packet_size: int = 16_384
    connect_timeout: float = 10.0


def _frame_length(buf: bytearray | memoryview, off: int, end: int) -> int:
    """Length of the complete packet at ``off``, or 0 if more bytes are needed.

    Raises:
        RemoteProtocolError: the remaining-length field is longer than four bytes.
    """
    mult, value, pos = 1, 0, off + 1
    while True:
        if pos >= end:
            return 0
        b = buf[pos]
        value += (b & 0x7F) * mult
        pos += 1
        if not b & 0x80:
            break
        mult *= 128
        if mult > 128**3:
            raise RemoteProtocolError("malformed remaining length from the broker")
    total = pos - off + value
    return total if off + total <= end else 0


class MqttConsumer:
    """One subscriber connection; not thread-safe (one worker thread drives it)."""

    def __init__(self, settings: ConsumerSettings, context: ssl.SSLContext) -> None:
        self.settings = settings
        self._context = context
        self._sock: ssl.SSLSocket | None = None
        self._buf = bytearray()
        self._next_id = 1
        self._last_send = 0.0
        self._ping_sent: float | None = None
        self._early: list[Publish] = []
        """PUBLISH packets of a resumed session that arrived before our SUBACK."""
        self.session_present = False

    def __repr__(self) -> str:
        s = self.settings
        state = "connected" if self._sock is not None else "closed"
        return f"MqttConsumer({s.client_id!r} at {s.host}:{s.port}, {state})"

    # ------------------------------------------------------------------ connection

    def connect(self) -> bool:
        """Open TLS, send CONNECT, wait for CONNACK; return whether the session was resumed.

        Raises:
            TransportError: unreachable, TLS refused, or the broker refused the connection.
        """
        s = self.settings
        try:
            raw = socket.create_connection((s.host, s.port), timeout=s.connect_timeout)
        except OSError as exc:
            raise TransportError(f"broker {s.host}:{s.port} unreachable: {exc}") from exc
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._context.wrap_socket(raw, server_hostname=s.host)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise TransportError(f"TLS with broker {s.host}:{s.port} failed: {exc}") from exc
        self._sock, self._buf, self._early = sock, bytearray(), []
        self._send(
            mqtt5.ConnectPacket(
                s.client_id,
                clean_start=False,
                keep_alive=s.keepalive,
                session_expiry_interval=s.session_expiry,
                receive_max=s.receive_max,
                max_packet_size=s.max_packet_size,
            ).write()
        )
        ack = self._expect(mqtt5.ConnAckPacket, s.connect_timeout)
        if ack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            self.close()
            raise TransportError(f"broker refused the connection: {ack.reason_code.name}")
        self.session_present = ack.session_present
        return ack.session_present

    def subscribe(self, patterns: Iterable[str]) -> None:
        """Subscribe to ``patterns`` at QoS 1 and check every grant.

        Raises:
            TransportError: a subscription was refused, or the connection failed.
        """
        filters = [mqtt5.TopicFilter(p, max_qos=mqtt5.QoS.AT_LEAST_ONCE) for p in patterns]
        pid = self._packet_id()
        self._send(mqtt5.SubscribePacket(pid, filters).write())
        ack = self._expect(mqtt5.SubAckPacket, self.settings.connect_timeout)
        refused = [
            f.pattern
            for f, code in zip(filters, ack.reason_codes, strict=False)
            if code != mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE
        ]
        if ack.packet_id != pid or refused or len(ack.reason_codes) != len(filters):
            raise TransportError(f"broker refused subscriptions: {refused or 'mismatched SUBACK'}")

    def close(self) -> None:
        """Send DISCONNECT (session kept for ``session_expiry``) and close; never raises."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.settimeout(1.0)
            sock.sendall(mqtt5.DisconnectPacket().write())
        except OSError:
            pass  # closing anyway: the broker keeps the session either way
        finally:
            sock.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        return self._sock is not None

    # ------------------------------------------------------------------ traffic

    def poll(self, timeout: float) -> list[Publish]:
        """Wait up to ``timeout`` seconds for data; return the PUBLISH packets that arrived.

        Raises:
            TransportError: the connection failed, timed out on keepalive, or the broker
                disconnected us (the reason code is in the message).
            RemoteProtocolError: the broker sent a malformed or unexpected packet.
        """
        self._keepalive()
        out, self._early = self._early, []
        if out:
            timeout = 0.0
        for packet in self._read(timeout):
            if isinstance(packet, mqtt5.PublishPacket):
                out.append(packet)
            else:
                self._control(packet)
        return out

    def ack(self, packet_ids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages, all in one write.

        Raises:
            TransportError: the connection failed (the broker will redeliver).
        """
        data = b"".join(mqtt5.PubAckPacket(pid).write() for pid in packet_ids)
        if data:
            self._send(data)

    # ------------------------------------------------------------------ internals

    def _packet_id(self) -> int:
        pid = self._next_id
        self._next_id = pid % 65_535 + 1
        return pid

    def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise TransportError("not connected to the broker")
        try:
            sock.settimeout(self.settings.connect_timeout)
            sock.sendall(data)
        except OSError as exc:
            self.close()
            raise TransportError(f"lost the broker: {exc}") from exc
        self._last_send = time.monotonic()

    def _keepalive(self) -> None:
        ka = self.settings.keepalive
        if not ka:
            return
        now = time.monotonic()
        if self._ping_sent is not None and now - self._ping_sent > ka:
            self.close()
            raise TransportError("broker did not answer a keepalive ping")
        if self._ping_sent is None and now - self._last_send >= ka / 2:
            self._send(mqtt5.PingReqPacket().write())
            self._ping_sent = now

    def _control(self, packet: mqtt5.Packet) -> None:
        if isinstance(packet, mqtt5.PingRespPacket):
            self._ping_sent = None
        elif isinstance(packet, mqtt5.DisconnectPacket):
            self.close()
            raise TransportError(f"broker disconnected us: {packet.reason_code.name}")
        else:
            raise RemoteProtocolError(f"unexpected {type(packet).__name__} from the broker")

    def _expect(self, kind: type[_P], timeout: float) -> _P:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise TransportError(f"no {kind.__name__} from the broker")
            found: _P | None = None
            for packet in self._read(left):
                if isinstance(packet, kind) and found is None:
                    found = packet
                elif isinstance(packet, mqtt5.PublishPacket):
                    self._early.append(packet)  # a resumed session delivers straight away
                else:
                    self._control(packet)
            if found is not None:
                return found

    def _read(self, timeout: float) -> list[mqtt5.Packet]:
        sock = self._sock
        if sock is None:
            raise TransportError("not connected to the broker")
        try:
            sock.settimeout(max(timeout, 0.0001))
            data = sock.recv(_RECV)
        except TimeoutError:
            return []
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise TransportError(f"lost the broker: {exc}") from exc
        if not data:
            self.close()
            raise TransportError("the broker closed the connection")
        buf = self._buf
        buf += data
        packets: list[mqtt5.Packet] = []
        end, off = len(buf), 0
        view = memoryview(buf)
        try:
            while off < end:
                n = _frame_length(view, off, end)
                if not n:
                    break
                if n > self.settings.max_packet_size + 5:
                    raise RemoteProtocolError(f"broker sent a {n}-byte packet over our maximum")
                try:
                    packet, used = mqtt5.read(view[off : off + n])
                except (ValueError, IndexError) as exc:
                    raise RemoteProtocolError(f"malformed packet from the broker: {exc}") from exc
                packets.append(packet)
                off += used
        finally:
            view.release()
        del buf[:off]
        return packets
