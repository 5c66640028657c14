"""An MQTT v5 probe client over TLS pinned to our root, with observable outcomes.

Attack scenarios use it to try a connection, a publish or a subscription and
record exactly what the broker answered (CONNACK, PUBACK and SUBACK reason
codes, disconnects). It never retries on its own and stops its network thread
when refused.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from meterguard.mqtt.contract import RESEND
from meterguard.mqtt.tls import pinned_client_context


@dataclass
class Probe:
    """A connected (or refused) client and what it saw."""

    client: mqtt.Client
    connected: bool = False
    connect_rc: Any = None
    disconnect_rc: Any = None
    error: str | None = None
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    resent: list[bool] = field(default_factory=list)
    """Per message: whether its sender marked it as sent again (the contract's RESEND)."""
    acks: dict[int, Any] = field(default_factory=dict)
    granted: list[Any] = field(default_factory=list)
    _event: threading.Event = field(default_factory=threading.Event)
    _ack: threading.Event = field(default_factory=threading.Event)

    def publish(self, topic: str, payload: bytes, timeout: float = 3.0) -> Any:
        """Publish at QoS 1 and return the PUBACK reason code (None if none came)."""
        self._ack.clear()
        info = self.client.publish(topic, payload, qos=1)
        self._ack.wait(timeout)
        return self.acks.get(info.mid)

    def subscribe(self, topic: str, timeout: float = 3.0) -> list[Any]:
        """Subscribe at QoS 1 and return the SUBACK reason codes."""
        self._ack.clear()
        self.client.subscribe(topic, qos=1)
        self._ack.wait(timeout)
        return self.granted

    def wait_messages(self, n: int, timeout: float = 3.0) -> list[tuple[str, bytes]]:
        """Wait until ``n`` messages arrived (or the timeout) and return all received."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    port: int,
    root: Path,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    client_id: str = "",
    timeout: float = 3.0,
    server_hostname: str = "127.0.0.1",
) -> Probe:
    """Connect over TLS 1.2+ pinned to ``root`` only (PKI-7: no system CAs)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    ctx = pinned_client_context(root, cert, key)
    client.tls_set_context(ctx)
    probe = Probe(client)

    def on_connect(
        _c: mqtt.Client, _u: object, _flags: object, rc: ReasonCode, _props: object
    ) -> None:
        probe.connect_rc = rc
        probe.connected = not rc.is_failure
        probe._event.set()

    def on_disconnect(
        _c: mqtt.Client, _u: object, _flags: object, rc: ReasonCode, _props: object
    ) -> None:
        probe.disconnect_rc = rc
        probe.connected = False
        probe._event.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        probe.messages.append((msg.topic, bytes(msg.payload)))
        props = getattr(msg, "properties", None)
        probe.resent.append(RESEND in (getattr(props, "UserProperty", None) or []))

    def on_publish(_c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _props: object) -> None:
        probe.acks[mid] = rc
        probe._ack.set()

    def on_subscribe(
        _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode], _props: object
    ) -> None:
        probe.granted = rcs
        probe._ack.set()

    client.on_connect, client.on_disconnect, client.on_message = (
        on_connect,
        on_disconnect,
        on_message,
    )
    client.on_publish, client.on_subscribe = on_publish, on_subscribe
    client.reconnect_delay_set(60, 60)  # a refused probe must not retry during the test
    try:
        client.connect(server_hostname, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        probe.error = f"{type(exc).__name__}: {exc}"
        return probe
    client.loop_start()
    probe._event.wait(timeout)
    if not probe.connected:
        client.loop_stop()
    return probe
