"""Topic names and kinds, defined once for the meter, ingest, commands, broker ACLs and attacks.

A meter publishes upstream on ``meters/<id>/<kind>`` — ``data`` (load-profile pushes),
``alarms`` (the priority lane, DOS-3), ``events`` (command results), ``status`` — and
reads only ``meters/<id>/commands``. The broker's ACLs are rendered from the same names
(MQ-3), ingest subscribes to each kind through a shared subscription of its own (MQ-6),
and the meter id in a topic is the certificate's CN, which the broker's ACL ties to the
topic. Pure: no IO.
"""

from __future__ import annotations

import re

from meterguard.errors import DecodeError
from meterguard.identity import METER_ID

__all__ = [
    "COMMANDS",
    "RESEND",
    "UPSTREAM",
    "command_topic",
    "parse_upstream",
    "shared_subscription",
    "upstream_topic",
]

UPSTREAM = ("data", "alarms", "events", "status")
"""What a meter may publish, each kind a topic of its own."""
COMMANDS = "commands"
"""What a meter reads: signed commands from the head-end."""
RESEND = ("mg-resend", "1")
"""The MQTT v5 user property a meter puts on a message it sends again from its outbox (its
broker acknowledgement never came: the connection dropped). The head-end counts a resent
message whose counter it already accepted, among the meter's most recent ones, as a
duplicate, not a replay; anything else with that counter is still refused and recorded.
Mosquitto forwards user properties to subscribers unchanged."""
_UPSTREAM = re.compile(rf"^meters/({METER_ID})/({'|'.join(UPSTREAM)})$")


def upstream_topic(meter_id: str, kind: str) -> str:
    """``meters/<id>/<kind>``.

    Raises:
        ValueError: not an upstream kind.
    """
    if kind not in UPSTREAM:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"meters/{meter_id}/{kind}"


def command_topic(meter_id: str) -> str:
    """``meters/<id>/commands``."""
    return f"meters/{meter_id}/{COMMANDS}"


def parse_upstream(topic: str) -> tuple[str, str]:
    """``(meter id, kind)`` of an upstream topic.

    Raises:
        DecodeError: not a meter upstream topic.
    """
    m = _UPSTREAM.match(topic)
    if m is None:
        raise DecodeError(f"not a meter upstream topic: {topic[:80]!r}")
    return m.group(1), m.group(2)


def shared_subscription(group: str, kind: str) -> str:
    """The shared subscription of a worker group to one kind of every meter (MQ-6)."""
    return f"$share/{group}-{kind}/meters/+/{kind}"
