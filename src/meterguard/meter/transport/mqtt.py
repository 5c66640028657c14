"""The meter's MQTT v5 transport over TLS with its own certificate (PKI-2, PKI-7, MQ-1…4, REL-1).

:class:`MeterMqttClient` connects to the broker's device listener with the
meter's certificate, pinning the private root (never the system CAs), and
publishes what the meter hands it — already DLMS-protected with the meter's
own keys — on ``meters/<id>/data`` (and ``/events``, ``/status``), with alarms
on their own topic ``meters/<id>/alarms``. It subscribes to
``meters/<id>/commands`` and passes each command to the meter.

* **Nothing is lost offline**: every message goes to a persistent outbox
  (:class:`Outbox`, SQLite in the meter's state directory) *before* it is
  sent and leaves it only when the broker acknowledged it (QoS 1 PUBACK); on
  every (re)connection the outbox is sent again, oldest first. A PUBACK saying
  "no matching subscribers" means the broker dropped the message (no head-end
  session was subscribed — Mosquitto 2.0 does not restore shared
  subscriptions after a restart until the workers subscribe again): it stays
  in the outbox and is retried with back-off, newer messages queued behind it.
* **Reconnection** uses exponential back-off with full jitter, so a fleet
  knocked off together does not come back as a synchronised flood.
* **Client-id takeover** (another client connecting with our client id, which
  Mosquitto answers by disconnecting us with reason 0x8E "session taken over")
  is reported through ``on_takeover`` so the meter can log and alarm it (MQ-4).

This module is an adapter: it owns a paho client and a thread; the meter's
logic stays in :mod:`meterguard.meter.device`.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from meterguard.mqtt.contract import RESEND, UPSTREAM, command_topic, upstream_topic
from meterguard.mqtt.tls import pinned_client_context

__all__ = ["MeterMqttClient", "MqttSettings", "Outbox"]

log = logging.getLogger(__name__)

SESSION_TAKEN_OVER = 0x8E
NO_MATCHING_SUBSCRIBERS = 0x10
TOPICS = UPSTREAM


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and who: broker address, the pinned root, the meter's certificate and id."""

    host: str
    port: int
    root: Path
    cert: Path
    key: Path
    meter_id: str
    keepalive: int = 60
    backoff_base: float = 0.5
    backoff_max: float = 60.0


class Outbox:
    """A persistent FIFO of messages not yet acknowledged by the broker."""

    def __init__(self, path: Path, owner: str = "") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox "
            "(seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL DEFAULT '', "
            "topic TEXT, payload BLOB)"
        )
        self.owner = owner  # several meters of one fleet process may share one outbox file
        self._lock = threading.Lock()

    def add(self, topic: str, payload: bytes) -> int:
        """Store a message durably; return its sequence number."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (owner, topic, payload) VALUES (?, ?, ?)",
                (self.owner, topic, payload),
            )
            return int(cur.lastrowid or 0)

    def remove(self, seq: int) -> None:
        """The broker acknowledged it."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ? AND owner = ?", (seq, self.owner))

    def contains(self, seq: int) -> bool:
        """True while ``seq`` is not yet acknowledged."""
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM outbox WHERE seq = ? AND owner = ?", (seq, self.owner)
                ).fetchone()
                is not None
            )

    def pending(self) -> list[tuple[int, str, bytes]]:
        """Everything of this owner not yet acknowledged, oldest first.

        Several meters of one fleet process share one file: each sees only its own messages
        (a meter re-sending another's would be refused by the broker's ACL and lose it).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE owner = ? ORDER BY seq",
                (self.owner,),
            ).fetchall()
        return [(int(s), str(t), bytes(p)) for s, t, p in rows]

    def __len__(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE owner = ?", (self.owner,)
            ).fetchone()
            return int(row[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()


_RESENT = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: unannotated
_RESENT.UserProperty = RESEND


class MeterMqttClient:
    """One meter's connection to the broker."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        *,
        on_command: Callable[[bytes], None] | None = None,
        on_takeover: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.on_command = on_command
        self.on_takeover = on_takeover
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._inflight: dict[int, int] = {}
        self._sending: set[int] = set()
        self._early_acks: dict[int, bool] = {}
        """PUBACKs that beat our bookkeeping: mid -> dropped for want of subscribers."""
        self._retry: threading.Timer | None = None
        self.undelivered = 0
        """Consecutive messages the broker dropped for want of a subscriber."""
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.attempts = 0
        self.last_error: str | None = None
        self.takeovers = 0
        self.last_disconnect: ReasonCode | None = None
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.meter_id, protocol=mqtt.MQTTv5
        )
        c.tls_set_context(pinned_client_context(settings.root, settings.cert, settings.key))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_connect_fail = self._on_connect_fail
        c.reconnect_delay_set(1, int(settings.backoff_max))
        self._client = c

    def topic(self, kind: str) -> str:
        """``meters/<id>/<kind>``."""
        return upstream_topic(self.settings.meter_id, kind)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background; reconnects by itself."""
        self.attempts += 1
        # A clean session every time: the outbox, not the broker, keeps what is unsent, and the
        # command subscription is made again on each connect (MQ-5: persistence only if needed).
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=True,
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread (the outbox keeps what is unsent)."""
        with self._lock:
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` seconds passed."""
        return self.connected.wait(timeout)

    # ------------------------------------------------------------------ publishing

    def publish(self, kind: str, payload: bytes) -> int:
        """Queue a protected APDU durably, send it when connected; return its outbox sequence."""
        topic = self.topic(kind)
        seq = self.outbox.add(topic, payload)
        # While older messages wait for a retry, new ones queue behind them (order matters to
        # the head-end's anti-replay window).
        if self.connected.is_set() and self._retry is None:
            self._send(seq, topic, payload)
        return seq

    def _send(self, seq: int, topic: str, payload: bytes, *, resend: bool = False) -> None:
        with self._lock:
            if seq in self._sending or not self.outbox.contains(seq):
                return  # on its way or already acknowledged (publish and a reconnect flush race)
            self._sending.add(seq)
        # paho's publish takes paho's own locks, which its network thread holds while calling
        # our callbacks: never call it while holding ours.
        info = self._client.publish(topic, payload, qos=1, properties=_RESENT if resend else None)
        with self._lock:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._sending.discard(seq)  # still in the outbox: sent again on reconnect
                return
            if info.mid in self._early_acks:  # the PUBACK beat us here
                self._settled(seq, dropped=self._early_acks.pop(info.mid))
            else:
                self._inflight[info.mid] = seq

    def _acknowledged(self, seq: int) -> None:
        self.outbox.remove(seq)
        self._sending.discard(seq)

    def _flush(self) -> None:
        # What the outbox still holds may have reached the head-end with its acknowledgement
        # lost on the way back: marked as resent, it is a duplicate there, not a replay.
        for seq, topic, payload in self.outbox.pending():
            if not self.connected.is_set():
                return
            self._send(seq, topic, payload, resend=True)

    # ------------------------------------------------------------------ paho callbacks (its thread)

    def _backoff(self, attempts: int | None = None) -> float:
        """Exponential back-off with full jitter (AWS architecture blog's 'full jitter')."""
        n = self.attempts if attempts is None else attempts
        cap = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** min(n, 16))
        return self._rng.uniform(0, cap)

    def _on_connect(
        self, c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            self.last_error = f"CONNACK {rc}"
            return
        self.attempts = 0
        self.connected.set()
        c.subscribe(self.topic_commands, qos=1)
        threading.Thread(target=self._flush, daemon=True).start()

    @property
    def topic_commands(self) -> str:
        """``meters/<id>/commands``."""
        return command_topic(self.settings.meter_id)

    def _on_disconnect(
        self, c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        self.connected.clear()
        self.last_disconnect = rc
        with self._lock:
            self._inflight.clear()  # unacknowledged messages stay in the outbox and are re-sent
            self._sending.clear()
            self._early_acks.clear()
        if rc.value == SESSION_TAKEN_OVER:
            # MQ-4: someone else connected with our client id. Log it and let the meter alarm.
            self.takeovers += 1
            log.warning("meter %s: session taken over by another client", self.settings.meter_id)
            if self.on_takeover is not None:
                self.on_takeover()
        self.attempts += 1
        delay = self._backoff()
        c.reconnect_delay_set(max(1, int(delay)), int(self.settings.backoff_max))

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        self.attempts += 1
        self.last_error = "connection failed (TLS or network)"

    def _on_publish(
        self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            # Refused by the broker's ACL: it would be refused again, so it leaves the outbox.
            log.warning("meter %s: broker refused a message: %s", self.settings.meter_id, rc)
        # "No matching subscribers": the broker dropped it because no head-end session was
        # subscribed (e.g. right after a broker restart, before the workers subscribe again):
        # it stays in the outbox and is sent again later, in order (REL-1).
        dropped = rc.value == NO_MATCHING_SUBSCRIBERS
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early_acks[mid] = dropped
                return
            self._settled(seq, dropped=dropped)

    def _settled(self, seq: int, *, dropped: bool) -> None:
        """The broker answered for ``seq`` (call with the lock held)."""
        if not dropped:
            self._acknowledged(seq)
            self.undelivered = 0
            return
        self._sending.discard(seq)
        self.undelivered += 1
        if self._retry is None:
            self._retry = threading.Timer(self._backoff(self.undelivered // 8), self._retry_now)
            self._retry.daemon = True
            self._retry.start()

    def _retry_now(self) -> None:
        with self._lock:
            self._retry = None
        self._flush()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topic_commands and self.on_command is not None:
            self.on_command(bytes(msg.payload))
