"""Publishes signed command envelopes to ``meters/<id>/commands`` (MQTT v5 over mutual TLS).

:class:`CommandPublisher` holds one connection with the head-end's *command* service
certificate (the broker's ACL lets service users write command topics, MQ-3) and sends
each envelope with QoS 1, waiting for the broker's PUBACK so the caller learns whether
the meter's subscription took it: reason 0x10 ("no matching subscribers") means the
meter is offline and the command was not delivered. It never builds or signs a command
(:mod:`meterguard.headend.services.commands` does) and keeps nothing across restarts.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from meterguard.errors import TransportError
from meterguard.mqtt.contract import command_topic
from meterguard.mqtt.tls import pinned_client_context

__all__ = ["CommandPublisher", "PublisherSettings"]

log = logging.getLogger(__name__)
NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass(frozen=True)
class PublisherSettings:
    """Broker address and the command service's certificate."""

    host: str
    port: int
    root: Path
    cert: Path
    key: Path
    client_id: str = "headend-commands-1"
    timeout: float = 10.0


class CommandPublisher:
    """One TLS connection that sends command envelopes and reports their delivery."""

    def __init__(self, settings: PublisherSettings) -> None:
        self.settings = settings
        self.connected = threading.Event()
        self._acks: dict[int, int] = {}
        self._cond = threading.Condition()
        ctx = pinned_client_context(settings.root, settings.cert, settings.key)
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5
        )
        c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.reconnect_delay_set(1, 10)
        self._client = c

    def __repr__(self) -> str:
        return f"CommandPublisher({self.settings.client_id}@{self.settings.host})"

    def start(self) -> None:
        """Connect in the background (reconnects by itself)."""
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, meter_id: str, envelope: bytes) -> bool:
        """Send one envelope; True if a subscriber (the meter) took it, False if none did.

        Raises:
            TransportError: not connected, or no PUBACK within the timeout.
        """
        if not self.connected.wait(self.settings.timeout):
            raise TransportError("command publisher is not connected to the broker")
        info = self._client.publish(command_topic(meter_id), envelope, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish failed: {mqtt.error_string(info.rc)}")
        with self._cond:
            if not self._cond.wait_for(lambda: info.mid in self._acks, self.settings.timeout):
                raise TransportError("no PUBACK for a command")
            code = self._acks.pop(info.mid)
        if code not in (0, NO_MATCHING_SUBSCRIBERS):
            raise TransportError(f"broker refused a command: reason 0x{code:02X}")
        return code == 0

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            log.warning("command publisher: CONNACK %s", rc)
            return
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, _rc: ReasonCode, _p: object
    ) -> None:
        self.connected.clear()

    def _on_publish(
        self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object
    ) -> None:
        with self._cond:
            self._acks[mid] = rc.value
            self._cond.notify_all()
