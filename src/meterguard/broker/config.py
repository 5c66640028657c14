"""Mosquitto configuration for meterguard, generated from the PKI (MQ-1, MQ-2, MQ-3, MQ-5).

Two listeners, each with its own settings (``per_listener_settings true``):

* the **device listener**: TLS only (1.2 minimum, AEAD ECDHE suites only),
  ``require_certificate`` with the certificate CN as user name *and* as client id
  (``use_username_as_clientid``: no client-id takeover across identities, MQ-4), trust
  limited to the device root and the device CA, the device CA's CRL, no anonymous access, and
  an ACL by user name that lets meter ``MGD…`` write only ``meters/<its id>/…``
  (data, alarms, events, status) and read only ``meters/<its id>/commands``;
* the **service listener** for head-end workers: the same TLS settings (client ids are the
  workers' own: several workers share one identity), trust limited to the
  infrastructure root and the service CA, the service CA's CRL, read on every
  meter's upstream topics and write on command topics.

Limits (MQ-5): connection count, packet size, QoS 1 at most, inflight and queue
bounds, a keepalive ceiling. Persistence is on, because it is needed (MQ-5):
the head-end workers' sessions and the readings queued for them must survive
a broker restart (REL-1). Mosquitto saves its state on shutdown and every
``autosave_interval`` seconds; a broker killed with SIGKILL loses what arrived
since the last save (the meters' outboxes resend only what the broker never
acknowledged). Known limit of Mosquitto 2.0 (2.0.11 to 2.0.18 at least): a reload (SIGHUP,
which every CRL change needs) drops the persistent session of a client that is offline at
that moment, with what was queued for it -- ``mosquitto_security_apply_default`` cannot
re-check a client without a listener and disconnects it (ADR 11). This module only renders
text; :mod:`meterguard.broker.process` writes and runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterguard.mqtt.contract import UPSTREAM, command_topic, upstream_topic

__all__ = ["BrokerLayout", "BrokerLimits", "render"]

TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
)
TLS13_CIPHERS = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """MQ-5 limits."""

    max_device_connections: int = 200_000
    max_service_connections: int = 64
    max_packet_size: int = 16_384
    max_keepalive: int = 600
    max_inflight_messages: int = 20
    """The broker's receive maximum towards each client (a meter's unacknowledged publishes)."""
    max_queued_messages: int = 1_000_000
    """Per client session: a head-end worker that is down or behind must not lose readings
    (MQ-6); a meter's own queue only ever holds its commands."""
    max_queued_bytes: int = 256 * 1024 * 1024
    """The memory bound behind ``max_queued_messages`` (DOS-1: bounded queues)."""
    autosave_interval: int = 10


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """Where the broker's files are and where it listens."""

    directory: Path
    host: str
    device_port: int
    service_port: int
    server_cert: Path
    server_key: Path
    device_trust: Path
    service_trust: Path
    crl: Path
    run_as: str = "mosquitto"
    service_crl: Path | None = None
    """The service CA's CRL, checked on the service listener (None: a PKI from before it)."""

    @property
    def config(self) -> Path:
        """The generated mosquitto.conf."""
        return self.directory / "mosquitto.conf"

    @property
    def persistence(self) -> Path:
        """Where the broker saves sessions and queued messages (a directory)."""
        return self.directory / "state"

    @property
    def log(self) -> Path:
        """The broker's log (flushed per line, read by the takeover monitor)."""
        return self.directory / "mosquitto.log"

    @property
    def device_acl(self) -> Path:
        """ACL of the device listener."""
        return self.directory / "acl-devices"

    @property
    def service_acl(self) -> Path:
        """ACL of the service listener."""
        return self.directory / "acl-service"


def _listener(
    port: int,
    host: str,
    layout: BrokerLayout,
    cafile: Path,
    acl: Path,
    max_conn: int,
    *,
    crl: Path | None,
    bind_client_ids: bool,
) -> str:
    lines = [
        f"listener {port} {host}",
        "protocol mqtt",
        "allow_anonymous false",
        "require_certificate true",
        "use_identity_as_username true",
        f"cafile {cafile}",
        f"certfile {layout.server_cert}",
        f"keyfile {layout.server_key}",
        "tls_version tlsv1.2",
        f"ciphers {TLS12_CIPHERS}",
        f"ciphers_tls1.3 {TLS13_CIPHERS}",
        f"acl_file {acl}",
        f"max_connections {max_conn}",
        "max_qos 1",
    ]
    if bind_client_ids:
        # MQ-4: the client id is the certificate's name, whatever the client asked for, so no
        # meter can take another's session, nor a worker's (meter names are never services').
        lines.append("use_username_as_clientid true")
    if crl is not None:
        lines.append(f"crlfile {crl}")
    return "\n".join(lines)


def render(
    layout: BrokerLayout, limits: BrokerLimits | None = None, service_users: list[str] | None = None
) -> dict[Path, str]:
    """Return the broker's files: configuration and both ACLs.

    ``service_users`` are the head-end workers' certificate CNs. They are listed by
    name: the service listener grants nothing to a user name it does not know (MQ-3,
    default deny), a second line behind the service root a meter certificate does not
    chain to (MQ-4).
    """
    lim = limits or BrokerLimits()
    conf = "\n".join(
        [
            "# Generated by meterguard; edits are overwritten.",
            "per_listener_settings true",
            # Run as whoever started meterguard: a root launch would otherwise switch to the
            # 'mosquitto' user, which cannot read the broker's own 0600 key in our directory.
            f"user {layout.run_as}",
            "persistence true",
            f"persistence_location {layout.persistence}/",
            f"autosave_interval {lim.autosave_interval}",
            f"log_dest file {layout.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # Small messages both ways: without this, Nagle's algorithm and delayed ACKs add
            # tens of milliseconds to every delivery to a head-end worker.
            "set_tcp_nodelay true",
            f"max_packet_size {lim.max_packet_size}",
            f"max_keepalive {lim.max_keepalive}",
            f"max_inflight_messages {lim.max_inflight_messages}",
            f"max_queued_messages {lim.max_queued_messages}",
            f"max_queued_bytes {lim.max_queued_bytes}",
            "",
            _listener(
                layout.device_port,
                layout.host,
                layout,
                layout.device_trust,
                layout.device_acl,
                lim.max_device_connections,
                crl=layout.crl,
                bind_client_ids=True,
            ),
            "",
            _listener(
                layout.service_port,
                layout.host,
                layout,
                layout.service_trust,
                layout.service_acl,
                lim.max_service_connections,
                crl=layout.service_crl,
                # Workers choose their client ids (several share one identity): a new identity
                # would need a reload before it may subscribe, and a reload drops offline
                # sessions (see above). Only service certificates reach this listener.
                bind_client_ids=False,
            ),
            "",
        ]
    )
    # MQ-3: by user name (the certificate CN), never by client id; anything not listed is denied.
    device_acl = "\n".join(
        ["# Each meter: its own upstream topics, its own command topic, nothing else."]
        + [f"pattern write {upstream_topic('%u', t)}" for t in UPSTREAM]
        + [f"pattern read {command_topic('%u')}", ""]
    )
    service_lines = ["# Head-end workers by name: all upstream topics, all command topics."]
    for user in sorted(service_users or []):
        service_lines.append(f"user {user}")
        service_lines += [f"topic read {upstream_topic('+', t)}" for t in UPSTREAM]
        service_lines += [f"topic write {command_topic('+')}", ""]
    service_acl = "\n".join([*service_lines, ""])
    return {layout.config: conf, layout.device_acl: device_acl, layout.service_acl: service_acl}
