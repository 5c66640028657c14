"""Sans-IO DLMS/COSEM connections: :class:`ClientConnection` and :class:`ServerConnection`.

A connection takes whole APDUs in (``receive``) and queues whole APDUs out
(``outgoing``); the transport moves them, with wrapper framing, over TCP, MQTT
or a test pipe (aioquic's pattern). Neither class opens sockets, starts tasks
or reads the clock. Randomness (challenges, dedicated keys) comes from an
injectable ``rng``.

Both sides:

* follow :mod:`meterguard.cosem.association`'s transition tables;
* protect every APDU in a ciphered context with the association's keys and
  check, on every APDU received: originator system title, security suite,
  required protection (authentication always), invocation counter strictly
  above the last accepted one for that key, then the GCM tag — the counter is
  committed only after the tag verified (DM-6, DH-4, DH-7);
* answer in the kind they were asked (service-specific glo/ded, general-glo/ded,
  general-ciphering) — the mirroring rule of the reference §1.6;
* run HLS mechanism 5 (GMAC) and 7 (ECDSA) and fail closed (DM-3…5, DH-2/3);
* split and reassemble GET, SET and ACTION block transfers, every block
  ciphered with a fresh counter (DM-11).

Errors: :meth:`receive` raises the :mod:`meterguard.errors` subclass that fits
(security errors are :class:`~meterguard.errors.SecurityError`). The server
queues its answer to the peer (AARE rejected, exception-response, HLS denied)
*before* raising, so always drain :meth:`outgoing` after ``receive``, even when
it raised. The peer only ever learns coarse DLMS result codes.

The object model behind a server is the :class:`CosemServerApplication`
protocol; access rights per attribute are its business, using the
:class:`RequestContext` it receives.

This module is the public face; the code lives by concern: :mod:`~meterguard.cosem.keying`
(the key material), :mod:`~meterguard.cosem.protection` (envelopes, wrapping and
verification), :mod:`~meterguard.cosem.events`, :mod:`~meterguard.cosem.server_app` and
:mod:`~meterguard.cosem.server` (the server side), :mod:`~meterguard.cosem.client`.
"""

from __future__ import annotations

from meterguard.cosem.client import ClientConnection, ClientSettings
from meterguard.cosem.events import (
    ActionCompleted,
    AssociationEstablished,
    AssociationReleased,
    Event,
    ExceptionReceived,
    GetCompleted,
    GetListCompleted,
    NotificationReceived,
    SetCompleted,
)
from meterguard.cosem.keying import SecurityMaterial
from meterguard.cosem.protection import HLS_METHOD
from meterguard.cosem.server import ServerConnection
from meterguard.cosem.server_app import (
    AssociationPolicy,
    CosemServerApplication,
    RequestContext,
    ServerSettings,
)

__all__ = [
    "HLS_METHOD",
    "ActionCompleted",
    "AssociationEstablished",
    "AssociationPolicy",
    "AssociationReleased",
    "ClientConnection",
    "ClientSettings",
    "CosemServerApplication",
    "Event",
    "ExceptionReceived",
    "GetCompleted",
    "GetListCompleted",
    "NotificationReceived",
    "RequestContext",
    "SecurityMaterial",
    "ServerConnection",
    "ServerSettings",
    "SetCompleted",
]
